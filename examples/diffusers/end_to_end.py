"""record → calibrate → compile → run on a small, randomly initialised diffusers Wan (`make diffusers`).

    pip install ./python            # the calibc package (make diffusers does it into .venv)
    CALIBC=.build/release/calibc python examples/diffusers/end_to_end.py [--out DIR]

No downloads: the model is tiny_wan.py's, beside this file (2 layers, 4 heads of 64 dims, 2048
tokens, attention shaped like a video model's). Records three prompts, calibrates on two with the third
held out, compiles, then runs a fourth prompt with calibc's processor and prints the per-layer
attention-output error against SDPA and the wall time of both.
"""

import argparse
import os
import subprocess

import torch

from calibc.diffusers import CalibAttention, Recorder
from tiny_wan import LAYERS, STEPS, denoise, tiny_wan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CALIBC = os.environ.get("CALIBC", os.path.join(ROOT, ".build", "release", "calibc"))


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
    print(f"recorded 3 prompts × {STEPS} steps × {LAYERS} layers into {out}")

    masks = os.path.join(out, "masks.json")
    subprocess.run([CALIBC, "calibrate", *recordings[:2], "--holdout", recordings[2], "-o", masks], check=True)
    subprocess.run([CALIBC, "compile", masks, "-o", os.path.join(out, "kernels"), "--shared", "--force"], check=True,
                   stdout=subprocess.DEVNULL)

    sparse = CalibAttention(model, os.path.join(out, "kernels", "libcalibkernels.so"), compare=True)
    denoise(model, prompt=3)  # a prompt neither calibration nor the held-out check saw
    sparse.remove()
    if not sparse.calls:
        raise SystemExit(f"no call ran calibc's kernels ({sparse.fallbacks} fell back): {sparse.kernels}")
    print("\nattention output vs SDPA on a new prompt (relative L2 error):")
    for layer in range(LAYERS):
        errors = [sparse.errors[(step, layer)] for step in range(STEPS)]
        print(f"  layer {layer}: " + "  ".join(f"step {s}: {e:.2e}" for s, e in enumerate(errors)))
    print(f"\nwall time of {sparse.calls} self-attention calls: calibc {sparse.seconds['sparse'] * 1e3:.1f} ms, "
          f"SDPA {sparse.seconds['original'] * 1e3:.1f} ms ({sparse.seconds['original'] / sparse.seconds['sparse']:.2f}x); "
          f"{sparse.fallbacks} fell back to SDPA")


if __name__ == "__main__":
    main()
