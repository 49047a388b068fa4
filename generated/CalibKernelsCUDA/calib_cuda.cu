/* calib_cuda.cu: copied by calibc from kernels/cuda/calib_cuda.cu; do not edit, regenerate with `calibc compile`.
 * source: masks.json (sha256 5316e5d337ee81292d6f227e0e808540b12c1f531d4a31c8d073957788b8e284), model example-video-dit
 * shape: tokens 2100, head_dim 64, block 64 (33 blocks per side), 3 steps x 2 layers x 4 heads
 * passes: merge-runs, collapse-reuse, dedupe, reorder
 * plans: 5 unique for 24 (step, layer, head)
 */
/* calib_cuda.cu: calibc's attention kernels for Hopper GPUs (sm_90a), over the pooled tables of
 * calib_schedule.c (calib_internal.h beside this file). Copied verbatim by `calibc compile
 * --target cuda`; edit, build and test it as CUDA C++ (Tests/GPU).
 *
 * Work: one item per (batch, head, computed query block), listed per (step, layer) on the host
 * heaviest first in 16 cost classes (cost = kept key blocks of the block's row), heads together
 * within a class so concurrent CTAs share K and V in L2, and run by a persistent grid in snake
 * order (CTA c takes items c, 2G-1-c, 2G+c, ...). A computed block also writes its output
 * to every query block that reuses it; reused blocks are never computed.
 *
 * Two kernels:
 *  - wgmma: CALIB_BLOCK == 128 and head_dim 64 or 128. One producer warp loads Q, K and V tiles
 *    with the bulk tensor copy engine (TMA, 128-byte swizzle) into a three-stage ring guarded by
 *    mbarriers; two consumer warpgroups of 64 query rows each compute S = Q Kᵀ (wgmma, operands in
 *    shared memory), the online softmax in registers and O += P V (wgmma, P from registers),
 *    taking turns at the tensor cores (ping-pong) so one's softmax hides under the other's
 *    products. A block's output is stored while the next block's first Q Kᵀ runs.
 *    docs/gpu.md is the lab notebook (measurements, versions).
 *  - mma.sync: any block size and head_dim (multiple of 16, at most 256): FlashAttention-2 style,
 *    64 query rows on 4 warps, cp.async double buffering. The fallback, and the reference
 *    implementation the wgmma kernel is tested against.
 * No per-element mask except in a key tile that ends inside a block (only the partial last block
 * when CALIB_BLOCK is a multiple of the tile). */
#include <cuda_runtime.h>
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <map>
#include <mutex>
#include <type_traits>
#include <vector>

extern "C" {
#include "calib_internal.h"
}
#include "include/calib_cuda.h"

#if CALIB_HEAD_DIM % 16 != 0 || CALIB_HEAD_DIM > 256
#error "the CUDA target supports head_dim a multiple of 16, at most 256"
#endif

/* Device code; a named namespace, so the helpers a given shape leaves unused draw no warning. */
namespace calib_cuda_detail {

constexpr int kTokens = CALIB_TOKENS;
constexpr int kDim = CALIB_HEAD_DIM;
constexpr int kBlock = CALIB_BLOCK;
constexpr int kBlocks = CALIB_BLOCKS;

/* One work item: x = head | (kept key blocks << 12), y = query block | (reuse target count << 16),
 * z = pooled row (-1: every key block), w = offset of its targets in the targets array. */
struct Params {
    const int4 *items;
    const int32_t *targets;
    const int32_t *row_first;
    const uint16_t *spans;
    int64_t total;  /* items × batch */
    int32_t batch;
    int32_t out_vec16; /* out 16-byte aligned with strides multiples of 8: 16-byte stores */
    float scale_log2;
    const void *q, *k, *v;
    void *out;
    int64_t qs0, qs1, qs2, ks0, ks1, ks2, vs0, vs1, vs2, os0, os1, os2;
};

__device__ __forceinline__ int64_t item_index(int64_t round, int64_t grid, int64_t cta) {
    return round * grid + ((round & 1) ? grid - 1 - cta : cta);
}

__device__ __forceinline__ void row_spans(const Params &p, int row, int &first, int &last) {
    if (row < 0) { first = -1; last = 0; } else { first = p.row_first[row]; last = p.row_first[row + 1]; }
}
__device__ __forceinline__ void span_at(const Params &p, int i, int &lo, int &hi) {
    if (i < 0) { lo = 0; hi = kBlocks; } else { lo = p.spans[2 * i]; hi = p.spans[2 * i + 1]; }
}

template <typename T> struct Pack;
template <> struct Pack<__nv_bfloat16> {
    static __device__ __forceinline__ uint32_t two(float a, float b) {
        __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
        return *reinterpret_cast<uint32_t *>(&h);
    }
};
template <> struct Pack<__half> {
    static __device__ __forceinline__ uint32_t two(float a, float b) {
        __half2 h = __floats2half2_rn(a, b);
        return *reinterpret_cast<uint32_t *>(&h);
    }
};

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/* Stores the normalized rows of one thread (two rows, columns 8j + 2c .. +1) to the query block
 * and to each of its reuse targets. */
template <typename T, int NCOL>
__device__ __forceinline__ void store_rows(const Params &p, int b, int h, int qb, int ntargets, int toff,
                                           int rloc0, int rlimit, const float *o, float inv0, float inv1,
                                           int c) {
    T *out = static_cast<T *>(p.out);
    const int t0 = ntargets > 0 ? p.targets[toff] : 0;
    for (int t = -1; t < ntargets; ++t) {
        int blk = t < 0 ? qb : t == 0 ? t0 : p.targets[toff + t];
        int base = blk * kBlock;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            int rl = rloc0 + 8 * half;
            int r = base + rl;
            if (rl >= rlimit || r >= kTokens) continue;
            T *dst = out + (int64_t)b * p.os0 + (int64_t)r * p.os1 + (int64_t)h * p.os2 + 2 * c;
            float inv = half ? inv1 : inv0;
#pragma unroll
            for (int j = 0; j < NCOL / 8; ++j) {
                uint32_t v = Pack<T>::two(o[4 * j + 2 * half] * inv, o[4 * j + 2 * half + 1] * inv);
                *reinterpret_cast<uint32_t *>(dst + 8 * j) = v;
            }
        }
    }
}

