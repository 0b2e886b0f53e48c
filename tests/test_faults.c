/* The fault layer: the site registry, the KVFP8_FAULTS language, triggers and seed
 * replay, the cost when nothing is armed, injected errors, crashes and hangs
 * contained by the isolated probe, the detectors for faults that do not crash, and
 * the SQLite-style sweep with no silently wrong output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/faults.h"
#include "kvfp8/probe.h"

static kvfp8_model *small; /* the sweep's small model: fast enough for many runs */
static int64_t prompt[40];
static float ks[2] = {0.0005f, 0.0005f}, vs[2] = {0.001f, 0.001f};

static int setup(void **state) {
    (void)state;
    kvfp8_tiny_config mc;
    kvfp8_model_small_config(&mc);
    for (int i = 0; i < 40; i++)
        prompt[i] = (i * 37 + 5) % 128;
    kvfp8_faults_disarm();
    return kvfp8_model_create(&mc, &small) == KVFP8_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    kvfp8_model_destroy(small);
    return 0;
}

static void small_probe(kvfp8_probe_config *c) {
    kvfp8_probe_default_config(c);
    c->model = small;
    c->kv_cache_dtype = "fp8";
    c->enable_prefix_caching = 1;
    c->prompt = prompt;
    c->n_prompt = 14;
    c->max_tokens = 3;
    c->block_size = 4;
    c->num_blocks = 64;
    c->k_scales = ks;
    c->v_scales = vs;
    c->scale_count = 1;
    c->scales_source = "the test";
}

/* ---- registry and language ------------------------------------------------------------- */

static void test_sites_are_registered(void **state) {
    (void)state;
    static const char *const names[] = {KVFP8_SITE_ENGINE_STARTUP, KVFP8_SITE_SCALES_LOAD, KVFP8_SITE_HASH_COMPUTE,
                                        KVFP8_SITE_POOL_ALLOC,     KVFP8_SITE_CACHE_WRITE, KVFP8_SITE_CACHE_READ,
                                        KVFP8_SITE_PREFILL,        KVFP8_SITE_PREFIX_PREFILL, KVFP8_SITE_DECODE};
    assert_int_equal(kvfp8_fault_site_count(), 9);
    for (size_t i = 0; i < 9; i++) {
        const kvfp8_fault_site *s = kvfp8_fault_site_find(names[i]);
        assert_non_null(s);
        /* every site can crash, fail and hang */
        assert_int_equal(s->actions & KVFP8_FAULT_GENERIC, KVFP8_FAULT_GENERIC);
        assert_non_null(strchr(s->name, '/')); /* hierarchical */
    }
    assert_null(kvfp8_fault_site_find("attn/nowhere"));
    /* corruptions live where there is data for them */
    assert_true(kvfp8_fault_site_find("cache/write")->actions & KVFP8_FAULT_BIT(KVFP8_FAULT_FNUZ_AS_FN));
    assert_false(kvfp8_fault_site_find("pool/alloc")->actions & KVFP8_FAULT_BIT(KVFP8_FAULT_BITFLIP));
    for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++) {
        kvfp8_fault_action back;
        assert_int_equal(kvfp8_fault_action_parse(kvfp8_fault_action_name((kvfp8_fault_action)a), &back), KVFP8_OK);
        assert_int_equal(back, a);
    }
}

static void test_patterns(void **state) {
    (void)state;
    assert_true(kvfp8_fault_pattern_matches("*", "cache/write"));
    assert_true(kvfp8_fault_pattern_matches("attn", "attn/decode"));
    assert_true(kvfp8_fault_pattern_matches("attn/*", "attn/prefix_prefill"));
    assert_true(kvfp8_fault_pattern_matches("cache/write", "cache/write"));
    assert_false(kvfp8_fault_pattern_matches("attn", "attnx/decode"));
    assert_false(kvfp8_fault_pattern_matches("att", "attn/decode"));
    assert_false(kvfp8_fault_pattern_matches("cache/writ", "cache/write"));
    assert_false(kvfp8_fault_pattern_matches("attn/decode", "attn"));
}

static void test_spec_language(void **state) {
    (void)state;
    kvfp8_fault_plan p;
    const char *spec = "  seed=7 ;attn=nan@p:0.25\ncache/write=bitflip@nth:3; pool/alloc = error @after:2;;";
    assert_int_equal(kvfp8_fault_plan_parse(spec, strlen(spec), "KVFP8_FAULTS", &p), KVFP8_OK);
    assert_int_equal(p.count, 3);
    assert_true(p.has_seed);
    assert_int_equal(p.seed, 7);
    char buf[256];
    kvfp8_fault_plan_format(&p, buf, sizeof buf);
    assert_string_equal(buf, "seed=7; attn=nan@p:0.25; cache/write=bitflip@nth:3; pool/alloc=error@after:2");
    /* canonical form parses back to itself */
    kvfp8_fault_plan q;
    assert_int_equal(kvfp8_fault_plan_parse(buf, strlen(buf), "x", &q), KVFP8_OK);
    char buf2[256];
    kvfp8_fault_plan_format(&q, buf2, sizeof buf2);
    assert_string_equal(buf, buf2);
    assert_int_equal(kvfp8_fault_plan_parse("*=hang", 6, "x", &p), KVFP8_OK);
    assert_int_equal(p.items[0].trigger.kind, KVFP8_TRIGGER_EVERY);
    assert_int_equal(kvfp8_fault_plan_parse("", 0, "x", &p), KVFP8_OK);
    assert_int_equal(p.count, 0);
}

