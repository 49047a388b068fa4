#!/usr/bin/env python3
"""The Python package on the GPU (`make test-gpu`): torch.ops.calibc.attention_layer on CUDA
tensors, eager and under torch.compile(fullgraph=True), against the float64 reference of
test_gpu.py on fresh random inputs into NaN-poisoned outputs; then the diffusers processor running
a tiny random Wan on the GPU with the CUDA kernels (if diffusers is importable), against SDPA.
usage: PYTHONPATH=python test_torch.py LIB.so:masks.json [TINYWAN_LIB.so]"""
import sys

import torch

import calibc
from masks_io import Masks
from test_gpu import reference

torch.manual_seed(4321)
failures = []


def report(name, err, tol, nan=0):
    ok = nan == 0 and err <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {name}: rel L2 {err:.2e}, NaN {nan}", flush=True)
    if not ok:
        failures.append(name)


def op_checks(lib_path, masks_path):
    lib, masks = calibc.load_cuda(lib_path), Masks(masks_path)
    B, N, H, D = 2, lib.tokens, lib.heads, lib.head_dim
    step, layer = lib.steps[0], lib.layers - 1
    fn = torch.compile(lambda q, k, v: calibc.attention_layer(q, k, v, lib_path, step, layer), fullgraph=True)
    for dtype in (torch.bfloat16, torch.float16):
        q, k, v = (torch.randn(B, N, H, D, device="cuda", dtype=dtype) for _ in range(3))
        ref = reference(*(t.permute(0, 2, 1, 3) for t in (q, k, v)), masks, step, layer).permute(0, 2, 1, 3)
        eager = calibc.attention_layer(q, k, v, lib_path, step, layer)
        report(f"custom op eager {dtype}", float((eager.double() - ref).norm() / ref.norm()), 1e-2, int(eager.isnan().sum()))
        compiled = fn(q, k, v)
        report(f"custom op torch.compile(fullgraph=True) {dtype}", float((compiled.double() - ref).norm() / ref.norm()), 1e-2,
               int(compiled.isnan().sum()))
        if not torch.equal(compiled, eager):
            failures.append(f"compiled differs from eager ({dtype})")
    explanation = torch._dynamo.explain(lambda q, k, v: calibc.attention_layer(q, k, v, lib_path, step, layer))(q, k, v)
    print(f"graph breaks under torch.compile: {explanation.graph_break_count}")
    if explanation.graph_break_count:
        failures.append("graph break")


def processor_check(tiny_lib):
    try:
        from calibc.diffusers import CalibAttention, denoise, tiny_wan
    except ImportError as e:
        print(f"skip the diffusers processor on the GPU: {e}")
        return
    model = tiny_wan().to("cuda", torch.bfloat16)
    sparse = CalibAttention(model, cuda_library=tiny_lib, compare=True)
    with torch.no_grad():
        denoise_on_gpu(model, denoise)
    sparse.remove()
    print(f"processor on the GPU: {sparse.calls} sparse calls, {sparse.fallbacks} fell back")
    for (step, layer), err in sorted(sparse.errors.items()):
        print(f"  step {step} layer {layer}: attention output vs SDPA (bf16) rel L2 {err:.2e}")
    if sparse.calls == 0 or sparse.fallbacks:
        failures.append("the processor did not run every self-attention call on the GPU kernels")


def denoise_on_gpu(model, denoise):
    """calibc.diffusers.denoise with its CPU tensors moved to the model's device and dtype."""
    original = model.forward

    def forward(*args, **kwargs):
        move = lambda t: t.to("cuda", torch.bfloat16) if torch.is_tensor(t) and t.is_floating_point() else (
            t.to("cuda") if torch.is_tensor(t) else t)
        out = original(*[move(a) for a in args], **{k: move(v) for k, v in kwargs.items()})
        sample = out[0] if isinstance(out, tuple) else out.sample
        return (sample.float().cpu(),)
    model.forward = forward
    try:
        denoise(model, 7)
    finally:
        model.forward = original


def main():
    lib, masks = sys.argv[1].split(":")
    op_checks(lib, masks)
    if len(sys.argv) > 2:
        processor_check(sys.argv[2])
    print(f"{'FAILED: ' + '; '.join(failures) if failures else 'all torch checks passed'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
