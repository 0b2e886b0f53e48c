#!/bin/sh
# Runs every test suite given on the command line, then every tests/py_*.py check,
# and prints one closing line that CI reads: "tests: N passed, N failed, N skipped".
# A suite that crashes or exits non-zero without reporting a failed test still
# counts as a failure: nothing is lost to a crash.
set -u
build=${KVFP8_BUILD:-build}
py=${KVFP8_PY:-/usr/bin/python3}
log=$(mktemp); trap 'rm -f "$log"' EXIT
pass=0; fail=0; skip=0; broken=""
count() { grep -c -- "$1" "$log" 2>/dev/null || true; }
run_one() { # run_one NAME COMMAND...
    name=$1; shift
    "$@" >"$log" 2>&1; rc=$?
    cat "$log"
    p=$(count '^\[       OK \]'); f=$(count '^\[  FAILED  \] [^0-9]'); s=$(count '^\[  SKIPPED \] [^0-9]')
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        fail=$((fail + 1)); broken="$broken $name(exit $rc)"
        echo "[  FAILED  ] $name: exited $rc without reporting a failed test"
    fi
}
for t in "$@"; do run_one "$(basename "$t")" "$t"; done
for r in ${KVFP8_FUZZ_REPLAY:-}; do
    name=$(basename "$r"); name=${name#fuzz_}
    run_one "fuzz_replay_$name" "$r" "$name" "fuzz/corpus/$name"
done
for p in tests/py_*.py; do
    [ -e "$p" ] || continue
    run_one "$(basename "$p")" env KVFP8_BIN="$build/bin/kvfp8" "$py" "$p"
done
echo
[ -n "$broken" ] && echo "suites that died:$broken"
echo "tests: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
