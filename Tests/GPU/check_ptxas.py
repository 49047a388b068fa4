#!/usr/bin/env python3
"""Fails when a kernel whose name contains NAME spills, has a stack frame, or draws a ptxas
"Potential Performance Loss" warning (wgmma serialized: C7510-C7519) in a ptxas -v log; with
--setmaxnreg SOURCE, also when the register counts SOURCE's warpgroups ask for with setmaxnreg
(one warpgroup decreases, the others increase) exceed what the launch gives the CTA (its threads
× the registers ptxas reports at entry): the last increase would then wait forever, a hang no
output check can report.
usage: check_ptxas.py ptxas.log NAME [--setmaxnreg SOURCE]"""
import re, sys

log, name = sys.argv[1], sys.argv[2]
text = open(log).read()
budget = None
if "--setmaxnreg" in sys.argv:
    source = open(sys.argv[sys.argv.index("--setmaxnreg") + 1]).read()
    threads = int(re.search(r"__launch_bounds__\((\d+)", source).group(1))
    dec = [int(n) for n in re.findall(r"setmaxnreg\.dec\.sync\.aligned\.u32 (\d+)", source)]
    inc = [int(n) for n in re.findall(r"setmaxnreg\.inc\.sync\.aligned\.u32 (\d+)", source)]
    if len(dec) != 1 or len(inc) != 1:
        sys.exit(f"expected one setmaxnreg.dec and one .inc in {sys.argv[sys.argv.index('--setmaxnreg') + 1]}")
    budget = (threads, dec[0], inc[0])
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
    if budget and regs:
        threads, dec, inc = budget
        asked, given = 128 * dec + (threads - 128) * inc, threads * int(regs.group(1))
        if asked > given:
            bad.append(f"{fn}: setmaxnreg asks for 128 x {dec} + {threads - 128} x {inc} = {asked} registers, "
                       f"the CTA has {threads} x {regs.group(1)} = {given}")
for warning in re.findall(r"Potential Performance Loss: (.*)", text):
    if name in warning:
        bad.append(warning)
if not found:
    sys.exit(f"no kernel named *{name}* in {log}")
if bad:
    sys.exit("\n".join(bad))
print(f"{name}: no spills, no serialized wgmma")
