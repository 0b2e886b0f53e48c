/* The platform capability model and what is built on it: the profiles and the
 * known-issues database (built-in copy = the data files; the readers' errors), the
 * capability decisions, vLLM #13147 coming out of the W7900 profile in the engine,
 * the 2x2 matrix and its classification, the safe-fallback plan, the verification
 * checklist, and chunked prefill. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kvfp8/plan.h"
#include "kvfp8/probe.h"

static const char *const W7900_TEXT =
    "type fp8e4nv not supported in this architecture. The supported fp8 dtypes are ('fp8e5',)";

static kvfp8_model *small;
static void small_probe(kvfp8_probe_config *c, const kvfp8_platform *p, const char *dtype, int prefix);
static int has_reason(const kvfp8_plan *p, const char *needle);
static kvfp8_platform_set ps;
static kvfp8_issue_db db;
static int64_t prompt[40];

static int setup(void **state) {
    (void)state;
    kvfp8_tiny_config mc;
    kvfp8_model_small_config(&mc);
    for (int i = 0; i < 40; i++)
        prompt[i] = (i * 37 + 5) % 128;
    if (kvfp8_platforms_builtin(&ps) != KVFP8_OK || kvfp8_issues_builtin(&db) != KVFP8_OK)
        return -1;
    return kvfp8_model_create(&mc, &small) == KVFP8_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    kvfp8_model_destroy(small);
    kvfp8_platforms_free(&ps);
    kvfp8_issues_free(&db);
    return 0;
}

static const kvfp8_platform *P(const char *name) {
    const kvfp8_platform *p = kvfp8_platform_find(&ps, name);
    if (!p)
        fail_msg("%s", kvfp8_last_error());
    return p;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = 0;
    fclose(f);
    return buf;
}

/* ---- data ------------------------------------------------------------------------------- */

static void test_embedded_copy_equals_the_data_files(void **state) {
    (void)state;
    char *a = read_file("faults/data/platforms.json"), *b = read_file("faults/data/known_issues.json");
    if (!a || !b)
        fail_msg("run from the repository root: faults/data/*.json not found");
    if (strcmp(a, kvfp8_platforms_builtin_json()) || strcmp(b, kvfp8_issues_builtin_json()))
        fail_msg("faults/data_embedded.c is stale: run scripts/embed-faults-data.py");
    free(a), free(b);
}

static void test_builtin_profiles(void **state) {
    (void)state;
    static const char *const ids[] = {"w7900-rocm6.3-vllm0.7.2", "w7900-rocm-swconvert", "mi300x-gfx942-rocm6.3-vllm0.7.2",
                                      "mi250-gfx90a-rocm6.3-vllm0.7.2", "a100-sm80-vllm0.6", "l40s-sm89-vllm0.7.2",
                                      "h100-sm90-vllm0.7.2"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        const kvfp8_platform *p = P(ids[i]);
        assert_true(p->n_sources > 0);
        for (int k = 0; k < KVFP8_PATH_COUNT; k++)
            assert_true(p->paths[k].source[0]); /* every fact carries its source */
    }
    assert_ptr_equal(P("sm_90"), P("h100-sm90-vllm0.7.2"));
    assert_ptr_equal(P("sm_80"), P("a100-sm80-vllm0.6"));
    assert_ptr_equal(P("gfx1100"), P("w7900-rocm6.3-vllm0.7.2"));
    assert_true(P("gfx942")->fp8_fnuz);
    assert_false(P("w7900")->fp8_fnuz);
    assert_int_equal(P("w7900")->conversion, KVFP8_PROFILE_HIP);
    assert_null(kvfp8_platform_find(&ps, "gfx9999"));
    assert_non_null(strstr(kvfp8_last_error(), "unknown platform 'gfx9999' (w7900-rocm6.3-vllm0.7.2, "));
    assert_true(db.count >= 7);
}

/* A minimal valid profile document with one hole to fill. */
static const char *const TEMPLATE =
    "{\"schema\": \"kvfp8-platforms/1\", \"profiles\": [{\"id\": \"x\", \"status\": \"derived\", \"summary\": \"s\","
    " \"vendor\": \"v\", \"arch\": \"a\", \"device\": \"d\", \"runtime\": \"r\","
    " \"engine\": {\"name\": \"vllm\", \"version\": \"1\", \"generation\": \"V1\"},"
    " \"fp8_means\": \"%s\", \"fp8_means_source\": \"s\", \"conversion_profile\": \"nvidia\", \"startup_rejects\": [],"
    " \"paths\": {\"cache_write\": {\"kernel\": \"k\", \"native\": [\"bf16\", \"fp8e4nv\"], \"software\": [],"
    " \"rejects\": [], \"source\": \"s\"},"
    " \"prefill\": {\"kernel\": \"k\", \"reads_cache\": false, \"native\": [\"bf16\"], \"software\": [], \"rejects\": [],"
    " \"source\": \"s\"},"
    " \"prefix_prefill\": {\"kernel\": \"k\", \"native\": [%s], \"software\": [], \"rejects\": [], \"source\": \"s\"%s},"
    " \"decode\": {\"kernel\": \"k\", \"native\": [\"bf16\", \"fp8e4nv\"], \"software\": [], \"rejects\": [],"
    " \"source\": \"s\"}}, \"sources\": [\"s\"]%s}]}";

static kvfp8_status parse_variant(const char *means, const char *pp_native, const char *pp_extra, const char *extra,
                                  kvfp8_platform_set *out) {
    char text[4096];
    snprintf(text, sizeof text, TEMPLATE, means, pp_native, pp_extra, extra);
    return kvfp8_platforms_parse(text, strlen(text), "t.json", out);
}

static void expect_profile_error(const char *means, const char *pp_native, const char *pp_extra, const char *extra,
                                 const char *needle) {
    kvfp8_platform_set s;
    assert_int_equal(parse_variant(means, pp_native, pp_extra, extra, &s), KVFP8_ERR_FORMAT);
    if (!strstr(kvfp8_last_error(), needle) || strncmp(kvfp8_last_error(), "t.json: ", 8))
        fail_msg("got '%s', want '%s'", kvfp8_last_error(), needle);
    assert_null(s.items);
}

static void test_profile_reader_errors_name_the_field(void **state) {
    (void)state;
    kvfp8_platform_set s;
    assert_int_equal(parse_variant("e4m3fn", "\"bf16\"", "", "", &s), KVFP8_OK);
    assert_int_equal(s.count, 1);
    assert_true(s.items[0].paths[KVFP8_PATH_PREFIX_PREFILL].reads_cache); /* the default */
    kvfp8_platforms_free(&s);
    expect_profile_error("e4m3", "\"bf16\"", "", "", "profiles[0].fp8_means: must be \"e4m3fn\" or \"e4m3fnuz\"");
    expect_profile_error("e4m3fn", "\"fp9\"", "", "", "profiles[0].paths.prefix_prefill.native[0]: unknown encoding 'fp9'");
    expect_profile_error("e4m3fn", "\"bf16\", \"bf16\"", "", "", "native[1]: 'bf16' listed twice");
    expect_profile_error("e4m3fn", "\"bf16\"", ", \"speed\": 1", "", "paths.prefix_prefill: unknown key 'speed'");
    expect_profile_error("e4m3fn", "\"bf16\"", "", ", \"color\": \"red\"", "profiles[0]: unknown key 'color'");
    expect_profile_error("e4m3fn", "\"bf16\"",
                         ", \"unsupported\": {\"failure\": \"boom\", \"message\": \"m\", \"source\": \"s\"}", "",
                         "paths.prefix_prefill.unsupported.failure: must be \"error\" or \"crash\", got 'boom'");
    expect_profile_error("e4m3fn", "\"bf16\"",
                         ", \"unsupported\": {\"failure\": \"crash\", \"message\": \"no {enc}\", \"source\": \"s\"}", "",
                         "unknown placeholder at '{enc}'");
    expect_profile_error("e4m3fn", "\"bf16\"", "", ", \"aliases\": [\"x\"]", "aliases[0]: 'x' is already");
    expect_profile_error("e4m3fn", "\"bf16\"", ", \"reads_cache\": \"yes\"", "", "reads_cache: must be true or false");
    const char *other = "{\"schema\": \"other/1\", \"profiles\": []}";
    assert_int_equal(kvfp8_platforms_parse(other, strlen(other), "t.json", &s), KVFP8_ERR_FORMAT);
    assert_non_null(strstr(kvfp8_last_error(), "schema: expected \"kvfp8-platforms/1\""));
    assert_int_equal(kvfp8_platforms_parse("[1, 2]", 6, "t.json", &s), KVFP8_ERR_FORMAT);
    assert_int_equal(kvfp8_platforms_parse("{\"a\": 1, \"a\": 2}", 16, "t.json", &s), KVFP8_ERR_FORMAT);
    assert_non_null(strstr(kvfp8_last_error(), "t.json: line 1"));
}

