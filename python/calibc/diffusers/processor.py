"""Calibrated sparse self-attention for diffusers' video transformers (models.py), on CPU and CUDA.

    from calibc.diffusers import CalibAttention
    sparse = CalibAttention(pipe.transformer, "kernels/libcalibkernels.so")
    sparse = CalibAttention(pipe.transformer, cuda_library="kernels-gpu/libcalibcuda.so")   # GPU
    sparse = CalibAttention(pipe.transformer, cuda_library="artifact/")   # several token grids
    sparse = CalibAttention(pipe.transformer, cuda_library=..., precision="fp8")   # products on e4m3
    sparse = CalibAttention(pipe.transformer, cuda_library=...,
                            precision=lambda layer: None if layer in (0, 39) else "fp8")   # per layer
    pipe(...)            # each block's attn1 runs the compiled plans of (step, layer) in one layer call
    sparse.remove()

Steps: each call runs the step whose model timestep (masks.json's model_timesteps, recorded by
the calibrator) is nearest to the timestep the transformer receives, ties to the earlier step
(`Library.step_index`). Nothing is counted: guidance batched or as separate calls, another
scheduler or number of steps, and any number of generations in a row all pick by timestep.

Each self-attention call is one `torch.ops.calibc.attention_at` (all batch elements and heads of
the layer, on diffusers' (B, S, H, D) tensors without a copy, the step chosen from the timestep
tensor on its device): CPU tensors run `library`, CUDA tensors `cuda_library` (built by `calibc
compile --target cuda --shared`) on the current stream, each in the dtypes its target takes
(`calibc.library.DTYPES`). Where the call cannot run the plans (another sequence length, an
attention mask, no library for the device, another dtype, ring attention), it falls back to the
model's own attention function and says why in a warning, once per kind of reason; `fallbacks`
counts those calls and `fallback_reasons` counts them by kind (under torch.compile: once per
compiled call site, as the decision is made while tracing). `calls` counts the layer calls the
libraries ran.

torch.compile traces the processor like the rest of the model (the kernel is a custom op whose
step is a tensor), so the graph does not change with the step: compiled once, and under
mode="reduce-overhead" captured once. `prepare()` (done here for a transformer already on a
GPU; call it again after moving the model) puts every table on the device first, since nothing
may be uploaded while a CUDA graph is captured. With `compare=True` every sparse call also runs
the original and records the relative error per (step, layer) in `errors` (reading the step on
the host), and `seconds` accumulates the wall time of both.

Precision: None (the default) runs the products in the tensors' dtype; "fp8" runs Q·Kᵀ and P·V
on e4m3 with fp32 accumulation, "fp8-pv" P·V only (the CUDA target; docs/gpu.md "FP8" measures
what each costs in accuracy and gives in speed), for every layer, or for the layers where a
function of the layer index says so.

Context parallelism: under `transformer.enable_parallelism(config=ContextParallelConfig(
ulysses_degree=W))` (before or after this processor is installed) each rank holds S/W tokens of
every head; diffusers' own Ulysses all-to-all gives this rank all S tokens of heads
r·H/W … (r+1)·H/W − 1 (r: its rank in the Ulysses mesh), which run with the plans of those
global head indices (one `attention_at` call with the rank's first head), and the all-to-all
back returns the rank's tokens of every head.
"""

import itertools
import time
import warnings
import weakref

import torch

from ..artifact import Artifact
from ..cuda import CudaKernels, load_cuda
from ..kernels import Kernels, load
from ..library import PRECISIONS
from ..ops import attention_at
from .hooks import Timesteps, text_lengths, wrap_self_attention
from .models import model_of


def _ulysses(parallel_config):
    """The context-parallel config when it is Ulysses only (which this processor supports), else
    None; raises for ring attention, which falls back."""
    cp = getattr(parallel_config, "context_parallel_config", None)
    if cp is None:
        return None
    if cp.ring_degree > 1 or cp.ulysses_anything:
        raise NotImplementedError("ring attention")
    return cp


# The processors by key, for _dense_call: under torch.compile dynamo runs it once while tracing a
# call site and treats its result as a constant, so the warning is given at compile time and no
# count becomes a guard (counting in traced code made dynamo recompile at every call).
_processors = weakref.WeakValueDictionary()
_keys = itertools.count()


@torch._dynamo.assume_constant_result
def _dense_call(key, kind, reason):
    processor = _processors.get(key)
    if processor is not None:
        processor._fell_back(kind, reason)
    return 0


