#!/usr/bin/env python3
"""Issue 27 item 3 (GPU machine): how far calibc's FP8 output is from float64 (precision "fp8":
Q·Kᵀ and P·V on e4m3; "fp8-pv": P·V only), beside calibc bf16 and SageAttention (INT8 Q·Kᵀ, FP16 P·V; dense only, it takes no block mask; where installed), on
the same inputs, relative L2 = ‖out − ref‖ / ‖ref‖ over the whole layer:

  N(0, 1)            q, k, v standard normal (bf16)
  K offset channels  four channels of k at 20 ± 1: large and nearly constant over tokens
  K scaled channels  four channels of k ×10: large and varying
  V mean 1           v + 1 in every channel: O grows over a row's tiles as its sums do
  even probabilities q = 0: every row's O is v's mean, the case where whatever mean is left in
                     v − mean after the pass outweighs O (a sampled v mean did: docs/gpu.md run 76)
  synthetic recording  q and k of `calibc synth` (docs/recordings.md; the set DIR/fp8synth,
                     calibrated on it), v standard normal

at Wan 2.1 1.3B 480p (the wan13b set: dense, calibrated-like 0.2, 15% reuse 0.2) and on the
recording with its own calibrated plans. The float64 reference computes each plan's kept blocks
exactly (reused blocks copy their source's rows).
usage: PYTHONPATH=python fp8_accuracy.py DIR [--json out.json]   (DIR holds wan13b/ and, for the
recording's rows, fp8synth/ with fp8synth-rec/: a call short of carry leaves them out)"""
import json, os, sys

import numpy as np
import torch

import calibc
from calibc.safetensors import read_tensor

try:
    from sageattention import sageattn
except ImportError as e:
    sageattn = None
    print(f"SageAttention absent ({e}): no Sage column", flush=True)


def reference(pattern_of, q, k, v, block):
    """float64 attention of (H, S, D) q, k, v over pattern_of(h) (None: dense), 16 query blocks at a time."""
    heads, tokens, dim = q.shape
    out = torch.empty(heads, tokens, dim, dtype=torch.float64, device=q.device)
    for h in range(heads):
        qh, kh, vh = q[h].double(), k[h].double(), v[h].double()
        p = pattern_of(h)
        nb = -(-tokens // block)
        kept = torch.ones(nb, nb, dtype=torch.bool, device=q.device) if p is None else torch.from_numpy(p.kept).to(q.device)
        for b0 in range(0, nb, 16):
            b1 = min(nb, b0 + 16)
            rows = slice(b0 * block, min(tokens, b1 * block))
            mask = kept[b0:b1].repeat_interleave(block, 0)[:rows.stop - rows.start].repeat_interleave(block, 1)[:, :tokens]
            s = (qh[rows] @ kh.T) / dim ** 0.5
            out[h, rows] = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ vh
        if p is not None:
            computed = out[h].clone()
            for b in p.reuse:
                r = slice(b * block, min(tokens, (b + 1) * block))
                src = p.source(b) * block
                out[h, r] = computed[src:src + r.stop - r.start]
    return out


def rel(a, b):
    return float((a.double() - b).norm() / b.norm())


def inputs(kind, heads, tokens, dim, recording=None):
    g = torch.Generator(device="cuda").manual_seed(11)
    q, k, v = (torch.randn(heads, tokens, dim, device="cuda", generator=g) for _ in range(3))
    if kind == "K offset channels":
        k[..., :4] += 20.0
    elif kind == "K scaled channels":
        k[..., :4] *= 10.0
    elif kind == "V mean 1":
        v += 1.0
    elif kind == "even probabilities":
        q.zero_()
    elif kind == "synthetic recording":
        q, k = recording
    return tuple(t.to(torch.bfloat16) for t in (q, k, v))


def main():
    root = sys.argv[1]
    jpath = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    rows = []
    wan = calibc.load_cuda(os.path.join(root, "wan13b", "libcalibcuda.so"))
    wan_masks = calibc.Masks.read(os.path.join(root, "wan13b.json"))
    recording = os.path.join(root, "fp8synth-rec", "prompt0.safetensors")
    have_recording = os.path.exists(recording)
    if not have_recording:
        print(f"{recording} absent: no rows of the synthetic recording", flush=True)

    def run(lib, masks, step, layer, q, k, v, kind, label):
        pattern_of = (lambda h: None) if step is None else (lambda h: masks.pattern(step, layer, h))
        want = reference(pattern_of, q, k, v, lib.block)
        q4, k4, v4 = (t.unsqueeze(0) for t in (q, k, v))
        r = {"shape": label, "inputs": kind}
        for key, precision in (("bf16", None), ("fp8", "fp8"), ("fp8_pv", "fp8-pv")):
            if step is None:
                out = lib.dense_attention_layer(q4, k4, v4, layout="bhsd", precision=precision)
            else:
                out = lib.attention_layer(step, layer, q4, k4, v4, layout="bhsd", precision=precision)
            r[key] = rel(out[0], want)
        if step is None and sageattn is not None:
            r["sage"] = rel(sageattn(q4, k4, v4, tensor_layout="HND", is_causal=False)[0], want)
        rows.append(r)
        print(json.dumps(r), flush=True)

    dim, tokens, heads = wan.head_dim, wan.tokens, wan.heads
    for kind in ("N(0, 1)", "K offset channels", "K scaled channels", "V mean 1", "even probabilities"):
        q, k, v = inputs(kind, heads, tokens, dim)
        step = wan.steps[0]
        for layer in (None, 2, 5):
            name = "dense" if layer is None else wan_masks.pattern_name(step, layer, 0)
            run(wan, wan_masks, None if layer is None else step, layer or 0, q, k, v, kind, f"wan1.3B {name}")
        del q, k, v
        torch.cuda.empty_cache()
    if have_recording:
        synth = calibc.load_cuda(os.path.join(root, "fp8synth", "libcalibcuda.so"))
        synth_masks = calibc.Masks.read(os.path.join(root, "fp8synth.json"))
        step0 = synth.steps[0]
        rec_q, rec_k = (read_tensor(recording, f"step{step0}.layer0.{x}").to("cuda", torch.float32) for x in "qk")
        q, k, v = inputs("synthetic recording", synth.heads, synth.tokens, synth.head_dim, (rec_q, rec_k))
        run(synth, synth_masks, None, 0, q, k, v, "synthetic recording", "synth dense")
        run(synth, synth_masks, step0, 0, q, k, v, "synthetic recording", "synth calibrated")

    print("\n| shape / plans | inputs | calibc bf16 | calibc fp8 | calibc fp8-pv | SageAttention |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        sage = f"{r['sage']:.2e}" if "sage" in r else "—"
        print(f"| {r['shape']} | {r['inputs']} | {r['bf16']:.2e} | {r['fp8']:.2e} | {r['fp8_pv']:.2e} | {sage} |")
    if jpath:
        with open(jpath, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
