/* The FP8 reference: decoding, and encoding one value at a time.
 *
 * This file is the specification that every fast path (cpu/, gpu/) is checked
 * against, so it favours the obviously correct over the fast: a source value is
 * widened exactly to double, divided by its quantum (a power of two, so exactly),
 * rounded to an integer with an explicit ties-to-even rule, and multiplied back.
 * The profile-specific edge decisions come from the kvfp8_fp8_rules table
 * (ref/fp8_profiles.c); nothing here knows about vendors. */
#include <math.h>
#include <string.h>

#include "kvfp8/fp8.h"
#include "fp8_internal.h"

/* Round a >= 0 to nearest, ties to even, on the grid of a binary format with
 * `mantissa_bits` fraction bits whose smallest normal exponent is `emin`
 * (subnormal quantum 2^(emin - mantissa_bits)) and whose exponent is unbounded
 * above.  Every argument used here has at most 53 significant bits and the
 * quantum is a power of two, so a / quantum and rounded * quantum are exact. */
double kvfp8_round_to_grid(double a, int mantissa_bits, int emin) {
    if (a == 0.0 || !isfinite(a))
        return a;
    int e2;
    (void)frexp(a, &e2); /* a = f * 2^e2, f in [0.5, 1): floor(log2 a) = e2 - 1 */
    int exponent = e2 - 1;
    if (exponent < emin)
        exponent = emin;
    double quantum = ldexp(1.0, exponent - mantissa_bits);
    double scaled = a / quantum;
    double down = floor(scaled);
    double rest = scaled - down;
    double n = down;
    if (rest > 0.5 || (rest == 0.5 && fmod(down, 2.0) != 0.0))
        n = down + 1.0;
    return n * quantum;
}

static const struct {
    int exponent_bits, mantissa_bits, bias;
} format_shape[KVFP8_FORMAT_COUNT] = {
    [KVFP8_E4M3FN] = {4, 3, 7},
    [KVFP8_E5M2] = {5, 2, 15},
    [KVFP8_E4M3FNUZ] = {4, 3, 8},
    [KVFP8_E5M2FNUZ] = {5, 2, 16},
};

int kvfp8_fp8_shape(kvfp8_format f, int *exponent_bits, int *mantissa_bits, int *bias) {
    if ((unsigned)f >= KVFP8_FORMAT_COUNT)
        return 0;
    *exponent_bits = format_shape[f].exponent_bits;
    *mantissa_bits = format_shape[f].mantissa_bits;
    *bias = format_shape[f].bias;
    return 1;
}

static int is_fnuz(kvfp8_format f) { return f == KVFP8_E4M3FNUZ || f == KVFP8_E5M2FNUZ; }

int kvfp8_fp8_is_nan(kvfp8_format f, uint8_t code) {
    switch (f) {
    case KVFP8_E4M3FN: return (code & 0x7F) == 0x7F;
    case KVFP8_E5M2: return (code & 0x7C) == 0x7C && (code & 0x03) != 0;
    case KVFP8_E4M3FNUZ:
    case KVFP8_E5M2FNUZ: return code == 0x80;
    }
    return 0;
}

int kvfp8_fp8_is_inf(kvfp8_format f, uint8_t code) {
    return f == KVFP8_E5M2 && (code & 0x7F) == 0x7C;
}

/* A quiet float32 NaN; FN formats keep the code's sign bit, FNUZ has a single NaN
 * code (0x80) whose "sign" carries no meaning, so it decodes to +NaN. */
static float nan_with_sign(int negative) {
    uint32_t bits = 0x7FC00000u | (negative ? 0x80000000u : 0u);
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

float kvfp8_fp8_decode(kvfp8_format f, uint8_t code) {
    if ((unsigned)f >= KVFP8_FORMAT_COUNT)
        return nan_with_sign(0);
    const int m = format_shape[f].mantissa_bits;
    const int bias = format_shape[f].bias;
    const int negative = code >> 7;
    if (kvfp8_fp8_is_nan(f, code))
        return nan_with_sign(is_fnuz(f) ? 0 : negative);
    if (kvfp8_fp8_is_inf(f, code))
        return negative ? -INFINITY : INFINITY;
    const int exponent_field = (code & 0x7F) >> m;
    const int mantissa = code & ((1 << m) - 1);
    double magnitude;
    if (exponent_field == 0)
        magnitude = ldexp((double)mantissa, 1 - bias - m);
    else
        magnitude = ldexp((double)((1 << m) | mantissa), exponent_field - bias - m);
    /* Every FP8 value is exactly representable in float32. */
    return (float)(negative ? -magnitude : magnitude);
}

/* Packs a positive value that is already on the grid and <= max into its code. */
static uint8_t pack_magnitude(const kvfp8_fp8_rules *r, double v) {
    const int m = r->mantissa_bits;
    const int emin = 1 - r->exponent_bias;
    int e2;
    (void)frexp(v, &e2);
    const int exponent = e2 - 1;
    if (exponent < emin) /* subnormal: an integer count of the smallest quantum */
        return (uint8_t)ldexp(v, r->exponent_bias - 1 + m);
    const double fraction = ldexp(v, -exponent) - 1.0; /* in [0, 1) */
    const int mantissa = (int)ldexp(fraction, m);
    return (uint8_t)(((exponent + r->exponent_bias) << m) | mantissa);
}

uint8_t kvfp8_fp8_encode_value_ref(const kvfp8_fp8_rules *r, double x) {
    const int negative = signbit(x) ? 1 : 0;
    if (isnan(x))
        return r->nan_code[negative];
    if (isinf(x))
        return r->inf_code[negative];
    const double a = fabs(x);
    if (r->overflow_before_rounding && a > (double)r->max_value)
        return r->overflow_code[negative];
    const double v = kvfp8_round_to_grid(a, r->mantissa_bits, 1 - r->exponent_bias);
    if (v > (double)r->max_value)
        return r->overflow_code[negative];
    if (v == 0.0)
        return r->zero_code[negative];
    return (uint8_t)(pack_magnitude(r, v) | (negative ? 0x80 : 0x00));
}

uint8_t kvfp8_fp8_encode_f32_ref(const kvfp8_fp8_rules *r, float x) {
    return kvfp8_fp8_encode_value_ref(r, (double)x);
}

static int half_is_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0; }

