/* A model's KV-cache scales: config.json, the scale tensors, vLLM's loading rules
 * (see include/kvfp8/scales.h and docs/scales.md for the facts and their sources).
 *
 * Loading is three steps, each complete before the next starts, so that an error
 * anywhere leaves nothing behind: parse config.json; collect and validate every
 * scale tensor into one slot per (layer, k/v); apply the chosen rule set to the
 * slots.  Only the last step differs between the rule sets. */
#include "kvfp8/scales.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "kvfp8/fp8.h"

/* ---- names -------------------------------------------------------------------------- */

const char *kvfp8_scale_rules_name(kvfp8_scale_rules r) {
    switch (r) {
    case KVFP8_SCALE_RULES_AUTO: return "auto";
    case KVFP8_SCALE_RULES_LLM_COMPRESSOR: return "llm-compressor";
    case KVFP8_SCALE_RULES_FP8_CHECKPOINT: return "fp8-checkpoint";
    }
    return "?";
}

kvfp8_status kvfp8_scale_rules_parse(const char *name, kvfp8_scale_rules *out) {
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, kvfp8_scale_rules_name((kvfp8_scale_rules)i))) {
            *out = (kvfp8_scale_rules)i;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID, "unknown scale rules '%s' (auto, llm-compressor, fp8-checkpoint)",
                      name ? name : "(null)");
}

const char *kvfp8_scale_strategy_name(kvfp8_scale_strategy s) {
    switch (s) {
    case KVFP8_SCALE_TENSOR: return "tensor";
    case KVFP8_SCALE_ATTN_HEAD: return "attn_head";
    }
    return "?";
}

kvfp8_status kvfp8_scale_strategy_parse(const char *name, kvfp8_scale_strategy *out) {
    for (int i = 0; name && i < 2; i++)
        if (!strcmp(name, kvfp8_scale_strategy_name((kvfp8_scale_strategy)i))) {
            *out = (kvfp8_scale_strategy)i;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID, "unknown strategy '%s' (tensor, attn_head)", name ? name : "(null)");
}

const char *kvfp8_kv_cache_dtype_name(kvfp8_kv_cache_dtype d) {
    switch (d) {
    case KVFP8_KV_CACHE_AUTO: return "auto";
    case KVFP8_KV_CACHE_FP8: return "fp8";
    case KVFP8_KV_CACHE_FP8_E4M3: return "fp8_e4m3";
    case KVFP8_KV_CACHE_FP8_E5M2: return "fp8_e5m2";
    }
    return "?";
}

kvfp8_status kvfp8_kv_cache_dtype_parse(const char *name, kvfp8_kv_cache_dtype *out) {
    for (int i = 0; name && i < 4; i++)
        if (!strcmp(name, kvfp8_kv_cache_dtype_name((kvfp8_kv_cache_dtype)i))) {
            *out = (kvfp8_kv_cache_dtype)i;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID, "unknown kv_cache_dtype '%s' (auto, fp8, fp8_e4m3, fp8_e5m2)",
                      name ? name : "(null)");
}

const char *kvfp8_scale_source_name(kvfp8_scale_source s) {
    switch (s) {
    case KVFP8_SCALE_SRC_LOADED: return "loaded";
    case KVFP8_SCALE_SRC_REMAPPED: return "remapped";
    case KVFP8_SCALE_SRC_DEFAULT: return "default-1.0";
    case KVFP8_SCALE_SRC_MAX_OF_ONE: return "max-of-one";
    }
    return "?";
}

/* ---- errors and warnings ------------------------------------------------------------- */

/* "LABEL: FIELD: message", the shape every error of this module has. */
static kvfp8_status failf(kvfp8_status s, const char *label, const char *field, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static kvfp8_status failf(kvfp8_status s, const char *label, const char *field, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kvfp8_fail(s, "%s: %s: %s", label, field, msg);
}

/* Adds a warning unless the same text is already there (vLLM's warning_once). */
static kvfp8_status warn(kvfp8_scales *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static kvfp8_status warn(kvfp8_scales *s, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < s->warning_count; i++)
        if (!strcmp(s->warnings[i], msg))
            return KVFP8_OK;
    char **grown = realloc(s->warnings, (s->warning_count + 1) * sizeof *grown);
    if (!grown)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "scales: memory: out of memory");
    s->warnings = grown;
    if (!(s->warnings[s->warning_count] = strdup(msg)))
        return kvfp8_fail(KVFP8_ERR_NOMEM, "scales: memory: out of memory");
    s->warning_count++;
    return KVFP8_OK;
}

/* vLLM's texts, verbatim (vllm/model_executor/layers/quantization/kv_cache.py and
 * model_loader/weight_utils.py), so that an engine can print them as vLLM does. */
static const char warn_default_one[] =
    "Using KV cache scaling factor 1.0 for fp8_e4m3. If this is unintended, verify that k/v_scale "
    "scaling factors are properly set in the checkpoint.";
static const char warn_kv_scale_deprecated[] =
    "DEPRECATED. Found kv_scale in the checkpoint. This format is deprecated in favor of separate "
    "k_scale and v_scale tensors and will be removed in a future release. Functionally, we will remap "
    "kv_scale to k_scale and duplicate k_scale to v_scale";
static const char msg_e5m2[] = "fp8_e5m2 kv-cache is not supported with fp8 checkpoints.";
static const char msg_per_tensor_only[] = "Only support per-tensor scaling factor for fp8 KV cache";

/* ---- config.json ------------------------------------------------------------------- */

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* A positive integer field.  Absent or null: *present = 0 (an error if required). */
static kvfp8_status get_count(const json_t *obj, const char *key, const char *prefix, const char *label,
                              int required, uint32_t max, uint32_t *out, int *present) {
    char field[128];
    snprintf(field, sizeof field, "%s%s", prefix, key);
    const json_t *v = json_object_get(obj, key);
    *present = 0;
    if (!v || json_is_null(v)) {
        if (required)
            return failf(KVFP8_ERR_FORMAT, label, field, "missing");
        return KVFP8_OK;
    }
    if (!json_is_integer(v))
        return failf(KVFP8_ERR_FORMAT, label, field, "must be a positive integer, got %s", json_kind(v));
    const json_int_t x = json_integer_value(v);
    if (x < 1 || (uint64_t)x > max)
        return failf(KVFP8_ERR_FORMAT, label, field, "%lld is out of range [1, %u]", (long long)x, max);
    *out = (uint32_t)x;
    *present = 1;
    return KVFP8_OK;
}