/* The wgmma kernel's epilogue, in two steps so the stores can run under the next query block's
 * first product: pack_rows normalizes and packs a thread's two rows (pk[half * NCOL/8 + j] holds
 * columns 8j + 2c, +1), store_packed writes them to the block and its reuse targets — with 16-byte
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
    if (!p.out_vec16) {
        for (int t = -1; t < ntargets; ++t) {
            const int blk = t < 0 ? qb : t == 0 ? t0 : p.targets[toff + t];
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const int r = blk * kBlock + rloc0 + 8 * half;
                if (r >= kTokens) continue;
                T *dst = out + (int64_t)b * p.os0 + (int64_t)r * p.os1 + (int64_t)h * p.os2 + 2 * c;
#pragma unroll
                for (int j = 0; j < NCOL / 8; ++j) *reinterpret_cast<uint32_t *>(dst + 8 * j) = pk[half * (NCOL / 8) + j];
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
            for (int g = 0; g < G; ++g) *reinterpret_cast<uint4 *>(dst + 32 * g) = chunk[half][g];
        }
    }
}

__device__ __forceinline__ int4 load_item(const Params &p, int64_t idx, int &b) {
    if (p.batch == 1) { b = 0; return p.items[idx]; }
    b = (int)(idx % p.batch);
    return p.items[idx / p.batch];
}

/* ------------------------------------------------------------------------------------------ */
/* mma.sync kernel (sm_80+ instructions): 64 query rows per CTA, 16 per warp; key tiles of 64. */

constexpr int kMmaRows = 64;
constexpr int kMmaKeys = 64;
constexpr int kMmaPad = kDim + 8; /* elements per shared-memory row: 16 bytes of padding */

__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }

__device__ __forceinline__ void ldsm_x4(uint32_t *r, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t *r, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}

template <typename T> __device__ __forceinline__ void mma16816(float *c, const uint32_t *a, const uint32_t *b);
template <> __device__ __forceinline__ void mma16816<__nv_bfloat16>(float *c, const uint32_t *a, const uint32_t *b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <> __device__ __forceinline__ void mma16816<__half>(float *c, const uint32_t *a, const uint32_t *b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

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

/* Walks the key tiles of a row: spans of blocks, each cut into tiles of kMmaKeys tokens. */
struct TileWalk {
    int span, span_end, k0, kend;
    __device__ __forceinline__ bool start(const Params &p, int row) {
        row_spans(p, row, span, span_end);
        if (span >= span_end && span >= 0) return false;
        return open(p);
    }
    __device__ __forceinline__ bool open(const Params &p) {
        int lo, hi;
        span_at(p, span, lo, hi);
        k0 = lo * kBlock;
        kend = min(hi * kBlock, kTokens);
        return true;
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
__global__ void __launch_bounds__(128) calib_mma_kernel(const Params p) {
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
            walk.start(p, it.z);
            load_tile(qs, qh, p.qs1, c0, qend, tid);
            load_tile(ks, kh, p.ks1, walk.k0, walk.kend, tid);
            load_tile(vs, vh, p.vs1, walk.k0, walk.kend, tid);
            cp_async_commit();
            uint32_t qf[kDim / 16][4];
            float o[kDim / 8][4];
#pragma unroll
            for (int j = 0; j < kDim / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
            float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
            int stage = 0;
            bool first = true;
            for (bool more = true; more;) {
                const int k0 = walk.k0, kn = min(kMmaKeys, walk.kend - walk.k0);
                cp_async_wait_all();
                __syncthreads();
                more = walk.next(p);
                if (more) {
                    T *kd = ks + (stage ^ 1) * kMmaKeys * kMmaPad, *vd = vs + (stage ^ 1) * kMmaKeys * kMmaPad;
                    load_tile(kd, kh, p.ks1, walk.k0, walk.kend, tid);
                    load_tile(vd, vh, p.vs1, walk.k0, walk.kend, tid);
                    cp_async_commit();
                }
                (void)k0;
                if (first) {
#pragma unroll
                    for (int kk = 0; kk < kDim / 16; ++kk)
                        ldsm_x4(qf[kk], qs + (warp * 16 + (lane % 8) + 8 * ((lane / 8) % 2)) * kMmaPad + 16 * kk + 8 * (lane / 16));
                    first = false;
                }
                const T *kt = ks + stage * kMmaKeys * kMmaPad;
                const T *vt = vs + stage * kMmaKeys * kMmaPad;
                float s[kMmaKeys / 8][4];
#pragma unroll
                for (int j = 0; j < kMmaKeys / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
                for (int kk = 0; kk < kDim / 16; ++kk) {
#pragma unroll
                    for (int j = 0; j < kMmaKeys / 16; ++j) {
                        uint32_t bf[4];
                        ldsm_x4(bf, kt + (16 * j + (lane % 8) + 8 * (lane / 16)) * kMmaPad + 16 * kk + 8 * ((lane / 8) % 2));
                        mma16816<T>(s[2 * j], qf[kk], bf);
                        mma16816<T>(s[2 * j + 1], qf[kk], bf + 2);
                    }
                }
                if (kn < kMmaKeys) {
#pragma unroll
                    for (int j = 0; j < kMmaKeys / 8; ++j)
#pragma unroll
                        for (int e = 0; e < 4; ++e)
                            if (8 * j + 2 * c + (e & 1) >= kn) s[j][e] = -INFINITY;
                }
                float x0 = -INFINITY, x1 = -INFINITY;
#pragma unroll
                for (int j = 0; j < kMmaKeys / 8; ++j) {
                    x0 = fmaxf(x0, fmaxf(s[j][0], s[j][1]));
                    x1 = fmaxf(x1, fmaxf(s[j][2], s[j][3]));
                }
                x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 1));
                x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 2));
                x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 1));
                x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 2));
                const float n0 = fmaxf(m0, x0 * p.scale_log2), n1 = fmaxf(m1, x1 * p.scale_log2);
                const float f0 = fast_exp2(m0 - n0), f1 = fast_exp2(m1 - n1);
                m0 = n0;
                m1 = n1;
                float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
                for (int j = 0; j < kMmaKeys / 8; ++j) {
                    s[j][0] = fast_exp2(fmaf(s[j][0], p.scale_log2, -n0));
                    s[j][1] = fast_exp2(fmaf(s[j][1], p.scale_log2, -n0));
                    s[j][2] = fast_exp2(fmaf(s[j][2], p.scale_log2, -n1));
                    s[j][3] = fast_exp2(fmaf(s[j][3], p.scale_log2, -n1));
                    sum0 += s[j][0] + s[j][1];
                    sum1 += s[j][2] + s[j][3];
                }
                l0 = l0 * f0 + sum0;
                l1 = l1 * f1 + sum1;
