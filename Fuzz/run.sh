#!/bin/sh
# Every libFuzzer target for SECONDS each (default 60), seeded from Fuzz/corpus/<target>: a crash
# leaves its input in .build/fuzz-artifacts and fails, and so does a run that reports no coverage
# counters (SwiftPM's --sanitize fuzzer alone does not instrument).
# usage: sh Fuzz/run.sh [SECONDS]
set -eu
seconds=${1:-60}
targets="masks ir safetensors recording calibrate"
build() {
    CALIBC_FUZZ=1 swift build --build-path .build/fuzz --sanitize fuzzer --sanitize address \
        -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp "$@"
}
for target in $targets; do build --product "fuzz-$target"; done
mkdir -p .build/fuzz-artifacts
fuzz() {
    mkdir -p ".build/fuzz-corpus/$1"
    ".build/fuzz/debug/fuzz-$1" ".build/fuzz-corpus/$1" "Fuzz/corpus/$1" -max_total_time="$seconds" \
        -rss_limit_mb=4096 -artifact_prefix=".build/fuzz-artifacts/$1-" -print_final_stats=1 > ".build/fuzz-$1.log" 2>&1 \
        || touch ".build/fuzz-$1.failed"
}
# Two at a time: each fuzzer is one process, and CI's machine has two cores.
rm -f .build/fuzz-*.failed
running=0
for target in $targets; do
    fuzz "$target" &
    running=$((running + 1))
    [ $running -lt 2 ] || { wait; running=0; }
done
wait
for target in $targets; do
    log=".build/fuzz-$target.log"
    [ ! -e ".build/fuzz-$target.failed" ] || { tail -40 "$log"; exit 1; }
    grep -q "inline 8-bit counters" "$log" || { echo "fuzz-$target: no coverage instrumentation"; exit 1; }
    echo "fuzz-$target: $(grep -E '^Done' "$log"), $(grep -oE 'cov: [0-9]+' "$log" | tail -1) edges, no crash"
done
