"""Loading a kernel library built by `calibc compile masks.json -o DIR --shared`.

    kernels = calibc.load("DIR/libcalibkernels.so")       # cached per path
    out = kernels.attention_layer(step, layer, q, k, v)   # (B, S, H, D) CPU tensors, fp32 or bf16
    out = kernels.attention_layer(step, layer, q, k, v, layout="bhsd")   # (B, H, S, D)

The layer entry computes every (batch, head) of one (step, layer) in one call, on strided 4D
tensors without a copy (the head dimension must be contiguous). Errors of the C ABI raise
CalibError. See `_abi.py` for the C interface itself.
"""

import ctypes
import hashlib
import os
import threading

import torch

from . import _abi

__all__ = ["CalibError", "Kernels", "load"]

_TORCH_DTYPE = {torch.float32: _abi.DTYPE["CALIB_F32"], torch.bfloat16: _abi.DTYPE["CALIB_BF16"]}
LAYOUTS = ("bshd", "bhsd")


class CalibError(RuntimeError):
    """A non-zero status of the C ABI, or a library too old for the entry asked for."""

    def __init__(self, status, message=None):
        super().__init__(message or _abi.STATUS_TEXT.get(status, f"status {status}"))
        self.status = status


def _strides(x, layout):
    """(b, s, h) element strides of a 4D tensor in `layout`, as the C ABI wants them."""
    if layout == "bshd":
        values = (x.stride(0), x.stride(1), x.stride(2))
    else:
        values = (x.stride(0), x.stride(2), x.stride(1))
    return (ctypes.c_int64 * 3)(*values)


def _dims(x, layout):
    """(batch, tokens, heads, head_dim) of a 4D tensor in `layout`."""
    b, a, c, d = x.shape
    return (b, a, c, d) if layout == "bshd" else (b, c, a, d)