#pragma unroll
                for (int j = 0; j < kDim / 8; ++j) {
                    o[j][0] *= f0; o[j][1] *= f0; o[j][2] *= f1; o[j][3] *= f1;
                }
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
                        mma16816<T>(o[2 * j], a, bf);
                        mma16816<T>(o[2 * j + 1], a, bf + 2);
                    }
                }
                stage ^= 1;
            }
            l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
            l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
            l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
            l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
            store_rows<T, kDim>(p, b, h, qb, ntargets, it.w, c0 - qstart + warp * 16 + g, qend - qstart,
                                &o[0][0], 1.f / l0, 1.f / l1, c);
            __syncthreads();
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* wgmma kernel (sm_90a): CALIB_BLOCK == 128, head_dim 64 or 128. */

#ifdef CALIB_CUDA_TRACE /* timestamps of CTA 0's first items, for docs/gpu.md (Tests/GPU/trace.py) */
__device__ long long calib_trace[1024];
#define CALIB_MARK(slot, cond) do { if ((cond) && blockIdx.x == 0) calib_trace[slot] = clock64(); } while (0)
#else
#define CALIB_MARK(slot, cond) do { } while (0)
#endif

#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define CALIB_NO_WGMMA 1 /* device pass for another target: the wgmma kernel has an empty body */
#endif

constexpr bool kWgmmaShape = kBlock == 128 && (kDim == 64 || kDim == 128);
constexpr int kStages = 3; /* K/V ring depth: a stage frees only after both warpgroups' P V */
constexpr int kTileBytes = 128 * kDim * 2; /* one 128-row tile of Q, K or V */
constexpr int kHalfBytes = 128 * 128;      /* 128 rows × 64 columns: one swizzled TMA box */
constexpr int kWgSmem = (1 + 2 * kStages) * kTileBytes + 256 /* barriers */ + 1024 /* alignment */;

#ifndef CALIB_NO_WGMMA
__device__ __forceinline__ void wgmma_ss_n128_bf16(float *d, uint64_t da, uint64_t db, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_rs_n64_bf16(float *d, const uint32_t *a, uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));
}

__device__ __forceinline__ void wgmma_rs_n128_bf16(float *d, const uint32_t *a, uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));
}

__device__ __forceinline__ void wgmma_ss_n128_f16(float *d, uint64_t da, uint64_t db, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_rs_n64_f16(float *d, const uint32_t *a, uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));
}

__device__ __forceinline__ void wgmma_rs_n128_f16(float *d, const uint32_t *a, uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));
}
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done) : "r"(bar), "r"(parity) : "memory");
    } while (!done);
}
__device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap *map, uint32_t bar, int c0, int c1, int c2, int c3) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n"
                 ::"r"(dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
                 : "memory");
}
/* Named barriers 1 and 2 over the 256 consumer threads. */
__device__ __forceinline__ void named_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void named_arrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
/* Pins accumulator registers at this point, so the compiler moves no use of them across the
 * asynchronous matrix instructions that write them. */
template <int N> __device__ __forceinline__ void fence_regs(float *r) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

/* Shared-memory matrix descriptor, 128-byte swizzle: start address, leading and stride byte
 * offsets (all >> 4). */
__device__ __forceinline__ uint64_t gmma_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((addr & 0x3ffff) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32) |
           (1ull << 62);
}

template <typename T> __device__ __forceinline__ void wg_qk(float *s, uint64_t da, uint64_t db, int scale_d) {
    if constexpr (std::is_same<T, __nv_bfloat16>::value) wgmma_ss_n128_bf16(s, da, db, scale_d);
    else wgmma_ss_n128_f16(s, da, db, scale_d);
}
template <typename T> __device__ __forceinline__ void wg_pv(float *o, const uint32_t *a, uint64_t db) {
    if constexpr (std::is_same<T, __nv_bfloat16>::value) {
        if constexpr (kDim == 128) wgmma_rs_n128_bf16(o, a, db); else wgmma_rs_n64_bf16(o, a, db);
    } else {
        if constexpr (kDim == 128) wgmma_rs_n128_f16(o, a, db); else wgmma_rs_n64_f16(o, a, db);
    }
}
#endif /* CALIB_NO_WGMMA */