static void test_issue_reader_errors(void **state) {
    (void)state;
    kvfp8_issue_db d;
    const char *bad = "{\"schema\": \"kvfp8-known-issues/1\", \"issues\": [{\"id\": \"x#1\", \"title\": \"t\", "
                      "\"category\": \"E\", \"scope\": \"stack\", \"url\": \"u\", \"match\": {}, \"symptom\": \"s\", "
                      "\"cause\": \"c\", \"remedies\": [], \"detector\": \"d\", \"sources\": [\"s\"]}]}";
    assert_int_equal(kvfp8_issues_parse(bad, strlen(bad), "k.json", &d), KVFP8_ERR_FORMAT);
    assert_non_null(strstr(kvfp8_last_error(), "k.json: issues[0].category: one of A, B, C, D, got 'E'"));
    const char *bad2 = "{\"schema\": \"kvfp8-known-issues/1\", \"issues\": [{\"id\": \"x#1\", \"title\": \"t\", "
                       "\"category\": \"A\", \"scope\": \"stack\", \"url\": \"u\", \"match\": {\"path_fails\": "
                       "[\"warp\"]}, \"symptom\": \"s\", \"cause\": \"c\", \"remedies\": [], \"detector\": \"d\", "
                       "\"sources\": [\"s\"]}]}";
    assert_int_equal(kvfp8_issues_parse(bad2, strlen(bad2), "k.json", &d), KVFP8_ERR_FORMAT);
    assert_non_null(strstr(kvfp8_last_error(), "issues[0].match.path_fails[0]: unknown kernel path 'warp'"));
}


/* ---- reader errors, by mutating the built-in documents ------------------------------------- */

typedef void (*mutate_fn)(json_t *root);

static void expect_mutation(int issues, mutate_fn f, const char *needle) {
    json_error_t e;
    json_t *root = json_loads(issues ? kvfp8_issues_builtin_json() : kvfp8_platforms_builtin_json(), 0, &e);
    assert_non_null(root);
    f(root);
    char *text = json_dumps(root, 0);
    json_decref(root);
    kvfp8_status st;
    if (issues) {
        kvfp8_issue_db d;
        st = kvfp8_issues_parse(text, strlen(text), "m.json", &d);
        assert_null(d.items);
    } else {
        kvfp8_platform_set s;
        st = kvfp8_platforms_parse(text, strlen(text), "m.json", &s);
        assert_null(s.items);
    }
    free(text);
    assert_int_not_equal(st, KVFP8_OK);
    if (!strstr(kvfp8_last_error(), needle))
        fail_msg("got '%s', want '%s'", kvfp8_last_error(), needle);
}

static json_t *prof0(json_t *root) { return json_array_get(json_object_get(root, "profiles"), 0); }
static json_t *path0(json_t *root, const char *path) {
    return json_object_get(json_object_get(prof0(root), "paths"), path);
}
static json_t *issue0(json_t *root) { return json_array_get(json_object_get(root, "issues"), 0); }

