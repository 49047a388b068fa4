/* The C ABI of calibc's CUDA kernels (Hopper, sm_90a). The same for every masks file: what the
 * masks decide (shape, plans) is in the tables beside the kernel (calib_schedule.c) and in
 * calib_cuda_get_info(). Statuses, dtypes (CALIB_BF16, CALIB_F16) and the info struct are
 * calib_abi.h's; entry points carry the calib_cuda_ prefix, so this header and the CPU one
 * (calib_kernels.h) can be included together. */
#ifndef CALIB_CUDA_H
#define CALIB_CUDA_H

#include "calib_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CALIB_CUDA_ABI_VERSION 5 /* 2: calib_cuda_attention_heads; 3: calib_info.timesteps,
                                    calib_cuda_attention_indexed, calib_cuda_prepare;
                                    4: calib_info.text_tokens, calib_cuda_attention_joint;
                                    5: calib_cuda_attention_fp8, calib_cuda_fp8_workspace_size */

const calib_info *calib_cuda_get_info(void);

/* Attention of every (batch, head) of one (step, layer) in one launch on `stream` (a
 * cudaStream_t; NULL is the legacy default stream): out = softmax(q kᵀ / sqrt(head_dim)) v, each
 * head over its own plan. q, k, v and out are device pointers of `dtype`; element (b, s, h, d)
 * of x is x[b * x_strides[0] + s * x_strides[1] + h * x_strides[2] + d]: strides in elements,
 * head_dim contiguous, so (B, S, H, D) tensors pass {S*H*D, H*D, D} and (B, H, S, D) tensors pass
 * {H*S*D, D, S*D}, with no copy. q, k and v must be 16-byte aligned with strides that are
 * multiples of 8 elements (the bulk tensor copy engine reads them); out must be 4-byte aligned
 * with even strides. fp32 accumulation. Every check is made before anything is launched. The
 * first call on a device uploads that device's tables, and the first of a (step, layer) its work
 * list (thread-safe; calib_cuda_prepare does all of it at once); later calls launch only.
 * Where one head's 16-bit k and v are more than half the device's L2 (Wan 14B), bf16/f16 plans
 * take each scattered row (96 kept blocks or more in short runs, spread over both halves of the
 * keys) in two passes over the keys' halves, the first's state carried to the second in slots
 * of device memory (209 KB per query block and batch element), allocated by the first call on a
 * stream whose plans have such rows and kept for the stream's later calls (launches on one
 * stream run in turn); a call captured into a CUDA graph allocates its own in the graph
 * (cudaMallocAsync, freed in the graph after it). */
int calib_cuda_attention_layer(int32_t step, int32_t layer, int32_t dtype,
                               const void *q, const void *k, const void *v, void *out,
                               int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                               const int64_t q_strides[3], const int64_t k_strides[3],
                               const int64_t v_strides[3], const int64_t out_strides[3],
                               void *stream);

/* The same for heads first_head ..< first_head + heads of the layer only, as a context-parallel
 * rank holds them: q, k, v and out have `heads` heads, the first being compiled head first_head. */
int calib_cuda_attention_heads(int32_t step, int32_t layer, int32_t first_head, int32_t dtype,
                               const void *q, const void *k, const void *v, void *out,
                               int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                               const int64_t q_strides[3], const int64_t k_strides[3],
                               const int64_t v_strides[3], const int64_t out_strides[3],
                               void *stream);

/* The same with the step chosen on the device: *step_index (a device int32_t, an index into
 * calib_info.steps, clamped to them) is read when the kernel starts, so a CUDA graph captured
 * once runs whichever step the index holds at replay. The launch's grid does not depend on the
 * step. */
int calib_cuda_attention_indexed(const int32_t *step_index, int32_t layer, int32_t first_head, int32_t dtype,
                                 const void *q, const void *k, const void *v, void *out,
                                 int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                                 const int64_t q_strides[3], const int64_t k_strides[3],
                                 const int64_t v_strides[3], const int64_t out_strides[3],
                                 void *stream);

/* calib_cuda_attention_indexed for a joint text–video sequence whose text comes last (calib_info
 * text_tokens > 0, text_first 0) and is padded: text_lengths (device memory, `batch` int32_t,
 * 4-byte aligned) holds the valid text tokens of each batch element, read when the kernel starts,
 * so a captured graph replays whatever lengths it holds then. Padded keys take no part in any
 * softmax (their k and v are never read) and padded query rows are written as zeros; a row left
 * with no kept valid key is zeros too. A length outside 0 ..= text_tokens is clamped to it (the
 * host cannot read device memory without a synchronisation: check lengths before the call). */
