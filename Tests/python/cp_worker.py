"""One rank of test_context_parallel.py: the tiny Wan under diffusers' Ulysses context parallelism
on CPU (gloo), with calibc's processor; rank 0 saves the output and both save their counters.

    python cp_worker.py RANK WORLD PORT LIBRARY OUT_DIR
"""

import os
import sys
from unittest import mock

import diffusers.hooks.context_parallel
import torch
import torch.distributed as dist
from diffusers import ContextParallelConfig

from calibc.diffusers import CalibAttention

# A subprocess does not get pytest.ini's pythonpath, where the tests find the example's tiny Wan.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "diffusers"))
from tiny_wan import denoise, tiny_wan  # noqa: E402


def main():
    rank, world, port, library, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}")
    try:
        model = tiny_wan()
        # Installed before enable_parallelism: the config reaches the wrapped processor through it.
        sparse = CalibAttention(model, library)
        # diffusers 0.42.1 picks the rank's device as rank % torch.accelerator.device_count(), which is
        # 0 on a CPU-only machine; the device is recorded but unused for CPU tensors.
        with mock.patch.object(torch.accelerator, "device_count", return_value=1):
            model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world))
        # diffusers 0.42.1 warns through `logger.warning_once`, which its logger lacks, when Wan's cp_plan
        # meets a 1D timestep (its split is meant for Wan 2.2's per-token timesteps).
        cp_logger = diffusers.hooks.context_parallel.logger
        if not hasattr(cp_logger, "warning_once"):
            cp_logger.warning_once = cp_logger.warning
        out = denoise(model, prompt=4)
        torch.save({"calls": sparse.calls, "fallbacks": sparse.fallbacks, "out": out if rank == 0 else None},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
