/* The backend interface: resolving and loading backends, and every way loading can
 * fail, each a clear error that names the backend and the missing piece.
 *
 *  - built-ins by name ("ref", "cpu"), an unknown name, an empty one;
 *  - a shared object through dlopen: the example plugin (build/plugins/), and the
 *    fixture objects of tests/fixtures/ (build/tests/fixtures/), one per defect: an
 *    ABI version mismatch, a table of the wrong size, a missing operation, an
 *    optional operation declared but NULL, an entry point that returns no table, a
 *    symbol the object needs that nobody provides, no entry point at all, a path that
 *    does not exist, a file that is not a shared object;
 *  - "cuda" when no libkvfp8_cuda.so is there: KVFP8_ERR_UNSUPPORTED, "cuda backend
 *    not available", and a create() that finds no device is "not available" too;
 *  - kvfp8_backend_open on in-memory tables (the engine's path);
 *  - the cpu backend's float32 attention within the BOUNDED level on one case, and
 *    its FP8 paths against the reference (the conformance suites do it at length). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvfp8/backend.h"

static char build_dir[PATH_MAX]; /* build/ (or build-san/...): this binary is build/tests/test_backend */

static int find_build_dir(void **state) {
    (void)state;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    for (int i = 0; i < 2; i++) {
        char *slash = strrchr(exe, '/');
        if (!slash)
            return -1;
        *slash = '\0';
    }
    snprintf(build_dir, sizeof build_dir, "%s", exe);
    return 0;
}

static void path_of(char *out, size_t cap, const char *rel) { snprintf(out, cap, "%s/%s", build_dir, rel); }

/* Loads `what` and expects status `want` with every needle in the reason. */
static void expect_load_error(const char *what, kvfp8_status want, const char *needle1, const char *needle2) {
    kvfp8_backend b;
    const kvfp8_status st = kvfp8_backend_load(what, &b);
    const char *why = kvfp8_last_error();
    if (st != want)
        fail_msg("load %s: status %s (%s), expected %s", what, kvfp8_status_name(st), why, kvfp8_status_name(want));
    if (needle1 && !strstr(why, needle1))
        fail_msg("load %s: reason '%s' does not say '%s'", what, why, needle1);
    if (needle2 && !strstr(why, needle2))
        fail_msg("load %s: reason '%s' does not say '%s'", what, why, needle2);
    assert_null(b.ops);
    assert_null(b.dl_handle);
}

static void test_builtins_by_name(void **state) {
    (void)state;
    static const char *const names[] = {"ref", "cpu"};
    for (size_t i = 0; i < 2; i++) {
        kvfp8_backend b;
        assert_int_equal(kvfp8_backend_load(names[i], &b), KVFP8_OK);
        assert_string_equal(b.ops->name, names[i]);
        assert_null(b.dl_handle);
        kvfp8_backend_query q;
        memset(&q, 0, sizeof q);
        q.op = KVFP8_OP_FP8_DECODE;
        assert_int_equal(b.ops->supports(b.state, &q), KVFP8_OK);
        kvfp8_backend_close(&b);
        assert_null(b.ops);
    }
    expect_load_error("reff", KVFP8_ERR_INVALID, "unknown backend 'reff'", "path of a shared object");
    expect_load_error("", KVFP8_ERR_INVALID, "no name", NULL);
    expect_load_error("libkvfp8_example.so", KVFP8_ERR_INVALID, "unknown backend", NULL); /* no library-path search */
}

static void test_example_plugin_loads(void **state) {
    (void)state;
    char path[PATH_MAX + 64];
    path_of(path, sizeof path, "plugins/libkvfp8_example.so");
    kvfp8_backend b;
    if (kvfp8_backend_load(path, &b) != KVFP8_OK)
        fail_msg("load %s: %s", path, kvfp8_last_error());
    assert_string_equal(b.ops->name, "example");
    assert_non_null(b.dl_handle);
    assert_null(b.ops->block_hash); /* optional, left out ... */
    kvfp8_backend_query q;
    memset(&q, 0, sizeof q);
    q.op = KVFP8_OP_BLOCK_HASH;
    assert_int_equal(b.ops->supports(b.state, &q), KVFP8_ERR_UNSUPPORTED); /* ... and declined */
    assert_non_null(strstr(kvfp8_last_error(), "example: block hashing")); /* through host->set_error */
    /* one conversion through the object: 1.0 -> e4m3fn 0x38 */
    kvfp8_fp8_rules r;
    assert_int_equal(kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &r), KVFP8_OK);
    const float one = 1.0f;
    uint8_t code = 0;
    assert_int_equal(b.ops->fp8_encode(b.state, &r, KVFP8_SRC_F32, &one, &code, 1, 1.0f), KVFP8_OK);
    assert_int_equal(code, 0x38);
    kvfp8_backend_close(&b);
    assert_null(b.dl_handle);
}

