#!/usr/bin/env python3
"""Times calibc builds side by side (kernel versions of docs/gpu.md) on the same masks, and
FlashAttention-4's block-sparse forward on the same plans where it is installed: the dense entry
and every layer of step 0, bf16, B = 1. Builds of one masks file are interleaved (a round of
each, `--rounds` times, each round starting one label later, medians), so clock drift and the
round's order fall on all alike (give at least as many rounds as labels); ratios are to the first
label. --precision fp8 or fp8-pv times the builds' FP8 calls instead (FA4 stays bf16).
usage: PYTHONPATH=python bench_versions.py LABEL=DIR.so:masks.json ... [--rounds N] [--precision P]"""
import sys
from collections import defaultdict

import numpy as np
import torch

import calibc
from bench_gpu import bench, builds_by_masks, density, dense_inputs, fa4, fa4_blocks, fa4_func, layer_call

dev = "cuda"
torch.manual_seed(0)
rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 5
precision = sys.argv[sys.argv.index("--precision") + 1] if "--precision" in sys.argv else None
for mj, builds in builds_by_masks(sys.argv[1:]).items():
    masks, lib0 = calibc.Masks.read(mj), builds[0][1]
    B, H, N, D = 1, lib0.heads, lib0.tokens, lib0.head_dim
    q, k, v, q4, k4, v4, out = dense_inputs(lib0)
    full = 4 * B * H * N * N * D
    step = lib0.steps[0]
    rows = [("dense", 1.0, None)] + [(masks.pattern_name(step, l, 0), density(masks, step, l), l) for l in range(lib0.layers)]
    for kind, dens, layer in rows:
        kind = "dense" if layer is None else ("dense plan" if kind == "dense" else kind.split("_")[1])
        runs = {label: (lambda lib=lib: layer_call(lib, None if layer is None else step, layer or 0, q, k, v, out, precision))
                for label, lib in builds}
        if fa4_func is not None and masks.block == 128:
            blocks = None if layer is None else fa4_blocks(masks, step, layer, H)
            runs["FA4"] = lambda blocks=blocks: fa4(q4, k4, v4, blocks)
        times = defaultdict(list)
        labels = list(runs)
        for r in range(rounds):
            # Each round starts one label later: whichever ran first in a round read ≈1% slower
            # (up to 3% on a row) in runs 142 and 144, so a fixed order favoured the later labels.
            for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                times[label].append(bench(runs[label], min_reps=3, warm_ms=20, run_ms=60)[0])
        ms = {label: float(np.median(t)) for label, t in times.items()}
        first = builds[0][0]
        print(f"{mj} {kind} density {dens:.3f}: " + ", ".join(
            f"{label} {t:.3f} ms {full * dens / t / 1e9:.0f} TFLOP/s ({t / ms[first]:.3f})" for label, t in ms.items()), flush=True)
    del q, k, v, q4, k4, v4, out
    torch.cuda.empty_cache()
