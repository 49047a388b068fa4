/* calib_exp2.h: copied by calibc from kernels/include/calib_exp2.h; do not edit, regenerate with `calibc compile`.
 * source: masks.json (sha256 5316e5d337ee81292d6f227e0e808540b12c1f531d4a31c8d073957788b8e284), model example-video-dit
 * shape: tokens 2100, head_dim 64, block 64 (33 blocks per side), 3 steps x 2 layers x 4 heads
 * passes: merge-runs, collapse-reuse, dedupe, reorder, chunk
 * plans: 5 unique for 24 (step, layer, head)
 */
/* 2^x for the softmax of the attention kernels and of calibration: one polynomial for both, so
 * calibration measures the probabilities the kernels compute.
 *
 * x is split as n + f with n = round(x) and |f| <= 1/2; 2^f is the Cephes exp2f polynomial
 * (relative error ~2e-7) and 2^n goes into the exponent bits. Written for x in [-126, 0]: the
 * callers subtract the running maximum first and clamp at -126. CALIB_EXP2_POLY works on float
 * and on vector-extension float types alike. */
#ifndef CALIB_EXP2_H
#define CALIB_EXP2_H

#include <stdint.h>
#include <string.h>

#define CALIB_EXP2_POLY(f)                                                             \
    ((((((1.535336188319500e-4f * (f) + 1.339887440266574e-3f) * (f) + 9.618437357674640e-3f) * (f) + \
        5.550332471162809e-2f) * (f) + 2.402264791363012e-1f) * (f) + 6.931472028550421e-1f) * (f) + 1.0f)

/* Adding and subtracting 1.5 * 2^23 rounds to the nearest integer for |x| < 2^22. */
#define CALIB_ROUND_MAGIC 12582912.0f

static inline float calib_exp2f(float x) {
    x = x < -126.0f ? -126.0f : x;
    const float n = (x + CALIB_ROUND_MAGIC) - CALIB_ROUND_MAGIC;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return CALIB_EXP2_POLY(x - n) * scale;
}

#endif
