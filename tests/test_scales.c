/* KV scales (ref/scales.c): round trips, every vLLM loading rule, and every malformed
 * input as its own test.
 *
 * Checkpoint folders are built in a mkdtemp folder from bytes written here: the
 * safetensors files by a small builder that writes the header text and the data by
 * hand (so the reader is not tested against its own writer), config.json as text.
 * Expected values are written out by hand (bf16/f16 bit patterns of exact values).
 * Each error test checks the status, that the message names the file and the field,
 * and that nothing is returned.  tests/py_scales_safetensors.py checks the same
 * reader against files written by an independent Python writer. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "kvfp8/scales.h"

static char tmpdir[256];

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[768];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int make_tmp(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvfp8-scales-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmp(void **state) {
    (void)state;
    rm_tree(tmpdir);
    return 0;
}

static const char *in_tmp(const char *name) {
    static char buf[4][512];
    static int next;
    char *p = buf[next++ & 3];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static void write_text(const char *name, const char *text) {
    FILE *f = fopen(in_tmp(name), "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void assert_contains(const char *haystack, const char *needle) {
    if (!strstr(haystack, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, haystack);
}

static void assert_empty(const kvfp8_scales *s) {
    assert_null(s->k);
    assert_null(s->v);
    assert_null(s->k_source);
    assert_null(s->warnings);
    assert_int_equal(s->num_layers, 0);
    assert_int_equal(s->warning_count, 0);
}

/* ---- a hand-written safetensors file ---------------------------------------------------- */

typedef struct {
    char header[16384];
    size_t hlen;
    uint8_t data[8192];
    size_t dlen;
    int n;
} builder;

static void b_init(builder *b) {
    memset(b, 0, sizeof *b);
    b->hlen = (size_t)snprintf(b->header, sizeof b->header, "{");
}

/* One tensor: shape as JSON text ("[1]", "[8,1,1]"), bytes as given. */
static void b_tensor(builder *b, const char *name, const char *dtype, const char *shape, const void *bytes,
                     size_t n) {
    b->hlen += (size_t)snprintf(b->header + b->hlen, sizeof b->header - b->hlen,
                                "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                                b->n++ ? "," : "", name, dtype, shape, b->dlen, b->dlen + n);
    memcpy(b->data + b->dlen, bytes, n);
    b->dlen += n;
}

static void b_bf16(builder *b, const char *name, const char *shape, const uint16_t *bits, size_t count) {
    uint8_t bytes[256];
    for (size_t i = 0; i < count; i++) {
        bytes[2 * i] = (uint8_t)bits[i];
        bytes[2 * i + 1] = (uint8_t)(bits[i] >> 8);
    }
    b_tensor(b, name, "BF16", shape, bytes, 2 * count);
}

/* An exact float32 as F32 bytes. */
static void b_f32(builder *b, const char *name, const char *shape, const float *v, size_t count) {
    uint8_t bytes[512];
    for (size_t i = 0; i < count; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int j = 0; j < 4; j++)
            bytes[4 * i + (size_t)j] = (uint8_t)(u >> (8 * j));
    }
    b_tensor(b, name, "F32", shape, bytes, 4 * count);
}

static void b_write(builder *b, const char *file) {
    b->hlen += (size_t)snprintf(b->header + b->hlen, sizeof b->header - b->hlen, "}");
    while (b->hlen % 8)
        b->header[b->hlen++] = ' ';
    FILE *f = fopen(in_tmp(file), "wb");
    assert_non_null(f);
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)b->hlen >> (8 * i));
    assert_int_equal(fwrite(len, 1, 8, f), 8);
    assert_int_equal(fwrite(b->header, 1, b->hlen, f), b->hlen);
    assert_int_equal(fwrite(b->data, 1, b->dlen, f), b->dlen);
    assert_int_equal(fclose(f), 0);
}

/* BF16 bit patterns of exact values: 2^-7 = 0x3C00, 0.01171875 = 1.5 * 2^-7 = 0x3C40,
 * 0.015625 = 2^-6 = 0x3C80, 1.0 = 0x3F80, 0.0234375 = 1.5 * 2^-6 = 0x3CC0. */
#define BF_2M7 0x3C00
#define BF_1P5_2M7 0x3C40
#define BF_2M6 0x3C80
#define BF_ONE 0x3F80
#define BF_1P5_2M6 0x3CC0

static const char scheme_tensor[] =
    "\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\","
    " \"quantization_status\": \"compressed\", \"config_groups\": {}, \"ignore\": [\"lm_head\"], \"version\": \"0.10.2\","
    " \"kv_cache_scheme\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"tensor\", \"dynamic\": false,"
    " \"symmetric\": true, \"group_size\": null, \"observer\": \"minmax\"}}";
static const char scheme_head[] =
    "\"quantization_config\": {\"quant_method\": \"compressed-tensors\","
    " \"kv_cache_scheme\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"attn_head\", \"dynamic\": false,"
    " \"symmetric\": true}}";
static const char fp8_method[] = "\"quantization_config\": {\"quant_method\": \"fp8\", \"activation_scheme\": \"static\"}";

/* config.json for `layers` layers, 8 attention heads, `kv` KV heads, hidden 256. */
static void write_config(int layers, int kv, const char *quant) {
    char text[2048];
    snprintf(text, sizeof text,
             "{\"architectures\": [\"LlamaForCausalLM\"], \"num_hidden_layers\": %d, \"num_attention_heads\": 8,"
             " \"num_key_value_heads\": %d, \"hidden_size\": 256, \"torch_dtype\": \"bfloat16\"%s%s}\n",
             layers, kv, quant ? ", " : "", quant ? quant : "");
    write_text("config.json", text);
}

static kvfp8_scale_options opts(kvfp8_scale_rules rules, int fnuz, kvfp8_kv_cache_dtype kvd) {
    kvfp8_scale_options o = {rules, fnuz, kvd, 0};
    return o;
}

/* Loads tmpdir, expecting success. */
static void load_ok(const kvfp8_scale_options *o, kvfp8_scales *s) {
    if (kvfp8_scales_load(tmpdir, o, s) != KVFP8_OK)
        fail_msg("load failed: %s", kvfp8_last_error());
}

/* Loads tmpdir, expecting `want`; checks that nothing came back and that the message
 * holds every NULL-terminated substring ("@" stands for the folder). */
static void load_fails(const kvfp8_scale_options *o, kvfp8_status want, ...) {
    kvfp8_scales s;
    memset(&s, 0x5A, sizeof s);
    const kvfp8_status got = kvfp8_scales_load(tmpdir, o, &s);
    if (got != want)
        fail_msg("status %s, expected %s: %s", kvfp8_status_name(got), kvfp8_status_name(want), kvfp8_last_error());
    assert_empty(&s);
    va_list ap;
    va_start(ap, want);
    for (const char *p; (p = va_arg(ap, const char *));)
        assert_contains(kvfp8_last_error(), p[0] == '@' && !p[1] ? tmpdir : p);
    va_end(ap);
}

static int has_warning(const kvfp8_scales *s, const char *text) {
    for (size_t i = 0; i < s->warning_count; i++)
        if (strstr(s->warnings[i], text))
            return 1;
    return 0;
}

static const char vllm_one[] =
    "Using KV cache scaling factor 1.0 for fp8_e4m3. If this is unintended, verify that k/v_scale scaling factors "
    "are properly set in the checkpoint.";

/* ---- round trips ---------------------------------------------------------------------------- */

/* Values exact in BF16, F16 and F32 alike: m * 2^-10 for small odd m. */
static float exact_value(uint32_t layer, uint32_t head, int which) {
    return (float)(3 + 2 * ((layer * 7 + head * 3 + (uint32_t)which * 5) % 40)) * 0x1p-10f;
}

