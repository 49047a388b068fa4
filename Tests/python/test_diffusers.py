"""calibc.diffusers (the Wan processor, recorder and calibrator) against PyTorch's own attention,
on the tiny random Wan of examples/diffusers/tiny_wan.py."""

import json
import os
import subprocess

import pytest
import torch

import calibc

pytest.importorskip("diffusers")  # the GPU machine's Python has none (Tests/GPU/test.sh runs the suite there)

from calibc.diffusers import CalibAttention, Calibrator, Recorder
from calibc.safetensors import read_header
from conftest import compile_library, needs_layer_entry, random_masks, reference, relative_error, run_calibc
from tiny_wan import HEAD_DIM, HEADS, LATENT, LAYERS, STEPS, TIMESTEPS, TOKENS, denoise, tiny_wan


def masks_json(timesteps, tokens=TOKENS, pattern="dense", model_timesteps=None, grid=None):
    masks = {"format": 1, "model": "tiny-wan", "tokens": tokens, "head_dim": HEAD_DIM, "block": 64, "layers": LAYERS,
             "heads": HEADS, "timesteps": timesteps, "patterns": {},
             "assignments": [{"steps": "*", "layers": "*", "heads": "*", "pattern": pattern}]}
    if model_timesteps is not None:
        masks["model_timesteps"] = model_timesteps
    if grid is not None:
        masks["layout"] = dict(zip(("frames", "height", "width"), grid))
    return masks


def compile_masks(tmp_path, timesteps, tokens=TOKENS, pattern="dense", model_timesteps=None):
    masks = masks_json(timesteps, tokens, pattern, model_timesteps)
    kernels = compile_library(masks, tmp_path)
    needs_layer_entry(kernels)
    return kernels.path


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(os.cpu_count())
    return tiny_wan()


def test_dense_plan_reproduces_sdpa(model, tmp_path):
    sparse = CalibAttention(model, compile_masks(tmp_path, list(range(STEPS))), compare=True)
    try:
        denoise(model, prompt=5)
    finally:
        sparse.remove()
    assert sparse.fallbacks == 0 and sparse.calls == STEPS * LAYERS
    assert max(sparse.errors.values()) < 1e-5, sparse.errors


def test_bfloat16_model_runs_the_bf16_kernels(model, tmp_path):
    library = compile_masks(tmp_path, list(range(STEPS)))
    half = tiny_wan().to(torch.bfloat16)
    sparse = CalibAttention(half, library, compare=True)
    try:
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            half(hidden_states=torch.randn(1, 16, 8, 32, 32, generator=g).to(torch.bfloat16), timestep=torch.tensor([500]),
                 encoder_hidden_states=torch.randn(1, 16, 32, generator=g).to(torch.bfloat16), return_dict=False)
    finally:
        sparse.remove()
    assert sparse.fallbacks == 0 and sparse.calls == LAYERS
    # Both sides round to bfloat16; the kernels also round probabilities for P·V.
    assert max(sparse.errors.values()) < 2e-2, sparse.errors


def test_recorder_leaves_the_output_bit_identical(model, tmp_path):
    reference = denoise(model, prompt=1)
    recorder = Recorder(model, str(tmp_path / "r.safetensors"))
    try:
        recorded = denoise(model, prompt=1)
    finally:
        recorder.remove()
    recorder.save()
    assert torch.equal(reference, recorded)
    assert sorted(recorder.tensors)[:2] == ["step0.layer0.k", "step0.layer0.q"]
    assert recorder.tensors["step0.layer0.q"].shape == (HEADS, TOKENS, HEAD_DIM)
    assert recorder.metadata["frames"] == "8" and recorder.metadata["height"] == "16"


