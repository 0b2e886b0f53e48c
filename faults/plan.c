/* The safe-fallback policy (include/kvfp8/plan.h): candidates in the workload's
 * order of preference, each checked against the capability model; the first that
 * runs on every path wins, and every candidate passed over leaves its reason. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kvfp8/plan.h"

static const char *const workload_names[] = {"memory-bound", "prefix-heavy", "auto"};

const char *kvfp8_workload_name(kvfp8_workload w) { return (unsigned)w < 3 ? workload_names[w] : "?"; }

kvfp8_status kvfp8_workload_parse(const char *name, kvfp8_workload *out) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, workload_names[i])) {
            *out = (kvfp8_workload)i;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID, "unknown workload '%s' (memory-bound, prefix-heavy, auto)", name);
}

void kvfp8_plan_default_request(kvfp8_plan_request *r) {
    memset(r, 0, sizeof *r);
    r->workload = KVFP8_WORKLOAD_AUTO;
    r->num_layers = 32; /* Llama-3.1-8B: 32 layers, 8 KV heads, head size 128 */
    r->num_kv_heads = 8;
    r->head_size = 128;
    r->kv_budget_bytes = 16ull << 30;
    r->shared_prefix_tokens = 8192; /* the seed guide's example system prompt */
    r->block_size = 16;
}

