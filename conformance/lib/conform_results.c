/* The conformance runner's JSONL results file: one header line per run (or resumed
 * run), one line per finished test, each fsynced as it is written, so a run killed at
 * any moment leaves every finished test on disk and --resume continues after them. */
#include "kvfp8/conform.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

json_t *kvfp8_conform_json_text(const char *s) {
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)p);
    char *clean = malloc(n + 1);
    if (!clean)
        return json_string("");
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        const unsigned char c = p[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (p[i + k] & 0xC0) == 0x80;
        if (ok && len == 1 && c < 0x20 && c != '\n' && c != '\t')
            ok = 0;
        if (ok && len > 1) { /* no overlongs, no surrogates, nothing above U+10FFFF */
            unsigned cp = len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
            for (size_t k = 1; k < len; k++)
                cp = cp << 6 | (p[i + k] & 0x3Fu);
            ok = (len == 2 && cp >= 0x80) || (len == 3 && cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) ||
                 (len == 4 && cp >= 0x10000 && cp <= 0x10FFFF);
        }
        if (!ok) {
            clean[o++] = '?';
            i++;
            continue;
        }
        memcpy(clean + o, p + i, len);
        o += len, i += len;
    }
    clean[o] = '\0';
    json_t *j = json_string(clean);
    free(clean);
    return j ? j : json_string("");
}

static const char *str_field(json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* Reads the existing file: records, header check, and the length of its intact
 * part (a torn last line is not part of it). */
static kvfp8_status read_existing(const char *path, json_t *header, json_t *records, long *good_len) {
    *good_len = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? KVFP8_OK : kvfp8_fail(KVFP8_ERR_IO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int number = 0, seen_header = 0;
    kvfp8_status st = KVFP8_OK;
    while ((len = getline(&line, &cap, f)) > 0) {
        number++;
        if (line[len - 1] != '\n')
            break; /* torn: the run died while writing it */
        json_error_t err;
        json_t *o = json_loadb(line, (size_t)len, 0, &err);
        if (!o) {
            /* only the last line may be damaged; anything before it means the file is not ours */
            if (fgetc(f) == EOF)
                break;
            st = kvfp8_fail(KVFP8_ERR_FORMAT, "%s:%d: not a JSON line (%s)", path, number, err.text);
            break;
        }
        const char *type = str_field(o, "type");
        if (!strcmp(type, "run")) {
            if (!seen_header) {
                static const char *const same[] = {"backend", "list", "selection"};
                for (size_t i = 0; i < sizeof same / sizeof same[0] && st == KVFP8_OK; i++)
                    if (strcmp(str_field(o, same[i]), str_field(header, same[i])))
                        st = kvfp8_fail(KVFP8_ERR_INVALID,
                                        "%s is the results of another run (%s '%s', this run has '%s'): resume with "
                                        "the same options, or start afresh without --resume",
                                        path, same[i], str_field(o, same[i]), str_field(header, same[i]));
            }
            seen_header = 1;
        } else if (!strcmp(type, "test")) {
            json_array_append(records, o);
        }
        json_decref(o);
        if (st != KVFP8_OK)
            break;
        *good_len = ftell(f);
    }
    free(line);
    fclose(f);
    return st;
}

kvfp8_status kvfp8_conform_results_open(kvfp8_conform_results *r, const char *path, json_t *header, int resume,
                                        json_t **records) {
    memset(r, 0, sizeof *r);
    *records = json_array();
    if (!*records)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "results");
    long good = 0;
    if (resume) {
        kvfp8_status st = read_existing(path, header, *records, &good);
        if (st != KVFP8_OK) {
            json_decref(*records);
            *records = NULL;
            return st;
        }
        if (good > 0 && truncate(path, good) != 0) {
            json_decref(*records);
            *records = NULL;
            return kvfp8_fail(KVFP8_ERR_IO, "%s: %s", path, strerror(errno));
        }
    }
    /* "e": close-on-exec, so no test child holds the results file open */
    r->f = fopen(path, resume && good > 0 ? "ae" : "we");
    if (!r->f) {
        json_decref(*records);
        *records = NULL;
        return kvfp8_fail(KVFP8_ERR_IO, "%s: %s", path, strerror(errno));
    }
    r->path = strdup(path);
    if (resume && good > 0)
        json_object_set_new(header, "resumed", json_true());
    return kvfp8_conform_results_append(r, header);
}

kvfp8_status kvfp8_conform_results_append(kvfp8_conform_results *r, json_t *record) {
    char *text = json_dumps(record, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "results line");
    const int ok = fputs(text, r->f) >= 0 && fputc('\n', r->f) != EOF && fflush(r->f) == 0 && fsync(fileno(r->f)) == 0;
    free(text);
    if (!ok)
        return kvfp8_fail(KVFP8_ERR_IO, "%s: %s", r->path, strerror(errno));
    return KVFP8_OK;
}

void kvfp8_conform_results_close(kvfp8_conform_results *r) {
    if (r->f)
        fclose(r->f);
    free(r->path);
    memset(r, 0, sizeof *r);
}

int kvfp8_conform_verdict(json_t *records, char *why, size_t cap) {
    size_t i, must = 0, must_ok = 0, optional_bad = 0, not_supported = 0;
    json_t *rec;
    json_array_foreach(records, i, rec) {
        const char *r = str_field(rec, "result");
        const int ok = !strcmp(r, "PASS") || !strcmp(r, "WAIVED");
        if (json_is_true(json_object_get(rec, "mustpass"))) {
            must++;
            must_ok += ok;
            not_supported += !strcmp(r, "NOT_SUPPORTED");
        } else if (!ok && strcmp(r, "NOT_SUPPORTED")) {
            optional_bad++;
        }
    }
    const int conformant = must_ok == must && optional_bad == 0;
    snprintf(why, cap, "%zu of %zu must-pass tests passed or waived%s%s; %zu optional tests failed, crashed or timed out",
             must_ok, must, not_supported ? " (NOT_SUPPORTED is not a pass: " : "",
             not_supported ? "the backend declines some must-pass tests)" : "", optional_bad);
    return conformant;
}
