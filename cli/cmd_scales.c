/* kvfp8 scales — a checkpoint's KV-cache scales as vLLM would load them
 * (ref/scales.c, ref/safetensors.c).
 *
 * Every subcommand validates all of its input before printing anything, so a
 * malformed artifact or option leaves standard output empty (exit 2, the message
 * naming the file and the field).  Warnings vLLM would log go to standard error,
 * and with --json also into the answer, so that a caller can compare them. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kvfp8/scales.h"
#include "commands.h"
#include "outbuf.h"

static const char *const cmd = "scales";

static const char *const scales_help =
    "usage: kvfp8 scales show DIR [--rules R] [--fnuz] [--kv-cache-dtype D]\n"
    "                             [--allow-missing-layers] [--json]\n"
    "       kvfp8 scales fingerprint DIR [the options of show]\n"
    "       kvfp8 scales write DIR --layers N --heads A [--kv-heads H]\n"
    "                              (--head-dim D | --hidden-size S) [--dtype T]\n"
    "                              [--strategy S] --k V[,V...] --v V[,V...]\n"
    "       kvfp8 scales round [--dtype T] AMAX...\n"
    "\n"
    "show: loads DIR/config.json and the k/v scales of DIR's *.safetensors files (those\n"
    "DIR/model.safetensors.index.json lists, if it exists) with vLLM's loading rules,\n"
    "and prints, per layer, where each scale came from (loaded, remapped from an older\n"
    "name, default-1.0, max-of-one) and the value the engine uses, then the\n"
    "fingerprint.  Warnings vLLM would log go to standard error.\n"
    "  --rules R             auto (default: by quantization_config.quant_method,\n"
    "                        compressed-tensors -> llm-compressor, else fp8-checkpoint),\n"
    "                        llm-compressor (vLLM after 2026-01-22: scales used as\n"
    "                        stored, 1.0 where missing), or fp8-checkpoint\n"
    "                        (BaseKVCacheMethod: neither -> 1.0, one -> max of the two,\n"
    "                        doubled on FNUZ hardware, per tensor only).\n"
    "  --fnuz                the hardware's FP8 is E4M3FNUZ (MI300).\n"
    "  --kv-cache-dtype D    auto (default; a kv_cache_scheme makes it fp8), fp8,\n"
    "                        fp8_e4m3, fp8_e5m2.\n"
    "  --allow-missing-layers  llm-compressor rules: accept scales for some layers\n"
    "                        only (the others 1.0, as vLLM does); otherwise an error.\n"
    "  --json                one JSON object instead of the table.\n"
    "fingerprint: prints only the fingerprint (SHA-256 of the effective float32\n"
    "values and their shape; docs/scales.md gives the bytes).\n"
    "write: writes DIR/model.safetensors and DIR/config.json (compressed-tensors\n"
    "kv_cache_scheme), each atomically, and prints the fingerprint.  --k and --v give\n"
    "one value per layer (strategy tensor) or per layer and KV head, layer-major\n"
    "(attn_head), or a single value for all; values are rounded to --dtype (bf16,\n"
    "the default, f16 or f32).  --strategy tensor (default) or attn_head.\n"
    "round: the scale calibration stores for each AMAX: AMAX / 448 in float32,\n"
    "rounded to --dtype, 0 replaced by the dtype's eps.  Prints the stored bits in\n"
    "hex and the value.\n"
    "\n"
    "Exit status: 0 ok; 2 bad input or a malformed artifact (the message names the\n"
    "file and the field; nothing on standard output); 1 an internal failure.\n"
    "\n"
    "Examples:\n"
    "  kvfp8 scales show ./Llama-3-8B-FP8-KV\n"
    "  kvfp8 scales show ./ckpt --rules fp8-checkpoint --fnuz --kv-cache-dtype fp8 --json\n"
    "  kvfp8 scales write /tmp/s --layers 2 --heads 8 --kv-heads 2 --head-dim 64 \\\n"
    "      --dtype bf16 --k 0.0078125,0.015625 --v 0.01171875\n"
    "  kvfp8 scales round --dtype bf16 1.0 448 0\n"
    "      3b12 0.0022277832\n"
    "      3f80 1\n"
    "      3c00 0.0078125\n"
    "\n"
    "Facts, rules and sources: docs/scales.md.\n";

typedef struct {
    const char *dir;
    kvfp8_scale_options opt;
    int json;
    /* write */
    const char *layers, *heads, *kv_heads, *head_dim, *hidden_size, *k, *v;
    kvfp8_st_dtype dtype;
    kvfp8_scale_strategy strategy;
    int first_value; /* round: index of the first AMAX */
} scales_args;