static void m_not_object(json_t *r) { json_array_set_new(json_object_get(r, "profiles"), 0, json_integer(5)); }
static void m_empty_id(json_t *r) { json_object_set_new(prof0(r), "id", json_string("")); }
static void m_status(json_t *r) { json_object_set_new(prof0(r), "status", json_string("maybe")); }
static void m_conversion(json_t *r) { json_object_set_new(prof0(r), "conversion_profile", json_string("amd")); }
static void m_engine_type(json_t *r) { json_object_set_new(prof0(r), "engine", json_string("vllm")); }
static void m_engine_key(json_t *r) { json_object_set_new(json_object_get(prof0(r), "engine"), "x", json_true()); }
static void m_no_decode(json_t *r) { json_object_del(json_object_get(prof0(r), "paths"), "decode"); }
static void m_extra_path(json_t *r) { json_object_set_new(json_object_get(prof0(r), "paths"), "encode", json_object()); }
static void m_write_no_read(json_t *r) { json_object_set_new(path0(r, "cache_write"), "reads_cache", json_false()); }
static void m_path_array(json_t *r) { json_object_set_new(json_object_get(prof0(r), "paths"), "decode", json_array()); }
static void m_reject_type(json_t *r) { json_array_set_new(json_object_get(path0(r, "decode"), "rejects"), 0, json_string("x")); }
static void m_reject_dtype(json_t *r) {
    json_object_set_new(json_array_get(json_object_get(path0(r, "decode"), "rejects"), 0), "kv_cache_dtype",
                        json_string("fp9"));
}
static void m_reject_many(json_t *r) {
    json_t *a = json_object_get(path0(r, "decode"), "rejects");
    for (int i = 0; i < 4; i++)
        json_array_append(a, json_array_get(a, 0));
}
static void m_reject_twice(json_t *r) {
    json_t *a = json_object_get(path0(r, "decode"), "rejects");
    json_array_append(a, json_array_get(a, 0));
}
static void m_unsupported_dtype(json_t *r) {
    json_object_set_new(json_object_get(path0(r, "prefix_prefill"), "unsupported"), "kv_cache_dtype",
                        json_string("fp8"));
}
static void m_software_native(json_t *r) { json_array_append_new(json_object_get(path0(r, "decode"), "software"), json_string("bf16")); }
static void m_no_profiles(json_t *r) { json_array_clear(json_object_get(r, "profiles")); }
static void m_dup_id(json_t *r) {
    json_object_set_new(json_array_get(json_object_get(r, "profiles"), 1), "id", json_string("w7900-rocm6.3-vllm0.7.2"));
}
static void m_summary_type(json_t *r) { json_object_set_new(prof0(r), "summary", json_integer(7)); }
static void m_summary_long(json_t *r) {
    char t[400];
    memset(t, 'x', 399);
    t[399] = 0;
    json_object_set_new(prof0(r), "summary", json_string(t));
}
static void m_summary_nul(json_t *r) { json_object_set_new(prof0(r), "summary", json_stringn("a\0b", 3)); }
static void m_aliases_type(json_t *r) { json_object_set_new(prof0(r), "aliases", json_string("x")); }
static void m_aliases_many(json_t *r) {
    json_t *a = json_array();
    for (int i = 0; i < 9; i++) {
        char n[16];
        snprintf(n, sizeof n, "a%d", i);
        json_array_append_new(a, json_string(n));
    }
    json_object_set_new(prof0(r), "aliases", a);
}
static void m_aliases_int(json_t *r) { json_object_set_new(prof0(r), "aliases", json_pack("[i]", 1)); }
static void m_aliases_long(json_t *r) {
    json_object_set_new(prof0(r), "aliases", json_pack("[s]", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}
static void m_no_sources(json_t *r) { json_object_del(prof0(r), "sources"); }
static void m_no_paths(json_t *r) { json_object_del(prof0(r), "paths"); }
static void m_paths_array(json_t *r) { json_object_set_new(prof0(r), "paths", json_array()); }
static void i_not_object(json_t *r) { json_array_set_new(json_object_get(r, "issues"), 0, json_integer(1)); }
static void i_empty_id(json_t *r) { json_object_set_new(issue0(r), "id", json_string("")); }
static void i_scope(json_t *r) { json_object_set_new(issue0(r), "scope", json_string("local")); }
static void i_no_sources(json_t *r) { json_object_set_new(issue0(r), "sources", json_array()); }
static void i_source_int(json_t *r) { json_object_set_new(issue0(r), "sources", json_pack("[i]", 3)); }
static void i_schema(json_t *r) { json_object_set_new(r, "schema", json_string("other")); }
static void i_dup(json_t *r) {
    json_object_set_new(json_array_get(json_object_get(r, "issues"), 1), "id", json_string("vllm#13147"));
}
static void i_match_type(json_t *r) { json_object_set_new(issue0(r), "match", json_array()); }
static void i_match_bool(json_t *r) { json_object_set_new(json_object_get(issue0(r), "match"), "kv_fp8", json_string("yes")); }
static void i_match_key(json_t *r) { json_object_set_new(json_object_get(issue0(r), "match"), "gpu", json_true()); }
/* the document checks both readers share (kvfp8_jf_load_document) */
static void d_top_key(json_t *r) { json_object_set_new(r, "extra", json_true()); }
static void d_no_list_p(json_t *r) { json_object_del(r, "profiles"); }
static void d_no_list_i(json_t *r) { json_object_del(r, "issues"); }
static void d_list_type_p(json_t *r) { json_object_set_new(r, "profiles", json_object()); }
static void d_list_type_i(json_t *r) { json_object_set_new(r, "issues", json_string("none")); }
static void i_too_many(json_t *r) {
    json_t *a = json_object_get(r, "issues");
    while (json_array_size(a) <= 1024)
        json_array_append(a, json_array_get(a, 0));
}

static void test_reader_errors_by_mutation(void **state) {
    (void)state;
    expect_mutation(0, m_not_object, "m.json: profiles[0]: must be an object");
    expect_mutation(0, m_empty_id, "profiles[0].id: empty");
    expect_mutation(0, m_status, "profiles[0].status: must be \"reported\" or \"derived\", got 'maybe'");
    expect_mutation(0, m_conversion, "conversion_profile: unknown FP8 profile 'amd'");
    expect_mutation(0, m_engine_type, "profiles[0].engine: must be an object");
    expect_mutation(0, m_engine_key, "profiles[0].engine: unknown key 'x'");
    expect_mutation(0, m_no_decode, "profiles[0].paths.decode: missing");
    expect_mutation(0, m_extra_path, "profiles[0].paths: unknown key 'encode'");
    expect_mutation(0, m_write_no_read, "the cache write always touches the cache");
    expect_mutation(0, m_path_array, "paths.decode: must be an object");
    expect_mutation(0, m_reject_type, "paths.decode.rejects[0]: must be an object");
    expect_mutation(0, m_reject_dtype, "rejects[0].kv_cache_dtype: unknown kv_cache_dtype 'fp9'");
    expect_mutation(0, m_reject_many, "paths.decode.rejects: more than 4 entries");
    expect_mutation(0, m_reject_twice, "'fp8_e5m2' is rejected twice");
    expect_mutation(0, m_unsupported_dtype, "prefix_prefill.unsupported.kv_cache_dtype: not used here");
    expect_mutation(0, m_software_native, "paths.decode.software[1]: 'bf16' is also native");
    expect_mutation(0, m_no_profiles, "profiles: 1 to 256 profiles, got 0");
    expect_mutation(0, m_dup_id, "profiles[1].id: 'w7900-rocm6.3-vllm0.7.2' is already a profile id or alias");
    expect_mutation(0, m_summary_type, "profiles[0].summary: must be a string");
    expect_mutation(0, m_summary_long, "profiles[0].summary: longer than 255 bytes");
    expect_mutation(0, m_summary_nul, "\\u0000 is not allowed"); /* jansson refuses it while parsing */
    expect_mutation(0, m_aliases_type, "profiles[0].aliases: must be an array of strings");
    expect_mutation(0, m_aliases_many, "profiles[0].aliases: more than 8 entries");
    expect_mutation(0, m_aliases_int, "profiles[0].aliases[0]: must be a string");
    expect_mutation(0, m_aliases_long, "profiles[0].aliases[0]: longer than 31 bytes");
    expect_mutation(0, m_no_sources, "profiles[0].sources: missing");
    expect_mutation(0, m_no_paths, "profiles[0].paths: missing");
    expect_mutation(0, m_paths_array, "profiles[0].paths: must be an object");
    expect_mutation(1, i_not_object, "m.json: issues[0]: must be an object");
    expect_mutation(1, i_empty_id, "issues[0].id: empty");
    expect_mutation(1, i_scope, "issues[0].scope: \"stack\" or \"class\", got 'local'");
    expect_mutation(1, i_no_sources, "issues[0].sources: every entry names at least one source");
    expect_mutation(1, i_source_int, "issues[0].sources[0]: must be a string");
    expect_mutation(1, i_schema, "schema: expected \"kvfp8-known-issues/1\"");
    expect_mutation(0, d_top_key, "m.json: (top): unknown key 'extra'");
    expect_mutation(1, d_top_key, "m.json: (top): unknown key 'extra'");
    expect_mutation(0, d_no_list_p, "m.json: (top).profiles: missing");
    expect_mutation(1, d_no_list_i, "m.json: (top).issues: missing");
    expect_mutation(0, d_list_type_p, "m.json: (top).profiles: must be an array");
    expect_mutation(1, d_list_type_i, "m.json: (top).issues: must be an array");
    expect_mutation(1, i_dup, "issues[1].id: 'vllm#13147' appears twice");
    expect_mutation(1, i_match_type, "issues[0].match: must be an object");
    expect_mutation(1, i_match_bool, "issues[0].match.kv_fp8: must be true or false");
    expect_mutation(1, i_match_key, "issues[0].match: unknown key 'gpu'");
    expect_mutation(1, i_too_many, "issues: at most 1024 entries");
    /* default labels, files */
    kvfp8_platform_set s;
    kvfp8_issue_db d;
    assert_int_not_equal(kvfp8_platforms_parse("{", 1, NULL, &s), KVFP8_OK);
    assert_int_equal(strncmp(kvfp8_last_error(), "platforms: line 1", 17), 0);
    assert_int_not_equal(kvfp8_issues_parse("{}", 2, NULL, &d), KVFP8_OK);
    assert_int_equal(strncmp(kvfp8_last_error(), "known_issues: ", 14), 0);
    assert_int_equal(kvfp8_platforms_load_file("faults/data/platforms.json", &s), KVFP8_OK);
    assert_int_equal(s.count, ps.count);
    kvfp8_platforms_free(&s);
    assert_int_equal(kvfp8_issues_load_file("faults/data/known_issues.json", &d), KVFP8_OK);
    assert_int_equal(d.count, db.count);
    kvfp8_issues_free(&d);
    assert_int_equal(kvfp8_platforms_load_file("faults/data/nope.json", &s), KVFP8_ERR_IO);
    assert_non_null(strstr(kvfp8_last_error(), "faults/data/nope.json: "));
    assert_int_equal(kvfp8_issues_load_file("faults/data/nope.json", &d), KVFP8_ERR_IO);
}

/* ---- the model at its edges -------------------------------------------------------------- */

static int crash_calls;
static void on_crash_count(void *ctx, const char *site, const kvfp8_capability *cap) {
    (void)ctx;
    (void)cap;
    assert_string_equal(site, KVFP8_SITE_PREFIX_PREFILL);
    crash_calls++;
}

static void rejects_e5m2_at_startup(json_t *r) {
    json_object_set_new(prof0(r), "startup_rejects",
                        json_pack("[{s:s, s:s, s:s, s:s}]", "kv_cache_dtype", "fp8_e5m2", "message",
                                  "no {kv_cache_dtype} here", "failure", "error", "source", "test"));
}

static void only_bf16_without_prefix(json_t *r) {
    /* no FP8 anywhere, and a prefix-prefill path that reads nothing */
    json_object_set_new(path0(r, "cache_write"), "software", json_array());
    json_object_set_new(path0(r, "cache_write"), "rejects", json_array());
    json_object_set_new(path0(r, "decode"), "rejects", json_array());
    json_object_set_new(path0(r, "prefix_prefill"), "native", json_array());
}

static void nothing_runs(json_t *r) {
    only_bf16_without_prefix(r);
    json_object_set_new(path0(r, "decode"), "native", json_array());
    json_object_set_new(path0(r, "decode"), "software", json_array());
}

static void load_mutated(mutate_fn f, kvfp8_platform_set *out) {
    json_t *root = json_loads(kvfp8_platforms_builtin_json(), 0, NULL);
    f(root);
    char *text = json_dumps(root, 0);
    json_decref(root);
    assert_int_equal(kvfp8_platforms_parse(text, strlen(text), "m.json", out), KVFP8_OK);
    free(text);
}

static void test_model_edges(void **state) {
    (void)state;
    kvfp8_kv_storage st;
    memset(&st, 0, sizeof st);
    st.dtype = KVFP8_DTYPE_F16;
    assert_string_equal(kvfp8_encoding_of(&st), "fp16");
    st.dtype = KVFP8_DTYPE_F32;
    assert_string_equal(kvfp8_encoding_of(&st), "fp32");
    st.is_fp8 = 1;
    st.fp8.format = KVFP8_E5M2FNUZ;
    assert_string_equal(kvfp8_encoding_of(&st), "fp8e5b16");
    assert_int_equal(kvfp8_path_of_site(KVFP8_SITE_POOL_ALLOC), -1);
    kvfp8_kernel_path kp;
    assert_int_equal(kvfp8_path_parse("warp", &kp), KVFP8_ERR_INVALID);
    assert_string_equal(kvfp8_path_name((kvfp8_kernel_path)9), "?");
    assert_string_equal(kvfp8_failure_name(KVFP8_FAILURE_CRASH), "crash");
    /* an unknown dtype is a startup refusal with vLLM's message */
    kvfp8_capability c;
    int path = -2;
    kvfp8_platform_check_config(P("sm_90"), "fp9", 0, 0, KVFP8_DTYPE_BF16, &c, &path);
    assert_false(c.ok);
    assert_int_equal(path, -1);
    assert_string_equal(c.message, "Unsupported fp8 kv cache data type: fp9");
    /* the hook: a crash goes to on_crash; a site that is no backend call passes */
    kvfp8_platform_session s;
    memset(&s, 0, sizeof s);
    kvfp8_engine_config ec;
    kvfp8_engine_default_config(&ec);
    ec.kv_cache_dtype = "fp8";
    s.on_crash = on_crash_count;
    assert_int_equal(kvfp8_platform_attach(&s, P("w7900"), &ec), KVFP8_OK);
    kvfp8_backend_query q;
    memset(&q, 0, sizeof q);
    q.storage.is_fp8 = 1;
    q.storage.fp8.format = KVFP8_E4M3FN;
    assert_int_equal(kvfp8_platform_hook(&s, KVFP8_SITE_POOL_ALLOC, &q), KVFP8_OK);
    assert_int_equal(kvfp8_platform_hook(&s, KVFP8_SITE_PREFIX_PREFILL, &q), KVFP8_ERR_UNSUPPORTED);
    assert_int_equal(crash_calls, 1);
    assert_true(s.crashed);
    /* startup rejections, with a {kv_cache_dtype} message */
    kvfp8_platform_set m;
    load_mutated(rejects_e5m2_at_startup, &m);
    kvfp8_engine_default_config(&ec);
    ec.kv_cache_dtype = "fp8_e5m2";
    assert_int_equal(kvfp8_platform_attach(&s, &m.items[0], &ec), KVFP8_ERR_UNSUPPORTED);
    assert_string_equal(kvfp8_last_error(), "no fp8_e5m2 here");
    assert_string_equal(s.failed_site, KVFP8_SITE_ENGINE_STARTUP);
    kvfp8_probe_config pc;
    small_probe(&pc, &m.items[0], "fp8_e5m2", 0);
    kvfp8_probe_result r;
    assert_int_equal(kvfp8_probe_run(&pc, &r), KVFP8_OK);
    assert_int_equal(r.outcome, KVFP8_OUTCOME_ERROR);
    assert_int_equal(r.failed_request, 0);
    assert_string_equal(r.site, KVFP8_SITE_ENGINE_STARTUP);
    assert_non_null(strstr(r.log, "ERROR: engine startup failed: no fp8_e5m2 here"));
    kvfp8_probe_result_free(&r);
    static kvfp8_plan pl;
    kvfp8_plan_request rq;
    kvfp8_plan_default_request(&rq);
    rq.workload = KVFP8_WORKLOAD_MEMORY_BOUND;
    assert_int_equal(kvfp8_plan_make(&m.items[0], NULL, &rq, &pl), KVFP8_OK);
    assert_true(has_reason(&pl, "fp8_e5m2 (E5M2) with prefix caching: the stack refuses it at startup: 'no fp8_e5m2 here'"));
    assert_int_equal(pl.n_issues, 0);
    kvfp8_platforms_free(&m);
    /* only BF16 without prefix caching runs: the first that runs, whatever the order */
    load_mutated(only_bf16_without_prefix, &m);
    assert_int_equal(kvfp8_plan_make(&m.items[0], &db, &rq, &pl), KVFP8_OK);
    assert_string_equal(pl.kv_cache_dtype, "auto");
    assert_false(pl.enable_prefix_caching);
    assert_true(has_reason(&pl, "auto (BF16) with prefix caching: the prefix_prefill path"));
    assert_true(has_reason(&pl, "is the first configuration in the workload's order that runs on every path"));
    kvfp8_platforms_free(&m);
    load_mutated(nothing_runs, &m);
    assert_int_equal(kvfp8_plan_make(&m.items[0], &db, &rq, &pl), KVFP8_ERR_UNSUPPORTED);
    assert_non_null(strstr(kvfp8_last_error(), "no configuration runs"));
    kvfp8_platforms_free(&m);
    rq.num_layers = 0;
    assert_int_equal(kvfp8_plan_make(P("sm_90"), &db, &rq, &pl), KVFP8_ERR_INVALID);
    kvfp8_workload w;
    assert_int_equal(kvfp8_workload_parse("fast", &w), KVFP8_ERR_INVALID);
    assert_string_equal(kvfp8_workload_name((kvfp8_workload)7), "?");
    assert_string_equal(kvfp8_check_state_name((kvfp8_check_state)7), "?");
    /* a log with FP8 but neither a scale line nor a pool line */
    const char *bare = "Initializing x kv_cache_dtype=fp8, enable_prefix_caching=True, block_size=4\n";
    kvfp8_checklist cl;
    assert_int_equal(kvfp8_checklist_from_log(bare, strlen(bare), NULL, &cl), KVFP8_OK);
    assert_non_null(strstr(cl.items[1].detail, "no line says which scales are in use"));
    assert_non_null(strstr(cl.items[2].detail, "no \"KV cache pool\" line"));
}

/* ---- decisions ----------------------------------------------------------------------------- */

static void test_capability_decisions(void **state) {
    (void)state;
    kvfp8_capability c;
    const kvfp8_platform *w = P("w7900-rocm6.3-vllm0.7.2");
    kvfp8_platform_check(w, KVFP8_PATH_PREFIX_PREFILL, "fp8", "fp8e4nv", &c);
    assert_false(c.ok);
    assert_int_equal(c.failure, KVFP8_FAILURE_CRASH);
    assert_string_equal(c.error_type, "ValueError");
    assert_string_equal(c.message, W7900_TEXT);
    kvfp8_platform_check(w, KVFP8_PATH_PREFIX_PREFILL, "fp8_e5m2", "fp8e5", &c);
    assert_true(c.ok); /* Triton reads E5M2 on gfx11 ... */
    kvfp8_platform_check(w, KVFP8_PATH_DECODE, "fp8_e5m2", "fp8e5", &c);
    assert_false(c.ok); /* ... the decode path refuses it */
    assert_true(c.rejected);
    assert_string_equal(c.message, "Unsupported data type of kv cache: fp8_e5m2");
    kvfp8_platform_check(w, KVFP8_PATH_DECODE, "fp8", "fp8e4nv", &c);
    assert_true(c.ok && c.software);
    kvfp8_platform_check(w, KVFP8_PATH_PREFILL, "fp8", "fp8e4nv", &c);
    assert_true(c.ok); /* reads only the new tokens' own K/V */
    kvfp8_platform_check(P("sm_80"), KVFP8_PATH_PREFIX_PREFILL, "fp8", "fp8e4nv", &c);
    assert_string_equal(c.message, "fp8e4nv data type is not supported on CUDA arch < 89");
    kvfp8_platform_check(P("sm_80"), KVFP8_PATH_PREFIX_PREFILL, "fp8_e5m2", "fp8e5", &c);
    assert_true(c.ok);
    kvfp8_platform_check(P("w7900-rocm-swconvert"), KVFP8_PATH_PREFIX_PREFILL, "fp8", "fp8e4nv", &c);
    assert_true(c.ok && c.software);
    kvfp8_platform_check(P("gfx942"), KVFP8_PATH_PREFIX_PREFILL, "fp8", "fp8e4b8", &c);
    assert_true(c.ok && !c.software);
    const char *enc;
    assert_int_equal(kvfp8_platform_storage_encoding(P("gfx942"), "fp8", KVFP8_DTYPE_BF16, &enc), KVFP8_OK);
    assert_string_equal(enc, "fp8e4b8");
    assert_int_equal(kvfp8_platform_storage_encoding(P("sm_90"), "auto", KVFP8_DTYPE_BF16, &enc), KVFP8_OK);
    assert_string_equal(enc, "bf16");
    /* whole configurations, as the plan sees them */
    int path = -2;
    kvfp8_platform_check_config(w, "fp8", 1, 0, KVFP8_DTYPE_BF16, &c, &path);
    assert_false(c.ok);
    assert_int_equal(path, KVFP8_PATH_PREFIX_PREFILL);
    kvfp8_platform_check_config(w, "fp8", 0, 0, KVFP8_DTYPE_BF16, &c, &path);
    assert_true(c.ok && c.software);
    kvfp8_platform_check_config(w, "fp8", 0, 1, KVFP8_DTYPE_BF16, &c, &path); /* chunked prefill uses that path too */
    assert_false(c.ok);
    kvfp8_platform_check_config(w, "auto", 1, 0, KVFP8_DTYPE_BF16, &c, &path);
    assert_true(c.ok);
    for (size_t i = 0; i < ps.count; i++)
        for (int prefix = 0; prefix <= 1; prefix++) {
            kvfp8_platform_check_config(&ps.items[i], "auto", prefix, 0, KVFP8_DTYPE_BF16, &c, &path);
            assert_true(c.ok); /* BF16 runs everywhere */
        }
}

static void test_known_issue_matching(void **state) {
    (void)state;
    const kvfp8_known_issue *i13147 = NULL, *i7714 = NULL, *i45562 = NULL;
    for (size_t i = 0; i < db.count; i++) {
        if (!strcmp(db.items[i].id, "vllm#13147"))
            i13147 = &db.items[i];
        if (!strcmp(db.items[i].id, "vllm#7714"))
            i7714 = &db.items[i];
        if (!strcmp(db.items[i].id, "vllm#45562"))
            i45562 = &db.items[i];
    }
    assert_non_null(i13147);
    assert_non_null(i7714);
    assert_non_null(i45562);
    kvfp8_issue_query q = {P("w7900"), "fp8", 1, 0, 0};
    assert_true(kvfp8_issue_matches(i13147, &q));
    q.enable_prefix_caching = 0;
    assert_false(kvfp8_issue_matches(i13147, &q)); /* FP8 alone serves */
    q.enable_prefix_caching = 1;
    q.kv_cache_dtype = "auto";
    assert_false(kvfp8_issue_matches(i13147, &q));
    q.kv_cache_dtype = "fp8";
    q.platform = P("w7900-rocm-swconvert"); /* the capability model says it runs there */
    assert_false(kvfp8_issue_matches(i13147, &q));
    q.platform = P("sm_90");
    assert_false(kvfp8_issue_matches(i13147, &q));
    q.platform = NULL;
    assert_false(kvfp8_issue_matches(i13147, &q));
    kvfp8_issue_query q2 = {P("sm_80"), "fp8", 0, 1, 0}; /* chunked prefill alone reaches the path */
    assert_true(kvfp8_issue_matches(i7714, &q2));
    q2.chunked_prefill = 0;
    assert_false(kvfp8_issue_matches(i7714, &q2));
    kvfp8_issue_query q3 = {P("gfx942"), "fp8", 0, 0, 0};
    assert_true(kvfp8_issue_matches(i45562, &q3));
    q3.platform = P("w7900");
    assert_false(kvfp8_issue_matches(i45562, &q3));
}

/* ---- the crash path in the engine ---------------------------------------------------------------- */

static void small_probe(kvfp8_probe_config *c, const kvfp8_platform *p, const char *dtype, int prefix) {
    kvfp8_probe_default_config(c);
    c->model = small;
    c->platform = p;
    c->kv_cache_dtype = dtype;
    c->enable_prefix_caching = prefix;
    c->prompt = prompt;
    c->n_prompt = 40;
    c->max_tokens = 3;
    c->capture_log = 1;
}

static void test_w7900_crash_comes_out_of_the_profile(void **state) {
    (void)state;
    /* in one process: the hook reports the crash instead of dying */
    kvfp8_engine_config ec;
    kvfp8_engine_default_config(&ec);
    ec.kv_cache_dtype = "fp8";
    ec.enable_prefix_caching = 1;
    kvfp8_platform_session s;
    memset(&s, 0, sizeof s);
    assert_int_equal(kvfp8_platform_attach(&s, P("w7900-rocm6.3-vllm0.7.2"), &ec), KVFP8_OK);
    assert_int_equal(ec.fp8_profile, KVFP8_PROFILE_HIP);
    kvfp8_engine *e;
    assert_int_equal(kvfp8_engine_create(&ec, small, &e), KVFP8_OK); /* the server starts */
    kvfp8_request_result r;
    assert_int_equal(kvfp8_engine_generate(e, "r1", prompt, 40, 3, &r), KVFP8_OK); /* the first request is fine */
    assert_false(s.crashed);
    assert_true(s.software_conversions > 0); /* the decode path converted FP8 in software */
    assert_int_equal(kvfp8_engine_generate(e, "r2", prompt, 40, 3, &r), KVFP8_ERR_UNSUPPORTED);
    assert_string_equal(kvfp8_last_error(), W7900_TEXT);
    assert_true(s.crashed);
    assert_string_equal(s.failed_site, KVFP8_SITE_PREFIX_PREFILL);
    kvfp8_engine_destroy(e);
    /* either flag alone serves both requests */
    static const char *const dt[2] = {"fp8", "auto"};
    for (int k = 0; k < 2; k++) {
        kvfp8_probe_config c;
        small_probe(&c, P("w7900"), dt[k], k);
        kvfp8_probe_result pr;
        assert_int_equal(kvfp8_probe_run(&c, &pr), KVFP8_OK);
        assert_int_equal(pr.outcome, KVFP8_OUTCOME_OK);
        assert_int_equal(pr.n_done, 2);
        assert_true(k == 0 ? pr.req[1].hit_tokens == 0 : pr.req[1].hit_tokens > 0);
        kvfp8_probe_result_free(&pr);
    }
    /* fp8_e5m2 is refused at startup (the canary's write and read back reach the paths) */
    kvfp8_probe_config c;
    small_probe(&c, P("w7900"), "fp8_e5m2", 1);
    kvfp8_probe_result pr;
    assert_int_equal(kvfp8_probe_run(&c, &pr), KVFP8_OK);
    assert_int_equal(pr.outcome, KVFP8_OUTCOME_ERROR);
    assert_int_equal(pr.failed_request, 0);
    assert_string_equal(pr.error, "Unsupported data type of kv cache: fp8_e5m2");
    kvfp8_probe_result_free(&pr);
}

/* ---- the matrix -------------------------------------------------------------------------------------- */

static void run_matrix(const kvfp8_platform *p, int chunk, kvfp8_matrix *m) {
    kvfp8_probe_config c;
    small_probe(&c, p, "auto", 0);
    c.capture_log = 0;
    c.max_chunk_tokens = chunk;
    c.timeout_s = 60;
    assert_int_equal(kvfp8_matrix_run(&c, NULL, m), KVFP8_OK);
}

static void test_matrix_w7900_is_interaction(void **state) {
    (void)state;
    kvfp8_matrix m;
    run_matrix(P("w7900-rocm6.3-vllm0.7.2"), 0, &m);
    assert_string_equal(m.classification, "interaction");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m.cells[i].result.outcome, KVFP8_OUTCOME_OK);
        assert_int_equal(m.cells[i].result.n_done, 2);
    }
    const kvfp8_probe_result *r = &m.cells[3].result;
    assert_string_equal(m.cells[3].kv_cache_dtype, "fp8");
    assert_true(m.cells[3].enable_prefix_caching);
    assert_int_equal(r->outcome, KVFP8_OUTCOME_CRASH);
    assert_int_equal(r->signal, SIGABRT); /* the worker really died */
    assert_int_equal(r->failed_request, 2);
    assert_int_equal(r->n_done, 1);
    assert_string_equal(r->error, W7900_TEXT);
    assert_string_equal(r->error_type, "ValueError");
    assert_string_equal(r->site, KVFP8_SITE_PREFIX_PREFILL);
    assert_true(m.cells[2].result.req[1].hit_tokens > 0); /* Test 3 hit the cache */
    kvfp8_matrix_free(&m);
}