def test_precision_is_checked_when_the_processor_is_installed(model, tmp_path):
    """FP8 is asked for by name and runs on CUDA only: a bad precision, or FP8 without a CUDA
    library, is refused before any attention is wrapped (test_cuda.py runs FP8 per layer)."""
    library = compile_masks(tmp_path, list(range(STEPS)))
    with pytest.raises(ValueError, match="precision 'fp8' runs on the CUDA target: give cuda_library="):
        CalibAttention(model, library, precision="fp8")
    with pytest.raises(ValueError, match="precision: expected None, 'fp8', 'fp8-pv' or a function"):
        CalibAttention(model, library, precision="fp16")
    sparse = CalibAttention(model, library, compare=True)  # nothing was left wrapped
    try:
        denoise(model, prompt=5)
    finally:
        sparse.remove()
    assert sparse.calls == STEPS * LAYERS and sparse.fallbacks == 0


def test_missing_plans_fall_back_to_sdpa(model, tmp_path):
    reference = denoise(model, prompt=2)
    # Plans for another sequence length: every call falls back, and the output is untouched.
    sparse = CalibAttention(model, compile_masks(tmp_path, list(range(STEPS)), tokens=TOKENS + 1))
    try:
        with pytest.warns(UserWarning, match=r"calibc: attention runs dense: shape \(tokens") as caught:
            assert torch.equal(denoise(model, prompt=2), reference)
    finally:
        sparse.remove()
    assert sparse.calls == 0 and sparse.fallbacks == STEPS * LAYERS
    assert sparse.fallback_reasons == {"shape": STEPS * LAYERS}
    assert sum("calibc:" in str(w.message) for w in caught) == 1, "said once, not per call"


def test_an_artifact_of_two_grids_runs_both_and_says_when_a_grid_has_no_plans(model, tmp_path):
    """`calibc compile a.json b.json` holds 8 and 4 latent frames: both run their own plans with
    no fallback; a grid of the same token count but another shape has none, says so once, and
    runs dense. Two masks files of one grid are refused when compiling."""
    small = (1, 16, 4, 32, 32)
    files = []
    for name, (frames, pattern) in {"a": (8, "dense"), "b": (4, "dense")}.items():
        doc = masks_json(list(range(STEPS)), tokens=frames * 256, pattern=pattern,
                         model_timesteps=TIMESTEPS, grid=(frames, 16, 16))
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(doc))
    run_calibc("compile", *map(str, files), "-o", str(tmp_path / "art"), "--shared")
    shapes = json.loads((tmp_path / "art" / "shapes.json").read_text())["shapes"]
    assert [(s["dir"], s["tokens"]) for s in shapes] == [("8x16x16", 2048), ("4x16x16", 1024)]
    sparse = CalibAttention(model, str(tmp_path / "art"), compare=True)
    try:
        denoise(model, prompt=3)
        denoise(model, prompt=3, latent=small)
        assert sparse.fallbacks == 0 and sparse.calls == 2 * STEPS * LAYERS
        assert max(sparse.errors.values()) < 1e-5  # dense plans: SDPA's output
        sparse.remove()
        reference = denoise(model, prompt=3, latent=(1, 16, 8, 16, 64))
        sparse = CalibAttention(model, str(tmp_path / "art"))
        with pytest.warns(UserWarning, match=r"shape \(tokens 2048, grid 8 × 8 × 32, .*holds 2048 tokens \(8 × 16 × "
                                             r"16\), 1024 tokens \(4 × 16 × 16\)") as caught:
            assert torch.equal(denoise(model, prompt=3, latent=(1, 16, 8, 16, 64)), reference)
        assert sum("calibc:" in str(w.message) for w in caught) == 1 and sparse.calls == 0
    finally:
        sparse.remove()
    twice = tmp_path / "c.json"
    twice.write_text(json.dumps(masks_json([0], tokens=2048, grid=(8, 16, 16))))
    with pytest.raises(subprocess.CalledProcessError) as e:
        run_calibc("compile", str(files[0]), str(twice), "-o", str(tmp_path / "art2"))
    assert "both hold plans for the grid 8 × 16 × 16 (2048 tokens)" in e.value.stderr
    assert not (tmp_path / "art2").exists()


