#!/usr/bin/env python3
"""The two ceilings of the floors in docs/gpu.md, measured on the card: a large bf16 matrix
product (tensor-core rate) and a large device-to-device copy (bytes read + written / time)."""
import torch

dev = "cuda"


def timed(f, reps=10):
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(reps):
        f()
    e1.record()
    torch.cuda.synchronize()
    return e0.elapsed_time(e1) / reps


n = 8192
a, b = (torch.randn(n, n, device=dev, dtype=torch.bfloat16) for _ in range(2))
ms = timed(lambda: a @ b)
print(f"{torch.cuda.get_device_name()}: bf16 matmul {n}^3: {2 * n ** 3 / ms / 1e9:.0f} TFLOP/s")
x = torch.randn(1 << 30, device=dev, dtype=torch.bfloat16)  # 2 GiB
y = torch.empty_like(x)
ms = timed(lambda: y.copy_(x))
print(f"device copy 2 GiB: {2 * x.numel() * 2 / ms / 1e6:.0f} GB/s (read + write)")
