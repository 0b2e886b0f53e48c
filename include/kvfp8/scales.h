/* kvfp8 — a model's KV-cache scales: the artifacts llm-compressor writes and vLLM
 * loads, read with vLLM's loading rules as options, and written back.
 *
 * A checkpoint folder holds config.json (the model's shape, and for llm-compressor
 * a quantization_config.kv_cache_scheme) and *.safetensors files holding, per
 * attention layer, model.layers.N.self_attn.k_scale and .v_scale: shape (1,) per
 * tensor or (num_kv_heads, 1, 1) per head, dtype BF16/F16 (the attention module's
 * dtype) or F32.  Older artifacts name them ...self_attn.k_proj.output_scale,
 * ...self_attn.kv_scale (one scale for both) or, from ModelOpt,
 * ...self_attn.k_proj.k_scale; vLLM remaps those.
 *
 * vLLM applies one of two rule sets after loading (docs/scales.md quotes both with
 * their source files):
 *  - KVFP8_SCALE_RULES_FP8_CHECKPOINT (vllm/model_executor/layers/quantization/
 *    kv_cache.py, BaseKVCacheMethod; also every compressed-tensors checkpoint in vLLM
 *    releases before 2026-01-22): a scale not in the checkpoint is "not loaded";
 *    both loaded -> used; neither -> 1.0; only one -> max(k, v) for both; loaded
 *    values are doubled on FNUZ hardware (an E4M3FNUZ code is worth half its E4M3FN
 *    value); per-tensor only; fp8_e5m2 is refused.
 *  - KVFP8_SCALE_RULES_LLM_COMPRESSOR (compressed-tensors checkpoints, vLLM after
 *    2026-01-22, CompressedTensorsKVCacheMethod): scales start at 1.0 and are used
 *    exactly as stored, per tensor or per head, never doubled.
 *
 * kvfp8 is stricter than vLLM where vLLM would run silently with wrong numbers; each
 * such case is an error naming the file and the field (the list is in
 * docs/scales.md): a NaN, zero, negative or infinite scale, a shape that does not
 * fit the strategy, k and v of different shapes, a layer index past the model, the
 * same scale twice, and (llm-compressor rules) scales for some layers only. */
#ifndef KVFP8_SCALES_H
#define KVFP8_SCALES_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/safetensors.h"
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    /* By quantization_config.quant_method: "compressed-tensors" -> LLM_COMPRESSOR,
     * anything else (or none) -> FP8_CHECKPOINT. */
    KVFP8_SCALE_RULES_AUTO = 0,
    KVFP8_SCALE_RULES_LLM_COMPRESSOR = 1,
    KVFP8_SCALE_RULES_FP8_CHECKPOINT = 2
} kvfp8_scale_rules;

typedef enum {
    KVFP8_SCALE_TENSOR = 0,   /* kv_cache_scheme.strategy "tensor": one value per layer */
    KVFP8_SCALE_ATTN_HEAD = 1 /* "attn_head": one value per KV head, shape (H, 1, 1) */
} kvfp8_scale_strategy;

/* vLLM's --kv-cache-dtype. */
typedef enum {
    KVFP8_KV_CACHE_AUTO = 0,     /* the model's dtype, unless the checkpoint declares a kv_cache_scheme */
    KVFP8_KV_CACHE_FP8 = 1,      /* E4M3 (E4M3FNUZ on FNUZ hardware) */
    KVFP8_KV_CACHE_FP8_E4M3 = 2,
    KVFP8_KV_CACHE_FP8_E5M2 = 3
} kvfp8_kv_cache_dtype;

/* Where a layer's k or v scale came from. */
typedef enum {
    KVFP8_SCALE_SRC_LOADED = 0,     /* stored under its current name */
    KVFP8_SCALE_SRC_REMAPPED = 1,   /* stored under an older name vLLM remaps */
    KVFP8_SCALE_SRC_DEFAULT = 2,    /* not stored: 1.0 */
    KVFP8_SCALE_SRC_MAX_OF_ONE = 3  /* fp8-checkpoint rules, only one of k/v stored: max of the two */
} kvfp8_scale_source;