def per_step_masks(seed=99):
    """Independent random plans for every (step, layer, head), the steps at denoise's timesteps."""
    masks = random_masks(seed, tokens=TOKENS, head_dim=HEAD_DIM, block=64, layers=LAYERS, heads=HEADS,
                         timesteps=tuple(range(STEPS)), density=0.2)
    masks.model_timesteps = [float(t) for t in TIMESTEPS]
    return masks


class Checking(CalibAttention):
    """The processor, each call checked against the float64 plans of the step the library picks
    for its timestep; `seen`: (step, error against those plans, error against dense)."""

    def __init__(self, *args, masks, **kwargs):
        self.masks, self.seen = masks, []
        super().__init__(*args, compare=True, **kwargs)

    def _attend_for(self, layer):
        inner = super()._attend_for(layer)

        def attend(original, query, key, value, *args, **kwargs):
            out = inner(original, query, key, value, *args, **kwargs)
            kernels = self.kernels.libraries[0]
            step = kernels.steps[int(kernels.step_index(self.timesteps.current))]
            patterns = [self.masks.pattern(step, layer, h) for h in range(HEADS)]
            for b in range(query.shape[0]):
                want = reference(patterns, query[b].transpose(0, 1), key[b].transpose(0, 1),
                                 value[b].transpose(0, 1), 64).transpose(0, 1)
                self.seen.append((step, relative_error(out[b], want), self.errors[(step, layer)]))
            return out

        return attend


def test_steps_are_picked_by_timestep(model, tmp_path):
    """The same plans whatever the guidance (batched, separate calls, none), a generation with
    fewer steps runs the nearest calibrated ones, and a second generation in a row gives the same
    output: the processor counts nothing."""
    masks = per_step_masks()
    kernels = compile_library(masks, tmp_path)
    outputs = {}
    for guidance in (None, "batched", "separate", None):
        sparse = Checking(model, kernels, masks=masks)
        try:
            outputs.setdefault(guidance, []).append(denoise(model, prompt=4, guidance=guidance))
        finally:
            sparse.remove()
        assert sparse.fallbacks == 0
        assert [step for step, _, _ in sparse.seen[::2 if guidance == "batched" else 1]] == \
               [s for s in range(STEPS) for _ in range(LAYERS) for _ in range(2 if guidance == "separate" else 1)]
        assert max(e for _, e, _ in sparse.seen) < 2e-5
    plain = outputs[None]
    assert torch.equal(plain[0], plain[1]), "two generations in a row"
    assert relative_error(outputs["batched"][0], plain[0]) < 1e-5
    assert torch.equal(outputs["separate"][0], plain[0])
    # Two steps (timesteps 999 and 500) run calibrated steps 0 and 2, the nearest.
    sparse = Checking(model, kernels, masks=masks)
    try:
        denoise(model, prompt=4, steps=2)
    finally:
        sparse.remove()
    assert [step for step, _, _ in sparse.seen] == [0] * LAYERS + [2] * LAYERS


def test_step_index_is_the_nearest_model_timestep(tmp_path):
    kernels = calibc.load(compile_masks(tmp_path, [0, 1, 2, 3], model_timesteps=[999, 750.5, 500, 250]))
    assert kernels.timesteps == (999.0, 750.5, 500.0, 250.0)

    def index(t, dtype=torch.float32):
        return int(kernels.step_index(torch.tensor(t, dtype=dtype)))

    assert [index(t) for t in ([999], [2000], [751], [625.25], [0.0], [260])] == [0, 0, 1, 1, 3, 3]
    assert index([874.75]) == 0, "a tie goes to the earlier step"
    assert index([500, 500], torch.int64) == 2, "a batch's timesteps"
    assert index([[0.0] * 7 + [750.5] * 9]) == 1, "per-token timesteps: the conditioning tokens' 0 is not the step"
    # Without model_timesteps the step values are the timesteps.
    plain = calibc.load(compile_masks(tmp_path / "plain", [0, 10, 20]))
    assert plain.timesteps == (0.0, 10.0, 20.0) and int(plain.step_index(torch.tensor([14]))) == 1


