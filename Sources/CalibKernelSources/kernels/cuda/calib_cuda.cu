/* calib_cuda.cu: calibc's attention kernels for Hopper GPUs (sm_90a), over the pooled tables of
 * calib_schedule.c (calib_internal.h beside this file). Copied by `calibc compile --target cuda`
 * with the files it includes; build.sh beside it builds the library. This file is the host side:
 * per-device tables and work lists, tensor maps, the checks, the launch and the C ABI
 * (include/calib_cuda.h). The device code is split as a Hopper kernel is:
 *   ptx.cuh          the PTX instructions, per dtype through templates
 *   work.cuh         the work list (built here on the host) and the grid's walk over it
 *   softmax.cuh      the online softmax both kernels run
 *   epilogue.cuh     normalizing and storing a block's output to it and its reuse targets
 *   wgmma_kernel.cuh the Hopper kernel: TMA producer, two ping-pong wgmma consumers
 *                    (block 128, head_dim 64 or 128), on bf16/f16 or e4m3 operands
 *   quantize.cuh     the pass that writes e4m3 q, k and vᵀ and their scales (FP8 launches)
 *   mma_kernel.cuh   the portable mma.sync kernel: any block and head_dim (a multiple of 16, at
 *                    most 256); the fallback, and the wgmma kernel's reference in the tests
 * No per-element mask except in a key tile that ends inside a block (the partial last block when
 * CALIB_BLOCK is a multiple of the tile) or where a batch element's padded text begins. */
#include <cuda_runtime.h>
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

extern "C" {
#include "calib_internal.h"
}
#include "include/calib_cuda.h"

#if CALIB_HEAD_DIM % 16 != 0 || CALIB_HEAD_DIM > 256
#error "the CUDA target supports head_dim a multiple of 16, at most 256"
#endif

#include "work.cuh"
#include "mma_kernel.cuh"
#include "wgmma_kernel.cuh"

/* ------------------------------------------------------------------------------------------ */
/* Host side: checks, per-device tables, launches. */

namespace {
using namespace calib_cuda_detail;

struct LayerList {
    int4 *items = nullptr;
    int32_t *targets = nullptr;
    int64_t count = 0;
    bool split = false; /* it holds split rows' halves, so its launch needs slots */
};

/* Every step's list of a (layer, heads) on the device, and whether any holds split rows. */
struct StepLists {
    StepWork *work = nullptr;
    bool split = false;
};

/* What a wgmma launch's CTAs share: the counter they take items from (Params::claims) and, for a
 * split list, slots (work.cuh, SplitSlots) for up to `batch` batch elements (0: none): the states,
 * the counter, then the slots' counts, so one memset zeroes the counter and the counts. A stream's
 * buffer is kept for its later launches, which run in turn; a launch captured into a graph
 * allocates its own in the graph (cudaMallocAsync), so replays share nothing. */
struct LaunchBuffer {
    float *state = nullptr; /* where the allocation starts */
    unsigned long long *claims = nullptr;
    uint32_t *counts = nullptr;
    int64_t batch = 0;
    static size_t state_bytes(int64_t batch) { return (size_t)(SplitSlots::count(batch) * SplitSlots::kFloats) * sizeof(float); }
    static size_t zeroed_bytes(int64_t batch) { return sizeof(unsigned long long) + (size_t)SplitSlots::count(batch) * sizeof(uint32_t); }
    static size_t bytes(int64_t batch) { return state_bytes(batch) + zeroed_bytes(batch); }
    void place(void *mem, int64_t b) {
        state = static_cast<float *>(mem);
        claims = reinterpret_cast<unsigned long long *>(static_cast<char *>(mem) + state_bytes(b));
        counts = reinterpret_cast<uint32_t *>(claims + 1);
        batch = b;
    }
};

struct DeviceState {
    int sms = 0;
    int l2_bytes = 0;
    int mma_ctas_per_sm = 1;
    int32_t *row_first = nullptr;
    uint16_t *spans = nullptr;
    /* Lists by the plans of their heads (-1: dense) and whether split, so steps and layers that
     * share plans share one list on the device. */
    std::map<std::pair<std::vector<int32_t>, int>, LayerList> by_plans;
    std::map<std::tuple<int, int, int, int, int>, LayerList> lists; /* (step_index or -1 for dense, layer, first_head, heads, SplitMode) */
    std::map<std::tuple<int, int, int, int>, StepLists> by_step;     /* (layer, first_head, heads, SplitMode): a list per step */
    std::map<cudaStream_t, LaunchBuffer> launch_buffers;
};

std::mutex g_mutex;
std::map<int, DeviceState> g_devices;
PFN_cuTensorMapEncodeTiled_v12000 g_encode = nullptr;
bool g_encode_tried = false;

template <typename X> int upload(X **dst, const X *src, size_t n) {
    if (n == 0) n = 1;
    if (cudaMalloc(reinterpret_cast<void **>(dst), n * sizeof(X)) != cudaSuccess) return CALIB_ERR_NO_MEMORY;
    if (src && cudaMemcpy(*dst, src, n * sizeof(X), cudaMemcpyHostToDevice) != cudaSuccess) return CALIB_ERR_CUDA;
    return CALIB_OK;
}

/* Whether `stream` is being captured into a graph: nothing may be allocated or copied then. */
bool capturing(void *stream) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(static_cast<cudaStream_t>(stream), &status) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return status != cudaStreamCaptureStatusNone;
}

