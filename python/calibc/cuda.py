"""The CUDA target's kernel library, built by `calibc compile masks.json -o DIR --target cuda
--shared` (DIR/libcalibcuda.so, Hopper sm_90a): one launch per (step, layer) over every batch ×
head, on torch's current CUDA stream.

    kernels = calibc.load_cuda("DIR/libcalibcuda.so")
    out = kernels.attention_layer(step, layer, q, k, v)    # (B, S, H, D) CUDA tensors, bf16 or fp16
    out = kernels.attention_layer(step, layer, q, k, v, precision="fp8")   # Q·Kᵀ and P·V on e4m3
    out = kernels.attention_layer(step, layer, q, k, v, precision="fp8-pv")   # P·V only: more accurate

The layer call and what it checks are library.py's, shared with the CPU target. The C interface
is DIR/include/calib_cuda.h; `_abi.CUDA_FUNCTIONS` is its only Python description
(Tests/python/test_abi.py checks it against the header).
"""

import ctypes

import torch

from . import _abi
from .errors import CalibError
from .library import Library, check_precision, dims, loaded

__all__ = ["CudaKernels", "load_cuda"]

# library.PRECISIONS' FP8 entries as calib_cuda_attention_fp8's enum calib_fp8
_FP8_PRODUCTS = {"fp8": _abi.FP8["CALIB_FP8_ALL"], "fp8-pv": _abi.FP8["CALIB_FP8_PV"]}


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

    def attention_layer(self, step, layer, q, k, v, out=None, layout="bshd", precision=None):
        if precision in _FP8_PRODUCTS:
            self._every_head(q, layout)
            return self.attention_heads(step, layer, 0, q, k, v, out, layout, precision)
        return super().attention_layer(step, layer, q, k, v, out, layout, precision)

    def attention_heads(self, step, layer, first_head, q, k, v, out=None, layout="bshd", precision=None):
        if precision in _FP8_PRODUCTS:
            if _abi.int32("step", step).value not in self.steps:
                raise CalibError(_abi.STATUS["CALIB_ERR_NO_PLAN"])
            return self._fp8(precision, self._step_tensor(self.steps.index(step), q), layer, first_head, q, k, v, out,
                             layout)
        return super().attention_heads(step, layer, first_head, q, k, v, out, layout, precision)

    def dense_attention_layer(self, q, k, v, out=None, layout="bshd", precision=None):
        if precision in _FP8_PRODUCTS:
            self._every_head(q, layout)
            return self._fp8(precision, None, 0, 0, q, k, v, out, layout)
        return super().dense_attention_layer(q, k, v, out, layout, precision)

    def attention_at(self, timestep, layer, q, k, v, out=None, first_head=0, layout="bshd", text_lengths=None,
                     precision=None):
        """As the CPU target's, with the step chosen on the device (calib_cuda_attention_indexed,
        or calib_cuda_attention_joint with `text_lengths`): no host synchronisation but the check
        of the lengths' values (`text_lengths`), and a captured CUDA graph replays whichever step
        `timestep` (and lengths) hold at replay."""
        check_precision(precision)
        index = self.step_index(timestep.to(q.device))
        if precision in _FP8_PRODUCTS:
            lengths = None if text_lengths is None else self.text_lengths(text_lengths, q, layout)
            return self._fp8(precision, index, layer, first_head, q, k, v, out, layout, lengths)
        lead = (ctypes.cast(index.data_ptr(), ctypes.POINTER(ctypes.c_int32)), _abi.int32("layer", layer),
                _abi.int32("first_head", first_head))
        if text_lengths is None:
            return self._layer("attention_indexed", lead, q, k, v, out, layout)
        lengths = self.text_lengths(text_lengths, q, layout)
        return self._layer("attention_joint", lead, q, k, v, out, layout, (ctypes.cast(lengths.data_ptr(), ctypes.POINTER(ctypes.c_int32)),))

    def _every_head(self, q, layout):
        """The whole-layer entries' check of heads, which FP8 (one entry for any range) makes here."""
        if isinstance(q, torch.Tensor) and q.dim() == 4 and dims(q, layout)[2] != self.heads:
            raise CalibError(_abi.STATUS["CALIB_ERR_SHAPE"])

    def _step_tensor(self, index, q):
        """The device int32 holding step index `index` on q's device, made once (a host step runs
        through the device-step entry with no copy per call)."""
        device = q.device if isinstance(q, torch.Tensor) else torch.device("cuda")
        made = self.__dict__.setdefault("_step_tensors", {})
        if (device, index) not in made:
            made[(device, index)] = torch.tensor(index, dtype=torch.int32, device=device)
        return made[(device, index)]

    def _fp8(self, precision, index, layer, first_head, q, k, v, out, layout, lengths=None):
        """calib_cuda_attention_fp8 with the products `precision` names, of the step whose index
        the device int32 `index` holds (None: every tile), with a workspace from torch's allocator
        on q's device (so on the call's stream, and in a CUDA graph's pool while one is captured)."""
        self._entry("attention_fp8")  # a library before ABI 5 says so before anything is allocated
        as_ptr = lambda t: None if t is None else ctypes.cast(t.data_ptr(), ctypes.POINTER(ctypes.c_int32))
        products = _abi.int32("products", _FP8_PRODUCTS[precision])
        lead = (as_ptr(index), _abi.int32("layer", layer), _abi.int32("first_head", first_head), products)

        kept = []  # the workspace lives until the launch is queued; torch's allocator orders reuse after it

        def workspace(q):
            batch, _, heads, _ = dims(q, layout)
            size = ctypes.c_int64()
            status = self._entry("fp8_workspace_size")(products, _abi.int64("batch", batch), _abi.int64("heads", heads),
                                                       ctypes.byref(size))
            if status != 0:
                raise CalibError(status)
            kept.append(torch.empty(size.value, dtype=torch.uint8, device=q.device))
            return as_ptr(lengths), kept[0].data_ptr(), size.value

        return self._layer("attention_fp8", lead, q, k, v, out, layout, workspace)

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
