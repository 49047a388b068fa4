/* softmax.cuh: the online softmax both kernels run, in registers.
 *
 * A thread holds two rows of a tile (r and r + 8 of each 16-row slice) and, for each, pairs of
 * columns: the scores of a key tile arrive as G groups of four floats {row r: columns 8j + 2c,
 * 8j + 2c + 1; row r + 8: the same}, which is how mma.sync (m16n8) and wgmma (m64nN) both lay out
 * their accumulators, and the output accumulator o is laid out the same way. The four lanes of a
 * quad (c = 0..3) share the rows, so row reductions are two shuffles. Scores are scaled into the
 * log2 domain (scale_log2 = log2(e) / sqrt(head_dim)) so one ex2 per element suffices. */
#pragma once

#include "ptx.cuh"

namespace calib_cuda_detail {

__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

/* e4m3 probabilities without an exponential (`fp8`; docs/gpu.md, "Versions", v21): a
 * probability p = 2^y (log2 units, y = its log, FP8's gain in it) is held as the e4m3 code
 * round(8 (y + 7)), exponent field and mantissa at once. The code's value, 2^floor(y) (1 + m/8),
 * is 2^y with its fraction taken linearly (at most 6% above, none at a power of two): less
 * accurate than e4m3's own rounding of 2^y (≈ 1.1–1.2× the relative L2 of P V in a float64 model),
 * and two fused multiply-adds where the special-function unit's exponential paced the loop. The
 * first one scales y + 7 into [0, 1] and saturates (below 2^-7, zero); the second adds 1.5 · 2^23,
 * which rounds to a whole code held in the float's low bits. Codes go past e4m3's largest (126,
 * 448) only where a row's maximum moved (a tile's maximum within the slack of the reference keeps
 * y ≤ 8 + kSlack, code ≤ 120), and such codes are shifted down before they are packed (Ahead),
 * so the span reaches Ahead::kLimit above that before it saturates. */
struct ExpCode {
    static constexpr float kBias = 7.f, kSpan = 112.f, kInvSpan = 1.f / kSpan, kMagic = 12582912.f;
    /* t = (y + 7) / kSpan, unclamped */
    static __device__ __forceinline__ float of(float t) { return fmaf(__saturatef(t), 8.f * kSpan, kMagic); }
    /* A code's low byte (the code itself where it is at most 126). */
    static __device__ __forceinline__ uint32_t byte(float code) { return __float_as_uint(code); }
    /* The code of p · 2^d (d ≤ 0) from p's: the addition rounds to a whole code, zero at least. */
    static __device__ __forceinline__ float shift(float d) { return 8.f * d; }
    static __device__ __forceinline__ float scaled(float code, float shift8) { return fmaxf(code + shift8, kMagic); }
};

struct OnlineSoftmax {
    float m0 = -INFINITY, m1 = -INFINITY; /* running maxima (log2 domain) of the two rows */
    float l0 = 0.f, l1 = 0.f;             /* this thread's share of their running sums */

    /* Scores of the tile's columns outside [lo, hi) take no part (a key tile that ends inside the
     * sequence, or that holds padded text). */
    template <int G> static __device__ __forceinline__ void mask_columns(float *s, int c, int lo, int hi) {
#pragma unroll
        for (int j = 0; j < G; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int col = 8 * j + 2 * c + (e & 1);
                if (col < lo || col >= hi) s[4 * j + e] = -INFINITY;
            }
    }

    /* A key tile gathered from kSubs sub-blocks of kSub keys, each with its own window [lo, hi)
     * of valid columns: 16 bits lo | hi << 8, two a word of w. */
    template <int kSub, int kSubs> static __device__ __forceinline__ void mask_windows(float *s, int c, const uint32_t *w) {
#pragma unroll
        for (int k = 0; k < kSubs; ++k) {
            const uint32_t x = w[k / 2] >> (16 * (k & 1));
            mask_columns<kSub / 8>(s + kSub / 2 * k, c, x & 0xff, (x >> 8) & 0xff);
        }
    }

    /* exponentiate's exponentials taken ahead of the maxima (kAhead; the FP8 instances with Q Kᵀ on
     * e4m3, whose row sums come from the tensor cores): against the rows' references from before
     * the tile, so they need not wait for its maxima, whose latency paces that loop (docs/gpu.md:
     * 0.87 of the time dense without the corrections below, run 68; 0.95 with them, run 69). A
     * row whose maximum moved past the slack has its probabilities brought to the new reference
     * by one multiply, c = 2^(a - b), which the caller applies as it packs P; one whose maximum
     * moved more than kLimit may have overflowed fp32 (or, from no reference yet, flushed to zero)
     * and sets redo: the item is computed again by a launch that takes exponentials after the
     * maxima (wgmma_kernel.cuh). */
    struct Ahead {
        static constexpr float kLimit = 96.f; /* 2^(96 + kLog2Gain) is far from fp32's 2^128 */
        float c0 = 1.f, c1 = 1.f;
        bool redo = false; /* (by_sums: the tile's scores were lost, for the caller to take again) */
    };

