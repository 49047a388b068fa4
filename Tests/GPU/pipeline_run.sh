#!/bin/bash
# `bash Tests/GPU/pipeline_run.sh [pipeline_gpu.py options]`: one device call (the `run` tool) for issue 26's GPU path, from the repository root, carrying
# .build/dist/calibc-linux-x86_64.tar.gz (`make dist`) and .whl (diffusers 0.42.1): calibc
# unpacked to /tmp/calibc, then Tests/GPU/pipeline_gpu.py; its log and report go to $OUT.
set -eu
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
tar xzf .build/dist/calibc-linux-x86_64.tar.gz -C /tmp
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/diffusers*.whl .whl/importlib*.whl
export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU:/tmp/site CALIBC=/tmp/calibc/calibc PATH=$PATH:/usr/local/cuda/bin
command -v nvcc && nvcc --version | tail -1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
/tmp/calibc/calibc --version
set -o pipefail
python3 Tests/GPU/pipeline_gpu.py "$OUT" "$@" 2>&1 | tee "$OUT/pipeline.log"
