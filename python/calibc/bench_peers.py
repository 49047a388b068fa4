"""Our kernels beside PyTorch's on the same inputs and plans, in one process (`make bench-peers`).

    python -m calibc.bench_peers out/masks.json out/kernels/libcalibkernels.so out/recordings/prompt2.safetensors

For the distinct plans of a calibrated masks.json (from `make example`; `rows` and `bitmap`
patterns alike), on the held-out recording's Q and K (random V): calibc sparse and dense (fp32,
one head), torch's scaled_dot_product_attention (dense, fp32, all threads), and flex_attention
compiled with the BlockMask that calibc.to_block_mask exports for the same plan (reused query
blocks keep their source's key blocks, as FlexAttention has no reuse). Prints times and
ours-over-theirs ratios (below 1: we are faster).
"""

import argparse
import os
import statistics
import time

import torch
from torch.nn.attention.flex_attention import flex_attention

from .blockmask import to_block_mask
from .kernels import load
from .masks import Masks
from .safetensors import read_tensor


def median_seconds(fn, runs=5):
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("masks")
    parser.add_argument("library")
    parser.add_argument("recording")
    parser.add_argument("--plans", type=int, default=6, help="distinct plans to measure (default 6)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (default 5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count())
    masks = Masks.read(args.masks)
    kernels = load(args.library)
    n, d, blocks = masks.tokens, masks.head_dim, masks.blocks
    compiled_flex = torch.compile(flex_attention, dynamic=False)  # CPU flex with dynamic shapes fails to build (torch 2.13)
    print(f"tokens {n}, head_dim {d}, block {masks.block}; torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("plan            density  calibc ms  dense ms  SDPA ms  flex ms   calibc/SDPA  calibc/flex")
    rows = []
    for name in masks.names:
        use = masks.first_use(name)
        if name == "dense" or use is None:
            continue
        step, layer, head = use
        pattern = masks.patterns[name]
        q = read_tensor(args.recording, f"step{step}.layer{layer}.q")[head].float().contiguous()
        k = read_tensor(args.recording, f"step{step}.layer{layer}.k")[head].float().contiguous()
        v = torch.rand(n, d, generator=torch.Generator().manual_seed(0))
        block_mask = to_block_mask(masks, step, layer, heads=[head])
        q4, k4, v4 = q[None, None], k[None, None], v[None, None]
        ours = median_seconds(lambda: kernels.attention(step, layer, head, q, k, v), args.runs)
        dense = median_seconds(lambda: kernels.dense_attention(q, k, v), args.runs)
        sdpa = median_seconds(lambda: torch.nn.functional.scaled_dot_product_attention(q4, k4, v4), args.runs)
        flex = median_seconds(lambda: compiled_flex(q4, k4, v4, block_mask=block_mask), args.runs)
        computed = blocks - len(pattern.reuse)
        print(f"{name:14} {pattern.density():8.3f}  {ours * 1e3:9.2f}  {dense * 1e3:8.2f}  {sdpa * 1e3:7.2f}  "
              f"{flex * 1e3:7.2f}   {ours / sdpa:11.2f}  {ours / flex:11.2f}   ({computed}/{blocks} rows computed)")
        rows.append((name, ours, dense, sdpa, flex))
        if len(rows) >= args.plans:
            break
    return rows


if __name__ == "__main__":
    main()
