"""Our kernels beside PyTorch's on the same inputs and plans, in one process (`make bench-peers`).

    python examples/bench_peers.py out/masks.json out/kernels/libcalibkernels.so out/recordings/prompt2.safetensors

For the distinct plans of a calibrated masks.json (from `make example`), on the held-out
recording's Q and K (random V): calibc sparse and dense (fp32), torch's
scaled_dot_product_attention (dense, fp32, all threads), and flex_attention compiled with a
BlockMask built from the same plan (reused query blocks keep their source's key blocks, as
FlexAttention has no reuse). Prints times and ours-over-theirs ratios (below 1: we are faster).
"""

import json
import os
import statistics
import sys
import time

import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "diffusers"))
from calibkernels import CalibKernels  # noqa: E402


def read_safetensors(path, name, head):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        info = header[name]
        start, end = info["data_offsets"]
        f.seek(8 + n + start)
        raw = bytearray(f.read(end - start))
    dtype = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}[info["dtype"]]
    return torch.frombuffer(raw, dtype=dtype).reshape(info["shape"])[head].float().contiguous()


def kept_blocks(pattern, blocks):
    """The (query block, key block) mask of a `rows` pattern; reused blocks take their source's keys."""
    rows = pattern["rows"]
    source = {t: s for t, s in pattern.get("reuse", [])}
    mask = torch.zeros(blocks, blocks, dtype=torch.bool)
    for q in range(blocks):
        s = q
        while s in source:
            s = source[s]
        for start, end in rows[s]:
            mask[q, start:end] = True
    return mask


def median_seconds(fn, runs=5):
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    masks_path, library, recording = sys.argv[1:4]
    torch.set_num_threads(os.cpu_count())
    masks = json.load(open(masks_path))
    kernels = CalibKernels(library)
    n, d, block = masks["tokens"], masks["head_dim"], masks["block"]
    blocks = (n + block - 1) // block
    compiled_flex = torch.compile(flex_attention)
    print(f"tokens {n}, head_dim {d}, block {block}; torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("plan            density  calibc ms  dense ms  SDPA ms  flex ms   calibc/SDPA  calibc/flex")
    seen = set()
    for entry in masks["assignments"]:
        name = entry["pattern"]
        if name in seen or name == "dense":
            continue
        seen.add(name)
        step = int(str(entry["steps"]).split("-")[0])
        layer, head = int(entry["layers"]), int(entry["heads"])
        q = read_safetensors(recording, f"step{step}.layer{layer}.q", head)
        k = read_safetensors(recording, f"step{step}.layer{layer}.k", head)
        v = torch.rand(n, d, generator=torch.Generator().manual_seed(0))
        mask = kept_blocks(masks["patterns"][name], blocks)
        block_mask = create_block_mask(lambda b, h, qi, ki: mask[qi // block, ki // block], None, None, n, n,
                                       device="cpu", BLOCK_SIZE=block)
        q4, k4, v4 = q[None, None], k[None, None], v[None, None]
        ours = median_seconds(lambda: kernels.attention(step, layer, head, q, k, v))
        dense = median_seconds(lambda: kernels.dense_attention(q, k, v))
        sdpa = median_seconds(lambda: torch.nn.functional.scaled_dot_product_attention(q4, k4, v4))
        flex = median_seconds(lambda: compiled_flex(q4, k4, v4, block_mask=block_mask))
        computed = sum(len(r) > 0 for r in masks["patterns"][name]["rows"])
        density = sum(e - s for r in masks["patterns"][name]["rows"] for s, e in r) / blocks / blocks
        print(f"{name:14} {density:8.3f}  {ours * 1e3:9.2f}  {dense * 1e3:8.2f}  {sdpa * 1e3:7.2f}  {flex * 1e3:7.2f}"
              f"   {ours / sdpa:11.2f}  {ours / flex:11.2f}   ({computed}/{blocks} rows computed)")
        if len(seen) >= 6:
            break


if __name__ == "__main__":
    main()
