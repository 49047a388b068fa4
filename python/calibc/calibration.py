"""Streaming calibration on the device: block attention mass and the calibration state in torch.

The same reductions as calibc's C kernel (`Sources/CCalibrate/calibrate.c`) and its streaming
state (`Sources/CalibCalibrate/State.swift`, docs/calibration.md section 7), written with
torch ops so they run wherever q and k already are (a GPU during generation) and never
materialise the tokens × tokens matrix:

    mass = block_mass(q, k, block=128)              # (H, B, B) float32, rows sum to 1
    state = State(heads=H, blocks=B, selection=Selection(mass=0.95), reuse_tolerance=0.02,
                  stability_drop=0.05, device=q.device)
    state.fold(mass, step)                          # one prompt's mass at this step; once per prompt
    save({(step, layer): state}, "s.safetensors", tokens=N, head_dim=D, block=128)
                                                    # `calibc calibrate --merge` reads it

On CUDA tensors block mass is a Triton kernel (`calibc.triton_mass`, a tile of scores at a
time); on the CPU, torch ops over `rows` query rows × all keys at a time. `step` measures every
step-th row of each query block only (docs/calibration.md, section 8: what that saves and what
it changes). Both are checked against the C kernel: on the CPU in Tests/python/test_calibration.py,
on the GPU in Tests/GPU/calibrate_gpu.py (results in docs/calibration.md).
"""

import dataclasses
import functools
import math
from typing import NamedTuple

import numpy as np
import torch

from ._json import float_text
from .safetensors import save_file

__all__ = ["block_mass", "sampled_rows", "select_mass", "MassSchedule", "Selection", "State", "save"]

FORMAT = "calibc-state/3"
MAX_INPUTS = 65535  # owners are U16 in the file
NONE, ONE, SEVERAL = 0, 1, 2  # tile codes: how many inputs selected the tile