static kvfp8_status parse_scheme(const json_t *scheme, const char *label, kvfp8_model_config *out) {
    static const char p[] = "quantization_config.kv_cache_scheme";
    char field[128];
    if (!json_is_object(scheme))
        return failf(KVFP8_ERR_FORMAT, label, p, "must be an object or null, got %s", json_kind(scheme));
    /* vLLM's validate_kv_cache_scheme tests `type != "float" and num_bits != 8`, so it
     * lets either one through alone; an FP8 KV cache needs both, and kvfp8 checks
     * each (docs/scales.md). */
    const json_t *type = json_object_get(scheme, "type");
    snprintf(field, sizeof field, "%s.type", p);
    if (!type)
        return failf(KVFP8_ERR_FORMAT, label, field, "missing (vLLM supports type \"float\")");
    if (!json_is_string(type))
        return failf(KVFP8_ERR_FORMAT, label, field, "must be a string, got %s", json_kind(type));
    if (strcmp(json_string_value(type), "float"))
        return failf(KVFP8_ERR_UNSUPPORTED, label, field,
                     "'%.40s' is not supported: vLLM supports num_bits=8, type=float", json_string_value(type));
    const json_t *bits = json_object_get(scheme, "num_bits");
    snprintf(field, sizeof field, "%s.num_bits", p);
    if (!bits)
        return failf(KVFP8_ERR_FORMAT, label, field, "missing (vLLM supports num_bits 8)");
    if (!json_is_integer(bits))
        return failf(KVFP8_ERR_FORMAT, label, field, "must be an integer, got %s", json_kind(bits));
    if (json_integer_value(bits) != 8)
        return failf(KVFP8_ERR_UNSUPPORTED, label, field,
                     "%lld is not supported: vLLM supports num_bits=8, type=float",
                     (long long)json_integer_value(bits));
    const json_t *strategy = json_object_get(scheme, "strategy");
    snprintf(field, sizeof field, "%s.strategy", p);
    if (!strategy)
        return failf(KVFP8_ERR_FORMAT, label, field, "missing (vLLM supports \"tensor\" and \"attn_head\")");
    if (!json_is_string(strategy))
        return failf(KVFP8_ERR_FORMAT, label, field, "must be a string, got %s", json_kind(strategy));
    if (!strcmp(json_string_value(strategy), "tensor"))
        out->strategy = KVFP8_SCALE_TENSOR;
    else if (!strcmp(json_string_value(strategy), "attn_head"))
        out->strategy = KVFP8_SCALE_ATTN_HEAD;
    else
        return failf(KVFP8_ERR_UNSUPPORTED, label, field,
                     "'%.40s' is not supported: vLLM supports \"tensor\" and \"attn_head\"",
                     json_string_value(strategy));
    const json_t *sym = json_object_get(scheme, "symmetric");
    snprintf(field, sizeof field, "%s.symmetric", p);
    if (!sym)
        return failf(KVFP8_ERR_FORMAT, label, field, "missing (vLLM supports only symmetric scales)");
    if (!json_is_boolean(sym))
        return failf(KVFP8_ERR_FORMAT, label, field, "must be a boolean, got %s", json_kind(sym));
    if (!json_is_true(sym))
        return failf(KVFP8_ERR_UNSUPPORTED, label, field,
                     "false is not supported: Only support symmetric scaling factor for compressed-tensors KV cache");
    const json_t *dyn = json_object_get(scheme, "dynamic");
    snprintf(field, sizeof field, "%s.dynamic", p);
    if (dyn && !json_is_null(dyn) && !json_is_boolean(dyn))
        return failf(KVFP8_ERR_FORMAT, label, field, "must be a boolean, got %s", json_kind(dyn));
    out->dynamic = dyn && json_is_true(dyn);
    out->has_kv_cache_scheme = 1;
    return KVFP8_OK;
}

kvfp8_status kvfp8_model_config_parse(const char *text, size_t len, const char *label, kvfp8_model_config *out) {
    memset(out, 0, sizeof *out);
    label = label ? label : "config.json";
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return failf(KVFP8_ERR_FORMAT, label, "json", "invalid JSON at line %d column %d: %s", err.line,
                     err.column, err.text);
    kvfp8_status st = KVFP8_OK;
    kvfp8_model_config c;
    memset(&c, 0, sizeof c);
    if (!json_is_object(root)) {
        st = failf(KVFP8_ERR_FORMAT, label, "json", "must be a JSON object, got %s", json_kind(root));
        goto done;
    }
    /* Multimodal models keep the language model's fields in text_config (vLLM reads
     * hf_text_config). */
    const json_t *model = root;
    const char *prefix = "";
    const json_t *text_config = json_object_get(root, "text_config");
    if (!json_object_get(root, "num_hidden_layers") && json_is_object(text_config)) {
        model = text_config;
        prefix = "text_config.";
    }
    int present, heads_present;
    if ((st = get_count(model, "num_hidden_layers", prefix, label, 1, KVFP8_SCALES_MAX_LAYERS, &c.num_layers,
                        &present)) != KVFP8_OK ||
        (st = get_count(model, "num_attention_heads", prefix, label, 1, KVFP8_SCALES_MAX_HEADS,
                        &c.num_attention_heads, &present)) != KVFP8_OK ||
        (st = get_count(model, "num_key_value_heads", prefix, label, 0, KVFP8_SCALES_MAX_HEADS, &c.num_kv_heads,
                        &heads_present)) != KVFP8_OK)
        goto done;
    char field[128];
    if (!heads_present)
        c.num_kv_heads = c.num_attention_heads; /* Hugging Face's default: multi-head attention */
    if (c.num_attention_heads % c.num_kv_heads) {
        snprintf(field, sizeof field, "%snum_key_value_heads", prefix);
        st = failf(KVFP8_ERR_FORMAT, label, field, "%u does not divide num_attention_heads %u", c.num_kv_heads,
                   c.num_attention_heads);
        goto done;
    }
    int hidden_present, head_dim_present;
    if ((st = get_count(model, "hidden_size", prefix, label, 0, UINT32_MAX, &c.hidden_size, &hidden_present)) !=
            KVFP8_OK ||
        (st = get_count(model, "head_dim", prefix, label, 0, UINT32_MAX, &c.head_dim, &head_dim_present)) !=
            KVFP8_OK)
        goto done;
    if (!head_dim_present) {
        snprintf(field, sizeof field, "%shidden_size", prefix);
        if (!hidden_present) {
            st = failf(KVFP8_ERR_FORMAT, label, field, "missing (and no head_dim): the head size is unknown");
            goto done;
        }
        if (c.hidden_size % c.num_attention_heads) {
            st = failf(KVFP8_ERR_FORMAT, label, field, "%u is not a multiple of num_attention_heads %u (and no head_dim)",
                       c.hidden_size, c.num_attention_heads);
            goto done;
        }
        c.head_dim = c.hidden_size / c.num_attention_heads;
    }
    if ((uint64_t)c.num_layers * c.num_kv_heads > KVFP8_SCALES_MAX_VALUES) {
        snprintf(field, sizeof field, "%snum_hidden_layers", prefix);
        st = failf(KVFP8_ERR_FORMAT, label, field, "%u layers x %u KV heads exceeds kvfp8's limit of %u scales",
                   c.num_layers, c.num_kv_heads, KVFP8_SCALES_MAX_VALUES);
        goto done;
    }

    const json_t *q = json_object_get(root, "quantization_config");
    if (q && !json_is_null(q)) {
        if (!json_is_object(q)) {
            st = failf(KVFP8_ERR_FORMAT, label, "quantization_config", "must be an object, got %s", json_kind(q));
            goto done;
        }
        c.has_quantization_config = 1;
        const json_t *method = json_object_get(q, "quant_method");
        if (method && !json_is_string(method)) {
            st = failf(KVFP8_ERR_FORMAT, label, "quantization_config.quant_method", "must be a string, got %s",
                       json_kind(method));
            goto done;
        }
        if (method)
            snprintf(c.quant_method, sizeof c.quant_method, "%s", json_string_value(method));
        const json_t *scheme = json_object_get(q, "kv_cache_scheme");
        if (scheme && !json_is_null(scheme) && (st = parse_scheme(scheme, label, &c)) != KVFP8_OK)
            goto done;
    }
    *out = c;
done:
    json_decref(root);
    return st;
}

