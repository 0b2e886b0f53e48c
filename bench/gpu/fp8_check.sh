#!/bin/sh
# The FP8 checks that need an NVIDIA GPU, in one command (run on the H200):
#
#   sh bench/gpu/fp8_check.sh prepare      HERE, before: fetches Debian's xxhash and
#                                          jansson -dev packages into build/gpu-deps/
#                                          (the GPU machine lacks those headers and
#                                          has no network); carry build/gpu-deps
#   OUT=/some/dir sh bench/gpu/fp8_check.sh    THERE (OUT optional):
#
#   1. builds libkvfp8 and the kvfp8 tool  (make -j16 lib cli), against the packages
#                                          in build/gpu-deps/ when they are there
#   2. builds the CUDA code                (sh gpu/build.sh cuda build)
#   3. gpu/fp8_exhaustive                  NVIDIA's conversion vs the reference, all
#                                          2^32 f32 + all f16/bf16   (~1-2 min)
#   4. gpu/fp8_torch_check.py              torch (CUDA, CPU) and ml_dtypes casts vs
#                                          the kvfp8 tool            (~2-4 min)
#
# Logs go to $OUT (or build/fp8-check/ without OUT): environment.txt, build*.log,
# fp8-exhaustive.log, fp8-torch.log, summary.md.  A failing step is reported and the
# remaining checks still run, so one failure never loses the other results; the
# exit status is 0 only if every step passed.  Environment: JOBS (default 16),
# FP8_QUICK=1 for a smoke run (fp8_exhaustive --quick, fp8_torch_check.py --quick),
# BUILD (default build), PY (default python3), FP8_TORCH_ARGS (extra arguments for
# fp8_torch_check.py, e.g. "--budget 120").
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
DEPS=$BUILD/gpu-deps
DEB_PACKAGES="libxxhash-dev libxxhash0 libjansson-dev libjansson4 libcmocka-dev libcmocka0"

if [ "${1:-}" = prepare ]; then
    mkdir -p "$DEPS"
    # apt-get download needs current package lists; update once if it fails.
    (cd "$DEPS" && apt-get download $DEB_PACKAGES) ||
        { apt-get update -qq && (cd "$DEPS" && apt-get download $DEB_PACKAGES); } || exit 1
    ls -l "$DEPS"
    echo "kvfp8: now run the check with carry [\"$DEPS\"]"
    exit 0
fi

JOBS=${JOBS:-16}
LOGDIR=${OUT:-$BUILD/fp8-check}
mkdir -p "$LOGDIR"
QUICK=""
[ "${FP8_QUICK:-0}" = 1 ] && QUICK="--quick"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1

status_lines=""
failed=0
note() { # note STEP STATUS: one line for the summary
    status_lines="$status_lines| $1 | $2 |
"
    case $2 in ok*) ;; *) failed=1 ;; esac
}
banner() { echo; echo "=== $* ($(date -u +%H:%M:%S) UTC)"; }

# Runs a command, its output both on the terminal and in a log, and leaves the
# command's own exit status in $rc (POSIX sh has no pipefail).
run_logged() { # run_logged LOG COMMAND...
    log=$1; shift
    rcfile=$LOGDIR/.rc.$$
    { "$@" 2>&1; echo $? >"$rcfile"; } | tee "$log"
    rc=$(cat "$rcfile" 2>/dev/null || echo 99)
    rm -f "$rcfile"
}
have_header() { printf '#include <%s>\n' "$1" | ${CC:-cc} $DEP_CFLAGS -x c -fsyntax-only - 2>/dev/null; }

