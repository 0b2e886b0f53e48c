/* Platform capability profiles: the reader of faults/data/platforms.json, the
 * capability decisions, and the engine hook (include/kvfp8/platform.h). */
#include "kvfp8/platform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_fields.h"

static const char *const path_names[KVFP8_PATH_COUNT] = {"cache_write", "prefill", "prefix_prefill", "decode"};
static const char *const encodings[] = {"fp8e4nv", "fp8e4b8", "fp8e5", "fp8e5b16", "bf16", "fp16", "fp32", NULL};
static const char *const kv_dtypes[] = {"auto", "bfloat16", "float16", "float32", "fp8", "fp8_e4m3", "fp8_e5m2", NULL};

const char *kvfp8_path_name(kvfp8_kernel_path p) { return (unsigned)p < KVFP8_PATH_COUNT ? path_names[p] : "?"; }

kvfp8_status kvfp8_path_parse(const char *name, kvfp8_kernel_path *out) {
    for (int i = 0; i < KVFP8_PATH_COUNT; i++)
        if (!strcmp(name, path_names[i])) {
            *out = (kvfp8_kernel_path)i;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID, "unknown kernel path '%s' (cache_write, prefill, prefix_prefill, decode)",
                      name);
}

int kvfp8_path_of_site(const char *site) {
    if (!strcmp(site, KVFP8_SITE_CACHE_WRITE))
        return KVFP8_PATH_CACHE_WRITE;
    if (!strcmp(site, KVFP8_SITE_PREFILL))
        return KVFP8_PATH_PREFILL;
    if (!strcmp(site, KVFP8_SITE_PREFIX_PREFILL))
        return KVFP8_PATH_PREFIX_PREFILL;
    if (!strcmp(site, KVFP8_SITE_DECODE) || !strcmp(site, KVFP8_SITE_CACHE_READ))
        return KVFP8_PATH_DECODE;
    return -1;
}

const char *kvfp8_encoding_of(const kvfp8_kv_storage *s) {
    if (s->is_fp8)
        switch (s->fp8.format) {
        case KVFP8_E4M3FN: return "fp8e4nv";
        case KVFP8_E4M3FNUZ: return "fp8e4b8";
        case KVFP8_E5M2: return "fp8e5";
        case KVFP8_E5M2FNUZ: return "fp8e5b16";
        }
    switch (s->dtype) {
    case KVFP8_DTYPE_F16: return "fp16";
    case KVFP8_DTYPE_F32: return "fp32";
    case KVFP8_DTYPE_BF16: break;
    }
    return "bf16";
}

static int in_list(const char *const *list, const char *s) {
    for (; *list; list++)
        if (!strcmp(*list, s))
            return 1;
    return 0;
}

int kvfp8_encoding_known(const char *name) { return in_list(encodings, name); }

const char *kvfp8_failure_name(kvfp8_failure_kind k) { return k == KVFP8_FAILURE_CRASH ? "crash" : "error"; }

/* ---- the reader ------------------------------------------------------------------ */

/* Placeholders a message may use: anything else in braces is a typo. */
static kvfp8_status check_template(const char *msg, const char *label, const char *path) {
    for (const char *p = strchr(msg, '{'); p; p = strchr(p + 1, '{'))
        if (strncmp(p, "{encoding}", 10) && strncmp(p, "{native_fp8}", 12) && strncmp(p, "{kv_cache_dtype}", 16))
            return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.message: unknown placeholder at '%.20s' ({encoding}, "
                              "{native_fp8}, {kv_cache_dtype})", label, path, p);
    return KVFP8_OK;
}