static void expect_error(const char *spec, const char *needle) {
    kvfp8_fault_plan p;
    assert_int_equal(kvfp8_fault_plan_parse(spec, strlen(spec), "KVFP8_FAULTS", &p), KVFP8_ERR_INVALID);
    if (!strstr(kvfp8_last_error(), needle) || !strstr(kvfp8_last_error(), "KVFP8_FAULTS"))
        fail_msg("'%s': got '%s', want '%s'", spec, kvfp8_last_error(), needle);
    assert_int_equal(p.count, 0);
}

static void test_spec_errors_name_the_item(void **state) {
    (void)state;
    expect_error("cache/write=explode", "item 1 'cache/write=explode': unknown action 'explode'");
    expect_error("seed=1; attn/foo=nan", "item 2 'attn/foo=nan': 'attn/foo' matches no fault site");
    expect_error("pool/alloc=bitflip", "no site matched by 'pool/alloc' supports the action bitflip");
    expect_error("cache/write=error@nth:0", "nth:N needs a decimal N >= 1");
    expect_error("cache/write=error@p:1.5", "p:P needs a decimal P in [0, 1]");
    expect_error("cache/write=error@p:nan", "p:P needs");
    expect_error("cache/write=error@sometimes", "unknown trigger");
    expect_error("cache/write", "expected PATTERN=ACTION");
    expect_error("seed=-1", "seed must be a decimal integer");
    expect_error("seed=99999999999999999999", "seed must be");
    expect_error("Cache/Write=error", "a site pattern uses");
    char many[1024] = "";
    for (int i = 0; i < 17; i++)
        strcat(many, "cache/write=error;");
    expect_error(many, "more than 16 faults");
    kvfp8_fault_plan p;
    assert_int_equal(kvfp8_fault_plan_parse("attn=nan\0x", 10, "KVFP8_FAULTS", &p), KVFP8_ERR_INVALID);
    assert_non_null(strstr(kvfp8_last_error(), "NUL"));
}

/* ---- arming and triggers ----------------------------------------------------------------- */

static void test_costless_when_disarmed(void **state) {
    (void)state;
    kvfp8_faults_disarm();
    assert_int_equal(kvfp8_faults_active, 0);
    kvfp8_fault_event ev = {.fired = 1};
    assert_int_equal(kvfp8_fault_point(KVFP8_SITE_POOL_ALLOC, &ev), KVFP8_OK);
    assert_int_equal(ev.fired, 0);
    /* nothing is even counted: the site is one branch on kvfp8_faults_active */
    assert_int_equal(kvfp8_faults_site_calls(KVFP8_SITE_POOL_ALLOC), 0);
    kvfp8_faults_count_calls(1);
    assert_int_not_equal(kvfp8_faults_active, 0);
    kvfp8_fault_point(KVFP8_SITE_POOL_ALLOC, &ev);
    assert_int_equal(kvfp8_faults_site_calls(KVFP8_SITE_POOL_ALLOC), 1);
    kvfp8_faults_count_calls(0);
    assert_int_equal(kvfp8_faults_active, 0);
}

/* Which of n calls of a site fail under a spec. */
static unsigned fired_mask(const char *spec, const char *site, int n) {
    assert_int_equal(kvfp8_faults_arm_spec(spec, "test"), KVFP8_OK);
    unsigned mask = 0;
    for (int i = 0; i < n; i++) {
        kvfp8_fault_event ev;
        if (kvfp8_fault_point(site, &ev) != KVFP8_OK)
            mask |= 1u << i;
    }
    kvfp8_faults_disarm();
    return mask;
}

