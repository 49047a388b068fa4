"""Streaming calibration on the device: block attention mass and the calibration state in torch.

The same reductions as calibc's C kernel (`Sources/CCalibrate/calibrate.c`) and its streaming
state (`Sources/CalibCalibrate/State.swift`, docs/calibration.md section 7), written with
torch ops so they run wherever q and k already are (a GPU during generation) and never
materialise the tokens × tokens matrix:

    mass = block_mass(q, k, block=128)              # (H, B, B) float32, rows sum to 1
    state = State(heads=H, blocks=B, device=q.device)
    state.fold(mass, tau=0.95)                      # one prompt; call once per prompt
    save({(step, layer): state}, "s.safetensors", tokens=N, head_dim=D, block=128,
         selection="mass 0.95")                     # `calibc calibrate --merge` reads it

Scores are computed for `rows` query rows of every head at a time (H × rows × N floats: 3 GB at
H = 40, rows = 256, N = 75,600), a whole number of query blocks per chunk. This is a separate
pass over q and k (docs/calibration.md, section 8, has its cost model); the cheaper way at model
scale, taking the block sums inside the forward's attention kernel, is not written yet.
Tested on the CPU against the C kernel's numbers (Tests/python/test_calibration.py); not yet
run on a GPU.
"""

import math

import torch

from .safetensors import save_file

__all__ = ["block_mass", "select_mass", "State", "save"]

UNSELECTED, SHARED = -1.0, -2.0


def block_mass(q, k, block, scale=None, rows=256):
    """(H, N, D) queries and keys -> (H, B, B) float32: mass[h, qb, kb] = mean over the rows of
    query block qb of the softmax probability on the keys of key block kb (B = ceil(N / block))."""
    heads, tokens, dim = q.shape
    scale = dim ** -0.5 if scale is None else scale
    blocks = (tokens + block - 1) // block
    pad = blocks * block - tokens
    rows = max(block, rows // block * block)  # whole query blocks per chunk
    kf = k.float()
    out = torch.empty(heads, blocks, blocks, dtype=torch.float32, device=q.device)
    for start in range(0, tokens, rows):
        stop = min(tokens, start + rows)
        p = torch.softmax(torch.einsum("hid,hjd->hij", q[:, start:stop].float(), kf) * scale, dim=-1)
        if pad:
            p = torch.nn.functional.pad(p, (0, pad))
        # Sum keys per key block, then rows per query block (the last may be partial).
        per_key = p.view(heads, stop - start, blocks, block).sum(-1, dtype=torch.float64)
        first, last = start // block, (stop + block - 1) // block
        row_pad = (last - first) * block - (stop - start)
        if row_pad:
            per_key = torch.nn.functional.pad(per_key, (0, 0, 0, row_pad))
        sums = per_key.view(heads, last - first, block, blocks).sum(2)
        counts = torch.clamp(torch.minimum(torch.full((last - first,), block, device=q.device),
                                           tokens - torch.arange(first, last, device=q.device) * block), min=1)
        out[:, first:last] = (sums / counts.view(1, -1, 1)).float()
    return out


def select_mass(mass, tau):
    """Per query block, the fewest key blocks holding `tau` of its mass, heaviest first, ties to
    the lower index (calibrate's `--mass`): a (H, B, B) bool mask."""
    # A stable sort of the negated mass orders equal values by index, as calibrate does.
    order = torch.sort(-mass, dim=-1, stable=True).indices
    sorted_mass = torch.gather(mass, -1, order).double()
    total = torch.cumsum(sorted_mass, dim=-1)
    before = torch.cat([torch.zeros_like(total[..., :1]), total[..., :-1]], dim=-1)  # kept before this block
    keep_sorted = before < tau
    keep = torch.zeros_like(keep_sorted)
    keep.scatter_(-1, order, keep_sorted)
    return keep


class State:
    """The calibration state of one (step, layer): per head, `owner` and `owner_mass` (B × B) and
    the pairs' largest row distance (B(B−1)/2), as docs/recordings.md describes. Its size does not
    depend on how many prompts were folded."""

    def __init__(self, heads, blocks, device="cpu"):
        self.heads, self.blocks, self.inputs = heads, blocks, 0
        self.owner = torch.full((heads, blocks, blocks), UNSELECTED, device=device)
        self.owner_mass = torch.zeros(heads, blocks, blocks, device=device)
        self.distance = torch.zeros(heads, blocks * (blocks - 1) // 2, device=device)
        self._pairs = torch.triu_indices(blocks, blocks, offset=1, device=device)

    def fold(self, mass, tau=None, selected=None):
        """Folds one input's (H, B, B) block mass, with its selection (`selected`, a bool mask)
        or `--mass tau`."""
        if selected is None:
            selected = select_mass(mass, tau)
        i = float(self.inputs)
        first = selected & (self.owner == UNSELECTED)
        again = selected & (self.owner >= 0)
        self.owner = torch.where(first, torch.full_like(self.owner, i), torch.where(again, torch.full_like(self.owner, SHARED), self.owner))
        self.owner_mass = torch.where(first, mass.float(), torch.where(again, torch.zeros_like(self.owner_mass), self.owner_mass))
        # L1 distances between the rows of each head, in float64 as the C kernel sums them.
        d = torch.cdist(mass.double(), mass.double(), p=1)[:, self._pairs[0], self._pairs[1]].float()
        self.distance = torch.maximum(self.distance, d)
        self.inputs += 1

    def tensors(self, step, layer):
        name = f"step{step}.layer{layer}"
        distance = self.distance if self.blocks > 1 else torch.zeros(self.heads, 1)
        return {f"{name}.owner": self.owner.cpu(), f"{name}.owner_mass": self.owner_mass.cpu(), f"{name}.distance": distance.cpu()}


def save(states, path, *, tokens, head_dim, block, selection, scale=None, model="unknown", layout=None):
    """Writes {(step, layer): State} as a calibc-state/1 file for `calibc calibrate --merge`.
    `selection` is what calibc would record, e.g. "mass 0.95"."""
    steps = sorted({s for s, _ in states})
    layers = max(l for _, l in states) + 1
    first = next(iter(states.values()))
    metadata = {"format": "calibc-state/1", "model": model, "selection": selection, "inputs": str(first.inputs),
                "steps": ",".join(map(str, steps)), "layers": str(layers), "heads": str(first.heads),
                "tokens": str(tokens), "head_dim": str(head_dim), "block": str(block),
                "scale": repr(float(scale if scale is not None else 1 / math.sqrt(head_dim)))}
    if layout:
        metadata.update({k: str(v) for k, v in layout.items()})
    tensors = {}
    for (step, layer), state in states.items():
        tensors.update(state.tensors(step, layer))
    save_file(tensors, path, metadata)
