#!/bin/sh
# Runs every built fuzz target for SECONDS each (default 60), starting from its seed
# corpus fuzz/corpus/<name>/ and dictionary fuzz/dict/<name>.dict if present.  New
# inputs go to build-fuzz/corpus/<name>/ (the committed corpus is not touched;
# minimize and commit findings by hand).  Exit 1 if any target found a crash.
set -u
cd "$(dirname "$0")/.."
seconds=${1:-60}
out=${FUZZ_OUT:-build-fuzz}
failed=0; ran=0
for bin in "$out"/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin"); short=${name#fuzz_}
    work="$out/corpus/$short"; mkdir -p "$work" "$out/artifacts/$short"
    dict=""; [ -f "fuzz/dict/$short.dict" ] && dict="-dict=fuzz/dict/$short.dict"
    seeds=""; [ -d "fuzz/corpus/$short" ] && seeds="fuzz/corpus/$short"
    echo "== $name: ${seconds}s"
    # shellcheck disable=SC2086
    if "$bin" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$out/artifacts/$short/" \
        $dict "$work" $seeds >"$out/$name.log" 2>&1; then
        grep -E "stat::number_of_executed_units|cov:" "$out/$name.log" | tail -n 2
    else
        echo "FINDING in $name: see $out/$name.log and $out/artifacts/$short/"; tail -n 30 "$out/$name.log"
        failed=$((failed + 1))
    fi
    ran=$((ran + 1))
done
echo "fuzz: $ran targets run for ${seconds}s each, $failed with findings"
[ "$failed" -eq 0 ]
