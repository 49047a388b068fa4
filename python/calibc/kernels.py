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
from .errors import ArgumentError, CalibError

__all__ = ["ArgumentError", "CalibError", "Kernels", "load"]

_TORCH_DTYPE = {torch.float32: _abi.DTYPE["CALIB_F32"], torch.bfloat16: _abi.DTYPE["CALIB_BF16"]}
LAYOUTS = ("bshd", "bhsd")


def check_layout(layout):
    if layout not in LAYOUTS:
        raise ArgumentError(f"layout: expected one of {LAYOUTS}, got {layout!r}")


def _strides(x, layout, name="x"):
    """(b, s, h) element strides of a 4D tensor in `layout`, as the C ABI wants them (checked int64_t)."""
    if layout == "bshd":
        values = (x.stride(0), x.stride(1), x.stride(2))
    else:
        values = (x.stride(0), x.stride(2), x.stride(1))
    return _abi.int64_array(f"{name} strides", values)


def _dims(x, layout):
    """(batch, tokens, heads, head_dim) of a 4D tensor in `layout`."""
    b, a, c, d = x.shape
    return (b, a, c, d) if layout == "bshd" else (b, c, a, d)


def _sizes(x, layout):
    """(batch, tokens, heads, head_dim) as checked C int64_t."""
    return tuple(_abi.int64(n, v) for n, v in zip(("batch", "tokens", "heads", "head_dim"), _dims(x, layout)))


def _extent(t):
    """The byte addresses [first, end) spanned by the elements of `t`, or None when it has none:
    from its first to its last element, whatever lies between (views of one buffer included)."""
    if t.numel() == 0:
        return None
    first = last = t.data_ptr()
    size = t.element_size()
    for n, s in zip(t.shape, t.stride()):
        if s >= 0:
            last += (n - 1) * s * size
        else:
            first += (n - 1) * s * size
    return first, last + size


def check_output(out, inputs):
    """Refuses an output whose memory overlaps an input's (`inputs`: {name: tensor}) or itself
    (an expanded view): the kernels write `out` while they still read q, k and v."""
    if any(s == 0 and n > 1 for n, s in zip(out.shape, out.stride())) or \
            (hasattr(torch, "_debug_has_internal_overlap") and torch._debug_has_internal_overlap(out) == 1):
        raise ArgumentError("out: some of its elements share memory (an expanded or broadcast view); expected "
                            "a tensor whose elements are distinct")
    o = _extent(out)
    if o is None:
        return
    for name, t in inputs.items():
        e = _extent(t)
        if e is not None and o[0] < e[1] and e[0] < o[1]:
            raise ArgumentError(f"out overlaps {name} in memory (bytes {o[0]:#x}…{o[1]:#x} and {e[0]:#x}…{e[1]:#x}); "
                                "expected an output that shares no memory with q, k and v")


def _open(path):
    """ctypes.CDLL, with the package's error when the library cannot be loaded."""
    try:
        return ctypes.CDLL(path)
    except OSError as e:
        raise CalibError(-1, f"{path}: cannot load the kernel library ({e})") from None


