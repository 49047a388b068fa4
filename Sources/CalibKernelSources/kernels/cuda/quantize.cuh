/* quantize.cuh: the pass of an FP8 launch, which writes v (and, for CALIB_FP8_ALL, q and k; kQK
 * below) as e4m3 into the caller's workspace (calib_cuda_attention_fp8), on the device, inside the
 * attention launch itself (wgmma_kernel.cuh, calib_fp8_kernel): a few of its CTAs (the pass team)
 * run the pass while the rest run attention, each attention item waiting for its (batch, head)
 * ("unit") to be ready. Per unit, in the order attention needs them (heads in order, a head's
 * batch elements together: work.cuh's list):
 *
 *   stats     the team's first CTAs (kMaxParts at most) take its blocks of 128 tokens in turn: v's per-channel sum,
 *             minimum and maximum over the valid tokens, k's over a sample of them (one in 16,
 *             eight a block); padded text excluded. A CTA's partial results go to its slot, and
 *             the team's last CTA to finish combines them:
 *   combine   in slot order (so the result does not depend on scheduling): v's mean and k's mean
 *             over the sample, and their limits: 8 times the largest |x − mean| seen, whose scale
 *             (limit / 448) quantizing uses
 *   quantize  the team's CTAs take its blocks in turn, once its statistics are combined:
 *             (v − mean) / scale, transposed, and the block's sum of v's rounding errors per
 *             channel; q's scale for the block (its largest magnitude / 448) and q / scale;
 *             (k − mean) / scale; a block whose largest |k − mean| passes k's limit raises the
 *             unit's amax to it. The team's last CTA to finish takes the rounding errors' mean
 *             out of v's mean and, where amax was raised (CALIB_FP8_ALL; all but unheard-of
 *             inputs never), quantizes k again at amax's scale (the fixup), then marks the unit
 *             ready. A CTA counts each unit once, not each block: a count's fences took
 *             microseconds a block (run 111).
 *
 * A CTA's steps (a block of one tensor each) are S(0), S(1) Q(0), S(2) Q(1), ... for the units
 * whose team it is in: every CTA for the first L2 group of heads, which attention could only wait
 * for, the first pass_ctas CTAs for the rest. Known in advance, they are brought into shared
 * memory by cp.async several steps ahead of the one computed, so a CTA keeps about 100 KB of
 * loads in flight (one CTA an SM streams 96 GB/s so: Tests/GPU/sm_bandwidth.cu; computing a step
 * at a time from registers reached 13, docs/gpu.md run 109). A CTA waits only for the combine of
 * a unit whose stats it did a step earlier, and the launch is cooperative (every CTA resident),
 * so no wait is for a CTA that cannot run. Why beside the loop (docs/gpu.md, "The pass beside the
 * loop"): the pass is bound by memory and attention by the SMs, so a pass on a few SMs under the
 * loop costs little where, as launches of their own before it, it cost a fifth of `fp8`'s time at
 * density 0.1 (run 74).
 *
 * Why these choices (docs/gpu.md, "FP8"): e4m3 carries 3 mantissa bits over 2^-9 … 448, so the
 * scale's granularity matters only for range, not for relative precision, and per-head scales
 * keep a tile's scale one number. Subtracting k's mean over tokens (SageAttention's smoothing)
 * changes every score of a query row by the same amount, which the softmax ignores, and removes
 * the large constant channels real models' keys carry, which would otherwise set the scale and
 * round the rest. v's mean goes for another reason: the tensor cores accumulate FP8 products at
 * less than fp32, so O, which grows over a row's tiles with v's mean as the row sums do, lost the
 * late tiles' share (relative L2 3e-1 with v ~ N(1, 1) over 256 key tiles, docs/gpu.md run 62);
 * without it O wanders instead of growing, and the kernel adds it back to each normalized row in
 * fp32 (a row's probabilities sum to 1). What e4m3 does to v − mean has a mean over tokens too, a
 * channel's errors not cancelling as independent ones would (bf16 values on their own grid): a
 * row of nearly even probabilities takes that mean whole, so the mean added back is less it
 * (Tests/GPU/pv_rounding_model.py: 4.3e-2 → 3.4e-2 on N(0, 1) inputs; docs/gpu.md, "v's rounding
 * mean"). For the same reason v's mean must be the whole's: a
 * sample's leaves v − mean a mean of about σ / √samples a channel (2% of σ at Wan 1.3B), which
 * over a long row of nearly even probabilities is larger than O itself and grows with the row
 * sums as v's own mean did (run 76: `fp8-pv` 4.0e-2 → 5.1e-2 on the Wan 1.3B dense layer). Any
 * vector serves as k's mean (the softmax ignores it), so k's statistics come from a sample,
 * which halves what the stats launch reads (reading the whole of k and v cost a third of the pass
 * in run 70). The sample's range times 8 leaves the values' smallest part as normal e4m3 all the
 * same (e4m3 spans 2^15), and a key past it, which a sample may miss, costs a fixup rather than
 * a clipped value: Tests/GPU/sampled_stats_model.py models both. FP8 wgmma wants both operands K-major,
 * so P V's B operand is vᵀ: this pass writes it transposed, which costs nothing extra since it
 * writes v anyway, and with the keys of each group of 16 in the order P's A fragment holds them
 * (key_position), so P goes from the softmax's accumulators to the product with no shuffle.
 * Padded text and the rows past the sequence are written as zeros, so the attention kernel reads
 * aligned tiles and masks columns as it does at the sequence's end. */
