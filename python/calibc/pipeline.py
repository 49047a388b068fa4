"""From a diffusers pipeline to a faster one (docs/python.md, "Pipelines").

    python -m calibc.pipeline calibrate --model DIR --prompts prompts.txt --steps 50 -o artifact
    python -m calibc.pipeline calibrate ... --shard 0/4        # a quarter of the prompts (another GPU)

    pipe = DiffusionPipeline.from_pretrained(DIR, torch_dtype=torch.bfloat16).to("cuda")
    calibc.pipeline.enable(pipe, "artifact")                   # every transformer's processor
    pipe(prompt, num_inference_steps=50)                       # any step count: plans by timestep
    calibc.pipeline.disable(pipe)

`calibrate` runs the GPU Calibrator on each of the pipeline's transformers (`transformer`, and
Wan 2.2's `transformer_2`) while the pipeline generates each prompt as the user would, and keeps
one calibration state per prompt and transformer (artifact/states/): an interrupted run resumes
where it stopped, and several machines can each take a shard of the prompts into one folder.
Once every prompt has its states it merges them (`calibc calibrate --merge`), compiles for each
target (`calibc compile --shared`: the GPU's sm_90a kernels, and the CPU's if asked), keeps the
calibration report (every head's plans drawn) and writes artifact/manifest.json: the pipeline, its
transformers' shapes, the settings and the versions.
A missing calibc or nvcc, or a transformer calibc does not know, is said before any generation.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from .errors import ArgumentError

__all__ = ["PipelineError", "calibrate", "disable", "enable", "evaluate"]

FORMAT = "calibc-pipeline/1"
TRANSFORMERS = ("transformer", "transformer_2")  # the pipeline attributes that may hold one
LIBRARIES = {"cpu": "libcalibkernels.so", "cuda": "libcalibcuda.so"}


class PipelineError(ArgumentError):
    """What stops calibrating or enabling a pipeline, said before any GPU time is spent."""


def transformers_of(pipe):
    """{attribute: transformer} of the pipeline's transformers, each one calibc reaches."""
    from .diffusers.models import model_of

    found = {name: getattr(pipe, name) for name in TRANSFORMERS if getattr(pipe, name, None) is not None}
    if not found:
        raise PipelineError(f"{type(pipe).__name__} has no transformer (looked for {', '.join(TRANSFORMERS)})")
    for t in found.values():
        model_of(t)  # raises ModelError naming it
    return found


def _tool(calibc):
    path = calibc or os.environ.get("CALIBC") or shutil.which("calibc")
    if not path or not os.access(path, os.X_OK):
        raise PipelineError("calibc not found: put it on PATH (`make install PREFIX=~/.local`) or set CALIBC")
    return path


def cuda_takes(head_dim):
    """Whether the CUDA target's kernels take head_dim (calib_cuda.cu's `#error` refuses the rest)."""
    return head_dim % 16 == 0 and head_dim <= 256


def _preflight(calibc, targets):
    """The tools calibrating for `targets` needs, checked before any model is loaded; calibc's path."""
    tool = _tool(calibc)
    for target in targets:
        if target not in LIBRARIES:
            raise PipelineError(f"unknown target {target!r} (cpu or cuda)")
    if "cuda" in targets and not shutil.which(os.environ.get("NVCC", "nvcc")):
        raise PipelineError("nvcc not found: the cuda target compiles with it (pip install nvidia-cuda-nvcc, or "
                            "calibrate with targets=('cpu',) and compile on a machine with nvcc)")
    return tool


