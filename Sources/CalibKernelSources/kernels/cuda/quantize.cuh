/* quantize.cuh: the pass before an FP8 launch, which writes v (and, for CALIB_FP8_ALL, q and k;
 * kQK below) as e4m3 into the caller's workspace (calib_cuda_attention_fp8), on the device, in
 * four launches on the caller's stream:
 *
 *   stats     per (batch, head, chunk of 1024 tokens): v's per-channel sum, minimum and maximum
 *             over the valid tokens, k's over a sample of them (one in 16); padded text excluded
 *   combine   per (batch, head), in chunk order (so the result does not depend on scheduling):
 *             v's mean and k's mean over the sample, and their limits: 8 times the largest
 *             |x − mean| seen, whose scale (limit / 448) the quantize launch uses; k's kApart
 *             widest channels, which go apart (its limit is then the rest's); the attention
 *             launch's redo flags cleared
 *   quantize  per (batch, head, block of 128 tokens): (v − mean) / scale, transposed, and the
 *             block's sum of v's rounding errors per channel, which the head's last CTA to finish
 *             takes out of v's mean; q's scale for the block (its largest magnitude / 448) and
 *             q / scale; (k − mean) / scale; the channels apart of both as bf16 rows beside
 *             (x), zeros in their e4m3 copies; a block whose largest |k − mean| passes k's limit
 *             raises its head's amax to it
 *   fixup     (CALIB_FP8_ALL) per (batch, head), where amax was raised (else each CTA reads a
 *             word and ends): k quantized again at the scale of amax, and that scale published
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
 * a clipped value: Tests/GPU/sampled_stats_model.py models both. Scales do nothing for a few
 * channels far wider than the rest: e4m3 keeps 3 bits of each value whatever its scale, so the
 * scores such channels carry are rounded as much more coarsely (four key channels ×10: 0.15-0.19
 * relative L2 where N(0, 1) keys give 5.5e-2, docs/gpu.md run 104). So a head's 16 widest
 * channels go apart in bf16, one bf16 k-step of Q Kᵀ that costs the same for 4 channels or 16:
 * 4.8-5.5e-2 on those keys and half the error on the synthetic recording, for 5-14% of the
 * call's time (runs 117-121; Tests/GPU/qk_outlier_model.py), paid only by heads whose widest
 * channels carry a large share of k's range (kApartShare). FP8 wgmma wants both operands K-major,
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
/* Tokens per stats CTA: v, read whole, needs many CTAs in flight (chunks of 4096 took 88 µs at
 * Wan 1.3B, of 1024 64 µs: runs 77-78). */
constexpr int kStatChunk = 1024;
constexpr int kStatChunks = (kTokens + kStatChunk - 1) / kStatChunk;
constexpr int kStatFloats = 6 * kDim;                          /* k's, then v's sum, min, max per channel */
constexpr int kFixCtas = 8;                                    /* fixup CTAs per (batch, head) */
/* With Q Kᵀ on e4m3, a head's kApart channels of largest |k − mean| (k's and q's) are taken apart
 * as bf16 and zeroed in the e4m3 copies; the kernel adds their product, one bf16 k-step, to S. */
constexpr int kApart = 16;
constexpr int kApartRow = 2 * kApart * 2; /* bytes a token: k's channels apart, then q's */
constexpr int kApartInfo = kDim / 8 + kApart; /* bytes a head: the channels apart as bits, then as a list */
/* A head takes its widest channels apart only where they carry more than this share of the sum
 * over channels of range², twice what even channels would: the rounding error they add goes with
 * it, and the bf16 step costs 8% of the loop and a fifth of the quantize launch (runs 117, 119).
 * At head_dim 128 N(0, 1) keys' 16 widest carry 0.16, four channels ×10 0.79, the heads of
 * `calibc synth`'s recording 0.30-0.70 (Tests/GPU/qk_outlier_model.py prints the shares). */
constexpr float kApartShare = 2.f * kApart / kDim;

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
 * keys, d, key: s padded to kPadTokens), then the fp32 scales, k's and v's means and the stats'
 * partial results. */
