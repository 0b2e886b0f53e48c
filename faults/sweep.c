/* The fault sweep (include/kvfp8/probe.h): every action at every site, on each call
 * of a small workload (SQLite's "fail the nth call" sweep, plus the persistent form
 * "every call from the first"), each run in its own process, each classified
 * against the fault-free run. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvfp8/probe.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *const class_names[KVFP8_SWEEP_CLASS_COUNT] = {"correct", "detected", "error", "crash",
                                                                 "timeout", "SILENT", "UNEXPECTED"};

const char *kvfp8_sweep_class_name(kvfp8_sweep_class c) {
    return (unsigned)c < KVFP8_SWEEP_CLASS_COUNT ? class_names[c] : "?";
}

static int same_outputs(const kvfp8_probe_result *a, const kvfp8_probe_result *b) {
    if (a->n_done != b->n_done)
        return 0;
    for (int i = 0; i < a->n_done; i++)
        if (a->req[i].n_output != b->req[i].n_output ||
            memcmp(a->req[i].output, b->req[i].output, sizeof(int64_t) * (size_t)a->req[i].n_output))
            return 0;
    return 1;
}

static kvfp8_sweep_class classify(kvfp8_fault_action a, const kvfp8_probe_result *r, const kvfp8_probe_result *golden) {
    switch (r->outcome) {
    case KVFP8_OUTCOME_CRASH:
        return a == KVFP8_FAULT_CRASH_ABORT || a == KVFP8_FAULT_CRASH_SEGV ? KVFP8_SWEEP_CRASH : KVFP8_SWEEP_UNEXPECTED;
    case KVFP8_OUTCOME_TIMEOUT:
        return a == KVFP8_FAULT_HANG ? KVFP8_SWEEP_TIMEOUT : KVFP8_SWEEP_UNEXPECTED;
    case KVFP8_OUTCOME_ERROR:
        return r->detected ? KVFP8_SWEEP_DETECTED : KVFP8_SWEEP_ERROR;
    case KVFP8_OUTCOME_OK:
        break;
    }
    return same_outputs(r, golden) ? KVFP8_SWEEP_CORRECT : KVFP8_SWEEP_SILENT;
}

static void progress(const kvfp8_sweep_options *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void progress(const kvfp8_sweep_options *o, const char *fmt, ...) {
    if (!o->progress)
        return;
    char line[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->progress(o->progress_ctx, line);
}

/* The calls of the workload worth failing: all of them (up to 24, then the last),
 * or in quick mode the first and the last. */
static int pick_calls(uint64_t calls, int quick, kvfp8_fault_action a, uint64_t *out) {
    int n = 0;
    if (calls == 0)
        return 0;
    if (a == KVFP8_FAULT_HANG) { /* each costs the watchdog's timeout */
        out[n++] = 1;
        return n;
    }
    const uint64_t first = quick ? 1 : 24;
    for (uint64_t k = 1; k <= calls && k <= first; k++)
        out[n++] = k;
    if (calls > first)
        out[n++] = calls;
    return n;
}

typedef struct {
    size_t site;
    int action, fnuz;
    char spec[128];
} run_plan;

typedef struct {
    kvfp8_probe_config cfg;
    kvfp8_probe_result golden;
    uint64_t calls[KVFP8_SWEEP_MAX_SITES];
} workload;

static kvfp8_status prepare(workload *w, const kvfp8_probe_config *base, const char *label) {
    w->cfg = *base;
    kvfp8_faults_count_calls(1);
    kvfp8_status st = kvfp8_probe_run(&w->cfg, &w->golden);
    for (size_t s = 0; s < kvfp8_fault_site_count() && s < KVFP8_SWEEP_MAX_SITES; s++)
        w->calls[s] = kvfp8_faults_site_calls(kvfp8_fault_site_at(s)->name);
    kvfp8_faults_count_calls(0);
    if (st != KVFP8_OK)
        return st;
    if (w->golden.outcome != KVFP8_OUTCOME_OK)
        return kvfp8_fail(KVFP8_ERR_STATE, "sweep: the fault-free %s run failed: %s", label, w->golden.error);
    return KVFP8_OK;
}

