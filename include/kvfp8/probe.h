/* kvfp8 — the two-request probe, the seed guide's 2x2 isolation matrix, and the
 * fault sweep.
 *
 * The probe is the operators' test: start the engine, send the same prompt twice
 * (the second is the first prefix-cache hit), record what happened.  Run isolated,
 * it runs in a fork()ed child under a watchdog, so a dying worker (vLLM #13147's
 * ValueError, an injected abort or SIGSEGV) or a hang is contained and recorded:
 * outcome, exit status or signal, the error text, which request.
 *
 * The matrix runs the probe four times, each in its own process — Test 1 neither
 * flag, Test 2 FP8 only, Test 3 prefix caching only, Test 4 both — and classifies:
 *   clean           every test serves both requests
 *   interaction     Test 4 fails, Tests 2 and 3 pass (the combination: #13147)
 *   dtype-specific  Test 2 fails, Test 3 passes (FP8 alone: look at FP8 support)
 *   prefix-specific Test 3 fails, Test 2 passes (prefix caching alone)
 *   independent     Tests 2 and 3 both fail (each feature fails on its own)
 *   baseline        Test 1 fails (the stack fails without either feature)
 *
 * The sweep (SQLite style) injects every action at every site on each call of a
 * small workload, each run isolated, and classifies each run against a fault-free
 * run: a clean error, a crash or hang that was contained, a corruption a detector
 * reported, a correct result — or silently wrong output, which must never happen.
 * Docs: docs/faults.md. */
#ifndef KVFP8_PROBE_H
#define KVFP8_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/engine.h"
#include "kvfp8/faults.h"
#include "kvfp8/platform.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KVFP8_OUTCOME_OK = 0,      /* every request served */
    KVFP8_OUTCOME_CRASH = 1,   /* the worker died (a signal; in process: a crash the platform declared) */
    KVFP8_OUTCOME_ERROR = 2,   /* startup or a request failed with an error, the worker lives */
    KVFP8_OUTCOME_TIMEOUT = 3  /* the watchdog killed a run that did not finish */
} kvfp8_outcome;
const char *kvfp8_outcome_name(kvfp8_outcome o); /* "ok", "crash", "error", "timeout" */

#define KVFP8_PROBE_MAX_REQUESTS 4
#define KVFP8_PROBE_MAX_TOKENS 64

typedef struct {
    const kvfp8_model *model;        /* borrowed; required */
    const kvfp8_platform *platform;  /* NULL: the reference engine, no capability model */
    const char *kv_cache_dtype;      /* "auto", "fp8", "fp8_e4m3", "fp8_e5m2" */
    int enable_prefix_caching;
    int max_chunk_tokens;            /* chunked prefill (0: one chunk) */
    int fp8_fnuz;                    /* without a platform: store fp8 as E4M3FNUZ */
    int n_requests;                  /* identical requests (default 2: the seed's test) */
    int max_tokens;                  /* per request (default 4, at most 64) */
    const int64_t *prompt;           /* NULL: the seed guide's prompt */
    int n_prompt;
    int block_size, num_blocks;      /* 0: the engine's defaults */
    unsigned detectors;              /* 0: KVFP8_DETECT_ALL */
    const float *k_scales, *v_scales;/* scales as from a checkpoint ([layers][scale_count]) */
    int scale_count;
    const char *scales_source;
    int calculate_kv_scales;
    const char *faults;              /* a KVFP8_FAULTS spec armed for the run (NULL: none) */
    double timeout_s;                /* isolated runs: the watchdog (default 60 s) */
    int capture_log;                 /* keep the engine log in the result */
} kvfp8_probe_config;

void kvfp8_probe_default_config(kvfp8_probe_config *c);

typedef struct {
    uint32_t prompt_tokens, hit_tokens, computed_tokens;
    double ttft_ms, total_ms;
    char first_site[24];
    int n_output;
    int64_t output[KVFP8_PROBE_MAX_TOKENS];
} kvfp8_probe_request;

typedef struct {
    kvfp8_outcome outcome;
    int failed_request;          /* 1-based; 0: startup; -1: none */
    int detected;                /* the failure is a detector's report ("corruption detected: ...") */
    int isolated;
    int exit_status;             /* isolated: the child's exit status, -1 when a signal ended it */
    int signal;                  /* the signal that ended the child (crash, or SIGKILL on timeout) */
    char site[32];               /* where it failed, when known */
    char error_type[32];         /* e.g. "ValueError" when the platform names it */
    char error[512];
    int n_done;                  /* requests served */
    kvfp8_probe_request req[KVFP8_PROBE_MAX_REQUESTS];
    kvfp8_engine_metrics metrics;
    char cold_warm[16];          /* last request vs the first: identical, near-identical, divergent, n/a */
    int cold_warm_agree;         /* leading output tokens that agree */
    uint64_t faults_fired;
    uint64_t software_conversions;
    double wall_ms;
    char *log;                   /* capture_log: the engine log, NUL-terminated */
    size_t log_len;
} kvfp8_probe_result;