static void round_trip(kvfp8_st_dtype dtype, kvfp8_scale_strategy strategy) {
    kvfp8_scales s;
    assert_int_equal(kvfp8_scales_init(&s, 5, 8, 4, 0, 256, strategy, dtype), KVFP8_OK);
    assert_int_equal(s.per_layer, strategy == KVFP8_SCALE_ATTN_HEAD ? 4u : 1u);
    assert_int_equal(s.head_dim, 32);
    for (uint32_t l = 0; l < 5; l++)
        for (uint32_t h = 0; h < s.per_layer; h++) {
            s.k[l * s.per_layer + h] = exact_value(l, h, 0);
            s.v[l * s.per_layer + h] = exact_value(l, h, 1);
        }
    assert_int_equal(kvfp8_scales_save(tmpdir, &s), KVFP8_OK);
    char fp_saved[65], fp_loaded[65];
    assert_int_equal(kvfp8_scales_fingerprint(&s, fp_saved), KVFP8_OK);

    /* The file has exactly what the format and llm-compressor's names say. */
    kvfp8_st_file f;
    assert_int_equal(kvfp8_st_read(in_tmp("model.safetensors"), NULL, NULL, &f), KVFP8_OK);
    assert_int_equal(f.count, 10);
    const kvfp8_st_tensor *t = kvfp8_st_find(&f, "model.layers.4.self_attn.v_scale");
    assert_non_null(t);
    assert_int_equal(t->dtype, dtype);
    assert_int_equal(t->ndim, strategy == KVFP8_SCALE_ATTN_HEAD ? 3 : 1);
    assert_int_equal(t->shape[0], s.per_layer);
    assert_int_equal(f.metadata_count, 1);
    assert_string_equal(f.metadata_keys[0], "format");
    kvfp8_st_free(&f);

    kvfp8_scales r;
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_AUTO, 1, KVFP8_KV_CACHE_AUTO);
    load_ok(&o, &r);
    assert_int_equal(r.rules, KVFP8_SCALE_RULES_LLM_COMPRESSOR);
    assert_int_equal(r.kv_cache_dtype, KVFP8_KV_CACHE_FP8); /* the scheme turns auto into fp8 */
    assert_int_equal(r.strategy, strategy);
    assert_int_equal(r.dtype, dtype);
    assert_int_equal(r.num_layers, 5);
    assert_int_equal(r.num_kv_heads, 4);
    assert_int_equal(r.num_attention_heads, 8);
    assert_int_equal(r.head_dim, 32);
    assert_int_equal(r.per_layer, s.per_layer);
    assert_int_equal(r.fnuz_doubled, 0); /* llm-compressor rules never double */
    assert_int_equal(r.warning_count, 0);
    assert_memory_equal(r.k, s.k, 5 * s.per_layer * sizeof(float));
    assert_memory_equal(r.v, s.v, 5 * s.per_layer * sizeof(float));
    for (uint32_t l = 0; l < 5; l++) {
        assert_int_equal(r.k_source[l], KVFP8_SCALE_SRC_LOADED);
        assert_int_equal(r.v_source[l], KVFP8_SCALE_SRC_LOADED);
    }
    assert_int_equal(kvfp8_scales_fingerprint(&r, fp_loaded), KVFP8_OK);
    assert_string_equal(fp_saved, fp_loaded);
    kvfp8_scales_free(&r);
    kvfp8_scales_free(&s);
}

static void test_round_trip_bf16_tensor(void **state) { (void)state; round_trip(KVFP8_ST_BF16, KVFP8_SCALE_TENSOR); }
static void test_round_trip_bf16_head(void **state) { (void)state; round_trip(KVFP8_ST_BF16, KVFP8_SCALE_ATTN_HEAD); }
static void test_round_trip_f16_tensor(void **state) { (void)state; round_trip(KVFP8_ST_F16, KVFP8_SCALE_TENSOR); }
static void test_round_trip_f16_head(void **state) { (void)state; round_trip(KVFP8_ST_F16, KVFP8_SCALE_ATTN_HEAD); }
static void test_round_trip_f32_tensor(void **state) { (void)state; round_trip(KVFP8_ST_F32, KVFP8_SCALE_TENSOR); }
static void test_round_trip_f32_head(void **state) { (void)state; round_trip(KVFP8_ST_F32, KVFP8_SCALE_ATTN_HEAD); }

static void test_save_rounds_to_the_storage_dtype(void **state) {
    (void)state;
    kvfp8_scales s;
    assert_int_equal(kvfp8_scales_init(&s, 1, 4, 4, 64, 0, KVFP8_SCALE_TENSOR, KVFP8_ST_BF16), KVFP8_OK);
    s.k[0] = 0.1f; /* 0x3DCCCCCD -> BF16 0x3DCD = 0.10009765625 */
    s.v[0] = 1.0f + 0x1p-8f; /* a tie between 1.0 and 1.0078125: even mantissa, 1.0 */
    assert_int_equal(kvfp8_scales_save(tmpdir, &s), KVFP8_OK);
    kvfp8_scales r;
    load_ok(NULL, &r);
    assert_true(r.k[0] == 0.10009765625f);
    assert_true(r.v[0] == 1.0f);
    assert_true(has_warning(&r, vllm_one) == 0); /* llm-compressor rules: only missing scales warn */
    kvfp8_scales_free(&r);
    kvfp8_scales_free(&s);
}

static void test_save_refuses_unrepresentable_values(void **state) {
    (void)state;
    kvfp8_scales s;
    assert_int_equal(kvfp8_scales_init(&s, 2, 4, 4, 64, 0, KVFP8_SCALE_TENSOR, KVFP8_ST_F16), KVFP8_OK);
    s.v[1] = 1e-9f; /* below F16's smallest subnormal: would be stored as 0 */
    assert_int_equal(kvfp8_scales_save(tmpdir, &s), KVFP8_ERR_INVALID);
    assert_contains(kvfp8_last_error(), tmpdir);
    assert_contains(kvfp8_last_error(), "model.layers.1.self_attn.v_scale[0]");
    s.v[1] = 1e6f; /* above F16's max */
    assert_int_equal(kvfp8_scales_save(tmpdir, &s), KVFP8_ERR_INVALID);
    s.v[1] = NAN;
    assert_int_equal(kvfp8_scales_save(tmpdir, &s), KVFP8_ERR_INVALID);
    assert_int_equal(access(in_tmp("model.safetensors"), F_OK), -1);
    assert_int_equal(access(in_tmp("config.json"), F_OK), -1);
    kvfp8_scales_free(&s);
}

static void test_save_refuses_to_replace_weights(void **state) {
    (void)state;
    builder b;
    b_init(&b);
    const float w[4] = {1, 2, 3, 4};
    b_f32(&b, "model.layers.0.mlp.down_proj.weight", "[2,2]", w, 4);
    b_write(&b, "model.safetensors");
    kvfp8_scales s;
    assert_int_equal(kvfp8_scales_init(&s, 1, 4, 4, 64, 0, KVFP8_SCALE_TENSOR, KVFP8_ST_BF16), KVFP8_OK);
    assert_int_equal(kvfp8_scales_save(tmpdir, &s), KVFP8_ERR_STATE);
    assert_contains(kvfp8_last_error(), "model.safetensors");
    assert_contains(kvfp8_last_error(), "down_proj.weight");
    /* Untouched. */
    kvfp8_st_file f;
    assert_int_equal(kvfp8_st_read(in_tmp("model.safetensors"), NULL, NULL, &f), KVFP8_OK);
    assert_int_equal(f.count, 1);
    kvfp8_st_free(&f);
    kvfp8_scales_free(&s);
}

static void test_save_refuses_fnuz_doubled_values(void **state) {
    (void)state;
    write_config(1, 4, fp8_method);
    builder b;
    b_init(&b);
    const uint16_t k = BF_2M7, v = BF_2M6;
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[]", &k, 1);
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[]", &v, 1);
    b_write(&b, "model.safetensors");
    kvfp8_scales r;
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_AUTO, 1, KVFP8_KV_CACHE_FP8);
    load_ok(&o, &r);
    assert_int_equal(kvfp8_scales_save(in_tmp("out"), &r), KVFP8_ERR_STATE);
    assert_contains(kvfp8_last_error(), "FNUZ");
    kvfp8_scales_free(&r);
}

/* ---- vLLM's rules ------------------------------------------------------------------------------- */

