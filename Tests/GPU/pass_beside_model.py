#!/usr/bin/env python3
"""What `fp8` would gain if a few CTAs of the attention launch ran the FP8 pass beside the others
(docs/gpu.md "Not done", "The pass beside the loop"), on a set's real plans, before anyone builds it.

Two schedules of one layer's items (a computed query block of a head: its kept key blocks, plus
the ≈2.3 blocks' worth an item costs to start and end, run 88), each item taken by the CTA free
first, in list order (head by head, heaviest first):
  now      the pass on the whole chip first (its measured time), then every item on every SM;
  beside   P CTAs run the pass head by head at P SMs' rate while the others start; a head's items
           wait for its pass; the P CTAs take items once the pass is done.
Rates from runs on an H100: the attention loop's time a block from `fp8` dense (run 74 at Wan 14B,
run 73 at 1.3B, less the pass); the pass's time on the whole chip (runs 74, 77-78); a SM's rate
with P SMs streaming (run 108, Tests/GPU/sm_bandwidth.cu), the pass taken as falling short of the
probe by the same factor on P SMs as on all of them. Efficiency = density × dense time ÷ time.
usage: PYTHONPATH=python python3 Tests/GPU/pass_beside_model.py .gpu/wan14b.json [P ...]"""
import heapq
import sys

import numpy as np

import calibc

SMS = 132
ITEM_OVERHEAD = 2.3
# tokens: (fp8 dense ms, of which the pass), H100
MEASURED = {75600: (112.5, 2.2), 32760: (6.71, 0.284)}
# run 108, 96 KB in flight a CTA: GB/s a SM while G SMs stream
SM_RATE = {1: 113.2, 4: 107.2, 8: 101.3, 12: 96.4, 16: 92.3, 24: 83.6, 32: 73.3, SMS: 22.4}


def sm_rate(g):
    keys = sorted(SM_RATE)
    return float(np.interp(g, keys, [SM_RATE[k] for k in keys]))


def items(pattern, heads):
    """(head, kept blocks) of every computed query block, head by head, heaviest first."""
    rows = [int(n) for q, n in enumerate(pattern.kept.sum(1)) if q not in pattern.reuse and n > 0]
    return [(h, n) for h in range(heads) for n in sorted(rows, reverse=True)]


def makespan(work, block_ms, free, ready):
    """List scheduling: each item to the CTA free first, starting when its head is ready."""
    heap = list(free)
    heapq.heapify(heap)
    end = 0.0
    for head, kept in work:
        t = max(heapq.heappop(heap), ready[head]) + (kept + ITEM_OVERHEAD) * block_ms
        heapq.heappush(heap, t)
        end = max(end, t)
    return end


def main():
    masks = calibc.Masks.read(sys.argv[1])
    ps = [int(p) for p in sys.argv[2:]] or [8, 12, 16, 24]
    dense_ms, pass_ms = MEASURED[masks.tokens]
    heads, blocks = masks.heads, masks.blocks
    block_ms = (dense_ms - pass_ms) * SMS / (heads * blocks * blocks)
    step = masks.timesteps[0]
    print(f"{sys.argv[1]}: {heads} heads, {blocks} blocks a side; a block {block_ms * 1e3:.3f} µs a CTA, "
          f"the pass {pass_ms} ms on {SMS} SMs\n")
    print("| layer | density | now ms | now eff. | " + " | ".join(f"P = {p}: ms, eff." for p in ps) + " |")
    print("|---|---|---|---|" + "---|" * len(ps))
    for layer in range(masks.layers):
        name, pattern = masks.pattern_name(step, layer, 0), masks.pattern(step, layer, 0)
        work = items(pattern, heads)
        density = pattern.density()
        now = makespan(work, block_ms, [pass_ms] * SMS, [0.0] * heads)
        cells = []
        for p in ps:
            pass_p = pass_ms * SMS * sm_rate(SMS) / (p * sm_rate(p))
            ready = [pass_p * (h + 1) / heads for h in range(heads)]
            t = makespan(work, block_ms, [0.0] * (SMS - p) + [pass_p] * p, ready)
            cells.append(f"{t:.2f}, {density * dense_ms / t:.2f}")
        print(f"| {name} | {density:.3f} | {now:.2f} | {density * dense_ms / now:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
