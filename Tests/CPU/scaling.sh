#!/bin/sh
# On a machine with only a C compiler and OpenMP (the GPU machine's 16 cores): builds the
# scaling harness over the kernels `make cpu-scaling-sources` wrote into DIR, checks every
# instruction set against float64, then prints the scaling table (team sizes).
# usage: sh Tests/CPU/scaling.sh DIR   (CC picks the compiler)
set -eu
dir=$1 cc=${CC:-cc}
"$cc" -std=c11 -O3 -march=native -fopenmp -I Sources/CBench/include -c Sources/CBench/peak.c -o "$dir/peak.o"
"$cc" -std=c11 -O3 -fopenmp -I "$dir/include" -I "$dir" -I Sources/CBench/include Tests/CPU/scaling.c "$dir/calib_schedule.c" \
    "$dir/peak.o" -lm -o "$dir/scaling"
for isa in avx2 avx512 avx512-bf16; do CALIBC_ISA=$isa "$dir/scaling" --check; done
"$dir/scaling"
