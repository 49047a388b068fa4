#!/usr/bin/env python3
"""Issue 14 item 4: cuDNN SDPA, FlashAttention-2 SDPA, torch.compile(flex_attention) with a
BlockMask of the same plans (kept blocks as full blocks; reused rows keep their source's key
blocks), FlashAttention-4's block-sparse forward (issue 29: `flash_attn.cute`, where installed;
the same plans as full blocks of 128 × 128) and calibc (wgmma and mma.sync kernels), side by
side in one process, bf16, B = 1, (B, H, S, D); and calibc with precision "fp8" and "fp8-pv" (issue
27: the quantizing pass included), their speed over calibc bf16 measured in alternation, and a
fit of time against density that separates what a call costs whatever its plans (the pass). Effective TFLOP/s = 4·B·H·N²·d·density / time, density =
computed tiles / all tiles (the same FLOP count for every column of a row, so ratios are time
ratios).
usage: PYTHONPATH=python bench_gpu.py NAME=DIR.so:masks.json ... [--json out.json]"""
import json, os, sys, time
import numpy as np
import torch
from torch.nn.attention import sdpa_kernel, SDPBackend
from torch.nn.attention.flex_attention import flex_attention
import calibc

dev = "cuda"
torch.manual_seed(0)
flex = torch.compile(flex_attention, dynamic=False)
try:
    from flash_attn.cute import flash_attn_func as fa4_func
    from flash_attn.cute.block_sparsity import BlockSparseTensorsTorch
except ImportError as e:  # said once, in the table's FA4 column as "—"
    fa4_func = None
    print(f"FlashAttention-4 absent ({e}): no FA4 column", flush=True)


def fa4(q, k, v, blocks=None):
    """FA4 on (B, S, H, D) tensors; `blocks` (cnt, idx) of kept 128 × 128 tiles per query block."""
    sparse = None
    if blocks is not None:
        cnt, idx = blocks
        sparse = BlockSparseTensorsTorch(mask_block_cnt=torch.zeros_like(cnt), mask_block_idx=torch.zeros_like(idx),
                                         full_block_cnt=cnt, full_block_idx=idx, block_size=(128, 128))
    out = fa4_func(q, k, v, block_sparse_tensors=sparse) if sparse is not None else fa4_func(q, k, v)
    return out[0] if isinstance(out, tuple) else out


def builds_by_masks(args):
    """The LABEL=DIR.so:masks.json arguments, grouped by masks file: {masks.json: [(label, library)]}
    (bench_versions.py and clocks.py compare the builds of one masks file with each other)."""
    groups = {}
    for arg in (a for a in args if "=" in a):
        label, rest = arg.split("=", 1)
        so, mj = rest.split(":")
        groups.setdefault(mj, []).append((label, calibc.load_cuda(so)))
    return groups


def dense_inputs(lib):
    """Fresh bf16 q, k, v at a library's shape, B = 1: (B, H, S, D), their (B, S, H, D) copies for
    FA4, and an output."""
    q, k, v = (torch.randn(1, lib.heads, lib.tokens, lib.head_dim, device=dev, dtype=torch.bfloat16) for _ in range(3))
    q4, k4, v4 = (t.transpose(1, 2).contiguous() for t in (q, k, v))
    return q, k, v, q4, k4, v4, torch.empty_like(q)


def fa4_blocks(masks, step, layer, heads):
    """The plans of (step, layer) as FA4's full-block tables: per head and query block the kept
    key blocks (a reused block keeps its source's), (1, H, nq) counts and (1, H, nq, nk) indices."""
    nb = masks.blocks
    cnt = torch.zeros(1, heads, nb, dtype=torch.int32)
    idx = torch.zeros(1, heads, nb, nb, dtype=torch.int32)
    for h in range(heads):
        p = masks.pattern(step, layer, h)
        for qb in range(nb):
            kept = np.flatnonzero(p.kept[p.source(qb)])
            cnt[0, h, qb] = len(kept)
            idx[0, h, qb, :len(kept)] = torch.from_numpy(kept.astype(np.int32))
    return cnt.to(dev), idx.to(dev)


