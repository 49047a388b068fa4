#!/usr/bin/env python3
"""Issue 29, no GPU: how much of a layer's K and V the L2 must re-read from memory under the work order
work.cuh builds, as a model. The list (groups of heads whose 16-bit K and V fit in L2, 16 cost
classes heaviest first, taken by persistent CTAs in a snake unless an order says otherwise) is run
in time, a kept tile a unit and an item's start one more, and each tile's (head, key block) goes
through an LRU cache of the L2's size in 16-bit K and V blocks (64 KB at head_dim 128). It prints
misses per kept tile for the walks as the kernel takes them and for the orders the queue weighs:
each row's first half of its kept blocks (half-span) or every other one (half-stride), as
ablate.py's variants of those names run them, two passes over each head's key halves (split: every
row, a head's first halves then its second), the split lists the kernel takes (v25: scattered rows,
a head's second halves after the next head's first halves), those lists with each item claimed by
the CTA free first rather than in the snake (v25-claimed) or as the wgmma kernel's counter hands
them out (v25-counter: CTA c starts with item c and takes each next as it starts one; kernel-counter
the unsplit lists so), and FlashAttention-4's grid (fa4). Run 82 measured the memory busy 2%
(dense), 4-5% (calibrated-like 0.5), 23% (scattered 0.5) and 34% (scattered 0.1) at Wan 14B.
usage: PYTHONPATH=python python3 Tests/GPU/working_set.py MASKS.json LAYER... [--heads N] [--ctas C] [--l2-mb M ...]
    [--group G] [--streams] [--orders NAME ...]"""
import argparse
import heapq
from collections import OrderedDict

import numpy as np

import calibc


