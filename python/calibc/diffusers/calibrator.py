"""Calibrating on the GPU while the model generates (docs/calibration.md section 8).

At model scale even block mass is too much to keep per prompt (112 GB for Wan 14B 720p):
`Calibrator` folds each self-attention call's block mass into the calibration state on the
model's device while it generates, and writes the state `calibc calibrate --merge` decides masks
from:

    calibrator = Calibrator(pipe.transformer, mass=0.95, block=128, sample_rows=8)
    for prompt in prompts:
        pipe(prompt=prompt, num_inference_steps=50)
        calibrator.next_prompt()
    calibrator.save("state.safetensors")
"""

import dataclasses

import torch

from ..calibration import Selection, State, block_mass
from ..calibration import save as save_state
from .hooks import Timesteps, heads_first, layout_of, text_lengths, wrap_self_attention
from .models import model_of

__all__ = ["Calibrator"]


class Calibrator:
    """Streaming calibration during generation: at every recorded self-attention call, the block
    mass of batch element 0 (one Triton launch on a GPU, `sample_rows` as `calibrate
    --sample-rows`) is folded into the (step, layer) state on the same device. Call
    `next_prompt()` after each generation; the state does not grow with the prompts.

    The selection (`mass`, or `schedule` = (A, C, k, T) as `--mass-schedule exp:A,C,k,T`, and
    `sample_rows`: one calibration.Selection, `selection`), the block, `reuse_tolerance` and
    `stability_drop` are fixed here, as `--state-out` fixes them. After each fold, prompts whose
    leave-one-out drop is at most `stability_drop` are retired, so their single-owner tiles leave
    the state (in practice from the second prompt on: alone, a prompt's drop is all the mass it
    selected). `state_device="cpu"` keeps the states in host memory between folds (each is moved
    to the model's device for its fold): Wan 14B's states are 7.3 GB once the prompts agree, and
    far more after the first prompt (47 GB at the synthetic recordings' share, docs/calibration.md
    section 8), beside 28 GB of weights on an 80 GB card."""

    def __init__(self, transformer, *, mass=0.95, schedule=None, block=128, sample_rows=1, reuse_tolerance=0.02,
                 stability_drop=0.05, steps=None, layers=None, state_device=None):
        self.selection = Selection(mass=mass, schedule=schedule, sample_rows=sample_rows)
        self.block, self.reuse_tolerance, self.stability_drop = block, reuse_tolerance, stability_drop
        self.steps = None if steps is None else set(steps)
        self.state_device = state_device
        self.states, self.shape, self.layout, self.seen = {}, None, {}, set()
        self.timesteps = {}  # step -> the model's timestep there, the same for every prompt
        self.model = model_of(transformer)
        self.counter = Timesteps(transformer, track=True)
        self._restore = wrap_self_attention(transformer, self._attend_for, layers)

    def _attend_for(self, layer):
        def attend(original, query, key, value, *args, **kwargs):
            self._fold(layer, query, key, kwargs.get("attn_mask", args[0] if args else None))
            return original(query, key, value, *args, **kwargs)

        return attend

    def _fold(self, layer, query, key, mask):
        step = self.counter.recorded_step(self.steps)
        if step is None:
            return
        if (step, layer) in self.seen:
            raise RuntimeError(f"step {step}, layer {layer} seen twice in one prompt: call next_prompt() between prompts")
        self.seen.add((step, layer))
        value = self.counter.timesteps[step]
        if self.timesteps.setdefault(step, value) != value:
            raise ValueError(f"step {step} has timestep {value} in this prompt but {self.timesteps[step]} in earlier "
                             "ones: calibrate every prompt with one scheduler and number of steps")
        q, k = heads_first(query), heads_first(key)
        heads, tokens, dim = q.shape
        if self.shape is None:
            # calibc reads a layout only whole, text_tokens included (0 for video alone).
            self.shape, self.layout = (heads, tokens, dim), layout_of(self.model, self.counter.grid, tokens)
            text = self.layout["text_tokens"]
            if text:
                # calibrate's rule for joint layouts: text blocks kept whole (docs/calibration.md section 9).
                lo, hi = (0, text) if self.model.text == "first" else (tokens - text, tokens)
                self.selection = dataclasses.replace(self.selection, whole=(lo // self.block, -(-hi // self.block)))
        elif self.shape != (heads, tokens, dim):
            raise ValueError(f"(heads, tokens, head_dim) {(heads, tokens, dim)} differs from the first call's {self.shape}")
        lengths = text_lengths(self.model, mask, tokens, self.layout["text_tokens"])
        if lengths is None:
            m = block_mass(q, k, self.block, step=self.selection.sample_rows)
        else:
            # Padded text (element 0's prompt) is no key and no row: the mass of the valid tokens
            # alone, zero rows and columns past them, as calibc's C kernel gives it.
            valid = tokens - self.layout["text_tokens"] + int(lengths[0])
            m = block_mass(q[:, :valid], k[:, :valid], self.block, step=self.selection.sample_rows)
            blocks = -(-tokens // self.block)
            m = torch.nn.functional.pad(m, (0, blocks - m.shape[-1], 0, blocks - m.shape[-2]))
        state = self.states.get((step, layer))
        if state is None:
            state = self.states[(step, layer)] = State(heads, m.shape[-1], self.selection, device=m.device,
                                                       reuse_tolerance=self.reuse_tolerance,
                                                       stability_drop=self.stability_drop)
        state.to(m.device).fold(m, step)
        if self.state_device is not None:
            state.to(self.state_device)

    def next_prompt(self):
        """Ends a prompt: every (step, layer) state must have folded it once."""
        missing = [key for key in self.states if key not in self.seen]
        if missing:
            raise RuntimeError(f"this prompt did not reach {len(missing)} (step, layer) states, e.g. {missing[0]}")
        self.seen = set()
        self.counter.reset()  # the next prompt starts at step 0

    def save(self, path, model="unknown"):
        """Writes the state (calibc-state/3) for `calibc calibrate --merge`."""
        if self.seen:
            raise RuntimeError("a prompt is in progress: call next_prompt() first")
        _, tokens, dim = self.shape
        save_state(self.states, path, tokens=tokens, head_dim=dim, block=self.block, model=model, layout=self.layout,
                   timesteps=self.timesteps)

    def remove(self):
        """Puts the original processors back."""
        self._restore()
        self.counter.remove()
