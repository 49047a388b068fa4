/* The micro-kernel is written with the compiler's vector extensions, so it becomes AVX-512,
 * AVX2 or SSE code for whatever -march the build names. Only static OpenMP schedules here: clang 21 lowers dynamic ones to __kmpc_dispatch_deinit,
 * which the LLVM 14 libomp that Debian 12 ships does not have. */
#include "calibrate.h"
#include "../CalibCodegen/kernels/cpu/calib_exp2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ROWS = 8, COLS = 32 };

/* 16 floats: one zmm register, or two ymm. */
typedef float v16 __attribute__((vector_size(64), aligned(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

/* Kᵀ padded to a multiple of COLS keys with zeros, so the score loop needs no tail. */
static float *transpose_keys(const float *k, int64_t tokens, int64_t d, int64_t padded) {
    float *kt = aligned_alloc(64, sizeof(float) * (size_t)(d * padded + 16));
    if (!kt) return NULL;
    for (int64_t c = 0; c < d; c++) {
        for (int64_t j = 0; j < padded; j++) kt[c * padded + j] = j < tokens ? k[j * d + c] : 0.0f;
    }
    return kt;
}

/* s[r][j] = q_{row0 + r} · k_j · scale · log2(e), for ROWS rows (rows past `tokens` read as
 * zero): scores in the log2 domain, so the softmax below needs exp2 only. */
static void scores(const float *q, const float *kt, int64_t tokens, int64_t d, int64_t padded, int64_t row0,
                   float scale, float *s) {
    float qr[ROWS][512];
    for (int r = 0; r < ROWS; r++) {
        for (int64_t c = 0; c < d; c++) qr[r][c] = row0 + r < tokens ? q[(row0 + r) * d + c] * scale * 1.44269504f : 0.0f;
    }
    /* ROWS × COLS accumulators (16 zmm registers with AVX-512); each step of c loads two key
     * vectors and issues 16 FMAs against broadcast query values. */
    for (int64_t j0 = 0; j0 < padded; j0 += COLS) {
        v16 acc[ROWS][2];
        for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = (v16){0};
        for (int64_t c = 0; c < d; c++) {
            const v16 k0 = *(const v16 *)(kt + c * padded + j0), k1 = *(const v16 *)(kt + c * padded + j0 + 16);
            #pragma unroll
            for (int r = 0; r < ROWS; r++) {
                const v16 x = (v16){0} + qr[r][c];
                acc[r][0] += x * k0;
                acc[r][1] += x * k1;
            }
        }
        for (int r = 0; r < ROWS; r++) {
            *(v16u *)(s + r * padded + j0) = acc[r][0];
            *(v16u *)(s + r * padded + j0 + 16) = acc[r][1];
        }
    }
}

/* In place: s[0..tokens) ← 2^(s − max); returns the sum. */
static double softmax_numerators(float *s, int64_t tokens) {
    float m = -INFINITY;
    #pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < tokens; j++) m = fmaxf(m, s[j]);
    float sum = 0.0f;
    #pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < tokens; j++) {
        s[j] = calib_exp2f(s[j] - m);
        sum += s[j];
    }
    return sum;
}

int calib_block_mass(const float *q, const float *k, int64_t tokens, int64_t d, int64_t block, float scale, float *mass) {
    const int64_t blocks = (tokens + block - 1) / block, padded = (tokens + COLS - 1) / COLS * COLS;
    if (d > 512) return -1;
    float *kt = transpose_keys(k, tokens, d, padded);
    if (!kt) return -1;
    int failed = 0;
    #pragma omp parallel
    {
        float *s = aligned_alloc(64, sizeof(float) * (size_t)(ROWS * padded));
        if (!s) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static, 1)
        for (int64_t qb = 0; qb < blocks; qb++) {
            if (!s) continue;
            double *row = calloc((size_t)blocks, sizeof(double));
            const int64_t first = qb * block, last = first + block < tokens ? first + block : tokens;
            for (int64_t i0 = first; i0 < last && row; i0 += ROWS) {
                scores(q, kt, tokens, d, padded, i0, scale, s);
                for (int r = 0; r < ROWS && i0 + r < last; r++) {
                    float *sr = s + r * padded;
                    const double inv = 1.0 / softmax_numerators(sr, tokens);
                    for (int64_t kb = 0; kb < blocks; kb++) {
                        const int64_t end = (kb + 1) * block < tokens ? (kb + 1) * block : tokens;
                        float part = 0.0f;
                        #pragma omp simd reduction(+ : part)
                        for (int64_t j = kb * block; j < end; j++) part += sr[j];
                        row[kb] += part * inv;
                    }
                }
            }
            if (!row) {
                #pragma omp atomic write
                failed = 1;
                continue;
            }
            for (int64_t kb = 0; kb < blocks; kb++) mass[qb * blocks + kb] = (float)(row[kb] / (double)(last - first));
            free(row);
        }
        free(s);
    }
    free(kt);
    return failed ? -1 : 0;
}

int calib_plan_error(const float *q, const float *k, const float *v, int64_t tokens, int64_t d, int64_t block,
                     float scale, const int32_t *row_span, const int32_t *spans, const int32_t *reuse_source,
                     double *squared_error, double *squared_norm) {
    const int64_t blocks = (tokens + block - 1) / block, padded = (tokens + COLS - 1) / COLS * COLS;
    if (d > 512) return -1;
    float *kt = transpose_keys(k, tokens, d, padded);
    float *dense = malloc(sizeof(float) * (size_t)(tokens * d));
    float *sparse = malloc(sizeof(float) * (size_t)(tokens * d));
    if (!kt || !dense || !sparse) {
        free(kt), free(dense), free(sparse);
        return -1;
    }
    int failed = 0;
    #pragma omp parallel
    {
        float *s = aligned_alloc(64, sizeof(float) * (size_t)(ROWS * padded));
        if (!s) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static, 1)
        for (int64_t qb = 0; qb < blocks; qb++) {
            if (!s) continue;
            const int64_t first = qb * block, last = first + block < tokens ? first + block : tokens;
            for (int64_t i0 = first; i0 < last; i0 += ROWS) {
                scores(q, kt, tokens, d, padded, i0, scale, s);
                for (int r = 0; r < ROWS && i0 + r < last; r++) {
                    float *sr = s + r * padded;
                    const double total = softmax_numerators(sr, tokens);
                    float *o = dense + (i0 + r) * d, *os = sparse + (i0 + r) * d;
                    for (int64_t c = 0; c < d; c++) o[c] = os[c] = 0.0f;
                    for (int64_t j = 0; j < tokens; j++) {
                        const float p = sr[j];
                        #pragma omp simd
                        for (int64_t c = 0; c < d; c++) o[c] += p * v[j * d + c];
                    }
                    for (int64_t c = 0; c < d; c++) o[c] = (float)(o[c] / total);
                    if (reuse_source[qb] >= 0) continue;
                    double kept = 0.0;
                    for (int32_t sp = row_span[qb]; sp < row_span[qb + 1]; sp++) {
                        const int64_t end = (int64_t)spans[2 * sp + 1] * block < tokens ? (int64_t)spans[2 * sp + 1] * block : tokens;
                        for (int64_t j = (int64_t)spans[2 * sp] * block; j < end; j++) {
                            const float p = sr[j];
                            kept += p;
                            #pragma omp simd
                            for (int64_t c = 0; c < d; c++) os[c] += p * v[j * d + c];
                        }
                    }
                    for (int64_t c = 0; c < d; c++) os[c] = (float)(os[c] / kept);
                }
            }
        }
        free(s);
    }
    double err = 0.0, norm = 0.0;
    for (int64_t qb = 0; qb < blocks; qb++) {
        const int64_t source = reuse_source[qb] >= 0 ? reuse_source[qb] : qb;
        const int64_t first = qb * block, last = first + block < tokens ? first + block : tokens;
        for (int64_t i = first; i < last; i++) {
            const float *o = dense + i * d, *os = sparse + (source * block + (i - first)) * d;
            for (int64_t c = 0; c < d; c++) {
                err += ((double)os[c] - o[c]) * ((double)os[c] - o[c]);
                norm += (double)o[c] * o[c];
            }
        }
    }
    *squared_error = err;
    *squared_norm = norm;
    free(kt), free(dense), free(sparse);
    return failed ? -1 : 0;
}

void calib_row_distance_max(const float *mass, int64_t blocks, float *distance) {
    #pragma omp parallel for schedule(static, 1)
    for (int64_t i = 0; i < blocks; i++) {
        const float *a = mass + i * blocks;
        float *out = distance + i * blocks - i * (i + 1) / 2;  /* pairs (i, i+1), (i, i+2), … */
        for (int64_t j = i + 1; j < blocks; j++) {
            const float *b = mass + j * blocks;
            double l1 = 0.0;
            for (int64_t k = 0; k < blocks; k++) l1 += (double)fabsf(a[k] - b[k]);
            const float d = (float)l1;
            if (d > out[j - i - 1]) out[j - i - 1] = d;
        }
    }
}
