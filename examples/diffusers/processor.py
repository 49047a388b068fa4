"""Calibrated sparse self-attention for diffusers' WanTransformer3DModel, on CPU.

    sparse = CalibAttention(pipe.transformer, "kernels/libcalibkernels.so", calls_per_step=2)
    pipe(...)            # blocks[i].attn1 runs the compiled plan of (step, layer, head)
    sparse.remove()

Where the library has no plan (another step, another sequence length, an attention mask, a
GPU tensor, a dtype other than float32/bfloat16), the call falls back to the model's own
attention function; `fallbacks` counts those calls. With `compare=True` every sparse call
also runs the original and records the relative error per (step, layer) in `errors`, and
`seconds` accumulates the wall time of both.
"""

import time

import torch

from calibkernels import CalibKernels
from wan_hooks import StepCounter, wrap_self_attention


class CalibAttention:
    def __init__(self, transformer, library, calls_per_step=1, compare=False):
        self.kernels = CalibKernels(library) if isinstance(library, str) else library
        self.counter = StepCounter(transformer, calls_per_step)
        self.compare, self.fallbacks, self.calls = compare, 0, 0
        self.errors, self.seconds = {}, {"sparse": 0.0, "original": 0.0}
        self._restore = wrap_self_attention(transformer, self._attend_for)

    def remove(self):
        self._restore()
        self.counter.remove()

    def _usable(self, layer, query, key, value, args, kwargs):
        k = self.kernels
        step = self.counter.step
        mask = kwargs.get("attn_mask", args[0] if args else None)
        _, tokens, heads, dim = query.shape
        return (mask is None and not kwargs.get("is_causal", False) and kwargs.get("scale") is None
                and query.device.type == "cpu" and query.dtype in (torch.float32, torch.bfloat16)
                and query.dtype == key.dtype == value.dtype and key.shape == query.shape == value.shape
                and tokens == k.tokens and dim == k.head_dim and heads == k.heads and k.has_plan(step, layer, 0))

    def _attend_for(self, layer):
        def attend(original, query, key, value, *args, **kwargs):
            if not self._usable(layer, query, key, value, args, kwargs):
                self.fallbacks += 1
                return original(query, key, value, *args, **kwargs)
            self.calls += 1
            start = time.perf_counter()
            # (B, S, H, D) → (B, H, S, D) views: rows stay strided, dims contiguous.
            out = self.kernels.attention(self.counter.step, layer, 0, query.transpose(1, 2), key.transpose(1, 2),
                                         value.transpose(1, 2)).transpose(1, 2).to(query.dtype)
            self.seconds["sparse"] += time.perf_counter() - start
            if self.compare:
                start = time.perf_counter()
                reference = original(query, key, value, *args, **kwargs)
                self.seconds["original"] += time.perf_counter() - start
                error = ((out.float() - reference.float()).norm() / reference.float().norm()).item()
                self.errors[(self.counter.step, layer)] = error
            return out

        return attend