template <typename Ops> void allow_smem() {
    cudaFuncSetAttribute(calib_wgmma_kernel<typename Ops::Wide::Elem, Ops>, cudaFuncAttributeMaxDynamicSharedMemorySize, wg_smem<Ops>());
    if constexpr (Ops::kAhead)
        cudaFuncSetAttribute(calib_wgmma_kernel<typename Ops::Wide::Elem, Ops, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             wg_smem<Ops>());
}

/* The device state of the current device, created on first use (under g_mutex). */
int device_state(void *stream, DeviceState **state) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return CALIB_ERR_CUDA;
    auto found = g_devices.find(dev);
    if (found == g_devices.end()) {
        if (capturing(stream)) return CALIB_ERR_CAPTURE;
        DeviceState s;
        if (cudaDeviceGetAttribute(&s.sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&s.l2_bytes, cudaDevAttrL2CacheSize, dev) != cudaSuccess)
            return CALIB_ERR_CUDA;
        const int nrows = rows_in_use();
        int st = upload(&s.row_first, calib_row_first, (size_t)nrows + 1);
        if (st == CALIB_OK) st = upload(&s.spans, calib_spans, (size_t)calib_row_first[nrows] * 2);
        if (st != CALIB_OK) return st;
        cudaFuncSetAttribute(calib_mma_kernel<__nv_bfloat16>, cudaFuncAttributeMaxDynamicSharedMemorySize, kMmaSmem);
        cudaFuncSetAttribute(calib_mma_kernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, kMmaSmem);
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&s.mma_ctas_per_sm, calib_mma_kernel<__nv_bfloat16>, 128, kMmaSmem);
        if (s.mma_ctas_per_sm < 1) s.mma_ctas_per_sm = 1;
        if (kWgmmaShape) {
            allow_smem<Ops16<__nv_bfloat16>>();
            allow_smem<Ops16<__half>>();
            allow_smem<OpsFp8<__nv_bfloat16, false>>();
            allow_smem<OpsFp8<__half, false>>();
            allow_smem<OpsFp8<__nv_bfloat16, true>>();
            allow_smem<OpsFp8<__half, true>>();
        }
        cudaGetLastError();
        found = g_devices.emplace(dev, std::move(s)).first;
    }
    *state = &found->second;
    return CALIB_OK;
}

/* The list of heads first_head ..< first_head + heads of one (step, layer) (dense when
 * step_index < 0) on the state's device, uploaded on first use (under g_mutex). */
int layer_list(DeviceState &s, int step_index, int layer, int first_head, int heads, int split, void *stream,
               const LayerList **out) {
    const auto key = step_index < 0 ? std::make_tuple(-1, 0, first_head, heads, (int)kSplitNone)
                                    : std::make_tuple(step_index, layer, first_head, heads, split);
    auto l = s.lists.find(key);
    if (l == s.lists.end()) {
        std::vector<int32_t> plans((size_t)heads, -1);
        if (step_index >= 0)
            for (int h = 0; h < heads; ++h)
                plans[h] = calib_dispatch[((int64_t)step_index * CALIB_LAYERS + layer) * CALIB_HEADS + first_head + h];
        auto shared = s.by_plans.find(std::make_pair(plans, std::get<4>(key)));
        if (shared == s.by_plans.end()) {
            if (capturing(stream)) return CALIB_ERR_CAPTURE;
            LayerList list;
            std::vector<int32_t> targets;
            const std::vector<int4> items = work_list(step_index, layer, first_head, heads, s.l2_bytes, std::get<4>(key), targets);
            list.count = (int64_t)items.size();
            list.split = std::any_of(items.begin(), items.end(), [](const int4 &it) { return item_part(it) != 0; });
            int st = upload(&list.items, items.data(), items.size());
            if (st == CALIB_OK) st = upload(&list.targets, targets.empty() ? nullptr : targets.data(), targets.size());
            if (st != CALIB_OK) return st;
            shared = s.by_plans.emplace(std::make_pair(std::move(plans), std::get<4>(key)), list).first;
        }
        l = s.lists.emplace(key, shared->second).first;
    }
    *out = &l->second;
    return CALIB_OK;
}

