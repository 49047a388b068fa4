#!/usr/bin/env python3
"""How often the wgmma kernel rescales O (issue 27, docs/gpu.md queue): a warp rescales when any of
its 16 rows' maximum rises more than the slack (log2 units) above the reference its probabilities
are taken against. Counted for random N(0, 1) q and k at head_dim 128 over a dense Wan 1.3B row
(32,768 keys, 256 tiles), for the FP8 instances' slack before (0) and after (2) branch fp8-next.
usage: python3 Tests/GPU/rescale_count.py"""
import numpy as np

rng = np.random.default_rng(0)
dim, keys, rows = 128, 32768, 16
q, k = rng.standard_normal((rows, dim)), rng.standard_normal((keys, dim))
tile_max = ((q @ k.T) / np.sqrt(dim) * np.log2(np.e)).reshape(rows, keys // 128, 128).max(2)
for slack in (0, 2):
    ref, rescaled = tile_max[:, 0], 0
    for j in range(1, tile_max.shape[1]):
        up = tile_max[:, j] > ref + slack
        rescaled += bool(up.any())
        ref = np.where(up, tile_max[:, j], ref)
    print(f"slack {slack}: O rescaled on {rescaled} of {tile_max.shape[1] - 1} tiles ({rescaled / (tile_max.shape[1] - 1):.0%})")
