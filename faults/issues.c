/* The known-issues database: the reader of faults/data/known_issues.json and the
 * match of an entry against a platform and a configuration (include/kvfp8/platform.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_fields.h"
#include "kvfp8/platform.h"

static kvfp8_status read_list(const json_t *m, const char *key, kvfp8_issue_list *l, const char *label,
                              const char *path) {
    return kvfp8_jf_strs(m, key, 0, &l->v[0][0], sizeof l->v[0], KVFP8_ISSUE_MAX_LIST, &l->n, label, path);
}

static kvfp8_status read_tri(const json_t *m, const char *key, int *dst, const char *label, const char *path) {
    return kvfp8_jf_bool(m, key, 0, -1, dst, label, path);
}

static kvfp8_status read_issue(const json_t *o, kvfp8_known_issue *it, const char *label, const char *path) {
    static const char *const keys[] = {"id", "title", "category", "scope", "url", "match", "symptom", "cause",
                                       "remedies", "detector", "sources", NULL};
    static const char *const match_keys[] = {"vendor", "arch", "profile", "engine", "engine_version",
                                             "engine_generation", "kv_cache_dtype", "path_fails", "kv_fp8",
                                             "enable_prefix_caching", "chunked_prefill", "calculate_kv_scales",
                                             "fp8_fnuz", NULL};
    kvfp8_status st;
    memset(it, 0, sizeof *it);
    if (!json_is_object(o))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s: must be an object", label, path);
    json_t *m, *sources;
    char mp[64];
    snprintf(mp, sizeof mp, "%.40s.match", path);
    if ((st = kvfp8_jf_keys(o, keys, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "id", 1, it->id, sizeof it->id, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "title", 1, it->title, sizeof it->title, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "category", 1, it->category, sizeof it->category, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "scope", 1, it->scope, sizeof it->scope, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "url", 1, it->url, sizeof it->url, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "symptom", 1, it->symptom, sizeof it->symptom, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "cause", 1, it->cause, sizeof it->cause, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_strs(o, "remedies", 1, &it->remedies[0][0], sizeof it->remedies[0], 6, &it->n_remedies, label,
                            path)) != KVFP8_OK ||
        (st = kvfp8_jf_str(o, "detector", 1, it->detector, sizeof it->detector, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_child(o, "sources", 1, JSON_ARRAY, &sources, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_child(o, "match", 1, JSON_OBJECT, &m, label, path)) != KVFP8_OK ||
        (st = kvfp8_jf_keys(m, match_keys, label, mp)) != KVFP8_OK ||
        (st = read_list(m, "vendor", &it->vendor, label, mp)) != KVFP8_OK ||
        (st = read_list(m, "arch", &it->arch, label, mp)) != KVFP8_OK ||
        (st = read_list(m, "profile", &it->profile, label, mp)) != KVFP8_OK ||
        (st = read_list(m, "engine", &it->engine, label, mp)) != KVFP8_OK ||
        (st = read_list(m, "engine_version", &it->engine_version, label, mp)) != KVFP8_OK ||
        (st = read_list(m, "engine_generation", &it->engine_generation, label, mp)) != KVFP8_OK ||
        (st = read_list(m, "kv_cache_dtype", &it->kv_cache_dtype, label, mp)) != KVFP8_OK ||
        (st = read_list(m, "path_fails", &it->path_fails, label, mp)) != KVFP8_OK ||
        (st = read_tri(m, "kv_fp8", &it->kv_fp8, label, mp)) != KVFP8_OK ||
        (st = read_tri(m, "enable_prefix_caching", &it->enable_prefix_caching, label, mp)) != KVFP8_OK ||
        (st = read_tri(m, "chunked_prefill", &it->chunked_prefill, label, mp)) != KVFP8_OK ||
        (st = read_tri(m, "calculate_kv_scales", &it->calculate_kv_scales, label, mp)) != KVFP8_OK ||
        (st = read_tri(m, "fp8_fnuz", &it->fp8_fnuz, label, mp)) != KVFP8_OK)
        return st;
    if (!it->id[0])
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.id: empty", label, path);
    if (strlen(it->category) != 1 || !strchr("ABCD", it->category[0]))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.category: one of A, B, C, D, got '%s'", label, path, it->category);
    if (strcmp(it->scope, "stack") && strcmp(it->scope, "class"))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.scope: \"stack\" or \"class\", got '%s'", label, path, it->scope);
    if (json_array_size(sources) == 0)
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.sources: every entry names at least one source", label, path);
    for (size_t i = 0; i < json_array_size(sources); i++)
        if (!json_is_string(json_array_get(sources, i)))
            return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.sources[%zu]: must be a string", label, path, i);
    for (int i = 0; i < it->path_fails.n; i++) {
        kvfp8_kernel_path p;
        if (kvfp8_path_parse(it->path_fails.v[i], &p) != KVFP8_OK)
            return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.path_fails[%d]: unknown kernel path '%s'", label, mp, i,
                              it->path_fails.v[i]);
    }
    return KVFP8_OK;
}

kvfp8_status kvfp8_issues_parse(const char *text, size_t len, const char *label, kvfp8_issue_db *out) {
    memset(out, 0, sizeof *out);
    if (!label)
        label = "known_issues";
    json_t *root, *issues;
    kvfp8_status st = kvfp8_jf_load_document(text, len, label, "kvfp8-known-issues/1", "issues", &root, &issues);
    if (st != KVFP8_OK)
        return st;
    const size_t n = json_array_size(issues);
    if (n > 1024) {
        st = kvfp8_fail(KVFP8_ERR_FORMAT, "%s: issues: at most 1024 entries", label);
        goto done;
    }
    out->items = calloc(n ? n : 1, sizeof *out->items);
    if (!out->items) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "%s: issues", label);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        char path[32];
        snprintf(path, sizeof path, "issues[%zu]", i);
        if ((st = read_issue(json_array_get(issues, i), &out->items[i], label, path)) != KVFP8_OK)
            goto done;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(out->items[j].id, out->items[i].id)) {
                st = kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.id: '%s' appears twice", label, path, out->items[i].id);
                goto done;
            }
        out->count++;
    }
done:
    json_decref(root);
    if (st != KVFP8_OK)
        kvfp8_issues_free(out);
    return st;
}

kvfp8_status kvfp8_issues_load_file(const char *path, kvfp8_issue_db *out) {
    char *text;
    size_t len;
    memset(out, 0, sizeof *out);
    kvfp8_status st = kvfp8_jf_read_file(path, &text, &len);
    if (st != KVFP8_OK)
        return st;
    st = kvfp8_issues_parse(text, len, path, out);
    free(text);
    return st;
}

kvfp8_status kvfp8_issues_builtin(kvfp8_issue_db *out) {
    const char *t = kvfp8_issues_builtin_json();
    return kvfp8_issues_parse(t, strlen(t), "known_issues.json (built in)", out);
}

void kvfp8_issues_free(kvfp8_issue_db *db) {
    free(db->items);
    db->items = NULL;
    db->count = 0;
}

/* ---- matching --------------------------------------------------------------------- */

