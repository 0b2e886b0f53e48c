#!/bin/sh
# A fuzzing campaign: every built target (build-fuzz/, `make fuzz-build`) for SECONDS
# of wall time each, LANES at a time, at low priority, each starting from its
# committed corpus plus the campaign's own working corpus.  Records per target the
# CPU seconds used, executions, coverage (libFuzzer's cov/ft), the corpus size and any
# finding, as a markdown table on stdout (copy it to bench/results/).  Findings
# (crash-*, leak-*, timeout-*) land in build-fuzz/campaign/<target>/artifacts/.
#
# usage: scripts/fuzz-campaign.sh SECONDS [LANES]
set -u
cd "$(dirname "$0")/.."
seconds=${1:?usage: scripts/fuzz-campaign.sh SECONDS [LANES]}
lanes=${2:-2}
out=build-fuzz/campaign
mkdir -p "$out"
run_target() { # run_target BIN
    bin=$1; name=$(basename "$bin"); short=${name#fuzz_}
    dir="$out/$short"; mkdir -p "$dir/corpus" "$dir/artifacts"
    dict=""; [ -f "fuzz/dict/$short.dict" ] && dict="-dict=fuzz/dict/$short.dict"
    seeds=""; [ -d "fuzz/corpus/$short" ] && seeds="fuzz/corpus/$short"
    # shellcheck disable=SC2086
    /usr/bin/time -f "cpu_seconds %U %S" -o "$dir/time" nice -n 19 "$bin" -max_total_time="$seconds" \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/" -timeout=25 -rss_limit_mb=4096 \
        $dict "$dir/corpus" $seeds >"$dir/log" 2>&1
    echo $? >"$dir/status"
}
pids=""
n=0
for bin in build-fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    run_target "$bin" &
    pids="$pids $!"
    n=$((n + 1))
    if [ $((n % lanes)) -eq 0 ]; then wait; fi
done
wait
echo "| target | CPU seconds | executions | coverage (cov / ft) | corpus files | findings |"
echo "| --- | ---: | ---: | --- | ---: | --- |"
total=0
for dir in "$out"/*/; do
    short=$(basename "$dir")
    [ -f "$dir/log" ] || continue
    cpu=$(awk '/cpu_seconds/ {printf "%.0f", $2 + $3}' "$dir/time" 2>/dev/null)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
    cov=$(grep -E "^#[0-9]+" "$dir/log" | tail -n 1 | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\).*/\1 \/ \2/p')
    files=$(ls "$dir/corpus" | wc -l)
    found=$(ls "$dir/artifacts" 2>/dev/null | tr '\n' ' ')
    echo "| $short | ${cpu:-?} | ${execs:-?} | ${cov:-?} | $files | ${found:-none} |"
    total=$((total + ${cpu:-0}))
done
echo
echo "total CPU seconds: $total"
