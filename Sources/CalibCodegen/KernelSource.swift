// The C text of the kernels for one shape. Only the arithmetic lives here, specialized by
// head_dim, block and tokens as compile-time constants; which tiles to visit lives in the
// tables of ScheduleSource.swift (the TACO split: structure in data, math in a few loops).

import CalibIR

enum KernelSource {
    static func header(_ program: Program, banner: String) -> String {
        """
        \(banner)
        #ifndef CALIB_KERNELS_H
        #define CALIB_KERNELS_H

        #include <stdint.h>

        #ifdef __cplusplus
        extern "C" {
        #endif

        #define CALIB_ABI_VERSION 1

        enum calib_status {
            CALIB_OK = 0,
            CALIB_ERR_SHAPE = 1,     /* tokens or head_dim differ from the compiled shape */
            CALIB_ERR_NO_PLAN = 2,   /* (step, layer, head) is not in the calibration */
            CALIB_ERR_ARGUMENT = 3,  /* a null pointer, or a stride smaller than head_dim */
            CALIB_ERR_NO_MEMORY = 4
        };

        typedef struct calib_info {
            int32_t abi_version;
            int32_t tokens, head_dim, block, layers, heads, plans, threads;
            int32_t step_count;
            const int32_t *steps;     /* the step values calib_attention accepts, ascending */
            const char *model;
            const char *mask_sha256;  /* of the masks.json these kernels were compiled from */
        } calib_info;

        const calib_info *calib_get_info(void);

        /* Attention of one head: out = softmax(q kᵀ / sqrt(head_dim)) v over the plan of
         * (step, layer, head). q, k, v, out hold `tokens` rows of `head_dim` floats, rows
         * `*_stride` floats apart. Runs on all OpenMP threads; safe to call concurrently. */
        int calib_attention(int32_t step, int32_t layer, int32_t head,
                            const float *q, const float *k, const float *v, float *out,
                            int64_t tokens, int64_t head_dim,
                            int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride);

        /* The same with bfloat16 inputs (raw bits, e.g. torch.bfloat16) and float output. Products
         * use AVX-512 BF16 dot products where the machine has them (probabilities are rounded to
         * bfloat16 for P·V, as GPU kernels do), and fp32 arithmetic otherwise. */
        int calib_attention_bf16(int32_t step, int32_t layer, int32_t head,
                                 const uint16_t *q, const uint16_t *k, const uint16_t *v, float *out,
                                 int64_t tokens, int64_t head_dim,
                                 int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride);

        /* Every tile computed: the baseline sparse plans are measured against. */
        int calib_dense_attention(const float *q, const float *k, const float *v, float *out,
                                  int64_t tokens, int64_t head_dim,
                                  int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride);
        int calib_dense_attention_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v, float *out,
                                       int64_t tokens, int64_t head_dim,
                                       int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride);

        /* Threads the kernels' parallel regions get: lets callers check OpenMP really runs. */
        int calib_team_size(void);

        #ifdef __cplusplus
        }
        #endif

        #endif

        """
    }

    static func internalHeader(_ program: Program, banner: String) -> String {
        let s = program.shape
        let rowCount = Set(program.plans.flatMap { $0.rows.map(\.spans) }).count
        return """
        \(banner)
        #ifndef CALIB_INTERNAL_H
        #define CALIB_INTERNAL_H

        #include <stdint.h>

        #define CALIB_TOKENS \(s.tokens)
        #define CALIB_HEAD_DIM \(s.headDim)
        #define CALIB_BLOCK \(s.block)
        #define CALIB_BLOCKS \(s.blocks)
        #define CALIB_LAYERS \(s.layers)
        #define CALIB_HEADS \(s.heads)
        #define CALIB_STEPS \(s.steps.count)
        #define CALIB_PLANS \(program.plans.count)
        #define CALIB_THREADS \(program.threads)

        /* One plan: the pooled row (key spans) of each query block, the compute rows in run
         * order cut into CALIB_THREADS parts, and reused blocks as (source, target) pairs
         * sorted by source. */
        typedef struct calib_plan {
            const \(rowType(rowCount)) *rows;
            const uint16_t *order;
            const int32_t *parts;
            const int32_t *reuse;
            int32_t reuse_count;
        } calib_plan;

        extern const int32_t calib_row_first[] __attribute__((visibility("hidden")));
        extern const uint16_t calib_spans[] __attribute__((visibility("hidden")));

        extern const calib_plan calib_plans[CALIB_PLANS] __attribute__((visibility("hidden")));
        extern const \(dispatchType(program)) calib_dispatch[CALIB_STEPS * CALIB_LAYERS * CALIB_HEADS] __attribute__((visibility("hidden")));
        extern const int32_t calib_steps[CALIB_STEPS] __attribute__((visibility("hidden")));
        extern const char calib_model[] __attribute__((visibility("hidden")));
        extern const char calib_mask_sha256[] __attribute__((visibility("hidden")));

        #endif

        """
    }