/* ---- scale names ------------------------------------------------------------------- */

typedef enum { KIND_K = 0, KIND_V = 1 } kv_kind;

/* The names after "layers.N.self_attn." that hold a KV scale, and what vLLM makes of
 * them (weight_utils.py maybe_remap_kv_scale_name and the quantization configs'
 * get_cache_scale_mapper). */
static const struct {
    const char *suffix;
    kv_kind kind;
    int remapped;
    int deprecated_kv_scale;
} scale_suffixes[] = {
    {"k_scale", KIND_K, 0, 0},             /* llm-compressor, current */
    {"v_scale", KIND_V, 0, 0},
    {"attn.k_scale", KIND_K, 0, 0},        /* vLLM's own parameter name */
    {"attn.v_scale", KIND_V, 0, 0},
    {"k_proj.output_scale", KIND_K, 1, 0}, /* older llm-compressor / Quark */
    {"v_proj.output_scale", KIND_V, 1, 0},
    {"k_proj.k_scale", KIND_K, 1, 0},      /* ModelOpt */
    {"v_proj.v_scale", KIND_V, 1, 0},
    {"kv_scale", KIND_K, 1, 1},            /* deprecated: one scale, remapped to k_scale */
};

static int ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

int kvfp8_scales_is_scale_name(const char *name, void *ctx) {
    (void)ctx;
    return ends_with(name, ".k_scale") || ends_with(name, ".v_scale") || ends_with(name, ".kv_scale") ||
           ends_with(name, ".k_proj.output_scale") || ends_with(name, ".v_proj.output_scale");
}

/* Matches [PREFIX.]layers.N.self_attn.SUFFIX.  N is decimal without leading zeros
 * (vLLM's parameter names have none, so "layers.01" names no layer). */
static int classify(const char *name, uint64_t *layer, size_t *suffix_index) {
    for (const char *p = strstr(name, "layers."); p; p = strstr(p + 1, "layers.")) {
        if (p != name && p[-1] != '.')
            continue;
        const char *d = p + 7;
        if (*d < '0' || *d > '9' || (d[0] == '0' && d[1] >= '0' && d[1] <= '9'))
            continue;
        uint64_t n = 0;
        int digits = 0;
        while (*d >= '0' && *d <= '9' && digits < 12) {
            n = n * 10 + (uint64_t)(*d - '0');
            d++;
            digits++;
        }
        if (strncmp(d, ".self_attn.", 11))
            continue;
        d += 11;
        for (size_t i = 0; i < sizeof scale_suffixes / sizeof scale_suffixes[0]; i++)
            if (!strcmp(d, scale_suffixes[i].suffix)) {
                *layer = n;
                *suffix_index = i;
                return 1;
            }
    }
    return 0;
}

/* Python's str.replace(old, new) (every occurrence), into a buffer of cap bytes. */
static void replace_all(char *out, size_t cap, const char *s, const char *old, const char *new_text) {
    size_t o = 0;
    const size_t ol = strlen(old), nl = strlen(new_text);
    while (*s && o + 1 < cap) {
        if (!strncmp(s, old, ol)) {
            for (size_t i = 0; i < nl && o + 1 < cap; i++)
                out[o++] = new_text[i];
            s += ol;
        } else {
            out[o++] = *s++;
        }
    }
    out[o] = '\0';
}

/* vLLM's warning for a scale name that names no parameter of the model. */
static kvfp8_status warn_unmatched(kvfp8_scales *s, const char *name) {
    char expected[512];
    const char *scale_name;
    if (ends_with(name, ".kv_scale")) {
        replace_all(expected, sizeof expected, name, ".kv_scale", ".attn.k_scale");
        return warn(s,
                    "Found kv_scale in the checkpoint (e.g. %.200s), but not found the expected name in the "
                    "model (e.g. %.200s). kv_scale is not loaded.",
                    name, expected);
    }
    if (ends_with(name, ".k_proj.output_scale") || ends_with(name, ".v_proj.output_scale")) {
        scale_name = ends_with(name, ".k_proj.output_scale") ? ".k_proj.output_scale" : ".v_proj.output_scale";
        replace_all(expected, sizeof expected, name, scale_name,
                    scale_name[1] == 'k' ? ".attn.k_scale" : ".attn.v_scale");
    } else {
        scale_name = ends_with(name, ".k_scale") ? ".k_scale" : ".v_scale";
        const char *modelopt = scale_name[1] == 'k' ? ".self_attn.k_proj.k_scale" : ".self_attn.v_proj.v_scale";
        if (strstr(name, modelopt))
            replace_all(expected, sizeof expected, name, modelopt,
                        scale_name[1] == 'k' ? ".self_attn.attn.k_scale" : ".self_attn.attn.v_scale");
        else
            replace_all(expected, sizeof expected, name, scale_name,
                        scale_name[1] == 'k' ? ".attn.k_scale" : ".attn.v_scale");
    }
    return warn(s,
                "Found %s in the checkpoint (e.g. %.200s), but not found the expected name in the model "
                "(e.g. %.200s). %s is not loaded.",
                scale_name, name, expected, scale_name);
}

/* ---- the scales structure ------------------------------------------------------------ */

void kvfp8_scales_free(kvfp8_scales *s) {
    if (!s)
        return;
    free(s->k);
    free(s->v);
    free(s->k_source);
    free(s->v_source);
    for (size_t i = 0; i < s->warning_count; i++)
        free(s->warnings[i]);
    free(s->warnings);
    memset(s, 0, sizeof *s);
}

static kvfp8_status scales_alloc(kvfp8_scales *s, uint32_t num_layers, uint32_t per_layer) {
    const size_t n = (size_t)num_layers * per_layer;
    s->k = malloc(n * sizeof *s->k);
    s->v = malloc(n * sizeof *s->v);
    s->k_source = malloc(num_layers * sizeof *s->k_source);
    s->v_source = malloc(num_layers * sizeof *s->v_source);
    if (!s->k || !s->v || !s->k_source || !s->v_source)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "scales: memory: out of memory");
    for (size_t i = 0; i < n; i++)
        s->k[i] = s->v[i] = 1.0f;
    for (uint32_t l = 0; l < num_layers; l++)
        s->k_source[l] = s->v_source[l] = KVFP8_SCALE_SRC_DEFAULT;
    s->num_layers = num_layers;
    s->per_layer = per_layer;
    return KVFP8_OK;
}

