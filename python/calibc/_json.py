"""JSON as calibc's frontend reads it (Sources/CalibJSON/JSON.swift), with its verdicts and its
syntax errors, line and column included.

What Swift's reader refuses and Python's json module accepts: nesting deeper than 64 levels,
duplicate keys (Swift compares keys as Swift strings, so canonically equivalent ones collide),
NaN and Infinity, unpaired surrogate escapes. It reads a string's bytes as UTF-8 only inside
strings. Its values, in Python: dict (keys in file order), list, str, bool, None, int (an
integral literal; Swift's `.number(_, int:)` when it fits an Int64, which the decoder checks)
and Number (a fraction or an exponent).

`parse` tries the json module first (fast, C), with hooks that turn everything Swift would refuse
into a retry with `Reader`, a transliteration of the Swift reader that finds Swift's error at
Swift's position. Memory stays proportional to the file: the tree, nothing sized by its values.
"""

import json
import re
import unicodedata

import numpy as np

__all__ = ["JSONSyntaxError", "Number", "parse", "MAX_DEPTH", "INT64_MIN", "INT64_MAX"]

MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


class JSONSyntaxError(Exception):
    def __init__(self, line, column, message):
        super().__init__(f"line {line}, column {column}: {message}")
        self.line, self.column, self.message = line, column, message


def float_text(x):
    """A C float as calibc writes it (Swift's Float description: the shortest digits that read
    back to it, positional below 2^24)."""
    x = np.float32(x)
    text = str(x)
    if "e+" in text and abs(x) < 2 ** 24:
        text = np.format_float_positional(x, unique=True, trim="0")
    return text


class Number:
    """A JSON number that calibc does not read as an integer: a fraction or exponent, or an
    integral literal beyond Int64."""
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return f"Number({self.text!r})"

    def __eq__(self, other):
        return isinstance(other, Number) and float(self.text) == float(other.text)

    def __hash__(self):
        return hash(float(self.text))


def integer(text):
    """An integral literal (optional '-', digits) as Swift reads it: an int when it fits Int64."""
    digits = len(text) - (text[0] == "-")
    if digits <= 18:
        return int(text)
    if digits <= 20:
        v = int(text)
        if INT64_MIN <= v <= INT64_MAX:
            return v
    return Number(text)


def key_of(s):
    """A key as Swift's String equality sees it (canonical equivalence)."""
    return s if s.isascii() else unicodedata.normalize("NFC", s)


# ---- the fast path: the json module, and a retry wherever Swift might disagree ----

class _Retry(Exception):
    pass


def _pairs(pairs):
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _Retry
    if not "".join(d).isascii() and len({key_of(k) for k in d}) != len(d):
        raise _Retry
    return d


def _constant(_name):
    raise _Retry


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def _bracket_depth(data):
    """The most containers open at once in valid JSON `data` (strings left out)."""
    a = np.frombuffer(_STRING.sub(b"", data), dtype=np.uint8)
    depth = best = 0
    for at in range(0, len(a), 1 << 22):
        c = a[at:at + (1 << 22)]
        step = (c == 0x5B).astype(np.int32) + (c == 0x7B) - (c == 0x5D) - (c == 0x7D)
        running = np.cumsum(step) + depth
        if len(running):
            best, depth = max(best, int(running.max())), int(running[-1])
    return best


class Parsed:
    """A parsed tree, and whether a refusal of it must first be checked for nesting that the fast
    path does not measure (see `check_depth`)."""

    def __init__(self, value, data, fast):
        self.value, self._data, self._fast = value, data, fast

    def check_depth(self):
        """Raises Swift's syntax error if the file nests deeper than Swift reads; True when the
        tree was read again (the exact way). Called only before reporting a refusal of the
        contents: a file the decoder accepts nests at most 6 deep, and Swift reads the whole
        file before it decodes any of it."""
        if self._fast and _bracket_depth(self._data) >= MAX_DEPTH:
            self.value = Reader(self._data).parse()
            self._fast = False
            return True
        return False


