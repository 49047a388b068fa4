#!/usr/bin/env python3
"""Nsight Compute's warp stall samples of the attention launch's main loop, by part of a turn
(queue_run.sh stalls writes PRECISION-sass.csv: `ncu --import R --page source --csv --print-source
sass`). The loop is the body that sass_loop.py finds; its parts are cut at the instructions that
end each wait: the K and V barriers (SYNCS … TRYWAIT), P V(j-2) (WARPGROUP.DEPBAR.LE gsb0, 0x0),
the packing of P (to the first WARPGROUP.ARRIVE), the products' issue (to the last GMMA), Q K(j)
(WARPGROUP.DEPBAR.LE gsb0, 0x1) and the softmax (the rest). For each part: its share of the
loop's samples and of each stall reason, and its five instructions sampled most.
usage: stall_table.py PRECISION-sass.csv"""
import csv, re, sys
from collections import Counter, defaultdict

rows = list(csv.reader(open(sys.argv[1], newline="")))
head = next(i for i, r in enumerate(rows) if any(c.strip().lower() == "address" for c in r))
cols = [c.strip() for c in rows[head]]
addr_col = next(i for i, c in enumerate(cols) if c.lower() == "address")
src_col = next(i for i, c in enumerate(cols) if c.lower() == "source")
all_col = next(i for i, c in enumerate(cols) if "Warp Stall Sampling (All" in c)
reason_cols = [i for i, c in enumerate(cols) if c.startswith("stall_") or re.match(r"^smsp__pcsamp_warps_issue_stalled_", c)]


def num(x):
    try:
        return float(x.replace(",", ""))
    except ValueError:
        return 0.0


ins = []
for r in rows[head + 1:]:
    if len(r) <= max(addr_col, src_col, all_col):
        continue
    try:
        a = int(r[addr_col], 16)
    except ValueError:
        continue
    ins.append((a, r[src_col].strip(), num(r[all_col]), {cols[i]: num(r[i]) for i in reason_cols}))
ins.sort()
# The loop: the shortest backward branch over at least 8 GMMA.
best = None
for i, (a, s, _, _) in enumerate(ins):
    m = re.search(r"BRA\b.*?(0x[0-9a-f]+|`\(\.L_x_\d+\))", s)
    if not m or not m.group(1).startswith("0x"):
        continue
    t = int(m.group(1), 16)
    if t >= a:
        continue
    body = [x for x in ins if t <= x[0] <= a]
    if sum("GMMA" in x[1] for x in body) >= 8 and (best is None or len(body) < len(best)):
        best = body
if best is None:
    sys.exit("no loop with 8 GMMA found (are branch targets addresses in this CSV?)")
parts, part = [], "K"
for a, s, n, rs in best:
    parts.append((part, a, s, n, rs))
    if "TRYWAIT" in s and part in ("K", "V"):
        part = "V" if part == "K" else "P V(j-2)"
    elif "DEPBAR" in s and s.rstrip().endswith("0x0") and part == "P V(j-2)":
        part = "P packed"
    elif "WARPGROUP.ARRIVE" in s and part == "P packed":
        part = "issue"
    elif "DEPBAR" in s and s.rstrip().endswith("0x1"):
        part = "softmax"
        parts[-1] = ("Q K(j)", a, s, n, rs)
order = ["K", "V", "P V(j-2)", "P packed", "issue", "Q K(j)", "softmax"]
total = sum(p[3] for p in parts) or 1
by = defaultdict(Counter)
for p, a, s, n, rs in parts:
    by[p]["all"] += n
    for k, v in rs.items():
        by[p][k] += v
reasons = sorted({k for c in by.values() for k in c if k != "all"}, key=lambda k: -sum(by[p][k] for p in by))[:8]
short = lambda k: re.sub(r"^(smsp__pcsamp_warps_issue_stalled_|stall_)", "", k)
print(f"{sys.argv[1]}: loop of {len(best)} instructions, {int(total)} samples")
print("part | share | " + " | ".join(short(k) for k in reasons))
for p in order:
    c = by[p]
    print(f"{p} | {c['all'] / total:.3f} | " + " | ".join(f"{c[k] / total:.3f}" for k in reasons))
for p in order:
    top = sorted((x for x in parts if x[0] == p), key=lambda x: -x[3])[:5]
    print(f"== {p}: " + "; ".join(f"{x[1]:05x} {x[2][:48]} {x[3] / total:.3f}" for x in top if x[3] > 0))
