#!/bin/sh
# Builds every fuzz/fuzz_<name>.c as a libFuzzer binary with AddressSanitizer and
# UBSan into build-fuzz/, together with the library sources (compiled the same way)
# and the shared test helpers (tests/lib: models the targets compare against).
# Honours $CC and $CFLAGS; OSS-Fuzz uses fuzz/oss-fuzz/build.sh instead.
set -eu
cd "$(dirname "$0")/.."
out=${FUZZ_OUT:-build-fuzz}
cc=${FUZZ_CC:-clang}
flags="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Iinclude -Iref -Itests/lib -fsanitize=address,undefined -fno-sanitize-recover=undefined"
mkdir -p "$out"
# The library is compiled once, each file with the flags its instruction set needs
# (cpu/*_avx2.c, cpu/*_avx512.c), exactly as the Makefile does.
objdir="$out/obj"; mkdir -p "$objdir"
objs=""
for src in ref/*.c cpu/*.c faults/*.c conformance/lib/*.c tests/lib/*.c; do
    [ -e "$src" ] || continue
    # the FP8 test oracle widens with _Float16, which clang 14 lacks on x86; no
    # fuzz target uses it
    [ "$src" = tests/lib/fp8_oracle.c ] && continue
    extra=""
    case $src in
    *_avx2.c) extra="-mavx2 -mf16c -mfma" ;;
    *_avx512.c) extra="-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mf16c -mfma" ;;
    esac
    obj="$objdir/$(echo "$src" | tr / _).o"
    # shellcheck disable=SC2086
    $cc $flags ${CFLAGS:-} $extra -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
    objs="$objs $obj"
done
# the tool's code without main(), for fuzz_cli only (plus what the tool links
# beyond the library: CLI_EXTRA_SRCS, e.g. the conformance suites)
cli_objs=""
for src in cli/*.c ${CLI_EXTRA_SRCS:-}; do
    obj="$objdir/cli_$(echo "$src" | tr / _).o"
    # shellcheck disable=SC2086
    $cc $flags -Icli ${CFLAGS:-} -DKVFP8_CLI_NO_MAIN -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
    cli_objs="$cli_objs $obj"
done
built=0
for target in fuzz/fuzz_*.c; do
    [ -e "$target" ] || continue
    name=$(basename "$target" .c)
    extra=""
    [ "$name" = fuzz_cli ] && extra=$cli_objs
    # shellcheck disable=SC2086
    $cc $flags -Icli ${CFLAGS:-} -fsanitize=fuzzer -o "$out/$name" "$target" $objs $extra -lcrypto -lxxhash -ljansson -ldl -lm -lpthread
    echo "built $out/$name"
    built=$((built + 1))
done
echo "fuzz: $built targets built in $out/"