struct Fp8Work {
    uint8_t *q, *k, *vt;
    uint8_t *x;       /* q's and k's channels apart (kApart): (b, h, s padded to kPadTokens) rows of 64 bytes, k's 16 bf16 then q's */
    uint8_t *apart;   /* per (batch, head), kApartInfo bytes: which channels are apart (a bit each), then their list */
    float *qscale, *kscale, *vscale, *kmean, *vmean, *partial;
    float *limit;   /* per (batch, head): k's limit on |k − mean| at the quantize launch's scale */
    uint32_t *amax; /* per (batch, head): k's largest |k − mean| where past the limit (float bits), else 0 */
    float *verr;    /* per (batch, head, block of 128 tokens, channel): the sum of v's rounding errors */
    uint32_t *vdone; /* per (batch, head): the quantize CTAs done, so the last can take verr's sum */
    uint32_t *redo_flags; /* a word per possible item: batch × heads × kQuantBlocks */
    int32_t *redo_list;   /* the count, then as many items */
    unsigned long long *claims; /* the attention launch's and the redo launch's (Params::claims) */
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
    const int64_t vm = take(bh * kDim * 4), part = take(bh * kStatChunks * kStatFloats * 4);
    const int64_t lim = take(bh * 4), am = take(bh * 4), ve = take(bh * kQuantBlocks * kDim * 4), vd = take(bh * 4);
    const int64_t flags = take(bh * kQuantBlocks * 4), list = take((bh * kQuantBlocks + 1) * 4), claims = take(2 * 8);
    const int64_t x = take(kQK ? bh * kPadTokens * kApartRow : 0), ap = take(kQK ? bh * kApartInfo : 0);
    if (base) {
        uint8_t *b = static_cast<uint8_t *>(base);
        auto f = [&](int64_t at) { return reinterpret_cast<float *>(b + at); };
        *w = {b + q, b + k, b + vt, b + x, b + ap, f(qs), f(ks), f(vs), f(km), f(vm), f(part), f(lim), reinterpret_cast<uint32_t *>(b + am),
              f(ve), reinterpret_cast<uint32_t *>(b + vd), reinterpret_cast<uint32_t *>(b + flags), reinterpret_cast<int32_t *>(b + list),
              reinterpret_cast<unsigned long long *>(b + claims)};
    }
    return at;
}

/* Head bh's kApartInfo bytes of `apart` (Fp8Work::apart, Params::apart). */
template <typename B> __device__ __forceinline__ B *apart_info(B *apart, int bh) { return apart + (int64_t)bh * kApartInfo; }

/* Where key kk of a group of 16 sits in vᵀ: P's A fragment gives lane c the positions 4c .. 4c+3
 * of each group of 16, and the softmax holds keys 2c, 2c+1, 8+2c, 9+2c there. */
__host__ __device__ constexpr int key_position(int kk) { return 4 * ((kk & 7) >> 1) + (kk & 1) + 2 * (kk >> 3); }

/* Eight elements of T as they came from memory (16 bytes), as floats. */
template <typename T> __device__ __forceinline__ void unpack8(const uint4 raw, float *f) {
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
/* Eight consecutive elements of T (16 bytes), as they are; and as floats. */
template <typename T> __device__ __forceinline__ uint4 raw8(const T *src) { return *reinterpret_cast<const uint4 *>(src); }
template <typename T> __device__ __forceinline__ void load8(const T *src, float *f) { unpack8<T>(raw8(src), f); }

template <typename T> __device__ __forceinline__ const T *row_of(const void *base, int64_t s0, int64_t s1, int64_t s2, int b, int t, int h) {
    return static_cast<const T *>(base) + (int64_t)b * s0 + (int64_t)t * s1 + (int64_t)h * s2;
}

/* The largest of every thread's x in a CTA of 256 threads (`red`: 8 floats of shared memory). */
__device__ __forceinline__ float cta_max(float x, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    __syncthreads();
    float m = red[0];
#pragma unroll
    for (int i = 1; i < 8; ++i) m = fmaxf(m, red[i]);
    return m;
}

constexpr int kLanes = kDim / 8;      /* threads per token row, 8 channels each */
constexpr int kRowsPer = 256 / kLanes; /* token rows a CTA of 256 threads covers at once */

/* kQK: the launch runs Q Kᵀ on e4m3 too, so k's statistics are needed (else only v's). */
template <typename T, bool kQK>
__global__ void __launch_bounds__(256) calib_fp8_stats(const Params p, const Fp8Work w) {
#ifndef CALIB_NO_WGMMA /* the pass exists where the wgmma kernel does */
    __shared__ float red[kRowsPer][kDim];
    const int chunk = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const int lane = tid % kLanes, r0 = tid / kLanes;
    constexpr int kSamples = kStatChunk / kSampleStride;
    const int valid = valid_end(p, b), t_end = min((chunk + 1) * kStatChunk, valid);
    const int m_end = min((chunk + 1) * kSamples, samples_before(valid));
    float st[2][3][8]; /* k's (unless kQK is false), then v's: sum, minimum, maximum per channel */
#pragma unroll
    for (int x = 0; x < 2; ++x)
#pragma unroll
        for (int i = 0; i < 8; ++i) { st[x][0][i] = 0.f; st[x][1][i] = INFINITY; st[x][2][i] = -INFINITY; }
    auto gather = [&](float (*s)[8], const float *f) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            s[0][i] += f[i];
            s[1][i] = fminf(s[1][i], f[i]);
            s[2][i] = fmaxf(s[2][i], f[i]);
        }
    };