def sampled_rows(tokens, block, step, device="cpu"):
    """The rows block mass is measured on: in each query block, rows step // 2, step // 2 + step, …
    (every row when step is 1), or the block's first row when it is too short for any — the rows
    `calibc calibrate --sample-rows` and the GPU kernel use."""
    starts = torch.arange(0, tokens, block, device=device)
    rows = (starts[:, None] + torch.arange(step // 2, block, step, device=device)[None, :]).flatten()
    rows = rows[rows < tokens]
    if tokens - starts[-1] <= step // 2:
        rows = torch.cat([rows, starts[-1:]])
    return rows


def block_mass(q, k, block, scale=None, rows=256, step=1):
    """(H, N, D) queries and keys -> (H, B, B) float32: mass[h, qb, kb] = mean over the rows of
    query block qb (every step-th, as `sampled_rows`) of the softmax probability on the keys of
    key block kb (B = ceil(N / block)). On CUDA tensors this is one Triton kernel launch
    (`calibc.triton_mass`); elsewhere torch ops, `rows` query rows × all keys at a time."""
    if q.is_cuda:
        from .triton_mass import block_mass as on_gpu

        return on_gpu(q, k, block, scale=scale, step=step)
    heads, tokens, dim = q.shape
    scale = dim ** -0.5 if scale is None else scale
    blocks = (tokens + block - 1) // block
    kf = k.float()
    measured = sampled_rows(tokens, block, step, q.device)
    sums = torch.zeros(heads, blocks, blocks, dtype=torch.float64, device=q.device)
    for chunk in measured.split(rows):
        p = torch.softmax(torch.einsum("hid,hjd->hij", q[:, chunk].float(), kf) * scale, dim=-1)
        p = torch.nn.functional.pad(p, (0, blocks * block - tokens))
        sums.index_add_(1, chunk // block, p.view(heads, len(chunk), blocks, block).sum(-1, dtype=torch.float64))
    counts = torch.bincount(measured // block, minlength=blocks)
    return (sums / counts.view(1, -1, 1)).float()


def select_mass(mass, tau, whole=()):
    """Per query block, the fewest key blocks holding `tau` of its mass, heaviest first, ties to
    the lower index (calibrate's `--mass`): a (H, B, B) bool mask. `whole` = (first, end): the
    text blocks of a joint sequence, kept whole as query and as key blocks, their mass counted
    first (calibrate's rule for joint layouts, docs/calibration.md section 9). A query block
    whose mass row is zero (wholly in an input's padded text: nothing measured) selects nothing."""
    blocks = mass.shape[-1]
    lo, hi = whole if whole else (0, 0)
    text = torch.zeros(blocks, dtype=torch.bool, device=mass.device)
    text[lo:hi] = True
    # Text columns first in index order, then the rest heaviest first: a stable sort of the
    # negated mass orders equal values by index, as calibrate does.
    order = torch.sort(torch.where(text, -math.inf, -mass), dim=-1, stable=True).indices
    sorted_mass = torch.gather(mass, -1, order).double()
    total = torch.cumsum(sorted_mass, dim=-1)
    before = torch.cat([torch.zeros_like(total[..., :1]), total[..., :-1]], dim=-1)  # kept before this block
    keep_sorted = before < tau
    keep = torch.zeros_like(keep_sorted)
    keep.scatter_(-1, order, keep_sorted)
    keep |= text | text[:, None]
    return keep & (mass != 0).any(-1, keepdim=True)


class MassSchedule(NamedTuple):
    """The paper's ε(t) = A + (C − A)·exp(−k·t/T) with T fixed, as `--mass-schedule exp:A,C,k,T`
    (Sources/CalibCalibrate/Schedule.swift; docs/calibration.md, "Threshold per step")."""

    final: float  # A
    initial: float  # C, at step 0
    rate: float  # k
    last_step: int  # T

    def threshold(self, step):
        # In calibc's order of operations (step / T first), so the threshold is calibc's to the bit.
        return self.final + (self.initial - self.final) * math.exp(-self.rate * (step / self.last_step))

    def __str__(self):
        return f"exp:{float(self.final)!r},{float(self.initial)!r},{float(self.rate)!r},{int(self.last_step)}"


@dataclasses.dataclass(frozen=True)
class Selection:
    """What each fold keeps of an input: per query block the fewest key blocks holding `mass` of
    its mass (`--mass`), or the threshold `schedule` gives the step (`--mass-schedule`), on block
    mass measured from every `sample_rows`-th row (`--sample-rows`). A state is folded under one
    and records it (`str`, calibc's text; Sources/CalibCalibrate/Calibrator.swift,
    `selectionText`): states merge only where theirs agree."""

    mass: float = None
    schedule: MassSchedule = None
    sample_rows: int = 1
    whole: tuple = ()  # (first, end) text blocks of a joint layout, kept whole (select_mass)

    def __post_init__(self):
        if (self.mass is None) == (self.schedule is None):
            raise ValueError("give one of mass and schedule")
        if self.schedule is not None:
            object.__setattr__(self, "schedule", MassSchedule(*self.schedule))

    def threshold(self, step):
        """The mass threshold of a step."""
        return self.mass if self.schedule is None else self.schedule.threshold(step)

    def __str__(self):
        text = f"mass {float(self.mass)!r}" if self.schedule is None else f"mass-schedule {self.schedule}"
        text += f"; rows 1/{self.sample_rows}" if self.sample_rows > 1 else ""
        # calibc records the rule so that states folded with and without it never merge.
        return text + ("; text blocks whole" if self.whole else "")


def _pack(digits, base, per_byte):
    """(H, T) digits < base -> (H, ceil(T/per_byte)) uint8, byte m = Σ_k base^k · digit(per_byte·m + k),
    unused digits 0: tile codes are base 3, five a byte; reuse bits base 2, eight a byte."""
    heads, count = digits.shape
    n = (count + per_byte - 1) // per_byte
    padded = torch.nn.functional.pad(digits.to(torch.int32), (0, per_byte * n - count)).view(heads, n, per_byte)
    return (padded * _powers(base, per_byte, digits.device)).sum(-1).to(torch.uint8)


def _unpack(packed, count, base, per_byte):
    digits = packed.to(torch.int32).unsqueeze(-1) // _powers(base, per_byte, packed.device) % base
    return digits.view(packed.shape[0], -1)[:, :count]


def _pack_codes(codes):
    return _pack(codes, 3, 5)


def _unpack_codes(packed, count):
    return _unpack(packed, count, 3, 5).to(torch.uint8)


def _pack_bits(bits):
    return _pack(bits, 2, 8)


def _unpack_bits(packed, count):
    return _unpack(packed, count, 2, 8).bool()


@functools.lru_cache(maxsize=None)
def _pairs(blocks, device):
    # One per shape and device, not one per state: 2.8 MB at B = 591, times 2,000 (step, layer)s.
    return torch.triu_indices(blocks, blocks, offset=1, device=device)


@functools.lru_cache(maxsize=None)
def _powers(base, count, device):
    # Cached: a fresh tensor would be a host-to-device copy, a synchronisation, per fold.
    return base ** torch.arange(count, dtype=torch.int32, device=device)


def _rows_within(mass, pairs, tolerance):
    """(H, P) bool: the L1 distance of each pair's block-mass rows ≤ tolerance, differences and
    sums in float64 as calibc's; on CUDA a Triton kernel (torch.cdist's p = 1 took 26 ms of a
    40-head fold on an H100, docs/calibration.md section 8)."""
    if mass.is_cuda:
        from .triton_mass import rows_within

        return rows_within(mass, pairs, tolerance)
    m = mass.double()
    return torch.cdist(m, m, p=1)[:, pairs[0], pairs[1]] <= tolerance


class State:
    """The calibration state of one (step, layer) in calibc-state/3's compact form, on the device
    (docs/recordings.md; Sources/CalibCalibrate/State.swift is the same in Swift):

    - `tiles` (H, ceil(B²/5)) uint8: per tile a code, 0 no input selected it, 1 one did, 2 more
      (or one that is retired);
    - `owner` (n,) int32 and `owner_mass` (n,) float32: for each code-1 tile in (head, tile)
      order, the input that selected it and its mass there;
    - `retired_drop` (H,) float32: the largest leave-one-out drop an input had when it was
      retired (0 while none was);
    - `reuse` (H, ceil(B(B−1)/2 / 8)) uint8: bit p set while pair p's rows were within
      `reuse_tolerance` (fixed here, at fold time; 0 turns reuse off) on every input.

    Every fold selects with `selection` (a Selection), which `save` writes into the file. After
    each fold, an input whose drop (its mass on the tiles only it selected, over B) is at most
    `stability_drop` is retired: its tiles become code 2 and leave the owner list. Exact for the
    masks, since a drop only falls as inputs are added, provided the masks are decided with the
    same threshold (calibc refuses another). Its size does not depend on how many prompts were
    folded, apart from the single-owner tiles of inputs not retired."""

    def __init__(self, heads, blocks, selection=Selection(mass=0.95), reuse_tolerance=0.02, stability_drop=0.05,
                 device="cpu"):
        for name, value in (("reuse_tolerance", reuse_tolerance), ("stability_drop", stability_drop)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.heads, self.blocks, self.inputs, self.selection = heads, blocks, 0, selection
        self.reuse_tolerance, self.stability_drop = float(reuse_tolerance), float(stability_drop)
        self.tiles = torch.zeros(heads, (blocks * blocks + 4) // 5, dtype=torch.uint8, device=device)
        self.owner = torch.zeros(0, dtype=torch.int32, device=device)
        self.owner_mass = torch.zeros(0, dtype=torch.float32, device=device)
        self.retired_drop = torch.zeros(heads, dtype=torch.float32, device=device)
        # No input folded: no pair ruled out for reuse yet.
        self.reuse = _pack_bits(torch.ones(heads, blocks * (blocks - 1) // 2, dtype=torch.bool, device=device))

    def to(self, device):
        """Moves the state (a Calibrator may keep states in host memory between folds)."""
        self.tiles, self.owner, self.owner_mass, self.retired_drop, self.reuse = (
            t.to(device) for t in (self.tiles, self.owner, self.owner_mass, self.retired_drop, self.reuse))
        return self

    def fold(self, mass, step):
        """Folds one input's (H, B, B) block mass at diffusion step `step`, selected with
        `selection`, and retires the inputs whose drop fell to `stability_drop`: unpack, update
        and repack the whole layer at once."""
        if self.inputs >= MAX_INPUTS:
            raise ValueError(f"a state numbers at most {MAX_INPUTS} inputs")
        heads, tiles = self.heads, self.blocks * self.blocks
        selected = select_mass(mass, self.selection.threshold(step), self.selection.whole).reshape(heads, tiles)
        codes = _unpack_codes(self.tiles, tiles)
        # The single owners spread back over their tiles, updated, and gathered again.
        owner = torch.zeros(heads, tiles, dtype=torch.int32, device=codes.device)
        owner_mass = torch.zeros(heads, tiles, dtype=torch.float32, device=codes.device)
        # Flat indices, found once each: every boolean-mask index would wait for the device.
        ones = (codes == ONE).flatten().nonzero().squeeze(1)
        owner.view(-1)[ones] = self.owner
        owner_mass.view(-1)[ones] = self.owner_mass
        first = selected & (codes == NONE)
        owner = torch.where(first, self.inputs, owner)
        owner_mass = torch.where(first, mass.reshape(heads, tiles).float(), owner_mass)
        codes = torch.where(selected, (codes + 1).clamp(max=SEVERAL), codes)
        ones = (codes == ONE).flatten().nonzero().squeeze(1)
        owner, owner_mass = owner.view(-1)[ones], owner_mass.view(-1)[ones]
        keep = self._keep(ones // tiles, owner, owner_mass)
        codes.view(-1)[ones] = torch.where(keep, ONE, SEVERAL).to(codes.dtype)
        kept = keep.nonzero().squeeze(1)
        self.tiles, self.owner, self.owner_mass = _pack_codes(codes), owner[kept], owner_mass[kept]
        pairs = self.blocks * (self.blocks - 1) // 2
        if self.reuse_tolerance > 0 and pairs > 0:
            # L1 distances of each head's rows, each difference and the sum in float64 as calibc's.
            within = _rows_within(mass, _pairs(self.blocks, mass.device), self.reuse_tolerance)
            self.reuse = _pack_bits(_unpack_bits(self.reuse, pairs) & within)
        elif self.reuse_tolerance == 0:
            self.reuse = torch.zeros_like(self.reuse)
        self.inputs += 1

    def _keep(self, head, owner, owner_mass):
        """Which single-owner tiles (given by head, owner and mass, in (head, tile) order) stay on
        the list: those of inputs whose drop is above `stability_drop`; `retired_drop` is raised by
        the others. Each input's drop is a sum of its masses in float64, over B, as calibc sums
        them: in list order on the CPU, so the same bits; on CUDA a histogram in shared memory,
        whose order can change the last bit (and so the decision only for a drop within that of
        θ). Over the list, not every tile: a scatter over all of them put 14M additions, mostly
        of zeros, on a few addresses (11 ms of a Wan 14B fold on an H200)."""
        inputs = self.inputs + 1  # this fold's input included
        slot = head * inputs + owner.long()
        # .double(): with an empty list, bincount answers in int64 whatever the weights.
        sums = torch.bincount(slot, weights=owner_mass.double(), minlength=self.heads * inputs).double()
        drops = sums.view(self.heads, inputs) / self.blocks
        # An input without single-owner tiles has drop 0 and retires with nothing to move.
        retiring = drops <= self.stability_drop
        self.retired_drop = torch.maximum(self.retired_drop, torch.where(retiring, drops, 0).amax(1).float())
        return ~retiring.view(-1)[slot]

    @property
    def codes(self):
        """(H, B, B) uint8: every tile's code, unpacked."""
        return _unpack_codes(self.tiles, self.blocks * self.blocks).view(self.heads, self.blocks, self.blocks)

    def tensors(self, step, layer):
        name = f"step{step}.layer{layer}"
        return {f"{name}.tiles": self.tiles.cpu(), f"{name}.owner": self.owner.cpu().to(torch.uint16),
                f"{name}.owner_mass": self.owner_mass.cpu(), f"{name}.retired_drop": self.retired_drop.cpu(),
                f"{name}.reuse": self.reuse.cpu()}


def save(states, path, *, tokens, head_dim, block, scale=None, model="unknown", layout=None, timesteps=None):
    """Writes {(step, layer): State} as a calibc-state/3 file for `calibc calibrate --merge`:
    for the same inputs, the bytes `calibc calibrate --state-out` writes (metadata in key order,
    tensors in name order), the states' selection recorded as calibc records it. `timesteps`
    ({step: the model's timestep}) becomes metadata model_timesteps, and masks.json's."""
    steps = sorted({s for s, _ in states})
    layers = max(l for _, l in states) + 1
    first = next(iter(states.values()))

    def fixed(s):
        return s.selection, s.reuse_tolerance, s.stability_drop, s.inputs

    if any(fixed(s) != fixed(first) for s in states.values()):
        raise ValueError("every (step, layer) state must have folded the same inputs with the same selection, "
                         "reuse_tolerance and stability_drop")
    metadata = {"format": FORMAT, "model": model, "selection": str(first.selection), "inputs": str(first.inputs),
                "reuse_tolerance": repr(first.reuse_tolerance), "stability_drop": repr(first.stability_drop),
                "steps": ",".join(map(str, steps)), "layers": str(layers), "heads": str(first.heads),
                "tokens": str(tokens), "head_dim": str(head_dim), "block": str(block),
                "scale": repr(float(scale if scale is not None else 1 / math.sqrt(head_dim)))}
    if layout:
        metadata.update({k: str(v) for k, v in layout.items()})
    if timesteps:
        metadata["model_timesteps"] = ",".join(float_text(timesteps[s]) for s in steps)
    tensors = {}
    for (step, layer), state in states.items():
        tensors.update(state.tensors(step, layer))
    save_file(tensors, path, dict(sorted(metadata.items())))