def test_sparse_plans_run_per_head(model, tmp_path):
    """Different random plans per head and step: the processor's output is the float64 plan of
    every head (checked through the attention outputs it returns), and far from dense attention."""
    masks = per_step_masks()
    sparse = Checking(model, compile_library(masks, tmp_path), masks=masks)
    try:
        denoise(model, prompt=4)
    finally:
        sparse.remove()
    assert sparse.calls == STEPS * LAYERS and sparse.fallbacks == 0 and len(sparse.seen) == STEPS * LAYERS
    assert max(e for _, e, _ in sparse.seen) < 2e-5  # fp32 rounding of large logits (the bias makes |q·k| big)
    assert min(error for _, _, error in sparse.seen) > 1e-3, "random sparse plans should differ from dense attention"


def test_calibrator_state_decides_the_masks_calibrating_the_recordings_does(model, tmp_path):
    # The same two prompts through the streaming Calibrator (block mass in torch, folded while the
    # model runs) and through recordings of q and k calibrated by calibc: the same masks.
    calibrator = Calibrator(model, mass=0.9, block=64, reuse_tolerance=0.05, stability_drop=0.1)
    try:
        for prompt in (1, 2):
            denoise(model, prompt=prompt)
            calibrator.next_prompt()
    finally:
        calibrator.remove()
    calibrator.save(str(tmp_path / "state.safetensors"), model="tiny-wan")
    for prompt in (1, 2):
        recorder = Recorder(model, str(tmp_path / f"r{prompt}.safetensors"), dtype=torch.float32)
        try:
            denoise(model, prompt=prompt)
        finally:
            recorder.remove()
        recorder.save()
    run_calibc("calibrate", "--merge", str(tmp_path / "state.safetensors"), "-o", str(tmp_path / "streamed.json"))
    run_calibc("calibrate", str(tmp_path / "r1.safetensors"), str(tmp_path / "r2.safetensors"), "--block", "64",
               "--mass", "0.9", "--reuse-tolerance", "0.05", "--stability-drop", "0.1", "-o", str(tmp_path / "recorded.json"))
    streamed, recorded = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("streamed", "recorded"))
    assert streamed["model_timesteps"] == recorded["model_timesteps"] == TIMESTEPS
    assert len(calibrator.states) == STEPS * LAYERS
    assert read_header(str(tmp_path / "state.safetensors"))[0]["__metadata__"]["stability_drop"] == "0.1"
    assert streamed["patterns"] == recorded["patterns"] and streamed["assignments"] == recorded["assignments"]
    with pytest.raises(RuntimeError, match="next_prompt"):
        calibrator.seen.add((0, 0))  # as if a prompt had begun
        calibrator.save(str(tmp_path / "again.safetensors"))