static void test_triggers(void **state) {
    (void)state;
    assert_int_equal(fired_mask("pool/alloc=error@nth:3", "pool/alloc", 6), 0x04);
    assert_int_equal(fired_mask("pool/alloc=error@after:2", "pool/alloc", 6), 0x3C);
    assert_int_equal(fired_mask("pool/alloc=error", "pool/alloc", 6), 0x3F);
    assert_int_equal(fired_mask("pool/alloc=error@p:0", "pool/alloc", 32), 0);
    assert_int_equal(fired_mask("pool/alloc=error@p:1", "pool/alloc", 32), 0xFFFFFFFFu);
    /* another site does not count toward the nth call */
    assert_int_equal(fired_mask("hash/compute=error@nth:1", "pool/alloc", 4), 0);
    /* a prefix pattern counts every site under it */
    assert_int_equal(kvfp8_faults_arm_spec("attn=error@nth:2", "test"), KVFP8_OK);
    kvfp8_fault_event ev;
    assert_int_equal(kvfp8_fault_point(KVFP8_SITE_PREFILL, &ev), KVFP8_OK);
    assert_int_equal(kvfp8_fault_point(KVFP8_SITE_DECODE, &ev), KVFP8_ERR_IO);
    assert_non_null(strstr(kvfp8_last_error(), "injected fault: error at attn/decode (call 2"));
    kvfp8_faults_disarm();
    /* an injected error is the site's natural status */
    assert_int_equal(kvfp8_faults_arm_spec("pool/alloc=error", "test"), KVFP8_OK);
    assert_int_equal(kvfp8_fault_point(KVFP8_SITE_POOL_ALLOC, &ev), KVFP8_ERR_EXHAUSTED);
    kvfp8_faults_disarm();
}

static void test_one_seed_replays(void **state) {
    (void)state;
    const unsigned a = fired_mask("seed=42; pool/alloc=error@p:0.5", "pool/alloc", 32);
    const unsigned b = fired_mask("seed=42; pool/alloc=error@p:0.5", "pool/alloc", 32);
    const unsigned c = fired_mask("seed=43; pool/alloc=error@p:0.5", "pool/alloc", 32);
    assert_int_equal(a, b);
    assert_int_not_equal(a, c);
    assert_int_not_equal(a, 0);
    assert_int_not_equal(a, 0xFFFFFFFFu);
    /* and a corruption's choices too: the same bit flips in the same place */
    uint8_t x[64], y[64];
    memset(x, 0, sizeof x), memset(y, 0, sizeof y);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(kvfp8_faults_arm_spec("seed=9; hash/compute=bitflip@nth:1", "test"), KVFP8_OK);
        kvfp8_fault_event ev;
        assert_int_equal(kvfp8_fault_point(KVFP8_SITE_HASH_COMPUTE, &ev), KVFP8_OK);
        assert_true(ev.fired);
        assert_int_equal(kvfp8_fault_corrupt_bytes(&ev, k ? y : x, 64, NULL, 0), 1);
        kvfp8_faults_disarm();
    }
    assert_memory_equal(x, y, 64);
}

/* ---- the engine: errors, detectors ---------------------------------------------------------- */

static void run_in_process(const char *faults, unsigned detectors, kvfp8_probe_result *r) {
    kvfp8_probe_config c;
    small_probe(&c);
    c.faults = faults;
    c.detectors = detectors;
    c.capture_log = 1;
    assert_int_equal(kvfp8_probe_run(&c, r), KVFP8_OK);
}

static void test_injected_error_fails_the_request_cleanly(void **state) {
    (void)state;
    kvfp8_probe_result r;
    run_in_process("pool/alloc=error@nth:4", 0, &r);
    assert_int_equal(r.outcome, KVFP8_OUTCOME_ERROR);
    assert_int_equal(r.failed_request, 2); /* request 1 allocates 3 times (prompt, 2 decode steps) */
    assert_false(r.detected);
    assert_non_null(strstr(r.error, "injected fault: error at pool/alloc (call 4"));
    kvfp8_probe_result_free(&r);
    /* disarmed afterwards: the next run is clean */
    assert_int_equal(kvfp8_faults_armed_count(), 0);
    run_in_process(NULL, 0, &r);
    assert_int_equal(r.outcome, KVFP8_OUTCOME_OK);
    assert_string_equal(r.cold_warm, "identical");
    kvfp8_probe_result_free(&r);
}

static void expect_detected(const char *faults, unsigned detectors, const char *needle) {
    kvfp8_probe_result r;
    run_in_process(faults, detectors, &r);
    if (r.outcome != KVFP8_OUTCOME_ERROR || !r.detected || !strstr(r.error, needle))
        fail_msg("%s: outcome %s, detected %d, error '%s'; want '%s'", faults, kvfp8_outcome_name(r.outcome),
                 r.detected, r.error, needle);
    assert_non_null(strstr(r.log, "ERROR: corruption detected: "));
    assert_true(r.metrics.corruption_detected >= 1 || r.failed_request == 0);
    kvfp8_probe_result_free(&r);
}

