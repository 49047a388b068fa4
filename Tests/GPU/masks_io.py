"""Reads masks.json (format 1) into per-(step, layer, head) block masks with numpy."""
import base64, json
import numpy as np


def _select(sel, values):
    if sel == "*":
        return list(values)
    out = []
    for part in str(sel).split(","):
        part = part.strip()
        if "-" in part[1:]:
            a, b = part.split("-", 1) if not part.startswith("-") else (part, part)
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


class Masks:
    def __init__(self, path):
        with open(path) as f:
            d = json.load(f)
        self.tokens, self.block, self.heads, self.layers = d["tokens"], d["block"], d["heads"], d["layers"]
        self.head_dim, self.steps = d["head_dim"], d["timesteps"]
        self.nb = -(-self.tokens // self.block)
        self.patterns = d["patterns"]
        self.assign = {}
        for a in d["assignments"]:
            for s in _select(a["steps"], self.steps):
                for l in _select(a["layers"], range(self.layers)):
                    for h in _select(a["heads"], range(self.heads)):
                        self.assign[(s, l, h)] = a["pattern"]
        self._cache = {}

    def pattern(self, name):
        """(kept bool [nb, nb], reuse dict target -> final source)."""
        if name in self._cache:
            return self._cache[name]
        nb = self.nb
        if name == "dense":
            r = (np.ones((nb, nb), dtype=bool), {})
        else:
            p = self.patterns[name]
            if "bitmap" in p:
                raw = np.frombuffer(base64.b64decode(p["bitmap"]), dtype=np.uint8).reshape(nb, -1)
                m = np.unpackbits(raw, axis=1, bitorder="little")[:, :nb].astype(bool)
            else:
                m = np.zeros((nb, nb), dtype=bool)
                for q, spans in enumerate(p["rows"]):
                    for lo, hi in spans:
                        m[q, lo:hi] = True
            reuse = {t: s for t, s in p.get("reuse", [])}
            for t in list(reuse):  # collapse chains
                s = reuse[t]
                while s in reuse:
                    s = reuse[s]
                reuse[t] = s
            r = (m, reuse)
        self._cache[name] = r
        return r

    def head(self, step, layer, h):
        return self.pattern(self.assign[(step, layer, h)])

    def effective(self, step, layer, h):
        """Kept tiles with each reused row given its source's key blocks (what flex computes)."""
        m, reuse = self.head(step, layer, h)
        m = m.copy()
        for t, s in reuse.items():
            m[t] = m[s]
        return m

    def density(self, step, layer):
        """Computed tiles over all tiles, averaged over heads (what calibc computes)."""
        return float(np.mean([self.head(step, layer, h)[0].mean() for h in range(self.heads)]))
