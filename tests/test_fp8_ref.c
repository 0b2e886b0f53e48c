/* The FP8 reference against facts that do not come from its own code:
 *  - format facts from the OFP8 spec and the vendors' documentation (counts of
 *    finite codes, max, min normal, min subnormal, published sanity values);
 *  - boundary tables for every format x mode x profile, written by hand from the
 *    spec (docs/fp8.md): max, the overflow cut-over, ties on both sides, subnormal
 *    edges, +-0, +-Inf, NaN of both signs;
 *  - every float16 and bfloat16 input, and a million float32 bit patterns, against a
 *    brute-force nearest-code oracle (tests/lib/fp8_oracle.c);
 *  - the scaled conversion against float32 and _Float16 arithmetic done by the
 *    compiler. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kvfp8/fp8.h"
#include "fp8_oracle.h"

static kvfp8_fp8_rules rules(kvfp8_format f, kvfp8_mode m, kvfp8_profile p) {
    kvfp8_fp8_rules r;
    if (kvfp8_fp8_rules_get(f, m, p, &r) != KVFP8_OK)
        fail_msg("rules_get(%s,%s,%s): %s", kvfp8_format_name(f), kvfp8_mode_name(m),
                 kvfp8_profile_name(p), kvfp8_last_error());
    return r;
}

/* ---- decoding ------------------------------------------------------------------- */

static void test_decode_format_facts(void **state) {
    (void)state;
    static const struct {
        kvfp8_format f;
        int finite_codes;
        double max, min_normal, min_subnormal;
        int has_negative_zero;
    } facts[] = {
        {KVFP8_E4M3FN, 254, 448.0, 0x1p-6, 0x1p-9, 1},
        {KVFP8_E5M2, 248, 57344.0, 0x1p-14, 0x1p-16, 1},
        {KVFP8_E4M3FNUZ, 255, 240.0, 0x1p-7, 0x1p-10, 0},
        {KVFP8_E5M2FNUZ, 255, 57344.0, 0x1p-15, 0x1p-17, 0},
    };
    for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++) {
        kvfp8_format f = facts[i].f;
        int finite = 0, negative_zero = 0;
        double max = 0, min_pos = INFINITY;
        float prev = -1.0f;
        for (int c = 0; c < 256; c++) {
            float v = kvfp8_fp8_decode(f, (uint8_t)c);
            assert_int_equal(isnan(v) != 0, kvfp8_fp8_is_nan(f, (uint8_t)c));
            if (isfinite(v)) {
                finite++;
                if (v == 0 && signbit(v))
                    negative_zero = 1;
                if (fabs(v) > max)
                    max = fabs(v);
                if (v > 0 && v < min_pos)
                    min_pos = v;
            }
            if (c < 128 && isfinite(v)) {
                /* positive codes are in increasing order of value */
                assert_true(v > prev);
                prev = v;
                /* the negative code is the exact negation */
                float neg = kvfp8_fp8_decode(f, (uint8_t)(c | 0x80));
                if (c != 0 || facts[i].has_negative_zero)
                    assert_true(neg == -v);
            }
        }
        assert_int_equal(finite, facts[i].finite_codes);
        assert_true(max == facts[i].max);
        assert_true(min_pos == facts[i].min_subnormal);
        assert_int_equal(negative_zero, facts[i].has_negative_zero);
        /* the smallest normal is the first code with exponent field 1 */
        int mbits = (f == KVFP8_E4M3FN || f == KVFP8_E4M3FNUZ) ? 3 : 2;
        assert_true(kvfp8_fp8_decode(f, (uint8_t)(1 << mbits)) == facts[i].min_normal);
    }
}

