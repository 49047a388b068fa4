"""Calibration on the GPU (issue 16, item 3; docs/calibration.md section 8), three parts:

  check DIR   the Triton block mass against the C kernel's (`calibc synth --mass-block`) on the
              same bf16 q and k, and sampled rows against a float64 softmax of the same rows
  layer       one layer call at Wan 2.1 1.3B 480p and 14B 720p shapes: the model's attention
              (SDPA) against block mass (all rows, every 8th row) and the state fold
  model OUT   a randomly initialised diffusers Wan 2.1 1.3B at 480p: a denoising step (one
              transformer forward) plain against with `Calibrator` folding every layer, peak
              memory, and the state written to OUT/state.safetensors

Run on the GPU machine by Tests/GPU/calibrate_run.sh; inputs from `make calibrate-gpu-sources`.
"""

import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import calibc.triton_mass
from calibc.calibration import State, block_mass, sampled_rows, select_mass
from calibc.safetensors import read_header, read_tensor
from calibc.triton_mass import block_mass as triton_mass
from calibc.triton_mass import rows_within


def timed(fn, reps=5):
    """Median milliseconds of `reps` runs after two warm-ups, by CUDA events."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def float64_mass(q, k, block, step):
    """The definition, in float64 on the GPU, for the rows `sampled_rows` picks."""
    heads, tokens, dim = q.shape
    blocks = (tokens + block - 1) // block
    rows = sampled_rows(tokens, block, step, q.device)
    out = torch.zeros(heads, blocks, blocks, dtype=torch.float64, device=q.device)
    kd = k.double()
    for chunk in rows.split(1024):
        p = torch.softmax(torch.einsum("hid,hjd->hij", q[:, chunk].double(), kd) * dim ** -0.5, dim=-1)
        p = F.pad(p, (0, blocks * block - tokens))
        out.index_add_(1, chunk // block, p.view(heads, len(chunk), blocks, block).sum(-1))
    return out / torch.bincount(rows // block, minlength=blocks).view(1, -1, 1)


def check(directory):
    worst = {}
    for name in sorted(os.listdir(os.path.join(directory, "qk"))):
        qk, reduced = os.path.join(directory, "qk", name), os.path.join(directory, "mass", name)
        block = int(read_header(reduced)[0]["__metadata__"]["mass_block"])
        for tensor in sorted(t for t in read_header(qk)[0] if t.endswith(".q")):
            base = tensor[:-2]
            q = read_tensor(qk, base + ".q").cuda()
            k = read_tensor(qk, base + ".k").cuda()
            c_kernel = read_tensor(reduced, base + ".mass").cuda()
            e = (triton_mass(q, k, block) - c_kernel).abs().max().item()
            e8 = (triton_mass(q, k, block, step=8).double() - float64_mass(q, k, block, 8)).abs().max().item()
            # Reuse decisions at tolerances 10⁻⁹ either side of pairs' own distances: inside float32's
            # rounding, so the float64 recheck decides, and far outside float64's (whose summation
            # order alone would decide a tolerance exactly at a distance).
            upper = torch.triu_indices(c_kernel.shape[1], c_kernel.shape[1], 1, device="cuda")
            distance = torch.cdist(c_kernel.double(), c_kernel.double(), p=1)[:, upper[0], upper[1]]
            e_distance = 0
            near = distance.flatten()[:: max(1, distance.numel() // 25)].tolist()
            for tolerance in [d + e for d in near for e in (-1e-9, 1e-9)] + [0.02]:
                e_distance += (rows_within(c_kernel, upper, tolerance) != (distance <= tolerance)).sum().item()
            print(f"{name} {base}: heads {q.shape[0]}, tokens {q.shape[1]}, block {block}: |triton − C kernel| {e:.2e}, "
                  f"every 8th row |triton − float64| {e8:.2e}; reuse decisions unlike float64's {e_distance}")
            for key, value in (("C kernel", e), ("sampled", e8), ("distances", e_distance)):
                worst[key] = max(worst.get(key, 0.0), value)
    print("worst:", ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    assert worst and all(v < 1e-5 for v in worst.values()), worst


def layer():
    torch.manual_seed(0)
    print("per layer call, bf16, head_dim 128, blocks of 128 (ms, median of 5; random q and k: flat attention)")
    rows = {}
    for label, heads, tokens in (("wan1.3B-480p", 12, 32760), ("wan14B-720p", 40, 75600)):
        q, k, v = (torch.randn(1, tokens, heads, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        qh, kh = q[0].transpose(0, 1), k[0].transpose(0, 1)  # (H, S, D) views, as the recorder passes them
        r = rows[label] = {"SDPA": timed(lambda: F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)))}
        r["mass, all rows"] = timed(lambda: block_mass(qh, kh, 128), reps=3)
        default = dict(calibc.triton_mass.LAUNCH), calibc.triton_mass.ROWS_PER_PROGRAM
        for step in (8, 16):
            r[f"mass 1/{step} rows"] = timed(lambda: block_mass(qh, kh, 128, step=step))
            for rows_per_program, warps, stages in ((64, 4, 2), (64, 4, 3), (64, 8, 2), (128, 4, 2), (128, 8, 3)):
                calibc.triton_mass.LAUNCH = {"num_warps": warps, "num_stages": stages}
                calibc.triton_mass.ROWS_PER_PROGRAM = rows_per_program
                ms = timed(lambda: block_mass(qh, kh, 128, step=step))
                print(f"  {label} mass every {step}th row, {rows_per_program} rows a program, num_warps {warps}, "
                      f"num_stages {stages}: {ms:.2f} ms (default {r[f'mass 1/{step} rows']:.2f})")
            calibc.triton_mass.LAUNCH, calibc.triton_mass.ROWS_PER_PROGRAM = default
        mass = block_mass(qh, kh, 128, step=8)
        r["selection"] = timed(lambda: select_mass(mass, 0.95))
        for tolerance in (0.0, 0.02):
            state = State(heads, mass.shape[-1], device="cuda", reuse_tolerance=tolerance)
            state.fold(mass, 0)
            r[f"fold, reuse tolerance {tolerance}"] = timed(lambda: state.fold(mass, 0))

        def fold_from_host():
            state.to("cuda").fold(mass, 0)
            state.to("cpu")

        r["fold, state kept in host memory"] = timed(fold_from_host)
        print(f"{label}: {heads} heads, {tokens} tokens: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))
        del q, k, v, qh, kh, state
        torch.cuda.empty_cache()
    r = rows["wan14B-720p"]
    calls = 40 * 50 * 64
    fold = r["fold, reuse tolerance 0.02"]
    for what in ("mass, all rows", "mass 1/8 rows", "mass 1/16 rows"):
        ms = r[what] + fold
        print(f"Wan 14B 720p, 64 prompts × 50 steps × 40 layers = {calls} layer calls, {what} + fold: "
              f"{ms:.1f} ms a call → {ms * calls / 3.6e6:.2f} h of this GPU beyond generation "
              f"(the model's attention alone: {r['SDPA'] * calls / 3.6e6:.2f} h)")


# Wan 2.1 T2V transformer configs (heads, ffn_dim, layers) and their 81-frame latents: 1.3B at
# 480p (32,760 tokens), 14B at 720p (75,600 tokens).
SIZES = {"1.3b": (12, 8960, 30, (1, 16, 21, 60, 104)), "14b": (40, 13824, 40, (1, 16, 21, 90, 160))}


def model(out, size="1.3b", settings="8,8cpu,1"):
    """One denoising step with and without the Calibrator; `settings`: comma-separated sample
    rows, each optionally followed by "cpu" (states kept in host memory)."""
    from diffusers import WanTransformer3DModel

    from calibc.diffusers import Calibrator

    torch.manual_seed(0)
    heads, ffn, layers, shape = SIZES[size]
    with torch.device("cuda"):
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=128, in_channels=16, out_channels=16,
            text_dim=4096, freq_dim=256, ffn_dim=ffn, num_layers=layers, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024).to(torch.bfloat16).eval()
    latents = torch.randn(*shape, device="cuda", dtype=torch.bfloat16)
    text = torch.randn(1, 512, 4096, device="cuda", dtype=torch.bfloat16)

    def step(t=999):
        with torch.no_grad():
            return transformer(hidden_states=latents, timestep=torch.tensor([t], device="cuda"),
                               encoder_hidden_states=text, return_dict=False)[0]

    torch.cuda.reset_peak_memory_stats()
    plain = timed(step, reps=3)
    plain_peak = torch.cuda.max_memory_allocated() / 2**30
    tokens = shape[2] * shape[3] // 2 * shape[4] // 2
    print(f"Wan 2.1 {size} (random weights), {tokens} tokens, one denoising step (a transformer forward): {plain:.1f} ms, "
          f"peak {plain_peak:.1f} GiB")
    for setting in settings.split(","):
        rows, state_device = int(setting.removesuffix("cpu")), "cpu" if setting.endswith("cpu") else None
        calibrator = Calibrator(transformer, mass=0.95, block=128, sample_rows=rows, reuse_tolerance=0.02,
                                state_device=state_device)
        try:
            torch.cuda.reset_peak_memory_stats()
            times = []
            for prompt in range(3):  # three "prompts" of 2 steps each: the first folds into empty states
                for s in range(2):
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    step(999 - 500 * s)
                    torch.cuda.synchronize()
                    times.append((time.perf_counter() - start) * 1e3)
                calibrator.next_prompt()
            peak = torch.cuda.max_memory_allocated() / 2**30
            state_bytes = sum(t.numel() * t.element_size() for s in calibrator.states.values() for t in s.tensors(0, 0).values())
            later = statistics.median(times[2:])
            where = "host" if state_device else "GPU"
            print(f"  with Calibrator, every {rows} row(s), states in {where} memory: {later:.1f} ms a step after the first prompt "
                  f"(+{later - plain:.1f} ms, {later / plain:.3f}×), peak {peak:.1f} GiB, "
                  f"state {state_bytes / 1e6:.1f} MB for {len(calibrator.states)} (step, layer) × {heads} heads")
            if rows == 8 and state_device is None:
                calibrator.save(os.path.join(out, "state.safetensors"), model="WanTransformer3DModel (random weights)")
        finally:
            calibrator.remove()


def profile():
    """Where a 40-head fold's time goes (Wan 14B 720p shape), by CUDA kernel."""
    torch.manual_seed(0)
    q, k = (torch.randn(40, 75600, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    mass = block_mass(q, k, 128, step=8)
    state = State(40, mass.shape[-1], device="cuda", reuse_tolerance=0.02)
    state.fold(mass, 0)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as p:
        for _ in range(3):
            state.fold(mass, 0)
        torch.cuda.synchronize()
    print(p.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60))


if __name__ == "__main__":
    what = sys.argv[1]
    {"check": lambda: check(sys.argv[2]), "layer": layer, "model": lambda: model(*sys.argv[2:]), "profile": profile}[what]()
