"""Our kernels beside PyTorch's on the same inputs and plans, in one process (`make bench-peers`).

    python examples/bench_peers.py out/masks.json out/kernels/libcalibkernels.so out/recordings/prompt2.safetensors

For the distinct plans of a calibrated masks.json (from `make example`; `rows` and `bitmap`
patterns alike), on the held-out recording's Q and K (random V): calibc sparse and dense (fp32,
one head), torch's scaled_dot_product_attention (dense, fp32, all threads), and flex_attention
compiled with the BlockMask that calibc.to_block_mask exports for the same plan (reused query
blocks keep their source's key blocks, as FlexAttention has no reuse). Prints times and
ours-over-theirs ratios (below 1: we are faster); then dense attention over a whole layer's heads
in one call against SDPA on the same tensors. Each time is the best of --runs, the contenders
taking turns.
"""

import argparse
import os
import time

import torch
from torch.nn.attention.flex_attention import flex_attention

from calibc import Masks, load, to_block_mask
from calibc.safetensors import read_tensor


def best_seconds(fns, runs=5):
    """Each function's fastest of `runs` timed calls after a warm-up, the functions taking turns,
    so a noisy neighbour slows all of them alike instead of whichever ran during it."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(runs):
        for fn, ts in zip(fns, times):
            start = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - start)
    return [min(ts) for ts in times]


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
    print("plan            density  calibc ms  dense ms  SDPA ms  flex ms   calibc/SDPA  calibc/flex  dense/SDPA")
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
        ours, dense, sdpa, flex = best_seconds([
            lambda: kernels.attention(step, layer, head, q, k, v),
            lambda: kernels.dense_attention(q, k, v),
            lambda: torch.nn.functional.scaled_dot_product_attention(q4, k4, v4),
            lambda: compiled_flex(q4, k4, v4, block_mask=block_mask)], args.runs)
        computed = blocks - len(pattern.reuse)
        print(f"{name:14} {pattern.density():8.3f}  {ours * 1e3:9.2f}  {dense * 1e3:8.2f}  {sdpa * 1e3:7.2f}  "
              f"{flex * 1e3:7.2f}   {ours / sdpa:11.2f}  {ours / flex:11.2f}  {dense / sdpa:10.2f}   ({computed}/{blocks} rows computed)")
        rows.append((name, ours, dense, sdpa, flex))
        if len(rows) >= args.plans:
            break
    # Dense attention as a model calls it: all heads of a layer at once, (1, S, H, D) as diffusers
    # holds them, against SDPA on the same tensors in its (1, H, S, D) view.
    first = masks.timesteps[0]
    q, k = (read_tensor(args.recording, f"step{first}.layer0.{x}").float().transpose(0, 1).unsqueeze(0).contiguous() for x in "qk")
    v = torch.rand(q.shape, generator=torch.Generator().manual_seed(0))
    ours, sdpa = best_seconds([
        lambda: kernels.dense_attention_layer(q, k, v),
        lambda: torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))],
        args.runs)
    flop = 4 * n * n * d * q.shape[2]
    print(f"\ndense, a layer of {q.shape[2]} heads in one call: calibc {ours * 1e3:.1f} ms ({flop / ours / 1e9:.1f} GFLOP/s), "
          f"SDPA {sdpa * 1e3:.1f} ms ({flop / sdpa / 1e9:.1f} GFLOP/s): calibc/SDPA {ours / sdpa:.2f}")
    return rows


if __name__ == "__main__":
    main()
