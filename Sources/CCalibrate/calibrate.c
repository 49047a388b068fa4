/* The micro-kernel is written with the compiler's vector extensions, so it becomes AVX-512,
 * AVX2 or SSE code for whatever -march the build names. Only static OpenMP schedules here: clang 21 lowers dynamic ones to __kmpc_dispatch_deinit,
 * which the LLVM 14 libomp that Debian 12 ships does not have. */
#include "calibrate.h"
#include "calib_exp2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The register block: ROWS query rows × COLS keys of accumulators. With AVX-512, 8 × 32 is 16
 * zmm registers; with AVX2 the same block would be 32 ymm and spill (3× slower), so 6 × 16:
 * 12 ymm accumulators, 2 for the keys, 1 broadcast. */
#if defined(__AVX512F__)
enum { ROWS = 8, COLS = 32 };
#else
enum { ROWS = 6, COLS = 16 };
#endif
enum { NV = COLS / 16 };

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

/* s[r][j − j_begin] = q_{row0 + r·row_step} · k_j · scale · log2(e) for keys j_begin ≤ j < j_end
 * (both multiples of COLS, at most `padded`), ROWS rows (rows at or past `row_end` read as zero),
 * rows `stride` floats apart: scores in the log2 domain, so the softmax below needs exp2 only. */
static void scores_range(const float *q, const float *kt, int64_t row_end, int64_t row_step, int64_t d, int64_t padded,
                         int64_t row0, int64_t j_begin, int64_t j_end, float scale, float *s, int64_t stride) {
    float qr[ROWS][512];
    for (int r = 0; r < ROWS; r++) {
        const int64_t row = row0 + r * row_step;
        for (int64_t c = 0; c < d; c++) qr[r][c] = row < row_end ? q[row * d + c] * scale * 1.44269504f : 0.0f;
    }
    /* ROWS × COLS accumulators; each step of c loads NV key vectors and issues ROWS · NV FMAs
     * against broadcast query values. */
    for (int64_t j0 = j_begin; j0 < j_end; j0 += COLS) {
        v16 acc[ROWS][NV];
        for (int r = 0; r < ROWS; r++)
            for (int v = 0; v < NV; v++) acc[r][v] = (v16){0};
        for (int64_t c = 0; c < d; c++) {
            v16 kv[NV];
            for (int v = 0; v < NV; v++) kv[v] = *(const v16 *)(kt + c * padded + j0 + 16 * v);
            #pragma unroll
            for (int r = 0; r < ROWS; r++) {
                const v16 x = (v16){0} + qr[r][c];
                for (int v = 0; v < NV; v++) acc[r][v] += x * kv[v];
            }
        }
        for (int r = 0; r < ROWS; r++)
            for (int v = 0; v < NV; v++) *(v16u *)(s + r * stride + j0 - j_begin + 16 * v) = acc[r][v];
    }
}


/* Keys are taken in chunks of CHUNK, so the chunk of Kᵀ (d × CHUNK floats: 512 KB at d = 128)
 * stays in cache while every row of the query block is scored against it; each row keeps a
 * running max and its per-key-block sums, rescaled when the max grows (the online softmax).
 * Scoring every row against all of Kᵀ instead streams Kᵀ (16 MB at 32,760 tokens) from memory
 * once per group of rows: 25 s against 11 s per head there on the 2-core AVX2 machine under
 * load (docs/calibration.md). */
enum { CHUNK = 1024 };