/* Every step's list of (layer, heads) as one device array, for a step chosen on the device. */
int step_lists(DeviceState &s, int layer, int first_head, int heads, int split, void *stream, const StepLists **out) {
    const auto key = std::make_tuple(layer, first_head, heads, split);
    auto found = s.by_step.find(key);
    if (found == s.by_step.end()) {
        std::vector<StepWork> work(CALIB_STEPS);
        StepLists lists;
        for (int i = 0; i < CALIB_STEPS; ++i) {
            const LayerList *l;
            int st = layer_list(s, i, layer, first_head, heads, split, stream, &l);
            if (st != CALIB_OK) return st;
            work[i] = {l->items, l->targets, l->count};
            lists.split |= l->split;
        }
        if (capturing(stream)) return CALIB_ERR_CAPTURE;
        int st = upload(&lists.work, work.data(), work.size());
        if (st != CALIB_OK) return st;
        found = s.by_step.emplace(key, lists).first;
    }
    *out = &found->second;
    return CALIB_OK;
}

bool want_mma() {
    const char *e = getenv("CALIB_CUDA_KERNEL");
    return e && strcmp(e, "mma") == 0;
}

/* Which split lists the bf16/f16 wgmma launches of plans take (work.cuh, SplitMode): of their
 * scattered rows where one head's 16-bit K and V exceed half the L2, else none.
 * CALIB_CUDA_SPLIT=1 (every row with a quarter of its blocks on each side: the tests' small
 * shapes) or 0 (none) says so instead, for tests and comparisons. */
int want_split(const DeviceState &s) {
    if (!kMaySplit) return kSplitNone;
    const char *e = getenv("CALIB_CUDA_SPLIT");
    if (e && *e) return strcmp(e, "1") == 0 ? kSplitEvery : kSplitNone;
    return (int64_t)kTokens * kDim * 4 > s.l2_bytes / 2 ? kSplitScattered : kSplitNone;
}

/* The stream's buffer with slots for `batch` batch elements (0: none), made (or grown) on its first
 * launch that needs it (not under capture: see LaunchBuffer). */
int launch_buffer(DeviceState &s, void *stream, int64_t batch, LaunchBuffer *out) {
    LaunchBuffer &buf = s.launch_buffers[static_cast<cudaStream_t>(stream)];
    if (!buf.claims || buf.batch < batch) {
        cudaFree(buf.state);
        buf = LaunchBuffer();
        void *mem = nullptr;
        if (cudaMalloc(&mem, LaunchBuffer::bytes(batch)) != cudaSuccess) {
            cudaGetLastError();
            return CALIB_ERR_NO_MEMORY;
        }
        buf.place(mem, batch);
    }
    *out = buf;
    return CALIB_OK;
}

PFN_cuTensorMapEncodeTiled_v12000 encoder() {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!g_encode_tried) {
        g_encode_tried = true;
        void *fn = nullptr;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) == cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            g_encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
        cudaGetLastError();
    }
    return g_encode;
}

