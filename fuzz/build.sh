#!/bin/sh
# Builds every fuzz/fuzz_<name>.c as a libFuzzer binary, together with the library
# sources (compiled the same way) and the shared test helpers (tests/lib: models the
# targets compare against).
#
# Standalone (make fuzz-build): clang, AddressSanitizer + UBSan, into build-fuzz/.
# Under OSS-Fuzz / ClusterFuzzLite, fuzz/oss-fuzz/build.sh calls this with their
# environment: CC, CFLAGS (sanitizer flags included), LIB_FUZZING_ENGINE and OUT.
#
#   FUZZ_CC        compiler (default: $CC when OSS_FUZZ_MODE=1, else clang)
#   FUZZ_SANITIZE  sanitizer flags added here (default ASan+UBSan; empty under OSS-Fuzz,
#                  whose CFLAGS carry them)
#   FUZZ_ENGINE    link flag of the fuzzing engine (default -fsanitize=fuzzer)
#   FUZZ_OUT       output folder (default build-fuzz)
set -eu
cd "$(dirname "$0")/.."
if [ "${OSS_FUZZ_MODE:-0}" = 1 ]; then
    cc=${FUZZ_CC:-$CC}
    sanitize=${FUZZ_SANITIZE:-}
    engine=${FUZZ_ENGINE:-$LIB_FUZZING_ENGINE}
    out=${FUZZ_OUT:-$OUT}
    compile_extra=""
else
    cc=${FUZZ_CC:-clang}
    sanitize=${FUZZ_SANITIZE:--O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined}
    engine=${FUZZ_ENGINE:--fsanitize=fuzzer}
    out=${FUZZ_OUT:-build-fuzz}
    compile_extra="-fsanitize=fuzzer-no-link"
fi
flags="-std=c11 -D_GNU_SOURCE -g -Iinclude -Iref -Itests/lib -Icli $sanitize ${CFLAGS:-} $compile_extra"
mkdir -p "$out"
objdir=$(mktemp -d "${TMPDIR:-/tmp}/kvfp8-fuzz-obj.XXXXXX")
trap 'rm -rf "$objdir"' EXIT

# The library, each file with the flags its instruction set needs (cpu/*_avx2.c,
# cpu/*_avx512.c), exactly as the Makefile does.
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
    $cc $flags $extra -c "$src" -o "$obj"
    objs="$objs $obj"
done
# The tool's code without main(), for fuzz_cli only (plus what the tool links beyond
# the library: CLI_EXTRA_SRCS, by default the conformance suites, which need cmocka).
cli_objs=""
for src in cli/*.c ${CLI_EXTRA_SRCS:-conformance/suites/*.c}; do
    [ -e "$src" ] || continue
    obj="$objdir/cli_$(echo "$src" | tr / _).o"
    # shellcheck disable=SC2086
    $cc $flags -DKVFP8_CLI_NO_MAIN -c "$src" -o "$obj"
    cli_objs="$cli_objs $obj"
done
built=0
for target in fuzz/fuzz_*.c; do
    [ -e "$target" ] || continue
    name=$(basename "$target" .c)
    extra=""
    [ "$name" = fuzz_cli ] && extra="$cli_objs ${CLI_EXTRA_LIBS:--lcmocka}"
    # shellcheck disable=SC2086
    $cc $flags $engine -o "$out/$name" "$target" $objs $extra -lcrypto -lxxhash -ljansson -ldl -lm -lpthread
    echo "built $out/$name"
    built=$((built + 1))
done
echo "fuzz: $built targets built in $out/"
