"""calibc.diffusers (the Wan processor, recorder and calibrator) against PyTorch's own attention,
on the tiny random Wan of examples/diffusers/tiny_wan.py."""

import json
import os

import pytest
import torch

pytest.importorskip("diffusers")  # the GPU machine's Python has none (Tests/GPU/test.sh runs the suite there)

from calibc.diffusers import CalibAttention, Calibrator, Recorder
from calibc.safetensors import read_header
from conftest import compile_library, needs_layer_entry, random_masks, reference, relative_error, run_calibc
from tiny_wan import HEAD_DIM, HEADS, LAYERS, STEPS, TOKENS, denoise, tiny_wan


def compile_masks(tmp_path, timesteps, tokens=TOKENS, pattern="dense"):
    masks = {"format": 1, "model": "tiny-wan", "tokens": tokens, "head_dim": HEAD_DIM, "block": 64, "layers": LAYERS,
             "heads": HEADS, "timesteps": timesteps, "patterns": {},
             "assignments": [{"steps": "*", "layers": "*", "heads": "*", "pattern": pattern}]}
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
    # Plans for step 0 only: the later steps fall back.
    step0 = tmp_path / "step0"
    step0.mkdir()
    sparse = CalibAttention(model, compile_masks(step0, [0]))
    try:
        with pytest.warns(UserWarning, match=r"no plan for step 1 of layer 0 \(the library has steps 0 and 2 layers\)"):
            denoise(model, prompt=2)
    finally:
        sparse.remove()
    assert sparse.calls == LAYERS and sparse.fallbacks == (STEPS - 1) * LAYERS


def test_sparse_plans_run_per_head(model, tmp_path):
    """Different random plans per head: the processor's output is the float64 plan of every head
    (checked through the attention outputs it returns), and far from dense attention."""
    masks = random_masks(99, tokens=TOKENS, head_dim=HEAD_DIM, block=64, layers=LAYERS, heads=HEADS,
                         timesteps=tuple(range(STEPS)), density=0.2)
    kernels = compile_library(masks, tmp_path)
    needs_layer_entry(kernels)
    seen = []

    class Checking(CalibAttention):
        def _attend_for(self, layer):
            inner = super()._attend_for(layer)

            def attend(original, query, key, value, *args, **kwargs):
                out = inner(original, query, key, value, *args, **kwargs)
                patterns = [masks.pattern(self.counter.step, layer, h) for h in range(HEADS)]
                want = reference(patterns, query[0].transpose(0, 1), key[0].transpose(0, 1),
                                 value[0].transpose(0, 1), 64).transpose(0, 1)
                seen.append((relative_error(out[0], want), self.errors[(self.counter.step, layer)]))
                return out

            return attend

    sparse = Checking(model, kernels, compare=True)
    try:
        denoise(model, prompt=4)
    finally:
        sparse.remove()
    assert sparse.calls == STEPS * LAYERS and sparse.fallbacks == 0 and len(seen) == STEPS * LAYERS
    assert max(e for e, _ in seen) < 2e-5  # fp32 rounding of large logits (the bias makes |q·k| big)
    assert min(error for _, error in seen) > 1e-3, "random sparse plans should differ from dense attention"


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
    assert len(calibrator.states) == STEPS * LAYERS
    assert read_header(str(tmp_path / "state.safetensors"))[0]["__metadata__"]["stability_drop"] == "0.1"
    assert streamed["patterns"] == recorded["patterns"] and streamed["assignments"] == recorded["assignments"]
    with pytest.raises(RuntimeError, match="next_prompt"):
        calibrator.seen.add((0, 0))  # as if a prompt had begun
        calibrator.save(str(tmp_path / "again.safetensors"))


def test_compiled_model_runs_the_kernels(model, tmp_path):
    """Under torch.compile the processor is traced with the model: every call reaches the kernels
    (before, a compiled model silently ran dense), the output equals eager's, and the attention
    blocks compile once per step, with no graph break."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    library = compile_masks(tmp_path, list(range(STEPS)))
    sparse = CalibAttention(model, library)
    try:
        eager = denoise(model, prompt=4)
        sparse.calls, sparse.counter.calls = 0, -1
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(model)
        out = denoise(compiled, prompt=4)
    finally:
        sparse.remove()
    assert sparse.calls == STEPS * LAYERS and sparse.fallbacks == 0
    assert relative_error(out, eager) < 1e-5
    assert counters["stats"]["unique_graphs"] <= STEPS and not counters["graph_break"], dict(counters["graph_break"])
