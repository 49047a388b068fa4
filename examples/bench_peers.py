"""Our kernels beside PyTorch's SDPA and flex_attention: now `python -m calibc.bench_peers` in the
package (`make bench-peers`); this script runs the same.

    python examples/bench_peers.py out/masks.json out/kernels/libcalibkernels.so out/recordings/prompt2.safetensors
"""

from calibc.bench_peers import main

if __name__ == "__main__":
    main()
