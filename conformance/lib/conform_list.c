/* The conformance runner's lists: result codes, the must-pass and optional lists,
 * --filter and --shard selection, and waiver files (include/kvfp8/conform.h). */
#include "kvfp8/conform.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const result_names[KVFP8_CONFORM_RESULT_COUNT] = {"PASS",   "FAIL",  "NOT_SUPPORTED",
                                                                     "WAIVED", "CRASH", "TIMEOUT"};

const char *kvfp8_conform_result_name(kvfp8_conform_result r) {
    return (unsigned)r < KVFP8_CONFORM_RESULT_COUNT ? result_names[r] : "?";
}

kvfp8_status kvfp8_conform_result_parse(const char *name, kvfp8_conform_result *out) {
    for (int i = 0; name && i < KVFP8_CONFORM_RESULT_COUNT; i++)
        if (!strcmp(name, result_names[i])) {
            *out = (kvfp8_conform_result)i;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_FORMAT, "unknown result code '%s'", name ? name : "(null)");
}

int kvfp8_conform_hist_bin(double ratio) {
    if (!(ratio >= 1e-8))
        return ratio != ratio ? KVFP8_CONFORM_HIST_BINS - 1 : 0;
    if (ratio >= 10)
        return KVFP8_CONFORM_HIST_BINS - 1;
    int bin = (int)floor(log10(ratio)) + 9; /* 1e-8 -> 1, ..., 1 -> 9 */
    if (bin < 1)
        bin = 1;
    if (bin > KVFP8_CONFORM_HIST_BINS - 2)
        bin = KVFP8_CONFORM_HIST_BINS - 2;
    return bin;
}

const char *kvfp8_conform_hist_label(int bin) {
    static const char *const labels[KVFP8_CONFORM_HIST_BINS] = {
        "<1e-8", "1e-8", "1e-7", "1e-6", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1", "1..10", ">=10"};
    return bin >= 0 && bin < KVFP8_CONFORM_HIST_BINS ? labels[bin] : "?";
}

/* ---- list files ------------------------------------------------------------------------- */

static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int valid_id(const char *id) {
    const char *dot = strchr(id, '.');
    if (!dot || dot == id || !dot[1] || strchr(dot + 1, '.'))
        return 0;
    for (const char *p = id; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_' || *p == '.'))
            return 0;
    return 1;
}

kvfp8_status kvfp8_conform_list_load(kvfp8_conform_list *l, const char *path, int mustpass) {
    FILE *f = fopen(path, "r");
    if (!f)
        return kvfp8_fail(KVFP8_ERR_IO, "%s: %s", path, strerror(errno));
    char buf[512];
    int line = 0;
    kvfp8_status st = KVFP8_OK;
    while (st == KVFP8_OK && fgets(buf, sizeof buf, f)) {
        line++;
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        char *id = trim(buf);
        if (!*id)
            continue;
        if (!valid_id(id)) {
            st = kvfp8_fail(KVFP8_ERR_FORMAT, "%s:%d: '%s' is not a test id (suite.test, lowercase)", path, line, id);
            break;
        }
        for (size_t i = 0; i < l->n; i++)
            if (!strcmp(l->items[i].id, id)) {
                st = kvfp8_fail(KVFP8_ERR_FORMAT, "%s:%d: %s is listed twice", path, line, id);
                break;
            }
        if (st != KVFP8_OK)
            break;
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 64;
            kvfp8_conform_entry *items = realloc(l->items, cap * sizeof *items);
            if (!items) {
                st = kvfp8_fail(KVFP8_ERR_NOMEM, "test list");
                break;
            }
            l->items = items, l->cap = cap;
        }
        l->items[l->n].id = strdup(id);
        l->items[l->n].mustpass = mustpass;
        if (!l->items[l->n].id) {
            st = kvfp8_fail(KVFP8_ERR_NOMEM, "test list");
            break;
        }
        l->n++;
    }
    fclose(f);
    return st;
}

void kvfp8_conform_list_free(kvfp8_conform_list *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].id);
    free(l->items);
    memset(l, 0, sizeof *l);
}

int kvfp8_conform_glob(const char *pattern, const char *id) { return fnmatch(pattern, id, 0) == 0; }

kvfp8_status kvfp8_conform_shard_parse(const char *text, int *k, int *n) {
    char *end;
    errno = 0;
    long a = strtol(text, &end, 10);
    if (end == text || *end != '/' || errno)
        return kvfp8_fail(KVFP8_ERR_INVALID, "--shard '%s': expected K/N, e.g. 2/4", text);
    const char *rest = end + 1;
    long b = strtol(rest, &end, 10);
    if (end == rest || *end || errno || b < 1 || a < 1 || a > b || b > 1000000)
        return kvfp8_fail(KVFP8_ERR_INVALID, "--shard '%s': expected K/N with 1 <= K <= N", text);
    *k = (int)a, *n = (int)b;
    return KVFP8_OK;
}

void kvfp8_conform_list_select(kvfp8_conform_list *l, const char *const *globs, size_t n_globs, int k, int n) {
    size_t kept = 0, position = 0;
    for (size_t i = 0; i < l->n; i++) {
        int match = n_globs == 0;
        for (size_t g = 0; g < n_globs && !match; g++)
            match = kvfp8_conform_glob(globs[g], l->items[i].id);
        /* round robin over the filtered list: shards stay balanced across suites */
        if (match && (int)(position++ % (size_t)n) == k - 1)
            l->items[kept++] = l->items[i];
        else
            free(l->items[i].id);
    }
    l->n = kept;
}

/* ---- waivers ------------------------------------------------------------------------------ */

kvfp8_status kvfp8_conform_waivers_load(kvfp8_conform_waivers *w, const char *path) {
    memset(w, 0, sizeof *w);
    FILE *f = fopen(path, "r");
    if (!f)
        return kvfp8_fail(KVFP8_ERR_IO, "waiver file %s: %s", path, strerror(errno));
    char buf[1024];
    int line = 0;
    kvfp8_status st = KVFP8_OK;
    while (fgets(buf, sizeof buf, f)) {
        line++;
        char *s = trim(buf);
        if (!*s || *s == '#')
            continue;
        char *sp = s;
        while (*sp && !isspace((unsigned char)*sp))
            sp++;
        char *reason = *sp ? trim(sp + 1) : sp;
        *sp = '\0';
        if (!*reason) {
            st = kvfp8_fail(KVFP8_ERR_FORMAT, "%s:%d: the waiver of '%s' gives no reason (each line: TEST-ID REASON)",
                            path, line, s);
            break;
        }
        kvfp8_conform_waiver *items = realloc(w->items, (w->n + 1) * sizeof *items);
        if (!items) {
            st = kvfp8_fail(KVFP8_ERR_NOMEM, "waivers");
            break;
        }
        w->items = items;
        w->items[w->n].pattern = strdup(s);
        w->items[w->n].reason = strdup(reason);
        w->items[w->n].line = line;
        w->n++;
    }
    fclose(f);
    if (st != KVFP8_OK)
        kvfp8_conform_waivers_free(w);
    return st;
}

const kvfp8_conform_waiver *kvfp8_conform_waiver_for(const kvfp8_conform_waivers *w, const char *id) {
    for (size_t i = 0; w && i < w->n; i++)
        if (kvfp8_conform_glob(w->items[i].pattern, id))
            return &w->items[i];
    return NULL;
}

void kvfp8_conform_waivers_free(kvfp8_conform_waivers *w) {
    for (size_t i = 0; i < w->n; i++)
        free(w->items[i].pattern), free(w->items[i].reason);
    free(w->items);
    memset(w, 0, sizeof *w);
}
