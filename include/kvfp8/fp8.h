/* kvfp8 — FP8 formats, conversion rules of each vendor, and the reference conversion.
 *
 * A conversion is fully described by (format, mode, profile).  The profile names an
 * implementation whose results are reproduced bit for bit, NaN codes included: the
 * OCP OFP8 spec, NVIDIA's sm_90 conversion, PyTorch's casts, ml_dtypes' casts, or a
 * named release of ROCm's amd_hip_fp8.h host path.  Implementations agree on every
 * ordinary value (round to nearest, ties to even, once, from the source value) and
 * differ only at the edges: NaN codes, infinities, overflow, and where the overflow
 * test sits relative to rounding.  kvfp8_fp8_rules_get() resolves a triple into a
 * kvfp8_fp8_rules table of exactly those edge decisions; the reference and every
 * optimized path read the same table, so a profile is data, not a code branch.
 *
 * Facts and sources: docs/fp8.md. */
#ifndef KVFP8_FP8_H
#define KVFP8_FP8_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KVFP8_E4M3FN = 0,   /* OCP E4M3: bias 7, no Inf, NaN 0x7F/0xFF, max 448 */
    KVFP8_E5M2 = 1,     /* OCP E5M2: bias 15, IEEE-like Inf/NaN, max 57344 */
    KVFP8_E4M3FNUZ = 2, /* AMD gfx94x: bias 8, NaN 0x80 only, no -0, max 240 */
    KVFP8_E5M2FNUZ = 3  /* AMD gfx94x: bias 16, NaN 0x80 only, no -0, max 57344 */
} kvfp8_format;
#define KVFP8_FORMAT_COUNT 4

typedef enum {
    KVFP8_SAT = 0,   /* overflow and +-Inf saturate to +-max (NVIDIA __NV_SATFINITE) */
    KVFP8_NONSAT = 1 /* overflow gives NaN (no-Inf formats) or +-Inf (E5M2) */
} kvfp8_mode;
#define KVFP8_MODE_COUNT 2

typedef enum {
    KVFP8_PROFILE_OCP = 0,
    KVFP8_PROFILE_NVIDIA = 1,
    KVFP8_PROFILE_TORCH = 2,
    KVFP8_PROFILE_MLDTYPES = 3,
    KVFP8_PROFILE_HIP = 4,      /* ROCm 6.3's amd_hip_fp8.h (the W7900 stack of vLLM #13147) */
    KVFP8_PROFILE_HIP_62 = 5,   /* ROCm 6.2's header: FNUZ only, overflow after rounding */
    KVFP8_PROFILE_HIP_NEXT = 6, /* later ROCm/clr trees: Inf is NaN (Inf for e5m2) in every mode */
    KVFP8_PROFILE_TORCH_CUDA = 7 /* PyTorch's cast on a CUDA tensor: a half NaN loses its sign */
} kvfp8_profile;
#define KVFP8_PROFILE_COUNT 8

typedef enum {
    KVFP8_SRC_F32 = 0,
    KVFP8_SRC_F16 = 1,
    KVFP8_SRC_BF16 = 2
} kvfp8_source;
#define KVFP8_SOURCE_COUNT 3

/* The edge decisions of one (format, mode, profile).  Indexes [0] and [1] are for a
 * positive and a negative input. */