def test_compiled_model_runs_the_kernels(model, tmp_path):
    """Under torch.compile the processor is traced with the model: every call reaches the kernels
    (before, a compiled model silently ran dense), the output equals eager's, and the model
    compiles once for a whole generation of 10 steps (the step is a tensor the kernel op reads),
    with no graph break."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    masks = per_step_masks()
    kernels = compile_library(masks, tmp_path)
    steps = 10
    sparse = CalibAttention(model, kernels)
    try:
        eager = denoise(model, prompt=4, steps=steps)
        sparse.calls = 0
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(model, fullgraph=True)
        out = denoise(compiled, prompt=4, steps=steps)
    finally:
        sparse.remove()
    assert sparse.calls == steps * LAYERS and sparse.fallbacks == 0
    assert relative_error(out, eager) < 1e-5
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"], dict(counters["graph_break"])


def test_compiled_fallback_says_so_without_a_graph_break(model, tmp_path):
    """Plans for another token count under torch.compile: dense attention, said once while
    compiling (fallbacks counts the compiled call sites), with no graph break."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    dense = denoise(torch.compile(model, fullgraph=True), prompt=2)
    sparse = CalibAttention(model, compile_masks(tmp_path, list(range(STEPS)), tokens=TOKENS + 1))
    try:
        torch._dynamo.reset()
        counters.clear()
        with pytest.warns(UserWarning, match=r"calibc: attention runs dense: shape \(tokens 2048") as caught:
            out = denoise(torch.compile(model, fullgraph=True), prompt=2)
    finally:
        sparse.remove()
    assert torch.equal(out, dense)
    assert sparse.calls == 0 and sparse.fallback_reasons == {"shape": LAYERS}
    assert sum("calibc:" in str(w.message) for w in caught) == 1
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]


def test_ltx_video_self_attention_is_reached_as_wan_is(tmp_path):
    """LTXVideoTransformer3DModel (packed latents, the grid given as arguments, text only in the
    cross-attention): the processor runs every attn1 call on the kernels (dense plans: SDPA's
    output) and never touches attn2, and the recorder records the grid and the timesteps."""
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(0)
    ltx = LTXVideoTransformer3DModel(in_channels=16, out_channels=16, num_attention_heads=HEADS,
                                     attention_head_dim=HEAD_DIM, cross_attention_dim=HEADS * HEAD_DIM, num_layers=LAYERS,
                                     caption_channels=32).eval()
    frames, height, width = 4, 8, 8
    g = torch.Generator().manual_seed(5)
    latents = torch.randn(1, frames * height * width, 16, generator=g)
    text, text_mask = torch.randn(1, 8, 32, generator=g), torch.ones(1, 8)

    def generation():
        with torch.no_grad():
            for t in TIMESTEPS:
                ltx(latents, text, torch.tensor([float(t)]), text_mask, num_frames=frames, height=height, width=width)

    doc = masks_json(list(range(STEPS)), tokens=frames * height * width, model_timesteps=TIMESTEPS,
                     grid=(frames, height, width))
    (tmp_path / "m.json").write_text(json.dumps(doc))
    run_calibc("compile", str(tmp_path / "m.json"), "-o", str(tmp_path / "k"), "--shared")
    sparse = CalibAttention(ltx, str(tmp_path / "k" / "libcalibkernels.so"), compare=True)
    try:
        generation()
    finally:
        sparse.remove()
    assert sparse.fallbacks == 0 and sparse.calls == STEPS * LAYERS
    assert sorted(sparse.errors) == [(s, layer) for s in range(STEPS) for layer in range(LAYERS)]
    assert max(sparse.errors.values()) < 1e-5
    recorder = Recorder(ltx, str(tmp_path / "r.safetensors"), block_mass=64)
    try:
        generation()
    finally:
        recorder.remove()
    recorder.save()
    meta = read_header(str(tmp_path / "r.safetensors"))[0]["__metadata__"]
    assert (meta["frames"], meta["height"], meta["width"]) == ("4", "8", "8")
    assert meta["model_timesteps"] == "999.0,750.0,500.0,250.0"


def test_a_transformer_calibc_cannot_reach_is_refused_by_name(model, tmp_path):
    from calibc.diffusers import ModelError

    library = compile_masks(tmp_path, list(range(STEPS)))
    flux = type("FluxTransformer2DModel", (torch.nn.Module,), {})()
    with pytest.raises(ModelError, match=r"FluxTransformer2DModel: not a transformer calibc knows"):
        CalibAttention(flux, library)
    with pytest.raises(ModelError, match=r"Linear: not a transformer calibc knows \(it reaches CogVideoXTransformer3DModel, "
                                         r"HunyuanVideoTransformer3DModel, LTXVideoTransformer3DModel, "
                                         r"MochiTransformer3DModel, WanTransformer3DModel\)"):
        Recorder(torch.nn.Linear(2, 2), str(tmp_path / "r.safetensors"))
    assert torch.equal(denoise(model, prompt=1), denoise(model, prompt=1)), "nothing was left installed"


