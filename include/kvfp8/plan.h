/* kvfp8 — the safe-fallback policy and the seed guide's verification checklist.
 *
 * The plan chooses --kv-cache-dtype and --enable-prefix-caching for a platform and a
 * workload from the capability model (include/kvfp8/platform.h), never a choice the
 * profile rejects on some path:
 *   - where FP8 (E4M3) and prefix caching run together on every path, keep both
 *     (a path that converts in software is noted: slower, no crash);
 *   - else where every path reads E5M2 and none refuses fp8_e5m2, fp8_e5m2 keeps
 *     both (coarser values: 2 mantissa bits to E4M3's 3);
 *   - else the seed guide's fallback: memory-bound keeps FP8 and drops prefix
 *     caching; prefix-heavy keeps prefix caching in BF16 and drops FP8;
 *   - auto keeps both where possible, else is memory-bound when the tokens that must
 *     stay resident exceed what BF16 holds in the budget, prefix-heavy otherwise.
 * Each decision carries its reasons, the KV bytes per token (2 x layers x KV heads x
 * head size x element bytes), the capacity in tokens of the KV budget, the expected
 * prefix-cache effect, and the known issues that apply.
 *
 * The checklist (seed guide, "Troubleshooting and verification checklist") reads an
 * engine log — one kvfp8 wrote, or one a probe captured — and says pass, fail or
 * skip (not applicable to the configuration) for each item. */
#ifndef KVFP8_PLAN_H
#define KVFP8_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/platform.h"
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KVFP8_WORKLOAD_MEMORY_BOUND = 0,
    KVFP8_WORKLOAD_PREFIX_HEAVY = 1,
    KVFP8_WORKLOAD_AUTO = 2
} kvfp8_workload;
const char *kvfp8_workload_name(kvfp8_workload w); /* "memory-bound", "prefix-heavy", "auto" */
kvfp8_status kvfp8_workload_parse(const char *name, kvfp8_workload *out);

typedef struct {
    kvfp8_workload workload;
    int num_layers, num_kv_heads, head_size; /* default 32, 8, 128 (Llama-3.1-8B) */
    uint64_t kv_budget_bytes;                /* default 16 GiB */
    uint64_t needed_tokens;                  /* auto: tokens that must stay resident (0: not given) */
    uint64_t shared_prefix_tokens;           /* for the prefix-cache effect (default 8192, the seed's example) */
    int block_size;                          /* default 16 */
} kvfp8_plan_request;

void kvfp8_plan_default_request(kvfp8_plan_request *r);

#define KVFP8_PLAN_MAX_REASONS 16
#define KVFP8_PLAN_MAX_ISSUES 16

typedef struct {
    const char *kv_cache_dtype;
    int enable_prefix_caching;
    int feasible, software;
    int failing_path;            /* -1 startup, else a kvfp8_kernel_path; meaningful when !feasible */
    kvfp8_capability cap;
} kvfp8_plan_candidate;

typedef struct {
    const char *platform_id;
    kvfp8_workload workload;     /* as asked */
    kvfp8_workload resolved;     /* auto becomes memory-bound or prefix-heavy when both cannot be kept */
    const char *kv_cache_dtype;  /* "fp8", "fp8_e5m2" or "auto" */
    int enable_prefix_caching;
    int affected;                /* FP8 (E4M3) with prefix caching cannot run on this platform */
    int software;                /* a path of the choice converts FP8 in software */
    int n_reasons;
    char reasons[KVFP8_PLAN_MAX_REASONS][768];
    int n_issues;
    char issues[KVFP8_PLAN_MAX_ISSUES][40];
    uint64_t kv_bytes_per_token, bf16_bytes_per_token;
    uint64_t capacity_tokens, bf16_capacity_tokens, kv_budget_bytes;
    char prefix_effect[480];
    char flags[96];              /* the vllm serve flags of the choice */
    int n_candidates;
    kvfp8_plan_candidate candidates[6];
} kvfp8_plan;

/* db may be NULL (no issues cited). */
kvfp8_status kvfp8_plan_make(const kvfp8_platform *p, const kvfp8_issue_db *db, const kvfp8_plan_request *rq,
                             kvfp8_plan *out);

/* ---- the verification checklist ---------------------------------------------------- */

typedef enum { KVFP8_CHECK_PASS = 0, KVFP8_CHECK_FAIL = 1, KVFP8_CHECK_SKIP = 2 } kvfp8_check_state;
const char *kvfp8_check_state_name(kvfp8_check_state s); /* "pass", "FAIL", "skip" */

#define KVFP8_CHECKLIST_ITEMS 6

typedef struct {
    kvfp8_check_state state;
    const char *name;
    char detail[400];
} kvfp8_check;

typedef struct {
    kvfp8_check items[KVFP8_CHECKLIST_ITEMS];
    int n_pass, n_fail, n_skip;
    char kv_cache_dtype[24];     /* as echoed */
    int enable_prefix_caching;   /* as echoed (-1 unknown) */
} kvfp8_checklist;

/* expect_dtype (may be NULL): the dtype the run was meant to use; item 1 fails when
 * the log echoes another.  The items, in the seed's order:
 *   1 kv_cache_dtype echoed at startup
 *   2 calibrated scales loaded (or calculated) — skip without FP8
 *   3 KV pool smaller than BF16 at the same settings — skip without FP8
 *   4 two identical requests: the second hits the prefix cache and is faster — skip
 *     without prefix caching
 *   5 outputs identical or near-identical (first token equal)
 *   6 no dtype or scale errors (ERROR lines, "not supported", scale warnings) */
kvfp8_status kvfp8_checklist_from_log(const char *log, size_t len, const char *expect_dtype, kvfp8_checklist *out);

#ifdef __cplusplus
}
#endif
#endif
