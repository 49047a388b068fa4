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
        bool redo = false;
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
    template <int G, bool kEmpty = false, int kLog2Gain = 0, int kSlack = 0, bool kSums = true, bool kAhead = false>
    __device__ __forceinline__ bool exponentiate(float *s, float scale_log2, float &f0, float &f1, Ahead &ahead) {
        static_assert(!(kAhead && kSums), "ahead, the sums would need the same correction as P");
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
#pragma unroll
        for (int j = 0; j < G; ++j) {
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
            ahead.c0 = fast_exp2(a0 - b0);
            ahead.c1 = fast_exp2(a1 - b1);
            ahead.redo |= (up0 && fabsf(b0 - a0) > Ahead::kLimit) || (up1 && fabsf(b1 - a1) > Ahead::kLimit);
        }
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
