#!/usr/bin/env python3
"""Where an FP8 call's time goes (issue 27, docs/gpu.md "FP8"): the launches of one call (the
quantizing pass's, then the attention kernel; the library names them, calib_cuda_pass_roles)
timed apart by the events a -DCALIB_CUDA_TRACE build records between them (the profiler's CUPTI
does not start on the GPU machine), with each pass launch's bandwidth for the bytes it must
move; for the dense entry and the sparsest layer of step 0, `fp8` and `fp8-pv`. "call" is one call's time (bench_gpu's
median), so call − the launches' sum is what launching costs.
usage: PYTHONPATH=python:Tests/GPU fp8_pass_profile.py LABEL=TRACE_DIR.so:masks.json ..."""
import ctypes
import sys

import numpy as np
import torch

import calibc
from bench_gpu import bench, builds_by_masks, density, dense_inputs, layer_call

CALLS = 20

groups = builds_by_masks(sys.argv[1:])
if not groups:  # run 68 gave a bare DIR.so:masks.json and this printed nothing
    sys.exit(__doc__)
for mj, builds in groups.items():
    masks = calibc.Masks.read(mj)
    for label, lib in builds:  # each build in turn (run 115 printed the first one's alone)
        lib.lib.calib_cuda_pass_roles.restype = ctypes.c_char_p
        roles = lib.lib.calib_cuda_pass_roles().decode().split(",")
        q, k, v, _, _, _, out = dense_inputs(lib)
        bhnd = lib.heads * lib.tokens * lib.head_dim
        step = lib.steps[0]
        sparsest = min(range(lib.layers), key=lambda l: density(masks, step, l))
        ms = (ctypes.c_float * len(roles))()
        for where, layer in (("dense", None), (f"layer {sparsest} density {density(masks, step, sparsest):.3f}", sparsest)):
            for precision in ("fp8", "fp8-pv"):
                call = lambda: layer_call(lib, None if layer is None else step, layer or 0, q, k, v, out, precision)
                wall = bench(call, min_reps=5, warm_ms=20, run_ms=60)[0] * 1e3
                each = []
                for _ in range(CALLS):
                    call()
                    assert lib.lib.calib_cuda_pass_read(ms) == 0
                    each.append([x * 1e3 for x in ms])
                med = np.median(np.array(each), axis=0)
                # Bytes each pass launch must move (bf16 in, e4m3 out): stats reads all of v and, for
                # fp8, one token in 16 of k; quantize reads q, k (fp8) and v once from memory and
                # writes each as a byte an element.
                n = 3 if precision == "fp8" else 1
                need = {"stats": 2 * bhnd * (1 + (1 / 16 if precision == "fp8" else 0)), "quantize": n * 3 * bhnd}
                parts = [f"{r} {d:.1f} µs" + (f" ({need[r] / d / 1e6:.2f} TB/s)" if r in need else "") for r, d in zip(roles, med)]
                print(f"{label} {mj} {where} {precision}: call {wall:.1f} µs, launches {med.sum():.1f}: " + "; ".join(parts), flush=True)
        del q, k, v, out
        torch.cuda.empty_cache()
