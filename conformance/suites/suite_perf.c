/* PERF, optional operation device_timing: achieved bandwidth against the copy
 * ceiling, for the report's chart.  Nothing here passes or fails on speed (machines
 * differ, and CI machines are shared); a test fails only when the results it spot-
 * checks are wrong or the timing is absurd.  Bytes are counted as a kernel moves them:
 * every input element read once, every output element written once, so
 * bandwidth / copy ceiling is the fraction of a device-to-device copy's speed.
 * Each operation runs three times; the fastest run counts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_fixture.h"

enum { RUNS = 3 };

static void require_timing(void) {
    kvfp8_backend *b = kvfp8_conform_backend();
    kvfp8_backend_query q;
    memset(&q, 0, sizeof q);
    q.op = KVFP8_OP_DEVICE_TIMING;
    if (!kvfp8_conform_claims(&q) || !b->ops->device_timing)
        kvfp8_conform_not_supported("the backend reports no device timing (an optional operation; GPU backends "
                                    "report it)");
}

static double timed_seconds(void) {
    kvfp8_backend *b = kvfp8_conform_backend();
    kvfp8_backend_timing t;
    kvfp8_conform_expect_ok(b->ops->device_timing(b->state, &t), "device_timing");
    if (!(t.seconds > 0) || !(t.copy_bytes_per_second > 0))
        kvfp8_conform_failure("device_timing => %g s, copy ceiling %g B/s, expected both > 0", t.seconds,
                              t.copy_bytes_per_second);
    kvfp8_conform_metric("copy_bytes_per_second", t.copy_bytes_per_second);
    return t.seconds;
}

static void report(const char *op, double bytes, double best) {
    kvfp8_backend *b = kvfp8_conform_backend();
    kvfp8_backend_timing t;
    kvfp8_conform_expect_ok(b->ops->device_timing(b->state, &t), "device_timing");
    const double bw = best > 0 ? bytes / best : 0;
    kvfp8_conform_metric("bytes", bytes);
    kvfp8_conform_metric("seconds", best);
    kvfp8_conform_metric("bytes_per_second", bw);
    kvfp8_conform_metric("fraction_of_copy", t.copy_bytes_per_second > 0 ? bw / t.copy_bytes_per_second : 0);
    kvfp8_conform_detail("%s: %.1f MB in %.3f ms = %.2f GB/s; copy ceiling %.2f GB/s (%.0f%%)", op, bytes / 1e6,
                         best * 1e3, bw / 1e9, t.copy_bytes_per_second / 1e9,
                         t.copy_bytes_per_second > 0 ? 100 * bw / t.copy_bytes_per_second : 0);
    kvfp8_conform_check_failures();
}

static void test_fp8_encode_bf16(void **state) {
    (void)state;
    require_timing();
    kvfp8_backend *b = kvfp8_conform_backend();
    kvfp8_fp8_rules r;
    assert_int_equal(kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &r), KVFP8_OK);
    kvfp8_backend_query q;
    memset(&q, 0, sizeof q);
    q.op = KVFP8_OP_FP8_ENCODE, q.fp8 = r, q.source = KVFP8_SRC_BF16;
    if (!kvfp8_conform_claims(&q))
        kvfp8_conform_not_supported("the backend declines e4m3fn/sat/nvidia from bf16");
    const size_t n = (size_t)8 << 20;
    uint16_t *in = malloc(2 * n);
    uint8_t *out = malloc(n);
    assert_true(in && out);
    for (size_t i = 0; i < n; i++)
        in[i] = (uint16_t)(i * 2654435761u >> 16);
    double best = INFINITY;
    for (int run = 0; run < RUNS; run++) {
        kvfp8_conform_expect_ok(b->ops->fp8_encode(b->state, &r, KVFP8_SRC_BF16, in, out, n, 0.37f), "fp8_encode");
        best = fmin(best, timed_seconds());
    }
    for (size_t i = 0; i < n; i += 997)
        if (out[i] != kvfp8_fp8_encode_scaled_ref(&r, KVFP8_SRC_BF16, in[i], 0.37f))
            kvfp8_conform_failure("fp8_encode e4m3fn/sat/nvidia bf16 0x%04x / scale 0.37 => 0x%02x, expected 0x%02x",
                                  in[i], out[i], kvfp8_fp8_encode_scaled_ref(&r, KVFP8_SRC_BF16, in[i], 0.37f));
    free(in), free(out);
    report("fp8_encode bf16 -> e4m3fn, 8M elements", 3.0 * (double)n, best);
}

static void test_fp8_decode(void **state) {
    (void)state;
    require_timing();
    kvfp8_backend *b = kvfp8_conform_backend();
    kvfp8_backend_query q;
    memset(&q, 0, sizeof q);
    q.op = KVFP8_OP_FP8_DECODE, q.fp8.format = KVFP8_E4M3FN;
    if (!kvfp8_conform_claims(&q))
        kvfp8_conform_not_supported("the backend declines e4m3fn decode");
    const size_t n = (size_t)8 << 20;
    uint8_t *in = malloc(n);
    float *out = malloc(4 * n);
    assert_true(in && out);
    for (size_t i = 0; i < n; i++)
        in[i] = (uint8_t)(i * 2654435761u >> 24);
    double best = INFINITY;
    for (int run = 0; run < RUNS; run++) {
        kvfp8_conform_expect_ok(b->ops->fp8_decode(b->state, KVFP8_E4M3FN, in, out, n, 0.37f), "fp8_decode");
        best = fmin(best, timed_seconds());
    }
    for (size_t i = 0; i < n; i += 997)
        if (!kvfp8_conform_same_float(out[i], kvfp8_fp8_dequant(KVFP8_E4M3FN, in[i], 0.37f)))
            kvfp8_conform_failure("fp8_decode e4m3fn 0x%02x * 0.37 => %a, expected %a", in[i], (double)out[i],
                                  (double)kvfp8_fp8_dequant(KVFP8_E4M3FN, in[i], 0.37f));
    free(in), free(out);
    report("fp8_decode e4m3fn -> f32, 8M elements", 5.0 * (double)n, best);
}

static void test_cache_write_e4m3fn(void **state) {
    (void)state;
    require_timing();
    kvfp8_backend *b = kvfp8_conform_backend();
    kvfp8_kv_storage st;
    memset(&st, 0, sizeof st);
    st.is_fp8 = 1;
    assert_int_equal(kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &st.fp8), KVFP8_OK);
    const int tokens = 4096, kvh = 8, d = 128, bs = 16;
    kvfp8_backend_query q;
    memset(&q, 0, sizeof q);
    q.op = KVFP8_OP_CACHE_WRITE, q.storage = st, q.fp8 = st.fp8, q.source = KVFP8_SRC_BF16;
    q.head_size = d, q.block_size = bs, q.num_kv_heads = kvh, q.per_head_scales = 1;
    if (!kvfp8_conform_claims(&q))
        kvfp8_conform_not_supported("the backend declines an e4m3fn cache write from bf16");
    kvfp8_kv_cache c;
    assert_int_equal(kvfp8_kv_cache_init(&c, &st, tokens / bs, bs, kvh, d), KVFP8_OK);
    float ks[8], vs[8];
    for (int h = 0; h < kvh; h++)
        ks[h] = 0.02f + 0.001f * (float)h, vs[h] = 0.03f;
    assert_int_equal(kvfp8_kv_cache_set_scales(&c, ks, vs, kvh), KVFP8_OK);
    const size_t n = (size_t)tokens * (size_t)kvh * (size_t)d;
    uint16_t *k = malloc(2 * n), *v = malloc(2 * n);
    int64_t *slots = malloc(sizeof(int64_t) * (size_t)tokens);
    assert_true(k && v && slots);
    for (size_t i = 0; i < n; i++)
        k[i] = (uint16_t)(i * 2654435761u >> 16) & 0xBFFF, v[i] = k[i] ^ 0x8000; /* finite, both signs */
    for (int t = 0; t < tokens; t++)
        slots[t] = (int64_t)((t * 7919) % tokens);
    double best = INFINITY;
    for (int run = 0; run < RUNS; run++) {
        kvfp8_conform_expect_ok(b->ops->cache_write(b->state, &c, KVFP8_SRC_BF16, k, v, slots, (size_t)tokens),
                                "cache_write");
        best = fmin(best, timed_seconds());
    }
    for (int t = 0; t < tokens; t += 101) {
        const size_t at = (size_t)t * (size_t)kvh * (size_t)d + 5;
        const uint8_t got = (uint8_t)kvfp8_cache_raw(&c, 0, slots[t], 0, 5);
        const uint8_t want = kvfp8_fp8_encode_scaled_ref(&st.fp8, KVFP8_SRC_BF16, k[at], ks[0]);
        if (got != want)
            kvfp8_conform_failure("cache_write token %d head 0 dim 5 key 0x%04x / %a => 0x%02x, expected 0x%02x", t,
                                  k[at], (double)ks[0], got, want);
    }
    free(k), free(v), free(slots);
    kvfp8_kv_cache_free(&c);
    report("cache_write bf16 -> e4m3fn, 4096 tokens x 8 heads x 128", 2.0 * 3.0 * (double)n, best);
}

