/* wgmma_kernel.cuh: the Hopper kernel (sm_90a) for blocks of 128 and head_dim 64 or 128.
 *
 * 384 threads, warp-specialized: one thread of warpgroup 0 (the producer) loads Q and the key
 * tiles with the bulk copy engine (TMA, 128-byte swizzle) into a ring of K/V stages guarded by
 * mbarriers (for FP8, K and V of a stage freed apart); a key tile is one block of 128 (bf16/f16)
 * or, for FP8, 160 keys gathered from sub-blocks of 32 wherever the row's kept blocks are.
 * Warpgroups 1 and 2 (the consumers) compute query rows 0-63 and 64-127 of each item: S = Q Kᵀ
 * (wgmma, both operands in shared memory), the online softmax in registers and O += P V (wgmma, P
 * from registers). The bf16/f16 consumers take turns at the tensor cores (ping-pong) so one's
 * softmax hides under the other's products and its own P V, and a block's output is stored while
 * the next block's first Q Kᵀ runs. The products take bf16/f16 operands as the caller gives them,
 * or e4m3 ones that quantize.cuh wrote (Operands16, OperandsFp8), where P V also sums P's rows
 * against a row of ones and Q Kᵀ adds a bf16 product of the channels kept apart from e4m3.
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
constexpr int kTraceSlots = 2048;
__device__ long long calib_trace[kTraceSlots];
#define CALIB_MARK(slot, cond) do { if ((cond) && blockIdx.x == 0) calib_trace[slot] = clock64(); } while (0)
#define CALIB_NOTE(slot, cond, value) do { if ((cond) && blockIdx.x == 0) calib_trace[slot] = (value); } while (0)
/* Inside the turns of CTA 0's second item, tiles 8-23 (past a row's first tiles, whose references
 * move): mark m of tile j of each consumer warp's turn (trace.py's table of what a turn waits on;
 * a warpgroup's products wait for its slowest warp). */
#define CALIB_TURN(m) \
    CALIB_MARK(1024 + ((wg - 1) * 4 + w) * 128 + (j - 8) * 8 + (m), lane == 0 && round == 1 && j >= 8 && j < 24)
#else
#define CALIB_TURN(m) do { } while (0)
#define CALIB_MARK(slot, cond) do { } while (0)
#define CALIB_NOTE(slot, cond, value) do { } while (0)
#endif

constexpr bool kWgmmaShape = kBlock == 128 && (kDim == 64 || kDim == 128);
constexpr int kQHalfBytes = 128 * 128; /* Q: 128 rows × 64 columns of 16 bits, one swizzled TMA box */

/* The ring's depth: three K/V stages where they fit in shared memory beside Q, else two (bf16 at
 * head_dim 128 would need two with tiles of 160 keys, which measured 5-12% slower than three of
 * 128: docs/gpu.md, run 66). K and V of a stage free apart, so with two the producer still loads
 * the next K while the last P V runs. FP8's stages would fit four or five deep, which ran no
 * faster than three (0.96-1.07 of three's time, run 82). */
constexpr int ring_stages(int q_bytes, int k_bytes, int v_bytes) {
    return q_bytes + 3 * (k_bytes + v_bytes) + 256 + 1024 <= 227 * 1024 ? 3 : 2;
}

/* A key tile is kSubs sub-blocks of kSub keys, each loaded from wherever the row's kept blocks
 * put it (a block of 128 is 128 / kSub of them, in order), so one tile may span blocks that are
 * not adjacent; a row's last tile loads copies of its first sub-block where it has no more, and
 * masks them. */

/* The operands as the caller gives them (bf16 or f16, T): tiles of kDim/64 boxes of 128-byte
 * rows (Q: 128 rows; K, V: a box of kSub rows per sub-block); V row-major, which the P V product
 * reads transposed. */
template <typename T, int kSub, int kSubs> struct Operands16 {
    using Elem = T;
    using Wide = Operands16<T, kSub, kSubs>;
    static constexpr bool kFp8 = false, kQkFp8 = false;
    static constexpr int kSubBlock = kSub, kSubBlocks = kSubs, kKeys = kSub * kSubs;
    static constexpr int kQBytes = 128 * kDim * 2, kKBytes = kKeys * kDim * 2, kVBytes = kKBytes, kVStage = kVBytes;
    static constexpr int kQLoaded = kQBytes; /* of Q's bytes in shared memory, those its loads write */
    static constexpr int kQLoadedAlone = kQLoaded, kKBytesAlone = kKBytes; /* the same (no channels apart) */
    static constexpr int kKHalf = kKeys * 128;        /* a K or V tile's 64-column box */
    static constexpr int kORegs = kDim / 2;           /* O's accumulators */
    static constexpr bool kTensorSums = false;
    static constexpr int kQHalf = 64 * 128;           /* where warpgroup 2's 64 query rows start */
    static constexpr int kPRegs = kKeys / 4;          /* P of one key tile, packed for P V */
    static constexpr int kStages = ring_stages(kQBytes, kKBytes, kVStage);
    /* K freed once both Q Kᵀ on it have ended, before V (FA4's order): what lets two stages
     * serve. With three, bf16 ran 2-9% slower so (v15a, runs 58-59) and 2-3% slower dense at
     * Wan 14B than with K freed with V (runs 67, 69). */
    static constexpr bool kFreeKEarly = kStages < 3;
    /* After a row's first tile, no maxima (softmax.cuh, by_sums). The gain is the headroom for a
     * row's scores jumping above its reference before they must be scored again: bf16 P holds
     * 2^-86 as exactly as 1; f16 P would flush it to zero, so f16 takes none. */
    static constexpr bool kSumRef = true;
    static constexpr int kLog2Gain = std::is_same<T, __nv_bfloat16>::value ? -86 : 0;
    static constexpr int kSlack = 8; /* softmax.cuh: P up to 2^8, exact in bf16 and f16 */
    static constexpr bool kTurns = true; /* the warpgroups take turns at the tensor cores (consume) */
    static constexpr bool kAhead = false; /* exponentials after the maxima (softmax.cuh) */
    static constexpr bool kCodes = false; /* P as probabilities (softmax.cuh, ExpCode: FP8's) */
    static __device__ __forceinline__ void load_q(uint32_t dst, const CUtensorMap *map, const CUtensorMap *, uint32_t bar, int row0, int h, int b) {
#pragma unroll
        for (int x = 0; x < kDim / 64; ++x) tma_load(dst + x * kQHalfBytes, map, bar, 64 * x, row0, h, b);
    }
    /* Sub-block `slot` of a K (or V) tile at `dst`, from key row0. */
    static __device__ __forceinline__ void load_k(uint32_t dst, int slot, const CUtensorMap *map, uint32_t bar, int row0, int h, int b) {
#pragma unroll
        for (int x = 0; x < kDim / 64; ++x) tma_load(dst + x * kKHalf + slot * kSub * 128, map, bar, 64 * x, row0, h, b);
    }
    static __device__ __forceinline__ void load_v(uint32_t dst, int slot, const CUtensorMap *map, const Params &, uint32_t bar, int row0, int h, int b) {
        load_k(dst, slot, map, bar, row0, h, b);
    }
    /* The products take descriptors of a tile's first byte (made once; see consume) and step
     * them by constant byte offsets, so no descriptor is rebuilt between two instructions. */
    static __device__ __forceinline__ uint64_t qk_desc(uint32_t tile) { return gmma_desc(tile, 16, 1024); }
    static __device__ __forceinline__ uint64_t v_desc(uint32_t tile) { return gmma_desc(tile, kKHalf, 1024); }
    static __device__ __forceinline__ void qk(float *sc, uint64_t dq, uint64_t dk, bool) {
#pragma unroll
        for (int kk = 0; kk < kDim / 16; ++kk) {
            const uint32_t offq = ((kk / 4) * kQHalfBytes + (kk % 4) * 32) >> 4, offk = ((kk / 4) * kKHalf + (kk % 4) * 32) >> 4;
            Wgmma<T>::template ss<kKeys>(sc, dq + offq, dk + offk, kk > 0);
        }
    }
    static __device__ __forceinline__ void pv(float *o, const uint32_t *pa, uint64_t dv) {
#pragma unroll
        for (int kk = 0; kk < kKeys / 16; ++kk) Wgmma<T>::template rs<kDim>(o, pa + 4 * kk, dv + ((kk * 2048) >> 4));
    }
    template <bool kCodes> static __device__ __forceinline__ void pack(uint32_t *pa, int g, float e0, float e1, float e2, float e3) {
        pa[2 * g] = Pack<T>::two(e0, e1);
        pa[2 * g + 1] = Pack<T>::two(e2, e3);
    }
    /* A probability brought to a moved reference (Ahead's factor c). */
    template <bool kCodes> static __device__ __forceinline__ float scaled(float p, float c) { return p * c; }
};