    static func rowType(_ rows: Int) -> String { rows <= Int(UInt16.max) ? "uint16_t" : "int32_t" }

    static func dispatchType(_ program: Program) -> String {
        program.plans.count <= Int(UInt16.max) ? "uint16_t" : "int32_t"
    }

    /// The same text for every program: the shape arrives as macros from calib_internal.h.
    static func kernels(banner: String) -> String {
        """
        \(banner)
        #include <calib_kernels.h>
        #include "calib_internal.h"

        #include <math.h>
        #include <omp.h>
        #include <pthread.h>
        #include <stdlib.h>
        #include <string.h>

        #define D CALIB_HEAD_DIM
        #define B CALIB_BLOCK
        #define NB CALIB_BLOCKS
        #define LAST_ROWS (CALIB_TOKENS - (NB - 1) * B) /* tokens in the last, possibly partial, block */

        /* AVX-512 micro-kernels where the shape allows them, portable loops otherwise; bf16 inputs use
         * AVX-512 BF16 dot products where the machine has them and are widened to fp32 otherwise. */
        #if defined(__AVX512F__) && D % 32 == 0 && B % 32 == 0
        #define SIMD 1
        #include <immintrin.h>
        #else
        #define SIMD 0
        #endif
        #if SIMD && defined(__AVX512BF16__)
        #define NATIVE_BF16 1
        #else
        #define NATIVE_BF16 0
        #endif

        enum dtype { F32, BF16 };

        /* One call: inputs, their strides in elements, and keys packed once for every query block. */
        typedef struct call {
            enum dtype dtype;
            const void *q, *k, *v;
            float *out;
            int64_t q_stride, k_stride, v_stride, out_stride;
            float *kt;       /* F32 (or widened BF16): per key block, Kᵀ as D rows of B keys; these four share one workspace */
            uint16_t *kp;    /* native BF16: per key block, D/2 rows of B (key, dim pair) */
            uint16_t *vp;    /* native BF16: per key block, B/2 rows of D (key pair, dim) */
            float *vt;       /* widened BF16: per key block, V as B rows of D */
        } call;

        /* Per-thread working set for one query block. */
        typedef struct scratch {
            float q[B][D] __attribute__((aligned(64)));
            uint16_t qh[B][D] __attribute__((aligned(64)));  /* the query tile in bf16 */
            float s[B][B] __attribute__((aligned(64)));      /* scores, then probabilities */
            uint16_t ph[B][B] __attribute__((aligned(64)));  /* probabilities in bf16 */
            float acc[B][D] __attribute__((aligned(64)));
            float m[B], l[B], alpha[B]; /* running max (log2 domain), running sum, this tile's rescale */
        } scratch;

        static inline float bf16_to_f32(uint16_t h) {
            union { uint32_t u; float f; } x = { .u = (uint32_t)h << 16 };
            return x.f;
        }

        static inline float load(const call *c, const void *base, int64_t index) {
            return c->dtype == F32 ? ((const float *)base)[index] : bf16_to_f32(((const uint16_t *)base)[index]);
        }

        /* 2^x for x <= 0 (Cephes exp2f polynomial, relative error ~2e-7). */
        static inline float exp2_neg(float x) {
            x = x < -126.0f ? -126.0f : x;
            const float n = floorf(x + 0.5f), f = x - n;
            float p = 1.535336188319500e-4f;
            p = p * f + 1.339887440266574e-3f;
            p = p * f + 9.618437357674640e-3f;
            p = p * f + 5.550332471162809e-2f;
            p = p * f + 2.402264791363012e-1f;
            p = p * f + 6.931472028550421e-1f;
            p = p * f + 1.0f;
            union { int32_t i; float f; } scale = { .i = ((int32_t)n + 127) << 23 };
            return p * scale.f;
        }

        /* ---- packing: once per call, each key block by one thread ---- */

        static void pack_keys(const call *c, int kb) {
            const int cols = kb == NB - 1 ? LAST_ROWS : B;
            const int64_t first = (int64_t)kb * B;
            if (NATIVE_BF16 && c->dtype == BF16) {
                const uint16_t *k = c->k, *v = c->v;
                uint16_t *kp = c->kp + (int64_t)kb * B * D, *vp = c->vp + (int64_t)kb * B * D;
                for (int cc = 0; cc < D / 2; cc++) {
                    for (int j = 0; j < B; j++) {
                        kp[(cc * B + j) * 2] = j < cols ? k[(first + j) * c->k_stride + 2 * cc] : 0;
                        kp[(cc * B + j) * 2 + 1] = j < cols ? k[(first + j) * c->k_stride + 2 * cc + 1] : 0;
                    }
                }
                for (int jj = 0; jj < B / 2; jj++) {
                    for (int d = 0; d < D; d++) {
                        vp[(jj * D + d) * 2] = 2 * jj < cols ? v[(first + 2 * jj) * c->v_stride + d] : 0;
                        vp[(jj * D + d) * 2 + 1] = 2 * jj + 1 < cols ? v[(first + 2 * jj + 1) * c->v_stride + d] : 0;
                    }
                }
                return;
            }
            float *kt = c->kt + (int64_t)kb * B * D;
            if (cols < B) memset(kt, 0, sizeof(float) * B * D);
            if (c->dtype == F32) {
                for (int j = 0; j < cols; j++) {
                    const float *row = (const float *)c->k + (first + j) * c->k_stride;
                    for (int d = 0; d < D; d++) kt[d * B + j] = row[d];
                }
            } else {
                for (int j = 0; j < cols; j++) {
                    const uint16_t *row = (const uint16_t *)c->k + (first + j) * c->k_stride;
                    for (int d = 0; d < D; d++) kt[d * B + j] = bf16_to_f32(row[d]);
                }
            }
            if (c->dtype == BF16) {
                float *vt = c->vt + (int64_t)kb * B * D;
                for (int j = 0; j < B; j++) {
                    for (int d = 0; d < D; d++) vt[j * D + d] = j < cols ? load(c, c->v, (first + j) * c->v_stride + d) : 0.0f;
                }
            }
        }

        /* ---- S = Q·Kᵀ for one key block ---- */

        static inline void scores(const call *c, scratch *w, int kb) {
        #if SIMD
            enum { SR = 4, SC = B % 64 == 0 ? 4 : 2 }; /* SR rows × SC vectors of 16 keys in registers */
            if (NATIVE_BF16 && c->dtype == BF16) {
        #if NATIVE_BF16
                const uint16_t *kp = c->kp + (int64_t)kb * B * D;
                for (int i0 = 0; i0 < B; i0 += SR) {
                    for (int j0 = 0; j0 < B; j0 += 16 * SC) {
                        __m512 acc[SR][SC];
                        for (int r = 0; r < SR; r++)
                            for (int x = 0; x < SC; x++) acc[r][x] = _mm512_setzero_ps();
                        for (int cc = 0; cc < D / 2; cc++) {
                            __m512bh kv[SC];
                            for (int x = 0; x < SC; x++) kv[x] = (__m512bh)_mm512_load_si512(kp + (cc * B + j0 + 16 * x) * 2);
                            for (int r = 0; r < SR; r++) {
                                uint32_t pair;
                                memcpy(&pair, &w->qh[i0 + r][2 * cc], sizeof pair);
                                const __m512bh qv = (__m512bh)_mm512_set1_epi32((int)pair);
                                for (int x = 0; x < SC; x++) acc[r][x] = _mm512_dpbf16_ps(acc[r][x], qv, kv[x]);
                            }
                        }
                        for (int r = 0; r < SR; r++)
                            for (int x = 0; x < SC; x++) _mm512_store_ps(&w->s[i0 + r][j0 + 16 * x], acc[r][x]);
                    }
                }
                return;
        #endif
            }
            const float *kt = c->kt + (int64_t)kb * B * D;
            for (int i0 = 0; i0 < B; i0 += SR) {
                for (int j0 = 0; j0 < B; j0 += 16 * SC) {
                    __m512 acc[SR][SC];
                    for (int r = 0; r < SR; r++)
                        for (int x = 0; x < SC; x++) acc[r][x] = _mm512_setzero_ps();
                    for (int d = 0; d < D; d++) {
                        __m512 kv[SC];
                        for (int x = 0; x < SC; x++) kv[x] = _mm512_load_ps(kt + d * B + j0 + 16 * x);
                        for (int r = 0; r < SR; r++) {
                            const __m512 qv = _mm512_set1_ps(w->q[i0 + r][d]);
                            for (int x = 0; x < SC; x++) acc[r][x] = _mm512_fmadd_ps(qv, kv[x], acc[r][x]);
                        }
                    }
                    for (int r = 0; r < SR; r++)
                        for (int x = 0; x < SC; x++) _mm512_store_ps(&w->s[i0 + r][j0 + 16 * x], acc[r][x]);
                }
            }
        #else
            const float *kt = c->kt + (int64_t)kb * B * D;
            for (int i = 0; i < B; i++) {
                float *s = w->s[i];
                for (int j = 0; j < B; j++) s[j] = 0.0f;
                for (int d = 0; d < D; d++) {
                    const float qd = w->q[i][d];
                    for (int j = 0; j < B; j++) s[j] += qd * kt[d * B + j];
                }
            }
        #endif
        }

        /* ---- online softmax: scores → probabilities, running max and sum, rescale factors ---- */

        static inline void softmax(scratch *w, const int cols) {
            const float scale = 1.4426950408889634f / sqrtf((float)D); /* scores in the log2 domain */
            for (int i = 0; i < B; i++) {
                float *s = w->s[i];
                float mx = w->m[i];
        #if SIMD
                __m512 vmax = _mm512_set1_ps(-INFINITY);
                for (int j = 0; j < B; j += 16) {
                    const __mmask16 live = cols == B ? 0xFFFF : j >= cols ? 0 : (__mmask16)((1u << (cols - j < 16 ? cols - j : 16)) - 1);
                    vmax = _mm512_mask_max_ps(vmax, live, vmax, _mm512_load_ps(s + j));
                }
                mx = fmaxf(mx, _mm512_reduce_max_ps(vmax) * scale);
        #else
                for (int j = 0; j < cols; j++) mx = fmaxf(mx, s[j] * scale);
        #endif
                w->alpha[i] = exp2_neg(w->m[i] - mx);
                w->m[i] = mx;
                float sum = 0.0f;
        #if SIMD
                const __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(mx), lo = _mm512_set1_ps(-126.0f);
                __m512 vsum = _mm512_setzero_ps();
                for (int j = 0; j < B; j += 16) {
                    /* exp2 as in exp2_neg: round, polynomial on the remainder, then scale by 2^n. */
                    __m512 x = _mm512_max_ps(_mm512_fmsub_ps(_mm512_load_ps(s + j), vs, vm), lo);
                    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                    const __m512 f = _mm512_sub_ps(x, n);
                    __m512 p = _mm512_set1_ps(1.535336188319500e-4f);
                    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339887440266574e-3f));
                    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618437357674640e-3f));
                    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550332471162809e-2f));
                    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264791363012e-1f));
                    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472028550421e-1f));
                    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
                    p = _mm512_scalef_ps(p, n);
                    if (cols != B) p = _mm512_maskz_mov_ps(j >= cols ? 0 : (__mmask16)((1u << (cols - j < 16 ? cols - j : 16)) - 1), p);
                    _mm512_store_ps(s + j, p);
                    vsum = _mm512_add_ps(vsum, p);
                }
                sum = _mm512_reduce_add_ps(vsum);
        #else
                for (int j = 0; j < B; j++) {
                    s[j] = j < cols ? exp2_neg(s[j] * scale - mx) : 0.0f;
                    sum += s[j];
                }
        #endif
                w->l[i] = w->l[i] * w->alpha[i] + sum;
            }
        }

        /* ---- acc = alpha·acc + P·V for one key block ---- */

        static inline void accumulate(const call *c, scratch *w, int kb, const int cols) {
        #if SIMD
            enum { PR = 4, PC = D % 64 == 0 ? 4 : 2 }; /* PR rows × PC vectors of 16 dims in registers */
            if (NATIVE_BF16 && c->dtype == BF16) {
        #if NATIVE_BF16
                for (int i = 0; i < B; i++) {
                    for (int j = 0; j < B; j += 32) {
                        const __m512 lo = _mm512_load_ps(&w->s[i][j]), hi = _mm512_load_ps(&w->s[i][j + 16]);
                        _mm512_store_si512(&w->ph[i][j], (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                    }
                }
                const uint16_t *vp = c->vp + (int64_t)kb * B * D;
                for (int i0 = 0; i0 < B; i0 += PR) {
                    for (int d0 = 0; d0 < D; d0 += 16 * PC) {
                        __m512 o[PR][PC];
                        for (int r = 0; r < PR; r++) {
                            const __m512 a = _mm512_set1_ps(w->alpha[i0 + r]);
                            for (int x = 0; x < PC; x++) o[r][x] = _mm512_mul_ps(a, _mm512_load_ps(&w->acc[i0 + r][d0 + 16 * x]));
                        }
                        for (int jj = 0; jj < (cols + 1) / 2; jj++) {
                            __m512bh vv[PC];
                            for (int x = 0; x < PC; x++) vv[x] = (__m512bh)_mm512_load_si512(vp + (jj * D + d0 + 16 * x) * 2);
                            for (int r = 0; r < PR; r++) {
                                uint32_t pair;
                                memcpy(&pair, &w->ph[i0 + r][2 * jj], sizeof pair);
                                const __m512bh pv = (__m512bh)_mm512_set1_epi32((int)pair);
                                for (int x = 0; x < PC; x++) o[r][x] = _mm512_dpbf16_ps(o[r][x], pv, vv[x]);
                            }
                        }
                        for (int r = 0; r < PR; r++)
                            for (int x = 0; x < PC; x++) _mm512_store_ps(&w->acc[i0 + r][d0 + 16 * x], o[r][x]);
                    }
                }
                return;
        #endif
            }
            /* F32 reads V in place; widened BF16 reads its packed fp32 copy. */
            const float *v = c->dtype == F32 ? (const float *)c->v + (int64_t)kb * B * c->v_stride : c->vt + (int64_t)kb * B * D;
            const int64_t stride = c->dtype == F32 ? c->v_stride : D;
            for (int i0 = 0; i0 < B; i0 += PR) {
                for (int d0 = 0; d0 < D; d0 += 16 * PC) {
                    __m512 o[PR][PC];
                    for (int r = 0; r < PR; r++) {
                        const __m512 a = _mm512_set1_ps(w->alpha[i0 + r]);
                        for (int x = 0; x < PC; x++) o[r][x] = _mm512_mul_ps(a, _mm512_load_ps(&w->acc[i0 + r][d0 + 16 * x]));
                    }
                    for (int j = 0; j < cols; j++) {
                        __m512 vv[PC];
                        for (int x = 0; x < PC; x++) vv[x] = _mm512_loadu_ps(v + j * stride + d0 + 16 * x);
                        for (int r = 0; r < PR; r++) {
                            const __m512 pv = _mm512_set1_ps(w->s[i0 + r][j]);
                            for (int x = 0; x < PC; x++) o[r][x] = _mm512_fmadd_ps(pv, vv[x], o[r][x]);
                        }
                    }
                    for (int r = 0; r < PR; r++)
                        for (int x = 0; x < PC; x++) _mm512_store_ps(&w->acc[i0 + r][d0 + 16 * x], o[r][x]);
                }
            }
        #else
            const float *v = c->dtype == F32 ? (const float *)c->v + (int64_t)kb * B * c->v_stride : c->vt + (int64_t)kb * B * D;
            const int64_t stride = c->dtype == F32 ? c->v_stride : D;
            for (int i = 0; i < B; i++) {
                float *acc = w->acc[i];
                for (int d = 0; d < D; d++) acc[d] *= w->alpha[i];
                for (int j = 0; j < cols; j++) {
                    const float p = w->s[i][j];
                    for (int d = 0; d < D; d++) acc[d] += p * v[j * stride + d];
                }
            }
        #endif
        }

        /* One key block into the running softmax of the query tile. Inlined with cols == B for every
         * full block, so only the last, partial block pays for bounds. */
        static inline __attribute__((always_inline)) void tile(const call *c, scratch *w, int kb, const int cols) {
            scores(c, w, kb);
            softmax(w, cols);
            accumulate(c, w, kb, cols);
        }

        /* Output rows of query block qb from the key blocks in spans[0 .. 2*nspans), also stored as
         * the rows of the blocks reuse[2t + 1] that reuse it: reuse costs those stores, nothing else. */
        static void query_block(const call *c, scratch *w, int qb, const uint16_t *spans, int32_t nspans,
                                const int32_t *reuse, int32_t ntargets) {
            const int rows = qb == NB - 1 ? LAST_ROWS : B;
            for (int i = 0; i < B; i++) {
                /* Padding rows of the last block stay zero: computed, never written. */
                for (int d = 0; d < D; d++) {
                    const float x = i < rows ? load(c, c->q, ((int64_t)qb * B + i) * c->q_stride + d) : 0.0f;
                    w->q[i][d] = x;
                    w->qh[i][d] = i < rows && c->dtype == BF16 ? ((const uint16_t *)c->q)[((int64_t)qb * B + i) * c->q_stride + d] : 0;
                    w->acc[i][d] = 0.0f;
                }
                w->m[i] = -INFINITY;
                w->l[i] = 0.0f;
            }
            for (int32_t sp = 0; sp < nspans; sp++) {
                for (int32_t kb = spans[2 * sp]; kb < spans[2 * sp + 1]; kb++) {
                    if (kb == NB - 1 && LAST_ROWS != B) {
                        tile(c, w, kb, LAST_ROWS);
                    } else {
                        tile(c, w, kb, B);
                    }
                }
            }
            for (int i = 0; i < rows; i++) {
                const float inv = 1.0f / w->l[i];
                float *o = c->out + ((int64_t)qb * B + i) * c->out_stride;
                for (int d = 0; d < D; d++) o[d] = w->acc[i][d] * inv;
                for (int32_t t = 0; t < ntargets; t++) {
                    const int64_t target = reuse[2 * t + 1];
                    /* A partial last block takes only its own rows. */
                    if (target == NB - 1 && i >= LAST_ROWS) continue;
                    memcpy(c->out + (target * B + i) * c->out_stride, o, sizeof(float) * D);
                }
            }
        }

        static int check(const void *q, const void *k, const void *v, float *out, int64_t tokens, int64_t head_dim,
                         int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride) {
            if (tokens != CALIB_TOKENS || head_dim != CALIB_HEAD_DIM) return CALIB_ERR_SHAPE;
            if (!q || !k || !v || !out) return CALIB_ERR_ARGUMENT;
            if (q_stride < D || k_stride < D || v_stride < D || out_stride < D) return CALIB_ERR_ARGUMENT;
            return CALIB_OK;
        }

        /* Packed keys live in a buffer kept per calling thread (freed when it exits): allocating and
         * faulting in N·D floats on every call costs as much as the arithmetic of a sparse head. */
        static pthread_key_t workspace_key;
        static pthread_once_t workspace_once = PTHREAD_ONCE_INIT;

        static void make_workspace_key(void) { pthread_key_create(&workspace_key, free); }

        static float *workspace(void) {
            pthread_once(&workspace_once, make_workspace_key);
            float *w = pthread_getspecific(workspace_key);
            if (!w && (w = aligned_alloc(64, sizeof(float) * 2 * (size_t)NB * B * D)) && pthread_setspecific(workspace_key, w)) {
                free(w);
                w = NULL;
            }
            return w;
        }

        /* Runs `p`, or every tile when p is NULL (the dense baseline). */
        static int run(call *c, const calib_plan *p) {
            const int64_t packed = (int64_t)NB * B * D;
            float *buffer = workspace();
            if (!buffer) return CALIB_ERR_NO_MEMORY;
            c->kt = buffer;
            c->vt = buffer + packed;
            c->kp = (uint16_t *)buffer;
            c->vp = (uint16_t *)buffer + packed;
            int status = CALIB_OK;
            const uint16_t all[2] = {0, NB};
            #pragma omp parallel
            {
                scratch *w = aligned_alloc(64, sizeof(scratch));
                if (!w) {
                    #pragma omp atomic write
                    status = CALIB_ERR_NO_MEMORY;
                }
                #pragma omp for schedule(static)
                for (int kb = 0; kb < NB; kb++) pack_keys(c, kb);
                if (w && !p) {
                    #pragma omp for schedule(static) nowait
                    for (int qb = 0; qb < NB; qb++) query_block(c, w, qb, all, 1, NULL, 0);
                } else if (w) {
                    /* Parts were balanced for CALIB_THREADS threads at compile time; another team
                     * size takes them round-robin. */
                    for (int part = omp_get_thread_num(); part < CALIB_THREADS; part += omp_get_num_threads()) {
                        for (int32_t r = p->parts[part]; r < p->parts[part + 1]; r++) {
                            const int32_t qb = p->order[r], row = p->rows[qb], first = calib_row_first[row];
                            /* The pairs whose source is qb: a binary search in the sorted list. */
                            int32_t lo = 0, hi = p->reuse_count;
                            while (lo < hi) {
                                const int32_t mid = (lo + hi) / 2;
                                if (p->reuse[2 * mid] < qb) lo = mid + 1; else hi = mid;
                            }
                            int32_t end = lo;
                            while (end < p->reuse_count && p->reuse[2 * end] == qb) end++;
                            query_block(c, w, qb, calib_spans + 2 * first, calib_row_first[row + 1] - first,
                                        p->reuse + 2 * lo, end - lo);
                        }
                    }
                }
                free(w);
            }
            return status;
        }

        static int lookup(int32_t step, int32_t layer, int32_t head, const calib_plan **plan) {
            if (layer < 0 || layer >= CALIB_LAYERS || head < 0 || head >= CALIB_HEADS) return CALIB_ERR_NO_PLAN;
            int lo = 0, hi = CALIB_STEPS;
            while (lo < hi) {
                const int mid = (lo + hi) / 2;
                if (calib_steps[mid] < step) lo = mid + 1; else hi = mid;
            }
            if (lo == CALIB_STEPS || calib_steps[lo] != step) return CALIB_ERR_NO_PLAN;
            *plan = &calib_plans[calib_dispatch[((int64_t)lo * CALIB_LAYERS + layer) * CALIB_HEADS + head]];
            return CALIB_OK;
        }

        static int attention(enum dtype dtype, int32_t step, int32_t layer, int32_t head, const void *q, const void *k,
                             const void *v, float *out, int64_t tokens, int64_t head_dim,
                             int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride, int dense) {
            int status = check(q, k, v, out, tokens, head_dim, q_stride, k_stride, v_stride, out_stride);
            const calib_plan *plan = NULL;
            if (status == CALIB_OK && !dense) status = lookup(step, layer, head, &plan);
            if (status != CALIB_OK) return status;
            call c = {dtype, q, k, v, out, q_stride, k_stride, v_stride, out_stride, NULL, NULL, NULL, NULL};
            return run(&c, plan);
        }

        int calib_attention(int32_t step, int32_t layer, int32_t head,
                            const float *q, const float *k, const float *v, float *out,
                            int64_t tokens, int64_t head_dim,
                            int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride) {
            return attention(F32, step, layer, head, q, k, v, out, tokens, head_dim, q_stride, k_stride, v_stride, out_stride, 0);
        }

        int calib_attention_bf16(int32_t step, int32_t layer, int32_t head,
                                 const uint16_t *q, const uint16_t *k, const uint16_t *v, float *out,
                                 int64_t tokens, int64_t head_dim,
                                 int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride) {
            return attention(BF16, step, layer, head, q, k, v, out, tokens, head_dim, q_stride, k_stride, v_stride, out_stride, 0);
        }

        int calib_dense_attention(const float *q, const float *k, const float *v, float *out,
                                  int64_t tokens, int64_t head_dim,
                                  int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride) {
            return attention(F32, 0, 0, 0, q, k, v, out, tokens, head_dim, q_stride, k_stride, v_stride, out_stride, 1);
        }

        int calib_dense_attention_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v, float *out,
                                       int64_t tokens, int64_t head_dim,
                                       int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride) {
            return attention(BF16, 0, 0, 0, q, k, v, out, tokens, head_dim, q_stride, k_stride, v_stride, out_stride, 1);
        }

        int calib_team_size(void) {
            int size = 0;
            #pragma omp parallel
            {
                #pragma omp single
                size = omp_get_num_threads();
            }
            return size;
        }

        const calib_info *calib_get_info(void) {
            static const calib_info info = {
                CALIB_ABI_VERSION, CALIB_TOKENS, CALIB_HEAD_DIM, CALIB_BLOCK, CALIB_LAYERS, CALIB_HEADS,
                CALIB_PLANS, CALIB_THREADS, CALIB_STEPS, calib_steps, calib_model, calib_mask_sha256,
            };
            return &info;
        }

        """
    }
}