/* 384 threads: warpgroup 0 is the producer (one thread issues every copy), warpgroups 1 and 2
 * compute query rows 0-63 and 64-127 of each item. */
template <typename T>
__global__ void __launch_bounds__(384, 1)
calib_wgmma_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                   const __grid_constant__ CUtensorMap tv, const Params p) {
#if !defined(CALIB_NO_WGMMA)
    if constexpr (kWgmmaShape) {
    extern __shared__ unsigned char smem_raw[];
    const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;
    const uint32_t sq = base;                         /* Q: kDim/64 boxes of 128 rows × 128 bytes */
    const uint32_t sk = base + kTileBytes;            /* K stages */
    const uint32_t sv = base + (1 + kStages) * kTileBytes;
    const uint32_t bars = base + (1 + 2 * kStages) * kTileBytes;
    const uint32_t q_full = bars, q_empty = bars + 8;
    auto k_full = [&](int s) { return bars + 16 + 8 * s; };
    auto v_full = [&](int s) { return bars + 16 + 8 * kStages + 8 * s; };
    auto kv_empty = [&](int s) { return bars + 16 + 16 * kStages + 8 * s; };
    auto kb_slot = [&](int s) { return bars + 128 + 4 * s; }; /* the key block of each stage */
    const int tid = threadIdx.x, wg = tid / 128;
    if (tid == 0) {
        mbar_init(q_full, 1);
        mbar_init(q_empty, 256);
        for (int s = 0; s < kStages; ++s) {
            mbar_init(k_full(s), 1);
            mbar_init(v_full(s), 1);
            mbar_init(kv_empty(s), 256);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
        if (tid == 0) {
            uint32_t kv_it = 0, q_it = 0;
            int64_t idx = item_index(0, gridDim.x, blockIdx.x);
            int b = 0, nb = 0;
            int4 it = idx < p.total ? load_item(p, idx, b) : make_int4(0, 0, 0, 0);
            for (int64_t round = 0; idx < p.total; ++round) {
                const int64_t nidx = item_index(round + 1, gridDim.x, blockIdx.x); /* the next item, read early */
                const int4 nit = nidx < p.total ? load_item(p, nidx, nb) : it;
                const int h = it.x & 0xfff, qb = it.y & 0xffff;
                CALIB_MARK(512 + round * 4, round < 64);
                mbar_wait(q_empty, (q_it & 1) ^ 1);
                CALIB_MARK(512 + round * 4 + 1, round < 64);
                mbar_expect_tx(q_full, kTileBytes);
#pragma unroll
                for (int x = 0; x < kDim / 64; ++x) tma_load(sq + x * kHalfBytes, &tq, q_full, 64 * x, qb * 128, h, b);
                ++q_it;
                int first, last;
                row_spans(p, it.z, first, last);
                for (int i = first; i < last || i == first; ++i) {
                    int lo, hi;
                    span_at(p, i, lo, hi);
                    for (int kb = lo; kb < hi; ++kb) {
                        const int s = kv_it % kStages;
                        mbar_wait(kv_empty(s), ((kv_it / kStages) & 1) ^ 1);
                        asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(kb_slot(s)), "r"(kb) : "memory");
                        mbar_expect_tx(k_full(s), kTileBytes);
#pragma unroll
                        for (int x = 0; x < kDim / 64; ++x)
                            tma_load(sk + s * kTileBytes + x * kHalfBytes, &tk, k_full(s), 64 * x, kb * 128, h, b);
                        mbar_expect_tx(v_full(s), kTileBytes);
#pragma unroll
                        for (int x = 0; x < kDim / 64; ++x)
                            tma_load(sv + s * kTileBytes + x * kHalfBytes, &tv, v_full(s), 64 * x, kb * 128, h, b);
                        ++kv_it;
                    }
                    if (i < 0) break;
                }
                idx = nidx;
                it = nit;
                b = nb;
            }
        }
    } else {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n");
        const int t = tid - 128 * wg, w = t / 32, lane = t % 32, c = lane % 4;
        const int rloc0 = 64 * (wg - 1) + 16 * w + lane / 4; /* this thread's rows: rloc0, rloc0 + 8 */
        /* Ping-pong: the two warpgroups take turns at the tensor cores (named barriers 1 and 2),
         * so one's softmax runs under the other's matrix products. Warpgroup 1 goes first. */
        const int me = wg, other = 3 - wg;
        if (wg == 2) named_arrive(1);
        uint32_t kv_it = 0, q_it = 0;
        constexpr int kPartial = kTokens % 128;
        int64_t idx = item_index(0, gridDim.x, blockIdx.x);
        int b = 0, nb = 0;
        int4 it = idx < p.total ? load_item(p, idx, b) : make_int4(0, 0, 0, 0);
        /* The previous query block's packed output, stored under this block's first product. */
        uint32_t pk[kDim / 4];
        int pv_b = -1, pv_h = 0, pv_qb = 0, pv_nt = 0, pv_toff = 0;
        for (int64_t round = 0; idx < p.total; ++round) {
            const int64_t nidx = item_index(round + 1, gridDim.x, blockIdx.x); /* the next item, read early */
            const int4 nit = nidx < p.total ? load_item(p, nidx, nb) : it;
            const int h = it.x & 0xfff, qb = it.y & 0xffff, ntargets = (unsigned)it.y >> 16;
            const int nkb = it.x >> 12; /* the consumers never read the spans: the producer passes each tile's key block */
            float o[kDim / 2];
#pragma unroll
            for (int j = 0; j < kDim / 2; ++j) o[j] = 0.f;
            float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
            uint32_t pa[32];
            int sp = 0;
            uint32_t php = 0;
            CALIB_MARK((wg - 1) * 256 + round * 8, t == 0 && round < 32);
            mbar_wait(q_full, q_it & 1);
            CALIB_MARK((wg - 1) * 256 + round * 8 + 1, t == 0 && round < 32);
            ++q_it;
            /* Each turn issues O += P(j-1) V(j-1) and S(j) = Q K(j)ᵀ together, then the softmax
             * of S(j) runs while the other warpgroup has the tensor cores. The first tile is
             * peeled: its turn has no P V, and the previous block's stores run under its Q K(0)ᵀ. */
            float sc[64];
            auto issue_qk = [&](int s) {
#pragma unroll
                for (int kk = 0; kk < kDim / 16; ++kk) {
                    const uint32_t off = (kk / 4) * kHalfBytes + (kk % 4) * 32;
                    wg_qk<T>(sc, gmma_desc(sq + off + (wg - 1) * 64 * 128, 16, 1024),
                             gmma_desc(sk + s * kTileBytes + off, 16, 1024), kk > 0);
                }
            };
            /* Online softmax of the tile in sc: rescales o, leaves P in pa. */
            auto softmax = [&](int kb) {
                if (kPartial != 0 && kb == kBlocks - 1) {
#pragma unroll
                    for (int j = 0; j < 16; ++j)
#pragma unroll
                        for (int e = 0; e < 4; ++e)
                            if (8 * j + 2 * c + (e & 1) >= kPartial) sc[4 * j + e] = -INFINITY;
                }
                float x0 = -INFINITY, x1 = -INFINITY;
#pragma unroll
                for (int j = 0; j < 16; ++j) {
                    x0 = fmaxf(x0, fmaxf(sc[4 * j], sc[4 * j + 1]));
                    x1 = fmaxf(x1, fmaxf(sc[4 * j + 2], sc[4 * j + 3]));
                }
                x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 1));
                x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 2));
                x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 1));
                x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 2));
                const float n0 = fmaxf(m0, x0 * p.scale_log2), n1 = fmaxf(m1, x1 * p.scale_log2);
                const float f0 = fast_exp2(m0 - n0), f1 = fast_exp2(m1 - n1);
                m0 = n0;
                m1 = n1;
                float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
                for (int j = 0; j < 16; ++j) {
                    const float e0 = fast_exp2(fmaf(sc[4 * j], p.scale_log2, -n0));
                    const float e1 = fast_exp2(fmaf(sc[4 * j + 1], p.scale_log2, -n0));
                    const float e2 = fast_exp2(fmaf(sc[4 * j + 2], p.scale_log2, -n1));
                    const float e3 = fast_exp2(fmaf(sc[4 * j + 3], p.scale_log2, -n1));
                    sum0 += e0 + e1;
                    sum1 += e2 + e3;
                    pa[2 * j] = Pack<T>::two(e0, e1);
                    pa[2 * j + 1] = Pack<T>::two(e2, e3);
                }
                l0 = l0 * f0 + sum0;
                l1 = l1 * f1 + sum1;