/* P V on e4m3: vᵀ tiles of kDim rows × kKeys from quantize.cuh's workspace, which holds them as
 * panels of 32 keys (kDim rows of 32 bytes) already in the 32-byte swizzle, so a sub-block is one
 * contiguous bulk copy and a panel one k step of the product; P packed four keys a register in
 * the order vᵀ holds them (key_position), scaled by 2^kLog2Gain into e4m3's normal range.
 * Q Kᵀ on e4m3 too (kQkE4m3: rows of kDim bytes from the workspace, swizzled by the row's
 * width), or on the caller's T as Operands16 does. */
template <typename T, bool kQkE4m3, int kSub, int kSubs> struct OperandsFp8 {
    using Wide = Operands16<T, kSub, kSubs>;
    static constexpr bool kFp8 = true, kQkFp8 = kQkE4m3;
    static constexpr int kSubBlock = kSub, kSubBlocks = kSubs, kKeys = kSub * kSubs;
    /* With Q Kᵀ on e4m3, the channels apart (quantize.cuh, kApart) follow Q's and each K tile's
     * e4m3 rows as bf16 rows of 32 bytes (the 32-byte swizzle), which one bf16 k-step adds to S.
     * Each warpgroup's 64 rows of them sit as far from its e4m3 rows as the other's do (Q's
     * halves are 64 kDim bytes apart, so theirs are too), and a K tile's at a fixed offset from
     * its e4m3 rows: their descriptors are the e4m3 ones plus a constant, so a consumer holds no
     * more descriptors than before. */
    static constexpr int kQxHalf = 64 * kApart * 2, kQxBytes = 64 * kDim + kQxHalf, kKxBytes = kKeys * kApart * 2;
    static constexpr int kQBytes = kQkE4m3 ? 128 * kDim + kQxBytes : Wide::kQBytes;
    static constexpr int kQLoaded = kQkE4m3 ? 128 * kDim + 2 * kQxHalf : Wide::kQLoaded;
    /* Where the head keeps no channel apart, its loads skip them (run 120: loaded and unused, they
     * cost nearly all that the bf16 step and they cost together). */
    static constexpr int kQLoadedAlone = kQkE4m3 ? 128 * kDim : Wide::kQLoaded, kKBytesAlone = kQkE4m3 ? kKeys * kDim : Wide::kKBytes;
    static constexpr int kKBytes = kQkE4m3 ? kKeys * kDim + kKxBytes : Wide::kKBytes;
    /* Only shapes that launch this kernel (kWgmmaShape) are held to it: the host's references
     * instantiate the class for every head_dim the target takes. */
    static_assert(!kWgmmaShape || !kQkE4m3 || (kQBytes % 1024 == 0 && kKBytes % 1024 == 0),
                  "K's stages keep the 1024-byte alignment of their swizzle");
    /* A panel in shared memory: vᵀ's kDim rows of 32 keys, then 8 rows of ones (written once, at
     * the start), so P V at n = kDim + 8 also sums each row of P into 4 more accumulators (FP8 P
     * into an fp32 accumulator: the softmax's additions, the bound of the FP8 loop, go to the
     * tensor cores). Each turn adds them to l and zeroes them, so no sum runs long at the FP8
     * products' reduced accumulation precision (docs/gpu.md, "Long rows"). */
    static constexpr int kPanel = (kDim + 8) * 32;
    static constexpr int kVBytes = kKeys * kDim, kVStage = kKeys / 32 * kPanel;
    static constexpr int kORegs = kDim / 2 + 4;
    static constexpr bool kTensorSums = true;
    static constexpr int kQHalf = kQkE4m3 ? 64 * kDim : Wide::kQHalf;
    static constexpr int kPRegs = kKeys / 8;
    static constexpr int kStages = ring_stages(kQBytes, kKBytes, kVStage);
    static constexpr bool kFreeKEarly = true; /* as measured in runs 66-67 */
    /* With Q Kᵀ on e4m3, P comes out 2^6 larger and a row's reference maximum moves only past a
     * slack of 2 (log2): P stays below 2^8 (e4m3 holds 448), a probability of 2^-12 is still a
     * normal e4m3 number, and after a row's first tiles O is seldom rescaled, as bf16's slack of
     * 2^8 allows (P's codes take whole powers of two). "fp8-pv" takes P 2^8 larger with exact
     * maxima instead: on keys with large channels most of a row's mass sits near 2^-12 of its
     * largest probability, where 2^6 leaves e4m3 P subnormal (Tests/GPU/pv_rounding_model.py;
     * run 104 in docs/gpu.md: ×10 keys 3.25e-2 → 3.02e-2 for 1.5–2% of fp8-pv's time). */
    static constexpr int kLog2Gain = kQkE4m3 ? 6 : 8;
    static constexpr int kSlack = kQkE4m3 ? 2 : 0;
    static constexpr bool kSumRef = false; /* its sums are the tensor cores' */
    /* Products at half the tensor cycles leave the softmaxes the bound, and taking turns only
     * delays them: 3% slower with turns (docs/gpu.md, run 64). */
    static constexpr bool kTurns = false;
    /* Exponentials ahead of the maxima (softmax.cuh, OnlineSoftmax::Ahead), for the same reason:
     * 0.95 of the time dense with Q Kᵀ on e4m3 (run 69); with Q Kᵀ on 16 bits the products take
     * longer and it ran 1-3% slower. */
    static constexpr bool kAhead = kQkE4m3;
    /* P's e4m3 codes made with no exponential (softmax.cuh, ExpCode) where Q Kᵀ is on e4m3 too
     * (its accuracy is Q Kᵀ's; "fp8-pv" keeps e4m3's rounding of exponentials, and so does the
     * redo launch, whose registers the codes' packing does not fit). */
    static constexpr bool kCodes = kQkE4m3;
    /* The channels apart come through their own map (xmap: quantize.cuh's rows of k's and q's,
     * boxes of one half's 32 bytes × kSub rows, which the copy engine swizzles by 32 bytes): its
     * coordinates are the e4m3 loads' own, so the producer, at 24 registers, holds little more.
     * Its margin is thin (the redo launch with text last): plain copies' addresses spilled it, so
     * did k's half at column 32 (k's is at 0), and so did K's loads made beside the e4m3 ones
     * rather than after them all (load_kx). */
    static __device__ __forceinline__ void load_q(uint32_t dst, const CUtensorMap *map, const CUtensorMap *xmap, uint32_t bar, int row0, int h, int b) {
        if constexpr (kQkE4m3) {
            tma_load(dst, map, bar, 0, row0, h, b);
            if (xmap == nullptr) return;
#pragma unroll
            for (int x = 0; x < 128 / kSub; ++x)
                tma_load(dst + 128 * kDim + (x * kSub / 64) * 64 * kDim + (x * kSub % 64) * kApart * 2, xmap, bar, kApart * 2, row0 + x * kSub, h, b);
        } else {
            Wide::load_q(dst, map, xmap, bar, row0, h, b);
        }
    }
    static __device__ __forceinline__ void load_k(uint32_t dst, int slot, const CUtensorMap *map, uint32_t bar, int row0, int h, int b) {
        if constexpr (kQkE4m3) tma_load(dst + slot * kSub * kDim, map, bar, 0, row0, h, b);
        else Wide::load_k(dst, slot, map, bar, row0, h, b);
    }
    static __device__ __forceinline__ void load_kx(uint32_t dst, int slot, const CUtensorMap *xmap, uint32_t bar, int row0, int h, int b) {
        if constexpr (kQkE4m3) tma_load(dst + kKeys * kDim + slot * kSub * kApart * 2, xmap, bar, 0, row0, h, b);
    }
    /* vᵀ's panels of keys row0 .. row0 + kSub, contiguous in the workspace (quantize.cuh). */
    static __device__ __forceinline__ void load_v(uint32_t dst, int slot, const CUtensorMap *, const Params &p, uint32_t bar, int row0, int h, int b) {
        const uint8_t *src = p.vt + ((int64_t)(b * p.heads + h) * kPadTokens + row0) * kDim;
#pragma unroll
        for (int x = 0; x < kSub / 32; ++x) bulk_load(dst + (slot * kSub / 32 + x) * kPanel, src + x * 32 * kDim, 32 * kDim, bar);
    }
    /* The ones beneath every panel of every stage (e4m3 1.0 is 0x38), by the CTA's `threads`. */
    static __device__ __forceinline__ void write_ones(uint32_t sv, int t, int threads) {
        constexpr int kPanels = kStages * (kKeys / 32);
        for (int i = t; i < kPanels * 16; i += threads) {
            const int panel = i / 16, stage = panel / (kKeys / 32);
            const uint32_t at = sv + stage * kVStage + (panel % (kKeys / 32)) * kPanel + kDim * 32 + 16 * (i % 16);
            asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(at), "r"(0x38383838u) : "memory");
        }
        fence_proxy_async();
    }
    /* An e4m3 row of Q or K is kDim bytes, one swizzle span (64 or 128; the constant compiles,
     * unused, for the other head_dims, as the alignment's assertion above holds only for these). */
    static constexpr int kQkSwizzle = kDim == 64 ? 64 : 128;
    static __device__ __forceinline__ uint64_t qk_desc(uint32_t tile) {
        if constexpr (kQkE4m3) return gmma_desc<kQkSwizzle>(tile, 16, 8 * kDim);
        else return Wide::qk_desc(tile);
    }
    /* The channels apart's descriptors from the e4m3 tiles' (the fields add without carries:
     * addresses stay below 256 KB). */
    static constexpr uint64_t kQxStep = gmma_desc<32>(128 * kDim, 16, 256) - gmma_desc<kQkSwizzle>(0, 16, 8 * kDim);
    static constexpr uint64_t kKxStep = gmma_desc<32>(kKeys * kDim, 16, 256) - gmma_desc<kQkSwizzle>(0, 16, 8 * kDim);
    static __device__ __forceinline__ uint64_t v_desc(uint32_t tile) { return gmma_desc<32>(tile, 16, 256); }
    /* apart: the item's head keeps channels apart (elsewhere their tiles hold whatever was there). */
    static __device__ __forceinline__ void qk(float *sc, uint64_t dq, uint64_t dk, bool apart) {
        if constexpr (kQkE4m3) {
#pragma unroll
            for (int kk = 0; kk < kDim / 32; ++kk) WgmmaE4m3::ss<kKeys>(sc, dq + 2 * kk, dk + 2 * kk, kk > 0);
            if (apart) Wgmma<__nv_bfloat16>::ss<kKeys>(sc, dq + kQxStep, dk + kKxStep, 1);
        } else {
            Wide::qk(sc, dq, dk, apart);
        }
    }
    static __device__ __forceinline__ void pv(float *o, const uint32_t *pa, uint64_t dv) {
#pragma unroll
        for (int kk = 0; kk < kKeys / 32; ++kk) WgmmaE4m3::rs<kDim + 8>(o, pa + 4 * kk, dv + ((kk * kPanel) >> 4));
    }
    /* Group g holds keys 8g + 2c, +1 of rows r (e0, e1) and r + 8 (e2, e3); register 4(g/4) +
     * 2((g%4)/2) takes row r of groups g and g^1, the next one row r + 8. */
    template <bool kCodes> static __device__ __forceinline__ void pack(uint32_t *pa, int g, float e0, float e1, float e2, float e3) {
        const int r = 4 * (g >> 2) + 2 * ((g & 3) >> 1);
        if constexpr (kCodes) { /* the codes' low bytes, two a half: even groups the low halves */
            const uint32_t lo = __byte_perm(ExpCode::byte(e0), ExpCode::byte(e1), 0x0040),
                           hi = __byte_perm(ExpCode::byte(e2), ExpCode::byte(e3), 0x0040);
            pa[r] = (g & 1) ? __byte_perm(pa[r], lo, 0x5410) : lo;
            pa[r + 1] = (g & 1) ? __byte_perm(pa[r + 1], hi, 0x5410) : hi;
        } else {
            const int shift = 16 * (g & 1);
            const uint32_t lo = e4m3x2(e0, e1) << shift, hi = e4m3x2(e2, e3) << shift;
            pa[r] = (g & 1) ? pa[r] | lo : lo;
            pa[r + 1] = (g & 1) ? pa[r + 1] | hi : hi;
        }
    }
    template <bool kCodes> static __device__ __forceinline__ float scaled(float p, float c) {
        if constexpr (kCodes) return ExpCode::scaled(p, c);
        else return p * c;
    }
};

