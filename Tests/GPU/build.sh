#!/bin/sh
# Builds one CUDA kernel directory into DIR/libcalibcuda.so, laid out as `calibc compile --target
# cuda` will write it: DIR/{calib_internal.h, calib_schedule.c} from calibc, plus the kernel files
# copied here from Sources/CalibCodegen/kernels/cuda (DIR/calib_cuda.cu, DIR/include/calib_cuda.h).
# usage: Tests/GPU/build.sh DIR [extra nvcc flags]   (NVCC=path/to/nvcc to pick a compiler;
# KERNEL_SRC=path/to/calib_cuda.cu to build another version of the kernel, e.g. Tests/GPU/versions/)
set -eu
dir=$1; shift
root=$(cd "$(dirname "$0")/../.." && pwd)
src=$root/Sources/CalibCodegen/kernels/cuda
kernel=${KERNEL_SRC:-$src/calib_cuda.cu}
nvcc=${NVCC:-nvcc}
mkdir -p "$dir/include"
cp "$kernel" "$dir/calib_cuda.cu"
cp "$src/include/calib_cuda.h" "$dir/include/calib_cuda.h"
flags="-gencode=arch=compute_90a,code=sm_90a -O3 -std=c++17 -Xcompiler -fPIC -Xcompiler -Wall,-Wextra -Werror all-warnings"
"$nvcc" $flags -Xptxas -v "$@" -c "$dir/calib_cuda.cu" -o "$dir/calib_cuda.o" 2>"$dir/ptxas.log" || { cat "$dir/ptxas.log"; exit 1; }
"$nvcc" -Xcompiler -fPIC -O2 -c "$dir/calib_schedule.c" -o "$dir/calib_schedule.o"
"$nvcc" -shared -o "$dir/libcalibcuda.so" "$dir/calib_cuda.o" "$dir/calib_schedule.o"
echo "built $dir/libcalibcuda.so"
