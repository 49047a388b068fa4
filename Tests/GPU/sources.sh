#!/bin/sh
# Writes the GPU test and benchmark mask sets (Tests/GPU/matrix.json, through make_masks.py) into
# DIR and compiles each into DIR/<set> for the CUDA target; DIR/<set>/build.sh builds it (on the
# GPU machine: Tests/GPU/build_sets.sh).
# usage: sh Tests/GPU/sources.sh path/to/calibc DIR
set -eu
calibc=$1 dir=$2
python3 Tests/GPU/make_masks.py --matrix "$dir"
for masks in "$dir"/*.json; do
    set_dir=${masks%.json}
    rm -rf "$set_dir"
    "$calibc" compile "$masks" -o "$set_dir" --target cuda > /dev/null
done