def bench(f, min_reps=7, warm_ms=150.0, run_ms=400.0, warm_min=3):
    """Median of event-timed runs after a warm-up of at least warm_ms; at least min_reps runs
    and about run_ms in all (returns median, min, max)."""
    t0, n = time.perf_counter(), 0
    while n < warm_min or (time.perf_counter() - t0) * 1e3 < warm_ms:
        f()
        torch.cuda.synchronize()
        n += 1
    times = []
    while len(times) < min_reps or (sum(times) < run_ms and len(times) < 50):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        f()
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1))
    return float(np.median(times)), float(np.min(times)), float(np.max(times))


def layer_call(lib, step, layer, q, k, v, out, precision=None):
    """One (step, layer) (step None: dense) of (B, H, S, D) tensors into `out`."""
    if step is None:
        return lib.dense_attention_layer(q, k, v, out=out, layout="bhsd", precision=precision)
    return lib.attention_layer(step, layer, q, k, v, out=out, layout="bhsd", precision=precision)


def interleaved(fa, fb, rounds):
    """Median times of fa and fb measured in alternation (three timed runs after two warm ones,
    each in turn, the first of a round swapped each round), so clock and power drift and the
    round's order fall on both."""
    ta, tb = [], []
    for r in range(rounds):
        for f, t in ((fa, ta), (fb, tb))[::1 if r % 2 == 0 else -1]:
            t.append(bench(f, min_reps=3, warm_ms=0, run_ms=0, warm_min=2)[0])
    return float(np.median(ta)), float(np.median(tb))


# The FP8 precisions (row keys): both products on e4m3, or P·V only.
FP8_VARIANTS = (("fp8", "fp8"), ("fp8_pv", "fp8-pv"))


def fp8_row(lib, step, layer, q, k, v, out, want, r, label):
    """calibc FP8 (both variants) beside calibc bf16 on one row: time, rel L2 against `want`,
    speed over bf16 in alternation."""
    os.environ["CALIB_CUDA_KERNEL"] = ""
    for key, precision in FP8_VARIANTS:
        out.fill_(float("nan"))
        layer_call(lib, step, layer, q, k, v, out, precision)
        torch.cuda.synchronize()
        r["err_" + key] = float((out.float() - want.float()).norm() / want.float().norm())
        r[key] = bench(lambda: layer_call(lib, step, layer, q, k, v, out, precision))[0]
        t16, t8 = interleaved(lambda: layer_call(lib, step, layer, q, k, v, out),
                              lambda: layer_call(lib, step, layer, q, k, v, out, precision), 5)
        r[key + "_speedup"] = t16 / t8
        print(f"{label}: calibc {key} {r[key]:.2f} ms {r['flops'] / r[key] / 1e9:.0f} TFLOP/s; alternating: bf16 "
              f"{t16:.2f} ms, {key} {t8:.2f} ms ({t16 / t8:.2f}×); rel L2 {r['err_' + key]:.1e}", flush=True)


def fit(rows, key):
    """Least-squares time = fixed + per_density · density over a shape's rows without reuse."""
    x = np.array([r["density"] for r in rows])
    y = np.array([r[key] for r in rows])
    per, fixed = np.polyfit(x, y, 1)
    return fixed, per


def call_status(lib, step, layer, q, k, v, out):
    """The C status of a layer call (0 when it ran)."""
    try:
        layer_call(lib, step, layer, q, k, v, out)
        return 0
    except calibc.CalibError as e:
        return e.status


def density(masks, step, layer):
    """Computed tiles over all tiles, averaged over heads (what calibc computes)."""
    return float(np.mean([masks.pattern(step, layer, h).density() for h in range(masks.heads)]))


