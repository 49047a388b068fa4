"""Dense attention on a many-core machine: calibc's layer call against torch's SDPA on the same
tensors, same threads, in one process (issue 12's comparison), fp32 and bf16, on the kernels of
`make cpu-scaling-sources` built there as a shared library:

    gcc -std=c11 -O3 -fopenmp -shared -fPIC -I .cpu-scaling/include .cpu-scaling/calib_kernels.c \\
        .cpu-scaling/calib_schedule.c -o .cpu-scaling/libcalibkernels.so
    PYTHONPATH=python python3 Tests/CPU/dense_vs_sdpa.py .cpu-scaling/libcalibkernels.so [OTHER.so ...]

Shape of Tests/CPU/scaling-masks.json: N = 32,760 (Wan 1.3B 480p), head_dim 128, 4 heads. More
libraries (builds of other kernel versions) are timed in the same turns."""

import os
import sys

import torch

from bench_peers import best_seconds  # examples/bench_peers.py (PYTHONPATH=python:examples)
from calibc.kernels import load

libraries = [load(path) for path in sys.argv[1:]]
torch.set_num_threads(os.cpu_count())
torch.manual_seed(0)
flop = 4 * 32760 ** 2 * 128 * 4
for dtype in (torch.float32, torch.bfloat16):
    q, k, v = (torch.randn(1, 32760, 4, 128).to(dtype) for _ in range(3))
    times = best_seconds([lambda lib=lib: lib.dense_attention_layer(q, k, v) for lib in libraries] + [
        lambda: torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))], 3)
    sdpa = times[-1]
    print(f"{os.cpu_count()} threads, torch {torch.__version__}: dense {str(dtype)[6:]} layer (4 heads × 32,760 tokens, "
          f"d 128): SDPA {sdpa * 1e3:.0f} ms ({flop / sdpa / 1e9:.0f} GFLOP/s)")
    for lib, path, t in zip(libraries, sys.argv[1:], times):
        print(f"  {path} ({lib.isa}): {t * 1e3:.0f} ms ({flop / t / 1e9:.0f} GFLOP/s), {sdpa / t:.2f}× SDPA's speed")