#pragma once

#include "ptx.cuh"
#include "work.cuh"

namespace calib_cuda_detail {

constexpr int kFp8Max = 448;                                   /* e4m3's largest finite value */
constexpr int kPadTokens = (kTokens + 127) / 128 * 128;        /* tokens in vᵀ, whole blocks */
constexpr int kQuantBlocks = kPadTokens / 128;                 /* q scales per (batch, head) */
constexpr int kSampleStride = 16;                              /* k's statistics read one token in 16 */
constexpr float kMargin = 8.f;                                 /* the limit over the sample's range */
constexpr int kStatFloats = 6 * kDim;                          /* k's, then v's sum, min, max per channel */
/* Stats slots a unit: the CTAs of its team that take its stats, at most (no more than its blocks).
 * The slots lie in the unit's own vᵀ, which nothing writes before they are combined (stats_slot). */
constexpr int kMaxParts = kQuantBlocks < 160 ? kQuantBlocks : 160;
static_assert(kMaxParts * kStatFloats * 4 <= kDim * kPadTokens, "the stats slots outgrow a unit's vᵀ");

/* Sample m's token: one of 16m … 16m + 15 picked by a hash of m, so that no column of an image
 * whose width is a multiple of 16 is all the sample sees. Increasing in m; sample 0 is token 0, so
 * a head with a valid token has a sample. */
static_assert(kSampleStride == 16, "sampled_token takes 4 bits of the hash");
__host__ __device__ constexpr int sampled_token(int m) { return kSampleStride * m + (int)(((uint32_t)m * 0x9E3779B9u) >> 28); }

/* The samples among the first `valid` tokens. */
__host__ __device__ constexpr int samples_before(int valid) {
    return valid / kSampleStride + (sampled_token(valid / kSampleStride) < valid ? 1 : 0);
}

/* The workspace's sections for one call: e4m3 q and k as (b, h, s, d), vᵀ as (b, h, panel of 32
 * keys, d, key: s padded to kPadTokens), then the fp32 scales, k's and v's means, and the
 * counters, zeroed before each launch (one memset of `zeroed`). Arrays "per unit" are indexed
 * b × heads + h. */
struct Fp8Work {
    uint8_t *q, *k, *vt;
    float *qscale, *kscale, *vscale, *kmean, *vmean;
    float *limit;   /* per unit: k's limit on |k − mean| at the quantizing's scale */
    float *verr;    /* per (unit, block of 128 tokens, channel): the sum of v's rounding errors */
    uint32_t *next;       /* attention's next item (below 2^31: calib_cuda.cu's launch_fp8) */
    uint32_t *stats_done; /* per unit: its team's CTAs done with its stats, so the last combines */
    uint32_t *combined;   /* per unit: 1 once its statistics are combined */
    uint32_t *vdone;      /* per unit: its blocks quantized, so the last finishes the unit */
    uint32_t *ready;      /* per unit: 1 once its operands are written (attention waits for it) */
    uint32_t *amax;       /* per unit: k's largest |k − mean| where past the limit (float bits), else 0 */
    uint32_t *redo_flags; /* a word per possible item: batch × heads × kQuantBlocks */
    int32_t *redo_list;   /* the count, then as many items */
    void *zeroed;
    int64_t zeroed_bytes;
};

/* Lays out the sections from `base` (null: only measures) and returns the bytes they take; q's and
k's are empty unless kQK (CALIB_FP8_ALL). */
inline int64_t fp8_layout(int64_t batch, int64_t heads, bool kQK, void *base, Fp8Work *w) {
    const int64_t bh = batch * heads;
    int64_t at = 0;
    auto take = [&](int64_t bytes) {
        const int64_t here = at;
        at += (bytes + 255) / 256 * 256;
        return here;
    };
    const int64_t qk = kQK ? bh * kTokens * kDim : 0;
    const int64_t q = take(qk), k = take(qk), vt = take(bh * kDim * kPadTokens);
    const int64_t qs = take(bh * kQuantBlocks * 4), ks = take(bh * 4), vs = take(bh * 4), km = take(bh * kDim * 4);
    const int64_t vm = take(bh * kDim * 4);
    const int64_t lim = take(bh * 4), ve = take(bh * kQuantBlocks * kDim * 4);
    /* The counters: attention's claims, five per unit, the redo flags and list. */
    const int64_t words = 1 + 5 * bh + bh * kQuantBlocks + 1 + bh * kQuantBlocks;
    const int64_t zero = take(words * 4);
    if (base) {
        uint8_t *b = static_cast<uint8_t *>(base);
        auto f = [&](int64_t at) { return reinterpret_cast<float *>(b + at); };
        uint32_t *c = reinterpret_cast<uint32_t *>(b + zero);
        *w = {b + q, b + k, b + vt, f(qs), f(ks), f(vs), f(km), f(vm), f(lim), f(ve),
              c, c + 1, c + 1 + bh, c + 1 + 2 * bh, c + 1 + 3 * bh, c + 1 + 4 * bh, c + 1 + 5 * bh,
              reinterpret_cast<int32_t *>(c + 1 + 5 * bh + bh * kQuantBlocks),
              b + zero, words * 4};
    }
    return at;
}

/* Where key kk of a group of 16 sits in vᵀ: P's A fragment gives lane c the positions 4c .. 4c+3
 * of each group of 16, and the softmax holds keys 2c, 2c+1, 8+2c, 9+2c there. */
__host__ __device__ constexpr int key_position(int kk) { return 4 * ((kk & 7) >> 1) + (kk & 1) + 2 * (kk >> 3); }

/* Eight consecutive elements of T (16 bytes) as floats. */
template <typename T> __device__ __forceinline__ void load8(const T *src, float *f) {
    const uint4 raw = *reinterpret_cast<const uint4 *>(src);
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        if constexpr (std::is_same<T, __half>::value) {
            const float2 x = __half22float2(*reinterpret_cast<const __half2 *>(&w[i]));
            f[2 * i] = x.x; f[2 * i + 1] = x.y;
        } else {
            const float2 x = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&w[i]));
            f[2 * i] = x.x; f[2 * i + 1] = x.y;
        }
    }
}