#pragma unroll 4
    for (int t = chunk * kStatChunk + r0; t < t_end; t += kRowsPer) {
        float f[8];
        load8(row_of<T>(p.v, p.vs0, p.vs1, p.vs2, b, t, h) + 8 * lane, f);
        gather(st[1], f);
    }
    if constexpr (kQK) { /* unrolled 4 times, ptxas spilled a word (bf16, head_dim 128) */
#pragma unroll 2
        for (int m = chunk * kSamples + r0; m < m_end; m += kRowsPer) {
            float f[8];
            load8(row_of<T>(p.k, p.ks0, p.ks1, p.ks2, b, sampled_token(m), h) + 8 * lane, f);
            gather(st[0], f);
        }
    }
    float *out = w.partial + ((int64_t)(b * p.heads + h) * kStatChunks + chunk) * kStatFloats;
    /* Per channel, the row groups in a fixed order: the same bits whatever the schedule. */
#pragma unroll
    for (int which = kQK ? 0 : 3; which < 6; ++which) {
        const int x = which / 3, kind = which % 3;
        __syncthreads();
#pragma unroll
        for (int i = 0; i < 8; ++i) red[r0][8 * lane + i] = st[x][kind][i];
        __syncthreads();
        if (tid < kDim) {
            float y = red[0][tid];
            for (int r = 1; r < kRowsPer; ++r) y = kind == 0 ? y + red[r][tid] : kind == 1 ? fminf(y, red[r][tid]) : fmaxf(y, red[r][tid]);
            out[which * kDim + tid] = y;
        }
    }
#endif
}

