"""calibc's diffusers processor under Ulysses context parallelism: two CPU processes over gloo
give the output of one process (each rank runs the plans of its global head indices)."""

import os
import socket
import subprocess
import sys

import pytest
import torch

pytest.importorskip("diffusers")  # the GPU machine's Python has none (Tests/GPU/test.sh runs the suite there)

from calibc.diffusers import CalibAttention
from conftest import compile_library, needs_layer_entry, random_masks, relative_error
from tiny_wan import HEAD_DIM, HEADS, LAYERS, STEPS, TOKENS, denoise, tiny_wan

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ulysses_two_ranks_equal_one_process(tmp_path):
    # Different random plans per head: a rank using local head indices (0, 1) instead of its global
    # ones (2, 3 on rank 1) would change the output far beyond rounding.
    masks = random_masks(123, tokens=TOKENS, head_dim=HEAD_DIM, block=64, layers=LAYERS, heads=HEADS,
                         timesteps=tuple(range(STEPS)), density=0.2)
    kernels = compile_library(masks, tmp_path)
    needs_layer_entry(kernels)  # the single-process run is the layer call

    port, env = free_port(), dict(os.environ, OMP_NUM_THREADS="1")
    ranks = [subprocess.Popen([sys.executable, os.path.join(HERE, "cp_worker.py"), str(r), "2", str(port),
                               kernels.path, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in ranks]
    for rank, (p, log) in enumerate(zip(ranks, logs)):
        assert p.returncode == 0, f"rank {rank}:\n{log[-4000:]}"
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    model = tiny_wan()
    sparse = CalibAttention(model, kernels)
    try:
        single = denoise(model, prompt=4)
    finally:
        sparse.remove()
    assert sparse.calls == STEPS * LAYERS and sparse.fallbacks == 0
    for r in results:
        assert r["calls"] == STEPS * LAYERS and r["fallbacks"] == 0, r
    parallel = results[0]["out"]
    assert parallel.shape == single.shape
    assert relative_error(parallel, single) < 1e-5

    # The plans matter at this tolerance: the same model with dense attention is far away.
    dense = denoise(tiny_wan(), prompt=4)
    assert relative_error(dense, single) > 1e-3
