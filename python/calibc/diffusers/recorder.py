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
on each key block, heads × blocks × blocks floats; on a GPU one Triton kernel per call) so the
N × N matrix never exists; calibrate then reads `step{t}.layer{l}.mass` instead of q and k
(docs/recordings.md). Layout metadata (frames, height, width) is taken from the latents.

At model scale even block mass is too much to keep per prompt (112 GB for Wan 14B 720p):
`Calibrator` folds each call's block mass into the calibration state on the model's device
while it generates, and writes the state `calibc calibrate --merge` decides masks from:

    calibrator = Calibrator(pipe.transformer, mass=0.95, block=128, sample_rows=8)
    for prompt in prompts:
        pipe(prompt=prompt, num_inference_steps=50)
        calibrator.next_prompt()
    calibrator.save("state.safetensors")
"""

import math

import torch

from ..calibration import State, block_mass
from ..calibration import save as save_state
from ..safetensors import save_file
from .hooks import StepCounter, wrap_self_attention

__all__ = ["Recorder", "Calibrator"]


def _heads_first(x):
    """Batch element 0 of a (B, S, H, D) tensor as an (H, S, D) view, no copy."""
    return x[0].transpose(0, 1).detach()


class Recorder:
    def __init__(self, transformer, path, calls_per_step=1, steps=None, layers=None, block_mass=None,
                 record_values=False, dtype=torch.bfloat16):
        self.path, self.block, self.steps = path, block_mass, None if steps is None else set(steps)
        self.record_values, self.dtype = record_values, dtype
        self.tensors = {}
        self.metadata = {"format": "calibc-recording/1", "model": type(transformer).__name__, "text_tokens": "0"}
        self.counter = StepCounter(transformer, calls_per_step)
        self._restore = wrap_self_attention(transformer, self._attend_for, layers)

    def _attend_for(self, layer):
        def attend(original, query, key, value, *args, **kwargs):
            self._capture(layer, query, key, value)
            return original(query, key, value, *args, **kwargs)

        return attend

    def _capture(self, layer, query, key, value):
        step = self.counter.recorded_step(self.steps)
        if step is None:
            return
        self.metadata.update({name: str(size) for name, size in self.counter.grid.items()})
        q, k = _heads_first(query), _heads_first(key)
        self.metadata.update(tokens=str(q.shape[1]), head_dim=str(q.shape[2]))
        name = f"step{step}.layer{layer}"
        if self.block is not None:
            self.metadata["mass_block"] = str(self.block)
            self.tensors[f"{name}.mass"] = block_mass(q, k, self.block).cpu()
            return
        self.tensors[f"{name}.q"] = q.to(self.dtype).contiguous().cpu()
        self.tensors[f"{name}.k"] = k.to(self.dtype).contiguous().cpu()
        if self.record_values:
            self.tensors[f"{name}.v"] = _heads_first(value).to(self.dtype).contiguous().cpu()

    def remove(self):
        """Puts the original processors back."""
        self._restore()
        self.counter.remove()

    def save(self):
        save_file(self.tensors, self.path, self.metadata)


class Calibrator:
    """Streaming calibration during generation: at every recorded self-attention call, the block
    mass of batch element 0 (one Triton launch on a GPU, `sample_rows` as `calibrate
    --sample-rows`) is folded into the (step, layer) state on the same device. Call
    `next_prompt()` after each generation; the state does not grow with the prompts.

    The selection (`mass`, or `schedule` = (A, C, k, T) as `--mass-schedule exp:A,C,k,T`), the
    block, `sample_rows`, `reuse_tolerance` and `stability_drop` are fixed here, as `--state-out`
    fixes them. After each fold, prompts whose leave-one-out drop is at most `stability_drop` are
    retired, so their single-owner tiles leave the state (in practice from the second prompt on:
    alone, a prompt's drop is all the mass it selected). `state_device="cpu"` keeps the states
    in host memory between folds (each is moved to the model's device for its fold): Wan 14B's
    states are 7.3 GB once the prompts agree, and far more after the first prompt (47 GB at the
    synthetic recordings' share, docs/calibration.md section 8), beside 28 GB of weights on an
    80 GB card."""

    def __init__(self, transformer, *, mass=0.95, schedule=None, block=128, sample_rows=1, reuse_tolerance=0.02,
                 stability_drop=0.05, calls_per_step=1, steps=None, layers=None, state_device=None):
        if (mass is None) == (schedule is None):
            raise ValueError("give one of mass and schedule")
        self.mass, self.schedule, self.block, self.sample_rows = mass, schedule, block, sample_rows
        self.reuse_tolerance, self.stability_drop = reuse_tolerance, stability_drop
        self.steps = None if steps is None else set(steps)
        self.state_device = state_device
        self.states, self.shape, self.layout, self.seen = {}, None, {}, set()
        self.counter = StepCounter(transformer, calls_per_step)
        self._restore = wrap_self_attention(transformer, self._attend_for, layers)

    def _attend_for(self, layer):
        def attend(original, query, key, value, *args, **kwargs):
            self._fold(layer, query, key)
            return original(query, key, value, *args, **kwargs)

        return attend

    def threshold(self, step):
        """The mass threshold of a step: `mass`, or ε(t) = A + (C − A)·exp(−k·t/T)."""
        if self.schedule is None:
            return self.mass
        final, initial, rate, last = self.schedule
        return final + (initial - final) * math.exp(-rate * step / last)

    def _fold(self, layer, query, key):
        step = self.counter.recorded_step(self.steps)
        if step is None:
            return
        if (step, layer) in self.seen:
            raise RuntimeError(f"step {step}, layer {layer} seen twice in one prompt: call next_prompt() between prompts")
        self.seen.add((step, layer))
        q, k = _heads_first(query), _heads_first(key)
        heads, tokens, dim = q.shape
        if self.shape is None:
            self.shape, self.layout = (heads, tokens, dim), self.counter.grid
        elif self.shape != (heads, tokens, dim):
            raise ValueError(f"(heads, tokens, head_dim) {(heads, tokens, dim)} differs from the first call's {self.shape}")
        m = block_mass(q, k, self.block, step=self.sample_rows)
        state = self.states.get((step, layer))
        if state is None:
            state = self.states[(step, layer)] = State(heads, m.shape[-1], device=m.device,
                                                       reuse_tolerance=self.reuse_tolerance,
                                                       stability_drop=self.stability_drop)
        state.to(m.device).fold(m, tau=self.threshold(step))
        if self.state_device is not None:
            state.to(self.state_device)

    def next_prompt(self):
        """Ends a prompt: every (step, layer) state must have folded it once."""
        missing = [key for key in self.states if key not in self.seen]
        if missing:
            raise RuntimeError(f"this prompt did not reach {len(missing)} (step, layer) states, e.g. {missing[0]}")
        self.seen = set()
        self.counter.calls = -1  # the next prompt starts at step 0

    @property
    def selection(self):
        """As calibc records it: `mass 0.95` or `mass-schedule exp:A,C,k,T`, and the sampled rows."""
        if self.schedule is None:
            text = f"mass {float(self.mass)!r}"
        else:
            final, initial, rate, last = self.schedule
            text = f"mass-schedule exp:{float(final)!r},{float(initial)!r},{float(rate)!r},{int(last)}"
        return text + (f"; rows 1/{self.sample_rows}" if self.sample_rows > 1 else "")

    def save(self, path, model="unknown"):
        """Writes the state (calibc-state/3) for `calibc calibrate --merge`."""
        if self.seen:
            raise RuntimeError("a prompt is in progress: call next_prompt() first")
        _, tokens, dim = self.shape
        save_state(self.states, path, tokens=tokens, head_dim=dim, block=self.block, selection=self.selection,
                   model=model, layout=self.layout)

    def remove(self):
        """Puts the original processors back."""
        self._restore()
        self.counter.remove()
