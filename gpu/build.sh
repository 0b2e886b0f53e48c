#!/bin/sh
# Builds kvfp8's GPU code.  Called by `make cuda`, `make hip` and `make bench-gpu`.
#
#   sh gpu/build.sh cuda BUILD   nvcc: BUILD/gpu/fp8_exhaustive (linked with
#                                BUILD/lib/libkvfp8.a, built first if missing) and
#                                BUILD/gpu/fp8_convert_kernels.o, for sm_80, sm_89
#                                and sm_90 (+ compute_90 PTX for later GPUs); the
#                                KV-cache kernels for sm_90 (+ PTX): the `cuda` backend
#                                BUILD/lib/libkvfp8_cuda.so, the correctness harness
#                                BUILD/gpu/test_gpu and the bench BUILD/gpu/bench_gpu
#   sh gpu/build.sh hip BUILD    hipcc, compile only (-c): the HIP-portable sources
#                                into BUILD/hip/, for gfx90a and gfx1030 (and gfx940
#                                when this hipcc knows it)
#
# GPU_JOBS (default 2) nvcc processes run at once; the KV-cache kernels are separate
# files so that a machine with cores builds them in parallel.
#
# A missing compiler is not an error (prints a line and exits 0): CI and developer
# machines have no GPU and may have neither toolkit.  A compile error is an error.
set -eu
kind=${1:-}
BUILD=${2:-build}
cd "$(dirname "$0")/.."

# HIP-portable sources: each builds unchanged under nvcc and hipcc through
# gpu/kvfp8_gpu_compat.h.  fp8_exhaustive.cu is deliberately not here: it tests
# NVIDIA's own __nv_cvt_* intrinsics, so it is CUDA-only.
PORTABLE_SRCS="gpu/fp8_convert_kernels.cu gpu/cache_write.cu gpu/paged_decode.cu gpu/prefill_prefix.cu"
# The KV-cache kernels (gpu/kvfp8_kernels.h).  The tensor-core parts of paged_decode.cu
# and prefill_prefix.cu are CUDA-only (mma.sync, ldmatrix, cp.async): under hipcc
# those files build their portable kernels and entry points that decline.
KV_SRCS="gpu/cache_write.cu gpu/paged_decode.cu gpu/prefill_prefix.cu"
GPU_JOBS=${GPU_JOBS:-2}

# Rebuild only when an output is missing or older than any GPU source, public
# header or the library: nvcc for three architectures takes a minute on 2 cores.
# (POSIX sh has no local variables: the names here are stale's own.)
stale() { # stale OUTPUT DEPENDENCY...
    stale_target=$1; shift
    [ -e "$stale_target" ] || return 0
    [ -n "$(find gpu include "$@" -newer "$stale_target" \( -name '*.cu' -o -name '*.cuh' -o -name '*.h' -o -name '*.a' \) 2>/dev/null | head -n 1)" ]
}

