/* wgmma_kernel.cuh: copied by calibc from kernels/cuda/wgmma_kernel.cuh; do not edit, regenerate with `calibc compile`.
 * source: masks.json (sha256 5316e5d337ee81292d6f227e0e808540b12c1f531d4a31c8d073957788b8e284), model example-video-dit
 * shape: tokens 2100, head_dim 64, block 64 (33 blocks per side), 3 steps x 2 layers x 4 heads
 * passes: merge-runs, collapse-reuse, dedupe, reorder
 * plans: 5 unique for 24 (step, layer, head)
 */
/* wgmma_kernel.cuh: the Hopper kernel (sm_90a) for blocks of 128 and head_dim 64 or 128.
 *
 * 384 threads, warp-specialized: one thread of warpgroup 0 (the producer) loads Q, K and V tiles
 * with the bulk tensor copy engine (TMA, 128-byte swizzle) into a ring of three K/V stages
 * guarded by mbarriers; warpgroups 1 and 2 (the consumers) compute query rows 0-63 and 64-127 of
 * each item: S = Q Kᵀ (wgmma, both operands in shared memory), the online softmax in registers
 * and O += P V (wgmma, P from registers). The consumers take turns at the tensor cores
 * (ping-pong) so one's softmax hides under the other's products and its own P V, and a block's
 * output is stored while the next block's first Q Kᵀ runs. The products take bf16/f16 operands
 * as the caller gives them, or e4m3 ones that quantize.cuh wrote (Operands16, OperandsFp8).
 * docs/gpu.md is the lab notebook. */
#pragma once

#include "epilogue.cuh"
#include "ptx.cuh"
#include "quantize.cuh"
#include "softmax.cuh"
#include "work.cuh"

#include <type_traits>

namespace calib_cuda_detail {

#ifdef CALIB_CUDA_TRACE /* timestamps of CTA 0's first items, for docs/gpu.md (Tests/GPU/trace.py) */
__device__ long long calib_trace[1024];
#define CALIB_MARK(slot, cond) do { if ((cond) && blockIdx.x == 0) calib_trace[slot] = clock64(); } while (0)
#else
#define CALIB_MARK(slot, cond) do { } while (0)
#endif

constexpr bool kWgmmaShape = kBlock == 128 && (kDim == 64 || kDim == 128);
constexpr int kStages = 3; /* K/V ring depth: a stage frees only after both warpgroups' P V */
constexpr int kHalfBytes = 128 * 128;      /* 128 rows × 64 columns of 16 bits: one swizzled TMA box */

/* The operands as the caller gives them (bf16 or f16, T): tiles of 128 rows × kDim in kDim/64
 * boxes of 128-byte rows; V row-major, which the P V product reads transposed. */
template <typename T> struct Operands16 {
    using Elem = T;
    using Wide = Operands16<T>;
    static constexpr bool kFp8 = false, kQkFp8 = false;
    static constexpr int kTileBytes = 128 * kDim * 2; /* one tile of Q, K or V */
    static constexpr int kQKBytes = kTileBytes, kVBytes = kTileBytes;
    static constexpr int kQHalf = 64 * 128;           /* where warpgroup 2's 64 query rows start */
    static constexpr int kPRegs = 32;                 /* P of one key tile, packed for P V */
    static constexpr int kLog2Gain = 0;
    static constexpr int kSlack = 8; /* softmax.cuh: P up to 2^8, exact in bf16 and f16 */
    static __device__ __forceinline__ void load_rows(uint32_t dst, const CUtensorMap *map, uint32_t bar, int row0, int h, int b) {
#pragma unroll
        for (int x = 0; x < kDim / 64; ++x) tma_load(dst + x * kHalfBytes, map, bar, 64 * x, row0, h, b);
    }
    static __device__ __forceinline__ void load_v(uint32_t dst, const CUtensorMap *map, uint32_t bar, int row0, int h, int b) {
        load_rows(dst, map, bar, row0, h, b);
    }
    /* The products take descriptors of a tile's first byte (made once; see consume) and step
     * them by constant byte offsets, so no descriptor is rebuilt between two instructions. */
    static __device__ __forceinline__ uint64_t qk_desc(uint32_t tile) { return gmma_desc(tile, 16, 1024); }
    static __device__ __forceinline__ uint64_t v_desc(uint32_t tile) { return gmma_desc(tile, kHalfBytes, 1024); }
    static __device__ __forceinline__ void qk(float *sc, uint64_t dq, uint64_t dk) {
#pragma unroll
        for (int kk = 0; kk < kDim / 16; ++kk) {
            const uint32_t off = ((kk / 4) * kHalfBytes + (kk % 4) * 32) >> 4;
            Wgmma<T>::ss_n128(sc, dq + off, dk + off, kk > 0);
        }
    }
    static __device__ __forceinline__ void pv(float *o, const uint32_t *pa, uint64_t dv) {
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) Wgmma<T>::template rs<kDim>(o, pa + 4 * kk, dv + ((kk * 2048) >> 4));
    }
    static __device__ __forceinline__ void pack(uint32_t *pa, int g, float e0, float e1, float e2, float e3) {
        pa[2 * g] = Pack<T>::two(e0, e1);
        pa[2 * g + 1] = Pack<T>::two(e2, e3);
    }
};

