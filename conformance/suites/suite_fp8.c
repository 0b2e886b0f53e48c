/* EXACT: FP8 codes and dequantized values, bit for bit against the reference.
 *
 * fp8_decode.<format>: all 256 codes at scales that include 1, inexact ones, and one
 * small enough that decode * scale is a float32 subnormal (a kernel that flushes
 * denormals fails it), in one long call and in an odd-length unaligned one.
 *
 * fp8_encode.<format>_<source>: for every rules table of the format that the backend
 * claims (each profile and mode is data in the table, so a port that reads the table
 * gets them all), every f16 or bf16 input, or for f32 a sample: the table's
 * boundaries (every code, the midpoints between neighbours, one float ulp either side,
 * the overflow cut-over, the underflow ties, infinities, NaNs of both signs and both
 * kinds) plus random bit patterns and random values near the grid; at scale 1 and at
 * scales whose division rounds.  A profile that leaves the NaN code open
 * (any_nan_conforms) accepts any NaN code. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conform_suite.h"

static const float decode_scales[] = {1.0f, 0.5f, 3.0f, 0.0123f, 1.7e-37f};
static const float encode_scales[] = {1.0f, 0.37f, 7.5f};

static int any_table_of(kvfp8_format f, kvfp8_fp8_rules *r) {
    for (int i = 0; kvfp8_conform_rules_at(i, r); i++)
        if (r->format == f)
            return 1;
    return 0;
}

static void decode_format(kvfp8_format f) {
    kvfp8_backend *b = kvfp8_conform_backend();
    kvfp8_backend_query q;
    memset(&q, 0, sizeof q);
    q.op = KVFP8_OP_FP8_DECODE;
    assert_true(any_table_of(f, &q.fp8));
    if (!kvfp8_conform_claims(&q))
        kvfp8_conform_not_supported("the backend declines fp8_decode of %s: %s", kvfp8_format_name(f),
                                    kvfp8_last_error());
    enum { REPS = 3, N = 256 * REPS };
    uint8_t codes[N];
    float out[N];
    for (int i = 0; i < N; i++)
        codes[i] = (uint8_t)(i * 7 + i / 256); /* every code, in a scrambled order */
    char what[120];
    for (size_t s = 0; s < sizeof decode_scales / sizeof decode_scales[0]; s++) {
        const float scale = decode_scales[s];
        /* a long call, then an odd-length one from an unaligned start (vector tails) */
        const struct {
            size_t offset, n;
        } calls[] = {{0, N}, {5, 37}};
        for (size_t c = 0; c < 2; c++) {
            for (size_t i = 0; i < calls[c].n; i++)
                out[i] = -12345.0f;
            snprintf(what, sizeof what, "fp8_decode %s n=%zu scale %a", kvfp8_format_name(f), calls[c].n,
                     (double)scale);
            kvfp8_conform_expect_ok(b->ops->fp8_decode(b->state, f, codes + calls[c].offset, out, calls[c].n, scale),
                                    what);
            for (size_t i = 0; i < calls[c].n; i++) {
                const uint8_t code = codes[calls[c].offset + i];
                const float want = kvfp8_fp8_dequant(f, code, scale);
                if (!kvfp8_conform_same_float(out[i], want))
                    kvfp8_conform_failure("fp8_decode %s code 0x%02x * scale %a (%g) => %a, expected %a",
                                          kvfp8_format_name(f), code, (double)scale, (double)scale, (double)out[i],
                                          (double)want);
            }
        }
    }
    kvfp8_conform_detail("256 codes x %zu scales, long and unaligned odd-length calls",
                         sizeof decode_scales / sizeof decode_scales[0]);
    kvfp8_conform_check_failures();
}

/* ---- encode inputs ------------------------------------------------------------------ */

typedef struct {
    float *v;
    size_t n, cap;
} fvec;

static void push(fvec *a, float x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 1024;
        a->v = realloc(a->v, sizeof(float) * a->cap);
        assert_non_null(a->v);
    }
    a->v[a->n++] = x;
}

