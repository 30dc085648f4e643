#!/bin/sh
# Line and branch coverage of the engine by each fuzz target's corpus
# (only the files a target reaches are listed):
# the committed seeds, the regressions and whatever `make fuzz` added
# under OUT/work/.  Builds coverage-instrumented copies of the targets
# (clang source-based coverage, no sanitizers) and runs every input once.
#
#   sh fuzz/coverage.sh OUT "CORE_SRCS" "TARGETS"

set -eu

out=$1 srcs=$2 targets=$3
cov=$out/coverage
mkdir -p "$cov"

for t in $targets; do
    clang -std=c99 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer \
        -fprofile-instr-generate -fcoverage-mapping -Ingx_tsb_module \
        -o "$cov/$t" "fuzz/$t.c" $srcs -lyajl -lcrypto

    dirs=
    for d in "fuzz/corpus/$t" "fuzz/regressions/$t" "$out/work/$t"; do
        if [ -d "$d" ]; then
            dirs="$dirs $d"
        fi
    done

    rm -f "$cov/$t".profraw
    # shellcheck disable=SC2086
    LLVM_PROFILE_FILE="$cov/$t.profraw" "$cov/$t" -runs=0 $dirs \
        >"$cov/$t.log" 2>&1
    llvm-profdata merge -sparse -o "$cov/$t.profdata" "$cov/$t.profraw"

    echo "== $t ($(find $dirs -type f | wc -l) inputs)"
    # shellcheck disable=SC2086
    llvm-cov report "$cov/$t" -instr-profile="$cov/$t.profdata" $srcs \
        | awk 'NF == 13 && $1 != "Filename" && $1 != "TOTAL" && $8 > 0 && $9 < $8 {
                   printf "  %-14s lines %5s of %5d, branches %7s\n",
                          $1, $10, $8, $13
               }'
done
