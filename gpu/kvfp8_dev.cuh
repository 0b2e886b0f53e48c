// kvfp8 — device helpers shared by the KV-cache kernels: exact 16-bit float
// conversions, the FP8 decoder of every format, and the rules-table FP8 encoder (the
// reference's kvfp8_fp8_encode_scaled_ref, bit for bit, for any profile).  Integer
// arithmetic only where bits matter, so the results do not depend on the target's
// denormal or NaN handling.  Portable: CUDA and HIP.
#ifndef KVFP8_DEV_CUH
#define KVFP8_DEV_CUH

#include "kvfp8_gpu_compat.h"
#include "kvfp8/fp8.h"
#include "kvfp8/kv_cache.h"

namespace kvfp8_gpu {

__device__ __forceinline__ uint32_t f32_bits(float x) { return __float_as_uint(x); }
__device__ __forceinline__ float bits_f32(uint32_t b) { return __uint_as_float(b); }

// Rounds a non-negative significand right by `shift` bits, to nearest even.
__device__ __forceinline__ uint64_t round_shift(uint64_t sig, int shift) {
    if (shift <= 0)
        return sig << -shift;
    if (shift >= 40)
        return 0;
    const uint64_t q = sig >> shift, rem = sig & ((1ull << shift) - 1), half = 1ull << (shift - 1);
    return q + ((rem > half || (rem == half && (q & 1))) ? 1 : 0);
}

// kvfp8_f16_to_f32: exact, NaN quiet with sign and payload kept.
__device__ __forceinline__ float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    if (exp == 0x1F)
        return bits_f32(sign | 0x7F800000u | (man ? 0x00400000u | man << 13 : 0u));
    if (exp == 0) { // man * 2^-24, exact
        const float v = (float)man * 0x1p-24f;
        return bits_f32(f32_bits(v) | sign);
    }
    return bits_f32(sign | (exp + 112) << 23 | man << 13);
}

// kvfp8_f32_to_f16: nearest even; NaN -> sign | 0x7E00.
__device__ __forceinline__ uint16_t f32_to_f16(float x) {
    const uint32_t b = f32_bits(x), sign = (b >> 16) & 0x8000;
    const int exp = (int)((b >> 23) & 0xFF);
    const uint32_t man = b & 0x7FFFFF;
    if (exp == 0xFF)
        return (uint16_t)(sign | (man ? 0x7E00 : 0x7C00));
    if (exp == 0)
        return (uint16_t)sign;
    const int e = exp - 127;
    const uint64_t sig = (uint64_t)(man | 0x800000);
    if (e < -14)
        return (uint16_t)(sign | (uint32_t)round_shift(sig, -1 - e));
    uint64_t q = round_shift(sig, 13);
    int he = e + 15;
    if (q == 0x800)
        q >>= 1, he++;
    if (he >= 31)
        return (uint16_t)(sign | 0x7C00);
    return (uint16_t)(sign | (uint32_t)he << 10 | (uint32_t)(q & 0x3FF));
}