kvfp8_status kvfp8_scales_init(kvfp8_scales *s, uint32_t num_layers, uint32_t num_attention_heads,
                               uint32_t num_kv_heads, uint32_t head_dim, uint32_t hidden_size,
                               kvfp8_scale_strategy strategy, kvfp8_st_dtype dtype) {
    memset(s, 0, sizeof *s);
    if (num_layers < 1 || num_layers > KVFP8_SCALES_MAX_LAYERS)
        return kvfp8_fail(KVFP8_ERR_INVALID, "scales: num_layers: %u is out of range [1, %u]", num_layers,
                          KVFP8_SCALES_MAX_LAYERS);
    if (num_kv_heads < 1 || num_kv_heads > KVFP8_SCALES_MAX_HEADS || num_attention_heads < 1 ||
        num_attention_heads > KVFP8_SCALES_MAX_HEADS || num_attention_heads % num_kv_heads)
        return kvfp8_fail(KVFP8_ERR_INVALID,
                          "scales: num_kv_heads: %u must be in [1, %u] and divide num_attention_heads %u",
                          num_kv_heads, KVFP8_SCALES_MAX_HEADS, num_attention_heads);
    if ((uint64_t)num_layers * num_kv_heads > KVFP8_SCALES_MAX_VALUES)
        return kvfp8_fail(KVFP8_ERR_INVALID, "scales: num_layers: %u x %u KV heads exceeds %u scales", num_layers,
                          num_kv_heads, KVFP8_SCALES_MAX_VALUES);
    if (strategy != KVFP8_SCALE_TENSOR && strategy != KVFP8_SCALE_ATTN_HEAD)
        return kvfp8_fail(KVFP8_ERR_INVALID, "scales: strategy: not tensor or attn_head");
    if (!kvfp8_st_dtype_is_scale_float(dtype))
        return kvfp8_fail(KVFP8_ERR_INVALID, "scales: dtype: %s is not F32, F16 or BF16", kvfp8_st_dtype_name(dtype));
    if (!head_dim) {
        if (!hidden_size || hidden_size % num_attention_heads)
            return kvfp8_fail(KVFP8_ERR_INVALID,
                              "scales: head_dim: 0 needs a hidden_size that num_attention_heads %u divides",
                              num_attention_heads);
        head_dim = hidden_size / num_attention_heads;
    }
    if (!hidden_size) {
        if ((uint64_t)num_attention_heads * head_dim > UINT32_MAX)
            return kvfp8_fail(KVFP8_ERR_INVALID, "scales: hidden_size: num_attention_heads x head_dim overflows");
        hidden_size = num_attention_heads * head_dim;
    }
    kvfp8_status st = scales_alloc(s, num_layers, strategy == KVFP8_SCALE_ATTN_HEAD ? num_kv_heads : 1);
    if (st != KVFP8_OK) {
        kvfp8_scales_free(s);
        return st;
    }
    s->num_attention_heads = num_attention_heads;
    s->num_kv_heads = num_kv_heads;
    s->head_dim = head_dim;
    s->hidden_size = hidden_size;
    s->strategy = strategy;
    s->dtype = dtype;
    s->rules = KVFP8_SCALE_RULES_LLM_COMPRESSOR;
    s->kv_cache_dtype = KVFP8_KV_CACHE_FP8;
    return KVFP8_OK;
}

/* ---- applying the rules -------------------------------------------------------------- */

/* One (layer, k/v) of the checkpoint: where it was found and its values. */
typedef struct {
    const kvfp8_st_file *file;
    const kvfp8_st_tensor *t;
    int remapped;
    float *values; /* per_layer values, validated finite and > 0 */
} slot;

static const char *tensor_field(char *buf, size_t cap, const char *name, const char *field) {
    if (strlen(name) > 160)
        snprintf(buf, cap, "tensor '%.150s...': %s", name, field);
    else
        snprintf(buf, cap, "tensor '%s': %s", name, field);
    return buf;
}

