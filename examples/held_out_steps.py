"""What the runtime's step rule costs (docs/calibration.md, "Steps the calibration did not see"):
a call whose timestep was not calibrated runs the plans of the nearest calibrated one.

On synthetic recordings of 10 steps (0, 5, …, 45; `calibc synth`), masks are calibrated on two
prompts; a second mask set keeps every other step (0, 10, …, 40) only. On the third prompt, held
out, with random values (the recordings hold q and k), every step runs through the CPU kernels'
own rule (`Kernels.attention_at` with that step's timestep) under both sets: its own plans, and
for the steps the second set lacks, the nearest one's (ties to the earlier step). Printed per
step: the density and relative L2 error against dense attention of each (mean over layers).

usage: python examples/held_out_steps.py path/to/calibc OUT_DIR      (make held-out-steps)
"""

import os
import subprocess
import sys

import torch

import calibc
from calibc.safetensors import read_tensor

STEPS = list(range(0, 50, 5))


def run(*args):
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL)


def main(tool, out):
    os.makedirs(out, exist_ok=True)
    rec = os.path.join(out, "rec")
    run(tool, "synth", "-o", rec, "--prompts", 3, "--steps", ",".join(map(str, STEPS)))
    every = os.path.join(out, "every.json")
    run(tool, "calibrate", f"{rec}/prompt0.safetensors", f"{rec}/prompt1.safetensors", "-o", every)
    masks = calibc.Masks.read(every)
    kept = list(range(0, len(STEPS), 2))
    half = calibc.Masks(masks.tokens, masks.head_dim, masks.block, masks.layers, masks.heads,
                        [masks.timesteps[i] for i in kept], masks.patterns, masks.plan[kept], masks.names,
                        model=masks.model, layout=masks.layout)
    half.write(os.path.join(out, "half.json"))
    libraries = {}
    for name in ("every", "half"):
        run(tool, "compile", os.path.join(out, name + ".json"), "-o", os.path.join(out, name), "--shared", "--force")
        libraries[name] = calibc.load(os.path.join(out, name, "libcalibkernels.so"))

    def density(m, step, layer):
        return sum(m.pattern(step, layer, h).density() for h in range(m.heads)) / m.heads

    g = torch.Generator().manual_seed(0)
    held = f"{rec}/prompt2.safetensors"
    print("| step | own plans: density, rel. L2 | every other step: plans of step | density, rel. L2 |")
    print("|---|---|---|---|")
    sums = {"own": [], "nearest": []}
    for step in STEPS:
        rows = {"own": [], "nearest": []}
        for layer in range(masks.layers):
            q, k = (read_tensor(held, f"step{step}.layer{layer}.{x}").float().transpose(0, 1).unsqueeze(0)
                    for x in "qk")
            v = torch.randn(q.shape, generator=g)
            dense = libraries["every"].dense_attention_layer(q, k, v)
            t = torch.tensor([float(step)])
            for kind, name in (("own", "every"), ("nearest", "half")):
                lib = libraries[name]
                used = lib.steps[int(lib.step_index(t))]
                out_ = lib.attention_at(t, layer, q, k, v)
                error = ((out_ - dense).norm() / dense.norm()).item()
                rows[kind].append((used, density(masks, used, layer), error))
        mean = {kind: (rows[kind][0][0], sum(r[1] for r in rows[kind]) / len(rows[kind]),
                       sum(r[2] for r in rows[kind]) / len(rows[kind])) for kind in rows}
        held_out = step not in half.timesteps
        if held_out:
            for kind in sums:
                sums[kind].append(mean[kind][2])
        near = mean["nearest"]
        print(f"| {step}{' (held out)' if held_out else ''} | {mean['own'][1]:.3f}, {mean['own'][2]:.2e} | {near[0]} | "
              f"{near[1]:.3f}, {near[2]:.2e} |")
    print(f"\nsteps the second set lacks, mean relative L2: own plans {sum(sums['own']) / len(sums['own']):.2e}, "
          f"nearest step's {sum(sums['nearest']) / len(sums['nearest']):.2e}")


if __name__ == "__main__":
    main(*sys.argv[1:])
