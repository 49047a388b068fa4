/* Runs generated kernels under AddressSanitizer and UndefinedBehaviorSanitizer (`make sanitize`):
 * every (step, layer, head) in fp32 and bf16, packed and strided, from several threads at once,
 * on buffers of exactly the size the ABI promises to stay within; the layer entry; every thread
 * of a team taking work; and the error statuses, overflowing strides included. Head 0 of every
 * fixture is dense, so its output must equal calib_dense_attention bit for bit. The kernel file
 * is included, so the harness can count the work items each thread claims. */
static int items_of[64];
#define CALIB_TRACE_ITEM(thread) __atomic_fetch_add(&items_of[(thread) & 63], 1, __ATOMIC_RELAXED)
#include "calib_kernels.c"

#include <omp.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            fprintf(stderr, "harness: " __VA_ARGS__);     \
            fprintf(stderr, " (%s:%d)\n", __FILE__, __LINE__); \
            exit(1);                                      \
        }                                                 \
    } while (0)

static uint32_t state = 12345;
static float uniform(void) {
    state = state * 1664525u + 1013904223u;
    return (float)(state >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

static uint16_t bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

typedef struct job {
    int32_t step, layer, head;
    int64_t stride;
    float *out;
    int status;
} job;

static int64_t n, d;
static float *q, *k, *v;
static uint16_t *qh, *kh, *vh;

static void *run_job(void *arg) {
    job *j = arg;
    j->status = calib_attention(j->step, j->layer, j->head, q, k, v, j->out, n, d, j->stride, j->stride, j->stride, j->stride);
    return NULL;
}

/* With work enough for a team (the dense baseline's chunks), every thread takes some: over
 * several calls, since a thread the OS has not scheduled yet can miss a short call (on a loaded
 * machine, many of them in a row). Only teams the cores can run at once: an oversubscribed
 * thread may sleep through a call. */
static void check_every_thread_works(void) {
    const int64_t len = (n - 1) * d + d;
    float *x = malloc(sizeof(float) * len), *o = malloc(sizeof(float) * len);
    for (int64_t i = 0; i < len; i++) x[i] = uniform();
    for (int t = 2; t <= omp_get_num_procs() && t <= NB / 2; t++) {
        omp_set_num_threads(t);
        for (int i = 0; i < 64; i++) items_of[i] = 0;
        int idle = t, calls = 0;
        for (; idle > 0 && calls < 5000; calls++) {
            CHECK(calib_dense_attention(x, x, x, o, n, d, d, d, d, d) == CALIB_OK, "dense");
            idle = 0;
            for (int i = 0; i < t; i++) idle += items_of[i] == 0;
        }
        for (int i = 0; i < t; i++) CHECK(items_of[i] > 0, "thread %d of %d took no work in %d calls", i, t, calls);
    }
    omp_set_num_threads(omp_get_num_procs());
    free(x), free(o);
}

int main(void) {
    const calib_info *info = calib_get_info();
    n = info->tokens;
    d = info->head_dim;
    check_every_thread_works();
    for (int64_t stride = d; stride <= 2 * d; stride += d) {
        const int64_t len = (n - 1) * stride + d; /* exactly what tokens rows at this stride need */
        q = malloc(sizeof(float) * len), k = malloc(sizeof(float) * len), v = malloc(sizeof(float) * len);
        qh = malloc(sizeof(uint16_t) * len), kh = malloc(sizeof(uint16_t) * len), vh = malloc(sizeof(uint16_t) * len);
        for (int64_t i = 0; i < len; i++) {
            q[i] = uniform(), k[i] = uniform(), v[i] = uniform();
            qh[i] = bf16(q[i]), kh[i] = bf16(k[i]), vh[i] = bf16(v[i]);
        }
        float *dense = malloc(sizeof(float) * len);
        CHECK(calib_dense_attention(q, k, v, dense, n, d, stride, stride, stride, stride) == CALIB_OK, "dense failed");
        const int jobs = info->step_count * info->layers * info->heads;
        job *all = calloc((size_t)jobs, sizeof(job));
        pthread_t *threads = calloc((size_t)jobs, sizeof(pthread_t));
        int j = 0;
        for (int s = 0; s < info->step_count; s++)
            for (int l = 0; l < info->layers; l++)
                for (int h = 0; h < info->heads; h++, j++) {
                    all[j] = (job){info->steps[s], l, h, stride, malloc(sizeof(float) * len), -1};
                    for (int64_t i = 0; i < len; i++) all[j].out[i] = NAN;
                    CHECK(pthread_create(&threads[j], NULL, run_job, &all[j]) == 0, "pthread_create");
                }
        for (j = 0; j < jobs; j++) {
            pthread_join(threads[j], NULL);
            CHECK(all[j].status == CALIB_OK, "step %d layer %d head %d: status %d", all[j].step, all[j].layer, all[j].head, all[j].status);
            for (int64_t t = 0; t < n; t++)
                for (int64_t c = 0; c < d; c++) {
                    const float x = all[j].out[t * stride + c];
                    CHECK(isfinite(x), "head %d token %lld dim %lld not written", all[j].head, (long long)t, (long long)c);
                    if (all[j].head == 0) CHECK(x == dense[t * stride + c], "dense plan differs from the dense kernel");
                }
            float *out16 = all[j].out;
            CHECK(calib_attention_bf16(all[j].step, all[j].layer, all[j].head, qh, kh, vh, out16, n, d, stride, stride, stride, stride) == CALIB_OK,
                  "bf16 failed");
            for (int64_t t = 0; t < n; t++) CHECK(isfinite(out16[t * stride]), "bf16 row %lld not written", (long long)t);
            free(all[j].out);
        }
        CHECK(calib_dense_attention_bf16(qh, kh, vh, dense, n, d, stride, stride, stride, stride) == CALIB_OK, "dense bf16 failed");
        /* Errors come back as statuses, before any memory is touched. */
        CHECK(calib_attention(info->steps[0], 0, 0, q, k, v, dense, n + 1, d, stride, stride, stride, stride) == CALIB_ERR_SHAPE, "tokens");
        CHECK(calib_attention(info->steps[0], 0, 0, q, k, v, dense, n, d + 1, stride, stride, stride, stride) == CALIB_ERR_SHAPE, "head_dim");
        CHECK(calib_attention(-1, 0, 0, q, k, v, dense, n, d, stride, stride, stride, stride) == CALIB_ERR_NO_PLAN, "step");
        CHECK(calib_attention(info->steps[0], info->layers, 0, q, k, v, dense, n, d, stride, stride, stride, stride) == CALIB_ERR_NO_PLAN, "layer");
        CHECK(calib_attention(info->steps[0], 0, info->heads, q, k, v, dense, n, d, stride, stride, stride, stride) == CALIB_ERR_NO_PLAN, "head");
        CHECK(calib_attention(info->steps[0], 0, 0, NULL, k, v, dense, n, d, stride, stride, stride, stride) == CALIB_ERR_ARGUMENT, "null");
        CHECK(calib_attention(info->steps[0], 0, 0, q, k, v, dense, n, d, d - 1, stride, stride, stride) == CALIB_ERR_ARGUMENT, "stride");
        /* Byte offsets that overflow, or strides that make out overlap itself, are refused (with
         * one token, strides address nothing and anything goes). */
        if (n > 2) CHECK(calib_attention(info->steps[0], 0, 0, q, k, v, dense, n, d, stride, stride, stride, INT64_MAX / 2) == CALIB_ERR_ARGUMENT,
              "huge out stride");
        if (n > 2) CHECK(calib_attention(info->steps[0], 0, 0, q, k, v, dense, n, d, INT64_MAX / 3, stride, stride, stride) == CALIB_ERR_ARGUMENT,
              "huge q stride");
        const int64_t s3[3] = {0, stride, 0}, huge[3] = {INT64_MAX / 4, stride, 0}, overlap[3] = {0, d / 2 + 1, 0};
        if (info->heads == 1) {
            CHECK(calib_attention_layer(info->steps[0], 0, CALIB_F32, q, k, v, dense, 1, n, 1, d, s3, s3, s3, s3) == CALIB_OK, "layer");
            CHECK(calib_attention_layer(info->steps[0], 0, CALIB_F32, q, k, v, dense, 2, n, 1, d, huge, s3, s3, s3) == CALIB_ERR_ARGUMENT ||
                      n == 1,
                  "layer: huge batch stride");
            if (n > 1)
                CHECK(calib_attention_layer(info->steps[0], 0, CALIB_F32, q, k, v, dense, 1, n, 1, d, s3, s3, s3, overlap) == CALIB_ERR_ARGUMENT,
                      "layer: overlapping out rows");
            CHECK(calib_attention_layer(info->steps[0], 0, 7, q, k, v, dense, 1, n, 1, d, s3, s3, s3, s3) == CALIB_ERR_ARGUMENT, "dtype");
        }
        free(all), free(threads), free(dense);
        free(q), free(k), free(v), free(qh), free(kh), free(vh);
    }
    printf("harness: %lld tokens, head_dim %lld, %d plans, %s: ok\n", (long long)n, (long long)d, info->plans, calib_isa());
    return 0;
}
