#!/usr/bin/env python3
"""`make bench-e2e` (GPU machine): one transformer forward at real size with random weights,
dense against calibc, in one process (issue 28 item 5; issue 25 item 4).

Wan 2.1 (1.3B at 480p, 14B at 720p, 81 frames, bf16, B = 1, one text of 512 tokens):
  dense eager: SDPA through cuDNN and through FlashAttention-2; dense compiled (cuDNN) — the
  fair baseline; calibc eager at every set given for the model, and compiled at those marked so.
  Each forward is timed with CUDA events (median of --reps after a warm-up); compiled variants
  are warmed until they stop compiling. The attention share is the model's layers × one cuDNN
  self-attention call over the dense eager forward. Output relative L2 against dense eager says
  what the masks change (and that calibc ran); compiled against eager calibc, that compiling
  changed nothing beyond bf16 rounding.

A set marked fp8 (or fp8-pv) also runs with that precision (issue 27): its output against the same
plans in bf16 says what FP8 attention changes in the whole forward.

Mochi 1, HunyuanVideo, CogVideoX 5B and LTX-Video 2B at their published shapes (B = 1; Mochi's
and HunyuanVideo's text padded: 200 of 256 slots valid): dense eager (the model's own attention:
Mochi's per-sample loop, HunyuanVideo's masked call) against calibc eager, no compiled rows.

Weights: the diffusers class built on the meta device, then to_empty on the GPU and initialised
there (normal, std 0.02; norms at 1), so 14B takes seconds.

usage: PYTHONPATH=python bench_e2e.py MODEL [NAME=LIB.so[:compiled][,fp8][,fp8-pv] ...] [--reps N] [--json F]
       MODEL: 1.3b, 14b, mochi, hunyuan, cogvideox or ltx
"""
import argparse, json

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench_gpu import bench
from calibc.diffusers import CalibAttention

# cuDNN where it takes the call; HunyuanVideo's masked calls, which it may not, the next that does.
BACKENDS = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]

MODELS = {
    # Wan 2.1 (and each of Wan 2.2 A14B's two experts, the same transformer): heads, ffn, layers,
    # latent (C, F, H, W) of 81 frames at the resolution
    "1.3b": dict(heads=12, ffn=8960, layers=30, latent=(16, 21, 60, 104), name="Wan 2.1 1.3B 480p"),
    "14b": dict(heads=40, ffn=13824, layers=40, latent=(16, 21, 90, 160), name="Wan 2.1 14B 720p"),
    # Joint text–video and LTX at their published shapes (docs/notes/joint-models.md).
    "mochi": dict(name="Mochi 1 10B 848×480×163", heads=24, dim=128, layers=48, tokens=44520 + 256),
    "hunyuan": dict(name="HunyuanVideo 13B 1280×720×129", heads=24, dim=128, layers=60, tokens=118800 + 256),
    "cogvideox": dict(name="CogVideoX 5B 720×480×49", heads=48, dim=64, layers=42, tokens=226 + 17550),
    "ltx": dict(name="LTX-Video 2B 704×512×161", heads=32, dim=64, layers=28, tokens=7392),
}
VALID_TEXT = 200  # of Mochi's and HunyuanVideo's 256 text slots: padded text, as a real prompt has


def initialise(model):
    """Random weights on the GPU: normal (std 0.02), norms at 1, biases 0."""
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
    return model


def wan(spec):
    from diffusers import WanTransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    with torch.device("meta"):
        model = WanTransformer3DModel(num_attention_heads=spec["heads"], attention_head_dim=128, ffn_dim=spec["ffn"],
                                      num_layers=spec["layers"])
    model = initialise(model)
    # The rotary tables are buffers computed at construction, which to_empty left unset.
    model.rope = WanRotaryPosEmbed(128, model.config.patch_size, model.config.rope_max_seq_len).to("cuda")
    g = torch.Generator(device="cuda").manual_seed(1)
    inputs = dict(hidden_states=torch.randn((1, *spec["latent"]), generator=g, device="cuda").to(torch.bfloat16),
                  timestep=torch.tensor([999.0], device="cuda"),
                  encoder_hidden_states=torch.randn((1, 512, 4096), generator=g, device="cuda").to(torch.bfloat16))
    return model, inputs


def text_mask(slots):
    return (torch.arange(slots, device="cuda") < VALID_TEXT)[None].long()