/* The key tiles (docs/gpu.md, "Wide key tiles", runs 66-67): FP8 takes 160 keys gathered from
 * sub-blocks of 32 (0-7% faster than 128 with the same loop: its softmax's fixed part a turn
 * spread over more keys); bf16/f16 one block of 128 (at 160 its ring has two stages only, and it
 * ran 5-12% slower). */
template <typename T> using Ops16 = Operands16<T, 128, 1>;
template <typename T, bool kQkE4m3> using OpsFp8 = OperandsFp8<T, kQkE4m3, 32, 5>;

template <typename Ops> constexpr int wg_smem() {
    return Ops::kQBytes + Ops::kStages * (Ops::kKBytes + Ops::kVStage) + 256 /* barriers, windows */ + 1024 /* alignment */;
}

#ifndef CALIB_NO_WGMMA
/* Shared memory (1024-byte aligned for the swizzle): the Q tile, the K stages, the V stages, then
 * the mbarriers, each stage's windows of valid columns (16 bytes: a word that is 0 when no column
 * of the tile is masked, then the sub-blocks' windows, 16 bits each) and two hand slots: the item
 * whose Q the producer loads, its index in the list and its batch element (-1: no more items),
 * written before the producer arrives on q_full. There are two so that an item's slot still holds
 * it at the item's end, while the producer writes the next. */