def parse(data):
    """The tree of `data` (bytes), or JSONSyntaxError as calibc reports it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not _SURROGATE_ESCAPE.search(data):
        try:
            value = json.loads(text, object_pairs_hook=_pairs, parse_float=Number,
                               parse_constant=_constant)
            return Parsed(value, data, True)
        except (_Retry, ValueError, RecursionError):
            pass
    return Parsed(Reader(data).parse(), data, False)


# ---- the exact path: Swift's reader, line for line ----

_SPACE = re.compile(rb"[ \n\r\t]*")
_PLAIN_STRING = re.compile(rb'[\x20\x21\x23-\x5b\x5d-\x7f]*"')
_DIGITS = re.compile(rb"[0-9]*")
_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}


class Reader:
    def __init__(self, b):
        self.b, self.i, self.n = b, 0, len(b)

    def fail(self, message):
        i = min(self.i, self.n)
        line = self.b.count(b"\n", 0, i) + 1
        column = i - self.b.rfind(b"\n", 0, i)
        return JSONSyntaxError(line, column, message)

    def parse(self):
        self.skip()
        value = self.value(0)
        self.skip()
        if self.i != self.n:
            raise self.fail("unexpected text after the top-level value")
        return value

    def skip(self):
        self.i = _SPACE.match(self.b, self.i).end()

    def literal(self, word, value):
        for c in word:
            if not (self.i < self.n and self.b[self.i] == c):
                raise self.fail(f"invalid literal, expected '{word.decode()}'")
            self.i += 1
        return value

    def value(self, depth):
        b = self.b
        if depth >= MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH} levels")
        if self.i >= self.n:
            raise self.fail("unexpected end of input, expected a value")
        c = b[self.i]
        if c == 0x7B:  # {
            self.i += 1
            members, seen = {}, set()
            self.skip()
            if self.i < self.n and b[self.i] == 0x7D:
                self.i += 1
                return members
            while True:
                self.skip()
                if not (self.i < self.n and b[self.i] == 0x22):
                    raise self.fail("expected a string key")
                key_start = self.i
                key = self.string()
                k = key_of(key)
                if k in seen:
                    self.i = key_start
                    raise self.fail(f'duplicate key "{key}"')
                seen.add(k)
                self.skip()
                if not (self.i < self.n and b[self.i] == 0x3A):
                    raise self.fail("expected ':' after a key")
                self.i += 1
                self.skip()
                members[key] = self.value(depth + 1)
                self.skip()
                if self.i >= self.n:
                    raise self.fail("unexpected end of input, expected ',' or '}'")
                if b[self.i] == 0x2C:
                    self.i += 1
                    continue
                if b[self.i] == 0x7D:
                    self.i += 1
                    return members
                raise self.fail("expected ',' or '}'")
        if c == 0x5B:  # [
            self.i += 1
            self.skip()
            if self.i < self.n and b[self.i] == 0x5D:
                self.i += 1
                return []
            flat = self.integers()
            if flat is not None:
                return flat
            flat = self.pairs()
            if flat is not None:
                return [[flat[j], flat[j + 1]] for j in range(0, len(flat), 2)]
            items = []
            while True:
                self.skip()
                items.append(self.value(depth + 1))
                self.skip()
                if self.i >= self.n:
                    raise self.fail("unexpected end of input, expected ',' or ']'")
                if b[self.i] == 0x2C:
                    self.i += 1
                    continue
                if b[self.i] == 0x5D:
                    self.i += 1
                    return items
                raise self.fail("expected ',' or ']'")
        if c == 0x22:
            return self.string()
        if c == 0x74:
            return self.literal(b"true", True)
        if c == 0x66:
            return self.literal(b"false", False)
        if c == 0x6E:
            return self.literal(b"null", None)
        return self.number()

    def plain_integer(self):
        """An integer literal of at most 18 digits (after spaces), consuming it and the spaces
        after; None when the value is anything else (the caller rewinds)."""
        b, n = self.b, self.n
        self.skip()
        negative = self.i < n and b[self.i] == 0x2D
        if negative:
            self.i += 1
        digits = self.i
        end = _DIGITS.match(b, digits).end()
        self.i = min(end, digits + 18)
        i = self.i
        if not (i > digits and i < n and b[i] not in b".eE" and not 0x30 <= b[i] <= 0x39
                and (b[digits] != 0x30 or i == digits + 1)):
            return None
        v = int(b[digits:i])
        self.skip()
        return -v if negative else v

    def take(self, c):
        self.skip()
        if self.i < self.n and self.b[self.i] == c:
            self.i += 1
            return True
        return False

    def integers(self):
        start, values = self.i, []
        while True:
            v = self.plain_integer()
            if v is None:
                break
            values.append(v)
            if self.take(0x2C):
                continue
            if self.take(0x5D):
                return values
            break
        self.i = start
        return None

    def pairs(self):
        start, flat = self.i, []
        while self.take(0x5B):
            a = self.plain_integer()
            if a is None or not self.take(0x2C):
                break
            b2 = self.plain_integer()
            if b2 is None or not self.take(0x5D):
                break
            flat += (a, b2)
            if self.take(0x2C):
                continue
            if self.take(0x5D):
                return flat
            break
        self.i = start
        return None

    def number(self):
        b, n = self.b, self.n
        start = self.i
        integral = True
        if self.i < n and b[self.i] == 0x2D:
            self.i += 1
        digits_start = self.i
        self.i = _DIGITS.match(b, self.i).end()
        if self.i == digits_start:
            raise self.fail("expected a value")
        if b[digits_start] == 0x30 and self.i != digits_start + 1:
            self.i = digits_start
            raise self.fail("leading zeros are not allowed")
        if self.i < n and b[self.i] == 0x2E:
            integral = False
            self.i += 1
            f = self.i
            self.i = _DIGITS.match(b, self.i).end()
            if self.i == f:
                raise self.fail("expected digits after '.'")
        if self.i < n and b[self.i] in b"eE":
            integral = False
            self.i += 1
            if self.i < n and b[self.i] in b"+-":
                self.i += 1
            e = self.i
            self.i = _DIGITS.match(b, self.i).end()
            if self.i == e:
                raise self.fail("expected digits in the exponent")
        text = b[start:self.i].decode("ascii")
        return integer(text) if integral else Number(text)

    def string(self):
        b, n = self.b, self.n
        self.i += 1  # the opening quote
        m = _PLAIN_STRING.match(b, self.i)
        if m:
            s = b[self.i:m.end() - 1].decode("ascii")
            self.i = m.end()
            return s
        out = bytearray()
        while True:
            if self.i >= n:
                raise self.fail("unterminated string")
            c = b[self.i]
            if c == 0x22:
                self.i += 1
                break
            if c < 0x20:
                raise self.fail("control character in string")
            if c != 0x5C:
                out.append(c)
                self.i += 1
                continue
            self.i += 1
            if self.i >= n:
                raise self.fail("unterminated string")
            e = b[self.i]
            self.i += 1
            if e in b'"\\/':
                out.append(e)
            elif e in b"bfnrt":
                out.append({0x62: 0x08, 0x66: 0x0C, 0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09}[e])
            elif e == 0x75:
                scalar = self.hex4()
                if 0xD800 <= scalar < 0xDC00:
                    if not (self.i + 1 < n and b[self.i] == 0x5C and b[self.i + 1] == 0x75):
                        raise self.fail("unpaired surrogate in string")
                    self.i += 2
                    low = self.hex4()
                    if not 0xDC00 <= low < 0xE000:
                        raise self.fail("unpaired surrogate in string")
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                if 0xD800 <= scalar < 0xE000:
                    raise self.fail("invalid \\u escape")
                out += chr(scalar).encode("utf-8")
            else:
                raise self.fail("invalid escape in string")
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("string is not valid UTF-8") from None

    def hex4(self):
        b = self.b
        if self.i + 4 > self.n:
            raise self.fail("truncated \\u escape")
        v = 0
        for _ in range(4):
            d = _HEX.get(b[self.i])
            if d is None:
                raise self.fail("invalid \\u escape")
            v = v << 4 | d
            self.i += 1
        return v