#pragma unroll
                for (int j = 0; j < kDim / 8; ++j) {
                    o[4 * j] *= f0; o[4 * j + 1] *= f0; o[4 * j + 2] *= f1; o[4 * j + 3] *= f1;
                }
            };
            {
                const int s = kv_it % kStages;
                const uint32_t ph = (kv_it / kStages) & 1;
                mbar_wait(k_full(s), ph);
                int kb;
                asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(kb) : "r"(kb_slot(s)) : "memory");
                named_sync(me);
                wgmma_fence();
                issue_qk(s);
                wgmma_commit();
                named_arrive(other);
                if (pv_b >= 0) store_packed<T, kDim>(p, pv_b, pv_h, pv_qb, pv_nt, pv_toff, rloc0, pk, c);
                pv_b = -1;
                wgmma_wait0();
                fence_regs<64>(sc);
                CALIB_MARK((wg - 1) * 256 + round * 8 + 2, t == 0 && round < 32);
                if (nkb == 1) mbar_arrive(q_empty);
                softmax(kb);
                sp = s;
                php = ph;
                ++kv_it;
            }
            for (int j = 1; j < nkb; ++j) {
                const int s = kv_it % kStages;
                const uint32_t ph = (kv_it / kStages) & 1;
                mbar_wait(k_full(s), ph);
                int kb;
                asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(kb) : "r"(kb_slot(s)) : "memory");
                mbar_wait(v_full(sp), php);
                named_sync(me);
                fence_regs<kDim / 2>(o);
                wgmma_fence();
#pragma unroll
                for (int kk = 0; kk < 8; ++kk)
                    wg_pv<T>(o, pa + 4 * kk, gmma_desc(sv + sp * kTileBytes + kk * 2048, kHalfBytes, 1024));
                issue_qk(s);
                wgmma_commit();
                named_arrive(other);
                wgmma_wait0();
                fence_regs<64>(sc);
                fence_regs<kDim / 2>(o);
                mbar_arrive(kv_empty(sp));
                if (j + 1 == nkb) mbar_arrive(q_empty);
                softmax(kb);
                sp = s;
                php = ph;
                ++kv_it;
            }
            /* The last tile's P V. */
            mbar_wait(v_full(sp), php);
            named_sync(me);
            fence_regs<kDim / 2>(o);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < 8; ++kk)
                wg_pv<T>(o, pa + 4 * kk, gmma_desc(sv + sp * kTileBytes + kk * 2048, kHalfBytes, 1024));
            wgmma_commit();
            named_arrive(other);
            wgmma_wait0();
            fence_regs<kDim / 2>(o);
            mbar_arrive(kv_empty(sp));
            CALIB_MARK((wg - 1) * 256 + round * 8 + 3, t == 0 && round < 32);
            l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
            l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
            l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
            l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
            pack_rows<T, kDim>(o, 1.f / l0, 1.f / l1, pk);
            pv_b = b; pv_h = h; pv_qb = qb; pv_nt = ntargets; pv_toff = it.w;
            CALIB_MARK((wg - 1) * 256 + round * 8 + 4, t == 0 && round < 32);
            idx = nidx;
            it = nit;
            b = nb;
        }
        if (pv_b >= 0) store_packed<T, kDim>(p, pv_b, pv_h, pv_qb, pv_nt, pv_toff, rloc0, pk, c);
        if (wg == 1) named_sync(1); /* takes warpgroup 2's last turn, so no arrival is left over */
    }
    }
