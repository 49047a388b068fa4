#!/bin/sh
# `make bench-e2e` (GPU machine): builds the e2e sets of Tests/GPU/matrix.json in DIR and runs
# bench_e2e.py for each model named (default Wan 2.1 1.3B and 14B): Wan, dense eager and compiled,
# calibc at density 0.5 and 0.25 (eager and compiled; 0.25 also fp8 and fp8-pv) and 15% reuse at 0.25 (eager); the joint
# models and LTX (mochi, hunyuan, cogvideox, ltx), dense eager against calibc at 0.5 and 0.25 eager.
# usage: sh Tests/GPU/bench_e2e.sh DIR [1.3b] [14b] [mochi] [hunyuan] [cogvideox] [ltx]
set -eu
dir=$1; shift
[ $# -gt 0 ] || set -- 1.3b 14b
for model in "$@"; do
    case $model in
        1.3b|14b) s=e2e$(echo "$model" | tr -d .)
            sh Tests/GPU/build_sets.sh "$dir" $s-d50 $s-d25 $s-reuse
            sets="d0.5=$dir/$s-d50/libcalibcuda.so:compiled d0.25=$dir/$s-d25/libcalibcuda.so:compiled,fp8,fp8-pv
                  reuse15%-d0.25=$dir/$s-reuse/libcalibcuda.so" ;;
        mochi|hunyuan|cogvideox|ltx) s=e2e-$(echo "$model" | sed 's/cogvideox/cogx/')
            sh Tests/GPU/build_sets.sh "$dir" $s-d50 $s-d25
            sets="d0.5=$dir/$s-d50/libcalibcuda.so d0.25=$dir/$s-d25/libcalibcuda.so" ;;
        *) echo "unknown model $model (1.3b, 14b, mochi, hunyuan, cogvideox or ltx)"; exit 2 ;;
    esac
    PYTHONPATH=python${PYTHONPATH:+:$PYTHONPATH} python3 Tests/GPU/bench_e2e.py "$model" $sets ${E2E_ARGS:-}
done