int calib_block_mass(const float *q, const float *k, int64_t tokens, int64_t valid_tokens, int64_t d, int64_t block,
                     int64_t row_step, float scale, float *mass) {
    if (d > 512 || row_step < 1 || row_step > block || valid_tokens < 1 || valid_tokens > tokens) return -1;
    /* Only the valid keys are transposed and scored, so padding is never read. */
    const int64_t blocks = (tokens + block - 1) / block, padded = (valid_tokens + COLS - 1) / COLS * COLS;
    float *kt = transpose_keys(k, valid_tokens, d, padded);
    if (!kt) return -1;
    int failed = 0;
    #pragma omp parallel
    {
        float *s = aligned_alloc(64, sizeof(float) * (size_t)(ROWS * CHUNK));
        double *acc = malloc(sizeof(double) * (size_t)(block * blocks));  /* per row of the block, per key block */
        float *top = malloc(sizeof(float) * (size_t)block);               /* per row: running max */
        if (!s || !acc || !top) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static, 1)
        for (int64_t qb = 0; qb < blocks; qb++) {
            if (!s || !acc || !top) continue;
            /* Rows first + i·row_step, i < rows: every row_step-th valid row from row_step/2 on (all
             * when row_step is 1), or the first row of a block whose valid rows are too few to have
             * one there. A block wholly in padding has no rows: it measured nothing. */
            const int64_t last = qb * block + block < valid_tokens ? qb * block + block : valid_tokens;
            if (last <= qb * block) {
                for (int64_t kb = 0; kb < blocks; kb++) mass[qb * blocks + kb] = 0.0f;
                continue;
            }
            const int64_t first = qb * block + row_step / 2 < last ? qb * block + row_step / 2 : qb * block;
            const int64_t rows = (last - first + row_step - 1) / row_step;
            for (int64_t i = 0; i < rows * blocks; i++) acc[i] = 0.0;
            for (int64_t r = 0; r < rows; r++) top[r] = -INFINITY;
            for (int64_t j0 = 0; j0 < padded; j0 += CHUNK) {
                const int64_t j1 = j0 + CHUNK < padded ? j0 + CHUNK : padded, valid = (j1 < valid_tokens ? j1 : valid_tokens) - j0;
                for (int64_t i0 = 0; i0 < rows; i0 += ROWS) {
                    scores_range(q, kt, last, row_step, d, padded, first + i0 * row_step, j0, j1, scale, s, CHUNK);
                    for (int r = 0; r < ROWS && i0 + r < rows; r++) {
                        float *sr = s + r * CHUNK;
                        const int64_t row = i0 + r;
                        double *a = acc + row * blocks;
                        float m = top[row];
                        for (int64_t j = 0; j < valid; j++) m = fmaxf(m, sr[j]);
                        if (m > top[row]) {
                            const double rescale = exp2((double)top[row] - m);
                            for (int64_t kb = 0; kb < blocks; kb++) a[kb] *= rescale;
                            top[row] = m;
                        }
                        #pragma omp simd
                        for (int64_t j = 0; j < valid; j++) sr[j] = calib_exp2f(sr[j] - m);
                        for (int64_t kb = j0 / block; kb * block < j0 + valid; kb++) {
                            const int64_t a0 = kb * block > j0 ? kb * block - j0 : 0;
                            const int64_t a1 = (kb + 1) * block - j0 < valid ? (kb + 1) * block - j0 : valid;
                            float part = 0.0f;
                            #pragma omp simd reduction(+ : part)
                            for (int64_t j = a0; j < a1; j++) part += sr[j];
                            a[kb] += part;
                        }
                    }
                }
            }
            double *out = acc;  /* reduce the rows into acc's first row */
            for (int64_t row = 0; row < rows; row++) {
                double total = 0.0;
                for (int64_t kb = 0; kb < blocks; kb++) total += acc[row * blocks + kb];
                const double inv = 1.0 / total;
                for (int64_t kb = 0; kb < blocks; kb++) out[kb] = (row ? out[kb] : 0.0) + acc[row * blocks + kb] * inv;
            }
            for (int64_t kb = 0; kb < blocks; kb++) mass[qb * blocks + kb] = (float)(out[kb] / (double)rows);
        }
        free(s), free(acc), free(top);
    }
    free(kt);
    return failed ? -1 : 0;
}

/* Key chunks as in calib_block_mass: per row a running max, and the dense and sparse outputs
 * and their softmax sums rescaled when it grows (as FlashAttention does), so Kᵀ and V stay in
 * cache over a chunk instead of streaming from memory once per group of rows. */
