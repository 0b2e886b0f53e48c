// kvfp8 — the KV-cache write (vLLM's reshape_and_cache_flash) and FP8 buffer
// encode/decode, bit-exact with the reference.  Portable: nvcc and hipcc build this
// file unchanged (gpu/build.sh).
//
// Two cache-write kernels:
//  - cache_write_e4m3_vec: each thread converts two vectors of K and of V (by
//    default; the variants are listed at kWriteVariantNames), each vector 16 consecutive
//    elements of one (token, head) row: 16-byte loads of the source (two for 16-bit
//    sources, four for float32), an IEEE float32 division by the head's scale, the
//    target's direct float32 -> E4M3 conversion (sm_89+: cvt.rn.satfinite.e4m3x2.f32,
//    two elements per instruction; elsewhere the compat header's integer software
//    conversion: one rounding, no intermediate half/bf16, so no double rounding), and
//    one 16-byte store into the cache.  Used when the cache's rules table is the one
//    those conversions implement (e4m3fn, saturating, NaN -> 0x7F: the `nvidia`
//    table) and head_size is a multiple of 16.
//  - cache_write_generic: one element per thread (grid-stride), any rules table
//    through encode_scaled_rules (gpu/kvfp8_dev.cuh), and `auto` storage.
#include "kvfp8_dev.cuh"
#include "kvfp8_kernels.h"

namespace kvfp8_gpu {
namespace {

constexpr int kBlock = 256;

unsigned grid_for(size_t n, int block) {
    size_t b = (n + (size_t)block - 1) / (size_t)block;
    if (b == 0)
        b = 1;
    return (unsigned)(b < 65535u * 8u ? b : 65535u * 8u);
}

__device__ __forceinline__ uint32_t load_source_bits(kvfp8_source src, const void *base, size_t i) {
    if (src == KVFP8_SRC_F32)
        return ((const uint32_t *)base)[i];
    return ((const uint16_t *)base)[i];
}

__global__ void encode_buffer_kernel(kvfp8_fp8_rules r, kvfp8_source src, const void *__restrict__ in,
                                     uint8_t *__restrict__ out, size_t n, float scale) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = encode_scaled_rules(r, src, load_source_bits(src, in, i), scale);
}

__global__ void decode_buffer_kernel(kvfp8_format f, const uint8_t *__restrict__ in, float *__restrict__ out, size_t n,
                                     float scale) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = fp8_dequant(f, in[i], scale);
}

// One stored element of `auto` storage, as the reference's store(): the source value
// in float32, then rounded to the storage dtype.
__device__ __forceinline__ void store_auto(uint8_t *cache, size_t at, kvfp8_model_dtype dtype, kvfp8_source src,
                                           uint32_t bits) {
    const float x = source_to_f32(src, bits);
    if (dtype == KVFP8_DTYPE_F32)
        ((uint32_t *)cache)[at] = f32_bits(x);
    else if (dtype == KVFP8_DTYPE_F16)
        ((uint16_t *)cache)[at] = f32_to_f16(x);
    else
        ((uint16_t *)cache)[at] = f32_to_bf16(x);
}

__global__ void cache_write_generic_kernel(CacheWriteArgs a) {
    const size_t row = (size_t)a.num_heads * (size_t)a.head_size;
    const size_t n = (size_t)a.num_tokens * row;
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        const size_t t = i / row;
        const int64_t slot = a.slot_mapping[t];
        if (slot < 0)
            continue; // padding
        const int h = (int)((i / (size_t)a.head_size) % (size_t)a.num_heads);
        const size_t at = ((size_t)slot * (size_t)a.num_heads + (size_t)h) * (size_t)a.head_size +
                          i % (size_t)a.head_size;
        const uint32_t kb = load_source_bits(a.src, a.key, i), vb = load_source_bits(a.src, a.value, i);
        if (a.storage.is_fp8) {
            const int si = a.per_head ? h : 0;
            a.key_cache[at] = encode_scaled_rules(a.storage.fp8, a.src, kb, a.scales[si]);
            a.value_cache[at] = encode_scaled_rules(a.storage.fp8, a.src, vb, a.scales[256 + si]);
        } else {
            store_auto(a.key_cache, at, a.storage.dtype, a.src, kb);
            store_auto(a.value_cache, at, a.storage.dtype, a.src, vb);
        }
    }
}

