"""NVIDIA's host FP8 conversion (the CUDA toolkit's cuda_fp8.h) against kvfp8's nvidia profile.

Builds tests/nvidia/host_check.cpp with g++ against the toolkit's headers and the
kvfp8 static library, then runs it.  Without the toolkit the check is reported as
SKIPPED (never as a pass).  Prints cmocka-style lines that scripts/run-tests.sh counts.
"""
import os
import shutil
import subprocess
import sys
import tempfile

NAME = "nvidia_host_conversion_vs_reference"


def find_cuda_include():
    for cand in [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda", "/usr"]:
        if cand and os.path.exists(os.path.join(cand, "include", "cuda_fp8.h")):
            return os.path.join(cand, "include")
    return None


def main():
    inc = find_cuda_include()
    gxx = shutil.which("g++") or shutil.which("c++")
    if not inc or not gxx:
        print(f"[  SKIPPED ] {NAME}: cuda_fp8.h or g++ not found (install the CUDA toolkit to run it)")
        return 0
    build = os.environ.get("KVFP8_BUILD", "build")
    lib = os.path.join(build, "lib", "libkvfp8.a")
    stride = "4093" if os.environ.get("KVFP8_QUICK") else "61"
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "host_check")
        flags = os.environ.get("KVFP8_CXXFLAGS", "").split()
        flags += os.environ.get("KVFP8_LDFLAGS", "").split()  # sanitizer / coverage builds
        cmd = [gxx, "-O2", "-std=c++17", "-I", inc, "-I", "include", "tests/nvidia/host_check.cpp", lib,
               "-o", exe, "-lcrypto", "-lxxhash", "-ljansson", "-ldl", "-lm", "-lpthread"] + flags
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"[  FAILED  ] {NAME}: could not build the harness:\n{r.stderr[-2000:]}")
            return 1
        r = subprocess.run([exe, stride], capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        if r.returncode != 0:
            print(f"[  FAILED  ] {NAME}: see the mismatches above (exit {r.returncode})")
            return 1
        print(f"[       OK ] {NAME} (cuda_fp8.h from {inc}, float32 stride {stride})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
