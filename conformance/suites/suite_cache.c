/* EXACT: the cache write (vLLM's reshape_and_cache_flash), byte for byte against the
 * reference write on the same inputs, starting from the same non-zero garbage (so a
 * write to a padding slot, or a missed write, shows).
 *
 * cache_write.fp8_<format>: every rules table of the format the backend claims, for
 * f32, f16 and bf16 inputs; head sizes 64/128/256, block sizes 16/32, per-tensor and
 * per-KV-head scales, scattered slots with padding (-1), inputs with outliers that
 * saturate and a sprinkling of NaN, infinities, -0 and subnormals.
 * cache_write.auto_<dtype>: `--kv-cache-dtype auto` storage, every source type
 * (NaN payloads included: the stored bits must match too). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conform_suite.h"

typedef struct {
    int kv_heads, head_size, block_size, num_blocks;
} shape;

static const shape shapes[] = {{2, 128, 16, 6}, {1, 64, 32, 3}, {4, 256, 16, 4}};
enum { TOKENS = 37 };

static uint32_t special(uint64_t *s, kvfp8_source src) {
    static const uint32_t f32[] = {0x7FC00000u, 0xFF800001u, 0x7F800000u, 0xFF800000u, 0x80000000u, 0x00000001u,
                                   0x4B000000u, 0xCB800000u};
    static const uint16_t f16[] = {0x7E00, 0xFC01, 0x7C00, 0xFC00, 0x8000, 0x0001, 0x7BFF, 0xFBFF};
    static const uint16_t bf16[] = {0x7FC0, 0xFF81, 0x7F80, 0xFF80, 0x8000, 0x0001, 0x7F7F, 0xC700};
    const unsigned i = (unsigned)(kvfp8_conform_rand(s) >> 61);
    return src == KVFP8_SRC_F32 ? f32[i] : src == KVFP8_SRC_F16 ? f16[i] : bf16[i];
}

/* n source elements: mostly |x| ~ 1..8 with an outlier channel, 1 in 50 special. */
static void *make_input(kvfp8_source src, size_t n, int head_size, uint64_t seed) {
    const size_t width = src == KVFP8_SRC_F32 ? 4 : 2;
    unsigned char *p = malloc(n * width);
    assert_non_null(p);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        if (kvfp8_conform_rand(&s) % 50 == 0) {
            bits = special(&s, src);
        } else {
            const float big = (i % (size_t)head_size) == 5 ? 300.0f : 4.0f;
            const float x = kvfp8_conform_frand(&s, big);
            bits = src == KVFP8_SRC_F32   ? kvfp8_conform_f32_bits(x)
                   : src == KVFP8_SRC_F16 ? kvfp8_f32_to_f16(x)
                                          : kvfp8_f32_to_bf16(x);
        }
        if (width == 4)
            memcpy(p + 4 * i, &bits, 4);
        else {
            const uint16_t h = (uint16_t)bits;
            memcpy(p + 2 * i, &h, 2);
        }
    }
    return p;
}

static uint32_t input_bits(kvfp8_source src, const void *base, size_t i) {
    if (src == KVFP8_SRC_F32) {
        uint32_t b;
        memcpy(&b, (const unsigned char *)base + 4 * i, 4);
        return b;
    }
    uint16_t h;
    memcpy(&h, (const unsigned char *)base + 2 * i, 2);
    return h;
}

static void fill_garbage(kvfp8_kv_cache *c, size_t bytes, uint64_t seed) {
    uint64_t s = seed;
    for (size_t i = 0; i < bytes; i++) {
        c->key_cache[i] = (uint8_t)(kvfp8_conform_rand(&s) >> 56);
        c->value_cache[i] = (uint8_t)(kvfp8_conform_rand(&s) >> 56);
    }
}

/* One write through the backend and through the reference; returns 1 if the backend
 * claimed the case, 0 if it declined. */