static void reason(kvfp8_plan *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void reason(kvfp8_plan *p, const char *fmt, ...) {
    if (p->n_reasons == KVFP8_PLAN_MAX_REASONS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->reasons[p->n_reasons++], sizeof p->reasons[0], fmt, ap);
    va_end(ap);
}

static void cite(kvfp8_plan *p, const char *id) {
    for (int i = 0; i < p->n_issues; i++)
        if (!strcmp(p->issues[i], id))
            return;
    if (p->n_issues < KVFP8_PLAN_MAX_ISSUES)
        snprintf(p->issues[p->n_issues++], sizeof p->issues[0], "%s", id);
}

static const char *dtype_label(const kvfp8_platform *pl, const char *d) {
    if (!strcmp(d, "auto"))
        return "auto (BF16)";
    if (!strcmp(d, "fp8_e5m2"))
        return pl->fp8_fnuz ? "fp8_e5m2 (E5M2FNUZ)" : "fp8_e5m2 (E5M2)";
    return pl->fp8_fnuz ? "fp8 (E4M3FNUZ)" : "fp8 (E4M3FN)";
}

static uint64_t capacity(uint64_t budget, uint64_t per_token, int block) {
    const uint64_t per_block = per_token * (uint64_t)block;
    return per_block ? budget / per_block * (uint64_t)block : 0;
}

static void gib(char *out, size_t cap, uint64_t bytes) {
    if (bytes >= (1ull << 30))
        snprintf(out, cap, "%.2f GiB", (double)bytes / (double)(1ull << 30));
    else
        snprintf(out, cap, "%.2f MiB", (double)bytes / (double)(1ull << 20));
}

/* Why a candidate cannot run, in one sentence. */
static void why_not(const kvfp8_platform *pl, const kvfp8_plan_candidate *c, char *out, size_t cap) {
    const char *d = dtype_label(pl, c->kv_cache_dtype);
    const char *with = c->enable_prefix_caching ? " with prefix caching" : " without prefix caching";
    if (c->failing_path < 0) {
        snprintf(out, cap, "%s%s: the stack refuses it at startup: '%s'", d, with, c->cap.message);
        return;
    }
    const kvfp8_path_caps *pc = &pl->paths[c->failing_path];
    const char *path = kvfp8_path_name((kvfp8_kernel_path)c->failing_path);
    char also[160] = "";
    if (c->cap.rejected && c->failing_path != KVFP8_PATH_PREFIX_PREFILL) {
        /* refused by dtype on one path although another would read the encoding:
         * the W7900's fp8_e5m2 (Triton reads E5M2, the decode path refuses it) */
        const char *enc;
        if (kvfp8_platform_storage_encoding(pl, c->kv_cache_dtype, KVFP8_DTYPE_BF16, &enc) == KVFP8_OK) {
            kvfp8_capability pp;
            kvfp8_platform_check(pl, KVFP8_PATH_PREFIX_PREFILL, c->kv_cache_dtype, enc, &pp);
            const kvfp8_path_caps *ppc = &pl->paths[KVFP8_PATH_PREFIX_PREFILL];
            int native = 0;
            for (int i = 0; i < ppc->n_native; i++)
                native |= !strcmp(ppc->native[i], enc);
            if (pp.ok && native)
                snprintf(also, sizeof also, ", although the prefix_prefill path reads %s natively", enc);
        }
    }
    const char *enc = "?";
    (void)kvfp8_platform_storage_encoding(pl, c->kv_cache_dtype, KVFP8_DTYPE_BF16, &enc);
    if (c->cap.rejected) {
        /* every path that refuses the dtype, not only the first the engine meets */
        char paths[96] = "";
        int n = 0;
        for (int k = 0; k < KVFP8_PATH_COUNT; k++)
            for (int r = 0; r < pl->paths[k].n_rejects; r++)
                if (!strcmp(pl->paths[k].rejects[r].kv_cache_dtype, c->kv_cache_dtype)) {
                    const size_t l = strlen(paths);
                    snprintf(paths + l, sizeof paths - l, "%s%s", n++ ? " and " : "",
                             kvfp8_path_name((kvfp8_kernel_path)k));
                }
        snprintf(out, cap, "%s%s: refused by the %s path%s: '%s'%s [%s]", d, with, n ? paths : path, n > 1 ? "s" : "",
                 c->cap.message, also, c->cap.source);
    } else
        snprintf(out, cap, "%s%s: the %s path (%s) can neither read %s natively nor convert it: %s%s%s'%s' [%s]", d,
                 with, path, pc->kernel, enc,
                 c->cap.failure == KVFP8_FAILURE_CRASH ? "the worker dies with " : "it fails with ",
                 c->cap.error_type, c->cap.error_type[0] ? " " : "", c->cap.message, c->cap.source);
}

kvfp8_status kvfp8_plan_make(const kvfp8_platform *pl, const kvfp8_issue_db *db, const kvfp8_plan_request *rq,
                             kvfp8_plan *p) {
    memset(p, 0, sizeof *p);
    if (rq->num_layers < 1 || rq->num_kv_heads < 1 || rq->head_size < 1 || rq->block_size < 1 ||
        rq->num_layers > 4096 || rq->num_kv_heads > 4096 || rq->head_size > 65536)
        return kvfp8_fail(KVFP8_ERR_INVALID, "plan: model shape %d layers, %d KV heads, head size %d, block %d is "
                          "out of range", rq->num_layers, rq->num_kv_heads, rq->head_size, rq->block_size);
    p->platform_id = pl->id;
    p->workload = rq->workload;
    p->kv_budget_bytes = rq->kv_budget_bytes;
    const uint64_t elems = 2ull * (uint64_t)rq->num_layers * (uint64_t)rq->num_kv_heads * (uint64_t)rq->head_size;
    p->bf16_bytes_per_token = elems * 2;
    p->bf16_capacity_tokens = capacity(rq->kv_budget_bytes, p->bf16_bytes_per_token, rq->block_size);

    /* every candidate, checked once */
    static const struct {
        const char *dtype;
        int prefix;
    } all[6] = {{"fp8", 1}, {"fp8_e5m2", 1}, {"fp8", 0}, {"fp8_e5m2", 0}, {"auto", 1}, {"auto", 0}};
    for (int i = 0; i < 6; i++) {
        kvfp8_plan_candidate *c = &p->candidates[i];
        c->kv_cache_dtype = all[i].dtype;
        c->enable_prefix_caching = all[i].prefix;
        c->failing_path = -2;
        kvfp8_platform_check_config(pl, c->kv_cache_dtype, c->enable_prefix_caching, 0, KVFP8_DTYPE_BF16, &c->cap,
                                    &c->failing_path);
        c->feasible = c->cap.ok;
        c->software = c->cap.ok && c->cap.software;
    }
    p->n_candidates = 6;
    const kvfp8_plan_candidate *both_e4m3 = &p->candidates[0], *both_e5m2 = &p->candidates[1];
    p->affected = !both_e4m3->feasible;

    /* auto: both features where possible, else by whether BF16 holds what is needed */
    p->resolved = rq->workload;
    if (rq->workload == KVFP8_WORKLOAD_AUTO) {
        if (both_e4m3->feasible || both_e5m2->feasible)
            p->resolved = KVFP8_WORKLOAD_AUTO;
        else if (rq->needed_tokens > p->bf16_capacity_tokens)
            p->resolved = KVFP8_WORKLOAD_MEMORY_BOUND;
        else
            p->resolved = KVFP8_WORKLOAD_PREFIX_HEAVY;
    }
    static const int memory_order[6] = {0, 1, 2, 3, 4, 5}, prefix_order[6] = {0, 1, 4, 2, 3, 5};
    const int *order = p->resolved == KVFP8_WORKLOAD_PREFIX_HEAVY ? prefix_order : memory_order;
    const kvfp8_plan_candidate *chosen = NULL;
    reason(p, "platform %s: %s (%s profile)", pl->id, pl->summary, pl->status);
    for (int k = 0; k < 6 && !chosen; k++) {
        const kvfp8_plan_candidate *c = &p->candidates[order[k]];
        if (c->feasible) {
            chosen = c;
            break;
        }
        char why[760];
        why_not(pl, c, why, sizeof why);
        reason(p, "%s", why);
    }
    if (!chosen)
        return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "plan: no configuration runs on %s, not even BF16 without prefix "
                          "caching", pl->id);
    p->kv_cache_dtype = chosen->kv_cache_dtype;
    p->enable_prefix_caching = chosen->enable_prefix_caching;
    p->software = chosen->software;
    const int fp8 = strcmp(chosen->kv_cache_dtype, "auto") != 0;
    p->kv_bytes_per_token = fp8 ? elems : elems * 2;
    p->capacity_tokens = capacity(rq->kv_budget_bytes, p->kv_bytes_per_token, rq->block_size);
    snprintf(p->flags, sizeof p->flags, "%s%s", fp8 ? (strcmp(chosen->kv_cache_dtype, "fp8") ? "--kv-cache-dtype fp8_e5m2" : "--kv-cache-dtype fp8") : "",
             chosen->enable_prefix_caching ? (fp8 ? " --enable-prefix-caching" : "--enable-prefix-caching") : "");

    /* the rule that decided */
    const char *wl = kvfp8_workload_name(rq->workload);
    if (chosen == both_e4m3) {
        reason(p, "%s: %s with prefix caching runs on every path of this platform: keep both%s", wl,
               dtype_label(pl, "fp8"),
               chosen->software ? " (a path converts FP8 in software: slower than native, no crash)" : "");
    } else if (chosen == both_e5m2) {
        reason(p, "%s: fp8_e5m2 keeps both features: every path reads E5M2 here and none refuses it; E5M2 has 2 "
                  "mantissa bits to E4M3's 3 (coarser values), and vLLM refuses fp8_e5m2 with fp8 checkpoints "
                  "('fp8_e5m2 kv-cache is not supported with fp8 checkpoints'): calibrate with calculate_kv_scales "
                  "or run unscaled", wl);
    } else if (p->resolved == KVFP8_WORKLOAD_MEMORY_BOUND && fp8) {
        reason(p, "%s: FP8 halves the KV bytes per token, so keep %s and drop prefix caching (the seed guide's "
                  "fallback on an affected stack)%s", wl, dtype_label(pl, chosen->kv_cache_dtype),
               rq->workload == KVFP8_WORKLOAD_AUTO ? "; auto chose memory-bound: the needed tokens exceed what BF16 "
                                                     "holds in the budget" : "");
    } else if (chosen->enable_prefix_caching && !fp8) {
        reason(p, "%s: keep prefix caching in BF16 and drop FP8 (the seed guide's fallback on an affected stack): "
                  "reusing cached prefixes is worth more than FP8's capacity%s", wl,
               rq->workload == KVFP8_WORKLOAD_AUTO ? "; auto chose prefix-heavy: BF16 holds the needed tokens (or none "
                                                     "were given: --tokens N)" : "");
    } else {
        reason(p, "%s: %s%s is the first configuration in the workload's order that runs on every path", wl,
               dtype_label(pl, chosen->kv_cache_dtype), chosen->enable_prefix_caching ? " with prefix caching" : "");
    }
    char b1[32], b2[32];
    gib(b1, sizeof b1, rq->kv_budget_bytes);
    reason(p, "KV bytes per token: 2 x %d layers x %d KV heads x %d x %d byte%s = %llu (BF16: %llu); a %s KV budget "
              "holds %llu tokens (BF16: %llu)", rq->num_layers, rq->num_kv_heads, rq->head_size, fp8 ? 1 : 2,
           fp8 ? "" : "s", (unsigned long long)p->kv_bytes_per_token, (unsigned long long)p->bf16_bytes_per_token, b1,
           (unsigned long long)p->capacity_tokens, (unsigned long long)p->bf16_capacity_tokens);

    const uint64_t P = rq->shared_prefix_tokens, bs = (uint64_t)rq->block_size;
    if (chosen->enable_prefix_caching) {
        const uint64_t reused = P ? (P - 1) / bs * bs : 0;
        gib(b2, sizeof b2, reused * p->kv_bytes_per_token);
        snprintf(p->prefix_effect, sizeof p->prefix_effect,
                 "prefix caching on: a shared prefix of %llu tokens is prefilled once; each later request reuses "
                 "%llu of them (whole blocks of %d, the last token always recomputed) and starts sooner (lower TTFT); "
                 "the cached prefix holds %s of the pool (%.2f%% of the budget)%s",
                 (unsigned long long)P, (unsigned long long)reused, rq->block_size, b2,
                 rq->kv_budget_bytes ? 100.0 * (double)(reused * p->kv_bytes_per_token) / (double)rq->kv_budget_bytes
                                     : 0.0,
                 fp8 ? ", half what BF16 would take" : "");
    } else {
        snprintf(p->prefix_effect, sizeof p->prefix_effect,
                 "prefix caching off: every request prefills its whole prompt, the shared %llu-token prefix included; "
                 "no hits, no TTFT gain from repetition", (unsigned long long)P);
    }

    /* the issues that apply: to what was wanted (FP8 with prefix caching), and to the choice */
    if (db) {
        const char *wanted[2][2] = {{"fp8", "1"}, {chosen->kv_cache_dtype, chosen->enable_prefix_caching ? "1" : "0"}};
        for (int w = 0; w < 2; w++) {
            kvfp8_issue_query q = {pl, wanted[w][0], wanted[w][1][0] == '1', 0, 0};
            for (size_t i = 0; i < db->count; i++) {
                const kvfp8_known_issue *it = &db->items[i];
                if (!kvfp8_issue_matches(it, &q))
                    continue;
                /* for the wanted configuration, only what explains why it was not chosen */
                if (w == 0 && (chosen == both_e4m3 || strcmp(it->scope, "stack")))
                    continue;
                cite(p, it->id);
            }
        }
    }
    return KVFP8_OK;
}
