#!/usr/bin/env python3
"""Where a pass CTA's time goes in the FP8 launch (issue 27, docs/gpu.md "The pass beside the
loop"): CTA 0's first 85 pass steps from a -DCALIB_CUDA_TRACE build (quantize.cuh's fp8_pass
marks each step's start, the moment its rows are in shared memory, and its end), with each
step's kind from the same walk the kernel takes (quantize.cuh, PassSteps), summed by kind:
cycles waiting for the rows and the barrier, and cycles computing. Dense, `fp8` and `fp8-pv`.
usage: PYTHONPATH=python pass_trace.py DIR.so [PASS_CTAS]"""
import ctypes, os, sys
from collections import defaultdict
import numpy as np
import torch
import calibc

so = sys.argv[1]
lib = calibc.load_cuda(so)
props = torch.cuda.get_device_properties(0)
grid = min(props.multi_processor_count, 160)
pass_ctas = int(os.environ.get("CALIB_CUDA_PASS_CTAS", "16"))
B, H, N, D = 1, lib.heads, lib.tokens, lib.head_dim
units = B * H
blocks = -(-N // 128)
lead = min(max(1, props.L2_cache_size // (N * D * 4)) * B, units)


def walk(kqk):
    """CTA 0's steps: quantize.cuh's PassSteps for c = 0 (every unit's team holds it)."""
    out = []
    for g in range(units + 1):
        if g < units:
            out += ["stats"] * len(range(0, blocks, min(grid if g < lead else pass_ctas, blocks, 160))) + ["stats end"]
        if g >= 1:
            team = grid if g - 1 < lead else pass_ctas
            for _ in range(0, blocks, team):
                out += ["q", "k", "v"] if kqk else ["v"]
            out += ["quantize end"]
    return out


buf = (ctypes.c_longlong * 2048)()
q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
out = torch.empty_like(q)
for precision in ("fp8", "fp8-pv"):
    for _ in range(3):
        lib.dense_attention_layer(q, k, v, out=out, layout="bhsd", precision=precision)
    torch.cuda.synchronize()
    lib.lib.calib_cuda_trace_read(buf)
    t = np.array(buf[768:768 + 255], dtype=np.int64).reshape(85, 3)
    kinds = walk(precision == "fp8")[:85]
    n = min(len(kinds), int((t[:, 2] > 0).sum()))
    wait, work = defaultdict(list), defaultdict(list)
    for i in range(n):
        wait[kinds[i]].append(t[i, 1] - t[i, 0])
        work[kinds[i]].append(t[i, 2] - t[i, 1])
    span = t[n - 1, 2] - t[0, 0]
    print(f"{precision}: CTA 0, {n} steps in {span} cycles ({span / n:.0f} a step; lead {lead} units, grid {grid}, pass {pass_ctas})")
    for kind in wait:
        print(f"  {kind:13s} x{len(wait[kind]):3d}: wait median {int(np.median(wait[kind])):6d} (max {int(max(wait[kind]))}), "
              f"compute median {int(np.median(work[kind])):6d} (max {int(max(work[kind]))})")