template <typename T> __device__ __forceinline__ const T *row_of(const void *base, int64_t s0, int64_t s1, int64_t s2, int b, int t, int h) {
    return static_cast<const T *>(base) + (int64_t)b * s0 + (int64_t)t * s1 + (int64_t)h * s2;
}

/* The pass's barrier: the 256 threads of a CTA's warpgroups 0 and 1 that run it (the third waits
 * for the pass's end apart). */
__device__ __forceinline__ void pass_sync() { asm volatile("bar.sync 3, 256;\n" ::: "memory"); }

constexpr int kLanes = kDim / 8;       /* threads per token row, 8 channels each */
constexpr int kRowsPer = 256 / kLanes; /* token rows the pass's 256 threads cover at once */
constexpr int kIters = 128 / kRowsPer; /* ... and how many times a block */
constexpr int kPieces = kDim / 8;      /* 16-byte pieces of a row */

/* A step's rows in shared memory: a block of 128 tokens of one tensor, then (stats) the block's 8
 * sampled keys. Piece x of row r sits at x ^ f(r), f(r) = (r / 2 + r / 16) mod 8, so the four
 * keys × 16 channels quantize_v's threads read hit every bank group four times, not one 32 times;
 * rows read whole stay one contiguous row. Returns the element offset. */
constexpr int kStepRows = 128 + 8;
__device__ __forceinline__ int step_at(int row, int piece) { return row * kDim + 8 * (piece ^ ((row / 2 + row / 16) & 7)); }

/* The pass's shared memory, at the start of the attention ring (free until attention starts):
 * this, then the pass's stages of kStepRows rows. */
struct PassScratch {
    float red[8];
    int last;
    float kscale, vscale, limit;
    float kmean[kDim], vmean[kDim]; /* the unit in hand's statistics, copied once combined */
    union {
        uint32_t vt[kDim][32];      /* vᵀ of a block: kDim rows of 128 keys */
        float sums[kRowsPer][kDim]; /* a stats slot's row groups */
    } __align__(16);
};

/* The largest of every thread's x over the pass's 256 threads. */
__device__ __forceinline__ float cta_max(float x, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    pass_sync();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    pass_sync();
    float m = red[0];
#pragma unroll
    for (int i = 1; i < 8; ++i) m = fmaxf(m, red[i]);
    return m;
}

