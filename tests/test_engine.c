/* The engine end to end: the seed guide's two-request test under each calibration
 * mode with FP8 and prefix caching together, either flag alone, the metrics and log
 * lines the operators' checklist reads, KV-dtype independence of the block hashes,
 * and calibration quality in the expected order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/calibration.h"
#include "kvfp8/engine.h"

static kvfp8_model *model;

static int setup(void **state) {
    (void)state;
    kvfp8_tiny_config mc;
    kvfp8_model_default_config(&mc);
    return kvfp8_model_create(&mc, &model) == KVFP8_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    kvfp8_model_destroy(model);
    return 0;
}

typedef struct {
    kvfp8_request_result r1, r2;
    char log[16384];
} two_requests;

/* The seed's test: the same prompt twice to one engine. */
static void serve_twice(kvfp8_engine_config *c, two_requests *out) {
    int64_t tokens[512];
    const int n = kvfp8_tokenize(model, kvfp8_seed_prompt(), tokens, 512);
    assert_true(n > 0);
    FILE *log = fmemopen(out->log, sizeof out->log - 1, "w");
    memset(out->log, 0, sizeof out->log);
    c->log = log;
    kvfp8_engine *e;
    if (kvfp8_engine_create(c, model, &e) != KVFP8_OK)
        fail_msg("engine: %s", kvfp8_last_error());
    if (kvfp8_engine_generate(e, "r1", tokens, n, 8, &out->r1) != KVFP8_OK ||
        kvfp8_engine_generate(e, "r2", tokens, n, 8, &out->r2) != KVFP8_OK)
        fail_msg("generate: %s", kvfp8_last_error());
    kvfp8_engine_destroy(e);
    fclose(log);
}

static void check_two_request_test(const two_requests *t, const char *label) {
    const uint32_t blocks = t->r2.prompt_tokens / 16;
    printf("%s: hit %u of %u blocks, TTFT %.1f -> %.1f ms, computed %u -> %u tokens\n", label, t->r2.hit_tokens / 16,
           blocks, t->r1.ttft_ms, t->r2.ttft_ms, t->r1.computed_tokens, t->r2.computed_tokens);
    assert_int_equal(t->r1.hit_tokens, 0);
    assert_true(t->r2.hit_tokens / 16 + 1 >= blocks);
    assert_true(t->r2.hit_tokens < t->r2.prompt_tokens); /* at least one token is recomputed */
    assert_true(t->r2.computed_tokens < t->r1.computed_tokens);
    assert_true(t->r2.ttft_ms < t->r1.ttft_ms);
    assert_string_equal(t->r1.first_site, KVFP8_SITE_PREFILL);
    assert_string_equal(t->r2.first_site, KVFP8_SITE_PREFIX_PREFILL);
    /* greedy outputs: the same, or (mixed reads differ cold and warm) a difference
     * that is reported, never silently accepted */
    int same = 0;
    while (same < t->r1.n_output && t->r1.output[same] == t->r2.output[same])
        same++;
    printf("%s: outputs agree on %d of %d tokens\n", label, same, t->r1.n_output);
    assert_true(same >= 1); /* the first token depends on the prefix only through reads within the bound */
}

static void test_two_requests_fp8_prefix_none(void **state) {
    (void)state;
    kvfp8_engine_config c;
    kvfp8_engine_default_config(&c);
    c.kv_cache_dtype = "fp8";
    c.enable_prefix_caching = 1;
    two_requests t;
    serve_twice(&c, &t);
    check_two_request_test(&t, "none");
    assert_non_null(strstr(t.log, "kv_cache_dtype=fp8"));
    assert_non_null(strstr(t.log, "enable_prefix_caching=True"));
    assert_non_null(strstr(t.log, "Using KV cache scaling factor 1.0 for fp8_e4m3. If this is unintended"));
    assert_non_null(strstr(t.log, "Prefix cache hit rate: "));
}

static void test_two_requests_fp8_prefix_random(void **state) {
    (void)state;
    kvfp8_engine_config c;
    kvfp8_engine_default_config(&c);
    c.kv_cache_dtype = "fp8";
    c.enable_prefix_caching = 1;
    c.calculate_kv_scales = 1;
    c.warmup_tokens = 128;
    two_requests t;
    serve_twice(&c, &t);
    check_two_request_test(&t, "random");
    assert_non_null(strstr(t.log, "Calculated KV scales for layer 0"));
    assert_null(strstr(t.log, "scaling factor 1.0"));
}

static void test_two_requests_fp8_prefix_dataset(void **state) {
    (void)state;
    kvfp8_calib_options o;
    kvfp8_calib_default_options(&o);
    float k[8], v[8];
    int count;
    assert_int_equal(kvfp8_calibrate(model, &o, k, v, &count), KVFP8_OK);
    assert_int_equal(count, 1);
    kvfp8_engine_config c;
    kvfp8_engine_default_config(&c);
    c.kv_cache_dtype = "fp8";
    c.enable_prefix_caching = 1;
    c.k_scales = k;
    c.v_scales = v;
    c.scale_count = count;
    c.scales_source = "calibration";
    two_requests t;
    serve_twice(&c, &t);
    check_two_request_test(&t, "dataset");
    assert_non_null(strstr(t.log, "Loaded KV cache scales"));
}