static void format_shape(char *buf, size_t cap, const kvfp8_st_tensor *t) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (size_t i = 0; i < t->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

static int same_shape(const kvfp8_st_tensor *a, const kvfp8_st_tensor *b) {
    if (a->ndim != b->ndim)
        return 0;
    for (size_t i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

/* Checks one scale tensor against the strategy and reads its values. */
static kvfp8_status read_scale(const kvfp8_st_file *f, const kvfp8_st_tensor *t, const kvfp8_scales *s,
                               kvfp8_scale_rules rules, float *values) {
    char field[256], shape[160];
    if (!kvfp8_st_dtype_is_scale_float(t->dtype))
        return failf(KVFP8_ERR_UNSUPPORTED, f->label, tensor_field(field, sizeof field, t->name, "dtype"),
                     "%s is not supported for KV scales: expected BF16, F16 or F32", kvfp8_st_dtype_name(t->dtype));
    format_shape(shape, sizeof shape, t);
    if (s->strategy == KVFP8_SCALE_TENSOR) {
        if (t->numel != 1)
            return failf(KVFP8_ERR_FORMAT, f->label, tensor_field(field, sizeof field, t->name, "shape"),
                         "%s does not match strategy 'tensor', which stores one value (e.g. [1])%s", shape,
                         rules == KVFP8_SCALE_RULES_FP8_CHECKPOINT ? ": Only support per-tensor scaling factor for fp8 KV cache" : "");
    } else if (t->ndim != 3 || t->shape[0] != s->num_kv_heads || t->shape[1] != 1 || t->shape[2] != 1) {
        return failf(KVFP8_ERR_FORMAT, f->label, tensor_field(field, sizeof field, t->name, "shape"),
                     "%s does not match strategy 'attn_head' with num_key_value_heads %u: expected [%u, 1, 1]", shape,
                     s->num_kv_heads, s->num_kv_heads);
    }
    kvfp8_status st = kvfp8_st_tensor_to_f32(f, t, values);
    if (st != KVFP8_OK)
        return st;
    for (uint32_t i = 0; i < s->per_layer; i++) {
        const float x = values[i];
        const char *why = isnan(x) ? "is NaN" : isinf(x) ? "is infinite" : x < 0 ? "is negative" : x == 0 ? "is zero" : NULL;
        if (why) {
            char vfield[32];
            if (s->per_layer == 1)
                snprintf(vfield, sizeof vfield, "value");
            else
                snprintf(vfield, sizeof vfield, "value[%u]", i);
            return failf(KVFP8_ERR_INVALID, f->label, tensor_field(field, sizeof field, t->name, vfield),
                         "%s (%g): a KV scale must be finite and > 0", why, (double)x);
        }
    }
    return KVFP8_OK;
}

static void slots_free(slot *slots, size_t n) {
    for (size_t i = 0; slots && i < n; i++)
        free(slots[i].values);
    free(slots);
}

static kvfp8_status apply_llm_compressor(kvfp8_scales *s, const slot *k, const slot *v, const char *checkpoint_label,
                                         const kvfp8_scale_options *opt) {
    uint32_t k_count = 0, v_count = 0, first_missing = UINT32_MAX;
    kv_kind missing_kind = KIND_K;
    for (uint32_t l = 0; l < s->num_layers; l++) {
        k_count += k[l].t != NULL;
        v_count += v[l].t != NULL;
        if (first_missing == UINT32_MAX && (!k[l].t || !v[l].t)) {
            first_missing = l;
            missing_kind = k[l].t ? KIND_V : KIND_K;
        }
    }
    const int any = k_count + v_count > 0, all = k_count == s->num_layers && v_count == s->num_layers;
    if (any && !all) {
        char field[96];
        snprintf(field, sizeof field, "model.layers.%u.self_attn.%s", first_missing,
                 missing_kind == KIND_K ? "k_scale" : "v_scale");
        if (!opt->allow_missing_layers)
            return failf(KVFP8_ERR_FORMAT, checkpoint_label, field,
                         "missing: the checkpoint has k_scale for %u and v_scale for %u of %u layers; "
                         "llm-compressor writes both for every layer (vLLM would run the missing ones at 1.0; "
                         "allow_missing_layers accepts that)",
                         k_count, v_count, s->num_layers);
        kvfp8_status st = warn(s,
                               "%s: KV scales for only some layers (k_scale %u, v_scale %u of %u layers, first "
                               "missing %s): the missing ones are 1.0",
                               checkpoint_label, k_count, v_count, s->num_layers, field);
        if (st != KVFP8_OK)
            return st;
    }
    int defaulted = 0;
    for (uint32_t l = 0; l < s->num_layers; l++) {
        const slot *pair[2] = {&k[l], &v[l]};
        for (int which = 0; which < 2; which++) {
            float *dst = (which ? s->v : s->k) + (size_t)l * s->per_layer;
            kvfp8_scale_source *src = which ? &s->v_source[l] : &s->k_source[l];
            if (pair[which]->t) {
                memcpy(dst, pair[which]->values, s->per_layer * sizeof *dst);
                *src = pair[which]->remapped ? KVFP8_SCALE_SRC_REMAPPED : KVFP8_SCALE_SRC_LOADED;
            } else {
                defaulted = 1;
            }
        }
    }
    if (defaulted && s->kv_cache_dtype != KVFP8_KV_CACHE_FP8_E5M2)
        return warn(s, "%s", warn_default_one);
    return KVFP8_OK;
}

static kvfp8_status apply_fp8_checkpoint(kvfp8_scales *s, const slot *k, const slot *v, const kvfp8_scale_options *opt) {
    int warned_one = 0;
    for (uint32_t l = 0; l < s->num_layers; l++) {
        float kk, vv;
        kvfp8_scale_source ks, vs;
        /* vLLM starts both at -1.0 ("not loaded"); read_scale made every loaded value
         * > 0, so presence is the whole test. */
        if (k[l].t && v[l].t) {
            kk = k[l].values[0];
            vv = v[l].values[0];
            ks = k[l].remapped ? KVFP8_SCALE_SRC_REMAPPED : KVFP8_SCALE_SRC_LOADED;
            vs = v[l].remapped ? KVFP8_SCALE_SRC_REMAPPED : KVFP8_SCALE_SRC_LOADED;
        } else if (!k[l].t && !v[l].t) {
            kk = vv = 1.0f;
            ks = vs = KVFP8_SCALE_SRC_DEFAULT;
        } else {
            /* max(k, v) with the missing one at -1.0: the one that was loaded. */
            kk = vv = k[l].t ? k[l].values[0] : v[l].values[0];
            ks = vs = KVFP8_SCALE_SRC_MAX_OF_ONE;
        }
        if (opt->fnuz && (k[l].t || v[l].t)) {
            kk *= 2.0f;
            vv *= 2.0f;
            if (isinf(kk) || isinf(vv)) {
                const slot *from = k[l].t ? &k[l] : &v[l];
                char field[256];
                return failf(KVFP8_ERR_INVALID, from->file->label, tensor_field(field, sizeof field, from->t->name, "value"),
                             "doubling for FNUZ hardware overflows float32");
            }
            s->fnuz_doubled = 1;
        }
        s->k[l] = kk;
        s->v[l] = vv;
        s->k_source[l] = ks;
        s->v_source[l] = vs;
        /* vLLM tests the final values, so loaded scales of exactly 1.0 warn too. */
        if (kk == 1.0f && vv == 1.0f && !warned_one) {
            kvfp8_status st = warn(s, "%s", warn_default_one);
            if (st != KVFP8_OK)
                return st;
            warned_one = 1;
        }
    }
    return KVFP8_OK;
}

kvfp8_status kvfp8_scales_build(const kvfp8_model_config *cfg, const char *config_label, const kvfp8_st_file *files,
                                size_t nfiles, const char *checkpoint_label, const kvfp8_scale_options *opt,
                                kvfp8_scales *out) {
    static const kvfp8_scale_options defaults = {KVFP8_SCALE_RULES_AUTO, 0, KVFP8_KV_CACHE_AUTO, 0};
    memset(out, 0, sizeof *out);
    opt = opt ? opt : &defaults;
    config_label = config_label ? config_label : "config.json";
    checkpoint_label = checkpoint_label ? checkpoint_label : "checkpoint";
    kvfp8_scales s;
    memset(&s, 0, sizeof s);
    slot *k = NULL, *v = NULL;
    kvfp8_status st = KVFP8_OK;

    kvfp8_scale_rules rules = opt->rules;
    if (rules == KVFP8_SCALE_RULES_AUTO)
        rules = !strcmp(cfg->quant_method, "compressed-tensors") ? KVFP8_SCALE_RULES_LLM_COMPRESSOR
                                                                  : KVFP8_SCALE_RULES_FP8_CHECKPOINT;
    if (rules != KVFP8_SCALE_RULES_LLM_COMPRESSOR && rules != KVFP8_SCALE_RULES_FP8_CHECKPOINT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "scales: rules: not a rule set");
    if (rules == KVFP8_SCALE_RULES_FP8_CHECKPOINT && cfg->has_kv_cache_scheme && cfg->strategy != KVFP8_SCALE_TENSOR)
        return failf(KVFP8_ERR_UNSUPPORTED, config_label, "quantization_config.kv_cache_scheme.strategy",
                     "%s: %s (fp8-checkpoint rules)", kvfp8_scale_strategy_name(cfg->strategy), msg_per_tensor_only);
    /* vLLM's Attention: a checkpoint's kv_cache_scheme turns "auto" into "fp8", and
     * an fp8_e5m2 cache is refused whenever checkpoint scales are to be loaded. */
    kvfp8_kv_cache_dtype kvd = opt->kv_cache_dtype;
    if (kvd == KVFP8_KV_CACHE_AUTO && cfg->has_kv_cache_scheme)
        kvd = KVFP8_KV_CACHE_FP8;
    if (kvd == KVFP8_KV_CACHE_FP8_E5M2 && (rules == KVFP8_SCALE_RULES_FP8_CHECKPOINT || cfg->has_kv_cache_scheme))
        return failf(KVFP8_ERR_UNSUPPORTED, config_label, "kv_cache_dtype", "%s", msg_e5m2);

    s.num_attention_heads = cfg->num_attention_heads;
    s.num_kv_heads = cfg->num_kv_heads;
    s.head_dim = cfg->head_dim;
    s.hidden_size = cfg->hidden_size;
    s.strategy = cfg->has_kv_cache_scheme ? cfg->strategy : KVFP8_SCALE_TENSOR;
    s.rules = rules;
    s.kv_cache_dtype = kvd;
    s.dtype = KVFP8_ST_F32;
    if ((st = scales_alloc(&s, cfg->num_layers, s.strategy == KVFP8_SCALE_ATTN_HEAD ? cfg->num_kv_heads : 1)) != KVFP8_OK)
        goto fail;
    k = calloc(s.num_layers, sizeof *k);
    v = calloc(s.num_layers, sizeof *v);
    if (!k || !v) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "scales: memory: out of memory");
        goto fail;
    }

    /* Collect: every scale tensor validated and put in its slot. */
    int have_dtype = 0;
    for (size_t fi = 0; fi < nfiles; fi++) {
        const kvfp8_st_file *f = &files[fi];
        for (size_t ti = 0; ti < f->count; ti++) {
            const kvfp8_st_tensor *t = &f->tensors[ti];
            if (!kvfp8_scales_is_scale_name(t->name, NULL))
                continue;
            uint64_t layer;
            size_t si;
            if (!classify(t->name, &layer, &si)) {
                if ((st = warn_unmatched(&s, t->name)) != KVFP8_OK)
                    goto fail;
                continue;
            }
            char field[256];
            if (layer >= s.num_layers) {
                st = failf(KVFP8_ERR_FORMAT, f->label, tensor_field(field, sizeof field, t->name, "layer"),
                           "index %llu is past the model: %s has num_hidden_layers %u",
                           (unsigned long long)layer, config_label, s.num_layers);
                goto fail;
            }
            if (scale_suffixes[si].deprecated_kv_scale && (st = warn(&s, "%s", warn_kv_scale_deprecated)) != KVFP8_OK)
                goto fail;
            slot *dst = scale_suffixes[si].kind == KIND_K ? &k[layer] : &v[layer];
            if (dst->t) {
                st = failf(KVFP8_ERR_FORMAT, f->label, tensor_field(field, sizeof field, t->name, "name"),
                           "layer %llu's %s is already given by '%.150s' in %.150s", (unsigned long long)layer,
                           scale_suffixes[si].kind == KIND_K ? "k_scale" : "v_scale", dst->t->name, dst->file->label);
                goto fail;
            }
            float *values = malloc(s.per_layer * sizeof *values);
            if (!values) {
                st = kvfp8_fail(KVFP8_ERR_NOMEM, "scales: memory: out of memory");
                goto fail;
            }
            if ((st = read_scale(f, t, &s, rules, values)) != KVFP8_OK) {
                free(values);
                goto fail;
            }
            dst->file = f;
            dst->t = t;
            dst->remapped = scale_suffixes[si].remapped;
            dst->values = values;
            if (!have_dtype) {
                s.dtype = t->dtype;
                have_dtype = 1;
            } else if (t->dtype != s.dtype &&
                       (st = warn(&s, "KV scales are stored in mixed dtypes: %s ('%.150s' in %.150s) and %s", kvfp8_st_dtype_name(t->dtype),
                                  t->name, f->label, kvfp8_st_dtype_name(s.dtype))) != KVFP8_OK) {
                goto fail;
            }
        }
    }
    for (uint32_t l = 0; l < s.num_layers; l++)
        if (k[l].t && v[l].t && !same_shape(k[l].t, v[l].t)) {
            char field[256], ks[160], vs[160];
            format_shape(ks, sizeof ks, k[l].t);
            format_shape(vs, sizeof vs, v[l].t);
            st = failf(KVFP8_ERR_FORMAT, v[l].file->label, tensor_field(field, sizeof field, v[l].t->name, "shape"),
                       "k_scale and v_scale must have the same shape: %s here, %s for '%.150s' in %.150s", vs, ks,
                       k[l].t->name, k[l].file->label);
            goto fail;
        }

    /* Apply the rules. */
    if (kvd == KVFP8_KV_CACHE_AUTO) {
        /* vLLM keeps the model's dtype for the cache and enforces 1.0. */
        st = warn(&s,
                  "kv_cache_dtype 'auto' and no quantization_config.kv_cache_scheme in %s: the KV cache keeps the "
                  "model's dtype and k/v scales are 1.0 (kv_cache_dtype fp8 uses the checkpoint's scales)",
                  config_label);
    } else if (rules == KVFP8_SCALE_RULES_LLM_COMPRESSOR) {
        st = apply_llm_compressor(&s, k, v, checkpoint_label, opt);
    } else {
        st = apply_fp8_checkpoint(&s, k, v, opt);
    }
    if (st != KVFP8_OK)
        goto fail;
    slots_free(k, s.num_layers);
    slots_free(v, s.num_layers);
    *out = s;
    return KVFP8_OK;
fail:
    slots_free(k, s.num_layers);
    slots_free(v, s.num_layers);
    kvfp8_scales_free(&s);
    return st;
}

/* ---- the folder ------------------------------------------------------------------------ */

static kvfp8_status read_small_file(const char *path, size_t limit, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return failf(KVFP8_ERR_IO, path, "file", "cannot open: %s", strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    kvfp8_status st = KVFP8_OK;
    for (;;) {
        if (!buf) {
            st = failf(KVFP8_ERR_NOMEM, path, "memory", "out of memory");
            break;
        }
        const size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                st = failf(KVFP8_ERR_IO, path, "file", "read failed");
            break;
        }
        if (n > limit) {
            st = failf(KVFP8_ERR_FORMAT, path, "file", "larger than %zu bytes", limit);
            break;
        }
        if (n == cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown)
                free(buf);
            buf = grown;
            cap *= 2;
        }
    }
    fclose(f);
    if (st != KVFP8_OK) {
        free(buf);
        return st;
    }
    *text = buf;
    *len = n;
    return KVFP8_OK;
}

