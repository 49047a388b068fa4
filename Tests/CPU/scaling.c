/* The CPU kernels on a many-core machine without Swift (`make cpu-scaling DIR=<compile output>`):
 * checks every head of step 0, layer 0 against a float64 reference on sampled rows, then times
 * the layer call (all heads) and each head, sparse and dense, at team sizes 1, 2, 4, … up to the
 * cores and 2× oversubscribed, and prints sparse efficiency = dense time × density / sparse time.
 * The kernel file is included, so the plan densities come straight from its tables. */
#include "calib_kernels.c"

#include <bench.h>
#include <stdio.h>

static double now(void) { return omp_get_wtime(); }

static uint64_t rng = 88172645463325252ull;
static float uniform(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static double density(const calib_plan *p) {
    int64_t tiles = 0;
    for (int q = 0; q < NB; q++) {
        int reused = 0;
        for (int32_t t = 0; t < p->reuse_count; t++) reused |= p->reuse[2 * t + 1] == q;
        if (reused) continue;
        const int32_t id = p->rows[q];
        for (int32_t s = calib_row_first[id]; s < calib_row_first[id + 1]; s++) tiles += calib_spans[2 * s + 1] - calib_spans[2 * s];
    }
    return (double)tiles / ((double)NB * NB);
}

/* One call's seconds: the layer (head < 0) or one head, sparse or dense. */
static double time_call(int dense, int head, const float *q, const float *k, const float *v, float *o) {
    const double start = now();
    int status;
    if (head < 0) {
        const int64_t s[3] = {(int64_t)CALIB_TOKENS * CALIB_HEADS * D, CALIB_HEADS * D, D};
        status = dense ? calib_dense_attention_layer(CALIB_F32, q, k, v, o, 1, CALIB_TOKENS, CALIB_HEADS, D, s, s, s, s)
                       : calib_attention_layer(calib_steps[0], 0, CALIB_F32, q, k, v, o, 1, CALIB_TOKENS, CALIB_HEADS, D, s, s, s, s);
    } else {
        const int64_t st = CALIB_HEADS * D;
        status = dense ? calib_dense_attention(q + head * D, k + head * D, v + head * D, o + head * D, CALIB_TOKENS, D, st, st, st, st)
                       : calib_attention(calib_steps[0], 0, head, q + head * D, k + head * D, v + head * D, o + head * D,
                                         CALIB_TOKENS, D, st, st, st, st);
    }
    if (status) { fprintf(stderr, "status %d\n", status); exit(1); }
    return now() - start;
}

/* Output row i of `head` in float64 over the keys the plan keeps (following reuse). */
static double check_rows(const float *q, const float *k, const float *v, const float *o, int head) {
    const calib_plan *p = plan_of(0, 0, head);
    double err = 0, norm = 0;
    for (int sample = 0; sample < 24; sample++) {
        const int i = (int)((uint64_t)(sample * 2654435761u) % CALIB_TOKENS), qb = i / B;
        int src = qb;
        for (int32_t t = 0; t < p->reuse_count; t++) if (p->reuse[2 * t + 1] == qb) src = p->reuse[2 * t];
        const int32_t id = p->rows[src];
        const float *qi = q + ((int64_t)(src * B + i % B) * CALIB_HEADS + head) * D;
        double m = -1e300, l = 0, acc[1024] = {0};
        for (int pass = 0; pass < 2; pass++)
            for (int32_t s = calib_row_first[id]; s < calib_row_first[id + 1]; s++)
                for (int64_t j = (int64_t)calib_spans[2 * s] * B; j < (int64_t)calib_spans[2 * s + 1] * B && j < CALIB_TOKENS; j++) {
                    const float *kj = k + (j * CALIB_HEADS + head) * D, *vj = v + (j * CALIB_HEADS + head) * D;
                    double dot = 0;
                    for (int c = 0; c < D; c++) dot += (double)qi[c] * kj[c];
                    dot /= sqrt((double)D);
                    if (pass == 0) { m = dot > m ? dot : m; continue; }
                    const double e = exp(dot - m);
                    l += e;
                    for (int c = 0; c < D; c++) acc[c] += e * vj[c];
                }
        for (int c = 0; c < D; c++) {
            const double ref = acc[c] / l, got = o[((int64_t)i * CALIB_HEADS + head) * D + c];
            err += (got - ref) * (got - ref), norm += ref * ref;
        }
    }
    return sqrt(err / norm);
}

int main(int argc, char **argv) {
    const int check_only = argc > 1 && !strcmp(argv[1], "--check");
    const int64_t count = (int64_t)CALIB_TOKENS * CALIB_HEADS * D;
    float *q = malloc(sizeof(float) * count), *k = malloc(sizeof(float) * count), *v = malloc(sizeof(float) * count),
          *o = malloc(sizeof(float) * count);
    for (int64_t i = 0; i < count; i++) q[i] = 2 * uniform(), k[i] = 2 * uniform(), v[i] = uniform(), o[i] = NAN;
    time_call(0, -1, q, k, v, o);
    double worst = 0;
    for (int h = 0; h < CALIB_HEADS; h++) {
        const double e = check_rows(q, k, v, o, h);
        worst = e > worst ? e : worst;
    }
    printf("%s: tokens %d, head_dim %d, %d heads; worst relative error vs float64 on sampled rows %.2e %s\n", calib_isa(),
           CALIB_TOKENS, D, CALIB_HEADS, worst, worst < 1e-5 ? "ok" : "FAILED");
    if (worst >= 1e-5) return 1;
    if (check_only) return 0;
    const int cores = omp_get_num_procs();
    printf("\nthreads  FMA peak GFLOP/s  dense GFLOP/s (of peak)  layer sparse ms (all heads, one call)  per head: sparse ms @density → efficiency\n");
    for (int t = 1; t <= 2 * cores; t = t < cores && 2 * t > cores ? cores : 2 * t) {
        omp_set_num_threads(t);
        /* The calls take turns and each keeps its fastest: a busy neighbour slows a turn, not
         * whichever call happened to run during it (a shared host spread single runs by ±25%). */
        const int runs = t <= 2 ? 2 : 4;
        double sl = INFINITY, dh = INFINITY, sh[CALIB_HEADS];
        for (int h = 0; h < CALIB_HEADS; h++) sh[h] = INFINITY;
        for (int r = 0; r < runs; r++) {
            sl = fmin(sl, time_call(0, -1, q, k, v, o));
            dh = fmin(dh, time_call(1, 0, q, k, v, o));
            for (int h = 0; h < CALIB_HEADS; h++) sh[h] = fmin(sh[h], time_call(0, h, q, k, v, o));
        }
        const double peak = calib_bench_fma_peak(0.5) / 1e9, gflops = 4.0 * CALIB_TOKENS * (double)CALIB_TOKENS * D / dh / 1e9;
        printf("%7d  %16.1f  %13.1f (%4.1f%%)  %37.1f  ", t, peak, gflops, 100 * gflops / peak, sl * 1e3);
        for (int h = 0; h < CALIB_HEADS; h++) {
            const double rho = density(plan_of(0, 0, h));
            printf(" %.0f@%.2f→%.2f", sh[h] * 1e3, rho, dh * rho / sh[h]);
        }

        printf("\n");
        fflush(stdout);
    }
    return 0;
}
