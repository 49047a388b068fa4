#!/usr/bin/env python3
"""`make bench-e2e` (GPU machine): one Wan 2.1 transformer forward at real size with random
weights, dense against calibc, in one process (issue 28 item 5).

Per model (1.3B at 480p, 14B at 720p, 81 frames, bf16, B = 1, one text of 512 tokens):
  dense eager: SDPA through cuDNN and through FlashAttention-2; dense compiled (cuDNN) — the
  fair baseline; calibc eager at every set given for the model, and compiled at those marked so.
  Each forward is timed with CUDA events (median of --reps after a warm-up); compiled variants
  are warmed until they stop compiling. The attention share is the model's layers × one cuDNN
  self-attention call over the dense eager forward. Output relative L2 against dense eager says
  what the masks change (and that calibc ran); compiled against eager calibc, that compiling
  changed nothing beyond bf16 rounding.

Weights: the diffusers class built on the meta device, then to_empty on the GPU and initialised
there (normal, std 0.02; norms at 1), so 14B takes seconds.

usage: PYTHONPATH=python bench_e2e.py MODEL [NAME=LIB.so[:compiled] ...] [--reps N] [--json F]
       MODEL: 1.3b or 14b
"""
import argparse, json

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench_gpu import bench
from calibc.diffusers import CalibAttention

MODELS = {
    # heads, ffn, layers, latent (C, F, H, W) of 81 frames at the resolution
    "1.3b": dict(heads=12, ffn=8960, layers=30, latent=(16, 21, 60, 104), name="Wan 2.1 1.3B 480p"),
    "14b": dict(heads=40, ffn=13824, layers=40, latent=(16, 21, 90, 160), name="Wan 2.1 14B 720p"),
}


def model_of(spec):
    from diffusers import WanTransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    with torch.device("meta"):
        model = WanTransformer3DModel(num_attention_heads=spec["heads"], attention_head_dim=128, ffn_dim=spec["ffn"],
                                      num_layers=spec["layers"])
    model = model.to_empty(device="cuda").to(torch.bfloat16).eval()
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=g)
    # The rotary tables are buffers computed at construction, which to_empty left unset.
    model.rope = WanRotaryPosEmbed(128, model.config.patch_size, model.config.rope_max_seq_len).to("cuda")
    return model


def timed(fn, reps):
    """Median of `reps` event-timed calls (the caller has warmed fn up): bench_gpu's timing."""
    return bench(fn, min_reps=reps, warm_ms=0, run_ms=0, warm_min=0)[0]


def cudnn_attention_ms(heads, tokens):
    """One cuDNN self-attention call of (1, heads, tokens, 128)."""
    q = torch.randn(1, heads, tokens, 128, device="cuda", dtype=torch.bfloat16)
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
        return timed(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q), 5)


def relative(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("sets", nargs="*", help="NAME=LIB.so[:compiled]: a calibc library for this model")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    spec = MODELS[a.model]
    model = model_of(spec)
    g = torch.Generator(device="cuda").manual_seed(1)
    latents = torch.randn((1, *spec["latent"]), generator=g, device="cuda").to(torch.bfloat16)
    text = torch.randn((1, 512, 4096), generator=g, device="cuda").to(torch.bfloat16)
    timestep = torch.tensor([999.0], device="cuda")

    def forward(m):
        with torch.no_grad():
            return m(hidden_states=latents, timestep=timestep, encoder_hidden_states=text, return_dict=False)[0]

    rows, outputs = [], {}

    def row(label, fn, compiled=False, reference=None):
        out = fn()  # the first call: loads, prepares, compiles
        if compiled:
            out = fn()
        ms = timed(fn, a.reps)
        outputs[label] = out.clone()
        r = {"variant": label, "ms": ms}
        if reference is not None:
            r["rel_l2_vs_" + reference] = relative(out, outputs[reference])
        rows.append(r)
        print(json.dumps(r), flush=True)

    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        row("dense cuDNN eager", lambda: forward(model))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        row("dense FA2 eager", lambda: forward(model), reference="dense cuDNN eager")
    # One self-attention call of the model's shape: the attention share of the dense forward.
    tokens = spec["latent"][1] * spec["latent"][2] // 2 * spec["latent"][3] // 2
    attention_ms = cudnn_attention_ms(spec["heads"], tokens)
    torch._dynamo.reset()
    compiled = torch.compile(model)
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        row("dense cuDNN compiled", lambda: forward(compiled), compiled=True, reference="dense cuDNN eager")
    for item in a.sets:
        name, _, rest = item.partition("=")
        library, _, mode = rest.partition(":")
        sparse = CalibAttention(model, cuda_library=library)
        try:
            row(f"calibc {name} eager", lambda: forward(model), reference="dense cuDNN eager")
            assert sparse.fallbacks == 0 and sparse.calls > 0, (sparse.fallbacks, sparse.calls)
            if mode == "compiled":
                torch._dynamo.reset()
                compiled = torch.compile(model)
                row(f"calibc {name} compiled", lambda: forward(compiled), compiled=True,
                    reference=f"calibc {name} eager")
        finally:
            sparse.remove()
    base = next(r["ms"] for r in rows if r["variant"] == "dense cuDNN compiled")
    eager = next(r["ms"] for r in rows if r["variant"] == "dense cuDNN eager")
    print(f"\n{spec['name']}: {tokens} tokens, {spec['layers']} layers × {spec['heads']} heads; one cuDNN "
          f"self-attention {attention_ms:.1f} ms, {spec['layers']} of them {100 * spec['layers'] * attention_ms / eager:.0f}% "
          "of the dense eager forward")
    print("| variant | ms per forward | speedup vs compiled cuDNN dense | rel. L2 |")
    print("|---|---|---|---|")
    for r in rows:
        err = next((f"{v:.2e} ({k[10:]})" for k, v in r.items() if k.startswith("rel_l2")), "")
        print(f"| {r['variant']} | {r['ms']:.1f} | {base / r['ms']:.2f}× | {err} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": spec["name"], "tokens": tokens, "attention_ms": attention_ms, "rows": rows,
                       "device": torch.cuda.get_device_name(), "torch": torch.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
