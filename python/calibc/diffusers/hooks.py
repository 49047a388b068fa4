"""What the recorder, the calibrator and the sparse processor share: the timestep and token
grid the transformer receives, and stepping in front of the attention function of its
self-attention (the models of models.py).

All three wrap the processor of each block's `attn1` and step in front of the model module's
`dispatch_attention_fn` for the duration of its call, so they see Q, K, V exactly as the kernel
would (after the QK norm and the rotary embedding, (B, S, H, D)) and leave the rest of the
processor — projections, output layer — untouched.

The module's function is replaced once, while any wrapper is installed, by a replacement that
hands the call to the wrapper whose processor is running or to the original (`_Dispatch`). Swapping
the module global on every call instead is invisible to torch.compile: dynamo reads the global of
the inlined processor before its own pending store, so a compiled model never reached calibc.
"""

import importlib
import inspect

import numpy as np

from .models import CallArguments, ModelError, grid_of, model_of


class Timesteps:
    """What the transformer receives at each call: its `timestep` tensor (`current`, which the
    sparse processor hands to the kernels as it is: no host read) and the call's token grid
    (`grid`: frames, height, width).

    With `track=True` (the recorder and the calibrator) it also numbers the steps of a generation:
    a step begins where the timestep's value changes, so guidance as separate calls (the same
    timestep twice) is one step and `first_call` marks its first call; `timesteps` maps each step
    to its value, as masks.json's model_timesteps records it. `reset()` starts a generation."""

    def __init__(self, transformer, track=False):
        self.track, self.current, self.grid = track, None, None
        model, arguments = model_of(transformer), CallArguments(transformer)
        self.reset()

        def seen(module, args, kwargs):
            self.grid = grid_of(model, transformer, arguments, args, kwargs)
            self.current = arguments.value("timestep", args, kwargs)
            if self.track:
                self._advance(self.current)

        self._hook = transformer.register_forward_pre_hook(seen, with_kwargs=True)

    def reset(self):
        self.step, self.value, self.first_call, self.timesteps = -1, None, False, {}

    def _advance(self, timestep):
        if timestep is None:
            raise ValueError("the transformer was called without a timestep")
        value = float_value(timestep.detach().reshape(-1).amax().float().item())
        self.first_call = value != self.value
        if self.first_call:
            self.step, self.value = self.step + 1, value
            self.timesteps[self.step] = value

    def recorded_step(self, steps=None):
        """The step, when this call is its step's first and `steps` (None: every step) holds it."""
        return self.step if self.first_call and (steps is None or self.step in steps) else None

    def remove(self):
        self._hook.remove()


def float_value(x):
    """`x` rounded to a C float, as calibc keeps model timesteps."""
    return float(np.float32(x))


class Intercept:
    """A processor running `inner` with `attend(original, query, key, value, *args, **kwargs)`
    in place of the attention function. The attributes diffusers sets on processors
    (`_parallel_config` by `enable_parallelism`, `_attention_backend` by `set_attention_backend`)
    pass through to `inner`, so wrapping works before or after either."""

    def __init__(self, inner, attend):
        self.inner, self.attend = inner, attend

    @property
    def _parallel_config(self):
        return getattr(self.inner, "_parallel_config", None)

    @_parallel_config.setter
    def _parallel_config(self, value):
        self.inner._parallel_config = value

    @property
    def _attention_backend(self):
        return getattr(self.inner, "_attention_backend", None)

    @_attention_backend.setter
    def _attention_backend(self, value):
        self.inner._attention_backend = value

    def __call__(self, attn, *args, **kwargs):
        outer = _state.intercept
        _state.intercept = self
        try:
            return self.inner(attn, *args, **kwargs)
        finally:
            _state.intercept = outer


def _intercept_of(inner):
    """An Intercept of `inner` whose __call__ shows inner's signature: diffusers' attention
    modules drop the keywords a processor's signature does not name (image_rotary_emb, say)."""
    cls = type(inner)
    made = _intercepts.get(cls)
    if made is None:
        def call(self, attn, *args, **kwargs):
            return Intercept.__call__(self, attn, *args, **kwargs)

        call.__signature__ = inspect.signature(cls.__call__)
        made = _intercepts[cls] = type(f"Calib{cls.__name__}", (Intercept,), {"__call__": call})
    return made


_intercepts = {}


class _Dispatch:
    """The replacement of one model module's attention function: `wrappers` installed Intercepts
    share it, `original` is the function it replaced, `replacement` the function put in its
    place. Instance attributes from the start: dynamo guards on which ones an instance holds, and
    one appearing later would recompile the model."""

    def __init__(self, original):
        self.wrappers, self.original = 0, original

        def replacement(query, key, value, *args, **kw):
            if _state.intercept is None:
                return original(query, key, value, *args, **kw)
            return _state.intercept.attend(original, query, key, value, *args, **kw)

        self.replacement = replacement


class _Running:
    """The Intercept whose processor call is in progress (None outside one), for every module."""

    def __init__(self):
        self.intercept = None


_state = _Running()
_dispatches = {}  # module name -> _Dispatch while any wrapper of that module's models is installed


def _install(module_name):
    module = importlib.import_module(module_name)
    d = _dispatches.get(module_name)
    if d is None:
        d = _dispatches[module_name] = _Dispatch(module.dispatch_attention_fn)
        module.dispatch_attention_fn = d.replacement
    d.wrappers += 1


def _uninstall(module_name):
    d = _dispatches[module_name]
    d.wrappers -= 1
    if d.wrappers == 0:
        importlib.import_module(module_name).dispatch_attention_fn = d.original
        del _dispatches[module_name]


def heads_first(x):
    """Batch element 0 of a (B, S, H, D) tensor as an (H, S, D) view, no copy."""
    return x[0].transpose(0, 1).detach()


def wrap_self_attention(transformer, make_attend, layers=None):
    """Wraps the self-attention of block i for i in `layers` (default all); returns a function
    that undoes it. Raises ModelError for a transformer calibc does not know."""
    model = model_of(transformer)
    blocks = getattr(transformer, model.blocks)
    for i, block in enumerate(blocks):
        inner = block.attn1.processor
        while isinstance(inner, Intercept):
            inner = inner.inner
        if type(inner).__name__ not in model.processors:
            # Another processor need not call the function calibc steps into: calls would run
            # without calibc and nothing would say so.
            raise ModelError(f"{model.blocks}[{i}].attn1 runs {type(inner).__name__}, not the model's own "
                             f"{model.processors[0]}, which calibc steps into; restore it (set_attn_processor) first")
    originals = {}
    _install(model.module)
    for i, block in enumerate(blocks):
        if layers is None or i in layers:
            attn = block.attn1
            originals[i] = attn.processor
            attn.set_processor(_intercept_of(attn.processor)(attn.processor, make_attend(i)))

    def restore():
        for i, processor in originals.items():
            blocks[i].attn1.set_processor(processor)
        _uninstall(model.module)

    return restore