int calib_plan_error(const float *q, const float *k, const float *v, int64_t tokens, int64_t valid_tokens, int64_t d,
                     int64_t block, float scale, const int32_t *row_span, const int32_t *spans,
                     const int32_t *reuse_source, double *squared_error, double *squared_norm) {
    if (d > 512 || valid_tokens < 1 || valid_tokens > tokens) return -1;
    const int64_t blocks = (tokens + block - 1) / block, padded = (valid_tokens + COLS - 1) / COLS * COLS;
    float *kt = transpose_keys(k, valid_tokens, d, padded);
    float *dense = malloc(sizeof(float) * (size_t)(tokens * d));
    float *sparse = malloc(sizeof(float) * (size_t)(tokens * d));
    if (!kt || !dense || !sparse) {
        free(kt), free(dense), free(sparse);
        return -1;
    }
    int failed = 0;
    #pragma omp parallel
    {
        float *s = aligned_alloc(64, sizeof(float) * (size_t)(ROWS * CHUNK));
        float *od = malloc(sizeof(float) * (size_t)(block * d)), *os = malloc(sizeof(float) * (size_t)(block * d));
        double *ld = malloc(sizeof(double) * (size_t)block), *ls = malloc(sizeof(double) * (size_t)block);
        float *top = malloc(sizeof(float) * (size_t)block);
        const int ok = s && od && os && ld && ls && top;
        if (!ok) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static, 1)
        for (int64_t qb = 0; qb < blocks; qb++) {
            if (!ok) continue;
            const int64_t first = qb * block, last = first + block < valid_tokens ? first + block : valid_tokens;
            if (last <= first) continue;  /* wholly padding: neither output is compared */
            const int64_t rows = last - first;
            const int computed = reuse_source[qb] < 0;
            for (int64_t i = 0; i < rows * d; i++) od[i] = os[i] = 0.0f;
            for (int64_t r = 0; r < rows; r++) ld[r] = ls[r] = 0.0, top[r] = -INFINITY;
            for (int64_t j0 = 0; j0 < padded; j0 += CHUNK) {
                const int64_t j1 = j0 + CHUNK < padded ? j0 + CHUNK : padded, valid = (j1 < valid_tokens ? j1 : valid_tokens) - j0;
                for (int64_t i0 = 0; i0 < rows; i0 += ROWS) {
                    scores_range(q, kt, last, 1, d, padded, first + i0, j0, j1, scale, s, CHUNK);
                    for (int r = 0; r < ROWS && i0 + r < rows; r++) {
                        float *sr = s + r * CHUNK;
                        const int64_t row = i0 + r;
                        float *o = od + row * d, *o2 = os + row * d;
                        float m = top[row];
                        for (int64_t j = 0; j < valid; j++) m = fmaxf(m, sr[j]);
                        if (m > top[row]) {
                            const float f = (float)exp2((double)top[row] - m);
                            for (int64_t c = 0; c < d; c++) o[c] *= f, o2[c] *= f;
                            ld[row] *= f, ls[row] *= f;
                            top[row] = m;
                        }
                        #pragma omp simd
                        for (int64_t j = 0; j < valid; j++) sr[j] = calib_exp2f(sr[j] - m);
                        for (int64_t j = 0; j < valid; j++) {
                            const float p = sr[j];
                            const float *vj = v + (j0 + j) * d;
                            ld[row] += p;
                            #pragma omp simd
                            for (int64_t c = 0; c < d; c++) o[c] += p * vj[c];
                        }
                        if (!computed) continue;
                        for (int32_t sp = row_span[qb]; sp < row_span[qb + 1]; sp++) {
                            int64_t a0 = (int64_t)spans[2 * sp] * block - j0, a1 = (int64_t)spans[2 * sp + 1] * block - j0;
                            if (a0 < 0) a0 = 0;
                            if (a1 > valid) a1 = valid;
                            for (int64_t j = a0; j < a1; j++) {
                                const float p = sr[j];
                                const float *vj = v + (j0 + j) * d;
                                ls[row] += p;
                                #pragma omp simd
                                for (int64_t c = 0; c < d; c++) o2[c] += p * vj[c];
                            }
                        }
                    }
                }
            }
            for (int64_t row = 0; row < rows; row++) {
                for (int64_t c = 0; c < d; c++) {
                    dense[(first + row) * d + c] = (float)(od[row * d + c] / ld[row]);
                    /* No kept key valid (ls = 0): the kernels write a zero row. */
                    if (computed) sparse[(first + row) * d + c] = ls[row] > 0 ? (float)(os[row * d + c] / ls[row]) : 0.0f;
                }
            }
        }
        free(s), free(od), free(os), free(ld), free(ls), free(top);
    }
    double err = 0.0, norm = 0.0;
    for (int64_t qb = 0; qb < blocks; qb++) {
        const int64_t source = reuse_source[qb] >= 0 ? reuse_source[qb] : qb;
        /* A valid row's source row is valid too: sources precede their targets. */
        const int64_t first = qb * block, last = first + block < valid_tokens ? first + block : valid_tokens;
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

void calib_row_distance(const float *mass, int64_t blocks, double *distance) {
    #pragma omp parallel for schedule(static, 1)
    for (int64_t i = 0; i < blocks; i++) {
        const float *a = mass + i * blocks;
        double *out = distance + i * blocks - i * (i + 1) / 2;  /* pairs (i, i+1), (i, i+2), … */
        for (int64_t j = i + 1; j < blocks; j++) {
            const float *b = mass + j * blocks;
            double l1 = 0.0;
            for (int64_t k = 0; k < blocks; k++) l1 += fabs((double)a[k] - (double)b[k]);
            out[j - i - 1] = l1;
        }
    }
}