static int parse_dtype(const char *s, kvfp8_st_dtype *out) {
    if (!strcmp(s, "bf16") || !strcmp(s, "BF16"))
        *out = KVFP8_ST_BF16;
    else if (!strcmp(s, "f16") || !strcmp(s, "F16"))
        *out = KVFP8_ST_F16;
    else if (!strcmp(s, "f32") || !strcmp(s, "F32"))
        *out = KVFP8_ST_F32;
    else
        return kvfp8_cli_usage_error(cmd, "--dtype: unknown dtype '%s' (bf16, f16, f32)", s);
    return 0;
}

/* Options after the verb (and DIR).  Returns 0, or an exit status. */
static int parse_args(int argc, char **argv, int start, scales_args *a) {
    int i = start;
    for (; i < argc; i++) {
        const char *s = argv[i];
        const char **slot = NULL;
        if (!strcmp(s, "--fnuz")) { a->opt.fnuz = 1; continue; }
        if (!strcmp(s, "--json")) { a->json = 1; continue; }
        if (!strcmp(s, "--allow-missing-layers")) { a->opt.allow_missing_layers = 1; continue; }
        if (!strcmp(s, "--")) { i++; break; }
        if (s[0] != '-' || s[1] != '-')
            break;
        static const char *const valued[] = {"--rules", "--kv-cache-dtype", "--dtype", "--strategy", "--layers",
                                             "--heads", "--kv-heads", "--head-dim", "--hidden-size", "--k", "--v"};
        int known = 0;
        for (size_t j = 0; j < sizeof valued / sizeof valued[0]; j++)
            known |= !strcmp(s, valued[j]);
        if (!known)
            return kvfp8_cli_usage_error(cmd, "unknown option '%s' (kvfp8 scales --help)", s);
        if (i + 1 >= argc)
            return kvfp8_cli_usage_error(cmd, "option %s needs a value", s);
        const char *val = argv[++i];
        if (!strcmp(s, "--rules")) {
            if (kvfp8_scale_rules_parse(val, &a->opt.rules) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "--rules: unknown rules '%s' (auto, llm-compressor, fp8-checkpoint)", val);
        } else if (!strcmp(s, "--kv-cache-dtype")) {
            if (kvfp8_kv_cache_dtype_parse(val, &a->opt.kv_cache_dtype) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "--kv-cache-dtype: unknown dtype '%s' (auto, fp8, fp8_e4m3, fp8_e5m2)", val);
        } else if (!strcmp(s, "--dtype")) {
            int rc = parse_dtype(val, &a->dtype);
            if (rc)
                return rc;
        } else if (!strcmp(s, "--strategy")) {
            if (kvfp8_scale_strategy_parse(val, &a->strategy) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "--strategy: unknown strategy '%s' (tensor, attn_head)", val);
        } else {
            if (!strcmp(s, "--layers")) slot = &a->layers;
            else if (!strcmp(s, "--heads")) slot = &a->heads;
            else if (!strcmp(s, "--kv-heads")) slot = &a->kv_heads;
            else if (!strcmp(s, "--head-dim")) slot = &a->head_dim;
            else if (!strcmp(s, "--hidden-size")) slot = &a->hidden_size;
            else if (!strcmp(s, "--k")) slot = &a->k;
            else slot = &a->v;
            *slot = val;
        }
    }
    a->first_value = i;
    return 0;
}

static void print_warnings(const kvfp8_scales *s) {
    for (size_t i = 0; i < s->warning_count; i++)
        fprintf(stderr, "kvfp8 scales: warning: %s\n", s->warnings[i]);
}

/* An error from the library: bad input (exit 2) unless it is an internal failure. */
static int library_error(kvfp8_status st) {
    if (st == KVFP8_ERR_NOMEM) {
        fprintf(stderr, "kvfp8 %s: %s\n", cmd, kvfp8_last_error());
        return KVFP8_EXIT_FAILED;
    }
    return kvfp8_cli_usage_error(cmd, "%s", kvfp8_last_error());
}

