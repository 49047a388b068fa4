"""`make bench-peers` on calibrated masks: calibrate writes `bitmap` patterns (and reuse), which
the benchmark's old reader could not read (KeyError 'rows')."""

import json

import torch

import calibc
from calibc import bench_peers
from conftest import compile_library, run_calibc


def test_bench_peers_runs_on_calibrated_bitmap_masks(tmp_path, capsys):
    run_calibc("synth", "-o", tmp_path / "rec", "--prompts", "2")
    masks_path = tmp_path / "masks.json"
    run_calibc("calibrate", tmp_path / "rec" / "prompt0.safetensors", "-o", masks_path)
    doc = json.loads(masks_path.read_text())
    assert any("bitmap" in p for p in doc["patterns"].values()), "calibrate wrote no bitmap pattern to test with"
    assert any("reuse" in p for p in doc["patterns"].values())
    kernels = compile_library(calibc.Masks.read(masks_path), tmp_path / "compiled")
    torch.set_num_threads(2)
    rows = bench_peers.main([str(masks_path), kernels.path, str(tmp_path / "rec" / "prompt1.safetensors"),
                             "--plans", "2", "--runs", "1"])
    printed = capsys.readouterr().out
    assert len(rows) == 2
    for name, *seconds in rows:
        assert name in doc["patterns"] and name in printed
        assert all(s > 0 for s in seconds)
