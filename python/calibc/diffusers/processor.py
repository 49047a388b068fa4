"""Calibrated sparse self-attention for diffusers' WanTransformer3DModel, on CPU and CUDA.

    from calibc.diffusers import CalibAttention
    sparse = CalibAttention(pipe.transformer, "kernels/libcalibkernels.so", calls_per_step=2)
    sparse = CalibAttention(pipe.transformer, cuda_library="kernels-gpu/libcalibcuda.so")   # GPU
    pipe(...)            # blocks[i].attn1 runs the compiled plans of (step, layer) in one layer call
    sparse.remove()

Each self-attention call is one `torch.ops.calibc.attention_layer` (all batch elements and heads
of the (step, layer), on diffusers' (B, S, H, D) tensors without a copy): CPU tensors run
`library`, CUDA tensors `cuda_library` (built by `calibc compile --target cuda --shared`) on the
current stream, each in the dtypes its target takes (`calibc.library.DTYPES`). Where there is
no plan (another step, another sequence length, an attention mask, no library for the device,
another dtype, ring attention), the call falls back to the model's own attention function and
says why in a warning, once per kind of reason; `fallbacks` counts those calls and
`fallback_reasons` counts them by kind. Under torch.compile the processor is traced like the
rest of the model (the kernel is a custom op); the step is a Python int, so each step's first
call compiles the attention blocks again. With `compare=True` every sparse call also runs the
original and records the relative error per (step, layer) in `errors`, and `seconds`
accumulates the wall time of both.

Context parallelism: under `transformer.enable_parallelism(config=ContextParallelConfig(
ulysses_degree=W))` (before or after this processor is installed) each rank holds S/W tokens of
every head; diffusers' own Ulysses all-to-all gives this rank all S tokens of heads
r·H/W … (r+1)·H/W − 1 (r: its rank in the Ulysses mesh), which run with the plans of those
global head indices (`calib_attention_heads` or `calib_cuda_attention_heads`, one call), and the
all-to-all back returns the rank's tokens of every head.
"""

import time
import warnings

from ..cuda import CudaKernels, load_cuda
from ..kernels import Kernels, load
from ..ops import attention_layer
from .hooks import StepCounter, wrap_self_attention


def _ulysses(parallel_config):
    """The context-parallel config when it is Ulysses only (which this processor supports), else
    None; raises for ring attention, which falls back."""
    cp = getattr(parallel_config, "context_parallel_config", None)
    if cp is None:
        return None
    if cp.ring_degree > 1 or cp.ulysses_anything:
        raise NotImplementedError("ring attention")
    return cp


def _library(given, cls, load_path):
    """`given` as a loaded library: None, a `cls` already loaded, or the path to load."""
    return given if given is None or isinstance(given, cls) else load_path(given)