static kvfp8_status read_rejection(const json_t *o, int needs_dtype, kvfp8_rejection *r, const char *label,
                                   const char *path) {
    static const char *const keys[] = {"kv_cache_dtype", "message", "failure", "error_type", "when", "source", NULL};
    char failure[16];
    kvfp8_status st;
    memset(r, 0, sizeof *r);
    if (!json_is_object(o))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s: must be an object", label, path);
    if ((st = kvfp8_jf_keys(o, keys, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "kv_cache_dtype", needs_dtype, r->kv_cache_dtype, sizeof r->kv_cache_dtype, label,
                           path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "message", 1, r->message, sizeof r->message, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "failure", 1, failure, sizeof failure, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "error_type", 0, r->error_type, sizeof r->error_type, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "when", 0, r->when, sizeof r->when, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "source", 1, r->source, sizeof r->source, label, path)) != KVFP8_OK)
        return st;
    if (needs_dtype && !in_list(kv_dtypes, r->kv_cache_dtype))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.kv_cache_dtype: unknown kv_cache_dtype '%s'", label, path,
                          r->kv_cache_dtype);
    if (!needs_dtype && json_object_get(o, "kv_cache_dtype"))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.kv_cache_dtype: not used here", label, path);
    if (!strcmp(failure, "crash"))
        r->failure = KVFP8_FAILURE_CRASH;
    else if (!strcmp(failure, "error"))
        r->failure = KVFP8_FAILURE_ERROR;
    else
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.failure: must be \"error\" or \"crash\", got '%s'", label, path,
                          failure);
    return check_template(r->message, label, path);
}

static kvfp8_status read_rejections(const json_t *o, const char *key, kvfp8_rejection *out, int *n, const char *label,
                                    const char *path) {
    json_t *arr;
    kvfp8_status st = kvfp8_jf_child(o, key, 1, JSON_ARRAY, &arr, label, path);
    *n = 0;
    if (st != KVFP8_OK)
        return st;
    if (json_array_size(arr) > KVFP8_PLATFORM_MAX_REJECTS)
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s: more than %d entries", label, path, key,
                          KVFP8_PLATFORM_MAX_REJECTS);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char p[192];
        snprintf(p, sizeof p, "%.120s.%.40s[%zu]", path, key, i);
        if ((st = read_rejection(json_array_get(arr, i), 1, &out[i], label, p)) != KVFP8_OK)
            return st;
        for (int j = 0; j < *n; j++)
            if (!strcmp(out[j].kv_cache_dtype, out[i].kv_cache_dtype))
                return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.kv_cache_dtype: '%s' is rejected twice", label, p,
                                  out[i].kv_cache_dtype);
        (*n)++;
    }
    return KVFP8_OK;
}

static kvfp8_status read_encodings(const json_t *o, const char *key, char (*dst)[12], int *n, const char *label,
                                   const char *path) {
    kvfp8_status st = kvfp8_jf_strs(o, key, 1, &dst[0][0], 12, KVFP8_PLATFORM_MAX_ENC, n, label, path);
    if (st != KVFP8_OK)
        return st;
    for (int i = 0; i < *n; i++) {
        if (!kvfp8_encoding_known(dst[i]))
            return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s[%d]: unknown encoding '%s' (fp8e4nv, fp8e4b8, fp8e5, "
                              "fp8e5b16, bf16, fp16, fp32)", label, path, key, i, dst[i]);
        for (int j = 0; j < i; j++)
            if (!strcmp(dst[i], dst[j]))
                return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s[%d]: '%s' listed twice", label, path, key, i, dst[i]);
    }
    return KVFP8_OK;
}

static kvfp8_status read_path(const json_t *o, kvfp8_path_caps *c, const char *label, const char *path) {
    static const char *const keys[] = {"kernel", "reads_cache", "native", "software", "rejects", "unsupported",
                                       "source", NULL};
    kvfp8_status st;
    memset(c, 0, sizeof *c);
    if (!json_is_object(o))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s: must be an object", label, path);
    if ((st = kvfp8_jf_keys(o, keys, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "kernel", 1, c->kernel, sizeof c->kernel, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_bool(o, "reads_cache", 0, 1, &c->reads_cache, label, path)) != KVFP8_OK ||
        (st = read_encodings(o, "native", c->native, &c->n_native, label, path)) != KVFP8_OK ||
        (st = read_encodings(o, "software", c->software, &c->n_software, label, path)) != KVFP8_OK ||
        (st = read_rejections(o, "rejects", c->rejects, &c->n_rejects, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "source", 1, c->source, sizeof c->source, label, path)) != KVFP8_OK)
        return st;
    for (int i = 0; i < c->n_software; i++)
        for (int j = 0; j < c->n_native; j++)
            if (!strcmp(c->software[i], c->native[j]))
                return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.software[%d]: '%s' is also native", label, path, i,
                                  c->software[i]);
    const json_t *u = json_object_get(o, "unsupported");
    if (u) {
        char p[192];
        snprintf(p, sizeof p, "%.150s.unsupported", path);
        if ((st = read_rejection(u, 0, &c->unsupported, label, p)) != KVFP8_OK)
            return st;
        c->has_unsupported = 1;
    }
    return KVFP8_OK;
}