// kvfp8_f32_to_bf16: nearest even; NaN keeps its top payload, made quiet.
__device__ __forceinline__ uint16_t f32_to_bf16(float x) {
    const uint32_t b = f32_bits(x);
    if ((b & 0x7F800000u) == 0x7F800000u && (b & 0x7FFFFF))
        return (uint16_t)((b >> 16) | 0x40);
    return (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

__device__ __forceinline__ float round_to_model(kvfp8_model_dtype d, float x) {
    if (d == KVFP8_DTYPE_F16)
        return f16_to_f32(f32_to_f16(x));
    if (d == KVFP8_DTYPE_BF16)
        return bf16_to_f32(f32_to_bf16(x));
    return x;
}

__device__ __forceinline__ float source_to_f32(kvfp8_source src, uint32_t bits) {
    if (src == KVFP8_SRC_F16)
        return f16_to_f32((uint16_t)bits);
    if (src == KVFP8_SRC_BF16)
        return bf16_to_f32((uint16_t)bits);
    return bits_f32(bits);
}

// kvfp8_fp8_decode for every format: exact; NaN as a quiet NaN (FN: with the code's
// sign; FNUZ: positive), E5M2 infinities.
__device__ __forceinline__ float fp8_decode(kvfp8_format f, uint32_t code) {
    const int m = (f == KVFP8_E4M3FN || f == KVFP8_E4M3FNUZ) ? 3 : 2;
    const int bias = f == KVFP8_E4M3FN ? 7 : f == KVFP8_E5M2 ? 15 : f == KVFP8_E4M3FNUZ ? 8 : 16;
    const uint32_t sign = (code & 0x80u) << 24;
    const int field = (int)((code & 0x7F) >> m), man = (int)(code & ((1u << m) - 1));
    const bool fnuz = f == KVFP8_E4M3FNUZ || f == KVFP8_E5M2FNUZ;
    if (fnuz ? code == 0x80 : (f == KVFP8_E4M3FN ? (code & 0x7F) == 0x7F : (field == 31 && man)))
        return bits_f32(0x7FC00000u | (fnuz ? 0u : sign));
    if (f == KVFP8_E5M2 && field == 31)
        return bits_f32(sign | 0x7F800000u);
    if (field) // normal in float32 too: rebias the exponent, widen the mantissa
        return bits_f32(sign | (uint32_t)(field - bias + 127) << 23 | (uint32_t)man << (23 - m));
    // subnormal: man * 2^(1 - bias - m), a normal float32 product, exact
    const float v = (float)man * bits_f32((uint32_t)(1 - bias - m + 127) << 23);
    return bits_f32(f32_bits(v) | sign);
}

// kvfp8_fp8_dequant: decode * scale in float32 (a NaN code gives the decoded NaN).
__device__ __forceinline__ float fp8_dequant(kvfp8_format f, uint32_t code, float scale) {
    const float d = fp8_decode(f, code);
    return d != d ? d : d * scale;
}

// kvfp8_fp8_encode_value_ref for a float32 value, from its bits.
__device__ __forceinline__ uint8_t encode_f32_rules(const kvfp8_fp8_rules &r, float x) {
    const uint32_t b = f32_bits(x);
    const int neg = (int)(b >> 31);
    const int exp = (int)((b >> 23) & 0xFF);
    const uint32_t man = b & 0x7FFFFF;
    if (exp == 0xFF)
        return man ? r.nan_code[neg] : r.inf_code[neg];
    if (r.overflow_before_rounding && bits_f32(b & 0x7FFFFFFFu) > r.max_value)
        return r.overflow_code[neg];
    if (exp == 0)
        return r.zero_code[neg]; // float32 subnormals round to zero in every FP8 format
    const int m = r.mantissa_bits, emin = 1 - r.exponent_bias, e = exp - 127;
    const uint64_t sig = (uint64_t)(man | 0x800000);
    unsigned magnitude;
    if (e < emin) {
        magnitude = (unsigned)round_shift(sig, 23 - m + emin - e);
    } else {
        uint64_t q = round_shift(sig, 23 - m);
        int field = e + r.exponent_bias;
        if (q == (2ull << m))
            q >>= 1, field++;
        if (field >= (1 << r.exponent_bits))
            return r.overflow_code[neg];
        magnitude = (unsigned)field << m | (unsigned)(q & ((1u << m) - 1));
    }
    if (magnitude > r.max_code)
        return r.overflow_code[neg];
    if (magnitude == 0)
        return r.zero_code[neg];
    return (uint8_t)(neg << 7 | magnitude);
}

// kvfp8_fp8_encode_scaled_ref: encode(x / scale), the quotient an IEEE float32
// division; a NaN input keeps its sign (as the host's division does; a GPU division
// would make it the canonical NaN); a half quotient rounded to half first where the
// table says so.
__device__ __forceinline__ uint8_t encode_scaled_rules(const kvfp8_fp8_rules &r, kvfp8_source src, uint32_t bits,
                                                       float scale) {
    if (src == KVFP8_SRC_F16 && r.f16_nan_unsigned && (bits & 0x7C00) == 0x7C00 && (bits & 0x3FF))
        return r.nan_code[0];
    const float x = source_to_f32(src, bits);
    if (x != x)
        return r.nan_code[f32_bits(x) >> 31];
    float q = __fdiv_rn(x, scale);
    if (src == KVFP8_SRC_F16 && r.half_scale_in_half)
        q = f16_to_f32(f32_to_f16(q));
    return encode_f32_rules(r, q);
}

} // namespace kvfp8_gpu

#endif
