#!/bin/sh
# The CUDA kernels compiled for sm_90a by the sets' own recipe (`build.sh --check`: warnings as
# errors, no link, so PyPI's nvcc suffices), failing on any spill, stack frame, serialized
# wgmma or setmaxnreg asking for more registers than the CTA has: the wgmma kernel (bf16/f16
# and e4m3 instances) and the FP8 pass of t128, t64 and tj128 (block 128, head_dim 128 and 64;
# tj128 with padded text) and the mma.sync kernel of ex (block 64), t256 (head_dim 256, whose Q
# fragments are read at each k-step) and t80 (block 128 at an odd multiple of 16, a head_dim no
# wgmma instance takes: the FP8 operands' constants and alignment had stopped every such shape
# compiling since cf56df4, and the odd multiples since debe826); and the split
# work lists of t128, t64, tj128, tj64 (text last) and the two Wan sets with every balanced row split, on the
# host (work_list_check.cu: no wait for a later item, each row's items adding up; Wan 1.3B's 12
# heads reuse slot sets);
# and every stage removal of Tests/GPU/ablate.py still finds the code it replaces (a kernel edit
# strands them: half-span, half-stride, head-major and all-heads were, until 2026-12-05).
# Logs and binaries go to a temporary folder, not DIR, which a device call carries whole.
# usage: NVCC=path/to/nvcc sh Tests/GPU/cuda_check.sh DIR
set -eu
dir=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Two compiles at a time: CI's machine has two cores, and each nvcc uses one.
for pair in "t128 t64" "tj128 ex" "t256 t80"; do
    for s in $pair; do (sh "$dir/$s/build.sh" --check 2> "$work/$s.ptxas.log" || touch "$work/$s.failed") & done
    wait
done
for s in t128 t64 tj128 ex t256 t80; do
    [ ! -e "$work/$s.failed" ] || { cat "$work/$s.ptxas.log"; exit 1; }
done
for s in t128 tj128 t64; do
    python3 Tests/GPU/check_ptxas.py "$work/$s.ptxas.log" calib_wgmma_kernel --setmaxnreg "$dir/$s/wgmma_kernel.cuh"
done
for s in t128 t64 tj128; do python3 Tests/GPU/check_ptxas.py "$work/$s.ptxas.log" calib_fp8_; done
for s in ex t256 t80; do python3 Tests/GPU/check_ptxas.py "$work/$s.ptxas.log" calib_mma_kernel; done
for s in t128 t64 tj128 tj64 wan13b wan14b; do
    "$NVCC" -O2 -std=c++17 -L "$(dirname "$NVCC")/../lib" -I "$dir/$s" -I "$dir/$s/include" Tests/GPU/work_list_check.cu \
        "$dir/$s/calib_schedule.c" -o "$work/$s.work_list_check"
    "$work/$s.work_list_check" --every
done
cp -r "$dir/t128" "$dir/t128.json" "$work/"
python3 Tests/GPU/ablate.py "$work/t128" > /dev/null
