"""What the recorder, the calibrator and the sparse processor share: the timestep the
transformer receives, and stepping in front of the attention function of diffusers' Wan
self-attention.

Both wrap the processor of `blocks[i].attn1` and step in front of
`transformer_wan.dispatch_attention_fn` for the duration of its call, so they see Q, K, V exactly
as the kernel would (after the RMSNorm and the rotary embedding, (B, S, H, D)) and leave the rest
of the processor — projections, output layer — untouched.

The module's function is replaced once, while any wrapper is installed, by `_dispatch`, which
hands the call to the wrapper whose processor is running or to the original (`_Dispatch`). Swapping
the module global on every call instead is invisible to torch.compile: dynamo reads the global of
the inlined processor before its own pending store, so a compiled model never reached calibc.
"""

import diffusers.models.transformers.transformer_wan as wan
import numpy as np


class Timesteps:
    """What the transformer receives at each call: its `timestep` tensor (`current`, which the
    sparse processor hands to the kernels as it is: no host read) and the latents' grid.

    With `track=True` (the recorder and the calibrator) it also numbers the steps of a generation:
    a step begins where the timestep's value changes, so guidance as separate calls (the same
    timestep twice) is one step and `first_call` marks its first call; `timesteps` maps each step
    to its value, as masks.json's model_timesteps records it. `reset()` starts a generation."""

    def __init__(self, transformer, track=False):
        self.track, self.current, self.latent_shape = track, None, None
        self.patch = transformer.config.patch_size
        self.reset()

        def seen(module, args, kwargs):
            latents = kwargs.get("hidden_states", args[0] if args else None)
            self.latent_shape = tuple(latents.shape)
            self.current = kwargs.get("timestep", args[1] if len(args) > 1 else None)
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

    @property
    def grid(self):
        """The latents' frames, height and width in tokens (after patching)."""
        _, _, frames, height, width = self.latent_shape
        return {"frames": frames // self.patch[0], "height": height // self.patch[1], "width": width // self.patch[2]}

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

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None, **kwargs):
        outer = _state.intercept
        _state.intercept = self
        try:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        finally:
            _state.intercept = outer


class _Dispatch:
    """The replacement of transformer_wan's attention function: `wrappers` installed Intercepts
    share it, `original` is the function it replaced, `intercept` the one whose processor call is
    in progress (None outside one). Instance attributes from the start: dynamo guards on which
    ones the instance holds, and one appearing later would recompile the model."""

    def __init__(self):
        self.wrappers, self.original, self.intercept = 0, None, None


_state = _Dispatch()


def _dispatch(query, key, value, *args, **kw):
    if _state.intercept is None:
        return _state.original(query, key, value, *args, **kw)
    return _state.intercept.attend(_state.original, query, key, value, *args, **kw)


def _install():
    if _state.wrappers == 0:
        _state.original = wan.dispatch_attention_fn
        wan.dispatch_attention_fn = _dispatch
    _state.wrappers += 1


def _uninstall():
    _state.wrappers -= 1
    if _state.wrappers == 0:
        wan.dispatch_attention_fn = _state.original


def heads_first(x):
    """Batch element 0 of a (B, S, H, D) tensor as an (H, S, D) view, no copy."""
    return x[0].transpose(0, 1).detach()


def wrap_self_attention(transformer, make_attend, layers=None):
    """Wraps blocks[i].attn1 for i in `layers` (default all); returns a function that undoes it."""
    originals = {}
    _install()
    for i, block in enumerate(transformer.blocks):
        if layers is None or i in layers:
            originals[i] = block.attn1.processor
            block.attn1.set_processor(Intercept(block.attn1.processor, make_attend(i)))

    def restore():
        for i, processor in originals.items():
            transformer.blocks[i].attn1.set_processor(processor)
        _uninstall()

    return restore