static int write_case(const kvfp8_kv_storage *storage, const char *storage_label, kvfp8_source src, const shape *sh,
                      int per_head, uint64_t seed) {
    kvfp8_backend *b = kvfp8_conform_backend();
    kvfp8_backend_query q;
    memset(&q, 0, sizeof q);
    q.op = KVFP8_OP_CACHE_WRITE, q.storage = *storage, q.fp8 = storage->fp8, q.source = src;
    q.head_size = sh->head_size, q.block_size = sh->block_size, q.num_kv_heads = sh->kv_heads;
    q.per_head_scales = per_head && sh->kv_heads > 1;
    if (!kvfp8_conform_claims(&q))
        return 0;
    kvfp8_kv_cache want, got;
    assert_int_equal(kvfp8_kv_cache_init(&want, storage, sh->num_blocks, sh->block_size, sh->kv_heads, sh->head_size),
                     KVFP8_OK);
    assert_int_equal(kvfp8_kv_cache_init(&got, storage, sh->num_blocks, sh->block_size, sh->kv_heads, sh->head_size),
                     KVFP8_OK);
    float ks[256], vs[256];
    const int count = per_head ? sh->kv_heads : 1;
    for (int h = 0; h < count; h++)
        ks[h] = 0.37f + 0.013f * (float)h, vs[h] = 1.9f - 0.11f * (float)h;
    assert_int_equal(kvfp8_kv_cache_set_scales(&want, ks, vs, count), KVFP8_OK);
    assert_int_equal(kvfp8_kv_cache_set_scales(&got, ks, vs, count), KVFP8_OK);
    const size_t slots = (size_t)sh->num_blocks * (size_t)sh->block_size;
    const size_t row = (size_t)sh->kv_heads * (size_t)sh->head_size;
    const size_t bytes = slots * row * kvfp8_kv_storage_bytes(storage);
    fill_garbage(&want, bytes, seed ^ 0xCAFEu);
    memcpy(got.key_cache, want.key_cache, bytes);
    memcpy(got.value_cache, want.value_cache, bytes);

    /* scattered distinct slots, every seventh token padding */
    int64_t slot_mapping[TOKENS];
    int64_t *perm = malloc(sizeof(int64_t) * slots);
    assert_non_null(perm);
    uint64_t s = seed;
    for (size_t i = 0; i < slots; i++)
        perm[i] = (int64_t)i;
    for (size_t i = slots - 1; i > 0; i--) {
        const size_t j = (size_t)(kvfp8_conform_rand(&s) % (i + 1));
        const int64_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int t = 0; t < TOKENS; t++)
        slot_mapping[t] = t % 7 == 3 ? -1 : perm[t];
    void *key = make_input(src, TOKENS * row, sh->head_size, seed + 1);
    void *value = make_input(src, TOKENS * row, sh->head_size, seed + 2);
    assert_int_equal(kvfp8_cache_write(&want, src, key, value, slot_mapping, TOKENS), KVFP8_OK);
    char what[200];
    snprintf(what, sizeof what, "cache_write %s %s kv_heads=%d head_size=%d block_size=%d %s scales", storage_label,
             kvfp8_source_name(src), sh->kv_heads, sh->head_size, sh->block_size, per_head ? "per-head" : "per-tensor");
    kvfp8_conform_expect_ok(b->ops->cache_write(b->state, &got, src, key, value, slot_mapping, TOKENS), what);

    if (memcmp(got.key_cache, want.key_cache, bytes) || memcmp(got.value_cache, want.value_cache, bytes)) {
        int *token_of = malloc(sizeof(int) * slots);
        assert_non_null(token_of);
        for (size_t i = 0; i < slots; i++)
            token_of[i] = -1;
        for (int t = 0; t < TOKENS; t++)
            if (slot_mapping[t] >= 0)
                token_of[slot_mapping[t]] = t;
        for (int is_value = 0; is_value <= 1; is_value++)
            for (size_t slot = 0; slot < slots; slot++)
                for (int h = 0; h < sh->kv_heads; h++)
                    for (int d = 0; d < sh->head_size; d++) {
                        const uint32_t g = kvfp8_cache_raw(&got, is_value, (int64_t)slot, h, d);
                        const uint32_t w = kvfp8_cache_raw(&want, is_value, (int64_t)slot, h, d);
                        if (g == w)
                            continue;
                        const int t = token_of[slot];
                        const int digits = (int)(2 * kvfp8_kv_storage_bytes(storage));
                        if (t < 0) {
                            kvfp8_conform_failure("%s: %s slot %zu head %d dim %d (no token writes it) => 0x%0*x, "
                                                  "expected untouched 0x%0*x",
                                                  what, is_value ? "value" : "key", slot, h, d, digits, g, digits, w);
                            continue;
                        }
                        const size_t at = (size_t)t * row + (size_t)h * (size_t)sh->head_size + (size_t)d;
                        const uint32_t in = input_bits(src, is_value ? value : key, at);
                        const float sc = (is_value ? vs : ks)[per_head ? h : 0];
                        kvfp8_conform_failure("%s: %s token %d head %d dim %d -> slot %zu: input 0x%0*x / scale %a => "
                                              "0x%0*x, expected 0x%0*x",
                                              what, is_value ? "value" : "key", t, h, d, slot,
                                              src == KVFP8_SRC_F32 ? 8 : 4, in, (double)sc, digits, g, digits, w);
                    }
        free(token_of);
    }
    free(key), free(value), free(perm);
    kvfp8_kv_cache_free(&want);
    kvfp8_kv_cache_free(&got);
    return 1;
}

