#!/bin/bash
# Issue 27's device call (the `run` tool, .gpu and .whl carried): the GPU tests with FP8 among
# them (-s: the FP8 errors they measured), compute-sanitizer memcheck on the FP8 path, and the
# accuracy study (fp8_accuracy.py, SageAttention from .whl), the FP8 call's launches timed apart
# (fp8_pass_profile.py on a -DCALIB_CUDA_TRACE build of wan13b); with FP8_BENCH, bench_gpu.py on
# the sets it names (its NAME=LIB:masks arguments). Logs go to $OUT.
# usage: [FP8_BENCH="NAME=LIB.so:masks.json ..."] bash Tests/GPU/fp8_run.sh
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
G=.gpu
(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader; nvcc --version | tail -1;
 python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)") | tee "$OUT/machine.log"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl > /dev/null 2>&1
export PYTHONPATH=$(pwd)/python:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
sh Tests/GPU/build_sets.sh "$G" t128 t64 tj128 tj64 tjf64 ex tinywan wan13b fp8synth ${FP8_SETS:-} || exit 1
set -o pipefail
CALIBC_GPU_DIR=$(pwd)/$G timeout 330 python3 -m pytest -q -s -m gpu Tests/python 2>&1 | tee "$OUT/test.log" | grep -v "^\.*$" | tail -40
echo "test-gpu rc=$?"
CALIBC_GPU_DIR=$(pwd)/$G timeout 120 compute-sanitizer --tool memcheck --print-limit 5 python3 -m pytest -q -m gpu \
    -k "fp8_every_plan and (t128 or tj64) and bfloat16 and bhsd" Tests/python/test_cuda.py > "$OUT/sanitizer.log" 2>&1
echo "compute-sanitizer rc=$?"; tail -3 "$OUT/sanitizer.log"
timeout 150 python3 Tests/GPU/fp8_accuracy.py "$G" --json "$OUT/accuracy.json" 2>&1 | tee "$OUT/accuracy.log" | tail -20
rm -rf "$G/wan13b-trace" && cp -r "$G/wan13b" "$G/wan13b-trace" &&
    NVCC_FLAGS=-DCALIB_CUDA_TRACE sh "$G/wan13b-trace/build.sh" > "$OUT/trace-build.log" 2>&1 &&
    PYTHONPATH=$PYTHONPATH:Tests/GPU timeout 60 python3 Tests/GPU/fp8_pass_profile.py \
        "main=$G/wan13b-trace/libcalibcuda.so:$G/wan13b.json" 2>&1 | tee "$OUT/profile.log"
[ -z "${FP8_BENCH:-}" ] || timeout 330 python3 Tests/GPU/bench_gpu.py $FP8_BENCH --json "$OUT/bench.json" > "$OUT/bench.log" 2>&1
[ -z "${FP8_BENCH:-}" ] || sed -n "/^| shape | set | density | calibc bf16/,\$p" "$OUT/bench.log"
exit 0