#endif
}

} // namespace calib_cuda_detail

/* ------------------------------------------------------------------------------------------ */
/* Host side: checks, per-device tables, launches. */

namespace {
using namespace calib_cuda_detail;

struct LayerList {
    int4 *items = nullptr;
    int32_t *targets = nullptr;
    int64_t count = 0;
};

struct DeviceState {
    int sms = 0;
    int mma_ctas_per_sm = 1;
    int32_t *row_first = nullptr;
    uint16_t *spans = nullptr;
    std::map<int64_t, LayerList> lists; /* key: step_index * layers + layer, or -1 for dense */
};

std::mutex g_mutex;
std::map<int, DeviceState> g_devices;
PFN_cuTensorMapEncodeTiled_v12000 g_encode = nullptr;
bool g_encode_tried = false;

template <typename X> int upload(X **dst, const X *src, size_t n) {
    if (n == 0) n = 1;
    if (cudaMalloc(reinterpret_cast<void **>(dst), n * sizeof(X)) != cudaSuccess) return CALIB_CUDA_ERR_NO_MEMORY;
    if (src && cudaMemcpy(*dst, src, n * sizeof(X), cudaMemcpyHostToDevice) != cudaSuccess) return CALIB_CUDA_ERR_CUDA;
    return CALIB_CUDA_OK;
}

int row_cost(int row) {
    if (row < 0) return kBlocks;
    int cost = 0;
    for (int i = calib_row_first[row]; i < calib_row_first[row + 1]; ++i) cost += calib_spans[2 * i + 1] - calib_spans[2 * i];
    return cost;
}

/* The work list of one (step, layer) (dense when step_index < 0): every computed query block of
 * every head, heaviest first (cost: kept key blocks; a reuse target's stores count 1/16). */
int build_list(int step_index, int layer, LayerList &out) {
    struct Entry { int cost; int4 item; };
    std::vector<Entry> entries;
    std::vector<int32_t> targets;
    entries.reserve((size_t)CALIB_HEADS * kBlocks);
    for (int h = 0; h < CALIB_HEADS; ++h) {
        if (step_index < 0) {
            for (int qb = 0; qb < kBlocks; ++qb) entries.push_back({kBlocks, make_int4(h | (kBlocks << 12), qb, -1, 0)});
            continue;
        }
        const calib_plan &plan = calib_plans[calib_dispatch[((int64_t)step_index * CALIB_LAYERS + layer) * CALIB_HEADS + h]];
        std::vector<char> reused(kBlocks, 0);
        for (int i = 0; i < plan.reuse_count; ++i) reused[plan.reuse[2 * i + 1]] = 1;
        int r = 0; /* reuse pairs are sorted by source */
        for (int qb = 0; qb < kBlocks; ++qb) {
            if (reused[qb]) continue;
            while (r < plan.reuse_count && plan.reuse[2 * r] < qb) ++r;
            const int toff = (int)targets.size();
            int nt = 0;
            for (; r < plan.reuse_count && plan.reuse[2 * r] == qb; ++r, ++nt) targets.push_back(plan.reuse[2 * r + 1]);
            const int row = (int)plan.rows[qb];
            const int cost = row_cost(row);
            entries.push_back({cost * 16 + nt, make_int4(h | (cost << 12), qb | (nt << 16), row, toff)});
        }
    }
    /* Heaviest first, in 16 cost classes; within a class heads stay together (the entries are in
     * head order), so the CTAs running at one time share their heads' K and V in L2. */
    int max_cost = 1;
    for (const Entry &e : entries) max_cost = std::max(max_cost, e.cost);
    for (Entry &e : entries) e.cost = (int)((int64_t)e.cost * 16 / (max_cost + 1));
    std::stable_sort(entries.begin(), entries.end(), [](const Entry &a, const Entry &b) { return a.cost > b.cost; });
    std::vector<int4> items(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) items[i] = entries[i].item;
    out.count = (int64_t)items.size();
    int st = upload(&out.items, items.data(), items.size());
    if (st == CALIB_CUDA_OK) st = upload(&out.targets, targets.empty() ? nullptr : targets.data(), targets.size());
    return st;
}

/* The device state and the list for (step_index, layer), created on first use. */
int prepare(int step_index, int layer, DeviceState **state, const LayerList **list) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return CALIB_CUDA_ERR_CUDA;
    std::lock_guard<std::mutex> lock(g_mutex);
    auto found = g_devices.find(dev);
    if (found == g_devices.end()) {
        DeviceState s;
        if (cudaDeviceGetAttribute(&s.sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return CALIB_CUDA_ERR_CUDA;
        /* The tables give no row count: the rows in use are those the plans' computed blocks name. */
        int nrows = 0;
        for (int pi = 0; pi < CALIB_PLANS; ++pi) {
            std::vector<char> reused(kBlocks, 0);
            for (int i = 0; i < calib_plans[pi].reuse_count; ++i) reused[calib_plans[pi].reuse[2 * i + 1]] = 1;
            for (int qb = 0; qb < kBlocks; ++qb)
                if (!reused[qb]) nrows = std::max(nrows, (int)calib_plans[pi].rows[qb] + 1);
        }
        int st = upload(&s.row_first, calib_row_first, (size_t)nrows + 1);
        if (st == CALIB_CUDA_OK) st = upload(&s.spans, calib_spans, (size_t)calib_row_first[nrows] * 2);
        if (st != CALIB_CUDA_OK) return st;
        const int mma_smem = (kMmaRows + 4 * kMmaKeys) * kMmaPad * 2;
        cudaFuncSetAttribute(calib_mma_kernel<__nv_bfloat16>, cudaFuncAttributeMaxDynamicSharedMemorySize, mma_smem);
        cudaFuncSetAttribute(calib_mma_kernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, mma_smem);
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&s.mma_ctas_per_sm, calib_mma_kernel<__nv_bfloat16>, 128, mma_smem);
        if (s.mma_ctas_per_sm < 1) s.mma_ctas_per_sm = 1;
        if (kWgmmaShape) {
            cudaFuncSetAttribute(calib_wgmma_kernel<__nv_bfloat16>, cudaFuncAttributeMaxDynamicSharedMemorySize, kWgSmem);
            cudaFuncSetAttribute(calib_wgmma_kernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, kWgSmem);
        }
        cudaGetLastError();
        found = g_devices.emplace(dev, std::move(s)).first;
    }
    DeviceState &s = found->second;
    const int64_t key = step_index < 0 ? -1 : (int64_t)step_index * CALIB_LAYERS + layer;
    auto l = s.lists.find(key);
    if (l == s.lists.end()) {
        LayerList list;
        int st = build_list(step_index, layer, list);
        if (st != CALIB_CUDA_OK) return st;
        l = s.lists.emplace(key, list).first;
    }
    *state = &s;
    *list = &l->second;
    return CALIB_CUDA_OK;
}

bool want_mma() {
    const char *e = getenv("CALIB_CUDA_KERNEL");
    return e && strcmp(e, "mma") == 0;
}

PFN_cuTensorMapEncodeTiled_v12000 encoder() {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!g_encode_tried) {
        g_encode_tried = true;
        void *fn = nullptr;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) == cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            g_encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
        cudaGetLastError();
    }
    return g_encode;
}

