"""`torch.ops.calibc.attention_layer`: the layer call as a PyTorch custom op.

    out = calibc.attention_layer(q, k, v, "DIR/libcalibkernels.so", step, layer)             # (B, S, H, D)
    out = calibc.attention_layer(q, k, v, library, step, layer, layout="bhsd")               # (B, H, S, D)
    out = calibc.attention_at(q, k, v, library, timestep, layer)      # the step nearest the model's timestep
    out = calibc.attention_at(q, k, v, library, timestep, layer, text_lengths=n)   # joint: n valid text tokens per element
    out = calibc.attention_at(q, k, v, library, timestep, layer, precision="fp8")  # CUDA: Q·Kᵀ and P·V on e4m3
    torch.compile(fn, fullgraph=True)   # traces through it: the fake kernel gives the output's shape

q, k, v: 4D tensors of one dtype (float32 or bfloat16) and one shape; strided views are fine as
long as head_dim is contiguous. The output is a new contiguous tensor of q's shape and dtype. The
op has no autograd formula (inference only). CUDA tensors (bfloat16 or float16) run the CUDA target's
library (`library` is then its libcalibcuda.so) on the current stream.
"""

from typing import Optional

import torch

from . import _abi
from .cuda import CudaKernels
from .errors import ArgumentError
from .kernels import Kernels
from .library import DTYPES, LAYOUTS, PRECISIONS, loaded

__all__ = ["attention_at", "attention_layer", "dense_attention_layer"]

_CLASSES = {"cpu": Kernels, "cuda": CudaKernels}
_by_path = {}


def _kernels(library, device):
    """The library that runs `device`'s tensors, by the path string the op is given: the same
    string comes with every call, so it is resolved (and the library loaded, shared with
    calibc.load and calibc.load_cuda) on its first call only."""
    key = (device, library)
    kernels = _by_path.get(key)
    if kernels is None:
        kernels = _by_path[key] = loaded(_CLASSES[device], library)
    return kernels


def _check(q, k, v, layout, precision, *integers):
    """The checks both the real and the fake kernel make, raising calibc.ArgumentError (also a
    RuntimeError and a ValueError). `integers`: (name, value) pairs that go to C as int32_t,
    checked where they are plain ints (under torch.compile they may be symbolic)."""
    torch._check_with(ArgumentError, layout in LAYOUTS, lambda: f"layout: expected one of {LAYOUTS}, got {layout!r}")
    torch._check_with(ArgumentError, precision in PRECISIONS,
                      lambda: f"precision: expected None (products in the inputs' dtype), 'fp8' or 'fp8-pv', got "
                              f"{precision!r}")
    torch._check_with(ArgumentError, precision is None or q.device.type == "cuda",
                      lambda: f"precision {precision!r}: FP8 products run on CUDA tensors only, got {q.device.type} ones")
    torch._check_with(ArgumentError, q.dim() == 4, lambda: f"q: expected a 4D tensor, got {q.dim()}D")
    torch._check_with(ArgumentError, q.shape == k.shape and q.shape == v.shape,
                      lambda: f"q, k and v must have one shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    dtypes = tuple(DTYPES["cuda" if q.device.type == "cuda" else "cpu"])
    torch._check_with(ArgumentError, q.dtype == k.dtype == v.dtype and q.dtype in dtypes,
                      lambda: f"q, k and v must all have one of the dtypes {dtypes} on {q.device.type}, got "
                              f"{q.dtype}, {k.dtype}, {v.dtype}")
    for name, value in integers:
        if isinstance(value, int):
            _abi.int32(name, value)


@torch.library.custom_op("calibc::attention_layer", mutates_args=(), device_types=("cpu", "cuda"))
def attention_layer(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, library: str, step: int, layer: int,
                    layout: str = "bshd", precision: Optional[str] = None) -> torch.Tensor:
    _check(q, k, v, layout, precision, ("step", step), ("layer", layer))
    return _kernels(library, q.device.type).attention_layer(step, layer, q, k, v, layout=layout, precision=precision)


@attention_layer.register_fake
def _attention_layer_fake(q, k, v, library, step, layer, layout="bshd", precision=None):
    _check(q, k, v, layout, precision, ("step", step), ("layer", layer))
    return torch.empty(q.shape, dtype=q.dtype, device=q.device)


@torch.library.custom_op("calibc::attention_at", mutates_args=(), device_types=("cpu", "cuda"))
def attention_at(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, library: str, timestep: torch.Tensor, layer: int,
                 first_head: int = 0, layout: str = "bshd", text_lengths: Optional[torch.Tensor] = None,
                 precision: Optional[str] = None) -> torch.Tensor:
    """Heads first_head … of `layer` at the step the library's `step_index(timestep)` picks: the
    step is a tensor, so one compiled graph (and one captured CUDA graph) serves every step.
    `text_lengths` (B,): valid text tokens per batch element of a library whose sequence ends in
    text (`Library.attention_at`). `precision` "fp8" or "fp8-pv": products on e4m3 (CUDA; PRECISIONS)."""
    _check(q, k, v, layout, precision, ("layer", layer), ("first_head", first_head))
    return _kernels(library, q.device.type).attention_at(timestep, layer, q, k, v, first_head=first_head,
                                                         layout=layout, text_lengths=text_lengths, precision=precision)


@attention_at.register_fake
def _attention_at_fake(q, k, v, library, timestep, layer, first_head=0, layout="bshd", text_lengths=None,
                       precision=None):
    _check(q, k, v, layout, precision, ("layer", layer), ("first_head", first_head))
    return torch.empty(q.shape, dtype=q.dtype, device=q.device)


@torch.library.custom_op("calibc::dense_attention_layer", mutates_args=(), device_types=("cpu", "cuda"))
def dense_attention_layer(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, library: str,
                          layout: str = "bshd", precision: Optional[str] = None) -> torch.Tensor:
    _check(q, k, v, layout, precision)
    return _kernels(library, q.device.type).dense_attention_layer(q, k, v, layout=layout, precision=precision)


@dense_attention_layer.register_fake
def _dense_attention_layer_fake(q, k, v, library, layout="bshd", precision=None):
    _check(q, k, v, layout, precision)
    return torch.empty(q.shape, dtype=q.dtype, device=q.device)