int calib_cuda_attention_joint(const int32_t *step_index, int32_t layer, int32_t first_head, int32_t dtype,
                               const void *q, const void *k, const void *v, void *out,
                               int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                               const int64_t q_strides[3], const int64_t k_strides[3],
                               const int64_t v_strides[3], const int64_t out_strides[3],
                               const int32_t *text_lengths, void *stream);

/* Which products calib_cuda_attention_fp8 runs on e4m3 (docs/gpu.md, "FP8", measures both). */
enum calib_fp8 {
    CALIB_FP8_PV = 1, /* P·V; Q·Kᵀ stays on dtype: about 3.5e-2 relative L2, also on outlier keys */
    CALIB_FP8_ALL = 2 /* Q·Kᵀ too (but k's 16 widest channels, and q's same): the faster loop, about 5.5e-2 */
};

/* Attention with `products` (enum calib_fp8) on FP8 (e4m3) operands and fp32 accumulation; q, k,
 * v and out stay `dtype` (bf16 or f16) as in the entries above. On `stream`, a pass first writes
 * e4m3 copies into `workspace` (device memory, 256-byte aligned, at least the bytes
 * calib_cuda_fp8_workspace_size gives for them; nothing else may use it until the
 * call's work on `stream` is done) with their scales: v per head, and for CALIB_FP8_ALL q per
 * block of 128 tokens and k (less its mean over tokens, which no softmax sees) per head, a head's
 * 16 channels of k's widest range kept apart as bf16 where they carry much of its range (e4m3's 3
 * bits would round the scores they carry most); then the
 * kernel runs the plans on them (CALIB_FP8_ALL: and a second launch computes again any query
 * block a row of which saw its maximum jump by more than 2^96 within the row, where the first
 * one's exponentials, taken ahead of the maxima, may overflow; it ends at once when there is
 * none).
 * step_index: as calib_cuda_attention_indexed, or NULL for every tile (the dense baseline; layer
 * is then ignored). text_lengths: NULL, or as calib_cuda_attention_joint. Unlike the bf16 entries
 * this reads every valid value (and key, CALIB_FP8_ALL), skipped tiles too (the scales and the
 * mean are over the head), so a non-finite one anywhere valid reaches every output row of its
 * head; CALIB_FP8_PV also reads the keys of a tile's rows past a padded text's valid end, whose
 * scores it masks.
 * CALIB_ERR_UNSUPPORTED where the shape needs the mma.sync kernel (docs/gpu.md, "FP8"). */
int calib_cuda_attention_fp8(const int32_t *step_index, int32_t layer, int32_t first_head, int32_t products, int32_t dtype,
                             const void *q, const void *k, const void *v, void *out,
                             int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                             const int64_t q_strides[3], const int64_t k_strides[3],
                             const int64_t v_strides[3], const int64_t out_strides[3],
                             const int32_t *text_lengths, void *workspace, int64_t workspace_bytes,
                             void *stream);

/* The workspace calib_cuda_attention_fp8 needs for `products` over `batch` elements of `heads`
 * heads, in *bytes (a little over a byte per element of v, and of q and k plus 64 bytes a token and head for
 * CALIB_FP8_ALL). */
int calib_cuda_fp8_workspace_size(int32_t products, int64_t batch, int64_t heads, int64_t *bytes);

/* Uploads on the current device everything the entries read for heads first_head ..< first_head
 * + heads (the dense list too when that is every head): every (step, layer)'s work list, shared
 * where plans repeat. Entries called later only launch, so they can be captured into a CUDA graph;
 * one that would upload while its stream is being captured returns CALIB_ERR_CAPTURE instead.
 * `stream`: the stream the uploads must not happen under capture on. */
int calib_cuda_prepare(int32_t first_head, int32_t heads, void *stream);

/* The same with every tile computed: the baseline sparse plans are measured against. */
int calib_cuda_dense_attention_layer(int32_t dtype, const void *q, const void *k, const void *v,
                                     void *out, int64_t batch, int64_t tokens, int64_t heads,
                                     int64_t head_dim, const int64_t q_strides[3],
                                     const int64_t k_strides[3], const int64_t v_strides[3],
                                     const int64_t out_strides[3], void *stream);

/* Which kernel the entries launch on the current device for these strides: "wgmma" (TMA,
 * warp-specialized, sm_90a) or "mma.sync" (the portable fallback: any block size, used when the
 * block is not 128 or head_dim is not 64/128, or when CALIB_CUDA_KERNEL=mma is set). */
const char *calib_cuda_kernel_name(int64_t head_dim);

#ifdef __cplusplus
}
#endif

#endif
