"""What the Python tests share: the calibc binary, compiling masks into a kernel library, random
plans, and the float64 reference of a plan.

The tests import the installed package (`make test-python` installs ./python into .venv). They
compile masks with the calibc named by $CALIBC (`make test-python` builds and passes
.build/release/calibc)."""

import os
import subprocess

import numpy as np
import pytest
import torch

import calibc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CALIBC = os.environ.get("CALIBC", os.path.join(ROOT, ".build", "release", "calibc"))
INCLUDE = os.path.join(ROOT, "Sources", "CalibKernelSources", "kernels", "include")
HEADER = os.path.join(INCLUDE, "calib_kernels.h")


def run_calibc(*args):
    if not os.access(CALIBC, os.X_OK):
        pytest.fail(f"no calibc binary at {CALIBC}: build it (`make test-python` does) or set CALIBC")
    return subprocess.run([CALIBC, *map(str, args)], check=True, capture_output=True, text=True).stdout


def compile_library(masks, directory):
    """Writes `masks` (a calibc.Masks or a masks.json dict) into `directory` and compiles it;
    returns the loaded Kernels."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "masks.json")
    if isinstance(masks, calibc.Masks):
        masks.write(path)
    else:
        import json
        with open(path, "w") as f:
            json.dump(masks, f)
    out = os.path.join(directory, "kernels")
    run_calibc("compile", path, "-o", out, "--shared", "--force")
    return calibc.load(os.path.join(out, "libcalibkernels.so"))


def needs_layer_entry(kernels):
    """Skips the calling test while the calibc that compiled `kernels` predates C ABI 2."""
    if kernels.abi_version < 2:
        pytest.skip(f"the kernel library reports C ABI {kernels.abi_version}; the layer entries "
                    "(calib_attention_layer) need ABI 2")


def random_pattern(rng, blocks, partial_last, density=0.3, reuse=True):
    """Random kept tiles (every query block keeps its diagonal block) and, with `reuse`, a few
    query blocks copying an earlier computed block."""
    kept = rng.random((blocks, blocks)) < density
    kept[np.arange(blocks), np.arange(blocks)] = True
    reused = {}
    if reuse and blocks >= 3:
        sources = [b for b in range(blocks) if not (partial_last and b == blocks - 1)]
        for target in rng.choice(np.arange(1, blocks), size=max(1, blocks // 4), replace=False):
            target = int(target)
            candidates = [s for s in sources if s != target and s not in reused]
            if target in reused.values() or not candidates:
                continue
            reused[target] = int(rng.choice(candidates))
            kept[target] = False
    return calibc.Pattern(kept, reused)


def random_masks(seed, tokens=300, head_dim=32, block=64, layers=2, heads=3, timesteps=(0, 7), reuse=True,
                 density=0.3):
    """A Masks with an independent random pattern for each (step, layer, head)."""
    rng = np.random.default_rng(seed)
    blocks = -(-tokens // block)
    per = {(s, layer): [random_pattern(rng, blocks, tokens % block != 0, density, reuse) for _ in range(heads)]
           for s in timesteps for layer in range(layers)}
    return calibc.Masks.from_patterns(tokens, head_dim, block, list(timesteps), per, model="test")


def reference(patterns, q, k, v, block, valid_end=None):
    """float64 attention of (H, S, D) q, k, v, head h over patterns[h]: computed query blocks attend
    to their kept key blocks, reused ones copy their source block's output rows. On q's device.
    valid_end: tokens from there on (a joint sequence's padded text) are no key (never read) and
    their rows are zeros, as is a row left with no key."""
    q, k, v = q.double(), k.double(), v.double()
    heads, tokens, dim = q.shape
    end = tokens if valid_end is None else valid_end
    out = torch.empty(heads, tokens, dim, dtype=torch.float64, device=q.device)
    for h, p in enumerate(patterns):
        kept = torch.from_numpy(p.kept).to(q.device).repeat_interleave(block, 0).repeat_interleave(block, 1)
        kept = kept[:tokens, :end]
        scores = (q[h] @ k[h, :end].T) / dim ** 0.5
        computed = (torch.softmax(scores.masked_fill(~kept, float("-inf")), -1) @ v[h, :end]).nan_to_num(0.0)
        for b in range(p.blocks):
            rows = slice(b * block, min(tokens, (b + 1) * block))
            s = p.source(b) * block
            out[h, rows] = computed[s:s + rows.stop - rows.start]
        out[h, end:] = 0
    return out


def relative_error(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()
