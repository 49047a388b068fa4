#!/bin/bash
# `bash Tests/GPU/ablate_run.sh DIR SET [VARIANT ...]` on the GPU machine (carry DIR, e.g. .gpu): the set and
# its stage-removal variants (Tests/GPU/ablate.py) built plain and with -DCALIB_CUDA_TRACE, all at
# once; then their times interleaved (bench_versions.py) and CTA 0's cycles per item of layers 0
# (the dense plan) and 3 (trace.py), which the clock does not scale; PRECISION=fp8 (or fp8-pv) times
# and traces the FP8 calls instead. Logs go to $OUT.
set -u
dir=$1 set=$2; shift 2
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
args=$(python3 Tests/GPU/ablate.py "$dir/$set" "$@") || exit 1
variants="$set $(for a in $args; do a=${a%%=*}; [ "$a" = "$set" ] || echo "$a"; done | tr '\n' ' ')"
for v in $variants; do
    rm -rf "$dir/$v-trace" && cp -r "$dir/$v" "$dir/$v-trace"
    (sh "$dir/$v/build.sh" > "$dir/$v.build.log" 2>&1 || cat "$dir/$v.build.log") &
    (NVCC_FLAGS=-DCALIB_CUDA_TRACE sh "$dir/$v-trace/build.sh" > "$dir/$v-trace.build.log" 2>&1 || cat "$dir/$v-trace.build.log") &
done
wait
timeout 240 python3 Tests/GPU/bench_versions.py $args ${PRECISION:+--precision $PRECISION} 2>&1 | tee "$OUT/ablate.log"
for v in $variants; do
    echo "== $v"; timeout 60 python3 Tests/GPU/trace.py "$dir/$v-trace/libcalibcuda.so:$dir/$set.json" 0 3 ${PRECISION:+--precision $PRECISION}
done 2>&1 | tee "$OUT/trace.log"