// ---- the vectorized E4M3 write ----------------------------------------------------------

// Two float32 quotients -> two E4M3 codes (low byte: a).
__device__ __forceinline__ uint32_t e4m3x2(float a, float b) {
#if defined(KVFP8_GPU_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    return (uint32_t)__nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3);
#else
    return (uint32_t)kvfp8_gpu_f32_to_e4m3_sat(a) | (uint32_t)kvfp8_gpu_f32_to_e4m3_sat(b) << 8;
#endif
}

// Streaming accesses: the source is read once and the cache is not read back here.
// PF256: also ask L2 to fetch the whole 256-byte pair of lines (the .L2::256B
// prefetch-size hint of sm_80+; CUDA only, a plain streaming load elsewhere).
template <bool PF256 = false>
__device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
#if defined(KVFP8_GPU_CUDA)
    if constexpr (PF256) {
        uint4 v;
        asm volatile("ld.global.cs.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                     : "l"(p));
        return v;
    }
    return __ldcs(p);
#else
    return *p;
#endif
}
__device__ __forceinline__ void st_stream(uint4 *p, uint4 v) {
#if defined(KVFP8_GPU_CUDA)
    __stcs(p, v);
#else
    *p = v;
#endif
}

template <int SRC, bool PF256>
__device__ __forceinline__ void load16(const void *base, size_t elem, float x[16]) {
    if (SRC == KVFP8_SRC_F32) {
        const uint4 *p = (const uint4 *)((const float *)base + elem);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint4 w = ld_stream<PF256>(p + i);
            x[4 * i] = __uint_as_float(w.x), x[4 * i + 1] = __uint_as_float(w.y);
            x[4 * i + 2] = __uint_as_float(w.z), x[4 * i + 3] = __uint_as_float(w.w);
        }
    } else {
        const uint4 *p = (const uint4 *)((const uint16_t *)base + elem);
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const uint4 w4 = ld_stream<PF256>(p + i);
            const uint32_t w[4] = {w4.x, w4.y, w4.z, w4.w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const uint16_t lo = (uint16_t)(w[j] & 0xFFFF), hi = (uint16_t)(w[j] >> 16);
                if (SRC == KVFP8_SRC_BF16) {
                    x[8 * i + 2 * j] = __uint_as_float(w[j] << 16);
                    x[8 * i + 2 * j + 1] = __uint_as_float(w[j] & 0xFFFF0000u);
                } else {
#if defined(KVFP8_GPU_CUDA)
                    // the hardware widening is exact; it may drop a NaN's sign, which the
                    // E4M3 table this kernel serves ignores (NaN -> 0x7F either way)
                    x[8 * i + 2 * j] = __half2float(__ushort_as_half(lo));
                    x[8 * i + 2 * j + 1] = __half2float(__ushort_as_half(hi));
#else
                    x[8 * i + 2 * j] = f16_to_f32(lo);
                    x[8 * i + 2 * j + 1] = f16_to_f32(hi);
#endif
                }
            }
        }
    }
}