static kvfp8_status read_profile(const json_t *o, kvfp8_platform *p, const char *label, const char *path) {
    static const char *const keys[] = {"id", "aliases", "status", "summary", "vendor", "arch", "device", "runtime",
                                       "engine", "fp8_means", "fp8_means_source", "conversion_profile",
                                       "startup_rejects", "paths", "sources", NULL};
    static const char *const engine_keys[] = {"name", "version", "generation", NULL};
    static const char *const path_keys[] = {"cache_write", "prefill", "prefix_prefill", "decode", NULL};
    kvfp8_status st;
    char buf[64], sub[160];
    memset(p, 0, sizeof *p);
    if (!json_is_object(o))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s: must be an object", label, path);
    if ((st = kvfp8_jf_keys(o, keys, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "id", 1, p->id, sizeof p->id, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_strs(o, "aliases", 0, &p->aliases[0][0], sizeof p->aliases[0], KVFP8_PLATFORM_MAX_ALIASES,
                            &p->n_aliases, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "status", 1, p->status, sizeof p->status, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "summary", 1, p->summary, sizeof p->summary, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "vendor", 1, p->vendor, sizeof p->vendor, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "arch", 1, p->arch, sizeof p->arch, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "device", 1, p->device, sizeof p->device, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "runtime", 1, p->runtime, sizeof p->runtime, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "fp8_means", 1, buf, sizeof buf, label, path)) != KVFP8_OK)
        return st;
    if (!p->id[0])
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.id: empty", label, path);
    if (strcmp(p->status, "reported") && strcmp(p->status, "derived"))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.status: must be \"reported\" or \"derived\", got '%s'", label,
                          path, p->status);
    if (!strcmp(buf, "e4m3fnuz"))
        p->fp8_fnuz = 1;
    else if (strcmp(buf, "e4m3fn"))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.fp8_means: must be \"e4m3fn\" or \"e4m3fnuz\", got '%s'", label,
                          path, buf);
    if ((st = kvfp8_jf_str(o, "fp8_means_source", 1, p->fp8_means_source, sizeof p->fp8_means_source, label, path)) !=
            KVFP8_OK ||
        (st = kvfp8_jf_str(o, "conversion_profile", 1, buf, sizeof buf, label, path)) != KVFP8_OK)
        return st;
    if (kvfp8_profile_parse(buf, &p->conversion) != KVFP8_OK)
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.conversion_profile: unknown FP8 profile '%s' (kvfp8 fp8 "
                          "profiles)", label, path, buf);
    json_t *eng, *paths;
    snprintf(sub, sizeof sub, "%.100s.engine", path);
    if ((st = kvfp8_jf_child(o, "engine", 1, JSON_OBJECT, &eng, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_keys(eng, engine_keys, label, sub)) != KVFP8_OK ||
        (st = kvfp8_jf_str(eng, "name", 1, p->engine, sizeof p->engine, label, sub)) != KVFP8_OK ||
        (st = kvfp8_jf_str(eng, "version", 1, p->engine_version, sizeof p->engine_version, label, sub)) != KVFP8_OK ||
        (st = kvfp8_jf_str(eng, "generation", 1, p->engine_generation, sizeof p->engine_generation, label, sub)) !=
            KVFP8_OK)
        return st;
    if ((st = read_rejections(o, "startup_rejects", p->startup_rejects, &p->n_startup_rejects, label, path)) !=
        KVFP8_OK)
        return st;
    snprintf(sub, sizeof sub, "%.100s.paths", path);
    if ((st = kvfp8_jf_child(o, "paths", 1, JSON_OBJECT, &paths, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_keys(paths, path_keys, label, sub)) != KVFP8_OK)
        return st;
    for (int i = 0; i < KVFP8_PATH_COUNT; i++) {
        const json_t *po = json_object_get(paths, path_names[i]);
        char pp[192];
        snprintf(pp, sizeof pp, "%.140s.%.20s", sub, path_names[i]);
        if (!po)
            return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s: missing (every profile describes all four paths)", label, pp);
        if ((st = read_path(po, &p->paths[i], label, pp)) != KVFP8_OK)
            return st;
    }
    if (!p->paths[KVFP8_PATH_CACHE_WRITE].reads_cache)
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.cache_write.reads_cache: the cache write always touches the "
                          "cache", label, sub);
    return kvfp8_jf_strs(o, "sources", 1, &p->sources[0][0], sizeof p->sources[0], KVFP8_PLATFORM_MAX_SOURCES,
                         &p->n_sources, label, path);
}