class CalibAttention:
    def __init__(self, transformer, library=None, calls_per_step=1, compare=False, cuda_library=None):
        if library is None and cuda_library is None:
            raise ValueError("give the CPU kernel library, the CUDA one (cuda_library=), or both")
        self.kernels = _library(library, Kernels, load)
        self.cuda_kernels = _library(cuda_library, CudaKernels, load_cuda)
        self.counter = StepCounter(transformer, calls_per_step)
        self.compare, self.fallbacks, self.calls = compare, 0, 0
        self.fallback_reasons = {}  # why calls ran dense: {kind: calls}, kinds as _fallback_reason names them
        self.errors, self.seconds = {}, {"sparse": 0.0, "original": 0.0}
        self._restore = wrap_self_attention(transformer, self._attend_for)

    def remove(self):
        self._restore()
        self.counter.remove()

    def _kernels_for(self, device):
        return {"cpu": self.kernels, "cuda": self.cuda_kernels}.get(device.type)

    def _fallback_reason(self, layer, query, key, value, args, kwargs):
        """Why this call cannot run the compiled plans, as (kind, words a user acts on), or None when it can."""
        k = self._kernels_for(query.device)
        if k is None:
            return "library", f"no kernel library for {query.device.type} tensors was given"
        world = 1
        if kwargs.get("parallel_config") is not None:
            try:
                cp = _ulysses(kwargs["parallel_config"])
            except NotImplementedError:
                return "ring", "ring attention (context parallelism other than Ulysses) is not supported"
            world = 1 if cp is None else cp.ulysses_degree
            if world > 1 and isinstance(k, CudaKernels) and not hasattr(k.lib, "calib_cuda_attention_heads"):
                return "abi", f"{k.path} predates the head-range entry context parallelism needs (recompile it)"
        mask = kwargs.get("attn_mask", args[0] if args else None)
        if mask is not None or kwargs.get("is_causal", False) or kwargs.get("scale") is not None:
            return "mask", "the call has an attention mask, is causal or sets its own scale"
        if query.dtype not in k.dtypes or not query.dtype == key.dtype == value.dtype:
            return "dtype", f"dtype {query.dtype} (the {query.device.type} library takes {', '.join(map(str, k.dtypes))})"
        _, tokens, heads, dim = query.shape
        if not (key.shape == query.shape == value.shape and tokens * world == k.tokens and dim == k.head_dim
                and heads == k.heads and heads % world == 0):
            return "shape", (f"shape (tokens {tokens * world}, heads {heads}, head_dim {dim}) is not the compiled "
                    f"(tokens {k.tokens}, heads {k.heads}, head_dim {k.head_dim})")
        if not (k.has_layer_entry or world > 1):
            return "abi", f"{k.path} has C ABI {k.abi_version}, without the layer entries (recompile it)"
        if not k.has_plan(self.counter.step, layer):
            return "step", (f"no plan for step {self.counter.step} of layer {layer} (the library has steps "
                    f"{', '.join(map(str, k.steps))} and {k.layers} layers)")
        return None

    def _fell_back(self, kind, reason):
        """Counts a dense call and says why, once per kind of reason (the first call's words): a
        silent fallback hides lost speed."""
        self.fallbacks += 1
        self.fallback_reasons[kind] = self.fallback_reasons.get(kind, 0) + 1
        if self.fallback_reasons[kind] == 1:
            warnings.warn(f"calibc: attention runs dense: {reason}", stacklevel=4)

    def _attend_for(self, layer):
        def attend(original, query, key, value, *args, **kwargs):
            reason = self._fallback_reason(layer, query, key, value, args, kwargs)
            if reason is not None:
                self._fell_back(*reason)
                return original(query, key, value, *args, **kwargs)
            self.calls += 1
            step = self.counter.step
            # Timed only with compare: a clock read is a graph break under torch.compile.
            start = time.perf_counter() if self.compare else None
            cp = _ulysses(kwargs.get("parallel_config"))
            if cp is None:
                out = attention_layer(query, key, value, self._kernels_for(query.device).path, step, layer)
            else:
                out = self._ulysses_attention(step, layer, query, key, value, kwargs["parallel_config"])
            if self.compare:
                self.seconds["sparse"] += time.perf_counter() - start
                start = time.perf_counter()
                reference = original(query, key, value, *args, **kwargs)
                self.seconds["original"] += time.perf_counter() - start
                error = ((out.float() - reference.float()).norm() / reference.float().norm()).item()
                self.errors[(step, layer)] = error
            return out

        return attend

    def _ulysses_attention(self, step, layer, query, key, value, parallel_config):
        from diffusers.models.attention_dispatch import TemplatedUlyssesAttention

        cp = parallel_config.context_parallel_config
        kernels = self._kernels_for(query.device)

        def forward_op(ctx, q, k, v, *args, **kwargs):
            # q, k, v: (B, S, H / W, D), every token of this rank's heads.
            first_head = cp._ulysses_local_rank * q.shape[2]
            return kernels.attention_heads(step, layer, first_head, q, k, v)

        return TemplatedUlyssesAttention.apply(query, key, value, None, 0.0, False, None, False, False, forward_op,
                                               None, parallel_config)