static int list_has(const kvfp8_issue_list *l, const char *s) {
    if (l->n == 0)
        return 1;
    for (int i = 0; i < l->n; i++)
        if (s && !strcmp(l->v[i], s))
            return 1;
    return 0;
}

/* "0.4" matches 0.4, 0.4.1, ...; "0.7.2" only 0.7.2. */
static int version_has(const kvfp8_issue_list *l, const char *v) {
    if (l->n == 0)
        return 1;
    for (int i = 0; i < l->n; i++) {
        const size_t n = strlen(l->v[i]);
        if (v && !strncmp(l->v[i], v, n) && (v[n] == 0 || v[n] == '.'))
            return 1;
    }
    return 0;
}

static int tri(int want, int have) { return want < 0 || want == (have != 0); }

int kvfp8_issue_matches(const kvfp8_known_issue *i, const kvfp8_issue_query *q) {
    const kvfp8_platform *p = q->platform;
    const char *d = q->kv_cache_dtype ? q->kv_cache_dtype : "auto";
    const int fp8 = !strncmp(d, "fp8", 3);
    const int needs_platform = i->vendor.n || i->arch.n || i->profile.n || i->engine.n || i->engine_version.n ||
                               i->engine_generation.n || i->path_fails.n || i->fp8_fnuz >= 0;
    if (needs_platform && !p)
        return 0;
    if (p) {
        int profile_ok = i->profile.n == 0 || list_has(&i->profile, p->id);
        for (int a = 0; !profile_ok && a < p->n_aliases; a++)
            profile_ok = list_has(&i->profile, p->aliases[a]);
        if (!profile_ok || !list_has(&i->vendor, p->vendor) || !list_has(&i->arch, p->arch) ||
            !list_has(&i->engine, p->engine) || !version_has(&i->engine_version, p->engine_version) ||
            !list_has(&i->engine_generation, p->engine_generation) || !tri(i->fp8_fnuz, p->fp8_fnuz))
            return 0;
    }
    if (!list_has(&i->kv_cache_dtype, d) || !tri(i->kv_fp8, fp8) ||
        !tri(i->enable_prefix_caching, q->enable_prefix_caching) || !tri(i->chunked_prefill, q->chunked_prefill) ||
        !tri(i->calculate_kv_scales, q->calculate_kv_scales))
        return 0;
    if (i->path_fails.n) {
        /* the capability model must say that a listed path, one the configuration
         * uses, cannot run it */
        kvfp8_capability cap;
        int failing = -2;
        kvfp8_platform_check_config(p, d, q->enable_prefix_caching, q->chunked_prefill, KVFP8_DTYPE_BF16, &cap,
                                    &failing);
        if (cap.ok || failing < 0 || !list_has(&i->path_fails, kvfp8_path_name((kvfp8_kernel_path)failing)))
            return 0;
    }
    return 1;
}