template <int SRC>
__device__ __forceinline__ uint4 convert16(const float x[16], float scale) {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t lo = e4m3x2(__fdiv_rn(x[4 * i], scale), __fdiv_rn(x[4 * i + 1], scale));
        const uint32_t hi = e4m3x2(__fdiv_rn(x[4 * i + 2], scale), __fdiv_rn(x[4 * i + 3], scale));
        w[i] = lo | hi << 16;
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

// One 16-element vector of K and of V: vector `idx` of the (token, head, vector)
// order of the source.
template <int SRC, bool PF256>
__device__ __forceinline__ void write_vec(const CacheWriteArgs &a, int64_t idx, int vecs) {
    const int64_t row = idx / vecs;
    const int v = (int)(idx - row * vecs);
    const int64_t t = row / a.num_heads;
    const int h = (int)(row - t * a.num_heads);
    const int64_t slot = a.slot_mapping[t];
    if (slot < 0)
        return; // padding
    const int si = a.per_head ? h : 0;
    const float ks = a.scales[si], vs = a.scales[256 + si];
    const size_t in = (size_t)row * (size_t)a.head_size + (size_t)v * 16;
    float xk[16], xv[16];
    load16<SRC, PF256>(a.key, in, xk);
    load16<SRC, PF256>(a.value, in, xv);
    const size_t out = ((size_t)slot * (size_t)a.num_heads + (size_t)h) * (size_t)a.head_size + (size_t)v * 16;
    st_stream((uint4 *)(a.key_cache + out), convert16<SRC>(xk, ks));
    st_stream((uint4 *)(a.value_cache + out), convert16<SRC>(xv, vs));
}

// THREADS per CTA; ITEMS vectors per thread, a CTA's items THREADS apart (each item
// a coalesced sweep of the CTA; all of them unrolled so their loads are in flight
// together).
template <int SRC, int THREADS, int ITEMS, bool PF256>
__global__ void __launch_bounds__(THREADS) cache_write_e4m3_vec_kernel(CacheWriteArgs a) {
    const int vecs = a.head_size >> 4;
    const int64_t total = a.num_tokens * (int64_t)a.num_heads * vecs;
    const int64_t first = (int64_t)blockIdx.x * THREADS * ITEMS + threadIdx.x;
#pragma unroll
    for (int k = 0; k < ITEMS; k++)
        if (first + (int64_t)k * THREADS < total)
            write_vec<SRC, PF256>(a, first + (int64_t)k * THREADS, vecs);
}

// The vectorized kernel's shapes, by cache_write's variant (the launches at
// cache_write); 0 is the default.  The bench times each and gpu/test_gpu checks each
// bitwise against the reference.
const char *const kWriteVariantNames[] = {
    nullptr,
    "128 threads, 1 vector each",                     // 1
    "128 threads, 2 vectors each",                    // 2
    "128 threads, 4 vectors each",                    // 3
    "256 threads, 2 vectors each",                    // 4
    "128 threads, 1 vector each, L2 256-byte fetch",  // 5
    "128 threads, 2 vectors each, L2 256-byte fetch", // 6
};
constexpr int kWriteVariantCount = (int)(sizeof kWriteVariantNames / sizeof kWriteVariantNames[0]);
// Measured on the H200 (bench/results/gpu-kernels-*.md; bf16 -> e4m3fn, 524288 tokens
// x 8 heads x 128, four runs): 1 vector per thread 89.0-89.5% of copy, 2 vectors
// 92.0-92.4%, 4 vectors 87.9-89.2%, 256 threads x 2 vectors 86.8-87.2%; the L2
// 256-byte fetch hint 88.2-88.5% (1 vector) and 91.0-91.1% (2 vectors).
constexpr int kWriteDefault = 2;

template <int THREADS, int ITEMS, bool PF256>
void launch_write_vec(const CacheWriteArgs &a, cudaStream_t stream) {
    const int64_t total = a.num_tokens * (int64_t)a.num_heads * (a.head_size / 16);
    const unsigned grid = (unsigned)((total + THREADS * ITEMS - 1) / (THREADS * ITEMS));
    switch (a.src) {
    case KVFP8_SRC_F32:
        cache_write_e4m3_vec_kernel<KVFP8_SRC_F32, THREADS, ITEMS, PF256><<<grid, THREADS, 0, stream>>>(a);
        break;
    case KVFP8_SRC_F16:
        cache_write_e4m3_vec_kernel<KVFP8_SRC_F16, THREADS, ITEMS, PF256><<<grid, THREADS, 0, stream>>>(a);
        break;
    case KVFP8_SRC_BF16:
        cache_write_e4m3_vec_kernel<KVFP8_SRC_BF16, THREADS, ITEMS, PF256><<<grid, THREADS, 0, stream>>>(a);
        break;
    }
}

bool device_e4m3_is_fnuz() {
    static int cached = -1;
    if (cached < 0) {
        int dev = 0;
        cudaDeviceProp prop;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess)
            return true; // unknown: keep to the generic kernel
        cached = kvfp8_gpu_e4m3_is_fnuz(&prop);
    }
    return cached != 0;
}

} // namespace

