/* The C ABI of calibc's CPU kernels. The same for every masks file: what the masks decide
 * (shape, plans) is in the tables beside the kernels and in calib_get_info(). */
#ifndef CALIB_KERNELS_H
#define CALIB_KERNELS_H

#include "calib_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CALIB_ABI_VERSION 4 /* 3: calib_info.timesteps; 4: calib_info.text_tokens, calib_attention_joint */

const calib_info *calib_get_info(void);

/* Attention of every (batch, head) of one (step, layer): out = softmax(q kᵀ / sqrt(head_dim)) v,
 * each head over its own plan. Element (b, s, h, d) of x is x[b * x_strides[0] + s * x_strides[1]
 * + h * x_strides[2] + d]: strides in elements, head_dim contiguous, so (B, S, H, D) tensors pass
 * {S*H*D, H*D, D} and (B, H, S, D) tensors pass {H*S*D, D, S*D}, with no copy. q, k, v and out
 * are all `dtype`. heads must be the compiled heads. Heads and query blocks share one pool of
 * work on all OpenMP threads; safe to call concurrently. */
int calib_attention_layer(int32_t step, int32_t layer, int32_t dtype,
                          const void *q, const void *k, const void *v, void *out,
                          int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                          const int64_t q_strides[3], const int64_t k_strides[3],
                          const int64_t v_strides[3], const int64_t out_strides[3]);

/* The same for heads first_head ..< first_head + heads of the layer only, as a context-parallel
 * rank holds them: q, k, v and out have `heads` heads, the first being compiled head first_head. */
int calib_attention_heads(int32_t step, int32_t layer, int32_t first_head, int32_t dtype,
                          const void *q, const void *k, const void *v, void *out,
                          int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                          const int64_t q_strides[3], const int64_t k_strides[3],
                          const int64_t v_strides[3], const int64_t out_strides[3]);

/* calib_attention_heads for a joint text–video sequence whose text comes last (calib_info
 * text_tokens > 0, text_first 0) and is padded: batch element b holds text_lengths[b] valid text
 * tokens (0 ..= text_tokens), the rest of its text segment is padding. Padded keys take no part
 * in any softmax (their k and v are never read, so they may hold anything) and padded query rows
 * are written as zeros; a row left with no kept valid key is zeros too. text_lengths: `batch`
 * values in host memory, checked before anything is computed (CALIB_ERR_ARGUMENT). */
int calib_attention_joint(int32_t step, int32_t layer, int32_t first_head, int32_t dtype,
                          const void *q, const void *k, const void *v, void *out,
                          int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                          const int64_t q_strides[3], const int64_t k_strides[3],
                          const int64_t v_strides[3], const int64_t out_strides[3],
                          const int32_t *text_lengths);

/* The same with every tile computed: the baseline sparse plans are measured against. */
int calib_dense_attention_layer(int32_t dtype, const void *q, const void *k, const void *v, void *out,
                                int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                                const int64_t q_strides[3], const int64_t k_strides[3],
                                const int64_t v_strides[3], const int64_t out_strides[3]);

/* One head: q, k, v, out hold `tokens` rows of `head_dim` floats, rows `*_stride` floats apart. */
int calib_attention(int32_t step, int32_t layer, int32_t head,
                    const float *q, const float *k, const float *v, float *out,
                    int64_t tokens, int64_t head_dim,
                    int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride);

/* One head with bfloat16 inputs and float output. Products use AVX-512 BF16 dot products where
 * the machine has them (probabilities rounded to bfloat16 for P·V, as GPU kernels do), and fp32
 * arithmetic otherwise. */
int calib_attention_bf16(int32_t step, int32_t layer, int32_t head,
                         const uint16_t *q, const uint16_t *k, const uint16_t *v, float *out,
                         int64_t tokens, int64_t head_dim,
                         int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride);

int calib_dense_attention(const float *q, const float *k, const float *v, float *out,
                          int64_t tokens, int64_t head_dim,
                          int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride);
int calib_dense_attention_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v, float *out,
                               int64_t tokens, int64_t head_dim,
                               int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride);

/* Threads the kernels' parallel regions get: lets callers check OpenMP really runs. */
int calib_team_size(void);

/* The instruction set the kernels chose on this machine when the library loaded: "avx512-bf16"
 * (AVX-512 with BF16 dot products for bf16 inputs), "avx512", "avx2", "sse" or "portable" (block
 * or head_dim not a multiple of the vector width). The environment variable
 * CALIBC_ISA=avx512|avx2|sse|portable caps the choice. */
const char *calib_isa(void);

/* Every entry point in one table, for callers that bind a kernel set at run time: the Swift
 * runtime takes this from a linked target or a loaded library alike. */
typedef struct calib_entry_points {
    int32_t abi_version;
    const calib_info *(*get_info)(void);
    int (*attention_layer)(int32_t, int32_t, int32_t, const void *, const void *, const void *, void *, int64_t, int64_t,
                           int64_t, int64_t, const int64_t *, const int64_t *, const int64_t *, const int64_t *);
    int (*dense_attention_layer)(int32_t, const void *, const void *, const void *, void *, int64_t, int64_t, int64_t,
                                 int64_t, const int64_t *, const int64_t *, const int64_t *, const int64_t *);
    int (*attention)(int32_t, int32_t, int32_t, const float *, const float *, const float *, float *, int64_t, int64_t,
                     int64_t, int64_t, int64_t, int64_t);
    int (*attention_bf16)(int32_t, int32_t, int32_t, const uint16_t *, const uint16_t *, const uint16_t *, float *, int64_t,
                          int64_t, int64_t, int64_t, int64_t, int64_t);
    int (*dense_attention)(const float *, const float *, const float *, float *, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t);
    int (*dense_attention_bf16)(const uint16_t *, const uint16_t *, const uint16_t *, float *, int64_t, int64_t, int64_t,
                                int64_t, int64_t, int64_t);
    int (*team_size)(void);
    const char *(*isa)(void);
    int (*attention_heads)(int32_t, int32_t, int32_t, int32_t, const void *, const void *, const void *, void *, int64_t,
                           int64_t, int64_t, int64_t, const int64_t *, const int64_t *, const int64_t *, const int64_t *);
    int (*attention_joint)(int32_t, int32_t, int32_t, int32_t, const void *, const void *, const void *, void *, int64_t,
                           int64_t, int64_t, int64_t, const int64_t *, const int64_t *, const int64_t *, const int64_t *,
                           const int32_t *);
} calib_entry_points;

const calib_entry_points *calib_get_entry_points(void);

#ifdef __cplusplus
}
#endif

#endif
