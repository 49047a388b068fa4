#!/usr/bin/env python3
"""What Q·Kᵀ on e4m3 costs in accuracy where a few key channels are large (issue 27's accuracy
target for `fp8`: ≤ 3e-2 on docs/gpu.md's "K scaled channels", measured 0.15-0.19), and what
would bring it there, modelled in float64 on the CPU (no GPU): attention of N(0, 1) bf16 q, k, v
with four channels of k ×10 (fp8_accuracy.py's input), its scores from q and k rounded as the
FP8 pass rounds them (k less its mean over tokens at one scale a head, q at one scale a block of
128 rows; torch's float8_e4m3fn), P and V exact, so only Q·Kᵀ's rounding shows. Variants:

  e4m3            every channel on e4m3 (the kernel's `fp8`)
  e4m3, outliers  the four channels of k with the largest |k − mean| (and q's same channels)
                  taken apart exactly, the rest on e4m3 at its own scale: a rank-4 product
                  beside the FP8 one
  e4m3, 16 apart  the sixteen widest taken apart in bf16 (q's at q's block scale, k's less
                  its mean): what the kernel's `fp8` does since run 117, one bf16 k-step
  int8 blocks     q and k on int8, one scale a block of 128 tokens (SageAttention's kind)
  e4m3 k per channel  k's channels each at its own power-of-two scale, folded into q's
                  columns (exact in e4m3: q × 2^e), so a large channel does not set the
                  others' scale
  int8, 16 apart  the sixteen widest apart in bf16 as the kernel's, the rest on int8 at one
                  scale a block of 128 tokens (q's and k's)
  int8 k per channel  the same folding as e4m3 k per channel, then int8 blocks
  int8 q blocks, k a head, 16 apart  as int8, 16 apart but k at one scale a head, 1.25 times
                  the range of a sample of one token in 16 (the pass's statistics)

and six of them again with P V on e4m3 too (the rows "with P V on e4m3"), as the `fp8` loop takes
it (attention_e4m3), to set beside what the kernel measured (docs/gpu.md "FP8"), and bf16 Q·Kᵀ so
(`fp8-pv`).

and, for each input (and each head of a recording given as RECORDING, e.g. .gpu/fp8synth-rec/
prompt0.safetensors after Tests/GPU/sources.sh), the share of the sum over k's channels of
range² (range: the largest |k − mean|) that its 16 widest carry: the kernel keeps them apart
only above twice what even channels would carry, 0.25 at head_dim 128 (quantize.cuh, kApartShare).

usage: PYTHONPATH=python python3 qk_outlier_model.py [TOKENS] [RECORDING] (default 4096; two heads, head_dim 128)"""
import sys

import torch

torch.manual_seed(11)
H, N, D, B = 2, int(sys.argv[1]) if len(sys.argv) > 1 else 4096, 128, 128


def bf16(x):
    return x.to(torch.bfloat16).to(torch.float64)


def e4m3(x):
    return x.to(torch.float8_e4m3fn).to(torch.float64)


def head_e4m3(x):
    """x on e4m3 at one scale, the pass's limit: 8 × the range seen maps to 448."""
    scale = 8 * x.abs().max() / 448
    return e4m3(x / scale) * scale


def attention(s, v):
    return torch.softmax(s / D ** 0.5, -1) @ v


def attention_e4m3(s, v):
    """P V as the `fp8` loop takes it: P to the row's maximum scaled by 2^6 on e4m3, v less its
    mean at one scale on e4m3 (the rounding errors' mean taken out of the mean added back), the
    row sums those of the rounded P."""
    p = torch.exp((s - s.max(-1, keepdim=True).values) / D ** 0.5)
    p8 = e4m3(p * 64) / 64
    mean = v.mean(0)
    v8 = head_e4m3(v - mean)
    mean = mean - (v8 - (v - mean)).mean(0)
    return p8 @ v8 / p8.sum(-1, keepdim=True) + mean


def scores_apart(q, kc, n, rounded, rest=None, k_rest=None):
    """Scores with kc's n widest channels and q's same ones apart, their product on `rounded`
    values, the rest's on e4m3 as the pass rounds them (or, given `rest`, q and k each rounded by
    it, k by `k_rest` where given)."""
    wide = kc.abs().max(0).values.topk(n).indices
    qr, kr = q.clone(), kc.clone()
    qr[:, wide] = 0
    kr[:, wide] = 0
    narrow = rows_scaled(qr, e4m3) @ head_e4m3(kr).T if rest is None else rest(qr) @ (k_rest or rest)(kr).T
    return narrow + rounded(q[:, wide]) @ rounded(kc[:, wide]).T


