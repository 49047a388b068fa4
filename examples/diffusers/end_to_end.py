"""record → calibrate → compile → run on a small, randomly initialised diffusers Wan.

    .venv/bin/python examples/diffusers/end_to_end.py [--out DIR]

No downloads: the model is WanTransformer3DModel built from a config (2 layers, 4 heads of
64 dims, 8 latent frames of 32×32 → 2048 tokens). Random weights give flat attention, so the
query and key projections are set the way trained video models behave: small weights and a
large per-head bias, which after the RMSNorm and the 3D rotary embedding makes q·k depend on
the position offset — per head mostly along time (a spatial head), along height and width (a
temporal head), or all three (a local window). The "denoising" is a fixed number of transformer
calls on latents that drift between steps; prompts differ by their noise and text embedding.
Prints per-layer attention-output error against SDPA and the wall time of both.
"""

import argparse
import os
import subprocess
import sys
import time

import torch
from diffusers import WanTransformer3DModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from processor import CalibAttention  # noqa: E402
from record import Recorder  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CALIBC = os.environ.get("CALIBC", os.path.join(ROOT, ".build", "release", "calibc"))
STEPS, HEADS, HEAD_DIM, LAYERS = 4, 4, 64, 2
LATENT = (1, 16, 8, 32, 32)  # B, C, F, H, W → 8 × 16 × 16 = 2048 tokens with patch (1, 2, 2)


def tiny_wan(seed=0):
    torch.manual_seed(seed)
    model = WanTransformer3DModel(num_attention_heads=HEADS, attention_head_dim=HEAD_DIM, text_dim=32, freq_dim=32,
                                  ffn_dim=256, num_layers=LAYERS, rope_max_seq_len=64).eval()
    # Head h: RoPE sections t (24 dims), h (20), w (20) of head_dim 64; energy per section picks the head type.
    sections = [(0, 24), (24, 44), (44, 64)]
    kinds = [(1.0, 0.1, 0.1), (0.1, 1.0, 1.0), (1.0, 1.0, 1.0), (0.6, 0.4, 0.4)]
    with torch.no_grad():
        for block in model.blocks:
            attn = block.attn1
            bias = torch.zeros(HEADS * HEAD_DIM)
            for h, energy in enumerate(kinds[:HEADS]):
                for (lo, hi), e in zip(sections, energy):
                    bias[h * HEAD_DIM + lo:h * HEAD_DIM + hi:2] = e  # the first of each rotated pair
            for proj in (attn.to_q, attn.to_k):
                proj.weight.mul_(0.05)
                proj.bias.copy_(bias)
            attn.norm_q.weight.fill_(3.0)
            attn.norm_k.weight.fill_(3.0)
    return model


def denoise(model, prompt, steps=STEPS):
    """A fixed schedule of transformer calls; returns the last output."""
    g = torch.Generator().manual_seed(1000 + prompt)
    latents = torch.randn(LATENT, generator=g)
    text = torch.randn(1, 16, 32, generator=g)
    out = None
    with torch.no_grad():
        for step in range(steps):
            t = torch.tensor([999 - step * 999 // steps])
            out = model(hidden_states=latents, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
            latents = latents - 0.2 * out
    return out


def calibc(*args):
    subprocess.run([CALIBC, *args], check=True, stdout=subprocess.DEVNULL)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(ROOT, "out", "diffusers"))
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(os.cpu_count())
    model = tiny_wan()

    recordings = []
    for prompt in range(3):
        path = os.path.join(out, f"prompt{prompt}.safetensors")
        recorder = Recorder(model, path)
        denoise(model, prompt)
        recorder.save()
        recorder.remove()
        recordings.append(path)
    print(f"recorded 3 prompts × {STEPS} steps × {LAYERS} layers × {HEADS} heads into {out}")

    masks = os.path.join(out, "masks.json")
    subprocess.run([CALIBC, "calibrate", *recordings[:2], "--holdout", recordings[2], "-o", masks], check=True)
    calibc("compile", masks, "-o", os.path.join(out, "kernels"), "--shared", "--force")

    sparse = CalibAttention(model, os.path.join(out, "kernels", "libcalibkernels.so"), compare=True)
    denoise(model, prompt=3)  # a prompt neither calibration nor the held-out check saw
    sparse.remove()
    print("\nattention output vs SDPA on a new prompt (relative L2 error):")
    for layer in range(LAYERS):
        errors = [sparse.errors[(step, layer)] for step in range(STEPS)]
        print(f"  layer {layer}: " + "  ".join(f"step {s}: {e:.2e}" for s, e in enumerate(errors)))
    print(f"\nwall time of {sparse.calls} self-attention calls: calibc {sparse.seconds['sparse'] * 1e3:.1f} ms, "
          f"SDPA {sparse.seconds['original'] * 1e3:.1f} ms ({sparse.seconds['original'] / sparse.seconds['sparse']:.2f}x); "
          f"{sparse.fallbacks} fell back to SDPA")


if __name__ == "__main__":
    main()
