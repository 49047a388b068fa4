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
    e = np.floor(np.log2(np.maximum(a, 1e-300))); e = np.clip(e, -6, 8)
    q = np.round(a / 2.0**(e - 3)) * 2.0**(e - 3)
    return s * np.minimum(q, 448.0)
def lin_code(x):  # x = log2(P * 2^6) ; code = round(8 (x + 7)) clamped to [0, 126]
    c = np.clip(np.round(8 * (x + 7)), 0, 126)
    E, m = np.floor(c / 8), c % 8
    return np.where(E > 0, 2.0**(E - 7) * (1 + m / 8), 2.0**-6 * m / 8)
def run(q, k, v, mode):
    d = q.shape[1]; s = q @ k.T / np.sqrt(d)
    x = s * np.log2(np.e); x = x - x.max(1, keepdims=True)  # exact refs (fp8-pv: maxima first)
    ref = np.exp2(x); ref = (ref / ref.sum(1, keepdims=True)) @ v
    vm = v.mean(0); vs = np.abs(v - vm).max() / 448; v8 = e4m3((v - vm) / vs) * vs
    if mode == "e4m3": p = e4m3(np.exp2(x + 6))
    elif mode == "linear": p = lin_code(x + 6)
    elif mode == "bf16": p = np.exp2(x + 6); v8 = v
    out = (p @ v8) / p.sum(1, keepdims=True) + (0 if mode == "bf16" else vm)
    return np.linalg.norm(out - ref) / np.linalg.norm(ref)
for name in ["N(0,1)", "k x10 channels", "v mean 1"]:
    res = {m: [] for m in ["bf16", "e4m3", "linear"]}
    for t in range(3):
        q, k, v = (rng.standard_normal((n, 128)) for n in (256, 4096, 4096))
        if name == "k x10 channels": k[:, :4] *= 10
        if name == "v mean 1": v += 1
        for m in res: res[m].append(run(q, k, v, m))
    print(name, {m: f"{np.mean(r):.2e}" for m, r in res.items()})
print("-- fp8 (Q Kt on e4m3 too)")
def run8(q, k, v, mode):
    d = q.shape[1]; s = q @ k.T / np.sqrt(d)
    x = s * np.log2(np.e); x = x - x.max(1, keepdims=True)
    ref = np.exp2(x); ref = (ref / ref.sum(1, keepdims=True)) @ v
    qs = np.abs(q).max() / 448; km = k.mean(0); ks = np.abs(k - km).max() / 448
    s8 = (e4m3(q / qs) * qs) @ (e4m3((k - km) / ks) * ks).T / np.sqrt(d)
    x8 = s8 * np.log2(np.e); x8 = x8 - x8.max(1, keepdims=True)
    vm = v.mean(0); vs = np.abs(v - vm).max() / 448; v8 = e4m3((v - vm) / vs) * vs
    p = e4m3(np.exp2(x8 + 6)) if mode == "e4m3" else lin_code(x8 + 6)
    out = (p @ v8) / p.sum(1, keepdims=True) + vm
    return np.linalg.norm(out - ref) / np.linalg.norm(ref)
for name in ["N(0,1)", "k x10 channels"]:
    res = {m: [] for m in ["e4m3", "linear"]}
    for t in range(3):
        q, k, v = (rng.standard_normal((n, 128)) for n in (256, 4096, 4096))
        if name == "k x10 channels": k[:, :4] *= 10
        for m in res: res[m].append(run8(q, k, v, m))
    print(name, {m: f"{np.mean(r):.2e}" for m, r in res.items()})
