/* kvfp8 — CUDA/HIP portability for the device code, and the one FP8 conversion the
 * device code uses (float32 -> E4M3, saturating) with its decoder.
 *
 * In the spirit of llama.cpp's vendors/hip.h: the .cu sources are written against
 * the CUDA runtime API, and under hipcc the names below are mapped to HIP's, so one
 * source builds with both compilers.  Only what kvfp8's kernels use is mapped; a
 * missing name is a compile error under hipcc, never a silent fallback.
 * __syncthreads, threadIdx/blockIdx/blockDim/gridDim and __global__/__device__ are
 * spelled the same in HIP (hip_runtime.h provides them), so they need no mapping;
 * warpSize differs (32 on NVIDIA, 64 on gfx90a, 32 on gfx1030), so kernels must not
 * assume 32. */
#ifndef KVFP8_GPU_COMPAT_H
#define KVFP8_GPU_COMPAT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__HIP_PLATFORM_AMD__) || defined(__HIPCC__)
#define KVFP8_GPU_HIP 1
#include <hip/hip_runtime.h>
#define cudaError_t hipError_t
#define cudaSuccess hipSuccess
#define cudaErrorInvalidValue hipErrorInvalidValue
#define cudaGetErrorString hipGetErrorString
#define cudaGetLastError hipGetLastError
#define cudaPeekAtLastError hipPeekAtLastError
#define cudaMalloc hipMalloc
#define cudaFree hipFree
#define cudaMallocHost(p, n) hipHostMalloc((p), (n), hipHostMallocDefault)
#define cudaFreeHost hipHostFree
#define cudaMemcpy hipMemcpy
#define cudaMemcpyAsync hipMemcpyAsync
#define cudaMemcpyHostToDevice hipMemcpyHostToDevice
#define cudaMemcpyDeviceToHost hipMemcpyDeviceToHost
#define cudaMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define cudaMemset hipMemset
#define cudaMemsetAsync hipMemsetAsync
#define cudaDeviceSynchronize hipDeviceSynchronize
#define cudaDeviceProp hipDeviceProp_t
#define cudaGetDeviceProperties hipGetDeviceProperties
#define cudaGetDevice hipGetDevice
#define cudaSetDevice hipSetDevice
#define cudaGetDeviceCount hipGetDeviceCount
#define cudaDriverGetVersion hipDriverGetVersion
#define cudaRuntimeGetVersion hipRuntimeGetVersion
#define cudaEvent_t hipEvent_t
#define cudaEventCreate hipEventCreate
#define cudaEventDestroy hipEventDestroy
#define cudaEventRecord hipEventRecord
#define cudaEventSynchronize hipEventSynchronize
#define cudaEventElapsedTime hipEventElapsedTime
#define cudaStream_t hipStream_t
#define cudaStreamCreate hipStreamCreate
#define cudaStreamDestroy hipStreamDestroy
#define cudaStreamSynchronize hipStreamSynchronize
#else
#define KVFP8_GPU_CUDA 1
#include <cuda_runtime.h>
/* Included in every compilation pass (not only for sm_89+): nvcc's host and device
 * passes must see the same declarations. */
#include <cuda_fp8.h>
#endif

/* Any failing runtime call ends the program with status 3 (kvfp8's "environment"
 * failure, distinct from 1 = mismatches found and 2 = bad usage), naming the call
 * and where it was made, so a log from a remote GPU machine is enough to act on. */
#define KVFP8_GPU_CHECK(call)                                                          \
    do {                                                                               \
        cudaError_t kvfp8_gpu_err_ = (call);                                           \
        if (kvfp8_gpu_err_ != cudaSuccess) {                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
                    cudaGetErrorString(kvfp8_gpu_err_));                               \
            exit(3);                                                                   \
        }                                                                              \
    } while (0)

/* A kernel launch reports errors only through the next runtime call; check both the
 * launch itself and, where the caller wants it synchronous, its completion. */
#define KVFP8_GPU_CHECK_LAUNCH() KVFP8_GPU_CHECK(cudaGetLastError())

#if defined(__CUDACC__) || defined(__HIPCC__)
#define KVFP8_HD __host__ __device__ inline
#else
#define KVFP8_HD static inline
#endif

/* ---- FP8: float32 -> E4M3, saturating --------------------------------------------
 *
 * kvfp8_gpu_f32_to_e4m3_sat(x) is what the KV-cache write kernels call.  Which
 * conversion it is depends on the target the device code is compiled for:
 *
 *   CUDA sm_89 and later   __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3), i.e.
 *                          the hardware cvt.rn.satfinite.e4m3x2.f32.  E4M3FN codes.
 *   HIP gfx940/941/942     the hardware v_cvt_pk_fp8_f32 after clamping finite
 *                          inputs to +-240 (what vLLM's ROCm path does).  These chips'
 *                          FP8 is E4M3FNUZ (bias 8, max 240, one NaN code 0x80), so
 *                          the codes are E4M3FNUZ; +-Inf and NaN give 0x80.
 *                          Compiled (gfx940) by gpu/build.sh hip where hipcc knows
 *                          the target; never run here.
 *   everything else        kvfp8_gpu_f32_to_e4m3fn_sat_soft below (sm_80, gfx90a,
 *   (and host code)        gfx1030, gfx11).  E4M3FN codes.
 *
 * KVFP8_GPU_E4M3_IS_FNUZ (device code only) says which format the current target
 * produces; host code asks kvfp8_gpu_e4m3_is_fnuz(prop) about the running device.
 *
 * The software conversion reproduces kvfp8's `nvidia` profile for (e4m3fn, sat) on
 * every one of the 2^32 inputs (gpu/fp8_exhaustive checks it on the GPU):
 *   - round to nearest, ties to even, ONCE, directly from the float32 bits: no
 *     intermediate rounding to half or to a shorter float, so no double rounding;
 *   - |x| >= 448 (after rounding nothing in [448, 464] exceeds 448, and anything
 *     larger would overflow) and +-Inf give +-448 (0x7E/0xFE): SATFINITE;
 *   - every NaN gives 0x7F, sign dropped, as NVIDIA's conversion does;
 *   - +-0 and magnitudes that round to zero keep their sign (0x00/0x80).
 * Integer operations only, so it is exact on any GPU regardless of denormal
 * flushing or fast-math flags. */
