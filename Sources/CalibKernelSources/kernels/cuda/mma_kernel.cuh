/* mma_kernel.cuh: the portable kernel (sm_80 instructions), FlashAttention-2 style: any block
 * size and head_dim (a multiple of 16, at most 256). 64 query rows per CTA, 16 per warp; key
 * tiles of 64 tokens double-buffered with cp.async. The fallback where the wgmma kernel does not
 * apply, and the reference the wgmma kernel is tested against. */
#pragma once

#include "epilogue.cuh"
#include "ptx.cuh"
#include "softmax.cuh"
#include "work.cuh"

namespace calib_cuda_detail {

constexpr int kMmaRows = 64;
constexpr int kMmaKeys = 64;
constexpr int kMmaPad = kDim + 8; /* elements per shared-memory row: 16 bytes of padding */
constexpr int kMmaSmem = (kMmaRows + 4 * kMmaKeys) * kMmaPad * 2;
/* A warp's Q fragments stay in registers for a row's tiles up to head_dim 128; past it they are
 * read from shared memory at each k-step, as Q's 64 registers beside O's 128 spilled at 256. */
constexpr bool kMmaQInRegs = kDim <= 128;

/* Loads `rows` rows of kDim elements starting at token `s0` (rows past `send` repeat the last
 * valid row, so every value read is finite) into a padded shared tile. */
template <typename T>
__device__ __forceinline__ void load_tile(T *dst, const T *src, int64_t s_stride, int s0, int send, int tid) {
    constexpr int chunks = kDim / 8; /* 16-byte pieces per row */
    for (int i = tid; i < kMmaRows * chunks; i += 128) {
        int r = i / chunks, c = i % chunks;
        int s = min(s0 + r, send - 1);
        cp_async16(dst + r * kMmaPad + c * 8, src + (int64_t)s * s_stride + c * 8);
    }
}

/* Walks the key tiles of a row: spans of blocks, each cut into tiles of kMmaKeys tokens, up to
 * the batch element's valid end (padded text is never read). false: no tile left. */
struct TileWalk {
    int span, span_end, k0, kend, end;
    __device__ __forceinline__ bool start(const Params &p, int row, int valid) {
        end = valid;
        row_spans(p, row, span, span_end);
        if (span >= span_end && span >= 0) return false;
        return open(p);
    }
    /* Spans ascend, so one that starts past the end leaves none. */
    __device__ __forceinline__ bool open(const Params &p) {
        int lo, hi;
        span_at(p, span, lo, hi);
        k0 = lo * kBlock;
        kend = min(hi * kBlock, end);
        return k0 < kend;
    }
    __device__ __forceinline__ bool next(const Params &p) {
        k0 += kMmaKeys;
        if (k0 < kend) return true;
        ++span;
        if (span >= span_end) return false;
        return open(p);
    }
};

template <typename T>
__global__ void __launch_bounds__(128) calib_mma_kernel(const Params given) {
    const Params p = with_step(given);
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T *qs = reinterpret_cast<T *>(smem_raw);
    T *ks = qs + kMmaRows * kMmaPad;
    T *vs = ks + 2 * kMmaKeys * kMmaPad;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, c = lane % 4;
    const T *qg = static_cast<const T *>(p.q);
    const T *kg = static_cast<const T *>(p.k);
    const T *vg = static_cast<const T *>(p.v);

    for (int64_t round = 0;; ++round) {
        int64_t idx = item_index(round, gridDim.x, blockIdx.x);
        if (idx >= p.total) break;
        int b;
        const int4 it = load_item(p, idx, b);
        const int h = it.x & 0xfff, qb = it.y & 0xffff, ntargets = (unsigned)it.y >> 16;
        const T *qh = qg + (int64_t)b * p.qs0 + (int64_t)h * p.qs2;
        const T *kh = kg + (int64_t)b * p.ks0 + (int64_t)h * p.ks2;
        const T *vh = vg + (int64_t)b * p.vs0 + (int64_t)h * p.vs2;
        const int qstart = qb * kBlock, qend = min(qstart + kBlock, kTokens);
        for (int c0 = qstart; c0 < qend; c0 += kMmaRows) {
            TileWalk walk;
            const bool any = walk.start(p, it.z, valid_end(p, b));
            load_tile(qs, qh, p.qs1, c0, qend, tid);
            if (any) {
                load_tile(ks, kh, p.ks1, walk.k0, walk.kend, tid);
                load_tile(vs, vh, p.vs1, walk.k0, walk.kend, tid);
            }
            cp_async_commit();
            uint32_t qf[kMmaQInRegs ? kDim / 16 : 1][4];
            auto q_fragment = [&](uint32_t *dst, int kk) {
                ldsm_x4(dst, qs + (warp * 16 + (lane % 8) + 8 * ((lane / 8) % 2)) * kMmaPad + 16 * kk + 8 * (lane / 16));
            };
            float o[kDim / 8][4];
#pragma unroll
            for (int j = 0; j < kDim / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
            OnlineSoftmax sm;
            int stage = 0;
            bool first = true;
            for (bool more = any; more;) {
                const int kn = min(kMmaKeys, walk.kend - walk.k0);
                cp_async_wait_all();
                __syncthreads();
                more = walk.next(p);
                if (more) {
                    T *kd = ks + (stage ^ 1) * kMmaKeys * kMmaPad, *vd = vs + (stage ^ 1) * kMmaKeys * kMmaPad;
                    load_tile(kd, kh, p.ks1, walk.k0, walk.kend, tid);
                    load_tile(vd, vh, p.vs1, walk.k0, walk.kend, tid);
                    cp_async_commit();
                }
                if constexpr (kMmaQInRegs) {
                    if (first) {
#pragma unroll
                        for (int kk = 0; kk < kDim / 16; ++kk) q_fragment(qf[kk], kk);
                        first = false;
                    }
                }
                const T *kt = ks + stage * kMmaKeys * kMmaPad;
                const T *vt = vs + stage * kMmaKeys * kMmaPad;
                float s[kMmaKeys / 8][4];
#pragma unroll
                for (int j = 0; j < kMmaKeys / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
                for (int kk = 0; kk < kDim / 16; ++kk) {
                    const int qi = kMmaQInRegs ? kk : 0;
                    if constexpr (!kMmaQInRegs) q_fragment(qf[0], kk);
#pragma unroll
                    for (int j = 0; j < kMmaKeys / 16; ++j) {
                        uint32_t bf[4];
                        ldsm_x4(bf, kt + (16 * j + (lane % 8) + 8 * (lane / 16)) * kMmaPad + 16 * kk + 8 * ((lane / 8) % 2));
                        Mma<T>::m16n8k16(s[2 * j], qf[qi], bf);
                        Mma<T>::m16n8k16(s[2 * j + 1], qf[qi], bf + 2);
                    }
                }
                if (kn < kMmaKeys) OnlineSoftmax::mask_columns<kMmaKeys / 8>(&s[0][0], c, 0, kn);
                float f0, f1;
                sm.exponentiate<kMmaKeys / 8>(&s[0][0], p.scale_log2, f0, f1);
                OnlineSoftmax::rescale<kDim / 2>(&o[0][0], f0, f1);
#pragma unroll
                for (int kk = 0; kk < kMmaKeys / 16; ++kk) {
                    uint32_t a[4];
                    a[0] = Pack<T>::two(s[2 * kk][0], s[2 * kk][1]);
                    a[1] = Pack<T>::two(s[2 * kk][2], s[2 * kk][3]);
                    a[2] = Pack<T>::two(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                    a[3] = Pack<T>::two(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
                    for (int j = 0; j < kDim / 16; ++j) {
                        uint32_t bf[4];
                        ldsm_x4_t(bf, vt + (16 * kk + (lane % 8) + 8 * ((lane / 8) % 2)) * kMmaPad + 16 * j + 8 * (lane / 16));
                        Mma<T>::m16n8k16(o[2 * j], a, bf);
                        Mma<T>::m16n8k16(o[2 * j + 1], a, bf + 2);
                    }
                }
                stage ^= 1;
            }
            cp_async_wait_all(); /* a row with no valid tile left its Q load in flight */
            float inv0, inv1;
            sm.finish(inv0, inv1);
            store_rows<T, kDim>(p, b, h, qb, ntargets, it.w, c0 - qstart + warp * 16 + g, qend - qstart,
                                &o[0][0], inv0, inv1, c);
            __syncthreads();
        }
    }
}

} // namespace calib_cuda_detail