/* One step of a CTA's pass. */
enum StepKind { kNoStep, kStats, kStatsEnd, kQuantQ, kQuantK, kQuantV, kQuantEnd };
struct Step {
    int kind, u, blk;
    bool first; /* the CTA's first quantizing step of unit u: the statistics must be combined */
};

/* A CTA's steps in order (the file's header). Team of unit u: every CTA (the grid) for u < lead,
 * else the first `pass` CTAs, the first kMaxParts of them for its stats; CTA c of a team of n
 * takes blocks c, c + n, ..., then ends the unit (kStatsEnd, kQuantEnd: every CTA of the team,
 * with blocks or none). */
template <bool kQK> struct PassSteps {
    int units, lead, pass, c, g_end;
    int g = 0, phase = 0, blk = -1, sub = 0;
    bool first = true;
    __device__ __forceinline__ PassSteps(const Params &p, int lead_units, int pass_ctas)
        : units(p.batch * p.heads), lead(lead_units), pass(pass_ctas), c(blockIdx.x) {
        g_end = c < pass ? units : lead;
    }
    __device__ __forceinline__ int team(int u) const { return u < lead ? (int)gridDim.x : pass; }
    __device__ __forceinline__ int stats_team(int u) const { return team(u) < kMaxParts ? team(u) : kMaxParts; }
    __device__ __forceinline__ Step next(const Params &p) {
        for (;;) {
            if (g > g_end) return {kNoStep, 0, 0, false};
            if (phase == 0) { /* S(g): this CTA's blocks of g's valid tokens, then its slot */
                if (g < g_end && c < stats_team(g)) {
                    const int nb = (valid_end(p, g % p.batch) + 127) / 128;
                    blk = blk < 0 ? c : blk + stats_team(g);
                    if (blk < nb) return {kStats, g, blk, false};
                    phase = 1;
                    return {kStatsEnd, g, 0, false};
                }
                phase = 1;
            }
            if (phase == 1) { /* Q(g - 1): this CTA's blocks, q, k (kQK) and v each */
                phase = 2;
                blk = -1;
                first = true;
            }
            const int u = g - 1;
            if (g >= 1 && c < team(u) && phase == 2) {
                if (blk < 0 || sub == 2) {
                    blk = blk < 0 ? c : blk + team(u);
                    sub = kQK ? 0 : 2;
                } else {
                    ++sub;
                }
                if (blk < kQuantBlocks) {
                    const Step s = {sub == 0 ? kQuantQ : sub == 1 ? kQuantK : kQuantV, u, blk, first};
                    first = false;
                    return s;
                }
                phase = 3;
                return {kQuantEnd, u, 0, first};
            }
            ++g;
            phase = 0;
            blk = -1;
        }
    }
};

/* The step's rows into `stage` by cp.async (rows past the valid end are not read; the steps mask
 * them). */
template <typename T, bool kQK>
__device__ __forceinline__ void fetch_step(const Params &p, const Step &st, T *stage) {
    if (st.kind == kNoStep || st.kind == kStatsEnd || st.kind == kQuantEnd) return;
    const int tid = threadIdx.x, b = st.u % p.batch, h = st.u / p.batch, end = valid_end(p, b);
    const void *base = st.kind == kQuantQ ? p.q : st.kind == kQuantK ? p.k : p.v;
    const int64_t s0 = st.kind == kQuantQ ? p.qs0 : st.kind == kQuantK ? p.ks0 : p.vs0;
    const int64_t s1 = st.kind == kQuantQ ? p.qs1 : st.kind == kQuantK ? p.ks1 : p.vs1;
    const int64_t s2 = st.kind == kQuantQ ? p.qs2 : st.kind == kQuantK ? p.ks2 : p.vs2;
#pragma unroll 4
    for (int i = tid; i < 128 * kPieces; i += 256) {
        const int row = i / kPieces, piece = i % kPieces, t = st.blk * 128 + row;
        if (t < end) cp_async16(stage + step_at(row, piece), row_of<T>(base, s0, s1, s2, b, t, h) + 8 * piece);
    }
    if (kQK && st.kind == kStats && tid < 8 * kPieces) {
        const int j = tid / kPieces, piece = tid % kPieces, m = st.blk * 8 + j;
        if (m < samples_before(end))
            cp_async16(stage + step_at(128 + j, piece), row_of<T>(p.k, p.ks0, p.ks1, p.ks2, b, sampled_token(m), h) + 8 * piece);
    }
}

