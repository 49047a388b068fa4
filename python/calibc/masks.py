"""masks.json (format 1, docs/masks-format.md): one reader for both pattern encodings (`rows`
and `bitmap`) with `reuse`, and a writer.

    masks = calibc.Masks.read("masks.json")
    p = masks.pattern(step, layer, head)   # a Pattern: kept (B × B bool numpy), reuse {target: source}
    p.expanded()                           # reused query blocks take their source's key blocks
    masks.write("copy.json")               # each pattern in the shorter of the two encodings

The reader checks what a user of the plans relies on (row counts, ranges, bitmap size and padding,
reuse targets, every (step, layer, head) assigned exactly once) and names the JSON path of what is
wrong; `calibc compile` remains the full validator.
"""

import base64
import json
import re

import numpy as np

__all__ = ["Masks", "Pattern", "MasksError"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class MasksError(ValueError):
    pass


class Pattern:
    """One block mask: `kept[q, k]` is True when query block q attends to key block k; `reuse`
    maps a query block to the block whose output rows it copies (its kept row is empty)."""

    def __init__(self, kept, reuse=None):
        self.kept = np.asarray(kept, dtype=bool)
        self.reuse = dict(reuse or {})

    @property
    def blocks(self):
        return self.kept.shape[0]

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
        out = []
        for row in self.kept:
            edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
            out.append([[int(a), int(b)] for a, b in zip(edges[0::2], edges[1::2])])
        return out

    def bitmap(self):
        return base64.b64encode(np.packbits(self.kept, axis=1, bitorder="little").tobytes()).decode()

    def to_json(self):
        rows, bitmap = self.rows(), self.bitmap()
        rows_text = json.dumps(rows, separators=(",", ":"))
        entry = {"rows": rows} if len(rows_text) <= len(bitmap) + 2 else {"bitmap": bitmap}
        if self.reuse:
            entry["reuse"] = [[t, s] for t, s in sorted(self.reuse.items())]
        return entry


def _fail(path, message):
    raise MasksError(f"{path}: {message}")


def _int(value, path, lo, hi=None):
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        _fail(path, f"expected an integer in {lo}…{'' if hi is None else hi}, found {json.dumps(value)}")
    return value


def _parse_pattern(entry, blocks, partial_last, path):
    if not isinstance(entry, dict):
        _fail(path, "expected an object")
    unknown = set(entry) - {"rows", "bitmap", "reuse"}
    if unknown:
        _fail(f"{path}.{sorted(unknown)[0]}", "unknown field")
    if ("rows" in entry) == ("bitmap" in entry):
        _fail(path, 'give "rows" or "bitmap", one of them')
    kept = np.zeros((blocks, blocks), dtype=bool)
    if "rows" in entry:
        rows = entry["rows"]
        if not isinstance(rows, list) or len(rows) != blocks:
            _fail(f"{path}.rows", f"expected {blocks} rows (one per query block)")
        for q, row in enumerate(rows):
            end_before = 0
            if not isinstance(row, list):
                _fail(f"{path}.rows[{q}]", "expected an array of ranges")
            for r, rng in enumerate(row):
                where = f"{path}.rows[{q}][{r}]"
                if not isinstance(rng, list) or len(rng) != 2:
                    _fail(where, "expected a key-block range [start, end)")
                start, end = _int(rng[0], where, 0, blocks - 1), _int(rng[1], where, 1, blocks)
                if start >= end or start < end_before:
                    _fail(where, f"range [{start}, {end}) is empty, or overlaps or precedes the one before")
                kept[q, start:end] = True
                end_before = end
    else:
        try:
            raw = base64.b64decode(entry["bitmap"], validate=True)
        except (ValueError, TypeError):
            _fail(f"{path}.bitmap", "expected base64 text")
        stride = (blocks + 7) // 8
        if len(raw) != blocks * stride:
            _fail(f"{path}.bitmap", f"expected {blocks} rows of {stride} bytes, found {len(raw)} bytes")
        bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8).reshape(blocks, stride), axis=1, bitorder="little")
        if bits[:, blocks:].any():
            _fail(f"{path}.bitmap", f"padding bits beyond the {blocks} key blocks are set")
        kept = bits[:, :blocks].astype(bool)
    reuse = {}
    for i, pair in enumerate(entry.get("reuse", [])):
        where = f"{path}.reuse[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            _fail(where, "expected [target, source] query blocks")
        target, source = _int(pair[0], where, 0, blocks - 1), _int(pair[1], where, 0, blocks - 1)
        if target == source or target in reuse or kept[target].any():
            _fail(where, f"query block {target} cannot reuse {source} (itself, twice, or it keeps key blocks)")
        if partial_last and source == blocks - 1:
            _fail(where, f"query block {source} is the partial last block and cannot be a source")
        reuse[target] = source
    pattern = Pattern(kept, reuse)
    for q in range(blocks):
        pattern.source(q)  # raises on cycles
        if q not in reuse and not kept[q].any():
            _fail(path, f"query block {q} keeps no key block and reuses none")
    return pattern