def wide_share(k):
    """The share of Σ range² over k's channels (N, D) that its 16 widest carry."""
    r2 = ((k - k.mean(0)).abs().max(0).values ** 2).sort(descending=True).values
    return float(r2[:16].sum() / r2.sum())


def rel(a, b):
    return float((a - b).norm() / b.norm())


def rows_scaled(x, fn):
    """x (N, D) rounded by fn at one scale a block of B rows (largest magnitude to 448)."""
    out = torch.empty_like(x)
    for r in range(0, x.shape[0], B):
        blk = x[r:r + B]
        sc = blk.abs().max().clamp_min(1e-30) / 448
        out[r:r + B] = fn(blk / sc) * sc
    return out


def int8_head(x, margin):
    """x on int8 at one scale: `margin` times the largest magnitude of a sample of one row in
    16 (the pass's statistics) maps to 127; rows past it would cost a fixup at the exact one."""
    sc = max(margin * float(x[::16].abs().max()), float(x.abs().max())) / 127
    return torch.round(x / sc).clamp(-127, 127) * sc


def int8_rows(x):
    out = torch.empty_like(x)
    for r in range(0, x.shape[0], B):
        blk = x[r:r + B]
        sc = blk.abs().max().clamp_min(1e-30) / 127
        out[r:r + B] = torch.round(blk / sc).clamp(-127, 127) * sc
    return out


for kind in ("N(0, 1)", "K scaled channels"):
    errs = {}
    for h in range(H):
        q, k, v = (torch.randn(N, D, dtype=torch.float64) for _ in range(3))
        if kind == "K scaled channels":
            k[:, :4] *= 10
        q, k, v = (t.to(torch.bfloat16).to(torch.float64) for t in (q, k, v))
        errs.setdefault("share of the 16 widest", []).append(wide_share(k))
        ref = attention(q @ k.T, v)
        kc = k - k.mean(0)  # the softmax ignores k's mean
        s8 = rows_scaled(q, e4m3) @ head_e4m3(kc).T
        got = {"e4m3": attention(s8, v)}
        s_apart = scores_apart(q, kc, 4, lambda x: x)  # the rank-4 part exact
        got["e4m3, outliers"] = attention(s_apart, v)
        s16 = scores_apart(q, kc, 16, bf16)
        got["e4m3, 16 apart"] = attention(s16, v)
        got["int8 blocks"] = attention(int8_rows(q) @ int8_rows(kc).T, v)
        s_i8_apart = scores_apart(q, kc, 16, bf16, int8_rows)
        got["int8, 16 apart"] = attention(s_i8_apart, v)
        s_i8_head = scores_apart(q, kc, 16, bf16, int8_rows, lambda kr: int8_head(kr, 1.25))
        got["int8 q blocks, k a head, 16 apart"] = attention(s_i8_head, v)
        ch = torch.exp2(torch.floor(torch.log2(kc.abs().max(0).values.clamp_min(1e-30))))  # per channel, power of two
        got["e4m3 k per channel"] = attention(rows_scaled(q * ch, e4m3) @ head_e4m3(kc / ch).T, v)
        s_i8_ch = int8_rows(q * ch) @ int8_rows(kc / ch).T
        got["int8 k per channel"] = attention(s_i8_ch, v)
        full = {"e4m3 (with P V on e4m3)": attention_e4m3(s8, v),
                "e4m3, outliers (with P V on e4m3)": attention_e4m3(s_apart, v),
                "e4m3, 16 apart (with P V on e4m3)": attention_e4m3(s16, v),
                "int8, 16 apart (with P V on e4m3)": attention_e4m3(s_i8_apart, v),
                "int8 q blocks, k a head, 16 apart (with P V on e4m3)": attention_e4m3(s_i8_head, v),
                "int8 k per channel (with P V on e4m3)": attention_e4m3(s_i8_ch, v),
                "bf16 (with P V on e4m3: `fp8-pv`)": attention_e4m3(bf16(q) @ bf16(kc).T, v)}
        for name, o in list(got.items()) + list(full.items()):
            errs.setdefault(name, []).append(rel(o, ref))
    print(kind + ": " + "; ".join(f"{n} {sum(e) / len(e):.2e}" for n, e in errs.items()), flush=True)

if len(sys.argv) > 2:
    from calibc.safetensors import read_header, read_tensor
    name = next(n for n in read_header(sys.argv[2])[0] if n.endswith(".k"))
    k = read_tensor(sys.argv[2], name).to(torch.float64)
    print(f"{name}: share of the 16 widest by head " + " ".join(f"{wide_share(k[h]):.2f}" for h in range(k.shape[0])))