/* A tensor map over (d, s, h, b) of one input, boxes of 64 columns × `rows`, 128-byte swizzle. */
bool make_map(CUtensorMap *map, int32_t dtype, const void *ptr, int64_t batch, int64_t heads, const int64_t *st, int rows) {
    PFN_cuTensorMapEncodeTiled_v12000 enc = encoder();
    if (!enc) return false;
    cuuint64_t dims[4] = {(cuuint64_t)kDim, (cuuint64_t)kTokens, (cuuint64_t)heads, (cuuint64_t)batch};
    cuuint64_t strides[3] = {(cuuint64_t)st[1] * 2, (cuuint64_t)st[2] * 2, (cuuint64_t)st[0] * 2};
    for (int i = 0; i < 3; ++i)
        if (strides[i] == 0 || strides[i] >= (1ull << 40)) return false;
    cuuint32_t box[4] = {64, (cuuint32_t)rows, 1, 1};
    cuuint32_t estr[4] = {1, 1, 1, 1};
    CUresult r = enc(map, dtype == CALIB_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
                     const_cast<void *>(ptr), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                     CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS;
}

/* A tensor map over one section of the FP8 workspace: bytes, `dims` innermost first, rows of
 * dims[0] bytes, boxes of box0 × box1, a box's rows swizzled by their width (32, 64 or 128 bytes). */
bool make_map8(CUtensorMap *map, void *ptr, const int64_t dims4[4], int box0, int box1) {
    PFN_cuTensorMapEncodeTiled_v12000 enc = encoder();
    if (!enc) return false;
    cuuint64_t dims[4], strides[3];
    int64_t stride = 1;
    for (int i = 0; i < 4; ++i) {
        dims[i] = (cuuint64_t)dims4[i];
        stride *= dims4[i];
        if (i < 3) strides[i] = (cuuint64_t)stride;
    }
    cuuint32_t box[4] = {(cuuint32_t)box0, (cuuint32_t)box1, 1, 1};
    cuuint32_t estr[4] = {1, 1, 1, 1};
    CUresult r = enc(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 4, ptr, dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                     box0 == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : box0 == 64 ? CU_TENSOR_MAP_SWIZZLE_64B : CU_TENSOR_MAP_SWIZZLE_32B,
                     CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                     CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS;
}

bool mul_add(int64_t a, int64_t b, int64_t &acc) {
    int64_t m;
    if (__builtin_mul_overflow(a, b, &m)) return false;
    return !__builtin_add_overflow(acc, m, &acc);
}

/* Strides non-negative, the largest element offset (and its byte offset) representable. */
bool strides_ok(const int64_t *s, int64_t batch, int64_t heads, int64_t align_elems) {
    int64_t last = kDim - 1;
    for (int i = 0; i < 3; ++i)
        if (s[i] < 0 || s[i] % align_elems != 0) return false;
    if (!mul_add(batch - 1, s[0], last) || !mul_add(kTokens - 1, s[1], last) || !mul_add(heads - 1, s[2], last))
        return false;
    return last <= INT64_MAX / 2;
}

/* No two (b, s, h) rows of out overlap. */
bool disjoint(const int64_t *s, int64_t batch, int64_t heads) {
    struct Dim { int64_t stride, extent; } d[3] = {{s[0], batch}, {s[1], kTokens}, {s[2], heads}};
    std::sort(d, d + 3, [](const Dim &a, const Dim &b) { return a.stride < b.stride; });
    int64_t span = kDim;
    for (const Dim &x : d) {
        if (x.extent <= 1) continue;
        if (x.stride < span) return false;
        span = x.stride * (x.extent - 1) + span;
    }
    return true;
}

/* The caller's tensors hold heads first_head ..< first_head + heads of the compiled ones. */
bool shape_ok(int64_t tokens, int64_t first_head, int64_t heads, int64_t head_dim) {
    return tokens == kTokens && head_dim == kDim && first_head >= 0 && heads >= 1 && heads <= CALIB_HEADS - first_head;
}

/* The FP8 launches' workspace, or null for products in the inputs' dtype. */
struct Fp8Request {
    void *workspace;
    int64_t bytes;
    int32_t products; /* enum calib_fp8 */
};

#ifdef CALIB_CUDA_TRACE /* events between the launches of the last FP8 call (Tests/GPU/fp8_pass_profile.py) */
cudaEvent_t calib_pass_events[6];
#define CALIB_PASS_MARK(i, s) do { \
        if (!calib_pass_events[i]) cudaEventCreate(&calib_pass_events[i]); \
        cudaEventRecord(calib_pass_events[i], s); \
    } while (0)
#else
#define CALIB_PASS_MARK(i, s) do { } while (0)
#endif

/* The FP8 pass and kernel on `stream` (the checks made); kQK: Q Kᵀ on e4m3 too. */
template <typename T, bool kQK>
int launch_fp8(Params &p, const Fp8Request &fp8, int32_t dtype, int64_t batch, int64_t heads, const int64_t *qs,
               const int64_t *ks, int grid, cudaStream_t s) {
    Fp8Work w;
    fp8_layout(batch, heads, kQK, fp8.workspace, &w);
    using Ops = OpsFp8<T, kQK>;
    /* vᵀ comes by bulk copies of its panels (already swizzled), not through a map: the kernel's
     * V map is free, and takes q's and k's channels apart (kQK) or K's stands in for it. */
    CUtensorMap tq, tk, tx;
    const int64_t qk_dims[4] = {kDim, kTokens, heads, batch}, x_dims[4] = {kApartRow, kPadTokens, heads, batch};
    const bool maps = kQK ? make_map8(&tq, w.q, qk_dims, kDim, 128) && make_map8(&tk, w.k, qk_dims, kDim, Ops::kSubBlock) &&
                                make_map8(&tx, w.x, x_dims, kApartRow / 2, Ops::kSubBlock)
                          : make_map(&tq, dtype, p.q, batch, heads, qs, 128) && make_map(&tk, dtype, p.k, batch, heads, ks, Ops::kSubBlock);
    if (!maps) return CALIB_ERR_CUDA;
    const CUtensorMap &tv = kQK ? tx : tk;
    p.qscale = w.qscale;
    p.kscale = w.kscale;
    p.vscale = w.vscale;
    p.vmean = w.vmean;
    p.vt = w.vt;
    p.apart = w.apart;
    p.redo_flags = w.redo_flags;
    p.redo_list = w.redo_list;
    p.claims = w.claims;
    CALIB_PASS_MARK(0, s);
    calib_fp8_stats<T, kQK><<<dim3(kStatChunks, (unsigned)heads, (unsigned)batch), 256, 0, s>>>(p, w);
    calib_fp8_combine<kQK><<<dim3((unsigned)heads, (unsigned)batch), kDim, 0, s>>>(p, w);
    CALIB_PASS_MARK(1, s);
    calib_fp8_quantize<T, kQK><<<dim3(kQuantBlocks, (unsigned)heads, (unsigned)batch), 256, 0, s>>>(p, w);
    CALIB_PASS_MARK(2, s);
    if constexpr (kQK) calib_fp8_fixup<T><<<dim3(kFixCtas, (unsigned)heads, (unsigned)batch), 256, 0, s>>>(p, w);
    CALIB_PASS_MARK(3, s);
    calib_wgmma_kernel<T, Ops><<<grid, 384, wg_smem<Ops>(), s>>>(tq, tk, tv, p);
    CALIB_PASS_MARK(4, s);
    /* The items whose exponentials may have overflowed (none, but for a row whose maximum jumps
     * by 2^96 within it), computed again; with none, each CTA reads the count and ends. */
    p.claims = w.claims + 1;
    if constexpr (Ops::kAhead) calib_wgmma_kernel<T, Ops, true><<<grid, 384, wg_smem<Ops>(), s>>>(tq, tk, tv, p);
    CALIB_PASS_MARK(5, s);
    return CALIB_OK;
}

/* Every check, then the launch on `stream` of (step_index, layer) (dense when step_index < 0), or
 * with `device_step` of the step whose index the device holds there; with fp8.workspace, the
 * products on e4m3 (the wgmma kernel only). */
int launch(int step_index, const int32_t *device_step, int layer, int first_head, int32_t dtype, const void *q, const void *k, const void *v,
           void *out, int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim, const int64_t *qs,
           const int64_t *ks, const int64_t *vs, const int64_t *os, const int32_t *text_lengths, void *stream,
           const Fp8Request &fp8 = {nullptr, 0, 0}) {
    if (!q || !k || !v || !out || !qs || !ks || !vs || !os) return CALIB_ERR_ARGUMENT;
    if (dtype != CALIB_BF16 && dtype != CALIB_F16) return CALIB_ERR_ARGUMENT;
    if (!shape_ok(tokens, first_head, heads, head_dim)) return CALIB_ERR_SHAPE;
    if (batch < 1 || batch > 65535) return CALIB_ERR_ARGUMENT;
    if ((uintptr_t)q % 16 || (uintptr_t)k % 16 || (uintptr_t)v % 16 || (uintptr_t)out % 4) return CALIB_ERR_ARGUMENT;
    if (!strides_ok(qs, batch, heads, 8) || !strides_ok(ks, batch, heads, 8) || !strides_ok(vs, batch, heads, 8) ||
        !strides_ok(os, batch, heads, 2) || !disjoint(os, batch, heads))
        return CALIB_ERR_ARGUMENT;
    if (fp8.workspace) {
        if (!kWgmmaShape || want_mma()) return CALIB_ERR_UNSUPPORTED;
        if ((uintptr_t)fp8.workspace % 256 || fp8.bytes < fp8_layout(batch, heads, fp8.products == CALIB_FP8_ALL, nullptr, nullptr))
            return CALIB_ERR_ARGUMENT;
    }
    Params p;
    DeviceState *state;
    bool wgmma = !fp8.workspace && kWgmmaShape && !want_mma();
    CUtensorMap tq, tk, tv;
    if (wgmma)
        wgmma = make_map(&tq, dtype, q, batch, heads, qs, 128) && make_map(&tk, dtype, k, batch, heads, ks, Ops16<__half>::kSubBlock) &&
                make_map(&tv, dtype, v, batch, heads, vs, Ops16<__half>::kSubBlock);
    LaunchBuffer shared;
    bool split = false, captured = false; /* the list holds split rows; the launch is being captured */
    int64_t slots = 0;                    /* the batch elements the launch's buffer keeps split slots for */
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        int st = device_state(stream, &state);
        if (st != CALIB_OK) return st;
        const int mode = wgmma && (step_index >= 0 || device_step) ? want_split(*state) : kSplitNone;
        if (device_step) {
            const StepLists *lists = nullptr;
            st = step_lists(*state, layer, first_head, (int)heads, mode, stream, &lists);
            p.by_step = lists ? lists->work : nullptr;
            split = lists && lists->split;
            p.items = nullptr;
            p.targets = nullptr;
            p.total = (int64_t)state->sms * state->mma_ctas_per_sm; /* the grid; the kernel reads its work */
        } else {
            const LayerList *list = nullptr;
            st = layer_list(*state, step_index, layer, first_head, (int)heads, mode, stream, &list);
            p.by_step = nullptr;
            split = list && list->split;
            p.items = list ? list->items : nullptr;
            p.targets = list ? list->targets : nullptr;
            p.total = list ? list->count * batch : 0;
        }
        if (st != CALIB_OK) return st;
        slots = split ? batch : 0;
        captured = wgmma && capturing(stream);
        if (wgmma && !captured && (st = launch_buffer(*state, stream, slots, &shared)) != CALIB_OK) return st;
    }
    p.step_index = device_step;
    p.text_lengths = text_lengths;
    p.step_count = CALIB_STEPS;
    p.row_first = state->row_first;
    p.spans = state->spans;
    p.batch = (int32_t)batch;
    p.heads = (int32_t)heads;
    p.qscale = p.kscale = p.vscale = p.vmean = nullptr;
    p.vt = nullptr;
    p.apart = nullptr;
    p.redo_flags = nullptr;
    p.redo_list = nullptr;
    p.claims = nullptr;
    p.scale_log2 = 1.4426950408889634f / sqrtf((float)kDim);
    p.q = q; p.k = k; p.v = v; p.out = out;
    p.qs0 = qs[0]; p.qs1 = qs[1]; p.qs2 = qs[2];
    p.ks0 = ks[0]; p.ks1 = ks[1]; p.ks2 = ks[2];
    p.vs0 = vs[0]; p.vs1 = vs[1]; p.vs2 = vs[2];
    p.os0 = os[0]; p.os1 = os[1]; p.os2 = os[2];
    const char *store = getenv("CALIB_CUDA_STORE"); /* "4": the 4-byte stores, for comparisons */
    p.out_vec16 = (uintptr_t)out % 16 == 0 && os[0] % 8 == 0 && os[1] % 8 == 0 && os[2] % 8 == 0 &&
                  !(store && strcmp(store, "4") == 0);
    if (p.total == 0) return CALIB_OK;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (fp8.workspace) {
        const int grid = (int)std::min<int64_t>(state->sms, p.total);
        const bool qk8 = fp8.products == CALIB_FP8_ALL;
        const int st = dtype == CALIB_BF16
                           ? (qk8 ? launch_fp8<__nv_bfloat16, true>(p, fp8, dtype, batch, heads, qs, ks, grid, s)
                                  : launch_fp8<__nv_bfloat16, false>(p, fp8, dtype, batch, heads, qs, ks, grid, s))
                           : (qk8 ? launch_fp8<__half, true>(p, fp8, dtype, batch, heads, qs, ks, grid, s)
                                  : launch_fp8<__half, false>(p, fp8, dtype, batch, heads, qs, ks, grid, s));
        if (st != CALIB_OK) return st;
        return cudaGetLastError() == cudaSuccess ? CALIB_OK : CALIB_ERR_CUDA;
    }
    if (captured) {
        void *mem = nullptr;
        if (cudaMallocAsync(&mem, LaunchBuffer::bytes(slots), s) != cudaSuccess) return CALIB_ERR_CUDA;
        shared.place(mem, slots);
    }
    p.split_state = split ? shared.state : nullptr;
    p.split_counts = split ? shared.counts : nullptr;
    p.claims = shared.claims;
    if (wgmma && cudaMemsetAsync(shared.claims, 0, LaunchBuffer::zeroed_bytes(slots), s) != cudaSuccess) {
        if (captured) cudaFreeAsync(shared.state, s);
        return CALIB_ERR_CUDA;
    }
    if (wgmma) {
        const int grid = (int)std::min<int64_t>(state->sms, p.total);
        if (dtype == CALIB_BF16)
            calib_wgmma_kernel<__nv_bfloat16, Ops16<__nv_bfloat16>><<<grid, 384, wg_smem<Ops16<__nv_bfloat16>>(), s>>>(tq, tk, tv, p);
        else
            calib_wgmma_kernel<__half, Ops16<__half>><<<grid, 384, wg_smem<Ops16<__half>>(), s>>>(tq, tk, tv, p);
    } else {
        const int grid = (int)std::min<int64_t>((int64_t)state->sms * state->mma_ctas_per_sm, p.total);
        if (dtype == CALIB_BF16) calib_mma_kernel<__nv_bfloat16><<<grid, 128, kMmaSmem, s>>>(p);
        else calib_mma_kernel<__half><<<grid, 128, kMmaSmem, s>>>(p);
    }
    if (captured) cudaFreeAsync(shared.state, s);
    return cudaGetLastError() == cudaSuccess ? CALIB_OK : CALIB_ERR_CUDA;
}