/* fp8-checkpoint layers: 0 both, 1 none, 2 k only, 3 v only. */
static void write_fp8_checkpoint(void) {
    write_config(4, 8, fp8_method);
    builder b;
    b_init(&b);
    const uint16_t k0 = BF_2M7, v0 = BF_1P5_2M7, k2 = BF_2M6, v3 = BF_1P5_2M6;
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[]", &k0, 1);
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[]", &v0, 1);
    b_bf16(&b, "model.layers.2.self_attn.k_scale", "[]", &k2, 1);
    b_bf16(&b, "model.layers.3.self_attn.v_scale", "[]", &v3, 1);
    b_write(&b, "model.safetensors");
}

static void test_fp8_rules_both_missing_is_one(void **state) {
    (void)state;
    write_fp8_checkpoint();
    kvfp8_scales r;
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_FP8_CHECKPOINT, 0, KVFP8_KV_CACHE_FP8);
    load_ok(&o, &r);
    assert_int_equal(r.rules, KVFP8_SCALE_RULES_FP8_CHECKPOINT);
    assert_true(r.k[1] == 1.0f && r.v[1] == 1.0f);
    assert_int_equal(r.k_source[1], KVFP8_SCALE_SRC_DEFAULT);
    assert_int_equal(r.v_source[1], KVFP8_SCALE_SRC_DEFAULT);
    assert_true(r.k[0] == 0x1p-7f && r.v[0] == 0x1.8p-7f);
    assert_int_equal(r.k_source[0], KVFP8_SCALE_SRC_LOADED);
    assert_int_equal(r.dtype, KVFP8_ST_BF16);
    /* vLLM's warning, verbatim, once. */
    assert_int_equal(r.warning_count, 1);
    assert_string_equal(r.warnings[0], vllm_one);
    kvfp8_scales_free(&r);
}

static void test_fp8_rules_one_missing_is_max(void **state) {
    (void)state;
    write_fp8_checkpoint();
    kvfp8_scales r;
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_AUTO, 0, KVFP8_KV_CACHE_FP8_E4M3);
    load_ok(&o, &r);
    assert_int_equal(r.rules, KVFP8_SCALE_RULES_FP8_CHECKPOINT); /* quant_method fp8 */
    assert_true(r.k[2] == 0x1p-6f && r.v[2] == 0x1p-6f);
    assert_true(r.k[3] == 0x1.8p-6f && r.v[3] == 0x1.8p-6f);
    for (int l = 2; l < 4; l++) {
        assert_int_equal(r.k_source[l], KVFP8_SCALE_SRC_MAX_OF_ONE);
        assert_int_equal(r.v_source[l], KVFP8_SCALE_SRC_MAX_OF_ONE);
    }
    kvfp8_scales_free(&r);
}

static void test_fp8_rules_fnuz_doubles_loaded_scales(void **state) {
    (void)state;
    write_fp8_checkpoint();
    kvfp8_scales r;
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_FP8_CHECKPOINT, 1, KVFP8_KV_CACHE_FP8);
    load_ok(&o, &r);
    assert_int_equal(r.fnuz_doubled, 1);
    assert_true(r.k[0] == 0x1p-6f && r.v[0] == 0x1.8p-6f); /* loaded: doubled */
    assert_true(r.k[1] == 1.0f && r.v[1] == 1.0f);        /* default: not doubled */
    assert_true(r.k[2] == 0x1p-5f && r.v[2] == 0x1p-5f);  /* max of one: doubled */
    assert_true(r.k[3] == 0x1.8p-5f && r.v[3] == 0x1.8p-5f);
    kvfp8_scales_free(&r);
}

static void test_fp8_rules_loaded_ones_warn_too(void **state) {
    (void)state;
    /* vLLM tests the final values: k = v = 1.0 loaded from the file still warns. */
    write_config(1, 8, fp8_method);
    builder b;
    b_init(&b);
    const float one = 1.0f;
    b_f32(&b, "model.layers.0.self_attn.k_scale", "[1]", &one, 1);
    b_f32(&b, "model.layers.0.self_attn.v_scale", "[1]", &one, 1);
    b_write(&b, "model.safetensors");
    kvfp8_scales r;
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_FP8_CHECKPOINT, 0, KVFP8_KV_CACHE_FP8);
    load_ok(&o, &r);
    assert_int_equal(r.k_source[0], KVFP8_SCALE_SRC_LOADED);
    assert_true(has_warning(&r, vllm_one));
    assert_int_equal(r.dtype, KVFP8_ST_F32);
    kvfp8_scales_free(&r);
}

static void test_llm_compressor_rules_exact_and_never_doubled(void **state) {
    (void)state;
    write_config(2, 8, scheme_tensor);
    builder b;
    b_init(&b);
    const uint16_t k[2] = {0x3B12, 0x3C00}, v[2] = {0x3A01, 0x3F80}; /* 0x3B12: 1/448 rounded to BF16 */
    for (int l = 0; l < 2; l++) {
        char kn[64], vn[64];
        snprintf(kn, sizeof kn, "model.layers.%d.self_attn.k_scale", l);
        snprintf(vn, sizeof vn, "model.layers.%d.self_attn.v_scale", l);
        b_bf16(&b, kn, "[1]", &k[l], 1);
        b_bf16(&b, vn, "[1]", &v[l], 1);
    }
    b_write(&b, "model.safetensors");
    kvfp8_scales r;
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_LLM_COMPRESSOR, 1, KVFP8_KV_CACHE_AUTO);
    load_ok(&o, &r);
    assert_int_equal(r.fnuz_doubled, 0);
    for (int l = 0; l < 2; l++) {
        uint32_t kb, vb;
        memcpy(&kb, &r.k[l], 4);
        memcpy(&vb, &r.v[l], 4);
        assert_int_equal(kb, (uint32_t)k[l] << 16);
        assert_int_equal(vb, (uint32_t)v[l] << 16);
    }
    /* Loaded ones do not warn under these rules: only defaults do. */
    assert_int_equal(r.warning_count, 0);
    kvfp8_scales_free(&r);
}

static void test_llm_compressor_rules_all_missing_is_one(void **state) {
    (void)state;
    write_config(3, 8, scheme_tensor);
    builder b;
    b_init(&b);
    const float w = 1.0f;
    b_f32(&b, "lm_head.weight", "[1]", &w, 1);
    b_write(&b, "model.safetensors");
    kvfp8_scales r;
    load_ok(NULL, &r);
    for (int l = 0; l < 3; l++) {
        assert_true(r.k[l] == 1.0f && r.v[l] == 1.0f);
        assert_int_equal(r.k_source[l], KVFP8_SCALE_SRC_DEFAULT);
    }
    assert_int_equal(r.warning_count, 1);
    assert_string_equal(r.warnings[0], vllm_one);
    kvfp8_scales_free(&r);
}

static void write_partial_llm_compressor(void) {
    write_config(3, 8, scheme_tensor);
    builder b;
    b_init(&b);
    const uint16_t x = BF_2M7;
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[1]", &x, 1);
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[1]", &x, 1);
    b_bf16(&b, "model.layers.1.self_attn.k_scale", "[1]", &x, 1);
    b_write(&b, "model.safetensors");
}

static void test_llm_compressor_rules_some_layers_missing_is_an_error(void **state) {
    (void)state;
    write_partial_llm_compressor();
    load_fails(NULL, KVFP8_ERR_FORMAT, "@", "model.layers.1.self_attn.v_scale", "missing",
               "k_scale for 2 and v_scale for 1 of 3 layers", (const char *)NULL);
}

static void test_llm_compressor_rules_allow_missing_layers(void **state) {
    (void)state;
    write_partial_llm_compressor();
    kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_AUTO, 0, KVFP8_KV_CACHE_AUTO);
    o.allow_missing_layers = 1;
    kvfp8_scales r;
    load_ok(&o, &r);
    assert_int_equal(r.k_source[1], KVFP8_SCALE_SRC_LOADED);
    assert_int_equal(r.v_source[1], KVFP8_SCALE_SRC_DEFAULT); /* 1.0, not the max */
    assert_true(r.v[1] == 1.0f && r.k[1] == 0x1p-7f);
    assert_int_equal(r.k_source[2], KVFP8_SCALE_SRC_DEFAULT);
    assert_true(has_warning(&r, "KV scales for only some layers"));
    assert_true(has_warning(&r, vllm_one));
    kvfp8_scales_free(&r);
}