static void test_matrix_other_platforms(void **state) {
    (void)state;
    kvfp8_matrix m;
    run_matrix(P("sm_90"), 0, &m);
    assert_string_equal(m.classification, "clean");
    kvfp8_matrix_free(&m);
    run_matrix(P("w7900-rocm-swconvert"), 0, &m);
    assert_string_equal(m.classification, "clean");
    kvfp8_matrix_free(&m);
    /* vLLM #7714's picture: with chunked prefill FP8 alone fails on the first request */
    run_matrix(P("sm_80"), 16, &m);
    assert_string_equal(m.classification, "dtype-specific");
    assert_int_equal(m.cells[1].result.failed_request, 1);
    assert_string_equal(m.cells[1].result.error, "fp8e4nv data type is not supported on CUDA arch < 89");
    assert_int_equal(m.cells[2].result.outcome, KVFP8_OUTCOME_OK);
    kvfp8_matrix_free(&m);
}

static void test_matrix_prefix_specific_and_baseline(void **state) {
    (void)state;
    kvfp8_platform_set s;
    /* a stack whose prefix-prefill path cannot read bf16 */
    assert_int_equal(parse_variant("e4m3fn", "\"fp8e4nv\"",
                                   ", \"unsupported\": {\"failure\": \"error\", \"message\": \"cannot read {encoding}\","
                                   " \"source\": \"s\"}",
                                   "", &s),
                     KVFP8_OK);
    kvfp8_matrix m;
    run_matrix(&s.items[0], 0, &m);
    assert_string_equal(m.classification, "prefix-specific");
    assert_int_equal(m.cells[2].result.outcome, KVFP8_OUTCOME_ERROR);
    assert_string_equal(m.cells[2].result.error, "cannot read bf16");
    kvfp8_matrix_free(&m);
    /* and one whose decode path cannot read bf16: nothing works */
    s.items[0].paths[KVFP8_PATH_DECODE].n_native = 0;
    run_matrix(&s.items[0], 0, &m);
    assert_string_equal(m.classification, "baseline");
    kvfp8_matrix_free(&m);
    kvfp8_platforms_free(&s);
}

