#include "bench.h"

#include <immintrin.h>
#include <omp.h>

enum { ACC = 12, ITERS = 1 << 20 }; /* 12 chains cover the FMA latency of every x86 core we target */

double calib_bench_fma_peak(double seconds) {
    long rounds = 0;
    double start = omp_get_wtime(), elapsed = 0.0;
    float sink = 0.0f;
    while (elapsed < seconds) {
        #pragma omp parallel reduction(+ : sink)
        {
            __m512 acc[ACC];
            const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
            for (int i = 0; i < ACC; i++) acc[i] = _mm512_set1_ps((float)i);
            for (int it = 0; it < ITERS; it++) {
                for (int i = 0; i < ACC; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
            }
            for (int i = 1; i < ACC; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
            sink += _mm512_reduce_add_ps(acc[0]);
        }
        rounds++;
        elapsed = omp_get_wtime() - start;
    }
    const double flops = (double)rounds * omp_get_max_threads() * ITERS * ACC * 16 * 2;
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