/* One CTA of kDim threads per (batch, head). */
template <bool kQK>
__global__ void __launch_bounds__(128) calib_fp8_combine(const Params p, const Fp8Work w) {
#ifndef CALIB_NO_WGMMA /* the pass exists where the wgmma kernel does */
    __shared__ float red[128];
    __shared__ bool apart[128];
    const int h = blockIdx.x, b = blockIdx.y, c = threadIdx.x, bh = b * p.heads + h;
    const float *part = w.partial + (int64_t)bh * kStatChunks * kStatFloats;
    const int valid = valid_end(p, b);
    /* x = 0: k (when kQK), 1: v. Channel c's mean (k's over the sample), the head's limit and scale. */
    for (int x = kQK ? 0 : 1; x < 2; ++x) {
        const int n = x ? valid : samples_before(valid);
        float sum = 0.f, lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < kStatChunks && i * kStatChunk < valid; ++i) {
            const float *s = part + i * kStatFloats + 3 * kDim * x;
            sum += s[c];
            lo = fminf(lo, s[kDim + c]);
            hi = fmaxf(hi, s[2 * kDim + c]);
        }
        const float mean = n > 0 ? sum / (float)n : 0.f;
        __syncthreads();
        red[c] = n > 0 ? fmaxf(hi - mean, mean - lo) : 0.f;
        __syncthreads();
        float most = 0.f;
        if (x == 0) {
            /* k's channels apart: the kApart widest (a non-finite width the widest, ties to the
             * lower channel, so exactly kApart), placed in channel order, where they carry more
             * than kApartShare of the head's range² (not where a width is not finite: inf / inf);
             * the limit is the rest's. Sums in channel order: the same decision in every thread. */
            auto width = [](float r) { return r != r ? INFINITY : r; };
            const float mine = width(red[c]);
            int wider = 0;
            for (int i = 0; i < kDim; ++i) wider += width(red[i]) > mine || (width(red[i]) == mine && i < c);
            apart[c] = wider < kApart;
            __syncthreads();
            float all = 0.f, widest = 0.f;
            for (int i = 0; i < kDim; ++i) {
                const float r2 = width(red[i]) * width(red[i]);
                all += r2;
                widest += apart[i] ? r2 : 0.f;
            }
            const bool take = widest > kApartShare * all;
            __syncthreads();
            apart[c] = apart[c] && take;
            const uint32_t bits = __ballot_sync(0xffffffffu, apart[c]);
            uint8_t *info = apart_info(w.apart, bh);
            if (c % 32 == 0) *reinterpret_cast<uint32_t *>(info + c / 8) = bits;
            __syncthreads();
            int at = 0;
            for (int i = 0; i < kDim; ++i) {
                if (!apart[i]) most = fmaxf(most, red[i]);
                at += apart[i] && i < c;
            }
            if (apart[c]) info[kDim / 8 + at] = (uint8_t)c;
        } else {
            for (int i = 0; i < kDim; ++i) most = fmaxf(most, red[i]);
        }
        (x ? w.vmean : w.kmean)[(int64_t)bh * kDim + c] = mean;
        if (c == 0) {
            const float limit = kMargin * most;
            (x ? w.vscale : w.kscale)[bh] = limit > 0.f ? limit / kFp8Max : 1.f;
            if (x == 0) {
                w.limit[bh] = limit;
                w.amax[bh] = 0u;
            }
        }
    }
    /* The attention launch's redo flags and both launches' counters start cleared (the workspace
     * is the caller's memory). */
    for (int i = c; i < kQuantBlocks; i += kDim) w.redo_flags[(int64_t)bh * kQuantBlocks + i] = 0u;
    if (bh == 0 && c == 0) {
        *w.redo_list = 0;
        w.claims[0] = w.claims[1] = 0ull;
    }
    if (c == 0) w.vdone[bh] = 0u;
#endif
}

/* Which of this thread's eight channels are apart (bit i: channel 8 lane + i). */
__device__ __forceinline__ uint32_t apart_mask(const Fp8Work &w, int bh, int lane) {
    return __ldg(apart_info(w.apart, bh) + lane);
}
__device__ __forceinline__ bool is_apart(uint32_t mask, int i) { return (mask >> i) & 1u; }
/* Whether a head (its kApartInfo bytes) keeps any channel apart: combine's decision. */
__device__ __forceinline__ bool head_apart(const uint8_t *info) {
    uint32_t any = 0u;
#pragma unroll
    for (int i = 0; i < kDim / 32; ++i) any |= __ldg(reinterpret_cast<const uint32_t *>(info) + i);
    return any != 0u;
}

/* x's rows of block `blk`: for k (kIsK, its mean subtracted) or q, its channels apart times inv
 * as bf16, the rows past the valid end as zeros. A pass of its own after the e4m3 rows, read
 * again from L1 a channel at a time: written within their loop, the channels' places spilled the
 * registers of three CTAs an SM, and gathered there through shared memory the launch ran no
 * faster (run 119). Thread: one row, eight places. */
template <typename T, bool kIsK>
__device__ __forceinline__ void write_apart(const Params &p, const Fp8Work &w, int blk, int b, int h, int end, float inv) {
    static_assert(kApart == 16, "a row of channels apart is one bf16 k-step: 32 bytes");
    const int bh = b * p.heads + h, row = threadIdx.x / 2, half = threadIdx.x % 2, t = blk * 128 + row;
    const uint8_t *chans = apart_info(w.apart, bh) + kDim / 8 + 8 * half;
    uint32_t out[4] = {0u, 0u, 0u, 0u};
    if (t < end) {
        const T *src = kIsK ? row_of<T>(p.k, p.ks0, p.ks1, p.ks2, b, t, h) : row_of<T>(p.q, p.qs0, p.qs1, p.qs2, b, t, h);
#pragma unroll
        for (int i = 0; i < 8; i += 2) {
            float y[2];
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const int c = __ldg(chans + i + j);
                y[j] = ((float)src[c] - (kIsK ? __ldg(w.kmean + (int64_t)bh * kDim + c) : 0.f)) * inv;
            }
            out[i / 2] = Pack<__nv_bfloat16>::two(y[0], y[1]);
        }
    }
    *reinterpret_cast<uint4 *>(w.x + ((int64_t)bh * kPadTokens + t) * kApartRow + (kIsK ? 0 : kApart * 2) + 16 * half) =
        make_uint4(out[0], out[1], out[2], out[3]);
}