/* Either flag alone serves both requests; without prefix caching nothing hits. */
static void test_either_flag_alone(void **state) {
    (void)state;
    for (int fp8 = 0; fp8 <= 1; fp8++) {
        kvfp8_engine_config c;
        kvfp8_engine_default_config(&c);
        c.kv_cache_dtype = fp8 ? "fp8" : "auto";
        c.enable_prefix_caching = !fp8;
        two_requests t;
        serve_twice(&c, &t);
        assert_int_equal(t.r2.hit_tokens, fp8 ? 0u : (t.r2.prompt_tokens - 1) / 16 * 16);
        assert_non_null(strstr(t.log, fp8 ? "Prefix caching is disabled" : "Prefix caching is enabled"));
        /* BF16 with prefix caching: the warm request reads the cached prefix exactly
         * as it was written, so the output is identical */
        if (!fp8)
            assert_memory_equal(t.r1.output, t.r2.output, sizeof(int64_t) * (size_t)t.r1.n_output);
    }
}

static void test_metrics_and_pool_size(void **state) {
    (void)state;
    kvfp8_engine_metrics m8, m16;
    for (int fp8 = 0; fp8 <= 1; fp8++) {
        kvfp8_engine_config c;
        kvfp8_engine_default_config(&c);
        c.kv_cache_dtype = fp8 ? "fp8" : "auto";
        c.enable_prefix_caching = 1;
        kvfp8_engine *e;
        assert_int_equal(kvfp8_engine_create(&c, model, &e), KVFP8_OK);
        int64_t tokens[512];
        const int n = kvfp8_tokenize(model, kvfp8_seed_prompt(), tokens, 512);
        kvfp8_request_result r;
        assert_int_equal(kvfp8_engine_generate(e, "a", tokens, n, 2, &r), KVFP8_OK);
        assert_int_equal(kvfp8_engine_generate(e, "b", tokens, n, 2, &r), KVFP8_OK);
        kvfp8_engine_get_metrics(e, fp8 ? &m8 : &m16);
        kvfp8_engine_destroy(e);
        const kvfp8_engine_metrics *m = fp8 ? &m8 : &m16;
        assert_int_equal(m->prefix_cache_queries, 2u * (unsigned)n);
        assert_int_equal(m->prefix_cache_hits, (unsigned)(n - 1) / 16 * 16);
        assert_true(fabs(m->hit_rate - (double)m->prefix_cache_hits / (double)m->prefix_cache_queries) < 1e-12);
    }
    /* 2 x layers x kv_heads x head_size x bytes: 2*2*2*64*1 and *2 */
    assert_int_equal(m8.kv_bytes_per_token, 512);
    assert_int_equal(m16.kv_bytes_per_token, 1024);
    assert_true(m8.kv_pool_bytes * 2 == m16.kv_pool_bytes);
    assert_true(m8.kv_pool_bytes_bf16 == m16.kv_pool_bytes);
}

static void test_block_hashes_do_not_depend_on_kv_dtype(void **state) {
    (void)state;
    /* The hit pattern (which is all the hashes decide) is the same under every KV
     * dtype: the hash inputs are token ids and keys, never KV values. */
    static const char *const dtypes[] = {"auto", "fp8", "fp8_e5m2"};
    uint32_t hits[3];
    for (int d = 0; d < 3; d++) {
        kvfp8_engine_config c;
        kvfp8_engine_default_config(&c);
        c.kv_cache_dtype = dtypes[d];
        c.enable_prefix_caching = 1;
        kvfp8_engine *e;
        assert_int_equal(kvfp8_engine_create(&c, model, &e), KVFP8_OK);
        int64_t a[512], b[512];
        const int na = kvfp8_tokenize(model, "Shared system prompt for every user. First question?", a, 512);
        const int nb = kvfp8_tokenize(model, "Shared system prompt for every user. Another question entirely", b, 512);
        kvfp8_request_result r;
        assert_int_equal(kvfp8_engine_generate(e, "a", a, na, 1, &r), KVFP8_OK);
        assert_int_equal(kvfp8_engine_generate(e, "b", b, nb, 1, &r), KVFP8_OK);
        hits[d] = r.hit_tokens;
        kvfp8_engine_destroy(e);
    }
    assert_true(hits[0] > 0);
    assert_int_equal(hits[0], hits[1]);
    assert_int_equal(hits[0], hits[2]);
}

