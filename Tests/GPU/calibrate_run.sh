#!/bin/bash
# One device call (the `run` tool) for calibration on the GPU (issue 16), from the repository
# root, carrying .gpu/calib (`make calibrate-gpu-sources`) and .whl (diffusers 0.42.1 wheels; the
# GPU machine has torch and triton but not diffusers). Logs and the state file go to $OUT.
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$(pwd)/python:/tmp/site
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton, diffusers; print('torch', torch.__version__, 'triton', triton.__version__, 'diffusers', diffusers.__version__)"
set -o pipefail
(for set in small wan; do timeout 120 python3 Tests/GPU/calibrate_gpu.py check .gpu/calib/$set || exit 1; done) 2>&1 | tee "$OUT/check.log" || exit 1
timeout 240 python3 Tests/GPU/calibrate_gpu.py layer 2>&1 | tee "$OUT/layer.log"
timeout 300 python3 Tests/GPU/calibrate_gpu.py model "$OUT" 2>&1 | tee "$OUT/model.log"
