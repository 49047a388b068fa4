/* Machine figures the kernel benchmark measures its results against. */
#ifndef CALIB_BENCH_H
#define CALIB_BENCH_H

/* fp32 FLOP/s of FMAs on the widest vectors the build targets (AVX-512 or AVX2), with independent accumulators on every OpenMP thread, over
 * about `seconds`: the peak the dense kernel is a fraction of. */
double calib_bench_fma_peak(double seconds);

/* The same for AVX-512 BF16 dot products (vdpbf16ps, 2 FLOP per bf16 pair); 0 without them. */
double calib_bench_bf16_peak(double seconds);

/* Sets the OpenMP team size of every later parallel region in this process (the kernels'
 * libraries share the one libomp). */
void calib_bench_set_threads(int threads);

/* Cores OpenMP sees. */
int calib_bench_cores(void);

#endif