const char *kvfp8_scale_rules_name(kvfp8_scale_rules r);        /* "auto", "llm-compressor", "fp8-checkpoint" */
kvfp8_status kvfp8_scale_rules_parse(const char *name, kvfp8_scale_rules *out);
const char *kvfp8_scale_strategy_name(kvfp8_scale_strategy s);  /* "tensor", "attn_head" */
kvfp8_status kvfp8_scale_strategy_parse(const char *name, kvfp8_scale_strategy *out);
const char *kvfp8_kv_cache_dtype_name(kvfp8_kv_cache_dtype d);  /* "auto", "fp8", "fp8_e4m3", "fp8_e5m2" */
kvfp8_status kvfp8_kv_cache_dtype_parse(const char *name, kvfp8_kv_cache_dtype *out);
const char *kvfp8_scale_source_name(kvfp8_scale_source s);      /* "loaded", "remapped", "default-1.0", "max-of-one" */

/* Bounds that keep a hostile config.json from asking for huge allocations. */
#define KVFP8_SCALES_MAX_LAYERS 65536u
#define KVFP8_SCALES_MAX_HEADS 65536u
#define KVFP8_SCALES_MAX_VALUES (1u << 22) /* num_layers x values per layer */

/* ---- config.json ------------------------------------------------------------------ */

typedef struct {
    uint32_t num_layers;          /* num_hidden_layers */
    uint32_t num_attention_heads;
    uint32_t num_kv_heads;        /* num_key_value_heads, default num_attention_heads */
    uint32_t head_dim;            /* head_dim, default hidden_size / num_attention_heads */
    uint32_t hidden_size;         /* 0 when absent (head_dim given) */
    int has_quantization_config;
    char quant_method[64];        /* "" when absent */
    int has_kv_cache_scheme;      /* quantization_config.kv_cache_scheme present and not null */
    kvfp8_scale_strategy strategy;/* the scheme's strategy; TENSOR without a scheme */
    int dynamic;                  /* the scheme's "dynamic" (not validated by vLLM) */
} kvfp8_model_config;

/* Parses config.json text.  The model fields are read from the top level or, for a
 * multimodal model without them there, from "text_config"; quantization_config is
 * always top level.  kv_cache_scheme is validated as vLLM does (type "float",
 * num_bits 8, strategy "tensor" or "attn_head", symmetric true), each field checked
 * on its own.  Errors name `label` and the field path, e.g.
 * "m/config.json: quantization_config.kv_cache_scheme.num_bits: ...". */
kvfp8_status kvfp8_model_config_parse(const char *text, size_t len, const char *label,
                                      kvfp8_model_config *out);

/* ---- loading ---------------------------------------------------------------------- */

typedef struct {
    kvfp8_scale_rules rules;
    int fnuz;                        /* the hardware's FP8 is E4M3FNUZ (MI300): fp8-checkpoint rules double */
    kvfp8_kv_cache_dtype kv_cache_dtype;
    /* llm-compressor rules: accept scales for some layers only, running the others
     * at 1.0 with a warning, as vLLM does silently.  Off: that is an error. */
    int allow_missing_layers;
} kvfp8_scale_options;

typedef struct {
    uint32_t num_layers, num_attention_heads, num_kv_heads, head_dim, hidden_size;
    kvfp8_scale_strategy strategy;
    uint32_t per_layer;              /* values per layer: 1, or num_kv_heads per head */
    /* The scales the engine uses, after the rules: layer L's values are
     * k[L * per_layer ...], exact float32. */
    float *k, *v;
    kvfp8_scale_source *k_source, *v_source; /* per layer */
    kvfp8_st_dtype dtype;            /* what they were stored in (of the first one loaded); F32 if none */
    kvfp8_scale_rules rules;         /* resolved, never AUTO */
    kvfp8_kv_cache_dtype kv_cache_dtype; /* resolved: AUTO means the cache is not FP8 */
    int fnuz_doubled;                /* loaded values were doubled for FNUZ hardware */
    size_t warning_count;
    char **warnings;                 /* in the order met, each once; vLLM's wording where vLLM warns */
} kvfp8_scales;