def test_wan22_experts_each_calibrate_and_run_their_own_steps(model, tmp_path):
    """Wan 2.2 A14B's two experts, as WanPipeline runs them (transformer for timesteps at or above
    the boundary, transformer_2 below): a Calibrator on each, a mask set per expert that knows its
    own timesteps, and a processor on each that runs only its own plans, with no fallback."""
    low = tiny_wan(seed=1)
    experts = {"high": model, "low": low}

    def generation(prompt):
        g = torch.Generator().manual_seed(2000 + prompt)
        latents, text = torch.randn(LATENT, generator=g), torch.randn(1, 16, 32, generator=g)
        with torch.no_grad():
            for t in TIMESTEPS:
                expert = experts["high"] if t >= 875 else experts["low"]
                out = expert(hidden_states=latents, timestep=torch.tensor([t]), encoder_hidden_states=text,
                             return_dict=False)[0]
                latents = latents - 0.2 * out

    calibrators = {name: Calibrator(m, mass=0.9, block=64) for name, m in experts.items()}
    try:
        for prompt in (1, 2):
            generation(prompt)
            for c in calibrators.values():
                c.next_prompt()
    finally:
        for c in calibrators.values():
            c.remove()
    libraries = {}
    for name, c in calibrators.items():
        c.save(str(tmp_path / f"{name}.safetensors"), model="tiny-wan-2.2")
        run_calibc("calibrate", "--merge", str(tmp_path / f"{name}.safetensors"), "-o", str(tmp_path / f"{name}.json"))
        run_calibc("compile", str(tmp_path / f"{name}.json"), "-o", str(tmp_path / name), "--shared")
        libraries[name] = str(tmp_path / name / "libcalibkernels.so")
    assert json.loads((tmp_path / "high.json").read_text())["model_timesteps"] == [999.0]
    assert json.loads((tmp_path / "low.json").read_text())["model_timesteps"] == [750.0, 500.0, 250.0]
    sparse = {name: CalibAttention(m, libraries[name], compare=True) for name, m in experts.items()}
    try:
        generation(3)
    finally:
        for s in sparse.values():
            s.remove()
    assert all(s.fallbacks == 0 for s in sparse.values())
    assert sorted(sparse["high"].errors) == [(0, layer) for layer in range(LAYERS)]
    assert sorted(sparse["low"].errors) == [(s, layer) for s in range(3) for layer in range(LAYERS)]
    assert all(0 < e < 0.3 for s in sparse.values() for e in s.errors.values())


def test_a_processor_calibc_cannot_step_into_is_refused(model, tmp_path):
    """A custom processor on a self-attention need not call the function calibc steps into: refused,
    naming it, rather than running dense unnoticed."""
    from diffusers.models.attention_processor import AttnProcessor2_0
    from calibc.diffusers import ModelError

    library = compile_masks(tmp_path, list(range(STEPS)))
    original = model.blocks[1].attn1.processor
    model.blocks[1].attn1.set_processor(AttnProcessor2_0())
    try:
        with pytest.raises(ModelError, match=r"blocks\[1\]\.attn1 runs AttnProcessor2_0, not the model's own WanAttnProcessor"):
            CalibAttention(model, library)
    finally:
        model.blocks[1].attn1.set_processor(original)
    sparse = CalibAttention(model, library)
    recorder = Recorder(model, str(tmp_path / "r.safetensors"))  # on top of another calibc wrapper: fine
    recorder.remove()
    sparse.remove()