/* v's (and k's sample) per-channel sums, minima and maxima of one block into this thread's st
 * (its channels 8 lane .. 8 lane + 7, rows r0, r0 + kRowsPer, ...). */
template <typename T, bool kQK>
__device__ __forceinline__ void stats_step(const Params &p, const Step &st, const T *stage, float (*acc)[3][8]) {
    const int tid = threadIdx.x, lane = tid % kLanes, r0 = tid / kLanes, end = valid_end(p, st.u % p.batch);
    auto gather = [&](float (*g)[8], const float *f) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            g[0][i] += f[i];
            g[1][i] = fminf(g[1][i], f[i]);
            g[2][i] = fmaxf(g[2][i], f[i]);
        }
    };
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
        const int row = it * kRowsPer + r0;
        if (st.blk * 128 + row < end) {
            float f[8];
            load8(stage + step_at(row, lane), f);
            gather(acc[1], f);
        }
    }
    if (kQK && r0 < 8 && st.blk * 8 + r0 < samples_before(end)) {
        float f[8];
        load8(stage + step_at(128 + r0, lane), f);
        gather(acc[0], f);
    }
}

/* Slot c of unit bh's stats. */
__device__ __forceinline__ float *stats_slot(const Fp8Work &w, int bh, int c) {
    return reinterpret_cast<float *>(w.vt + (int64_t)bh * kDim * kPadTokens) + c * kStatFloats;
}

/* Unit u's statistics combined from its team's n slots, by the threads below kDim, one a channel
 * (all 256 reach the barriers). The slots were written by other CTAs: read from L2. */
template <bool kQK>
__device__ __forceinline__ void fp8_combine(const Params &p, const Fp8Work &w, int h, int b, int n, PassScratch &s) {
    const int c = threadIdx.x, bh = b * p.heads + h;
    const bool mine = c < kDim;
    float *red = s.sums[0];
    const float *part = stats_slot(w, bh, 0);
    const int valid = valid_end(p, b);
    /* x = 0: k (when kQK), 1: v. Channel c's mean (k's over the sample), the unit's limit and scale. */
    for (int x = kQK ? 0 : 1; x < 2; ++x) {
        const int count = x ? valid : samples_before(valid);
        float sum = 0.f, lo = INFINITY, hi = -INFINITY;
#pragma unroll 4
        for (int i = 0; i < n; ++i) {
            if (!mine) break;
            const float *g = part + i * kStatFloats + 3 * kDim * x;
            sum += __ldcg(g + c);
            lo = fminf(lo, __ldcg(g + kDim + c));
            hi = fmaxf(hi, __ldcg(g + 2 * kDim + c));
        }
        const float mean = count > 0 ? sum / (float)count : 0.f;
        pass_sync();
        if (mine) red[c] = count > 0 ? fmaxf(hi - mean, mean - lo) : 0.f;
        pass_sync();
        if (!mine) continue;
        float most = 0.f;
        for (int i = 0; i < kDim; ++i) most = fmaxf(most, red[i]);
        (x ? w.vmean : w.kmean)[(int64_t)bh * kDim + c] = mean;
        if (c == 0) {
            const float limit = kMargin * most;
            (x ? w.vscale : w.kscale)[bh] = limit > 0.f ? limit / kFp8Max : 1.f;
            if (x == 0) w.limit[bh] = limit;
        }
    }
}

/* This CTA's stats of unit u done: its sums, minima and maxima reduced over its threads (row
 * groups in a fixed order) into its slot c, acc reset; the team's last CTA combines. */
template <bool kQK>
__device__ __forceinline__ void stats_end(const Params &p, const Fp8Work &w, int u, int c, int n, float (*acc)[3][8], PassScratch &s) {
    const int tid = threadIdx.x, lane = tid % kLanes, r0 = tid / kLanes;
    const int b = u % p.batch, h = u / p.batch, bh = b * p.heads + h;
    float *out = stats_slot(w, bh, c);
#pragma unroll
    for (int which = kQK ? 0 : 3; which < 6; ++which) {
        const int x = which / 3, kind = which % 3;
        pass_sync();
#pragma unroll
        for (int i = 0; i < 8; ++i) s.sums[r0][8 * lane + i] = acc[x][kind][i];
        pass_sync();
        if (tid < kDim) {
            float y = s.sums[0][tid];
            for (int r = 1; r < kRowsPer; ++r)
                y = kind == 0 ? y + s.sums[r][tid] : kind == 1 ? fminf(y, s.sums[r][tid]) : fmaxf(y, s.sums[r][tid]);
            out[which * kDim + tid] = y;
        }
    }
#pragma unroll
    for (int x = 0; x < 2; ++x)
#pragma unroll
        for (int i = 0; i < 8; ++i) { acc[x][0][i] = 0.f; acc[x][1][i] = INFINITY; acc[x][2][i] = -INFINITY; }
    pass_sync();
    if (tid == 0) {
        __threadfence(); /* every thread's stores of the slot (the barrier ordered them) before the count */
        s.last = atomicAdd(w.stats_done + bh, 1u) == (uint32_t)n - 1;
        __threadfence(); /* the other slots after their counts */
    }
    pass_sync();
    if (s.last) {
        fp8_combine<kQK>(p, w, h, b, n, s);
        pass_sync();
        if (tid == 0) {
            __threadfence();
            count_release(w.combined + bh);
        }
    }
}

