#!/usr/bin/env python3
"""Times calibc builds side by side (e.g. kernel versions of docs/gpu.md) on the same masks:
the dense entry and every layer of step 0, bf16, B = 1, (B, H, S, D).
usage: PYTHONPATH=python bench_versions.py LABEL=DIR.so:masks.json ..."""
import sys
import torch
import calibc
from bench_gpu import bench, density, layer_call

dev = "cuda"
torch.manual_seed(0)
for arg in sys.argv[1:]:
    label, rest = arg.split("=", 1)
    so, mj = rest.split(":")
    lib, masks = calibc.load_cuda(so), calibc.Masks.read(mj)
    B, H, N, D = 1, lib.heads, lib.tokens, lib.head_dim
    q, k, v = (torch.randn(B, H, N, D, device=dev, dtype=torch.bfloat16) for _ in range(3))
    out = torch.empty_like(q)
    full = 4 * B * H * N * N * D
    row = [("dense", 1.0, bench(lambda: layer_call(lib, None, 0, q, k, v, out))[0])]
    step = lib.steps[0]
    for layer in range(lib.layers):
        kind = masks.pattern_name(step, layer, 0)
        kind = "dense plan" if kind == "dense" else kind.split("_")[1]
        row.append((kind, density(masks, step, layer), bench(lambda: layer_call(lib, step, layer, q, k, v, out))[0]))
    for kind, dens, t in row:
        print(f"{label} {kind} density {dens:.3f}: {t:.2f} ms {full * dens / t / 1e9:.0f} TFLOP/s", flush=True)
    del q, k, v, out
    torch.cuda.empty_cache()
