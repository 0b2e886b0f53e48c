/* The paged KV cache: allocation, vLLM's cache write, and element reads. */
#include "kvfp8/kv_cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const dtype_names[] = {"float32", "float16", "bfloat16"};

const char *kvfp8_model_dtype_name(kvfp8_model_dtype d) {
    return (unsigned)d < 3 ? dtype_names[d] : "?";
}

kvfp8_status kvfp8_model_dtype_parse(const char *name, kvfp8_model_dtype *out) {
    static const struct {
        const char *name;
        kvfp8_model_dtype d;
    } names[] = {{"float32", KVFP8_DTYPE_F32}, {"f32", KVFP8_DTYPE_F32},   {"float16", KVFP8_DTYPE_F16},
                 {"f16", KVFP8_DTYPE_F16},     {"half", KVFP8_DTYPE_F16},  {"bfloat16", KVFP8_DTYPE_BF16},
                 {"bf16", KVFP8_DTYPE_BF16}};
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i].name)) {
            *out = names[i].d;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID, "unknown dtype '%s' (float32, float16, bfloat16)", name ? name : "(null)");
}

float kvfp8_round_to_model_dtype(kvfp8_model_dtype d, float x) {
    switch (d) {
    case KVFP8_DTYPE_F16: return kvfp8_f16_to_f32(kvfp8_f32_to_f16(x));
    case KVFP8_DTYPE_BF16: return kvfp8_bf16_to_f32(kvfp8_f32_to_bf16(x));
    case KVFP8_DTYPE_F32: break;
    }
    return x;
}

size_t kvfp8_kv_storage_bytes(const kvfp8_kv_storage *s) {
    if (s->is_fp8)
        return 1;
    return s->dtype == KVFP8_DTYPE_F32 ? 4 : 2;
}

kvfp8_status kvfp8_kv_cache_init(kvfp8_kv_cache *c, const kvfp8_kv_storage *storage, int num_blocks,
                                 int block_size, int num_kv_heads, int head_size) {
    memset(c, 0, sizeof *c);
    if (num_blocks <= 0 || block_size <= 0 || num_kv_heads <= 0 || head_size <= 0)
        return kvfp8_fail(KVFP8_ERR_INVALID,
                          "cache shape must be positive: num_blocks=%d block_size=%d num_kv_heads=%d head_size=%d",
                          num_blocks, block_size, num_kv_heads, head_size);
    if (num_kv_heads > 256)
        return kvfp8_fail(KVFP8_ERR_INVALID, "num_kv_heads=%d: at most 256 are supported", num_kv_heads);
    c->storage = *storage;
    c->num_blocks = num_blocks;
    c->block_size = block_size;
    c->num_kv_heads = num_kv_heads;
    c->head_size = head_size;
    const size_t elems = (size_t)num_blocks * (size_t)block_size * (size_t)num_kv_heads * (size_t)head_size;
    const size_t bytes = elems * kvfp8_kv_storage_bytes(storage);
    c->key_cache = calloc(bytes, 1);
    c->value_cache = calloc(bytes, 1);
    if (!c->key_cache || !c->value_cache) {
        kvfp8_kv_cache_free(c);
        return kvfp8_fail(KVFP8_ERR_NOMEM, "KV cache of %zu bytes per tensor", bytes);
    }
    c->scale_count = 1;
    c->k_scale[0] = c->v_scale[0] = 1.0f;
    return KVFP8_OK;
}

void kvfp8_kv_cache_free(kvfp8_kv_cache *c) {
    free(c->key_cache);
    free(c->value_cache);
    c->key_cache = c->value_cache = NULL;
}

kvfp8_status kvfp8_kv_cache_set_scales(kvfp8_kv_cache *c, const float *k_scale, const float *v_scale,
                                       int count) {
    if (count != 1 && count != c->num_kv_heads)
        return kvfp8_fail(KVFP8_ERR_INVALID, "scales: count %d is neither 1 (per tensor) nor num_kv_heads=%d",
                          count, c->num_kv_heads);
    for (int i = 0; i < count; i++) {
        if (kvfp8_fp8_check_scale(k_scale[i]) != KVFP8_OK)
            return kvfp8_fail(KVFP8_ERR_INVALID, "k_scale[%d]: %s", i, kvfp8_last_error());
        if (kvfp8_fp8_check_scale(v_scale[i]) != KVFP8_OK)
            return kvfp8_fail(KVFP8_ERR_INVALID, "v_scale[%d]: %s", i, kvfp8_last_error());
    }
    memcpy(c->k_scale, k_scale, sizeof(float) * (size_t)count);
    memcpy(c->v_scale, v_scale, sizeof(float) * (size_t)count);
    c->scale_count = count;
    return KVFP8_OK;
}

static size_t element_index(const kvfp8_kv_cache *c, int64_t slot, int head, int dim) {
    return ((size_t)slot * (size_t)c->num_kv_heads + (size_t)head) * (size_t)c->head_size + (size_t)dim;
}

