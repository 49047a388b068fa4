"""Record what a diffusers video transformer's self-attention sees (models.py), for `calibc calibrate`.

    from calibc.diffusers import Recorder
    recorder = Recorder(pipe.transformer, "prompt0.safetensors")
    pipe(prompt=..., num_inference_steps=50)
    recorder.save()

A processor wrapping each self-attention module intercepts the call to the attention function
(hooks.py), so Q and K are recorded exactly as the kernel sees them (after the RMSNorm and
the rotary embedding, (B, S, H, D) in diffusers' layout) and the model's output is untouched. Batch
element 0 is recorded (the conditional branch when classifier-free guidance is batched); a step
is a timestep value, so with CFG as two separate calls per step the first call of each is kept,
and metadata `model_timesteps` gives each recorded step's timestep for the compiled kernels to
pick steps by.

Raw Q/K/V at 480p with 81 frames is about 6 GB per step. With `block_mass=B` the recorder
reduces on the fly to block attention mass (the softmax mass each query block of B tokens puts
on each key block, heads × blocks × blocks floats; on a GPU one Triton kernel per call) so the
N × N matrix never exists; calibrate then reads `step{t}.layer{l}.mass` instead of q and k
(docs/recordings.md). Layout metadata (frames, height, width) is taken from the latents; a joint
model's text (text_tokens, text_position) from the sequence beside them, and padded text's valid
length (text_valid, of element 0) from the call's key mask. At
model scale even block mass is too much to keep per prompt: calibrator.py folds it into the
calibration state while the model generates instead.
"""

import torch

from .._json import float_text
from ..calibration import block_mass
from ..safetensors import save_file
from .hooks import Timesteps, heads_first, layout_of, text_lengths, wrap_self_attention
from .models import model_of

__all__ = ["Recorder"]


class Recorder:
    def __init__(self, transformer, path, steps=None, layers=None, block_mass=None,
                 record_values=False, dtype=torch.bfloat16):
        self.path, self.block, self.steps = path, block_mass, None if steps is None else set(steps)
        self.record_values, self.dtype = record_values, dtype
        self.tensors = {}
        self.metadata = {"format": "calibc-recording/1", "model": type(transformer).__name__, "text_tokens": "0"}
        self.model = model_of(transformer)
        self.counter = Timesteps(transformer, track=True)
        self._restore = wrap_self_attention(transformer, self._attend_for, layers)

    def _attend_for(self, layer):
        def attend(original, query, key, value, *args, **kwargs):
            self._capture(layer, query, key, value, kwargs.get("attn_mask", args[0] if args else None))
            return original(query, key, value, *args, **kwargs)

        return attend

    def _capture(self, layer, query, key, value, mask):
        step = self.counter.recorded_step(self.steps)
        if step is None:
            return
        q, k = heads_first(query), heads_first(key)
        tokens = q.shape[1]
        layout = layout_of(self.model, self.counter.grid, tokens)
        self.metadata.update({name: str(value) for name, value in layout.items()})
        self.metadata.update(tokens=str(tokens), head_dim=str(q.shape[2]))
        text = layout["text_tokens"]
        lengths = text_lengths(self.model, mask, tokens, text)
        valid = text if lengths is None else int(lengths[0])
        if valid < text:  # padded text: calibrate reads the valid length of element 0's prompt
            self.metadata["text_valid"] = str(valid)
        name = f"step{step}.layer{layer}"
        if self.block is not None:
            if valid < text:
                raise ValueError("block_mass= cannot take padded text (the mass would count padded keys): record q "
                                 "and k instead (without block_mass=)")
            self.metadata["mass_block"] = str(self.block)
            self.tensors[f"{name}.mass"] = block_mass(q, k, self.block).cpu()
            return
        self.tensors[f"{name}.q"] = q.to(self.dtype).contiguous().cpu()
        self.tensors[f"{name}.k"] = k.to(self.dtype).contiguous().cpu()
        if self.record_values:
            self.tensors[f"{name}.v"] = heads_first(value).to(self.dtype).contiguous().cpu()

    def remove(self):
        """Puts the original processors back."""
        self._restore()
        self.counter.remove()

    def save(self):
        steps = sorted({int(name.split(".")[0][4:]) for name in self.tensors})
        metadata = dict(self.metadata, model_timesteps=",".join(float_text(self.counter.timesteps[s]) for s in steps))
        save_file(self.tensors, self.path, metadata)
