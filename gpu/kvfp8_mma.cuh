// kvfp8 — tensor-core helpers of the attention kernels (CUDA only: mma.sync,
// ldmatrix, cp.async; sm_80+, the FP8 conversions in hardware on sm_89+).
//
// MT selects the MMA input type: 0 bfloat16 (bf16 models), 1 float16 (f16 models),
// 2 float16 for e4m3fn caches under `uniform` reads (queries scaled per row by a power
// of two into float16 range; see AttnArgs::q_f16_rows).
// Every K/V element reaches the tensor cores as an exact MT value of what the read
// semantics says it is (model-dtype: round_MT(decode(code) * scale) computed in
// float32; uniform: decode(code), exact in both types, the scale folded into the
// scores/outputs), queries are exact MT values (the backend checks), products are
// exact and accumulate in float32.  Probabilities are split into hi + lo MT parts so
// that P.V keeps float32-level accuracy (a single bf16 P would cost 2^-9 relative).
#ifndef KVFP8_MMA_CUH
#define KVFP8_MMA_CUH

#include "kvfp8_gpu_compat.h"

#if defined(KVFP8_GPU_CUDA)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace kvfp8_gpu {

// KV element kinds of the tensor-core kernels.
enum { KV_E4M3 = 0, KV_E5M2 = 1, KV_16BIT = 2 };

template <int MT>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    if (MT == 0) {
        const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *(const uint32_t *)&v;
    } else {
        const __half2 v = __floats2half2_rn(lo, hi);
        return *(const uint32_t *)&v;
    }
}

template <int MT>
__device__ __forceinline__ float2 unpack2(uint32_t w) {
    if (MT == 0)
        return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xFFFF0000u));
    __half2 h;
    *(uint32_t *)&h = w;
    return __half22float2(h);
}

// Two FP8 codes (low byte first, in the low 16 bits of p) -> two exact f16 values.
template <int KIND>
__device__ __forceinline__ float2 fp8x2_to_float2(uint32_t p) {
    uint32_t h2;
    if (KIND == KV_E5M2) {
        h2 = __byte_perm(p, 0, 0x1404); // E5M2 is the top byte of a half
    } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
        const __half2_raw r = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(p & 0xFFFF), __NV_E4M3);
        h2 = (uint32_t)r.x | (uint32_t)r.y << 16;
#else
        // S.EEEE.MMM -> half S.0EEEE.MMM0000000 = value * 2^-8 (subnormals included);
        // the 2^8 is applied in float32 below, exactly
        const uint32_t b = __byte_perm(p, 0, 0x1404);
        h2 = (b & 0x80008000u) | ((b & 0x7F007F00u) >> 1);
#endif
    }
    __half2 h;
    *(uint32_t *)&h = h2;
    float2 f = __half22float2(h);
#if !(defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890)
    if (KIND == KV_E4M3)
        f.x *= 256.0f, f.y *= 256.0f;
#endif
    return f;
}

// Two E4M3 codes -> their exact values as an f16x2 (every E4M3 value is a normal
// float16): one hardware conversion on sm_89+ (the `uniform` fast path).
__device__ __forceinline__ uint32_t e4m3x2_to_f16x2_exact(uint32_t p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    const __half2_raw r = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(p & 0xFFFF), __NV_E4M3);
    return (uint32_t)r.x | (uint32_t)r.y << 16;
#else
    const float2 f = fp8x2_to_float2<KV_E4M3>(p);
    return pack2<1>(f.x, f.y);
#endif
}

// Four E4M3 codes -> two f16x2 of their exact values (bytes 0-1 -> lo, 2-3 -> hi):
// on sm_89+ two hardware conversions on the register's halves, nothing else.
__device__ __forceinline__ void e4m3x4_to_f16x2x2_exact(uint32_t p, uint32_t &lo, uint32_t &hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    asm("{\n .reg .b16 l, h;\n mov.b32 {l, h}, %2;\n cvt.rn.f16x2.e4m3x2 %0, l;\n cvt.rn.f16x2.e4m3x2 %1, h;\n}\n"
        : "=r"(lo), "=r"(hi)
        : "r"(p));
#else
    lo = e4m3x2_to_f16x2_exact(p), hi = e4m3x2_to_f16x2_exact(p >> 16);
#endif
}

// Two FP8 codes -> MT pair of round_MT(decode * ds) (ds = 1: the exact decode).
template <int KIND, int MT>
__device__ __forceinline__ uint32_t fp8x2_to_mt(uint32_t p, float ds) {
    const float2 f = fp8x2_to_float2<KIND>(p);
    return pack2<MT>(f.x * ds, f.y * ds);
}

template <int MT>
__device__ __forceinline__ void mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
    if (MT == 0)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3,
                                                  const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(smem_addr(p)));
}

// 16 bytes global -> shared, asynchronously; src_bytes 0 fills zeros.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Programmatic dependent launch (sm_90+; no-ops below and when the grid was launched
// without the attribute).  pdl_wait: nothing before it may read memory that an earlier
// kernel of the stream writes; it returns once those kernels have completed and their
// writes are visible.  pdl_allow_next: the next kernel of the stream may be scheduled
// (its CTAs then take multiprocessors as this grid's leave, and wait in pdl_wait).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_allow_next() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

} // namespace kvfp8_gpu

#endif // KVFP8_GPU_CUDA
#endif
