/* epilogue.cuh: a computed query block's output, normalized, rounded to T and stored to the block
 * and to every query block that reuses it. */
#pragma once

#include "ptx.cuh"
#include "work.cuh"

namespace calib_cuda_detail {

/* Stores the normalized rows of one thread (two rows, columns 8j + 2c .. +1) to the query block
 * and to each of its reuse targets; rows of padded text (valid_end) are zeros. */
template <typename T, int NCOL>
__device__ __forceinline__ void store_rows(const Params &p, int b, int h, int qb, int ntargets, int toff,
                                           int rloc0, int rlimit, const float *o, float inv0, float inv1,
                                           int c) {
    T *out = static_cast<T *>(p.out);
    const int t0 = ntargets > 0 ? p.targets[toff] : 0;
    const int end = valid_end(p, b);
    for (int t = -1; t < ntargets; ++t) {
        int blk = t < 0 ? qb : t == 0 ? t0 : p.targets[toff + t];
        int base = blk * kBlock;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            int rl = rloc0 + 8 * half;
            int r = base + rl;
            if (rl >= rlimit || r >= kTokens) continue;
            T *dst = out + (int64_t)b * p.os0 + (int64_t)r * p.os1 + (int64_t)h * p.os2 + 2 * c;
            const float inv = r >= end ? 0.f : half ? inv1 : inv0;
#pragma unroll
            for (int j = 0; j < NCOL / 8; ++j) {
                uint32_t v = inv == 0.f ? 0u : Pack<T>::two(o[4 * j + 2 * half] * inv, o[4 * j + 2 * half + 1] * inv);
                *reinterpret_cast<uint32_t *>(dst + 8 * j) = v;
            }
        }
    }
}

/* The wgmma kernel's epilogue, in two steps so the stores can run under the next query block's
 * first product: pack_rows normalizes and packs a thread's two rows (pk[half * NCOL/8 + j] holds
 * columns 8j + 2c, +1), store_packed writes them (zeros for padded text) to the block and its reuse targets — with 16-byte
 * stores after a 4 × 4 transpose in each quad of lanes (out 16-byte aligned, strides multiples of
 * 8), else 4-byte stores. NCOL a multiple of 32. */
template <typename T, int NCOL>
__device__ __forceinline__ void pack_rows(const float *o, float inv0, float inv1, uint32_t *pk) {
#pragma unroll
    for (int half = 0; half < 2; ++half)
#pragma unroll
        for (int j = 0; j < NCOL / 8; ++j)
            pk[half * (NCOL / 8) + j] = Pack<T>::two(o[4 * j + 2 * half] * (half ? inv1 : inv0),
                                                     o[4 * j + 2 * half + 1] * (half ? inv1 : inv0));
}

template <typename T, int NCOL>
__device__ __forceinline__ void store_packed(const Params &p, int b, int h, int qb, int ntargets, int toff,
                                             int rloc0, const uint32_t *pk, int c) {
    T *out = static_cast<T *>(p.out);
    const int t0 = ntargets > 0 ? p.targets[toff] : 0; /* read before the transposes hide its latency */
    const int end = valid_end(p, b);
    if (!p.out_vec16) {
        for (int t = -1; t < ntargets; ++t) {
            const int blk = t < 0 ? qb : t == 0 ? t0 : p.targets[toff + t];
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const int r = blk * kBlock + rloc0 + 8 * half;
                if (r >= kTokens) continue;
                T *dst = out + (int64_t)b * p.os0 + (int64_t)r * p.os1 + (int64_t)h * p.os2 + 2 * c;
#pragma unroll
                for (int j = 0; j < NCOL / 8; ++j) *reinterpret_cast<uint32_t *>(dst + 8 * j) = r < end ? pk[half * (NCOL / 8) + j] : 0u;
            }
        }
        return;
    }
    constexpr int G = NCOL / 32;
    const int quad = (threadIdx.x & 31) & ~3;
    uint4 chunk[2][G]; /* [row half][group]: columns 8 (4g + c) .. + 7 */
#pragma unroll
    for (int half = 0; half < 2; ++half) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
            const uint32_t *v = pk + half * (NCOL / 8) + 4 * g;
            uint32_t r[4] = {0, 0, 0, 0};
#pragma unroll
            for (int rr = 0; rr < 4; ++rr) {
                const int si = (c - rr) & 3, src = (c + rr) & 3;
                const uint32_t sv = si == 0 ? v[0] : si == 1 ? v[1] : si == 2 ? v[2] : v[3];
                const uint32_t got = __shfl_sync(0xffffffffu, sv, quad | src);
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    if (k == src) r[k] = got;
            }
            chunk[half][g] = make_uint4(r[0], r[1], r[2], r[3]);
        }
    }
    for (int t = -1; t < ntargets; ++t) {
        const int blk = t < 0 ? qb : t == 0 ? t0 : p.targets[toff + t];
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int r = blk * kBlock + rloc0 + 8 * half;
            if (r >= kTokens) continue;
            T *dst = out + (int64_t)b * p.os0 + (int64_t)r * p.os1 + (int64_t)h * p.os2 + 8 * c;
#pragma unroll
            for (int g = 0; g < G; ++g) *reinterpret_cast<uint4 *>(dst + 32 * g) = r < end ? chunk[half][g] : make_uint4(0, 0, 0, 0);
        }
    }
}

} // namespace calib_cuda_detail
