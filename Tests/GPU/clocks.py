#!/usr/bin/env python3
"""Issue 29: is FlashAttention-4's lead over calibc cycles or clock? Each kernel runs the dense
attention of a Wan shape back to back for a few seconds while nvidia-smi samples the SM clock and
the board power every 50 ms; the samples of the middle of each interval give the clock the kernel
ran at, and time × clock ÷ (128 × 128 tiles a CTA) gives cycles a tile, the figure the per-item
trace (trace.py) measures for calibc with clock64. Kernels alternate (calibc, FA4, cuDNN, twice)
so the card's temperature falls on all alike. --precision fp8 (or fp8-pv) adds each build's FP8
call (issue 27: does e4m3 run at bf16's clock?). --layers runs those layers' plans (the first
step) instead of the dense call, FA4 with the same kept blocks, and counts cycles over the kept
tiles (issue 29: do Wan 14B's scattered plans lose cycles or clock?).
usage: PYTHONPATH=python clocks.py LABEL=DIR.so:masks.json ... [--seconds S] [--precision P] [--layers L ...]
(builds of one masks file are compared with each other, cuDNN and FA4 at its shape)"""
import subprocess, sys, threading, time

import numpy as np
import torch
from torch.nn.attention import sdpa_kernel, SDPBackend

import calibc
from bench_gpu import builds_by_masks, density, dense_inputs, fa4, fa4_blocks, fa4_func, layer_call

seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 3.0
precision = sys.argv[sys.argv.index("--precision") + 1] if "--precision" in sys.argv else None
layers = []
if "--layers" in sys.argv:
    for a in sys.argv[sys.argv.index("--layers") + 1:]:
        if a.startswith("--"):
            break
        layers.append(int(a))
samples = []  # (host time, SM MHz, W, memory busy %)


def sampler(stop):
    p = subprocess.Popen(["nvidia-smi", "--query-gpu=clocks.sm,power.draw,utilization.memory", "--format=csv,noheader,nounits", "-lms", "50"],
                         stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if stop.is_set():
            break
        mhz, w, mem = (float(x) for x in line.split(","))
        samples.append((time.perf_counter(), mhz, w, mem))
    p.kill()


def sustained(f):
    """Runs f back to back for `seconds`; returns ms a call (events over the whole interval) and
    the median clock, power and memory-busy percentage (the share of time the device memory was
    read or written: Wan 14B's plans lose clock to power where K and V come from beyond L2?) of
    the samples of its middle 60%."""
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    n = 0
    while time.perf_counter() - t0 < seconds:
        f()
        n += 1
        if n % 4 == 0:
            torch.cuda.synchronize()
    e1.record()
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    mid = [s[1:] for s in samples if t0 + 0.2 * (t1 - t0) <= s[0] <= t0 + 0.8 * (t1 - t0)]
    mhz, w, mem = (float(np.median([s[i] for s in mid])) if mid else float("nan") for i in range(3))
    return e0.elapsed_time(e1) / n, mhz, w, mem, len(mid)


def main():
    ev = threading.Event()
    threading.Thread(target=sampler, args=(ev,), daemon=True).start()
    time.sleep(1.0)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for mj, builds in builds_by_masks(sys.argv[1:]).items():
        lib0 = builds[0][1]
        B, H, N, D = 1, lib0.heads, lib0.tokens, lib0.head_dim
        q, k, v, q4, k4, v4, out = dense_inputs(lib0)
        nb = -(-N // 128)
        masks = calibc.Masks.read(mj) if layers else None
        for layer in layers or [None]:
            step = lib0.steps[0] if layer is not None else None
            dens = density(masks, step, layer) if layer is not None else 1.0
            tiles_per_sm = B * H * nb * nb * dens / sms
            where = f"{mj} layer {layer} density {dens:.3f}" if layer is not None else mj

            def cudnn():
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)

            runs = {label: (lambda lib=lib: layer_call(lib, step, layer, q, k, v, out)) for label, lib in builds}
            if precision:
                runs.update({f"{label} {precision}": (lambda lib=lib: layer_call(lib, step, layer, q, k, v, out, precision))
                             for label, lib in builds})
            if layer is None:
                runs["cuDNN"] = cudnn
            if fa4_func is not None:
                blocks = fa4_blocks(masks, step, layer, H) if layer is not None else None
                runs["FA4"] = lambda blocks=blocks: fa4(q4, k4, v4, blocks)
            for rnd in range(2):
                for name, f in runs.items():
                    ms, mhz, w, mem, n = sustained(f)
                    cycles = ms * 1e-3 * mhz * 1e6 / tiles_per_sm
                    print(f"{where} round {rnd} {name}: {ms:.3f} ms, {4 * B * H * N * N * D * dens / ms / 1e9:.0f} TFLOP/s, "
                          f"SM {mhz:.0f} MHz, {w:.0f} W, memory busy {mem:.0f}% ({n} samples), {cycles:.0f} cycles a tile", flush=True)
        del q, k, v, q4, k4, v4, out
        torch.cuda.empty_cache()
    ev.set()


if __name__ == "__main__":
    main()
