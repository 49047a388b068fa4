"""The CUDA target's kernel library, built by `calibc compile masks.json -o DIR --target cuda
--shared` (DIR/libcalibcuda.so, Hopper sm_90a): one launch per (step, layer) over every batch ×
head, on torch's current CUDA stream.

    kernels = calibc.load_cuda("DIR/libcalibcuda.so")
    out = kernels.attention_layer(step, layer, q, k, v)    # (B, S, H, D) CUDA tensors, bf16 or fp16

The layer call and what it checks are library.py's, shared with the CPU target. The C interface
is DIR/include/calib_cuda.h; `_abi.CUDA_FUNCTIONS` is its only Python description
(Tests/python/test_abi.py checks it against the header).
"""

import ctypes

import torch

from . import _abi
from .errors import CalibError
from .library import Library, loaded

__all__ = ["CudaKernels", "load_cuda"]


class CudaKernels(Library):
    """The CUDA target's library: bfloat16 or float16 CUDA tensors."""

    device = "cuda"

    def _bind(self, path):
        for name, (restype, argtypes) in _abi.CUDA_FUNCTIONS.items():
            if name in _abi.CUDA_SINCE_ABI and not hasattr(self.lib, name):
                continue  # a library of an earlier ABI: it still loads without the later entries
            if not hasattr(self.lib, name):
                raise CalibError(-1, f"{path}: not a calibc CUDA kernel library (it has no {name}; expected the "
                                     "libcalibcuda.so of `calibc compile --target cuda --shared`)")
            fn = getattr(self.lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        return self.lib.calib_cuda_get_info().contents

    def kernel_name(self):
        """The kernel the layer entries launch on the current device for this head_dim: "wgmma" or
        "mma.sync" (also where $CALIB_CUDA_KERNEL is "mma")."""
        return self.lib.calib_cuda_kernel_name(self.head_dim).decode()

    def prepare(self, device=None, first_head=0, heads=None):
        device = torch.device("cuda") if device is None else torch.device(device)
        with torch.cuda.device(device):
            super().prepare(torch.device("cuda", torch.cuda.current_device()))
            heads = self.heads - first_head if heads is None else heads
            status = self._entry("prepare")(_abi.int32("first_head", first_head), _abi.int32("heads", heads),
                                            torch.cuda.current_stream().cuda_stream)
        if status != 0:
            raise CalibError(status)
        return self

    def attention_at(self, timestep, layer, q, k, v, out=None, first_head=0, layout="bshd", text_lengths=None):
        """As the CPU target's, with the step chosen on the device (calib_cuda_attention_indexed,
        or calib_cuda_attention_joint with `text_lengths`): no host synchronisation but the check
        of the lengths' values (`text_lengths`), and a captured CUDA graph replays whichever step
        `timestep` (and lengths) hold at replay."""
        index = self.step_index(timestep.to(q.device))
        lead = (ctypes.cast(index.data_ptr(), ctypes.POINTER(ctypes.c_int32)), _abi.int32("layer", layer),
                _abi.int32("first_head", first_head))
        if text_lengths is None:
            return self._layer("attention_indexed", lead, q, k, v, out, layout)
        lengths = self.text_lengths(text_lengths, q, layout)
        return self._layer("attention_joint", lead, q, k, v, out, layout, (ctypes.cast(lengths.data_ptr(), ctypes.POINTER(ctypes.c_int32)),))

    def _entry(self, name):
        if not hasattr(self.lib, "calib_cuda_" + name):
            raise CalibError(-1, f"{self.path} has CUDA ABI {self.abi_version}: calib_cuda_{name} needs ABI "
                                 f"{_abi.CUDA_SINCE_ABI['calib_cuda_' + name]} (recompile the masks with a current calibc)")
        return getattr(self.lib, "calib_cuda_" + name)

    def _launch(self, fn, args, device):
        with torch.cuda.device(device):
            return fn(*args, torch.cuda.current_stream(device).cuda_stream)


def load_cuda(path):
    """The CudaKernels of the library at `path`, loaded once per process."""
    return loaded(CudaKernels, path)
