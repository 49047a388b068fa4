"""masks.json (format 1, docs/masks-format.md): one reader for both pattern encodings (`rows`
and `bitmap`) with `reuse`, and a writer.

    masks = calibc.Masks.read("masks.json")
    p = masks.pattern(step, layer, head)   # a Pattern: kept (B × B bool numpy), reuse {target: source}
    p.expanded()                           # reused query blocks take their source's key blocks
    masks.write("copy.json")               # each pattern in the shorter of the two encodings

The reader is calibc's frontend (Sources/CalibFrontend/Masks.swift, Sources/CalibJSON/JSON.swift)
in Python: it accepts exactly the files `calibc compile` accepts and refuses the others with
MasksError, whose message is calibc's own, `<file>: <JSON path>: <message>` (docs/errors.md).
`Tests/python/test_masks_differential.py` holds the two to that. Nothing is allocated in
proportion to a size the file declares before the file has shown it: patterns keep their ranges
(or bitmap bytes) and make the (B, B) `kept` array when it is first asked for; the (step, layer,
head) table, which the format bounds at 10^7 entries, is the one exception, as in calibc.
"""

import base64
import binascii
import bisect
import json
import numbers
import os
import re
from array import array

import numpy as np

from . import _json
from ._json import INT64_MAX, INT64_MIN, JSONSyntaxError, Number, float_text, key_of
from ._unicode import is_alphabetic, visible
from .errors import MasksError

__all__ = ["Masks", "Pattern", "MasksError"]

# The format's limits (Sources/CalibFrontend/Masks.swift, `Frontend`; docs/masks-format.md, "Limits").
MAX_BLOCKS = 16_384
MAX_TOKENS = 1 << 28
MAX_DISPATCH = 10_000_000
MAX_HEAD_DIM = 512
MAX_BLOCK = 1024
MAX_LAYERS = 4096
MAX_HEADS = 4096
MAX_STEP = (1 << 31) - 1
MAX_MODEL_BYTES = 4095
MAX_LAYOUT_SIDE = 100_000
MAX_RANGES = 1 << 25
MAX_DISTINCT_RANGES = 1 << 22
MAX_PATTERNS = 65_536
MAX_PATTERN_ROWS = 1 << 22

_TOP = ["format", "model", "tokens", "head_dim", "block", "layers", "heads", "timesteps", "model_timesteps", "layout", "patterns",
        "assignments"]