static int name_taken(const kvfp8_platform *items, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(items[i].id, name))
            return 1;
        for (int a = 0; a < items[i].n_aliases; a++)
            if (!strcmp(items[i].aliases[a], name))
                return 1;
    }
    return 0;
}

kvfp8_status kvfp8_platforms_parse(const char *text, size_t len, const char *label, kvfp8_platform_set *out) {
    memset(out, 0, sizeof *out);
    if (!label)
        label = "platforms";
    json_t *root, *profiles;
    kvfp8_status st = kvfp8_jf_load_document(text, len, label, "kvfp8-platforms/1", "profiles", &root, &profiles);
    if (st != KVFP8_OK)
        return st;
    const size_t n = json_array_size(profiles);
    if (n == 0 || n > 256) {
        st = kvfp8_fail(KVFP8_ERR_FORMAT, "%s: profiles: 1 to 256 profiles, got %zu", label, n);
        goto done;
    }
    out->items = calloc(n, sizeof *out->items);
    if (!out->items) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "%s: profiles", label);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        char path[32];
        snprintf(path, sizeof path, "profiles[%zu]", i);
        kvfp8_platform p;
        if ((st = read_profile(json_array_get(profiles, i), &p, label, path)) != KVFP8_OK)
            goto done;
        if (name_taken(out->items, out->count, p.id)) {
            st = kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.id: '%s' is already a profile id or alias", label, path, p.id);
            goto done;
        }
        for (int a = 0; a < p.n_aliases; a++)
            if (name_taken(out->items, out->count, p.aliases[a]) || !strcmp(p.aliases[a], p.id)) {
                st = kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.aliases[%d]: '%s' is already a profile id or alias", label,
                                path, a, p.aliases[a]);
                goto done;
            }
        out->items[out->count++] = p;
    }
done:
    json_decref(root);
    if (st != KVFP8_OK)
        kvfp8_platforms_free(out);
    return st;
}

kvfp8_status kvfp8_platforms_load_file(const char *path, kvfp8_platform_set *out) {
    char *text;
    size_t len;
    memset(out, 0, sizeof *out);
    kvfp8_status st = kvfp8_jf_read_file(path, &text, &len);
    if (st != KVFP8_OK)
        return st;
    st = kvfp8_platforms_parse(text, len, path, out);
    free(text);
    return st;
}

kvfp8_status kvfp8_platforms_builtin(kvfp8_platform_set *out) {
    const char *t = kvfp8_platforms_builtin_json();
    return kvfp8_platforms_parse(t, strlen(t), "platforms.json (built in)", out);
}

void kvfp8_platforms_free(kvfp8_platform_set *s) {
    free(s->items);
    s->items = NULL;
    s->count = 0;
}

const kvfp8_platform *kvfp8_platform_find(const kvfp8_platform_set *s, const char *name) {
    for (size_t i = 0; i < s->count; i++) {
        if (!strcmp(s->items[i].id, name))
            return &s->items[i];
        for (int a = 0; a < s->items[i].n_aliases; a++)
            if (!strcmp(s->items[i].aliases[a], name))
                return &s->items[i];
    }
    char ids[400] = "";
    size_t used = 0;
    for (size_t i = 0; i < s->count && used < sizeof ids - 80; i++)
        used += (size_t)snprintf(ids + used, sizeof ids - used, "%s%s", i ? ", " : "", s->items[i].id);
    kvfp8_fail(KVFP8_ERR_INVALID, "unknown platform '%s' (%s; kvfp8 faults platforms)", name, ids);
    return NULL;
}

/* ---- decisions ------------------------------------------------------------------- */