static void push_around(fvec *a, float x) {
    push(a, x);
    push(a, nextafterf(x, INFINITY));
    push(a, nextafterf(x, -INFINITY));
}

/* The edges of one rules table, both signs. */
static void boundary_inputs(const kvfp8_fp8_rules *r, fvec *a) {
    float vals[128];
    int n = 0;
    for (int c = 0; c < 128; c++) {
        const float v = kvfp8_fp8_decode(r->format, (uint8_t)c);
        if (isfinite(v))
            vals[n++] = v; /* positive codes are in increasing order of value */
    }
    const size_t first = a->n;
    for (int i = 0; i < n; i++) {
        push_around(a, vals[i]);
        if (i + 1 < n)
            push_around(a, (vals[i] + vals[i + 1]) / 2); /* exact: few significant bits */
    }
    const float max = vals[n - 1], step = vals[n - 1] - vals[n - 2];
    push_around(a, max + step / 2); /* the overflow cut-over on the unbounded grid */
    push_around(a, max + step);
    push(a, 2 * max);
    push(a, 1e30f);
    push(a, FLT_MAX);
    push(a, INFINITY);
    const float tiny = vals[1]; /* the smallest subnormal */
    push_around(a, tiny / 2);   /* the tie between zero and the smallest subnormal */
    push(a, tiny / 4);
    push(a, FLT_MIN);
    push(a, 0x1p-149f);
    push(a, kvfp8_conform_f32(0x7FC00000u)); /* quiet NaN */
    push(a, kvfp8_conform_f32(0x7F800001u)); /* signalling NaN */
    push(a, kvfp8_conform_f32(0x7FFFFFFFu)); /* NaN with a full payload */
    const size_t last = a->n;
    for (size_t i = first; i < last; i++)
        push(a, kvfp8_conform_f32(kvfp8_conform_f32_bits(a->v[i]) ^ 0x80000000u));
}

static void random_inputs(const kvfp8_fp8_rules *r, fvec *a, uint64_t seed) {
    uint64_t s = seed;
    for (int i = 0; i < 16384; i++) /* any bit pattern */
        push(a, kvfp8_conform_f32((uint32_t)(kvfp8_conform_rand(&s) >> 32)));
    for (int i = 0; i < 16384; i++) { /* near the grid, across the whole range */
        const uint8_t code = (uint8_t)(kvfp8_conform_rand(&s) >> 56);
        float v = kvfp8_fp8_decode(r->format, code);
        if (!isfinite(v))
            v = r->max_value;
        const float wiggle = 1.0f + kvfp8_conform_frand(&s, 0.125f);
        push(a, ldexpf(v * wiggle, (int)(kvfp8_conform_rand(&s) >> 61) - 3));
    }
}

static const char *source_label(kvfp8_source src) { return kvfp8_source_name(src); }

