#!/bin/sh
# The main job (make run): what kvfp8 can say about this machine today.
#  1. the FP8 conformance summary: every optimized CPU path against the reference,
#     for every profile, format, mode and source type;
#  2. the vendor difference table (where FP8 implementations disagree);
#  3. the backend conformance suites (kvfp8 conform) against every backend this
#     machine has: ref and cpu always, cuda when `make cuda` built libkvfp8_cuda.so
#     and a GPU answers, and the example plugin; reports (results.jsonl, junit.xml,
#     report.html) in BUILD/report/<backend>/, and one summary table at the end.
set -u
bin=${1:-build/bin/kvfp8}
build=$(dirname "$(dirname "$bin")")
status=0
echo "== kvfp8 main job: $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -m), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"
echo
echo "== FP8 conformance summary (kvfp8 fp8 check)"
"$bin" fp8 check || status=1
echo
echo "== Where the vendor profiles differ (kvfp8 fp8 differences)"
"$bin" fp8 differences || status=1
echo

echo "== Backend conformance (kvfp8 conform, must-pass list conformance/mustpass-v1.txt)"
reports="$build/report"
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
printf '%-10s %-15s %6s %6s %6s %14s %7s %6s %8s  %s\n' backend verdict tests PASS FAIL NOT_SUPPORTED WAIVED CRASH TIMEOUT report >"$summary"
# conform_one LABEL BACKEND-ARGUMENT: run it, show what did not pass, keep its totals
conform_one() {
    label=$1
    out="$reports/$label"
    rm -f "$out/results.jsonl" # a fresh run each time (kvfp8 conform --resume continues one)
    echo
    echo "-- $label ($2)"
    log=$(mktemp)
    "$bin" conform --backend "$2" --report "$out" >"$log" 2>&1
    rc=$?
    # the per-test lines that are not PASS, then the runner's own summary table
    grep -v '^PASS ' "$log"
    totals=$(grep '^total ' "$log" | tail -n 1)
    verdict=NOT_CONFORMANT
    [ "$rc" = 0 ] && verdict=CONFORMANT
    [ "$rc" = 2 ] && verdict=ERROR
    # shellcheck disable=SC2086
    set -- $totals
    printf '%-10s %-15s %6s %6s %6s %14s %7s %6s %8s  %s\n' "$label" "$verdict" "${2:-0}" "${3:-0}" "${4:-0}" \
        "${5:-0}" "${6:-0}" "${7:-0}" "${8:-0}" "$out/report.html" >>"$summary"
    rm -f "$log"
    return "$rc"
}

backends=$("$bin" conform --list-backends 2>/dev/null)
for name in ref cpu cuda; do
    line=$(printf '%s\n' "$backends" | grep "^$name	" || true)
    case $line in
    *"	available	"*)
        conform_one "$name" "$name" || status=1
        ;;
    *)
        reason=$(printf '%s\n' "$line" | cut -f3)
        echo
        echo "-- $name: skipped, ${reason:-not available}"
        printf '%-10s %-15s %6s %6s %6s %14s %7s %6s %8s  %s\n' "$name" "skipped" - - - - - - - \
            "not available on this machine" >>"$summary"
        ;;
    esac
done
plugin="$build/plugins/libkvfp8_example.so"
if [ -f "$plugin" ]; then
    conform_one example "$plugin" || status=1
else
    echo "-- example plugin: $plugin was not built"
    status=1
fi
echo
echo "== Conformance summary (reports under $reports/)"
cat "$summary"
echo
if [ "$status" = 0 ]; then echo "main job: all checks passed"; else echo "main job: FAILURES above"; fi
exit $status
