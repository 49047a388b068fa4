#!/usr/bin/env python3
"""Fails when a kernel whose name contains NAME spills, has a stack frame, or draws a ptxas
"Potential Performance Loss" warning (wgmma serialized: C7510-C7519) in a ptxas -v log.
usage: check_ptxas.py ptxas.log NAME"""
import re, sys

log, name = sys.argv[1], sys.argv[2]
text = open(log).read()
# Each entry's report runs from its "Compiling entry function" line to the next one.
entries = re.split(r"(?=ptxas info\s+: Compiling entry function ')", text)
found, bad = 0, []
for entry in entries:
    m = re.match(r"ptxas info\s+: Compiling entry function '([^']+)'", entry)
    if not m or name not in m.group(1):
        continue
    fn = m.group(1)
    found += 1
    props = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", entry)
    regs = re.search(r"Used (\d+) registers", entry)
    frame, st, ld = map(int, props.groups()) if props else (0, 0, 0)
    print(f"{fn}: {regs.group(1) if regs else '?'} registers, stack {frame}, spill stores {st}, loads {ld}")
    if frame or st or ld:
        bad.append(f"spills in {fn}")
for warning in re.findall(r"Potential Performance Loss: (.*)", text):
    if name in warning:
        bad.append(warning)
if not found:
    sys.exit(f"no kernel named *{name}* in {log}")
if bad:
    sys.exit("\n".join(bad))
print(f"{name}: no spills, no serialized wgmma")
