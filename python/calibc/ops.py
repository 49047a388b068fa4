"""`torch.ops.calibc.attention_layer`: the layer call as a PyTorch custom op.

    out = calibc.attention_layer(q, k, v, "DIR/libcalibkernels.so", step, layer)             # (B, S, H, D)
    out = calibc.attention_layer(q, k, v, library, step, layer, layout="bhsd")               # (B, H, S, D)
    torch.compile(fn, fullgraph=True)   # traces through it: the fake kernel gives the output's shape

q, k, v: 4D tensors of one dtype (float32 or bfloat16) and one shape; strided views are fine as
long as head_dim is contiguous. The output is a new contiguous tensor of q's shape and dtype. The
op has no autograd formula (inference only).
"""

import torch

from .kernels import LAYOUTS, load

__all__ = ["attention_layer", "dense_attention_layer"]


def _check(q, k, v, layout):
    torch._check(layout in LAYOUTS, lambda: f"layout must be one of {LAYOUTS}, not {layout!r}")
    torch._check(q.dim() == 4, lambda: f"q: expected a 4D tensor, got {q.dim()}D")
    torch._check(q.shape == k.shape and q.shape == v.shape, lambda: "q, k and v must have one shape")
    torch._check(q.dtype == k.dtype == v.dtype and q.dtype in (torch.float32, torch.bfloat16),
                 lambda: "q, k and v must all be float32 or all bfloat16")


@torch.library.custom_op("calibc::attention_layer", mutates_args=(), device_types="cpu")
def attention_layer(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, library: str, step: int, layer: int,
                    layout: str = "bshd") -> torch.Tensor:
    _check(q, k, v, layout)
    out = torch.empty(q.shape, dtype=q.dtype)
    return load(library).attention_layer(step, layer, q, k, v, out=out, layout=layout)


@attention_layer.register_fake
def _attention_layer_fake(q, k, v, library, step, layer, layout="bshd"):
    _check(q, k, v, layout)
    return torch.empty(q.shape, dtype=q.dtype, device=q.device)


@torch.library.custom_op("calibc::dense_attention_layer", mutates_args=(), device_types="cpu")
def dense_attention_layer(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, library: str,
                          layout: str = "bshd") -> torch.Tensor:
    _check(q, k, v, layout)
    out = torch.empty(q.shape, dtype=q.dtype)
    return load(library).dense_attention_layer(q, k, v, out=out, layout=layout)


@dense_attention_layer.register_fake
def _dense_attention_layer_fake(q, k, v, library, layout="bshd"):
    _check(q, k, v, layout)
    return torch.empty(q.shape, dtype=q.dtype, device=q.device)


# ---------------------------------------------------------------------------------------------
# CUDA: NOT IMPLEMENTED YET. When the GPU target lands, CUDA tensors dispatch here: load the CUDA
# kernel library (the one `calibc compile --target cuda` builds) and call its
# `calib_cuda_attention_layer` entry on q/k/v.data_ptr() with the same (batch, tokens, heads,
# head_dim) and (b, s, h) strides as the CPU layer call, on torch.cuda.current_stream(). Declare
# that entry in _abi.py (checked against the CUDA header by Tests/python/test_abi.py).
@attention_layer.register_kernel("cuda")
def _attention_layer_cuda(q, k, v, library, step, layer, layout="bshd"):
    raise NotImplementedError("calibc: CUDA tensors need the CUDA kernel library (calib_cuda_attention_layer), "
                              "which is not built yet; move q, k, v to the CPU")
# ---------------------------------------------------------------------------------------------
