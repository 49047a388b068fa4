/* ptx.cuh: copied by calibc from kernels/cuda/ptx.cuh; do not edit, regenerate with `calibc compile`.
 * source: masks.json (sha256 5316e5d337ee81292d6f227e0e808540b12c1f531d4a31c8d073957788b8e284), model example-video-dit
 * shape: tokens 2100, head_dim 64, block 64 (33 blocks per side), 3 steps x 2 layers x 4 heads
 * passes: merge-runs, collapse-reuse, dedupe, reorder
 * plans: 5 unique for 24 (step, layer, head)
 */
/* ptx.cuh: the PTX instructions the kernels use, one wrapper each, and the per-dtype pieces
 * (packing, mma.sync, wgmma) as templates over the element type: an instruction is spelled once
 * and named for bf16 and f16 by one line each at the end. */
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace calib_cuda_detail {

/* Two floats rounded to one 32-bit register of T. */
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

/* Two floats rounded to e4m3 (saturating at ±448) in 16 bits, a in the low byte. */
__device__ __forceinline__ uint32_t e4m3x2(float a, float b) {
    unsigned short h;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(h) : "f"(b), "f"(a));
    return h;
}

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ float fast_log2(float x) {
    float y;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/* ---- sm_80: cp.async, ldmatrix, mma.sync (the mma.sync kernel) ---- */

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

/* c += a b for one m16n8k16 tile, fp32 accumulation. */
template <typename T> struct Mma;
#define CALIB_MMA_FOR(T, PTX_TYPE)                                                                              \
    template <> struct Mma<T> {                                                                                 \
        static __device__ __forceinline__ void m16n8k16(float *c, const uint32_t *a, const uint32_t *b) {       \
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX_TYPE "." PTX_TYPE                          \
                         ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                          \
                         : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                         \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));                     \
        }                                                                                                       \
    };
CALIB_MMA_FOR(__nv_bfloat16, "bf16")
CALIB_MMA_FOR(__half, "f16")
#undef CALIB_MMA_FOR

/* ---- sm_90a: mbarriers, TMA, named barriers, wgmma (the wgmma kernel) ---- */

#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define CALIB_NO_WGMMA 1 /* device pass for another target: the wgmma kernel and the FP8 pass have
                            empty bodies, so nothing below is used (or emitted) there */
#endif

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
/* A contiguous copy of `bytes` (a multiple of 16) from global to shared memory, counted on `bar`. */
__device__ __forceinline__ void bulk_load(uint32_t dst, const void *src, uint32_t bytes, uint32_t bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
                 ::"r"(dst), "l"(src), "r"(bytes), "r"(bar) : "memory");
}
/* A count between CTAs: each thread's add releases its own earlier stores and loads (so a warp
 * needs no vote), and the waiting thread's acquire orders the count before what follows it. The
 * wait has no bound to trap at: the producer that waits has 24 registers, and the counter spilled
 * them. */
__device__ __forceinline__ void count_release(uint32_t *count) {
    asm volatile("red.release.gpu.global.add.u32 [%0], 1;\n" ::"l"(count) : "memory");
}
__device__ __forceinline__ void count_wait(const uint32_t *count, uint32_t value) {
    uint32_t got;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(got) : "l"(count) : "memory");
    while (got != value) {
        __nanosleep(128);
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(got) : "l"(count) : "memory");
    }
}

/* Orders this thread's earlier shared-memory stores before the tensor cores' reads of them. */
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
/* Named barriers 1 and 2 over the 256 consumer threads. */
__device__ __forceinline__ void named_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void named_arrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }
/* Pins accumulator registers at this point, so the compiler moves no use of them across the
 * asynchronous matrix instructions that write them. */
template <int N> __device__ __forceinline__ void fence_regs(float *r) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

/* Shared-memory matrix descriptor: start address, leading and stride byte offsets (all >> 4) and
 * the swizzle of the rows (128 bytes; 64 for FP8 tiles of head_dim 64; 32 for FP8 vᵀ's panels of
 * 32 keys and the bf16 rows of the channels apart). */
template <int kSwizzle = 128>
__host__ __device__ __forceinline__ constexpr uint64_t gmma_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    static_assert(kSwizzle == 128 || kSwizzle == 64 || kSwizzle == 32, "128-, 64- or 32-byte swizzle");
    return (uint64_t)((addr & 0x3ffff) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32) |
           ((uint64_t)(kSwizzle == 128 ? 1 : kSwizzle == 64 ? 2 : 3) << 62);
}

/* The accumulator operands of a 64-row wgmma: N/2 fp32 registers per thread (d) and their PTX list. */
#define CALIB_ACC32 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define CALIB_ACC36 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35])
#define CALIB_ACC64 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define CALIB_ACC68 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67])
#define CALIB_ACC80 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79])
#define CALIB_D32 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}"
#define CALIB_D36 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35}"
#define CALIB_D64 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"
#define CALIB_D68 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67}"
#define CALIB_D80 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79}"