const calib_info g_info = {CALIB_CUDA_ABI_VERSION, CALIB_TOKENS, CALIB_HEAD_DIM, CALIB_BLOCK, CALIB_LAYERS,
                           CALIB_HEADS, CALIB_PLANS, CALIB_STEPS, calib_steps, calib_model, calib_mask_sha256,
                           calib_timesteps, CALIB_TEXT_TOKENS, CALIB_TEXT_FIRST};

} // namespace

extern "C" {

const calib_info *calib_cuda_get_info(void) { return &g_info; }

int calib_cuda_attention_heads(int32_t step, int32_t layer, int32_t first_head, int32_t dtype, const void *q, const void *k,
                               const void *v, void *out, int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                               const int64_t q_strides[3], const int64_t k_strides[3], const int64_t v_strides[3],
                               const int64_t out_strides[3], void *stream) {
    int step_index = -1;
    for (int i = 0; i < CALIB_STEPS; ++i)
        if (calib_steps[i] == step) step_index = i;
    if (!q || !k || !v || !out || !q_strides || !k_strides || !v_strides || !out_strides) return CALIB_ERR_ARGUMENT;
    if (dtype != CALIB_BF16 && dtype != CALIB_F16) return CALIB_ERR_ARGUMENT;
    if (!shape_ok(tokens, first_head, heads, head_dim)) return CALIB_ERR_SHAPE;
    if (step_index < 0 || layer < 0 || layer >= CALIB_LAYERS) return CALIB_ERR_NO_PLAN;
    return launch(step_index, nullptr, layer, first_head, dtype, q, k, v, out, batch, tokens, heads, head_dim, q_strides, k_strides,
                  v_strides, out_strides, nullptr, stream);
}

int calib_cuda_attention_indexed(const int32_t *step_index, int32_t layer, int32_t first_head, int32_t dtype,
                                 const void *q, const void *k, const void *v, void *out, int64_t batch, int64_t tokens,
                                 int64_t heads, int64_t head_dim, const int64_t q_strides[3], const int64_t k_strides[3],
                                 const int64_t v_strides[3], const int64_t out_strides[3], void *stream) {
    if (!step_index || !q || !k || !v || !out || !q_strides || !k_strides || !v_strides || !out_strides)
        return CALIB_ERR_ARGUMENT;
    if (dtype != CALIB_BF16 && dtype != CALIB_F16) return CALIB_ERR_ARGUMENT;
    if (!shape_ok(tokens, first_head, heads, head_dim)) return CALIB_ERR_SHAPE;
    if (layer < 0 || layer >= CALIB_LAYERS) return CALIB_ERR_NO_PLAN;
    return launch(-1, step_index, layer, first_head, dtype, q, k, v, out, batch, tokens, heads, head_dim, q_strides,
                  k_strides, v_strides, out_strides, nullptr, stream);
}

int calib_cuda_attention_joint(const int32_t *step_index, int32_t layer, int32_t first_head, int32_t dtype,
                               const void *q, const void *k, const void *v, void *out, int64_t batch, int64_t tokens,
                               int64_t heads, int64_t head_dim, const int64_t q_strides[3], const int64_t k_strides[3],
                               const int64_t v_strides[3], const int64_t out_strides[3], const int32_t *text_lengths,
                               void *stream) {
    if (!step_index || !text_lengths || (uintptr_t)text_lengths % 4) return CALIB_ERR_ARGUMENT;
    if (kTextLast == 0) return CALIB_ERR_ARGUMENT; /* lengths need a text-last segment */
    if (!q || !k || !v || !out || !q_strides || !k_strides || !v_strides || !out_strides) return CALIB_ERR_ARGUMENT;
    if (dtype != CALIB_BF16 && dtype != CALIB_F16) return CALIB_ERR_ARGUMENT;
    if (!shape_ok(tokens, first_head, heads, head_dim)) return CALIB_ERR_SHAPE;
    if (layer < 0 || layer >= CALIB_LAYERS) return CALIB_ERR_NO_PLAN;
    return launch(-1, step_index, layer, first_head, dtype, q, k, v, out, batch, tokens, heads, head_dim, q_strides,
                  k_strides, v_strides, out_strides, text_lengths, stream);
}

int calib_cuda_fp8_workspace_size(int32_t products, int64_t batch, int64_t heads, int64_t *bytes) {
    if (!bytes || batch < 1 || batch > 65535 || heads < 1 || heads > CALIB_HEADS) return CALIB_ERR_ARGUMENT;
    if (products != CALIB_FP8_PV && products != CALIB_FP8_ALL) return CALIB_ERR_ARGUMENT;
    if (!kWgmmaShape) return CALIB_ERR_UNSUPPORTED;
    *bytes = fp8_layout(batch, heads, products == CALIB_FP8_ALL, nullptr, nullptr);
    return CALIB_OK;
}

int calib_cuda_attention_fp8(const int32_t *step_index, int32_t layer, int32_t first_head, int32_t products, int32_t dtype, const void *q,
                             const void *k, const void *v, void *out, int64_t batch, int64_t tokens, int64_t heads,
                             int64_t head_dim, const int64_t q_strides[3], const int64_t k_strides[3],
                             const int64_t v_strides[3], const int64_t out_strides[3], const int32_t *text_lengths,
                             void *workspace, int64_t workspace_bytes, void *stream) {
    if (!workspace || (text_lengths && (uintptr_t)text_lengths % 4)) return CALIB_ERR_ARGUMENT;
    if (products != CALIB_FP8_PV && products != CALIB_FP8_ALL) return CALIB_ERR_ARGUMENT;
    if (text_lengths && kTextLast == 0) return CALIB_ERR_ARGUMENT;
    if (!q || !k || !v || !out || !q_strides || !k_strides || !v_strides || !out_strides) return CALIB_ERR_ARGUMENT;
    if (dtype != CALIB_BF16 && dtype != CALIB_F16) return CALIB_ERR_ARGUMENT;
    if (!shape_ok(tokens, first_head, heads, head_dim)) return CALIB_ERR_SHAPE;
    if (step_index && (layer < 0 || layer >= CALIB_LAYERS)) return CALIB_ERR_NO_PLAN;
    return launch(-1, step_index, step_index ? layer : 0, first_head, dtype, q, k, v, out, batch, tokens, heads, head_dim,
                  q_strides, k_strides, v_strides, out_strides, text_lengths, stream, {workspace, workspace_bytes, products});
}

int calib_cuda_prepare(int32_t first_head, int32_t heads, void *stream) {
    if (first_head < 0 || heads < 1 || heads > CALIB_HEADS - first_head) return CALIB_ERR_SHAPE;
    std::lock_guard<std::mutex> lock(g_mutex);
    DeviceState *state;
    int st = device_state(stream, &state);
    /* The bf16/f16 wgmma launch takes want_split's lists; the FP8, redo and mma.sync launches the
     * unsplit ones, which a capture with no eager call before it would otherwise find missing. */
    const int split = want_split(*state);
    for (int layer = 0; st == CALIB_OK && layer < CALIB_LAYERS; ++layer) {
        const StepLists *lists;
        st = step_lists(*state, layer, first_head, heads, split, stream, &lists);
        if (st == CALIB_OK && split != kSplitNone) st = step_lists(*state, layer, first_head, heads, kSplitNone, stream, &lists);
    }
    const LayerList *dense;
    if (st == CALIB_OK && first_head == 0 && heads == CALIB_HEADS) st = layer_list(*state, -1, 0, 0, heads, kSplitNone, stream, &dense);
    return st;
}

int calib_cuda_attention_layer(int32_t step, int32_t layer, int32_t dtype, const void *q, const void *k, const void *v,
                               void *out, int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                               const int64_t q_strides[3], const int64_t k_strides[3], const int64_t v_strides[3],
                               const int64_t out_strides[3], void *stream) {
    if (heads != CALIB_HEADS) return CALIB_ERR_SHAPE;
    return calib_cuda_attention_heads(step, layer, 0, dtype, q, k, v, out, batch, tokens, heads, head_dim, q_strides,
                                      k_strides, v_strides, out_strides, stream);
}

int calib_cuda_dense_attention_layer(int32_t dtype, const void *q, const void *k, const void *v, void *out, int64_t batch,
                                     int64_t tokens, int64_t heads, int64_t head_dim, const int64_t q_strides[3],
                                     const int64_t k_strides[3], const int64_t v_strides[3], const int64_t out_strides[3],
                                     void *stream) {
    if (heads != CALIB_HEADS) return CALIB_ERR_SHAPE;
    return launch(-1, nullptr, 0, 0, dtype, q, k, v, out, batch, tokens, heads, head_dim, q_strides, k_strides, v_strides, out_strides,
                  nullptr, stream);
}

#ifdef CALIB_CUDA_TRACE
int calib_cuda_trace_read(long long *dst) {
    return cudaMemcpyFromSymbol(dst, calib_cuda_detail::calib_trace, sizeof(long long) * calib_cuda_detail::kTraceSlots) == cudaSuccess ? 0 : 5;
}

/* What the last FP8 call's launches were, in order, and their milliseconds (ms: one a role). */
const char *calib_cuda_pass_roles(void) { return "stats,quantize,fixup,attention,redo"; }
int calib_cuda_pass_read(float *ms) {
    if (!calib_pass_events[5] || cudaEventSynchronize(calib_pass_events[5]) != cudaSuccess) return 5;
    for (int i = 0; i < 5; ++i)
        if (cudaEventElapsedTime(&ms[i], calib_pass_events[i], calib_pass_events[i + 1]) != cudaSuccess) return 5;
    return 0;
}
#endif

const char *calib_cuda_kernel_name(int64_t head_dim) {
    (void)head_dim;
    return kWgmmaShape && !want_mma() ? "wgmma" : "mma.sync";
}

} // extern "C"