template <typename Ops> struct Ring {
    static constexpr int kStages = Ops::kStages;
    uint32_t sq, sk, sv, bars;
    __device__ __forceinline__ explicit Ring(uint32_t base)
        : sq(base), sk(base + Ops::kQBytes), sv(sk + kStages * Ops::kKBytes), bars(sv + kStages * Ops::kVStage) {}
    __device__ __forceinline__ uint32_t q_full() const { return bars; }
    __device__ __forceinline__ uint32_t q_empty() const { return bars + 8; }
    __device__ __forceinline__ uint32_t k_full(int s) const { return bars + 16 + 8 * s; }
    __device__ __forceinline__ uint32_t v_full(int s) const { return bars + 16 + 8 * kStages + 8 * s; }
    __device__ __forceinline__ uint32_t k_empty(int s) const { return bars + 16 + 16 * kStages + 8 * s; }
    __device__ __forceinline__ uint32_t v_empty(int s) const { return bars + 16 + 24 * kStages + 8 * s; }
    __device__ __forceinline__ uint32_t window_slot(int s) const { return bars + 16 + 32 * kStages + 16 * s; }
    __device__ __forceinline__ uint32_t hand_slot(uint32_t q_it) const { return bars + 16 + 48 * kStages + 32 * (q_it & 1); }
    __device__ __forceinline__ uint32_t claim_slot() const { return bars + 16 + 48 * kStages + 64; }
    static_assert(16 + 48 * kStages + 72 <= 256, "the barriers, windows and hand slots outgrow wg_smem's 256 bytes");
};