def _run(tool, *args):
    done = subprocess.run([tool, *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise PipelineError(f"calibc {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def _relay_notes(log, what, output):
    """What calibc said the user should know (a plan changed to fit, a check skipped), logged."""
    for line in output.splitlines():
        if line.startswith("note:") or " skipped: " in line:
            log(f"{what}: calibc {line.strip()}")


def _shard(text):
    index, _, count = text.partition("/")
    i, n = int(index), int(count)
    if not 0 <= i < n:
        raise PipelineError(f"--shard {text}: expected i/n with 0 <= i < n")
    return i, n


def _call(pipe, prompt, steps, generate, **more):
    """The pipeline on one prompt: a string, or a dict of the pipeline's own keyword arguments
    (prompt_embeds given directly, say)."""
    prompt_args = dict(prompt) if isinstance(prompt, dict) else {"prompt": prompt}
    return pipe(**prompt_args, num_inference_steps=steps, **generate, **more)


def _label(prompt, i):
    return prompt if isinstance(prompt, str) else f"prompt {i}"


def calibrate(pipe, prompts, out, *, steps=50, generate=None, mass=0.95, schedule=None, sample_rows=8, block=128,
              stability_drop=0.05, targets=("cuda",), shard=(0, 1), seed=0, calibc=None, states_only=False, log=print):
    """Calibrates `pipe` on `prompts` (strings, or dicts of the pipeline's keyword arguments;
    generating each with num_inference_steps=`steps` and the keyword arguments `generate`), into
    the artifact folder `out`; returns its manifest, or None while prompts of other shards have no
    states yet. Prompt i generates from seed `seed` + i, so a prompt run again (a resumed run, an
    overlapping shard) folds the same state. `states_only`: write this shard's states and stop,
    so a GPU machine without calibc (or nvcc) can fill them; a later call where calibc is, with
    every state there, merges and compiles without generating."""
    import torch

    from .diffusers import Calibrator

    tool = None if states_only else _preflight(calibc, targets)
    transformers = transformers_of(pipe)
    if "cuda" in targets:
        for name, t in transformers.items():
            head_dim = _attention_shape(t)[1]
            if not cuda_takes(head_dim):  # what `calibc compile --target cuda` refuses, said before generating
                raise PipelineError(f"{name}: head_dim {head_dim}: the cuda target takes a multiple of 16, at most 256 "
                                    "(calibrate with targets=('cpu',))")
    if not prompts:
        raise PipelineError("no prompts")
    generate = dict(generate or {})
    states = {name: os.path.join(out, "states", name) for name in transformers}
    for d in states.values():
        os.makedirs(d, exist_ok=True)

    def state(name, i):
        return os.path.join(states[name], f"prompt{i:05d}.safetensors")

    mine = [i for i in range(len(prompts)) if i % shard[1] == shard[0]]
    todo = [i for i in mine if not all(os.path.exists(state(name, i)) for name in transformers)]
    log(f"calibrating {len(todo)} of {len(mine)} prompts ({len(mine) - len(todo)} done before)")
    start = time.perf_counter()
    device = next(iter(transformers.values())).device
    for n, i in enumerate(todo):
        calibrators = {name: Calibrator(t, mass=mass, schedule=schedule, block=block, sample_rows=sample_rows,
                                        stability_drop=stability_drop) for name, t in transformers.items()}
        try:
            _call(pipe, prompts[i], steps, generate, generator=torch.Generator(device=device).manual_seed(seed + i))
            for name, c in calibrators.items():
                if c.shape is None:
                    raise PipelineError(f"{name} was never called while generating prompt {i}: no state to write")
                c.next_prompt()
                partial = state(name, i) + ".partial"
                c.save(partial, model=type(transformers[name]).__name__)
                os.replace(partial, state(name, i))  # a killed run leaves no half state behind
        finally:
            for c in calibrators.values():
                c.remove()
        elapsed = time.perf_counter() - start
        log(f"prompt {n + 1}/{len(todo)} ({i}): {elapsed / (n + 1):.1f} s a prompt, "
            f"{elapsed / (n + 1) * (len(todo) - n - 1):.0f} s to go")
    if states_only:
        log(f"wrote the states of {len(mine)} prompts under {os.path.join(out, 'states')}: merge where calibc is")
        return None
    missing = [i for i in range(len(prompts)) if not all(os.path.exists(state(name, i)) for name in transformers)]
    if missing:
        log(f"{len(missing)} prompts have no states yet (other shards): merge once they do")
        return None
    manifest = {"format": FORMAT, "pipeline": type(pipe).__name__, "prompts": len(prompts), "steps": steps, "seed": seed,
                "generate": {k: v for k, v in generate.items() if isinstance(v, (int, float, str, bool))},
                "selection": {"mass": mass, "schedule": schedule, "sample_rows": sample_rows, "block": block,
                              "stability_drop": stability_drop},
                "transformers": {}, "versions": _versions(tool)}
    for name, t in transformers.items():
        masks = os.path.join(out, name, "masks.json")
        os.makedirs(os.path.dirname(masks), exist_ok=True)
        _relay_notes(log, name, _run(tool, "calibrate", "--merge", *(state(name, i) for i in range(len(prompts))), "-o", masks,
                                     "--report", os.path.join(out, name, "report.html")))
        libraries = {}
        for target in targets:
            _relay_notes(log, f"{name} ({target})", _run(tool, "compile", masks, "-o", os.path.join(out, name, target),
                                                         "--target", target, "--shared", "--force"))
            libraries[target] = os.path.join(name, target, LIBRARIES[target])
        heads, head_dim = _attention_shape(t)
        manifest["transformers"][name] = {"class": type(t).__name__, "layers": len(_attention_modules(t)), "heads": heads,
                                          "head_dim": head_dim, "masks": os.path.join(name, "masks.json"),
                                          "report": os.path.join(name, "report.html"), "libraries": libraries}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    log(f"wrote {out}: {', '.join(manifest['transformers'])} for {', '.join(targets)}")
    return manifest


def _attention_modules(transformer):
    from .diffusers.models import model_of

    return model_of(transformer).attention_modules(transformer)


def _attention_shape(transformer):
    attn = _attention_modules(transformer)[0][1]
    return attn.heads, attn.inner_dim // attn.heads


def _versions(tool):
    import torch

    versions = {"calibc": _run(tool, "--version").strip(), "torch": torch.__version__}
    try:
        import diffusers
        versions["diffusers"] = diffusers.__version__
    except ModuleNotFoundError:
        pass
    return versions


def enable(pipe, artifact, compare=False, precision=None):
    """Installs the artifact's kernels on each of the pipeline's transformers it was calibrated
    for, after checking each matches (class, layers, heads, head_dim); returns the processors
    (`compare`: the processor's, each sparse call also run dense and its error kept;
    `precision`: the processor's, None or "fp8"/"fp8-pv" on CUDA, or a function of the layer).
    `disable(pipe)` undoes it."""
    from .diffusers import CalibAttention

    path = os.path.join(artifact, "manifest.json")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise PipelineError(f"{path}: not a calibc pipeline artifact ({e})") from None
    if manifest.get("format") != FORMAT:
        raise PipelineError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    disable(pipe)
    processors = {}
    try:
        for name, entry in manifest["transformers"].items():
            t = getattr(pipe, name, None)
            if t is None:
                raise PipelineError(f"{artifact} holds kernels for {name}, which {type(pipe).__name__} does not have")
            have = {"class": type(t).__name__, "layers": len(_attention_modules(t))}
            have["heads"], have["head_dim"] = _attention_shape(t)
            wanted = {k: entry[k] for k in have}
            if have != wanted:
                raise PipelineError(f"{artifact} was calibrated for a {name} of {wanted}, the pipeline's is {have}")
            libraries = {target: os.path.join(artifact, p) for target, p in entry["libraries"].items()}
            processors[name] = CalibAttention(t, libraries.get("cpu"), cuda_library=libraries.get("cuda"), compare=compare,
                                              precision=precision)
    except BaseException:
        for p in processors.values():
            p.remove()
        raise
    pipe._calibc_processors = processors
    return processors


def disable(pipe):
    """Removes what `enable` installed (nothing when it installed nothing)."""
    for p in getattr(pipe, "_calibc_processors", {}).values():
        p.remove()
    pipe._calibc_processors = {}


def evaluate(pipe, artifact, prompts, out, *, steps=50, generate=None, seed=0, attention_errors=True, precision=None,
             log=print):
    """Generates each prompt twice from the same seed, with dense attention and with the
    artifact's kernels, and reports per prompt: the wall time of each, PSNR and SSIM of the
    decoded frames (torchmetrics, over every frame; where the pipeline gives frames with
    output_type="np"), relative L2 and PSNR of the final latents, and the latents' relative drift
    after every step; with `attention_errors`, a third generation runs every sparse call beside
    the dense one (the processor's compare) for the relative error of each layer's attention
    output, averaged over steps. `precision` runs the sparse generations so (`enable`). Writes
    out/report.json and out/report.html (first, middle and last frames side by side); returns
    the report."""
    import inspect

    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    accepts = set(inspect.signature(pipe.__call__).parameters)
    if "callback_on_step_end" not in accepts:
        raise PipelineError(f"{type(pipe).__name__} takes no callback_on_step_end: the drift per step cannot be read")
    os.makedirs(out, exist_ok=True)
    device = next(iter(transformers_of(pipe).values())).device
    generate = dict(generate or {})
    if "output_type" in accepts:
        generate["output_type"] = "np"

    def run(prompt):
        latents = []

        def step_end(pipeline, i, t, tensors):
            latents.append(tensors["latents"].detach().float().cpu())
            return tensors

        generator = torch.Generator(device=device).manual_seed(seed)
        synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        synchronize()
        start = time.perf_counter()
        result = _call(pipe, prompt, steps, generate, generator=generator, callback_on_step_end=step_end,
                       callback_on_step_end_tensor_inputs=["latents"])
        synchronize()
        frames = getattr(result, "frames", None)
        frames = None if frames is None else torch.as_tensor(frames[0]).float()  # (F, H, W, 3) in [0, 1]
        return time.perf_counter() - start, latents, frames

    def relative(a, b):
        return ((a - b).norm() / b.norm()).item()

    report = {"artifact": os.path.abspath(artifact), "steps": steps, "seed": seed, "precision": precision, "prompts": []}
    for n, prompt in enumerate(prompts):
        disable(pipe)
        dense_s, dense_lat, dense_frames = run(prompt)
        enable(pipe, artifact, precision=precision)
        try:
            sparse_s, sparse_lat, sparse_frames = run(prompt)
        finally:
            disable(pipe)
        layers = {}
        if attention_errors:
            processors = enable(pipe, artifact, compare=True, precision=precision)
            try:
                run(prompt)
            finally:
                disable(pipe)
            for name, p in processors.items():
                per_layer = {}
                for (_, layer), error in p.errors.items():
                    per_layer.setdefault(layer, []).append(error)
                layers[name] = [sum(per_layer[l]) / len(per_layer[l]) for l in sorted(per_layer)]
        final_d, final_s = dense_lat[-1], sparse_lat[-1]
        entry = {"prompt": _label(prompt, n), "dense_s": dense_s, "sparse_s": sparse_s, "speedup": dense_s / sparse_s,
                 "latents_rel_l2": relative(final_s, final_d),
                 "latents_psnr": peak_signal_noise_ratio(final_s, final_d, data_range=(final_d.max() - final_d.min()).item()).item(),
                 "drift": [relative(s, d) for s, d in zip(sparse_lat, dense_lat)]}
        if layers:
            entry["attention_error_per_layer"] = layers
        if dense_frames is not None:
            d, s = (f.permute(0, 3, 1, 2).clamp(0, 1) for f in (dense_frames, sparse_frames))
            entry["psnr"] = peak_signal_noise_ratio(s, d, data_range=1.0).item()
            entry["ssim"] = structural_similarity_index_measure(s, d, data_range=1.0).item()
            entry["images"] = _pictures(out, n, dense_frames, sparse_frames)
        report["prompts"].append(entry)
        log(f"prompt {n + 1}/{len(prompts)}: {dense_s:.1f} s dense, {sparse_s:.1f} s sparse"
            + (f", PSNR {entry['psnr']:.2f} dB, SSIM {entry['ssim']:.4f}" if "psnr" in entry else "")
            + f", final latents relative L2 {entry['latents_rel_l2']:.2e}")
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    _write_html(os.path.join(out, "report.html"), report)
    return report


def _pictures(out, n, dense, sparse):
    """The first, middle and last frame of each, side by side, as PNG files; their names."""
    import torch
    from PIL import Image

    names = []
    for which, i in (("first", 0), ("middle", dense.shape[0] // 2), ("last", dense.shape[0] - 1)):
        pair = torch.cat([dense[i], torch.ones(dense.shape[1], 4, 3), sparse[i]], dim=1)  # a white gap between
        name = f"prompt{n}-{which}.png"
        Image.fromarray((pair.clamp(0, 1) * 255).round().byte().numpy()).save(os.path.join(out, name))
        names.append(name)
    return names


def _write_html(path, report):
    from html import escape

    rows = []
    for e in report["prompts"]:
        quality = (f"<td>{e['psnr']:.2f}</td><td>{e['ssim']:.4f}</td>" if "psnr" in e else "<td>—</td><td>—</td>")
        images = "".join(f'<img src="{escape(name)}" title="{escape(name)}: dense | calibc">' for name in e.get("images", []))
        drift = ", ".join(f"{d:.1e}" for d in e["drift"])
        for name, errors in e.get("attention_error_per_layer", {}).items():
            drift += f"<br>{escape(name)} attention error per layer: " + ", ".join(f"{x:.1e}" for x in errors)
        rows.append(f"<tr><td>{escape(e['prompt'])}</td><td>{e['dense_s']:.2f}</td><td>{e['sparse_s']:.2f}</td>"
                    f"<td>{e['speedup']:.2f}×</td>{quality}<td>{e['latents_rel_l2']:.2e}</td>"
                    f"<td class=d>{drift}</td></tr><tr><td colspan=8>{images}</td></tr>")
    with open(path, "w") as f:
        f.write("<!doctype html><meta charset=utf-8><title>calibc: dense against sparse</title>"
                "<style>body{font:14px sans-serif}td{padding:2px 8px;vertical-align:top}.d{font-size:11px}"
                "img{height:180px;margin-right:8px}</style>"
                f"<h1>Dense attention against calibc</h1><p>{escape(report['artifact'])}: {report['steps']} steps, "
                f"seed {report['seed']}; frames are dense | calibc.</p><table><tr><th>prompt</th><th>dense s</th>"
                "<th>calibc s</th><th>speedup</th><th>PSNR dB</th><th>SSIM</th><th>latents rel. L2</th>"
                "<th>latent drift per step; attention error per layer</th></tr>" + "".join(rows) + "</table>\n")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m calibc.pipeline", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("calibrate", help="calibrate a diffusers pipeline on prompts into an artifact folder")
    c.add_argument("--model", required=True, help="a diffusers pipeline directory (or hub name)")
    c.add_argument("--prompts", required=True, help="a text file, one prompt a line")
    c.add_argument("--steps", type=int, default=50)
    c.add_argument("--guidance", type=float, help="guidance_scale, as you generate")
    c.add_argument("--height", type=int)
    c.add_argument("--width", type=int)
    c.add_argument("--frames", type=int, help="num_frames")
    c.add_argument("--mass", type=float, default=0.95)
    c.add_argument("--sample-rows", type=int, default=8)
    c.add_argument("--block", type=int, default=128)
    c.add_argument("--target", action="append", choices=sorted(LIBRARIES), help="cuda (default), cpu; repeatable")
    c.add_argument("--shard", default="0/1", help="i/n: the prompts with index % n == i")
    c.add_argument("--states-only", action="store_true",
                   help="write the states and stop (no calibc or nvcc needed); merge later where calibc is")
    c.add_argument("--dtype", default="bfloat16")
    c.add_argument("--device", default="cuda")
    c.add_argument("-o", required=True, help="the artifact folder")
    e = sub.add_parser("evaluate", help="generate held-out prompts dense and sparse from one seed; report quality")
    e.add_argument("--model", required=True)
    e.add_argument("--artifact", required=True, help="what calibrate wrote")
    e.add_argument("--prompts", required=True, help="held-out prompts, one a line")
    e.add_argument("--steps", type=int, default=50)
    e.add_argument("--guidance", type=float)
    e.add_argument("--height", type=int)
    e.add_argument("--width", type=int)
    e.add_argument("--frames", type=int, help="num_frames")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-attention-errors", action="store_true", help="skip the third generation (per-layer errors)")
    e.add_argument("--precision", choices=["fp8", "fp8-pv"], help="the sparse generations' products on e4m3 (CUDA)")
    e.add_argument("--dtype", default="bfloat16")
    e.add_argument("--device", default="cuda")
    e.add_argument("-o", required=True, help="the report folder (report.html, report.json, frames)")
    a = ap.parse_args(argv)
    try:
        with open(a.prompts) as f:
            prompts = [line.strip() for line in f if line.strip()]
        if a.command == "calibrate":
            targets = tuple(a.target or ["cuda"])
            if not a.states_only:
                _preflight(None, targets)  # before loading a model: the checks that cost nothing
        else:
            with open(os.path.join(a.artifact, "manifest.json")):
                pass
        import torch
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(a.model, torch_dtype=getattr(torch, a.dtype)).to(a.device)
        generate = {k: v for k, v in (("guidance_scale", a.guidance), ("height", a.height), ("width", a.width),
                                      ("num_frames", a.frames)) if v is not None}
        if a.command == "calibrate":
            calibrate(pipe, prompts, a.o, steps=a.steps, generate=generate, mass=a.mass, sample_rows=a.sample_rows,
                      block=a.block, targets=targets, shard=_shard(a.shard), states_only=a.states_only)
        else:
            evaluate(pipe, a.artifact, prompts, a.o, steps=a.steps, generate=generate, seed=a.seed,
                     attention_errors=not a.no_attention_errors, precision=a.precision)
    except (ArgumentError, OSError) as e:
        print(f"calibc.pipeline: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