/* k's rows of block `blk` less its mean, times kinv, as e4m3 but for the channels apart, which
 * are zeros there and go to x as bf16 (the rows past the valid end as zeros); returns this
 * thread's largest |k − mean| on e4m3. */
template <typename T>
__device__ __forceinline__ float quantize_k(const Params &p, const Fp8Work &w, int blk, int b, int h, int end, float kinv) {
    const int tid = threadIdx.x, lane = tid % kLanes, r0 = tid / kLanes, bh = b * p.heads + h;
    constexpr int kIters = 128 / kRowsPer;
    const uint32_t apart = apart_mask(w, bh, lane);
    float mean[8], amax = 0.f;
    uint4 raw[kIters]; /* as they came: 32 registers where floats took 64 (occupancy, run 115) */
#pragma unroll
    for (int it = 0; it < kIters; ++it) { /* the loads first, all in flight at once (the stores may alias them) */
        const int t = blk * 128 + it * kRowsPer + r0;
        raw[it] = t < end ? raw8(row_of<T>(p.k, p.ks0, p.ks1, p.ks2, b, t, h) + 8 * lane) : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
        const int t = blk * 128 + it * kRowsPer + r0;
        if (t >= kTokens) continue;
        /* k's mean read again each row (from L1), not held beside the loads in flight: at three
         * CTAs an SM the registers are 85 (run 115) */
#pragma unroll
        for (int i = 0; i < 8; ++i) mean[i] = __ldg(w.kmean + (int64_t)bh * kDim + 8 * lane + i);
        float f[8];
        unpack8<T>(raw[it], f);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const float d = f[i] - mean[i];
            if (t < end && !is_apart(apart, i)) {
                amax = fmaxf(amax, fabsf(d));
                f[i] = d * kinv;
            } else {
                f[i] = 0.f;
            }
        }
        uint2 packed;
        packed.x = e4m3x2(f[0], f[1]) | e4m3x2(f[2], f[3]) << 16;
        packed.y = e4m3x2(f[4], f[5]) | e4m3x2(f[6], f[7]) << 16;
        *reinterpret_cast<uint2 *>(w.k + ((int64_t)bh * kTokens + t) * kDim + 8 * lane) = packed;
    }
    if (head_apart(apart_info(w.apart, bh))) write_apart<T, true>(p, w, blk, b, h, end, kinv);
    return amax;
}

/* e4m3's rounding of x and y, less x and y. */
__device__ __forceinline__ float rounding_error(uint32_t xy, float x, float y) {
    uint32_t h;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h) : "h"((unsigned short)xy));
    const float2 r = __half22float2(*reinterpret_cast<const __half2 *>(&h));
    return (r.x - x) + (r.y - y);
}

/* v's block `blk` less its mean, times vinv, transposed through `vt` (shared memory) into vᵀ
 * (v's statistics saw every token, so no value passes its limit). A thread takes the four keys
 * that one lane's P fragment holds at positions 4c .. 4c+3 of a group of 16 (key_position) and 16
 * channels, so it writes each channel's four bytes as one word; a warp's 32 threads are the
 * block's 32 such quads of one channel range, so each of its stores fills 32 banks of one row once.
 * The block's rounding errors per channel go to verr (in vinv's units), summed in a fixed order
 * through `errs` (shared memory); the head's last CTA to finish takes their mean out of vmean. */
