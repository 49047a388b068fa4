"""What a kernel library of either target is to Python: loading it, the shape it was compiled
for, and the layer call with its argument checks, written once.

    Kernels (kernels.py)       libcalibkernels.so of `calibc compile --shared`: CPU tensors
    CudaKernels (cuda.py)      libcalibcuda.so of `calibc compile --target cuda --shared`: CUDA tensors

Both describe their shape with calib_abi.h's `calib_info` and compute every (batch, head) of one
(step, layer) in one call, on strided 4D tensors without a copy (the head dimension must be
contiguous). A target's class says only which device its tensors live on, how its entry points
are bound and named, and how a call is launched. Errors of the C ABI raise CalibError.
"""

import ctypes
import hashlib
import os
import threading

import torch

from . import _abi
from .errors import ArgumentError, CalibError

__all__ = ["DTYPES", "LAYOUTS", "PRECISIONS", "Library", "check_layout", "check_output", "check_precision", "dims",
           "loaded"]

# The dtypes each target's kernels take (torch device type -> {torch dtype: enum calib_dtype}), in
# the order messages list them. Everything that asks "does this target take this dtype" reads this.
DTYPES = {
    "cpu": {torch.float32: _abi.DTYPE["CALIB_F32"], torch.bfloat16: _abi.DTYPE["CALIB_BF16"]},
    "cuda": {torch.bfloat16: _abi.DTYPE["CALIB_BF16"], torch.float16: _abi.DTYPE["CALIB_F16"]},
}
LAYOUTS = ("bshd", "bhsd")
# What the products run on (docs/gpu.md "FP8"): None, the inputs' dtype; "fp8", Q·Kᵀ and P·V on
# e4m3 with fp32 accumulation (the faster); "fp8-pv", P·V only (the more accurate). FP8 is the
# CUDA target's, on the wgmma kernel.
PRECISIONS = (None, "fp8", "fp8-pv")


def check_layout(layout):
    if layout not in LAYOUTS:
        raise ArgumentError(f"layout: expected one of {LAYOUTS}, got {layout!r}")


def check_precision(precision):
    if precision not in PRECISIONS:
        raise ArgumentError(f"precision: expected None (products in the inputs' dtype), 'fp8' or 'fp8-pv', got "
                            f"{precision!r}")


def strides(x, layout, name="x"):
    """(b, s, h) element strides of a 4D tensor in `layout`, as the C ABI wants them (checked int64_t)."""
    if layout == "bshd":
        values = (x.stride(0), x.stride(1), x.stride(2))
    else:
        values = (x.stride(0), x.stride(2), x.stride(1))
    return _abi.int64_array(f"{name} strides", values)


def dims(x, layout):
    """(batch, tokens, heads, head_dim) of a 4D tensor in `layout`."""
    b, a, c, d = x.shape
    return (b, a, c, d) if layout == "bshd" else (b, c, a, d)


def sizes(x, layout):
    """(batch, tokens, heads, head_dim) as checked C int64_t."""
    return tuple(_abi.int64(n, v) for n, v in zip(("batch", "tokens", "heads", "head_dim"), dims(x, layout)))


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


