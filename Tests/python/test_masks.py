"""calibc.Masks: both encodings, reuse, selectors, the writer (checked by calibc itself), errors
(test_masks_differential.py holds every verdict and message to calibc's), memory in proportion
to the file."""

import base64
import json
import tracemalloc

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
    copy = tmp_path / "copy.json"
    calibc.Masks.read(original).write(copy)
    # calibc is the judge: its canonical IR (every plan and which (step, layer, head) runs it) of both.
    assert ir_without_hash(copy) == ir_without_hash(original)


def test_writer_picks_the_shorter_encoding():
    rng = np.random.default_rng(2)
    scattered = calibc.Pattern(rng.random((64, 64)) < 0.5)
    banded = calibc.Pattern(np.abs(np.subtract.outer(np.arange(64), np.arange(64))) < 3)
    assert "bitmap" in scattered.to_json() and "rows" in banded.to_json()


def test_selectors_name_values_and_ranges():
    doc = {"format": 1, "model": "m", "tokens": 64, "head_dim": 8, "block": 16, "layers": 3, "heads": 4, "timesteps": [0, 5, 9, 20],
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


@pytest.mark.parametrize("where, message", [
    ((6, 0, 0), r"step 6 has no plans \(steps: \[0, 5, 9, 20\]\)"),
    ((0, 3, 0), r"layer 3 is not among the 3 layers \(expected 0...2\)"),
    ((0, -1, 0), r"layer -1 is not among the 3 layers"),
    ((0, 0, 4), r"head 4 is not among the 4 heads"),
    ((0, 0, True), r"head True is not among"),
    ((0.0, 0, 0), r"step 0.0 has no plans"),
])
def test_pattern_lookups_refuse_what_the_masks_do_not_have(where, message):
    """No wrap-around: layer -1 is not the last layer."""
    doc = {"format": 1, "model": "m", "tokens": 16, "head_dim": 8, "block": 16, "layers": 3, "heads": 4,
           "timesteps": [0, 5, 9, 20], "patterns": {}, "assignments": [{"steps": "*", "layers": "*", "heads": "*",
                                                                          "pattern": "dense"}]}
    masks = calibc.Masks.from_json(doc)
    with pytest.raises(calibc.MasksError, match=message) as e:
        masks.pattern(*where)
    assert isinstance(e.value, KeyError)
    with pytest.raises(calibc.MasksError, match="no pattern 'nope'"):
        masks.first_use("nope")


@pytest.mark.parametrize("change, message", [
    (lambda d: d["patterns"]["p"]["rows"].pop(), "$.patterns.p.rows: expected 4 rows (one per query block), found 3"),
    (lambda d: d["patterns"]["p"]["rows"].__setitem__(1, [[2, 3], [1, 2]]),
     "$.patterns.p.rows[1][1]: range [1, 2) overlaps or precedes [2, 3); ranges must be sorted and disjoint"),
    (lambda d: d["patterns"]["p"].update(reuse=[[0, 1]]),
     "$.patterns.p.reuse[0]: query block 0 reuses query block 1, so its kept key blocks must be empty"),
    (lambda d: d["patterns"].update(q={"bitmap": base64.b64encode(bytes([1, 2, 4, 16])).decode()}),
     "$.patterns.q.bitmap: row 3 sets padding bit 4 beyond the 4 key blocks"),
    (lambda d: d["assignments"].append({"steps": "*", "layers": 0, "heads": 0, "pattern": "p"}),
     '$.assignments[1]: timestep 0 layer 0 head 0 is already assigned pattern "p"'),
    (lambda d: d["assignments"][0].update(heads=0), "$.assignments: timestep 0 layer 0 head 1 has no pattern assigned"),
    (lambda d: d["assignments"][0].update(pattern="nope"), '$.assignments[0].pattern: unknown pattern "nope"'),
    (lambda d: d["assignments"][0].update(layers="0-x"),
     '$.assignments[0].layers: expected "*", an integer, or a list like "0-3,8"; found "0-x"'),
    (lambda d: d.update(extra=1), '$.extra: unknown field "extra" (expected one of: format, model, tokens, head_dim, '
                                  'block, layers, heads, timesteps, model_timesteps, layout, patterns, assignments)'),
    (lambda d: d.pop("model"), '$: missing required field "model"'),
    (lambda d: d.update(tokens=1 << 40), "$.tokens: expected an integer in 1...268435456, found 1099511627776"),
    (lambda d: d.update(tokens=1 << 28, block=1), "$.block: tokens / block gives 268435456 blocks per side, more than "
                                                  "the 16384 supported"),
])
def test_errors_are_calibcs_messages(tmp_path, change, message):
    doc = {"format": 1, "model": "m", "tokens": 60, "head_dim": 8, "block": 16, "layers": 1, "heads": 2,
           "timesteps": [0], "patterns": {"p": {"rows": [[[0, 1]], [[0, 2]], [[2, 3]], [[0, 4]]]}},
           "assignments": [{"steps": "*", "layers": 0, "heads": "*", "pattern": "p"}]}
    calibc.Masks.from_json(doc)
    change(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(calibc.MasksError) as e:
        calibc.Masks.read(path)
    assert str(e.value) == f"{path}: {message}"
    assert isinstance(e.value, ValueError)
    with pytest.raises(calibc.MasksError) as e:
        calibc.Masks.from_json(doc)
    assert str(e.value) == message


@pytest.mark.parametrize("data, message", [
    (b"[" * 100000 + b"]" * 100000, "line 1, column 65: invalid JSON: nesting deeper than 64 levels"),
    (b'{"model": "\\ud800"}', "line 1, column 18: invalid JSON: unpaired surrogate in string"),
    (b'{"model": "\xff"}', "line 1, column 14: invalid JSON: string is not valid UTF-8"),
    (b'{"a": 1, "a": 2}', 'line 1, column 10: invalid JSON: duplicate key "a"'),
    (b'{"format": NaN}', "line 1, column 12: invalid JSON: expected a value"),
    (b'{"format": 1' + b"0" * 100000 + b"}", "$.format: expected an integer, found a number"),
    (b"", "line 1, column 1: invalid JSON: unexpected end of input, expected a value"),
])
def test_bad_files_raise_masks_errors_only(tmp_path, data, message):
    """Not RecursionError, UnicodeDecodeError, MemoryError or a json module message."""
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    with pytest.raises(calibc.MasksError) as e:
        calibc.Masks.read(path)
    assert str(e.value) == f"{path}: {message}"
    with pytest.raises(calibc.MasksError, match=r": \$: cannot read the file$"):
        calibc.Masks.read(tmp_path / "missing.json")


def test_reading_allocates_in_proportion_to_the_file(tmp_path):
    """16,384 blocks a side: each pattern's (B, B) kept would be 268 MB; the file is 44 MB (a bitmap of full rows) and the
    reader keeps ranges (and bitmap bytes) until `kept` is asked for."""
    blocks = 16384
    doc = {"format": 1, "model": "m", "tokens": blocks, "head_dim": 8, "block": 1, "layers": 1, "heads": 3,
           "timesteps": [0], "patterns": {"diag": {"rows": [[[q, q + 1]] for q in range(blocks)]},
                                          "bits": {"bitmap": base64.b64encode(bytes([255] * (blocks // 8) * blocks)
                                                                              ).decode()}},
           "assignments": [{"steps": "*", "layers": "*", "heads": 0, "pattern": "diag"},
                           {"steps": "*", "layers": "*", "heads": 1, "pattern": "dense"},
                           {"steps": "*", "layers": "*", "heads": 2, "pattern": "bits"}]}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(doc, separators=(",", ":")))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        masks = calibc.Masks.read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * size + (16 << 20), (peak, size)
    assert masks.pattern(0, 0, 0).rows()[5] == [[5, 6]]
    assert masks.pattern(0, 0, 2).bitmap() == doc["patterns"]["bits"]["bitmap"]


def test_the_table_limits_with_lowered_limits(tmp_path):
    """The limits calibc's tests lower (TableLimits), in the messages calibc gives at the real ones."""
    doc = {"format": 1, "model": "m", "tokens": 4, "head_dim": 8, "block": 1, "layers": 1, "heads": 1,
           "timesteps": [0], "patterns": {f"p{i}": {"rows": [[[0, 2], [3, 4]], [[0, 1]], [[1, 4]], [[0, 4]]]}
                                          for i in range(3)},
           "assignments": [{"steps": "*", "layers": "*", "heads": "*", "pattern": "p0"}]}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    calibc.Masks.read(path)
    for limits, message in [
            ({"patterns": 2}, "$.patterns.p2: more than 2 patterns"),
            ({"pattern_rows": 11}, "$.patterns.p2: 3 patterns × 4 query blocks is more than the 11 pattern rows supported"),
            ({"ranges": 14}, "$.patterns.p2.rows[3]: the patterns hold more than 14 key-block ranges in all"),
            ({"distinct_ranges": 4}, "$.patterns.p0.rows[3]: the distinct rows of all patterns hold more than 4 "
                                     "key-block ranges in all")]:
        with pytest.raises(calibc.MasksError) as e:
            calibc.Masks.read(path, _limits=limits)
        assert str(e.value) == f"{path}: {message}"


def test_from_json_takes_numpy_integers_and_refuses_what_json_cannot_hold():
    doc = {"format": np.int64(1), "model": "m", "tokens": np.int32(16), "head_dim": 8, "block": 16, "layers": 1,
           "heads": 1, "timesteps": (np.uint8(0),), "patterns": {"p": {"rows": [[(np.int16(0), 1)]]}},
           "assignments": [{"steps": "*", "layers": "*", "heads": "*", "pattern": "p"}]}
    assert calibc.Masks.from_json(doc).pattern(0, 0, 0).kept.tolist() == [[True]]
    doc["model"] = object()
    with pytest.raises(calibc.MasksError, match=r"^\$\.model: expected a JSON value, found object$"):
        calibc.Masks.from_json(doc)
    with pytest.raises(calibc.MasksError, match=r"^\$: expected an object, found an array$"):
        calibc.Masks.from_json([])
