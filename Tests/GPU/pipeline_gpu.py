#!/usr/bin/env python3
"""calibrate → enable → evaluate on the GPU machine (issue 26), through calibc.pipeline's API on
diffusers' own WanPipeline: a random-weight Wan 2.1 1.3B transformer (bench_e2e.py's), the Wan VAE
at its published configuration with random weights, the UniPC flow scheduler Wan ships, 81 frames
at 480 × 832, guidance 5, and prompt embeddings given directly (random, 512 × 4096: no text
encoder or tokenizer can be fetched there).

Calibrates PROMPTS prompts for STEPS steps into OUT/artifact (merged and compiled for sm_90a by
the calibc of `make dist`, named by $CALIBC), then generates one held-out prompt dense and sparse
from one seed. Prints and writes OUT/pipeline.json: seconds to generate a prompt plain and while
calibrating, to merge and compile, and evaluate's report (OUT/eval: report.json, report.html and
the frames).

Random weights attend almost uniformly, so a mass of 0.95 keeps about 95% of the tiles; --mass
0.5 (the default here) gives plans sparse enough for the sparse generation to differ in time.

usage: PYTHONPATH=python:Tests/GPU CALIBC=calibc python3 Tests/GPU/pipeline_gpu.py OUT
       [--prompts 2] [--steps 4] [--mass 0.5]
"""
import argparse, json, os, shutil, time

import torch

from bench_e2e import MODELS, wan
from calibc import pipeline


def wan_pipeline():
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline

    transformer, _ = wan(MODELS["1.3b"])
    torch.manual_seed(0)
    vae = AutoencoderKLWan().to("cuda", torch.float32).eval()
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt(i):
    g = torch.Generator(device="cuda").manual_seed(5000 + i)
    return {"prompt_embeds": torch.randn(1, 512, 4096, generator=g, device="cuda").to(torch.bfloat16),
            "negative_prompt_embeds": torch.zeros(1, 512, 4096, device="cuda", dtype=torch.bfloat16)}


def timed(fn):
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--mass", type=float, default=0.5)
    a = ap.parse_args()
    size = dict(height=480, width=832, num_frames=81, guidance_scale=5.0)
    artifact = os.path.join("/tmp", "artifact")
    shutil.rmtree(artifact, ignore_errors=True)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, calibc {os.environ.get('CALIBC')}", flush=True)

    setup_s, pipe = timed(wan_pipeline)
    prompts = [prompt(i) for i in range(a.prompts)]
    settings = dict(steps=a.steps, generate=dict(size, output_type="latent"), mass=a.mass, targets=("cuda",))
    pipeline._call(pipe, prompts[0], 1, settings["generate"])  # warm-up: cuDNN's plans, the allocator
    plain_s, _ = timed(lambda: pipeline._call(pipe, prompts[0], a.steps, settings["generate"],
                                              generator=torch.Generator(device="cuda").manual_seed(0)))
    print(f"pipeline built in {setup_s:.1f} s; one prompt plain, {a.steps} steps: {plain_s:.2f} s", flush=True)
    states_s, _ = timed(lambda: pipeline.calibrate(pipe, prompts, artifact, states_only=True, **settings))
    compile_s, manifest = timed(lambda: pipeline.calibrate(pipe, prompts, artifact, **settings))
    states = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(artifact, "states")) for f in fs)
    masks = os.path.join(artifact, "transformer", "masks.json")
    stats = "\n".join(l for l in pipeline._run(os.environ["CALIBC"], "stats", masks).splitlines() if not l.startswith("  @"))
    print(f"calibrating {a.prompts} prompts: {states_s:.1f} s ({states_s / a.prompts / plain_s:.3f}× a plain prompt), "
          f"states {states / 2**20:.0f} MiB; merge + compile: {compile_s:.1f} s\n{stats}", flush=True)
    evaluation = os.path.join(a.out, "eval")
    report = pipeline.evaluate(pipe, artifact, [prompt(100)], evaluation, steps=a.steps, generate=size)
    shutil.copy(os.path.join(artifact, "manifest.json"), os.path.join(a.out, "manifest.json"))
    summary = {"plain_prompt_s": plain_s, "calibrating_prompts_s": states_s, "calibrating_over_plain": states_s / a.prompts / plain_s,
               "states_bytes": states, "merge_compile_s": compile_s, "masks_bytes": os.path.getsize(masks),
               "stats": stats, "evaluate": report, "settings": {"prompts": a.prompts, "steps": a.steps, "mass": a.mass, **size}}
    with open(os.path.join(a.out, "pipeline.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
