#!/bin/sh
# FlashAttention-4 on the GPU machine (issue 29: bench-gpu's FA4 column), from the wheels
# `make fa4-wheels` leaves in .fa4/: one device call cannot carry them all (the CUTLASS CUDA
# library wheel alone is 88 MB), so each call carries one folder of .fa4 and copies it into DIR
# (`cp .fa4/*/* DIR`); the last joins the split wheel and unpacks every wheel into DIR/site with a
# plain extraction (the CUTLASS wheels share one package folder; pip --target one by one would
# replace it) and prints the PYTHONPATH that finds them (CUTLASS's .pth is not read from there).
# usage: sh Tests/GPU/install_fa4.sh DIR    then: export PYTHONPATH=$(sh ... DIR):$PYTHONPATH
set -eu
dir=$1
cat "$dir"/*.whl.part-* > "$dir/$(basename "$(ls "$dir"/*.whl.part-aa)" .part-aa)"
mkdir -p "$dir/site"
for w in "$dir"/*.whl; do python3 -m zipfile -e "$w" "$dir/site" >&2; done
echo "$dir/site:$dir/site/nvidia_cutlass_dsl/dsl_packages"
