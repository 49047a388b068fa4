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

On CUDA tensors block mass is a Triton kernel (`calibc.triton_mass`, a tile of scores at a
time); on the CPU, torch ops over `rows` query rows × all keys at a time. `step` measures every
step-th row of each query block only (docs/calibration.md, section 8: what that saves and what
it changes). Both are checked against the C kernel: on the CPU in Tests/python/test_calibration.py,
on the GPU in Tests/GPU/calibrate_gpu.py (results in docs/calibration.md).
"""

import math

import torch

from .safetensors import save_file

__all__ = ["block_mass", "sampled_rows", "select_mass", "State", "save"]

UNSELECTED, SHARED = -1.0, -2.0


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
