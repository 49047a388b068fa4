#!/bin/bash
# One device call (the `run` tool), from the repository root, with .gpu carried (`make
# gpu-sources`, `make gpu-sources-torch`) and any earlier compiled sets to compare: the machine,
# the GPU tests, compute-sanitizer memcheck, each earlier set's wan13b and wan14b timed beside
# the current ones on the current masks (interleaved, with FA4 where installed), the benchmark
# table and the ceilings. Logs go to $OUT.
# usage: bash Tests/GPU/device_run.sh [LABEL=DIR ...]   (DIR holds wan13b/ and wan13b.json, ...)
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
G=.gpu
export PYTHONPATH=$(pwd)/python${PYTHONPATH:+:$PYTHONPATH}
(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader; nvcc --version | tail -1;
 python3 -c "import torch; print('torch', torch.__version__)") | tee "$OUT/machine.log"
# Every build at once (16 cores), the earlier sets' with their own recipe.
for arg in "$@"; do dir=${arg#*=}; for s in wan13b wan14b; do (sh "$dir/$s/build.sh" > "$dir/$s.build.log" 2>&1 || cat "$dir/$s.build.log") & done; done
sh Tests/GPU/build_sets.sh "$G" || exit 1
wait
set -o pipefail
timeout 300 sh Tests/GPU/test.sh "$G" 2>&1 | tee "$OUT/test.log"; echo "test-gpu rc=$?"
CALIBC_GPU_DIR=$(pwd)/$G timeout 200 compute-sanitizer --tool memcheck --print-limit 5 python3 -m pytest -q -m gpu \
    -k "every_plan and t128 and default and bfloat16 and bhsd" Tests/python/test_cuda.py > "$OUT/sanitizer.log" 2>&1; echo "compute-sanitizer rc=$?"; tail -3 "$OUT/sanitizer.log"
args=""
for arg in "$@"; do label=${arg%%=*} dir=${arg#*=}; for s in wan13b wan14b; do
    args="$args $label-$s=$dir/$s/libcalibcuda.so:$G/$s.json now-$s=$G/$s/libcalibcuda.so:$G/$s.json"; done; done
[ -z "$args" ] || timeout 300 python3 Tests/GPU/bench_versions.py $args 2>&1 | tee "$OUT/versions.log"
timeout 240 make bench-gpu BENCH_ARGS="--json $OUT/bench.json" > "$OUT/bench.log" 2>&1; echo "bench-gpu rc=$?"
sed -n "/^| shape/,/^wan/p" "$OUT/bench.log"; grep "^wan.* reuse pair:" "$OUT/bench.log"
python3 Tests/GPU/ceilings.py 2>&1 | tee "$OUT/ceil.log"
exit 0