kvfp8_status kvfp8_sweep_run(const kvfp8_sweep_options *o, kvfp8_sweep_report *r) {
    memset(r, 0, sizeof *r);
    size_t n_runs = 0;
    run_plan *plan = NULL;
    kvfp8_probe_config *cfgs = NULL;
    kvfp8_probe_result *res = NULL;
    /* KVFP8_FAULTS does not reach the sweep: it arms its own faults, one per run */
    (void)kvfp8_faults_arm_from_env();
    kvfp8_faults_disarm();
    /* A small model: the sweep is about where faults go, not about the model. */
    kvfp8_tiny_config mc;
    kvfp8_model_small_config(&mc);
    kvfp8_model *m = NULL;
    kvfp8_platform_set ps;
    memset(&ps, 0, sizeof ps);
    kvfp8_status st = kvfp8_model_create(&mc, &m);
    if (st != KVFP8_OK)
        return st;
    if ((st = kvfp8_platforms_builtin(&ps)) != KVFP8_OK)
        goto out;
    /* calibrated scales (random-token calibration, then used as loaded ones), so
     * that a scale lost on the way is a change a detector can see */
    float ks[64], vs[64];
    {
        kvfp8_engine_config ec;
        kvfp8_engine_default_config(&ec);
        ec.kv_cache_dtype = "fp8";
        ec.calculate_kv_scales = 1;
        ec.warmup_tokens = 64;
        kvfp8_engine *e;
        if ((st = kvfp8_engine_create(&ec, m, &e)) != KVFP8_OK)
            goto out;
        for (int l = 0; l < mc.num_layers; l++) {
            const float *k, *v;
            int n;
            kvfp8_engine_scales(e, l, &k, &v, &n);
            ks[l] = k[0], vs[l] = v[0];
        }
        kvfp8_engine_destroy(e);
    }
    int64_t prompt[14];
    for (int i = 0; i < 14; i++)
        prompt[i] = (i * 37 + 5) % mc.vocab_size;
    kvfp8_probe_config base;
    kvfp8_probe_default_config(&base);
    base.model = m;
    base.kv_cache_dtype = "fp8";
    base.enable_prefix_caching = 1;
    base.prompt = prompt;
    base.n_prompt = 14;
    base.max_tokens = 3;
    base.block_size = 4;
    base.num_blocks = 64;
    base.detectors = KVFP8_DETECT_ALL;
    base.k_scales = ks;
    base.v_scales = vs;
    base.scale_count = 1;
    base.scales_source = "sweep calibration";
    snprintf(r->workload, sizeof r->workload,
             "tiny model (%d layers, %d KV heads, head %d), fp8 (E4M3FN; E4M3FNUZ on the MI300 profile for "
             "fn-as-fnuz), prefix caching, block 4, the same 14-token prompt twice, 3 tokens each, every detector on",
             mc.num_layers, mc.num_kv_heads, mc.head_size);
    static workload fn, fnuz;
    if ((st = prepare(&fn, &base, "E4M3FN")) != KVFP8_OK)
        goto out;
    base.platform = kvfp8_platform_find(&ps, "mi300x-gfx942-rocm6.3-vllm0.7.2");
    if (!base.platform) {
        st = KVFP8_ERR_STATE;
        goto out;
    }
    if ((st = prepare(&fnuz, &base, "E4M3FNUZ")) != KVFP8_OK)
        goto out;
    /* A hang run always ends at the watchdog, so its watchdog is short; every other
     * run gets a generous one, so that a loaded machine does not turn a slow run
     * into a false "unexpected timeout". */
    r->timeout_s = o->timeout_s > 0 ? o->timeout_s : 0.2;
    const double slow_s = fn.golden.wall_ms / 10.0 > 5.0 ? fn.golden.wall_ms / 10.0 : 5.0;
    r->n_sites = kvfp8_fault_site_count() < KVFP8_SWEEP_MAX_SITES ? kvfp8_fault_site_count() : KVFP8_SWEEP_MAX_SITES;
    for (size_t s = 0; s < r->n_sites; s++) {
        r->sites[s] = kvfp8_fault_site_at(s)->name;
        r->site_calls[s] = fn.calls[s];
    }
    progress(o, "sweep: %zu sites x %d actions; fault-free run %.1f ms; watchdog %.2f s for hangs, %.1f s otherwise",
             r->n_sites, KVFP8_FAULT_ACTION_COUNT, fn.golden.wall_ms, r->timeout_s, slow_s);
    const double t0 = now_s();
    /* every run first, then run them: hangs all at once (they only wait for the
     * watchdog), the rest two at a time */
    size_t cap = 512;
    plan = malloc(sizeof *plan * cap);
    if (!plan) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "sweep: runs");
        goto out;
    }
    for (size_t s = 0; s < r->n_sites; s++) {
        const kvfp8_fault_site *site = kvfp8_fault_site_at(s);
        for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++) {
            kvfp8_sweep_cell *cell = &r->cells[s][a];
            cell->applicable = (site->actions & KVFP8_FAULT_BIT(a)) != 0;
            if (!cell->applicable)
                continue;
            const workload *w = a == KVFP8_FAULT_FN_AS_FNUZ ? &fnuz : &fn;
            uint64_t which[32];
            const int nw = pick_calls(w->calls[s], o->quick, (kvfp8_fault_action)a, which);
            /* the nth call alone, then (not for crashes and hangs, which end the run
             * anyway) every call from the first */
            const int persistent = a != KVFP8_FAULT_CRASH_ABORT && a != KVFP8_FAULT_CRASH_SEGV &&
                                   a != KVFP8_FAULT_HANG && w->calls[s] > 1;
            for (int k = 0; k < nw + persistent; k++) {
                if (n_runs == cap) {
                    run_plan *grown = realloc(plan, sizeof *plan * (cap *= 2));
                    if (!grown) {
                        st = kvfp8_fail(KVFP8_ERR_NOMEM, "sweep: runs");
                        goto out;
                    }
                    plan = grown;
                }
                run_plan *p = &plan[n_runs++];
                p->site = s;
                p->action = a;
                p->fnuz = w == &fnuz;
                if (k < nw)
                    snprintf(p->spec, sizeof p->spec, "seed=%llu; %s=%s@nth:%llu", (unsigned long long)o->seed,
                             site->name, kvfp8_fault_action_name((kvfp8_fault_action)a), (unsigned long long)which[k]);
                else
                    snprintf(p->spec, sizeof p->spec, "seed=%llu; %s=%s@every", (unsigned long long)o->seed,
                             site->name, kvfp8_fault_action_name((kvfp8_fault_action)a));
            }
        }
    }
    cfgs = calloc(n_runs ? n_runs : 1, sizeof *cfgs);
    res = calloc(n_runs ? n_runs : 1, sizeof *res);
    if (!cfgs || !res) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "sweep: runs");
        goto out;
    }
    /* hangs first, in one batch; then the others */
    size_t n_hang = 0;
    for (size_t i = 0; i < n_runs; i++)
        if (plan[i].action == KVFP8_FAULT_HANG) {
            run_plan t = plan[n_hang];
            plan[n_hang++] = plan[i];
            plan[i] = t;
        }
    for (size_t i = 0; i < n_runs; i++) {
        cfgs[i] = plan[i].fnuz ? fnuz.cfg : fn.cfg;
        cfgs[i].faults = plan[i].spec;
        cfgs[i].timeout_s = plan[i].action == KVFP8_FAULT_HANG ? r->timeout_s : slow_s;
    }
    progress(o, "sweep: %zu runs (%zu hangs at once, then two at a time)", n_runs, n_hang);
    if ((st = kvfp8_probe_run_many(cfgs, n_hang, (int)n_hang, res)) != KVFP8_OK ||
        (st = kvfp8_probe_run_many(cfgs + n_hang, n_runs - n_hang, 2, res + n_hang)) != KVFP8_OK)
        goto out;
    for (size_t i = 0; i < n_runs; i++) {
        const run_plan *p = &plan[i];
        kvfp8_sweep_cell *cell = &r->cells[p->site][p->action];
        const kvfp8_sweep_class cls =
            classify((kvfp8_fault_action)p->action, &res[i], p->fnuz ? &fnuz.golden : &fn.golden);
        cell->runs++;
        cell->counts[cls]++;
        r->totals[cls]++;
        r->runs++;
        if (!cell->example[0] && (cls == KVFP8_SWEEP_DETECTED || cls == KVFP8_SWEEP_ERROR))
            snprintf(cell->example, sizeof cell->example, "%.199s", res[i].error);
        if ((cls == KVFP8_SWEEP_SILENT || cls == KVFP8_SWEEP_UNEXPECTED) && !cell->failure_spec[0])
            snprintf(cell->failure_spec, sizeof cell->failure_spec, "%.110s%s", p->spec,
                     p->fnuz ? " (on mi300x-gfx942-rocm6.3-vllm0.7.2)" : "");
        if (cls == KVFP8_SWEEP_SILENT || cls == KVFP8_SWEEP_UNEXPECTED)
            r->failures++;
    }
    r->wall_s = now_s() - t0;
out:
    if (res)
        for (size_t i = 0; i < n_runs; i++)
            kvfp8_probe_result_free(&res[i]);
    free(res);
    free(cfgs);
    free(plan);
    kvfp8_probe_result_free(&fn.golden);
    kvfp8_probe_result_free(&fnuz.golden);
    kvfp8_platforms_free(&ps);
    kvfp8_model_destroy(m);
    return st;
}
