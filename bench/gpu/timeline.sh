#!/bin/sh
# The decode timeline: a diagnostic build of gpu/bench_gpu whose decode kernel stamps
# %globaltimer at each phase of each CTA (paged_decode.cu, KVFP8_DECODE_TRACE), run on
# the given shapes.  It shows where a launch's time goes: the start-up of the CTAs, the
# wait for the first loads, the steady loop, the merge of the warps and the split
# combine.  The stamps cost a few instructions per CTA; the normal build has none.
#
#   sh bench/gpu/timeline.sh [BUILD] [BxL...]    (default: the bench's four shapes)
#
# Needs BUILD/gpu/kv/*.o from `sh gpu/build.sh cuda BUILD` (the other kernels are
# linked from there) and BUILD/lib/libkvfp8.a.  Output: stdout.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
[ $# -gt 0 ] && shift
shapes=${*:-1x32768 8x8192 32x4096 128x1024}
NVCC=$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
kv=$BUILD/gpu/kv
for f in "$kv/cache_write.o" "$kv/prefill_prefix.o" "$BUILD/lib/libkvfp8.a"; do
    [ -f "$f" ] || { echo "timeline.sh: $f missing: run sh gpu/build.sh cuda $BUILD first" >&2; exit 2; }
done
out=$BUILD/gpu/trace
mkdir -p "$out"
flags="-std=c++17 -O3 -Iinclude -Igpu -DKVFP8_DECODE_TRACE -Xcompiler -Wall,-Wextra,-Werror
    --Werror all-warnings -gencode arch=compute_90,code=sm_90"
"$NVCC" $flags -c gpu/paged_decode.cu -o "$out/paged_decode.o" &
"$NVCC" $flags -c gpu/bench_gpu.cu -o "$out/bench_gpu.o"
wait
"$NVCC" $flags -o "$out/bench_gpu" "$out/bench_gpu.o" "$out/paged_decode.o" "$kv/cache_write.o" \
    "$kv/prefill_prefix.o" "$BUILD/lib/libkvfp8.a" -lpthread -lm
for s in $shapes; do
    "$out/bench_gpu" --decode-only "$s" --timeline --quick | grep -A 20 "timeline"
done
