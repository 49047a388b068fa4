#!/bin/sh
# Each masks file here compiled by CALIBC and run by harness.c under AddressSanitizer +
# UndefinedBehaviorSanitizer (N = 1, N = block - 1, a partial last block with reuse), built once
# and run with every instruction set (CALIBC_ISA caps the kernels' own choice). OMP_FLAGS: how
# to compile and link OpenMP (the Makefile passes LLVM 14's).
# usage: OMP_FLAGS=... sh Tests/Sanitize/run.sh path/to/calibc
set -eu
calibc=$1
for masks in Tests/Sanitize/*.json; do
    dir=.build/sanitize/$(basename "$masks" .json)
    rm -rf "$dir"
    "$calibc" compile "$masks" -o "$dir" > /dev/null
    clang -std=c11 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
        -I "$dir/include" -I "$dir" Tests/Sanitize/harness.c "$dir/calib_schedule.c" \
        $OMP_FLAGS -lpthread -lm -o "$dir.harness"
    for isa in avx512-bf16 avx512 avx2 sse portable; do
        result=$(CALIBC_ISA=$isa "$dir.harness")
        echo "$masks $isa: $result"
    done
done
