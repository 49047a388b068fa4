"""The CUDA kernel library that `calibc compile masks.json -o DIR --target cuda --shared` builds
(DIR/libcalibcuda.so, Hopper sm_90a): one launch per (step, layer) over every batch × head, on
torch's current CUDA stream.

    kernels = calibc.load_cuda("DIR/libcalibcuda.so")
    out = kernels.attention_layer(step, layer, q, k, v)    # (B, S, H, D) CUDA tensors, bf16 or fp16

The C interface is DIR/include/calib_cuda.h; `_abi.CUDA_FUNCTIONS` is its only Python description
(Tests/python/test_abi.py checks it against the header).
"""

import ctypes

import torch

from . import _abi
from .kernels import LAYOUTS, CalibError, _dims, _strides, loaded

_DTYPES = {torch.bfloat16: _abi.CUDA_DTYPE["CALIB_CUDA_BF16"], torch.float16: _abi.CUDA_DTYPE["CALIB_CUDA_F16"]}


class CudaKernels:
    def __init__(self, path):
        self.path = path
        self.lib = ctypes.CDLL(path)
        for name, (restype, argtypes) in _abi.CUDA_FUNCTIONS.items():
            fn = getattr(self.lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        info = self.lib.calib_cuda_get_info().contents
        self.tokens, self.head_dim, self.block = info.tokens, info.head_dim, info.block
        self.layers, self.heads = info.layers, info.heads
        self.steps = [info.steps[i] for i in range(info.step_count)]
        self.model, self.mask_sha256 = info.model.decode(), info.mask_sha256.decode()

    def has_plan(self, step, layer):
        return step in self.steps and 0 <= layer < self.layers

    def attention_layer(self, step, layer, q, k, v, out=None, layout="bshd"):
        return self._layer(self.lib.calib_cuda_attention_layer, (step, layer), q, k, v, out, layout)

    def dense_attention_layer(self, q, k, v, out=None, layout="bshd"):
        return self._layer(self.lib.calib_cuda_dense_attention_layer, (), q, k, v, out, layout)

    def _layer(self, fn, lead, q, k, v, out, layout):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
        out = torch.empty_like(q, memory_format=torch.contiguous_format) if out is None else out
        for name, t in zip("qkvo", (q, k, v, out)):
            if t.dim() != 4 or t.shape != q.shape or t.device != q.device or t.dtype != q.dtype:
                raise ValueError(f"{name}: expected a tensor of q's shape, device and dtype")
            if t.device.type != "cuda" or t.dtype not in _DTYPES:
                raise ValueError(f"{name}: bfloat16 or float16 CUDA tensors only")
        batch, tokens, heads, head_dim = _dims(q, layout)
        with torch.cuda.device(q.device):
            stream = torch.cuda.current_stream(q.device).cuda_stream
            status = fn(*lead, _DTYPES[q.dtype], q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), batch, tokens,
                        heads, head_dim, *(_strides(t, layout) for t in (q, k, v, out)), stream)
        if status != 0:
            raise CalibError(status, _abi.CUDA_STATUS_TEXT.get(status))
        return out


def load_cuda(path):
    """The CudaKernels of the library at `path`, loaded once per process."""
    return loaded(CudaKernels, path)
