/* kvfp8 — the portable CPU path: FP8 encoding with integer bit tricks, decoding by
 * table, plus the plan every path shares (see cpu/fp8_impl.h, docs/fp8-cpu.md).
 *
 * Nothing here depends on the floating-point environment except the one IEEE
 * division (or exact multiply) by the scale, which the reference performs too:
 * rounding to the FP8 grid is done in integers on the quotient's bits, so it is
 * round-to-nearest-even whatever MXCSR's rounding mode says. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "fp8_impl.h"
#include "fp8_internal.h"

static uint32_t f32_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static float bits_f32(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* ---- 16-bit sources ---------------------------------------------------------------- */

/* Exact widening of a half.  A subnormal half m * 2^-24 becomes a normal float:
 * with k the position of m's top bit, exponent k - 24 and the bits below k as the
 * fraction.  NaN payloads are kept (their only use is the sign). */
static inline uint32_t f16_widen_bits(uint16_t h) {
    const uint32_t s = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1F)
        return s | 0x7F800000u | (m << 13);
    if (e == 0) {
        if (m == 0)
            return s;
        const uint32_t k = 31u - (uint32_t)__builtin_clz(m);
        return s | ((k + 127u - 24u) << 23) | ((m << (23u - k)) & 0x7FFFFFu);
    }
    return s | ((e + 112u) << 23) | (m << 13);
}

/* Largest |q| bits that round to a finite half (65504); 65520 is a tie between
 * 65504 (odd mantissa 0x3FF) and 65536, so it goes to the even side, which is Inf. */
#define KVFP8_HALF_OVF_THR 0x477FEFFFu

/* Rounds a float32 to half (nearest even, overflow to Inf, NaN kept with its sign)
 * and widens it back: the same grid rounding as FP8, with 10 mantissa bits and
 * bias 15 (norm_exp 113, shift 13). */
static inline uint32_t half_round_bits(uint32_t q) {
    const uint32_t a = q & 0x7FFFFFFFu, s = q & 0x80000000u;
    if (a > 0x7F800000u)
        return q;
    if (a > KVFP8_HALF_OVF_THR)
        return s | 0x7F800000u;
    return f16_widen_bits((uint16_t)((s >> 16) | kvfp8_grid_round(a, 113u, 13u)));
}

/* ---- the plan ---------------------------------------------------------------------- */

/* Float32 bits of grid code c (> 0) of the grid (norm_exp, shift, mantissa bits m). */
static uint32_t grid_value_bits(uint32_t c, uint32_t norm_exp, uint32_t shift, uint32_t m) {
    if (c >= (1u << m)) /* normal: exponent field (c >> m) is float exponent + norm_exp - 1 */
        return (c + ((norm_exp - 1) << m)) << shift;
    /* subnormal: c * 2^(norm_exp - 127 - m), normalised on c's top bit k */
    const uint32_t k = 31u - (uint32_t)__builtin_clz(c);
    return ((norm_exp - m + k) << 23) | ((c << (23u - k)) & 0x7FFFFFu);
}