static int has(const char (*list)[12], int n, const char *enc) {
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], enc))
            return 1;
    return 0;
}

/* The message with its placeholders filled in; {native_fp8} is the native FP8
 * encodings as Python prints a tuple, ('fp8e5',), as Triton's message does. */
static void fill(char *out, size_t cap, const char *tmpl, const char *enc, const kvfp8_path_caps *c,
                 const char *dtype) {
    char tuple[160] = "(";
    int k = 0;
    if (c)
        for (int i = 0; i < c->n_native; i++)
            if (!strncmp(c->native[i], "fp8", 3)) {
                size_t l = strlen(tuple);
                snprintf(tuple + l, sizeof tuple - l, "%s'%s'", k++ ? ", " : "", c->native[i]);
            }
    size_t l = strlen(tuple);
    snprintf(tuple + l, sizeof tuple - l, "%s)", k == 1 ? "," : "");
    size_t used = 0;
    out[0] = 0;
    for (const char *p = tmpl; *p && used + 1 < cap;) {
        const char *val = NULL;
        size_t skip = 0;
        if (!strncmp(p, "{encoding}", 10))
            val = enc, skip = 10;
        else if (!strncmp(p, "{native_fp8}", 12))
            val = tuple, skip = 12;
        else if (!strncmp(p, "{kv_cache_dtype}", 16))
            val = dtype, skip = 16;
        if (val) {
            used += (size_t)snprintf(out + used, cap - used, "%s", val);
            if (used >= cap)
                used = cap - 1;
            p += skip;
        } else {
            out[used++] = *p++;
            out[used] = 0;
        }
    }
}

static void fail_with(kvfp8_capability *out, const kvfp8_rejection *r, const char *enc, const kvfp8_path_caps *c,
                      const char *dtype, int rejected) {
    out->ok = 0;
    out->rejected = rejected;
    out->failure = r->failure;
    snprintf(out->error_type, sizeof out->error_type, "%s", r->error_type);
    fill(out->message, sizeof out->message, r->message, enc, c, dtype);
    snprintf(out->source, sizeof out->source, "%s", r->source);
}

kvfp8_status kvfp8_platform_storage_encoding(const kvfp8_platform *p, const char *d, kvfp8_model_dtype model_dtype,
                                             const char **encoding) {
    if (!strcmp(d, "auto"))
        *encoding = model_dtype == KVFP8_DTYPE_F16 ? "fp16" : model_dtype == KVFP8_DTYPE_F32 ? "fp32" : "bf16";
    else if (!strcmp(d, "bfloat16"))
        *encoding = "bf16";
    else if (!strcmp(d, "float16"))
        *encoding = "fp16";
    else if (!strcmp(d, "float32"))
        *encoding = "fp32";
    else if (!strcmp(d, "fp8") || !strcmp(d, "fp8_e4m3"))
        *encoding = p->fp8_fnuz ? "fp8e4b8" : "fp8e4nv";
    else if (!strcmp(d, "fp8_e5m2"))
        *encoding = p->fp8_fnuz ? "fp8e5b16" : "fp8e5";
    else
        return kvfp8_fail(KVFP8_ERR_INVALID, "Unsupported fp8 kv cache data type: %s", d);
    return KVFP8_OK;
}

void kvfp8_platform_check(const kvfp8_platform *p, kvfp8_kernel_path path, const char *dtype, const char *enc,
                          kvfp8_capability *out) {
    memset(out, 0, sizeof *out);
    out->ok = 1;
    if ((unsigned)path >= KVFP8_PATH_COUNT)
        return;
    const kvfp8_path_caps *c = &p->paths[path];
    for (int i = 0; i < c->n_rejects; i++)
        if (dtype && !strcmp(c->rejects[i].kv_cache_dtype, dtype)) {
            fail_with(out, &c->rejects[i], enc, c, dtype, 1);
            return;
        }
    if (!c->reads_cache || has(c->native, c->n_native, enc))
        return;
    if (has(c->software, c->n_software, enc)) {
        out->software = 1;
        return;
    }
    if (c->has_unsupported) {
        fail_with(out, &c->unsupported, enc, c, dtype ? dtype : "", 0);
        return;
    }
    out->ok = 0;
    out->failure = KVFP8_FAILURE_ERROR;
    snprintf(out->message, sizeof out->message, "the %s path of %s (%s) cannot read %s", path_names[path], p->id,
             c->kernel, enc);
    snprintf(out->source, sizeof out->source, "%.319s", c->source);
}