template <typename T>
__device__ __forceinline__ void quantize_v(const Params &p, const Fp8Work &w, int blk, int b, int h, int end, float vinv,
                                            uint32_t (*vt)[32], float (*errs)[32]) {
    const int tid = threadIdx.x, bh = b * p.heads + h;
    constexpr int kVTasks = 32 * (kDim / 16);
    __syncthreads(); /* vt is free: the block before's copy out is done */
    if (tid < kVTasks) {
        const int quad = tid % 32, ch0 = 16 * (tid / 32), c4 = quad % 4;
        const int keys[4] = {2 * c4, 2 * c4 + 1, 8 + 2 * c4, 9 + 2 * c4};
        uint4 raw[4][2]; /* as they came: 32 registers where floats took 64 */
        bool valid[4];
#pragma unroll
        for (int x = 0; x < 4; ++x) { /* the loads first, all in flight at once */
            const int t = blk * 128 + 16 * (quad / 4) + keys[x];
            valid[x] = t < end;
            const T *src = row_of<T>(p.v, p.vs0, p.vs1, p.vs2, b, valid[x] ? t : 0, h) + ch0;
            raw[x][0] = raw8(src);
            raw[x][1] = raw8(src + 8);
        }
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            float f[4][8];
#pragma unroll
            for (int x = 0; x < 4; ++x) unpack8<T>(raw[x][half], f[x]);
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const int ch = ch0 + 8 * half + i;
                const float mean = w.vmean[(int64_t)bh * kDim + ch];
                float e[4]; /* padding and the rows past the sequence as zeros */
#pragma unroll
                for (int x = 0; x < 4; ++x) e[x] = valid[x] ? (f[x][i] - mean) * vinv : 0.f;
                const uint32_t lo = e4m3x2(e[0], e[1]), hi = e4m3x2(e[2], e[3]);
                vt[ch][quad] = lo | hi << 16;
                errs[ch][quad] = rounding_error(lo, e[0], e[1]) + rounding_error(hi, e[2], e[3]);
            }
        }
    }
    __syncthreads();
    /* Out as four panels of 32 keys (kDim rows of 32 bytes each, contiguous), the two 16-byte
     * halves of a row swapped in rows 4-7 of every 8: the 32-byte swizzle the product reads, so
     * the kernel brings a panel with one plain copy. */
    uint8_t *dst = w.vt + ((int64_t)bh * kPadTokens + blk * 128) * kDim;
    for (int i = tid; i < kDim * 8; i += 256) {
        const int row = i / 8, part = i % 8, panel = part / 2, half = (part % 2) ^ ((row >> 2) & 1);
        *reinterpret_cast<uint4 *>(dst + panel * 32 * kDim + row * 32 + 16 * half) = *reinterpret_cast<const uint4 *>(&vt[row][4 * part]);
    }
    __syncthreads();
    if (tid < kDim) {
        float e = 0.f;
        for (int x = 0; x < 32; ++x) e += errs[tid][x];
        w.verr[((int64_t)bh * kQuantBlocks + blk) * kDim + tid] = e;
    }
    __shared__ bool last;
    __syncthreads();
    /* One thread's fence orders the CTA's sums (the barrier ordered them to it) before its count:
     * a fence in each of 128 threads held the CTA's slot the longer (run 115). */
    if (tid == 0) {
        __threadfence();
        last = atomicAdd(w.vdone + bh, 1u) == kQuantBlocks - 1;
    }
    __syncthreads();
    /* Every CTA of the head has read vmean and published its sums; the order of the blocks is fixed. */
    if (last && tid < kDim && end > 0) {
        __threadfence();
        float e = 0.f;
        for (int i = 0; i < kQuantBlocks; ++i) e += __ldcg(w.verr + ((int64_t)bh * kQuantBlocks + i) * kDim + tid);
        w.vmean[(int64_t)bh * kDim + tid] -= e / (vinv * (float)end);
    }
}

/* Raises amax[i] to the CTA's largest x where that passes limit[i] (the fixup's cue). */
__device__ __forceinline__ void report_past_limit(float x, const Fp8Work &w, int i, float *red) {
    x = cta_max(x, red);
    if (threadIdx.x == 0 && x > w.limit[i]) atomicMax(w.amax + i, __float_as_uint(x)); /* x ≥ 0: its bits order as it does */
}

/* One CTA of 256 threads per (batch, head, block of 128 tokens). With Q Kᵀ on e4m3, three CTAs an
 * SM at least (85 registers): at two (94), each CTA's phases left the SM's loads short of what
 * keeps the memory busy (233 µs against 171 at Wan 1.3B, run 115); v alone fits five. */
