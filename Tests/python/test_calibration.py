"""calibc.calibration (the torch block mass and calibration state) against the C kernel and the
Swift state, on the CPU: the same numbers the GPU path must give."""

import os

import torch

from calibc.calibration import State, block_mass, save
from calibc.safetensors import read_header, read_tensor
from conftest import run_calibc


def synth(directory, *extra):
    run_calibc("synth", "-o", directory, "--heads", "3", "--layers", "1", "--steps", "20", "--prompts", "2", *extra)


def test_block_mass_matches_float64_with_partial_blocks_and_sampled_rows():
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(2, 200, 16, generator=g), torch.randn(2, 200, 16, generator=g)
    p = torch.softmax(torch.einsum("hid,hjd->hij", q.double(), k.double()) * 0.3, dim=-1)
    blocks = torch.arange(200) // 48
    # Every 7th row from the 3rd; every 48th from the 24th, where the last block (8 rows) has
    # none and is measured on its first.
    for step, per_block in [(1, [48, 48, 48, 48, 8]), (7, [7, 7, 7, 7, 1]), (48, [1, 1, 1, 1, 1])]:
        mass = block_mass(q, k, block=48, scale=0.3, rows=5, step=step)  # 5 blocks, the last of 8 rows
        expected = torch.zeros(2, 5, 5, dtype=torch.float64)
        for qb in range(5):
            rows = [r for r in range(qb * 48, min(200, qb * 48 + 48)) if (r - qb * 48) % step == step // 2] or [qb * 48]
            assert len(rows) == per_block[qb]
            for kb in range(5):
                expected[:, qb, kb] = p[:, rows][:, :, blocks == kb].sum(-1).mean(-1)
        assert torch.allclose(mass.double(), expected, atol=2e-6), step
        assert torch.allclose(mass.sum(-1), torch.ones(2, 5), atol=1e-5)


def test_block_mass_matches_the_c_kernel(tmp_path):
    synth(tmp_path / "qk")
    synth(tmp_path / "mass", "--mass-block", "64")  # the same bf16 q and k, reduced by calib_block_mass
    for p in range(2):
        qk, reduced = tmp_path / "qk" / f"prompt{p}.safetensors", tmp_path / "mass" / f"prompt{p}.safetensors"
        q, k = read_tensor(qk, "step20.layer0.q").float(), read_tensor(qk, "step20.layer0.k").float()
        expected = read_tensor(reduced, "step20.layer0.mass")
        got = block_mass(q, k, block=64)
        assert got.shape == expected.shape == (3, 48, 48)
        assert (got - expected).abs().max() < 2e-6


def test_state_matches_calibc_and_merges_to_its_masks(tmp_path):
    synth(tmp_path / "mass", "--mass-block", "64")
    inputs = [str(tmp_path / "mass" / f"prompt{p}.safetensors") for p in range(2)]
    run_calibc("calibrate", *inputs, "--block", "64", "--state-out", tmp_path / "swift.safetensors", "-o", tmp_path / "one.json")
    state = State(heads=3, blocks=48)
    for path in inputs:
        state.fold(read_tensor(path, "step20.layer0.mass"), tau=0.95)
    swift = tmp_path / "swift.safetensors"
    assert torch.equal(state.owner, read_tensor(swift, "step20.layer0.owner"))
    assert torch.equal(state.owner_mass, read_tensor(swift, "step20.layer0.owner_mass"))
    assert (state.distance - read_tensor(swift, "step20.layer0.distance")).abs().max() < 1e-6
    # Selection did real work: tiles kept by one prompt only, by both, and by none.
    assert (state.owner >= 0).any() and (state.owner == -2).any() and (state.owner == -1).any()
    header, _ = read_header(swift)
    meta = header["__metadata__"]
    layout = {key: meta[key] for key in ("frames", "height", "width", "text_tokens", "text_position")}
    save({(20, 0): state}, tmp_path / "torch.safetensors", tokens=3072, head_dim=128, block=64,
         selection="mass 0.95", scale=float(meta["scale"]), model=meta["model"], layout=layout)
    run_calibc("calibrate", "--merge", tmp_path / "torch.safetensors", "-o", tmp_path / "merged.json")
    assert (tmp_path / "merged.json").read_text() == (tmp_path / "one.json").read_text()