/* P V on e4m3: vᵀ tiles of kDim rows × 128 keys from quantize.cuh's workspace, P packed four keys
 * a register in the order vᵀ holds them (key_position), scaled by 2^8 (kLog2Gain) into e4m3's
 * normal range. Q Kᵀ on e4m3 too (kQkE4m3: tiles of 128 rows × kDim bytes from the workspace, one
 * box swizzled by the row's width), or on the caller's T as Operands16 does. */
template <typename T, bool kQkE4m3> struct OperandsFp8 {
    using Wide = Operands16<T>;
    static constexpr bool kFp8 = true, kQkFp8 = kQkE4m3;
    static constexpr int kQKBytes = kQkE4m3 ? 128 * kDim : Wide::kTileBytes;
    static constexpr int kVBytes = 128 * kDim;
    static constexpr int kTileBytes = kQKBytes; /* a ring slot */
    static constexpr int kQHalf = kQkE4m3 ? 64 * kDim : Wide::kQHalf;
    static constexpr int kPRegs = 16;
    static constexpr int kLog2Gain = 8;
    static constexpr int kSlack = 0; /* e4m3 P, already 2^8 larger, has no headroom */
    static __device__ __forceinline__ void load_rows(uint32_t dst, const CUtensorMap *map, uint32_t bar, int row0, int h, int b) {
        if constexpr (kQkE4m3) tma_load(dst, map, bar, 0, row0, h, b);
        else Wide::load_rows(dst, map, bar, row0, h, b);
    }
    static __device__ __forceinline__ void load_v(uint32_t dst, const CUtensorMap *map, uint32_t bar, int row0, int h, int b) {
        tma_load(dst, map, bar, row0, 0, h, b);
    }
    static __device__ __forceinline__ uint64_t qk_desc(uint32_t tile) {
        if constexpr (kQkE4m3) return gmma_desc<kDim>(tile, 16, 8 * kDim);
        else return Wide::qk_desc(tile);
    }
    static __device__ __forceinline__ uint64_t v_desc(uint32_t tile) { return gmma_desc(tile, 16, 1024); }
    static __device__ __forceinline__ void qk(float *sc, uint64_t dq, uint64_t dk) {
        if constexpr (kQkE4m3) {
#pragma unroll
            for (int kk = 0; kk < kDim / 32; ++kk) WgmmaE4m3::ss_n128(sc, dq + 2 * kk, dk + 2 * kk, kk > 0);
        } else {
            Wide::qk(sc, dq, dk);
        }
    }
    static __device__ __forceinline__ void pv(float *o, const uint32_t *pa, uint64_t dv) {
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) WgmmaE4m3::rs<kDim>(o, pa + 4 * kk, dv + 2 * kk);
    }
    /* Group g holds keys 8g + 2c, +1 of rows r (e0, e1) and r + 8 (e2, e3); register 4(g/4) +
     * 2((g%4)/2) takes row r of groups g and g^1, the next one row r + 8. */
    static __device__ __forceinline__ void pack(uint32_t *pa, int g, float e0, float e1, float e2, float e3) {
        const int r = 4 * (g >> 2) + 2 * ((g & 3) >> 1), shift = 16 * (g & 1);
        const uint32_t lo = e4m3x2(e0, e1) << shift, hi = e4m3x2(e2, e3) << shift;
        if (g & 1) {
            pa[r] |= lo;
            pa[r + 1] |= hi;
        } else {
            pa[r] = lo;
            pa[r + 1] = hi;
        }
    }
};