    /* The first half of folding in a key tile of scores s (G groups): the new maxima, the
     * probabilities written over the scores, and the sums; f0 and f1 are what o must then be
     * scaled by (rescale: the mma.sync kernel does it at once, the wgmma kernel later, under its
     * next product); it returns whether any f may differ from 1. kEmpty: a tile may have every
     * column masked while no earlier tile had a valid one (maxima still -inf), where exponents
     * would be -inf - -inf. kLog2Gain: the probabilities (and so the sums) come out 2^kLog2Gain times
     * larger, which costs nothing here and puts FP8 P's small values above its subnormals; finish
     * divides it out with the sums. kSums false: the caller sums the rows itself (the FP8 P V
     * product does, against a row of ones) and scales l with o. kAhead: see Ahead. */
    template <int G, bool kEmpty = false, int kLog2Gain = 0, int kSlack = 0, bool kSums = true, bool kAhead = false,
              bool kCodes = false, bool kSumRef = false>
    __device__ __forceinline__ bool exponentiate(float *s, float scale_log2, float &f0, float &f1, Ahead &ahead) {
        static_assert(!(kAhead && kSums), "ahead, the sums would need the same correction as P");
        static_assert(!(kCodes && kSums), "codes are not probabilities to sum");
        if constexpr (kSumRef) return by_sums<G, kLog2Gain, kSlack>(s, scale_log2, f0, f1, ahead.redo);
        const float a0 = kEmpty && m0 == -INFINITY ? 0.f : m0, a1 = kEmpty && m1 == -INFINITY ? 0.f : m1;
        float x0 = -INFINITY, x1 = -INFINITY;
#pragma unroll
        for (int j = 0; j < G; ++j) {
            x0 = fmaxf(x0, fmaxf(s[4 * j], s[4 * j + 1]));
            x1 = fmaxf(x1, fmaxf(s[4 * j + 2], s[4 * j + 3]));
        }
        x0 = quad_max(x0);
        x1 = quad_max(x1);
        /* kSlack: a row's reference maximum moves only when the tile's exceeds it by more than
         * kSlack (log2 units), so probabilities reach 2^kSlack, which 16-bit P holds exactly as
         * well, and after the first tiles O is seldom rescaled (f = 1); moved reports whether
         * any row of this thread moved. */
        const float x0s = x0 * scale_log2, x1s = x1 * scale_log2;
        const bool up0 = x0s > m0 + (float)kSlack, up1 = x1s > m1 + (float)kSlack;
        const float n0 = up0 ? x0s : m0, n1 = up1 ? x1s : m1;
        const float b0 = kEmpty && n0 == -INFINITY ? 0.f : n0, b1 = kEmpty && n1 == -INFINITY ? 0.f : n1;
        f0 = fast_exp2(m0 - b0);
        f1 = fast_exp2(m1 - b1);
        m0 = n0;
        m1 = n1;
        /* Ahead, the exponentials depend only on the old reference: written after the maxima, as
         * here, the scheduler still interleaves them (written before, ptxas serialized every
         * wgmma of the FP8 loop, C7511). */
        const float g0 = (kAhead ? a0 : b0) - (float)kLog2Gain, g1 = (kAhead ? a1 : b1) - (float)kLog2Gain;
        float sum0 = 0.f, sum1 = 0.f;
        /* kCodes: e4m3 P's codes straight from the scores, with no exponential (ExpCode). */
        const float ca = scale_log2 * ExpCode::kInvSpan, c0 = (ExpCode::kBias - g0) * ExpCode::kInvSpan,
                    c1 = (ExpCode::kBias - g1) * ExpCode::kInvSpan;
#pragma unroll
        for (int j = 0; j < G; ++j) {
            if constexpr (kCodes) {
                s[4 * j] = ExpCode::of(fmaf(s[4 * j], ca, c0));
                s[4 * j + 1] = ExpCode::of(fmaf(s[4 * j + 1], ca, c0));
                s[4 * j + 2] = ExpCode::of(fmaf(s[4 * j + 2], ca, c1));
                s[4 * j + 3] = ExpCode::of(fmaf(s[4 * j + 3], ca, c1));
                continue;
            }
            s[4 * j] = fast_exp2(fmaf(s[4 * j], scale_log2, -g0));
            s[4 * j + 1] = fast_exp2(fmaf(s[4 * j + 1], scale_log2, -g0));
            s[4 * j + 2] = fast_exp2(fmaf(s[4 * j + 2], scale_log2, -g1));
            s[4 * j + 3] = fast_exp2(fmaf(s[4 * j + 3], scale_log2, -g1));
            if constexpr (kSums) {
                sum0 += s[4 * j] + s[4 * j + 1];
                sum1 += s[4 * j + 2] + s[4 * j + 3];
            }
        }
        if constexpr (kSums) {
            l0 = l0 * f0 + sum0;
            l1 = l1 * f1 + sum1;
        }
        if constexpr (kAhead) {
            ahead.c0 = kCodes ? ExpCode::shift(a0 - b0) : fast_exp2(a0 - b0);
            ahead.c1 = kCodes ? ExpCode::shift(a1 - b1) : fast_exp2(a1 - b1);
            ahead.redo |= (up0 && fabsf(b0 - a0) > Ahead::kLimit) || (up1 && fabsf(b1 - a1) > Ahead::kLimit);
        }
        return up0 || up1;
    }