static void test_remapped_old_names(void **state) {
    (void)state;
    write_config(3, 8, fp8_method);
    builder b;
    b_init(&b);
    const uint16_t k = BF_2M7, v = BF_2M6;
    /* Older llm-compressor / Quark, ModelOpt, and vLLM's own parameter name. */
    b_bf16(&b, "model.layers.0.self_attn.k_proj.output_scale", "[]", &k, 1);
    b_bf16(&b, "model.layers.0.self_attn.v_proj.output_scale", "[]", &v, 1);
    b_bf16(&b, "model.layers.1.self_attn.k_proj.k_scale", "[]", &k, 1);
    b_bf16(&b, "model.layers.1.self_attn.v_proj.v_scale", "[]", &v, 1);
    b_bf16(&b, "model.layers.2.self_attn.attn.k_scale", "[]", &k, 1);
    b_bf16(&b, "model.layers.2.self_attn.attn.v_scale", "[]", &v, 1);
    b_write(&b, "model.safetensors");
    kvfp8_scales r;
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_FP8_CHECKPOINT, 0, KVFP8_KV_CACHE_FP8);
    load_ok(&o, &r);
    for (int l = 0; l < 3; l++) {
        assert_true(r.k[l] == 0x1p-7f && r.v[l] == 0x1p-6f);
        const kvfp8_scale_source want = l < 2 ? KVFP8_SCALE_SRC_REMAPPED : KVFP8_SCALE_SRC_LOADED;
        assert_int_equal(r.k_source[l], want);
        assert_int_equal(r.v_source[l], want);
    }
    assert_int_equal(r.warning_count, 0);
    kvfp8_scales_free(&r);
}

static void write_kv_scale_checkpoint(const char *quant) {
    write_config(1, 8, quant);
    builder b;
    b_init(&b);
    const uint16_t kv = BF_1P5_2M6;
    b_bf16(&b, "model.layers.0.self_attn.kv_scale", "[]", &kv, 1);
    b_write(&b, "model.safetensors");
}

static void test_deprecated_kv_scale_fp8_rules(void **state) {
    (void)state;
    write_kv_scale_checkpoint(fp8_method);
    kvfp8_scales r;
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_AUTO, 0, KVFP8_KV_CACHE_FP8);
    load_ok(&o, &r);
    /* Remapped to k_scale, then duplicated to v_scale by the max rule. */
    assert_true(r.k[0] == 0x1.8p-6f && r.v[0] == 0x1.8p-6f);
    assert_int_equal(r.k_source[0], KVFP8_SCALE_SRC_MAX_OF_ONE);
    assert_int_equal(r.warning_count, 1);
    assert_string_equal(r.warnings[0],
                        "DEPRECATED. Found kv_scale in the checkpoint. This format is deprecated in favor of separate "
                        "k_scale and v_scale tensors and will be removed in a future release. Functionally, we will "
                        "remap kv_scale to k_scale and duplicate k_scale to v_scale");
    kvfp8_scales_free(&r);
}

static void test_deprecated_kv_scale_llm_compressor_rules(void **state) {
    (void)state;
    /* Under these rules v_scale would stay 1.0 in vLLM: kvfp8 calls that a missing scale. */
    write_kv_scale_checkpoint(scheme_tensor);
    load_fails(NULL, KVFP8_ERR_FORMAT, "@", "model.layers.0.self_attn.v_scale", "missing", (const char *)NULL);
    kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_AUTO, 0, KVFP8_KV_CACHE_AUTO);
    o.allow_missing_layers = 1;
    kvfp8_scales r;
    load_ok(&o, &r);
    assert_int_equal(r.k_source[0], KVFP8_SCALE_SRC_REMAPPED);
    assert_true(r.k[0] == 0x1.8p-6f && r.v[0] == 1.0f);
    assert_true(has_warning(&r, "DEPRECATED. Found kv_scale"));
    kvfp8_scales_free(&r);
}

static void test_unmatched_scale_name_warns_like_vllm(void **state) {
    (void)state;
    write_config(1, 8, fp8_method);
    builder b;
    b_init(&b);
    const uint16_t x = BF_2M7;
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[]", &x, 1);
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[]", &x, 1);
    b_bf16(&b, "model.layers.0.mlp.k_scale", "[]", &x, 1);
    b_bf16(&b, "model.layers.01.self_attn.v_scale", "[]", &x, 1); /* no layer "01" */
    b_bf16(&b, "model.vision.kv_scale", "[]", &x, 1);
    b_write(&b, "model.safetensors");
    kvfp8_scales r;
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_AUTO, 0, KVFP8_KV_CACHE_FP8);
    load_ok(&o, &r);
    assert_int_equal(r.warning_count, 3);
    assert_string_equal(r.warnings[0],
                        "Found .k_scale in the checkpoint (e.g. model.layers.0.mlp.k_scale), but not found the "
                        "expected name in the model (e.g. model.layers.0.mlp.attn.k_scale). .k_scale is not loaded.");
    assert_string_equal(r.warnings[1],
                        "Found .v_scale in the checkpoint (e.g. model.layers.01.self_attn.v_scale), but not found "
                        "the expected name in the model (e.g. model.layers.01.self_attn.attn.v_scale). .v_scale is "
                        "not loaded.");
    assert_string_equal(r.warnings[2],
                        "Found kv_scale in the checkpoint (e.g. model.vision.kv_scale), but not found the expected "
                        "name in the model (e.g. model.vision.attn.k_scale). kv_scale is not loaded.");
    assert_true(r.k[0] == 0x1p-7f);
    kvfp8_scales_free(&r);
}

static void test_kv_cache_dtype_auto_without_scheme(void **state) {
    (void)state;
    write_fp8_checkpoint();
    kvfp8_scales r;
    load_ok(NULL, &r); /* auto, and quant_method fp8 declares no kv_cache_scheme */
    assert_int_equal(r.kv_cache_dtype, KVFP8_KV_CACHE_AUTO);
    for (int l = 0; l < 4; l++) {
        assert_true(r.k[l] == 1.0f && r.v[l] == 1.0f);
        assert_int_equal(r.k_source[l], KVFP8_SCALE_SRC_DEFAULT);
    }
    assert_true(has_warning(&r, "kv_cache_dtype 'auto'"));
    kvfp8_scales_free(&r);
}

static void test_kv_cache_dtype_e5m2_refused(void **state) {
    (void)state;
    write_fp8_checkpoint();
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_AUTO, 0, KVFP8_KV_CACHE_FP8_E5M2);
    load_fails(&o, KVFP8_ERR_UNSUPPORTED, "config.json", "kv_cache_dtype",
               "fp8_e5m2 kv-cache is not supported with fp8 checkpoints.", (const char *)NULL);
}

static void test_per_head_refused_under_fp8_rules(void **state) {
    (void)state;
    write_config(1, 2, scheme_head);
    builder b;
    b_init(&b);
    const uint16_t x[2] = {BF_2M7, BF_2M6};
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[2,1,1]", x, 2);
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[2,1,1]", x, 2);
    b_write(&b, "model.safetensors");
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_FP8_CHECKPOINT, 0, KVFP8_KV_CACHE_FP8);
    load_fails(&o, KVFP8_ERR_UNSUPPORTED, "config.json", "quantization_config.kv_cache_scheme.strategy",
               "Only support per-tensor scaling factor for fp8 KV cache", (const char *)NULL);
    /* Under llm-compressor rules they load, and the backends' float is the max. */
    kvfp8_scales r;
    load_ok(NULL, &r);
    assert_int_equal(r.per_layer, 2);
    float kf, vf;
    assert_int_equal(kvfp8_scales_layer_float(&r, 0, &kf, &vf), KVFP8_OK);
    assert_true(kf == 0x1p-6f && vf == 0x1p-6f);
    assert_int_equal(kvfp8_scales_layer_float(&r, 1, &kf, &vf), KVFP8_ERR_INVALID);
    kvfp8_scales_free(&r);
}