static void test_detectors(void **state) {
    (void)state;
    /* the encoding canary at startup: FNUZ bytes read as FN, every value x2 */
    expect_detected("cache/write=fnuz-as-fn@nth:1", KVFP8_DETECT_CANARY, "every value x2: E4M3FNUZ bytes read as E4M3FN");
    /* the canary in every write catches it mid-run */
    expect_detected("cache/write=fnuz-as-fn@nth:5", KVFP8_DETECT_CANARY_WRITES, "encoding canary (attn/");
    /* scale sanity: the artifact's scales, but 1.0 in use */
    expect_detected("scales/load=scale-one", KVFP8_DETECT_SCALES, "1.0 is in use at startup but the loaded scales");
    /* stale: the value before the last update, 1.0 here (the scales were installed once) */
    expect_detected("attn/decode=stale-scale@nth:1", KVFP8_DETECT_SCALES, "scale sanity: layer 0");
    expect_detected("attn/prefill=bitflip@nth:1", KVFP8_DETECT_INTEGRITY, "KV integrity");
    /* a writer with a stale scale: the canary read back with the current one */
    expect_detected("cache/write=stale-scale@nth:4", KVFP8_DETECT_CANARY_WRITES, "encoding canary");
    /* a bit flip in memory between the write and the read */
    expect_detected("attn/decode=bitflip@nth:1", KVFP8_DETECT_INTEGRITY, "KV integrity");
    expect_detected("cache/write=bitflip@nth:3", KVFP8_DETECT_INTEGRITY, "KV integrity");
    /* NaN reaching the kernel */
    expect_detected("attn/decode=nan@nth:2", KVFP8_DETECT_NONFINITE, "non-finite attention output");
}

static void test_fn_as_fnuz_on_an_fnuz_stack(void **state) {
    (void)state;
    kvfp8_platform_set ps;
    assert_int_equal(kvfp8_platforms_builtin(&ps), KVFP8_OK);
    kvfp8_probe_config c;
    small_probe(&c);
    c.platform = kvfp8_platform_find(&ps, "gfx942");
    assert_non_null(c.platform);
    c.faults = "cache/write=fn-as-fnuz@nth:1";
    c.detectors = KVFP8_DETECT_CANARY;
    kvfp8_probe_result r;
    assert_int_equal(kvfp8_probe_run(&c, &r), KVFP8_OK);
    assert_int_equal(r.outcome, KVFP8_OUTCOME_ERROR);
    assert_non_null(strstr(r.error, "every value x0.5: E4M3FN bytes read as E4M3FNUZ"));
    assert_non_null(strstr(r.error, "as e4m3fnuz"));
    kvfp8_platforms_free(&ps);
}

static void test_saturation_monitor_warns(void **state) {
    (void)state;
    static float tiny_k[2] = {1e-7f, 1e-7f}, tiny_v[2] = {1e-7f, 1e-7f};
    kvfp8_probe_config c;
    small_probe(&c);
    c.k_scales = tiny_k;
    c.v_scales = tiny_v;
    c.capture_log = 1;
    kvfp8_probe_result r;
    assert_int_equal(kvfp8_probe_run(&c, &r), KVFP8_OK);
    assert_int_equal(r.outcome, KVFP8_OUTCOME_OK); /* it warns, it does not stop */
    assert_true(r.metrics.saturation_warnings >= 1);
    assert_non_null(strstr(r.log, "WARNING: FP8 KV saturation"));
    kvfp8_probe_result_free(&r);
}

static void test_detectors_off_by_default_stay_cheap(void **state) {
    (void)state;
    kvfp8_engine_config ec;
    kvfp8_engine_default_config(&ec);
    assert_int_equal(ec.detectors, KVFP8_DETECT_DEFAULT);
    assert_false(ec.detectors & KVFP8_DETECT_INTEGRITY);
    assert_false(ec.detectors & KVFP8_DETECT_CANARY_WRITES);
    /* the default set still catches a lost scale at startup */
    assert_true(ec.detectors & KVFP8_DETECT_SCALES);
    assert_true(ec.detectors & KVFP8_DETECT_CANARY);
}

/* ---- crashes and hangs, contained ------------------------------------------------------------- */

static void test_crash_and_hang_are_contained(void **state) {
    (void)state;
    kvfp8_probe_config c;
    small_probe(&c);
    c.timeout_s = 30;
    kvfp8_probe_result r;
    c.faults = "attn/prefix_prefill=crash-abort@nth:1";
    assert_int_equal(kvfp8_probe_run_isolated(&c, &r), KVFP8_OK);
    assert_int_equal(r.outcome, KVFP8_OUTCOME_CRASH);
    assert_int_equal(r.signal, SIGABRT);
    assert_int_equal(r.failed_request, 2);
    assert_string_equal(r.site, "attn/prefix_prefill");
    assert_non_null(strstr(r.error, "injected fault: crash-abort at attn/prefix_prefill"));
    assert_int_equal(r.n_done, 1);
    kvfp8_probe_result_free(&r);
    c.faults = "cache/write=crash-segv@nth:3";
    assert_int_equal(kvfp8_probe_run_isolated(&c, &r), KVFP8_OK);
    assert_int_equal(r.outcome, KVFP8_OUTCOME_CRASH);
    assert_int_equal(r.signal, SIGSEGV);
    assert_int_equal(r.failed_request, 1);
    kvfp8_probe_result_free(&r);
    c.faults = "hash/compute=hang@nth:2";
    c.timeout_s = 0.3;
    assert_int_equal(kvfp8_probe_run_isolated(&c, &r), KVFP8_OK);
    assert_int_equal(r.outcome, KVFP8_OUTCOME_TIMEOUT);
    assert_int_equal(r.signal, SIGKILL);
    assert_non_null(strstr(r.error, "no answer within 0.3 s"));
    assert_non_null(strstr(r.error, "hang at hash/compute"));
    kvfp8_probe_result_free(&r);
    /* the parent is untouched */
    assert_int_equal(kvfp8_faults_armed_count(), 0);
}