/* k's rows of block `blk` less its mean, times kinv, as e4m3 (the rows past the valid end as
 * zeros), row `row` of the block read through at(row, piece), a row at a time (the pass runs in
 * the attention kernel's 168 registers); returns this thread's largest |k − mean|. */
template <typename T, typename At>
__device__ __forceinline__ float quantize_k(const Params &p, const Fp8Work &w, int blk, int b, int h, int end, float kinv,
                                            const float *kmean, At at) {
    const int tid = threadIdx.x, lane = tid % kLanes, r0 = tid / kLanes, bh = b * p.heads + h;
    float mean[8], amax = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) mean[i] = kmean[8 * lane + i];
#pragma unroll 2
    for (int it = 0; it < kIters; ++it) {
        const int row = it * kRowsPer + r0, t = blk * 128 + row;
        if (t >= kTokens) continue;
        float f[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        if (t < end) {
            load8(at(row, lane), f);
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const float d = f[i] - mean[i];
                amax = fmaxf(amax, fabsf(d));
                f[i] = d * kinv;
            }
        }
        uint2 packed;
        packed.x = e4m3x2(f[0], f[1]) | e4m3x2(f[2], f[3]) << 16;
        packed.y = e4m3x2(f[4], f[5]) | e4m3x2(f[6], f[7]) << 16;
        *reinterpret_cast<uint2 *>(w.k + ((int64_t)bh * kTokens + t) * kDim + 8 * lane) = packed;
    }
    return amax;
}

/* e4m3's rounding of x and y, less x and y. */
__device__ __forceinline__ float rounding_error(uint32_t xy, float x, float y) {
    uint32_t h;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h) : "h"((unsigned short)xy));
    const float2 r = __half22float2(*reinterpret_cast<const __half2 *>(&h));
    return (r.x - x) + (r.y - y);
}

/* v's block `blk` (in `stage`) less its mean, times vinv, transposed through s.vt into vᵀ (v's
 * statistics saw every token, so no value passes its limit). A thread takes the four keys that
 * one lane's P fragment holds at positions 4c .. 4c+3 of a group of 16 (key_position) and 16
 * channels, so it writes each channel's four bytes as one word; a warp's 32 threads are the
 * block's 32 such quads of one channel range, so each of its stores fills 32 banks of one row
 * once. The block's rounding errors per channel go to verr (in vinv's units), summed in a fixed
 * order through s.vt once it is copied out. */
template <typename T>
__device__ __forceinline__ void quantize_v(const Params &p, const Fp8Work &w, int blk, int b, int h, int end, float vinv,
                                            const T *stage, PassScratch &s) {
    const int tid = threadIdx.x, bh = b * p.heads + h;
    constexpr int kVTasks = 32 * (kDim / 16);
    float err[16];
    if (tid < kVTasks) {
        const int quad = tid % 32, ch0 = 16 * (tid / 32), c4 = quad % 4;
        const int keys[4] = {2 * c4, 2 * c4 + 1, 8 + 2 * c4, 9 + 2 * c4};
#pragma unroll
        for (int half = 0; half < 2; ++half) { /* 8 channels at a time: the pass's registers are the kernel's 168 */
            float f[4][8];
            bool valid[4];
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int row = 16 * (quad / 4) + keys[x];
                valid[x] = blk * 128 + row < end;
                load8(stage + step_at(row, ch0 / 8 + half), f[x]);
            }
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const int ch = ch0 + 8 * half + i;
                const float mean = s.vmean[ch];
                float e[4]; /* padding and the rows past the sequence as zeros */
#pragma unroll
                for (int x = 0; x < 4; ++x) e[x] = valid[x] ? (f[x][i] - mean) * vinv : 0.f;
                const uint32_t lo = e4m3x2(e[0], e[1]), hi = e4m3x2(e[2], e[3]);
                s.vt[ch][quad] = lo | hi << 16;
                err[8 * half + i] = rounding_error(lo, e[0], e[1]) + rounding_error(hi, e[2], e[3]);
            }
        }
    }
    pass_sync();
    /* Out as four panels of 32 keys (kDim rows of 32 bytes each, contiguous), the two 16-byte
     * halves of a row swapped in rows 4-7 of every 8: the 32-byte swizzle the product reads, so
     * the kernel brings a panel with one plain copy. */
    uint8_t *dst = w.vt + ((int64_t)bh * kPadTokens + blk * 128) * kDim;
    for (int i = tid; i < kDim * 8; i += 256) {
        const int row = i / 8, part = i % 8, panel = part / 2, half = (part % 2) ^ ((row >> 2) & 1);
        *reinterpret_cast<uint4 *>(dst + panel * 32 * kDim + row * 32 + 16 * half) = *reinterpret_cast<const uint4 *>(&s.vt[row][4 * part]);
    }
    pass_sync();
    float(*sums)[32] = reinterpret_cast<float(*)[32]>(s.vt);
    if (tid < kVTasks) {
#pragma unroll
        for (int i = 0; i < 16; ++i) sums[16 * (tid / 32) + i][tid % 32] = err[i];
    }
    pass_sync();
    if (tid < kDim) {
        float e = 0.f;
        for (int x = 0; x < 32; ++x) e += sums[tid][x];
        w.verr[((int64_t)bh * kQuantBlocks + blk) * kDim + tid] = e;
    }
}

