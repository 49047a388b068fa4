#!/usr/bin/env python3
"""GPU correctness of calib_cuda: every (step, layer) of each built set, bf16 and fp16, (B,S,H,D)
and (B,H,S,D), B = 2, both kernels (wgmma where the shape allows, and mma.sync), against a
float64 reference on fresh random inputs, output poisoned with NaN before every run; then the
argument checks (nothing launched on error). usage: test_gpu.py DIR.so:masks.json ..."""
import os, sys
import numpy as np
import torch
from calibcuda import Lib, OK, ERR_SHAPE, ERR_NO_PLAN, ERR_ARGUMENT
from masks_io import Masks

torch.manual_seed(1234)
dev = "cuda"
TOL = 1e-2
failures = []


def reference(q, k, v, masks, step, layer):
    """float64 attention, q/k/v (B, H, N, D); rows of reused blocks copy their source's output."""
    B, H, N, D = q.shape
    bs = masks.block
    out = torch.empty(B, H, N, D, dtype=torch.float64, device=dev)
    for h in range(H):
        if step is None:
            keep, reuse = np.ones((masks.nb, masks.nb), dtype=bool), {}
        else:
            keep, reuse = masks.head(step, layer, h)
        tok = torch.from_numpy(np.repeat(np.repeat(keep, bs, 0), bs, 1)[:N, :N]).to(dev)
        s = torch.einsum("bnd,bmd->bnm", q[:, h].double(), k[:, h].double()) / D ** 0.5
        s = s.masked_fill(~tok, float("-inf"))
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # reused rows: all masked
        o = p @ v[:, h].double()
        for t, src in reuse.items():
            rows = min(bs, N - t * bs)
            o[:, t * bs:t * bs + rows] = o[:, src * bs:src * bs + rows]
        out[:, h] = o
    return out


def check(lib, masks, tag, step, layer, dtype, layout, kernel, padded=False):
    """padded: out rows 2 elements longer than head_dim (the 4-byte store path) and the call on a
    side stream."""
    B, H, N, D = 2, lib.heads, lib.tokens, lib.head_dim
    os.environ["CALIB_CUDA_KERNEL"] = kernel
    shape = (B, N, H, D) if layout == "bshd" else (B, H, N, D)
    q, k, v = (torch.randn(shape, device=dev, dtype=torch.float32).to(dtype) for _ in range(3))
    if padded:
        out = torch.full(shape[:3] + (D + 2,), float("nan"), device=dev, dtype=dtype)[..., :D]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            st = lib.layer(step, layer, q, k, v, out, layout=layout)
        side.synchronize()
    else:
        out = torch.full(shape, float("nan"), device=dev, dtype=dtype)
        st = lib.layer(step, layer, q, k, v, out, layout=layout)
    torch.cuda.synchronize()
    name = f"{tag} step={step} layer={layer} {str(dtype)[6:]} {layout} {lib.kernel_name()}{' padded-out side-stream' if padded else ''}"
    if st != OK:
        failures.append(f"{name}: status {st}")
        print(f"FAIL {name}: status {st}", flush=True)
        return
    if layout == "bshd":
        q, k, v, out = (t.permute(0, 2, 1, 3) for t in (q, k, v, out))
    ref = reference(q, k, v, masks, step, layer)
    o = out.double()
    nan = int(torch.isnan(o).sum())
    err = float((o.nan_to_num(0) - ref).norm() / ref.norm())
    ok = nan == 0 and err <= TOL
    print(f"{'ok  ' if ok else 'FAIL'} {name}: rel L2 {err:.2e}, NaN {nan}", flush=True)
    if not ok:
        failures.append(f"{name}: rel L2 {err:.2e}, NaN {nan}")


def errors(lib):
    B, H, N, D = 2, lib.heads, lib.tokens, lib.head_dim
    q, k, v = (torch.randn(B, H, N, D, device=dev, dtype=torch.bfloat16) for _ in range(3))
    out = torch.full_like(q, float("nan"))
    s0, l0 = lib.steps[0], 0
    cases = [
        ("null q", dict(raw={"q": 0}), ERR_ARGUMENT),
        ("bad dtype", dict(dtype=0), ERR_ARGUMENT),
        ("misaligned q", dict(raw={"q": q.data_ptr() + 2}), ERR_ARGUMENT),
        ("odd q stride", dict(raw={"sq": (N * H * D, D + 1, N * D)}), ERR_ARGUMENT),
        ("overlapping out", dict(raw={"so": (0, D, 0)}), ERR_ARGUMENT),
        ("wrong tokens", dict(raw={"N": N + 1}), ERR_SHAPE),
        ("wrong heads", dict(raw={"H": H + 1}), ERR_SHAPE),
        ("wrong head_dim", dict(raw={"D": D + 16}), ERR_SHAPE),
        ("no batch", dict(raw={"B": 0}), ERR_ARGUMENT),
    ]
    from calibcuda import Strides
    for name, kw, want in cases:
        raw = kw.get("raw")
        if raw:
            raw = {key: (Strides(*val) if key in ("sq", "so") else val) for key, val in raw.items()}
        st = lib.layer(s0, l0, q, k, v, out, dtype=kw.get("dtype"), raw=raw)
        torch.cuda.synchronize()
        good = st == want and bool(torch.isnan(out.float()).all())
        print(f"{'ok  ' if good else 'FAIL'} error {name}: status {st} (want {want})", flush=True)
        if not good:
            failures.append(f"error {name}: {st}")
    st = lib.layer(max(lib.steps) + 1, 0, q, k, v, out)
    st2 = lib.layer(s0, lib.layers, q, k, v, out)
    good = st == ERR_NO_PLAN and st2 == ERR_NO_PLAN
    print(f"{'ok  ' if good else 'FAIL'} error no plan: {st}, {st2}", flush=True)
    if not good:
        failures.append("error no plan")


def main():
    quick = "--quick" in sys.argv  # bf16 (B,H,S,D) with the default kernel only (for compute-sanitizer)
    for arg in [a for a in sys.argv[1:] if not a.startswith("--")]:
        so, mj = arg.split(":")
        lib, masks = Lib(so), Masks(mj)
        tag = os.path.basename(os.path.dirname(so)) or so
        os.environ["CALIB_CUDA_KERNEL"] = ""
        kernels = ["", "mma"] if lib.kernel_name() == "wgmma" and not quick else [""]
        for kernel in kernels:
            for dtype in (torch.bfloat16,) if quick else (torch.bfloat16, torch.float16):
                for layout in ("bhsd",) if quick else ("bhsd", "bshd"):
                    check(lib, masks, tag, None, 0, dtype, layout, kernel)
                    for step in lib.steps:
                        for layer in range(lib.layers):
                            check(lib, masks, tag, step, layer, dtype, layout, kernel)
                    check(lib, masks, tag, lib.steps[-1], lib.layers - 1, dtype, layout, kernel, padded=True)
        os.environ["CALIB_CUDA_KERNEL"] = ""
        errors(lib)
    print(f"{len(failures)} failures" if failures else "all passed", flush=True)
    for f in failures:
        print("  " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
