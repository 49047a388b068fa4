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
  counts:<n>         query block q keeps q % n + 1 key blocks (the diagonal and others at random),
                     so rows of every length from 1 to n blocks: a key tile wider than a block
                     (the wgmma kernel's) ends a row with each number of its sub-blocks missing
Heads cycle over `--variants` distinct patterns per layer (keeps the tables small). KIND*N is N
layers sharing one layer's patterns (a whole model's worth of layers in a small file).

usage: make_masks.py -o masks.json --tokens N --heads H --head-dim D [--block 128]
                     [--layers dense,cal:0.5,reuse:0.2,...] [--frame-tokens F] [--seed S]
                     [--text-tokens T [--text-position first|last]]
       make_masks.py --matrix DIR

--matrix writes DIR/NAME.json for every set NAME of Tests/GPU/matrix.json, the one list of the
sets the GPU tests and benchmarks run: each entry holds the options above (`head_dim` for
--head-dim, `frame_tokens` for --frame-tokens, `text_tokens`, `text_position`), or `copy`, a masks file of the repository taken
as it is, and `use`: "test" (Tests/python/test_cuda.py runs it), "test-long" (test_cuda.py's
rows of many key tiles), "bench" (bench_gpu.py) or "e2e" (bench_e2e.py: every layer of a model).
"""
import argparse, base64, json, os, shutil
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MATRIX = os.path.join(HERE, "matrix.json")
LAYERS = "dense,cal:0.5,cal:0.2,cal:0.1,reuse:0.5,reuse:0.2,reuse:0.1"


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


def counted_mask(nb, n, rng):
    m = np.eye(nb, dtype=bool)
    for q in range(nb):
        others = rng.permutation([b for b in range(nb) if b != q])[:q % n]
        m[q, others] = True
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


def masks(tokens, heads, head_dim, block=128, layers=LAYERS, frame_tokens=1560, variants=4, seed=0, model="gpu-test",
          text_tokens=0, text_position="last"):
    """The masks.json document of one set (the options of the usage, as keywords). With
    text_tokens, a joint text–video sequence: that many text tokens first or last
    (text_position), the rest video frames of frame_tokens (layout: frames × 1 × frame_tokens)."""
    rng = np.random.default_rng(seed)
    nb = -(-tokens // block)
    patterns, assignments, last_reuse = {}, [], {}
    layer = 0
    for spec in layers.split(","):
        kind, _, count = spec.partition("*")
        count = int(count or 1)
        span = str(layer) if count == 1 else f"{layer}-{layer + count - 1}"
        layer += count
        if kind == "dense":
            assignments.append({"steps": "0", "layers": span, "heads": "*", "pattern": "dense"})
            continue
        name, dens, *rest = kind.split(":")
        dens = float(dens)
        frac = float(rest[0]) if rest else 0.15
        nv = min(variants, heads)
        for v in range(nv):
            if name == "rand":
                m, pairs = random_mask(nb, dens, rng), []
            elif name == "counts":  # its own generator: the layers after it keep their plans
                m, pairs = counted_mask(nb, int(dens), np.random.default_rng([seed, layer, v])), []
            elif name == "reusex":
                m, pairs = last_reuse[v]
                m = m.copy()
                for t, src in pairs:
                    m[t] = m[src]
                pairs = []
            else:
                m = structured(nb, dens, frame_tokens / block, rng)
                pairs = []
                if name == "reuse":
                    m, pairs = add_reuse(m, frac, rng)
                    last_reuse[v] = (m, pairs)
            pname = f"l{span}_{name}_{dens}_{frac}_v{v}"
            pat = {"bitmap": bitmap(m)}
            if pairs:
                pat["reuse"] = pairs
            patterns[pname] = pat
            hs = [h for h in range(heads) if h % nv == v]
            assignments.append({"steps": "0", "layers": span, "heads": ",".join(map(str, hs)), "pattern": pname})
    doc = {"format": 1, "model": model, "tokens": tokens, "head_dim": head_dim, "block": block,
           "layers": layer, "heads": heads, "timesteps": [0], "patterns": patterns, "assignments": assignments}
    if text_tokens:
        video = tokens - text_tokens
        frames = video // frame_tokens if video % frame_tokens == 0 else 1
        doc["layout"] = {"frames": frames, "height": 1, "width": video // frames, "text_tokens": text_tokens,
                         "text_position": text_position}
    return doc


def write(path, **options):
    """masks(**options) into the file `path`."""
    doc = masks(**options)
    with open(path, "w") as f:
        json.dump(doc, f)
        f.write("\n")
    nb = -(-doc["tokens"] // doc["block"])
    print(f"wrote {path}: {doc['layers']} layers ({options.get('layers', LAYERS)}), {doc['heads']} heads, {nb} blocks")


def write_matrix(directory):
    with open(MATRIX) as f:
        matrix = json.load(f)
    os.makedirs(directory, exist_ok=True)
    for name, spec in matrix.items():
        path = os.path.join(directory, name + ".json")
        options = {key: value for key, value in spec.items() if key not in ("use", "copy")}
        if "copy" in spec:
            shutil.copyfile(os.path.join(ROOT, spec["copy"]), path)
            print(f"wrote {path}: {spec['copy']}")
        else:
            write(path, **options)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o")
    ap.add_argument("--matrix", metavar="DIR", help="every set of Tests/GPU/matrix.json into DIR")
    ap.add_argument("--tokens", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--head-dim", type=int)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--layers", default=LAYERS)
    ap.add_argument("--frame-tokens", type=int, default=1560, help="tokens per latent frame (stripe period)")
    ap.add_argument("--variants", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="gpu-test")
    ap.add_argument("--text-tokens", type=int, default=0, help="joint text–video: text tokens in the sequence")
    ap.add_argument("--text-position", choices=("first", "last"), default="last")
    a = ap.parse_args()
    if a.matrix:
        write_matrix(a.matrix)
        return
    if not (a.o and a.tokens and a.heads and a.head_dim):
        ap.error("-o, --tokens, --heads and --head-dim are required (or --matrix DIR)")
    write(a.o, tokens=a.tokens, heads=a.heads, head_dim=a.head_dim, block=a.block, layers=a.layers,
          frame_tokens=a.frame_tokens, variants=a.variants, seed=a.seed, model=a.model, text_tokens=a.text_tokens,
          text_position=a.text_position)


if __name__ == "__main__":
    main()