static void test_isolated_run_equals_in_process(void **state) {
    (void)state;
    kvfp8_probe_config c;
    small_probe(&c);
    c.faults = "seed=5; cache/write=bitflip@p:0.3";
    kvfp8_probe_result a, b, d;
    assert_int_equal(kvfp8_probe_run_isolated(&c, &a), KVFP8_OK);
    assert_int_equal(kvfp8_probe_run_isolated(&c, &b), KVFP8_OK);
    assert_int_equal(kvfp8_probe_run(&c, &d), KVFP8_OK);
    /* one seed replays the run: same outcome, same text, same outputs */
    assert_int_equal(a.outcome, b.outcome);
    assert_string_equal(a.error, b.error);
    assert_int_equal(a.outcome, d.outcome);
    assert_string_equal(a.error, d.error);
    assert_int_equal(a.n_done, d.n_done);
    for (int i = 0; i < a.n_done; i++)
        assert_memory_equal(a.req[i].output, d.req[i].output, sizeof(int64_t) * (size_t)a.req[i].n_output);
    assert_true(a.faults_fired > 0);
    kvfp8_probe_result_free(&a), kvfp8_probe_result_free(&b), kvfp8_probe_result_free(&d);
}


static void test_arming_api_errors(void **state) {
    (void)state;
    const kvfp8_fault_trigger every = {KVFP8_TRIGGER_EVERY, 0, 0};
    kvfp8_faults_disarm();
    assert_int_equal(kvfp8_faults_arm("", KVFP8_FAULT_ERROR, every), KVFP8_ERR_INVALID);
    char longp[100];
    memset(longp, 'a', 99);
    longp[99] = 0;
    assert_int_equal(kvfp8_faults_arm(longp, KVFP8_FAULT_ERROR, every), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_faults_arm("attn", (kvfp8_fault_action)99, every), KVFP8_ERR_INVALID);
    const kvfp8_fault_trigger nth0 = {KVFP8_TRIGGER_NTH, 0, 0}, p2 = {KVFP8_TRIGGER_PROB, 0, 2.0},
                              odd = {(kvfp8_trigger_kind)9, 0, 0};
    assert_int_equal(kvfp8_faults_arm("attn", KVFP8_FAULT_ERROR, nth0), KVFP8_ERR_INVALID);
    assert_non_null(strstr(kvfp8_last_error(), "nth:N counts from 1"));
    assert_int_equal(kvfp8_faults_arm("attn", KVFP8_FAULT_ERROR, p2), KVFP8_ERR_INVALID);
    assert_non_null(strstr(kvfp8_last_error(), "p:P must be in [0, 1]"));
    assert_int_equal(kvfp8_faults_arm("attn", KVFP8_FAULT_ERROR, odd), KVFP8_ERR_INVALID);
    assert_non_null(strstr(kvfp8_last_error(), "unknown trigger kind"));
    assert_int_equal(kvfp8_faults_armed_count(), 0);
    for (int i = 0; i < KVFP8_FAULTS_MAX; i++)
        assert_int_equal(kvfp8_faults_arm("pool/alloc", KVFP8_FAULT_ERROR, every), KVFP8_OK);
    assert_int_equal(kvfp8_faults_arm("pool/alloc", KVFP8_FAULT_ERROR, every), KVFP8_ERR_EXHAUSTED);
    char buf[2048];
    kvfp8_faults_describe(buf, sizeof buf);
    assert_non_null(strstr(buf, "; pool/alloc=error@every; pool/alloc=error@every"));
    kvfp8_faults_disarm();
    /* a plan with a bad item arms nothing */
    kvfp8_fault_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.count = 2;
    snprintf(plan.items[0].pattern, sizeof plan.items[0].pattern, "attn");
    plan.items[0].action = KVFP8_FAULT_ERROR;
    snprintf(plan.items[1].pattern, sizeof plan.items[1].pattern, "pool/alloc");
    plan.items[1].action = KVFP8_FAULT_NAN;
    assert_int_equal(kvfp8_faults_arm_plan(&plan), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_faults_armed_count(), 0);
    /* an unknown site is never a target, even under '*' */
    assert_int_equal(kvfp8_faults_arm_spec("*=error", "t"), KVFP8_OK);
    kvfp8_fault_event ev;
    assert_int_equal(kvfp8_fault_hit("no/such", &ev), KVFP8_OK);
    assert_false(ev.fired);
    kvfp8_faults_disarm();
    /* re-seeding armed faults changes their draws; the seed is kept across disarm */
    kvfp8_faults_seed(77);
    assert_int_equal(kvfp8_faults_get_seed(), 77);
    assert_int_equal(kvfp8_faults_arm_spec("pool/alloc=error@p:0.5", "t"), KVFP8_OK);
    unsigned a = 0, b = 0;
    for (int i = 0; i < 32; i++)
        a |= (unsigned)(kvfp8_fault_point(KVFP8_SITE_POOL_ALLOC, &ev) != KVFP8_OK) << i;
    kvfp8_faults_seed(78);
    for (int i = 0; i < 32; i++)
        b |= (unsigned)(kvfp8_fault_point(KVFP8_SITE_POOL_ALLOC, &ev) != KVFP8_OK) << i;
    assert_int_not_equal(a, b);
    kvfp8_faults_disarm();
    kvfp8_faults_seed(0);
    assert_true(kvfp8_fault_action_is_corruption(KVFP8_FAULT_BITFLIP));
    assert_false(kvfp8_fault_action_is_corruption(KVFP8_FAULT_HANG));
    assert_string_equal(kvfp8_fault_action_name((kvfp8_fault_action)42), "?");
    assert_string_equal(kvfp8_fault_action_description((kvfp8_fault_action)42), "?");
    assert_null(kvfp8_fault_site_at(99));
    expect_error("=nan", "empty site pattern");
    char big[120];
    memset(big, 'a', 70);
    snprintf(big + 70, sizeof big - 70, "=error");
    expect_error(big, "site pattern too long");
    expect_error("cache/write=", "missing or unknown action");
    expect_error("cache/write=error@after:x", "after:N needs");
    kvfp8_fault_plan q;
    assert_int_equal(kvfp8_fault_plan_parse("x", 1, NULL, &q), KVFP8_ERR_INVALID);
    assert_non_null(strstr(kvfp8_last_error(), "faults: item 1 'x'"));
}