static void test_matrix_classification_table(void **state) {
    (void)state;
    static const struct {
        int f[4];
        const char *want;
    } t[] = {{{0, 0, 0, 0}, "clean"},          {{0, 0, 0, 1}, "interaction"},    {{0, 1, 0, 0}, "dtype-specific"},
             {{0, 1, 0, 1}, "dtype-specific"}, {{0, 0, 1, 0}, "prefix-specific"}, {{0, 0, 1, 1}, "prefix-specific"},
             {{0, 1, 1, 1}, "independent"},    {{0, 1, 1, 0}, "independent"},    {{1, 0, 0, 1}, "baseline"},
             {{1, 1, 1, 1}, "baseline"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char why[320];
        assert_string_equal(kvfp8_matrix_classify(t[i].f, why, sizeof why), t[i].want);
        assert_true(strlen(why) > 20);
    }
}

/* ---- the plan ------------------------------------------------------------------------------------- */

static void plan(const char *platform, kvfp8_workload w, uint64_t tokens, kvfp8_plan *out) {
    kvfp8_plan_request rq;
    kvfp8_plan_default_request(&rq);
    rq.workload = w;
    rq.needed_tokens = tokens;
    assert_int_equal(kvfp8_plan_make(P(platform), &db, &rq, out), KVFP8_OK);
}

static int has_reason(const kvfp8_plan *p, const char *needle) {
    for (int i = 0; i < p->n_reasons; i++)
        if (strstr(p->reasons[i], needle))
            return 1;
    return 0;
}

static int cites(const kvfp8_plan *p, const char *id) {
    for (int i = 0; i < p->n_issues; i++)
        if (!strcmp(p->issues[i], id))
            return 1;
    return 0;
}

static void test_plan_gives_the_seed_answers_on_the_w7900(void **state) {
    (void)state;
    static kvfp8_plan p;
    plan("w7900-rocm6.3-vllm0.7.2", KVFP8_WORKLOAD_MEMORY_BOUND, 0, &p);
    assert_string_equal(p.kv_cache_dtype, "fp8");
    assert_false(p.enable_prefix_caching);
    assert_true(p.affected);
    assert_true(has_reason(&p, W7900_TEXT));
    assert_true(has_reason(&p, "fp8_e5m2 (E5M2) with prefix caching: refused by the cache_write and decode paths: "
                               "'Unsupported data type of kv cache: fp8_e5m2', although the prefix_prefill path reads "
                               "fp8e5 natively"));
    assert_true(has_reason(&p, "keep fp8 (E4M3FN) and drop prefix caching"));
    assert_true(cites(&p, "vllm#13147"));
    /* 2 x 32 x 8 x 128 x 1 byte; 16 GiB / (16 x 65536) blocks of 16 */
    assert_int_equal(p.kv_bytes_per_token, 65536);
    assert_int_equal(p.bf16_bytes_per_token, 131072);
    assert_int_equal(p.capacity_tokens, 262144);
    assert_int_equal(p.bf16_capacity_tokens, 131072);
    assert_non_null(strstr(p.prefix_effect, "prefix caching off"));
    plan("w7900-rocm6.3-vllm0.7.2", KVFP8_WORKLOAD_PREFIX_HEAVY, 0, &p);
    assert_string_equal(p.kv_cache_dtype, "auto");
    assert_true(p.enable_prefix_caching);
    assert_true(has_reason(&p, "keep prefix caching in BF16 and drop FP8"));
    assert_non_null(strstr(p.prefix_effect, "reuses 8176 of them"));
    assert_true(cites(&p, "vllm#13147"));
    /* auto: BF16 holds what is needed -> prefix-heavy; more than BF16 holds -> memory-bound */
    plan("w7900-rocm6.3-vllm0.7.2", KVFP8_WORKLOAD_AUTO, 100000, &p);
    assert_int_equal(p.resolved, KVFP8_WORKLOAD_PREFIX_HEAVY);
    assert_string_equal(p.kv_cache_dtype, "auto");
    plan("w7900-rocm6.3-vllm0.7.2", KVFP8_WORKLOAD_AUTO, 200000, &p);
    assert_int_equal(p.resolved, KVFP8_WORKLOAD_MEMORY_BOUND);
    assert_string_equal(p.kv_cache_dtype, "fp8");
    assert_false(p.enable_prefix_caching);
}

static void test_plan_better_choices_elsewhere(void **state) {
    (void)state;
    static kvfp8_plan p;
    plan("sm_90", KVFP8_WORKLOAD_MEMORY_BOUND, 0, &p);
    assert_string_equal(p.kv_cache_dtype, "fp8");
    assert_true(p.enable_prefix_caching);
    assert_false(p.affected);
    assert_false(cites(&p, "vllm#13147"));
    plan("sm_80", KVFP8_WORKLOAD_PREFIX_HEAVY, 0, &p); /* every path reads E5M2 there */
    assert_string_equal(p.kv_cache_dtype, "fp8_e5m2");
    assert_true(p.enable_prefix_caching);
    assert_true(cites(&p, "vllm#7714"));
    assert_true(has_reason(&p, "2 mantissa bits"));
    plan("w7900-rocm-swconvert", KVFP8_WORKLOAD_MEMORY_BOUND, 0, &p);
    assert_string_equal(p.kv_cache_dtype, "fp8");
    assert_true(p.enable_prefix_caching);
    assert_true(p.software);
    assert_true(has_reason(&p, "in software"));
    plan("gfx942", KVFP8_WORKLOAD_AUTO, 0, &p);
    assert_string_equal(p.kv_cache_dtype, "fp8");
    assert_true(p.enable_prefix_caching);
    assert_true(cites(&p, "vllm#45562"));
    plan("gfx90a", KVFP8_WORKLOAD_MEMORY_BOUND, 0, &p);
    assert_string_equal(p.kv_cache_dtype, "fp8");
    assert_false(p.enable_prefix_caching);
}

static void test_plan_never_chooses_a_rejected_configuration(void **state) {
    (void)state;
    static kvfp8_plan p;
    for (size_t i = 0; i < ps.count; i++)
        for (int w = 0; w < 3; w++)
            for (int t = 0; t < 2; t++) {
                plan(ps.items[i].id, (kvfp8_workload)w, t ? 1000000 : 0, &p);
                kvfp8_capability c;
                int path;
                kvfp8_platform_check_config(&ps.items[i], p.kv_cache_dtype, p.enable_prefix_caching, 0,
                                            KVFP8_DTYPE_BF16, &c, &path);
                if (!c.ok)
                    fail_msg("%s %s: chose %s/%d: %s", ps.items[i].id, kvfp8_workload_name((kvfp8_workload)w),
                             p.kv_cache_dtype, p.enable_prefix_caching, c.message);
                /* memory-bound keeps FP8 wherever any FP8 runs */
                if (w == KVFP8_WORKLOAD_MEMORY_BOUND)
                    assert_int_equal(strncmp(p.kv_cache_dtype, "fp8", 3), 0);
                /* prefix-heavy keeps prefix caching */
                if (w == KVFP8_WORKLOAD_PREFIX_HEAVY)
                    assert_true(p.enable_prefix_caching);
            }
}

/* The plan's choices, through the probe and the checklist (what kvfp8 plan --verify does). */
static void test_plan_choices_verify(void **state) {
    (void)state;
    static kvfp8_plan p;
    for (int w = 0; w < 2; w++) {
        plan("w7900-rocm6.3-vllm0.7.2", (kvfp8_workload)w, 0, &p);
        kvfp8_probe_config c;
        small_probe(&c, P("w7900-rocm6.3-vllm0.7.2"), p.kv_cache_dtype, p.enable_prefix_caching);
        c.calculate_kv_scales = !strcmp(p.kv_cache_dtype, "fp8");
        kvfp8_probe_result r;
        assert_int_equal(kvfp8_probe_run_isolated(&c, &r), KVFP8_OK);
        kvfp8_checklist cl;
        assert_int_equal(kvfp8_checklist_from_log(r.log, r.log_len, p.kv_cache_dtype, &cl), KVFP8_OK);
        for (int i = 0; i < KVFP8_CHECKLIST_ITEMS; i++)
            if (cl.items[i].state == KVFP8_CHECK_FAIL)
                fail_msg("%s: item %d %s: %s", kvfp8_workload_name((kvfp8_workload)w), i + 1, cl.items[i].name,
                         cl.items[i].detail);
        assert_int_equal(cl.n_fail, 0);
        /* memory-bound skips the hit test (prefix caching off); prefix-heavy skips scales and pool */
        assert_int_equal(cl.n_skip, w == 0 ? 1 : 2);
        kvfp8_probe_result_free(&r);
    }
    /* and the combination the plan refused fails the checklist */
    kvfp8_probe_config c;
    small_probe(&c, P("w7900-rocm6.3-vllm0.7.2"), "fp8", 1);
    c.calculate_kv_scales = 1;
    kvfp8_probe_result r;
    assert_int_equal(kvfp8_probe_run_isolated(&c, &r), KVFP8_OK);
    assert_int_equal(r.outcome, KVFP8_OUTCOME_CRASH);
    kvfp8_checklist cl;
    assert_int_equal(kvfp8_checklist_from_log(r.log, r.log_len, "fp8", &cl), KVFP8_OK);
    assert_int_equal(cl.items[3].state, KVFP8_CHECK_FAIL);
    assert_int_equal(cl.items[5].state, KVFP8_CHECK_FAIL);
    assert_non_null(strstr(cl.items[5].detail, "worker died at attn/prefix_prefill"));
    kvfp8_probe_result_free(&r);
}

/* ---- the checklist on hand-written logs -------------------------------------------------------------- */

static const char *const GOOD_LOG =
    "Initializing a V1 LLM engine (kvfp8 0.1.0) with config: model='kvfp8-tiny', dtype=bfloat16, kv_cache_dtype=fp8, "
    "enable_prefix_caching=True, block_size=16, prefix_caching_hash_algo=sha256, calculate_kv_scales=False, "
    "backend=ref\n"
    "Loaded KV cache scales (k_scale, v_scale) for 2 layers, per tensor, from ./ckpt\n"
    "KV cache pool: 129 blocks x 16 tokens, 512 bytes per token (2 x 2 layers x 2 kv heads x 64 x 1 bytes), 1.01 MiB; "
    "a bfloat16 cache at the same settings: 2.02 MiB\n"
    "Request req-1: 186 prompt tokens, 0 from the prefix cache, TTFT 200.00 ms, 4 tokens generated\n"
    "Request req-1 output tokens: 1 2 3 4\n"
    "Request req-2: 186 prompt tokens, 176 from the prefix cache, TTFT 40.00 ms, 4 tokens generated\n"
    "Request req-2 output tokens: 1 2 3 5\n";

static void test_checklist_reads_logs(void **state) {
    (void)state;
    kvfp8_checklist cl;
    assert_int_equal(kvfp8_checklist_from_log(GOOD_LOG, strlen(GOOD_LOG), "fp8", &cl), KVFP8_OK);
    assert_int_equal(cl.n_pass, 6);
    assert_non_null(strstr(cl.items[4].detail, "near-identical"));
    assert_string_equal(cl.kv_cache_dtype, "fp8");
    assert_int_equal(cl.enable_prefix_caching, 1);
    /* the wrong dtype echoed */
    assert_int_equal(kvfp8_checklist_from_log(GOOD_LOG, strlen(GOOD_LOG), "fp8_e5m2", &cl), KVFP8_OK);
    assert_int_equal(cl.items[0].state, KVFP8_CHECK_FAIL);
    /* scale 1.0, no hit, slower, divergent, an error */
    char bad[4096];
    snprintf(bad, sizeof bad, "%s",
             "Initializing ... kv_cache_dtype=fp8, enable_prefix_caching=True, block_size=16\n"
             "WARNING: Using KV cache scaling factor 1.0 for fp8_e4m3. If this is unintended, verify ...\n"
             "KV cache pool: 1 blocks, 2.02 MiB; a bfloat16 cache at the same settings: 2.02 MiB\n"
             "Request a: 64 prompt tokens, 0 from the prefix cache, TTFT 10.00 ms, 2 tokens generated\n"
             "Request a output tokens: 7 8\n"
             "Request b: 64 prompt tokens, 0 from the prefix cache, TTFT 12.00 ms, 2 tokens generated\n"
             "Request b output tokens: 9 8\n"
             "ERROR: something: type fp8e4nv not supported\n");
    assert_int_equal(kvfp8_checklist_from_log(bad, strlen(bad), NULL, &cl), KVFP8_OK);
    for (int i = 1; i < KVFP8_CHECKLIST_ITEMS; i++)
        if (cl.items[i].state != KVFP8_CHECK_FAIL)
            fail_msg("item %d: %s", i + 1, cl.items[i].detail);
    assert_non_null(strstr(cl.items[3].detail, "NO HIT"));
    assert_non_null(strstr(cl.items[3].detail, "NOT FASTER"));
    /* BF16 without prefix caching: the FP8 and hit items do not apply */
    const char *plain = "Initializing x kv_cache_dtype=auto, enable_prefix_caching=False, block_size=16\n"
                        "Request a: 20 prompt tokens, 0 from the prefix cache, TTFT 10.00 ms, 1 tokens generated\n"
                        "Request a output tokens: 5\n"
                        "Request b: 20 prompt tokens, 0 from the prefix cache, TTFT 11.00 ms, 1 tokens generated\n"
                        "Request b output tokens: 5\n";
    assert_int_equal(kvfp8_checklist_from_log(plain, strlen(plain), "auto", &cl), KVFP8_OK);
    assert_int_equal(cl.n_skip, 3);
    assert_int_equal(cl.n_fail, 0);
    /* an empty log fails what it must */
    assert_int_equal(kvfp8_checklist_from_log("", 0, NULL, &cl), KVFP8_OK);
    assert_int_equal(cl.items[0].state, KVFP8_CHECK_FAIL);
    assert_int_equal(cl.items[4].state, KVFP8_CHECK_FAIL);
}

/* ---- chunked prefill in the engine ------------------------------------------------------------------ */

static void test_chunked_prefill(void **state) {
    (void)state;
    int64_t out[2][8];
    for (int chunked = 0; chunked <= 1; chunked++) {
        kvfp8_engine_config ec;
        kvfp8_engine_default_config(&ec);
        ec.max_chunk_tokens = chunked ? 16 : 0;
        kvfp8_engine *e;
        assert_int_equal(kvfp8_engine_create(&ec, small, &e), KVFP8_OK);
        kvfp8_request_result r;
        assert_int_equal(kvfp8_engine_generate(e, "r", prompt, 40, 3, &r), KVFP8_OK);
        assert_string_equal(r.first_site, KVFP8_SITE_PREFILL);
        memcpy(out[chunked], r.output, sizeof(int64_t) * 3);
        kvfp8_engine_destroy(e);
    }
    /* BF16: a later chunk reads the earlier ones exactly as they were computed */
    assert_memory_equal(out[0], out[1], sizeof(int64_t) * 3);
    /* the later chunks run on the prefix-prefill path */
    kvfp8_faults_count_calls(1);
    kvfp8_engine_config ec;
    kvfp8_engine_default_config(&ec);
    ec.max_chunk_tokens = 16;
    kvfp8_engine *e;
    assert_int_equal(kvfp8_engine_create(&ec, small, &e), KVFP8_OK);
    kvfp8_request_result r;
    assert_int_equal(kvfp8_engine_generate(e, "r", prompt, 40, 1, &r), KVFP8_OK);
    assert_int_equal(kvfp8_faults_site_calls(KVFP8_SITE_PREFILL), 2);        /* chunk 1, two layers */
    assert_int_equal(kvfp8_faults_site_calls(KVFP8_SITE_PREFIX_PREFILL), 4); /* chunks 2 and 3 */
    kvfp8_engine_destroy(e);
    kvfp8_faults_count_calls(0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_copy_equals_the_data_files),
        cmocka_unit_test(test_builtin_profiles),
        cmocka_unit_test(test_profile_reader_errors_name_the_field),
        cmocka_unit_test(test_issue_reader_errors),
        cmocka_unit_test(test_reader_errors_by_mutation),
        cmocka_unit_test(test_model_edges),
        cmocka_unit_test(test_capability_decisions),
        cmocka_unit_test(test_known_issue_matching),
        cmocka_unit_test(test_w7900_crash_comes_out_of_the_profile),
        cmocka_unit_test(test_matrix_w7900_is_interaction),
        cmocka_unit_test(test_matrix_other_platforms),
        cmocka_unit_test(test_matrix_prefix_specific_and_baseline),
        cmocka_unit_test(test_matrix_classification_table),
        cmocka_unit_test(test_plan_gives_the_seed_answers_on_the_w7900),
        cmocka_unit_test(test_plan_better_choices_elsewhere),
        cmocka_unit_test(test_plan_never_chooses_a_rejected_configuration),
        cmocka_unit_test(test_plan_choices_verify),
        cmocka_unit_test(test_checklist_reads_logs),
        cmocka_unit_test(test_chunked_prefill),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
