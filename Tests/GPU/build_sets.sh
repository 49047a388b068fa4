#!/bin/sh
# Builds DIR/<set>/libcalibcuda.so for each named set (default: every set in DIR) with the
# recipe calibc wrote beside it, in parallel, unless it is newer than every file of the set; a
# failed build prints its log and fails.
# usage: sh Tests/GPU/build_sets.sh DIR [SET ...]
set -eu
dir=$1; shift
[ $# -gt 0 ] || set -- $(cd "$dir" && for b in */build.sh; do dirname "$b"; done)
for s in "$@"; do
    lib="$dir/$s/libcalibcuda.so"
    [ -e "$lib" ] && [ -z "$(find "$dir/$s" -type f -newer "$lib" | head -1)" ] && continue
    (sh "$dir/$s/build.sh" > "$dir/$s.build.log" 2>&1 || echo "$s" > "$dir/$s.failed") &
done
wait
failed=0
for s in "$@"; do
    if [ -e "$dir/$s.failed" ]; then rm -f "$dir/$s.failed"; echo "building $dir/$s failed:"; cat "$dir/$s.build.log"; failed=1; fi
done
exit $failed
