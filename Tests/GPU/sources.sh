#!/bin/sh
# Writes the GPU test and benchmark mask sets (Tests/GPU/matrix.json, through make_masks.py) into
# DIR and compiles each into DIR/<set> for the CUDA target; DIR/<set>/build.sh builds it (on the
# GPU machine: Tests/GPU/build_sets.sh).
# usage: sh Tests/GPU/sources.sh path/to/calibc DIR
set -eu
calibc=$1 dir=$2
python3 Tests/GPU/make_masks.py --matrix "$dir"
# The FP8 accuracy study's recording (fp8_accuracy.py): q and k of `calibc synth`, one layer and
# step of six heads, 3072 tokens, with the plans calibrate gives it in blocks of 128.
"$calibc" synth -o "$dir/fp8synth-rec" --prompts 1 --seed 9 --layers 1 --steps 20 > /dev/null
"$calibc" calibrate "$dir/fp8synth-rec/prompt0.safetensors" -o "$dir/fp8synth.json" --block 128 --mass 0.9 > /dev/null
for masks in "$dir"/*.json; do
    set_dir=${masks%.json}
    rm -rf "$set_dir"
    "$calibc" compile "$masks" -o "$set_dir" --target cuda > /dev/null
done