static void cache_of(kvfp8_kv_cache *c, int fp8, kvfp8_format f, kvfp8_model_dtype d) {
    kvfp8_kv_storage st;
    memset(&st, 0, sizeof st);
    st.is_fp8 = fp8;
    st.dtype = d;
    if (fp8)
        assert_int_equal(kvfp8_fp8_rules_get(f, KVFP8_SAT, KVFP8_PROFILE_HIP, &st.fp8), KVFP8_OK);
    assert_int_equal(kvfp8_kv_cache_init(c, &st, 2, 2, 1, 4), KVFP8_OK);
}

static void test_corruptions(void **state) {
    (void)state;
    kvfp8_kv_cache c;
    const int64_t slots[2] = {1, -1};
    char what[200];
    kvfp8_fault_event ev = {1, KVFP8_FAULT_NAN, "t", 1, 12345};
    /* NaN in each storage */
    static const kvfp8_model_dtype dts[3] = {KVFP8_DTYPE_BF16, KVFP8_DTYPE_F16, KVFP8_DTYPE_F32};
    for (int k = 0; k < 3; k++) {
        cache_of(&c, 0, KVFP8_E4M3FN, dts[k]);
        assert_int_equal(kvfp8_fault_corrupt_kv(&ev, &c, slots, 1, what, sizeof what), 1);
        int nans = 0;
        for (int kv = 0; kv < 2; kv++)
            for (int d = 0; d < 4; d++)
                nans += isnan(kvfp8_cache_read_f32(&c, kv, 1, 0, d));
        assert_int_equal(nans, 1);
        kvfp8_kv_cache_free(&c);
    }
    /* the encoding swaps act only on the variant they name */
    cache_of(&c, 0, KVFP8_E4M3FN, KVFP8_DTYPE_BF16);
    ev.action = KVFP8_FAULT_FNUZ_AS_FN;
    assert_int_equal(kvfp8_fault_corrupt_kv(&ev, &c, slots, 1, what, sizeof what), 0);
    assert_non_null(strstr(what, "not applicable"));
    kvfp8_kv_cache_free(&c);
    cache_of(&c, 1, KVFP8_E4M3FN, KVFP8_DTYPE_BF16);
    ev.action = KVFP8_FAULT_FN_AS_FNUZ;
    assert_int_equal(kvfp8_fault_corrupt_kv(&ev, &c, slots, 1, what, sizeof what), 0);
    kvfp8_kv_cache_free(&c);
    cache_of(&c, 1, KVFP8_E4M3FNUZ, KVFP8_DTYPE_BF16);
    for (int d = 0; d < 4; d++)
        c.key_cache[4 + d] = 0x40; /* 1.0 in E4M3FNUZ */
    assert_int_equal(kvfp8_fault_corrupt_kv(&ev, &c, slots, 2, what, sizeof what), 4);
    assert_true(kvfp8_cache_read_f32(&c, 0, 1, 0, 0) == 0.5f); /* FN's 1.0 read as FNUZ */
    /* not a KV corruption; nothing to act on */
    ev.action = KVFP8_FAULT_SCALE_ONE;
    assert_int_equal(kvfp8_fault_corrupt_kv(&ev, &c, slots, 1, what, sizeof what), 0);
    ev.action = KVFP8_FAULT_BITFLIP;
    assert_int_equal(kvfp8_fault_corrupt_kv(&ev, &c, slots, 0, what, sizeof what), 0);
    assert_int_equal(kvfp8_fault_corrupt_kv(&ev, &c, slots + 1, 1, what, sizeof what), 0);
    kvfp8_kv_cache_free(&c);
    /* scales */
    float k[2] = {0.5f, 0.25f}, v[2] = {2.0f, 4.0f}, pk[2] = {1, 1}, pv[2] = {1, 1};
    ev.action = KVFP8_FAULT_BITFLIP;
    assert_int_equal(kvfp8_fault_corrupt_scales(&ev, k, v, 2, pk, pv, what, sizeof what), 1);
    assert_non_null(strstr(what, "bitflip: "));
    ev.action = KVFP8_FAULT_NAN;
    assert_int_equal(kvfp8_fault_corrupt_scales(&ev, k, v, 2, pk, pv, NULL, 0), 1);
    ev.action = KVFP8_FAULT_FNUZ_AS_FN;
    assert_int_equal(kvfp8_fault_corrupt_scales(&ev, k, v, 2, pk, pv, what, sizeof what), 0);
    assert_int_equal(kvfp8_fault_corrupt_scales(&ev, k, v, 0, pk, pv, what, sizeof what), 0);
    ev.action = KVFP8_FAULT_STALE_SCALE;
    assert_int_equal(kvfp8_fault_corrupt_scales(&ev, k, v, 2, pk, pv, what, sizeof what), 4);
    assert_true(k[0] == 1.0f && v[1] == 1.0f);
    uint8_t bytes[4] = {0};
    ev.action = KVFP8_FAULT_NAN;
    assert_int_equal(kvfp8_fault_corrupt_bytes(&ev, bytes, 4, what, sizeof what), 0);
}