/* The two products of attention, fp32 accumulation:
 *   ss<N>:   d (64 × N) = a bᵀ (+ d unless scale_d is 0), both operands in shared memory (Q Kᵀ),
 *            N 128 or 160 keys;
 *   rs<N>:   d (64 × N) += a b, a in registers (P), b in shared memory, N 64 or 128 (P V). */
template <typename T> struct Wgmma;
#define CALIB_WGMMA_FOR(T, PTX_TYPE)                                                                              \
    template <> struct Wgmma<T> {                                                                                 \
        template <int N> static __device__ __forceinline__ void ss(float *d, uint64_t da, uint64_t db, int scale_d) { \
            if constexpr (N == 128) {                                                                             \
                asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                         \
                             "wgmma.mma_async.sync.aligned.m64n128k16.f32." PTX_TYPE "." PTX_TYPE " " CALIB_D64    \
                             ", %64, %65, p, 1, 1, 0, 0;\n}\n"                                                      \
                             : CALIB_ACC64 : "l"(da), "l"(db), "r"(scale_d));                                      \
            } else {                                                                                              \
                static_assert(N == 160, "Q Kᵀ products of 128 or 160 keys");                                      \
                asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %82, 0;\n"                                         \
                             "wgmma.mma_async.sync.aligned.m64n160k16.f32." PTX_TYPE "." PTX_TYPE " " CALIB_D80    \
                             ", %80, %81, p, 1, 1, 0, 0;\n}\n"                                                      \
                             : CALIB_ACC80 : "l"(da), "l"(db), "r"(scale_d));                                      \
            }                                                                                                     \
        }                                                                                                         \
        template <int N> static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t db) {    \
            if constexpr (N == 128) {                                                                             \
                asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                         \
                             "wgmma.mma_async.sync.aligned.m64n128k16.f32." PTX_TYPE "." PTX_TYPE " " CALIB_D64    \
                             ", {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"                                           \
                             : CALIB_ACC64 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));         \
            } else {                                                                                              \
                static_assert(N == 64, "P V products of 64 or 128 columns");                                      \
                asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                         \
                             "wgmma.mma_async.sync.aligned.m64n64k16.f32." PTX_TYPE "." PTX_TYPE " " CALIB_D32     \
                             ", {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"                                           \
                             : CALIB_ACC32 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));         \
            }                                                                                                     \
        }                                                                                                         \
    };
CALIB_WGMMA_FOR(__nv_bfloat16, "bf16")
CALIB_WGMMA_FOR(__half, "f16")
#undef CALIB_WGMMA_FOR

/* The same products on FP8 (e4m3) operands, k = 32 per instruction. FP8 operands must both be
 * K-major (no transpose), so V arrives transposed (quantize.cuh writes it so), and P's A fragment
 * holds columns 4c..4c+3 and 16+4c..16+4c+3 of each 32-column slice (bytes low to high). */
struct WgmmaE4m3 {
    template <int N> static __device__ __forceinline__ void ss(float *d, uint64_t da, uint64_t db, int scale_d) {
        if constexpr (N == 128) {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 " CALIB_D64 ", %64, %65, p, 1, 1;\n}\n"
                         : CALIB_ACC64 : "l"(da), "l"(db), "r"(scale_d));
        } else {
            static_assert(N == 160, "Q Kᵀ products of 128 or 160 keys");
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %82, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n160k32.f32.e4m3.e4m3 " CALIB_D80 ", %80, %81, p, 1, 1;\n}\n"
                         : CALIB_ACC80 : "l"(da), "l"(db), "r"(scale_d));
        }
    }
    /* N is head_dim, + 8 where 8 more rows of vᵀ hold ones, so the product also sums P's rows. */
    template <int N> static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t db) {
        if constexpr (N == 136) {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %73, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n136k32.f32.e4m3.e4m3 " CALIB_D68
                         ", {%68,%69,%70,%71}, %72, p, 1, 1;\n}\n"
                         : CALIB_ACC68 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));
        } else if constexpr (N == 128) {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 " CALIB_D64
                         ", {%64,%65,%66,%67}, %68, p, 1, 1;\n}\n"
                         : CALIB_ACC64 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));
        } else if constexpr (N == 72) {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %41, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n72k32.f32.e4m3.e4m3 " CALIB_D36
                         ", {%36,%37,%38,%39}, %40, p, 1, 1;\n}\n"
                         : CALIB_ACC36 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));
        } else {
            static_assert(N == 64, "P V products of 64, 72, 128 or 136 columns");
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 " CALIB_D32
                         ", {%32,%33,%34,%35}, %36, p, 1, 1;\n}\n"
                         : CALIB_ACC32 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));
        }
    }
};

} // namespace calib_cuda_detail