kvfp8_status kvfp8_enc_plan_init(kvfp8_enc_plan *p, const kvfp8_fp8_rules *r,
                                 kvfp8_source src, float scale) {
    memset(p, 0, sizeof *p);
    const int m = r->mantissa_bits, bias = r->exponent_bias;
    /* The kernels assume a sign bit plus 7 magnitude bits, and a grid well inside
     * float32's normal range (so the zero threshold below is a normal float). */
    if (m < 1 || m > 6 || r->exponent_bits + m != 7 || bias < 1 || bias > 100 ||
        !(r->max_value > 0.0f) || !isfinite(r->max_value))
        return kvfp8_fail(KVFP8_ERR_INVALID,
                          "rules table not representable: e%dm%d bias %d max %g",
                          r->exponent_bits, m, bias, (double)r->max_value);
    p->norm_exp = 128u - (uint32_t)bias;
    p->shift = 23u - (uint32_t)m;

    /* Zero: half the smallest subnormal, 2^(1-bias-m-1), is a tie that goes to the
     * even code 0; anything above it rounds to a nonzero code. */
    p->zero_thr = (p->norm_exp - 1u - (uint32_t)m) << 23;

    /* Overflow after rounding: the largest grid code C whose value is <= max_value,
     * then the largest |v| that still rounds to C or below.  Between C and C + 1 the
     * midpoint is half a grid step above C's bits; a tie goes to the even one. */
    const uint32_t max_bits = f32_bits(r->max_value);
    uint32_t c = kvfp8_grid_round(max_bits, p->norm_exp, p->shift);
    if (c > 0 && grid_value_bits(c, p->norm_exp, p->shift, (uint32_t)m) > max_bits)
        c--;
    if (c == 0 || c > 0x7Fu)
        return kvfp8_fail(KVFP8_ERR_INVALID, "rules table max_value %g is not a 7-bit code",
                          (double)r->max_value);
    uint32_t thr;
    if (c >= (1u << m)) {
        thr = grid_value_bits(c, p->norm_exp, p->shift, (uint32_t)m) + (1u << (p->shift - 1));
        if (c & 1u)
            thr--;
    } else { /* a max in the subnormal range: no rules table has one; search */
        uint32_t lo = 0, hi = 0x7F7FFFFFu;
        while (lo < hi) {
            const uint32_t mid = lo + (hi - lo + 1) / 2;
            if (kvfp8_grid_round(mid, p->norm_exp, p->shift) <= c)
                lo = mid;
            else
                hi = mid - 1;
        }
        thr = lo;
    }
    /* HIP tests |x| > max before rounding, which only lowers the threshold. */
    if (r->overflow_before_rounding && max_bits < thr)
        thr = max_bits;
    p->ovf_thr = thr;

    memcpy(p->overflow_code, r->overflow_code, 2);
    memcpy(p->inf_code, r->inf_code, 2);
    memcpy(p->nan_code, r->nan_code, 2);
    if (src == KVFP8_SRC_F16 && r->f16_nan_unsigned) /* every NaN input is a half NaN */
        p->nan_code[1] = p->nan_code[0];
    memcpy(p->zero_code, r->zero_code, 2);
    p->inf_differs = memcmp(r->inf_code, r->overflow_code, 2) != 0;
    p->nan_differs = memcmp(p->nan_code, r->overflow_code, 2) != 0;

    /* The divisor.  HIP (vLLM's ROCm write) divides the half by the float scale in
     * float32 and rounds the quotient to half before converting. */
    p->half_round = src == KVFP8_SRC_F16 && r->half_scale_in_half;
    const float d = scale;
    const uint32_t db = f32_bits(d);
    p->divisor = d;
    if (d == 1.0f) {
        /* x / 1 == x for every x but a signalling NaN's quiet bit, which no result
         * depends on.  A half quotient is already a half: nothing to round. */
        p->op = KVFP8_SCALE_NONE;
        p->half_round = 0;
    } else if ((db & 0x7FFFFFu) == 0 && (db >> 23) >= 1u && (db >> 23) <= 253u) {
        /* d = 2^e with 2^-e normal too: x * 2^-e and x / 2^e are the same exact
         * real number, so IEEE rounding gives the same float (overflow and
         * underflow included). */
        p->op = KVFP8_SCALE_MUL;
        p->multiplier = 1.0f / d;
    } else {
        p->op = KVFP8_SCALE_DIV;
    }
    return KVFP8_OK;
}

/* ---- decoding tables --------------------------------------------------------------- */

static float decode_tables[KVFP8_FORMAT_COUNT][256];
static pthread_once_t decode_tables_once = PTHREAD_ONCE_INIT;

static void build_decode_tables(void) {
    for (int f = 0; f < KVFP8_FORMAT_COUNT; f++) {
        int eb, m, bias;
        (void)kvfp8_fp8_shape((kvfp8_format)f, &eb, &m, &bias);
        const int fnuz = f == KVFP8_E4M3FNUZ || f == KVFP8_E5M2FNUZ;
        const uint32_t norm_exp = 128u - (uint32_t)bias, shift = 23u - (uint32_t)m;
        for (uint32_t c = 0; c < 256; c++) {
            const uint32_t mag = c & 0x7Fu, sign = (c & 0x80u) << 24;
            uint32_t bits;
            if (fnuz && c == 0x80)
                bits = 0x7FC00000u; /* the single NaN; its "sign" means nothing */
            else if ((f == KVFP8_E4M3FN && mag == 0x7F) || (f == KVFP8_E5M2 && mag > 0x7C))
                bits = sign | 0x7FC00000u;
            else if (f == KVFP8_E5M2 && mag == 0x7C)
                bits = sign | 0x7F800000u;
            else if (mag == 0)
                bits = sign;
            else
                bits = sign | grid_value_bits(mag, norm_exp, shift, (uint32_t)m);
            decode_tables[f][c] = bits_f32(bits);
        }
    }
}

