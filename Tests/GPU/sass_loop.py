#!/usr/bin/env python3
"""The main loop of an attention kernel in `nvdisasm -c` output: the shortest backward branch
whose body holds at least 8 tensor-core products (HGMMA, or QGMMA for FP8) and 60 MUFU.EX2 (or,
for P's e4m3 codes made with no exponential, 120 FFMA, or 60 FFMA and 30 F2FP where branch
fp8-half-codes makes them in halves), without a block it branches over that holds more than 30
FSEL (calibc's column mask, which full tiles skip). Prints the body's instruction mix and its
order, one character an instruction, so two kernels' loops can be read side by side (issue 29:
docs/gpu.md "FA4's loop beside calibc's"), then each block the body branches over and its size:
what a warp runs in the common case is the body less those it skips there (docs/gpu.md, "The
overlapped FP8 loop, compiled": the moved rows' packing, O's rescaling).
usage: sass_loop.py FILE.sass [NAME_PART]   (NAME_PART picks the kernel whose mangled name holds it)"""
import re, sys
from collections import Counter

CLASSES = ["GMMA", "MUFU.EX2", "FFMA", "FADD", "FMUL", "FMNMX", "F2FP", "SHFL", "BAR", "SYNCS",
           "WARPGROUP.DEPBAR", "WARPGROUP.ARRIVE", "FSETP", "FSEL", "VOTE", "BRA", "uniform", "other"]
SYMBOL = {"GMMA": "H", "MUFU.EX2": "E", "FFMA": "f", "FADD": "a", "FMUL": "m", "FMNMX": "x", "F2FP": "p",
          "SHFL": "s", "BAR": "B", "SYNCS": "Y", "WARPGROUP.DEPBAR": "D", "WARPGROUP.ARRIVE": "A"}


def kind(op):
    if op.endswith("GMMA") or ".GMMA" in op or op.split(".")[0] in ("HGMMA", "QGMMA"):
        return "GMMA"
    for c in CLASSES[1:-2]:
        if op == c or op.startswith(c + "."):
            return c
    return "uniform" if op.startswith("U") or op == "R2UR" else "other"


def functions(path):
    funcs, name = {}, None
    for line in open(path):
        m = re.match(r"\s*\.text\.(\S+):", line)
        if m:
            name = m.group(1)
            funcs[name] = []
        elif name:
            funcs[name].append(line)
    return funcs


def parse(lines):
    """[(address, opcode, text)] and {label: address of the instruction after it}."""
    code, labels, pending = [], {}, []
    for line in lines:
        m = re.match(r"\s*\.(L_x_\d+):", line)
        if m:
            pending.append(m.group(1))
            continue
        m = re.match(r"\s*/\*([0-9a-f]+)\*/\s+(.*?)\s*;", line)
        if m:
            text = re.sub(r"^@!?U?P\w+\s+", "", m.group(2))
            code.append((int(m.group(1), 16), text.split()[0], m.group(2)))
            for label in pending:
                labels[label] = code[-1][0]
            pending = []
    return code, labels


def loop_body(code, labels):
    best = None
    for addr, op, text in code:
        m = re.search(r"BRA\s+`?\(?\.(L_x_\d+)", text)
        if op != "BRA" or not m or labels.get(m.group(1), addr) >= addr:
            continue
        start = labels[m.group(1)]
        body = [c for c in code if start <= c[0] <= addr]
        ffma, f2fp = (sum(kind(c[1]) == k for c in body) for k in ("FFMA", "F2FP"))
        if (sum(kind(c[1]) == "GMMA" for c in body) >= 8
                and (sum(c[1] == "MUFU.EX2" for c in body) >= 60 or ffma >= 120 or (ffma >= 60 and f2fp >= 30))
                and (best is None or len(body) < len(best))):
            best = body
    if best is None:
        sys.exit("no loop with 8 tensor-core products and 60 exponentials (or 120 FFMA)")
    skipped = set()
    for addr, op, text in best:
        m = re.search(r"BRA\s+`?\(?\.(L_x_\d+)", text)
        end = labels.get(m.group(1), 0) if m else 0
        inner = [c for c in best if addr < c[0] < end]
        if addr < end <= best[-1][0] and sum(c[1] == "FSEL" for c in inner) > 30:
            skipped.update(c[0] for c in inner)
    return [c for c in best if c[0] not in skipped], len(skipped)


def main():
    funcs = functions(sys.argv[1])
    part = sys.argv[2] if len(sys.argv) > 2 else ""
    names = [n for n in funcs if part in n and any("MUFU.EX2" in line for line in funcs[n])]
    if len(names) != 1:
        sys.exit(f"{len(names)} kernels match {part!r}: " + ", ".join(n[:60] for n in names))
    code, labels = parse(funcs[names[0]])
    body, skipped = loop_body(code, labels)
    counts = Counter(kind(op) for _, op, _ in body)
    print(f"{names[0][:90]}: loop 0x{body[0][0]:x}-0x{body[-1][0]:x}, {len(body)} instructions"
          f"{f' (the column mask, {skipped} more, left out)' if skipped else ''}")
    print(" ".join(f"{c} {counts[c]}" for c in CLASSES if counts[c]))
    order = "".join(SYMBOL.get(kind(op), ".") for _, op, _ in body)
    for i in range(0, len(order), 100):
        print(f"{i:4} {order[i:i + 100]}")
    print("H product, E ex2, f FFMA, a FADD, m FMUL, x FMNMX, p F2FP, s SHFL, B BAR, Y SYNCS, D DEPBAR, A ARRIVE")
    for addr, size, ops in skips(body, labels):
        print(f"0x{addr:x} branches over {size}: " + " ".join(f"{op} {n}" for op, n in ops))


def skips(body, labels):
    """The forward branches inside the body: (address, instructions between it and its target,
    their four commonest opcodes)."""
    out = []
    for addr, op, text in body:
        m = re.search(r"BRA\s+(?:!?U?P\d+,\s*)?`?\(?\.(L_x_\d+)", text)
        end = labels.get(m.group(1), 0) if m and op == "BRA" else 0
        if addr < end <= body[-1][0]:
            inner = [o for a, o, _ in body if addr < a < end]
            out.append((addr, len(inner), Counter(o.split(".")[0] for o in inner).most_common(4)))
    return out


if __name__ == "__main__":
    main()
