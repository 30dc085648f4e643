#!/bin/sh
# Runs the policy benchmark and writes its section of docs/benchmarks.md
# (between the bench-policy markers; the rest of the file is kept).
#
#   sh bench/policy_report.sh BIN SECONDS DOC

set -eu

if [ $# -ne 3 ]; then
    echo "usage: $0 BIN SECONDS DOC" >&2
    exit 2
fi

bin=$1 secs=$2 doc=$3
begin='<!-- bench-policy:begin -->'
end='<!-- bench-policy:end -->'
load=$(cut -d' ' -f1-3 /proc/loadavg)
tmp=$(mktemp)
log=$(mktemp)
section=$(mktemp)
trap 'rm -f "$tmp" "$log" "$section" "$doc.new"' EXIT

"$bin" "$secs" >"$tmp" 2>"$log" || { cat "$log" >&2; exit 1; }
cat "$log" >&2
cat "$tmp"
verdict=$(sed -n 's/^policy_bench: target //p' "$log")

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
ssl=$(openssl version 2>/dev/null || echo unknown)

{
    echo "$begin"
    echo "## CSR intake and policy: cost over signature verification"
    echo
    echo "What a CSR costs the gateway (\`tsb_csr_load()\` on the PEM:"
    echo "decode, parse, verify, facts; then \`tsb_policy_check()\` against"
    echo "a policy with exact, wildcard and regex names (the regex compiled"
    echo "once, as the glue does) and keyUsage and extendedKeyUsage sets),"
    echo "against the floor any intake pays:"
    echo "\`d2i_X509_REQ()\` + \`X509_REQ_verify()\` on the DER.  One"
    echo "process, one thread, ${secs} s per side, the two sides interleaved"
    echo "in 20 slices; the ratio is the median of the slices' ratios, the"
    echo "rates are totals.  Target: full/verify at most 1.25x."
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) CPUs, ${cpu:-unknown CPU};" \
         "load average before the run: ${load}"
    echo "- library: ${ssl}"
    echo "- command: \`make bench-policy BENCH_SECONDS=${secs}\`" \
         "(bench/policy_bench.c, -O2, no sanitizers)"
    echo
    cat "$tmp"
    echo
    echo "Target ${verdict}."
    echo
    echo "$end"
} >"$section"

mkdir -p "$(dirname "$doc")"

if [ ! -f "$doc" ]; then
    printf '# Benchmarks\n\nResults of `make bench`; each section %s\n' \
        'is rewritten by the target that measures it.' >"$doc"
fi

if grep -qF "$begin" "$doc" && grep -qF "$end" "$doc"; then
    awk -v b="$begin" -v e="$end" -v f="$section" '
        $0 == b { while ((getline l < f) > 0) print l; skip = 1; next }
        $0 == e { skip = 0; next }
        !skip   { print }
    ' "$doc" >"$doc.new"
    mv "$doc.new" "$doc"

else
    { echo; cat "$section"; } >>"$doc"
fi

echo "bench-policy: results written to $doc"
