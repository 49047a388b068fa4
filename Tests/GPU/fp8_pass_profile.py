#!/usr/bin/env python3
"""Where an FP8 call's time goes (issue 27, docs/gpu.md "FP8"): the launches of one call (the
quantizing pass's stats, combine and quantize, then the attention kernel) timed by the CUDA
profiler, the gaps between them, and the bandwidth each pass launch reaches for the bytes it must
move; for the dense entry and the sparsest layer of step 0, `fp8` and `fp8-pv`, bf16 beside.
usage: PYTHONPATH=python:Tests/GPU fp8_pass_profile.py DIR.so:masks.json ..."""
import sys
from collections import defaultdict

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

import calibc
from bench_gpu import builds_by_masks, density, dense_inputs, layer_call

CALLS = 20


def role(name):
    for part in ("fp8_stats", "fp8_combine", "fp8_quantize"):
        if part in name:
            return part[4:]
    return "attention"


def kernels(prof):
    """(role, start µs, end µs) of every kernel the profiler saw, in launch order."""
    out = []
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            out.append((role(e.name), e.time_range.start, e.time_range.end))
    return sorted(out, key=lambda x: x[1])


for mj, builds in builds_by_masks(sys.argv[1:]).items():
    lib = builds[0][1]
    masks = calibc.Masks.read(mj)
    q, k, v, _, _, _, out = dense_inputs(lib)
    bhnd = lib.heads * lib.tokens * lib.head_dim
    step = lib.steps[0]
    sparsest = min(range(lib.layers), key=lambda l: density(masks, step, l))
    for where, layer in (("dense", None), (f"layer {sparsest} density {density(masks, step, sparsest):.3f}", sparsest)):
        for precision in (None, "fp8", "fp8-pv"):
            call = lambda: layer_call(lib, None if layer is None else step, layer or 0, q, k, v, out, precision)
            for _ in range(5):
                call()
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(CALLS):
                call()
            end.record()
            torch.cuda.synchronize()
            wall = start.elapsed_time(end) * 1e3 / CALLS
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(CALLS):
                    call()
                torch.cuda.synchronize()
            ks = kernels(prof)
            dur, gap = defaultdict(list), defaultdict(list)
            for i, (r, s, e) in enumerate(ks):
                dur[r].append(e - s)
                if i:
                    gap[r].append(s - ks[i - 1][2])
            if not ks:
                print(prof.key_averages().table(row_limit=20))
                continue
            # Bytes each launch must move (bf16 in, e4m3 out): stats reads k (fp8) and v; quantize
            # reads q, k (fp8) and v and writes them as one byte an element.
            tensors = 2 if precision == "fp8" else 1
            need = {"stats": tensors * 2 * bhnd, "quantize": (tensors + 1) * 3 * bhnd if precision == "fp8" else 3 * bhnd}
            parts = []
            for r in ("stats", "combine", "quantize", "attention"):
                if r not in dur:
                    continue
                d = float(np.median(dur[r]))
                bw = f", {need[r] / d / 1e6:.2f} TB/s" if r in need else ""
                g = f", gap before {np.median(gap[r]):.1f} µs" if gap[r] else ""
                parts.append(f"{r} {d:.1f} µs{bw}{g}")
            total = sum(float(np.median(v)) for v in dur.values())
            print(f"{mj} {where} {precision or 'bf16'}: call {wall:.1f} µs (kernels {total:.1f}): " + "; ".join(parts), flush=True)
    del q, k, v, out
    torch.cuda.empty_cache()
