#!/bin/sh
# `sh Tests/GPU/overlay.sh REV NAME`, here before a device call: the CUDA kernel files as they are
# at git revision REV into .gpu-var/NAME (ignored; carry it), for variants_run.sh to lay over a
# set's copies and time beside the set's own build (the GPU machine gets no .git).
set -eu
rev=$1 name=$2
dir=.gpu-var/$name
rm -rf "$dir" && mkdir -p "$dir"
for f in $(git ls-tree --name-only "$rev" Sources/CalibKernelSources/kernels/cuda/); do
    git show "$rev:$f" > "$dir/$(basename "$f")"
done
ls "$dir"