static char *join(const char *dir, const char *name) {
    const size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

static int by_string(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_names(char **names, size_t n) {
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

/* The folder's *.safetensors files, sorted; those not named by the index (when
 * there is one) are left out, as vLLM's filter_duplicate_safetensors_files does. */
static kvfp8_status list_files(const char *dir, char ***names_out, size_t *count_out) {
    *names_out = NULL;
    *count_out = 0;
    char **names = NULL, *index_path = NULL, *index_text = NULL;
    size_t n = 0, index_len = 0;
    json_t *index = NULL;
    kvfp8_status st = KVFP8_OK;
    DIR *d = opendir(dir);
    if (!d)
        return failf(KVFP8_ERR_IO, dir, "folder", "cannot open: %s", strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t len = strlen(e->d_name);
        if (len <= 12 || strcmp(e->d_name + len - 12, ".safetensors"))
            continue;
        char *path = join(dir, e->d_name);
        struct stat sb;
        const int regular = path && stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
        free(path);
        if (!regular)
            continue;
        char **grown = realloc(names, (n + 1) * sizeof *names);
        if (!grown || !(grown[n] = strdup(e->d_name))) {
            names = grown ? grown : names;
            st = failf(KVFP8_ERR_NOMEM, dir, "memory", "out of memory");
            goto done;
        }
        names = grown;
        n++;
    }
    if (n > 1)
        qsort(names, n, sizeof *names, by_string);

    if (!(index_path = join(dir, "model.safetensors.index.json"))) {
        st = failf(KVFP8_ERR_NOMEM, dir, "memory", "out of memory");
        goto done;
    }
    struct stat sb;
    if (stat(index_path, &sb) == 0) {
        if ((st = read_small_file(index_path, 256u << 20, &index_text, &index_len)) != KVFP8_OK)
            goto done;
        json_error_t err;
        if (!(index = json_loadb(index_text, index_len, JSON_REJECT_DUPLICATES, &err))) {
            st = failf(KVFP8_ERR_FORMAT, index_path, "json", "invalid JSON at line %d column %d: %s", err.line,
                       err.column, err.text);
            goto done;
        }
        const json_t *map = json_object_get(index, "weight_map");
        if (!json_is_object(map)) {
            st = failf(KVFP8_ERR_FORMAT, index_path, "weight_map", "%s", map ? "must be an object" : "missing");
            goto done;
        }
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)map, key, value) {
            const char *file = json_string_value(value);
            if (!file || !*file || strchr(file, '/') || !strcmp(file, ".") || !strcmp(file, "..")) {
                char field[256];
                snprintf(field, sizeof field, "weight_map['%.150s']", key);
                st = failf(KVFP8_ERR_FORMAT, index_path, field, "must be a file name in the folder");
                goto done;
            }
            if (!bsearch(&file, names, n, sizeof *names, by_string)) {
                char field[256];
                snprintf(field, sizeof field, "weight_map['%.150s']", key);
                st = failf(KVFP8_ERR_FORMAT, index_path, field, "names '%.150s', which is not in the folder", file);
                goto done;
            }
        }
        /* Keep only the files the index names. */
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            int listed = 0;
            json_object_foreach((json_t *)map, key, value) {
                if (!strcmp(json_string_value(value), names[i])) {
                    listed = 1;
                    break;
                }
            }
            if (listed)
                names[kept++] = names[i];
            else
                free(names[i]);
        }
        n = kept;
    }
done:
    closedir(d);
    json_decref(index);
    free(index_text);
    free(index_path);
    if (st != KVFP8_OK) {
        free_names(names, n);
        return st;
    }
    *names_out = names;
    *count_out = n;
    return KVFP8_OK;
}

