#!/bin/sh
# `make bench-gpu`: the KV-cache kernels on an NVIDIA GPU, in one command.
#
#   sh bench/gpu/run.sh [BUILD]        (OUT=/some/dir to collect the results there)
#
#   1. builds libkvfp8 (make lib) and the CUDA code (gpu/build.sh cuda: the `cuda`
#      backend, gpu/test_gpu, gpu/bench_gpu), against the Debian -dev packages in
#      BUILD/gpu-deps/ when they are there (`sh bench/gpu/fp8_check.sh prepare` fetches
#      them on a Debian machine; the GPU machine lacks xxhash.h and jansson.h);
#      KVFP8_NO_BUILD=1 uses what is already built
#   2. test_gpu: every kernel against the reference library (bitwise / within the
#      attention error bound)                                   -> correctness.md
#   3. bench/gpu/torch_baseline.py: the PyTorch baseline        -> torch-baseline.txt
#   4. bench_gpu: copy ceiling, decode, cache write, prefill, the targets
#                                                               -> bench-gpu.md
# Results go to $OUT, or BUILD/bench-gpu/.  Exit 0 only if every step succeeded and
# the correctness checks passed (a target that is not met is reported, not an error).
set -u
cd "$(dirname "$0")/../.."
BUILD=${1:-${BUILD:-build}}
RESULTS=${OUT:-$BUILD/bench-gpu}
mkdir -p "$RESULTS"
PY=${PY:-python3}
failed=0

DEPS=$BUILD/gpu-deps
DEP_CFLAGS="" DEP_LDFLAGS=""
if ls "$DEPS"/*.deb >/dev/null 2>&1; then
    for deb in "$DEPS"/*.deb; do dpkg -x "$deb" "$DEPS/root"; done
    inc=$(pwd)/$DEPS/root/usr/include lib=$(pwd)/$DEPS/root/usr/lib/x86_64-linux-gnu
    DEP_CFLAGS="-isystem $inc" DEP_LDFLAGS="-L$lib -Wl,-rpath,$lib"
    LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export LD_LIBRARY_PATH
fi

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "kvfp8 bench-gpu: no NVIDIA GPU here (nvidia-smi); nothing to run"
    exit 0
fi

if [ "${KVFP8_NO_BUILD:-0}" != 1 ]; then
    echo "=== build ($(date -u +%H:%M:%S) UTC)"
    if ! make -j"${JOBS:-16}" BUILD="$BUILD" EXTRA_CFLAGS="$DEP_CFLAGS" EXTRA_LDFLAGS="$DEP_LDFLAGS" lib \
        >"$RESULTS/build.log" 2>&1; then
        # another compiler's warnings must not lose the GPU run: the static library is
        # all the GPU programs need
        echo "kvfp8: make lib failed; retrying the static library with -Wno-error (see build.log)"
        make -j"${JOBS:-16}" BUILD="$BUILD" EXTRA_CFLAGS="$DEP_CFLAGS -Wno-error" "$BUILD/lib/libkvfp8.a" \
            >>"$RESULTS/build.log" 2>&1 || { tail -20 "$RESULTS/build.log"; exit 1; }
    fi
    GPU_JOBS=${GPU_JOBS:-8} sh gpu/build.sh cuda "$BUILD" >>"$RESULTS/build.log" 2>&1 ||
        { tail -30 "$RESULTS/build.log"; exit 1; }
fi

echo "=== correctness: test_gpu ($(date -u +%H:%M:%S) UTC)"
"$BUILD/gpu/test_gpu" --out "$RESULTS/correctness.md" >"$RESULTS/correctness.log" 2>&1
rc=$?
grep -E "^FAIL|cases," "$RESULTS/correctness.log"
[ $rc = 0 ] || { echo "kvfp8: test_gpu exit $rc (see correctness.log)"; failed=1; }

echo "=== PyTorch baseline ($(date -u +%H:%M:%S) UTC)"
rm -f "$RESULTS/torch-baseline.txt"
timeout 300 "$PY" bench/gpu/torch_baseline.py "$RESULTS/torch-baseline.txt" >"$RESULTS/torch-baseline.log" 2>&1 ||
    { echo "kvfp8: the torch baseline failed (see torch-baseline.log); the table will say so"; tail -5 "$RESULTS/torch-baseline.log"; }

echo "=== bench_gpu ($(date -u +%H:%M:%S) UTC)"
"$BUILD/gpu/bench_gpu" --torch "$RESULTS/torch-baseline.txt" --out "$RESULTS/bench-gpu.md" >"$RESULTS/bench.log" 2>&1 ||
    { echo "kvfp8: bench_gpu failed"; tail -20 "$RESULTS/bench.log"; failed=1; }
grep -v "^  " "$RESULTS/bench.log" | sed -n '/^# kvfp8 GPU bench/,$p'
echo
echo "kvfp8 bench-gpu: results in $RESULTS ($( [ $failed = 0 ] && echo ok || echo SOMETHING FAILED))"
exit $failed
