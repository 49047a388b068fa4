"""Record what diffusers' WanTransformer3DModel self-attention sees, for `calibc calibrate`.

    from calibc.diffusers import Recorder
    recorder = Recorder(pipe.transformer, "prompt0.safetensors", calls_per_step=2)
    pipe(prompt=..., num_inference_steps=50)
    recorder.save()

A processor wrapping each `blocks[i].attn1` intercepts the call to the attention function
(hooks.py), so Q and K are recorded exactly as the kernel sees them (after the RMSNorm and
the rotary embedding, (B, S, H, D) in diffusers' layout) and the model's output is untouched. Batch
element 0 is recorded (the conditional branch when classifier-free guidance is batched); with
CFG as two separate calls per step, pass calls_per_step=2 and the first call of each step is
kept.

Raw Q/K/V at 480p with 81 frames is about 6 GB per step. With `block_mass=B` the recorder
reduces on the fly to block attention mass (the softmax mass each query block of B tokens puts
on each key block, heads × blocks × blocks floats), computed in chunks of query rows so the
N × N matrix never exists; calibrate then reads `step{t}.layer{l}.mass` instead of q and k
(docs/recordings.md). Layout metadata (frames, height, width) is taken from the latents.
"""

import torch

from ..safetensors import save_file
from .hooks import StepCounter, wrap_self_attention

__all__ = ["Recorder", "block_mass"]


def block_mass(q, k, block, scale=None, chunk=1024):
    """(H, S, D) queries and keys -> (H, blocks, blocks) float32 block attention mass."""
    heads, tokens, dim = q.shape
    scale = dim ** -0.5 if scale is None else scale
    blocks = (tokens + block - 1) // block
    out = torch.zeros(heads, blocks, blocks, dtype=torch.float64)
    key_block = torch.arange(tokens) // block
    for start in range(0, tokens, chunk):
        rows = slice(start, min(tokens, start + chunk))
        p = torch.softmax(torch.einsum("hid,hjd->hij", q[:, rows].float(), k.float()) * scale, dim=-1)
        per_key_block = torch.zeros(heads, p.shape[1], blocks, dtype=torch.float64)
        per_key_block.index_add_(2, key_block, p.double())
        query_block = torch.arange(rows.start, rows.stop) // block
        out.index_add_(1, query_block, per_key_block)
    counts = torch.bincount(torch.arange(tokens) // block, minlength=blocks).double()
    return (out / counts[None, :, None]).float()


class Recorder:
    def __init__(self, transformer, path, calls_per_step=1, steps=None, layers=None, block_mass=None,
                 record_values=False, dtype=torch.bfloat16):
        self.path, self.block, self.steps = path, block_mass, None if steps is None else set(steps)
        self.record_values, self.dtype = record_values, dtype
        self.tensors = {}
        self.metadata = {"format": "calibc-recording/1", "model": type(transformer).__name__, "text_tokens": "0"}
        self.patch = transformer.config.patch_size
        self.counter = StepCounter(transformer, calls_per_step)
        self._restore = wrap_self_attention(transformer, self._attend_for, layers)

    def _attend_for(self, layer):
        def attend(original, query, key, value, *args, **kwargs):
            self._capture(layer, query, key, value)
            return original(query, key, value, *args, **kwargs)

        return attend

    def _capture(self, layer, query, key, value):
        step = self.counter.step
        if not self.counter.first_call or (self.steps is not None and step not in self.steps):
            return
        _, _, frames, height, width = self.counter.latent_shape
        self.metadata.update(frames=str(frames // self.patch[0]), height=str(height // self.patch[1]),
                             width=str(width // self.patch[2]))
        q, k = query[0].transpose(0, 1).detach(), key[0].transpose(0, 1).detach()  # (H, S, D)
        self.metadata.update(tokens=str(q.shape[1]), head_dim=str(q.shape[2]))
        name = f"step{step}.layer{layer}"
        if self.block is not None:
            self.metadata["mass_block"] = str(self.block)
            self.tensors[f"{name}.mass"] = block_mass(q, k, self.block).contiguous()
            return
        self.tensors[f"{name}.q"] = q.to(self.dtype).contiguous().cpu()
        self.tensors[f"{name}.k"] = k.to(self.dtype).contiguous().cpu()
        if self.record_values:
            self.tensors[f"{name}.v"] = value[0].transpose(0, 1).detach().to(self.dtype).contiguous().cpu()

    def remove(self):
        """Puts the original processors back."""
        self._restore()
        self.counter.remove()

    def save(self):
        save_file(self.tensors, self.path, self.metadata)
