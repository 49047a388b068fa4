"""examples/bench_peers.py (`make bench-peers`) on masks as calibrate writes them: `bitmap`
patterns with reuse (which the benchmark's first reader could not read: KeyError 'rows'), on a
small calibration (one layer of two heads) so the run takes seconds."""

import json
import os

import torch

import bench_peers
from conftest import run_calibc


def test_bench_peers_runs_on_calibrated_bitmap_masks(tmp_path, capsys):
    run_calibc("synth", "-o", tmp_path / "rec", "--prompts", "2", "--layers", "1", "--heads", "2", "--steps", "0")
    masks_path = tmp_path / "masks.json"
    run_calibc("calibrate", tmp_path / "rec" / "prompt0.safetensors", "-o", masks_path)
    patterns = json.loads(masks_path.read_text())["patterns"]
    assert any("bitmap" in p and "reuse" in p for p in patterns.values()), \
        "calibrate wrote no bitmap pattern with reuse to test with"
    run_calibc("compile", masks_path, "-o", tmp_path / "kernels", "--shared")
    library = os.path.join(tmp_path, "kernels", "libcalibkernels.so")
    torch.set_num_threads(2)
    rows = bench_peers.main([str(masks_path), library, str(tmp_path / "rec" / "prompt1.safetensors"),
                             "--plans", "2", "--runs", "1"])
    printed = capsys.readouterr().out
    # Both plans of the file (one a bitmap with reuse), each with four positive times.
    assert sorted(name for name, *_ in rows) == sorted(patterns)
    for name, *seconds in rows:
        assert len(seconds) == 4 and all(s > 0 for s in seconds)
        assert f"\n{name} " in printed
    assert "dense, a layer of 2 heads in one call" in printed
