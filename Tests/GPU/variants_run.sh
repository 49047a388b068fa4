#!/bin/bash
# `bash Tests/GPU/variants_run.sh DIR LABEL=SRC ...` on the GPU machine (carry DIR, e.g. .gpu, and
# each SRC): kernel versions not yet on main, timed beside DIR's own builds. SRC holds the kernel
# files a version changes (e.g. a branch's, by `git show BRANCH:Sources/.../wgmma_kernel.cuh`);
# DIR's wan13b and wan14b are copied into DIR-LABEL with SRC's files laid over them and built,
# then bench_versions.py interleaves them with DIR's own in bf16, fp8 and fp8-pv (FA4 beside,
# where installed). TEST=LABEL also copies the whole of DIR for that version and runs
# test_cuda.py on it (TEST_K narrows it to a pytest -k expression); SETS=wan14b times one set
# (a 10-minute device call holds about one set's three precisions); PRECISIONS=bf16 times only
# those (default "bf16 fp8 fp8-pv"). Logs go to $OUT.
set -u
dir=$1; shift
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
overlay() { # overlay SRC SET_DIR
    cp "$1"/* "$2"/ && rm -f "$2/libcalibcuda.so"
}
for arg in "$@"; do
    label=${arg%%=*} src=${arg#*=}
    rm -rf "$dir-$label" && mkdir -p "$dir-$label"
    for s in ${SETS:-wan13b wan14b}; do cp -r "$dir/$s" "$dir-$label/" && overlay "$src" "$dir-$label/$s"; done
done
if [ -n "${TEST:-}" ]; then
    src=$(for arg in "$@"; do [ "${arg%%=*}" = "$TEST" ] && echo "${arg#*=}"; done)
    rm -rf "$dir-test" && cp -r "$dir" "$dir-test"
    for b in "$dir-test"/*/build.sh; do overlay "$src" "$(dirname "$b")"; done
fi
(sh Tests/GPU/build_sets.sh "$dir" ${SETS:-wan13b wan14b}
 for arg in "$@"; do sh Tests/GPU/build_sets.sh "$dir-${arg%%=*}" & done
 [ -z "${TEST:-}" ] || sh Tests/GPU/build_sets.sh "$dir-test" &
 wait) 2>&1 | tee "$OUT/variants-build.log"
for s in ${SETS:-wan13b wan14b}; do
    args="main=$dir/$s/libcalibcuda.so:$dir/$s.json"
    for arg in "$@"; do args="$args ${arg%%=*}=$dir-${arg%%=*}/$s/libcalibcuda.so:$dir/$s.json"; done
    for precision in ${PRECISIONS:-bf16 fp8 fp8-pv}; do
        flag=$([ $precision = bf16 ] || echo "--precision $precision")
        echo "== $s $precision"
        timeout 200 python3 Tests/GPU/bench_versions.py $args --rounds 3 $flag
    done
done 2>&1 | tee -a "$OUT/variants.log"
if [ -n "${TEST:-}" ]; then
    CALIBC_GPU_DIR=$(cd "$dir-test" && pwd) timeout 300 python3 -m pytest -q -m gpu ${TEST_K:+-k "$TEST_K"} \
        Tests/python/test_cuda.py 2>&1 | tail -30 | tee "$OUT/variants-test.log"
fi
exit 0