static void with_variant(const char *variant, kvfp8_status want, const char *needle1, const char *needle2) {
    char path[PATH_MAX + 64];
    path_of(path, sizeof path, "tests/fixtures/libbackend_variants.so");
    setenv("KVFP8_TEST_VARIANT", variant, 1);
    if (want == KVFP8_OK) {
        kvfp8_backend b;
        if (kvfp8_backend_load(path, &b) != KVFP8_OK)
            fail_msg("variant %s: %s", variant, kvfp8_last_error());
        kvfp8_backend_close(&b);
    } else {
        expect_load_error(path, want, needle1, needle2);
    }
    unsetenv("KVFP8_TEST_VARIANT");
}

static void test_abi_mismatch(void **state) {
    (void)state;
    with_variant("ok", KVFP8_OK, NULL, NULL);
    with_variant("abi", KVFP8_ERR_FORMAT, "ABI version 1, this kvfp8 speaks 2", "libbackend_variants.so");
    with_variant("size", KVFP8_ERR_FORMAT, "operations table of", "expected");
    with_variant("null", KVFP8_ERR_FORMAT, "returned no table", "ABI version 2");
}

static void test_missing_operation(void **state) {
    (void)state;
    with_variant("missing_op", KVFP8_ERR_INVALID, "operation paged_attention is missing", "fixture");
    with_variant("optional_lie", KVFP8_ERR_INVALID, "accepts block_hash but the operation is NULL", NULL);
}

static void test_missing_symbol(void **state) {
    (void)state;
    char path[PATH_MAX + 64];
    /* a symbol the object needs and nobody provides: named at load time */
    path_of(path, sizeof path, "tests/fixtures/libbackend_unresolved.so");
    expect_load_error(path, KVFP8_ERR_IO, "vendor_runtime_table_that_is_missing", "cannot load it");
    /* a shared object with no entry point (libkvfp8 itself) */
    path_of(path, sizeof path, "lib/libkvfp8.so");
    expect_load_error(path, KVFP8_ERR_FORMAT, "no symbol kvfp8_backend_entry", "docs/porting.md");
}

static void test_bad_path(void **state) {
    (void)state;
    expect_load_error("/nonexistent/libkvfp8_nothing.so", KVFP8_ERR_IO, "/nonexistent/libkvfp8_nothing.so",
                      "No such file");
    char path[PATH_MAX + 64];
    path_of(path, sizeof path, "tests/test_backend"); /* exists, but an executable, not a shared object */
    kvfp8_backend b;
    const kvfp8_status st = kvfp8_backend_load(path, &b);
    assert_true(st == KVFP8_ERR_IO || st == KVFP8_ERR_FORMAT);
    assert_non_null(strstr(kvfp8_last_error(), "test_backend"));
    expect_load_error("./Makefile", KVFP8_ERR_IO, "backend ./Makefile: cannot load it", NULL);
}

