"""The CPU target's kernel library, built by `calibc compile masks.json -o DIR --shared`.

    kernels = calibc.load("DIR/libcalibkernels.so")       # cached per path
    out = kernels.attention_layer(step, layer, q, k, v)   # (B, S, H, D) CPU tensors, fp32 or bf16
    out = kernels.attention_layer(step, layer, q, k, v, layout="bhsd")   # (B, H, S, D)

The layer call and what it checks are library.py's, shared with the CUDA target; this module adds
what only the CPU library has: C ABI 1 libraries, the per-head entries, a range of heads (a
context-parallel rank's share), the team size and the instruction set. See `_abi.py` for the C
interface itself.
"""

import ctypes

import torch

from . import _abi
from .errors import ArgumentError, CalibError
from .library import Library, check_layout, check_output, dims, loaded

__all__ = ["ArgumentError", "CalibError", "Kernels", "load"]


class Kernels(Library):
    """The CPU target's library: float32 or bfloat16 CPU tensors; C ABI 1 (per-head entries only)
    or 2 (the layer entries too)."""

    device = "cpu"

    def _bind(self, path):
        if not hasattr(self.lib, "calib_get_info"):
            raise CalibError(-1, f"{path}: not a calibc kernel library (it has no calib_get_info; expected the "
                                 "libcalibkernels.so of `calibc compile --shared`)")
        get_info = self.lib.calib_get_info
        get_info.restype, get_info.argtypes = ctypes.POINTER(ctypes.c_int32), []
        version = get_info().contents.value  # the first field of every version
        if version > _abi.ABI_VERSION or version < 1:
            raise CalibError(-1, f"{path}: C ABI version {version}; this package knows 1…{_abi.ABI_VERSION}")
        _abi.bind(self.lib, version)
        self.isa = self.lib.calib_isa().decode() if version >= 2 else None
        info_type = _abi.Info if version >= 2 else _abi.InfoV1
        return ctypes.cast(self.lib.calib_get_info(), ctypes.POINTER(info_type)).contents

    @property
    def has_layer_entry(self):
        return self.abi_version >= 2

    def team_size(self):
        return self.lib.calib_team_size()

    def _entry(self, name):
        if not self.has_layer_entry:
            raise CalibError(-1, f"{self.path} has C ABI {self.abi_version}: the layer entries need ABI 2 "
                                 "(recompile the masks with a current calibc)")
        return getattr(self.lib, "calib_" + name)

    def _launch(self, fn, args, device):
        return fn(*args)

    # The per-head entries (ABI 1 and 2): float32 output.

    def attention(self, step, layer, head, q, k, v, out=None):
        """Sparse attention of one head: q, k, v are (S, D) float32 or bfloat16 with contiguous
        rows; returns float32 (S, D)."""
        name = "calib_attention_bf16" if getattr(q, "dtype", None) == torch.bfloat16 else "calib_attention"
        return self._head(getattr(self.lib, name),
                          (_abi.int32("step", step), _abi.int32("layer", layer), _abi.int32("head", head)),
                          q, k, v, out)

    def dense_attention(self, q, k, v, out=None):
        name = "calib_dense_attention_bf16" if getattr(q, "dtype", None) == torch.bfloat16 else "calib_dense_attention"
        return self._head(getattr(self.lib, name), (), q, k, v, out)

    def attention_heads(self, step, layer, first_head, q, k, v, out=None, layout="bshd", precision=None):
        """As Library.attention_heads. An ABI 1 library has no layer entries: there a subset runs
        through the per-head entries, one call per (batch, head)."""
        check_layout(layout)
        self._no_fp8(precision)
        if self.has_layer_entry:
            return super().attention_heads(step, layer, first_head, q, k, v, out, layout)
        step, layer, first_head = (_abi.int32(n, x).value for n, x in
                                   (("step", step), ("layer", layer), ("first_head", first_head)))
        if not isinstance(q, torch.Tensor) or q.dim() != 4:
            raise ArgumentError("q: expected a 4D tensor")
        batch, tokens, heads, _ = dims(q, layout)
        if first_head < 0 or first_head + heads > self.heads:
            raise CalibError(_abi.STATUS["CALIB_ERR_SHAPE"], f"heads {first_head}…{first_head + heads - 1} are not "
                                                            f"among the {self.heads} compiled heads")
        out = torch.empty(q.shape, dtype=q.dtype) if out is None else out
        if not isinstance(out, torch.Tensor) or out.shape != q.shape or out.dtype != q.dtype:
            raise ArgumentError(f"out: expected a tensor of q's shape {tuple(q.shape)} and dtype {q.dtype}")
        check_output(out, {"q": q, "k": k, "v": v})
        pick = (lambda t, b, h: t[b, :, h]) if layout == "bshd" else (lambda t, b, h: t[b, h])
        staging = torch.empty(tokens, q.shape[3], dtype=torch.float32)
        for b in range(batch):
            for h in range(heads):
                self.attention(step, layer, first_head + h, pick(q, b, h), pick(k, b, h), pick(v, b, h), staging)
                pick(out, b, h).copy_(staging)
        return out

    def _head(self, fn, lead, q, k, v, out):
        if not all(isinstance(t, torch.Tensor) for t in (q, k, v)):
            raise ArgumentError("q, k, v: expected torch.Tensors")
        if q.dim() != 2 or not (q.shape == k.shape == v.shape) or not (q.dtype == k.dtype == v.dtype):
            raise ArgumentError("q, k, v: expected (tokens, head_dim) tensors of one shape and dtype, got "
                                f"{tuple(q.shape)} {q.dtype}, {tuple(k.shape)} {k.dtype}, {tuple(v.shape)} {v.dtype}")
        if q.dtype not in self.dtypes or any(t.device.type != "cpu" for t in (q, k, v)):
            raise ArgumentError(f"q, k, v: expected float32 or bfloat16 CPU tensors, got {q.dtype} on {q.device.type}")
        out = torch.empty(q.shape, dtype=torch.float32) if out is None else out
        if not isinstance(out, torch.Tensor) or out.dtype != torch.float32 or out.shape != q.shape or \
                out.device.type != "cpu":
            raise ArgumentError(f"out: expected a float32 CPU tensor of q's shape {tuple(q.shape)}")
        for name, t in zip(("q", "k", "v", "out"), (q, k, v, out)):
            if t.stride(1) != 1 and t.shape[1] > 1:
                raise ArgumentError(f"{name}: the last dimension must be contiguous (stride 1), got stride {t.stride(1)}")
        check_output(out, {"q": q, "k": k, "v": v})
        sizes = (_abi.int64("tokens", q.shape[0]), _abi.int64("head_dim", q.shape[1]))
        strides = tuple(_abi.int64(f"{name} row stride", t.stride(0)) for name, t in zip(("q", "k", "v", "out"), (q, k, v, out)))
        status = fn(*lead, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), *sizes, *strides)
        if status != 0:
            raise CalibError(status)
        return out


def load(path):
    """The Kernels of the library at `path`, loaded once per process."""
    return loaded(Kernels, path)