/* A tensor map over (d, s, h, b) of one input, boxes of 64 columns × 128 rows, 128-byte swizzle. */
bool make_map(CUtensorMap *map, int32_t dtype, const void *ptr, int64_t batch, const int64_t *st) {
    PFN_cuTensorMapEncodeTiled_v12000 enc = encoder();
    if (!enc) return false;
    cuuint64_t dims[4] = {(cuuint64_t)kDim, (cuuint64_t)kTokens, (cuuint64_t)CALIB_HEADS, (cuuint64_t)batch};
    cuuint64_t strides[3] = {(cuuint64_t)st[1] * 2, (cuuint64_t)st[2] * 2, (cuuint64_t)st[0] * 2};
    for (int i = 0; i < 3; ++i)
        if (strides[i] == 0 || strides[i] >= (1ull << 40)) return false;
    cuuint32_t box[4] = {64, 128, 1, 1};
    cuuint32_t estr[4] = {1, 1, 1, 1};
    CUresult r = enc(map, dtype == CALIB_CUDA_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
                     const_cast<void *>(ptr), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                     CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS;
}

bool mul_add(int64_t a, int64_t b, int64_t &acc) {
    int64_t m;
    if (__builtin_mul_overflow(a, b, &m)) return false;
    return !__builtin_add_overflow(acc, m, &acc);
}

/* Strides non-negative, the largest element offset (and its byte offset) representable. */
bool strides_ok(const int64_t *s, int64_t batch, int64_t align_elems) {
    int64_t last = kDim - 1;
    for (int i = 0; i < 3; ++i)
        if (s[i] < 0 || s[i] % align_elems != 0) return false;
    if (!mul_add(batch - 1, s[0], last) || !mul_add(kTokens - 1, s[1], last) || !mul_add(CALIB_HEADS - 1, s[2], last))
        return false;
    return last <= INT64_MAX / 2;
}

/* No two (b, s, h) rows of out overlap. */
bool disjoint(const int64_t *s, int64_t batch) {
    struct Dim { int64_t stride, extent; } d[3] = {{s[0], batch}, {s[1], kTokens}, {s[2], CALIB_HEADS}};
    std::sort(d, d + 3, [](const Dim &a, const Dim &b) { return a.stride < b.stride; });
    int64_t span = kDim;
    for (const Dim &x : d) {
        if (x.extent <= 1) continue;
        if (x.stride < span) return false;
        span = x.stride * (x.extent - 1) + span;
    }
    return true;
}

int launch(int step_index, int layer, int32_t dtype, const void *q, const void *k, const void *v, void *out,
           int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim, const int64_t *qs, const int64_t *ks,
           const int64_t *vs, const int64_t *os, void *stream) {
    if (!q || !k || !v || !out || !qs || !ks || !vs || !os) return CALIB_CUDA_ERR_ARGUMENT;
    if (dtype != CALIB_CUDA_BF16 && dtype != CALIB_CUDA_F16) return CALIB_CUDA_ERR_ARGUMENT;
    if (tokens != kTokens || heads != CALIB_HEADS || head_dim != kDim) return CALIB_CUDA_ERR_SHAPE;
    if (batch < 1 || batch > 65535) return CALIB_CUDA_ERR_ARGUMENT;
    if ((uintptr_t)q % 16 || (uintptr_t)k % 16 || (uintptr_t)v % 16 || (uintptr_t)out % 4) return CALIB_CUDA_ERR_ARGUMENT;
    if (!strides_ok(qs, batch, 8) || !strides_ok(ks, batch, 8) || !strides_ok(vs, batch, 8) || !strides_ok(os, batch, 2) ||
        !disjoint(os, batch))
        return CALIB_CUDA_ERR_ARGUMENT;
    DeviceState *state;
    const LayerList *list;
    int st = prepare(step_index, layer, &state, &list);
    if (st != CALIB_CUDA_OK) return st;
    Params p;
    p.items = list->items;
    p.targets = list->targets;
    p.row_first = state->row_first;
    p.spans = state->spans;
    p.total = list->count * batch;
    p.batch = (int32_t)batch;
    p.scale_log2 = 1.4426950408889634f / sqrtf((float)kDim);
    p.q = q; p.k = k; p.v = v; p.out = out;
    p.qs0 = qs[0]; p.qs1 = qs[1]; p.qs2 = qs[2];
    p.ks0 = ks[0]; p.ks1 = ks[1]; p.ks2 = ks[2];
    p.vs0 = vs[0]; p.vs1 = vs[1]; p.vs2 = vs[2];
    p.os0 = os[0]; p.os1 = os[1]; p.os2 = os[2];
    const char *store = getenv("CALIB_CUDA_STORE"); /* "4": the 4-byte stores, for comparisons */
    p.out_vec16 = (uintptr_t)out % 16 == 0 && os[0] % 8 == 0 && os[1] % 8 == 0 && os[2] % 8 == 0 &&
                  !(store && strcmp(store, "4") == 0);
    if (p.total == 0) return CALIB_CUDA_OK;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    bool wgmma = kWgmmaShape && !want_mma();
    CUtensorMap tq, tk, tv;
    if (wgmma) wgmma = make_map(&tq, dtype, q, batch, qs) && make_map(&tk, dtype, k, batch, ks) && make_map(&tv, dtype, v, batch, vs);
    if (wgmma) {
        const int grid = (int)std::min<int64_t>(state->sms, p.total);
        if (dtype == CALIB_CUDA_BF16) calib_wgmma_kernel<__nv_bfloat16><<<grid, 384, kWgSmem, s>>>(tq, tk, tv, p);
        else calib_wgmma_kernel<__half><<<grid, 384, kWgSmem, s>>>(tq, tk, tv, p);
    } else {
        const int smem = (kMmaRows + 4 * kMmaKeys) * kMmaPad * 2;
        const int grid = (int)std::min<int64_t>((int64_t)state->sms * state->mma_ctas_per_sm, p.total);
        if (dtype == CALIB_CUDA_BF16) calib_mma_kernel<__nv_bfloat16><<<grid, 128, smem, s>>>(p);
        else calib_mma_kernel<__half><<<grid, 128, smem, s>>>(p);
    }
    return cudaGetLastError() == cudaSuccess ? CALIB_CUDA_OK : CALIB_CUDA_ERR_CUDA;
}

const calib_cuda_info g_info = {CALIB_CUDA_ABI_VERSION, CALIB_TOKENS, CALIB_HEAD_DIM, CALIB_BLOCK, CALIB_LAYERS,
                                CALIB_HEADS, CALIB_PLANS, CALIB_STEPS, calib_steps, calib_model, calib_mask_sha256};

} // namespace

