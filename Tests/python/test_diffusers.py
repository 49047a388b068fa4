"""The diffusers bridge (examples/diffusers) against PyTorch's own attention, on the tiny
random Wan of end_to_end.py. Needs torch and diffusers (`make test-python` makes the venv)
and the release calibc binary."""

import json
import os
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "examples", "diffusers"))

from calibkernels import CalibError, CalibKernels  # noqa: E402
from end_to_end import CALIBC, HEADS, HEAD_DIM, LAYERS, STEPS, denoise, tiny_wan  # noqa: E402
from processor import CalibAttention  # noqa: E402
from record import Recorder, block_mass  # noqa: E402

TOKENS = 2048


def compile_masks(tmp_path, timesteps, tokens=TOKENS, pattern="dense"):
    masks = {"format": 1, "model": "tiny-wan", "tokens": tokens, "head_dim": HEAD_DIM, "block": 64, "layers": LAYERS,
             "heads": HEADS, "timesteps": timesteps, "patterns": {},
             "assignments": [{"steps": "*", "layers": "*", "heads": "*", "pattern": pattern}]}
    path = tmp_path / "masks.json"
    path.write_text(json.dumps(masks))
    subprocess.run([CALIBC, "compile", str(path), "-o", str(tmp_path / "kernels"), "--shared"], check=True,
                   stdout=subprocess.DEVNULL)
    return str(tmp_path / "kernels" / "libcalibkernels.so")


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
        assert torch.equal(denoise(model, prompt=2), reference)
    finally:
        sparse.remove()
    assert sparse.calls == 0 and sparse.fallbacks == STEPS * LAYERS
    # Plans for step 0 only: the later steps fall back.
    step0 = tmp_path / "step0"
    step0.mkdir()
    sparse = CalibAttention(model, compile_masks(step0, [0]))
    try:
        denoise(model, prompt=2)
    finally:
        sparse.remove()
    assert sparse.calls == LAYERS and sparse.fallbacks == (STEPS - 1) * LAYERS


def test_binding_reports_abi_errors(tmp_path):
    kernels = CalibKernels(compile_masks(tmp_path, [0]))
    q = torch.randn(TOKENS, HEAD_DIM)
    with pytest.raises(CalibError, match="no plan"):
        kernels.attention(3, 0, 0, q, q, q)
    with pytest.raises(CalibError, match="shape mismatch"):
        kernels.attention(0, 0, 0, q[:-1], q[:-1], q[:-1])
    dense = kernels.dense_attention(q, q, q)
    reference = torch.nn.functional.scaled_dot_product_attention(q[None], q[None], q[None])[0]
    assert ((dense - reference).norm() / reference.norm()).item() < 1e-5


def test_block_mass_of_the_recorder_is_the_softmax_mass():
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 100, 16, generator=g), torch.randn(2, 100, 16, generator=g)
    mass = block_mass(q, k, block=32, chunk=17)
    p = torch.softmax(q.double() @ k.double().transpose(1, 2) / 4.0, dim=-1)
    blocks = [slice(0, 32), slice(32, 64), slice(64, 96), slice(96, 100)]
    expected = torch.stack([torch.stack([p[:, qb][:, :, kb].sum(-1).mean(-1) for kb in blocks], -1) for qb in blocks], -2)
    assert torch.allclose(mass.double(), expected, atol=1e-6)
    assert torch.allclose(mass.sum(-1), torch.ones(2, 4), atol=1e-5)
