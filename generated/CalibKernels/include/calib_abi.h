/* include/calib_abi.h: copied by calibc from kernels/include/calib_abi.h; do not edit, regenerate with `calibc compile`.
 * source: masks.json (sha256 5316e5d337ee81292d6f227e0e808540b12c1f531d4a31c8d073957788b8e284), model example-video-dit
 * shape: tokens 2100, head_dim 64, block 64 (33 blocks per side), 3 steps x 2 layers x 4 heads
 * passes: merge-runs, collapse-reuse, dedupe, reorder, chunk
 * plans: 5 unique for 24 (step, layer, head)
 */
/* What the C ABIs of calibc's CPU kernels (calib_kernels.h) and CUDA kernels (calib_cuda.h) share:
 * the status codes, the element types and the description of the compiled shape. Each header
 * includes this one, so both can be included together. */
#ifndef CALIB_ABI_H
#define CALIB_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum calib_status {
    CALIB_OK = 0,
    CALIB_ERR_SHAPE = 1,     /* tokens, heads or head_dim differ from the compiled shape */
    CALIB_ERR_NO_PLAN = 2,   /* (step, layer, head) is not in the calibration */
    CALIB_ERR_ARGUMENT = 3,  /* a null pointer, an unknown dtype, misaligned pointers or strides (CUDA),
                                strides that overlap (out) or overflow */
    CALIB_ERR_NO_MEMORY = 4, /* the tables (per device on CUDA) could not be allocated */
    CALIB_ERR_CUDA = 5,      /* CUDA only: the runtime refused the launch (see cudaGetLastError) */
    CALIB_ERR_CAPTURE = 6,   /* CUDA only: tables not yet on the device while the stream is being captured
                                into a graph (call calib_cuda_prepare before capture) */
    CALIB_ERR_UNSUPPORTED = 7 /* CUDA only: FP8 products need the wgmma kernel (block 128, head_dim 64 or
                                 128, CALIB_CUDA_KERNEL not "mma") */
};

/* Element types of q, k, v and out in the layer entries. */
enum calib_dtype {
    CALIB_F32 = 0,   /* the CPU target only */
    CALIB_BF16 = 1,  /* raw bfloat16 bits, e.g. torch.bfloat16 */
    CALIB_F16 = 2    /* the CUDA target only */
};

/* The shape a library was compiled for; abi_version is the version of the library's own header
 * (CALIB_ABI_VERSION or CALIB_CUDA_ABI_VERSION). */
typedef struct calib_info {
    int32_t abi_version;
    int32_t tokens, head_dim, block, layers, heads, plans;
    int32_t step_count;
    const int32_t *steps;     /* the step values the entries accept, ascending */
    const char *model;
    const char *mask_sha256;  /* of the masks.json these kernels were compiled from */
    /* ABI 3 on: per step, the timestep the model's transformer receives there (masks.json's
     * model_timesteps, or the step values when it has none), distinct. A caller that holds the
     * model's timestep runs the step whose timestep is nearest (docs/python.md, "Steps"). */
    const float *timesteps;
    /* ABI 4 on: joint text–video attention. The sequence holds text_tokens text tokens (0: video
     * only), its first ones when text_first is 1, else its last ones. Entries that take per-batch
     * valid text lengths (text last only) give padded text keys no part in any softmax and write
     * zeros to padded text rows. */
    int32_t text_tokens, text_first;
} calib_info;

#ifdef __cplusplus
}
#endif

#endif