static void test_cuda_not_available(void **state) {
    (void)state;
    char path[PATH_MAX + 64];
    /* wherever the program is, the variable wins: point it at nothing */
    setenv("KVFP8_CUDA_BACKEND", "/nonexistent/libkvfp8_cuda.so", 1);
    expect_load_error("cuda", KVFP8_ERR_UNSUPPORTED, "cuda backend not available", "KVFP8_CUDA_BACKEND");
    /* a library whose create() finds no device is "not available" too */
    path_of(path, sizeof path, "tests/fixtures/libbackend_variants.so");
    setenv("KVFP8_CUDA_BACKEND", path, 1);
    setenv("KVFP8_TEST_VARIANT", "unavailable", 1);
    expect_load_error("cuda", KVFP8_ERR_UNSUPPORTED, "cuda backend not available", "no device found");
    /* and one that cannot be loaded at all (its runtime is missing) */
    path_of(path, sizeof path, "tests/fixtures/libbackend_unresolved.so");
    setenv("KVFP8_CUDA_BACKEND", path, 1);
    expect_load_error("cuda", KVFP8_ERR_UNSUPPORTED, "cuda backend not available", "vendor_runtime_table");
    /* a present, valid one loads under the name cuda */
    path_of(path, sizeof path, "tests/fixtures/libbackend_variants.so");
    setenv("KVFP8_CUDA_BACKEND", path, 1);
    setenv("KVFP8_TEST_VARIANT", "ok", 1);
    kvfp8_backend b;
    assert_int_equal(kvfp8_backend_load("cuda", &b), KVFP8_OK);
    kvfp8_backend_close(&b);
    unsetenv("KVFP8_TEST_VARIANT");
    unsetenv("KVFP8_CUDA_BACKEND");
}

static kvfp8_status noop_create(const kvfp8_backend_host *host, void **state) {
    (void)host;
    *state = NULL;
    return KVFP8_OK;
}

static void test_open_in_memory_tables(void **state) {
    (void)state;
    kvfp8_backend b;
    kvfp8_backend_ops t = *kvfp8_backend_ref();
    assert_int_equal(kvfp8_backend_open(&t, &b), KVFP8_OK);
    kvfp8_backend_close(&b);
    t.abi_version = KVFP8_BACKEND_ABI_VERSION + 1;
    assert_int_equal(kvfp8_backend_open(&t, &b), KVFP8_ERR_FORMAT);
    assert_non_null(strstr(kvfp8_last_error(), "backend ref: ABI version 3, this kvfp8 speaks 2"));
    t = *kvfp8_backend_ref();
    t.fp8_decode = NULL;
    assert_int_equal(kvfp8_backend_open(&t, &b), KVFP8_ERR_INVALID);
    assert_non_null(strstr(kvfp8_last_error(), "operation fp8_decode is missing"));
    t = *kvfp8_backend_ref();
    t.block_hash = NULL; /* the reference accepts block hashing, so it may not leave it out */
    assert_int_equal(kvfp8_backend_open(&t, &b), KVFP8_ERR_INVALID);
    assert_non_null(strstr(kvfp8_last_error(), "accepts block_hash"));
    t = *kvfp8_backend_ref();
    t.create = noop_create;
    t.name = NULL;
    t.paged_attention = NULL;
    assert_int_equal(kvfp8_backend_open(&t, &b), KVFP8_ERR_INVALID);
    assert_non_null(strstr(kvfp8_last_error(), "(unnamed)"));
    assert_int_equal(kvfp8_backend_open(NULL, &b), KVFP8_ERR_INVALID);
    /* the host services a plugin gets */
    const kvfp8_backend_host *h = kvfp8_backend_host_services();
    assert_int_equal(h->abi_version, KVFP8_BACKEND_ABI_VERSION);
    assert_int_equal(h->set_error(KVFP8_ERR_IO, "via host %d", 7), KVFP8_ERR_IO);
    assert_string_equal(kvfp8_last_error(), "via host 7");
    assert_string_equal(kvfp8_backend_op_name(KVFP8_OP_BLOCK_HASH), "block_hash");
    assert_true(kvfp8_backend_op_optional(KVFP8_OP_DEVICE_TIMING));
    assert_false(kvfp8_backend_op_optional(KVFP8_OP_CACHE_WRITE));
}

/* The cpu backend against the reference on one case of each kind (the conformance
 * suites cover the rest; this keeps `make test` honest on its own). */