template <typename Ops> constexpr int wg_smem() {
    return (1 + 2 * kStages) * Ops::kTileBytes + 256 /* barriers */ + 1024 /* alignment */;
}

#ifndef CALIB_NO_WGMMA
/* Shared memory (1024-byte aligned for the swizzle): the Q tile, the K stages, the V stages, then
 * the mbarriers and the window of valid columns of each stage. */
template <int kTileBytes> struct Ring {
    uint32_t sq, sk, sv, bars;
    __device__ __forceinline__ explicit Ring(uint32_t base)
        : sq(base), sk(base + kTileBytes), sv(base + (1 + kStages) * kTileBytes), bars(base + (1 + 2 * kStages) * kTileBytes) {}
    __device__ __forceinline__ uint32_t q_full() const { return bars; }
    __device__ __forceinline__ uint32_t q_empty() const { return bars + 8; }
    __device__ __forceinline__ uint32_t k_full(int s) const { return bars + 16 + 8 * s; }
    __device__ __forceinline__ uint32_t v_full(int s) const { return bars + 16 + 8 * kStages + 8 * s; }
    __device__ __forceinline__ uint32_t kv_empty(int s) const { return bars + 16 + 16 * kStages + 8 * s; }
    __device__ __forceinline__ uint32_t window_slot(int s) const { return bars + 128 + 4 * s; }
};

/* The producer (one thread): for each item, Q into its slot once the consumers are done with the
 * previous one, then K and V of every kept key block into the ring, each stage's window of valid
 * columns beside it (the consumers never read the spans). A tile that reaches past the end of
 * the sequence loads the rows the copy engine fills with zeros and masks them; one that reaches
 * into a batch element's padded text (calib_attention_joint) loads the 128 rows that end where
 * the padding begins instead, so no padded key or value is ever read (0 · NaN would spread), and
 * masks what is not its own. FP8 launches read aligned tiles, masked past the valid end: their
 * vᵀ holds zeros there (quantize.cuh), and padded keys only reach scores that are masked. */
