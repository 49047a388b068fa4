#!/usr/bin/env python3
"""A float32 model of one query row through the wgmma kernel's online softmax, tile by tile, in
two forms: with the tile's maxima first (main) and with by_sums (docs/gpu.md, the queue's item 1:
no maxima after a row's first tile, references moved by the largest share of a quad's sums, bf16
P with a gain of 2^-86, the tile scored again where a share overflows), each against float64.
The four threads of a quad hold the columns they hold in the kernel; ex2 flushes below 2^-126 as
ex2.approx.ftz does; P is rounded to bf16 before P V. Scores in log2 units: N(0, 1.44²) (Wan's
scale at head_dim 128), rising by 60 along the row, one key lifted by 150 / 300 / 460, the second
half dropped by 150, the first 64 keys lifted by 40, 20 random peaks of 5-30.
usage: python3 Tests/GPU/by_sums_model.py   (no GPU; about a minute)"""
import numpy as np

from exp_code_model import bf16
f32 = np.float32
def ex2(x):
    with np.errstate(over='ignore', invalid='ignore'):
        y = np.exp2(np.asarray(x, dtype=np.float64)).astype(f32)
    y[np.abs(y) < 2.0**-126] = 0  # ftz
    return y
def lg2(x):
    with np.errstate(divide='ignore'):
        return np.log2(np.asarray(x, dtype=np.float64)).astype(f32)
G, SLACK, T = -86, 8, 128
cols = [[8*j + 2*c + e for j in range(16) for e in range(2)] for c in range(4)]
def row(x, v, by_sums=True):
    """x: scores of one row in log2 units (float32), v: values (N, D)"""
    m, l, o = f32(-np.inf), np.zeros(4, f32), np.zeros(v.shape[1], f32)
    lim = f32(2.0 ** (SLACK + G))
    for t0 in range(0, len(x), T):
        s, vt = x[t0:t0+T], v[t0:t0+T]
        def exact(s):
            nonlocal m, l
            xm = f32(s.max()); up = xm > m + SLACK
            b = xm if up else m
            f = ex2(np.array([m - b]))[0] if m != -np.inf else f32(0)
            p = ex2(s - (b - G))
            l = l * f + np.array([p[cc].sum(dtype=f32) for cc in cols], f32)
            m = b
            return p, f
        if t0 == 0 or not by_sums:
            p, f = exact(s)
        else:
            p = ex2(s - (m - G))
            part = np.array([p[cc].sum(dtype=f32) for cc in cols], f32)
            if (part > lim).any():
                y = part.max()
                if not np.isfinite(y):
                    p, f = exact(s)          # rescore from q, k
                else:
                    d = f32(lg2(np.array([y]))[0] - G)
                    p = ex2(lg2(p) - d)
                    m = f32(m + d); f = ex2(np.array([-d]))[0]
                    l = l * f + ex2(lg2(part) - d)
            else:
                f = f32(1); l = l + part
        o = o * f + (bf16(p).astype(np.float64) @ vt).astype(f32)
    return o / l.sum(dtype=f32)
def ref(x, v):
    z = x.astype(np.float64) * np.log(2)
    w = np.exp(z - z.max()); return (w / w.sum()) @ v
rng = np.random.default_rng(0)
N, D = 128 * 74, 128
for case in ["random", "rising", "jump150", "jump300", "jump460", "drop150", "first-big", "sparse-peaks"]:
    errs = []
    for trial in range(6):
        x = (rng.standard_normal(N) * 1.44).astype(f32)
        v = rng.standard_normal((N, D)).astype(np.float64)
        if case == "rising": x = (x + np.linspace(0, 60, N)).astype(f32)
        if case.startswith("jump"): x[N // 2] += f32(int(case[4:]))
        if case == "drop150": x[N // 2:] -= 150
        if case == "first-big": x[:64] += 40
        if case == "sparse-peaks": x[rng.integers(0, N, 20)] += rng.uniform(5, 30, 20).astype(f32)
        a, r, e = row(x, v), ref(x, v), row(x, v, by_sums=False)
        errs.append((np.linalg.norm(a - r) / np.linalg.norm(r), np.linalg.norm(e - r) / np.linalg.norm(r)))
    errs = np.array(errs)
    print(f"{case:13s} by_sums max rel {errs[:,0].max():.2e}   maxima-first {errs[:,1].max():.2e}   nan {np.isnan(errs).any()}")