uint8_t kvfp8_fp8_encode_f16_ref(const kvfp8_fp8_rules *r, uint16_t half_bits) {
    if (r->f16_nan_unsigned && half_is_nan(half_bits))
        return r->nan_code[0];
    return kvfp8_fp8_encode_value_ref(r, (double)kvfp8_f16_to_f32(half_bits));
}

uint8_t kvfp8_fp8_encode_bf16_ref(const kvfp8_fp8_rules *r, uint16_t bf16_bits) {
    return kvfp8_fp8_encode_value_ref(r, (double)kvfp8_bf16_to_f32(bf16_bits));
}

static float bits_to_f32(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint8_t kvfp8_fp8_encode_scaled_ref(const kvfp8_fp8_rules *r, kvfp8_source src,
                                    uint32_t source_bits, float scale) {
    switch (src) {
    case KVFP8_SRC_F32:
        return kvfp8_fp8_encode_value_ref(r, (double)(bits_to_f32(source_bits) / scale));
    case KVFP8_SRC_F16: {
        if (r->f16_nan_unsigned && half_is_nan((uint16_t)source_bits))
            return r->nan_code[0];
        const float x = kvfp8_f16_to_f32((uint16_t)source_bits);
        if (r->half_scale_in_half) {
            /* vLLM on ROCm: `tmp.data /= scale` with a _Float16 and a float: the
             * quotient is computed in float32 and rounded to half on assignment, then
             * converted: a double rounding (docs/fp8-hip.md). */
            const float q = kvfp8_f16_to_f32(kvfp8_f32_to_f16(x / scale));
            return kvfp8_fp8_encode_value_ref(r, (double)q);
        }
        return kvfp8_fp8_encode_value_ref(r, (double)(x / scale));
    }
    case KVFP8_SRC_BF16:
        return kvfp8_fp8_encode_value_ref(
            r, (double)(kvfp8_bf16_to_f32((uint16_t)source_bits) / scale));
    }
    return r->nan_code[0];
}

float kvfp8_fp8_dequant(kvfp8_format f, uint8_t code, float scale) {
    return kvfp8_fp8_decode(f, code) * scale;
}

kvfp8_status kvfp8_fp8_check_scale(float scale) {
    if (isnan(scale))
        return kvfp8_fail(KVFP8_ERR_INVALID, "scale is NaN");
    if (isinf(scale))
        return kvfp8_fail(KVFP8_ERR_INVALID, "scale is infinite");
    if (!(scale > 0.0f))
        return kvfp8_fail(KVFP8_ERR_INVALID, "scale must be > 0, got %g", (double)scale);
    return KVFP8_OK;
}

/* ---- 16-bit source formats ------------------------------------------------------ */

float kvfp8_f16_to_f32(uint16_t h) {
    const int negative = h >> 15;
    const int exponent_field = (h >> 10) & 0x1F;
    const int mantissa = h & 0x3FF;
    double v;
    if (exponent_field == 0x1F) {
        if (mantissa)
            return bits_to_f32((negative ? 0x80000000u : 0u) | 0x7FC00000u |
                               ((uint32_t)mantissa << 13));
        v = INFINITY;
    } else if (exponent_field == 0) {
        v = ldexp((double)mantissa, -24);
    } else {
        v = ldexp((double)(0x400 | mantissa), exponent_field - 25);
    }
    return (float)(negative ? -v : v);
}

float kvfp8_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

uint16_t kvfp8_f32_to_f16(float x) {
    const uint16_t sign = signbit(x) ? 0x8000 : 0;
    if (isnan(x))
        return sign | 0x7E00;
    const double v = kvfp8_round_to_grid(fabs((double)x), 10, -14);
    if (v > 65504.0)
        return sign | 0x7C00;
    if (v < ldexp(1.0, -14))
        return sign | (uint16_t)ldexp(v, 24);
    int e2;
    (void)frexp(v, &e2);
    const int exponent = e2 - 1;
    const int mantissa = (int)ldexp(ldexp(v, -exponent) - 1.0, 10);
    return sign | (uint16_t)(((exponent + 15) << 10) | mantissa);
}

uint16_t kvfp8_f32_to_bf16(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if (isnan(x))
        return (uint16_t)((bits >> 16) | 0x0040);
    /* bf16 is the top half of float32: round the low half to nearest even.  A carry
     * into the exponent is the right answer (it may make Inf, as it should). */
    const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
    return (uint16_t)((bits + rounding) >> 16);
}
