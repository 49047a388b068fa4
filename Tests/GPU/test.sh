#!/bin/sh
# On the GPU machine: builds every compiled set in DIR (default .gpu) with its own build.sh, then
# runs the Python suite's GPU tests (pytest -m gpu) against them through the package itself.
# usage: sh Tests/GPU/test.sh [DIR]
set -eu
dir=${1:-.gpu}
sh Tests/GPU/build_sets.sh "$dir"
CALIBC_GPU_DIR=$(cd "$dir" && pwd) PYTHONPATH=python${PYTHONPATH:+:$PYTHONPATH} python3 -m pytest -q -m gpu Tests/python
