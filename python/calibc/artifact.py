"""Kernels for several token grids of one model: what `calibc compile a.json b.json -o DIR`
writes (DIR/<shape>/ each, DIR/shapes.json listing them), or one library.

    kernels = calibc.Artifact.load("DIR", calibc.load_cuda)       # or a single libcalibcuda.so
    lib = kernels.pick(tokens=75600, grid=(21, 45, 80))            # None: no plans for this shape

A call picks by its token grid (frames, height, width after patching) where the masks gave one,
else by its token count. The diffusers processor takes an artifact wherever it takes a library.
"""

import json
import os

from .errors import CalibError

__all__ = ["Artifact"]


class Artifact:
    """`entries`: [(grid (frames, height, width) or None, Library)] of one model."""

    def __init__(self, entries, path):
        self.entries, self.path = list(entries), path
        first = self.entries[0][1]
        self.device, self.dtypes = first.device, first.dtypes
        self.heads, self.head_dim, self.layers = first.heads, first.head_dim, first.layers

    @classmethod
    def load(cls, path, load_library):
        """The artifact at `path` (a directory with shapes.json) or a single library file, each
        library loaded by `load_library`."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            return cls([(None, load_library(path))], path)
        index = os.path.join(path, "shapes.json")
        try:
            with open(index) as f:
                doc = json.load(f)
            shapes = doc["shapes"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CalibError(-1, f"{index}: not an artifact calibc wrote ({e})") from None
        entries = []
        for s in shapes:
            grid = (s["frames"], s["height"], s["width"]) if "frames" in s else None
            library = load_library(os.path.join(path, s["library"]))
            if library.mask_sha256 != s["mask_sha256"] or library.tokens != s["tokens"]:
                raise CalibError(-1, f"{path}: {s['library']} is not the library shapes.json lists (compile the "
                                     "artifact again)")
            entries.append((grid, library))
        return cls(entries, path)

    def pick(self, tokens, grid=None):
        """The library for a call of `tokens` tokens on latent `grid`, or None."""
        for g, library in self.entries:
            if library.tokens == tokens and (g is None or grid is None or tuple(grid) == g):
                return library
        return None

    def shapes(self):
        """The shapes it holds, as a warning names them."""
        return ", ".join(f"{lib.tokens} tokens" + (f" ({g[0]} × {g[1]} × {g[2]})" if g else "")
                         for g, lib in self.entries)

    @property
    def libraries(self):
        return [library for _, library in self.entries]
