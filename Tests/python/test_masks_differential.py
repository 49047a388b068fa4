"""calibc.Masks.read against the compiler's frontend: every file of a corpus goes through both
`calibc stats <file>` and Masks.read, which must give the same verdict and, for a refused file, the
same message, word for word (docs/errors.md). The corpus: Fuzz/corpus/masks, the examples, and
mutations made here of a small valid file: each rule of docs/masks-format.md broken once,
truncations, bad UTF-8, deep nesting, huge numbers, every JSON syntax error, and files at the
format's limits."""

import base64
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import calibc
from conftest import CALIBC, ROOT

PREFIX = "calibc: error: "


def base():
    """A valid file touching every feature: a partial last block (3 blocks of 64 for 130 tokens),
    rows and bitmap patterns, reuse, a layout, selectors of every form, the built-in dense."""
    return {"format": 1, "model": "base", "tokens": 130, "head_dim": 16, "block": 64, "layers": 2, "heads": 2,
            "timesteps": [0, 7, 20],
            "layout": {"frames": 2, "height": 8, "width": 8, "text_tokens": 2, "text_position": "last"},
            "patterns": {"diag": {"rows": [[[0, 1]], [], [[1, 3]]], "reuse": [[1, 0]]},
                         "bits": {"bitmap": "AQMH"},
                         "band.2-x_y": {"rows": [[[0, 2]], [[0, 1], [1, 3]], [[2, 3]]]}},
            "assignments": [{"steps": "*", "layers": "*", "heads": 0, "pattern": "diag"},
                            {"steps": "0", "layers": "0", "heads": "1", "pattern": "bits"},
                            {"steps": "0", "layers": 1, "heads": "1", "pattern": "band.2-x_y"},
                            {"steps": "7-20", "layers": "0-1", "heads": "1", "pattern": "dense"}]}


def text(doc):
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def mutated(change):
    doc = base()
    change(doc)
    return text(doc)


def setter(path, value):
    """A change that sets doc[path[0]][path[1]]… to value (or deletes it when value is DELETE)."""
    def change(doc):
        for key in path[:-1]:
            doc = doc[key]
        if value is DELETE:
            del doc[path[-1]]
        else:
            doc[path[-1]] = value
    return change


DELETE = object()
P = ("patterns",)
A = ("assignments",)


