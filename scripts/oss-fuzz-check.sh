#!/bin/sh
# CI check of the OSS-Fuzz / ClusterFuzzLite integration without Docker: runs
# fuzz/oss-fuzz/build.sh with the environment those systems set for a libFuzzer +
# AddressSanitizer build, then checks that every target in $OUT starts, runs its seed
# corpus (unzipped) and exits cleanly, and that each seed corpus zip and dictionary is
# where the conventions put it.
set -eu
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/kvfp8-ossfuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CC=clang CXX=clang++ SRC="$work/src" OUT="$work/out"
export CFLAGS="-O1 -fno-omit-frame-pointer -gline-tables-only -fsanitize=address -fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link"
export LIB_FUZZING_ENGINE="-fsanitize=fuzzer"
mkdir -p "$SRC" "$OUT"
ln -s "$(pwd)" "$SRC/kvfp8"
bash fuzz/oss-fuzz/build.sh >"$work/build.log" 2>&1 || { cat "$work/build.log"; echo "oss-fuzz build: FAILED"; exit 1; }
n=0; bad=0
for bin in "$OUT"/fuzz_*; do
    case $bin in *.zip|*.dict) continue ;; esac
    name=$(basename "$bin"); n=$((n + 1))
    corpus="$work/corpus-$name"; mkdir -p "$corpus"
    if [ -f "$OUT/${name}_seed_corpus.zip" ]; then
        (cd "$corpus" && unzip -q "$OUT/${name}_seed_corpus.zip")
    else
        echo "oss-fuzz: $name has no seed corpus zip"; bad=$((bad + 1)); continue
    fi
    dict=""; [ -f "$OUT/$name.dict" ] && dict="-dict=$OUT/$name.dict"
    # shellcheck disable=SC2086
    if "$bin" -runs=200 $dict "$corpus" >"$work/$name.log" 2>&1; then
        echo "oss-fuzz: $name starts and runs its seed corpus: ok"
    else
        echo "oss-fuzz: $name FAILED:"; tail -n 20 "$work/$name.log"; bad=$((bad + 1))
    fi
done
want=$(ls fuzz/fuzz_*.c | wc -l)
[ "$n" -eq "$want" ] || { echo "oss-fuzz: $n targets built, but fuzz/ has $want"; bad=$((bad + 1)); }
echo "oss-fuzz check: $n targets, $bad failed"
[ "$n" -gt 0 ] && [ "$bad" -eq 0 ]
