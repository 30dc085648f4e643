#!/bin/sh
# make test-standalone: the checkout tests with nothing beside it.
#
#   sh t/standalone.sh MODULE.so
#
# Copies the files git tracks (their working-tree content: what
# `git commit -a` would commit and a clone would get; a new fixture that
# was never `git add`ed is missing here as it would be in the clone) into
# an empty temporary directory, then from that copy:
#   1. no file names a path outside the checkout (a shared fixtures
#      directory beside it or an absolute path of one machine);
#   2. builds and runs the unit tests that read fixtures, and runs the
#      integration tests that read fixtures (with MODULE, built from the
#      same sources), under strace: any file name with "fixtures" in it
#      that is opened or probed outside the copy fails the test, even one
#      that does not exist (a fallback path) and even if the tests pass.
# Out of a git checkout (a release tarball) the whole tree is copied.

set -eu

module=$1
root=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tsb-standalone-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
tree=$tmp/clone
mkdir "$tree"
fail=0

if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$root" ls-files -z --cached \
        | (cd "$root" && tar --null -T - --ignore-failed-read -cf - \
               2>/dev/null) \
        | tar -xf - -C "$tree"
else
    (cd "$root" && tar --exclude=./build -cf - .) | tar -xf - -C "$tree"
fi

echo "# standalone copy: $tree ($(find "$tree" -type f | wc -l) files)"

# 1. names of paths outside the checkout: where the fixtures used to be
# (a directory beside the checkout, an absolute path of the machine the
# project grew on); neither exists in a clone.  The brackets keep this
# file from matching itself.
bad=$(cd "$tree" && grep -rnIE \
          '\.\./shared|shared/fixture[s]|(^|[^A-Za-z0-9_$})./-])/wor[k]/' . \
          || true)
if [ -n "$bad" ]; then
    echo "not ok - files name paths outside the checkout:"
    echo "$bad" | sed 's/^/#   /'
    fail=1
else
    echo "ok - no file names a path outside the checkout"
fi

# 2. the tests that read fixtures, run from the copy
units=$(cd "$tree" && grep -lE 'fixture\.h|TSB_FIXTURES' t/unit/test_*.c \
            | sed "s|^t/unit/\\(.*\\)\\.c\$|$tmp/build/unit/\\1|")
its=$(cd "$tree" && grep -l 'fixture(' t/*.t)

trace=$tmp/trace
# built first, untraced (leak checks do not work under ptrace: make unit
# runs them)
(cd "$tree" && make -s BUILD="$tmp/build" $units >/dev/null) || {
    echo "not ok - the unit tests do not build in the copy"
    fail=1
}
(cd "$tree" && ASAN_OPTIONS=detect_leaks=0 strace -f -qq -o "$trace" \
     -e trace=open,openat,stat,lstat,newfstatat,access,faccessat,faccessat2,statx,execve \
     sh -c "prove --exec '' $(echo $units) \
            && TSB_MODULE='$module' prove $(echo $its)") || {
    echo "not ok - the tests that read fixtures fail in the copy"
    fail=1
}
touch "$trace"

outside=$(grep -oE '"[^"]*fixtures[^"]*"' "$trace" | tr -d '"' \
          | grep -v "^$tree/" | grep -v '^t/fixtures' | sort -u || true)
inside=$(grep -oE '"[^"]*fixtures/[^"]*"' "$trace" | tr -d '"' \
         | grep -cE "^$tree/t/fixtures/|^t/fixtures/" || true)
if [ -n "$outside" ]; then
    echo "not ok - fixtures looked for outside the checkout:"
    echo "$outside" | sed 's/^/#   /'
    fail=1
elif [ "$inside" -eq 0 ]; then
    echo "not ok - the trace shows no fixture read at all (strace broken?)"
    fail=1
else
    echo "ok - $inside fixture accesses, all in the copy's t/fixtures/"
fi

[ $fail = 0 ] && echo "standalone: PASS" || echo "standalone: FAIL"
exit $fail
