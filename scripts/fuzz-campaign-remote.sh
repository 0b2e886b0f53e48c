#!/bin/bash
# A fuzzing campaign on a many-core machine that has no compiler for the targets:
# the fuzz binaries (built here with `make fuzz-build`) and the shared libraries they
# need travel as tarballs made by `scripts/fuzz-campaign-remote.sh pack` (into
# .fuzzpack/, ignored by git).  There, `bash scripts/fuzz-campaign-remote.sh run SECONDS`
# runs every target once and the slower ones twice more in parallel (one process per
# core, up to the core count), each from its committed corpus and the campaign corpus
# made here; it leaves in $OUT: cpu.txt (CPU seconds per process), status.txt, logs.tgz
# and corpora.tgz (the new corpus files and any findings).
set -u
cd "$(dirname "$0")/.."
case ${1:-} in
pack)
    mkdir -p .fuzzpack/lib
    for l in libcrypto.so.3 libxxhash.so.0 libjansson.so.4; do cp -L "/lib/x86_64-linux-gnu/$l" .fuzzpack/lib/; done
    tar cJf .fuzzpack/libs.tar.xz -C .fuzzpack lib && rm -rf .fuzzpack/lib
    # shellcheck disable=SC2046
    tar cJf .fuzzpack/fuzz.tar.xz $(ls build-fuzz/fuzz_* | grep -v '\.log$') $(ls -d build-fuzz/campaign 2>/dev/null)
    ls -l .fuzzpack
    ;;
run)
    seconds=${2:?seconds}
    out=${OUT:-build-fuzz/remote}
    mkdir -p "$out" /tmp/kvfp8-fz
    tar xJf .fuzzpack/fuzz.tar.xz && tar xJf .fuzzpack/libs.tar.xz -C /tmp/kvfp8-fz || exit 1
    export LD_LIBRARY_PATH=/tmp/kvfp8-fz/lib
    echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" >"$out/machine.txt"
    lanes=""
    for b in build-fuzz/fuzz_*; do case $b in *.log) ;; *) lanes="$lanes $b" ;; esac; done
    lanes="$lanes build-fuzz/fuzz_attention build-fuzz/fuzz_backend build-fuzz/fuzz_pool build-fuzz/fuzz_fp8 build-fuzz/fuzz_pickle"
    i=0
    for b in $lanes; do
        [ "$i" -lt "$(nproc)" ] || break
        n=${b#build-fuzz/fuzz_}
        mkdir -p "work/corpus/$n" "work/artifacts/$n" work/logs
        dict=""; [ -f "fuzz/dict/$n.dict" ] && dict="-dict=fuzz/dict/$n.dict"
        old=""; [ -d "build-fuzz/campaign/$n/corpus" ] && old="build-fuzz/campaign/$n/corpus"
        (
            TIMEFORMAT="$n.$i %U %S"
            { time "$b" -max_total_time="$seconds" -print_final_stats=1 -timeout=25 -rss_limit_mb=4096 -seed=$((i + 1)) \
                -artifact_prefix="work/artifacts/$n/" $dict "work/corpus/$n" $old "fuzz/corpus/$n" \
                >"work/logs/$n.$i.log" 2>&1; echo "$n.$i rc=$?" >>"$out/status.txt"; } 2>>"$out/cpu.txt"
        ) &
        i=$((i + 1))
    done
    wait
    tar czf "$out/logs.tgz" work/logs
    tar czf "$out/corpora.tgz" work/corpus work/artifacts
    awk '{s += $2 + $3} END {printf "total CPU seconds: %.0f over %d processes\n", s, NR}' "$out/cpu.txt"
    cat "$out/status.txt"
    ;;
*)
    echo "usage: $0 pack | run SECONDS" >&2
    exit 2
    ;;
esac
