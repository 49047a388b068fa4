#!/usr/bin/env python3
"""Writes masks.json (format 1, docs/masks-format.md) for the GPU tests and benchmark.

Each layer of one step holds one plan kind, the same for every run (seeded):
  dense              every tile kept
  cal:<d>            calibrated-like: per row the tiles nearest a local band, temporal stripes
                     (the same place in other frames) and the first block, kept up to density d;
                     exact kept count per row, few spans (what calibration finds on Wan)
  reuse:<d>[:<f>]    the same with a fraction f (default 0.15) of query blocks reusing a
                     neighbour's output
  reusex:<d>:<f>     the previous reuse layer's plans with every reused block computed instead
                     (it keeps its source's key blocks): the pair measures what a reuse costs
  rand:<d>           scattered random tiles (diagonal kept), as in anchors.py
Heads cycle over `--variants` distinct patterns per layer (keeps the tables small).

usage: make_masks.py -o masks.json --tokens N --heads H --head-dim D [--block 128]
                     [--layers dense,cal:0.5,reuse:0.2,...] [--frame-tokens F] [--seed S]
"""
import argparse, base64, json
import numpy as np


def structured(nb, density, frame_blocks, rng):
    """Bool [nb, nb]: per row the round(density·nb) tiles of lowest score."""
    keep = max(1, int(round(density * nb)))
    q = np.arange(nb)[:, None]
    k = np.arange(nb)[None, :]
    d = k - q
    band = np.abs(d) / rng.uniform(0.6, 1.4)
    p = max(frame_blocks, 2.0)
    off = np.abs(((d + p / 2) % p) - p / 2)  # distance to the nearest temporal stripe
    stripe = off / rng.uniform(0.3, 0.6) + np.abs(d) / (nb * rng.uniform(0.05, 0.2))
    score = np.minimum(band, stripe) + rng.uniform(0, 0.25, size=(nb, nb))
    score[:, 0] = -1.0  # a sink block every row keeps
    if keep >= nb:
        return np.ones((nb, nb), dtype=bool)
    idx = np.argpartition(score, keep - 1, axis=1)[:, :keep]
    m = np.zeros((nb, nb), dtype=bool)
    np.put_along_axis(m, idx, True, axis=1)
    return m


def random_mask(nb, density, rng):
    m = rng.random((nb, nb)) < density
    m |= np.eye(nb, dtype=bool)
    return m


def add_reuse(m, fraction, rng):
    """Marks `fraction` of query blocks (never block 0) as reusing the nearest computed block
    below them, so the partial last block is never a source; returns the mask with their rows
    emptied and the [target, source] pairs."""
    nb = m.shape[0]
    n = int(round(fraction * nb))
    targets = sorted(int(t) for t in rng.permutation(np.arange(1, nb))[:n])
    tset = set(targets)
    pairs = []
    for t in targets:
        s = t - 1
        while s in tset:
            s -= 1
        pairs.append([t, s])
    m = m.copy()
    for t, _ in pairs:
        m[t, :] = False
    return m, pairs


def bitmap(m):
    return base64.b64encode(np.packbits(m, axis=1, bitorder="little").tobytes()).decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", required=True)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--head-dim", type=int, required=True)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--layers", default="dense,cal:0.5,cal:0.2,cal:0.1,reuse:0.5,reuse:0.2,reuse:0.1")
    ap.add_argument("--frame-tokens", type=int, default=1560, help="tokens per latent frame (stripe period)")
    ap.add_argument("--variants", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="gpu-test")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    nb = -(-a.tokens // a.block)
    kinds = a.layers.split(",")
    patterns, assignments, last_reuse = {}, [], {}
    for layer, kind in enumerate(kinds):
        if kind == "dense":
            assignments.append({"steps": "0", "layers": str(layer), "heads": "*", "pattern": "dense"})
            continue
        name, dens, *rest = kind.split(":")
        dens = float(dens)
        frac = float(rest[0]) if rest else 0.15
        nv = min(a.variants, a.heads)
        for v in range(nv):
            if name == "rand":
                m, pairs = random_mask(nb, dens, rng), []
            elif name == "reusex":
                m, pairs = last_reuse[v]
                m = m.copy()
                for t, src in pairs:
                    m[t] = m[src]
                pairs = []
            else:
                m = structured(nb, dens, a.frame_tokens / a.block, rng)
                pairs = []
                if name == "reuse":
                    m, pairs = add_reuse(m, frac, rng)
                    last_reuse[v] = (m, pairs)
            pname = f"l{layer}_{name}_{dens}_{frac}_v{v}"
            pat = {"bitmap": bitmap(m)}
            if pairs:
                pat["reuse"] = pairs
            patterns[pname] = pat
            heads = [h for h in range(a.heads) if h % nv == v]
            assignments.append({"steps": "0", "layers": str(layer), "heads": ",".join(map(str, heads)), "pattern": pname})
    doc = {"format": 1, "model": a.model, "tokens": a.tokens, "head_dim": a.head_dim, "block": a.block,
           "layers": len(kinds), "heads": a.heads, "timesteps": [0], "patterns": patterns, "assignments": assignments}
    with open(a.o, "w") as f:
        json.dump(doc, f)
        f.write("\n")
    print(f"wrote {a.o}: {len(kinds)} layers ({','.join(kinds)}), {a.heads} heads, {nb} blocks")


if __name__ == "__main__":
    main()