static void test_cpu_backend_matches_reference(void **state) {
    (void)state;
    kvfp8_backend cpu;
    assert_int_equal(kvfp8_backend_load("cpu", &cpu), KVFP8_OK);
    kvfp8_fp8_rules r;
    assert_int_equal(kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &r), KVFP8_OK);
    uint16_t in[65536];
    uint8_t out[65536];
    for (int i = 0; i < 65536; i++)
        in[i] = (uint16_t)i;
    assert_int_equal(cpu.ops->fp8_encode(cpu.state, &r, KVFP8_SRC_BF16, in, out, 65536, 0.37f), KVFP8_OK);
    for (int i = 0; i < 65536; i++)
        if (out[i] != kvfp8_fp8_encode_scaled_ref(&r, KVFP8_SRC_BF16, in[i], 0.37f))
            fail_msg("cpu encode bf16 0x%04x / 0.37 => 0x%02x, expected 0x%02x", i, out[i],
                     kvfp8_fp8_encode_scaled_ref(&r, KVFP8_SRC_BF16, in[i], 0.37f));

    /* attention: one sequence of 70 tokens, 6 new, GQA 8:2, e4m3fn with per-head scales */
    kvfp8_kv_storage st = {1, KVFP8_DTYPE_BF16, r};
    kvfp8_kv_cache c;
    assert_int_equal(kvfp8_kv_cache_init(&c, &st, 8, 16, 2, 64), KVFP8_OK);
    const float ks[2] = {0.02f, 0.03f}, vs[2] = {0.01f, 0.015f};
    assert_int_equal(kvfp8_kv_cache_set_scales(&c, ks, vs, 2), KVFP8_OK);
    const int table[5] = {7, 2, 5, 0, 3};
    const int L = 70, Q = 6, H = 8, D = 64;
    static float k[70 * 2 * 64], v[70 * 2 * 64], q[6 * 8 * 64], o[6 * 8 * 64];
    static double ref[6 * 8 * 64], bound[6 * 8 * 64];
    uint64_t s = 99;
    for (int i = 0; i < L * 2 * D; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        k[i] = kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, (float)((int)(s >> 40) % 2001 - 1000) / 500.0f);
        v[i] = kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, (float)((int)(s >> 20) % 2001 - 1000) / 1000.0f);
    }
    for (int i = 0; i < Q * H * D; i++)
        q[i] = kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, (float)(i % 37 - 18) / 18.0f);
    int64_t slots[70];
    for (int t = 0; t < L; t++)
        slots[t] = (int64_t)table[t / 16] * 16 + t % 16;
    assert_int_equal(kvfp8_cache_write(&c, KVFP8_SRC_F32, k, v, slots, (size_t)L), KVFP8_OK);
    const int qsl[2] = {0, Q}, lens[1] = {L};
    for (int rd = 0; rd < KVFP8_READ_COUNT; rd++) {
        kvfp8_attention_params p = {1, qsl, lens, table, 5, H, 0.125, 0, 0, (kvfp8_read_semantics)rd, KVFP8_DTYPE_BF16};
        const float *nk = k + (L - Q) * 2 * D, *nv = v + (L - Q) * 2 * D;
        assert_int_equal(cpu.ops->paged_attention(cpu.state, &p, &c, q, nk, nv, o), KVFP8_OK);
        assert_int_equal(kvfp8_paged_attention_ref(&p, &c, q, nk, nv, ref), KVFP8_OK);
        assert_int_equal(
            kvfp8_attention_error_bound(&p, &c, q, nk, nv, KVFP8_DTYPE_F32, KVFP8_DTYPE_F32, bound), KVFP8_OK);
        for (int i = 0; i < Q * H * D; i++)
            if (!(fabs((double)o[i] - ref[i]) <= bound[i]))
                fail_msg("cpu attention read=%s output %d => %.9g, expected %.9g +- %.3g",
                         kvfp8_read_semantics_name((kvfp8_read_semantics)rd), i, (double)o[i], ref[i], bound[i]);
    }
    kvfp8_kv_cache_free(&c);
    kvfp8_backend_close(&cpu);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtins_by_name),       cmocka_unit_test(test_example_plugin_loads),
        cmocka_unit_test(test_abi_mismatch),           cmocka_unit_test(test_missing_operation),
        cmocka_unit_test(test_missing_symbol),         cmocka_unit_test(test_bad_path),
        cmocka_unit_test(test_cuda_not_available),     cmocka_unit_test(test_open_in_memory_tables),
        cmocka_unit_test(test_cpu_backend_matches_reference),
    };
    return cmocka_run_group_tests_name("backend", tests, find_build_dir, NULL);
}