KVFP8_HD uint8_t kvfp8_gpu_f32_to_e4m3fn_sat_soft(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    const uint8_t sign = (uint8_t)((bits >> 24) & 0x80u);
    const uint32_t a = bits & 0x7FFFFFFFu;
    if (a > 0x7F800000u) /* NaN */
        return 0x7F;
    if (a >= 0x43E00000u) /* >= 448, or Inf */
        return (uint8_t)(sign | 0x7E);
    if (a >= 0x3C800000u) {
        /* Normal E4M3 (>= 2^-6): keep 3 of the 23 fraction bits, rounding the 20
         * dropped ones to nearest even; a carry out of the fraction correctly bumps
         * the exponent.  Rebias 127 -> 7 by subtracting 120 from the exponent field
         * (120 << 3 in the code's units).  a < 448 keeps the result <= 0x7E. */
        const uint32_t r = (a + 0x7FFFFu + ((a >> 20) & 1u)) >> 20;
        return (uint8_t)(sign | (r - (120u << 3)));
    }
    if (a <= 0x3A800000u) /* <= 2^-10, half the smallest subnormal: ties go to 0 */
        return sign;
    /* Subnormal E4M3: a count n of 2^-9 quanta, n = significand * 2^(e - 141)
     * for a float32 of biased exponent e in [117, 120]; shift in [21, 24].  n == 8
     * (rounded up to 2^-6) is the smallest normal's code, 0x08, as it should be. */
    const uint32_t e = a >> 23;
    const uint32_t significand = (a & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 141u - e;
    const uint32_t half = 1u << (shift - 1);
    const uint32_t n = (significand + half - 1u + ((significand >> shift) & 1u)) >> shift;
    return (uint8_t)(sign | n);
}

#if defined(__HIP_DEVICE_COMPILE__) && \
    (defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__))
#define KVFP8_GPU_E4M3_IS_FNUZ 1
#else
#define KVFP8_GPU_E4M3_IS_FNUZ 0
#endif

KVFP8_HD uint8_t kvfp8_gpu_f32_to_e4m3_sat(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    return (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
#elif KVFP8_GPU_E4M3_IS_FNUZ
    /* fmed3 clamps finite values into [-240, 240]; Inf and NaN pass through and the
     * instruction turns them into the single FNUZ NaN, 0x80. */
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if ((bits & 0x7F800000u) != 0x7F800000u)
        x = __builtin_amdgcn_fmed3f(x, 240.0f, -240.0f);
    return (uint8_t)(__builtin_amdgcn_cvt_pk_fp8_f32(x, x, 0, false) & 0xFF);
#else
    return kvfp8_gpu_f32_to_e4m3fn_sat_soft(x);
#endif
}

/* Decoding is exact in every format and identical for every vendor, so one software
 * decoder serves all targets: E4M3FN (bias 7, NaN = S.1111.111) or, with fnuz,
 * E4M3FNUZ (bias 8, NaN = 0x80, no -0).  Returns what kvfp8_fp8_decode returns
 * (NaN as a quiet NaN: with the code's sign for FN, positive for FNUZ). */
KVFP8_HD float kvfp8_gpu_e4m3_to_f32(uint8_t code, int fnuz) {
    const uint32_t sign = (uint32_t)(code & 0x80u) << 24;
    const uint32_t exponent = (code >> 3) & 0xFu, mantissa = code & 7u;
    uint32_t bits;
    if (fnuz ? code == 0x80 : (code & 0x7F) == 0x7F) {
        bits = 0x7FC00000u | (fnuz ? 0u : sign);
    } else if (exponent == 0) {
        /* m * 2^-9 (FN) or m * 2^-10 (FNUZ), m in 0..7: exact in float32 */
        const float v = (float)mantissa * (fnuz ? 0x1p-10f : 0x1p-9f);
        memcpy(&bits, &v, sizeof bits);
        bits |= sign;
    } else {
        bits = sign | ((exponent + (fnuz ? 119u : 120u)) << 23) | (mantissa << 20);
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

/* Host side: whether the running device's kvfp8_gpu_f32_to_e4m3_sat produces
 * E4M3FNUZ (gfx94x) rather than E4M3FN (every other target). */
static inline int kvfp8_gpu_e4m3_is_fnuz(const cudaDeviceProp *prop) {
#ifdef KVFP8_GPU_HIP
    return strncmp(prop->gcnArchName, "gfx94", 5) == 0;
#else
    (void)prop;
    return 0;
#endif
}

#endif