static void test_bad_configuration(void **state) {
    (void)state;
    kvfp8_engine_config c;
    kvfp8_engine_default_config(&c);
    kvfp8_engine *e;
    c.kv_cache_dtype = "fp8_e3m4";
    assert_int_equal(kvfp8_engine_create(&c, model, &e), KVFP8_ERR_INVALID);
    assert_non_null(strstr(kvfp8_last_error(), "Unsupported fp8 kv cache data type: fp8_e3m4"));
    c.kv_cache_dtype = "fp8";
    float zero[2] = {0.0f, 0.0f}, one[2] = {1.0f, 1.0f};
    c.k_scales = zero;
    c.v_scales = one;
    c.scale_count = 1;
    assert_int_equal(kvfp8_engine_create(&c, model, &e), KVFP8_ERR_INVALID);
    assert_non_null(strstr(kvfp8_last_error(), "layer 0"));
    kvfp8_engine_default_config(&c);
    c.num_blocks = 3; /* too small for the prompt */
    assert_int_equal(kvfp8_engine_create(&c, model, &e), KVFP8_OK);
    int64_t tokens[512];
    const int n = kvfp8_tokenize(model, kvfp8_seed_prompt(), tokens, 512);
    kvfp8_request_result r;
    assert_int_equal(kvfp8_engine_generate(e, "big", tokens, n, 1, &r), KVFP8_ERR_EXHAUSTED);
    int64_t bad[2] = {1, 100000};
    assert_int_equal(kvfp8_engine_generate(e, "bad", bad, 2, 1, &r), KVFP8_ERR_INVALID);
    kvfp8_engine_destroy(e);
}

/* dataset better than random-token better than none, on held-out in-domain text */
static void test_calibration_quality_order(void **state) {
    (void)state;
    const char *const *ev;
    kvfp8_evaluation_set(&ev);
    double err[3];
    for (int mode = 0; mode < 3; mode++) {
        kvfp8_calib_options o;
        kvfp8_calib_default_options(&o);
        o.mode = (kvfp8_calib_mode)mode;
        o.warmup_tokens = 256;
        float k[8], v[8];
        int count;
        assert_int_equal(kvfp8_calibrate(model, &o, k, v, &count), KVFP8_OK);
        kvfp8_quality q;
        assert_int_equal(kvfp8_quality_measure(model, ev, 2, k, v, count, 2, &q), KVFP8_OK);
        err[mode] = q.attention_error;
        printf("calibration %-8s in-domain attention error %.4f, saturation %.4f%%, agreement %.0f%%\n",
               kvfp8_calib_mode_name((kvfp8_calib_mode)mode), q.attention_error, 100 * q.saturation_rate,
               100 * q.output_agreement);
        if (mode == KVFP8_CALIB_RANDOM)
            assert_true(q.saturation_rate > 0); /* in-domain text exceeds the random-token range */
        if (mode == KVFP8_CALIB_NONE)
            assert_true(q.saturation_rate == 0); /* scale 1.0 never clips these small values */
    }
    assert_true(err[KVFP8_CALIB_DATASET] < err[KVFP8_CALIB_RANDOM]);
    assert_true(err[KVFP8_CALIB_RANDOM] < err[KVFP8_CALIB_NONE]);
}

static void test_dataset_observers_and_per_head(void **state) {
    (void)state;
    float k[3][8], v[3][8];
    int count;
    for (int obs = 0; obs < KVFP8_OBSERVER_COUNT; obs++) {
        kvfp8_calib_options o;
        kvfp8_calib_default_options(&o);
        o.observer = (kvfp8_observer)obs;
        assert_int_equal(kvfp8_calibrate(model, &o, k[obs], v[obs], &count), KVFP8_OK);
        for (int l = 0; l < 2; l++)
            assert_true(k[obs][l] > 0 && v[obs][l] > 0 && isfinite(k[obs][l]));
    }
    /* static is the running max: never below the other two */
    for (int l = 0; l < 2; l++) {
        assert_true(k[KVFP8_OBSERVER_STATIC][l] >= k[KVFP8_OBSERVER_MEMORYLESS][l]);
        assert_true(k[KVFP8_OBSERVER_STATIC][l] >= k[KVFP8_OBSERVER_MINMAX][l]);
    }
    kvfp8_calib_options o;
    kvfp8_calib_default_options(&o);
    o.per_head = 1;
    float kh[8], vh[8];
    assert_int_equal(kvfp8_calibrate(model, &o, kh, vh, &count), KVFP8_OK);
    assert_int_equal(count, 2);
    /* the per-tensor scale is the largest head's */
    for (int l = 0; l < 2; l++)
        assert_true(fmaxf(kh[2 * l], kh[2 * l + 1]) == k[KVFP8_OBSERVER_STATIC][l]);
    /* scales are stored as bf16 values */
    for (int l = 0; l < 2; l++)
        assert_true(kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, k[0][l]) == k[0][l]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_requests_fp8_prefix_none),
        cmocka_unit_test(test_two_requests_fp8_prefix_random),
        cmocka_unit_test(test_two_requests_fp8_prefix_dataset),
        cmocka_unit_test(test_either_flag_alone),
        cmocka_unit_test(test_metrics_and_pool_size),
        cmocka_unit_test(test_block_hashes_do_not_depend_on_kv_dtype),
        cmocka_unit_test(test_bad_configuration),
        cmocka_unit_test(test_calibration_quality_order),
        cmocka_unit_test(test_dataset_observers_and_per_head),
    };
    return cmocka_run_group_tests_name("engine", tests, setup, teardown);
}