void kvfp8_platform_check_startup(const kvfp8_platform *p, const char *dtype, kvfp8_capability *out) {
    memset(out, 0, sizeof *out);
    out->ok = 1;
    for (int i = 0; i < p->n_startup_rejects; i++)
        if (!strcmp(p->startup_rejects[i].kv_cache_dtype, dtype)) {
            fail_with(out, &p->startup_rejects[i], "", NULL, dtype, 1);
            return;
        }
}

void kvfp8_platform_check_config(const kvfp8_platform *p, const char *dtype, int prefix, int chunked,
                                 kvfp8_model_dtype model_dtype, kvfp8_capability *out, int *failing_path) {
    kvfp8_platform_check_startup(p, dtype, out);
    if (!out->ok) {
        *failing_path = -1;
        return;
    }
    const char *enc;
    if (kvfp8_platform_storage_encoding(p, dtype, model_dtype, &enc) != KVFP8_OK) {
        out->ok = 0;
        out->rejected = 1;
        snprintf(out->message, sizeof out->message, "%s", kvfp8_last_error());
        *failing_path = -1;
        return;
    }
    /* the order the engine meets them: the startup canary writes and reads back,
     * then a request prefills, decodes, and (on a hit or a later chunk) prefix-prefills */
    static const kvfp8_kernel_path order[] = {KVFP8_PATH_CACHE_WRITE, KVFP8_PATH_DECODE, KVFP8_PATH_PREFILL,
                                              KVFP8_PATH_PREFIX_PREFILL};
    int software = 0;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (order[i] == KVFP8_PATH_PREFIX_PREFILL && !prefix && !chunked)
            continue;
        kvfp8_platform_check(p, order[i], dtype, enc, out);
        if (!out->ok) {
            *failing_path = (int)order[i];
            return;
        }
        software |= out->software;
    }
    out->software = software;
}

/* ---- the hook ------------------------------------------------------------------------ */

kvfp8_status kvfp8_platform_attach(kvfp8_platform_session *s, const kvfp8_platform *p, kvfp8_engine_config *cfg) {
    s->platform = p;
    s->kv_cache_dtype = cfg->kv_cache_dtype ? cfg->kv_cache_dtype : "auto";
    s->crashed = 0;
    s->failed_site[0] = 0;
    s->calls = s->software_conversions = 0;
    memset(&s->failure, 0, sizeof s->failure);
    kvfp8_capability cap;
    kvfp8_platform_check_startup(p, s->kv_cache_dtype, &cap);
    if (!cap.ok) {
        s->failure = cap;
        snprintf(s->failed_site, sizeof s->failed_site, "%s", KVFP8_SITE_ENGINE_STARTUP);
        return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "%s", cap.message);
    }
    cfg->fp8_fnuz = p->fp8_fnuz;
    cfg->fp8_profile = p->conversion;
    cfg->hook = kvfp8_platform_hook;
    cfg->hook_ctx = s;
    return KVFP8_OK;
}

kvfp8_status kvfp8_platform_hook(void *ctx, const char *site, const kvfp8_backend_query *q) {
    kvfp8_platform_session *s = ctx;
    s->calls++;
    const int path = kvfp8_path_of_site(site);
    if (path < 0)
        return KVFP8_OK;
    kvfp8_capability cap;
    kvfp8_platform_check(s->platform, (kvfp8_kernel_path)path, s->kv_cache_dtype, kvfp8_encoding_of(&q->storage),
                         &cap);
    if (cap.ok) {
        s->software_conversions += (uint64_t)cap.software;
        return KVFP8_OK;
    }
    s->failure = cap;
    snprintf(s->failed_site, sizeof s->failed_site, "%s", site);
    if (cap.failure == KVFP8_FAILURE_CRASH) {
        s->crashed = 1;
        if (s->on_crash)
            s->on_crash(s->on_crash_ctx, site, &cap);
    }
    return kvfp8_fail(cap.rejected ? KVFP8_ERR_INVALID : KVFP8_ERR_UNSUPPORTED, "%s", cap.message);
}
