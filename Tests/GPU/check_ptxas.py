#!/usr/bin/env python3
"""Fails when a kernel whose name contains NAME spills or has a stack frame in a ptxas -v log.
usage: check_ptxas.py ptxas.log NAME"""
import re, sys

log, name = sys.argv[1], sys.argv[2]
text = open(log).read()
found, bad = 0, []
for m in re.finditer(r"Function properties for (\S+)\n\s+(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", text):
    fn, frame, st, ld = m.group(1), *map(int, m.groups()[1:])
    if name not in fn:
        continue
    found += 1
    regs = re.search(re.escape(fn) + r".*?Used (\d+) registers", text, re.S)
    print(f"{fn}: {regs.group(1) if regs else '?'} registers, stack {frame}, spill stores {st}, loads {ld}")
    if frame or st or ld:
        bad.append(fn)
if not found:
    sys.exit(f"no kernel named *{name}* in {log}")
if bad:
    sys.exit(f"spills in {', '.join(bad)}")
print(f"{name}: no spills")