static void encode_format(kvfp8_format f, kvfp8_source src) {
    kvfp8_backend *b = kvfp8_conform_backend();
    const size_t width = src == KVFP8_SRC_F32 ? 4 : 2;
    size_t n_in = 0;
    uint16_t *in16 = NULL;
    if (src != KVFP8_SRC_F32) { /* every 16-bit pattern */
        n_in = 65536;
        in16 = malloc(sizeof(uint16_t) * n_in);
        assert_non_null(in16);
        for (size_t i = 0; i < n_in; i++)
            in16[i] = (uint16_t)i;
    }
    char claimed[400] = "", declined[400] = "", label[64], what[160];
    int n_claimed = 0, n_declined = 0;
    size_t cases = 0;
    kvfp8_fp8_rules r;
    for (int t = 0; kvfp8_conform_rules_at(t, &r); t++) {
        if (r.format != f)
            continue;
        kvfp8_conform_rules_label(&r, label, sizeof label);
        kvfp8_backend_query q;
        memset(&q, 0, sizeof q);
        q.op = KVFP8_OP_FP8_ENCODE, q.fp8 = r, q.source = src;
        char *list = kvfp8_conform_claims(&q) ? claimed : declined;
        snprintf(list + strlen(list), 400 - strlen(list), "%s%s/%s", *list ? " " : "", kvfp8_mode_name(r.mode),
                 kvfp8_profile_name(r.profile));
        if (list == declined) {
            n_declined++;
            continue;
        }
        n_claimed++;
        fvec base = {0};
        if (src == KVFP8_SRC_F32) {
            boundary_inputs(&r, &base);
            random_inputs(&r, &base, 0x5EED0000u + (uint64_t)t);
        }
        for (size_t s = 0; s < sizeof encode_scales / sizeof encode_scales[0]; s++) {
            const float scale = encode_scales[s];
            const void *in = in16;
            float *scaled = NULL;
            size_t n = n_in;
            if (src == KVFP8_SRC_F32) { /* move the edges to where the division lands on them */
                n = base.n;
                scaled = malloc(sizeof(float) * n);
                assert_non_null(scaled);
                for (size_t i = 0; i < n; i++)
                    scaled[i] = isfinite(base.v[i]) ? base.v[i] * scale : base.v[i];
                in = scaled;
            }
            uint8_t *out = malloc(n);
            assert_non_null(out);
            memset(out, 0xA5, n);
            snprintf(what, sizeof what, "fp8_encode %s %s n=%zu scale %a", label, source_label(src), n, (double)scale);
            kvfp8_conform_expect_ok(b->ops->fp8_encode(b->state, &r, src, in, out, n, scale), what);
            /* and an odd-length call from an unaligned start: vector tails */
            uint8_t odd[61];
            const size_t odd_from = 3 + s;
            kvfp8_conform_expect_ok(
                b->ops->fp8_encode(b->state, &r, src, (const unsigned char *)in + odd_from * width, odd, 61, scale),
                what);
            for (size_t i = 0; i < n + 61; i++) {
                const size_t at = i < n ? i : odd_from + (i - n);
                const uint8_t got = i < n ? out[i] : odd[i - n];
                uint32_t bits;
                if (src == KVFP8_SRC_F32)
                    bits = kvfp8_conform_f32_bits(((const float *)in)[at]);
                else
                    bits = in16[at];
                const uint8_t want = kvfp8_fp8_encode_scaled_ref(&r, src, bits, scale);
                if (got == want || (r.any_nan_conforms && kvfp8_fp8_is_nan(f, want) && kvfp8_fp8_is_nan(f, got)))
                    continue;
                const double x = src == KVFP8_SRC_F32   ? (double)kvfp8_conform_f32(bits)
                                 : src == KVFP8_SRC_F16 ? (double)kvfp8_f16_to_f32((uint16_t)bits)
                                                        : (double)kvfp8_bf16_to_f32((uint16_t)bits);
                kvfp8_conform_failure("fp8_encode %s %s 0x%0*x (%a) / scale %a => 0x%02x, expected 0x%02x", label,
                                      source_label(src), (int)(2 * width), bits, x, (double)scale, got, want);
            }
            cases += n + 61;
            free(out);
            free(scaled);
        }
        free(base.v);
    }
    free(in16);
    if (!n_claimed)
        kvfp8_conform_not_supported("the backend declines every %s rules table for %s input", kvfp8_format_name(f),
                                    source_label(src));
    kvfp8_conform_detail("%zu conversions; %d tables checked (%s)%s%s%s", cases, n_claimed, claimed,
                         n_declined ? "; declined: " : "", declined, "");
    kvfp8_conform_metric("tables_checked", n_claimed);
    kvfp8_conform_metric("tables_declined", n_declined);
    kvfp8_conform_check_failures();
}

#define DECODE_TEST(fmt)                                                                                              \
    static void test_decode_##fmt(void **state) {                                                                     \
        (void)state;                                                                                                  \
        decode_format(KVFP8_##fmt);                                                                                   \
    }