const float *kvfp8_decode_table(kvfp8_format f) {
    if ((unsigned)f >= KVFP8_FORMAT_COUNT)
        return NULL;
    pthread_once(&decode_tables_once, build_decode_tables);
    return decode_tables[f];
}

kvfp8_status kvfp8_dec_plan_init(kvfp8_dec_plan *p, kvfp8_format f, float scale) {
    memset(p, 0, sizeof *p);
    int eb, m, bias;
    if (!kvfp8_fp8_shape(f, &eb, &m, &bias))
        return kvfp8_fail(KVFP8_ERR_INVALID, "unknown format %d", (int)f);
    p->table = kvfp8_decode_table(f);
    p->scale = scale;
    p->layout = m == 3 ? KVFP8_HALF_E4M3 : f == KVFP8_E5M2FNUZ ? KVFP8_HALF_E5M2FNUZ : KVFP8_HALF_E5M2;
    if (f == KVFP8_E4M3FNUZ || f == KVFP8_E5M2FNUZ) { /* 0x80 alone, as half 0x8000 */
        p->nan_and = 0xFFFF, p->nan_lo = 0x8000, p->nan_span = 0, p->nan_sign = 0;
    } else if (f == KVFP8_E4M3FN) { /* magnitude 0x7F, as half bits 0x3F80 */
        p->nan_and = 0x3F80, p->nan_lo = 0x3F80, p->nan_span = 0, p->nan_sign = 0x8000;
    } else { /* E5M2: magnitudes 0x7D..0x7F, as halves 0x7D00..0x7F00 */
        p->nan_and = 0x7F00, p->nan_lo = 0x7D00, p->nan_span = 0x0200, p->nan_sign = 0x8000;
    }
    /* E4M3: the half has bias 15 where the format has `bias`, and the same
     * fraction bits (shifted), subnormals included, so half value * 2^(15 - bias)
     * is exact.  The E5M2 layouts are already the value. */
    p->rebias = p->layout == KVFP8_HALF_E4M3 ? ldexpf(1.0f, 15 - bias) : 1.0f;
    const float folded = p->rebias * scale;
    if (isfinite(folded) && folded / p->rebias == scale) {
        p->mul = folded;
        p->two_muls = 0;
    } else { /* the fold overflowed or lost subnormal bits */
        p->mul = p->rebias;
        p->two_muls = 1;
    }
    return KVFP8_OK;
}

/* ---- kernels ----------------------------------------------------------------------- */

/* The quotient's bits for one widened source value. */
static inline uint32_t scaled_bits(const kvfp8_enc_plan *p, uint32_t xb) {
    float x = bits_f32(xb);
    switch (p->op) {
    case KVFP8_SCALE_NONE: return xb;
    case KVFP8_SCALE_MUL: x = x * p->multiplier; break;
    case KVFP8_SCALE_DIV: x = x / p->divisor; break;
    }
    return f32_bits(x);
}

void kvfp8_encode_f32_portable(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n) {
    const unsigned char *src = in;
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, src + 4 * i, 4);
        out[i] = kvfp8_enc_bits(p, scaled_bits(p, b));
    }
}

void kvfp8_encode_f16_portable(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n) {
    const unsigned char *src = in;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        uint32_t q = scaled_bits(p, f16_widen_bits(h));
        if (p->half_round)
            q = half_round_bits(q);
        out[i] = kvfp8_enc_bits(p, q);
    }
}

void kvfp8_encode_bf16_portable(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n) {
    const unsigned char *src = in;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        out[i] = kvfp8_enc_bits(p, scaled_bits(p, (uint32_t)h << 16));
    }
}

void kvfp8_decode_portable(const kvfp8_dec_plan *p, const uint8_t *in, float *out, size_t n) {
    const float *table = p->table, scale = p->scale;
    for (size_t i = 0; i < n; i++)
        out[i] = table[in[i]] * scale;
}