typedef struct {
    kvfp8_format format;
    kvfp8_mode mode;
    kvfp8_profile profile;
    int exponent_bits;
    int mantissa_bits;
    int exponent_bias;
    uint8_t max_code;            /* positive largest finite code */
    float max_value;             /* its value */
    /* Overflow test.  With overflow_before_rounding == 0 (everyone but HIP) a finite
     * input overflows when its round-to-nearest-even value on the unbounded grid
     * exceeds max_value.  With 1 (HIP's host path) it overflows when |x| > max_value,
     * tested before rounding. */
    int overflow_before_rounding;
    uint8_t overflow_code[2];    /* result for a finite input that overflows */
    uint8_t inf_code[2];         /* result for +-Inf */
    uint8_t nan_code[2];         /* result for a NaN of either sign bit */
    uint8_t zero_code[2];        /* result for +-0 and for values that round to zero */
    /* vLLM on ROCm divides a half input by the (float) scale in float32 and rounds
     * the quotient to half before converting (a double rounding); everyone else
     * converts the float32 quotient directly. */
    int half_scale_in_half;
    /* A half-precision NaN input loses its sign before the conversion (measured:
     * PyTorch on CUDA widens the half to the canonical +NaN), so a half NaN of
     * either sign gives nan_code[0]. */
    int f16_nan_unsigned;
    /* The profile leaves the NaN code open (OCP: "a NaN"): a port may return any NaN
     * code and still conform.  The reference still returns nan_code. */
    int any_nan_conforms;
} kvfp8_fp8_rules;

/* Names used on the command line and in reports. */
const char *kvfp8_format_name(kvfp8_format f);
const char *kvfp8_mode_name(kvfp8_mode m);
const char *kvfp8_profile_name(kvfp8_profile p);
const char *kvfp8_source_name(kvfp8_source s);
kvfp8_status kvfp8_format_parse(const char *name, kvfp8_format *out);
kvfp8_status kvfp8_mode_parse(const char *name, kvfp8_mode *out);
kvfp8_status kvfp8_profile_parse(const char *name, kvfp8_profile *out);
kvfp8_status kvfp8_source_parse(const char *name, kvfp8_source *out);

/* One-line description of what the profile reproduces (release, function names). */
const char *kvfp8_profile_description(kvfp8_profile p);

/* Resolves (format, mode, profile).  KVFP8_ERR_UNSUPPORTED, with a reason in
 * kvfp8_last_error(), when the profile does not define that format or mode. */
kvfp8_status kvfp8_fp8_rules_get(kvfp8_format f, kvfp8_mode m, kvfp8_profile p,
                                 kvfp8_fp8_rules *out);

/* Format facts. */
int kvfp8_fp8_is_nan(kvfp8_format f, uint8_t code);
int kvfp8_fp8_is_inf(kvfp8_format f, uint8_t code);

/* Decoding is exact and the same for every profile: a code's value in float32. */
float kvfp8_fp8_decode(kvfp8_format f, uint8_t code);

/* The reference encoders: plain C, one value at a time, obviously correct rather
 * than fast (they round in double arithmetic).  Each rounds once, from the exact
 * source value. */
uint8_t kvfp8_fp8_encode_f32_ref(const kvfp8_fp8_rules *r, float x);
uint8_t kvfp8_fp8_encode_f16_ref(const kvfp8_fp8_rules *r, uint16_t half_bits);
uint8_t kvfp8_fp8_encode_bf16_ref(const kvfp8_fp8_rules *r, uint16_t bf16_bits);

/* vLLM's scaled conversion (the KV-cache write), reference:
 *   code = encode((float)x / scale)       IEEE float32 division, not x * (1/scale);
 * except for a half source under a profile with half_scale_in_half, where
 *   code = encode(half((float)x / scale)). */
uint8_t kvfp8_fp8_encode_scaled_ref(const kvfp8_fp8_rules *r, kvfp8_source src,
                                    uint32_t source_bits, float scale);

/* Dequantization as vLLM does it: decode(code) * scale in float32. */
float kvfp8_fp8_dequant(kvfp8_format f, uint8_t code, float scale);

/* A scale that vLLM would accept: finite and > 0.  Otherwise KVFP8_ERR_INVALID. */
kvfp8_status kvfp8_fp8_check_scale(float scale);

/* Scalar helpers for 16-bit sources, round to nearest even (exact where it can be). */
float kvfp8_f16_to_f32(uint16_t h);
float kvfp8_bf16_to_f32(uint16_t b);
uint16_t kvfp8_f32_to_f16(float x);
uint16_t kvfp8_f32_to_bf16(float x);

#ifdef __cplusplus
}
#endif
#endif
