#!/bin/bash
# The CPU part of a device call (the `run` tool) on the GPU machine's many cores, from the
# repository root, carrying .cpu-scaling (`make cpu-scaling-sources`): the machine, the scaling
# table (`make cpu-scaling`), and dense attention against torch's SDPA in one process with the
# kernel as before the FMA fix (gcc -std=c11 fused no a·b + c: the same file without its
# fp-contract pragma, which a command-line -ffp-contract=off would not override) beside the
# kernel as it is. Logs go to $OUT.
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/cpu-out}; mkdir -p "$OUT"
S=.cpu-scaling
export PYTHONPATH=$(pwd)/python:$(pwd)/examples
set -o pipefail
(lscpu | grep -E "Model name|^CPU\(s\)|Thread|Flags" | cut -c1-400; gcc --version | head -1) | tee "$OUT/machine.log"
sed '/fp-contract/d' $S/calib_kernels.c > $S/calib_kernels_nofma.c
for name in now nofma; do
  src=$S/calib_kernels.c; [ $name = nofma ] && src=$S/calib_kernels_nofma.c
  gcc -std=c11 -O3 -fopenmp -shared -fPIC -I $S/include -I $S $src $S/calib_schedule.c -o $S/lib$name.so || exit 1
done
timeout 120 python3 Tests/CPU/dense_vs_sdpa.py $S/libnow.so $S/libnofma.so 2>&1 | tee "$OUT/sdpa.log"
timeout 400 make cpu-scaling 2>&1 | tee "$OUT/scaling.log"
timeout 60 python3 Tests/CPU/dense_vs_sdpa.py $S/libnow.so $S/libnofma.so 2>&1 | tee -a "$OUT/sdpa.log"
