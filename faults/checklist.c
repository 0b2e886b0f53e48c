/* The seed guide's verification checklist, read from an engine log
 * (include/kvfp8/plan.h).  The log lines are the ones ref/engine.c writes in vLLM's
 * words, so the same reading would apply to a vLLM log with the same lines. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/plan.h"

static const char *const state_names[] = {"pass", "FAIL", "skip"};

const char *kvfp8_check_state_name(kvfp8_check_state s) { return (unsigned)s < 3 ? state_names[s] : "?"; }

#define MAX_REQ 64

typedef struct {
    char id[32];
    unsigned prompt, hit;
    double ttft;
    int has_output;
    int n_out;
    long long out[64];
} req_line;

static void set(kvfp8_check *c, kvfp8_check_state st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void set(kvfp8_check *c, kvfp8_check_state st, const char *fmt, ...) {
    c->state = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof c->detail, fmt, ap);
    va_end(ap);
}

/* Copies the value after `key` up to a comma or the end of the line. */
static int field(const char *line, const char *key, char *out, size_t cap) {
    const char *p = strstr(line, key);
    if (!p)
        return 0;
    p += strlen(key);
    size_t n = strcspn(p, ",\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = 0;
    return 1;
}

static req_line *find_req(req_line *reqs, int *n, const char *id) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(reqs[i].id, id))
            return &reqs[i];
    if (*n == MAX_REQ)
        return NULL;
    req_line *r = &reqs[(*n)++];
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
    return r;
}