__device__ __forceinline__ void hand(uint32_t slot, int4 it, int64_t idx, int b) {
    asm volatile("st.shared.v4.s32 [%0], {%1, %2, %3, %4};\n" ::"r"(slot), "r"(it.x), "r"(it.y), "r"(it.z), "r"(it.w) : "memory");
    asm volatile("st.shared.s64 [%0], %1;\n" ::"r"(slot + 16), "l"(idx) : "memory");
    asm volatile("st.shared.s32 [%0], %1;\n" ::"r"(slot + 24), "r"(b) : "memory");
}
__device__ __forceinline__ int4 handed(uint32_t slot, int &b) {
    int4 it;
    asm volatile("ld.shared.v4.s32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(it.x), "=r"(it.y), "=r"(it.z), "=r"(it.w) : "r"(slot) : "memory");
    asm volatile("ld.shared.s32 %0, [%1];\n" : "=r"(b) : "r"(slot + 24) : "memory");
    return it;
}
__device__ __forceinline__ int64_t handed_index(uint32_t slot) {
    int64_t idx;
    asm volatile("ld.shared.s64 %0, [%1];\n" : "=l"(idx) : "r"(slot + 16) : "memory");
    return idx;
}

/* The sub-blocks of a pooled row's kept key blocks in order: next() gives the first key of the
 * next one (the caller asks for no more than the row has). Empty spans are stepped over. */
template <int kSub> struct SubBlocks {
    int i, last, kb, hi, sub = 0;
    /* From key block `from` on (a split list's second half: the row has a kept block there). */
    __device__ __forceinline__ SubBlocks(const Params &p, int row, int from) {
        row_spans(p, row, i, last);
        span_at(p, i, kb, hi);
        while (hi <= from) span_at(p, ++i, kb, hi);
        kb = max(kb, from);
    }
    __device__ __forceinline__ int next(const Params &p) {
        while (kb >= hi) span_at(p, ++i, kb, hi);
        const int first = kb * 128 + sub * kSub;
        if (++sub == 128 / kSub) {
            sub = 0;
            ++kb;
        }
        return first;
    }
};

/* The launch's parameters for a role: the redo launch (kRedo) walks the list of the items the
 * attention launch flagged (OnlineSoftmax::Ahead), not the work list. */
template <bool kRedo> __device__ __forceinline__ Params role_params(const Params &given) {
    Params p = with_step(given);
    if constexpr (kRedo) p.total = __ldg(p.redo_list);
    return p;
}

template <bool kRedo> __device__ __forceinline__ int4 item_at(const Params &p, int64_t idx, int &b) {
    return load_item(p, kRedo ? __ldg(p.redo_list + 1 + idx) : idx, b);
}

/* The producer (one thread): for each item, the item into a hand slot and Q into its tile once the
 * consumers are done with the previous one's, then the row's key tiles into the ring, V once both
 * warpgroups' P V on the stage has ended and K then too or, with kFreeKEarly, once their Q Kᵀ has,
 * each tile's windows of valid columns beside it (the consumers never read the spans). A sub-block
 * that reaches past the end of the sequence loads the rows the copy engine fills with zeros and
 * masks them; one that reaches into a batch element's padded text (calib_attention_joint) loads
 * the kSub rows that end where the padding begins instead, so no padded key or value is ever read
 * (0 · NaN would spread), and masks what is not its own. FP8 launches read aligned sub-blocks,
 * masked past the valid end: their vᵀ holds zeros there (quantize.cuh), and padded keys only reach
 * scores that are masked. */
template <typename Ops, bool kRedo>
__device__ __forceinline__ void produce(const Params &p, const Ring<Ops> &r, const CUtensorMap &tq, const CUtensorMap &tk,
                                        const CUtensorMap &tv) {
    constexpr int kStages = Ops::kStages, kSub = Ops::kSubBlock, kSubs = Ops::kSubBlocks;
    uint32_t q_it = 0, phase = 0;
    int stage = 0;
    int64_t idx = blockIdx.x; /* the grid's first items, one a CTA; then the counter's (work.cuh) */
    int b = 0;
    int4 it = idx < p.total ? item_at<kRedo>(p, idx, b) : make_int4(0, 0, 0, 0);
    for (int64_t round = 0; idx < p.total; ++round) {
        /* The next item, taken as this one starts. Its index waits in shared memory and its entry
         * is read once this one's tiles are issued, while the consumers still have the ring's
         * tiles to go: held in registers through the tiles, they outgrew the producer's 24. */
        const int64_t claimed = gridDim.x + (int64_t)atomicAdd(p.claims, 1ull);
        const int h = it.x & 0xfff, qb = it.y & 0xffff;
        CALIB_MARK(512 + round * 4, round < 64);
        if (kMaySplit && !Ops::kFp8 && item_part(it) != 0) /* the slot free, or filled (consume) */
            count_wait(p.split_counts + SplitSlots::slot(h, b, p.batch, qb), 512 * item_use(it) + 256 * (item_part(it) - 1));
        mbar_wait(r.q_empty(), (q_it & 1) ^ 1);
        CALIB_MARK(512 + round * 4 + 1, round < 64);
        asm volatile("st.shared.s64 [%0], %1;\n" ::"r"(r.claim_slot()), "l"(claimed) : "memory");
        hand(r.hand_slot(q_it), it, idx, b);
        /* FP8 with Q Kᵀ on e4m3: the channels apart are loaded only where the head has them (the
         * redo launch, which seldom has an item, loads them always: its producer has no register
         * to spare for the flag, and its consumers skip what they do not use). */
        const bool apart = Ops::kQkFp8 && (kRedo || head_apart(apart_info(p.apart, b * p.heads + h)));
        mbar_expect_tx(r.q_full(), apart ? Ops::kQLoaded : Ops::kQLoadedAlone);
        Ops::load_q(r.sq, &tq, apart ? &tv : nullptr, r.q_full(), qb * 128, h, b);
        ++q_it;
        const int end = valid_end(p, b), nsub = item_blocks(it) * (128 / kSub);
        SubBlocks<kSub> walk(p, it.z, item_part(it) == 2 ? kMid : 0);
        for (int first = 0; first < nsub; first += kSubs) {
            int row0[kSubs] = {};
            uint32_t win[4] = {0u, 0u, 0u, 0u};
#pragma unroll
            for (int k = 0; k < kSubs; ++k) {
                int lo = 0, hi = 0; /* a row's last tile: copies of its first sub-block, masked */
                if (first + k >= nsub) {
                    row0[k] = row0[0];
                } else {
                    const int key = walk.next(p);
                    row0[k] = key;
                    hi = kSub;
                    if (key + kSub > end) {
                        if (Ops::kFp8 || end == kTokens) {
                            hi = max(end - key, 0);
                        } else {
                            row0[k] = end - kSub;
                            lo = min(key - row0[k], kSub);
                        }
                    }
                }
                win[1 + k / 2] |= (uint32_t)(lo | hi << 8) << (16 * (k & 1));
                if (lo != 0 || hi != kSub) win[0] = 1;
            }
            if constexpr (Ops::kSumRef) win[3] = row0[0]; /* the tile's first key, for consume's rescore */
            mbar_wait(Ops::kFreeKEarly ? r.k_empty(stage) : r.v_empty(stage), phase ^ 1);
            asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(r.window_slot(stage)), "r"(win[0]), "r"(win[1]),
                         "r"(win[2]), "r"(win[3]) : "memory");
            mbar_expect_tx(r.k_full(stage), apart ? Ops::kKBytes : Ops::kKBytesAlone);
#pragma unroll
            for (int k = 0; k < kSubs; ++k) Ops::load_k(r.sk + stage * Ops::kKBytes, k, &tk, r.k_full(stage), row0[k], h, b);
            if constexpr (Ops::kQkFp8) {
                if (apart) {
#pragma unroll
                    for (int k = 0; k < kSubs; ++k) Ops::load_kx(r.sk + stage * Ops::kKBytes, k, &tv, r.k_full(stage), row0[k], h, b);
                }
            }
            mbar_wait(r.v_empty(stage), phase ^ 1);
            mbar_expect_tx(r.v_full(stage), Ops::kVBytes);
#pragma unroll
            for (int k = 0; k < kSubs; ++k) Ops::load_v(r.sv + stage * Ops::kVStage, k, &tv, p, r.v_full(stage), row0[k], h, b);
            if (++stage == kStages) {
                stage = 0;
                phase ^= 1;
            }
        }
        asm volatile("ld.shared.s64 %0, [%1];\n" : "=l"(idx) : "r"(r.claim_slot()) : "memory");
        if (idx < p.total) it = item_at<kRedo>(p, idx, b);
    }
    mbar_wait(r.q_empty(), (q_it & 1) ^ 1);
    hand(r.hand_slot(q_it), it, -1, -1);
    mbar_arrive(r.q_full());
}

