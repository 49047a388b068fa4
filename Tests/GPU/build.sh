#!/bin/sh
# Builds a `calibc compile --target cuda` directory into DIR/libcalibcuda.so, with warnings as
# errors and the ptxas report in DIR/ptxas.log (the .c tables compiled apart from the C++).
# usage: Tests/GPU/build.sh DIR [extra nvcc flags]   (NVCC=path/to/nvcc to pick a compiler;
# KERNEL_SRC=path/to/calib_cuda.cu builds another version of the kernel in its place, e.g. one
# from the history docs/gpu.md names; NO_LINK=1 stops after compiling)
set -eu
dir=$1; shift
root=$(cd "$(dirname "$0")/../.." && pwd)
src=$root/Sources/CalibCodegen/kernels/cuda
nvcc=${NVCC:-nvcc}
if [ -n "${KERNEL_SRC:-}" ]; then
  cp "$KERNEL_SRC" "$dir/calib_cuda.cu"
  cp "$src/include/calib_cuda.h" "$dir/include/calib_cuda.h"
fi
flags="-gencode=arch=compute_90a,code=sm_90a -O3 -std=c++17 -Xcompiler -fPIC -Xcompiler -Wall,-Wextra -Werror all-warnings"
"$nvcc" $flags -Xptxas -v "$@" -c "$dir/calib_cuda.cu" -o "$dir/calib_cuda.o" 2>"$dir/ptxas.log" || { cat "$dir/ptxas.log"; exit 1; }
"$nvcc" -Xcompiler -fPIC -O2 -c "$dir/calib_schedule.c" -o "$dir/calib_schedule.o"
[ -z "${NO_LINK:-}" ] || exit 0  # `make cuda-check`: PyPI's nvcc has no CUDA runtime to link
"$nvcc" -shared -o "$dir/libcalibcuda.so" "$dir/calib_cuda.o" "$dir/calib_schedule.o"
echo "built $dir/libcalibcuda.so"
