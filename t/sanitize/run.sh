#!/bin/sh
# The integration suite under a memory checker, then a verdict.
#
#   t/sanitize/run.sh valgrind MODULE_SO OUTDIR [t/NN-name.t ...]
#   t/sanitize/run.sh asan     MODULE_SO OUTDIR [t/NN-name.t ...]
#
# valgrind: Debian's nginx runs under valgrind memcheck (master and
#   workers: valgrind follows fork), one log per process.
# asan: MODULE_SO was built with -fsanitize=address,undefined; Debian's
#   nginx runs with gcc's ASan runtime preloaded, LeakSanitizer at exit.
#
# The tests run as usual (t/lib/TsbTest.pm puts TSB_NGINX_WRAPPER in front
# of nginx and scales its waits by TSB_TIME_FACTOR), keeping their
# directories in OUTDIR/tmp so that t/sanitize/report.pl can read every
# error.log afterwards.  Bounded by SANITIZE_TIMEOUT seconds.  Exit status:
# report.pl's (see there for what fails).

set -u

mode=${1:?mode: valgrind or asan}
module=${2:?module .so}
out=${3:?output directory}
shift 3

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 2

if [ $# -eq 0 ]; then
    set -- t/*.t
fi

case "$module" in /*) ;; *) module="$root/$module" ;; esac
case "$out" in /*) ;; *) out="$root/$out" ;; esac

rm -rf "$out"
mkdir -p "$out/logs" "$out/tmp" || exit 2
# nginx's workers run as nobody: they write logs here and read test dirs
chmod 0755 "$out" "$out/tmp"
chmod 1777 "$out/logs"

# nginx unloads its dynamic modules when a process exits; the checkers
# look at the heap after that (nodlclose.c)
gcc -shared -fPIC -O2 -o "$out/nodlclose.so" "$here/nodlclose.c" || exit 2

case "$mode" in
valgrind)
    command -v valgrind >/dev/null || {
        echo "valgrind is not installed (apt-get install valgrind)" >&2
        exit 2
    }
    # nodlclose.so: see there; the module's globals stay roots until the
    # end, as they are for a process that does not unload it
    wrapper="env LD_PRELOAD=$out/nodlclose.so"
    wrapper="$wrapper valgrind --tool=memcheck --leak-check=full"
    wrapper="$wrapper --show-leak-kinds=definite"
    wrapper="$wrapper --errors-for-leak-kinds=definite --num-callers=40"
    # nginx unloads its modules before a process exits: keep their symbols
    wrapper="$wrapper --keep-debuginfo=yes"
    wrapper="$wrapper --gen-suppressions=all"
    wrapper="$wrapper --suppressions=$here/valgrind.supp"
    wrapper="$wrapper --log-file=$out/logs/vg.%p.log"
    factor=${TSB_TIME_FACTOR:-10}
    # the whole suite, 47 files: 32 of them took 1376 s on a shared
    # 2-core machine
    limit=${SANITIZE_TIMEOUT:-5400}
    ;;
asan)
    rt=$(gcc -print-file-name=libasan.so)
    [ -f "$rt" ] || { echo "no ASan runtime ($rt)" >&2; exit 2; }
    aopt="detect_leaks=1:log_path=$out/logs/asan:handle_segv=1"
    aopt="$aopt:allocator_may_return_null=1:detect_odr_violation=0"
    # nginx has no frame pointers: the slow unwinder gives whole stacks,
    # which is what tells a module's leak from nginx's own
    aopt="$aopt:fast_unwind_on_malloc=0:malloc_context_size=40"
    wrapper="env LD_PRELOAD=$rt:$out/nodlclose.so ASAN_OPTIONS=$aopt"
    # a leak report must not turn "nginx -t" into a failure: report.pl
    # judges the leaks.  Direct leaks are listed first: max_leaks keeps
    # them and cuts the flood of OpenSSL's indirect ones, whose listing
    # takes long enough for nginx's master to SIGKILL a worker that exits
    # on a fast shutdown.
    wrapper="$wrapper LSAN_OPTIONS=exitcode=0:max_leaks=60"
    wrapper="$wrapper:suppressions=$here/lsan.supp"
    wrapper="$wrapper UBSAN_OPTIONS=print_stacktrace=1"
    wrapper="$wrapper:log_path=$out/logs/ubsan"
    factor=${TSB_TIME_FACTOR:-3}
    # the whole suite: 1210 s on a shared 2-core machine
    limit=${SANITIZE_TIMEOUT:-2700}
    ;;
*)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac

echo "== $mode: $# test files, nginx wrapped, waits x$factor," \
     "at most ${limit}s; logs in $out"
start=$(date +%s)

TSB_MODULE=$module TSB_NGINX_WRAPPER=$wrapper TSB_TIME_FACTOR=$factor \
TSB_KEEP=1 TMPDIR=$out/tmp \
    timeout -k 10 "$limit" prove "$@" >"$out/prove.log" 2>&1
rc=$?

# the per-file lines and the summary, without the kept-directory notes
grep -v '^# temporary directory kept' "$out/prove.log" \
    | grep -E '^t/|^Files=|^Result|^  (Failed|TODO|Non-zero|Parse)' \
    | grep -v '^t/.*(Wstat' | sed -n '1,200p'
echo "== prove exit $rc after $(( $(date +%s) - start ))s"
[ $rc -eq 124 ] && echo "prove timed out after ${limit}s" >>"$out/prove.log"

echo
perl "$here/report.pl" "--$mode" "$out/logs" --tmp "$out/tmp" \
     --prove "$out/prove.log" | tee "$out/report.txt"
# report.pl's status did not survive the pipe: its last line says it
if sed -n '$p' "$out/report.txt" | grep -q '^clean:'; then
    verdict=0
else
    verdict=1
fi

# the kept test directories are large; the logs and the report stay
[ "$verdict" = 0 ] && rm -rf "$out/tmp"
exit "$verdict"