    /* A tile after a row's first, with no maxima at all: the exponentials against the rows'
     * references, summed. A probability is at most its thread's share of the row's sum, so while
     * every share stays within 2^kSlack no row's maximum rose past the slack. A warp where one did
     * not (seldom) moves those rows' references up by the log of the quad's largest share, which
     * is at least the row's largest probability, and takes the tile's probabilities again against
     * them from their logs. The 64 comparisons, four shuffles and the chain that the maxima cost a
     * tile (the softmax's issue slots bound the loop: docs/gpu.md) become two comparisons and a
     * vote. The references need not be the maxima: they stay within log2(32) above them; and
     * kLog2Gain (negative) keeps a row's scores that jump up to 128 - kLog2Gain (log2) above its
     * reference finite in fp32. Past that a share is infinite, the scores are lost, and `lost`
     * asks the caller to take the tile again with its maxima (nothing here is changed then). */
    template <int G, int kLog2Gain, int kSlack>
    __device__ __forceinline__ bool by_sums(float *s, float scale_log2, float &f0, float &f1, bool &lost) {
        const float g0 = m0 - (float)kLog2Gain, g1 = m1 - (float)kLog2Gain;
        float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
        for (int j = 0; j < G; ++j) {
            s[4 * j] = fast_exp2(fmaf(s[4 * j], scale_log2, -g0));
            s[4 * j + 1] = fast_exp2(fmaf(s[4 * j + 1], scale_log2, -g0));
            s[4 * j + 2] = fast_exp2(fmaf(s[4 * j + 2], scale_log2, -g1));
            s[4 * j + 3] = fast_exp2(fmaf(s[4 * j + 3], scale_log2, -g1));
            sum0 += s[4 * j] + s[4 * j + 1];
            sum1 += s[4 * j + 2] + s[4 * j + 3];
        }
        const float lim = __int_as_float((127 + kSlack + kLog2Gain) << 23); /* 2^(kSlack + kLog2Gain) */
        if (!__any_sync(0xffffffffu, sum0 > lim || sum1 > lim)) {
            f0 = f1 = 1.f;
            l0 += sum0;
            l1 += sum1;
            return false;
        }
        const float y0 = quad_max(sum0), y1 = quad_max(sum1);
        lost = __any_sync(0xffffffffu, !(y0 < INFINITY && y1 < INFINITY));
        if (lost) return false;
        const bool up0 = y0 > lim, up1 = y1 > lim;
        const float d0 = up0 ? fast_log2(y0) - (float)kLog2Gain : 0.f, d1 = up1 ? fast_log2(y1) - (float)kLog2Gain : 0.f;
#pragma unroll
        for (int j = 0; j < G; ++j) {
            s[4 * j] = fast_exp2(fast_log2(s[4 * j]) - d0);
            s[4 * j + 1] = fast_exp2(fast_log2(s[4 * j + 1]) - d0);
            s[4 * j + 2] = fast_exp2(fast_log2(s[4 * j + 2]) - d1);
            s[4 * j + 3] = fast_exp2(fast_log2(s[4 * j + 3]) - d1);
        }
        m0 += d0;
        m1 += d1;
        f0 = fast_exp2(-d0); /* past 2^-126 it flushes to zero, as what it scales is then negligible */
        f1 = fast_exp2(-d1);
        l0 = l0 * f0 + fast_exp2(fast_log2(sum0) - d0);
        l1 = l1 * f1 + fast_exp2(fast_log2(sum1) - d1);
        return up0 || up1;
    }

    template <int G, bool kEmpty = false, int kLog2Gain = 0, int kSlack = 0, bool kSums = true>
    __device__ __forceinline__ bool exponentiate(float *s, float scale_log2, float &f0, float &f1) {
        Ahead unused;
        return exponentiate<G, kEmpty, kLog2Gain, kSlack, kSums>(s, scale_log2, f0, f1, unused);
    }

    /* The second half: the N accumulators of o scaled by the change of the maxima. */
    template <int N> static __device__ __forceinline__ void rescale(float *o, float f0, float f1) {
#pragma unroll
        for (int j = 0; j < N / 4; ++j) {
            o[4 * j] *= f0; o[4 * j + 1] *= f0; o[4 * j + 2] *= f1; o[4 * j + 3] *= f1;
        }
    }

    /* After the last tile: the reciprocals of the two rows' sums, which normalize o (kQuad: l
     * holds this thread's share, summed over the quad here). */
    template <bool kQuad = true> __device__ __forceinline__ void finish(float &inv0, float &inv1) {
        if constexpr (kQuad) {
            l0 = quad_sum(l0);
            l1 = quad_sum(l1);
        }
        /* A row no valid key reached (padded text everywhere it looked) is zeros. */
        inv0 = l0 > 0.f ? 1.f / l0 : 0.f;
        inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
    }
};

} // namespace calib_cuda_detail