static float scale_of(const kvfp8_kv_cache *c, int is_value, int head) {
    const float *s = is_value ? c->v_scale : c->k_scale;
    return s[c->scale_count == 1 ? 0 : head];
}

static uint32_t load_source(kvfp8_source src, const void *base, size_t index) {
    const unsigned char *p = base;
    if (src == KVFP8_SRC_F32) {
        uint32_t v;
        memcpy(&v, p + 4 * index, 4);
        return v;
    }
    uint16_t v;
    memcpy(&v, p + 2 * index, 2);
    return v;
}

static float source_to_f32(kvfp8_source src, uint32_t bits) {
    if (src == KVFP8_SRC_F16)
        return kvfp8_f16_to_f32((uint16_t)bits);
    if (src == KVFP8_SRC_BF16)
        return kvfp8_bf16_to_f32((uint16_t)bits);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void store(const kvfp8_kv_cache *c, uint8_t *cache, size_t index, kvfp8_source src, uint32_t bits,
                  float scale) {
    if (c->storage.is_fp8) {
        cache[index] = kvfp8_fp8_encode_scaled_ref(&c->storage.fp8, src, bits, scale);
        return;
    }
    const float x = source_to_f32(src, bits);
    switch (c->storage.dtype) {
    case KVFP8_DTYPE_F32: memcpy(cache + 4 * index, &x, 4); break;
    case KVFP8_DTYPE_F16: {
        uint16_t h = kvfp8_f32_to_f16(x);
        memcpy(cache + 2 * index, &h, 2);
        break;
    }
    case KVFP8_DTYPE_BF16: {
        uint16_t b = kvfp8_f32_to_bf16(x);
        memcpy(cache + 2 * index, &b, 2);
        break;
    }
    }
}

kvfp8_status kvfp8_cache_write(kvfp8_kv_cache *c, kvfp8_source src, const void *key, const void *value,
                               const int64_t *slot_mapping, size_t num_tokens) {
    if ((unsigned)src >= KVFP8_SOURCE_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "cache write: unknown source type %d", (int)src);
    const int64_t slots = (int64_t)c->num_blocks * c->block_size;
    for (size_t t = 0; t < num_tokens; t++) /* validate everything before writing anything */
        if (slot_mapping[t] >= slots)
            return kvfp8_fail(KVFP8_ERR_INVALID, "cache write: token %zu has slot %lld, beyond the %lld slots",
                              t, (long long)slot_mapping[t], (long long)slots);
    const size_t per_token = (size_t)c->num_kv_heads * (size_t)c->head_size;
    for (size_t t = 0; t < num_tokens; t++) {
        const int64_t slot = slot_mapping[t];
        if (slot < 0)
            continue; /* padding */
        for (int h = 0; h < c->num_kv_heads; h++)
            for (int d = 0; d < c->head_size; d++) {
                const size_t in = t * per_token + (size_t)h * (size_t)c->head_size + (size_t)d;
                const size_t at = element_index(c, slot, h, d);
                store(c, c->key_cache, at, src, load_source(src, key, in), scale_of(c, 0, h));
                store(c, c->value_cache, at, src, load_source(src, value, in), scale_of(c, 1, h));
            }
    }
    return KVFP8_OK;
}

uint32_t kvfp8_cache_raw(const kvfp8_kv_cache *c, int is_value, int64_t slot, int head, int dim) {
    const uint8_t *cache = is_value ? c->value_cache : c->key_cache;
    const size_t i = element_index(c, slot, head, dim);
    if (c->storage.is_fp8)
        return cache[i];
    if (c->storage.dtype == KVFP8_DTYPE_F32) {
        uint32_t v;
        memcpy(&v, cache + 4 * i, 4);
        return v;
    }
    uint16_t v;
    memcpy(&v, cache + 2 * i, 2);
    return v;
}

float kvfp8_cache_read_f32(const kvfp8_kv_cache *c, int is_value, int64_t slot, int head, int dim) {
    const uint32_t raw = kvfp8_cache_raw(c, is_value, slot, head, dim);
    if (c->storage.is_fp8)
        return kvfp8_fp8_dequant(c->storage.fp8.format, (uint8_t)raw, scale_of(c, is_value, head));
    switch (c->storage.dtype) {
    case KVFP8_DTYPE_F16: return kvfp8_f16_to_f32((uint16_t)raw);
    case KVFP8_DTYPE_BF16: return kvfp8_bf16_to_f32((uint16_t)raw);
    case KVFP8_DTYPE_F32: break;
    }
    float f;
    memcpy(&f, &raw, 4);
    return f;
}

double kvfp8_cache_read_exact(const kvfp8_kv_cache *c, int is_value, int64_t slot, int head, int dim) {
    if (!c->storage.is_fp8)
        return (double)kvfp8_cache_read_f32(c, is_value, slot, head, dim);
    const uint8_t code = (uint8_t)kvfp8_cache_raw(c, is_value, slot, head, dim);
    return (double)kvfp8_fp8_decode(c->storage.fp8.format, code) * (double)scale_of(c, is_value, head);
}
