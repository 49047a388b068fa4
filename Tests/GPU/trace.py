#!/usr/bin/env python3
"""Per-item timeline of CTA 0 of the wgmma kernel, from a build with -DCALIB_CUDA_TRACE
(Tests/GPU/build.sh DIR -DCALIB_CUDA_TRACE): where the time of one query block goes, and inside
the turns of its second item what each waits on (CALIB_TURN in wgmma_kernel.cuh).
usage: PYTHONPATH=python trace.py DIR.so:masks.json LAYER... [--precision fp8|fp8-pv]"""
import ctypes, sys
import numpy as np
import torch
import calibc

precision = sys.argv[sys.argv.index("--precision") + 1] if "--precision" in sys.argv else None
layers = [int(a) for a in sys.argv[2:sys.argv.index("--precision") if precision else None]]
so, mj = sys.argv[1].split(":")
lib = calibc.load_cuda(so)
buf = (ctypes.c_longlong * 2048)()
B, H, N, D = 1, lib.heads, lib.tokens, lib.head_dim
q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
out = torch.empty_like(q)
for layer in layers:
    for _ in range(3):
        lib.attention_layer(lib.steps[0], layer, q, k, v, out=out, layout="bhsd", precision=precision)
    torch.cuda.synchronize()
    lib.lib.calib_cuda_trace_read(buf)
    t = np.array(buf[:], dtype=np.int64)
    print(f"layer {layer}: cycles per item of CTA 0: gap | wait Q | first Q K (with the previous block's stores) | "
          f"loop | epilogue (row sums, packing) | item total | key tiles, loop cycles a tile; producer Q waits")
    for wg in range(2):
        rows = t[wg * 256: wg * 256 + 256].reshape(32, 8)[:, :6]
        for r in range(1, 12):
            a = rows[r]
            if a[0] == 0 or a[4] == 0:
                break
            prev_end = rows[r - 1][4]
            print(f"  wg{wg + 1} item {r}: gap {a[0] - prev_end:6d} waitQ {a[1] - a[0]:6d} firstS {a[2] - a[1]:6d} "
                  f"loop {a[3] - a[2]:8d} epilogue {a[4] - a[3]:6d} total {a[4] - prev_end:8d} tiles {a[5]:4d} "
                  f"{(a[3] - a[2]) / max(a[5], 1):6.0f}")
    turns = t[1024:2048].reshape(8, 16, 8)
    if turns[:, :, 0].all():
        names = ["K", "V", "P V(j-2)", "P packed", "the other's turn and issue", "Q K(j)", "softmax"]
        print("  turns of item 1, tiles 8-23, cycles (median, min-max over 15 tiles): wait for " + ", ".join(names)
              + " | to the next turn | tile; then each mark's median lag behind the warpgroup's earliest warp")
        for wg in range(2):
            for w in range(4):
                m = turns[4 * wg + w]
                parts = [m[:-1, i + 1] - m[:-1, i] for i in range(7)] + [m[1:, 0] - m[:-1, 7], m[1:, 0] - m[:-1, 0]]
                lag = np.median(m - turns[4 * wg:4 * wg + 4].min(axis=0), axis=0).astype(int)
                print(f"  wg{wg + 1} warp {w}: " + " | ".join(f"{int(np.median(x))} ({int(x.min())}-{int(x.max())})" for x in parts)
                      + "; lag " + " ".join(str(x) for x in lag))
        # Where warpgroup 2's softmax starts within warpgroup 1's tile: 0 or a whole tile if the two
        # softmaxes run together (and share the schedulers), half a tile if they alternate.
        s1, s2 = turns[0, :, 6], turns[4, :, 6]
        tile = np.median(np.diff(s1))
        print(f"  wg2's softmax starts {int(np.median((s2 - s1) % tile))} cycles into wg1's tile of {int(tile)}")
    pr = t[512:768].reshape(64, 4)
    print("  producer q_empty waits:", [int(pr[r][1] - pr[r][0]) for r in range(1, 10)])