/* This CTA's blocks of the unit done (every thread's stores, which the barrier ordered, before the
 * count). The team's last CTA takes the rounding errors' mean out of v's mean (the blocks' sums in
 * block order); where a quantized block found k past its limit, it quantizes k again at amax's
 * scale alone (all but unheard-of inputs skip it); then it marks the unit ready for attention, its
 * stores first and visible to the copy engine (the async proxy) that brings them into attention's
 * shared memory. */
template <typename T, bool kQK>
__device__ __forceinline__ void quant_end(const Params &p, const Fp8Work &w, int h, int b, int n, PassScratch &s) {
    const int tid = threadIdx.x, bh = b * p.heads + h, end = valid_end(p, b);
    if (tid == 0) {
        __threadfence();
        s.last = atomicAdd(w.vdone + bh, 1u) == (uint32_t)n - 1;
        __threadfence();
    }
    pass_sync();
    if (!s.last) return;
    if (tid < kDim && end > 0) {
        float e = 0.f;
        for (int i = 0; i < kQuantBlocks; ++i) e += __ldcg(w.verr + ((int64_t)bh * kQuantBlocks + i) * kDim + tid);
        w.vmean[(int64_t)bh * kDim + tid] = s.vmean[tid] - e * s.vscale / (float)end;
    }
    if constexpr (kQK) {
        const float kmax = __uint_as_float(__ldcg(w.amax + bh));
        if (kmax != 0.f) {
            const float kscale = kmax / kFp8Max;
            for (int blk = 0; blk < kQuantBlocks; ++blk)
                quantize_k<T>(p, w, blk, b, h, end, 1.f / kscale, s.kmean,
                              [&](int row, int piece) { return row_of<T>(p.k, p.ks0, p.ks1, p.ks2, b, blk * 128 + row, h) + 8 * piece; });
            if (threadIdx.x == 0) w.kscale[bh] = kscale;
        }
    }
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
    pass_sync();
    if (threadIdx.x == 0) {
        __threadfence();
        count_release(w.ready + bh);
    }
}