/* A consumer warpgroup (wg 1 or 2; t its thread): 64 query rows of every item of this CTA. */
template <typename T, typename Ops, bool kRedo>
__device__ __forceinline__ void consume(const Params &p, const Ring<Ops> &r, const int wg, const int t) {
    constexpr int kStages = Ops::kStages, kSub = Ops::kSubBlock, kSubs = Ops::kSubBlocks, kGroups = Ops::kKeys / 8;
    const int w = t / 32, lane = t % 32, c = lane % 4;
    const int rloc0 = 64 * (wg - 1) + 16 * w + lane / 4; /* this thread's rows: rloc0, rloc0 + 8 */
    /* Ping-pong (Ops::kTurns): the two warpgroups take turns at the tensor cores (named barriers
     * 1 and 2). Warpgroup 1 goes first. */
    const int me = wg, other = 3 - wg;
    if (Ops::kTurns && wg == 2) named_arrive(1);
    /* The tiles' descriptors, made once from a warpgroup index the compiler knows is the same in
     * every lane (a broadcast), so they live in uniform registers; a stage is a constant step. */
    const int wgu = __shfl_sync(0xffffffffu, wg, 0);
    const uint64_t dq = Ops::qk_desc(r.sq + (wgu - 1) * Ops::kQHalf), dk0 = Ops::qk_desc(r.sk), dv0 = Ops::v_desc(r.sv);
    constexpr uint32_t kKDesc = Ops::kKBytes >> 4, kVDesc = Ops::kVStage >> 4;
    constexpr int kSumTiles = 8;
    constexpr bool kAhead = Ops::kAhead && !kRedo; /* the redo launch takes them after the maxima */
    /* Not where padded text may leave a row's first tile empty: against exponentiate's stand-in
     * reference of 0, codes below it would be clamped to zero before they are shifted up to the
     * row's maximum (and without exponentials ahead there, the codes' packing spilled). */
    constexpr bool kCodes = Ops::kCodes && !kRedo && kTextLast == 0;
    constexpr bool kSumRef = Ops::kSumRef && kTextLast == 0; /* padded text: a row's first tile may have no reference */
    constexpr bool kSplittable = kMaySplit && !Ops::kFp8; /* split lists are the bf16/f16 launch's (work.cuh) */
    int stage = 0;      /* the ring slot and phase of the next K/V tile */
    uint32_t phase = 0, q_it = 0;
    /* The previous query block's packed output, stored under this block's first product. */
    uint32_t pk[kDim / 4];
    int pv_b = -1, pv_h = 0, pv_qb = 0, pv_nt = 0, pv_toff = 0;
    for (int64_t round = 0;; ++round) {
        CALIB_MARK((wg - 1) * 256 + round * 8, t == 0 && round < 32);
        mbar_wait(r.q_full(), q_it & 1);
        CALIB_MARK((wg - 1) * 256 + round * 8 + 1, t == 0 && round < 32);
        int b;
        const int4 it = handed(r.hand_slot(q_it), b);
        if (b < 0) break; /* no more items */
        ++q_it;
        const int h = it.x & 0xfff, qb = it.y & 0xffff, ntargets = (unsigned)it.y >> 16;
        /* The row's key tiles (the producer passes each one's windows of valid columns). */
        const int ntiles = (item_blocks(it) * (128 / kSub) + kSubs - 1) / kSubs;
        float scale = p.scale_log2; /* e4m3: the quantization's scales undone (v's after the loop) */
        bool apart = false;         /* e4m3: the head keeps channels apart (quantize.cuh) */
        if constexpr (Ops::kQkFp8) {
            const int bh = b * p.heads + h;
            scale *= __ldg(p.qscale + (int64_t)bh * kQuantBlocks + qb) * __ldg(p.kscale + bh);
            apart = head_apart(apart_info(p.apart, bh));
        }
        float o[Ops::kORegs];
#pragma unroll
        for (int j = 0; j < Ops::kORegs; ++j) o[j] = 0.f;
        OnlineSoftmax sm;
        uint32_t pa[Ops::kPRegs]; /* P of the last tile: the A operand of its P V */
        float sc[Ops::kKeys / 2]; /* S of the current tile, then its probabilities */
        int sp = 0;               /* the stage and phase of the tile whose P V is next */
        uint32_t php = 0;
        int done = -1;            /* the stage of the P V in flight from the last turn */
        float f0 = 1.f, f1 = 1.f; /* what O is to be scaled by before the next P V */
        bool moved = false;       /* whether a maximum of this thread's rows moved */
        OnlineSoftmax::Ahead ahead; /* kAhead: P's scales for packing, and whether to redo the item */
        /* A row's first tile takes its exponentials after its maxima, so its rows all "moved" are
         * packed with these factors unchanged: for codes the neutral one is a shift of 0, not 1
         * (which put the first tile's probabilities 2^(1/8) high until 2026-12-05). */
        if constexpr (kCodes) ahead.c0 = ahead.c1 = 0.f;
        /* by_sums's way out, seldom taken: a row's scores jumped so far above its reference that
         * probabilities overflowed and their scores are lost, so this thread's scores of the tile
         * (one block of keys from key0) are computed again from q and k in global memory. */
        auto rescore = [&](const int key0) {
            const int t0 = qb * 128 + rloc0;
#pragma unroll
            for (int e = 0; e < Ops::kKeys / 2; ++e) {
                const int row = t0 + 8 * ((e >> 1) & 1), key = key0 + 8 * (e >> 2) + 2 * c + (e & 1);
                float acc = 0.f;
                if (row < kTokens && key < kTokens) {
                    const T *qr = row_of<T>(p.q, p.qs0, p.qs1, p.qs2, b, row, h), *kr = row_of<T>(p.k, p.ks0, p.ks1, p.ks2, b, key, h);
#pragma unroll 1
                    for (int d = 0; d < kDim; d += 8) {
                        float x[8], y[8];
                        load8(qr + d, x);
                        load8(kr + d, y);
#pragma unroll
                        for (int i = 0; i < 8; ++i) acc = fmaf(x[i], y[i], acc);
                    }
                }
                sc[e] = acc;
            }
        };

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
            uint32_t win[4];
            CALIB_TURN(0);
            if constexpr (kQK) {
                mbar_wait(r.k_full(s), ph);
                CALIB_TURN(1);
                asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                             : "=r"(win[0]), "=r"(win[1]), "=r"(win[2]), "=r"(win[3]) : "r"(r.window_slot(s)) : "memory");
            }
            if constexpr (kPV) {
                mbar_wait(r.v_full(sp), php);
                CALIB_TURN(2);
                wgmma_wait0();
                fence_regs<Ops::kORegs>(o);
                CALIB_TURN(3);
                if (done >= 0) mbar_arrive(r.v_empty(done));
                if (kAhead && __any_sync(0xffffffffu, moved)) { /* P to the moved references (softmax.cuh, Ahead) */
#pragma unroll
                    for (int g = 0; g < kGroups; ++g)
                        Ops::template pack<kCodes>(pa, g, Ops::template scaled<kCodes>(sc[4 * g], ahead.c0),
                                                   Ops::template scaled<kCodes>(sc[4 * g + 1], ahead.c0),
                                                   Ops::template scaled<kCodes>(sc[4 * g + 2], ahead.c1),
                                                   Ops::template scaled<kCodes>(sc[4 * g + 3], ahead.c1));
                } else {
#pragma unroll
                    for (int g = 0; g < kGroups; ++g)
                        Ops::template pack<kCodes>(pa, g, sc[4 * g], sc[4 * g + 1], sc[4 * g + 2], sc[4 * g + 3]);
                }
            }
            CALIB_TURN(4);
            if constexpr (Ops::kTurns) named_sync(me);
            wgmma_fence();
            if constexpr (kQK) {
                Ops::qk(sc, dq, dk0 + s * kKDesc, apart);
                wgmma_commit();
            }
            if constexpr (kPV) {
                /* FP8: the row sums that P V adds up against the ones (the last 4 accumulators:
                 * rows r, r, r + 8, r + 8; the quad's lanes hold the same) are taken into l and
                 * zeroed whenever O is rescaled, and at least every kSumTiles tiles, so none runs
                 * long at the FP8 products' reduced accumulation precision. Zeroed apart from O's
                 * rescaling, they made ptxas serialize every wgmma (C7511). */
                if (__any_sync(0xffffffffu, moved) || (Ops::kTensorSums && j % kSumTiles == 0)) {
                    if constexpr (Ops::kTensorSums) {
                        sm.l0 = (sm.l0 + o[kDim / 2]) * f0;
                        sm.l1 = (sm.l1 + o[kDim / 2 + 2]) * f1;
#pragma unroll
                        for (int x = kDim / 2; x < Ops::kORegs; ++x) o[x] = 0.f;
                    }
                    OnlineSoftmax::rescale<kDim / 2>(o, f0, f1);
                }
                wgmma_fence();
                Ops::pv(o, pa, dv0 + sp * kVDesc);
                wgmma_commit();
                done = sp;
            }
            if constexpr (Ops::kTurns) named_arrive(other);
            CALIB_TURN(5);
            if constexpr (!kPV) {
                if (pv_b >= 0) store_packed<T, kDim>(p, pv_b, pv_h, pv_qb, pv_nt, pv_toff, rloc0, pk, c);
                pv_b = -1;
            }
            if constexpr (kQK) {
                if constexpr (kPV) wgmma_wait1(); else wgmma_wait0();
                fence_regs<Ops::kKeys / 2>(sc);
                CALIB_TURN(6);
                if constexpr (Ops::kFreeKEarly) mbar_arrive(r.k_empty(s));
                if constexpr (!kPV) CALIB_MARK((wg - 1) * 256 + round * 8 + 2, t == 0 && round < 32);
                if (j + 1 == ntiles) mbar_arrive(r.q_empty());
                if (win[0]) OnlineSoftmax::mask_windows<kSub, kSubs>(sc, c, win + 1);
                /* A row's first tile has no reference to take its exponentials against. */
                moved = sm.exponentiate<kGroups, (kTextLast > 0), Ops::kLog2Gain, Ops::kSlack, !Ops::kTensorSums, kAhead && kPV,
                                        kCodes, kSumRef && kPV>(sc, scale, f0, f1, ahead);
                if (kSumRef && kPV && ahead.redo) {
                    ahead.redo = false;
                    rescore(win[3]);
                    if (win[0]) OnlineSoftmax::mask_windows<kSub, kSubs>(sc, c, win + 1);
                    moved = sm.exponentiate<kGroups, false, Ops::kLog2Gain, Ops::kSlack>(sc, scale, f0, f1);
                }
                CALIB_TURN(7);
                sp = s;
                php = ph;
                if (++stage == kStages) {
                    stage = 0;
                    phase ^= 1;
                }
            } else {
                wgmma_wait0();
                fence_regs<Ops::kORegs>(o);
                mbar_arrive(r.v_empty(done));
                if constexpr (Ops::kTensorSums) {
                    sm.l0 += o[kDim / 2];
                    sm.l1 += o[kDim / 2 + 2];
                }
            }
        };
        turn(std::false_type{}, std::true_type{}, 0);
        for (int j = 1; j < ntiles; ++j) turn(std::true_type{}, std::true_type{}, j);
        turn(std::true_type{}, std::false_type{}, ntiles);
        if constexpr (kAhead) {
            /* Flagged once (the first warp to flag it lists it); its output is written again. */
            if (__any_sync(0xffffffffu, ahead.redo) && lane == 0) {
                const int64_t idx = handed_index(r.hand_slot(q_it - 1));
                if (atomicExch(p.redo_flags + idx, 1u) == 0u) p.redo_list[1 + atomicAdd(p.redo_list, 1)] = (int32_t)idx;
            }
        }

        CALIB_MARK((wg - 1) * 256 + round * 8 + 3, t == 0 && round < 32);
        CALIB_NOTE((wg - 1) * 256 + round * 8 + 5, t == 0 && round < 32, ntiles);
        /* A split list's row (work.cuh, SplitSlots): the first half leaves its O, references and
         * sums in the slot, and the second folds them into its own as the combination of two
         * partial softmaxes. The producer waited for the slot's count before it loaded the item's
         * Q (free for a first half, filled for a second), and the consumers' wait for that Q
         * orders their stores or loads after it: a wait here, under O's registers, spilled. The
         * item is read again from its hand slot, as the loop leaves no register to keep its part in. */
        int4 again = make_int4(0, 0, 0, 0);
        int again_b;
        if constexpr (kSplittable) again = handed(r.hand_slot(q_it - 1), again_b);
        const int part = item_part(again);
        if (kSplittable && part != 0) {
            float4 *slot = reinterpret_cast<float4 *>(p.split_state + SplitSlots::slot(h, b, p.batch, qb) * SplitSlots::kFloats) +
                           (wg - 1) * 128 + t;
            uint32_t *count = p.split_counts + SplitSlots::slot(h, b, p.batch, qb);
            if (part == 1) {
#pragma unroll
                for (int j = 0; j < kDim / 8; ++j) __stcg(slot + j * 256, make_float4(o[4 * j], o[4 * j + 1], o[4 * j + 2], o[4 * j + 3]));
                __stcg(slot + kDim / 8 * 256, make_float4(sm.m0, sm.m1, sm.l0, sm.l1));
                count_release(count);
                /* pk (stored, pv_b < 0) defined on this path too, or its old value would be kept
                 * live through the next item's loop (32 registers: spills). */
#pragma unroll
                for (int j = 0; j < kDim / 4; ++j) pk[j] = 0u;
                continue;
            }
            const float4 x = __ldcg(slot + kDim / 8 * 256);
            /* With text last, a row may meet no valid key in either half (a batch element's valid
             * end before the middle): both references -inf, and a reference of 0 keeps it zeros. */
            float n0 = fmaxf(x.x, sm.m0), n1 = fmaxf(x.y, sm.m1);
            if constexpr (kTextLast > 0) {
                n0 = n0 == -INFINITY ? 0.f : n0;
                n1 = n1 == -INFINITY ? 0.f : n1;
            }
            const float a0 = fast_exp2(x.x - n0), a1 = fast_exp2(x.y - n1), c0 = fast_exp2(sm.m0 - n0), c1 = fast_exp2(sm.m1 - n1);
            sm.l0 = x.z * a0 + sm.l0 * c0;
            sm.l1 = x.w * a1 + sm.l1 * c1;
#pragma unroll
            for (int j = 0; j < kDim / 8; ++j) {
                const float4 y = __ldcg(slot + j * 256);
                o[4 * j] = fmaf(y.x, a0, o[4 * j] * c0);
                o[4 * j + 1] = fmaf(y.y, a0, o[4 * j + 1] * c0);
                o[4 * j + 2] = fmaf(y.z, a1, o[4 * j + 2] * c1);
                o[4 * j + 3] = fmaf(y.w, a1, o[4 * j + 3] * c1);
            }
            count_release(count);
        }
        float inv0, inv1;
        sm.finish<!Ops::kTensorSums>(inv0, inv1);
        if constexpr (Ops::kFp8) {
            const float vscale = __ldg(p.vscale + b * p.heads + h);
            inv0 *= vscale;
            inv1 *= vscale;
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
    }
    if (pv_b >= 0) store_packed<T, kDim>(p, pv_b, pv_h, pv_qb, pv_nt, pv_toff, rloc0, pk, c);
    if (Ops::kTurns && wg == 1) named_sync(1); /* takes warpgroup 2's last turn, so no arrival is left over */
}
#endif /* CALIB_NO_WGMMA */