static void test_probe_edges(void **state) {
    (void)state;
    kvfp8_probe_config c;
    kvfp8_probe_result r;
    kvfp8_probe_default_config(&c);
    assert_int_equal(kvfp8_probe_run(&c, &r), KVFP8_ERR_INVALID); /* no model */
    assert_int_equal(kvfp8_probe_run_isolated(&c, &r), KVFP8_ERR_INVALID);
    small_probe(&c);
    c.n_prompt = 0;
    assert_int_equal(kvfp8_probe_run(&c, &r), KVFP8_ERR_INVALID);
    /* the seed guide's prompt by default; one request: nothing to compare cold and warm */
    kvfp8_tiny_config mc;
    kvfp8_model_default_config(&mc); /* the seed's prompt has bytes past the small model's vocabulary */
    kvfp8_model *big;
    assert_int_equal(kvfp8_model_create(&mc, &big), KVFP8_OK);
    small_probe(&c);
    c.model = big;
    c.prompt = NULL;
    c.n_requests = 1;
    c.max_tokens = 1;
    c.k_scales = c.v_scales = NULL;
    assert_int_equal(kvfp8_probe_run(&c, &r), KVFP8_OK);
    if (r.outcome != KVFP8_OUTCOME_OK)
        fail_msg("%s", r.error);
    assert_int_equal(r.req[0].prompt_tokens, 186);
    assert_string_equal(r.cold_warm, "n/a");
    kvfp8_model_destroy(big);
    /* a bad spec: refused in process; the child says so and exits 3 */
    small_probe(&c);
    c.faults = "attn=melt";
    assert_int_equal(kvfp8_probe_run(&c, &r), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_probe_run_isolated(&c, &r), KVFP8_OK);
    assert_int_equal(r.outcome, KVFP8_OUTCOME_ERROR);
    assert_int_equal(r.exit_status, 3);
    assert_non_null(strstr(r.error, "probe faults: item 1 'attn=melt'"));
    kvfp8_probe_result_free(&r);
    /* many at once, with the bound clamped */
    kvfp8_probe_config cs[3];
    kvfp8_probe_result rs[3];
    for (int i = 0; i < 3; i++)
        small_probe(&cs[i]);
    cs[1].faults = "pool/alloc=error@nth:1";
    assert_int_equal(kvfp8_probe_run_many(cs, 3, 0, rs), KVFP8_OK);
    assert_int_equal(rs[0].outcome, KVFP8_OUTCOME_OK);
    assert_int_equal(rs[1].outcome, KVFP8_OUTCOME_ERROR);
    assert_int_equal(kvfp8_probe_run_many(cs, 3, 1000, rs), KVFP8_OK);
    assert_int_equal(rs[2].outcome, KVFP8_OUTCOME_OK);
    for (int i = 0; i < 3; i++)
        kvfp8_probe_result_free(&rs[i]);
    /* the matrix always repeats the request */
    small_probe(&c);
    c.n_requests = 1;
    c.k_scales = c.v_scales = NULL;
    kvfp8_matrix m;
    assert_int_equal(kvfp8_matrix_run(&c, "fp8_e5m2", &m), KVFP8_OK);
    assert_string_equal(m.classification, "clean");
    assert_int_equal(m.cells[3].result.n_done, 2);
    assert_string_equal(m.cells[3].kv_cache_dtype, "fp8_e5m2");
    kvfp8_matrix_free(&m);
    assert_string_equal(kvfp8_outcome_name((kvfp8_outcome)9), "?");
}