_LAYOUT = ["frames", "height", "width", "text_tokens", "text_position"]
_PATTERN = ["rows", "bitmap", "reuse"]
_ASSIGNMENT = ["steps", "layers", "heads", "pattern"]
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*")
_BASE64_VALUE = {c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
# CharacterSet.whitespaces as Foundation on Linux has it (what calibc trims from selector parts).
_SPACES = "\t \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u200b\u202f\u205f\u3000"
_INT_TEXT = re.compile(r"[+-]?[0-9]+")


class _LookupError(MasksError, KeyError):
    """A (step, layer, head) the masks do not have: a MasksError, and a KeyError as before."""

    def __str__(self):
        return str(self.args[0])


# ---- Pattern ----

class Pattern:
    """One block mask: `kept[q, k]` is True when query block q attends to key block k; `reuse`
    maps a query block to the block whose output rows it copies (its kept row is empty)."""

    def __init__(self, kept, reuse=None):
        kept = np.asarray(kept)
        if kept.ndim != 2 or kept.shape[0] != kept.shape[1] or kept.shape[0] < 1:
            raise MasksError(f"kept: expected a square (blocks, blocks) array, got shape {kept.shape}")
        self._kept = kept.astype(bool, copy=True)
        self._blocks = kept.shape[0]
        self._source = None
        self.reuse = {}
        for target, source in dict(reuse or {}).items():
            for what, q in (("target", target), ("source", source)):
                if isinstance(q, bool) or not isinstance(q, numbers.Integral) or not 0 <= q < self._blocks:
                    raise MasksError(f"reuse: expected query blocks in 0...{self._blocks - 1}, got {what} {q!r}")
            self.reuse[int(target)] = int(source)

    @classmethod
    def _decoded(cls, blocks, source, reuse):
        """A pattern as the reader decodes it: `source` is ("spans", array("i") of [start, end, …],
        row offsets into it), ("bitmap", raw bytes) or ("dense",); `kept` is made when asked for."""
        p = cls.__new__(cls)
        p._kept, p._blocks, p._source, p.reuse = None, blocks, source, dict(reuse)
        return p

    @property
    def kept(self):
        if self._kept is None:
            b, kind = self._blocks, self._source[0]
            if kind == "dense":
                kept = np.ones((b, b), dtype=bool)
            elif kind == "bitmap":
                stride = (b + 7) // 8
                raw = np.frombuffer(self._source[1], dtype=np.uint8).reshape(b, stride)
                kept = np.unpackbits(raw, axis=1, bitorder="little")[:, :b].astype(bool)
            else:
                flat = np.frombuffer(self._source[1], dtype=np.intc) if len(self._source[1]) else np.zeros(0, np.intc)
                rows = np.repeat(np.arange(b), np.diff(self._source[2]) // 2)
                edges = np.zeros((b, b + 1), dtype=np.int32)
                np.add.at(edges, (rows, flat[0::2]), 1)
                np.add.at(edges, (rows, flat[1::2]), -1)
                kept = np.cumsum(edges[:, :b], axis=1) > 0
            self._kept = kept
        return self._kept

    @property
    def blocks(self):
        return self._blocks

    def source(self, q):
        """The computed query block whose output block q gets (q itself unless reused)."""
        seen = {q}
        while q in self.reuse:
            q = self.reuse[q]
            if q in seen:
                raise MasksError(f"query block {q} is on a reuse cycle")
            seen.add(q)
        return q

    def expanded(self):
        """kept, with each reused query block keeping its source's key blocks."""
        out = self.kept.copy()
        for q in self.reuse:
            out[q] = self.kept[self.source(q)]
        return out

    def density(self):
        return float(self.kept.sum()) / self.kept.size

    def __eq__(self, other):
        return isinstance(other, Pattern) and np.array_equal(self.kept, other.kept) and self.reuse == other.reuse

    def __hash__(self):
        return hash((self.kept.tobytes(), tuple(sorted(self.reuse.items()))))

    # Encodings.

    def rows(self):
        """The `rows` encoding: per query block, the half-open key-block ranges it keeps."""
        if self._kept is None and self._source[0] == "spans":
            flat, offsets = self._source[1], self._source[2]
            return [[[flat[j], flat[j + 1]] for j in range(offsets[q], offsets[q + 1], 2)] for q in range(self._blocks)]
        out = []
        for row in self.kept:
            edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
            out.append([[int(a), int(b)] for a, b in zip(edges[0::2], edges[1::2])])
        return out

    def bitmap(self):
        if self._kept is None and self._source[0] == "bitmap":
            return base64.b64encode(self._source[1]).decode()
        return base64.b64encode(np.packbits(self.kept, axis=1, bitorder="little").tobytes()).decode()

    def to_json(self):
        rows, bitmap = self.rows(), self.bitmap()
        rows_text = json.dumps(rows, separators=(",", ":"))
        entry = {"rows": rows} if len(rows_text) <= len(bitmap) + 2 else {"bitmap": bitmap}
        if self.reuse:
            entry["reuse"] = [[t, s] for t, s in sorted(self.reuse.items())]
        return entry


# ---- the reader ----

class _Refused(Exception):
    """What calibc refuses, at a JSON path; `Masks.read` adds the file."""

    def __init__(self, path, message):
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


def _kind(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, Number)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return f"a {type(v).__name__}"


_SIMPLE_ASCII = re.compile(r"[A-Za-z0-9_]+")


def _child(path, key):
    if key.isascii():
        return f"{path}.{key}" if _SIMPLE_ASCII.fullmatch(key) else f'{path}["{key}"]'
    simple = all(is_alphabetic(c) or "0" <= c <= "9" or c == "_" for c in key)
    return f"{path}.{key}" if simple else f'{path}["{key}"]'


def _expected(path, what, v):
    return _Refused(path, f"expected {what}, found {_kind(v)}")


def _int(v, path, lo, hi):
    """Node.int(in:): an integer literal within Int64, then within lo...hi."""
    if type(v) is not int or not INT64_MIN <= v <= INT64_MAX:
        raise _expected(path, "an integer", v)
    if not lo <= v <= hi:
        raise _Refused(path, f"expected an integer in {lo}...{hi}, found {v}")
    return v


def _float(v, path):
    """Node.float(): a number a C float holds, rounded to one."""
    if not (type(v) is int or isinstance(v, Number)):
        raise _expected(path, "a number", v)
    x = float(v.text if isinstance(v, Number) else v)
    with np.errstate(over="ignore"):
        f = np.float32(x)
    if not np.isfinite(f):
        raise _Refused(path, f"expected a number a C float holds, found {x!r}")
    return float(f)


def _string(v, path):
    if not isinstance(v, str):
        raise _expected(path, "a string", v)
    return v


def _array(v, path):
    if not isinstance(v, list):
        raise _expected(path, "an array", v)
    return v


def _object(v, path, allowed):
    if not isinstance(v, dict):
        raise _expected(path, "an object", v)
    for key in v:
        if key not in allowed:
            raise _Refused(_child(path, key), f'unknown field "{key}" (expected one of: {", ".join(allowed)})')
    return v


def _required(m, path, key):
    if key not in m:
        raise _Refused(path, f'missing required field "{key}"')
    return m[key], _child(path, key)


def _base64(text):
    """Data(base64Encoded:) of Foundation on Linux (swift-foundation), quirks included: trailing
    '=' beyond the last chunk are ignored, '====' is one zero byte, and the last chunk may put a
    data character after a '=' ("AA=A" is two bytes). None where it refuses."""
    b = text.encode("utf-8", "surrogatepass")
    if not b:
        return b""
    stripped = b.rstrip(b"=")
    if not stripped:
        return b"\0" if len(b) >= 4 else None
    parse = -(-len(stripped) // 4) * 4
    if parse > len(b):
        return None
    full, last = b[:parse - 4], b[parse - 4:parse]
    if _BASE64.fullmatch(full) is None:
        return None
    a0, a1, a2, a3 = (_BASE64_VALUE.get(c) for c in last)
    pad2, pad3 = last[2] == 0x3D, last[3] == 0x3D
    if a0 is None or a1 is None or (a2 is None and not pad2) or (a3 is None and not pad3):
        return None
    x = a0 << 18 | a1 << 12 | (a2 or 0) << 6 | (a3 or 0)
    tail = bytes([x >> 16]) + (b"" if pad2 else bytes([x >> 8 & 255])) + (b"" if pad3 else bytes([x & 255]))
    return binascii.a2b_base64(full) + tail


def _selector_int(text):
    """Swift's Int(String) of a part trimmed of CharacterSet.whitespaces; None where it is nil."""
    t = text.strip(_SPACES)
    if not _INT_TEXT.fullmatch(t):
        return None
    v = int(t)
    return v if INT64_MIN <= v <= INT64_MAX else None


class _Decoder:
    """Sources/CalibFrontend/Masks.swift's Decoder: the same checks in the same order."""

    def __init__(self, limits=None):
        self.limits = {"ranges": MAX_RANGES, "distinct_ranges": MAX_DISTINCT_RANGES, "patterns": MAX_PATTERNS,
                       "pattern_rows": MAX_PATTERN_ROWS, **(limits or {})}
        self.total_ranges = 0
        self.distinct_ranges = 0
        self.distinct_rows = set()
        self.last_row = None

    def count(self, key, n, path):
        """One decoded row (`key`: its ranges as int32 bytes, `n` of them) against the limits."""
        self.total_ranges += n
        if self.total_ranges > self.limits["ranges"]:
            raise _Refused(path, f"the patterns hold more than {self.limits['ranges']} key-block ranges in all")
        if key == self.last_row:
            return
        self.last_row = key
        if key not in self.distinct_rows:
            self.distinct_rows.add(key)
            self.distinct_ranges += n
            if self.distinct_ranges > self.limits["distinct_ranges"]:
                raise _Refused(path, f"the distinct rows of all patterns hold more than "
                                     f"{self.limits['distinct_ranges']} key-block ranges in all")

    def masks(self, root):
        top = _object(root, "$", _TOP)
        v, p = _required(top, "$", "format")
        if _int(v, p, 0, INT64_MAX) != 1:
            raise _Refused(p, "unsupported format version (this calibc reads format 1)")
        v, p = _required(top, "$", "model")
        model = _string(v, p)
        size = len(model.encode("utf-8", "surrogatepass"))
        if size > MAX_MODEL_BYTES:
            raise _Refused(p, f"model is {size} bytes of UTF-8, more than the {MAX_MODEL_BYTES} supported")
        tokens = _int(*_required(top, "$", "tokens"), 1, MAX_TOKENS)
        head_dim = _int(*_required(top, "$", "head_dim"), 1, MAX_HEAD_DIM)
        v, p = _required(top, "$", "block")
        block = _int(v, p, 1, MAX_BLOCK)
        blocks = (tokens + block - 1) // block
        if blocks > MAX_BLOCKS:
            raise _Refused(p, f"tokens / block gives {blocks} blocks per side, more than the {MAX_BLOCKS} supported")
        layers = _int(*_required(top, "$", "layers"), 1, MAX_LAYERS)
        heads = _int(*_required(top, "$", "heads"), 1, MAX_HEADS)
        v, steps_path = _required(top, "$", "timesteps")
        steps = []
        for i, n in enumerate(_array(v, steps_path)):
            s = _int(n, f"{steps_path}[{i}]", 0, MAX_STEP)
            if steps and s <= steps[-1]:
                raise _Refused(f"{steps_path}[{i}]", f"timesteps must be strictly ascending ({s} after {steps[-1]})")
            steps.append(s)
        if not steps:
            raise _Refused(steps_path, "expected at least one timestep")
        model_timesteps = []
        if "model_timesteps" in top:
            path = "$.model_timesteps"
            items = _array(top["model_timesteps"], path)
            if len(items) != len(steps):
                raise _Refused(path, f"expected one model timestep per entry of timesteps ({len(steps)}), "
                                     f"found {len(items)}")
            model_timesteps = [_float(x, f"{path}[{i}]") for i, x in enumerate(items)]
            repeated = sorted(model_timesteps)
            for a, b in zip(repeated, repeated[1:]):
                if a == b:
                    raise _Refused(path, f"{float_text(a)} is the model timestep of two steps (a call could not "
                                         "tell them apart)")
        dispatch = len(steps) * layers * heads
        if dispatch > MAX_DISPATCH:
            raise _Refused(steps_path, f"timesteps × layers × heads = {dispatch} exceeds {MAX_DISPATCH}")
        layout = None
        if "layout" in top:
            layout = self.layout(top["layout"], "$.layout", tokens)

        names, patterns = [], {}
        v, patterns_path = _required(top, "$", "patterns")
        if not isinstance(v, dict):
            raise _expected(patterns_path, "an object", v)
        for name, value in v.items():
            path = _child(patterns_path, name)
            if name == "dense":
                raise _Refused(path, '"dense" is built in and cannot be redefined')
            if _NAME.fullmatch(name) is None:
                raise _Refused(path, "pattern names use letters, digits, '_', '.' and '-'")
            if len(names) >= self.limits["patterns"]:
                raise _Refused(path, f"more than {self.limits['patterns']} patterns")
            if (len(names) + 1) * blocks > self.limits["pattern_rows"]:
                raise _Refused(path, f"{len(names) + 1} patterns × {blocks} query blocks is more than the "
                                     f"{self.limits['pattern_rows']} pattern rows supported")
            patterns[name] = self.pattern(value, path, tokens, block, blocks)
            names.append(name)

        plan = self.assignments(*_required(top, "$", "assignments"), steps, layers, heads, blocks, names, patterns)
        return Masks(tokens, head_dim, block, layers, heads, steps, patterns, plan, names, model=model,
                     layout=layout, model_timesteps=model_timesteps)

    def layout(self, v, path, tokens):
        m = _object(v, path, _LAYOUT)
        frames = _int(*_required(m, path, "frames"), 1, MAX_LAYOUT_SIDE)
        height = _int(*_required(m, path, "height"), 1, MAX_LAYOUT_SIDE)
        width = _int(*_required(m, path, "width"), 1, MAX_LAYOUT_SIDE)
        text = _int(m["text_tokens"], f"{path}.text_tokens", 0, MAX_TOKENS) if "text_tokens" in m else 0
        if "text_position" in m:
            where = f"{path}.text_position"
            if _string(m["text_position"], where) not in ("first", "last"):
                raise _Refused(where, 'expected "first" or "last"')
        if frames * height * width + text != tokens:
            raise _Refused(path, f"frames × height × width + text_tokens = {frames * height * width + text}, "
                                 f"but tokens is {tokens}")
        return dict(m)

    def pattern(self, v, path, tokens, block, blocks):
        m = _object(v, path, _PATTERN)
        if "rows" in m and "bitmap" in m:
            raise _Refused(path, 'give "rows" or "bitmap", not both')
        if "rows" in m:
            storage, lengths = self.ranges(m["rows"], f"{path}.rows", blocks)
        elif "bitmap" in m:
            storage, lengths = self.bitmap(m["bitmap"], f"{path}.bitmap", blocks)
        else:
            raise _Refused(path, 'expected "rows" or "bitmap"')

        reuse = {}
        if "reuse" in m:
            reuse_path = f"{path}.reuse"
            for i, pair in enumerate(_array(m["reuse"], reuse_path)):
                where = f"{reuse_path}[{i}]"
                items = _array(pair, where)
                if len(items) != 2:
                    raise _Refused(where, "expected [target, source] query blocks")
                target = _int(items[0], f"{where}[0]", 0, blocks - 1)
                source = _int(items[1], f"{where}[1]", 0, blocks - 1)
                if target == source:
                    raise _Refused(where, f"query block {target} cannot reuse itself")
                if target in reuse:
                    raise _Refused(where, f"query block {target} already reuses query block {reuse[target]}")
                if lengths[target]:
                    raise _Refused(where, f"query block {target} reuses query block {source}, so its kept key "
                                          "blocks must be empty")
                if tokens % block != 0 and source == blocks - 1:
                    raise _Refused(f"{where}[1]", f"query block {source} is the partial last block and cannot "
                                                  f"supply the {block} rows of query block {target}")
                reuse[target] = source
        # Every query block computes or reuses, and no chain of reuse comes back on itself.
        ends = set()  # query blocks whose chain reaches a computed block
        for q in [q for q, n in enumerate(lengths) if not n] if not reuse else range(blocks):
            if q in reuse:
                chain, at = [q], reuse[q]
                seen = {q}
                while at in reuse and at not in ends:
                    if at in seen:
                        raise _Refused(f"{path}.reuse", f"query block {q} is on a reuse cycle")
                    seen.add(at)
                    chain.append(at)
                    at = reuse[at]
                ends.update(chain)
            elif not lengths[q]:
                where = f"{path}.rows[{q}]" if "rows" in m else f"{path}.bitmap"
                raise _Refused(where, f"query block {q} keeps no key block and reuses none")
        return Pattern._decoded(blocks, storage, reuse)

    def ranges(self, rows, path, blocks):
        """The `rows` encoding → ("spans", flat, offsets) and the ranges per row."""
        if not isinstance(rows, list):
            raise _expected(path, "an array", rows)
        if len(rows) != blocks:
            raise _Refused(path, f"expected {blocks} rows (one per query block), found {len(rows)}")
        flat = array("i")
        offsets = [0]
        lengths = []
        for q, row in enumerate(rows):
            if not isinstance(row, list):
                raise _expected(f"{path}[{q}]", "an array", row)
            spans = []
            last = 0
            for r, rng in enumerate(row):
                if type(rng) is list and len(rng) == 2:
                    s, e = rng
                    if type(s) is int and type(e) is int and last <= s < e <= blocks:
                        spans += (s, e)
                        last = e
                        continue
                self.range_error(rng, f"{path}[{q}][{r}]", blocks, spans[-2:])
            key = array("i", spans).tobytes()
            self.count(key, len(spans) // 2, f"{path}[{q}]")
            flat.frombytes(key)
            offsets.append(len(flat))
            lengths.append(len(spans) // 2)
        return ("spans", flat, offsets), lengths

    @staticmethod
    def range_error(rng, path, blocks, last):
        """Why `rng` is not a valid range (always raises)."""
        ends = _array(rng, path)
        if len(ends) != 2:
            raise _Refused(path, "expected a key-block range [start, end)")
        start = _int(ends[0], f"{path}[0]", 0, blocks - 1)
        end = _int(ends[1], f"{path}[1]", 0, blocks)
        if start >= end:
            raise _Refused(path, f"empty range [{start}, {end}): end must exceed start")
        raise _Refused(path, f"range [{start}, {end}) overlaps or precedes [{last[0]}, {last[1]}); ranges must be "
                             "sorted and disjoint")

    def bitmap(self, v, path, blocks):
        """The `bitmap` encoding → ("bitmap", raw) and the ranges (runs of set bits) per row."""
        text = _string(v, path)
        raw = _base64(text)
        if raw is None:
            raise _Refused(path, "expected base64 text")
        stride = (blocks + 7) // 8
        if len(raw) != blocks * stride:
            raise _Refused(path, f"expected {blocks} rows of {stride} bytes ({blocks * stride} bytes), found "
                                 f"{len(raw)} bytes")
        rows = np.frombuffer(raw, dtype=np.uint8).reshape(blocks, stride)
        padded = blocks  # the first row that sets a padding bit, if any
        if blocks % 8:
            bad = np.flatnonzero(rows[:, -1] >> (blocks % 8))
            if len(bad):
                padded = int(bad[0])
        lengths = []
        chunk = max(1, (1 << 22) // (stride * 8))
        for first in range(0, padded, chunk):
            bits = np.unpackbits(rows[first:min(padded, first + chunk)], axis=1, bitorder="little")
            edges = np.diff(bits.astype(np.int8), axis=1, prepend=0, append=0)
            r_start, c_start = np.nonzero(edges == 1)
            c_end = np.nonzero(edges == -1)[1]
            spans = np.empty(2 * len(c_start), dtype=np.int32)
            spans[0::2], spans[1::2] = c_start, c_end
            counts = np.bincount(r_start, minlength=len(bits))
            at = np.concatenate(([0], np.cumsum(2 * counts)))
            same = np.zeros(len(bits), dtype=bool)
            same[1:] = (bits[1:] == bits[:-1]).all(axis=1)
            for i in range(len(bits)):
                n = int(counts[i])
                if same[i] and self.last_row is not None:
                    # The row repeats the one before: count it without making its key.
                    self.total_ranges += n
                    if self.total_ranges > self.limits["ranges"]:
                        raise _Refused(path, f"the patterns hold more than {self.limits['ranges']} key-block ranges "
                                             "in all")
                else:
                    self.count(spans[at[i]:at[i + 1]].tobytes(), n, path)
                lengths.append(n)
        if padded < blocks:
            last = int(rows[padded, -1])
            bit = next(b for b in range(8) if last >> b & 1 and (stride - 1) * 8 + b >= blocks)
            raise _Refused(path, f"row {padded} sets padding bit {(stride - 1) * 8 + bit} beyond the {blocks} key "
                                 "blocks")
        return ("bitmap", bytes(raw)), lengths

    def assignments(self, v, path, steps, layers, heads, blocks, names, patterns):
        plan = np.full((len(steps), layers, heads), -1, dtype=np.int32)
        index = {name: i for i, name in enumerate(names)}
        entries = _array(v, path)
        for i, entry in enumerate(entries):
            where = f"{path}[{i}]"
            m = _object(entry, where, _ASSIGNMENT)
            s = self.selector(*_required(m, where, "steps"), steps, "timestep")
            ls = self.selector(*_required(m, where, "layers"), range(layers), "layer")
            hs = self.selector(*_required(m, where, "heads"), range(heads), "head")
            name = _string(*_required(m, where, "pattern"))
            if name == "dense" and "dense" not in index:
                index["dense"] = len(names)
                names.append("dense")
                patterns["dense"] = Pattern._decoded(blocks, ("dense",), {})
            p = index.get(key_of(name))
            if p is None:
                raise _Refused(f"{where}.pattern", f'unknown pattern "{name}"')
            si = np.searchsorted(np.asarray(steps), s)
            at = np.ix_(si, ls, hs)
            taken = plan[at]
            if taken.max() >= 0:
                a, b, c = np.argwhere(taken >= 0)[0]
                raise _Refused(where, f"timestep {s[a]} layer {ls[b]} head {hs[c]} is already assigned pattern "
                                      f'"{names[taken[a, b, c]]}"')
            del taken
            plan[at] = p
        missing = int(np.argmin(plan))
        if plan.flat[missing] < 0:
            step, rest = divmod(missing, layers * heads)
            layer, head = divmod(rest, heads)
            raise _Refused(path, f"timestep {steps[step]} layer {layer} head {head} has no pattern assigned")
        return plan

    @staticmethod
    def selector(v, path, values, what):
        """`"*"`, an integer, or a list such as `"0-3,8"` → the sorted values it picks, all among
        `values` (ascending: timestep values, or a range of layers or heads)."""
        if isinstance(v, (int, Number)) and not isinstance(v, bool):
            picked = [_int(v, path, 0, INT64_MAX)]
        else:
            text = _string(v, path)
            if text == "*":
                return list(values)
            picked = []
            for part in text.split(","):
                ends = [_selector_int(e) for e in part.split("-")]
                if len(ends) > 2 or ends[0] is None or ends[-1] is None or ends[0] > ends[-1]:
                    raise _Refused(path, f'expected "*", an integer, or a list like "0-3,8"; found "{text}"')
                lo, hi = ends[0], ends[-1]
                a, b = bisect.bisect_left(values, lo), bisect.bisect_right(values, hi)
                picked += values[a:b]
                if len(ends) == 1 and a == b:
                    picked.append(lo)
        bad = next((x for x in picked if not _contains(values, x)), None)
        if bad is not None:
            raise _Refused(path, f"{what} {bad} does not exist")
        if not picked:
            raise _Refused(path, f"selects no {what}")
        return sorted(set(picked))


def _contains(values, x):
    """x in `values`, an ascending list or a range."""
    if isinstance(values, range):
        return x in values
    i = bisect.bisect_left(values, x)
    return i < len(values) and values[i] == x


def _plain(value, path="$", depth=0):
    """A Python value (what json.load gives, or built by hand) as the reader's tree: ints beyond
    Int64 and floats become Numbers, tuples lists; anything JSON cannot hold is refused."""
    if depth >= _json.MAX_DEPTH:
        raise _Refused(path, f"nesting deeper than {_json.MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str, Number)):
        return value
    if isinstance(value, numbers.Integral):
        v = int(value)
        return v if INT64_MIN <= v <= INT64_MAX else Number(str(v))
    if isinstance(value, numbers.Real):
        return Number(repr(float(value)))
    if isinstance(value, (list, tuple)):
        return [_plain(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(value)]
    if isinstance(value, dict):
        out, seen = {}, set()
        for key, x in value.items():
            if not isinstance(key, str):
                raise _Refused(path, f"expected string keys, found {type(key).__name__} {key!r}")
            if key_of(key) in seen:
                raise _Refused(path, f'duplicate key "{key}"')
            seen.add(key_of(key))
            out[key] = _plain(x, _child(path, key), depth + 1)
        return out
    raise _Refused(path, f"expected a JSON value, found {type(value).__name__}")


def _ranges(indices, values):
    """A selector text for the sorted `indices` into `values`: consecutive runs as "a-b"."""
    parts, start = [], 0
    for i in range(1, len(indices) + 1):
        if i == len(indices) or indices[i] != indices[i - 1] + 1:
            a, b = values[indices[start]], values[indices[i - 1]]
            parts.append(str(a) if a == b else f"{a}-{b}")
            start = i
    return ",".join(parts)


def _index(name, value, count):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < count:
        raise _LookupError(f"{name} {value!r} is not among the {count} {name}s (expected 0...{count - 1})")
    return int(value)


class Masks:
    """A whole masks.json: the shape, the named patterns and which one each (step, layer, head) uses.
    `plan[step_index, layer, head]` indexes `names`; `patterns[name]` is a Pattern."""

    def __init__(self, tokens, head_dim, block, layers, heads, timesteps, patterns, plan, names, model="",
                 layout=None, model_timesteps=()):
        self.tokens, self.head_dim, self.block = tokens, head_dim, block
        self.layers, self.heads, self.timesteps = layers, heads, list(timesteps)
        # The timestep the model receives at each step (empty: the step values), as compiled.
        self.model_timesteps = list(model_timesteps)
        self.patterns, self.names = dict(patterns), list(names)
        self.plan = np.asarray(plan)
        self.model, self.layout = model, layout
        self._step_index = {s: i for i, s in enumerate(self.timesteps)}
        if self.plan.shape != (len(self.timesteps), layers, heads):
            raise MasksError(f"plan: expected shape (timesteps, layers, heads) = {(len(self.timesteps), layers, heads)}, "
                             f"got {self.plan.shape}")

    @property
    def blocks(self):
        return -(-self.tokens // self.block)

    def __repr__(self):
        return (f"Masks({self.model!r}: {self.tokens} tokens, head_dim {self.head_dim}, block {self.block}, "
                f"{self.layers} layers × {self.heads} heads, steps {self.timesteps}, "
                f"{len(set(self.plan.flat))} patterns in use)")

    def _where(self, step, layer, head):
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step not in self._step_index:
            raise _LookupError(f"step {step!r} has no plans (steps: {self.timesteps})")
        return self._step_index[step], _index("layer", layer, self.layers), _index("head", head, self.heads)

    def pattern(self, step, layer, head):
        """The Pattern of (step value, layer, head); MasksError (also a KeyError) for one the masks
        do not have."""
        return self.patterns[self.pattern_name(step, layer, head)]

    def pattern_name(self, step, layer, head):
        return self.names[self.plan[self._where(step, layer, head)]]

    def first_use(self, name):
        """The first (step, layer, head) that uses pattern `name`, or None."""
        if name not in self.names:
            raise _LookupError(f"no pattern {name!r} (patterns: {', '.join(self.names)})")
        hits = np.argwhere(self.plan == self.names.index(name))
        if len(hits) == 0:
            return None
        s, layer, head = hits[0]
        return self.timesteps[s], int(layer), int(head)

    # Reading.

    @classmethod
    def read(cls, path, *, _limits=None):
        """The masks of the file at `path`, read as `calibc compile` reads it; MasksError with
        calibc's message (`<file>: <where>: <what was expected>`) for any file calibc refuses."""
        file = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (OSError, TypeError, ValueError):
            raise MasksError(visible(f"{file}: $: cannot read the file")) from None
        try:
            tree = _json.parse(data)
        except JSONSyntaxError as e:
            raise MasksError(visible(f"{file}: line {e.line}, column {e.column}: invalid JSON: {e.message}")) from None
        try:
            return _Decoder(_limits).masks(tree.value)
        except _Refused as e:
            refused = e
        # calibc reads the whole file before it decodes any of it: a syntax error anywhere wins.
        try:
            if tree.check_depth():
                return _Decoder(_limits).masks(tree.value)
        except JSONSyntaxError as e:
            raise MasksError(visible(f"{file}: line {e.line}, column {e.column}: invalid JSON: {e.message}")) from None
        except _Refused as e:
            refused = e
        raise MasksError(visible(f"{file}: {refused}")) from None

    @classmethod
    def from_json(cls, data, *, _limits=None):
        """The masks of a parsed masks.json (a dict as json.load gives it), checked as calibc checks a
        file; MasksError `<JSON path>: <what was expected>`."""
        try:
            return _Decoder(_limits).masks(_plain(data))
        except _Refused as refused:
            raise MasksError(visible(str(refused))) from None

    # Writing.

    def to_json(self):
        used = sorted(set(int(i) for i in self.plan.flat))
        patterns = {self.names[i]: self.patterns[self.names[i]].to_json() for i in used if self.names[i] != "dense"}
        # Per (layer, head): steps grouped by pattern; then heads, then layers, sharing (steps, pattern) merged.
        groups = {}
        for layer in range(self.layers):
            for head in range(self.heads):
                by_pattern = {}
                for s in range(len(self.timesteps)):
                    by_pattern.setdefault(int(self.plan[s, layer, head]), []).append(s)
                for p, steps in by_pattern.items():
                    groups.setdefault((_ranges(steps, self.timesteps), p, layer), []).append(head)
        merged = {}
        for (steps, p, layer), hs in groups.items():
            heads = "*" if len(hs) == self.heads else _ranges(hs, list(range(self.heads)))
            merged.setdefault((steps, p, heads), []).append(layer)
        assignments = []
        for (steps, p, heads), ls in merged.items():
            layers = "*" if len(ls) == self.layers else _ranges(ls, list(range(self.layers)))
            if steps == _ranges(list(range(len(self.timesteps))), self.timesteps):
                steps = "*"
            assignments.append({"steps": steps, "layers": layers, "heads": heads, "pattern": self.names[p]})
        out = {"format": 1, "model": self.model, "tokens": self.tokens, "head_dim": self.head_dim,
               "block": self.block, "layers": self.layers, "heads": self.heads, "timesteps": self.timesteps}
        if self.model_timesteps:
            out["model_timesteps"] = self.model_timesteps
        if self.layout is not None:
            out["layout"] = self.layout
        out.update(patterns=patterns, assignments=assignments)
        return out

    def write(self, path):
        with open(path, "w") as f:
            json.dump(self.to_json(), f, separators=(",", ":"))
            f.write("\n")

    @classmethod
    def from_patterns(cls, tokens, head_dim, block, timesteps, per_step_layer, model="", layout=None):
        """Builds a Masks from {(step, layer): [Pattern per head]}, one entry for every step of
        `timesteps` and every layer; identical patterns are stored once."""
        timesteps = list(timesteps)
        if not per_step_layer:
            raise MasksError("per_step_layer: expected {(step, layer): [Pattern per head]}, got no entries")
        unknown = [step for step, _ in per_step_layer if step not in timesteps]
        if unknown:
            raise MasksError(f"step {unknown[0]} is not among the timesteps {timesteps}")
        keys = sorted(per_step_layer)
        layers = 1 + max(layer for _, layer in keys)
        heads = len(per_step_layer[keys[0]])
        plan = np.full((len(timesteps), layers, heads), -1, dtype=np.int64)
        names, patterns, index = [], {}, {}
        for (step, layer), plist in per_step_layer.items():
            if len(plist) != heads:
                raise MasksError(f"step {step} layer {layer}: {len(plist)} patterns for {heads} heads")
            for head, p in enumerate(plist):
                if not isinstance(p, Pattern):
                    raise MasksError(f"step {step} layer {layer} head {head}: expected a Pattern, got {type(p).__name__}")
                if p not in index:
                    index[p] = len(names)
                    names.append(f"p{len(names)}")
                    patterns[names[-1]] = p
                plan[timesteps.index(step), layer, head] = index[p]
        if (plan < 0).any():
            s, layer, _ = np.argwhere(plan < 0)[0]
            raise MasksError(f"no patterns for step {timesteps[s]} layer {layer}")
        return cls(tokens, head_dim, block, layers, heads, timesteps, patterns, plan, names, model=model,
                   layout=layout)