static json_t *values_json(const float *v, uint32_t n) {
    json_t *a = json_array();
    for (uint32_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_real((double)v[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static int emit_json(const scales_args *a, const kvfp8_scales *s, const char *fp, kvfp8_outbuf *out) {
    json_t *layers = json_array(), *warnings = json_array();
    for (uint32_t l = 0; layers && l < s->num_layers; l++) {
        float kf, vf;
        (void)kvfp8_scales_layer_float(s, l, &kf, &vf);
        json_t *o = json_pack("{s:I, s:s, s:s, s:o, s:o, s:f, s:f}", "layer", (json_int_t)l, "k_source",
                              kvfp8_scale_source_name(s->k_source[l]), "v_source", kvfp8_scale_source_name(s->v_source[l]),
                              "k_scale", values_json(s->k + (size_t)l * s->per_layer, s->per_layer), "v_scale",
                              values_json(s->v + (size_t)l * s->per_layer, s->per_layer), "k_float", (double)kf,
                              "v_float", (double)vf);
        if (!o || json_array_append_new(layers, o)) {
            json_decref(layers);
            layers = NULL;
        }
    }
    for (size_t i = 0; warnings && i < s->warning_count; i++)
        if (json_array_append_new(warnings, json_string(s->warnings[i]))) {
            json_decref(warnings);
            warnings = NULL;
        }
    if (!layers || !warnings) {
        json_decref(layers);
        json_decref(warnings);
        return 0;
    }
    json_t *root = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:s, s:b, s:b, s:s, s:o, s:o}", "folder", a->dir, "rules",
        kvfp8_scale_rules_name(s->rules), "kv_cache_dtype", kvfp8_kv_cache_dtype_name(s->kv_cache_dtype), "num_layers",
        (json_int_t)s->num_layers, "num_attention_heads", (json_int_t)s->num_attention_heads, "num_kv_heads",
        (json_int_t)s->num_kv_heads, "head_dim", (json_int_t)s->head_dim, "hidden_size", (json_int_t)s->hidden_size,
        "strategy", kvfp8_scale_strategy_name(s->strategy), "values_per_layer", (json_int_t)s->per_layer, "dtype",
        kvfp8_st_dtype_name(s->dtype), "fnuz", a->opt.fnuz, "fnuz_doubled", s->fnuz_doubled, "fingerprint", fp,
        "layers", layers, "warnings", warnings);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!text)
        return 0;
    kvfp8_outbuf_printf(out, "%s\n", text);
    free(text);
    return 1;
}

static void emit_values(kvfp8_outbuf *out, const float *v, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        kvfp8_outbuf_printf(out, "%s%.9g", i ? "," : "", (double)v[i]);
}

static void emit_table(const scales_args *a, const kvfp8_scales *s, const char *fp, kvfp8_outbuf *out) {
    kvfp8_outbuf_printf(out, "# %s: rules %s, kv_cache_dtype %s%s\n", a->dir, kvfp8_scale_rules_name(s->rules),
                        kvfp8_kv_cache_dtype_name(s->kv_cache_dtype),
                        s->fnuz_doubled ? ", FNUZ hardware: loaded scales doubled" : a->opt.fnuz ? ", FNUZ hardware" : "");
    kvfp8_outbuf_printf(out, "# %u layers, %u attention heads, %u KV heads, head_dim %u; strategy %s (%u value%s per layer); stored as %s\n",
                        s->num_layers, s->num_attention_heads, s->num_kv_heads, s->head_dim,
                        kvfp8_scale_strategy_name(s->strategy), s->per_layer, s->per_layer == 1 ? "" : "s",
                        kvfp8_st_dtype_name(s->dtype));
    kvfp8_outbuf_printf(out, "%-6s %-12s %-12s %-16s %s\n", "layer", "k_source", "v_source", "k_scale", "v_scale");
    for (uint32_t l = 0; l < s->num_layers; l++) {
        kvfp8_outbuf_printf(out, "%-6u %-12s %-12s ", l, kvfp8_scale_source_name(s->k_source[l]),
                            kvfp8_scale_source_name(s->v_source[l]));
        char kbuf[64];
        if (s->per_layer == 1) {
            snprintf(kbuf, sizeof kbuf, "%.9g", (double)s->k[l]);
            kvfp8_outbuf_printf(out, "%-16s %.9g\n", kbuf, (double)s->v[l]);
        } else {
            emit_values(out, s->k + (size_t)l * s->per_layer, s->per_layer);
            kvfp8_outbuf_printf(out, " ");
            emit_values(out, s->v + (size_t)l * s->per_layer, s->per_layer);
            kvfp8_outbuf_printf(out, "\n");
        }
    }
    kvfp8_outbuf_printf(out, "fingerprint %s\n", fp);
}

static int run_show(scales_args *a, int fingerprint_only) {
    kvfp8_scales s;
    kvfp8_status st = kvfp8_scales_load(a->dir, &a->opt, &s);
    if (st != KVFP8_OK)
        return library_error(st);
    char fp[65];
    if ((st = kvfp8_scales_fingerprint(&s, fp)) != KVFP8_OK) {
        kvfp8_scales_free(&s);
        return library_error(st);
    }
    kvfp8_outbuf out;
    kvfp8_outbuf_init(&out);
    int ok = 1;
    if (fingerprint_only)
        kvfp8_outbuf_printf(&out, "%s\n", fp);
    else if (a->json)
        ok = emit_json(a, &s, fp, &out);
    else
        emit_table(a, &s, fp, &out);
    print_warnings(&s);
    kvfp8_scales_free(&s);
    if (!ok) {
        kvfp8_outbuf_free(&out);
        fprintf(stderr, "kvfp8 %s: out of memory\n", cmd);
        return KVFP8_EXIT_FAILED;
    }
    return kvfp8_outbuf_flush(&out, stdout) ? KVFP8_EXIT_OK : KVFP8_EXIT_FAILED;
}

static int parse_u32(const char *opt, const char *text, int required, uint32_t *out) {
    *out = 0;
    if (!text) {
        if (required)
            return kvfp8_cli_usage_error(cmd, "%s is required", opt);
        return 0;
    }
    char *end;
    errno = 0;
    const unsigned long v = strtoul(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end || errno || v == 0 || v > 0xFFFFFFFFul)
        return kvfp8_cli_usage_error(cmd, "%s: '%s' is not a positive integer", opt, text);
    *out = (uint32_t)v;
    return 0;
}

/* A comma-separated list of n values, or one value for all n. */
static int parse_values(const char *opt, const char *text, float *dst, size_t n) {
    if (!text)
        return kvfp8_cli_usage_error(cmd, "%s is required", opt);
    size_t count = 0;
    const char *p = text;
    for (;;) {
        char *end;
        errno = 0;
        const float x = strtof(p, &end);
        if (end == p || (*end && *end != ',') || (errno == ERANGE && isinf(x)))
            return kvfp8_cli_usage_error(cmd, "%s: value %zu of '%s' is not a number", opt, count, text);
        if (!(isfinite(x) && x > 0))
            return kvfp8_cli_usage_error(cmd, "%s: value %zu (%s) must be finite and > 0", opt, count, p);
        if (count < n)
            dst[count] = x;
        count++;
        if (!*end)
            break;
        p = end + 1;
    }
    if (count == 1)
        for (size_t i = 1; i < n; i++)
            dst[i] = dst[0];
    else if (count != n)
        return kvfp8_cli_usage_error(cmd, "%s: %zu values given, expected %zu (or one for all)", opt, count, n);
    return 0;
}

static int run_write(scales_args *a) {
    uint32_t layers, heads, kv_heads, head_dim, hidden;
    int rc;
    if ((rc = parse_u32("--layers", a->layers, 1, &layers)) || (rc = parse_u32("--heads", a->heads, 1, &heads)) ||
        (rc = parse_u32("--kv-heads", a->kv_heads, 0, &kv_heads)) ||
        (rc = parse_u32("--head-dim", a->head_dim, 0, &head_dim)) ||
        (rc = parse_u32("--hidden-size", a->hidden_size, 0, &hidden)))
        return rc;
    if (!kv_heads)
        kv_heads = heads;
    if (!head_dim && !hidden)
        return kvfp8_cli_usage_error(cmd, "--head-dim or --hidden-size is required");
    kvfp8_scales s;
    kvfp8_status st = kvfp8_scales_init(&s, layers, heads, kv_heads, head_dim, hidden, a->strategy, a->dtype);
    if (st != KVFP8_OK)
        return library_error(st);
    const size_t n = (size_t)s.num_layers * s.per_layer;
    if ((rc = parse_values("--k", a->k, s.k, n)) || (rc = parse_values("--v", a->v, s.v, n))) {
        kvfp8_scales_free(&s);
        return rc;
    }
    for (uint32_t l = 0; l < s.num_layers; l++)
        s.k_source[l] = s.v_source[l] = KVFP8_SCALE_SRC_LOADED;
    if ((st = kvfp8_scales_save(a->dir, &s)) != KVFP8_OK) {
        kvfp8_scales_free(&s);
        return library_error(st);
    }
    /* What was written is the rounded values: report the fingerprint of those, as
     * `kvfp8 scales fingerprint DIR` will. */
    kvfp8_scales back;
    kvfp8_scale_options o = {KVFP8_SCALE_RULES_LLM_COMPRESSOR, 0, KVFP8_KV_CACHE_FP8, 0};
    kvfp8_scales_free(&s);
    if ((st = kvfp8_scales_load(a->dir, &o, &back)) != KVFP8_OK)
        return library_error(st);
    char fp[65];
    st = kvfp8_scales_fingerprint(&back, fp);
    kvfp8_scales_free(&back);
    if (st != KVFP8_OK)
        return library_error(st);
    printf("%s\n", fp);
    return fflush(stdout) == 0 ? KVFP8_EXIT_OK : KVFP8_EXIT_FAILED;
}

static int run_round(scales_args *a, int argc, char **argv) {
    if (a->first_value >= argc)
        return kvfp8_cli_usage_error(cmd, "round: no AMAX given");
    kvfp8_outbuf out;
    kvfp8_outbuf_init(&out);
    for (int i = a->first_value; i < argc; i++) {
        char *end;
        errno = 0;
        const float amax = strtof(argv[i], &end);
        float scale;
        uint32_t bits;
        /* Underflow (ERANGE with a subnormal or zero result) is a value; overflow is not. */
        if (end == argv[i] || *end || (errno == ERANGE && isinf(amax)) || kvfp8_scales_round_amax(amax, a->dtype, &scale, &bits) != KVFP8_OK) {
            kvfp8_outbuf_free(&out);
            return kvfp8_cli_usage_error(cmd, "round: AMAX '%s' must be a finite number >= 0", argv[i]);
        }
        kvfp8_outbuf_printf(&out, "%0*x %.9g\n", a->dtype == KVFP8_ST_F32 ? 8 : 4, bits, (double)scale);
    }
    return kvfp8_outbuf_flush(&out, stdout) ? KVFP8_EXIT_OK : KVFP8_EXIT_FAILED;
}

int kvfp8_cmd_scales(int argc, char **argv) {
    if (argc < 2)
        return kvfp8_cli_usage_error(cmd, "a verb is required: show, fingerprint, write, round (kvfp8 scales --help)");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(scales_help, stdout);
        return KVFP8_EXIT_OK;
    }
    scales_args a;
    memset(&a, 0, sizeof a);
    a.dtype = KVFP8_ST_BF16;
    a.strategy = KVFP8_SCALE_TENSOR;
    const char *verb = argv[1];
    const int is_round = !strcmp(verb, "round");
    if (!is_round && strcmp(verb, "show") && strcmp(verb, "fingerprint") && strcmp(verb, "write"))
        return kvfp8_cli_usage_error(cmd, "unknown verb '%s' (show, fingerprint, write, round)", verb);
    int start = 2;
    if (!is_round) {
        if (argc < 3 || (argv[2][0] == '-' && argv[2][1] == '-'))
            return kvfp8_cli_usage_error(cmd, "%s: the folder DIR is required", verb);
        a.dir = argv[2];
        start = 3;
    }
    int rc = parse_args(argc, argv, start, &a);
    if (rc)
        return rc;
    if (!is_round && a.first_value < argc)
        return kvfp8_cli_usage_error(cmd, "unexpected argument '%s'", argv[a.first_value]);
    if (!strcmp(verb, "show"))
        return run_show(&a, 0);
    if (!strcmp(verb, "fingerprint"))
        return run_show(&a, 1);
    if (!strcmp(verb, "write"))
        return run_write(&a);
    return run_round(&a, argc, argv);
}
