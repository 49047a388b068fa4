/* sm_bandwidth.cu: how many bytes a second a few SMs can move for the FP8 pass while the others
 * would run attention (docs/gpu.md, "The pass beside the loop"). That plan prices the pass at
 * ≈100 GB/s an SM; the pass's launches today reach ≈2 TB/s over 132 SMs, 15 GB/s an SM, with the
 * whole chip's DRAM shared among them, which says nothing of one SM's own ceiling.
 *
 * Each CTA (one an SM: the dynamic shared memory it asks for leaves room for no second) streams its
 * own 32 MB slice of bf16 values and writes them as e4m3, 2 bytes read and 1 written an element
 * as the pass does, with kThreads threads each holding kUnroll 16-byte loads in flight. It
 * prints, for G CTAs on G SMs, the total and the per-SM rate (bytes read + written ÷ time, best of
 * five); G = the SM count is the whole-chip ceiling for this access pattern.
 * usage (GPU machine): nvcc -O3 -std=c++17 -arch=sm_90a Tests/GPU/sm_bandwidth.cu -o /tmp/smbw && /tmp/smbw */
#include <cstdint>
#include <cstdio>
#include <cuda_bf16.h>
#include <cuda_fp8.h>

constexpr size_t kSlice = size_t(32) << 20;   // bytes of bf16 input a CTA reads
constexpr int kSmem = 160 << 10;              // asked at launch, unused: one CTA an SM

template <int kThreads, int kUnroll>
__global__ void __launch_bounds__(kThreads) stream(const uint4 *in, uint2 *out) {
    constexpr size_t kVecs = kSlice / sizeof(uint4);   // 16-byte loads: 8 bf16 each
    const uint4 *src = in + blockIdx.x * kVecs;
    uint2 *dst = out + blockIdx.x * kVecs;               // 8 bytes of e4m3 each
    for (size_t base = threadIdx.x; base < kVecs; base += size_t(kThreads) * kUnroll) {
        uint4 v[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) v[u] = __ldcs(src + base + size_t(u) * kThreads);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&v[u]);
            uint2 w;
            uint16_t c[4];
#pragma unroll
            for (int i = 0; i < 4; ++i)
                c[i] = __nv_cvt_float2_to_fp8x2(__bfloat1622float2(h[i]), __NV_SATFINITE, __NV_E4M3);
            w.x = c[0] | (uint32_t(c[1]) << 16);
            w.y = c[2] | (uint32_t(c[3]) << 16);
            __stcs(dst + base + size_t(u) * kThreads, w);
        }
    }
}

template <int kThreads, int kUnroll>
static void table(const uint4 *in, uint2 *out, int sms) {
    auto k = stream<kThreads, kUnroll>;
    cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    const int grids[] = {1, 4, 8, 12, 16, 24, 32, sms};
    for (int g : grids) {
        float best = 1e30f;
        for (int r = 0; r < 5; ++r) {
            cudaEventRecord(a);
            k<<<g, kThreads, kSmem>>>(in, out);
            cudaEventRecord(b);
            cudaEventSynchronize(b);
            float ms;
            cudaEventElapsedTime(&ms, a, b);
            best = ms < best ? ms : best;
        }
        double bytes = 1.5 * double(kSlice) * g;
        printf("| %d × %d | %d | %.1f KB | %.2f ms | %.0f GB/s | %.1f GB/s |\n", kThreads, kUnroll, g,
               kThreads * kUnroll * 16 / 1024.0, best, bytes / best / 1e6, bytes / best / 1e6 / g);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
}

int main() {
    int sms;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    uint4 *in;
    uint2 *out;
    if (cudaMalloc(&in, kSlice * sms) != cudaSuccess || cudaMalloc(&out, kSlice / 2 * sms) != cudaSuccess) {
        printf("cudaMalloc failed\n");
        return 1;
    }
    cudaMemset(in, 0x3c, kSlice * sms);  // bf16 1.2-ish everywhere: finite, in e4m3's range
    printf("%s, %d SMs\n\n| threads × loads | CTAs (SMs) | in flight a CTA | time | total | a SM |\n|---|---|---|---|---|---|\n",
           prop.name, sms);
    table<256, 4>(in, out, sms);
    table<384, 4>(in, out, sms);
    table<384, 8>(in, out, sms);
    table<384, 16>(in, out, sms);
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        printf("CUDA error: %s\n", cudaGetErrorString(e));
        return 1;
    }
    return 0;
}