/* kRedo: the FP8 redo launch (OnlineSoftmax::Ahead), over the items the launch before it flagged. */
template <typename T, typename Ops, bool kRedo = false>
__global__ void __launch_bounds__(384, 1)
calib_wgmma_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                   const __grid_constant__ CUtensorMap tv, const Params given) {
#if !defined(CALIB_NO_WGMMA)
    if constexpr (kWgmmaShape) {
        extern __shared__ unsigned char smem_raw[];
        const Ring<Ops> r((smem_u32(smem_raw) + 1023u) & ~1023u);
        const int tid = threadIdx.x, wg = tid / 128;
        if (tid == 0) {
            mbar_init(r.q_full(), 1);
            mbar_init(r.q_empty(), 256);
            for (int s = 0; s < Ops::kStages; ++s) {
                mbar_init(r.k_full(s), 1);
                mbar_init(r.v_full(s), 1);
                mbar_init(r.k_empty(s), 256);
                mbar_init(r.v_empty(s), 256);
            }
            asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        }
        if constexpr (Ops::kTensorSums) Ops::write_ones(r.sv, tid, 384);
        __syncthreads();
        if (wg == 0) {
            /* The registers move within the CTA's allotment (384 × 168): 128 × 24 + 256 × 240
             * (make cuda-check fails a split that asks for more, which would hang the launch). */
            asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
            if (tid == 0) produce<Ops, kRedo>(role_params<kRedo>(given), r, tq, tk, tv);
        } else {
            asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n");
            /* The step is read after the registers moved, so nothing is live across (else ptxas
             * may spill what crosses). */
            consume<T, Ops, kRedo>(role_params<kRedo>(given), r, wg, tid - 128 * wg);
        }
    }
#endif
}

} // namespace calib_cuda_detail