kvfp8_status kvfp8_scales_load(const char *dir, const kvfp8_scale_options *opt, kvfp8_scales *out) {
    memset(out, 0, sizeof *out);
    char *config_path = join(dir, "config.json"), *text = NULL, **names = NULL;
    size_t len = 0, n = 0, nfiles = 0;
    kvfp8_st_file *files = NULL;
    kvfp8_model_config cfg;
    kvfp8_status st;
    if (!config_path)
        return failf(KVFP8_ERR_NOMEM, dir, "memory", "out of memory");
    if ((st = read_small_file(config_path, 64u << 20, &text, &len)) != KVFP8_OK ||
        (st = kvfp8_model_config_parse(text, len, config_path, &cfg)) != KVFP8_OK ||
        (st = list_files(dir, &names, &n)) != KVFP8_OK)
        goto done;
    if (n == 0) {
        st = failf(KVFP8_ERR_FORMAT, dir, "*.safetensors", "no safetensors file in the folder");
        goto done;
    }
    if (!(files = calloc(n, sizeof *files))) {
        st = failf(KVFP8_ERR_NOMEM, dir, "memory", "out of memory");
        goto done;
    }
    for (; nfiles < n; nfiles++) {
        char *path = join(dir, names[nfiles]);
        if (!path) {
            st = failf(KVFP8_ERR_NOMEM, dir, "memory", "out of memory");
            goto done;
        }
        st = kvfp8_st_read(path, kvfp8_scales_is_scale_name, NULL, &files[nfiles]);
        free(path);
        if (st != KVFP8_OK)
            goto done;
    }
    st = kvfp8_scales_build(&cfg, config_path, files, nfiles, dir, opt, out);
done:
    for (size_t i = 0; files && i < nfiles; i++)
        kvfp8_st_free(&files[i]);
    free(files);
    free_names(names, n);
    free(text);
    free(config_path);
    return st;
}

/* ---- saving ------------------------------------------------------------------------------ */

static const char *torch_dtype_name(kvfp8_st_dtype d) {
    return d == KVFP8_ST_BF16 ? "bfloat16" : d == KVFP8_ST_F16 ? "float16" : "float32";
}

/* One value in the storage dtype, little-endian; 0 if it is not finite and > 0
 * there. */
static int encode_scale(float x, kvfp8_st_dtype d, uint8_t *p) {
    if (!(isfinite(x) && x > 0))
        return 0;
    if (d == KVFP8_ST_F32) {
        uint32_t b;
        memcpy(&b, &x, 4);
        for (int i = 0; i < 4; i++)
            p[i] = (uint8_t)(b >> (8 * i));
        return 1;
    }
    const uint16_t h = d == KVFP8_ST_BF16 ? kvfp8_f32_to_bf16(x) : kvfp8_f32_to_f16(x);
    const float back = d == KVFP8_ST_BF16 ? kvfp8_bf16_to_f32(h) : kvfp8_f16_to_f32(h);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
    return isfinite(back) && back > 0;
}

/* A reader filter that loads no tensor's bytes: only the names are wanted. */
static int load_nothing(const char *name, void *ctx) {
    (void)name;
    (void)ctx;
    return 0;
}

static json_t *config_json(const kvfp8_scales *s) {
    json_t *scheme = json_pack("{s:i, s:s, s:s, s:b, s:b, s:n, s:n, s:n, s:s, s:{}}", "num_bits", 8, "type", "float",
                               "strategy", kvfp8_scale_strategy_name(s->strategy), "dynamic", 0, "symmetric", 1,
                               "group_size", "block_structure", "actorder", "observer", "minmax", "observer_kwargs");
    if (!scheme)
        return NULL;
    json_t *root = json_pack("{s:I, s:I, s:I, s:I, s:s, s:{s:s, s:s, s:s, s:{}, s:[], s:o}}", "num_hidden_layers",
                             (json_int_t)s->num_layers, "num_attention_heads", (json_int_t)s->num_attention_heads,
                             "num_key_value_heads", (json_int_t)s->num_kv_heads, "head_dim", (json_int_t)s->head_dim,
                             "torch_dtype", torch_dtype_name(s->dtype), "quantization_config", "quant_method",
                             "compressed-tensors", "format", "dense", "quantization_status", "compressed",
                             "config_groups", "ignore", "kv_cache_scheme", scheme);
    /* Scales loaded from a config that gives only head_dim have no hidden_size, and
     * 0 is not a valid one. */
    if (root && s->hidden_size && json_object_set_new(root, "hidden_size", json_integer((json_int_t)s->hidden_size))) {
        json_decref(root);
        return NULL;
    }
    return root;
}

