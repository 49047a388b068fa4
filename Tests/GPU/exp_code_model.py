#!/usr/bin/env python3
"""A float64 model of the FP8 roundings of one attention layer (256 queries, 4,096 keys, head_dim
128; 3 draws), with P's e4m3 values made two ways: e4m3's rounding of the exponential (the kernel
on main) and the code round(8 (y + 7)) with no exponential (softmax.cuh's ExpCode, the queue's
item 3 in docs/gpu.md: 2^y's fraction taken linearly). `fp8-pv` (Q Kᵀ exact) on N(0, 1) inputs,
keys with four channels ×10, values of mean 1; `fp8` (Q Kᵀ on e4m3: q per block, k less its
mean per head) on the first two. v less its mean, per-head scale, as quantize.cuh does. Relative
L2 against float64, means of the draws.
usage: python3 Tests/GPU/exp_code_model.py   (no GPU; seconds)"""
import numpy as np

rng = np.random.default_rng(1)


def e4m3(x):
    x = np.asarray(x, np.float64); s = np.sign(x); a = np.abs(x)
    e = np.clip(np.floor(np.log2(np.maximum(a, 1e-300))), -6, 8)
    return s * np.minimum(np.round(a / 2.0**(e - 3)) * 2.0**(e - 3), 448.0)


def bf16(x):
    """x rounded to bfloat16 (nearest, ties to even), as float32."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32)


def code_value(y):  # y = log2(P · 2^6); the code round(8 (y + 7)), clamped to e4m3's [0, 126]
    c = np.clip(np.round(8 * (y + 7)), 0, 126)
    E, m = np.floor(c / 8), c % 8
    return np.where(E > 0, 2.0**(E - 7) * (1 + m / 8), 2.0**-6 * m / 8)


def whole_stats(x):
    """x's mean over tokens and the scale that maps x − mean into ±448, from every token."""
    mean = x.mean(0)
    return mean, np.abs(x - mean).max() / 448


def error(q, k, v, qk_e4m3, codes=False, stats=whole_stats):
    """Relative L2 of one layer against float64; maxima exact (references are the row maxima).
    `stats`: how the pass takes k's and v's means and scales."""
    def log2_p(q, k):
        x = q @ k.T / np.sqrt(q.shape[1]) * np.log2(np.e)
        return x - x.max(1, keepdims=True)
    x = log2_p(q, k)
    ref = np.exp2(x) @ v / np.exp2(x).sum(1, keepdims=True)
    if qk_e4m3:  # q per block of 128 queries, k less its mean, per head
        qs = np.repeat(np.abs(q).reshape(-1, 128, q.shape[1]).max((1, 2)) / 448, 128)[:, None]
        km, ks = stats(k)
        x = log2_p(e4m3(q / qs) * qs, e4m3((k - km) / ks) * ks)
    vm, vs = stats(v)
    p = code_value(x + 6) if codes else e4m3(np.exp2(x + 6))
    out = p @ (e4m3((v - vm) / vs) * vs) / p.sum(1, keepdims=True) + vm
    return np.linalg.norm(out - ref) / np.linalg.norm(ref)


if __name__ == "__main__":
    for qk_e4m3, cases in ((False, ["N(0,1)", "k x10 channels", "v mean 1"]), (True, ["N(0,1)", "k x10 channels"])):
        print("-- fp8 (Q Kt on e4m3 too)" if qk_e4m3 else "-- fp8-pv")
        for name in cases:
            res = {"e4m3": [], "codes": []}
            for _ in range(3):
                q, k, v = (rng.standard_normal((n, 128)) for n in (256, 4096, 4096))
                if name == "k x10 channels": k[:, :4] *= 10
                if name == "v mean 1": v += 1
                for mode in res: res[mode].append(error(q, k, v, qk_e4m3, mode == "codes"))
            print(f"{name:15s}", "  ".join(f"{m} {np.mean(r):.2e}" for m, r in res.items()))