def semantic_cases():
    """(name, bytes): each rule of the format broken once, and the edges that are still valid."""
    cases = []

    def add(name, change):
        cases.append((name, mutated(change)))

    def put(name, path, value):
        add(name, setter(path, value))

    put("valid", ("model",), "base")
    # The top level.
    put("top-unknown", ("leyers",), 1)
    for key in ["format", "model", "tokens", "head_dim", "block", "layers", "heads", "timesteps", "patterns",
                "assignments"]:
        put(f"missing-{key}", (key,), DELETE)
    put("no-layout", ("layout",), DELETE)
    for value in [2, 0, -1, 1.0, "1", None, True, [1], 10 ** 30]:
        put(f"format-{value!r}", ("format",), value)
    for value in [5, None, ["m"], "x" * 4095, "x" * 4096, "é" * 2047 + "x", "é" * 2048, "😀" * 1024, "\u0000\n\"\\",
                  "a\u2028b\u00e9\U0001F600"]:
        put(f"model-{str(value)[:8]!r}-{len(str(value))}", ("model",), value)
    for key, values in {"tokens": [0, 1 << 28, (1 << 28) + 1, 10 ** 12, 10 ** 19, 1.5, "130", -130, 2 ** 63, 2 ** 64],
                        "head_dim": [0, 1, 512, 513], "block": [0, 1025, 1024, 1], "layers": [0, 4096, 4097],
                        "heads": [0, 4097, -1]}.items():
        for value in values:
            def change(doc, key=key, value=value):
                doc[key] = value
                if key in ("tokens", "block"):
                    del doc["layout"]
            add(f"{key}-{value!r}", change)
    put("blocks-16385", ("tokens",), 16385)
    add("blocks-16385-of-1", lambda d: (d.update(tokens=16385, block=1), d.pop("layout")))
    add("blocks-too-many-with-block-2", lambda d: (d.update(tokens=32770, block=2), d.pop("layout")))
    for value in [[], [7, 0], [0, 0], [-1], [0, 7, (1 << 31) - 1], [0, 7, 1 << 31], "0", ["0"], [0, 7, 20.0], None,
                  {"0": 1}]:
        put(f"timesteps-{value!r}", ("timesteps",), value)
    add("dispatch-over", lambda d: d.update(timesteps=list(range(3)), layers=4096, heads=1000))
    add("dispatch-at", lambda d: d.update(timesteps=[0, 7], layers=2500, heads=2000))
    # The layout.
    for name, value in [("sum", {"frames": 2, "height": 8, "width": 8}), ("position", {"frames": 2, "height": 8,
                        "width": 8, "text_tokens": 2, "text_position": "middle"}),
                        ("position-int", {"frames": 2, "height": 8, "width": 8, "text_tokens": 2, "text_position": 1}),
                        ("first", {"frames": 2, "height": 8, "width": 8, "text_tokens": 2, "text_position": "first"}),
                        ("frames-0", {"frames": 0, "height": 8, "width": 8, "text_tokens": 2}),
                        ("side-100001", {"frames": 100001, "height": 8, "width": 8}),
                        ("text-negative", {"frames": 2, "height": 8, "width": 8, "text_tokens": -2}),
                        ("text-big", {"frames": 2, "height": 8, "width": 8, "text_tokens": 1 << 29}),
                        ("unknown", {"frames": 2, "height": 8, "width": 8, "text_tokens": 2, "fps": 16}),
                        ("missing-width", {"frames": 2, "height": 8, "text_tokens": 2}),
                        ("not-object", [2, 8, 8]), ("huge-product", {"frames": 100000, "height": 100000,
                                                                     "width": 100000, "text_tokens": 2})]:
        put(f"layout-{name}", ("layout",), value)
    # Patterns.
    put("patterns-array", P, [])
    put("patterns-empty", P, {})
    put("pattern-dense", P + ("dense",), {"rows": [[[0, 3]]] * 3})
    for bad in ["a b", "", "é", "a/b", "a\u0345", "Ⅻ", "٣", "a\"b", "x\u0000"]:
        add(f"pattern-name-{bad!r}", lambda d, bad=bad: d["patterns"].update({bad: {"rows": [[[0, 3]]] * 3}}))
    put("pattern-not-object", P + ("diag",), [[0, 1]])
    put("pattern-neither", P + ("diag",), {"reuse": [[1, 0]]})
    put("pattern-both", P + ("bits",), {"bitmap": "AQMH", "rows": [[[0, 1]]] * 3})
    put("pattern-unknown", P + ("bits",), {"bitmap": "AQMH", "bits": 1})
    for name, rows in [("not-array", "x"), ("two", [[[0, 1]], [[0, 1]]]), ("four", [[[0, 1]]] * 4),
                       ("row-int", [[[0, 1]], [[0, 1]], 3]), ("range-int", [[[0, 1]], [[0, 1]], [3]]),
                       ("range-three", [[[0, 1]], [[0, 1]], [[0, 1, 2]]]), ("range-one", [[[0, 1]], [[0, 1]], [[0]]]),
                       ("range-empty-list", [[[0, 1]], [[0, 1]], [[]]]), ("empty", [[[0, 1]], [[2, 2]], [[0, 1]]]),
                       ("backwards", [[[0, 1]], [[2, 1]], [[0, 1]]]), ("overlap", [[[0, 1]], [[0, 2], [1, 3]], [[0, 1]]]),
                       ("precedes", [[[0, 1]], [[2, 3], [0, 1]], [[0, 1]]]), ("touching", [[[0, 1], [1, 2], [2, 3]]] * 3),
                       ("start-3", [[[0, 1]], [[3, 4]], [[0, 1]]]), ("end-4", [[[0, 1]], [[0, 4]], [[0, 1]]]),
                       ("negative", [[[0, 1]], [[-1, 1]], [[0, 1]]]), ("float", [[[0, 1]], [[0, 1.0]], [[0, 1]]]),
                       ("string", [[[0, 1]], [["0", 1]], [[0, 1]]]), ("huge", [[[0, 1]], [[0, 10 ** 20]], [[0, 1]]]),
                       ("big", [[[0, 1]], [[0, 10 ** 18]], [[0, 1]]]), ("after-bad", [[[0, 1]], [[1, 2], [0, 5]], [[0, 1]]]),
                       ("flat-pairs", [[0, 1], [0, 1], [0, 1]]), ("nested", [[[[0, 1]]], [[0, 1]], [[0, 1]]]),
                       ("no-key-block", [[[0, 1]], [], [[0, 1]]]), ("null", [[[0, 1]], None, [[0, 1]]]),
                       ("mixed", [[[0, 1]], [[0, 1], [2, 3.5]], [[0, 1]]])]:
        put(f"rows-{name}", P + ("band.2-x_y", "rows"), rows)
    for name, reuse in [("not-array", 1), ("pair-int", [1]), ("pair-three", [[1, 0, 2]]), ("self", [[1, 1]]),
                        ("twice", [[1, 0], [1, 2]]), ("keeps", [[0, 1]]), ("partial", [[1, 2]]), ("range", [[1, 3]]),
                        ("negative", [[-1, 0]]), ("float", [[1, 0.0]]), ("string", [["1", 0]])]:
        put(f"reuse-{name}", P + ("diag", "reuse"), reuse)
    add("reuse-cycle", lambda d: d["patterns"].update(cyc={"rows": [[], [], [[0, 3]]], "reuse": [[0, 1], [1, 0]]}))
    add("reuse-cycle-behind", lambda d: d["patterns"].update(
        cyc={"rows": [[[0, 1]], [], [[0, 3]]], "reuse": [[1, 0]]}) or d["patterns"].update(
        cyc2={"rows": [[], [], []], "reuse": [[0, 1], [1, 0], [2, 1]]}))
    add("reuse-chain", lambda d: d.update(tokens=192, layout={"frames": 3, "height": 8, "width": 8}) or
        d["patterns"].update(chain={"rows": [[], [], [[0, 3]]], "reuse": [[0, 1], [1, 2]]}))
    add("reuse-missing", lambda d: d["patterns"]["diag"].pop("reuse"))
    for name, bitmap in [("int", 7), ("null", None), ("short", "AQM="), ("long", "AQMHAQ=="), ("padding", "AQMP"),
                         ("padding-row0", "CQMH"), ("empty-row", "AQAH"), ("space", "AQ MH"), ("newline", "AQMH\n"),
                         ("padded", "AQMH===="), ("pad-inside", "AQ=H"), ("url", "AQM_"), ("nonascii", "AQMé"),
                         ("empty", ""), ("equals", "===="), ("eq1", "="), ("quirk", "AQ=H"), ("one-char", "A"),
                         ("trailing-bits", "AQMf"), ("lower", "aqmh")]:
        put(f"bitmap-{name}", P + ("bits", "bitmap"), bitmap)
    # Assignments.
    put("assignments-object", A, {})
    put("assignments-empty", A, [])
    put("assignment-int", A + (0,), 5)
    put("assignment-unknown", A + (0, "head"), 0)
    for key in ["steps", "layers", "heads", "pattern"]:
        put(f"assignment-missing-{key}", A + (0, key), DELETE)
    for value in ["1-", "a", "1-2-3", "20-7", "", " 0 , 7 - 20 ", "+0,+7-+20", "0,\u200b7,20\u3000", "0,7\u180e,20",
                  "0,7,20,", ",0", "-7", "0--7", "0-٣", "1", "0,1", "8-19", "100-200", "0-9223372036854775807",
                  "99999999999999999999", -1, 7.0, 21, None, [0], True, "*", "0-20", "7,0,20", "0,0,7,20"]:
        put(f"steps-{value!r}", A + (0, "steps"), value)
    for value in ["0-1", "0-2", "2", "1,0", "3-9", 2, "0-\u0301 1", "0,\u0301", "*"]:
        put(f"layers-{value!r}", A + (0, "layers"), value)
    for value in ["0-1", "5", 5, "0-0"]:
        put(f"heads-{value!r}", A + (0, "heads"), value)
    for value in ["nope", "Dense", 5, None, "dense", "bits"]:
        put(f"pattern-{value!r}", A + (0, "pattern"), value)
    add("assigned-twice", lambda d: d["assignments"].append({"steps": 20, "layers": "1", "heads": "0-1",
                                                             "pattern": "bits"}))
    add("unassigned", lambda d: d["assignments"].pop(2))
    add("unassigned-last", lambda d: d["assignments"][3].update(steps="7"))
    add("kelvin", lambda d: d["patterns"].update(K=d["patterns"].pop("bits")) or d["assignments"][1].update(
        pattern="\u212a"))
    add("kelvin-duplicate", lambda d: d["patterns"].update({"K": {"bitmap": "AQMH"}, "\u212a": {"bitmap": "AQMH"}}))
    for key in ["é", "a\u0345", "Ⅻ", "a.b", "", "1x", "٣", "_", "a b", "😀", "a-b"]:
        add(f"unknown-key-{key!r}", lambda d, key=key: d.update({key: 1}))
        add(f"unknown-pattern-key-{key!r}", lambda d, key=key: d["patterns"]["bits"].update({key: 1}))
    return cases