template <typename Ops>
__device__ __forceinline__ void produce(const Params &p, const Ring<Ops::kTileBytes> &r, const CUtensorMap &tq,
                                        const CUtensorMap &tk, const CUtensorMap &tv) {
    constexpr int kTileBytes = Ops::kTileBytes;
    uint32_t kv_it = 0, q_it = 0;
    int64_t idx = item_index(0, gridDim.x, blockIdx.x);
    int b = 0, nb = 0;
    int4 it = idx < p.total ? load_item(p, idx, b) : make_int4(0, 0, 0, 0);
    for (int64_t round = 0; idx < p.total; ++round) {
        const int64_t nidx = item_index(round + 1, gridDim.x, blockIdx.x); /* the next item, read early */
        const int4 nit = nidx < p.total ? load_item(p, nidx, nb) : it;
        const int h = it.x & 0xfff, qb = it.y & 0xffff;
        CALIB_MARK(512 + round * 4, round < 64);
        mbar_wait(r.q_empty(), (q_it & 1) ^ 1);
        CALIB_MARK(512 + round * 4 + 1, round < 64);
        mbar_expect_tx(r.q_full(), Ops::kQKBytes);
        Ops::load_rows(r.sq, &tq, r.q_full(), qb * 128, h, b);
        ++q_it;
        const int end = valid_end(p, b);
        int first, last;
        row_spans(p, it.z, first, last);
        for (int i = first; i < last || i == first; ++i) {
            int lo, hi;
            span_at(p, i, lo, hi);
            for (int kb = lo; kb < hi; ++kb) {
                const int s = kv_it % kStages;
                mbar_wait(r.kv_empty(s), ((kv_it / kStages) & 1) ^ 1);
                int row0 = kb * 128, first_col = 0, end_col = 128;
                if (row0 + 128 > end) {
                    if (Ops::kFp8 || end == kTokens) {
                        end_col = max(end - row0, 0);
                    } else {
                        row0 = end - 128;
                        first_col = min(kb * 128 - row0, 128);
                    }
                }
                asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(r.window_slot(s)), "r"(first_col | end_col << 8) : "memory");
                mbar_expect_tx(r.k_full(s), Ops::kQKBytes);
                Ops::load_rows(r.sk + s * kTileBytes, &tk, r.k_full(s), row0, h, b);
                mbar_expect_tx(r.v_full(s), Ops::kVBytes);
                Ops::load_v(r.sv + s * kTileBytes, &tv, r.v_full(s), row0, h, b);
                ++kv_it;
            }
            if (i < 0) break;
        }
        idx = nidx;
        it = nit;
        b = nb;
    }
}