/* ---- the sweep ---------------------------------------------------------------------------------- */

static void count_line(void *ctx, const char *line) {
    (void)line;
    ++*(int *)ctx;
}

static void test_sweep_has_no_silent_wrong_output(void **state) {
    (void)state;
    kvfp8_sweep_options o;
    memset(&o, 0, sizeof o);
    o.quick = 1;
    int lines = 0;
    o.progress = count_line;
    o.progress_ctx = &lines;
    static kvfp8_sweep_report r;
    assert_int_equal(kvfp8_sweep_run(&o, &r), KVFP8_OK);
    printf("sweep: %d runs: correct %d, detected %d, error %d, crash %d, timeout %d, SILENT %d, UNEXPECTED %d "
           "(%.1f s)\n",
           r.runs, r.totals[0], r.totals[1], r.totals[2], r.totals[3], r.totals[4], r.totals[5], r.totals[6], r.wall_s);
    for (size_t s = 0; s < r.n_sites; s++)
        for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++)
            if (r.cells[s][a].failure_spec[0])
                printf("failing run: KVFP8_FAULTS='%s'\n", r.cells[s][a].failure_spec);
    assert_int_equal(r.totals[KVFP8_SWEEP_SILENT], 0);
    assert_int_equal(r.totals[KVFP8_SWEEP_UNEXPECTED], 0);
    assert_int_equal(r.failures, 0);
    /* every site x supported action ran, and each kind of ending happened */
    for (size_t s = 0; s < r.n_sites; s++)
        for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++) {
            const kvfp8_sweep_cell *c = &r.cells[s][a];
            assert_int_equal(c->applicable, (kvfp8_fault_site_at(s)->actions & KVFP8_FAULT_BIT(a)) != 0);
            if (c->applicable && c->runs == 0)
                fail_msg("%s x %s did not run", r.sites[s], kvfp8_fault_action_name((kvfp8_fault_action)a));
            if (a == KVFP8_FAULT_CRASH_ABORT || a == KVFP8_FAULT_CRASH_SEGV)
                assert_int_equal(c->counts[KVFP8_SWEEP_CRASH], c->runs);
            if (a == KVFP8_FAULT_HANG)
                assert_int_equal(c->counts[KVFP8_SWEEP_TIMEOUT], c->runs);
        }
    assert_true(r.totals[KVFP8_SWEEP_DETECTED] > 0);
    assert_true(r.totals[KVFP8_SWEEP_ERROR] > 0);
    assert_true(r.totals[KVFP8_SWEEP_CORRECT] > 0);
    assert_true(lines >= 2);
    assert_string_equal(kvfp8_sweep_class_name(KVFP8_SWEEP_SILENT), "SILENT");
    assert_string_equal(kvfp8_sweep_class_name((kvfp8_sweep_class)99), "?");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sites_are_registered),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_spec_language),
        cmocka_unit_test(test_spec_errors_name_the_item),
        cmocka_unit_test(test_costless_when_disarmed),
        cmocka_unit_test(test_triggers),
        cmocka_unit_test(test_one_seed_replays),
        cmocka_unit_test(test_injected_error_fails_the_request_cleanly),
        cmocka_unit_test(test_detectors),
        cmocka_unit_test(test_fn_as_fnuz_on_an_fnuz_stack),
        cmocka_unit_test(test_saturation_monitor_warns),
        cmocka_unit_test(test_detectors_off_by_default_stay_cheap),
        cmocka_unit_test(test_crash_and_hang_are_contained),
        cmocka_unit_test(test_isolated_run_equals_in_process),
        cmocka_unit_test(test_arming_api_errors),
        cmocka_unit_test(test_corruptions),
        cmocka_unit_test(test_probe_edges),
        cmocka_unit_test(test_sweep_has_no_silent_wrong_output),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