def syntax_cases():
    """(name, bytes): JSON as text, broken every way the reader names."""
    good = text(base())
    model = good.index(b'"base"')
    cases = [(f"truncated-{n}", good[:n]) for n in sorted({*range(0, len(good), max(1, len(good) // 60)),
                                                           len(good) - 1, 1, 2})]

    def splice(name, value):
        """The model's value replaced by raw bytes."""
        cases.append((name, good[:model] + value + good[model + len(b'"base"'):]))

    for name, value in [
            ("utf8-ff", b'"\xff"'), ("utf8-overlong", b'"\xc0\xaf"'), ("utf8-surrogate", b'"\xed\xa0\x80"'),
            ("utf8-truncated", b'"\xe2\x82"'), ("utf8-beyond", b'"\xf4\x90\x80\x80"'), ("utf8-ok", "\"é😀\"".encode()),
            ("utf8-escape-mix", b'"\xc3\\u00a9"'), ("utf8-outside", b'\xc3\xa9'), ("escape-bad", b'"\\x"'),
            ("escape-u-short", b'"\\u12"'), ("escape-u-bad", b'"\\u12g4"'), ("escape-u-end", b'"\\u00'),
            ("surrogate-alone", b'"\\ud800"'), ("surrogate-low", b'"\\udc00"'), ("surrogate-then-a", b'"\\ud800\\u0041"'),
            ("surrogate-then-x", b'"\\ud800x"'), ("surrogate-pair", b'"\\ud83d\\ude00"'),
            ("surrogate-truncated", b'"\\ud83d\\ude"'), ("escapes-all", b'"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000"'),
            ("escaped-backslash-u", b'"\\\\ud800"'), ("control", b'"a\tb"'), ("control-nul", b'"a\x00b"'),
            ("unterminated", b'"abc'), ("unterminated-escape", b'"abc\\'), ("literal-tru", b"tru"),
            ("literal-nul", b"nul"), ("literal-fals", b"falsy"), ("literal-true", b"true"), ("null", b"null"),
            ("NaN", b"NaN"), ("Infinity", b"Infinity"), ("-Infinity", b"-Infinity"), ("leading-zero", b"01"),
            ("negative-leading-zero", b"-01"), ("minus", b"-"), ("dot", b"1."), ("exp", b"1e"), ("exp-sign", b"1e+"),
            ("fraction", b"1.5e-3"), ("big-exp", b"1e400"), ("digits-19", b"1234567890123456789"),
            ("digits-20", b"12345678901234567890"), ("digits-5000", b"7" * 5000), ("minus-zero", b"-0"),
            ("plus", b"+1"), ("dot-first", b".5"), ("hex", b"0x10"), ("empty-value", b""), ("comma", b","),
            ("array-trailing", b"[1,]"), ("array-missing-comma", b"[1 2]"), ("array-open", b"[1"),
            ("array-pairs-bad", b"[[1,2],[3,4,]]"), ("array-mixed", b"[1, [2], {}]"),
            ("object-trailing", b'{"a":1,}'), ("object-colon", b'{"a" 1}'), ("object-key", b"{a:1}"),
            ("object-open", b'{"a":1'), ("object-duplicate", b'{"a":1,"b":2,"a":3}'),
            ("object-duplicate-nfc", '{"é":1,"e\u0301":2}'.encode()), ("object-comma", b'{"a":1 "b":2}'),
            ("brace", b"}"), ("bracket", b"]")]:
        splice(name, value)
    for depth in [62, 63, 64, 65]:
        splice(f"nest-array-{depth}", b"[" * depth + b"]" * depth)
        splice(f"nest-object-{depth}", b'{"a":' * depth + b"1" + b"}" * depth)
        splice(f"nest-pairs-{depth}", b"[" * depth + b"[1,2]" + b"]" * depth)
        splice(f"nest-ints-{depth}", b"[" * depth + b"1,2" + b"]" * depth)
        splice(f"nest-float-{depth}", b"[" * depth + b"1.5" + b"]" * depth)
        splice(f"nest-empty-{depth}", b"[" * depth + b"[]" + b"]" * depth)
    splice("nest-10000", b"[" * 10000 + b"]" * 10000)
    splice("nest-10000-open", b"[" * 10000)
    # Deep nesting elsewhere than the first error: the syntax error wins over the contents.
    cases.append(("nest-after-semantic-error", good.replace(b'"format": 1', b'"format": 2', 1)[:-1] +
                  b', "zzz": ' + b"[" * 70 + b"]" * 70 + b"}"))
    cases.append(("pairs-depth-after-semantic-error", good.replace(b'"format": 1', b'"format": 2', 1)[:-1] +
                  b', "zzz": ' + b"[" * 63 + b"[1,2]" + b"]" * 63 + b"}"))
    cases += [("bom", b"\xef\xbb\xbf" + good), ("trailing-text", good + b" x"), ("trailing-object", good + b"{}"),
              ("trailing-space", good + b" \n\t\r"), ("leading-space", b"\n\n  " + good), ("crlf", good.replace(b", ", b",\r\n")),
              ("top-array", b"[]"), ("top-number", b"1"), ("top-string", b'"x"'), ("top-null", b"null"),
              ("empty", b""), ("space", b"   "), ("nul-byte", b"\x00"), ("formfeed", b"\x0c" + good),
              ("duplicate-top", good[:-1] + b', "format": 1}'), ("multiline-error", good.replace(b", ", b",\n")
                                                                   .replace(b'"heads": 2', b'"heads": 2 2'))]
    return cases


def limit_cases():
    """(name, bytes) at and past the format's table limits (docs/masks-format.md, "Limits")."""
    cases = []
    head = {"format": 1, "model": "limits", "head_dim": 8, "layers": 1, "heads": 1, "timesteps": [0]}

    # Patterns: 65,536 of one block each, then one more.
    for count in (65536, 65537):
        patterns = {f"p{i}": {"rows": [[[0, 1]]]} for i in range(count)}
        doc = {**head, "tokens": 1, "block": 1, "patterns": patterns,
               "assignments": [{"steps": "*", "layers": "*", "heads": "*", "pattern": "p0"}]}
        cases.append((f"patterns-{count}", json.dumps(doc, separators=(",", ":")).encode()))

    # Distinct-row ranges: rows of 1,024 blocks, 0x55 (about 512 ranges each) behind a unique 2-byte
    # prefix (bit 0 set, so every row keeps block 0): 9 patterns of 1,024 rows pass 2^22 in the ninth.
    def bitmap_doc(raws, tokens):
        patterns = {f"b{i}": {"bitmap": base64.b64encode(r.tobytes()).decode()} for i, r in enumerate(raws)}
        return json.dumps({**head, "tokens": tokens, "block": 1, "patterns": patterns,
                           "assignments": [{"steps": "*", "layers": "*", "heads": "*", "pattern": "b0"}]},
                          separators=(",", ":")).encode()

    raw = np.full((9 * 1024, 128), 0x55, dtype=np.uint8)
    ids = np.arange(9 * 1024)
    raw[:, 0], raw[:, 1] = (ids & 0x7F) << 1 | 1, ids >> 7
    cases.append(("distinct-ranges-over", bitmap_doc(np.split(raw, 9), 1024)))
    cases.append(("distinct-ranges-under", bitmap_doc(np.split(raw[:8 * 1024], 8), 1024)))
    # Ranges in all: one pattern of 8,200 blocks, every other one kept (4,100 ranges a row), passes 2^25
    # at row 8,184 (8.4 MB of bitmap; each byte holds at most 4 ranges, so no smaller file gets there).
    raw = np.full((8200, 1025), 0x55, dtype=np.uint8)
    doc = {**head, "tokens": 8200, "block": 1, "patterns": {"a": {"bitmap": base64.b64encode(raw.tobytes()).decode()}},
           "assignments": [{"steps": "*", "layers": "*", "heads": "*", "pattern": "a"}]}
    cases.append(("ranges-over", json.dumps(doc, separators=(",", ":")).encode()))
    return cases


def corpus_files():
    corpus = os.path.join(ROOT, "Fuzz", "corpus", "masks")
    files = [os.path.join(corpus, f) for f in sorted(os.listdir(corpus))]
    return files + [os.path.join(ROOT, "examples", "masks.json")]


def cli_verdict(path):
    """None when `calibc stats` accepts the file, else its message (without `calibc: error: `)."""
    r = subprocess.run([CALIBC, "stats", path], capture_output=True, text=True, errors="surrogateescape")
    if r.returncode == 0:
        return None
    lines = [line for line in r.stderr.splitlines() if line.startswith(PREFIX)]
    assert r.returncode == 1 and len(lines) == 1, f"{path}: calibc exited {r.returncode}: {r.stderr!r}"
    return lines[0][len(PREFIX):]


def python_verdict(path):
    """None when Masks.read accepts the file, else its message; any other exception fails the test."""
    try:
        calibc.Masks.read(path)
        return None
    except calibc.MasksError as e:
        return str(e)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not os.access(CALIBC, os.X_OK):
        pytest.fail(f"no calibc binary at {CALIBC}: build it (`make test-python` does) or set CALIBC")
    directory = tmp_path_factory.mktemp("differential")
    paths = corpus_files()
    for i, (name, data) in enumerate(semantic_cases() + syntax_cases() + limit_cases()):
        path = str(directory / f"{i:03d}.json")
        with open(path, "wb") as f:
            f.write(data)
        paths.append(path)
    paths.append(str(directory / "missing.json"))
    paths.append(str(directory))  # a directory: "cannot read the file"
    with ThreadPoolExecutor(2) as pool:
        verdicts = list(pool.map(cli_verdict, paths))
    return list(zip(paths, verdicts))


def describe(path):
    try:
        with open(path, "rb") as f:
            return repr(f.read(300))
    except OSError:
        return "(unreadable)"


def test_python_and_calibc_agree_on_every_file(corpus):
    disagreements = []
    for path, cli in corpus:
        py = python_verdict(path)
        if py != cli:
            disagreements.append(f"{path} {describe(path)}\n   calibc: {cli}\n   python: {py}")
    assert not disagreements, f"{len(disagreements)} of {len(corpus)} files:\n" + "\n".join(disagreements)


def test_the_corpus_covers_both_verdicts_and_every_kind_of_message(corpus):
    accepted = [path for path, cli in corpus if cli is None]
    refused = [cli for _, cli in corpus if cli is not None]
    assert len(accepted) >= 20 and len(refused) >= 300
    for message in ["cannot read the file", "nesting deeper than 64 levels", "string is not valid UTF-8",
                    "duplicate key", "unpaired surrogate", "leading zeros", "expected an integer, found a number",
                    "more than 65536 patterns", "key-block ranges in all", "distinct rows of all patterns",
                    "padding bit", "reuse cycle", "has no pattern assigned", "is already assigned pattern",
                    "does not exist", "selects no", "expected base64 text", "unexpected text after the top-level value",
                    "invalid \\u escape", "blocks per side", "exceeds 10000000", "bytes of UTF-8", "partial last block"]:
        assert any(message in m for m in refused), message


def test_from_json_agrees_with_read_on_the_semantic_cases(tmp_path):
    """from_json (a dict) gives read's message, less the file."""
    for name, data in semantic_cases():
        path = tmp_path / "m.json"
        path.write_bytes(data)
        try:
            calibc.Masks.read(path)
            want = None
        except calibc.MasksError as e:
            want = str(e)[len(str(path)) + 2:]
        try:
            calibc.Masks.from_json(json.loads(data))
            got = None
        except calibc.MasksError as e:
            got = str(e)
        if name.startswith("kelvin-duplicate"):
            continue  # json.loads keeps both keys of a dict; calibc's "duplicate key" is a syntax error
        assert got == want, name