/* One quantizing step from `stage`. */
template <typename T, bool kQK>
__device__ __forceinline__ void quantize_step(const Params &p, const Fp8Work &w, const Step &st, int n, const T *stage, PassScratch &s) {
    const int tid = threadIdx.x, lane = tid % kLanes, r0 = tid / kLanes;
    const int b = st.u % p.batch, h = st.u / p.batch, bh = b * p.heads + h, blk = st.blk, end = valid_end(p, b);
    if (st.first) { /* the unit's statistics, combined by another CTA, into s */
        if (tid == 0) count_wait(w.combined + bh, 1u);
        pass_sync();
        if (tid < kDim) {
            s.kmean[tid] = __ldcg(w.kmean + (int64_t)bh * kDim + tid);
            s.vmean[tid] = __ldcg(w.vmean + (int64_t)bh * kDim + tid);
        }
        if (tid == 0) {
            s.kscale = __ldcg(w.kscale + bh);
            s.vscale = __ldcg(w.vscale + bh);
            s.limit = __ldcg(w.limit + bh);
        }
        pass_sync();
    }
    if (st.kind == kQuantEnd) return quant_end<T, kQK>(p, w, h, b, n, s);
    if (kQK && st.kind == kQuantQ) { /* q: the block's own scale; its rows read twice from shared memory */
        float amax = 0.f;
#pragma unroll 2
        for (int it = 0; it < kIters; ++it) {
            const int row = it * kRowsPer + r0;
            if (blk * 128 + row >= end) continue;
            float x[8];
            load8(stage + step_at(row, lane), x);
#pragma unroll
            for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(x[i]));
        }
        amax = cta_max(amax, s.red);
        const float qscale = amax > 0.f ? amax / kFp8Max : 1.f, qinv = 1.f / qscale;
        if (tid == 0) w.qscale[(int64_t)bh * kQuantBlocks + blk] = qscale;
#pragma unroll 2
        for (int it = 0; it < kIters; ++it) {
            const int row = it * kRowsPer + r0, t = blk * 128 + row;
            if (t >= kTokens) continue;
            float x[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
            if (t < end) load8(stage + step_at(row, lane), x);
            uint2 packed;
            packed.x = e4m3x2(x[0] * qinv, x[1] * qinv) | e4m3x2(x[2] * qinv, x[3] * qinv) << 16;
            packed.y = e4m3x2(x[4] * qinv, x[5] * qinv) | e4m3x2(x[6] * qinv, x[7] * qinv) << 16;
            *reinterpret_cast<uint2 *>(w.q + ((int64_t)bh * kTokens + t) * kDim + 8 * lane) = packed;
        }
    } else if (kQK && st.kind == kQuantK) { /* k: its mean over tokens subtracted, the unit's scale */
        const float amax = quantize_k<T>(p, w, blk, b, h, end, 1.f / s.kscale, s.kmean,
                                         [&](int row, int piece) { return stage + step_at(row, piece); });
        const float most = cta_max(amax, s.red);
        if (tid == 0 && most > s.limit) atomicMax(w.amax + bh, __float_as_uint(most)); /* ≥ 0: its bits order as it does */
    } else if (st.kind == kQuantV) { /* v: its mean over tokens subtracted, the unit's scale, transposed */
        quantize_v<T>(p, w, blk, b, h, end, 1.f / s.vscale, stage, s);
    }
}

/* A CTA's pass (the file's header), by the 256 threads of warpgroups 0 and 1: its steps fetched
 * kDepth - 1 ahead of the one computed, into kDepth stages of kStepRows rows after `s`. */
template <typename T, bool kQK, int kDepth>
__device__ __forceinline__ void fp8_pass(const Params &p, const Fp8Work &w, PassScratch &s, T *stages, int lead_units, int pass_ctas) {
    constexpr int kStage = kStepRows * kDim;
    PassSteps<kQK> fetch(p, lead_units, pass_ctas), work = fetch;
#pragma unroll 1
    for (int d = 0; d < kDepth - 1; ++d) {
        fetch_step<T, kQK>(p, fetch.next(p), stages + d * kStage);
        cp_async_commit();
    }
    float acc[2][3][8]; /* this CTA's stats of the unit in hand: k's (kQK), then v's sum, minimum, maximum */
#pragma unroll
    for (int x = 0; x < 2; ++x)
#pragma unroll
        for (int i = 0; i < 8; ++i) { acc[x][0][i] = 0.f; acc[x][1][i] = INFINITY; acc[x][2][i] = -INFINITY; }
#pragma unroll 1
    for (int i = 0;; ++i) {
        const Step st = work.next(p);
        if (st.kind == kNoStep) break;
        /* The stage the step before freed (the barrier at its end), kDepth - 1 steps ahead. */
        CALIB_MARK(768 + 3 * i, threadIdx.x == 0 && i < 85); /* Tests/GPU/pass_trace.py */
        fetch_step<T, kQK>(p, fetch.next(p), stages + (i + kDepth - 1) % kDepth * kStage);
        cp_async_commit();
        cp_async_wait<kDepth - 1>();
        pass_sync();
        CALIB_MARK(768 + 3 * i + 1, threadIdx.x == 0 && i < 85);
        const T *stage = stages + i % kDepth * kStage;
        if (st.kind == kStats) stats_step<T, kQK>(p, st, stage, acc);
        else if (st.kind == kStatsEnd) stats_end<kQK>(p, w, st.u, blockIdx.x, work.stats_team(st.u), acc, s);
        else quantize_step<T, kQK>(p, w, st, work.team(st.u), stage, s);
        CALIB_MARK(768 + 3 * i + 2, threadIdx.x == 0 && i < 85);
        pass_sync();
    }
    cp_async_wait<0>();
}

} // namespace calib_cuda_detail