def _artifact(given, cls, load_path):
    """`given` as an Artifact: None, an Artifact, a `cls` already loaded, or the path of a
    library or of an artifact directory."""
    if given is None or isinstance(given, Artifact):
        return given
    if isinstance(given, cls):
        return Artifact([(None, given)], given.path)
    return Artifact.load(given, load_path)


class CalibAttention:
    def __init__(self, transformer, library=None, compare=False, cuda_library=None, precision=None):
        if library is None and cuda_library is None:
            raise ValueError("give the CPU kernel library, the CUDA one (cuda_library=), or both")
        if not (precision in PRECISIONS or callable(precision)):
            raise ValueError(f"precision: expected None, 'fp8', 'fp8-pv' or a function of the layer index returning "
                             f"one of them, got {precision!r}")
        if precision is not None and cuda_library is None:
            raise ValueError(f"precision {precision!r} runs on the CUDA target: give cuda_library=")
        self.precision = precision
        self.kernels = _artifact(library, Kernels, load)
        self.cuda_kernels = _artifact(cuda_library, CudaKernels, load_cuda)
        self.model = model_of(transformer)
        self.timesteps = Timesteps(transformer)
        self.compare, self.fallbacks = compare, 0
        self.fallback_reasons = {}  # why calls ran dense: {kind: calls}, kinds as _fallback_reason names them
        self.errors, self.seconds = {}, {"sparse": 0.0, "original": 0.0}
        self.calls = 0
        self._key = next(_keys)
        _processors[self._key] = self
        self._restore = wrap_self_attention(transformer, self._attend_for)
        device = next(transformer.parameters()).device
        if device.type in ("cpu", "cuda") and self._kernels_for(device) is not None:
            self.prepare(device)

    @property
    def calls(self):
        """Layer calls its libraries ran since it was installed (or `calls` was set to 0),
        counted where they launch, so under torch.compile too."""
        return self._launches() - self._first_launch

    @calls.setter
    def calls(self, value):
        self._first_launch = self._launches() - value

    def _launches(self):
        return sum(lib.launches for k in (self.kernels, self.cuda_kernels) if k is not None for lib in k.libraries)

    def prepare(self, device):
        """Puts everything the kernels for `device` read on it (the timestep table; on a GPU every
        work list), so later calls only launch: call it before capturing CUDA graphs on a device
        the transformer was moved to after this processor was installed."""
        for library in self._kernels_for(torch.device(device)).libraries:
            library.prepare(device)

    def remove(self):
        self._restore()
        self.timesteps.remove()

    def _kernels_for(self, device):
        return {"cpu": self.kernels, "cuda": self.cuda_kernels}.get(device.type)

    def _fallback_reason(self, layer, query, key, value, args, kwargs):
        """The library this call runs, or why it cannot run compiled plans as (kind, words a user
        acts on): (library, None) or (None, reason)."""
        reason = self._reason(layer, query, key, value, args, kwargs)
        return (None, reason) if isinstance(reason, tuple) else (reason, None)

    def _reason(self, layer, query, key, value, args, kwargs):
        artifact = self._kernels_for(query.device)
        if artifact is None:
            return "library", f"no kernel library for {query.device.type} tensors was given"
        world = 1
        if kwargs.get("parallel_config") is not None:
            try:
                cp = _ulysses(kwargs["parallel_config"])
            except NotImplementedError:
                return "ring", "ring attention (context parallelism other than Ulysses) is not supported"
            world = 1 if cp is None else cp.ulysses_degree
        mask = kwargs.get("attn_mask", args[0] if args else None)
        # A joint model's key mask over the call's sequence: the padded text, which the kernels take as lengths.
        key_mask = (self.model.text == "last" and mask is not None and mask.dtype == torch.bool
                    and mask.shape[-1] == query.shape[1])
        if (mask is not None and not key_mask) or kwargs.get("is_causal", False) or kwargs.get("scale") is not None:
            return "mask", "the call has an attention mask, is causal or sets its own scale"
        if key_mask and world > 1:
            return "ring", "context parallelism with padded text is not supported"
        if query.dtype not in artifact.dtypes or not query.dtype == key.dtype == value.dtype:
            return "dtype", (f"dtype {query.dtype} (the {query.device.type} library takes "
                             f"{', '.join(map(str, artifact.dtypes))})")
        _, tokens, heads, dim = query.shape
        grid = self.timesteps.grid
        k = artifact.pick(tokens * world, grid)
        if not (key.shape == query.shape == value.shape and k is not None and dim == k.head_dim and heads == k.heads
                and heads % world == 0):
            shown = f"grid {' × '.join(map(str, grid))}, " if grid else ""
            return "shape", (f"shape (tokens {tokens * world}, {shown}heads {heads}, head_dim {dim}) has no plans: "
                             f"{artifact.path} holds {artifact.shapes()} of {artifact.heads} heads, head_dim "
                             f"{artifact.head_dim}")
        if world > 1 and isinstance(k, CudaKernels) and not hasattr(k.lib, "calib_cuda_attention_heads"):
            return "abi", f"{k.path} predates the head-range entry context parallelism needs (recompile it)"
        if not (k.has_layer_entry or world > 1):
            return "abi", f"{k.path} has C ABI {k.abi_version}, without the layer entries (recompile it)"
        if isinstance(k, CudaKernels) and not hasattr(k.lib, "calib_cuda_attention_indexed"):
            return "abi", f"{k.path} predates the step chosen on the device (CUDA ABI 3; recompile it)"
        if not 0 <= layer < k.layers:
            return "layer", f"layer {layer} is beyond the library's {k.layers} layers"
        if self.timesteps.current is None:
            return "timestep", "the transformer was called without a timestep"
        # The text beside the video tokens must be where the library's plans put it.
        text = tokens * world - grid[0] * grid[1] * grid[2] if grid else 0
        want = (text, self.model.text == "first") if text else (0, False)
        have = (k.text_tokens, k.text_first) if k.text_tokens else (0, False)
        if want != have:
            def words(n, first):
                return f"{n} text tokens {'first' if first else 'last'}" if n else "no text"
            return "text", (f"the call's sequence has {words(*want)} beside its {' × '.join(map(str, grid))} video "
                            f"tokens; {k.path} was compiled for {words(*have)}")
        if key_mask and not hasattr(k.lib, "calib_attention_joint") and not hasattr(k.lib, "calib_cuda_attention_joint"):
            return "abi", f"{k.path} predates padded text (ABI 4; recompile it)"
        return k

    def _fell_back(self, kind, reason):
        """Counts a dense call and says why, once per kind of reason (the first call's words): a
        silent fallback hides lost speed."""
        self.fallbacks += 1
        self.fallback_reasons[kind] = self.fallback_reasons.get(kind, 0) + 1
        if self.fallback_reasons[kind] == 1:
            warnings.warn(f"calibc: attention runs dense: {reason}", stacklevel=5)

    def _precision_of(self, layer):
        precision = self.precision(layer) if callable(self.precision) else self.precision
        if precision not in PRECISIONS:
            raise ValueError(f"precision({layer}): expected None, 'fp8' or 'fp8-pv', got {precision!r}")
        return precision

    def _attend_for(self, layer):
        precision = self._precision_of(layer)

        def attend(original, query, key, value, *args, **kwargs):
            kernels, reason = self._fallback_reason(layer, query, key, value, args, kwargs)
            if reason is not None:
                _dense_call(self._key, *reason)
                return original(query, key, value, *args, **kwargs)
            timestep = self.timesteps.current
            # Timed only with compare: a clock read is a graph break under torch.compile.
            start = time.perf_counter() if self.compare else None
            cp = _ulysses(kwargs.get("parallel_config"))
            if cp is None:
                mask = kwargs.get("attn_mask", args[0] if args else None)
                lengths = text_lengths(self.model, mask, query.shape[1], kernels.text_tokens)
                out = attention_at(query, key, value, kernels.path, timestep, layer, text_lengths=lengths,
                                   precision=precision)
            else:
                out = self._ulysses_attention(kernels, timestep, layer, query, key, value, kwargs["parallel_config"],
                                              precision)
            if self.compare:
                step = kernels.steps[int(kernels.step_index(timestep))]
                self.seconds["sparse"] += time.perf_counter() - start
                start = time.perf_counter()
                reference = original(query, key, value, *args, **kwargs)
                self.seconds["original"] += time.perf_counter() - start
                error = ((out.float() - reference.float()).norm() / reference.float().norm()).item()
                self.errors[(step, layer)] = error
            return out

        return attend

    def _ulysses_attention(self, kernels, timestep, layer, query, key, value, parallel_config, precision):
        from diffusers.models.attention_dispatch import TemplatedUlyssesAttention

        cp = parallel_config.context_parallel_config
        path = kernels.path

        def forward_op(ctx, q, k, v, *args, **kwargs):
            # q, k, v: (B, S, H / W, D), every token of this rank's heads.
            first_head = cp._ulysses_local_rank * q.shape[2]
            return attention_at(q, k, v, path, timestep, layer, first_head, precision=precision)

        return TemplatedUlyssesAttention.apply(query, key, value, None, 0.0, False, None, False, False, forward_op,
                                               None, parallel_config)
