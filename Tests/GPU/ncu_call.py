#!/usr/bin/env python3
"""One layer call of a compiled CUDA set on fresh random (B, H, S, D) bf16 inputs, B = 1, for Nsight
Compute to profile its attention launch (queue_run.sh stalls: the warp stall samples of each of the
loop's instructions, which say what a turn waits on where the clock marks cannot).
usage: PYTHONPATH=python ncu_call.py LIB.so LAYER [fp8|fp8-pv]"""
import sys

import torch

import calibc

lib = calibc.load_cuda(sys.argv[1])
layer, precision = int(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else None)
q, k, v = (torch.randn(1, lib.heads, lib.tokens, lib.head_dim, device="cuda", dtype=torch.bfloat16) for _ in range(3))
lib.attention_layer(lib.steps[0], layer, q, k, v, layout="bhsd", precision=precision)
torch.cuda.synchronize()