/* Loads DIR/config.json and the scales in DIR's *.safetensors files (only those that
 * DIR/model.safetensors.index.json lists, when it exists, as vLLM does).  Only the
 * scale tensors' bytes are read.  opt NULL: rules AUTO, not FNUZ, kv_cache_dtype
 * AUTO.  On error *out is empty. */
kvfp8_status kvfp8_scales_load(const char *dir, const kvfp8_scale_options *opt, kvfp8_scales *out);

/* The rules applied to files already parsed (kvfp8_scales_load reads the folder and
 * calls this; the fuzz targets call it on memory).  config_label names config.json
 * and checkpoint_label the folder in messages; each file names itself. */
kvfp8_status kvfp8_scales_build(const kvfp8_model_config *cfg, const char *config_label,
                                const kvfp8_st_file *files, size_t nfiles, const char *checkpoint_label,
                                const kvfp8_scale_options *opt, kvfp8_scales *out);

/* Which tensor names the loader reads (the kvfp8_st_filter it passes). */
int kvfp8_scales_is_scale_name(const char *name, void *ctx);

void kvfp8_scales_free(kvfp8_scales *s);

/* ---- writing ---------------------------------------------------------------------- */

/* An empty set of scales to fill and save: every value 1.0 with source DEFAULT,
 * rules LLM_COMPRESSOR, kv_cache_dtype FP8.  dtype: F32, F16 or BF16.  head_dim 0
 * means hidden_size / num_attention_heads; hidden_size 0 means num_attention_heads x
 * head_dim. */
kvfp8_status kvfp8_scales_init(kvfp8_scales *s, uint32_t num_layers, uint32_t num_attention_heads,
                               uint32_t num_kv_heads, uint32_t head_dim, uint32_t hidden_size,
                               kvfp8_scale_strategy strategy, kvfp8_st_dtype dtype);

/* Writes DIR/model.safetensors (model.layers.N.self_attn.k_scale and .v_scale in
 * s->dtype, shape (1,) or (num_kv_heads, 1, 1), metadata {"format": "pt"}) and
 * DIR/config.json (the model's shape fields and a compressed-tensors
 * quantization_config with kv_cache_scheme), each atomically; DIR is created if
 * needed.  Values are rounded to s->dtype (nearest even); a value that is not finite
 * and > 0 before or after rounding is an error, and nothing is written.  Refuses to
 * replace a model.safetensors that holds anything but KV scales. */
kvfp8_status kvfp8_scales_save(const char *dir, const kvfp8_scales *s);

/* ---- derived values --------------------------------------------------------------- */

/* SHA-256, as 64 lowercase hex digits and a NUL, of the bytes
 *   "kvfp8-scales-v1" | u32le num_layers | u32le per_layer | u8 strategy |
 *   for each layer: per_layer float32 k values, then per_layer v values (LE bits)
 * i.e. of the effective values and their shape; the dtype they were stored in and
 * where they came from do not enter.  The hash module's layout key uses it. */
kvfp8_status kvfp8_scales_fingerprint(const kvfp8_scales *s, char out[65]);

/* The per-layer floats vLLM's attention backends read (_k_scale_float): the value,
 * or the largest head's value per head. */
kvfp8_status kvfp8_scales_layer_float(const kvfp8_scales *s, uint32_t layer, float *k, float *v);

/* Calibration's scale from an observed absolute maximum, as compressed-tensors
 * computes it: amax / 448 divided in float32 and rounded (to nearest even) to the
 * storage dtype, a zero result replaced by torch.finfo(dtype).eps (BF16 2^-7, F16
 * 2^-10, F32 2^-23).  amax must be finite and >= 0.  bits (may be NULL) receives the
 * stored bit pattern (16 or 32 bits). */
kvfp8_status kvfp8_scales_round_amax(float amax, kvfp8_st_dtype dtype, float *scale, uint32_t *bits);

#ifdef __cplusplus
}
#endif
#endif
