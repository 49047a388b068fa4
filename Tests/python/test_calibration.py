"""calibc.calibration (the torch block mass and calibration state) against the C kernel and the
Swift state, on the CPU: the same numbers the GPU path must give."""

import pytest
import torch

from calibc.calibration import (Selection, State, _pack_bits, _pack_codes, _unpack_bits, _unpack_codes, block_mass,
                                save)
from calibc.safetensors import read_header, read_tensor
from conftest import run_calibc


def synth(directory, *extra, heads=3, prompts=2, steps="20"):
    run_calibc("synth", "-o", directory, "--heads", heads, "--layers", "1", "--steps", steps, "--prompts", prompts,
               *extra)


def save_as(states, path, swift):
    """Saves {(step, layer): State} with the metadata calibc wrote into `swift`, less the
    selection, which the states carry."""
    meta = read_header(swift)[0]["__metadata__"]
    layout = {key: meta[key] for key in ("frames", "height", "width", "text_tokens", "text_position")}
    save(states, path, tokens=3072, head_dim=128, block=64, scale=float(meta["scale"]), model=meta["model"],
         layout=layout)


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


@pytest.mark.parametrize("tolerance", [0.02, 0.0])
def test_state_is_calibcs_file_and_merges_to_its_masks(tmp_path, tolerance):
    synth(tmp_path / "mass", "--mass-block", "64", heads=6)  # the fifth, a sink head, has rows to reuse
    inputs = [str(tmp_path / "mass" / f"prompt{p}.safetensors") for p in range(2)]
    swift = tmp_path / "swift.safetensors"
    run_calibc("calibrate", *inputs, "--block", "64", "--reuse-tolerance", str(tolerance), "--state-out", swift,
               "-o", tmp_path / "one.json")
    state = State(heads=6, blocks=48, reuse_tolerance=tolerance)
    for path in inputs:
        state.fold(read_tensor(path, "step20.layer0.mass"), 20)
    for kind, tensor in state.tensors(20, 0).items():
        assert torch.equal(tensor, read_tensor(swift, kind)), kind
    # Selection did real work: tiles kept by one prompt only, by both, and by none; and reuse
    # kept some pairs and ruled out others (none with reuse off).
    codes = state.codes
    assert (codes == 0).any() and (codes == 1).any() and (codes == 2).any()
    assert state.owner.shape == ((codes == 1).sum(),) and set(state.owner.tolist()) == {0, 1}
    reusable = _unpack_bits(state.reuse, 48 * 47 // 2)
    assert (reusable.any() and not reusable.all()) if tolerance else not state.reuse.any()
    ours = tmp_path / "torch.safetensors"
    save_as({(20, 0): state}, ours, swift)
    assert ours.read_bytes() == swift.read_bytes()
    run_calibc("calibrate", "--merge", ours, "-o", tmp_path / "merged.json")
    assert (tmp_path / "merged.json").read_text() == (tmp_path / "one.json").read_text()


@pytest.mark.parametrize("stability_drop", [0.05, 0.2])
def test_state_retires_inputs_as_calibc_does(tmp_path, stability_drop):
    """Four prompts: after each fold, inputs whose leave-one-out drop fell to the threshold retire
    (their single-owner tiles become code 2), in torch as in calibc, to the same bytes."""
    synth(tmp_path / "mass", "--mass-block", "64", heads=6, prompts=4)
    inputs = [str(tmp_path / "mass" / f"prompt{p}.safetensors") for p in range(4)]
    swift = tmp_path / "swift.safetensors"
    run_calibc("calibrate", *inputs, "--block", "64", "--stability-drop", str(stability_drop), "--state-out", swift)
    state = State(heads=6, blocks=48, stability_drop=stability_drop)
    kept = State(heads=6, blocks=48, stability_drop=0.0)  # no input with single-owner tiles retires
    for path in inputs:
        mass = read_tensor(path, "step20.layer0.mass")
        state.fold(mass, 20)
        kept.fold(mass, 20)
    for kind, tensor in state.tensors(20, 0).items():
        assert torch.equal(tensor, read_tensor(swift, kind)), kind
    # Retirement did work: single-owner tiles left, bounds recorded, the union unchanged.
    assert state.owner.numel() < kept.owner.numel() and (state.retired_drop > 0).any()
    assert (state.retired_drop <= stability_drop).all() and not kept.retired_drop.any()
    assert torch.equal(state.codes != 0, kept.codes != 0)
    ours = tmp_path / "torch.safetensors"
    save_as({(20, 0): state}, ours, swift)
    assert ours.read_bytes() == swift.read_bytes()
    assert read_header(ours)[0]["__metadata__"]["stability_drop"] == repr(stability_drop)


def test_a_schedule_folds_each_step_at_its_threshold_as_calibc_does(tmp_path):
    """ε(t) of `--mass-schedule exp:A,C,k,T` at steps 0, 20 and 40 (0.99, 0.853, 0.8411 with
    T = 49): the state of every step and the selection text, to calibc's bytes."""
    synth(tmp_path / "mass", "--mass-block", "64", heads=6, steps="0,20,40")
    inputs = [str(tmp_path / "mass" / f"prompt{p}.safetensors") for p in range(2)]
    swift = tmp_path / "swift.safetensors"
    run_calibc("calibrate", *inputs, "--block", "64", "--mass-schedule", "exp:0.84,0.99,6,49", "--state-out", swift)
    selection = Selection(schedule=(0.84, 0.99, 6, 49))
    states = {(step, 0): State(heads=6, blocks=48, selection=selection) for step in (0, 20, 40)}
    for path in inputs:
        for (step, _), state in states.items():
            state.fold(read_tensor(path, f"step{step}.layer0.mass"), step)
    # The thresholds differ enough to select differently: fewer tiles as ε falls.
    kept = [int((state.codes != 0).sum()) for state in states.values()]
    assert kept[0] > kept[1] > kept[2], kept
    ours = tmp_path / "torch.safetensors"
    save_as(states, ours, swift)
    assert read_header(ours)[0]["__metadata__"]["selection"] == "mass-schedule exp:0.84,0.99,6.0,49"
    assert ours.read_bytes() == swift.read_bytes()


def test_sampled_rows_are_part_of_the_selection_as_calibc_records_it(tmp_path):
    synth(tmp_path / "qk")
    swift = tmp_path / "swift.safetensors"
    run_calibc("calibrate", tmp_path / "qk" / "prompt0.safetensors", "--block", "64", "--mass", "0.9", "--sample-rows",
               "8", "--state-out", swift)
    assert str(Selection(mass=0.9, sample_rows=8)) == read_header(swift)[0]["__metadata__"]["selection"]


def test_packing_round_trips():
    g = torch.Generator().manual_seed(3)
    for count in (1, 4, 5, 6, 23 * 23, 48 * 48):  # B² = 529 is not a multiple of 5
        codes = torch.randint(0, 3, (2, count), generator=g, dtype=torch.uint8)
        packed = _pack_codes(codes)
        assert packed.shape == (2, (count + 4) // 5) and packed.max() <= 242
        assert torch.equal(_unpack_codes(packed, count), codes)
    assert _pack_codes(torch.tensor([[1, 2, 0, 1, 2, 2]], dtype=torch.uint8)).tolist() == [[196, 2]]
    for count in (1, 7, 8, 9, 23 * 22 // 2, 48 * 47 // 2):  # 253 pairs are not a multiple of 8
        bits = torch.randint(0, 2, (2, count), generator=g).bool()
        packed = _pack_bits(bits)
        assert packed.shape == (2, (count + 7) // 8)
        assert torch.equal(_unpack_bits(packed, count), bits)
    assert _pack_bits(torch.tensor([[1, 0, 0, 1, 0, 0, 0, 0, 1]]).bool()).tolist() == [[9, 1]]


def test_state_without_single_owners_round_trips(tmp_path):
    """Every selected tile selected twice: zero owners, a zero-size tensor both ways."""
    mass = torch.softmax(torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(1)), dim=-1)
    state = State(heads=2, blocks=4, selection=Selection(mass=0.9))
    state.fold(mass, 0)
    state.fold(mass, 0)
    assert state.owner.numel() == 0 and (state.codes == 2).any()
    path = tmp_path / "s.safetensors"
    save({(0, 0): state}, path, tokens=64, head_dim=8, block=16)
    assert read_tensor(path, "step0.layer0.owner").shape == (0,)
    assert read_tensor(path, "step0.layer0.owner").dtype == torch.uint16
    run_calibc("calibrate", "--merge", path, "--state-out", tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()
