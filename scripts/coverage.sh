#!/bin/sh
# Collects lcov data from a --coverage build (after its tests ran), writes the HTML
# report, and prints line and branch coverage for the library as a whole and for
# ref/, cpu/ and faults/ separately.  COVERAGE_MIN_LINES / COVERAGE_MIN_BRANCHES
# (percent) turn the figures for ref/ and faults/ into a floor: below it, exit 1.
set -eu
build=${1:-build-cov}
info=$build/coverage.info
lcov --quiet --capture --directory "$build" --rc lcov_branch_coverage=1 --output-file "$info.raw"
lcov --quiet --extract "$info.raw" "$(pwd)/ref/*" "$(pwd)/cpu/*" "$(pwd)/faults/*" "$(pwd)/conformance/lib/*" \
    --rc lcov_branch_coverage=1 --output-file "$info"
genhtml --quiet --branch-coverage --output-directory "$build/coverage" "$info" >/dev/null
echo "coverage report: $build/coverage/index.html"
status=0
for dir in ref cpu faults; do
    part=$build/coverage-$dir.info
    if ! lcov --quiet --extract "$info" "$(pwd)/$dir/*" --rc lcov_branch_coverage=1 --output-file "$part" 2>/dev/null; then
        continue
    fi
    summary=$(lcov --summary "$part" --rc lcov_branch_coverage=1 2>&1) || continue  # no files there yet
    lines=$(echo "$summary" | sed -n 's/.*lines\.*: \([0-9.]*\)%.*/\1/p')
    branches=$(echo "$summary" | sed -n 's/.*branches\.*: \([0-9.]*\)%.*/\1/p')
    [ -n "$lines" ] || continue
    echo "coverage $dir/: lines ${lines}% branches ${branches:-n/a}%"
    case $dir in ref|faults)
        if [ -n "${COVERAGE_MIN_LINES:-}" ] && awk "BEGIN{exit !($lines < $COVERAGE_MIN_LINES)}"; then
            echo "coverage $dir/: lines ${lines}% below the floor ${COVERAGE_MIN_LINES}%"; status=1; fi
        if [ -n "${COVERAGE_MIN_BRANCHES:-}" ] && [ -n "$branches" ] && awk "BEGIN{exit !($branches < $COVERAGE_MIN_BRANCHES)}"; then
            echo "coverage $dir/: branches ${branches}% below the floor ${COVERAGE_MIN_BRANCHES}%"; status=1; fi
    esac
done
lcov --summary "$info" --rc lcov_branch_coverage=1 2>&1 | sed -n 's/^ *\(lines\|branches\|functions\)/total \1/p'
exit $status