cudaError_t encode_buffer(const kvfp8_fp8_rules &r, kvfp8_source src, const void *in, uint8_t *out, size_t n,
                          float scale, cudaStream_t stream) {
    if (n == 0)
        return cudaSuccess;
    encode_buffer_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(r, src, in, out, n, scale);
    return cudaGetLastError();
}

cudaError_t decode_buffer(kvfp8_format f, const uint8_t *in, float *out, size_t n, float scale,
                          cudaStream_t stream) {
    if (n == 0)
        return cudaSuccess;
    decode_buffer_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(f, in, out, n, scale);
    return cudaGetLastError();
}

bool cache_write_is_fast(const CacheWriteArgs &a) {
    const kvfp8_fp8_rules &r = a.storage.fp8;
    // The table the hardware SATFINITE conversion (and the compat header's software
    // conversion) implements: every edge decision, not the profile's name.
    const bool table = a.storage.is_fp8 && r.format == KVFP8_E4M3FN && r.max_code == 0x7E &&
                       r.overflow_code[0] == 0x7E && r.overflow_code[1] == 0xFE && r.inf_code[0] == 0x7E &&
                       r.inf_code[1] == 0xFE && r.nan_code[0] == 0x7F && r.nan_code[1] == 0x7F &&
                       r.zero_code[0] == 0x00 && r.zero_code[1] == 0x80 && !r.half_scale_in_half;
    const bool aligned = ((uintptr_t)a.key % 16 == 0) && ((uintptr_t)a.value % 16 == 0) &&
                         ((uintptr_t)a.key_cache % 16 == 0) && ((uintptr_t)a.value_cache % 16 == 0);
    return table && a.head_size % 16 == 0 && aligned && (unsigned)a.src < KVFP8_SOURCE_COUNT && !device_e4m3_is_fnuz();
}

const char *cache_write_variant_name(int variant) {
    return variant > 0 && variant < kWriteVariantCount ? kWriteVariantNames[variant] : nullptr;
}

cudaError_t cache_write(const CacheWriteArgs &a, cudaStream_t stream, int variant) {
    if (a.num_tokens <= 0)
        return cudaSuccess;
    if (variant < 0 || variant >= kWriteVariantCount)
        return cudaErrorInvalidValue;
    if (cache_write_is_fast(a)) {
        switch (variant ? variant : kWriteDefault) {
        case 1: launch_write_vec<128, 1, false>(a, stream); break;
        case 2: launch_write_vec<128, 2, false>(a, stream); break;
        case 3: launch_write_vec<128, 4, false>(a, stream); break;
        case 4: launch_write_vec<256, 2, false>(a, stream); break;
        case 5: launch_write_vec<128, 1, true>(a, stream); break;
        case 6: launch_write_vec<128, 2, true>(a, stream); break;
        }
        return cudaGetLastError();
    }
    const size_t n = (size_t)a.num_tokens * (size_t)a.num_heads * (size_t)a.head_size;
    cache_write_generic_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(a);
    return cudaGetLastError();
}

} // namespace kvfp8_gpu
