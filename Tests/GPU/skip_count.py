#!/usr/bin/env python3
"""How often could the wgmma kernel skip a group of exponentials (issue 29, docs/gpu.md "What
bounds v14")? A warp holds 16 rows × 8 columns of a tile per exponential group; if every score
there sits more than T (log2 units) below its row's running reference, all 128 probabilities are
below 2^-T and a vote could leave them out. Counted on CPU over the calibrated plans' kept tiles
of the synthetic recording (`Tests/GPU/sources.sh` writes DIR/fp8synth-rec and DIR/fp8synth.json),
walking each row's tiles in order as the kernel does. Random inputs skip nothing (their scores
span a few units).
usage: PYTHONPATH=python .venv/bin/python Tests/GPU/skip_count.py DIR"""
import os
import sys

import numpy as np

import calibc
from calibc.safetensors import read_tensor

THRESHOLDS = (8, 16, 24)


def main():
    root = sys.argv[1]
    masks = calibc.Masks.read(os.path.join(root, "fp8synth.json"))
    (step,) = masks.timesteps
    recording = os.path.join(root, "fp8synth-rec", "prompt0.safetensors")
    q, k = (read_tensor(recording, f"step{step}.layer0.{x}").double().numpy() for x in "qk")
    heads, tokens, dim = q.shape
    scale = np.log2(np.e) / np.sqrt(dim)
    skipped, groups = np.zeros(len(THRESHOLDS)), 0
    for h in range(heads):
        kept = masks.pattern(step, 0, h).kept
        x = (q[h] @ k[h].T) * scale
        for qb in range(kept.shape[0]):
            ref = np.full(128, -np.inf)
            for kb in np.nonzero(kept[qb])[0]:
                tile = x[qb * 128:(qb + 1) * 128, kb * 128:(kb + 1) * 128]
                ref = np.maximum(ref, tile.max(1))
                top = (tile - ref[:, None]).reshape(8, 16, 16, 8).max(axis=(1, 3))
                skipped += [(top < -t).sum() for t in THRESHOLDS]
                groups += top.size
    print(f"{heads} heads, {tokens} tokens, calibrated plans: groups of 16 rows x 8 columns whose "
          "probabilities all fall below 2^-T of the row's reference: " +
          ", ".join(f"T {t}: {s / groups:.3f}" for t, s in zip(THRESHOLDS, skipped)))


if __name__ == "__main__":
    main()
