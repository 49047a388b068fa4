#include "bench.h"

#include <omp.h>

/* a·b + c must be one FMA for this to be a peak: clang fuses it by default, gcc in ISO C mode
 * (make cpu-scaling builds with gcc -std=c11) does not, and then reads half the peak. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

/* One register of the widest vectors the build targets; enough independent chains to keep two
 * FMA pipes of 4-cycle latency busy (8), without spilling (16 ymm or 32 zmm registers). */
#if defined(__AVX512F__)
enum { LANES = 16, ACC = 16 };
#else
enum { LANES = 8, ACC = 12 };
#endif
enum { ITERS = 1 << 20 };
typedef float vec __attribute__((vector_size(LANES * 4)));

double calib_bench_fma_peak(double seconds) {
    long rounds = 0;
    double start = omp_get_wtime(), elapsed = 0.0;
    float sink = 0.0f;
    while (elapsed < seconds) {
        #pragma omp parallel reduction(+ : sink)
        {
            vec acc[ACC];
            const vec a = (vec){0} + 0.999999f, b = (vec){0} + 1e-7f;
            for (int i = 0; i < ACC; i++) acc[i] = (vec){0} + (float)i;
            for (int it = 0; it < ITERS; it++) {
                #pragma unroll
                for (int i = 0; i < ACC; i++) acc[i] = acc[i] * a + b;
            }
            for (int i = 1; i < ACC; i++) acc[0] += acc[i];
            for (int i = 0; i < LANES; i++) sink += acc[0][i];
        }
        rounds++;
        elapsed = omp_get_wtime() - start;
    }
    const double flops = (double)rounds * omp_get_max_threads() * ITERS * ACC * LANES * 2;
    return sink == 12345.0f ? 0.0 : flops / elapsed; /* sink keeps the loop alive */
}

double calib_bench_bf16_peak(double seconds) {
#if defined(__AVX512BF16__)
    long rounds = 0;
    double start = omp_get_wtime(), elapsed = 0.0;
    float sink = 0.0f;
    while (elapsed < seconds) {
        #pragma omp parallel reduction(+ : sink)
        {
            __m512 acc[ACC];
            const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
            for (int i = 0; i < ACC; i++) acc[i] = _mm512_set1_ps((float)i);
            for (int it = 0; it < ITERS; it++) {
                for (int i = 0; i < ACC; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, a);
            }
            for (int i = 1; i < ACC; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
            sink += _mm512_reduce_add_ps(acc[0]);
        }
        rounds++;
        elapsed = omp_get_wtime() - start;
    }
    const double flops = (double)rounds * omp_get_max_threads() * ITERS * ACC * 32 * 2;
    return sink == 12345.0f ? 0.0 : flops / elapsed;
#else
    (void)seconds;
    return 0.0;
#endif
}

void calib_bench_set_threads(int threads) { omp_set_num_threads(threads); }

int calib_bench_cores(void) { return omp_get_num_procs(); }
