"""Calibrated sparse self-attention for diffusers' WanTransformer3DModel, on CPU and CUDA.

    from calibc.diffusers import CalibAttention
    sparse = CalibAttention(pipe.transformer, "kernels/libcalibkernels.so", calls_per_step=2)
    sparse = CalibAttention(pipe.transformer, cuda_library="kernels-gpu/libcalibcuda.so")   # GPU
    pipe(...)            # blocks[i].attn1 runs the compiled plans of (step, layer) in one layer call
    sparse.remove()

Each self-attention call is one `torch.ops.calibc.attention_layer` (all batch elements and heads
of the (step, layer), on diffusers' (B, S, H, D) tensors without a copy): CPU tensors run
`library`, CUDA tensors `cuda_library` (built by `calibc compile --target cuda --shared`) on the
current stream, each in the dtypes its target takes (`calibc.library.DTYPES`). Where there is no plan (another step, another
sequence length, an attention mask, no library for the device, another dtype, ring attention, a
GPU under context parallelism), the call falls back to the model's own attention
function; `fallbacks` counts those calls. With `compare=True` every sparse call also runs the
original and records the relative error per (step, layer) in `errors`, and `seconds`
accumulates the wall time of both.

Context parallelism: under `transformer.enable_parallelism(config=ContextParallelConfig(
ulysses_degree=W))` (before or after this processor is installed) each rank holds S/W tokens of
every head; diffusers' own Ulysses all-to-all gives this rank all S tokens of heads
r·H/W … (r+1)·H/W − 1 (r: its rank in the Ulysses mesh), which run with the plans of those
global head indices (`calib_attention_heads`, one call), and the all-to-all back returns the
rank's tokens of every head.
"""

import time

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
        self.errors, self.seconds = {}, {"sparse": 0.0, "original": 0.0}
        self._restore = wrap_self_attention(transformer, self._attend_for)

    def remove(self):
        self._restore()
        self.counter.remove()

    def _kernels_for(self, device):
        return {"cpu": self.kernels, "cuda": self.cuda_kernels}.get(device.type)

    def _usable(self, layer, query, key, value, args, kwargs):
        k = self._kernels_for(query.device)
        if k is None:
            return False
        world = 1
        if kwargs.get("parallel_config") is not None:
            # The Ulysses path is the CPU's (Tests/python/test_context_parallel.py); a GPU falls back.
            if not isinstance(k, Kernels):
                return False
            try:
                cp = _ulysses(kwargs["parallel_config"])
            except NotImplementedError:
                return False
            world = 1 if cp is None else cp.ulysses_degree
        mask = kwargs.get("attn_mask", args[0] if args else None)
        _, tokens, heads, dim = query.shape
        return (mask is None and not kwargs.get("is_causal", False) and kwargs.get("scale") is None
                and query.dtype in k.dtypes and query.dtype == key.dtype == value.dtype
                and key.shape == query.shape == value.shape
                and tokens * world == k.tokens and dim == k.head_dim and heads == k.heads and heads % world == 0
                and (k.has_layer_entry or world > 1) and k.has_plan(self.counter.step, layer))

    def _attend_for(self, layer):
        def attend(original, query, key, value, *args, **kwargs):
            if not self._usable(layer, query, key, value, args, kwargs):
                self.fallbacks += 1
                return original(query, key, value, *args, **kwargs)
            self.calls += 1
            step = self.counter.step
            start = time.perf_counter()
            cp = _ulysses(kwargs.get("parallel_config"))
            if cp is None:
                out = attention_layer(query, key, value, self._kernels_for(query.device).path, step, layer)
            else:
                out = self._ulysses_attention(step, layer, query, key, value, kwargs["parallel_config"])
            self.seconds["sparse"] += time.perf_counter() - start
            if self.compare:
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
        kernels = self.kernels

        def forward_op(ctx, q, k, v, *args, **kwargs):
            # q, k, v: (B, S, H / W, D), every token of this rank's heads.
            first_head = cp._ulysses_local_rank * q.shape[2]
            return kernels.attention_heads(step, layer, first_head, q, k, v)

        return TemplatedUlyssesAttention.apply(query, key, value, None, 0.0, False, None, False, False, forward_op,
                                               None, parallel_config)