static void test_shards_and_index(void **state) {
    (void)state;
    /* Scales spread over two shards that the index lists, plus a stray file the index
     * does not list (Mistral repositories ship consolidated.safetensors next to
     * their shards): vLLM reads only the listed files. */
    write_config(2, 8, scheme_tensor);
    builder b;
    const uint16_t x = BF_2M7, y = BF_2M6;
    b_init(&b);
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[1]", &x, 1);
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[1]", &x, 1);
    b_write(&b, "model-00001-of-00002.safetensors");
    b_init(&b);
    b_bf16(&b, "model.layers.1.self_attn.k_scale", "[1]", &y, 1);
    b_bf16(&b, "model.layers.1.self_attn.v_scale", "[1]", &y, 1);
    b_write(&b, "model-00002-of-00002.safetensors");
    b_init(&b);
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[1]", &y, 1);
    b_write(&b, "consolidated.safetensors");
    write_text("model.safetensors.index.json",
               "{\"metadata\": {\"total_size\": 8}, \"weight_map\": {"
               "\"model.layers.0.self_attn.k_scale\": \"model-00001-of-00002.safetensors\","
               "\"model.layers.0.self_attn.v_scale\": \"model-00001-of-00002.safetensors\","
               "\"model.layers.1.self_attn.k_scale\": \"model-00002-of-00002.safetensors\","
               "\"model.layers.1.self_attn.v_scale\": \"model-00002-of-00002.safetensors\"}}");
    kvfp8_scales r;
    load_ok(NULL, &r);
    assert_true(r.k[0] == 0x1p-7f && r.k[1] == 0x1p-6f);
    kvfp8_scales_free(&r);
    /* Without the index the stray file's copy is a duplicate. */
    unlink(in_tmp("model.safetensors.index.json"));
    load_fails(NULL, KVFP8_ERR_FORMAT, "consolidated.safetensors", "model.layers.0.self_attn.k_scale",
               "already given by", (const char *)NULL);
}

static void test_text_config_of_a_multimodal_model(void **state) {
    (void)state;
    write_text("config.json",
               "{\"model_type\": \"llava\", \"text_config\": {\"num_hidden_layers\": 1, \"num_attention_heads\": 4,"
               " \"num_key_value_heads\": 2, \"head_dim\": 16}, \"quantization_config\": {\"quant_method\":"
               " \"compressed-tensors\", \"kv_cache_scheme\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\":"
               " \"tensor\", \"symmetric\": true}}}");
    builder b;
    b_init(&b);
    const uint16_t x = BF_2M7;
    b_bf16(&b, "language_model.model.layers.0.self_attn.k_scale", "[1]", &x, 1);
    b_bf16(&b, "language_model.model.layers.0.self_attn.v_scale", "[1]", &x, 1);
    b_write(&b, "model.safetensors");
    kvfp8_scales r;
    load_ok(NULL, &r);
    assert_int_equal(r.num_kv_heads, 2);
    assert_int_equal(r.head_dim, 16);
    assert_int_equal(r.hidden_size, 0);
    assert_int_equal(r.k_source[0], KVFP8_SCALE_SRC_LOADED);
    /* Saved again (no hidden_size to write) and loaded back: the same scales. */
    assert_int_equal(kvfp8_scales_save(in_tmp("again"), &r), KVFP8_OK);
    kvfp8_scales r2;
    if (kvfp8_scales_load(in_tmp("again"), NULL, &r2) != KVFP8_OK)
        fail_msg("%s", kvfp8_last_error());
    assert_int_equal(r2.head_dim, 16);
    assert_int_equal(r2.hidden_size, 0);
    assert_true(r2.k[0] == r.k[0] && r2.v[0] == r.v[0]);
    kvfp8_scales_free(&r2);
    kvfp8_scales_free(&r);
}

/* ---- fingerprint and calibration rounding ------------------------------------------------- */

static void test_fingerprint_bytes(void **state) {
    (void)state;
    kvfp8_scales s;
    assert_int_equal(kvfp8_scales_init(&s, 2, 4, 2, 32, 0, KVFP8_SCALE_ATTN_HEAD, KVFP8_ST_BF16), KVFP8_OK);
    const float vals[8] = {0.5f, 0.25f, 0.125f, 2.0f, 3.0f, 0x1p-7f, 1.0f, 1.5f};
    memcpy(s.k, vals, 2 * sizeof(float));
    memcpy(s.v, vals + 2, 2 * sizeof(float));
    memcpy(s.k + 2, vals + 4, 2 * sizeof(float));
    memcpy(s.v + 2, vals + 6, 2 * sizeof(float));
    /* The documented bytes, hashed here with OpenSSL's one-shot EVP_Digest. */
    uint8_t msg[15 + 9 + 32];
    memcpy(msg, "kvfp8-scales-v1", 15);
    const uint8_t head[9] = {2, 0, 0, 0, 2, 0, 0, 0, 1};
    memcpy(msg + 15, head, 9);
    memcpy(msg + 24, vals, 32); /* x86-64 is little-endian: the bits as stored */
    uint8_t digest[32];
    unsigned int dl;
    assert_int_equal(EVP_Digest(msg, sizeof msg, digest, &dl, EVP_sha256(), NULL), 1);
    char want[65], got[65];
    for (int i = 0; i < 32; i++)
        snprintf(want + 2 * i, 3, "%02x", digest[i]);
    assert_int_equal(kvfp8_scales_fingerprint(&s, got), KVFP8_OK);
    assert_string_equal(got, want);
    /* One bit anywhere changes it; the storage dtype does not. */
    s.dtype = KVFP8_ST_F32;
    assert_int_equal(kvfp8_scales_fingerprint(&s, got), KVFP8_OK);
    assert_string_equal(got, want);
    s.v[3] = nextafterf(s.v[3], 2.0f);
    assert_int_equal(kvfp8_scales_fingerprint(&s, got), KVFP8_OK);
    assert_string_not_equal(got, want);
    kvfp8_scales_free(&s);
    kvfp8_scales empty;
    memset(&empty, 0, sizeof empty);
    assert_int_equal(kvfp8_scales_fingerprint(&empty, got), KVFP8_ERR_INVALID);
}

static void test_scale_from_amax(void **state) {
    (void)state;
    float s;
    uint32_t bits;
    /* 448 -> exactly 1.0 in every dtype. */
    assert_int_equal(kvfp8_scales_round_amax(448.0f, KVFP8_ST_BF16, &s, &bits), KVFP8_OK);
    assert_true(s == 1.0f);
    assert_int_equal(bits, 0x3F80);
    /* 1/448 = 1.142857... * 2^-9: BF16 keeps 7 mantissa bits, 146/128 -> 0x3B12;
     * F16: exponent field 6, mantissa 146 -> 0x1892; F32: 0x3B124925. */
    assert_int_equal(kvfp8_scales_round_amax(1.0f, KVFP8_ST_BF16, &s, &bits), KVFP8_OK);
    assert_int_equal(bits, 0x3B12);
    assert_true(s == 0x1.24p-9f);
    assert_int_equal(kvfp8_scales_round_amax(1.0f, KVFP8_ST_F16, &s, &bits), KVFP8_OK);
    assert_int_equal(bits, 0x1892);
    assert_int_equal(kvfp8_scales_round_amax(1.0f, KVFP8_ST_F32, &s, &bits), KVFP8_OK);
    assert_int_equal(bits, 0x3B124925);
    /* A zero scale becomes torch.finfo(dtype).eps. */
    assert_int_equal(kvfp8_scales_round_amax(0.0f, KVFP8_ST_BF16, &s, &bits), KVFP8_OK);
    assert_true(s == 0x1p-7f);
    assert_int_equal(bits, 0x3C00);
    assert_int_equal(kvfp8_scales_round_amax(0.0f, KVFP8_ST_F16, &s, &bits), KVFP8_OK);
    assert_true(s == 0x1p-10f);
    assert_int_equal(bits, 0x1400);
    assert_int_equal(kvfp8_scales_round_amax(0.0f, KVFP8_ST_F32, &s, &bits), KVFP8_OK);
    assert_true(s == 0x1p-23f);
    assert_int_equal(bits, 0x34000000);
    /* Underflow to zero in the dtype also becomes eps: BF16's smallest subnormal
     * 2^-133 / 448 rounds to 0 in BF16. */
    assert_int_equal(kvfp8_scales_round_amax(0x1p-133f, KVFP8_ST_BF16, &s, &bits), KVFP8_OK);
    assert_true(s == 0x1p-7f);
    assert_int_equal(kvfp8_scales_round_amax(0x1p-24f, KVFP8_ST_F16, &s, &bits), KVFP8_OK);
    assert_true(s == 0x1p-10f);
    assert_int_equal(kvfp8_scales_round_amax(NAN, KVFP8_ST_BF16, &s, &bits), KVFP8_ERR_INVALID);
    assert_contains(kvfp8_last_error(), "amax");
    assert_int_equal(kvfp8_scales_round_amax(-1.0f, KVFP8_ST_BF16, &s, &bits), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_scales_round_amax(1.0f, KVFP8_ST_I8, &s, NULL), KVFP8_ERR_INVALID);
}