DECODE_TEST(E4M3FN)
DECODE_TEST(E5M2)
DECODE_TEST(E4M3FNUZ)
DECODE_TEST(E5M2FNUZ)

#define ENCODE_TEST(fmt, src)                                                                                         \
    static void test_encode_##fmt##_##src(void **state) {                                                             \
        (void)state;                                                                                                  \
        encode_format(KVFP8_##fmt, KVFP8_SRC_##src);                                                                  \
    }
ENCODE_TEST(E4M3FN, F32)
ENCODE_TEST(E4M3FN, F16)
ENCODE_TEST(E4M3FN, BF16)
ENCODE_TEST(E5M2, F32)
ENCODE_TEST(E5M2, F16)
ENCODE_TEST(E5M2, BF16)
ENCODE_TEST(E4M3FNUZ, F32)
ENCODE_TEST(E4M3FNUZ, F16)
ENCODE_TEST(E4M3FNUZ, BF16)
ENCODE_TEST(E5M2FNUZ, F32)
ENCODE_TEST(E5M2FNUZ, F16)
ENCODE_TEST(E5M2FNUZ, BF16)

#define DEC(fmt, name) {"fp8_decode", name, "EXACT", test_decode_##fmt, "all 256 " name " codes x 5 scales vs kvfp8_fp8_dequant"}
#define ENC(fmt, src, name, what) {"fp8_encode", name, "EXACT", test_encode_##fmt##_##src, what}

const kvfp8_conform_test kvfp8_conform_suite_fp8[] = {
    DEC(E4M3FN, "e4m3fn"),
    DEC(E5M2, "e5m2"),
    DEC(E4M3FNUZ, "e4m3fnuz"),
    DEC(E5M2FNUZ, "e5m2fnuz"),
    ENC(E4M3FN, F32, "e4m3fn_f32", "claimed e4m3fn tables: f32 boundaries + 32768 random, 3 scales"),
    ENC(E4M3FN, F16, "e4m3fn_f16", "claimed e4m3fn tables: all 65536 f16 inputs, 3 scales"),
    ENC(E4M3FN, BF16, "e4m3fn_bf16", "claimed e4m3fn tables: all 65536 bf16 inputs, 3 scales"),
    ENC(E5M2, F32, "e5m2_f32", "claimed e5m2 tables: f32 boundaries + 32768 random, 3 scales"),
    ENC(E5M2, F16, "e5m2_f16", "claimed e5m2 tables: all 65536 f16 inputs, 3 scales"),
    ENC(E5M2, BF16, "e5m2_bf16", "claimed e5m2 tables: all 65536 bf16 inputs, 3 scales"),
    ENC(E4M3FNUZ, F32, "e4m3fnuz_f32", "claimed e4m3fnuz tables: f32 boundaries + 32768 random, 3 scales"),
    ENC(E4M3FNUZ, F16, "e4m3fnuz_f16", "claimed e4m3fnuz tables: all 65536 f16 inputs, 3 scales"),
    ENC(E4M3FNUZ, BF16, "e4m3fnuz_bf16", "claimed e4m3fnuz tables: all 65536 bf16 inputs, 3 scales"),
    ENC(E5M2FNUZ, F32, "e5m2fnuz_f32", "claimed e5m2fnuz tables: f32 boundaries + 32768 random, 3 scales"),
    ENC(E5M2FNUZ, F16, "e5m2fnuz_f16", "claimed e5m2fnuz tables: all 65536 f16 inputs, 3 scales"),
    ENC(E5M2FNUZ, BF16, "e5m2fnuz_bf16", "claimed e5m2fnuz tables: all 65536 bf16 inputs, 3 scales"),
};
const size_t kvfp8_conform_suite_fp8_count = sizeof kvfp8_conform_suite_fp8 / sizeof kvfp8_conform_suite_fp8[0];