def _selector(value, values, path):
    if isinstance(value, int) and not isinstance(value, bool):
        picked = [value]
    elif value == "*":
        return list(values)
    elif isinstance(value, str):
        picked = []
        for part in value.split(","):
            ends = part.split("-")
            try:
                lo, hi = int(ends[0]), int(ends[-1])
            except ValueError:
                lo, hi = 1, 0
            if len(ends) > 2 or lo > hi:
                _fail(path, f'expected "*", an integer, or a list like "0-3,8"; found {json.dumps(value)}')
            picked += [v for v in values if lo <= v <= hi] if len(ends) == 2 else [lo]
    else:
        _fail(path, f'expected "*", an integer, or a list like "0-3,8"; found {json.dumps(value)}')
    bad = [v for v in picked if v not in values]
    if bad:
        _fail(path, f"{bad[0]} does not exist")
    if not picked:
        _fail(path, "selects nothing")
    return sorted(set(picked))


def _ranges(indices, values):
    """A selector text for the sorted `indices` into `values`: consecutive runs as "a-b"."""
    parts, start = [], 0
    for i in range(1, len(indices) + 1):
        if i == len(indices) or indices[i] != indices[i - 1] + 1:
            a, b = values[indices[start]], values[indices[i - 1]]
            parts.append(str(a) if a == b else f"{a}-{b}")
            start = i
    return ",".join(parts)