class Kernels:
    """One loaded kernel library and the shape it was compiled for."""

    def __init__(self, path):
        self.path = os.path.realpath(path)
        self.lib = _open(self.path)
        if not hasattr(self.lib, "calib_get_info"):
            raise CalibError(-1, f"{path}: not a calibc kernel library (it has no calib_get_info; expected the "
                                 "libcalibkernels.so of `calibc compile --shared`)")
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
        ints = all(isinstance(x, int) and not isinstance(x, bool) for x in (step, layer, head))
        return ints and step in self.steps and 0 <= layer < self.layers and 0 <= head < self.heads

    def require_source(self, masks_path):
        """Raises CalibError unless these kernels were compiled from the file `masks_path`."""
        try:
            with open(masks_path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            raise CalibError(-1, f"{masks_path}: cannot read the masks file ({e.strerror or e})") from None
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
                           (_abi.int32("step", step), _abi.int32("layer", layer)), q, k, v, out, layout)

    def dense_attention_layer(self, q, k, v, out=None, layout="bshd"):
        """Every tile computed, same arguments: the baseline of the sparse plans."""
        return self._layer(self.lib.calib_dense_attention_layer if self.has_layer_entry else None, (), q, k, v, out,
                           layout)

    def _layer(self, fn, lead, q, k, v, out, layout):
        if fn is None:
            raise CalibError(-1, f"{self.path} has C ABI {self.abi_version}: the layer entries need ABI 2 "
                                 "(recompile the masks with a current calibc)")
        check_layout(layout)
        for name, t in zip("qkv", (q, k, v)):
            if not isinstance(t, torch.Tensor):
                raise ArgumentError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if out is None:
            out = torch.empty(q.shape, dtype=q.dtype)
        elif not isinstance(out, torch.Tensor):
            raise ArgumentError(f"out: expected a torch.Tensor or None, got {type(out).__name__}")
        tensors = (q, k, v, out)
        for name, t in zip(("q", "k", "v", "out"), tensors):
            if t.dim() != 4 or t.shape != q.shape:
                raise ArgumentError(f"{name}: expected a 4D tensor of q's shape {tuple(q.shape)}, got {tuple(t.shape)}")
            if t.device.type != "cpu":
                raise ArgumentError(f"{name}: expected a CPU tensor, got a {t.device.type} one (this library runs "
                                    "on the CPU)")
            if t.dtype != q.dtype or t.dtype not in _TORCH_DTYPE:
                raise ArgumentError(f"{name}: q, k, v and out must all be float32 or all bfloat16, got {t.dtype}")
            if t.stride(3) != 1 and t.shape[3] > 1:
                raise ArgumentError(f"{name}: the head dimension must be contiguous (stride 1), got stride {t.stride(3)}")
        check_output(out, {"q": q, "k": k, "v": v})
        strides = [_strides(t, layout, name) for name, t in zip(("q", "k", "v", "out"), tensors)]
        status = fn(*lead, _abi.int32("dtype", _TORCH_DTYPE[q.dtype]), q.data_ptr(), k.data_ptr(), v.data_ptr(),
                    out.data_ptr(), *_sizes(q, layout), *strides)
        if status != 0:
            raise CalibError(status)
        return out

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

    def attention_heads(self, step, layer, first_head, q, k, v, out=None, layout="bshd"):
        """Heads first_head … first_head + H - 1 of (step, layer) for 4D tensors holding H of the
        compiled heads (a context-parallel rank's share), in one call. An ABI 1 library has no layer
        entries: there a subset runs through the per-head entries, one call per (batch, head)."""
        check_layout(layout)
        if self.has_layer_entry:
            return self._layer(self.lib.calib_attention_heads, (_abi.int32("step", step), _abi.int32("layer", layer),
                                                                _abi.int32("first_head", first_head)), q, k, v, out, layout)
        step, layer, first_head = (_abi.int32(n, x).value for n, x in
                                   (("step", step), ("layer", layer), ("first_head", first_head)))
        if not isinstance(q, torch.Tensor) or q.dim() != 4:
            raise ArgumentError("q: expected a 4D tensor")
        batch, tokens, heads, _ = _dims(q, layout)
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
        if q.dtype not in _TORCH_DTYPE or any(t.device.type != "cpu" for t in (q, k, v)):
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


_loaded = {}
_lock = threading.Lock()


def loaded(cls, path):
    """`cls(path)` for the library at `path`, made once per process (by real path)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise ArgumentError(f"library: expected the path of a kernel library, got {type(path).__name__}")
    key = (cls, os.path.realpath(path))
    with _lock:
        if key not in _loaded:
            _loaded[key] = cls(key[1])
        return _loaded[key]


def load(path):
    """The Kernels of the library at `path`, loaded once per process."""
    return loaded(Kernels, path)