class Kernels:
    """One loaded kernel library and the shape it was compiled for."""

    def __init__(self, path):
        self.path = os.path.realpath(path)
        self.lib = ctypes.CDLL(self.path)
        get_info = self.lib.calib_get_info
        get_info.restype, get_info.argtypes = ctypes.POINTER(ctypes.c_int32), []
        self.abi_version = get_info().contents.value  # the first field of every version
        if self.abi_version > _abi.ABI_VERSION or self.abi_version < 1:
            raise CalibError(-1, f"{path}: C ABI version {self.abi_version}; this package knows 1…{_abi.ABI_VERSION}")
        _abi.bind(self.lib, self.abi_version)
        info_type = _abi.Info if self.abi_version >= 2 else _abi.InfoV1
        info = ctypes.cast(self.lib.calib_get_info(), ctypes.POINTER(info_type)).contents
        self.tokens, self.head_dim, self.block = info.tokens, info.head_dim, info.block
        self.layers, self.heads, self.plans = info.layers, info.heads, info.plans
        self.steps = tuple(info.steps[i] for i in range(info.step_count))
        self.model, self.mask_sha256 = info.model.decode(), info.mask_sha256.decode()
        self.isa = self.lib.calib_isa().decode() if self.abi_version >= 2 else None

    def __repr__(self):
        return (f"Kernels({self.path!r}: ABI {self.abi_version}, {self.tokens} tokens, head_dim {self.head_dim}, "
                f"{self.layers} layers × {self.heads} heads, steps {list(self.steps)}, {self.plans} plans)")

    @property
    def has_layer_entry(self):
        return self.abi_version >= 2

    def team_size(self):
        return self.lib.calib_team_size()

    def has_plan(self, step, layer, head=0):
        return step in self.steps and 0 <= layer < self.layers and 0 <= head < self.heads

    def require_source(self, masks_path):
        """Raises CalibError unless these kernels were compiled from the file `masks_path`."""
        with open(masks_path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != self.mask_sha256:
            raise CalibError(-1, f"{self.path} was compiled from masks with SHA-256 {self.mask_sha256}, "
                                 f"not {masks_path} ({digest})")

    # The layer entries: every (batch, head) of one (step, layer) in one call.

    def attention_layer(self, step, layer, q, k, v, out=None, layout="bshd"):
        """Sparse attention of every (batch, head) of (step, layer). q, k, v: 4D CPU tensors of one
        dtype (float32 or bfloat16) in `layout` ("bshd" = (B, S, H, D), "bhsd" = (B, H, S, D)), any
        strides with the last dimension contiguous. Returns `out` (allocated contiguous in q's
        shape and dtype when None)."""
        return self._layer(self.lib.calib_attention_layer if self.has_layer_entry else None,
                           (ctypes.c_int32(step), ctypes.c_int32(layer)), q, k, v, out, layout)

    def dense_attention_layer(self, q, k, v, out=None, layout="bshd"):
        """Every tile computed, same arguments: the baseline of the sparse plans."""
        return self._layer(self.lib.calib_dense_attention_layer if self.has_layer_entry else None, (), q, k, v, out,
                           layout)

    def _layer(self, fn, lead, q, k, v, out, layout):
        if fn is None:
            raise CalibError(-1, f"{self.path} has C ABI {self.abi_version}: the layer entries need ABI 2 "
                                 "(recompile the masks with a current calibc)")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
        out = torch.empty(q.shape, dtype=q.dtype) if out is None else out
        tensors = (q, k, v, out)
        for name, t in zip("qkvo", tensors):
            if t.dim() != 4 or t.shape != q.shape:
                raise ValueError(f"{name}: expected a 4D tensor of q's shape {tuple(q.shape)}, got {tuple(t.shape)}")
            if t.device.type != "cpu":
                raise ValueError(f"{name}: a {t.device.type} tensor; this library runs on the CPU")
            if t.dtype != q.dtype or t.dtype not in _TORCH_DTYPE:
                raise ValueError(f"{name}: q, k, v and out must all be float32 or all bfloat16, got {t.dtype}")
            if t.stride(3) != 1 and t.shape[3] > 1:
                raise ValueError(f"{name}: the head dimension must be contiguous (stride 1)")
        batch, tokens, heads, head_dim = _dims(q, layout)
        status = fn(*lead, ctypes.c_int32(_TORCH_DTYPE[q.dtype]), q.data_ptr(), k.data_ptr(), v.data_ptr(),
                    out.data_ptr(), batch, tokens, heads, head_dim, *(_strides(t, layout) for t in tensors))
        if status != 0:
            raise CalibError(status)
        return out

    # The per-head entries (ABI 1 and 2): float32 output.

    def attention(self, step, layer, head, q, k, v, out=None):
        """Sparse attention of one head: q, k, v are (S, D) float32 or bfloat16 with contiguous
        rows; returns float32 (S, D)."""
        name = "calib_attention_bf16" if q.dtype == torch.bfloat16 else "calib_attention"
        return self._head(getattr(self.lib, name), (step, layer, head), q, k, v, out)

    def dense_attention(self, q, k, v, out=None):
        name = "calib_dense_attention_bf16" if q.dtype == torch.bfloat16 else "calib_dense_attention"
        return self._head(getattr(self.lib, name), (), q, k, v, out)

    def attention_heads(self, step, layer, first_head, q, k, v, out=None, layout="bshd"):
        """Heads first_head … first_head + H - 1 of (step, layer) for 4D tensors holding H of the
        compiled heads (a context-parallel rank's share), in one call. An ABI 1 library has no layer
        entries: there a subset runs through the per-head entries, one call per (batch, head)."""
        batch, tokens, heads, _ = _dims(q, layout)
        if self.has_layer_entry:
            return self._layer(self.lib.calib_attention_heads, (ctypes.c_int32(step), ctypes.c_int32(layer),
                                                                ctypes.c_int32(first_head)), q, k, v, out, layout)
        if first_head < 0 or first_head + heads > self.heads:
            raise CalibError(_abi.STATUS["CALIB_ERR_SHAPE"], f"heads {first_head}…{first_head + heads - 1} are not "
                                                            f"among the {self.heads} compiled heads")
        out = torch.empty(q.shape, dtype=q.dtype) if out is None else out
        pick = (lambda t, b, h: t[b, :, h]) if layout == "bshd" else (lambda t, b, h: t[b, h])
        staging = torch.empty(tokens, q.shape[3], dtype=torch.float32)
        for b in range(batch):
            for h in range(heads):
                self.attention(step, layer, first_head + h, pick(q, b, h), pick(k, b, h), pick(v, b, h), staging)
                pick(out, b, h).copy_(staging)
        return out

    def _head(self, fn, lead, q, k, v, out):
        if q.dim() != 2 or not (q.shape == k.shape == v.shape) or not (q.dtype == k.dtype == v.dtype):
            raise ValueError("q, k, v: (tokens, head_dim) tensors of one shape and dtype")
        if q.dtype not in _TORCH_DTYPE or q.device.type != "cpu":
            raise ValueError("q, k, v: float32 or bfloat16 CPU tensors")
        out = torch.empty(q.shape, dtype=torch.float32) if out is None else out
        if out.dtype != torch.float32 or out.shape != q.shape:
            raise ValueError("out: float32 of q's shape")
        for name, t in zip("qkvo", (q, k, v, out)):
            if t.stride(1) != 1 and t.shape[1] > 1:
                raise ValueError(f"{name}: the last dimension must be contiguous")
        status = fn(*lead, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), q.shape[0], q.shape[1],
                    q.stride(0), k.stride(0), v.stride(0), out.stride(0))
        if status != 0:
            raise CalibError(status)
        return out


_loaded = {}
_lock = threading.Lock()


def loaded(cls, path):
    """`cls(path)` for the library at `path`, made once per process (by real path)."""
    key = (cls, os.path.realpath(path))
    with _lock:
        if key not in _loaded:
            _loaded[key] = cls(key[1])
        return _loaded[key]


def load(path):
    """The Kernels of the library at `path`, loaded once per process."""
    return loaded(Kernels, path)
