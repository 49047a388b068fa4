#!/bin/bash
# The queue's device calls (docs/gpu.md, "Queue"), on one warm machine in turn:
#   bash Tests/GPU/queue_run.sh first    carry .gpu (without wan14b and fp8synth-rec: the carry
#       limit), .gpu-var, .fa4/small and .fa4/a. The tree on main: test_cuda.py; Wan 1.3B timed
#       beside main's kernel before it (before), by_sums alone (sumref) and, in fp8, q converted in
#       the launch (qconv, as vq); vq's FP8 tests; the FP8 pass's launches (trace builds); memchecks.
#   bash Tests/GPU/queue_run.sh second   carry .gpu/wan14b, .gpu/wan14b.json, .gpu-var and .fa4/b.
#       FA4 installed; Wan 14B built (main, before, sumref, vq) and timed with FA4 in the rounds;
#       Wan 1.3B's bf16 again with FA4; Wan 14B fp8 beside before and vq.
# .gpu-var/{before,sumref,qconv} come from `sh Tests/GPU/overlay.sh REV NAME`. Each step runs only
# while LIMIT seconds (default 540 / 500) leave it time; logs go to $OUT.
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT" /tmp/fa4
G=.gpu L=libcalibcuda.so
left() { [ $((LIMIT - SECONDS)) -gt ${1:-60} ]; }
# name_card: the time and the card (name, driver, clock, power limit) into $OUT/machine.log.
name_card() {
    (date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader) | tee "$OUT/machine.log"
}
# on_h200_fa4_parts: after name_card, on an H200 FA4's first parts copied (h200_row next); false elsewhere.
on_h200_fa4_parts() {
    grep -q H200 "$OUT/machine.log" || return 1
    fa4_parts
    echo "H200: h200_row next"
}
# variant NAME SET DIR: .gpu/SET copied into DIR with .gpu-var/NAME's kernel files laid over it, built
# in the background (wait for it).
variant() {
    rm -rf "$3" && mkdir -p "$3" && cp -r "$G/$2" "$3/" && rm -f "$3/$2/$L" && cp ".gpu-var/$1"/* "$3/$2/"
    (sh "$3/$2/build.sh" > "$OUT/build-$1-$2.log" 2>&1 || echo "$1 $2 build failed") &
}
# variant_sets NAME SET...: $G-vNAME with each SET of $G and .gpu-var/NAME's kernel files laid over
# it, the JSONs and fp8synth's recording beside them (what fp8_accuracy.py reads), built in the
# background (wait for it).
variant_sets() {
    local n=$1 d=$G-v$1
    shift
    rm -rf $d && mkdir -p $d && cp $G/*.json $d/ && ln -sfn "$(pwd)/$G/fp8synth-rec" $d/
    for s in "$@"; do cp -r $G/$s $d/ && cp .gpu-var/$n/* $d/$s/ && rm -f $d/$s/$L; done
    (sh Tests/GPU/build_sets.sh $d "$@" 2>&1 | tail -5) &
}
# trace_build DIR SET: DIR/SET-trace, DIR/SET built with -DCALIB_CUDA_TRACE (trace.py, fp8_pass_profile.py).
trace_build() {
    rm -rf "$1/$2-trace" && cp -r "$1/$2" "$1/$2-trace" && rm -f "$1/$2-trace/$L"
    NVCC_FLAGS=-DCALIB_CUDA_TRACE sh "$1/$2-trace/build.sh" > "$OUT/trace-build-${1#.}-$2.log" 2>&1 || { echo "$1 $2 trace build failed"; return 1; }
}
# gpu_tests SECONDS [PYTEST ARGS]: test_cuda.py on $G's sets, the log in $OUT/test.log, all but the
# progress dots shown.
gpu_tests() {
    local limit=$1; shift
    CALIBC_GPU_DIR=$(pwd)/$G timeout $limit python3 -m pytest -q -m gpu "$@" Tests/python/test_cuda.py 2>&1 | tee "$OUT/test.log" \
      | grep -v "^[.s]*$" | tail -25
    echo "tests done at $SECONDS s"
}
# memcheck SECONDS SELECTION [LOG]: compute-sanitizer over the tests -k SELECTION picks.
memcheck() {
    local log=$OUT/${3:-sanitizer.log}
    CALIBC_GPU_DIR=$(pwd)/$G timeout $1 compute-sanitizer --tool memcheck --print-limit 5 python3 -m pytest -q -m gpu \
        -k "$2" Tests/python/test_cuda.py > "$log" 2>&1
    echo "memcheck '$2' rc=$? at $SECONDS s"; tail -2 "$log"
}
# memcheck_fp8 SECONDS: the sampled-range tests and t64's FP8 plans.
memcheck_fp8() { memcheck $1 "sampled_range or (every_plan and t64 and fp8)"; }
first() {
    LIMIT=${LIMIT:-540}
    cp .fa4/small/* .fa4/a/* /tmp/fa4/ 2>/dev/null; ls /tmp/fa4 | wc -l
    S=wan13b
    (date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader; nvcc --version | tail -1;
     python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)") | tee "$OUT/machine.log"
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    SECONDS=0
    SETS="t128 t64 tj128 tj64 tjf64 ex wan13b fp8synth tlong"
    rm -rf $G-vq && mkdir -p $G-vq && cp $G/*.json $G-vq/
    for s in $SETS; do cp -r $G/$s $G-vq/ && cp .gpu-var/qconv/* $G-vq/$s/ && rm -f $G-vq/$s/$L; done
    for v in before sumref; do variant $v $S $G-v$v; done
    for g in $G $G-vq; do trace_build $g wan13b & done
    (sh Tests/GPU/build_sets.sh "$G" $SETS 2>&1 | tail -30) &
    (sh Tests/GPU/build_sets.sh "$G-vq" $SETS 2>&1 | tail -30) &
    wait
    echo "built in $SECONDS s"
    gpu_tests 240
    M=$G/$S.json
    left 120 && timeout 100 python3 Tests/GPU/bench_versions.py main=$G/$S/$L:$M before=$G-vbefore/$S/$L:$M sumref=$G-vsumref/$S/$L:$M \
      --rounds 2 2>&1 | tee $OUT/bf16-$S.log
    echo "bf16 bench done at $SECONDS s"
    left 100 && timeout 90 python3 Tests/GPU/bench_versions.py main=$G/$S/$L:$M before=$G-vbefore/$S/$L:$M vq=$G-vq/$S/$L:$M \
      --rounds 2 --precision fp8 2>&1 | tee $OUT/fp8-$S.log
    echo "fp8 bench done at $SECONDS s"
    left 80 && for g in $G $G-vq; do timeout 30 python3 Tests/GPU/fp8_pass_profile.py "${g#.}=$g/wan13b-trace/$L:$M" 2>&1 | tee -a "$OUT/profile.log"; done
    echo "profile done at $SECONDS s"
    left 60 && CALIBC_GPU_DIR=$(pwd)/$G-vq timeout $((LIMIT - SECONDS - 40)) python3 -m pytest -q -m gpu -k "fp8" Tests/python/test_cuda.py 2>&1 | tee "$OUT/test-vq.log" | grep -v "^[.s]*$" | tail -25
    echo "vq fp8 tests done at $SECONDS s"
    i=0
    for sel in "jump and not fp8" "every_plan and t128 and bhsd and not fp8" "sampled_range"; do
        i=$((i+1))
        left 70 || break
        memcheck 60 "$sel" sanitizer$i.log
    done
    echo "end at $SECONDS s"
}
second() {
    LIMIT=${LIMIT:-500}
    cp .fa4/*/* /tmp/fa4/ 2>/dev/null  # the first call's folders stay in the checkout if /tmp did not
    sh Tests/GPU/install_fa4.sh /tmp/fa4 > /tmp/fa4.path 2>$OUT/fa4-install.log
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU:$(cat /tmp/fa4.path)
    python3 -c "import flash_attn.cute; print('fa4 ok')" 2>&1 | tail -1
    SECONDS=0
    S=wan14b
    for v in before sumref qconv; do variant $v $S $G-v$v-14; done
    sh Tests/GPU/build_sets.sh $G $S &
    wait
    echo "built at $SECONDS s"
    M=$G/$S.json
    left 150 && timeout $((LIMIT / 3)) python3 Tests/GPU/bench_versions.py main=$G/$S/$L:$M before=$G-vbefore-14/$S/$L:$M \
      sumref=$G-vsumref-14/$S/$L:$M --rounds 2 2>&1 | tee $OUT/bf16-$S.log
    echo "14b bf16 done at $SECONDS s"
    M13=$G/wan13b.json
    left 100 && timeout 90 python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M13 before=$G-vbefore/wan13b/$L:$M13 \
      sumref=$G-vsumref/wan13b/$L:$M13 --rounds 2 2>&1 | tee $OUT/bf16-wan13b-fa4.log
    echo "13b bf16 with FA4 done at $SECONDS s"
    left 60 && timeout $((LIMIT - SECONDS - 20)) python3 Tests/GPU/bench_versions.py main=$G/$S/$L:$M before=$G-vbefore-14/$S/$L:$M \
      vq=$G-vqconv-14/$S/$L:$M --rounds 2 --precision fp8 2>&1 | tee $OUT/fp8-$S.log
    echo "end at $SECONDS s"
}
# third/fourth: runs 73-74's figures again with more rounds (the same warm machine, in turn).
#   third   carry .gpu (without wan14b and fp8synth-rec), .gpu-var, .fa4/small, .fa4/a: builds
#           wan13b and fp8synth, sumref's wan13b; Wan 1.3B bf16 main beside sumref, 3 rounds.
#   fourth  carry .gpu/wan14b, .gpu/wan14b.json, .gpu/fp8synth-rec, .gpu-var, .fa4/b: FA4 installed;
#           Wan 14B and 1.3B bf16 with FA4 in the rounds (3); fp8_accuracy.py.
third() {
    LIMIT=${LIMIT:-240}
    cp .fa4/small/* .fa4/a/* /tmp/fa4/ 2>/dev/null; ls /tmp/fa4 | wc -l
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/machine.log"
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    SECONDS=0
    variant sumref wan13b $G-vsumref
    sh Tests/GPU/build_sets.sh $G wan13b fp8synth 2>&1 | tail -5
    wait
    echo "built in $SECONDS s"
    M=$G/wan13b.json
    left 60 && timeout $((LIMIT - SECONDS - 20)) python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M \
      sumref=$G-vsumref/wan13b/$L:$M --rounds 3 2>&1 | tee $OUT/bf16-wan13b.log
    echo "end at $SECONDS s"
}
fourth() {
    LIMIT=${LIMIT:-480}
    cp .fa4/*/* /tmp/fa4/ 2>/dev/null
    sh Tests/GPU/install_fa4.sh /tmp/fa4 > /tmp/fa4.path 2>$OUT/fa4-install.log
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU:$(cat /tmp/fa4.path)
    python3 -c "import flash_attn.cute; print('fa4 ok')" 2>&1 | tail -1
    SECONDS=0
    variant sumref wan14b $G-vsumref-14
    sh Tests/GPU/build_sets.sh $G wan14b 2>&1 | tail -5
    wait
    echo "built at $SECONDS s"
    M=$G/wan14b.json M13=$G/wan13b.json
    left 150 && timeout 200 python3 Tests/GPU/bench_versions.py main=$G/wan14b/$L:$M sumref=$G-vsumref-14/wan14b/$L:$M \
      --rounds 3 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/bf16-wan14b-fa4.log
    echo "14b done at $SECONDS s"
    left 90 && timeout 80 python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M13 --rounds 4 2>&1 \
      | grep -v Warn | grep -v exe_args | tee $OUT/bf16-wan13b-fa4.log
    echo "13b done at $SECONDS s"
    left 40 && timeout $((LIMIT - SECONDS - 10)) python3 Tests/GPU/fp8_accuracy.py $G --json $OUT/fp8-accuracy.json 2>&1 | tee $OUT/fp8-accuracy.log
    echo "end at $SECONDS s"
}
# fifth: v's statistics over every token (run 76 found the sample's mean cost `fp8-pv` 4.0e-2 ->
#   5.1e-2 on the Wan 1.3B dense layer). Carry .gpu (without wan14b), .gpu-var (with
#   `overlay.sh 1ad0e97 before`). Every set built; test_cuda.py; fp8_accuracy.py on main and on
#   before; the pass's launches; Wan 1.3B fp8 and fp8-pv beside before; memcheck of the sampled range.
fifth() {
    LIMIT=${LIMIT:-400}
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/machine.log"
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    SECONDS=0
    SETS="t128 t64 tj128 tj64 tjf64 ex wan13b fp8synth tlong"
    variant_sets before wan13b fp8synth
    trace_build $G wan13b &
    sh Tests/GPU/build_sets.sh $G $SETS 2>&1 | tail -30
    wait
    echo "built in $SECONDS s"
    gpu_tests 150 -s
    for g in $G $G-vbefore; do
      left 40 && timeout 60 python3 Tests/GPU/fp8_accuracy.py $g --json $OUT/fp8-accuracy-${g#.}.json 2>&1 | grep "^|" | tee $OUT/fp8-accuracy-${g#.}.log
    done
    echo "accuracy done at $SECONDS s"
    M=$G/wan13b.json
    left 40 && timeout 30 python3 Tests/GPU/fp8_pass_profile.py "main=$G/wan13b-trace/$L:$M" 2>&1 | tee "$OUT/profile.log"
    for prec in fp8 fp8-pv; do
      left 60 && timeout 45 python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M before=$G-vbefore/wan13b/$L:$M \
        --rounds 2 --precision $prec 2>&1 | tee $OUT/$prec-wan13b.log
    done
    left 40 && memcheck_fp8 35
    echo "end at $SECONDS s"
}
# sixth: the stats launch in chunks of 1024 tokens beside fifth's 4096 (vfull: `overlay.sh 6077470
#   vfull`). Carry .gpu (without wan14b), .gpu-var. FP8 tests, accuracy, the pass's launches, Wan 1.3B.
sixth() {
    LIMIT=${LIMIT:-200}
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    SECONDS=0
    variant vfull wan13b $G-vvfull
    trace_build $G wan13b &
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 ex wan13b fp8synth tlong 2>&1 | tail -30
    wait
    echo "built in $SECONDS s"
    gpu_tests 60 -s -k "fp8 or long"
    left 40 && timeout 40 python3 Tests/GPU/fp8_accuracy.py $G 2>&1 | grep "^|" | tee $OUT/fp8-accuracy.log
    M=$G/wan13b.json
    left 40 && timeout 30 python3 Tests/GPU/fp8_pass_profile.py "main=$G/wan13b-trace/$L:$M" 2>&1 | tee "$OUT/profile.log"
    for prec in fp8-pv fp8; do
      left 30 && timeout 30 python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M vfull=$G-vvfull/wan13b/$L:$M \
        --rounds 2 --precision $prec 2>&1 | tee $OUT/$prec-wan13b.log
    done
    echo "end at $SECONDS s"
}
# seventh and eighth (docs/gpu.md queue, written 2026-12-05 before the calls; carry .gpu without
#   wan14b, and .gpu-var with `overlay.sh fffa1a3 tree` for eighth):
#   seventh  what paces `fp8` after v21: the stage removals fp8-turns, softmax-only, no-softmax.
#   eighth   clocks.py with --precision fp8; fp8_accuracy.py (its even-probabilities row) on main
#            and on the tree's pass; the memcheck run 77's timeout cut off.
seventh() {
    PRECISION=fp8 bash Tests/GPU/ablate_run.sh $G wan13b fp8-turns softmax-only no-softmax
}
eighth() {
    LIMIT=${LIMIT:-400}
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    SECONDS=0
    variant_sets tree wan13b fp8synth
    sh Tests/GPU/build_sets.sh $G t64 wan13b fp8synth 2>&1 | tail -5
    wait
    echo "built in $SECONDS s"
    M=$G/wan13b.json
    timeout 90 python3 Tests/GPU/clocks.py main=$G/wan13b/$L:$M --precision fp8 2>&1 | tee $OUT/clocks.log
    for g in $G $G-vtree; do
      left 60 && timeout 60 python3 Tests/GPU/fp8_accuracy.py $g 2>&1 | grep "^|" | tee $OUT/fp8-accuracy-${g#.}.log
    done
    left 100 && memcheck_fp8 90
    echo "end at $SECONDS s"
}
# ninth (carry .gpu/wan14b, .gpu/wan14b.json, .gpu-var): where Wan 14B's scattered plans lose to its
#   calibrated-like ones (effective 0.81-0.85 of dense against 0.89-0.97, run 76): CTA 0's cycles
#   per item on layers 1 (calibrated-like 0.5), 7 and 9 (scattered 0.5, 0.1), a trace build.
ninth() {
    trace_build $G wan14b || return 1
    PYTHONPATH=$(pwd)/python timeout 200 python3 Tests/GPU/trace.py "$G/wan14b-trace/$L:$G/wan14b.json" 1 7 9 2>&1 | tee "$OUT/trace.log"
}
# tenth (carry .gpu with wan14b and fp8synth-rec, .gpu-var with `overlay.sh fffa1a3 tree`): run 79
#   found fp8's softmax alone (0.70-0.74 of the loop) and its products alone (0.71) both far above
#   their issue and tensor floors, at about the rate K and V come from L2: the loop without its
#   loads and with nothing but them, in both precisions; Wan 14B's layers sustained with the SM
#   clock and power (scattered plans: cycles or clock?) and CTA 0's items with their tile counts;
#   then eighth.
tenth() {
    LIMIT=${LIMIT:-560}
    SECONDS=0
    OUT=$OUT/fp8 PRECISION=fp8 bash Tests/GPU/ablate_run.sh $G wan13b loads-only no-loads 2>&1 | grep -v "^  wg. item \([4-9]\|1[01]\)"
    echo "fp8 ablation done at $SECONDS s"
    OUT=$OUT/bf16 bash Tests/GPU/ablate_run.sh $G wan13b loads-only no-loads 2>&1 | grep -v "^  wg. item \([4-9]\|1[01]\)"
    echo "bf16 ablation done at $SECONDS s"
    sh Tests/GPU/build_sets.sh $G wan14b 2>&1 | tail -3
    PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU timeout 120 python3 Tests/GPU/clocks.py main=$G/wan14b/$L:$G/wan14b.json \
        --seconds 2 --layers 0 1 7 9 2>&1 | tee $OUT/clocks14.log
    echo "clocks done at $SECONDS s"
    left 100 && ninth
    echo "trace done at $SECONDS s"
    left 200 && LIMIT=$((LIMIT - SECONDS)) eighth
}
# eleventh (carry .gpu without fp8synth-rec, .gpu-var with s3 and s5: main's wgmma_kernel.cuh with
#   kMaxStages 3 and 5): the ring as deep as shared memory allows, up to 4 (FP8 and head_dim 64 go
#   from 3 stages to 4): every test, FP8 timed beside 3 and 5 stages at both shapes, a memcheck of
#   the sets whose ring changed; Wan 14B's layers sustained with the memory's busy share.
eleventh() {
    LIMIT=${LIMIT:-560}
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    SECONDS=0
    for v in s3 s5; do variant $v wan13b $G-v$v; variant $v wan14b $G-v$v-14; done
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 ex wan13b wan14b tlong 2>&1 | tail -5
    wait
    echo "built in $SECONDS s"
    gpu_tests 170
    M=$G/wan13b.json M14=$G/wan14b.json
    left 60 && timeout 70 python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M s3=$G-vs3/wan13b/$L:$M s5=$G-vs5/wan13b/$L:$M \
      --rounds 2 --precision fp8 2>&1 | tee $OUT/fp8-wan13b.log
    left 60 && timeout 100 python3 Tests/GPU/bench_versions.py main=$G/wan14b/$L:$M14 s3=$G-vs3-14/wan14b/$L:$M14 s5=$G-vs5-14/wan14b/$L:$M14 \
      --rounds 1 --precision fp8 2>&1 | tee $OUT/fp8-wan14b.log
    echo "fp8 timed at $SECONDS s"
    left 60 && timeout 80 python3 Tests/GPU/clocks.py main=$G/wan14b/$L:$M14 --seconds 2 --layers 0 1 7 9 2>&1 | tee $OUT/clocks14.log
    echo "clocks done at $SECONDS s"
    left 40 && memcheck $((LIMIT - SECONDS - 10)) "(every_plan and t64) or (every_plan and t128 and fp8) or jump"
}
# twelfth (after the two FA4 transfers of `fourth`'s kind on the same warm machine; carry .gpu
#   without fp8synth-rec, .gpu-var/w0: main with every walk from block 0): bf16 rows' walks from the
#   front (Front in wgmma_kernel.cuh): every test, Wan 14B and 1.3B beside w0 and FA4, the layers
#   sustained with the memory's busy share, a memcheck of the bf16 plans.
twelfth() {
    LIMIT=${LIMIT:-560}
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU:$(cat /tmp/fa4.path 2>/dev/null)
    SECONDS=0
    variant w0 wan13b $G-vw0; variant w0 wan14b $G-vw0-14
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 ex wan13b wan14b tlong fp8synth 2>&1 | tail -5
    wait
    echo "built in $SECONDS s"
    gpu_tests 120
    M=$G/wan13b.json M14=$G/wan14b.json
    left 100 && timeout 200 python3 Tests/GPU/bench_versions.py main=$G/wan14b/$L:$M14 w0=$G-vw0-14/wan14b/$L:$M14 --rounds 2 2>&1 \
      | grep -v Warn | grep -v exe_args | tee $OUT/bf16-wan14b.log
    echo "14b at $SECONDS s"
    left 80 && timeout 90 python3 Tests/GPU/clocks.py main=$G/wan14b/$L:$M14 w0=$G-vw0-14/wan14b/$L:$M14 --seconds 1.5 --layers 0 1 7 9 2>&1 \
      | grep -v Warn | grep -v exe_args | tee $OUT/clocks14.log
    echo "clocks at $SECONDS s"
    left 70 && timeout 70 python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M w0=$G-vw0/wan13b/$L:$M --rounds 2 2>&1 \
      | grep -v Warn | grep -v exe_args | tee $OUT/bf16-wan13b.log
    echo "13b at $SECONDS s"
    left 40 && memcheck $((LIMIT - SECONDS - 10)) "(every_plan and not fp8) or (jump and not fp8)"
}
# thirteenth (carry .gpu without fp8synth-rec, .gpu-var/sp16 and sp64: each CTA's walks begin at
#   key block (37 c) mod W, W 16 or 64): twelfth's time-driven front cost Wan 14B dense 9% (the
#   memory 23% busy against 3%) and gained Wan 1.3B dense 8%: does a spread bounded in key space
#   keep the gain without the traffic? bf16 at both shapes, one round.
thirteenth() {
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    SECONDS=0
    for v in sp16 sp64; do variant $v wan13b $G-v$v; variant $v wan14b $G-v$v-14; done
    sh Tests/GPU/build_sets.sh $G wan13b wan14b 2>&1 | tail -3
    wait
    echo "built in $SECONDS s"
    M=$G/wan13b.json M14=$G/wan14b.json
    timeout 60 python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M sp16=$G-vsp16/wan13b/$L:$M sp64=$G-vsp64/wan13b/$L:$M \
      --rounds 2 2>&1 | tee $OUT/bf16-wan13b.log
    timeout 80 python3 Tests/GPU/bench_versions.py main=$G/wan14b/$L:$M14 sp16=$G-vsp16-14/wan14b/$L:$M14 sp64=$G-vsp64-14/wan14b/$L:$M14 \
      --rounds 1 2>&1 | tee $OUT/bf16-wan14b.log
    echo "end at $SECONDS s"
}
# fourteenth (carry .gpu without fp8synth-rec): is it the working set? Wan 14B bf16 with each row's
#   first half of its kept blocks (half-span: half a head's K and V) beside every other kept block
#   (half-stride: the same work over the whole head), timed, traced and sustained with the
#   memory's busy share.
fourteenth() {
    bash Tests/GPU/ablate_run.sh $G wan14b half-span half-stride 2>&1 | grep -v "^  wg2\|^  wg1 item \([4-9]\|1[01]\)"
    M14=$G/wan14b.json
    PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU timeout 150 python3 Tests/GPU/clocks.py main=$G/wan14b/$L:$M14 \
        span=$G/wan14b-half-span/$L:$M14 stride=$G/wan14b-half-stride/$L:$M14 --seconds 1.5 --layers 0 1 7 9 2>&1 | tee $OUT/clocks14.log
}
# fifteenth (carry .gpu without wan14b and fp8synth-rec): what `fp8`'s skeleton (1,270 cycles a tile,
#   run 80) waits for: loads-only beside the same with the consumers not waiting for K and V.
fifteenth() {
    PRECISION=fp8 bash Tests/GPU/ablate_run.sh $G wan13b loads-only skeleton 2>&1 | grep -v "^  wg2\|^  wg1 item \([4-9]\|1[01]\)"
}
# sixteenth (carry .gpu without wan14b and fp8synth-rec): Wan 1.3B's groups of three heads (48 MB of
#   16-bit K and V) against one (head-major): working_set.py puts scattered 0.1's misses at a
#   fifth with one head if the L2 keeps about half its size for what every SM reads.
sixteenth() {
    bash Tests/GPU/ablate_run.sh $G wan13b head-major 2>&1 | grep -v "^  wg2\|^  wg1 item \([4-9]\|1[01]\)"
    M=$G/wan13b.json
    PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU timeout 120 python3 Tests/GPU/clocks.py main=$G/wan13b/$L:$M \
        byhead=$G/wan13b-head-major/$L:$M --seconds 1.5 --layers 0 1 7 8 9 2>&1 | tee $OUT/clocks13.log
}
# queued (carry .gpu without fp8synth-rec): fourteenth, sixteenth and fifteenth in one call, each
#   while the call's LIMIT (default 560 s) leaves it room.
queued() {
    LIMIT=${LIMIT:-560}
    SECONDS=0
    fourteenth; echo "fourteenth done at $SECONDS s"
    left 150 && sixteenth; echo "sixteenth done at $SECONDS s"
    left 80 && fifteenth; echo "end at $SECONDS s"
}
# split calls (issue 29, two passes over a head's key halves): three on one warm machine.
#   fa4_parts       carry .fa4/small and .fa4/a: copied into /tmp/fa4.
#   split_bench     carry .gpu, .gpu-var (before: the kernel files before the split) and .fa4/b:
#       FA4 installed; every set built; test_cuda.py (the split cases included); Wan 14B main
#       (split lists) beside before and FA4 (3 rounds), clocks of both on layers 0 1 7 8 9.
#   split_check     no carry (the sets built above stay): memcheck of the split tests, Wan 1.3B
#       (unsplit either way) beside before and FA4.
fa4_parts() { cp .fa4/small/* .fa4/a/* /tmp/fa4/ && ls /tmp/fa4 | wc -l; }
# fa4_install (after fa4_parts, carry .fa4/b): the second half of the split wheel copied, every wheel
#   unpacked, and PYTHONPATH set to find FA4 beside calibc.
fa4_install() {
    cp .fa4/b/* /tmp/fa4/ && sh Tests/GPU/install_fa4.sh /tmp/fa4 > /tmp/fa4.path 2>$OUT/fa4-install.log
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU:$(cat /tmp/fa4.path)
}
# wan14b_beside_before SECONDS ROUNDS LOG: Wan 14B's layers, main beside .gpu-var/before's build
# (variant before wan14b $G-vbefore-14), and FA4 where it is on PYTHONPATH, into $OUT/LOG.
wan14b_beside_before() {
    local M=$G/wan14b.json
    timeout $1 python3 Tests/GPU/bench_versions.py main=$G/wan14b/$L:$M before=$G-vbefore-14/wan14b/$L:$M --rounds $2 2>&1 \
        | grep -v Warn | grep -v exe_args | tee $OUT/$3
}
# beside_fa4 SET...: the card named in $OUT/machine.log, FA4 installed, Wan 14B's before variant
# and $G's SETs built (h200_fa4, confirm, h200_row).
beside_fa4() {
    name_card
    fa4_install
    variant before wan14b $G-vbefore-14
    sh Tests/GPU/build_sets.sh $G "$@" 2>&1 | tail -3
    wait
    echo "built in $SECONDS s"
}
split_bench() {
    LIMIT=${LIMIT:-570}
    SECONDS=0
    fa4_install
    python3 -c "import flash_attn.cute; print('fa4 ok')" 2>&1 | tail -1
    variant before wan14b $G-vbefore-14; variant before wan13b $G-vbefore
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 ex wan13b wan14b tlong fp8synth 2>&1 | tail -5
    wait
    echo "built in $SECONDS s"
    gpu_tests 150 -k "not fp8"
    M14=$G/wan14b.json
    left 230 && wan14b_beside_before 230 3 bf16-wan14b.log
    echo "14b at $SECONDS s"
    left 60 && timeout $((LIMIT - SECONDS - 5)) python3 Tests/GPU/clocks.py main=$G/wan14b/$L:$M14 before=$G-vbefore-14/wan14b/$L:$M14 \
        --seconds 1.5 --layers 1 7 8 9 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/clocks14.log
    echo "end at $SECONDS s"
}
split_check() {
    LIMIT=${LIMIT:-570}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU:$(cat /tmp/fa4.path)
    memcheck 200 "split and not fp8"
    M=$G/wan13b.json
    left 150 && timeout 150 python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M before=$G-vbefore/wan13b/$L:$M --rounds 3 2>&1 \
        | grep -v Warn | grep -v exe_args | tee $OUT/bf16-wan13b.log
    echo "13b at $SECONDS s"
    left 100 && gpu_tests $((LIMIT - SECONDS - 10)) -k "fp8"
    echo "end at $SECONDS s"
}
# split_run   carry .gpu and .gpu-var (before): every set built; the split tests first (a wait that
#       never ends is a hang: they get a short limit of their own), Wan 14B main beside before (2
#       rounds), clocks on layers 1 7 9, the other bf16 tests, memcheck of the split tests.
split_run() {
    LIMIT=${LIMIT:-480}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    variant before wan14b $G-vbefore-14
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 ex wan13b wan14b tlong 2>&1 | tail -5
    wait
    echo "built in $SECONDS s"
    gpu_tests 90 -k "split"
    M14=$G/wan14b.json
    wan14b_beside_before 120 2 bf16-wan14b.log
    echo "14b at $SECONDS s"
    left 60 && timeout 60 python3 Tests/GPU/clocks.py main=$G/wan14b/$L:$M14 before=$G-vbefore-14/wan14b/$L:$M14 \
        --seconds 1.5 --layers 1 7 9 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/clocks14.log
    echo "clocks at $SECONDS s"
    mkdir -p $OUT/rest; left 100 && OUT=$OUT/rest gpu_tests $((LIMIT - SECONDS - 80)) -k "not fp8 and not split"
    left 30 && memcheck $((LIMIT - SECONDS - 5)) "split and not fp8"
    echo "end at $SECONDS s"
}
# split_run2  carry .gpu and .gpu-var (before): split lists of scattered rows only; the split tests,
#       Wan 14B main beside before (3 rounds), memcheck of the split tests.
split_run2() {
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    variant before wan14b $G-vbefore-14
    sh Tests/GPU/build_sets.sh $G t128 t64 ex wan14b tlong 2>&1 | tail -5
    wait
    echo "built in $SECONDS s"
    gpu_tests 60 -k "split"
    wan14b_beside_before 120 3 bf16-wan14b.log
    echo "14b at $SECONDS s"
    memcheck 60 "split and not fp8"
    echo "end at $SECONDS s"
}
# split_fa4   after fa4_parts on the same warm machine; carry .gpu, .gpu-var (before) and .fa4/b:
#       FA4 installed, Wan 14B main beside before and FA4 (3 rounds). Run 90.
split_fa4() {
    fa4_install
    variant before wan14b $G-vbefore-14
    sh Tests/GPU/build_sets.sh $G wan14b 2>&1 | tail -2
    wait
    wan14b_beside_before 150 3 bf16-wan14b-fa4.log
}
# Session of 2026-12-05 18:46 (runs 91-): issue 29's last row on an H200, then every test on v25.
#   fa4_parts       as above (carry .fa4/small and .fa4/a).
#   h200_fa4        carry .gpu, .gpu-var (before = e67ce9a, the kernel before the split) and .fa4/b:
#       FA4 installed; Wan 14B main beside before and FA4 (3 rounds), Wan 1.3B main beside FA4
#       (4 rounds), as run 81 took them.
#   v25_tests       no carry (h200_fa4's sets stay): every set built, test_cuda.py whole (FP8 and the
#       split cases in it), memcheck of the split and FP8 plans, then fifteenth while time is left.
h200_fa4() {
    LIMIT=${LIMIT:-560}
    SECONDS=0
    beside_fa4 wan14b wan13b
    python3 -c "import flash_attn.cute; print('fa4 ok')" 2>&1 | tail -1
    wan14b_beside_before 200 3 bf16-wan14b-fa4.log
    echo "14b at $SECONDS s"
    M=$G/wan13b.json
    left 60 && timeout $((LIMIT - SECONDS - 5)) python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M --rounds 4 2>&1 \
        | grep -v Warn | grep -v exe_args | tee $OUT/bf16-wan13b-fa4.log
    echo "end at $SECONDS s"
}
v25_tests() {
    LIMIT=${LIMIT:-560}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 ex wan13b wan14b tlong fp8synth 2>&1 | tail -5
    echo "built in $SECONDS s"
    gpu_tests 300
    left 120 && memcheck 100 "split and not fp8" sanitizer-split.log
    left 90 && memcheck_fp8 80
    left 100 && fifteenth
    echo "end at $SECONDS s"
}
#   confirm         carry .gpu, .gpu-var (before) and .fa4/b, after fa4_parts: the split tests (the new
#       switch test among them) and the capture after calib_cuda_prepare alone; Wan 14B main (split
#       rows of 96 kept blocks or more) beside before and FA4, 3 rounds. (Its first version also traced fifteenth's skeleton, which run 94 took
#       inline.)
confirm() {
    LIMIT=${LIMIT:-400}
    SECONDS=0
    beside_fa4 wan14b wan13b t128 t64 tj128 tj64 tjf64 ex  # wan13b: fp8_quick after it
    gpu_tests 120 -k "split or prepare"
    wan14b_beside_before 200 3 bf16-wan14b-fa4.log
    echo "end at $SECONDS s"
}
#   turns           carry .gpu (after confirm on the same machine, nothing more): Wan 1.3B built with
#       -DCALIB_CUDA_TRACE, and trace.py's table of what each turn of CTA 0's second item waits on
#       (CALIB_TURN), dense, in bf16, fp8 and fp8-pv, into $OUT/turns.log.
turns() {
    export PYTHONPATH=$(pwd)/python
    trace_build $G wan13b || return
    for pr in "" fp8 fp8-pv; do
        echo "== ${pr:-bf16}"
        timeout 40 python3 Tests/GPU/trace.py "$G/wan13b-trace/$L:$G/wan13b.json" 0 ${pr:+--precision $pr} 2>&1 | grep -v "^  wg[12] item \([4-9]\|1[01]\)"
    done | tee $OUT/turns.log
}
#   h200_row        carry .gpu/wan14b, .gpu/wan14b.json, .gpu-var (before) and .fa4/b, after fa4_parts:
#       confirm without its tests (for a session with little device time left): Wan 14B main beside
#       before and FA4, 2 rounds.
h200_row() {
    SECONDS=0
    beside_fa4 wan14b
    wan14b_beside_before 200 2 bf16-wan14b-fa4.log
    echo "end at $SECONDS s"
}
# claims_one and claims_fa4: the items claimed from a counter (docs/gpu.md, "Items claimed from a
#   counter") on one warm machine, in turn.
#   claims_one   carry .fa4/small, .fa4/a and .fa4/pack (`tar cJf .fa4/pack/sets.tar.xz .gpu/wan14b
#       .gpu/wan14b.json .gpu/t128 .gpu/t128.json .gpu/wan13b .gpu/wan13b.json .gpu-var/before`, with
#       `before` = a9e08e7: the sets whole are over the carry limit beside FA4's parts): the card
#       named, FA4's first parts copied; t128, wan13b and wan14b built with their before variants;
#       t128's every test; Wan 14B main beside before (2 rounds), then clocks.py on layers 7 8 9;
#       memcheck of t128's split and captured cases; Wan 1.3B bf16 and fp8 beside before.
#   claims_fa4   carry .fa4/b: FA4 installed; Wan 14B main beside before and FA4, 2 rounds, then
#       clocks.py on layers 7 8 9 with FA4.
# claims_sets: the card named, .fa4/pack's sets unpacked, t128, wan13b and wan14b built beside
#   wan13b's and wan14b's before variants, t128's every test.
claims_sets() {
    name_card
    tar xJf .fa4/pack/sets.tar.xz
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    variant before wan13b $G-vbefore
    variant before wan14b $G-vbefore-14
    sh Tests/GPU/build_sets.sh $G t128 wan13b wan14b 2>&1 | tail -3
    wait
    echo "built in $SECONDS s"
    gpu_tests 150 -k t128
}
claims_one() {
    LIMIT=${LIMIT:-570}
    SECONDS=0
    fa4_parts
    claims_sets
    local M=$G/wan14b.json M13=$G/wan13b.json
    left 200 && wan14b_beside_before 110 2 bf16-wan14b.log
    left 150 && timeout 100 python3 Tests/GPU/clocks.py main=$G/wan14b/$L:$M before=$G-vbefore-14/wan14b/$L:$M \
        --layers 7 8 9 2>&1 | grep -v Warn | tee $OUT/clocks.log
    left 100 && memcheck 80 "t128 and (split or captured)" sanitizer-claims.log
    left 90 && timeout 80 python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M13 before=$G-vbefore/wan13b/$L:$M13 \
        --rounds 2 2>&1 | grep -v Warn | tee $OUT/bf16-wan13b.log
    left 60 && timeout $((LIMIT - SECONDS - 10)) python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M13 \
        before=$G-vbefore/wan13b/$L:$M13 --rounds 2 --precision fp8 2>&1 | grep -v Warn | tee $OUT/fp8-wan13b.log
    echo "end at $SECONDS s"
}
# claims_check (carry .fa4/pack, as for claims_one): the FP8 fix (fp8's scale and apart flag handed
#   over with the item): t128's every test; Wan 1.3B fp8 (4 rounds), fp8-pv and bf16 (2) beside
#   before; Wan 14B bf16 beside before (2); memcheck of t128's captured cases.
claims_check() {
    LIMIT=${LIMIT:-420}
    SECONDS=0
    claims_sets
    local M13=$G/wan13b.json pr rounds
    for pr in fp8:4 fp8-pv:2 bf16:2; do
        rounds=${pr#*:} pr=${pr%:*}
        left 100 && timeout 60 python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M13 before=$G-vbefore/wan13b/$L:$M13 \
            --rounds $rounds $([ $pr = bf16 ] || echo --precision $pr) 2>&1 | grep -v Warn | tee $OUT/$pr-wan13b.log
    done
    left 130 && wan14b_beside_before 110 2 bf16-wan14b.log
    left 60 && memcheck $((LIMIT - SECONDS - 10)) "t128 and captured" sanitizer-captured.log
    echo "end at $SECONDS s"
}
claims_fa4() {
    LIMIT=${LIMIT:-570}
    SECONDS=0
    name_card
    fa4_install
    python3 -c "import flash_attn.cute; print('fa4 ok')" 2>&1 | tail -1
    wan14b_beside_before 200 2 bf16-wan14b-fa4.log
    local M=$G/wan14b.json
    left 130 && timeout 120 python3 Tests/GPU/clocks.py main=$G/wan14b/$L:$M before=$G-vbefore-14/wan14b/$L:$M \
        --layers 7 8 9 2>&1 | grep -v Warn | tee $OUT/clocks-fa4.log
    echo "end at $SECONDS s"
}
#   fp8_quick       carry .gpu/{t128,wan13b}{,.json} and .gpu-var (`sh Tests/GPU/overlay.sh bad08e3 pvu`,
#       `dada500 vmo8`): P V after Q K(j) (pvu) and v's rounding mean with fp8-pv's gain 8 (vmo8:
#       its `fp8` is 4ab7f0b's alone) beside main on Wan 1.3B: vmo8's accuracy (without the
#       recording), both timed beside main, their t128 FP8 tests, in that order while LIMIT (560)
#       leaves time.
fp8_quick() {
    LIMIT=${LIMIT:-560}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    local M=$G/wan13b.json n pr
    (sh Tests/GPU/build_sets.sh $G t128 wan13b 2>&1 | tail -3) &
    for n in pvu vmo8; do variant_sets $n t128 wan13b; done
    wait
    echo "built in $SECONDS s"
    timeout 90 python3 Tests/GPU/fp8_accuracy.py $G-vvmo8 2>&1 | tee $OUT/accuracy-vmo8.log | grep "^|"
    echo "accuracy at $SECONDS s"
    for pr in fp8-pv fp8; do
        left 80 && timeout 90 python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M pvu=$G-vpvu/wan13b/$L:$M \
            vmo8=$G-vvmo8/wan13b/$L:$M --rounds 2 --precision $pr 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/$pr-wan13b.log
        echo "$pr at $SECONDS s"
    done
    for n in vmo8 pvu; do
        left 60 && CALIBC_GPU_DIR=$(pwd)/$G-v$n timeout 70 python3 -m pytest -q -m gpu -k "fp8 and t128" Tests/python/test_cuda.py 2>&1 \
            | tee $OUT/test-$n.log | grep -v "^[.s]*$" | tail -4
        echo "$n tests at $SECONDS s"
    done
    echo "end at $SECONDS s"
}
#   first_tile      carry .gpu (main: the first tile's neutral shift) and .gpu-var (bug = 319253f, the
#       kernel before it): every test set built both ways, test_cuda.py -k fp8 on main, then the
#       even-probabilities test on both (prediction: main passes, bug fails on `fp8` where its
#       codes are packed: t128, ex; passes on `fp8-pv` and on the sets with text last).
first_tile() {
    LIMIT=${LIMIT:-240}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    local B=$G-vbug sets="t128 t64 tj128 tj64 tjf64 ex"
    variant_sets bug $sets
    sh Tests/GPU/build_sets.sh $G $sets 2>&1 | tail -2 &
    wait
    echo "built in $SECONDS s"
    gpu_tests 100 -k "fp8"
    CALIBC_GPU_DIR=$(pwd)/$B timeout 60 python3 -m pytest -q -m gpu -k "even_probabilities" Tests/python/test_cuda.py 2>&1 \
        | grep -v "^[.sF]*$" | grep "Error\|error\|passed\|failed" | tail -12
    echo "end at $SECONDS s"
}
# Session of 2026-12-05 20:20 (no device lent; written for the next one). After fa4_parts and
# confirm on the same warm machine:
#   fp8_beside   VAR="NAME ..." (run 98: ovl); carry .gpu (with fp8synth-rec, without e2e*) and .gpu-var/NAME
#       (`overlay.sh REV NAME`): every test set and wan13b built as they are and with each NAME's
#       kernel files; the FP8 tests on each, Wan 1.3B fp8 and fp8-pv main beside them all (2 rounds),
#       fp8_accuracy.py on each, a memcheck of each one's FP8 plans.
#   text_last    with the branch text-last-split checked out; carry .gpu (its sources: hy720, no wan14b)
#       and .gpu-var/before (`overlay.sh main before`): the padded-text and split tests, their memcheck,
#       hy720's layers (HunyuanVideo 720p, text last) split beside before (one pass), 2 rounds.
fp8_beside() {
    LIMIT=${LIMIT:-570}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    local names=${VAR:-ovl} sets="t128 t64 tj128 tj64 tjf64 ex wan13b fp8synth tlong" M=$G/wan13b.json n
    local versions="main=$G/wan13b/$L:$M"
    (sh Tests/GPU/build_sets.sh $G $sets 2>&1 | tail -5) &
    for n in $names; do
        variant_sets $n $sets
        versions="$versions $n=$G-v$n/wan13b/$L:$M"
    done
    wait
    echo "built in $SECONDS s"
    for n in $names; do
        CALIBC_GPU_DIR=$(pwd)/$G-v$n timeout 200 python3 -m pytest -q -m gpu -k "fp8" Tests/python/test_cuda.py 2>&1 | tee "$OUT/test-$n.log" \
            | grep -v "^[.s]*$" | tail -12
        echo "$n fp8 tests done at $SECONDS s"
    done
    left 100 && timeout 100 python3 Tests/GPU/bench_versions.py $versions --rounds 2 --precision fp8 2>&1 | grep -v Warn | grep -v exe_args \
        | tee $OUT/fp8-wan13b.log
    left 100 && timeout 100 python3 Tests/GPU/bench_versions.py $versions --rounds 2 --precision fp8-pv 2>&1 | grep -v Warn | grep -v exe_args \
        | tee $OUT/fp8-pv-wan13b.log
    echo "bench done at $SECONDS s"
    for n in "" $names; do
        left 60 && timeout 60 python3 Tests/GPU/fp8_accuracy.py $G${n:+-v$n} 2>&1 | grep "^|" | sed "s/^/${n:-main} /" | tee -a $OUT/fp8-accuracy.log
    done
    for n in $names; do
        left 50 && CALIBC_GPU_DIR=$(pwd)/$G-v$n timeout 60 compute-sanitizer --tool memcheck --print-limit 5 \
            python3 -m pytest -q -m gpu -k "every_plan and t64 and fp8" Tests/python/test_cuda.py > $OUT/sanitizer-$n.log 2>&1
        tail -1 $OUT/sanitizer-$n.log
    done
    echo "end at $SECONDS s"
}
text_last() {
    LIMIT=${LIMIT:-500}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    variant before hy720 $G-vbefore-hy
    sh Tests/GPU/build_sets.sh $G t128 tj128 tj64 tjf64 hy720 2>&1 | tail -5
    wait
    echo "built in $SECONDS s"
    gpu_tests 150 -k "padded_text or split"
    left 60 && memcheck 60 "padded_text and split" sanitizer-text.log
    M=$G/hy720.json
    left 60 && timeout $((LIMIT - SECONDS - 10)) python3 Tests/GPU/bench_versions.py main=$G/hy720/$L:$M before=$G-vbefore-hy/hy720/$L:$M \
        --rounds 2 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/bf16-hy720.log
    echo "end at $SECONDS s"
}
# Session of 2026-12-06 06:30 (issue 27's efficiency: the pass beside the loop, branch fp8-beside: its
# kernel and pass_trace.py are 6459c17^2, merged and reverted by d2d2fb6). .gpu-var/main was main's kernel
# then (`sh Tests/GPU/overlay.sh 1782107 main`); on one warm machine in turn:
#   beside_a   carry .gpu and .gpu-var: every test set and Wan 1.3B built, main's kernel beside it;
#       test_cuda.py -k fp8 (the rounding-mean test among them) under a limit (a wait that never ends
#       is a hang), Wan 1.3B fp8 and fp8-pv beside main's kernel (2 rounds), fp8 again with 32 pass CTAs.
#   beside_b   no carry (beside_a's builds stay): Wan 14B built both ways, fp8 and fp8-pv beside main's
#       kernel (2 rounds), `fp8` with 8 and 28 pass CTAs, memcheck of the FP8 plans, the accuracy table
#       (not run: Wan 1.3B's rows already ruled the kernel out).
beside_a() {
    LIMIT=${LIMIT:-570}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    name_card
    variant main wan13b $G-vmain
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 ex wan13b tlong fp8synth 2>&1 | tail -5
    wait
    echo "built in $SECONDS s"
    gpu_tests 170 -k "fp8"
    local M=$G/wan13b.json pr
    for pr in fp8 fp8-pv; do
        left 60 && timeout $((LIMIT - SECONDS - 10)) python3 Tests/GPU/bench_versions.py beside=$G/wan13b/$L:$M main=$G-vmain/wan13b/$L:$M \
            --rounds 2 --precision $pr 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/$pr-wan13b.log
        echo "$pr at $SECONDS s"
    done
    left 40 && CALIB_CUDA_PASS_CTAS=32 timeout $((LIMIT - SECONDS - 5)) python3 Tests/GPU/bench_versions.py beside32=$G/wan13b/$L:$M \
        main=$G-vmain/wan13b/$L:$M --rounds 2 --precision fp8 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/fp8-wan13b-p32.log
    echo "end at $SECONDS s"
}
#   beside_trace  carry .gpu and .gpu-var: Wan 1.3B built with -DCALIB_CUDA_TRACE both ways; pass_trace.py
#       (CTA 0's pass steps: waits and compute by kind) with 16 and 32 pass CTAs, and main's pass
#       launches timed apart (fp8_pass_profile.py).
beside_trace() {
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    variant main wan13b $G-vmain
    wait
    trace_build $G wan13b & trace_build $G-vmain wan13b & wait
    echo "built in $SECONDS s"
    for n in 16 32; do CALIB_CUDA_PASS_CTAS=$n timeout 60 python3 Tests/GPU/pass_trace.py $G/wan13b-trace/$L 2>&1 | tail -12; done | tee $OUT/pass-trace.log
    timeout 90 python3 Tests/GPU/fp8_pass_profile.py main=$G-vmain/wan13b-trace/$L:$G/wan13b.json 2>&1 | grep -v Warn | tee $OUT/pass-profile-main.log
    echo "end at $SECONDS s"
}
beside_b() {
    LIMIT=${LIMIT:-570}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    variant main wan14b $G-vmain14
    sh Tests/GPU/build_sets.sh $G wan14b 2>&1 | tail -3
    wait
    echo "built in $SECONDS s"
    local M=$G/wan14b.json pr n
    for pr in fp8 fp8-pv; do
        timeout 120 python3 Tests/GPU/bench_versions.py beside=$G/wan14b/$L:$M main=$G-vmain14/wan14b/$L:$M \
            --rounds 2 --precision $pr 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/$pr-wan14b.log
        echo "$pr at $SECONDS s"
    done
    for n in 8 28; do
        left 100 && CALIB_CUDA_PASS_CTAS=$n timeout 90 python3 Tests/GPU/bench_versions.py beside$n=$G/wan14b/$L:$M \
            main=$G-vmain14/wan14b/$L:$M --rounds 2 --precision fp8 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/fp8-wan14b-p$n.log
        echo "P=$n at $SECONDS s"
    done
    left 80 && memcheck_fp8 70
    left 40 && timeout $((LIMIT - SECONDS - 5)) python3 Tests/GPU/fp8_accuracy.py $G 2>&1 | grep "^|" | tee $OUT/fp8-accuracy.log
    echo "end at $SECONDS s"
}
# Session of 2026-12-06 06:30, after the branch fp8-beside (runs 109-113):
#   main_check  carry .gpu without wan13b, wan14b and fp8synth-rec (moved aside: the carry limit),
#       .fa4/small and .fa4/a: on an H200 the FA4 parts copied for h200_row at once after it; on any
#       card the test sets built and test_cuda.py -k fp8 on main's kernel (the rounding-mean test).
main_check() {
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    name_card
    if grep -q H200 "$OUT/machine.log"; then fa4_parts; fi
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 ex tlong fp8synth 2>&1 | tail -3
    echo "built in $SECONDS s"
    gpu_tests 150 -k "fp8"
    echo "end at $SECONDS s"
}
#   launches_run  (run 115; branch pass-launches) carry .gpu and .gpu-var (main = main's kernel): the pass's
#       launches with their loads kept as they came (three CTAs an SM for quantize with Q Kt on e4m3),
#       stats chunks of 512 with eight loads of a thread in flight, one fence a quantize CTA: every
#       test set built, the FP8 tests, both kernels' pass launches timed apart (fp8_pass_profile.py,
#       trace builds), Wan 1.3B fp8 and fp8-pv beside main's kernel (2 rounds), memcheck of the FP8 plans.
launches_run() {
    LIMIT=${LIMIT:-400}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    name_card
    variant main wan13b $G-vmain
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 ex wan13b tlong fp8synth 2>&1 | tail -3
    wait
    trace_build $G wan13b & trace_build $G-vmain wan13b & wait
    echo "built in $SECONDS s"
    gpu_tests 120 -k "fp8"
    timeout 60 python3 Tests/GPU/fp8_pass_profile.py new=$G/wan13b-trace/$L:$G/wan13b.json main=$G-vmain/wan13b-trace/$L:$G/wan13b.json 2>&1 \
        | grep -v Warn | grep -v exe_args | tee $OUT/pass-profile.log
    local M=$G/wan13b.json pr
    for pr in fp8 fp8-pv; do
        left 60 && timeout 60 python3 Tests/GPU/bench_versions.py new=$G/wan13b/$L:$M main=$G-vmain/wan13b/$L:$M \
            --rounds 2 --precision $pr 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/$pr-wan13b.log
        echo "$pr at $SECONDS s"
    done
    left 60 && memcheck_fp8 $((LIMIT - SECONDS - 10))
    echo "end at $SECONDS s"
}
#   launches_run2  (run 116) launches_run's kernel with main's stats launch again (run 115: chunks of 512
#       ran 87-104 µs against 56): the FP8 tests, Wan 1.3B fp8 and fp8-pv beside main's kernel (2 rounds).
launches_run2() {
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    variant main wan13b $G-vmain
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 wan13b 2>&1 | tail -3
    wait
    echo "built in $SECONDS s"
    gpu_tests 60 -k "fp8"
    local M=$G/wan13b.json pr
    for pr in fp8 fp8-pv; do
        timeout 60 python3 Tests/GPU/bench_versions.py new=$G/wan13b/$L:$M main=$G-vmain/wan13b/$L:$M \
            --rounds 2 --precision $pr 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/$pr-wan13b.log
        echo "$pr at $SECONDS s"
    done
}
#   apart_run  (run 117; branch fp8-apart) carry .gpu and .gpu-var (main = d046966's kernel): `fp8` with
#       k's 16 widest channels (and q's same) apart in bf16: every set built, the FP8 tests, accuracy
#       beside main's kernel, Wan 1.3B fp8 and fp8-pv and 14B fp8 beside main's kernel (2 rounds), memcheck.
apart_run() {
    LIMIT=${LIMIT:-570}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    name_card
    variant_sets main wan13b wan14b fp8synth
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 ex tlong fp8synth wan13b wan14b 2>&1 | tail -3
    wait
    echo "built in $SECONDS s"
    gpu_tests 150 -k "fp8"
    local pr s M
    for s in wan13b wan14b; do
        M=$G/$s.json
        for pr in fp8 $([ $s = wan13b ] && echo fp8-pv); do
            left 60 && timeout 100 python3 Tests/GPU/bench_versions.py apart=$G/$s/$L:$M main=$G-vmain/$s/$L:$M \
                --rounds 2 --precision $pr 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/$pr-$s.log
            echo "$pr $s at $SECONDS s"
        done
        [ $s = wan13b ] || continue
        for n in "" -vmain; do
            left 70 && timeout 70 python3 Tests/GPU/fp8_accuracy.py $G$n 2>&1 | grep "^|" | sed "s/^/${n:-apart} /" | tee -a $OUT/fp8-accuracy.log
        done
    done
    left 50 && memcheck_fp8 $((LIMIT - SECONDS - 10))
    echo "end at $SECONDS s"
}
#   gather_run  (run 119) carry .gpu (main: the channels apart read again a channel at a time) and
#       .gpu-var (main = d046966, before the channels apart; gather = apart-gather's 03ba103): the
#       FP8 tests of gather; the pass's launches of all three timed apart (fp8_pass_profile.py, trace
#       builds of Wan 1.3B); Wan 1.3B and 14B fp8 of all three (2 rounds).
gather_run() {
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    name_card
    variant_sets gather t128 t64 tj128 tj64 tjf64 ex wan13b wan14b
    variant_sets main wan13b wan14b
    sh Tests/GPU/build_sets.sh $G wan13b wan14b 2>&1 | tail -3
    wait
    trace_build $G wan13b & trace_build $G-vgather wan13b & trace_build $G-vmain wan13b & wait
    echo "built in $SECONDS s"
    CALIBC_GPU_DIR=$(pwd)/$G-vgather timeout 100 python3 -m pytest -q -m gpu -k "fp8" Tests/python/test_cuda.py 2>&1 \
        | tee $OUT/test-gather.log | grep -v "^[.s]*$" | tail -4
    timeout 60 python3 Tests/GPU/fp8_pass_profile.py apart=$G/wan13b-trace/$L:$G/wan13b.json gather=$G-vgather/wan13b-trace/$L:$G/wan13b.json \
        before=$G-vmain/wan13b-trace/$L:$G/wan13b.json 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/pass-profile.log
    local s
    for s in wan13b wan14b; do
        timeout 150 python3 Tests/GPU/bench_versions.py apart=$G/$s/$L:$G/$s.json gather=$G-vgather/$s/$L:$G/$s.json \
            before=$G-vmain/$s/$L:$G/$s.json --rounds 2 --precision fp8 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/fp8-$s.log
        echo "fp8 $s at $SECONDS s"
    done
    echo "end at $SECONDS s"
}
#   adaptive_run  (run 120; branch apart-adaptive) carry .gpu (its kernel: channels apart only where
#       they carry a large share) and .gpu-var (apart = main's, prior = d046966): every set built,
#       the FP8 tests, accuracy, Wan 1.3B and 14B fp8 of all three (2 rounds), memcheck.
adaptive_run() {
    LIMIT=${LIMIT:-560}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    name_card
    variant_sets apart wan13b wan14b
    variant_sets prior wan13b wan14b
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 ex tlong fp8synth wan13b wan14b 2>&1 | tail -3
    wait
    echo "built in $SECONDS s"
    gpu_tests 150 -k "fp8"
    timeout 70 python3 Tests/GPU/fp8_accuracy.py $G 2>&1 | grep "^|" | tee $OUT/fp8-accuracy.log
    local s
    for s in wan13b wan14b; do
        left 60 && timeout 150 python3 Tests/GPU/bench_versions.py adaptive=$G/$s/$L:$G/$s.json apart=$G-vapart/$s/$L:$G/$s.json \
            prior=$G-vprior/$s/$L:$G/$s.json --rounds 2 --precision fp8 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/fp8-$s.log
        echo "fp8 $s at $SECONDS s"
    done
    left 50 && memcheck_fp8 $((LIMIT - SECONDS - 10))
    echo "end at $SECONDS s"
}
#   int8_run        (run 125; branch fp8-int8-blocks, .gpu-var/int8 = 1f35589) carry .gpu, .gpu-var/int8: Q Kt
#       on int8 in `fp8` (q and k less its mean at a scale a block of 128 tokens): every test set built
#       with it, `test_cuda.py -k fp8` on them, fp8_accuracy.py on it and on main's kernel (.gpu).
int8_run() {
    LIMIT=${LIMIT:-560}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    name_card
    variant_sets int8 t128 t64 tj128 tj64 tjf64 ex tlong fp8synth wan13b wan14b
    sh Tests/GPU/build_sets.sh $G wan13b wan14b fp8synth 2>&1 | tail -3
    wait
    echo "built in $SECONDS s"
    G=$G-vint8 gpu_tests 200 -k "fp8"
    for d in $G-vint8 $G; do
        echo "== accuracy $d"
        timeout 80 python3 Tests/GPU/fp8_accuracy.py $d 2>&1 | grep "^|" | tee -a $OUT/fp8-accuracy.log
    done
    echo "end at $SECONDS s"
}
#   int8_bench      (run 126, on int8_run's machine; on an H200 carry .fa4/small and .fa4/a, copied for h200_row
#       at once after it): Wan 1.3B and 14B, fp8, int8 beside main's kernel (2 rounds); memcheck of the
#       FP8 plans on int8's sets.
int8_bench() {
    LIMIT=${LIMIT:-560}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 && [ -d .fa4/a ]; then fa4_parts; fi
    local s
    for s in wan13b wan14b; do
        left 60 && timeout 180 python3 Tests/GPU/bench_versions.py int8=$G-vint8/$s/$L:$G/$s.json main=$G/$s/$L:$G/$s.json \
            --rounds 2 --precision fp8 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/fp8-$s.log
        echo "fp8 $s at $SECONDS s"
    done
    left 60 && G=$G-vint8 memcheck_fp8 $((LIMIT - SECONDS - 10))
    echo "end at $SECONDS s"
}
# Session of 2026-12-06 13:27 (runs 127-):
#   card_first      carry .fa4/small, .fa4/a, .gpu/e2e14b-d25, .gpu/e2e14b-d25.json and .whl (with
#       `pip download diffusers==0.42.1 --no-deps -d .whl`: the machine has no diffusers, run 127):
#       on an H200 FA4's parts copied and nothing else (h200_row within 30 s); on an H100 the queue's
#       "End to end with FP8": the random-weight Wan 14B forward at density 0.25, bf16 beside `fp8`
#       and `fp8-pv` (run 129).
card_first() {
    SECONDS=0
    name_card
    on_h200_fa4_parts && return
    python3 -m pip install --no-deps --target /tmp/site -q .whl/diffusers-*.whl
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU:/tmp/site
    sh Tests/GPU/build_sets.sh $G e2e14b-d25 2>&1 | tail -2
    echo "built in $SECONDS s"
    timeout 520 python3 Tests/GPU/bench_e2e.py 14b d0.25=$G/e2e14b-d25/$L:fp8,fp8-pv --reps 1 2>&1 \
        | grep -v Warn | tee $OUT/e2e14b.log
    echo "end at $SECONDS s"
}
#   head_dims [SET...]  carry .fa4/small, .fa4/a and the SETs (default t256 t80: run 131 had t256 t96) with
#       their JSONs: the card named; on an H200 FA4's first parts copied (h200_row next); elsewhere the
#       sets whose head_dims no wgmma instance takes built and tested, then memcheck of their plans.
head_dims() {
    SECONDS=0
    local sets="${*:-t256 t80}"
    local pick="${sets// / or }"
    name_card
    on_h200_fa4_parts && return
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    sh Tests/GPU/build_sets.sh $G $sets 2>&1 | tail -3
    echo "built in $SECONDS s"
    gpu_tests 150 -k "$pick"
    memcheck 100 "every_plan and ($pick)"
    echo "end at $SECONDS s"
}
#   whole           carry .gpu (after card_first on the same machine): main's kernel on every test
#       set, test_cuda.py whole (the last whole run, 107, was before the channels apart), then
#       memcheck of the split and the FP8 plans.
whole() {
    LIMIT=${LIMIT:-560}
    SECONDS=0
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU
    sh Tests/GPU/build_sets.sh $G t128 t64 tj128 tj64 tjf64 ex tlong fp8synth wan13b 2>&1 | tail -3
    echo "built in $SECONDS s"
    gpu_tests 330
    left 100 && memcheck 80 "split and not fp8" sanitizer-split.log
    left 60 && memcheck_fp8 $((LIMIT - SECONDS - 10))
    echo "end at $SECONDS s"
}
# Session of 2026-12-06 21:57 (runs 142-): the FP8 fix (fp8's scale and apart flag handed over with
#   the item) checked beside the counter kernel without it, and make test-gpu's every set with both.
#   handed_one    carry .fa4/small and .fa4/pack (sets.tar.xz: every test set, tinywan, wan13b, wan14b
#       and .gpu-var/{before,counter} = a9e08e7, ffddd35; diffusers' wheel beside it): the card named,
#       FA4's small wheels copied; everything built; Wan 1.3B fp8 main beside counter and before (3
#       rounds); test_cuda.py whole.
#   counter_tests on handed_one's machine, no carry (run 143 sent this body through `queue_run.sh
#       eval`): every test set built with the counter's kernel (ffddd35, main's once the fix was not
#       adopted), test_cuda.py whole on it, memcheck of the split, captured and FP8 cases.
#   handed_fa4    on an H200, after h200_light (carry .fa4/b): FA4 installed; Wan 14B main beside
#       before and FA4, Wan 1.3B main beside FA4 (issue 29's H200 rows).
handed_one() {
    LIMIT=${LIMIT:-570}
    SECONDS=0
    name_card
    cp .fa4/small/* /tmp/fa4/
    tar xJf .fa4/pack/sets.tar.xz
    python3 -m pip install --no-deps --target /tmp/site -q .fa4/pack/diffusers-*.whl
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU:/tmp/site
    variant counter wan13b $G-vcounter
    variant before wan13b $G-vbefore
    variant before wan14b $G-vbefore-14
    sh Tests/GPU/build_sets.sh $G t128 t64 ex t256 t80 tj128 tj64 tjf64 tlong fp8synth wan13b wan14b tinywan 2>&1 | tail -3
    wait
    echo "built in $SECONDS s"
    local M=$G/wan13b.json
    timeout 120 python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M counter=$G-vcounter/wan13b/$L:$M \
        before=$G-vbefore/wan13b/$L:$M --rounds 3 --precision fp8 2>&1 | grep -v Warn | grep -v exe_args | tee $OUT/fp8-wan13b.log
    echo "fp8 at $SECONDS s"
    left 60 && gpu_tests $((LIMIT - SECONDS - 10))
    echo "end at $SECONDS s"
}
counter_tests() {
    SECONDS=0
    LIMIT=560
    export PYTHONPATH=$(pwd)/python:$(pwd)/Tests/GPU:/tmp/site
    variant_sets counter t128 t64 ex t256 t80 tj128 tj64 tjf64 tlong fp8synth tinywan
    wait
    echo built $SECONDS
    G=$G-vcounter gpu_tests 200
    G=$G-vcounter memcheck 130 "split and not fp8" sanitizer-split.log
    G=$G-vcounter memcheck 90 "a_captured_cuda_graph" sanitizer-captured.log
    left 60 && G=$G-vcounter memcheck_fp8 $((LIMIT - SECONDS - 10))
    echo end $SECONDS
}
handed_fa4() {
    LIMIT=${LIMIT:-570}
    SECONDS=0
    name_card
    fa4_install
    export PYTHONPATH=$PYTHONPATH:/tmp/site
    python3 -c "import flash_attn.cute; print('fa4 ok')" 2>&1 | tail -1
    wan14b_beside_before 250 2 bf16-wan14b-fa4.log
    echo "14b at $SECONDS s"
    local M=$G/wan13b.json
    left 60 && timeout $((LIMIT - SECONDS - 10)) python3 Tests/GPU/bench_versions.py main=$G/wan13b/$L:$M --rounds 3 2>&1 \
        | grep -v Warn | grep -v exe_args | tee $OUT/bf16-wan13b-fa4.log
    echo "end at $SECONDS s"
}
#   h200_light    (an H200 after handed_one and handed_two ran on another card) carry .fa4/small, .fa4/a
#       and .fa4/p14 (wan13b, wan14b and .gpu-var/before packed): on an H200 FA4's first parts copied,
#       the two shapes and Wan 14B's before built, for handed_fa4 next; elsewhere nothing.
h200_light() {
    SECONDS=0
    name_card
    grep -q H200 "$OUT/machine.log" || { echo "not an H200"; return; }
    fa4_parts
    tar xJf .fa4/p14/sets.tar.xz
    variant before wan14b $G-vbefore-14
    sh Tests/GPU/build_sets.sh $G wan13b wan14b 2>&1 | tail -3
    wait
    echo "built in $SECONDS s"
}
"$@"
