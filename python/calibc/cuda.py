"""The CUDA kernel library that `calibc compile masks.json -o DIR --target cuda --shared` builds
(DIR/libcalibcuda.so, Hopper sm_90a): one launch per (step, layer) over every batch × head, on
torch's current CUDA stream.

    kernels = calibc.load_cuda("DIR/libcalibcuda.so")
    out = kernels.attention_layer(step, layer, q, k, v)    # (B, S, H, D) CUDA tensors, bf16 or fp16

The C interface is DIR/include/calib_cuda.h; `_abi.CUDA_FUNCTIONS` is its only Python description
(Tests/python/test_abi.py checks it against the header).
"""


import torch

from . import _abi
from .errors import ArgumentError, CalibError
from .kernels import _open, _sizes, _strides, check_layout, check_output, loaded

_DTYPES = {torch.bfloat16: _abi.CUDA_DTYPE["CALIB_CUDA_BF16"], torch.float16: _abi.CUDA_DTYPE["CALIB_CUDA_F16"]}


class CudaKernels:
    def __init__(self, path):
        self.path = path
        self.lib = _open(path)
        for name, (restype, argtypes) in _abi.CUDA_FUNCTIONS.items():
            if not hasattr(self.lib, name):
                raise CalibError(-1, f"{path}: not a calibc CUDA kernel library (it has no {name}; expected the "
                                     "libcalibcuda.so of `calibc compile --target cuda --shared`)")
            fn = getattr(self.lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        info = self.lib.calib_cuda_get_info().contents
        self.tokens, self.head_dim, self.block = info.tokens, info.head_dim, info.block
        self.layers, self.heads = info.layers, info.heads
        self.steps = [info.steps[i] for i in range(info.step_count)]
        self.model, self.mask_sha256 = info.model.decode(), info.mask_sha256.decode()

    def has_plan(self, step, layer):
        ints = all(isinstance(x, int) and not isinstance(x, bool) for x in (step, layer))
        return ints and step in self.steps and 0 <= layer < self.layers

    def attention_layer(self, step, layer, q, k, v, out=None, layout="bshd"):
        return self._layer(self.lib.calib_cuda_attention_layer, (_abi.int32("step", step), _abi.int32("layer", layer)),
                           q, k, v, out, layout)

    def dense_attention_layer(self, q, k, v, out=None, layout="bshd"):
        return self._layer(self.lib.calib_cuda_dense_attention_layer, (), q, k, v, out, layout)

    def _layer(self, fn, lead, q, k, v, out, layout):
        check_layout(layout)
        for name, t in zip("qkv", (q, k, v)):
            if not isinstance(t, torch.Tensor):
                raise ArgumentError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if out is None:
            out = torch.empty_like(q, memory_format=torch.contiguous_format)
        elif not isinstance(out, torch.Tensor):
            raise ArgumentError(f"out: expected a torch.Tensor or None, got {type(out).__name__}")
        for name, t in zip(("q", "k", "v", "out"), (q, k, v, out)):
            if t.dim() != 4 or t.shape != q.shape or t.device != q.device or t.dtype != q.dtype:
                raise ArgumentError(f"{name}: expected a 4D tensor of q's shape {tuple(q.shape)}, device {q.device} "
                                    f"and dtype {q.dtype}, got {tuple(t.shape)} on {t.device}, {t.dtype}")
            if t.device.type != "cuda" or t.dtype not in _DTYPES:
                raise ArgumentError(f"{name}: expected a bfloat16 or float16 CUDA tensor, got {t.dtype} on {t.device}")
        check_output(out, {"q": q, "k": k, "v": v})
        strides = [_strides(t, layout, name) for name, t in zip(("q", "k", "v", "out"), (q, k, v, out))]
        with torch.cuda.device(q.device):
            stream = torch.cuda.current_stream(q.device).cuda_stream
            status = fn(*lead, _abi.int32("dtype", _DTYPES[q.dtype]), q.data_ptr(), k.data_ptr(), v.data_ptr(),
                        out.data_ptr(), *_sizes(q, layout), *strides, stream)
        if status != 0:
            raise CalibError(status, _abi.CUDA_STATUS_TEXT.get(status))
        return out


def load_cuda(path):
    """The CudaKernels of the library at `path`, loaded once per process."""
    return loaded(CudaKernels, path)