static void test_option_names(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++) {
        kvfp8_scale_rules r;
        assert_int_equal(kvfp8_scale_rules_parse(kvfp8_scale_rules_name((kvfp8_scale_rules)i), &r), KVFP8_OK);
        assert_int_equal(r, i);
    }
    for (int i = 0; i < 4; i++) {
        kvfp8_kv_cache_dtype d;
        assert_int_equal(kvfp8_kv_cache_dtype_parse(kvfp8_kv_cache_dtype_name((kvfp8_kv_cache_dtype)i), &d), KVFP8_OK);
        assert_int_equal(d, i);
    }
    kvfp8_scale_strategy st;
    assert_int_equal(kvfp8_scale_strategy_parse("attn_head", &st), KVFP8_OK);
    assert_int_equal(st, KVFP8_SCALE_ATTN_HEAD);
    assert_int_equal(kvfp8_scale_strategy_parse("channel", &st), KVFP8_ERR_INVALID);
    assert_string_equal(kvfp8_scale_source_name(KVFP8_SCALE_SRC_MAX_OF_ONE), "max-of-one");
    assert_string_equal(kvfp8_scale_source_name(KVFP8_SCALE_SRC_DEFAULT), "default-1.0");
}

/* ---- malformed config.json, one test each ------------------------------------------------ */

/* A valid scales file for one layer, so that only config.json can be wrong. */
static void write_one_layer_scales(void) {
    builder b;
    b_init(&b);
    const uint16_t x = BF_2M7;
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[1]", &x, 1);
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[1]", &x, 1);
    b_write(&b, "model.safetensors");
}

static void config_fails(const char *text, kvfp8_status want, const char *field, const char *detail) {
    write_one_layer_scales();
    write_text("config.json", text);
    load_fails(NULL, want, in_tmp("config.json"), field, detail, (const char *)NULL);
    /* The memory parser says the same, under its label. */
    kvfp8_model_config c;
    assert_int_equal(kvfp8_model_config_parse(text, strlen(text), "label.json", &c), want);
    assert_contains(kvfp8_last_error(), "label.json");
    assert_contains(kvfp8_last_error(), field);
}

#define MODEL "\"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"hidden_size\": 64"
#define CT(scheme) "{" MODEL ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"kv_cache_scheme\": " scheme "}}"

static void test_config_not_json(void **state) {
    (void)state;
    config_fails("{\"num_hidden_layers\": 1,\n \"x\": }", KVFP8_ERR_FORMAT, "json", "invalid JSON at line 2 column");
}

static void test_config_not_an_object(void **state) {
    (void)state;
    config_fails("[1, 2]", KVFP8_ERR_FORMAT, "json", "must be a JSON object");
}

static void test_config_duplicate_key(void **state) {
    (void)state;
    config_fails("{\"num_hidden_layers\": 1, \"num_hidden_layers\": 2}", KVFP8_ERR_FORMAT, "json",
                 "duplicate object key");
}

static void test_config_layers_missing(void **state) {
    (void)state;
    config_fails("{\"num_attention_heads\": 4, \"hidden_size\": 64}", KVFP8_ERR_FORMAT, "num_hidden_layers", "missing");
}

static void test_config_layers_wrong_type(void **state) {
    (void)state;
    config_fails("{\"num_hidden_layers\": \"1\", \"num_attention_heads\": 4, \"hidden_size\": 64}", KVFP8_ERR_FORMAT,
                 "num_hidden_layers", "must be a positive integer, got a string");
    config_fails("{\"num_hidden_layers\": 1.0, \"num_attention_heads\": 4, \"hidden_size\": 64}", KVFP8_ERR_FORMAT,
                 "num_hidden_layers", "got a real number");
}

static void test_config_layers_out_of_range(void **state) {
    (void)state;
    config_fails("{\"num_hidden_layers\": 0, \"num_attention_heads\": 4, \"hidden_size\": 64}", KVFP8_ERR_FORMAT,
                 "num_hidden_layers", "out of range");
    config_fails("{\"num_hidden_layers\": 65536, \"num_attention_heads\": 4096, \"hidden_size\": 4096}",
                 KVFP8_ERR_FORMAT, "num_hidden_layers", "exceeds kvfp8's limit");
}

static void test_config_heads_missing(void **state) {
    (void)state;
    config_fails("{\"num_hidden_layers\": 1, \"hidden_size\": 64}", KVFP8_ERR_FORMAT, "num_attention_heads", "missing");
}

static void test_config_kv_heads_do_not_divide(void **state) {
    (void)state;
    config_fails("{\"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 3, \"hidden_size\": 64}",
                 KVFP8_ERR_FORMAT, "num_key_value_heads", "does not divide num_attention_heads 4");
}

static void test_config_head_size_unknown(void **state) {
    (void)state;
    config_fails("{\"num_hidden_layers\": 1, \"num_attention_heads\": 4}", KVFP8_ERR_FORMAT, "hidden_size",
                 "missing (and no head_dim)");
    config_fails("{\"num_hidden_layers\": 1, \"num_attention_heads\": 3, \"hidden_size\": 64}", KVFP8_ERR_FORMAT,
                 "hidden_size", "not a multiple of num_attention_heads 3");
}

static void test_config_quantization_config_wrong_type(void **state) {
    (void)state;
    config_fails("{" MODEL ", \"quantization_config\": \"fp8\"}", KVFP8_ERR_FORMAT, "quantization_config",
                 "must be an object");
    config_fails("{" MODEL ", \"quantization_config\": {\"quant_method\": 8}}", KVFP8_ERR_FORMAT,
                 "quantization_config.quant_method", "must be a string");
}

static void test_config_scheme_wrong_type(void **state) {
    (void)state;
    config_fails(CT("[8, \"float\"]"), KVFP8_ERR_FORMAT, "quantization_config.kv_cache_scheme", "must be an object or null");
}

static void test_config_scheme_type_not_float(void **state) {
    (void)state;
    config_fails(CT("{\"num_bits\": 8, \"type\": \"int\", \"strategy\": \"tensor\", \"symmetric\": true}"),
                 KVFP8_ERR_UNSUPPORTED, "quantization_config.kv_cache_scheme.type", "'int' is not supported");
    config_fails(CT("{\"num_bits\": 8, \"strategy\": \"tensor\", \"symmetric\": true}"), KVFP8_ERR_FORMAT,
                 "quantization_config.kv_cache_scheme.type", "missing");
    config_fails(CT("{\"num_bits\": 8, \"type\": 1, \"strategy\": \"tensor\", \"symmetric\": true}"), KVFP8_ERR_FORMAT,
                 "quantization_config.kv_cache_scheme.type", "must be a string");
}