static void test_decode_published_values(void **state) {
    (void)state;
    static const struct {
        kvfp8_format f;
        uint8_t code;
        double value;
    } v[] = {
        {KVFP8_E4M3FN, 0x38, 1.0},    {KVFP8_E4M3FN, 0x7E, 448.0},   {KVFP8_E4M3FN, 0xFE, -448.0},
        {KVFP8_E4M3FN, 0x01, 0x1p-9}, {KVFP8_E4M3FN, 0x08, 0x1p-6},  {KVFP8_E4M3FN, 0x07, 7 * 0x1p-9},
        {KVFP8_E5M2, 0x3C, 1.0},      {KVFP8_E5M2, 0x7B, 57344.0},   {KVFP8_E5M2, 0x01, 0x1p-16},
        {KVFP8_E5M2, 0x04, 0x1p-14},  {KVFP8_E4M3FNUZ, 0x40, 1.0},   {KVFP8_E4M3FNUZ, 0x7F, 240.0},
        {KVFP8_E4M3FNUZ, 0x01, 0x1p-10}, {KVFP8_E5M2FNUZ, 0x40, 1.0}, {KVFP8_E5M2FNUZ, 0x7F, 57344.0},
        {KVFP8_E5M2FNUZ, 0x01, 0x1p-17}, {KVFP8_E4M3FNUZ, 0xC0, -1.0},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        float got = kvfp8_fp8_decode(v[i].f, v[i].code);
        if ((double)got != v[i].value)
            fail_msg("decode %s 0x%02x: observed %a expected %a", kvfp8_format_name(v[i].f),
                     v[i].code, (double)got, v[i].value);
    }
    assert_true(isinf(kvfp8_fp8_decode(KVFP8_E5M2, 0x7C)) && kvfp8_fp8_decode(KVFP8_E5M2, 0xFC) < 0);
    assert_true(isnan(kvfp8_fp8_decode(KVFP8_E5M2, 0x7D)) && isnan(kvfp8_fp8_decode(KVFP8_E5M2, 0xFF)));
    assert_true(isnan(kvfp8_fp8_decode(KVFP8_E4M3FNUZ, 0x80)) && isnan(kvfp8_fp8_decode(KVFP8_E5M2FNUZ, 0x80)));
    assert_true(isnan(kvfp8_fp8_decode(KVFP8_E4M3FN, 0x7F)) && isnan(kvfp8_fp8_decode(KVFP8_E4M3FN, 0xFF)));
    /* E4M3FNUZ values are half the E4M3FN value of the same code (the FNUZ/FN mix-up
     * of vLLM #45562 is exactly this factor of two). */
    for (int c = 1; c < 0x7F; c++)
        assert_true(kvfp8_fp8_decode(KVFP8_E4M3FNUZ, (uint8_t)c) * 2 == kvfp8_fp8_decode(KVFP8_E4M3FN, (uint8_t)c));
}

/* Every non-NaN code survives encode(decode(code)) under every defined rules table. */
static void test_round_trip_all_codes(void **state) {
    (void)state;
    for (int f = 0; f < KVFP8_FORMAT_COUNT; f++)
        for (int m = 0; m < KVFP8_MODE_COUNT; m++)
            for (int p = 0; p < KVFP8_PROFILE_COUNT; p++) {
                kvfp8_fp8_rules r;
                if (kvfp8_fp8_rules_get((kvfp8_format)f, (kvfp8_mode)m, (kvfp8_profile)p, &r) != KVFP8_OK)
                    continue;
                for (int c = 0; c < 256; c++) {
                    if (kvfp8_fp8_is_nan(r.format, (uint8_t)c))
                        continue;
                    float v = kvfp8_fp8_decode(r.format, (uint8_t)c);
                    uint8_t back = kvfp8_fp8_encode_f32_ref(&r, v);
                    uint8_t want = (uint8_t)c;
                    if (kvfp8_fp8_is_inf(r.format, (uint8_t)c))
                        want = r.inf_code[c >> 7];
                    if (back != want)
                        fail_msg("%s %s %s: code 0x%02x -> %a -> 0x%02x", kvfp8_format_name(r.format),
                                 kvfp8_mode_name(r.mode), kvfp8_profile_name(r.profile), c, (double)v, back);
                }
            }
}

/* ---- which combinations exist ----------------------------------------------------- */

static void test_defined_combinations(void **state) {
    (void)state;
    /* expected[profile][format][mode]: 1 defined, 0 an error */
    static const int expected[KVFP8_PROFILE_COUNT][KVFP8_FORMAT_COUNT][KVFP8_MODE_COUNT] = {
        [KVFP8_PROFILE_OCP] = {{1, 1}, {1, 1}, {0, 0}, {0, 0}},
        [KVFP8_PROFILE_NVIDIA] = {{1, 1}, {1, 1}, {0, 0}, {0, 0}},
        [KVFP8_PROFILE_TORCH] = {{0, 1}, {0, 1}, {0, 1}, {0, 1}},
        [KVFP8_PROFILE_MLDTYPES] = {{0, 1}, {0, 1}, {0, 1}, {0, 1}},
        [KVFP8_PROFILE_HIP] = {{1, 1}, {1, 1}, {1, 1}, {1, 1}},
        [KVFP8_PROFILE_HIP_62] = {{0, 0}, {0, 0}, {1, 1}, {1, 1}},
        [KVFP8_PROFILE_HIP_NEXT] = {{1, 1}, {1, 1}, {1, 1}, {1, 1}},
        [KVFP8_PROFILE_TORCH_CUDA] = {{0, 1}, {0, 1}, {0, 1}, {0, 1}},
    };
    for (int p = 0; p < KVFP8_PROFILE_COUNT; p++)
        for (int f = 0; f < KVFP8_FORMAT_COUNT; f++)
            for (int m = 0; m < KVFP8_MODE_COUNT; m++) {
                kvfp8_fp8_rules r;
                kvfp8_status s = kvfp8_fp8_rules_get((kvfp8_format)f, (kvfp8_mode)m, (kvfp8_profile)p, &r);
                assert_int_equal(s == KVFP8_OK, expected[p][f][m]);
                if (s != KVFP8_OK) {
                    assert_int_equal(s, KVFP8_ERR_UNSUPPORTED);
                    assert_true(strlen(kvfp8_last_error()) > 10);
                }
            }
    kvfp8_fp8_rules r;
    assert_int_equal(kvfp8_fp8_rules_get((kvfp8_format)9, KVFP8_SAT, KVFP8_PROFILE_OCP, &r), KVFP8_ERR_INVALID);
    kvfp8_format f;
    assert_int_equal(kvfp8_format_parse("e4m3", &f), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_format_parse("e4m3fnuz", &f), KVFP8_OK);
    assert_int_equal(f, KVFP8_E4M3FNUZ);
}

