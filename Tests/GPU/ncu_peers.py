#!/usr/bin/env python3
"""calibc's layer call and FlashAttention-4's block-sparse forward on the same plans and inputs,
once each inside an NVTX range "measure" after warming up, for Nsight Compute to profile both
kernels side by side (issue 29, item 2: where calibc's cycles go against FA4's):

    ncu --nvtx --nvtx-include "measure/" --section SpeedOfLight --section WarpStateStats \\
        --section SchedulerStats python3 Tests/GPU/ncu_peers.py LIB.so:masks.json LAYER

FA4 as bench_gpu.py installs it (Tests/GPU/install_fa4.sh); (B, H, S, D) bf16 inputs, B = 1.
usage: PYTHONPATH=python:<fa4> ncu_peers.py LIB.so:masks.json LAYER"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import calibc
from bench_gpu import fa4, fa4_blocks, fa4_func

so, mj = sys.argv[1].split(":")
layer = int(sys.argv[2])
lib, masks = calibc.load_cuda(so), calibc.Masks.read(mj)
if fa4_func is None:
    sys.exit("FlashAttention-4 is not importable: install it (Tests/GPU/install_fa4.sh)")
torch.manual_seed(0)
q, k, v = (torch.randn(1, lib.heads, lib.tokens, lib.head_dim, device="cuda", dtype=torch.bfloat16) for _ in range(3))
q4, k4, v4 = (t.transpose(1, 2).contiguous() for t in (q, k, v))
out = torch.empty_like(q)
step = lib.steps[0]
blocks = fa4_blocks(masks, step, layer, lib.heads)
for _ in range(3):  # loads, uploads the tables, compiles FA4's kernel
    lib.attention_layer(step, layer, q, k, v, out=out, layout="bhsd")
    fa4(q4, k4, v4, blocks)
torch.cuda.synchronize()
with torch.cuda.nvtx.range("measure"):
    lib.attention_layer(step, layer, q, k, v, out=out, layout="bhsd")
    fa4(q4, k4, v4, blocks)
    torch.cuda.synchronize()
print(f"profiled layer {layer} ({masks.pattern_name(step, layer, 0)}): calibc and FA4", flush=True)