static void test_config_scheme_bits_not_8(void **state) {
    (void)state;
    config_fails(CT("{\"num_bits\": 4, \"type\": \"float\", \"strategy\": \"tensor\", \"symmetric\": true}"),
                 KVFP8_ERR_UNSUPPORTED, "quantization_config.kv_cache_scheme.num_bits", "4 is not supported");
    config_fails(CT("{\"num_bits\": \"8\", \"type\": \"float\", \"strategy\": \"tensor\", \"symmetric\": true}"),
                 KVFP8_ERR_FORMAT, "quantization_config.kv_cache_scheme.num_bits", "must be an integer");
}

static void test_config_scheme_strategy_unsupported(void **state) {
    (void)state;
    config_fails(CT("{\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"channel\", \"symmetric\": true}"),
                 KVFP8_ERR_UNSUPPORTED, "quantization_config.kv_cache_scheme.strategy", "'channel' is not supported");
    config_fails(CT("{\"num_bits\": 8, \"type\": \"float\", \"symmetric\": true}"), KVFP8_ERR_FORMAT,
                 "quantization_config.kv_cache_scheme.strategy", "missing");
}

static void test_config_scheme_not_symmetric(void **state) {
    (void)state;
    config_fails(CT("{\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"tensor\", \"symmetric\": false}"),
                 KVFP8_ERR_UNSUPPORTED, "quantization_config.kv_cache_scheme.symmetric",
                 "Only support symmetric scaling factor");
    config_fails(CT("{\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"tensor\"}"), KVFP8_ERR_FORMAT,
                 "quantization_config.kv_cache_scheme.symmetric", "missing");
    config_fails(CT("{\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"tensor\", \"symmetric\": 1}"),
                 KVFP8_ERR_FORMAT, "quantization_config.kv_cache_scheme.symmetric", "must be a boolean");
}

static void test_config_missing_file(void **state) {
    (void)state;
    write_one_layer_scales();
    load_fails(NULL, KVFP8_ERR_IO, in_tmp("config.json"), "file: cannot open", (const char *)NULL);
}

/* ---- malformed scales, one test each --------------------------------------------------------- */

/* One layer, per tensor, llm-compressor; k is `kbytes` of `dtype` with `shape`. */
static void scale_fails(const char *dtype, const char *shape, const void *kbytes, size_t n, kvfp8_status want,
                        const char *field, const char *detail) {
    write_config(1, 2, scheme_tensor);
    builder b;
    b_init(&b);
    const uint16_t v = BF_2M7;
    b_tensor(&b, "model.layers.0.self_attn.k_scale", dtype, shape, kbytes, n);
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[1]", &v, 1);
    b_write(&b, "model.safetensors");
    load_fails(NULL, want, in_tmp("model.safetensors"), "tensor 'model.layers.0.self_attn.k_scale'", field, detail,
               (const char *)NULL);
}

static void test_scale_nan(void **state) {
    (void)state;
    const uint8_t nan_bf16[2] = {0xC0, 0x7F};
    scale_fails("BF16", "[1]", nan_bf16, 2, KVFP8_ERR_INVALID, "value", "is NaN");
}

static void test_scale_zero(void **state) {
    (void)state;
    const uint8_t zero[2] = {0, 0};
    scale_fails("BF16", "[1]", zero, 2, KVFP8_ERR_INVALID, "value", "is zero");
    const uint8_t negzero[2] = {0, 0x80};
    scale_fails("F16", "[1]", negzero, 2, KVFP8_ERR_INVALID, "value", "is zero");
}

static void test_scale_negative(void **state) {
    (void)state;
    const uint8_t neg[4] = {0, 0, 0x80, 0xBF}; /* -1.0f */
    scale_fails("F32", "[1]", neg, 4, KVFP8_ERR_INVALID, "value", "is negative");
}

static void test_scale_infinite(void **state) {
    (void)state;
    const uint8_t inf[2] = {0x00, 0x7C}; /* F16 +Inf */
    scale_fails("F16", "[1]", inf, 2, KVFP8_ERR_INVALID, "value", "is infinite");
}

static void test_scale_unsupported_dtype(void **state) {
    (void)state;
    const uint8_t one = 0x38; /* 1.0 in F8_E4M3 */
    scale_fails("F8_E4M3", "[1]", &one, 1, KVFP8_ERR_UNSUPPORTED, "dtype", "F8_E4M3 is not supported for KV scales");
    const uint8_t i32[4] = {1, 0, 0, 0};
    scale_fails("I32", "[1]", i32, 4, KVFP8_ERR_UNSUPPORTED, "dtype", "I32 is not supported");
}

static void test_scale_shape_not_per_tensor(void **state) {
    (void)state;
    const uint16_t two[2] = {BF_2M7, BF_2M7};
    scale_fails("BF16", "[2]", two, 4, KVFP8_ERR_FORMAT, "shape", "[2] does not match strategy 'tensor'");
}

static void test_scale_shape_not_per_head(void **state) {
    (void)state;
    write_config(1, 2, scheme_head);
    builder b;
    b_init(&b);
    const uint16_t x[4] = {BF_2M7, BF_2M7, BF_2M7, BF_2M7};
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[4,1,1]", x, 4); /* 4 heads, the model has 2 */
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[2,1,1]", x, 2);
    b_write(&b, "model.safetensors");
    load_fails(NULL, KVFP8_ERR_FORMAT, in_tmp("model.safetensors"), "tensor 'model.layers.0.self_attn.k_scale': shape",
               "[4, 1, 1] does not match strategy 'attn_head' with num_key_value_heads 2: expected [2, 1, 1]",
               (const char *)NULL);
    rm_tree(tmpdir);
    assert_int_equal(mkdir(tmpdir, 0700), 0);
    write_config(1, 2, scheme_head);
    b_init(&b);
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[1]", x, 1); /* a per-tensor value under attn_head */
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[2,1,1]", x, 2);
    b_write(&b, "model.safetensors");
    load_fails(NULL, KVFP8_ERR_FORMAT, "k_scale': shape", "strategy 'attn_head'", (const char *)NULL);
}

static void test_scale_nan_in_one_head(void **state) {
    (void)state;
    write_config(1, 4, scheme_head);
    builder b;
    b_init(&b);
    const uint16_t x[4] = {BF_2M7, BF_2M7, 0x7FC0, BF_2M7};
    const uint16_t ok[4] = {BF_2M7, BF_2M7, BF_2M7, BF_2M7};
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[4,1,1]", ok, 4);
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[4,1,1]", x, 4);
    b_write(&b, "model.safetensors");
    load_fails(NULL, KVFP8_ERR_INVALID, in_tmp("model.safetensors"), "tensor 'model.layers.0.self_attn.v_scale': value[2]",
               "is NaN", (const char *)NULL);
}

static void test_scale_k_v_shapes_differ(void **state) {
    (void)state;
    write_config(1, 2, scheme_tensor);
    builder b;
    b_init(&b);
    const uint16_t x = BF_2M7;
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[1]", &x, 1);
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[]", &x, 1);
    b_write(&b, "model.safetensors");
    load_fails(NULL, KVFP8_ERR_FORMAT, in_tmp("model.safetensors"), "tensor 'model.layers.0.self_attn.v_scale': shape",
               "k_scale and v_scale must have the same shape: [] here, [1]", (const char *)NULL);
}

static void test_scale_layer_past_the_model(void **state) {
    (void)state;
    write_config(2, 2, scheme_tensor);
    builder b;
    b_init(&b);
    const uint16_t x = BF_2M7;
    for (int l = 0; l < 3; l++) {
        char kn[64], vn[64];
        snprintf(kn, sizeof kn, "model.layers.%d.self_attn.k_scale", l);
        snprintf(vn, sizeof vn, "model.layers.%d.self_attn.v_scale", l);
        b_bf16(&b, kn, "[1]", &x, 1);
        b_bf16(&b, vn, "[1]", &x, 1);
    }
    b_write(&b, "model.safetensors");
    load_fails(NULL, KVFP8_ERR_FORMAT, in_tmp("model.safetensors"), "tensor 'model.layers.2.self_attn.k_scale': layer",
               "index 2 is past the model", "num_hidden_layers 2", (const char *)NULL);
}