case $kind in
cuda)
    NVCC=$(command -v nvcc 2>/dev/null || true)
    [ -n "$NVCC" ] || { [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc; } || true
    if [ -z "$NVCC" ]; then
        echo "kvfp8: nvcc not found; skipping the CUDA build"
        exit 0
    fi
    if [ ! -f "$BUILD/lib/libkvfp8.a" ]; then
        echo "kvfp8: $BUILD/lib/libkvfp8.a missing; building it first"
        ${MAKE:-make} --no-print-directory BUILD="$BUILD" "$BUILD/lib/libkvfp8.a"
    fi
    # sm_90 is the target that is run (H200); sm_80 and sm_89 are built so that the
    # software (sm_80) and hardware (sm_89) conversion paths at least compile.
    # Older toolkits that lack an architecture simply leave it out.
    archs=$("$NVCC" --list-gpu-arch 2>/dev/null || echo "compute_80 compute_89 compute_90")
    gencode=""
    for a in 80 89; do
        case " $(echo $archs) " in *" compute_$a "*) gencode="$gencode -gencode arch=compute_$a,code=sm_$a" ;; esac
    done
    gencode="$gencode -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90"
    flags="-std=c++17 -O2 -Iinclude -Igpu -Xcompiler -Wall,-Wextra,-Werror --Werror all-warnings $gencode"
    out="$BUILD/gpu"
    mkdir -p "$out"
    if stale "$out/fp8_exhaustive" "$BUILD/lib/libkvfp8.a"; then
        echo "nvcc $("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'):$gencode"
        for src in gpu/fp8_convert_kernels.cu gpu/fp8_exhaustive.cu; do
            obj="$out/$(basename "$src" .cu).o"
            echo "  CUDA $src -> $obj"
            "$NVCC" $flags -c "$src" -o "$obj"
        done
        echo "  LINK $out/fp8_exhaustive"
        "$NVCC" $flags -o "$out/fp8_exhaustive" "$out/fp8_exhaustive.o" "$out/fp8_convert_kernels.o" \
            "$BUILD/lib/libkvfp8.a" -lpthread -lm
    else
        echo "kvfp8: $out/fp8_exhaustive is up to date"
    fi

    # KV-cache kernels, the backend library, the harness and the bench: sm_90 only
    # (the H200 they run on; compute_90 PTX for later GPUs).  Host code: -fPIC for the
    # shared object, hidden visibility so it exports only kvfp8_backend_entry.
    kvflags="-std=c++17 -O3 -Iinclude -Igpu -Xcompiler -Wall,-Wextra,-Werror,-fPIC,-fvisibility=hidden
        --Werror all-warnings -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90"
    kv="$out/kv"
    mkdir -p "$kv" "$BUILD/lib"
    targets="$BUILD/lib/libkvfp8_cuda.so $out/test_gpu $out/bench_gpu"
    need=0
    for t in $targets; do stale "$t" "$BUILD/lib/libkvfp8.a" && need=1; done
    if [ $need = 1 ]; then
        echo "nvcc (KV-cache kernels): sm_90, $GPU_JOBS at once"
        n=0 pids=""
        for src in $KV_SRCS gpu/backend_cuda.cu gpu/test_gpu.cu gpu/bench_gpu.cu; do
            obj="$kv/$(basename "$src" .cu).o"
            echo "  CUDA $src -> $obj"
            "$NVCC" $kvflags -c "$src" -o "$obj" &
            pids="$pids $!"
            n=$((n + 1))
            if [ $n -ge "$GPU_JOBS" ]; then
                for p in $pids; do wait "$p" || exit 1; done
                n=0 pids=""
            fi
        done
        for p in $pids; do wait "$p" || exit 1; done
        kvobjs="$kv/cache_write.o $kv/paged_decode.o $kv/prefill_prefix.o"
        echo "  LINK $BUILD/lib/libkvfp8_cuda.so"
        "$NVCC" $kvflags -shared -o "$BUILD/lib/libkvfp8_cuda.so" "$kv/backend_cuda.o" $kvobjs
        echo "  LINK $out/test_gpu"
        "$NVCC" $kvflags -o "$out/test_gpu" "$kv/test_gpu.o" $kvobjs "$BUILD/lib/libkvfp8.a" -lpthread -lm
        echo "  LINK $out/bench_gpu"
        "$NVCC" $kvflags -o "$out/bench_gpu" "$kv/bench_gpu.o" $kvobjs "$BUILD/lib/libkvfp8.a" -lpthread -lm
    else
        echo "kvfp8: $BUILD/lib/libkvfp8_cuda.so, $out/test_gpu and $out/bench_gpu are up to date"
    fi
    ;;
hip)
    HIPCC=$(command -v hipcc 2>/dev/null || true)
    [ -n "$HIPCC" ] || { [ -x /opt/rocm/bin/hipcc ] && HIPCC=/opt/rocm/bin/hipcc; } || true
    if [ -z "$HIPCC" ]; then
        echo "kvfp8: hipcc not found; skipping the HIP build"
        exit 0
    fi
    out="$BUILD/hip"
    mkdir -p "$out"
    flags="-std=c++17 -O2 -Iinclude -Igpu -Wall -Wextra -Werror"
    for src in $PORTABLE_SRCS; do
        obj="$out/$(basename "$src" .cu).o"
        echo "  HIP  $src -> $obj (gfx90a, gfx1030: software E4M3 conversion)"
        "$HIPCC" $flags --offload-arch=gfx90a --offload-arch=gfx1030 -c "$src" -o "$obj"
        # gfx940 takes the hardware E4M3FNUZ branch of the header; older hipcc (and
        # Debian's clang 15 for gfx942) do not know the target, which is no error.
        obj940="$out/$(basename "$src" .cu).gfx940.o"
        if "$HIPCC" $flags --offload-arch=gfx940 -c "$src" -o "$obj940" 2>"$out/gfx940.err"; then
            echo "  HIP  $src -> $obj940 (gfx940: hardware E4M3FNUZ conversion)"
            rm -f "$out/gfx940.err"
        elif grep -q -i -E "invalid target|unknown target|unsupported.*gfx940" "$out/gfx940.err"; then
            echo "  HIP  gfx940: not supported by this hipcc; skipped"
        else
            cat "$out/gfx940.err" >&2
            exit 1
        fi
    done
    ;;
*)
    echo "usage: sh gpu/build.sh cuda|hip BUILD" >&2
    exit 2
    ;;
esac