kvfp8_status kvfp8_checklist_from_log(const char *log, size_t len, const char *expect_dtype, kvfp8_checklist *out) {
    memset(out, 0, sizeof *out);
    out->enable_prefix_caching = -1;
    static const char *const names[KVFP8_CHECKLIST_ITEMS] = {
        "kv_cache_dtype echoed at startup", "calibrated scales loaded", "KV pool smaller than BF16",
        "two-request test: prefix hit and faster", "outputs identical or near-identical", "no dtype or scale errors"};
    for (int i = 0; i < KVFP8_CHECKLIST_ITEMS; i++)
        out->items[i].name = names[i];
    char *text = malloc(len + 1);
    req_line *reqs = calloc(MAX_REQ, sizeof *reqs);
    if (!text || !reqs) {
        free(text), free(reqs);
        return kvfp8_fail(KVFP8_ERR_NOMEM, "checklist");
    }
    memcpy(text, log, len);
    text[len] = 0;
    int has_init = 0, block = 16, n_req = 0, scales_loaded = 0, scales_calculated = 0, scale_one = 0;
    double pool = -1, pool_bf16 = -1;
    char scale_line[160] = "", first_error[240] = "";
    int n_errors = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        char v[64];
        if (strstr(line, "Initializing") && field(line, "kv_cache_dtype=", out->kv_cache_dtype,
                                                  sizeof out->kv_cache_dtype)) {
            has_init = 1;
            if (field(line, "enable_prefix_caching=", v, sizeof v))
                out->enable_prefix_caching = !strcmp(v, "True");
            if (field(line, "block_size=", v, sizeof v))
                block = atoi(v) > 0 ? atoi(v) : 16;
        }
        if (strstr(line, "Loaded KV cache scales") && !scales_loaded++)
            snprintf(scale_line, sizeof scale_line, "%.150s", line);
        if (strstr(line, "Calculated KV scales") && !scales_calculated++ && !scale_line[0])
            snprintf(scale_line, sizeof scale_line, "%.150s", line);
        if (strstr(line, "Using KV cache scaling factor 1.0"))
            scale_one = 1;
        const char *pl = strstr(line, "KV cache pool:");
        if (pl) {
            const char *a = strstr(pl, " MiB; a bfloat16 cache at the same settings: ");
            if (a) {
                const char *b = a;
                while (b > pl && (b[-1] == '.' || (b[-1] >= '0' && b[-1] <= '9')))
                    b--;
                pool = atof(b);
                pool_bf16 = atof(a + strlen(" MiB; a bfloat16 cache at the same settings: "));
            }
        }
        char id[32];
        unsigned prompt, hit;
        double ttft;
        if (sscanf(line, "Request %31[^:]: %u prompt tokens, %u from the prefix cache, TTFT %lf ms", id, &prompt, &hit,
                   &ttft) == 4) {
            req_line *r = find_req(reqs, &n_req, id);
            if (r)
                r->prompt = prompt, r->hit = hit, r->ttft = ttft;
        }
        const char *ot = strstr(line, " output tokens:");
        if (!strncmp(line, "Request ", 8) && ot && (size_t)(ot - line - 8) < sizeof id) {
            memcpy(id, line + 8, (size_t)(ot - line - 8));
            id[ot - line - 8] = 0;
            req_line *r = find_req(reqs, &n_req, id);
            if (r) {
                r->has_output = 1;
                const char *p = ot + strlen(" output tokens:");
                char *end;
                while (r->n_out < 64) {
                    long long t = strtoll(p, &end, 10);
                    if (end == p)
                        break;
                    r->out[r->n_out++] = t;
                    p = end;
                }
            }
        }
        /* dtype or scale errors: what the seed's grep -iE "error|warn|scale|dtype" is after */
        if (strstr(line, "ERROR") || strstr(line, "not supported") || strstr(line, "Unsupported") ||
            strstr(line, "corruption detected") || strstr(line, "scaling factor 1.0") ||
            strstr(line, "FP8 KV saturation") || strstr(line, "worker died")) {
            if (!n_errors++)
                snprintf(first_error, sizeof first_error, "%.230s", line);
        }
    }
    const int fp8 = has_init && !strncmp(out->kv_cache_dtype, "fp8", 3);
    kvfp8_check *it = out->items;

    /* 1 */
    if (!has_init)
        set(&it[0], KVFP8_CHECK_FAIL, "no startup line with kv_cache_dtype= in the log");
    else if (expect_dtype && strcmp(expect_dtype, out->kv_cache_dtype))
        set(&it[0], KVFP8_CHECK_FAIL, "startup echoes kv_cache_dtype=%s, expected %s", out->kv_cache_dtype,
            expect_dtype);
    else
        set(&it[0], KVFP8_CHECK_PASS, "startup echoes kv_cache_dtype=%s%s", out->kv_cache_dtype,
            fp8 ? "" : " (no FP8: the configuration keeps the model dtype)");
    /* 2 */
    if (!fp8)
        set(&it[1], KVFP8_CHECK_SKIP, "no FP8 cache, no scales");
    else if (scale_one)
        set(&it[1], KVFP8_CHECK_FAIL, "FP8 runs with scale 1.0 (\"Using KV cache scaling factor 1.0\"): load "
                                      "calibrated scales (llm-compressor) or use calculate_kv_scales");
    else if (scales_loaded || scales_calculated)
        set(&it[1], KVFP8_CHECK_PASS, "%s", scale_line);
    else
        set(&it[1], KVFP8_CHECK_FAIL, "no line says which scales are in use");
    /* 3 */
    if (!fp8)
        set(&it[2], KVFP8_CHECK_SKIP, "no FP8 cache: BF16 is the baseline");
    else if (pool < 0)
        set(&it[2], KVFP8_CHECK_FAIL, "no \"KV cache pool\" line in the log");
    else if (pool < pool_bf16)
        set(&it[2], KVFP8_CHECK_PASS, "KV pool %.2f MiB < %.2f MiB in BF16 at the same settings", pool, pool_bf16);
    else
        set(&it[2], KVFP8_CHECK_FAIL, "KV pool %.2f MiB is not smaller than %.2f MiB in BF16", pool, pool_bf16);
    /* 4 and 5: the first two requests that were served with the same prompt length */
    int a = -1, b = -1;
    for (int i = 0; i + 1 < n_req && a < 0; i++)
        if (reqs[i].prompt && reqs[i + 1].prompt == reqs[i].prompt)
            a = i, b = i + 1;
    if (out->enable_prefix_caching == 0)
        set(&it[3], KVFP8_CHECK_SKIP, "prefix caching is off: no hit expected");
    else if (a < 0)
        set(&it[3], KVFP8_CHECK_FAIL, "no two identical requests were served (%d served)%s%s", n_req,
            first_error[0] ? ": " : "", first_error);
    else {
        const unsigned blocks = reqs[b].prompt / (unsigned)block, hit_blocks = reqs[b].hit / (unsigned)block;
        const int hit_ok = hit_blocks + 1 >= blocks && reqs[b].hit > 0, faster = reqs[b].ttft < reqs[a].ttft;
        set(&it[3], hit_ok && faster ? KVFP8_CHECK_PASS : KVFP8_CHECK_FAIL,
            "request %s hit %u of %u prompt tokens (%u of %u blocks, need >= %u)%s; TTFT %.2f -> %.2f ms%s",
            reqs[b].id, reqs[b].hit, reqs[b].prompt, hit_blocks, blocks, blocks ? blocks - 1 : 0,
            hit_ok ? "" : ": NO HIT", reqs[a].ttft, reqs[b].ttft, faster ? "" : ": NOT FASTER");
    }
    if (a < 0 || !reqs[a].has_output || !reqs[b].has_output)
        set(&it[4], KVFP8_CHECK_FAIL, "no two identical requests with their outputs in the log%s%s",
            first_error[0] ? ": " : "", first_error);
    else {
        int same = 0;
        while (same < reqs[a].n_out && same < reqs[b].n_out && reqs[a].out[same] == reqs[b].out[same])
            same++;
        const int identical = same == reqs[a].n_out && reqs[a].n_out == reqs[b].n_out;
        set(&it[4], same >= 1 ? KVFP8_CHECK_PASS : KVFP8_CHECK_FAIL, "%s: %d of %d tokens agree",
            identical ? "identical" : same >= 1 ? "near-identical (the first token agrees)" : "divergent", same,
            reqs[a].n_out);
    }
    /* 6 */
    if (n_errors)
        set(&it[5], KVFP8_CHECK_FAIL, "%d line%s, first: %s", n_errors, n_errors == 1 ? "" : "s", first_error);
    else
        set(&it[5], KVFP8_CHECK_PASS, "no ERROR, unsupported-dtype or scale warning lines");
    for (int i = 0; i < KVFP8_CHECKLIST_ITEMS; i++) {
        out->n_pass += it[i].state == KVFP8_CHECK_PASS;
        out->n_fail += it[i].state == KVFP8_CHECK_FAIL;
        out->n_skip += it[i].state == KVFP8_CHECK_SKIP;
    }
    free(text), free(reqs);
    return KVFP8_OK;
}
