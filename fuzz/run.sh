#!/bin/sh
# Runs one libFuzzer target the way `make fuzz` and `make fuzz-smoke` do:
#
#   sh fuzz/run.sh BIN NAME SECONDS MAX_LEN OUT
#
# 1. replays every seed (fuzz/corpus/NAME) and every kept crash
#    (fuzz/regressions/NAME) once, byte for byte, with no length cap;
# 2. fuzzes for SECONDS with inputs up to MAX_LEN bytes, new inputs going
#    to OUT/work/NAME (the committed seeds are never written), crashes to
#    OUT/crashes/NAME-*, the log to OUT/logs/NAME.log.
# Exits non-zero when anything crashes, leaks, hangs or trips a sanitizer.

set -u

if [ $# -ne 5 ]; then
    echo "usage: $0 BIN NAME SECONDS MAX_LEN OUT" >&2
    exit 2
fi

bin=$1 name=$2 secs=$3 maxlen=$4 out=$5
seeds=fuzz/corpus/$name
regr=fuzz/regressions/$name
log=$out/logs/$name.log

mkdir -p "$out/crashes" "$out/work/$name" "$out/logs"

# 1. replay

files=$(find "$seeds" "$regr" -type f 2>/dev/null | sort)

if [ -n "$files" ]; then
    # shellcheck disable=SC2086  # file names are ours, without blanks
    if ! "$bin" -timeout=10 $files >"$log.replay" 2>&1; then
        tail -50 "$log.replay"
        echo "$name: FAILED replaying the seeds and regressions" \
             "(log: $log.replay)"
        exit 1
    fi

    echo "$name: replayed $(echo "$files" | wc -l) seed and regression" \
         "inputs"
fi

# 2. fuzz

dict=
if [ -f "fuzz/dict/$name.dict" ]; then
    dict=-dict=fuzz/dict/$name.dict
fi

dirs=$seeds
if [ -d "$regr" ]; then
    dirs="$dirs $regr"
fi

# shellcheck disable=SC2086
"$bin" -max_len="$maxlen" -max_total_time="$secs" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$out/crashes/$name-" $dict \
    "$out/work/$name" $dirs >"$log" 2>&1
rc=$?

if [ $rc -ne 0 ]; then
    tail -60 "$log"
    echo "$name: FAILED (exit $rc) after fuzzing; inputs:"
    ls -l "$out/crashes/$name-"* 2>/dev/null
    echo "log: $log"
    exit 1
fi

# the last status line carries the coverage; the stats the totals
done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")

echo "$name: ok, ${secs}s, $execs execs ($rate/s), peak RSS ${rss} MB;" \
     "${done_line#*DONE   }"