class Masks:
    """A whole masks.json: the shape, the named patterns and which one each (step, layer, head) uses.
    `plan[step_index, layer, head]` indexes `names`; `patterns[name]` is a Pattern."""

    def __init__(self, tokens, head_dim, block, layers, heads, timesteps, patterns, plan, names, model="",
                 layout=None):
        self.tokens, self.head_dim, self.block = tokens, head_dim, block
        self.layers, self.heads, self.timesteps = layers, heads, list(timesteps)
        self.patterns, self.names = dict(patterns), list(names)
        self.plan = np.asarray(plan, dtype=np.int64)
        self.model, self.layout = model, layout
        assert self.plan.shape == (len(self.timesteps), layers, heads)

    @property
    def blocks(self):
        return -(-self.tokens // self.block)

    def __repr__(self):
        return (f"Masks({self.model!r}: {self.tokens} tokens, head_dim {self.head_dim}, block {self.block}, "
                f"{self.layers} layers × {self.heads} heads, steps {self.timesteps}, "
                f"{len(set(self.plan.flat))} patterns in use)")

    def pattern(self, step, layer, head):
        """The Pattern of (step value, layer, head)."""
        if step not in self.timesteps:
            raise KeyError(f"step {step} has no plans (steps: {self.timesteps})")
        return self.patterns[self.names[self.plan[self.timesteps.index(step), layer, head]]]

    def pattern_name(self, step, layer, head):
        return self.names[self.plan[self.timesteps.index(step), layer, head]]

    def first_use(self, name):
        """The first (step, layer, head) that uses pattern `name`, or None."""
        hits = np.argwhere(self.plan == self.names.index(name))
        if len(hits) == 0:
            return None
        s, layer, head = hits[0]
        return self.timesteps[s], int(layer), int(head)

    # Reading.

    @classmethod
    def read(cls, path):
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise MasksError(f"{path}: line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}") from None
        try:
            return cls.from_json(data)
        except MasksError as e:
            raise MasksError(f"{path}: {e}") from None

    @classmethod
    def from_json(cls, data):
        if not isinstance(data, dict):
            _fail("$", "expected an object")
        allowed = {"format", "model", "tokens", "head_dim", "block", "layers", "heads", "timesteps", "layout",
                   "patterns", "assignments"}
        for key in data:
            if key not in allowed:
                _fail(f"$.{key}", "unknown field")
        for key in allowed - {"layout", "model"}:
            if key not in data:
                _fail("$", f'missing "{key}"')
        if data["format"] != 1:
            _fail("$.format", "expected 1")
        tokens = _int(data["tokens"], "$.tokens", 1, 1 << 28)
        head_dim = _int(data["head_dim"], "$.head_dim", 1, 512)
        block = _int(data["block"], "$.block", 1, 1024)
        layers = _int(data["layers"], "$.layers", 1, 4096)
        heads = _int(data["heads"], "$.heads", 1, 4096)
        timesteps = data["timesteps"]
        if not isinstance(timesteps, list) or not timesteps or any(
                not isinstance(t, int) for t in timesteps) or sorted(set(timesteps)) != timesteps:
            _fail("$.timesteps", "expected a non-empty, strictly ascending array of integers")
        blocks = -(-tokens // block)
        partial = tokens % block != 0
        if not isinstance(data["patterns"], dict):
            _fail("$.patterns", "expected an object")
        patterns, names = {}, []
        for name, entry in data["patterns"].items():
            if name == "dense":
                _fail("$.patterns.dense", '"dense" is built in and cannot be redefined')
            if not _NAME.match(name):
                _fail(f"$.patterns.{name}", "a name of letters, digits, _, . and -")
            patterns[name] = _parse_pattern(entry, blocks, partial, f"$.patterns.{name}")
            names.append(name)
        plan = np.full((len(timesteps), layers, heads), -1, dtype=np.int64)
        if not isinstance(data["assignments"], list):
            _fail("$.assignments", "expected an array")
        for i, entry in enumerate(data["assignments"]):
            where = f"$.assignments[{i}]"
            if not isinstance(entry, dict) or set(entry) != {"steps", "layers", "heads", "pattern"}:
                _fail(where, 'expected {"steps", "layers", "heads", "pattern"}')
            steps = _selector(entry["steps"], timesteps, f"{where}.steps")
            ls = _selector(entry["layers"], list(range(layers)), f"{where}.layers")
            hs = _selector(entry["heads"], list(range(heads)), f"{where}.heads")
            name = entry["pattern"]
            if name == "dense" and "dense" not in patterns:
                patterns["dense"] = Pattern(np.ones((blocks, blocks), dtype=bool))
                names.append("dense")
            if name not in patterns:
                _fail(f"{where}.pattern", f'unknown pattern "{name}"')
            index = np.ix_([timesteps.index(s) for s in steps], ls, hs)
            if (plan[index] >= 0).any():
                _fail(where, "assigns a (step, layer, head) that already has a pattern")
            plan[index] = names.index(name)
        missing = np.argwhere(plan < 0)
        if len(missing):
            s, layer, head = missing[0]
            _fail("$.assignments", f"timestep {timesteps[s]} layer {layer} head {head} has no pattern assigned")
        return cls(tokens, head_dim, block, layers, heads, timesteps, patterns, plan, names,
                   model=data.get("model", ""), layout=data.get("layout"))

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
        keys = sorted(per_step_layer)
        layers = 1 + max(layer for _, layer in keys)
        heads = len(per_step_layer[keys[0]])
        plan = np.full((len(timesteps), layers, heads), -1, dtype=np.int64)
        names, patterns, index = [], {}, {}
        for (step, layer), plist in per_step_layer.items():
            if len(plist) != heads:
                raise MasksError(f"step {step} layer {layer}: {len(plist)} patterns for {heads} heads")
            for head, p in enumerate(plist):
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