extern "C" {

const calib_cuda_info *calib_cuda_get_info(void) { return &g_info; }

int calib_cuda_attention_layer(int32_t step, int32_t layer, int32_t dtype, const void *q, const void *k, const void *v,
                               void *out, int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                               const int64_t q_strides[3], const int64_t k_strides[3], const int64_t v_strides[3],
                               const int64_t out_strides[3], void *stream) {
    int step_index = -1;
    for (int i = 0; i < CALIB_STEPS; ++i)
        if (calib_steps[i] == step) step_index = i;
    if (!q || !k || !v || !out || !q_strides || !k_strides || !v_strides || !out_strides) return CALIB_CUDA_ERR_ARGUMENT;
    if (dtype != CALIB_CUDA_BF16 && dtype != CALIB_CUDA_F16) return CALIB_CUDA_ERR_ARGUMENT;
    if (tokens != kTokens || heads != CALIB_HEADS || head_dim != kDim) return CALIB_CUDA_ERR_SHAPE;
    if (step_index < 0 || layer < 0 || layer >= CALIB_LAYERS) return CALIB_CUDA_ERR_NO_PLAN;
    return launch(step_index, layer, dtype, q, k, v, out, batch, tokens, heads, head_dim, q_strides, k_strides, v_strides,
                  out_strides, stream);
}

int calib_cuda_dense_attention_layer(int32_t dtype, const void *q, const void *k, const void *v, void *out, int64_t batch,
                                     int64_t tokens, int64_t heads, int64_t head_dim, const int64_t q_strides[3],
                                     const int64_t k_strides[3], const int64_t v_strides[3], const int64_t out_strides[3],
                                     void *stream) {
    return launch(-1, 0, dtype, q, k, v, out, batch, tokens, heads, head_dim, q_strides, k_strides, v_strides, out_strides,
                  stream);
}

#ifdef CALIB_CUDA_TRACE
int calib_cuda_trace_read(long long *dst) {
    return cudaMemcpyFromSymbol(dst, calib_cuda_detail::calib_trace, sizeof(long long) * 1024) == cudaSuccess ? 0 : 5;
}
#endif

const char *calib_cuda_kernel_name(int64_t head_dim) {
    (void)head_dim;
    return kWgmmaShape && !want_mma() ? "wgmma" : "mma.sync";
}

} // extern "C"