# Carried Debian packages: unpacked under $DEPS/root (never into /), used through
# -isystem/-L and an rpath so the tool finds their shared libraries at run time.
DEP_CFLAGS="" DEP_LDFLAGS=""
if ls "$DEPS"/*.deb >/dev/null 2>&1; then
    for deb in "$DEPS"/*.deb; do dpkg -x "$deb" "$DEPS/root"; done
    inc=$(pwd)/$DEPS/root/usr/include lib=$(pwd)/$DEPS/root/usr/lib/x86_64-linux-gnu
    DEP_CFLAGS="-isystem $inc" DEP_LDFLAGS="-L$lib -Wl,-rpath,$lib"
fi

banner "environment"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
    (command -v nvcc || ls /usr/local/cuda/bin/nvcc) 2>/dev/null | head -n 1
    ${CC:-cc} --version 2>/dev/null | head -n 1
    "$PY" --version 2>&1
    echo "cores: $(nproc)"
    [ -n "$DEP_CFLAGS" ] && echo "carried packages: $(cd "$DEPS" && echo *.deb)"
    for h in xxhash.h jansson.h openssl/sha.h; do
        have_header $h && echo "header $h: found" || echo "header $h: MISSING"
    done
} | tee "$LOGDIR/environment.txt"
if ! have_header xxhash.h || ! have_header jansson.h; then
    echo "kvfp8: headers missing here; on a Debian machine run 'sh bench/gpu/fp8_check.sh prepare'"
    echo "       and carry $DEPS (libkvfp8 and the tool will not build; fp8_exhaustive falls back"
    echo "       to an FP8-only library)"
fi

# ---- 1. library and tool -------------------------------------------------------------
banner "1/4 make -j$JOBS lib cli"
mk() { make -j"$JOBS" BUILD="$BUILD" EXTRA_LDFLAGS="$DEP_LDFLAGS" "$@"; }
run_logged "$LOGDIR/build.log" mk EXTRA_CFLAGS="$DEP_CFLAGS" lib cli
if [ "$rc" != 0 ]; then
    # This machine is only borrowed and cannot install packages: rather than lose
    # the GPU results to a compiler warning (another gcc than the developers') or to
    # the shared library (not needed here), retry the two things the checks need,
    # the static library and the tool, with warnings not fatal.
    echo "kvfp8: make failed (exit $rc); retrying libkvfp8.a and the tool with -Wno-error"
    run_logged "$LOGDIR/build-retry.log" mk EXTRA_CFLAGS="$DEP_CFLAGS -Wno-error" \
        "$BUILD/lib/libkvfp8.a" "$BUILD/bin/kvfp8"
    if [ "$rc" = 0 ]; then note "build: make lib cli" "ok only after a retry with -Wno-error, static library and tool only (see build*.log)"
    else note "build: make lib cli" "FAILED (exit $rc; see build*.log)"; fi
else
    note "build: make lib cli" "ok"
fi

# ---- 2. CUDA build ---------------------------------------------------------------------
banner "2/4 sh gpu/build.sh cuda $BUILD"
GPU_BUILD=$BUILD
if [ ! -f "$BUILD/lib/libkvfp8.a" ]; then
    # fp8_exhaustive needs only the FP8 reference (formats, profiles, status):
    # build exactly that so NVIDIA's conversion is still checked when the rest of
    # the library cannot be built here.
    GPU_BUILD=$BUILD/fp8-only
    echo "kvfp8: no $BUILD/lib/libkvfp8.a; building an FP8-only one in $GPU_BUILD/lib"
    mkdir -p "$GPU_BUILD/lib" "$GPU_BUILD/obj"
    for src in ref/fp8.c ref/fp8_profiles.c ref/status.c; do
        ${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -fPIC -Iinclude -Iref -c "$src" \
            -o "$GPU_BUILD/obj/$(basename "$src" .c).o" || break
    done
    ar rcs "$GPU_BUILD/lib/libkvfp8.a" "$GPU_BUILD"/obj/*.o || rm -f "$GPU_BUILD/lib/libkvfp8.a"
fi
run_logged "$LOGDIR/build-cuda.log" sh gpu/build.sh cuda "$GPU_BUILD"
EXH=$GPU_BUILD/gpu/fp8_exhaustive
if [ "$rc" = 0 ] && [ -x "$EXH" ]; then
    if [ "$GPU_BUILD" = "$BUILD" ]; then note "build: gpu/build.sh cuda" "ok"
    else note "build: gpu/build.sh cuda" "ok, but against an FP8-only libkvfp8 (the full library did not build)"; fi
else
    note "build: gpu/build.sh cuda" "FAILED (exit $rc; see build-cuda.log)"
fi

# ---- 3. fp8_exhaustive -----------------------------------------------------------------
banner "3/4 fp8_exhaustive $QUICK"
if [ -x "$EXH" ]; then
    run_logged "$LOGDIR/fp8-exhaustive.log" timeout 480 "$EXH" $QUICK
    case $rc in
    0) note "fp8_exhaustive $QUICK" "ok: no mismatch" ;;
    1) note "fp8_exhaustive $QUICK" "MISMATCHES (see fp8-exhaustive.log)" ;;
    124) note "fp8_exhaustive $QUICK" "TIMED OUT after 480 s" ;;
    *) note "fp8_exhaustive $QUICK" "FAILED (exit $rc)" ;;
    esac
else
    echo "kvfp8: $EXH was not built; skipping" | tee "$LOGDIR/fp8-exhaustive.log"
    note "fp8_exhaustive" "NOT RUN (not built)"
fi

# ---- 4. torch / ml_dtypes --------------------------------------------------------------
banner "4/4 gpu/fp8_torch_check.py $QUICK"
if [ -x "$BUILD/bin/kvfp8" ]; then
    run_logged "$LOGDIR/fp8-torch.log" timeout 420 "$PY" gpu/fp8_torch_check.py \
        --tool "$BUILD/bin/kvfp8" $QUICK ${FP8_TORCH_ARGS:-}
    case $rc in
    0) note "fp8_torch_check.py $QUICK" "ok: no mismatch" ;;
    1) note "fp8_torch_check.py $QUICK" "MISMATCHES (see fp8-torch.log)" ;;
    2) note "fp8_torch_check.py $QUICK" "INCOMPLETE (a library or cast missing; see fp8-torch.log)" ;;
    124) note "fp8_torch_check.py $QUICK" "TIMED OUT after 420 s" ;;
    *) note "fp8_torch_check.py $QUICK" "FAILED (exit $rc)" ;;
    esac
else
    echo "kvfp8: $BUILD/bin/kvfp8 was not built; skipping" | tee "$LOGDIR/fp8-torch.log"
    note "fp8_torch_check.py" "NOT RUN (kvfp8 tool not built)"
fi

# ---- summary ---------------------------------------------------------------------------
{
    echo "# kvfp8 FP8 GPU checks"
    echo
    sed 's/^/    /' "$LOGDIR/environment.txt"
    echo
    echo "| step | result |"
    echo "|---|---|"
    printf '%s' "$status_lines"
    echo
    sed -n '/^## fp8_exhaustive summary/,$p' "$LOGDIR/fp8-exhaustive.log" 2>/dev/null
    echo
    sed -n '/^## fp8_torch_check summary/,$p' "$LOGDIR/fp8-torch.log" 2>/dev/null
} >"$LOGDIR/summary.md"

banner "summary ($LOGDIR/summary.md)"
cat "$LOGDIR/summary.md"
echo
if [ "$failed" = 0 ]; then
    echo "kvfp8 fp8 GPU checks: ALL PASSED"
else
    echo "kvfp8 fp8 GPU checks: SOMETHING FAILED (see the table above and the logs in $LOGDIR)"
fi
exit $failed
