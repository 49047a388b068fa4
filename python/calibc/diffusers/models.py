"""The diffusers transformers calibc reaches, and how (docs/python.md, "Models").

Each is described once here: the module whose `dispatch_attention_fn` its self-attention calls
(replaced while calibc is installed), the attribute holding its blocks (each block's `attn1` is
the self-attention), where its forward takes the latents and the timestep, and the token grid
of a call. Everything in calibc.diffusers goes through `model_of`, so a transformer calibc does
not know is refused by name before anything runs, never left to run dense unnoticed.
"""

import dataclasses
import inspect

from ..errors import ArgumentError

__all__ = ["Model", "ModelError", "model_of"]


class ModelError(ArgumentError):
    """A transformer calibc cannot reach (also a ValueError)."""


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    module: str  # holds the dispatch_attention_fn the blocks' self-attention calls
    blocks: str  # the transformer's attribute listing its blocks; block.attn1 is self-attention
    grid_from: str  # "latents": (B, C, F, H, W) latents patchified by config.patch_size; "arguments": num_frames, height, width
    processors: tuple  # the model's own attention processors (class names), the ones that call `module`'s function


MODELS = {
    "WanTransformer3DModel": Model("WanTransformer3DModel", "diffusers.models.transformers.transformer_wan", "blocks",
                                   "latents", ("WanAttnProcessor", "WanAttnProcessor2_0")),
    "LTXVideoTransformer3DModel": Model("LTXVideoTransformer3DModel", "diffusers.models.transformers.transformer_ltx",
                                        "transformer_blocks", "arguments",
                                        ("LTXVideoAttnProcessor", "LTXVideoAttentionProcessor2_0")),
}

# Models whose self-attention is joint text–video attention, which the kernels cannot take yet.
JOINT = {
    "MochiTransformer3DModel": "text last, padded text dropped per sample",
    "HunyuanVideoTransformer3DModel": "text last, padded text masked",
    "CogVideoXTransformer3DModel": "226 text tokens first",
}


def model_of(transformer):
    """The Model of a diffusers transformer, or ModelError naming it."""
    name = type(transformer).__name__
    model = MODELS.get(name)
    if model is not None:
        return model
    if name in JOINT:
        raise ModelError(f"{name}: its self-attention is joint text–video attention ({JOINT[name]}), which calibc's "
                         "kernels do not take yet; nothing was installed")
    raise ModelError(f"{name}: not a transformer calibc knows (it reaches {', '.join(sorted(MODELS))}); nothing was "
                     "installed")


class CallArguments:
    """Where a transformer's forward takes its arguments: `value(name, args, kwargs)` finds one
    passed by position or keyword, without inspecting each call (the positions are read once)."""

    def __init__(self, transformer):
        self.positions = {name: i for i, name in enumerate(inspect.signature(transformer.forward).parameters)}

    def value(self, name, args, kwargs):
        if name in kwargs:
            return kwargs[name]
        i = self.positions.get(name)
        return args[i] if i is not None and i < len(args) else None


def grid_of(model, transformer, arguments, args, kwargs):
    """The (frames, height, width) token grid of a call."""
    if model.grid_from == "arguments":
        return tuple(arguments.value(n, args, kwargs) for n in ("num_frames", "height", "width"))
    latents = arguments.value("hidden_states", args, kwargs)
    patch = transformer.config.patch_size
    _, _, frames, height, width = latents.shape
    return frames // patch[0], height // patch[1], width // patch[2]