/* In this process.  A crash the platform declares becomes outcome crash without
 * dying; an injected crash or hang fault would take this process with it (use the
 * isolated form).  The status is the probe's own (bad configuration, no memory);
 * the run's result is in *r either way. */
kvfp8_status kvfp8_probe_run(const kvfp8_probe_config *c, kvfp8_probe_result *r);
/* In a fork()ed child under a watchdog of c->timeout_s. */
kvfp8_status kvfp8_probe_run_isolated(const kvfp8_probe_config *c, kvfp8_probe_result *r);
/* n isolated probes, at most `parallel` children at a time; rs[i] is cs[i]'s. */
kvfp8_status kvfp8_probe_run_many(const kvfp8_probe_config *cs, size_t n, int parallel, kvfp8_probe_result *rs);
void kvfp8_probe_result_free(kvfp8_probe_result *r);

/* ---- the 2x2 matrix ----------------------------------------------------------------- */

typedef struct {
    int test;                    /* 1..4, the seed guide's numbering */
    const char *kv_cache_dtype;  /* "auto" or the FP8 dtype */
    int enable_prefix_caching;
    kvfp8_probe_result result;
} kvfp8_matrix_cell;

typedef struct {
    const kvfp8_platform *platform;
    kvfp8_matrix_cell cells[4];
    const char *classification;
    char explanation[320];
} kvfp8_matrix;

/* Runs the four tests, each isolated, from `base` (its dtype and prefix flag are
 * replaced per cell; fp8_dtype is the FP8 value of Tests 2 and 4, "fp8" by default). */
kvfp8_status kvfp8_matrix_run(const kvfp8_probe_config *base, const char *fp8_dtype, kvfp8_matrix *m);
/* failed[i]: test i+1 did not serve every request. */
const char *kvfp8_matrix_classify(const int failed[4], char *why, size_t cap);
void kvfp8_matrix_free(kvfp8_matrix *m);

/* ---- the sweep ------------------------------------------------------------------------ */

typedef enum {
    KVFP8_SWEEP_CORRECT = 0,    /* served, outputs equal the fault-free run */
    KVFP8_SWEEP_DETECTED = 1,   /* a detector reported the corruption, nothing wrong served */
    KVFP8_SWEEP_ERROR = 2,      /* a clean error */
    KVFP8_SWEEP_CRASH = 3,      /* an injected crash, contained */
    KVFP8_SWEEP_TIMEOUT = 4,    /* an injected hang, caught by the watchdog */
    KVFP8_SWEEP_SILENT = 5,     /* served wrong output and nothing said so: a failure */
    KVFP8_SWEEP_UNEXPECTED = 6  /* a crash or hang the action does not explain: a failure */
} kvfp8_sweep_class;
#define KVFP8_SWEEP_CLASS_COUNT 7
const char *kvfp8_sweep_class_name(kvfp8_sweep_class c);

typedef struct {
    int quick;                   /* fewer calls per site (sanitizer and coverage builds) */
    double timeout_s;            /* the watchdog of hang runs (0: 0.2 s); other runs get max(5 s, 100 x the fault-free run) */
    uint64_t seed;               /* of every random choice */
    void (*progress)(void *ctx, const char *line);
    void *progress_ctx;
} kvfp8_sweep_options;

typedef struct {
    int applicable;
    int runs;
    int counts[KVFP8_SWEEP_CLASS_COUNT];
    char example[200];           /* one error or detection text */
    char failure_spec[160];        /* the first run that failed, as a KVFP8_FAULTS spec to replay */
} kvfp8_sweep_cell;

#define KVFP8_SWEEP_MAX_SITES 16

typedef struct {
    size_t n_sites;
    const char *sites[KVFP8_SWEEP_MAX_SITES];
    uint64_t site_calls[KVFP8_SWEEP_MAX_SITES]; /* calls in the fault-free workload */
    kvfp8_sweep_cell cells[KVFP8_SWEEP_MAX_SITES][KVFP8_FAULT_ACTION_COUNT];
    int totals[KVFP8_SWEEP_CLASS_COUNT];
    int runs;
    int failures;                /* silent + unexpected */
    double wall_s, timeout_s;    /* timeout_s: the hang runs' watchdog */
    char workload[240];
} kvfp8_sweep_report;

kvfp8_status kvfp8_sweep_run(const kvfp8_sweep_options *o, kvfp8_sweep_report *r);

#ifdef __cplusplus
}
#endif
#endif