kvfp8_status kvfp8_scales_save(const char *dir, const kvfp8_scales *s) {
    if (!s->k || !s->v || s->num_layers == 0)
        return failf(KVFP8_ERR_INVALID, dir, "scales", "empty (kvfp8_scales_init or _load first)");
    if (s->fnuz_doubled)
        return failf(KVFP8_ERR_STATE, dir, "scales",
                     "these values were doubled for FNUZ hardware; saving them would double them again on load");
    if (!kvfp8_st_dtype_is_scale_float(s->dtype))
        return failf(KVFP8_ERR_INVALID, dir, "dtype", "%s is not F32, F16 or BF16", kvfp8_st_dtype_name(s->dtype));
    const uint32_t per = s->per_layer;
    if (per != (s->strategy == KVFP8_SCALE_ATTN_HEAD ? s->num_kv_heads : 1))
        return failf(KVFP8_ERR_INVALID, dir, "strategy", "per_layer %u does not match strategy %s with %u KV heads",
                     per, kvfp8_scale_strategy_name(s->strategy), s->num_kv_heads);
    const size_t width = kvfp8_st_dtype_bits(s->dtype) / 8, n = 2 * (size_t)s->num_layers;
    kvfp8_st_entry *entries = calloc(n, sizeof *entries);
    char (*names)[64] = calloc(n, sizeof *names);
    uint8_t *data = calloc(n * per, width);
    char *st_path = join(dir, "model.safetensors"), *cfg_path = join(dir, "config.json"), *text = NULL;
    json_t *cfg = NULL;
    const uint64_t shape_tensor[1] = {1}, shape_head[3] = {s->num_kv_heads, 1, 1};
    kvfp8_status st = KVFP8_OK;
    if (!entries || !names || !data || !st_path || !cfg_path) {
        st = failf(KVFP8_ERR_NOMEM, dir, "memory", "out of memory");
        goto done;
    }
    for (uint32_t l = 0; l < s->num_layers; l++)
        for (int which = 0; which < 2; which++) {
            const size_t e = 2 * (size_t)l + (size_t)which;
            snprintf(names[e], sizeof names[e], "model.layers.%u.self_attn.%s", l, which ? "v_scale" : "k_scale");
            const float *src = (which ? s->v : s->k) + (size_t)l * per;
            for (uint32_t h = 0; h < per; h++)
                if (!encode_scale(src[h], s->dtype, data + (e * per + h) * width)) {
                    char field[128];
                    snprintf(field, sizeof field, "%s[%u]", names[e], h);
                    st = failf(KVFP8_ERR_INVALID, dir, field, "%g is not finite and > 0 in %s", (double)src[h],
                               kvfp8_st_dtype_name(s->dtype));
                    goto done;
                }
            entries[e].name = names[e];
            entries[e].dtype = s->dtype;
            entries[e].ndim = s->strategy == KVFP8_SCALE_ATTN_HEAD ? 3 : 1;
            entries[e].shape = s->strategy == KVFP8_SCALE_ATTN_HEAD ? shape_head : shape_tensor;
            entries[e].data = data + e * per * width;
        }
    if (!(cfg = config_json(s)) || !(text = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS))) {
        st = failf(KVFP8_ERR_NOMEM, cfg_path, "json", "out of memory");
        goto done;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        st = failf(KVFP8_ERR_IO, dir, "folder", "cannot create: %s", strerror(errno));
        goto done;
    }
    /* Never replace a weights file: only one that holds KV scales and nothing else. */
    struct stat sb;
    if (stat(st_path, &sb) == 0) {
        kvfp8_st_file old;
        if (kvfp8_st_read(st_path, load_nothing, NULL, &old) != KVFP8_OK) {
            st = failf(KVFP8_ERR_STATE, st_path, "file", "exists and is not a readable safetensors file: not replacing it");
            goto done;
        }
        for (size_t i = 0; i < old.count; i++) {
            uint64_t layer;
            size_t si;
            if (!classify(old.tensors[i].name, &layer, &si)) {
                st = failf(KVFP8_ERR_STATE, st_path, "file",
                           "holds tensors other than KV scales (e.g. '%.150s'): not replacing it", old.tensors[i].name);
                break;
            }
        }
        kvfp8_st_free(&old);
        if (st != KVFP8_OK)
            goto done;
    }
    static const char *const meta_keys[] = {"format"}, *const meta_values[] = {"pt"};
    if ((st = kvfp8_st_write(st_path, entries, n, meta_keys, meta_values, 1)) != KVFP8_OK)
        goto done;
    const size_t tlen = strlen(text);
    char *with_newline = malloc(tlen + 2);
    if (!with_newline) {
        st = failf(KVFP8_ERR_NOMEM, cfg_path, "memory", "out of memory");
        goto done;
    }
    memcpy(with_newline, text, tlen);
    with_newline[tlen] = '\n';
    st = kvfp8_write_file_atomic(cfg_path, with_newline, tlen + 1);
    free(with_newline);
done:
    json_decref(cfg);
    free(text);
    free(st_path);
    free(cfg_path);
    free(data);
    free(names);
    free(entries);
    return st;
}

/* ---- derived values ----------------------------------------------------------------------- */

kvfp8_status kvfp8_scales_fingerprint(const kvfp8_scales *s, char out[65]) {
    out[0] = '\0';
    if (!s->k || !s->v || s->num_layers == 0)
        return kvfp8_fail(KVFP8_ERR_INVALID, "scales: fingerprint: the scales are empty");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "scales: fingerprint: out of memory");
    uint8_t head[15 + 4 + 4 + 1];
    memcpy(head, "kvfp8-scales-v1", 15);
    for (int i = 0; i < 4; i++) {
        head[15 + i] = (uint8_t)(s->num_layers >> (8 * i));
        head[19 + i] = (uint8_t)(s->per_layer >> (8 * i));
    }
    head[23] = (uint8_t)s->strategy;
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, head, sizeof head);
    for (uint32_t l = 0; ok && l < s->num_layers; l++)
        for (int which = 0; ok && which < 2; which++) {
            const float *src = (which ? s->v : s->k) + (size_t)l * s->per_layer;
            for (uint32_t h = 0; ok && h < s->per_layer; h++) {
                uint32_t b;
                memcpy(&b, &src[h], 4);
                const uint8_t le[4] = {(uint8_t)b, (uint8_t)(b >> 8), (uint8_t)(b >> 16), (uint8_t)(b >> 24)};
                ok = EVP_DigestUpdate(ctx, le, 4);
            }
        }
    uint8_t digest[32];
    unsigned int dlen = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, digest, &dlen) && dlen == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return kvfp8_fail(KVFP8_ERR_STATE, "scales: fingerprint: SHA-256 failed");
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    return KVFP8_OK;
}

kvfp8_status kvfp8_scales_layer_float(const kvfp8_scales *s, uint32_t layer, float *k, float *v) {
    if (!s->k || layer >= s->num_layers)
        return kvfp8_fail(KVFP8_ERR_INVALID, "scales: layer: %u is out of range [0, %u)", layer, s->num_layers);
    float km = s->k[(size_t)layer * s->per_layer], vm = s->v[(size_t)layer * s->per_layer];
    for (uint32_t h = 1; h < s->per_layer; h++) {
        km = fmaxf(km, s->k[(size_t)layer * s->per_layer + h]);
        vm = fmaxf(vm, s->v[(size_t)layer * s->per_layer + h]);
    }
    *k = km;
    *v = vm;
    return KVFP8_OK;
}

kvfp8_status kvfp8_scales_round_amax(float amax, kvfp8_st_dtype dtype, float *scale, uint32_t *bits) {
    if (!(isfinite(amax) && amax >= 0))
        return kvfp8_fail(KVFP8_ERR_INVALID, "scales_round_amax: amax: %g must be finite and >= 0", (double)amax);
    if (!kvfp8_st_dtype_is_scale_float(dtype))
        return kvfp8_fail(KVFP8_ERR_INVALID, "scales_round_amax: dtype: %s is not F32, F16 or BF16",
                          kvfp8_st_dtype_name(dtype));
    /* compressed-tensors: max_val_pos / (bit_range / 2) with bit_range = 448 - (-448),
     * in the observed dtype; torch divides a 16-bit tensor in float32 and rounds
     * once to the tensor's dtype. */
    const float q = amax / 448.0f;
    uint32_t b;
    float r;
    if (dtype == KVFP8_ST_F32) {
        r = q;
        memcpy(&b, &r, 4);
    } else if (dtype == KVFP8_ST_BF16) {
        b = kvfp8_f32_to_bf16(q);
        r = kvfp8_bf16_to_f32((uint16_t)b);
    } else {
        b = kvfp8_f32_to_f16(q);
        r = kvfp8_f16_to_f32((uint16_t)b);
    }
    if (r == 0.0f) {
        /* torch.where(scales == 0, torch.finfo(dtype).eps, scales) */
        r = dtype == KVFP8_ST_BF16 ? 0x1p-7f : dtype == KVFP8_ST_F16 ? 0x1p-10f : 0x1p-23f;
        if (dtype == KVFP8_ST_F32)
            memcpy(&b, &r, 4);
        else
            b = dtype == KVFP8_ST_BF16 ? kvfp8_f32_to_bf16(r) : kvfp8_f32_to_f16(r);
    }
    *scale = r;
    if (bits)
        *bits = b;
    return KVFP8_OK;
}