class Library:
    """One loaded kernel library and the shape it was compiled for. A subclass sets `device` (the
    torch device type of its tensors, a key of DTYPES) and defines `_bind` (sets the prototypes
    and returns the library's calib_info), `_entry` (the C function of a layer entry by its
    unprefixed name) and `_launch` (calls it)."""

    device = None

    def __init__(self, path):
        self.path = os.path.realpath(path)
        try:
            self.lib = ctypes.CDLL(self.path)
        except OSError as e:
            raise CalibError(-1, f"{path}: cannot load the kernel library ({e})") from None
        info = self._bind(path)
        self.abi_version = info.abi_version
        self.tokens, self.head_dim, self.block = info.tokens, info.head_dim, info.block
        self.layers, self.heads, self.plans = info.layers, info.heads, info.plans
        self.steps = tuple(info.steps[i] for i in range(info.step_count))
        self.model, self.mask_sha256 = info.model.decode(), info.mask_sha256.decode()
        # The model's timestep at each step: calib_info.timesteps from ABI 3 on (both targets);
        # before it the step values, as masks without model_timesteps give.
        self.timesteps = tuple(info.timesteps[i] if self.abi_version >= 3 else float(s) for i, s in enumerate(self.steps))
        # A joint text–video sequence's text tokens and where they are (ABI 4 on; before it, none).
        self.text_tokens = info.text_tokens if self.abi_version >= 4 else 0
        self.text_first = bool(info.text_first) if self.abi_version >= 4 else False
        self._tables = {}
        self.launches = 0  # layer calls run, counted at the launch (so under torch.compile too)

    def __repr__(self):
        return (f"{type(self).__name__}({self.path!r}: ABI {self.abi_version}, {self.tokens} tokens, head_dim "
                f"{self.head_dim}, {self.layers} layers × {self.heads} heads, steps {list(self.steps)}, "
                f"{self.plans} plans)")

    @property
    def dtypes(self):
        return DTYPES[self.device]

    @property
    def has_layer_entry(self):
        return True

    def has_plan(self, step, layer, head=0):
        ints = all(isinstance(x, int) and not isinstance(x, bool) for x in (step, layer, head))
        return ints and step in self.steps and 0 <= layer < self.layers and 0 <= head < self.heads

    def step_index(self, timestep):
        """The index into `steps` of the step that runs a call whose transformer received
        `timestep` (a tensor of any shape: its largest element, as Wan 2.2 gives per-token
        timesteps whose conditioning tokens are at 0): the step whose model timestep is nearest,
        ties to the earlier step. A 0-d int32 tensor on timestep's device, computed there without
        a host synchronisation, so it can be captured into a CUDA graph once the device's table
        exists (`prepare`)."""
        table = self._table(timestep.device)
        t = timestep.detach().reshape(-1).amax().to(torch.float32)
        return (table - t).abs().argmin().to(torch.int32)

    def _table(self, device):
        table = self._tables.get(device)
        if table is None:
            table = self._tables[device] = torch.tensor(self.timesteps, dtype=torch.float32, device=device)
        return table

    def prepare(self, device=None, first_head=0, heads=None):
        """Puts on `device` (default: this target's current device) everything a call there reads
        (the timesteps table; on CUDA every work list of heads first_head … first_head + heads - 1,
        default all), so later calls only launch and can be captured into a CUDA graph."""
        device = torch.device(self.device) if device is None else torch.device(device)
        self._table(device)
        return self

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

    def attention_layer(self, step, layer, q, k, v, out=None, layout="bshd", precision=None):
        """Sparse attention of every (batch, head) of (step, layer). q, k, v: 4D tensors on this
        target's device, of one of its dtypes (`dtypes`), in `layout` ("bshd" = (B, S, H, D),
        "bhsd" = (B, H, S, D)), any strides with the last dimension contiguous. Returns `out`
        (allocated contiguous in q's shape, dtype and device when None). `precision`: None, or
        "fp8" or "fp8-pv" for products on e4m3 (PRECISIONS; the CUDA target, ArgumentError elsewhere)."""
        self._no_fp8(precision)
        return self._layer("attention_layer", (_abi.int32("step", step), _abi.int32("layer", layer)),
                           q, k, v, out, layout)

    def attention_heads(self, step, layer, first_head, q, k, v, out=None, layout="bshd", precision=None):
        """Heads first_head … first_head + H - 1 of (step, layer) for 4D tensors holding H of the
        compiled heads (a context-parallel rank's share), in one call; otherwise as
        `attention_layer`."""
        self._no_fp8(precision)
        return self._layer("attention_heads", (_abi.int32("step", step), _abi.int32("layer", layer),
                                               _abi.int32("first_head", first_head)), q, k, v, out, layout)

    def attention_at(self, timestep, layer, q, k, v, out=None, first_head=0, layout="bshd", text_lengths=None,
                     precision=None):
        """`attention_heads` of the step `step_index(timestep)` chooses. `text_lengths`: for a
        library of a joint sequence with its text last, the valid text tokens of each batch
        element (an integer tensor of shape (B,)); the rest of its text is padding, which takes
        no part in any softmax (never read) and whose output rows are zeros."""
        self._no_fp8(precision)
        step = self.steps[int(self.step_index(timestep))]
        if text_lengths is None:
            return self.attention_heads(step, layer, first_head, q, k, v, out, layout)
        lengths = self.text_lengths(text_lengths, q, layout)
        return self._layer("attention_joint", (_abi.int32("step", step), _abi.int32("layer", layer),
                                               _abi.int32("first_head", first_head)), q, k, v, out, layout,
                           (ctypes.cast(lengths.data_ptr(), ctypes.POINTER(ctypes.c_int32)),))

    def text_lengths(self, lengths, q, layout):
        """`lengths` checked against this library and q: a contiguous int32 tensor of shape (B,) on
        q's device, each value in 0 … text_tokens; ArgumentError naming what was expected. The
        values are read on the host (a synchronisation on a GPU) except while a CUDA graph is
        being captured, when they are clamped on the device instead."""
        if self.text_tokens == 0 or self.text_first:
            where = "none" if self.text_tokens == 0 else f"{self.text_tokens}, first"
            raise ArgumentError(f"text_lengths: {self.path} holds no text segment at the end of the sequence (text "
                                f"tokens: {where}); valid lengths apply to text that comes last")
        if not isinstance(lengths, torch.Tensor):
            raise ArgumentError(f"text_lengths: expected an integer tensor, got {type(lengths).__name__}")
        batch = dims(q, layout)[0] if isinstance(q, torch.Tensor) and q.dim() == 4 else None
        if lengths.dim() != 1 or lengths.shape[0] != batch:
            raise ArgumentError(f"text_lengths: expected shape ({batch},), one length per batch element, got "
                                f"{tuple(lengths.shape)}")
        if lengths.dtype not in (torch.int32, torch.int64):
            raise ArgumentError(f"text_lengths: expected int32 or int64, got {lengths.dtype}")
        if lengths.device != q.device:
            raise ArgumentError(f"text_lengths: expected a tensor on q's device {q.device}, got one on {lengths.device}")
        capturing = lengths.device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        if not capturing and lengths.numel() and not bool(((lengths >= 0) & (lengths <= self.text_tokens)).all()):
            raise ArgumentError(f"text_lengths: expected values in 0…{self.text_tokens} (the text tokens), got "
                                f"{lengths.tolist()}")
        return lengths.to(torch.int32).contiguous()

    def dense_attention_layer(self, q, k, v, out=None, layout="bshd", precision=None):
        """Every tile computed, same arguments: the baseline of the sparse plans."""
        self._no_fp8(precision)
        return self._layer("dense_attention_layer", (), q, k, v, out, layout)

    def _no_fp8(self, precision):
        """The entries of a target without FP8 products refuse them (CudaKernels overrides the
        entries for FP8)."""
        check_precision(precision)
        if precision is not None:
            raise ArgumentError(f"precision {precision!r}: the {self.device} target has no FP8 kernels; FP8 products run "
                                "on CUDA tensors with a library of `calibc compile --target cuda` (calibc.load_cuda)")

    def _layer(self, entry, lead, q, k, v, out, layout, tail=()):
        fn = self._entry(entry)
        check_layout(layout)
        for name, t in zip("qkv", (q, k, v)):
            if not isinstance(t, torch.Tensor):
                raise ArgumentError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if out is None:
            out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        elif not isinstance(out, torch.Tensor):
            raise ArgumentError(f"out: expected a torch.Tensor or None, got {type(out).__name__}")
        tensors = (q, k, v, out)
        for name, t in zip(("q", "k", "v", "out"), tensors):
            if t.dim() != 4 or t.shape != q.shape:
                raise ArgumentError(f"{name}: expected a 4D tensor of q's shape {tuple(q.shape)}, got {tuple(t.shape)}")
            if t.device.type != self.device:
                raise ArgumentError(f"{name}: expected a {self.device} tensor, got a {t.device.type} one (this is a "
                                    f"library of calibc's {self.device} target)")
            if t.device != q.device:
                raise ArgumentError(f"{name}: expected a tensor on q's device {q.device}, got one on {t.device}")
            if t.dtype != q.dtype or t.dtype not in self.dtypes:
                raise ArgumentError(f"{name}: q, k, v and out must all be "
                                    + " or all ".join(str(d).removeprefix("torch.") for d in self.dtypes)
                                    + f", got {t.dtype}")
            if t.stride(3) != 1 and t.shape[3] > 1:
                raise ArgumentError(f"{name}: the head dimension must be contiguous (stride 1), got stride "
                                    f"{t.stride(3)}")
        check_output(out, {"q": q, "k": k, "v": v})
        if callable(tail):  # arguments that depend on the checked tensors (the FP8 workspace)
            tail = tail(q)
        args = (*lead, _abi.int32("dtype", self.dtypes[q.dtype]), *(t.data_ptr() for t in tensors), *sizes(q, layout),
                *(strides(t, layout, name) for name, t in zip(("q", "k", "v", "out"), tensors)), *tail)
        status = self._launch(fn, args, q.device)
        if status != 0:
            raise CalibError(status)
        self.launches += 1
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
