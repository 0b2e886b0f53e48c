/* Brute-force FP8 oracle (see fp8_oracle.h). */
#include "fp8_oracle.h"

#include <math.h>
#include <string.h>

float kvfp8_test_f32(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint32_t kvfp8_test_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

float kvfp8_test_f16_widen(uint16_t h) {
    _Float16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v;
}

uint64_t kvfp8_test_rand(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint8_t kvfp8_test_oracle_encode(const kvfp8_fp8_rules *r, double x) {
    const int negative = signbit(x) ? 1 : 0;
    if (isnan(x))
        return r->nan_code[negative];
    if (isinf(x))
        return r->inf_code[negative];
    const double a = fabs(x);
    if (r->overflow_before_rounding && a > (double)r->max_value)
        return r->overflow_code[negative];
    /* Candidates: every positive finite code 0..max_code, plus the virtual code
     * max_code + 1 one step beyond the largest finite value (same spacing), which
     * stands for "overflow".  Codes alternate parity, so "even code" is the
     * ties-to-even rule. */
    const double max = (double)r->max_value;
    const double beyond = max + (max - (double)kvfp8_fp8_decode(r->format, (uint8_t)(r->max_code - 1)));
    if (a >= beyond) /* (distances to far-away candidates would round in double) */
        return r->overflow_code[negative];
    /* Bisection for the last candidate <= a (values increase with the code), then
     * the nearer of it and the next one, ties to the even code. */
    int lo = 0, hi = r->max_code + 1; /* candidate(lo) <= a < candidate(hi) */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if ((double)kvfp8_fp8_decode(r->format, (uint8_t)mid) <= a)
            lo = mid;
        else
            hi = mid;
    }
    const double v_lo = (double)kvfp8_fp8_decode(r->format, (uint8_t)lo);
    const double v_hi = hi == r->max_code + 1 ? beyond : (double)kvfp8_fp8_decode(r->format, (uint8_t)hi);
    const double d_lo = a - v_lo, d_hi = v_hi - a;
    const int best = d_lo < d_hi ? lo : d_hi < d_lo ? hi : (lo & 1) == 0 ? lo : hi;
    if (best == r->max_code + 1)
        return r->overflow_code[negative];
    if (best == 0)
        return r->zero_code[negative];
    return (uint8_t)(best | (negative ? 0x80 : 0));
}