template <typename T, bool kQK>
__global__ void __launch_bounds__(256, kQK ? 3 : 5) calib_fp8_quantize(const Params p, const Fp8Work w) {
#ifndef CALIB_NO_WGMMA /* the pass exists where the wgmma kernel does */
    __shared__ float red[8];
    __shared__ __align__(16) uint32_t vt[kDim][32]; /* vᵀ of the block: kDim rows of 128 keys */
    __shared__ float errs[kDim][32]; /* v's rounding errors of the block: kDim channels of 32 quads */
    const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x, bh = b * p.heads + h;
    const int lane = tid % kLanes, r0 = tid / kLanes;
    const int end = valid_end(p, b);
    constexpr int kIters = 128 / kRowsPer;

    if constexpr (kQK) {
        const uint32_t apart = apart_mask(w, bh, lane);
        /* q: the block's own scale (of the channels on e4m3). */
        /* Its rows read twice, the second time from L1: held in registers between, they left the
         * 80 registers of three CTAs an SM short (run 115). */
        float amax = 0.f;
        {
            uint4 raw[kIters];
#pragma unroll
            for (int it = 0; it < kIters; ++it) {
                const int t = blk * 128 + it * kRowsPer + r0;
                raw[it] = t < end ? raw8(row_of<T>(p.q, p.qs0, p.qs1, p.qs2, b, t, h) + 8 * lane) : make_uint4(0u, 0u, 0u, 0u);
            }
#pragma unroll
            for (int it = 0; it < kIters; ++it) {
                float x[8];
                unpack8<T>(raw[it], x);
#pragma unroll
                for (int i = 0; i < 8; ++i)
                    if (!is_apart(apart, i)) amax = fmaxf(amax, fabsf(x[i]));
            }
        }
        amax = cta_max(amax, red);
        const float qscale = amax > 0.f ? amax / kFp8Max : 1.f, qinv = 1.f / qscale;
        if (tid == 0) w.qscale[(int64_t)bh * kQuantBlocks + blk] = qscale;
#pragma unroll
        for (int it = 0; it < kIters; ++it) {
            const int t = blk * 128 + it * kRowsPer + r0;
            if (t >= kTokens) continue;
            float x[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
            if (t < end) load8(row_of<T>(p.q, p.qs0, p.qs1, p.qs2, b, t, h) + 8 * lane, x);
#pragma unroll
            for (int i = 0; i < 8; ++i) x[i] = is_apart(apart, i) ? 0.f : x[i];
            uint2 packed;
            packed.x = e4m3x2(x[0] * qinv, x[1] * qinv) | e4m3x2(x[2] * qinv, x[3] * qinv) << 16;
            packed.y = e4m3x2(x[4] * qinv, x[5] * qinv) | e4m3x2(x[6] * qinv, x[7] * qinv) << 16;
            *reinterpret_cast<uint2 *>(w.q + ((int64_t)bh * kTokens + t) * kDim + 8 * lane) = packed;
        }
        if (head_apart(apart_info(w.apart, bh))) write_apart<T, false>(p, w, blk, b, h, end, qinv);

        /* k: its mean over tokens subtracted, the head's scale. */
        report_past_limit(quantize_k<T>(p, w, blk, b, h, end, 1.f / w.kscale[bh]), w, bh, red);
    }
    /* v: its mean over tokens subtracted, the head's scale, transposed. */
    quantize_v<T>(p, w, blk, b, h, end, 1.f / w.vscale[bh], vt, errs);
#endif
}

/* kFixCtas CTAs of 256 threads per (batch, head), taking its blocks in turn: where the quantize
 * launch found k past its limit, k quantized again at amax's scale, which the attention launch
 * then reads. Elsewhere (all but unheard-of inputs) each CTA reads a word and ends. */
template <typename T>
__global__ void __launch_bounds__(256) calib_fp8_fixup(const Params p, const Fp8Work w) {
#ifndef CALIB_NO_WGMMA /* the pass exists where the wgmma kernel does */
    const int h = blockIdx.y, b = blockIdx.z, bh = b * p.heads + h;
    const float kmax = __uint_as_float(w.amax[bh]);
    if (kmax == 0.f) return;
    const float kscale = kmax / kFp8Max;
    const int end = valid_end(p, b);
    if (blockIdx.x == 0 && threadIdx.x == 0) w.kscale[bh] = kscale;
    for (int blk = blockIdx.x; blk < kQuantBlocks; blk += kFixCtas) quantize_k<T>(p, w, blk, b, h, end, 1.f / kscale);
#endif
}

} // namespace calib_cuda_detail
