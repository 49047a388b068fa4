/* ncu_layer.cu: one layer of a compiled CUDA set, called through the C ABI with no PyTorch in the
 * process, for Nsight Compute to profile (under ncu a PyTorch process found no driver on these
 * machines: docs/gpu.md, run 102). Fresh N(0, 1) bf16 inputs, (B, S, H, D) with B = 1; the layer is
 * called twice (the first uploads its tables), so `ncu -k regex:calib_wgmma --launch-skip 1
 * --launch-count 1` profiles the second call's attention launch.
 *   nvcc -O2 -std=c++17 -arch=sm_90a Tests/GPU/ncu_layer.cu -I SET/include -ldl -o /tmp/ncu_layer
 *   /tmp/ncu_layer SET/libcalibcuda.so LAYER (bf16|fp8|fp8-pv) [dense]
 * LAYER's plans at the first step, or every tile with `dense`. Prints the second call's time. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "calib_cuda.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* N(0, 1) by Box–Muller from a hash of the index and a seed: fresh inputs without cuRAND. */
__global__ void fill_normal(__nv_bfloat16 *x, int64_t n, uint32_t seed) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t h = (uint64_t)i * 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed << 32 | seed);
        h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ull; h ^= h >> 33;
        const float u1 = ((uint32_t)h + 1.f) * 2.3283064e-10f, u2 = (uint32_t)(h >> 32) * 2.3283064e-10f;
        x[i] = __float2bfloat16(sqrtf(-2.f * logf(u1)) * cospif(2.f * u2));
    }
}

template <typename F> F sym(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (!p) { fprintf(stderr, "%s: %s\n", name, dlerror()); exit(1); }
    return (F)p;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s LIB.so LAYER (bf16|fp8|fp8-pv) [dense]\n", argv[0]); return 2; }
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    const int layer = atoi(argv[2]);
    const char *precision = argv[3];
    const bool dense = argc > 4 && !strcmp(argv[4], "dense");
    const int products = !strcmp(precision, "fp8") ? CALIB_FP8_ALL : !strcmp(precision, "fp8-pv") ? CALIB_FP8_PV : 0;
    if (!products && strcmp(precision, "bf16")) { fprintf(stderr, "precision: bf16, fp8 or fp8-pv\n"); return 2; }

    const calib_info *info = sym<const calib_info *(*)()>(lib, "calib_cuda_get_info")();
    const int64_t S = info->tokens, H = info->heads, D = info->head_dim, n = S * H * D;
    __nv_bfloat16 *q, *k, *v, *o;
    CHECK(cudaMalloc(&q, n * 2)); CHECK(cudaMalloc(&k, n * 2)); CHECK(cudaMalloc(&v, n * 2)); CHECK(cudaMalloc(&o, n * 2));
    fill_normal<<<1024, 256>>>(q, n, 1); fill_normal<<<1024, 256>>>(k, n, 2); fill_normal<<<1024, 256>>>(v, n, 3);
    const int64_t st[3] = {S * H * D, H * D, D};
    int32_t *step;
    CHECK(cudaMalloc(&step, 4));
    CHECK(cudaMemset(step, 0, 4));
    void *work = nullptr;
    int64_t work_bytes = 0;
    if (products) {
        if (sym<int (*)(int32_t, int64_t, int64_t, int64_t *)>(lib, "calib_cuda_fp8_workspace_size")(products, 1, H, &work_bytes)) return 1;
        CHECK(cudaMalloc(&work, work_bytes));
    }
    auto fp8 = sym<decltype(&calib_cuda_attention_fp8)>(lib, "calib_cuda_attention_fp8");
    auto indexed = sym<decltype(&calib_cuda_attention_indexed)>(lib, "calib_cuda_attention_indexed");
    auto whole = sym<decltype(&calib_cuda_dense_attention_layer)>(lib, "calib_cuda_dense_attention_layer");
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a)); CHECK(cudaEventCreate(&b));
    for (int call = 0; call < 2; ++call) {
        CHECK(cudaEventRecord(a));
        int rc;
        if (products)
            rc = fp8(dense ? nullptr : step, layer, 0, products, CALIB_BF16, q, k, v, o, 1, S, H, D, st, st, st, st, nullptr, work, work_bytes, nullptr);
        else if (dense)
            rc = whole(CALIB_BF16, q, k, v, o, 1, S, H, D, st, st, st, st, nullptr);
        else
            rc = indexed(step, layer, 0, CALIB_BF16, q, k, v, o, 1, S, H, D, st, st, st, st, nullptr);
        CHECK(cudaEventRecord(b));
        if (rc) { fprintf(stderr, "call %d: status %d\n", call, rc); return 1; }
        CHECK(cudaEventSynchronize(b));
        float ms;
        CHECK(cudaEventElapsedTime(&ms, a, b));
        if (call) printf("%s layer %d %s%s: %.3f ms\n", info->model, layer, precision, dense ? " dense" : "", ms);
    }
    return 0;
}
