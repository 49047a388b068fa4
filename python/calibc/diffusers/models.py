"""The diffusers transformers calibc reaches, and how (docs/python.md, "Models").

Each is described once here: the module whose attention function its self-attention calls
(replaced while calibc is installed: `dispatch_attention_fn` on (B, S, H, D), or the
`F.scaled_dot_product_attention` of diffusers' attention_processor module on (B, H, S, D)), the
attributes holding its self-attention modules, where its forward takes the latents and the
timestep, the token grid of a call and, for joint text–video attention, where the text is. Everything in calibc.diffusers goes through `model_of`, so a transformer calibc does
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
    module: str  # the module whose attention function (`function`) the self-attention processors call
    function: str  # "dispatch_attention_fn" ((B, S, H, D) tensors) or "F.scaled_dot_product_attention" ((B, H, S, D))
    layers: tuple  # (blocks attribute, attention attribute) pairs, in layer order: every block's self-attention
    grid_from: str  # "latents": (B, C, F, H, W); "latents_fc": (B, F, C, H, W); "arguments": num_frames, height, width
    processors: tuple  # the model's own attention processors (class names), the ones that call `function`
    text: str = None  # joint attention: "last" (padded text masked: the call's key mask gives lengths) or "first"
    replacement: str = None  # a calibc processor (joint.py) run in place of the model's own while calibc is installed

    @property
    def layout(self):
        return "bshd" if self.function == "dispatch_attention_fn" else "bhsd"

    def attention_modules(self, transformer):
        """Every self-attention module, in layer order, with the path that names it."""
        return [(f"{blocks}[{i}].{attn}", getattr(block, attn)) for blocks, attn in self.layers
                for i, block in enumerate(getattr(transformer, blocks))]


_PROCESSORS = "diffusers.models.attention_processor"
MODELS = {
    "WanTransformer3DModel": Model("WanTransformer3DModel", "diffusers.models.transformers.transformer_wan",
                                   "dispatch_attention_fn", (("blocks", "attn1"),), "latents",
                                   ("WanAttnProcessor", "WanAttnProcessor2_0")),
    "LTXVideoTransformer3DModel": Model("LTXVideoTransformer3DModel", "diffusers.models.transformers.transformer_ltx",
                                        "dispatch_attention_fn", (("transformer_blocks", "attn1"),), "arguments",
                                        ("LTXVideoAttnProcessor", "LTXVideoAttentionProcessor2_0")),
    "HunyuanVideoTransformer3DModel": Model("HunyuanVideoTransformer3DModel",
                                            "diffusers.models.transformers.transformer_hunyuan_video",
                                            "dispatch_attention_fn",
                                            (("transformer_blocks", "attn"), ("single_transformer_blocks", "attn")),
                                            "latents", ("HunyuanVideoAttnProcessor2_0",), text="last"),
    "MochiTransformer3DModel": Model("MochiTransformer3DModel", _PROCESSORS, "F.scaled_dot_product_attention",
                                     (("transformer_blocks", "attn1"),), "latents", ("MochiAttnProcessor2_0",),
                                     text="last", replacement="MochiJointProcessor"),
    "CogVideoXTransformer3DModel": Model("CogVideoXTransformer3DModel", _PROCESSORS, "F.scaled_dot_product_attention",
                                         (("transformer_blocks", "attn1"),), "latents_fc",
                                         ("CogVideoXAttnProcessor2_0",), text="first"),
}


def model_of(transformer):
    """The Model of a diffusers transformer, or ModelError naming it."""
    name = type(transformer).__name__
    model = MODELS.get(name)
    if model is not None:
        return model
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
    """The (frames, height, width) token grid of a call's video tokens."""
    if model.grid_from == "arguments":
        return tuple(arguments.value(n, args, kwargs) for n in ("num_frames", "height", "width"))
    latents = arguments.value("hidden_states", args, kwargs)
    patch = transformer.config.patch_size
    if isinstance(patch, (tuple, list)):
        pt, ph, pw = patch
    else:  # an int for height and width, and frames by patch_size_t where the model has one
        pt, ph, pw = getattr(transformer.config, "patch_size_t", None) or 1, patch, patch
    if model.grid_from == "latents_fc":
        _, frames, _, height, width = latents.shape
    else:
        _, _, frames, height, width = latents.shape
    return -(-frames // pt), height // ph, width // pw