/* ---- boundary tables -------------------------------------------------------------- */

/* Hand-written from docs/fp8.md: per (profile, format, mode) what NaN (+/-), Inf
 * (+/-) and a finite overflow (+/-) give, and what -0 gives. */
typedef struct {
    kvfp8_profile p;
    kvfp8_format f;
    kvfp8_mode m;
    uint8_t nan_pos, nan_neg, inf_pos, inf_neg, ovf_pos, ovf_neg, neg_zero;
} edge_row;

static const edge_row edges[] = {
    {KVFP8_PROFILE_OCP, KVFP8_E4M3FN, KVFP8_SAT, 0x7F, 0xFF, 0x7E, 0xFE, 0x7E, 0xFE, 0x80},
    {KVFP8_PROFILE_OCP, KVFP8_E4M3FN, KVFP8_NONSAT, 0x7F, 0xFF, 0x7F, 0xFF, 0x7F, 0xFF, 0x80},
    {KVFP8_PROFILE_OCP, KVFP8_E5M2, KVFP8_SAT, 0x7E, 0xFE, 0x7B, 0xFB, 0x7B, 0xFB, 0x80},
    {KVFP8_PROFILE_OCP, KVFP8_E5M2, KVFP8_NONSAT, 0x7E, 0xFE, 0x7C, 0xFC, 0x7C, 0xFC, 0x80},
    {KVFP8_PROFILE_NVIDIA, KVFP8_E4M3FN, KVFP8_SAT, 0x7F, 0x7F, 0x7E, 0xFE, 0x7E, 0xFE, 0x80},
    {KVFP8_PROFILE_NVIDIA, KVFP8_E4M3FN, KVFP8_NONSAT, 0x7F, 0x7F, 0x7F, 0xFF, 0x7F, 0xFF, 0x80},
    {KVFP8_PROFILE_NVIDIA, KVFP8_E5M2, KVFP8_SAT, 0x7F, 0x7F, 0x7B, 0xFB, 0x7B, 0xFB, 0x80},
    {KVFP8_PROFILE_NVIDIA, KVFP8_E5M2, KVFP8_NONSAT, 0x7F, 0x7F, 0x7C, 0xFC, 0x7C, 0xFC, 0x80},
    {KVFP8_PROFILE_TORCH, KVFP8_E4M3FN, KVFP8_NONSAT, 0x7F, 0xFF, 0x7F, 0xFF, 0x7F, 0xFF, 0x80},
    {KVFP8_PROFILE_TORCH, KVFP8_E5M2, KVFP8_NONSAT, 0x7F, 0xFF, 0x7C, 0xFC, 0x7C, 0xFC, 0x80},
    {KVFP8_PROFILE_TORCH, KVFP8_E4M3FNUZ, KVFP8_NONSAT, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
    {KVFP8_PROFILE_TORCH, KVFP8_E5M2FNUZ, KVFP8_NONSAT, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
    /* torch-cuda: as torch for float32 inputs (measured on an H200 over all 2^32) */
    {KVFP8_PROFILE_TORCH_CUDA, KVFP8_E4M3FN, KVFP8_NONSAT, 0x7F, 0xFF, 0x7F, 0xFF, 0x7F, 0xFF, 0x80},
    {KVFP8_PROFILE_TORCH_CUDA, KVFP8_E5M2, KVFP8_NONSAT, 0x7F, 0xFF, 0x7C, 0xFC, 0x7C, 0xFC, 0x80},
    {KVFP8_PROFILE_TORCH_CUDA, KVFP8_E4M3FNUZ, KVFP8_NONSAT, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
    {KVFP8_PROFILE_TORCH_CUDA, KVFP8_E5M2FNUZ, KVFP8_NONSAT, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
    {KVFP8_PROFILE_MLDTYPES, KVFP8_E4M3FN, KVFP8_NONSAT, 0x7F, 0xFF, 0x7F, 0xFF, 0x7F, 0xFF, 0x80},
    {KVFP8_PROFILE_MLDTYPES, KVFP8_E5M2, KVFP8_NONSAT, 0x7E, 0xFE, 0x7C, 0xFC, 0x7C, 0xFC, 0x80},
    {KVFP8_PROFILE_MLDTYPES, KVFP8_E4M3FNUZ, KVFP8_NONSAT, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
    {KVFP8_PROFILE_MLDTYPES, KVFP8_E5M2FNUZ, KVFP8_NONSAT, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
#include "fp8_hip_edges.inc"
};

/* Finite boundary points per format.  kind: 0 = the code given; 1 = overflow;
 * 2 = inside (max, cut-over]: max everywhere except where overflow is tested
 * before rounding (HIP), which overflows; 3 = rounds to zero. */
typedef struct {
    kvfp8_format f;
    double x;
    int kind;
    uint8_t code;
    const char *why;
} point_row;

static const point_row points[] = {
    {KVFP8_E4M3FN, 448.0, 0, 0x7E, "max"},
    {KVFP8_E4M3FN, 449.0, 2, 0, "just above max rounds back to max"},
    {KVFP8_E4M3FN, 464.0, 2, 0, "cut-over tie 448|480 goes to even 448"},
    {KVFP8_E4M3FN, 0x1.d00002p+8, 1, 0, "just above 464 overflows"},
    {KVFP8_E4M3FN, 480.0, 1, 0, "virtual next value"},
    {KVFP8_E4M3FN, 1e30, 1, 0, "far overflow"},
    {KVFP8_E4M3FN, FLT_MAX, 1, 0, "FLT_MAX"},
    {KVFP8_E4M3FN, 1.0, 0, 0x38, "one"},
    {KVFP8_E4M3FN, 1.0625, 0, 0x38, "tie 1|1.125 to even"},
    {KVFP8_E4M3FN, 0x1.100002p+0, 0, 0x39, "just above the tie"},
    {KVFP8_E4M3FN, 1.1875, 0, 0x3A, "tie 1.125|1.25 to even"},
    {KVFP8_E4M3FN, 0x1.2ffffep+0, 0, 0x39, "just below the tie"},
    {KVFP8_E4M3FN, 0x1p-6, 0, 0x08, "min normal"},
    {KVFP8_E4M3FN, 7.5 * 0x1p-9, 0, 0x08, "tie largest subnormal|min normal to even"},
    {KVFP8_E4M3FN, 0x1p-9, 0, 0x01, "min subnormal"},
    {KVFP8_E4M3FN, 1.5 * 0x1p-9, 0, 0x02, "tie 1|2 subnormal to even"},
    {KVFP8_E4M3FN, 2.5 * 0x1p-9, 0, 0x02, "tie 2|3 subnormal to even"},
    {KVFP8_E4M3FN, 0x1p-10, 3, 0, "half min subnormal ties to zero"},
    {KVFP8_E4M3FN, 0x1.000002p-10, 0, 0x01, "just above half min subnormal"},
    {KVFP8_E4M3FN, 0x1p-149, 3, 0, "smallest float32 subnormal"},
    {KVFP8_E4M3FN, 0x1.d19e5cp-74, 3, 0, "tiny (HIP's wrapped shift gives 0x01)"},
    {KVFP8_E4M3FN, -448.0, 0, 0xFE, "-max"},
    {KVFP8_E4M3FN, -464.0, 2, 0, "-cut-over"},
    {KVFP8_E4M3FN, -465.0, 1, 0, "-overflow"},
    {KVFP8_E4M3FN, -0x1p-9, 0, 0x81, "-min subnormal"},
    {KVFP8_E4M3FN, -0x1p-12, 3, 0, "negative underflow"},
    {KVFP8_E5M2, 57344.0, 0, 0x7B, "max"},
    {KVFP8_E5M2, 60000.0, 2, 0, "inside (max, cut-over)"},
    {KVFP8_E5M2, 0x1.dffffep+15, 2, 0, "just below the cut-over"},
    {KVFP8_E5M2, 61440.0, 1, 0, "cut-over tie 57344|65536 goes to even 65536: overflow"},
    {KVFP8_E5M2, 65536.0, 1, 0, "virtual next"},
    {KVFP8_E5M2, 1.0, 0, 0x3C, "one"},
    {KVFP8_E5M2, 1.125, 0, 0x3C, "tie 1|1.25 to even"},
    {KVFP8_E5M2, 1.375, 0, 0x3E, "tie 1.25|1.5 to even"},
    {KVFP8_E5M2, 0x1p-14, 0, 0x04, "min normal"},
    {KVFP8_E5M2, 0x1p-16, 0, 0x01, "min subnormal"},
    {KVFP8_E5M2, 1.5 * 0x1p-16, 0, 0x02, "tie subnormal to even"},
    {KVFP8_E5M2, 0x1p-17, 3, 0, "half min subnormal ties to zero"},
    {KVFP8_E5M2, 0x1.000002p-17, 0, 0x01, "just above half min subnormal"},
    {KVFP8_E5M2, -57344.0, 0, 0xFB, "-max"},
    {KVFP8_E5M2, -61440.0, 1, 0, "-cut-over"},
    {KVFP8_E5M2, -0x1p-18, 3, 0, "negative underflow"},
    {KVFP8_E4M3FNUZ, 240.0, 0, 0x7F, "max"},
    {KVFP8_E4M3FNUZ, 241.0, 2, 0, "inside (max, cut-over)"},
    {KVFP8_E4M3FNUZ, 0x1.effffep+7, 2, 0, "just below the cut-over"},
    {KVFP8_E4M3FNUZ, 248.0, 1, 0, "cut-over tie 240|256 goes to even 256: overflow"},
    {KVFP8_E4M3FNUZ, 1.0, 0, 0x40, "one (bias 8)"},
    {KVFP8_E4M3FNUZ, 0x1p-7, 0, 0x08, "min normal"},
    {KVFP8_E4M3FNUZ, 0x1p-10, 0, 0x01, "min subnormal"},
    {KVFP8_E4M3FNUZ, 0x1p-11, 3, 0, "half min subnormal ties to zero"},
    {KVFP8_E4M3FNUZ, -1.0, 0, 0xC0, "minus one"},
    {KVFP8_E4M3FNUZ, -0x1p-12, 3, 0, "negative underflow is +0"},
    {KVFP8_E4M3FNUZ, -240.0, 0, 0xFF, "-max"},
    {KVFP8_E5M2FNUZ, 57344.0, 0, 0x7F, "max"},
    {KVFP8_E5M2FNUZ, 60000.0, 2, 0, "inside (max, cut-over)"},
    {KVFP8_E5M2FNUZ, 61440.0, 1, 0, "cut-over: overflow"},
    {KVFP8_E5M2FNUZ, 1.0, 0, 0x40, "one (bias 16)"},
    {KVFP8_E5M2FNUZ, 0x1p-15, 0, 0x04, "min normal"},
    {KVFP8_E5M2FNUZ, 0x1p-17, 0, 0x01, "min subnormal"},
    {KVFP8_E5M2FNUZ, 0x1p-18, 3, 0, "half min subnormal ties to zero"},
    {KVFP8_E5M2FNUZ, -0x1p-19, 3, 0, "negative underflow is +0"},
};

static void expect_code(const edge_row *e, const char *what, double x, uint8_t want) {
    kvfp8_fp8_rules r = rules(e->f, e->m, e->p);
    uint8_t got = kvfp8_fp8_encode_f32_ref(&r, (float)x);
    if (got != want)
        fail_msg("encode f32 %a (%s) fmt=%s mode=%s profile=%s: observed 0x%02x expected 0x%02x", x,
                 what, kvfp8_format_name(e->f), kvfp8_mode_name(e->m), kvfp8_profile_name(e->p), got, want);
    /* the oracle must agree with the same hand-written expectation */
    uint8_t oracle = kvfp8_test_oracle_encode(&r, (double)(float)x);
    if (oracle != want)
        fail_msg("oracle disagrees with the table at %a (%s): 0x%02x vs 0x%02x", x, what, oracle, want);
}

static void test_boundary_tables(void **state) {
    (void)state;
    int checked = 0, combos = 0;
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        const edge_row *e = &edges[i];
        combos++;
        const int before = e->p == KVFP8_PROFILE_HIP || e->p == KVFP8_PROFILE_HIP_NEXT;
        expect_code(e, "+NaN", (double)kvfp8_test_f32(0x7FC00000u), e->nan_pos);
        expect_code(e, "-NaN", (double)kvfp8_test_f32(0xFFC00000u), e->nan_neg);
        expect_code(e, "+Inf", INFINITY, e->inf_pos);
        expect_code(e, "-Inf", -INFINITY, e->inf_neg);
        expect_code(e, "+0", 0.0, 0x00);
        expect_code(e, "-0", -0.0, e->neg_zero);
        checked += 6;
        /* the NaN payload and signalling bit do not matter */
        kvfp8_fp8_rules r = rules(e->f, e->m, e->p);
        assert_int_equal(kvfp8_fp8_encode_f32_ref(&r, kvfp8_test_f32(0x7F800001u)), e->nan_pos);
        assert_int_equal(kvfp8_fp8_encode_f32_ref(&r, kvfp8_test_f32(0xFFFFFFFFu)), e->nan_neg);
        for (size_t j = 0; j < sizeof points / sizeof points[0]; j++) {
            const point_row *pt = &points[j];
            if (pt->f != e->f)
                continue;
            const int negative = signbit(pt->x) ? 1 : 0;
            const uint8_t max_code = (uint8_t)((e->f == KVFP8_E4M3FN ? 0x7E : e->f == KVFP8_E5M2 ? 0x7B : 0x7F) |
                                               (negative ? 0x80 : 0));
            const uint8_t ovf = negative ? e->ovf_neg : e->ovf_pos;
            uint8_t want;
            switch (pt->kind) {
            case 0: want = pt->code; break;
            case 1: want = ovf; break;
            case 2: want = before ? ovf : max_code; break;
            default: want = negative ? e->neg_zero : 0x00; break;
            }
            expect_code(e, pt->why, pt->x, want);
            checked++;
        }
    }
    printf("boundary tables: %d checks over %d format x mode x profile combinations\n", checked, combos);
    assert_int_equal(combos, 40); /* every defined combination has a row */
}

/* The public sanity values for E4M3FN SAT under the nvidia profile. */
/* Measured on an H200 (bench/results/fp8-gpu-2026-11-30.md): torch on CUDA turns a
 * negative half NaN into 0x7F, torch on the CPU into 0xFF. */
static void test_torch_cuda_half_nan(void **state) {
    (void)state;
    kvfp8_fp8_rules cpu = rules(KVFP8_E4M3FN, KVFP8_NONSAT, KVFP8_PROFILE_TORCH);
    kvfp8_fp8_rules cuda = rules(KVFP8_E4M3FN, KVFP8_NONSAT, KVFP8_PROFILE_TORCH_CUDA);
    assert_int_equal(kvfp8_fp8_encode_f16_ref(&cpu, 0xFC01), 0xFF);
    assert_int_equal(kvfp8_fp8_encode_f16_ref(&cuda, 0xFC01), 0x7F);
    assert_int_equal(kvfp8_fp8_encode_f16_ref(&cuda, 0xFFFF), 0x7F);
    assert_int_equal(kvfp8_fp8_encode_bf16_ref(&cuda, 0xFFC0), 0xFF); /* bf16 keeps the sign */
    assert_int_equal(kvfp8_fp8_encode_f32_ref(&cuda, kvfp8_test_f32(0xFFC00000u)), 0xFF);
    kvfp8_fp8_rules e5 = rules(KVFP8_E5M2, KVFP8_NONSAT, KVFP8_PROFILE_TORCH_CUDA);
    assert_int_equal(kvfp8_fp8_encode_f16_ref(&e5, 0xFE00), 0x7F);
}

static void test_published_sanity_values(void **state) {
    (void)state;
    kvfp8_fp8_rules r = rules(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA);
    static const struct {
        uint32_t bits;
        uint8_t code;
    } v[] = {
        {0x43E00000u, 0x7E}, /* 448 */ {0x43E80000u, 0x7E}, /* 464 */
        {0x43E88000u, 0x7E}, /* 465 */ {0xF149F2CAu, 0xFE}, /* -1e30 */
        {0x7F800000u, 0x7E}, /* +Inf */ {0x7FC00000u, 0x7F}, /* NaN */
        {0xFFC00000u, 0x7F}, /* -NaN on sm_90 */ {0x3B000000u, 0x01}, /* 2^-9 */
        {0x3A800000u, 0x00}, /* 2^-10 */ {0x3AC00000u, 0x01}, /* 1.5*2^-10 */
        {0x3F800000u, 0x38}, /* 1.0 */ {0x80000000u, 0x80}, /* -0.0 */
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        assert_int_equal(kvfp8_fp8_encode_f32_ref(&r, kvfp8_test_f32(v[i].bits)), v[i].code);
}

/* ---- exhaustive 16-bit sources and sampled float32 against the oracle --------- */

static int for_each_rules(kvfp8_fp8_rules *all) {
    int n = 0;
    for (int f = 0; f < KVFP8_FORMAT_COUNT; f++)
        for (int m = 0; m < KVFP8_MODE_COUNT; m++)
            for (int p = 0; p < KVFP8_PROFILE_COUNT; p++)
                if (kvfp8_fp8_rules_get((kvfp8_format)f, (kvfp8_mode)m, (kvfp8_profile)p, &all[n]) == KVFP8_OK)
                    n++;
    return n;
}

static void test_all_f16_inputs_every_profile(void **state) {
    (void)state;
    kvfp8_fp8_rules all[KVFP8_FORMAT_COUNT * KVFP8_MODE_COUNT * KVFP8_PROFILE_COUNT];
    int n = for_each_rules(all);
    for (uint32_t h = 0; h < 0x10000; h++) {
        float widened = kvfp8_test_f16_widen((uint16_t)h);
        uint32_t a = kvfp8_test_bits(kvfp8_f16_to_f32((uint16_t)h)), b = kvfp8_test_bits(widened);
        if (!(a == b || (isnan(widened) && isnan(kvfp8_test_f32(a)) && (a >> 31) == (b >> 31))))
            fail_msg("f16 0x%04x widens to 0x%08x, compiler says 0x%08x", h, a, b);
        for (int i = 0; i < n; i++) {
            uint8_t got = kvfp8_fp8_encode_f16_ref(&all[i], (uint16_t)h);
            uint8_t want = kvfp8_test_oracle_encode(&all[i], (double)widened);
            if (all[i].f16_nan_unsigned && isnan(widened))
                want = all[i].nan_code[0]; /* torch-cuda: the half NaN's sign is lost */
            if (got != want)
                fail_msg("encode f16 0x%04x (%a) fmt=%s mode=%s profile=%s: observed 0x%02x expected 0x%02x", h,
                         (double)widened, kvfp8_format_name(all[i].format), kvfp8_mode_name(all[i].mode),
                         kvfp8_profile_name(all[i].profile), got, want);
        }
    }
    printf("all 65536 f16 inputs x %d rules tables agree with the oracle\n", n);
}

static void test_all_bf16_inputs_every_profile(void **state) {
    (void)state;
    kvfp8_fp8_rules all[KVFP8_FORMAT_COUNT * KVFP8_MODE_COUNT * KVFP8_PROFILE_COUNT];
    int n = for_each_rules(all);
    for (uint32_t b = 0; b < 0x10000; b++) {
        float x = kvfp8_test_f32(b << 16);
        for (int i = 0; i < n; i++) {
            uint8_t got = kvfp8_fp8_encode_bf16_ref(&all[i], (uint16_t)b);
            uint8_t want = kvfp8_test_oracle_encode(&all[i], (double)x);
            if (got != want)
                fail_msg("encode bf16 0x%04x (%a) fmt=%s mode=%s profile=%s: observed 0x%02x expected 0x%02x", b,
                         (double)x, kvfp8_format_name(all[i].format), kvfp8_mode_name(all[i].mode),
                         kvfp8_profile_name(all[i].profile), got, want);
        }
    }
    printf("all 65536 bf16 inputs x %d rules tables agree with the oracle\n", n);
}

static void test_random_f32_against_oracle(void **state) {
    (void)state;
    kvfp8_fp8_rules all[KVFP8_FORMAT_COUNT * KVFP8_MODE_COUNT * KVFP8_PROFILE_COUNT];
    int n = for_each_rules(all);
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    const int cases = 200000;
    for (int k = 0; k < cases; k++) {
        uint32_t bits = (uint32_t)kvfp8_test_rand(&seed);
        /* half the cases land in the FP8 range, where the rounding happens */
        if (k & 1)
            bits = (bits & 0x807FFFFFu) | ((uint32_t)(100 + (bits >> 23) % 48) << 23);
        float x = kvfp8_test_f32(bits);
        for (int i = 0; i < n; i++) {
            uint8_t got = kvfp8_fp8_encode_f32_ref(&all[i], x);
            uint8_t want = kvfp8_test_oracle_encode(&all[i], (double)x);
            if (got != want)
                fail_msg("encode f32 0x%08x (%a) fmt=%s mode=%s profile=%s: observed 0x%02x expected 0x%02x", bits,
                         (double)x, kvfp8_format_name(all[i].format), kvfp8_mode_name(all[i].mode),
                         kvfp8_profile_name(all[i].profile), got, want);
        }
    }
    printf("%d random float32 inputs x %d rules tables agree with the oracle\n", cases, n);
}

/* ---- scaled conversion (vLLM's cache write) and dequantization ----------------- */

static void test_scaled_conversion(void **state) {
    (void)state;
    static const float scales[] = {1.0f, 0.5f, 3.0f, 1.0f / 448.0f, 1e-3f, 17.25f, 0x1p-140f, 0.1f};
    kvfp8_fp8_rules all[KVFP8_FORMAT_COUNT * KVFP8_MODE_COUNT * KVFP8_PROFILE_COUNT];
    int n = for_each_rules(all);
    uint64_t seed = 42;
    for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++) {
        volatile float scale = scales[s]; /* volatile: a real division, never a reciprocal */
        for (int k = 0; k < 20000; k++) {
            uint32_t bits = (uint32_t)kvfp8_test_rand(&seed);
            float x = kvfp8_test_f32(bits);
            uint16_t h = (uint16_t)bits, b = (uint16_t)(bits >> 16);
            for (int i = 0; i < n; i++) {
                const kvfp8_fp8_rules *r = &all[i];
                uint8_t want32 = kvfp8_test_oracle_encode(r, (double)(x / scale));
                assert_int_equal(kvfp8_fp8_encode_scaled_ref(r, KVFP8_SRC_F32, bits, scale), want32);
                float hx = kvfp8_test_f16_widen(h);
                double hq;
                if (r->half_scale_in_half) {
                    /* vLLM on ROCm: a _Float16 divided by a float scale, stored back to half */
                    _Float16 q = (_Float16)(hx / scale);
                    hq = (double)q;
                } else {
                    hq = (double)(hx / scale);
                }
                uint8_t got16 = kvfp8_fp8_encode_scaled_ref(r, KVFP8_SRC_F16, h, scale);
                uint8_t want16 = kvfp8_test_oracle_encode(r, hq);
                if (r->f16_nan_unsigned && isnan(hx))
                    want16 = r->nan_code[0];
                if (got16 != want16)
                    fail_msg("scaled f16 0x%04x / %a profile=%s fmt=%s: observed 0x%02x expected 0x%02x", h,
                             (double)scale, kvfp8_profile_name(r->profile), kvfp8_format_name(r->format), got16, want16);
                uint8_t wantb = kvfp8_test_oracle_encode(r, (double)(kvfp8_test_f32((uint32_t)b << 16) / scale));
                assert_int_equal(kvfp8_fp8_encode_scaled_ref(r, KVFP8_SRC_BF16, b, scale), wantb);
            }
        }
    }
    /* a division, not a multiplication by the reciprocal: 3 / 3.0 vs 3 * (1/3.0) */
    kvfp8_fp8_rules r = rules(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA);
    assert_int_equal(kvfp8_fp8_encode_scaled_ref(&r, KVFP8_SRC_F32, 0x40400000u, 3.0f), 0x38);
}

static void test_dequant_and_scale_checks(void **state) {
    (void)state;
    for (int f = 0; f < KVFP8_FORMAT_COUNT; f++)
        for (int c = 0; c < 256; c++) {
            volatile float s = 0.0123f;
            float want = kvfp8_fp8_decode((kvfp8_format)f, (uint8_t)c) * s;
            float got = kvfp8_fp8_dequant((kvfp8_format)f, (uint8_t)c, 0.0123f);
            assert_true(kvfp8_test_bits(got) == kvfp8_test_bits(want) || (isnan(got) && isnan(want)));
        }
    assert_int_equal(kvfp8_fp8_check_scale(1.0f), KVFP8_OK);
    assert_int_equal(kvfp8_fp8_check_scale(0x1p-149f), KVFP8_OK);
    assert_int_equal(kvfp8_fp8_check_scale(0.0f), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_fp8_check_scale(-1.0f), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_fp8_check_scale(NAN), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_fp8_check_scale(INFINITY), KVFP8_ERR_INVALID);
}

static void test_16bit_helpers(void **state) {
    (void)state;
    /* f32 -> f16 and -> bf16 against the compiler's own conversions, every f32 in a
     * stride plus the edges */
    uint64_t seed = 7;
    for (int k = 0; k < 400000; k++) {
        uint32_t bits = (uint32_t)kvfp8_test_rand(&seed);
        if (k < 8)
            bits = (uint32_t[]){0x477FF000u, 0x477FEFFFu, 0x33000000u, 0x33000001u, 0x7F7FFFFFu, 0x7F7F8000u,
                                0x80000000u, 0x38800000u}[k];
        float x = kvfp8_test_f32(bits);
        _Float16 h = (_Float16)x;
        uint16_t hb;
        memcpy(&hb, &h, 2);
        uint16_t got = kvfp8_f32_to_f16(x);
        if (isnan(x))
            assert_true((got & 0x7C00) == 0x7C00 && (got & 0x3FF) && (got >> 15) == (bits >> 31));
        else if (got != hb)
            fail_msg("f32 0x%08x -> f16: observed 0x%04x expected 0x%04x", bits, got, hb);
        /* bf16: nearest even of the top half, by an integer argument */
        uint16_t bf = kvfp8_f32_to_bf16(x);
        if (!isnan(x)) {
            uint32_t lo = bits & 0xFFFF0000u, hi = lo + 0x10000u;
            double lo_v = fabs((double)kvfp8_test_f32(lo));
            double hi_v = (hi & 0x7FFFFFFFu) == 0x7F800000u ? 0x1p128 : fabs((double)kvfp8_test_f32(hi));
            double dlo = fabs(fabs((double)x) - lo_v), dhi = fabs(hi_v - fabs((double)x));
            uint32_t want = dlo < dhi ? lo : dhi < dlo ? hi : ((lo >> 16) & 1) ? hi : lo;
            if ((uint32_t)bf << 16 != want)
                fail_msg("f32 0x%08x -> bf16: observed 0x%04x expected 0x%04x", bits, bf, want >> 16);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_format_facts),
        cmocka_unit_test(test_decode_published_values),
        cmocka_unit_test(test_round_trip_all_codes),
        cmocka_unit_test(test_defined_combinations),
        cmocka_unit_test(test_boundary_tables),
        cmocka_unit_test(test_published_sanity_values),
        cmocka_unit_test(test_torch_cuda_half_nan),
        cmocka_unit_test(test_all_f16_inputs_every_profile),
        cmocka_unit_test(test_all_bf16_inputs_every_profile),
        cmocka_unit_test(test_random_f32_against_oracle),
        cmocka_unit_test(test_scaled_conversion),
        cmocka_unit_test(test_dequant_and_scale_checks),
        cmocka_unit_test(test_16bit_helpers),
    };
    return cmocka_run_group_tests_name("fp8_reference", tests, NULL, NULL);
}
