"""What the recorder, the calibrator and the sparse processor share: the timestep and token
grid the transformer receives, and stepping in front of the attention function of its
self-attention (the models of models.py).

All three wrap the processor of each self-attention module and step in front of the model
module's attention function for the duration of its call, so they see Q, K, V exactly as the
kernel would (after the QK norm and the rotary embedding) and leave the rest of the processor —
projections, output layer — untouched. Whatever the model's layout, the wrapper's
`attend(original, query, key, value, *args, **kwargs)` gets (B, S, H, D) views (no copy) and
returns (B, S, H, D); `original` takes and returns the same.

The module's function is replaced once, while any wrapper is installed, by a replacement that
hands the call to the wrapper whose processor is running or to the original (`_Dispatch`). Swapping
the module global on every call instead is invisible to torch.compile: dynamo reads the global of
the inlined processor before its own pending store, so a compiled model never reached calibc. A
model that calls `F.scaled_dot_product_attention` (attention_processor's `F`) gets a copy of
torch.nn.functional as that module's `F`, with the replacement in it.
"""

import importlib
import inspect
import types

import numpy as np
import torch

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
    share it, `original` is what the module held (its function, or attention_processor's `F`),
    `replacement` what is put in its place. Instance attributes from the start: dynamo guards on
    which ones an instance holds, and one appearing later would recompile the model."""

    def __init__(self, original, function):
        self.wrappers, self.original = 0, original
        if function == "dispatch_attention_fn":
            def replacement(query, key, value, *args, **kw):
                if _state.intercept is None:
                    return original(query, key, value, *args, **kw)
                return _state.intercept.attend(original, query, key, value, *args, **kw)

            self.replacement = replacement
            return
        sdpa = original.scaled_dot_product_attention

        def heads_second(query, key, value, *args, **kw):  # (B, S, H, D) views in and out, as attend has them
            return sdpa(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), *args, **kw).transpose(1, 2)

        def scaled_dot_product_attention(query, key, value, *args, **kw):
            if _state.intercept is None:
                return sdpa(query, key, value, *args, **kw)
            return _state.intercept.attend(heads_second, query.transpose(1, 2), key.transpose(1, 2),
                                           value.transpose(1, 2), *args, **kw).transpose(1, 2)

        functional = types.ModuleType(original.__name__)
        functional.__dict__.update(original.__dict__)
        functional.scaled_dot_product_attention = scaled_dot_product_attention
        self.replacement = functional


class _Running:
    """The Intercept whose processor call is in progress (None outside one), for every module."""

    def __init__(self):
        self.intercept = None


_state = _Running()
_dispatches = {}  # (module name, function) -> _Dispatch while any wrapper of that module's models is installed


def _install(model):
    module = importlib.import_module(model.module)
    name = model.function.split(".")[0]
    d = _dispatches.get((model.module, name))
    if d is None:
        d = _dispatches[(model.module, name)] = _Dispatch(getattr(module, name), model.function)
        setattr(module, name, d.replacement)
    d.wrappers += 1


def _uninstall(model):
    name = model.function.split(".")[0]
    d = _dispatches[(model.module, name)]
    d.wrappers -= 1
    if d.wrappers == 0:
        setattr(importlib.import_module(model.module), name, d.original)
        del _dispatches[(model.module, name)]


def heads_first(x):
    """Batch element 0 of a (B, S, H, D) tensor as an (H, S, D) view, no copy."""
    return x[0].transpose(0, 1).detach()


def layout_of(model, grid, tokens):
    """A call's layout as masks.json and recordings give it: the video grid (frames, height,
    width), text_tokens (the rest of its `tokens`; 0 for video alone) and, where there is text,
    text_position."""
    layout = dict(zip(("frames", "height", "width"), grid))
    layout["text_tokens"] = tokens - grid[0] * grid[1] * grid[2]
    if layout["text_tokens"]:
        layout["text_position"] = "first" if model.text == "first" else "last"
    return layout


def text_lengths(model, mask, tokens, text_tokens):
    """The valid text tokens of each batch element, from the key mask a joint model's attention
    call carries ((B, …, S) bool, True where a key takes part: a prefix of the sequence, as the
    models build it), or None when the call has none. On the mask's device, no synchronisation."""
    if model.text != "last" or mask is None:
        return None
    if mask.dtype != torch.bool or mask.shape[-1] != tokens:
        raise ValueError(f"expected a boolean key mask of {tokens} keys, got {mask.dtype} {tuple(mask.shape)}")
    return mask.reshape(mask.shape[0], -1, tokens)[:, 0].sum(-1) - (tokens - text_tokens)


def _set_processor(attn, processor):
    # MochiAttention holds its processor in a plain attribute, without Attention's setter.
    if hasattr(attn, "set_processor"):
        attn.set_processor(processor)
    else:
        attn.processor = processor


def wrap_self_attention(transformer, make_attend, layers=None):
    """Wraps the self-attention of layer i for i in `layers` (default all; models.py numbers the
    layers); returns a function that undoes it. Raises ModelError for a transformer calibc does
    not know."""
    model = model_of(transformer)
    modules = model.attention_modules(transformer)
    for path, attn in modules:
        inner = attn.processor
        while isinstance(inner, Intercept):
            inner = inner.inner
        if type(inner).__name__ not in model.processors + ((model.replacement,) if model.replacement else ()):
            # Another processor need not call the function calibc steps into: calls would run
            # without calibc and nothing would say so.
            raise ModelError(f"{path} runs {type(inner).__name__}, not the model's own {model.processors[0]}, which "
                             "calibc steps into; restore it (set_attn_processor) first")
    originals = {}
    _install(model)
    for i, (_, attn) in enumerate(modules):
        if layers is None or i in layers:
            originals[i] = inner = attn.processor
            base = inner
            while isinstance(base, Intercept):
                base = base.inner
            if model.replacement and type(base).__name__ != model.replacement:
                from . import joint

                inner = getattr(joint, model.replacement)()
            _set_processor(attn, _intercept_of(inner)(inner, make_attend(i)))

    def restore():
        for i, processor in originals.items():
            _set_processor(modules[i][1], processor)
        _uninstall(model)

    return restore
