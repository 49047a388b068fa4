#!/bin/sh
# One device call (the `run` tool), from the repository root, with .gpu carried (made here by
# `make gpu-sources`): ceilings, correctness, compute-sanitizer, a timeline trace, the issue-14
# table, and side-by-side timings of earlier kernel versions. Logs go to $OUT.
# usage: sh Tests/GPU/device_run.sh [VERSION_FILE ...]   (earlier kernels, from the history docs/gpu.md names)
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
G=$(pwd)/.gpu
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader
python3 Tests/GPU/ceilings.py 2>&1 | tee "$OUT/ceil.log"
for f in "$@"; do v=$(basename "$f" .cu); for s in wan13b; do
  rm -rf "$G/$s-$v"; cp -r "$G/$s" "$G/$s-$v"; (KERNEL_SRC=$f sh Tests/GPU/build.sh "$G/$s-$v" >/dev/null) & done; done
rm -rf "$G/wan13b-tr"; cp -r "$G/wan13b" "$G/wan13b-tr"; (sh Tests/GPU/build.sh "$G/wan13b-tr" -DCALIB_CUDA_TRACE >/dev/null) &
timeout 200 make test-gpu > "$OUT/test.log" 2>&1; rc=$?
grep -v "^ok \|^built\|^for s\|^cd \|^    " "$OUT/test.log"; echo "test-gpu rc=$rc, $(grep -c '^ok ' "$OUT/test.log") checks ok"
wait
[ $rc = 0 ] || exit 1
(cd Tests/GPU && timeout 120 compute-sanitizer --tool memcheck --print-limit 5 python3 test_gpu.py --quick \
   "$G/t128/libcalibcuda.so:$G/t128.json" > "$OUT/sanitizer.log" 2>&1; echo "compute-sanitizer rc=$?"; tail -3 "$OUT/sanitizer.log")
(cd Tests/GPU && timeout 60 python3 trace.py "$G/wan13b-tr/libcalibcuda.so:$G/wan13b.json" 0 3 > "$OUT/trace.log" 2>&1)
timeout 360 make bench-gpu BENCH_ARGS="--json $OUT/bench.json" > "$OUT/bench.log" 2>&1; echo "bench-gpu rc=$?"
sed -n "/^| shape/,/^wan/p" "$OUT/bench.log"; grep "^wan.* reuse pair:" "$OUT/bench.log"
args=""; for f in "$@"; do v=$(basename "$f" .cu); for s in wan13b; do args="$args $v-$s=$G/$s-$v/libcalibcuda.so:$G/$s.json"; done; done
[ -n "$args" ] && (cd Tests/GPU && timeout 120 python3 bench_versions.py $args now-wan13b=$G/wan13b/libcalibcuda.so:$G/wan13b.json > "$OUT/versions.log" 2>&1; cat "$OUT/versions.log")
if [ -n "${STORE_AB:-}" ]; then  # the 4-byte store path of the same build, beside the 16-byte one
  (cd Tests/GPU && CALIB_CUDA_STORE=4 timeout 60 python3 bench_versions.py store4-wan13b=$G/wan13b/libcalibcuda.so:$G/wan13b.json \
     > "$OUT/store4.log" 2>&1; cat "$OUT/store4.log")
fi
exit 0
