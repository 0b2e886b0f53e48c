/* Strict field readers for the faults/ data files (see json_fields.h). */
#include "json_fields.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kvfp8_status kvfp8_jf_keys(const json_t *obj, const char *const *allowed, const char *label, const char *path) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        (void)v;
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(key, *a);
        if (!ok)
            return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s: unknown key '%.60s'", label, path, key);
    }
    return KVFP8_OK;
}

kvfp8_status kvfp8_jf_str(const json_t *obj, const char *key, int required, char *dst, size_t cap, const char *label,
                          const char *path) {
    const json_t *v = json_object_get(obj, key);
    dst[0] = 0;
    if (!v)
        return required ? kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s: missing", label, path, key) : KVFP8_OK;
    if (!json_is_string(v))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s: must be a string", label, path, key);
    const size_t n = json_string_length(v);
    if (n >= cap)
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s: longer than %zu bytes", label, path, key, cap - 1);
    /* no NUL inside: kvfp8_jf_load parses without JSON_ALLOW_NUL, so "\u0000" is refused there */
    memcpy(dst, json_string_value(v), n + 1);
    return KVFP8_OK;
}

kvfp8_status kvfp8_jf_bool(const json_t *obj, const char *key, int required, int dflt, int *dst, const char *label,
                           const char *path) {
    const json_t *v = json_object_get(obj, key);
    *dst = dflt;
    if (!v)
        return required ? kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s: missing", label, path, key) : KVFP8_OK;
    if (!json_is_boolean(v))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s: must be true or false", label, path, key);
    *dst = json_is_true(v);
    return KVFP8_OK;
}

kvfp8_status kvfp8_jf_strs(const json_t *obj, const char *key, int required, char *dst, size_t width, int max,
                           int *n, const char *label, const char *path) {
    const json_t *v = json_object_get(obj, key);
    *n = 0;
    if (!v)
        return required ? kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s: missing", label, path, key) : KVFP8_OK;
    if (!json_is_array(v))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s: must be an array of strings", label, path, key);
    if (json_array_size(v) > (size_t)max)
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s: more than %d entries", label, path, key, max);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *s = json_array_get(v, i);
        if (!json_is_string(s))
            return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s[%zu]: must be a string", label, path, key, i);
        const size_t len = json_string_length(s);
        if (len >= width)
            return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s[%zu]: longer than %zu bytes", label, path, key, i,
                              width - 1);
        memcpy(dst + i * width, json_string_value(s), len + 1);
        (*n)++;
    }
    return KVFP8_OK;
}

kvfp8_status kvfp8_jf_child(const json_t *obj, const char *key, int required, json_type type, json_t **out,
                            const char *label, const char *path) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v)
        return required ? kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s: missing", label, path, key) : KVFP8_OK;
    if (json_typeof(v) != type)
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: %s.%s: must be an %s", label, path, key,
                          type == JSON_OBJECT ? "object" : "array");
    *out = v;
    return KVFP8_OK;
}

kvfp8_status kvfp8_jf_load_document(const char *text, size_t len, const char *label, const char *schema,
                                    const char *list_key, json_t **root, json_t **list) {
    const char *const keys[] = {"schema", "about", list_key, NULL};
    json_error_t err;
    char got[64];
    kvfp8_status st;
    *list = NULL;
    *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!*root)
        return kvfp8_fail(KVFP8_ERR_FORMAT, "%s: line %d column %d: %s", label, err.line, err.column, err.text);
    if (!json_is_object(*root))
        st = kvfp8_fail(KVFP8_ERR_FORMAT, "%s: the document must be a JSON object", label);
    else if ((st = kvfp8_jf_keys(*root, keys, label, "(top)")) == KVFP8_OK &&
             (st = kvfp8_jf_str(*root, "schema", 1, got, sizeof got, label, "(top)")) == KVFP8_OK &&
             (st = kvfp8_jf_child(*root, list_key, 1, JSON_ARRAY, list, label, "(top)")) == KVFP8_OK &&
             strcmp(got, schema))
        st = kvfp8_fail(KVFP8_ERR_FORMAT, "%s: schema: expected \"%s\", got '%s'", label, schema, got);
    if (st != KVFP8_OK) {
        json_decref(*root);
        *root = NULL, *list = NULL;
    }
    return st;
}

kvfp8_status kvfp8_jf_read_file(const char *path, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return kvfp8_fail(KVFP8_ERR_IO, "%s: %s", path, strerror(errno));
    const size_t cap = 4u << 20;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return kvfp8_fail(KVFP8_ERR_NOMEM, "%s", path);
    }
    const size_t n = fread(buf, 1, cap + 1, f);
    const int err = ferror(f);
    fclose(f);
    if (err || n > cap) {
        free(buf);
        return kvfp8_fail(err ? KVFP8_ERR_IO : KVFP8_ERR_FORMAT, "%s: %s", path,
                          err ? "read error" : "larger than 4 MiB");
    }
    buf[n] = 0;
    *text = buf;
    *len = n;
    return KVFP8_OK;
}