def work_list(masks, step, layer, heads, group, rows_of, lag=False, fa4=False):
    """(head, query block, kept key blocks in walk order, part) in work.cuh's order; rows_of(kept
    blocks of a row) gives the row's items as (blocks, part), part 0 the whole row, else its pass.
    lag: v25's split lists, a head's second halves (part 2) after the next head's first. fa4:
    FlashAttention-4's grid instead, rows in order, each walked from its last key block down."""
    entries = []
    for h in range(heads):
        p = masks.pattern(step, layer, h)
        reused = set(p.reuse)
        for qb in range(p.blocks):
            if qb in reused:
                continue
            for blocks, part in rows_of(np.flatnonzero(p.kept[qb])):
                if len(blocks):
                    entries.append((len(blocks), part, h, qb, blocks))
    if fa4:
        return [(h, qb, blocks[::-1], part) for _, part, h, qb, blocks in entries]
    max_cost = max(e[0] for e in entries)
    # Stable: within a group, a pass's items before the next pass's, heaviest class first.
    if lag:
        entries.sort(key=lambda e: (2 * e[2] + 3 if e[1] == 2 else 2 * e[2], -(e[0] * 16 // (max_cost + 1))))
    else:
        entries.sort(key=lambda e: (e[2] // group, e[1], -(e[0] * 16 // (max_cost + 1))))
    return [(h, qb, blocks, part) for _, part, h, qb, blocks in entries]


def schedule(items, ctas, dynamic):
    """Each item's (CTA, start): the snake order over persistent CTAs (the mma kernel's), or with
    dynamic "free" each item to the CTA free first, as a grid of one CTA an item runs, or with
    "start" CTA c's first item c and each next to the CTA that starts an item first (the wgmma
    kernel's counter, which a CTA's producer takes its next item from as it starts one)."""
    if dynamic == "start":
        claims = [(0, c) for c in range(ctas)]
        ends = [0] * ctas
        out = []
        for i, (_, _, blocks, _) in enumerate(items):
            c = i if i < ctas else heapq.heappop(claims)[1]
            out.append((c, ends[c]))
            if i >= ctas:
                heapq.heappush(claims, (ends[c], c))
            ends[c] += 1 + len(blocks)
        return out
    if dynamic:
        free = [(0, c) for c in range(ctas)]
        out = []
        for _, _, blocks, _ in items:
            t, c = heapq.heappop(free)
            out.append((c, t))
            heapq.heappush(free, (t + 1 + len(blocks), c))
        return out
    out = [None] * len(items)
    for c in range(ctas):
        t, r = 0, 0
        while True:
            i = r * ctas + (ctas - 1 - c if r & 1 else c)
            if i >= len(items):
                break
            out[i] = (c, t)
            t += 1 + len(items[i][2])
            r += 1
    return out


def misses(items, ctas, capacity, streams=False, dynamic=False):
    """Misses per kept tile of an LRU of `capacity` blocks over the CTAs' tiles in time order. With
    streams, each item's Q (half a block, read at its start), its output (half a block, written at
    its end) and a split row's state (69.6 KB: written by its first half, read by its second) go
    through the LRU too, as they do without cache hints; only K and V's misses are counted."""
    accesses = []
    state = 69.6 / 64 if streams else 0
    for (c, t), (h, qb, blocks, part) in zip(schedule(items, ctas, dynamic), items):
        if streams:
            accesses.append((t, c, ("q", h, qb, part), 0.5))
            if part == 2:
                accesses.append((t, c, ("s", h, qb), state))
        t += 1
        for j, kb in enumerate(blocks):
            accesses.append((t + j, c, (h, int(kb)), 1.0))
        t += len(blocks)
        if streams:
            accesses.append((t, c, ("o", h, qb, part), 0.5 if part != 1 else 0))
            if part == 1:
                accesses.append((t, c, ("s", h, qb), state))
    accesses.sort(key=lambda a: a[:2])
    cache, held, miss, tiles = OrderedDict(), 0.0, 0, 0
    for _, _, key, size in accesses:
        kv = not isinstance(key[0], str)
        tiles += kv
        if key in cache:
            cache.move_to_end(key)
            continue
        miss += kv
        cache[key] = size
        held += size
        while held > capacity:
            held -= cache.popitem(last=False)[1]
    return miss / tiles


def v25_rows(kept, mid):
    """work.cuh's split rows (v25): a row of 96 kept blocks or more in runs of 3 or fewer on
    average, with a quarter of its blocks on each side, is two items; one wholly past the middle
    goes with the second halves."""
    low = int((kept < mid).sum())
    spans = int((np.diff(kept) > 1).sum()) + 1 if len(kept) else 0
    if len(kept) >= 96 and len(kept) <= 3 * spans and 4 * low >= len(kept) and 4 * (len(kept) - low) >= len(kept):
        return [(kept[kept < mid], 1), (kept[kept >= mid], 2)]
    return [(kept, 2 if low == 0 else 0)]


ORDERS = {  # name: (rows_of, list: "lag" v25's, "fa4" FA4's grid, else work.cuh's; items taken in
    # the snake (False), by the CTA free first ("free") or from the wgmma kernel's counter ("start"))
    "kernel": (lambda kept, mid: [(kept, 0)], "", False),
    "kernel-counter": (lambda kept, mid: [(kept, 0)], "", "start"),
    "half-span": (lambda kept, mid: [(kept[:(len(kept) + 1) // 2], 0)], "", False),
    "half-stride": (lambda kept, mid: [(kept[::2], 0)], "", False),
    "split": (lambda kept, mid: [(kept[kept < mid], 1), (kept[kept >= mid], 2)], "", False),
    "v25": (v25_rows, "lag", False),
    "v25-claimed": (v25_rows, "lag", "free"),
    "v25-counter": (v25_rows, "lag", "start"),
    "fa4": (lambda kept, mid: [(kept, 0)], "fa4", "free"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("masks")
    ap.add_argument("layers", type=int, nargs="+")
    ap.add_argument("--heads", type=int, default=4, help="the first N heads (the order repeats per group)")
    ap.add_argument("--ctas", type=int, default=132)
    ap.add_argument("--l2-mb", type=float, nargs="+", default=[25.0, 50.0])
    ap.add_argument("--streams", action="store_true", help="also with Q, the outputs and split state in the LRU")
    ap.add_argument("--orders", nargs="+", choices=list(ORDERS), default=list(ORDERS))
    ap.add_argument("--group", type=int, help="heads a group (default: as work.cuh takes them for the largest L2)")
    a = ap.parse_args()
    masks = calibc.Masks.read(a.masks)
    step = masks.timesteps[0]
    block_bytes = masks.block * masks.head_dim * 2 * 2
    group = a.group or max(1, int(max(a.l2_mb) * 2**20) // (masks.tokens * masks.head_dim * 4))
    print(f"{a.masks}: {masks.tokens} tokens, blocks of {masks.block}; a head's K and V "
          f"{masks.tokens * masks.head_dim * 4 / 2**20:.1f} MiB, groups of {group}; misses per kept tile (LRU of "
          + ", ".join(f"{m:g}" for m in a.l2_mb) + " MiB)")
    for layer in a.layers:
        mid = masks.pattern(step, layer, 0).blocks // 2
        for name in a.orders:
            rows_of, order, claimed = ORDERS[name]
            items = work_list(masks, step, layer, min(a.heads, masks.heads), 1 if order else group,
                              lambda kept: rows_of(kept, mid), order == "lag", order == "fa4")
            for streams in (False, True) if a.streams else (False,):
                rates = [misses(items, a.ctas, int(m * 2**20) // block_bytes, streams, claimed) for m in a.l2_mb]
                print(f"layer {layer} {name + (' +streams' if streams else ''):20s} " + "  ".join(f"{r:.4f}" for r in rates), flush=True)


if __name__ == "__main__":
    main()