static void test_scale_duplicate_across_files(void **state) {
    (void)state;
    write_config(1, 2, scheme_tensor);
    builder b;
    const uint16_t x = BF_2M7;
    b_init(&b);
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[1]", &x, 1);
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[1]", &x, 1);
    b_write(&b, "a.safetensors");
    b_init(&b);
    b_bf16(&b, "model.layers.0.self_attn.v_scale", "[1]", &x, 1);
    b_write(&b, "b.safetensors");
    load_fails(NULL, KVFP8_ERR_FORMAT, in_tmp("b.safetensors"), "tensor 'model.layers.0.self_attn.v_scale': name",
               "already given by 'model.layers.0.self_attn.v_scale' in", in_tmp("a.safetensors"), (const char *)NULL);
}

static void test_scale_duplicate_through_a_remap(void **state) {
    (void)state;
    write_config(1, 2, fp8_method);
    builder b;
    const uint16_t x = BF_2M7;
    b_init(&b);
    b_bf16(&b, "model.layers.0.self_attn.k_scale", "[]", &x, 1);
    b_bf16(&b, "model.layers.0.self_attn.k_proj.output_scale", "[]", &x, 1);
    b_write(&b, "model.safetensors");
    const kvfp8_scale_options o = opts(KVFP8_SCALE_RULES_AUTO, 0, KVFP8_KV_CACHE_FP8);
    load_fails(&o, KVFP8_ERR_FORMAT, in_tmp("model.safetensors"), "name", "layer 0's k_scale is already given by",
               (const char *)NULL);
}

static void test_scale_file_malformed(void **state) {
    (void)state;
    write_config(1, 2, scheme_tensor);
    static const char bad[10] = "\x10\0\0\0\0\0\0\0{}"; /* 16 header bytes declared, 2 present */
    FILE *f = fopen(in_tmp("model.safetensors"), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bad, 1, sizeof bad, f), sizeof bad);
    assert_int_equal(fclose(f), 0);
    load_fails(NULL, KVFP8_ERR_FORMAT, in_tmp("model.safetensors"), "header length", (const char *)NULL);
}

static void test_no_safetensors_files(void **state) {
    (void)state;
    write_config(1, 2, scheme_tensor);
    load_fails(NULL, KVFP8_ERR_FORMAT, "@", "*.safetensors", "no safetensors file", (const char *)NULL);
}

static void test_index_names_a_missing_file(void **state) {
    (void)state;
    write_config(1, 2, scheme_tensor);
    write_one_layer_scales();
    write_text("model.safetensors.index.json",
               "{\"weight_map\": {\"model.layers.0.self_attn.k_scale\": \"model-00009.safetensors\"}}");
    load_fails(NULL, KVFP8_ERR_FORMAT, in_tmp("model.safetensors.index.json"),
               "weight_map['model.layers.0.self_attn.k_scale']", "not in the folder", (const char *)NULL);
    write_text("model.safetensors.index.json", "{\"weight_map\": [1]}");
    load_fails(NULL, KVFP8_ERR_FORMAT, in_tmp("model.safetensors.index.json"), "weight_map", "must be an object",
               (const char *)NULL);
    write_text("model.safetensors.index.json", "{\"weight_map\": {\"x\": \"../model.safetensors\"}}");
    load_fails(NULL, KVFP8_ERR_FORMAT, "weight_map['x']", "must be a file name", (const char *)NULL);
}

static void test_build_from_memory(void **state) {
    (void)state;
    /* The in-memory path the fuzz targets use: a config parsed from text and a file
     * parsed from bytes, no folder. */
    const char *cfg_text = CT("{\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"tensor\", \"symmetric\": true}");
    kvfp8_model_config cfg;
    assert_int_equal(kvfp8_model_config_parse(cfg_text, strlen(cfg_text), "mem-config", &cfg), KVFP8_OK);
    assert_int_equal(cfg.num_layers, 1);
    assert_int_equal(cfg.head_dim, 16);
    assert_true(cfg.has_kv_cache_scheme);
    assert_string_equal(cfg.quant_method, "compressed-tensors");
    const float k = 0.5f, v = 0.25f;
    const uint64_t one[1] = {1};
    const kvfp8_st_entry e[2] = {{"model.layers.0.self_attn.k_scale", KVFP8_ST_F32, 1, one, &k},
                                 {"model.layers.0.self_attn.v_scale", KVFP8_ST_F32, 1, one, &v}};
    uint8_t *bytes;
    size_t len;
    assert_int_equal(kvfp8_st_serialize(e, 2, NULL, NULL, 0, &bytes, &len), KVFP8_OK);
    kvfp8_st_file f;
    assert_int_equal(kvfp8_st_parse(bytes, len, "mem-file", kvfp8_scales_is_scale_name, NULL, &f), KVFP8_OK);
    kvfp8_scales s;
    assert_int_equal(kvfp8_scales_build(&cfg, "mem-config", &f, 1, "mem", NULL, &s), KVFP8_OK);
    assert_true(s.k[0] == 0.5f && s.v[0] == 0.25f);
    kvfp8_scales_free(&s);
    kvfp8_st_free(&f);
    free(bytes);
}

#define T(name) cmocka_unit_test_setup_teardown(name, make_tmp, remove_tmp)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_round_trip_bf16_tensor),
        T(test_round_trip_bf16_head),
        T(test_round_trip_f16_tensor),
        T(test_round_trip_f16_head),
        T(test_round_trip_f32_tensor),
        T(test_round_trip_f32_head),
        T(test_save_rounds_to_the_storage_dtype),
        T(test_save_refuses_unrepresentable_values),
        T(test_save_refuses_to_replace_weights),
        T(test_save_refuses_fnuz_doubled_values),
        T(test_fp8_rules_both_missing_is_one),
        T(test_fp8_rules_one_missing_is_max),
        T(test_fp8_rules_fnuz_doubles_loaded_scales),
        T(test_fp8_rules_loaded_ones_warn_too),
        T(test_llm_compressor_rules_exact_and_never_doubled),
        T(test_llm_compressor_rules_all_missing_is_one),
        T(test_llm_compressor_rules_some_layers_missing_is_an_error),
        T(test_llm_compressor_rules_allow_missing_layers),
        T(test_remapped_old_names),
        T(test_deprecated_kv_scale_fp8_rules),
        T(test_deprecated_kv_scale_llm_compressor_rules),
        T(test_unmatched_scale_name_warns_like_vllm),
        T(test_kv_cache_dtype_auto_without_scheme),
        T(test_kv_cache_dtype_e5m2_refused),
        T(test_per_head_refused_under_fp8_rules),
        T(test_shards_and_index),
        T(test_text_config_of_a_multimodal_model),
        T(test_fingerprint_bytes),
        T(test_scale_from_amax),
        T(test_option_names),
        T(test_config_not_json),
        T(test_config_not_an_object),
        T(test_config_duplicate_key),
        T(test_config_layers_missing),
        T(test_config_layers_wrong_type),
        T(test_config_layers_out_of_range),
        T(test_config_heads_missing),
        T(test_config_kv_heads_do_not_divide),
        T(test_config_head_size_unknown),
        T(test_config_quantization_config_wrong_type),
        T(test_config_scheme_wrong_type),
        T(test_config_scheme_type_not_float),
        T(test_config_scheme_bits_not_8),
        T(test_config_scheme_strategy_unsupported),
        T(test_config_scheme_not_symmetric),
        T(test_config_missing_file),
        T(test_scale_nan),
        T(test_scale_zero),
        T(test_scale_negative),
        T(test_scale_infinite),
        T(test_scale_unsupported_dtype),
        T(test_scale_shape_not_per_tensor),
        T(test_scale_shape_not_per_head),
        T(test_scale_nan_in_one_head),
        T(test_scale_k_v_shapes_differ),
        T(test_scale_layer_past_the_model),
        T(test_scale_duplicate_across_files),
        T(test_scale_duplicate_through_a_remap),
        T(test_scale_file_malformed),
        T(test_no_safetensors_files),
        T(test_index_names_a_missing_file),
        T(test_build_from_memory),
    };
    return cmocka_run_group_tests_name("scales", tests, NULL, NULL);
}