def main():
    args = [a for a in sys.argv[1:] if "=" in a]
    jpath = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    print(torch.__version__, torch.cuda.get_device_name(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), flush=True)
    rows = []
    for arg in args:
        name, rest = arg.split("=", 1)
        so, mj = rest.split(":")
        lib, masks = calibc.load_cuda(so), calibc.Masks.read(mj)
        B, H, N, D = 1, lib.heads, lib.tokens, lib.head_dim
        q, k, v, q4, k4, v4, out = dense_inputs(lib)  # FA4 takes the (B, S, H, D) copies
        full = 4 * B * H * N * N * D
        res = {}
        for be, key in ((SDPBackend.CUDNN_ATTENTION, "cudnn"), (SDPBackend.FLASH_ATTENTION, "fa2")):
            try:
                with sdpa_kernel(be):
                    res[key] = bench(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))[0]
            except Exception as e:
                print(f"{name} {key} failed: {type(e).__name__}: {str(e)[:120]}", flush=True)
                res[key] = float("nan")
        ref_dense = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        res["fa4"] = float("nan")
        with_fa4 = fa4_func is not None and masks.block == 128
        if with_fa4:
            try:
                err4 = float((fa4(q4, k4, v4).transpose(1, 2).float() - ref_dense.float()).norm() / ref_dense.float().norm())
                res["fa4"] = bench(lambda: fa4(q4, k4, v4))[0]
                print(f"{name} dense FA4 {res['fa4']:.2f} ms {full / res['fa4'] / 1e9:.0f} TFLOP/s (rel L2 vs SDPA "
                      f"{err4:.1e})", flush=True)
            except Exception as e:  # said, and the shape's FA4 column left empty
                print(f"{name} FA4 failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
                with_fa4 = False
        for kern in ("", "mma"):
            os.environ["CALIB_CUDA_KERNEL"] = kern
            kname = lib.kernel_name()
            out.fill_(float("nan"))
            s = call_status(lib, None, 0, q, k, v, out)
            torch.cuda.synchronize()
            err = float((out.float() - ref_dense.float()).norm() / ref_dense.float().norm())
            ms = bench(lambda: layer_call(lib, None, 0, q, k, v, out))[0]
            res["dense_mma" if kern else "dense"] = ms
            print(f"{name} dense calibc[{kname}] {ms:.2f} ms {full / ms / 1e9:.0f} TFLOP/s (status {s}, rel L2 vs SDPA {err:.1e})", flush=True)
        dense8 = {"flops": full}
        fp8_row(lib, None, 0, q, k, v, out, ref_dense, dense8, f"{name} dense")
        print(f"{name} H={H} N={N}: cuDNN {res['cudnn']:.2f} ms {full / res['cudnn'] / 1e9:.0f} TFLOP/s, "
              f"FA2 {res['fa2']:.2f} ms {full / res['fa2'] / 1e9:.0f} TFLOP/s", flush=True)
        rows.append(dict(shape=name, set="dense", density=1.0, cudnn=res["cudnn"], fa2=res["fa2"], flex=None,
                         fa4=res["fa4"], calibc=res["dense"], calibc_mma=res["dense_mma"],
                         flops=full, **{k: x for k, x in dense8.items() if k != "flops"}))
        step = lib.steps[0]
        for layer in range(lib.layers):
            kind = masks.pattern_name(step, layer, 0)
            kind = "dense" if kind == "dense" else kind.split("_")[1]
            dens = density(masks, step, layer)
            bm = calibc.to_block_mask(masks, step, layer, device=dev)
            f_out = flex(q, k, v, block_mask=bm)
            t_flex = bench(lambda: flex(q, k, v, block_mask=bm))[0]
            frac = float(np.mean([len(masks.pattern(step, layer, h).reuse) for h in range(H)])) / masks.blocks
            r = dict(shape=name, set=kind, density=dens, reused=frac, cudnn=res["cudnn"], fa2=res["fa2"], flex=t_flex, flops=full * dens)
            if with_fa4:
                blocks = fa4_blocks(masks, step, layer, H)
                o4 = fa4(q4, k4, v4, blocks).transpose(1, 2)
                r["fa4"] = bench(lambda: fa4(q4, k4, v4, blocks))[0]
                r["err_fa4"] = float((o4.float() - f_out.float()).norm() / f_out.float().norm())
                print(f"{name} layer {layer} {kind}: FA4 {r['fa4']:.2f} ms {full * dens / r['fa4'] / 1e9:.0f} TFLOP/s "
                      f"(rel L2 vs flex {r['err_fa4']:.1e})", flush=True)
                del o4
            for kern in ("", "mma"):
                os.environ["CALIB_CUDA_KERNEL"] = kern
                kname = lib.kernel_name()
                out.fill_(float("nan"))
                s = call_status(lib, step, layer, q, k, v, out)
                torch.cuda.synchronize()
                if kind != "reuse":
                    err = float((out.float() - f_out.float()).norm() / f_out.float().norm())
                else:  # reused rows differ from flex by design: compare computed blocks only
                    err = 0.0
                    num = den = 0.0
                    for h in range(H):
                        reuse = masks.pattern(step, layer, h).reuse
                        sel = torch.ones(N, dtype=torch.bool, device=dev)
                        for t in reuse:
                            sel[t * masks.block:(t + 1) * masks.block] = False
                        num += float((out[0, h][sel].float() - f_out[0, h][sel].float()).norm() ** 2)
                        den += float(f_out[0, h][sel].float().norm() ** 2)
                    err = (num / den) ** 0.5
                t = bench(lambda: layer_call(lib, step, layer, q, k, v, out))[0]
                r["calibc_mma" if kern else "calibc"] = t
                r[f"err_{kname}"] = err
                print(f"{name} layer {layer} {kind} density {dens:.3f}: calibc[{kname}] {t:.2f} ms "
                      f"{full * dens / t / 1e9:.0f} TFLOP/s (status {s}, rel L2 vs flex {err:.1e}); "
                      f"flex {t_flex:.2f} ms {full * dens / t_flex / 1e9:.0f}", flush=True)
            # Reused rows differ from flex by design: FP8 is held against calibc bf16 there.
            layer_call(lib, step, layer, q, k, v, out)
            fp8_row(lib, step, layer, q, k, v, out, f_out if kind != "reuse" else out.clone(), r,
                    f"{name} layer {layer} {kind}")
            r["set"] = {"dense": "dense plan", "cal": "calibrated-like", "reusex": "reuse pair: all computed"}.get(
                kind, f"reuse {frac:.0%}" if kind == "reuse" else kind)
            # efficiency from interleaved runs (dense, sparse, dense, ...), so clock drift cancels
            os.environ["CALIB_CUDA_KERNEL"] = ""
            fd = lambda: layer_call(lib, None, 0, q, k, v, out)
            fs = lambda: layer_call(lib, step, layer, q, k, v, out)
            td, ts = [], []
            for _ in range(max(4, min(15, int(600 / max(res["dense"], 1.0))))):
                td.append(bench(fd, min_reps=1, warm_ms=0, run_ms=0, warm_min=1)[0])
                ts.append(bench(fs, min_reps=1, warm_ms=0, run_ms=0, warm_min=1)[0])
            r["eff_interleaved"] = float(np.median(td)) * dens / float(np.median(ts))
            # The path the diffusers processor runs: the step chosen on the device from a timestep
            # tensor (step_index, then calib_cuda_attention_indexed), against the step given by
            # the host, interleaved.
            timestep = torch.tensor([lib.timesteps[0]], device=dev)
            fi = lambda: lib.attention_at(timestep, layer, q, k, v, out=out, layout="bhsd")
            ti, th = [], []
            for _ in range(max(4, min(15, int(300 / max(r["calibc"], 0.1))))):
                ti.append(bench(fi, min_reps=1, warm_ms=0, run_ms=0, warm_min=1)[0])
                th.append(bench(fs, min_reps=1, warm_ms=0, run_ms=0, warm_min=1)[0])
            r["by_timestep"] = float(np.median(ti)) / float(np.median(th))
            if kind == "reusex":  # the previous layer is the same plans with the reuses kept
                fr = rows[-1]["reused"]
                fp = lambda: layer_call(lib, step, layer - 1, q, k, v, out)
                tx, tr = [], []
                for _ in range(max(6, min(25, int(1500 / max(r["calibc"], 0.1))))):
                    tx.append(bench(fs, min_reps=1, warm_ms=0, run_ms=0, warm_min=1)[0])
                    tr.append(bench(fp, min_reps=1, warm_ms=0, run_ms=0, warm_min=1)[0])
                Tx, Tr = float(np.median(tx)), float(np.median(tr))
                r["reuse_cost"] = (Tr - (1 - fr) * Tx) / (fr * Tx)
                print(f"{name} reuse pair: all computed {Tx:.3f} ms, {fr:.0%} reused {Tr:.3f} ms: "
                      f"a reused block costs {r['reuse_cost']:.3f} of a computed one", flush=True)
            rows.append(r)
            del bm, f_out
        del q, k, v, out, ref_dense, q4, k4, v4
        torch.cuda.empty_cache()
    os.environ["CALIB_CUDA_KERNEL"] = ""

    def tf(row, key):
        t = row.get(key)
        return "—" if t is None or t != t else f"{t:.2f} / {row['flops'] / t / 1e9:.0f}"

    print("\n| shape | set | density | cuDNN ms / TFLOP/s | FA2 | flex | FA4 | calibc wgmma | calibc mma.sync | calibc / flex | calibc / FA4 | efficiency | efficiency (interleaved) | by timestep ÷ by step |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    dense_t = {r["shape"]: r["calibc"] for r in rows if r["set"] == "dense" and r["flex"] is None}
    pairs = [f"{r['shape']}: a reused block costs {r['reuse_cost']:.3f} of a computed one (density {r['density']:.2f})"
             for r in rows if "reuse_cost" in r]
    for r in rows:
        ratio = f"{r['calibc'] / r['flex']:.2f}" if r.get("flex") else "—"
        eff = dense_t[r["shape"]] * r["density"] / r["calibc"] if r.get("calibc") else float("nan")
        cud = tf(r, "cudnn") if r["flex"] is None else "—"
        fa2 = tf(r, "fa2") if r["flex"] is None else "—"
        ratio4 = f"{r['calibc'] / r['fa4']:.2f}" if r.get("fa4") == r.get("fa4") and r.get("fa4") else "—"
        print(f"| {r['shape']} | {r['set']} | {r['density']:.3f} | {cud} | {fa2} | {tf(r, 'flex')} | {tf(r, 'fa4')} | "
              f"{tf(r, 'calibc')} | {tf(r, 'calibc_mma')} | {ratio} | {ratio4} | {eff:.2f} | "
              f"{r.get('eff_interleaved', float('nan')):.2f} | {r.get('by_timestep', float('nan')):.3f} |")
    for line in pairs:
        print(line)
    print("\n| shape | set | density | calibc bf16 ms / TFLOP/s | fp8 ms / TFLOP/s | fp8 ÷ bf16 speed (alternating) | "
          "fp8 efficiency | fp8 rel L2 | fp8-pv ms / TFLOP/s | fp8-pv ÷ bf16 speed | fp8-pv rel L2 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    dense_fp8 = {r["shape"]: r["fp8"] for r in rows if r["set"] == "dense" and r["flex"] is None}
    for r in rows:
        eff8 = dense_fp8[r["shape"]] * r["density"] / r["fp8"]
        print(f"| {r['shape']} | {r['set']} | {r['density']:.3f} | {tf(r, 'calibc')} | {tf(r, 'fp8')} | "
              f"{r['fp8_speedup']:.2f} | {eff8:.2f} | {r['err_fp8']:.1e} | {tf(r, 'fp8_pv')} | "
              f"{r['fp8_pv_speedup']:.2f} | {r['err_fp8_pv']:.1e} |")
    # What a call costs whatever the density (the FP8 pass, launches) and per unit of density.
    for shape in dict.fromkeys(r["shape"] for r in rows):
        plain = [r for r in rows if r["shape"] == shape and r.get("reused", 0) == 0]
        fits = {key: fit(plain, key) for key in ("calibc", "fp8", "fp8_pv")}
        print(f"{shape}: time = fixed + per·density over {len(plain)} rows: " + "; ".join(
            f"{key} {a:.3f} + {b:.2f}·d ms" for key, (a, b) in fits.items()) +
            f"; the loop's speed over bf16: fp8 {fits['calibc'][1] / fits['fp8'][1]:.2f}×, "
            f"fp8-pv {fits['calibc'][1] / fits['fp8_pv'][1]:.2f}×")
    if jpath:
        with open(jpath, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