/* A consumer warpgroup (wg 1 or 2; t its thread): 64 query rows of every item of this CTA. */
template <typename T, typename Ops>
__device__ __forceinline__ void consume(const Params &p, const Ring<Ops::kTileBytes> &r, const int wg, const int t) {
    constexpr int kTileBytes = Ops::kTileBytes;
    const int w = t / 32, lane = t % 32, c = lane % 4;
    const int rloc0 = 64 * (wg - 1) + 16 * w + lane / 4; /* this thread's rows: rloc0, rloc0 + 8 */
    /* Ping-pong: the two warpgroups take turns at the tensor cores (named barriers 1 and 2).
     * Warpgroup 1 goes first. */
    const int me = wg, other = 3 - wg;
    if (wg == 2) named_arrive(1);
    /* The tiles' descriptors, made once from a warpgroup index the compiler knows is the same in
     * every lane (a broadcast), so they live in uniform registers; a stage is a constant step. */
    const int wgu = __shfl_sync(0xffffffffu, wg, 0);
    const uint64_t dq = Ops::qk_desc(r.sq + (wgu - 1) * Ops::kQHalf), dk0 = Ops::qk_desc(r.sk), dv0 = Ops::v_desc(r.sv);
    constexpr uint32_t kStageDesc = kTileBytes >> 4;
    int stage = 0;      /* the ring slot and phase of the next K/V tile */
    uint32_t phase = 0, q_it = 0;
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
        const int nkb = it.x >> 12; /* the producer passes each tile's window of valid columns */
        float scale = p.scale_log2, vscale = 1.f; /* e4m3: the quantization's scales undone */
        if constexpr (Ops::kFp8) {
            const int bh = b * p.heads + h;
            if constexpr (Ops::kQkFp8) scale *= __ldg(p.qscale + (int64_t)bh * kQuantBlocks + qb) * __ldg(p.kscale + bh);
            vscale = __ldg(p.vscale + bh);
        }
        float o[kDim / 2];
#pragma unroll
        for (int j = 0; j < kDim / 2; ++j) o[j] = 0.f;
        OnlineSoftmax sm;
        uint32_t pa[Ops::kPRegs]; /* P of the last tile: the A operand of its P V */
        float sc[64];             /* S of the current tile, then its probabilities */
        int sp = 0;               /* the stage and phase of the tile whose P V is next */
        uint32_t php = 0;
        int done = -1;            /* the stage of the P V in flight from the last turn */
        float f0 = 1.f, f1 = 1.f; /* what O is to be scaled by before the next P V */
        bool moved = false;       /* whether a maximum of this thread's rows moved */
        CALIB_MARK((wg - 1) * 256 + round * 8, t == 0 && round < 32);
        mbar_wait(r.q_full(), q_it & 1);
        CALIB_MARK((wg - 1) * 256 + round * 8 + 1, t == 0 && round < 32);
        ++q_it;

        /* One turn at the tensor cores (tile j). Before it, while the other warpgroup holds the
         * tensor cores, P(j-1) is packed from the probabilities the last turn left in S's
         * registers, once P(j-2) V(j-2) has ended (it has: it ran under the last turn's softmax).
         * The turn issues S(j) = Q K(j)ᵀ (with_qk), rescales O for tile j-1's maxima while the
         * tensor cores run it (seldom: the slack of softmax.cuh), and issues O += P(j-1) V(j-1)
         * (with_pv). Then, while the other warpgroup has its turn, the softmax of S(j) runs as
         * soon as S(j) is done, under this warpgroup's own P V: it writes neither P nor O, so
         * nothing in it waits for that product. The first turn has no P V and stores the previous
         * block's output under its Q K(0)ᵀ; the last has no Q Kᵀ and waits for its P V. The turns
         * are instances of this one body, so each compiles to straight-line code with no run-time
         * test of which turn it is. docs/gpu.md (v12, v14) has the measurements. */
        auto turn = [&](auto with_pv, auto with_qk, const int j) {
            constexpr bool kPV = decltype(with_pv)::value, kQK = decltype(with_qk)::value;
            const int s = stage;
            const uint32_t ph = phase;
            int window = 0;
            if constexpr (kQK) {
                mbar_wait(r.k_full(s), ph);
                asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(window) : "r"(r.window_slot(s)) : "memory");
            }
            if constexpr (kPV) {
                mbar_wait(r.v_full(sp), php);
                wgmma_wait0();
                fence_regs<kDim / 2>(o);
                if (done >= 0) mbar_arrive(r.kv_empty(done));
#pragma unroll
                for (int g = 0; g < 16; ++g) Ops::pack(pa, g, sc[4 * g], sc[4 * g + 1], sc[4 * g + 2], sc[4 * g + 3]);
            }
            named_sync(me);
            wgmma_fence();
            if constexpr (kQK) {
                Ops::qk(sc, dq, dk0 + s * kStageDesc);
                wgmma_commit();
            }
            if constexpr (kPV) {
                if (__any_sync(0xffffffffu, moved)) OnlineSoftmax::rescale<kDim / 2>(o, f0, f1);
                wgmma_fence();
                Ops::pv(o, pa, dv0 + sp * kStageDesc);
                wgmma_commit();
                done = sp;
            }
            named_arrive(other);
            if constexpr (!kPV) {
                if (pv_b >= 0) store_packed<T, kDim>(p, pv_b, pv_h, pv_qb, pv_nt, pv_toff, rloc0, pk, c);
                pv_b = -1;
            }
            if constexpr (kQK) {
                if constexpr (kPV) wgmma_wait1(); else wgmma_wait0();
                fence_regs<64>(sc);
                if constexpr (!kPV) CALIB_MARK((wg - 1) * 256 + round * 8 + 2, t == 0 && round < 32);
                if (j + 1 == nkb) mbar_arrive(r.q_empty());
                if (window != 128 << 8) OnlineSoftmax::mask_columns<16>(sc, c, window & 0xff, window >> 8);
                moved = sm.exponentiate<16, (kTextLast > 0), Ops::kLog2Gain, Ops::kSlack>(sc, scale, f0, f1);
                sp = s;
                php = ph;
                if (++stage == kStages) {
                    stage = 0;
                    phase ^= 1;
                }
            } else {
                wgmma_wait0();
                fence_regs<kDim / 2>(o);
                mbar_arrive(r.kv_empty(done));
            }
        };
        turn(std::false_type{}, std::true_type{}, 0);
        for (int j = 1; j < nkb; ++j) turn(std::true_type{}, std::true_type{}, j);
        turn(std::true_type{}, std::false_type{}, nkb);

        CALIB_MARK((wg - 1) * 256 + round * 8 + 3, t == 0 && round < 32);
        float inv0, inv1;
        sm.finish(inv0, inv1);
        inv0 *= vscale;
        inv1 *= vscale;
        if constexpr (Ops::kFp8) {
            /* v's mean, which quantize.cuh took out of v, back into each row (not into a row no
             * key reached: zeros). This thread's columns 8j + 2c, +1 are float2 4j + c. */
            const float2 *mean = reinterpret_cast<const float2 *>(p.vmean + (int64_t)(b * p.heads + h) * kDim) + c;
#pragma unroll
            for (int j = 0; j < kDim / 8; ++j) {
                const float2 m = __ldg(mean + 4 * j);
                o[4 * j] = fmaf(o[4 * j], inv0, inv0 != 0.f ? m.x : 0.f);
                o[4 * j + 1] = fmaf(o[4 * j + 1], inv0, inv0 != 0.f ? m.y : 0.f);
                o[4 * j + 2] = fmaf(o[4 * j + 2], inv1, inv1 != 0.f ? m.x : 0.f);
                o[4 * j + 3] = fmaf(o[4 * j + 3], inv1, inv1 != 0.f ? m.y : 0.f);
            }
            inv0 = inv1 = 1.f;
        }
        pack_rows<T, kDim>(o, inv0, inv1, pk);
        pv_b = b; pv_h = h; pv_qb = qb; pv_nt = ntargets; pv_toff = it.w;
        CALIB_MARK((wg - 1) * 256 + round * 8 + 4, t == 0 && round < 32);
        idx = nidx;
        it = nit;
        b = nb;
    }
    if (pv_b >= 0) store_packed<T, kDim>(p, pv_b, pv_h, pv_qb, pv_nt, pv_toff, rloc0, pk, c);
    if (wg == 1) named_sync(1); /* takes warpgroup 2's last turn, so no arrival is left over */
}
#endif /* CALIB_NO_WGMMA */

template <typename T, typename Ops>
__global__ void __launch_bounds__(384, 1)
calib_wgmma_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                   const __grid_constant__ CUtensorMap tv, const Params given) {
#if !defined(CALIB_NO_WGMMA)
    if constexpr (kWgmmaShape) {
        const Params p = with_step(given);
        extern __shared__ unsigned char smem_raw[];
        const Ring<Ops::kTileBytes> r((smem_u32(smem_raw) + 1023u) & ~1023u);
        const int tid = threadIdx.x, wg = tid / 128;
        if (tid == 0) {
            mbar_init(r.q_full(), 1);
            mbar_init(r.q_empty(), 256);
            for (int s = 0; s < kStages; ++s) {
                mbar_init(r.k_full(s), 1);
                mbar_init(r.v_full(s), 1);
                mbar_init(r.kv_empty(s), 256);
            }
            asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        }
        __syncthreads();
        if (wg == 0) {
            asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
            if (tid == 0) produce<Ops>(p, r, tq, tk, tv);
        } else {
            asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n");
            consume<T, Ops>(p, r, wg, tid - 128 * wg);
        }
    }
#endif
}

} // namespace calib_cuda_detail
