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

        /* The same kernel with every tile computed: the baseline sparse plans are measured against. */
        int calib_dense_attention(const float *q, const float *k, const float *v, float *out,
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

        /* One plan: the key spans of each query block in compressed-row form (row q owns
         * spans[row_span[q] .. row_span[q + 1]), each a [start, end) pair of key blocks), the
         * compute rows in run order cut into CALIB_THREADS parts, and reused rows as
         * (target, source) pairs. */
        typedef struct calib_plan {
            const int32_t *spans;
            const int32_t *row_span;
            const int32_t *order;
            const int32_t *parts;
            const int32_t *reuse;
            int32_t reuse_count;
        } calib_plan;

        extern const calib_plan calib_plans[CALIB_PLANS] __attribute__((visibility("hidden")));
        extern const \(dispatchType(program)) calib_dispatch[CALIB_STEPS * CALIB_LAYERS * CALIB_HEADS] __attribute__((visibility("hidden")));
        extern const int32_t calib_steps[CALIB_STEPS] __attribute__((visibility("hidden")));
        extern const char calib_model[] __attribute__((visibility("hidden")));
        extern const char calib_mask_sha256[] __attribute__((visibility("hidden")));

        #endif

        """
    }

    static func dispatchType(_ program: Program) -> String {
        program.plans.count <= Int(UInt16.max) ? "uint16_t" : "int32_t"
    }

    static func kernels(_ program: Program, banner: String) -> String {
        let s = program.shape
        let lastRows = s.tokens - (s.blocks - 1) * s.block
        return """
        \(banner)
        #include <calib_kernels.h>
        #include "calib_internal.h"

        #include <math.h>
        #include <omp.h>
        #include <stdlib.h>
        #include <string.h>

        #define D CALIB_HEAD_DIM
        #define B CALIB_BLOCK
        #define LAST_ROWS \(lastRows) /* tokens in the last (possibly partial) block */

        /* Per-thread working set for one query block: about 5·B·D floats, sized to stay in L2. */
        typedef struct scratch {
            float q[B][D];   /* query tile, pre-scaled by log2(e)/sqrt(D) so softmax uses exp2 */
            float kt[D][B];  /* key tile, transposed so S = Q·Kᵀ vectorizes along keys */
            float v[B][D];
            float s[B][B];   /* scores, then probabilities */
            float acc[B][D];
            float m[B];      /* running row maximum (log2 domain) */
            float l[B];      /* running row sum of probabilities */
        } scratch;

        /* 2^x for x <= 0 (Cephes exp2f polynomial, relative error ~2e-7); plain float
         * arithmetic so the compiler vectorizes it inside the softmax loops. */
        static inline float exp2_neg(float x) {
            x = x < -126.0f ? -126.0f : x;
            float n = floorf(x + 0.5f);
            float f = x - n;
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

        /* One key tile of `cols` keys into the running softmax of a query tile. Inlined with
         * cols == B for every full tile, so the only bounds test is in the last partial tile. */
        static inline __attribute__((always_inline)) void tile(scratch *w, const float *k, const float *v,
                                                               int64_t k_stride, int64_t v_stride, const int cols) {
            for (int j = 0; j < cols; j++) {
                for (int d = 0; d < D; d++) {
                    w->kt[d][j] = k[j * k_stride + d];
                }
                memcpy(w->v[j], v + j * v_stride, sizeof w->v[j]);
            }
            for (int i = 0; i < B; i++) {
                float *s = w->s[i];
                for (int j = 0; j < cols; j++) s[j] = 0.0f;
                for (int d = 0; d < D; d++) {
                    const float qd = w->q[i][d];
                    const float *kt = w->kt[d];
                    for (int j = 0; j < cols; j++) s[j] += qd * kt[j];
                }
                float mx = w->m[i];
                #pragma omp simd reduction(max : mx)
                for (int j = 0; j < cols; j++) mx = s[j] > mx ? s[j] : mx;
                const float alpha = exp2_neg(w->m[i] - mx);
                w->m[i] = mx;
                float sum = 0.0f;
                #pragma omp simd reduction(+ : sum)
                for (int j = 0; j < cols; j++) {
                    s[j] = exp2_neg(s[j] - mx);
                    sum += s[j];
                }
                w->l[i] = w->l[i] * alpha + sum;
                float *acc = w->acc[i];
                for (int d = 0; d < D; d++) acc[d] *= alpha;
                for (int j = 0; j < cols; j++) {
                    const float p = s[j];
                    const float *vj = w->v[j];
                    for (int d = 0; d < D; d++) acc[d] += p * vj[d];
                }
            }
        }

        /* Output rows of query block qb from the key blocks in spans[0 .. 2*nspans). */
        static void query_block(int qb, const int32_t *spans, int32_t nspans,
                                const float *q, const float *k, const float *v, float *out,
                                int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride,
                                scratch *w) {
            const int rows = qb == CALIB_BLOCKS - 1 ? LAST_ROWS : B;
            const float scale = 1.4426950408889634f / sqrtf((float)D);
            for (int i = 0; i < B; i++) {
                for (int d = 0; d < D; d++) {
                    /* Padding rows of the last block stay zero: they are computed, never written. */
                    w->q[i][d] = i < rows ? q[((int64_t)qb * B + i) * q_stride + d] * scale : 0.0f;
                    w->acc[i][d] = 0.0f;
                }
                w->m[i] = -INFINITY;
                w->l[i] = 0.0f;
            }
            for (int32_t sp = 0; sp < nspans; sp++) {
                for (int32_t kb = spans[2 * sp]; kb < spans[2 * sp + 1]; kb++) {
                    const float *kt = k + (int64_t)kb * B * k_stride;
                    const float *vt = v + (int64_t)kb * B * v_stride;
                    if (kb == CALIB_BLOCKS - 1 && LAST_ROWS != B) {
                        tile(w, kt, vt, k_stride, v_stride, LAST_ROWS);
                    } else {
                        tile(w, kt, vt, k_stride, v_stride, B);
                    }
                }
            }
            for (int i = 0; i < rows; i++) {
                const float inv = 1.0f / w->l[i];
                float *o = out + ((int64_t)qb * B + i) * out_stride;
                for (int d = 0; d < D; d++) o[d] = w->acc[i][d] * inv;
            }
        }

        static int check(const float *q, const float *k, const float *v, float *out, int64_t tokens, int64_t head_dim,
                         int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride) {
            if (tokens != CALIB_TOKENS || head_dim != CALIB_HEAD_DIM) return CALIB_ERR_SHAPE;
            if (!q || !k || !v || !out) return CALIB_ERR_ARGUMENT;
            if (q_stride < D || k_stride < D || v_stride < D || out_stride < D) return CALIB_ERR_ARGUMENT;
            return CALIB_OK;
        }

        static int run_plan(const calib_plan *p, const float *q, const float *k, const float *v, float *out,
                            int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride) {
            int status = CALIB_OK;
            #pragma omp parallel
            {
                scratch *w = aligned_alloc(64, sizeof(scratch));
                if (!w) {
                    #pragma omp atomic write
                    status = CALIB_ERR_NO_MEMORY;
                } else {
                    /* Parts were balanced for CALIB_THREADS threads at compile time; another
                     * team size takes them round-robin. */
                    for (int part = omp_get_thread_num(); part < CALIB_THREADS; part += omp_get_num_threads()) {
                        for (int32_t r = p->parts[part]; r < p->parts[part + 1]; r++) {
                            const int32_t qb = p->order[r];
                            const int32_t first = p->row_span[qb];
                            query_block(qb, p->spans + 2 * first, p->row_span[qb + 1] - first, q, k, v, out,
                                        q_stride, k_stride, v_stride, out_stride, w);
                        }
                    }
                    free(w);
                }
                /* Reused rows copy finished output, so they wait for every computed row. */
                #pragma omp barrier
                #pragma omp for schedule(static)
                for (int32_t r = 0; r < p->reuse_count; r++) {
                    const int64_t target = p->reuse[2 * r], source = p->reuse[2 * r + 1];
                    const int rows = target == CALIB_BLOCKS - 1 ? LAST_ROWS : B;
                    for (int i = 0; i < rows; i++) {
                        memcpy(out + (target * B + i) * out_stride, out + (source * B + i) * out_stride, sizeof(float) * D);
                    }
                }
            }
            return status;
        }

        int calib_attention(int32_t step, int32_t layer, int32_t head,
                            const float *q, const float *k, const float *v, float *out,
                            int64_t tokens, int64_t head_dim,
                            int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride) {
            const int status = check(q, k, v, out, tokens, head_dim, q_stride, k_stride, v_stride, out_stride);
            if (status != CALIB_OK) return status;
            if (layer < 0 || layer >= CALIB_LAYERS || head < 0 || head >= CALIB_HEADS) return CALIB_ERR_NO_PLAN;
            int lo = 0, hi = CALIB_STEPS;
            while (lo < hi) {
                const int mid = (lo + hi) / 2;
                if (calib_steps[mid] < step) lo = mid + 1; else hi = mid;
            }
            if (lo == CALIB_STEPS || calib_steps[lo] != step) return CALIB_ERR_NO_PLAN;
            const calib_plan *p = &calib_plans[calib_dispatch[((int64_t)lo * CALIB_LAYERS + layer) * CALIB_HEADS + head]];
            return run_plan(p, q, k, v, out, q_stride, k_stride, v_stride, out_stride);
        }

        int calib_dense_attention(const float *q, const float *k, const float *v, float *out,
                                  int64_t tokens, int64_t head_dim,
                                  int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride) {
            const int status = check(q, k, v, out, tokens, head_dim, q_stride, k_stride, v_stride, out_stride);
            if (status != CALIB_OK) return status;
            const int32_t all[2] = {0, CALIB_BLOCKS};
            int result = CALIB_OK;
            #pragma omp parallel
            {
                scratch *w = aligned_alloc(64, sizeof(scratch));
                if (!w) {
                    #pragma omp atomic write
                    result = CALIB_ERR_NO_MEMORY;
                }
                #pragma omp for schedule(static)
                for (int qb = 0; qb < CALIB_BLOCKS; qb++) {
                    if (w) query_block(qb, all, 1, q, k, v, out, q_stride, k_stride, v_stride, out_stride, w);
                }
                free(w);
            }
            return result;
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