static void fp8_storage(kvfp8_format f) {
    int claimed = 0, declined = 0, t = 0;
    kvfp8_fp8_rules r;
    char label[64];
    for (int i = 0; kvfp8_conform_rules_at(i, &r); i++) {
        if (r.format != f)
            continue;
        kvfp8_kv_storage st = {1, KVFP8_DTYPE_BF16, r};
        kvfp8_conform_rules_label(&r, label, sizeof label);
        for (int src = 0; src < KVFP8_SOURCE_COUNT; src++, t++) {
            /* the rules table is checked exhaustively by fp8_encode; here the layout,
             * scales and slots matter, so each case takes the next shape */
            const shape *sh = &shapes[t % 3];
            if (write_case(&st, label, (kvfp8_source)src, sh, t % 2 == 0, 0xC0DE0000u + (uint64_t)t))
                claimed++;
            else
                declined++;
        }
    }
    if (!claimed)
        kvfp8_conform_not_supported("the backend declines every cache write to %s storage", kvfp8_format_name(f));
    kvfp8_conform_detail("%d (rules table, source) cases written, %d declined; %d tokens each, shapes (kv_heads, "
                         "head_size, block_size) 2/128/16, 1/64/32, 4/256/16",
                         claimed, declined, TOKENS);
    kvfp8_conform_check_failures();
}

static void auto_storage(kvfp8_model_dtype dtype) {
    kvfp8_kv_storage st;
    memset(&st, 0, sizeof st);
    st.dtype = dtype;
    char label[32];
    snprintf(label, sizeof label, "auto/%s", kvfp8_model_dtype_name(dtype));
    int claimed = 0, declined = 0;
    for (int src = 0; src < KVFP8_SOURCE_COUNT; src++)
        for (int s = 0; s < 3; s++) {
            if (write_case(&st, label, (kvfp8_source)src, &shapes[s], s == 0, 0xA070000u + (uint64_t)(src * 3 + s)))
                claimed++;
            else
                declined++;
        }
    if (!claimed)
        kvfp8_conform_not_supported("the backend declines every cache write to %s storage", label);
    kvfp8_conform_detail("%d (source, shape) cases written, %d declined", claimed, declined);
    kvfp8_conform_check_failures();
}

static void test_fp8_e4m3fn(void **state) {
    (void)state;
    fp8_storage(KVFP8_E4M3FN);
}
static void test_fp8_e5m2(void **state) {
    (void)state;
    fp8_storage(KVFP8_E5M2);
}
static void test_fp8_e4m3fnuz(void **state) {
    (void)state;
    fp8_storage(KVFP8_E4M3FNUZ);
}
static void test_fp8_e5m2fnuz(void **state) {
    (void)state;
    fp8_storage(KVFP8_E5M2FNUZ);
}
static void test_auto_f32(void **state) {
    (void)state;
    auto_storage(KVFP8_DTYPE_F32);
}
static void test_auto_f16(void **state) {
    (void)state;
    auto_storage(KVFP8_DTYPE_F16);
}
static void test_auto_bf16(void **state) {
    (void)state;
    auto_storage(KVFP8_DTYPE_BF16);
}

const kvfp8_conform_test kvfp8_conform_suite_cache[] = {
    {"cache_write", "fp8_e4m3fn", "EXACT", test_fp8_e4m3fn, "e4m3fn cache bytes vs the reference write"},
    {"cache_write", "fp8_e5m2", "EXACT", test_fp8_e5m2, "e5m2 cache bytes vs the reference write"},
    {"cache_write", "fp8_e4m3fnuz", "EXACT", test_fp8_e4m3fnuz, "e4m3fnuz cache bytes vs the reference write"},
    {"cache_write", "fp8_e5m2fnuz", "EXACT", test_fp8_e5m2fnuz, "e5m2fnuz cache bytes vs the reference write"},
    {"cache_write", "auto_f32", "EXACT", test_auto_f32, "float32 `auto` cache bytes vs the reference write"},
    {"cache_write", "auto_f16", "EXACT", test_auto_f16, "float16 `auto` cache bytes vs the reference write"},
    {"cache_write", "auto_bf16", "EXACT", test_auto_bf16, "bfloat16 `auto` cache bytes vs the reference write"},
};
const size_t kvfp8_conform_suite_cache_count = sizeof kvfp8_conform_suite_cache / sizeof kvfp8_conform_suite_cache[0];