def joint(name):
    """A joint model (or LTX) at real size and one forward's inputs."""
    import diffusers

    g = torch.Generator(device="cuda").manual_seed(1)

    def randn(*shape):
        return torch.randn(shape, generator=g, device="cuda").to(torch.bfloat16)

    with torch.device("meta"):
        if name == "mochi":
            model = diffusers.MochiTransformer3DModel()
        elif name == "hunyuan":
            model = diffusers.HunyuanVideoTransformer3DModel()
        elif name == "cogvideox":
            model = diffusers.CogVideoXTransformer3DModel(num_attention_heads=48, attention_head_dim=64, num_layers=42,
                                                          time_embed_dim=512, use_rotary_positional_embeddings=True)
        else:
            model = diffusers.LTXVideoTransformer3DModel()
    model = initialise(model)
    t = torch.tensor([500.0], device="cuda")
    if name == "mochi":
        inputs = dict(hidden_states=randn(1, 12, 28, 60, 106), encoder_hidden_states=randn(1, 256, 4096), timestep=t,
                      encoder_attention_mask=text_mask(256))
    elif name == "hunyuan":
        inputs = dict(hidden_states=randn(1, 16, 33, 90, 160), timestep=t, encoder_hidden_states=randn(1, 256, 4096),
                      encoder_attention_mask=text_mask(256), pooled_projections=randn(1, 768),
                      guidance=torch.tensor([6000.0], device="cuda"))
    elif name == "cogvideox":
        # No rotary embedding (the pipeline computes it): attention's cost is the same without it.
        inputs = dict(hidden_states=randn(1, 13, 16, 60, 90), encoder_hidden_states=randn(1, 226, 4096),
                      timestep=torch.tensor([500], device="cuda"))
    else:
        inputs = dict(hidden_states=randn(1, 7392, 128), encoder_hidden_states=randn(1, 128, 4096),
                      encoder_attention_mask=text_mask(128), timestep=t, num_frames=21, height=16, width=22)
    return model, inputs


def timed(fn, reps):
    """Median of `reps` event-timed calls (the caller has warmed fn up): bench_gpu's timing."""
    return bench(fn, min_reps=reps, warm_ms=0, run_ms=0, warm_min=0)[0]


def cudnn_attention_ms(heads, tokens, dim=128):
    """One cuDNN self-attention call of (1, heads, tokens, dim)."""
    q = torch.randn(1, heads, tokens, dim, device="cuda", dtype=torch.bfloat16)
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
        return timed(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q), 5)


def relative(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("sets", nargs="*", help="NAME=LIB.so[:compiled][,fp8][,fp8-pv]: a calibc library for this model")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    spec = MODELS[a.model]
    wan_model = "latent" in spec
    model, inputs = wan(spec) if wan_model else joint(a.model)

    def forward(m):
        with torch.no_grad():
            return m(**inputs, return_dict=False)[0]

    rows, outputs = [], {}

    def row(label, fn, compiled=False, reference=None):
        out = fn()  # the first call: loads, prepares, compiles
        if compiled:
            out = fn()
        assert out.isfinite().all(), f"{label}: the output is not finite"
        ms = timed(fn, a.reps)
        outputs[label] = out.clone()
        r = {"variant": label, "ms": ms}
        if reference is not None:
            r["rel_l2_vs_" + reference] = relative(out, outputs[reference])
        rows.append(r)
        print(json.dumps(r), flush=True)

    with sdpa_kernel(BACKENDS, set_priority=True):
        row("dense cuDNN eager", lambda: forward(model))
    if wan_model:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            row("dense FA2 eager", lambda: forward(model), reference="dense cuDNN eager")
    # One self-attention call of the model's shape: the attention share of the dense forward.
    tokens = spec["latent"][1] * spec["latent"][2] // 2 * spec["latent"][3] // 2 if wan_model else spec["tokens"]
    attention_ms = cudnn_attention_ms(spec["heads"], tokens, spec.get("dim", 128))
    if wan_model:
        torch._dynamo.reset()
        compiled = torch.compile(model)
        with sdpa_kernel(BACKENDS, set_priority=True):
            row("dense cuDNN compiled", lambda: forward(compiled), compiled=True, reference="dense cuDNN eager")
    for item in a.sets:
        name, _, rest = item.partition("=")
        library, _, mode = rest.partition(":")
        modes = mode.split(",")
        sparse = CalibAttention(model, cuda_library=library)
        try:
            with sdpa_kernel(BACKENDS, set_priority=True):
                row(f"calibc {name} eager", lambda: forward(model), reference="dense cuDNN eager")
            assert sparse.fallbacks == 0 and sparse.calls > 0, (sparse.fallback_reasons, sparse.calls)
            if "compiled" in modes:
                torch._dynamo.reset()
                compiled = torch.compile(model)
                row(f"calibc {name} compiled", lambda: forward(compiled), compiled=True,
                    reference=f"calibc {name} eager")
        finally:
            sparse.remove()
        for precision in [m for m in modes if m in ("fp8", "fp8-pv")]:
            sparse = CalibAttention(model, cuda_library=library, precision=precision)
            try:
                row(f"calibc {name} {precision} eager", lambda: forward(model), reference=f"calibc {name} eager")
                assert sparse.fallbacks == 0 and sparse.calls > 0, (sparse.fallback_reasons, sparse.calls)
            finally:
                sparse.remove()
    label = "dense cuDNN compiled" if wan_model else "dense cuDNN eager"
    base = next(r["ms"] for r in rows if r["variant"] == label)
    eager = next(r["ms"] for r in rows if r["variant"] == "dense cuDNN eager")
    print(f"\n{spec['name']}: {tokens} tokens, {spec['layers']} layers × {spec['heads']} heads; one cuDNN "
          f"self-attention {attention_ms:.1f} ms, {spec['layers']} of them {100 * spec['layers'] * attention_ms / eager:.0f}% "
          "of the dense eager forward")
    print(f"| variant | ms per forward | speedup vs {label} | rel. L2 |")
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
