"""calibc.Masks: both encodings, reuse, selectors, the writer (checked by calibc itself), errors."""

import base64
import json

import numpy as np
import pytest

import calibc
from conftest import ROOT, random_masks, run_calibc


def ir_without_hash(path):
    """calibc's canonical IR of a masks file, less the first line (it carries the file's hash)."""
    return run_calibc("ir", path).split("\n", 1)[1]


def test_rows_and_bitmap_encodings_read_the_same(tmp_path):
    rng = np.random.default_rng(11)
    blocks = 13  # not a multiple of 8: padding bits in every bitmap row
    kept = rng.random((blocks, blocks)) < 0.4
    kept[:, 0] = True
    kept[5] = False
    rows = [[[int(a), int(b)] for a, b in zip(*[iter(np.flatnonzero(np.diff(np.r_[0, r.astype(int), 0])))] * 2)]
            for r in kept]
    bitmap = base64.b64encode(np.packbits(kept, axis=1, bitorder="little").tobytes()).decode()
    doc = {"format": 1, "model": "m", "tokens": blocks * 16 - 3, "head_dim": 8, "block": 16, "layers": 1, "heads": 2,
           "timesteps": [4], "patterns": {"r": {"rows": rows, "reuse": [[5, 2]]},
                                          "b": {"bitmap": bitmap, "reuse": [[5, 2]]}},
           "assignments": [{"steps": "*", "layers": 0, "heads": 0, "pattern": "r"},
                           {"steps": 4, "layers": "0", "heads": "1", "pattern": "b"}]}
    masks = calibc.Masks.from_json(doc)
    r, b = masks.pattern(4, 0, 0), masks.pattern(4, 0, 1)
    assert np.array_equal(r.kept, kept) and np.array_equal(b.kept, kept)
    assert r.reuse == b.reuse == {5: 2}
    assert np.array_equal(r.expanded()[5], kept[2]) and not r.kept[5].any()
    # What calibc reads from the same file agrees: both patterns dedupe to one plan.
    path = tmp_path / "two.json"
    path.write_text(json.dumps(doc))
    assert len([line for line in ir_without_hash(path).splitlines() if line.startswith("plan ")]) == 1


@pytest.mark.parametrize("source", ["examples/masks.json", "random"])
def test_writer_output_is_the_same_program_for_calibc(tmp_path, source):
    if source == "random":
        original = tmp_path / "random.json"
        random_masks(5, tokens=515, block=64, layers=3, heads=4, timesteps=(0, 10, 20, 30)).write(original)
    else:
        original = f"{ROOT}/{source}"
    masks = calibc.Masks.read(original)
    copy = tmp_path / "copy.json"
    masks.write(copy)
    again = calibc.Masks.read(copy)
    assert np.array_equal(again.plan >= 0, masks.plan >= 0)
    for s in masks.timesteps:
        for layer in range(masks.layers):
            for head in range(masks.heads):
                assert again.pattern(s, layer, head) == masks.pattern(s, layer, head)
    assert ir_without_hash(copy) == ir_without_hash(original)


def test_writer_picks_the_shorter_encoding():
    rng = np.random.default_rng(2)
    scattered = calibc.Pattern(rng.random((64, 64)) < 0.5)
    banded = calibc.Pattern(np.abs(np.subtract.outer(np.arange(64), np.arange(64))) < 3)
    assert "bitmap" in scattered.to_json() and "rows" in banded.to_json()


def test_selectors_name_values_and_ranges():
    doc = {"format": 1, "tokens": 64, "head_dim": 8, "block": 16, "layers": 3, "heads": 4, "timesteps": [0, 5, 9, 20],
           "patterns": {"diag": {"rows": [[[0, 1]], [[1, 2]], [[2, 3]], [[3, 4]]]}},
           "assignments": [{"steps": "5-20", "layers": "0-1,2", "heads": "0,2-3", "pattern": "diag"},
                           {"steps": "0", "layers": "*", "heads": "0,2-3", "pattern": "dense"},
                           {"steps": "*", "layers": "*", "heads": 1, "pattern": "dense"}]}
    masks = calibc.Masks.from_json(doc)
    assert masks.pattern_name(9, 2, 3) == "diag" and masks.pattern_name(0, 1, 2) == "dense"
    assert masks.pattern_name(20, 0, 1) == "dense" and masks.pattern(0, 0, 0).kept.all()
    assert masks.first_use("diag") == (5, 0, 0)
    with pytest.raises(KeyError):
        masks.pattern(6, 0, 0)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["patterns"]["p"]["rows"].pop(), r"\$\.patterns\.p\.rows: expected 4 rows"),
    (lambda d: d["patterns"]["p"]["rows"].__setitem__(1, [[2, 3], [1, 2]]), r"\$\.patterns\.p\.rows\[1\]\[1\]"),
    (lambda d: d["patterns"]["p"].update(reuse=[[0, 1]]), r"\$\.patterns\.p\.reuse\[0\]"),
    (lambda d: d["patterns"].update(q={"bitmap": base64.b64encode(bytes([1, 2, 4, 16])).decode()}),
     r"\$\.patterns\.q\.bitmap: padding bits"),
    (lambda d: d["assignments"].append({"steps": "*", "layers": 0, "heads": 0, "pattern": "p"}), "already has"),
    (lambda d: d["assignments"][0].update(heads=0), "head 1 has no pattern"),
    (lambda d: d["assignments"][0].update(pattern="nope"), 'unknown pattern "nope"'),
    (lambda d: d["assignments"][0].update(layers="0-x"), r"\$\.assignments\[0\]\.layers"),
    (lambda d: d.update(extra=1), r"\$\.extra: unknown field"),
])
def test_errors_name_the_json_path(tmp_path, change, message):
    doc = {"format": 1, "tokens": 60, "head_dim": 8, "block": 16, "layers": 1, "heads": 2, "timesteps": [0],
           "patterns": {"p": {"rows": [[[0, 1]], [[0, 2]], [[2, 3]], [[0, 4]]]}},
           "assignments": [{"steps": "*", "layers": 0, "heads": "*", "pattern": "p"}]}
    calibc.Masks.from_json(doc)
    change(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(calibc.MasksError, match=message) as e:
        calibc.Masks.read(path)
    assert str(e.value).startswith(str(path))