static void test_paged_attention_decode(void **state) {
    (void)state;
    require_timing();
    attn_spec s = {"perf_decode_e4m3fn_d128_bs16", 1, KVFP8_E4M3FN, KVFP8_PROFILE_NVIDIA, KVFP8_DTYPE_BF16,
                   KVFP8_DTYPE_BF16, 2, 8, 128, 16, 8, {512, 512, 512, 512, 512, 512, 512, 512},
                   {1, 1, 1, 1, 1, 1, 1, 1}, 0, 0, 0, 0, 71};
    attn_case c;
    attn_build(&c, &s, 0);
    kvfp8_backend_query q;
    attn_query(&c, KVFP8_READ_MODEL_DTYPE, &q);
    kvfp8_read_semantics read = KVFP8_READ_MODEL_DTYPE;
    if (!kvfp8_conform_claims(&q)) {
        attn_query(&c, KVFP8_READ_UNIFORM, &q);
        read = KVFP8_READ_UNIFORM;
        if (!kvfp8_conform_claims(&q)) {
            attn_free(&c);
            kvfp8_conform_not_supported("the backend declines this decode batch under model-dtype and uniform");
        }
    }
    float *out = malloc(sizeof(float) * c.n_out);
    assert_non_null(out);
    double best = INFINITY;
    for (int run = 0; run < RUNS; run++) {
        attn_run(&c, read, out);
        best = fmin(best, timed_seconds());
    }
    /* bytes: the K and V codes of every cached position, the queries, the outputs */
    const double bytes = 2.0 * 8 * 512 * 2 * 128 + 2.0 * 4.0 * (double)c.n_out;
    free(out);
    attn_free(&c);
    report("paged_attention decode, 8 sequences x 512 tokens, e4m3fn", bytes, best);
}

const kvfp8_conform_test kvfp8_conform_suite_perf[] = {
    {"perf", "fp8_encode_bf16", "PERF", test_fp8_encode_bf16, "bf16 -> e4m3fn encode bandwidth vs copy ceiling"},
    {"perf", "fp8_decode", "PERF", test_fp8_decode, "e4m3fn -> f32 decode bandwidth vs copy ceiling"},
    {"perf", "cache_write_e4m3fn", "PERF", test_cache_write_e4m3fn, "e4m3fn cache write bandwidth vs copy ceiling"},
    {"perf", "paged_attention_decode", "PERF", test_paged_attention_decode,
     "decode attention bandwidth (cache bytes read) vs copy ceiling"},
};
const size_t kvfp8_conform_suite_perf_count = sizeof kvfp8_conform_suite_perf / sizeof kvfp8_conform_suite_perf[0];
