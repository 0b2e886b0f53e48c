/* kvfp8 — the paged KV cache: layout, the cache write (vLLM's reshape_and_cache_flash)
 * and element reads under each dequantization semantics.
 *
 * Layout ("flash"): key_cache and value_cache are each
 *   [num_blocks][block_size][num_kv_heads][head_size]
 * elements of the storage type.  A token's slot is block_id * block_size + offset;
 * a negative slot means "skip this token" (padding).  Facts: docs/attention.md. */
#ifndef KVFP8_KV_CACHE_H
#define KVFP8_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/fp8.h"
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The model's activation dtype, and what `--kv-cache-dtype auto` stores. */
typedef enum {
    KVFP8_DTYPE_F32 = 0,
    KVFP8_DTYPE_F16 = 1,
    KVFP8_DTYPE_BF16 = 2
} kvfp8_model_dtype;

const char *kvfp8_model_dtype_name(kvfp8_model_dtype d);
kvfp8_status kvfp8_model_dtype_parse(const char *name, kvfp8_model_dtype *out);

/* Rounds a float32 to the model dtype (nearest even) and back: the "to(q.dtype)". */
float kvfp8_round_to_model_dtype(kvfp8_model_dtype d, float x);

/* Storage of one cache: the model dtype ("auto") or FP8 under a rules table. */
typedef struct {
    int is_fp8;
    kvfp8_model_dtype dtype; /* element type when !is_fp8 */
    kvfp8_fp8_rules fp8;     /* when is_fp8 */
} kvfp8_kv_storage;

/* Bytes per stored element (1 for FP8, 2 for f16/bf16, 4 for f32). */
size_t kvfp8_kv_storage_bytes(const kvfp8_kv_storage *s);

typedef struct {
    kvfp8_kv_storage storage;
    int num_blocks, block_size, num_kv_heads, head_size;
    /* Scales: per tensor (scale_count 1) or per KV head (scale_count num_kv_heads).
     * vLLM requires k and v scales of the same shape. */
    int scale_count;
    float k_scale[256], v_scale[256];
    uint8_t *key_cache, *value_cache; /* owned; num_blocks * block_size * heads * head_size elements */
} kvfp8_kv_cache;

/* Allocates a cache (contents zeroed); scales start at 1.0 per tensor. */
kvfp8_status kvfp8_kv_cache_init(kvfp8_kv_cache *c, const kvfp8_kv_storage *storage, int num_blocks,
                                 int block_size, int num_kv_heads, int head_size);
void kvfp8_kv_cache_free(kvfp8_kv_cache *c);

/* Sets the scales: count 1 (per tensor) or num_kv_heads (per head).  Every scale
 * must be finite and > 0. */
kvfp8_status kvfp8_kv_cache_set_scales(kvfp8_kv_cache *c, const float *k_scale, const float *v_scale,
                                       int count);

/* vLLM's reshape_and_cache_flash: for each token t with slot_mapping[t] >= 0, stores
 * key[t][h][d] and value[t][h][d] (packed in `src` precision: f32, f16 or bf16 bits)
 * at slot_mapping[t].  FP8: code = convert(float(x) / scale[h]); auto: the value
 * rounded to the storage dtype.  Errors name the token and slot. */
kvfp8_status kvfp8_cache_write(kvfp8_kv_cache *c, kvfp8_source src, const void *key, const void *value,
                               const int64_t *slot_mapping, size_t num_tokens);

/* The raw stored element (FP8 code or 16/32-bit pattern) of K (is_value 0) or V. */
uint32_t kvfp8_cache_raw(const kvfp8_kv_cache *c, int is_value, int64_t slot, int head, int dim);

/* The element as float32: decode(code) * scale in float32 (vLLM's dequantization),
 * or the stored value for auto storage. */
float kvfp8_cache_read_f32(const kvfp8_kv_cache *c, int is_value, int64_t slot, int head, int dim);

/* The element's exact value with the scale folded in double precision
 * (decode(code) * (double)scale): what a kernel that folds scales computes. */
double kvfp8_cache_read_exact(const kvfp8_kv_cache *c, int is_value, int64_t slot, int head, int dim);

#ifdef __cplusplus
}
#endif
#endif
