/* kvfp8 faults, kvfp8 matrix, kvfp8 plan, kvfp8 verify: the fault layer and the
 * platform capability model from the command line (docs/faults.md).
 *
 * Every command validates its arguments and loads its data (the built-in platform
 * profiles and known issues, or --platform-file / --issues-file) before it writes
 * anything to standard output; results are buffered (cli/outbuf.c) and written once. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kvfp8/calibration.h"
#include "kvfp8/faults.h"
#include "kvfp8/plan.h"
#include "kvfp8/probe.h"
#include "kvfp8/scales.h"
#include "commands.h"
#include "outbuf.h"

static const char *const faults_help =
    "usage: kvfp8 faults list [--json]\n"
    "       kvfp8 faults parse SPEC\n"
    "       kvfp8 faults sweep [--quick] [--seed N] [--json]\n"
    "       kvfp8 faults platforms [--platform P] [--platform-file F] [--json]\n"
    "       kvfp8 faults issues [--issues-file F] [--json]\n"
    "\n"
    "  list       every fault site (hierarchical names at each backend call and I/O\n"
    "             boundary of the engine), the actions each supports, the triggers\n"
    "  parse      check a KVFP8_FAULTS spec and print it in canonical form, e.g.\n"
    "             'seed=7; attn/prefix_prefill=crash-abort@nth:1; cache/write=bitflip@p:0.05'\n"
    "  sweep      every action at every site on each call of a small workload, each run\n"
    "             in its own process; prints the summary table. Exit 1 if any run served\n"
    "             silently wrong output or crashed or hung unexpectedly\n"
    "  platforms  the platform capability profiles (ids, aliases; one in detail with --platform)\n"
    "  issues     the known-issues database\n"
    "\n"
    "Arm faults for any command with the environment: KVFP8_FAULTS='site=action[@trigger]; ...'\n"
    "(triggers: every, nth:N, after:N, p:P; seed=N drives every random choice).\n";

static const char *const matrix_help =
    "usage: kvfp8 matrix --platform P [--platform-file F] [--json] [--fp8-dtype D]\n"
    "                    [--chunked-prefill N] [--max-tokens N] [--timeout S] [--quick]\n"
    "\n"
    "The seed guide's 2x2 isolation matrix on a platform profile: Test 1 neither flag,\n"
    "Test 2 --kv-cache-dtype fp8 only, Test 3 --enable-prefix-caching only, Test 4 both.\n"
    "Each test runs the two-request probe (the seed's prompt twice: the second is the first\n"
    "prefix-cache hit) in its own process, so a dying worker is contained and recorded.\n"
    "Prints the table with the evidence (exit status or signal, error text, which request),\n"
    "the classification (clean, interaction, dtype-specific, prefix-specific, independent,\n"
    "baseline) and the known issues that apply.\n"
    "\n"
    "  --platform P          a profile id or alias (kvfp8 faults platforms)\n"
    "  --platform-file F     profiles from F instead of the built-in ones\n"
    "  --fp8-dtype D         the FP8 dtype of Tests 2 and 4 (default fp8)\n"
    "  --chunked-prefill N   prefill in chunks of N tokens (later chunks read the cache)\n"
    "  --max-tokens N        tokens per request (default 4)\n"
    "  --timeout S           watchdog per test in seconds (default 60)\n"
    "  --quick               a smaller model and prompt (tests)\n"
    "  --json                one JSON object\n"
    "\n"
    "Exit status: 0 clean, 1 any test failed, 2 bad input.\n";

static const char *const plan_help =
    "usage: kvfp8 plan --platform P --workload memory-bound|prefix-heavy|auto\n"
    "                  [--model LAYERS,KV_HEADS,HEAD_SIZE] [--kv-budget SIZE] [--tokens N]\n"
    "                  [--prefix-tokens N] [--platform-file F] [--issues-file F] [--json] [--verify]\n"
    "\n"
    "The safe configuration of --kv-cache-dtype and --enable-prefix-caching for a platform:\n"
    "both where every kernel path runs them (E4M3, else E5M2 where every path reads it and\n"
    "none refuses it); otherwise the seed guide's fallback: memory-bound keeps FP8 and drops\n"
    "prefix caching, prefix-heavy keeps prefix caching in BF16 and drops FP8; auto keeps both\n"
    "where possible, else is memory-bound when --tokens exceeds what BF16 holds in the budget.\n"
    "Never a choice the profile rejects on some path.\n"
    "\n"
    "  --model L,H,D      layers, KV heads, head size (default 32,8,128: Llama-3.1-8B)\n"
    "  --kv-budget SIZE   KV cache memory: bytes, or with KiB/MiB/GiB/TiB or KB/MB/GB/TB (default 16GiB)\n"
    "  --tokens N         tokens that must stay resident (auto's memory-bound test)\n"
    "  --prefix-tokens N  shared prefix length for the prefix-cache effect (default 8192)\n"
    "  --verify           run the choice through the two-request probe and the seed's\n"
    "                     checklist (calibrated with calculate_kv_scales); exit 1 if a check fails\n"
    "  --quick            --verify on a smaller model and prompt (tests)\n"
    "  --json             {\"platform\", \"workload\", \"kv_cache_dtype\", \"enable_prefix_caching\",\n"
    "                      \"reasons\", \"issues\", ...}\n";

static const char *const verify_help =
    "usage: kvfp8 verify --log FILE [--expect-dtype D] [--json]\n"
    "       kvfp8 verify --kv-cache-dtype D [--enable-prefix-caching] [--platform P]\n"
    "                    [--platform-file F] [--scales DIR | --no-scales] [--max-tokens N] [--json]\n"
    "\n"
    "The seed guide's verification checklist, each line pass, FAIL or skip (not applicable):\n"
    "  1 kv_cache_dtype echoed at startup      4 two identical requests: hit and faster\n"
    "  2 calibrated scales loaded              5 outputs identical or near-identical\n"
    "  3 KV pool smaller than BF16             6 no dtype or scale errors\n"
    "With --log, against a log kvfp8 run --log FILE wrote; otherwise against the engine: the\n"
    "two-request probe in its own process (on a platform profile with --platform), with scales\n"
    "from --scales DIR, none with --no-scales, or by default calculate_kv_scales.\n"
    "--quick runs the engine on a smaller model and prompt (tests).\n"
    "Exit status: 0 every check passed or was skipped, 1 a check failed, 2 bad input.\n";

static int want_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

static int parse_int(const char *cmd, const char *opt, const char *text, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    const long v = strtol(text, &end, 10);
    if (end == text || *end || errno || v < lo || v > hi)
        return kvfp8_cli_usage_error(cmd, "%s: '%s' is not an integer in %ld..%ld", opt, text, lo, hi);
    *out = v;
    return 0;
}

static int parse_double(const char *cmd, const char *opt, const char *text, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    const double v = strtod(text, &end);
    if (end == text || *end || errno || !(v >= lo && v <= hi))
        return kvfp8_cli_usage_error(cmd, "%s: '%s' is not a number in %g..%g", opt, text, lo, hi);
    *out = v;
    return 0;
}

/* 16GiB, 80GB, 1.5TiB, 123456 (bytes). */
static int parse_size(const char *cmd, const char *opt, const char *text, uint64_t *out) {
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1},     {"B", 1},      {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
                 {"TiB", 1099511627776.0}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}};
    char *end;
    errno = 0;
    const double v = strtod(text, &end);
    if (end != text && !errno && v > 0 && isfinite(v) && (text[0] >= '0' && text[0] <= '9'))
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (!strcmp(end, units[i].suffix)) {
                const double bytes = v * units[i].mult;
                if (bytes >= 1 && bytes < 1.0e18) {
                    *out = (uint64_t)bytes;
                    return 0;
                }
            }
    return kvfp8_cli_usage_error(cmd, "%s: '%s' is not a size (bytes, or a number with KiB, MiB, GiB, TiB, KB, MB, "
                                      "GB or TB), at least 1 byte", opt, text);
}

static int kv_dtype_ok(const char *d) {
    return !strcmp(d, "auto") || !strcmp(d, "fp8") || !strcmp(d, "fp8_e4m3") || !strcmp(d, "fp8_e5m2");
}

/* ---- shared data ------------------------------------------------------------------------ */

typedef struct {
    kvfp8_platform_set set;
    kvfp8_issue_db db;
    const kvfp8_platform *platform;
} data;

static int load_data(const char *cmd, const char *platform, const char *platform_file, const char *issues_file,
                     int need_platform, data *d) {
    memset(d, 0, sizeof *d);
    kvfp8_status st = platform_file ? kvfp8_platforms_load_file(platform_file, &d->set) : kvfp8_platforms_builtin(&d->set);
    if (st != KVFP8_OK)
        return kvfp8_cli_usage_error(cmd, "%s%s", platform_file ? "--platform-file: " : "", kvfp8_last_error());
    st = issues_file ? kvfp8_issues_load_file(issues_file, &d->db) : kvfp8_issues_builtin(&d->db);
    if (st != KVFP8_OK) {
        kvfp8_platforms_free(&d->set);
        return kvfp8_cli_usage_error(cmd, "%s%s", issues_file ? "--issues-file: " : "", kvfp8_last_error());
    }
    if (!platform && platform_file && d->set.count == 1)
        platform = d->set.items[0].id;
    if (platform) {
        d->platform = kvfp8_platform_find(&d->set, platform);
        if (!d->platform) {
            const int rc = kvfp8_cli_usage_error(cmd, "--platform: %s", kvfp8_last_error());
            kvfp8_platforms_free(&d->set);
            kvfp8_issues_free(&d->db);
            return rc;
        }
    } else if (need_platform) {
        kvfp8_platforms_free(&d->set);
        kvfp8_issues_free(&d->db);
        return kvfp8_cli_usage_error(cmd, "--platform is required (kvfp8 faults platforms lists them)");
    }
    return 0;
}

static void free_data(data *d) {
    kvfp8_platforms_free(&d->set);
    kvfp8_issues_free(&d->db);
}

static const kvfp8_known_issue *find_issue(const kvfp8_issue_db *db, const char *id) {
    for (size_t i = 0; i < db->count; i++)
        if (!strcmp(db->items[i].id, id))
            return &db->items[i];
    return NULL;
}

static void print_issue(kvfp8_outbuf *o, const kvfp8_issue_db *db, const char *id, const char *indent) {
    const kvfp8_known_issue *it = find_issue(db, id);
    if (!it)
        return;
    kvfp8_outbuf_printf(o, "%s%s (%s, category %s): %s\n%s  %s\n", indent, it->id, it->scope, it->category, it->title,
                        indent, it->url);
    kvfp8_outbuf_printf(o, "%s  symptom: %s\n", indent, it->symptom);
    for (int r = 0; r < it->n_remedies; r++)
        kvfp8_outbuf_printf(o, "%s  remedy: %s\n", indent, it->remedies[r]);
    kvfp8_outbuf_printf(o, "%s  detector: %s\n", indent, it->detector);
}

static int flush_json(kvfp8_outbuf *o, json_t *root) {
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!text) {
        kvfp8_outbuf_free(o);
        fprintf(stderr, "kvfp8: out of memory writing JSON\n");
        return KVFP8_EXIT_FAILED;
    }
    kvfp8_outbuf_printf(o, "%s\n", text);
    free(text);
    return 0;
}

/* ---- kvfp8 faults ----------------------------------------------------------------------- */

static int faults_list(int json, kvfp8_outbuf *o) {
    if (json) {
        json_t *root = json_object(), *sites = json_array(), *actions = json_array();
        for (size_t i = 0; i < kvfp8_fault_site_count(); i++) {
            const kvfp8_fault_site *s = kvfp8_fault_site_at(i);
            json_t *acts = json_array();
            for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++)
                if (s->actions & KVFP8_FAULT_BIT(a))
                    json_array_append_new(acts, json_string(kvfp8_fault_action_name((kvfp8_fault_action)a)));
            json_array_append_new(sites, json_pack("{s:s, s:s, s:s, s:o, s:s}", "name", s->name, "kind", s->kind,
                                                   "description", s->what, "actions", acts, "error_status",
                                                   kvfp8_status_name(s->error)));
        }
        for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++)
            json_array_append_new(actions, json_pack("{s:s, s:s}", "name", kvfp8_fault_action_name((kvfp8_fault_action)a),
                                                     "description",
                                                     kvfp8_fault_action_description((kvfp8_fault_action)a)));
        json_object_set_new(root, "sites", sites);
        json_object_set_new(root, "actions", actions);
        json_object_set_new(root, "triggers", json_pack("[s, s, s, s]", "every", "nth:N", "after:N", "p:P"));
        return flush_json(o, root);
    }
    kvfp8_outbuf_printf(o, "%-20s %-13s %s\n", "site", "kind", "actions");
    for (size_t i = 0; i < kvfp8_fault_site_count(); i++) {
        const kvfp8_fault_site *s = kvfp8_fault_site_at(i);
        kvfp8_outbuf_printf(o, "%-20s %-13s", s->name, s->kind);
        for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++)
            if (s->actions & KVFP8_FAULT_BIT(a))
                kvfp8_outbuf_printf(o, " %s", kvfp8_fault_action_name((kvfp8_fault_action)a));
        kvfp8_outbuf_printf(o, "\n  %s; an injected error returns '%s'\n", s->what, kvfp8_status_name(s->error));
    }
    kvfp8_outbuf_printf(o, "\nactions:\n");
    for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++)
        kvfp8_outbuf_printf(o, "  %-12s %s\n", kvfp8_fault_action_name((kvfp8_fault_action)a),
                            kvfp8_fault_action_description((kvfp8_fault_action)a));
    kvfp8_outbuf_printf(o, "\ntriggers: every (the default), nth:N (the Nth matching call), after:N (every call after "
                           "the first N), p:P (each call with probability P, drawn from seed=N)\n"
                           "patterns: a site, a prefix ('attn', or 'attn/' followed by '*'), or '*'\n"
                           "example:  KVFP8_FAULTS='seed=7; attn/prefix_prefill=crash-abort@nth:1' kvfp8 run ...\n");
    return 0;
}

static void sweep_progress(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

static int faults_sweep(int quick, int json, uint64_t seed, kvfp8_outbuf *o) {
    kvfp8_sweep_options so;
    memset(&so, 0, sizeof so);
    so.quick = quick;
    so.seed = seed;
    so.progress = sweep_progress;
    static kvfp8_sweep_report r;
    if (kvfp8_sweep_run(&so, &r) != KVFP8_OK) {
        fprintf(stderr, "kvfp8 faults sweep: %s\n", kvfp8_last_error());
        return KVFP8_EXIT_FAILED;
    }
    if (json) {
        json_t *root = json_object(), *cells = json_array(), *totals = json_object();
        for (size_t s = 0; s < r.n_sites; s++)
            for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++) {
                const kvfp8_sweep_cell *c = &r.cells[s][a];
                if (!c->applicable)
                    continue;
                json_t *counts = json_object();
                for (int k = 0; k < KVFP8_SWEEP_CLASS_COUNT; k++)
                    json_object_set_new(counts, kvfp8_sweep_class_name((kvfp8_sweep_class)k), json_integer(c->counts[k]));
                json_array_append_new(cells, json_pack("{s:s, s:s, s:i, s:o, s:s, s:s?}", "site", r.sites[s], "action",
                                                       kvfp8_fault_action_name((kvfp8_fault_action)a), "runs", c->runs,
                                                       "outcomes", counts, "example", c->example, "failure_spec",
                                                       c->failure_spec[0] ? c->failure_spec : NULL));
            }
        for (int k = 0; k < KVFP8_SWEEP_CLASS_COUNT; k++)
            json_object_set_new(totals, kvfp8_sweep_class_name((kvfp8_sweep_class)k), json_integer(r.totals[k]));
        json_object_set_new(root, "workload", json_string(r.workload));
        json_object_set_new(root, "runs", json_integer(r.runs));
        json_object_set_new(root, "silent_wrong_output", json_integer(r.totals[KVFP8_SWEEP_SILENT]));
        json_object_set_new(root, "failures", json_integer(r.failures));
        json_object_set_new(root, "totals", totals);
        json_object_set_new(root, "cells", cells);
        json_object_set_new(root, "wall_s", json_real(r.wall_s));
        if (flush_json(o, root))
            return KVFP8_EXIT_FAILED;
        return r.failures ? KVFP8_EXIT_FAILED : 0;
    }
    kvfp8_outbuf_printf(o, "fault sweep: %s\n", r.workload);
    kvfp8_outbuf_printf(o, "each site x action on the calls of the workload (nth:N%s, and every call), each run in its "
                           "own process, against the fault-free run\n\n", quick ? ": the first and the last" : "");
    kvfp8_outbuf_printf(o, "| site | calls |");
    for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++)
        kvfp8_outbuf_printf(o, " %s |", kvfp8_fault_action_name((kvfp8_fault_action)a));
    kvfp8_outbuf_printf(o, "\n| --- | --- |");
    for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++)
        kvfp8_outbuf_printf(o, " --- |");
    kvfp8_outbuf_printf(o, "\n");
    static const char *const abbrev[KVFP8_SWEEP_CLASS_COUNT] = {"ok", "det", "err", "crash", "hang", "SILENT", "UNEXP"};
    for (size_t s = 0; s < r.n_sites; s++) {
        kvfp8_outbuf_printf(o, "| %s | %llu |", r.sites[s], (unsigned long long)r.site_calls[s]);
        for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++) {
            const kvfp8_sweep_cell *c = &r.cells[s][a];
            if (!c->applicable) {
                kvfp8_outbuf_printf(o, " - |");
                continue;
            }
            int first = 1;
            kvfp8_outbuf_printf(o, " ");
            for (int k = 0; k < KVFP8_SWEEP_CLASS_COUNT; k++)
                if (c->counts[k]) {
                    kvfp8_outbuf_printf(o, "%s%d %s", first ? "" : ", ", c->counts[k], abbrev[k]);
                    first = 0;
                }
            kvfp8_outbuf_printf(o, " |");
        }
        kvfp8_outbuf_printf(o, "\n");
    }
    kvfp8_outbuf_printf(o, "\n(ok: correct output; det: a detector reported the corruption and nothing wrong was "
                           "served; err: a clean error; crash / hang: an injected crash or hang, contained; SILENT: "
                           "wrong output nothing reported; UNEXP: a crash or hang the action does not explain)\n\n");
    kvfp8_outbuf_printf(o, "runs: %d; ", r.runs);
    for (int k = 0; k < KVFP8_SWEEP_CLASS_COUNT; k++)
        kvfp8_outbuf_printf(o, "%s%s %d", k ? ", " : "", kvfp8_sweep_class_name((kvfp8_sweep_class)k), r.totals[k]);
    kvfp8_outbuf_printf(o, "\nsilent wrong output: %d; unexpected crashes or hangs: %d; %.1f s\n",
                        r.totals[KVFP8_SWEEP_SILENT], r.totals[KVFP8_SWEEP_UNEXPECTED], r.wall_s);
    for (size_t s = 0; s < r.n_sites; s++)
        for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++)
            if (r.cells[s][a].failure_spec[0])
                kvfp8_outbuf_printf(o, "replay: KVFP8_FAULTS='%s'\n", r.cells[s][a].failure_spec);
    kvfp8_outbuf_printf(o, "sweep: %s\n", r.failures ? "FAIL" : "PASS (every fault ended in a clean error, a "
                                                                "contained crash or hang, a detected corruption or a "
                                                                "correct result)");
    return r.failures ? KVFP8_EXIT_FAILED : 0;
}

static json_t *strs_json(const char (*v)[12], int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *rejection_json(const kvfp8_rejection *r, int with_dtype) {
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "message", r->message, "failure", kvfp8_failure_name(r->failure),
                          "error_type", r->error_type, "source", r->source);
    if (o && with_dtype)
        json_object_set_new(o, "kv_cache_dtype", json_string(r->kv_cache_dtype));
    return o;
}

static json_t *platform_json(const kvfp8_platform *p) {
    json_t *paths = json_object(), *aliases = json_array(), *sources = json_array();
    for (int a = 0; a < p->n_aliases; a++)
        json_array_append_new(aliases, json_string(p->aliases[a]));
    for (int s = 0; s < p->n_sources; s++)
        json_array_append_new(sources, json_string(p->sources[s]));
    for (int i = 0; i < KVFP8_PATH_COUNT; i++) {
        const kvfp8_path_caps *c = &p->paths[i];
        json_t *rejects = json_array();
        for (int r = 0; r < c->n_rejects; r++)
            json_array_append_new(rejects, rejection_json(&c->rejects[r], 1));
        json_t *po = json_pack("{s:s, s:b, s:o, s:o, s:o, s:s}", "kernel", c->kernel, "reads_cache", c->reads_cache,
                               "native", strs_json(c->native, c->n_native), "software",
                               strs_json(c->software, c->n_software), "rejects", rejects, "source", c->source);
        if (po && c->has_unsupported)
            json_object_set_new(po, "unsupported", rejection_json(&c->unsupported, 0));
        json_object_set_new(paths, kvfp8_path_name((kvfp8_kernel_path)i), po);
    }
    return json_pack("{s:s, s:o, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s}, s:s, s:s, s:o, s:o}", "id", p->id,
                     "aliases", aliases, "status", p->status, "summary", p->summary, "vendor", p->vendor, "arch",
                     p->arch, "device", p->device, "runtime", p->runtime, "engine", "name", p->engine, "version",
                     p->engine_version, "generation", p->engine_generation, "fp8_means",
                     p->fp8_fnuz ? "e4m3fnuz" : "e4m3fn", "conversion_profile", kvfp8_profile_name(p->conversion),
                     "paths", paths, "sources", sources);
}

static void list_enc(kvfp8_outbuf *o, const char (*v)[12], int n) {
    if (!n)
        kvfp8_outbuf_printf(o, "-");
    for (int i = 0; i < n; i++)
        kvfp8_outbuf_printf(o, "%s%s", i ? " " : "", v[i]);
}

static int faults_platforms(const data *d, int json, kvfp8_outbuf *o) {
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < d->set.count; i++)
            if (!d->platform || d->platform == &d->set.items[i])
                json_array_append_new(arr, platform_json(&d->set.items[i]));
        return flush_json(o, json_pack("{s:o}", "profiles", arr));
    }
    for (size_t i = 0; i < d->set.count; i++) {
        const kvfp8_platform *p = &d->set.items[i];
        if (d->platform && d->platform != p)
            continue;
        kvfp8_outbuf_printf(o, "%s (%s)", p->id, p->status);
        for (int a = 0; a < p->n_aliases; a++)
            kvfp8_outbuf_printf(o, "%s%s", a ? ", " : "  aliases: ", p->aliases[a]);
        kvfp8_outbuf_printf(o, "\n  %s\n  fp8 means %s here\n", p->summary, p->fp8_fnuz ? "E4M3FNUZ" : "E4M3FN");
        if (!d->platform)
            continue;
        kvfp8_outbuf_printf(o, "  vendor %s, arch %s, %s; %s; %s %s (%s); cache write conversion profile %s\n",
                            p->vendor, p->arch, p->device, p->runtime, p->engine, p->engine_version,
                            p->engine_generation, kvfp8_profile_name(p->conversion));
        kvfp8_outbuf_printf(o, "  'fp8': %s\n", p->fp8_means_source);
        for (int r = 0; r < p->n_startup_rejects; r++)
            kvfp8_outbuf_printf(o, "  startup rejects %s: '%s'\n", p->startup_rejects[r].kv_cache_dtype,
                                p->startup_rejects[r].message);
        for (int k = 0; k < KVFP8_PATH_COUNT; k++) {
            const kvfp8_path_caps *c = &p->paths[k];
            kvfp8_outbuf_printf(o, "  %s: %s\n    native: ", kvfp8_path_name((kvfp8_kernel_path)k), c->kernel);
            list_enc(o, c->native, c->n_native);
            kvfp8_outbuf_printf(o, "; software: ");
            list_enc(o, c->software, c->n_software);
            kvfp8_outbuf_printf(o, "%s\n", c->reads_cache ? "" : "; reads only the new tokens' own K/V");
            for (int r = 0; r < c->n_rejects; r++)
                kvfp8_outbuf_printf(o, "    rejects %s (%s): '%s' [%s]\n", c->rejects[r].kv_cache_dtype,
                                    kvfp8_failure_name(c->rejects[r].failure), c->rejects[r].message,
                                    c->rejects[r].source);
            if (c->has_unsupported)
                kvfp8_outbuf_printf(o, "    anything else (%s%s%s): '%s'%s%s [%s]\n",
                                    kvfp8_failure_name(c->unsupported.failure), c->unsupported.error_type[0] ? ", " : "",
                                    c->unsupported.error_type, c->unsupported.message, c->unsupported.when[0] ? "; " : "",
                                    c->unsupported.when, c->unsupported.source);
            kvfp8_outbuf_printf(o, "    source: %s\n", c->source);
        }
        for (int s = 0; s < p->n_sources; s++)
            kvfp8_outbuf_printf(o, "  source: %s\n", p->sources[s]);
    }
    return 0;
}

static int faults_issues(const data *d, int json, kvfp8_outbuf *o) {
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < d->db.count; i++) {
            const kvfp8_known_issue *it = &d->db.items[i];
            json_t *rem = json_array();
            for (int r = 0; r < it->n_remedies; r++)
                json_array_append_new(rem, json_string(it->remedies[r]));
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s}", "id", it->id, "title",
                                                 it->title, "category", it->category, "scope", it->scope, "url",
                                                 it->url, "symptom", it->symptom, "cause", it->cause, "remedies", rem,
                                                 "detector", it->detector));
        }
        return flush_json(o, json_pack("{s:o}", "issues", arr));
    }
    for (size_t i = 0; i < d->db.count; i++)
        print_issue(o, &d->db, d->db.items[i].id, "");
    return 0;
}

int kvfp8_cmd_faults(int argc, char **argv) {
    const char *cmd = "faults";
    if (argc < 2 || want_help(argc, argv)) {
        fputs(faults_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? KVFP8_EXIT_USAGE : KVFP8_EXIT_OK;
    }
    const char *sub = argv[1];
    int json = 0, quick = 0, rc;
    uint64_t seed = 0;
    const char *platform = NULL, *platform_file = NULL, *issues_file = NULL, *spec = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const int has_value = i + 1 < argc;
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--quick") && !strcmp(sub, "sweep")) quick = 1;
        else if (!has_value && a[0] == '-' && a[1] == '-')
            return kvfp8_cli_usage_error(cmd, "option %s needs a value (or is unknown: kvfp8 faults --help)", a);
        else if (!strcmp(a, "--platform") && !strcmp(sub, "platforms")) platform = argv[++i];
        else if (!strcmp(a, "--platform-file") && !strcmp(sub, "platforms")) platform_file = argv[++i];
        else if (!strcmp(a, "--issues-file") && !strcmp(sub, "issues")) issues_file = argv[++i];
        else if (!strcmp(a, "--seed") && !strcmp(sub, "sweep")) {
            long v;
            if ((rc = parse_int(cmd, a, argv[++i], 0, 2147483647L, &v)))
                return rc;
            seed = (uint64_t)v;
        } else if (!strcmp(sub, "parse") && !spec && (a[0] != '-' || !a[1] || a[1] != '-'))
            spec = a;
        else
            return kvfp8_cli_usage_error(cmd, "unknown argument '%s' for 'faults %s' (kvfp8 faults --help)", a, sub);
    }
    kvfp8_outbuf o;
    kvfp8_outbuf_init(&o);
    int status = 0;
    if (!strcmp(sub, "list")) {
        status = faults_list(json, &o);
    } else if (!strcmp(sub, "parse")) {
        if (!spec)
            return kvfp8_cli_usage_error(cmd, "parse: give a spec, e.g. 'cache/write=bitflip@nth:3'");
        kvfp8_fault_plan p;
        if (kvfp8_fault_plan_parse(spec, strlen(spec), "spec", &p) != KVFP8_OK)
            return kvfp8_cli_usage_error(cmd, "parse: %s", kvfp8_last_error());
        char buf[2048];
        kvfp8_fault_plan_format(&p, buf, sizeof buf);
        kvfp8_outbuf_printf(&o, "%s\n", buf);
    } else if (!strcmp(sub, "sweep")) {
        status = faults_sweep(quick, json, seed, &o);
    } else if (!strcmp(sub, "platforms") || !strcmp(sub, "issues")) {
        data d;
        if ((rc = load_data(cmd, platform, platform_file, issues_file, 0, &d)))
            return rc;
        status = !strcmp(sub, "platforms") ? faults_platforms(&d, json, &o) : faults_issues(&d, json, &o);
        free_data(&d);
    } else {
        return kvfp8_cli_usage_error(cmd, "unknown subcommand '%s' (list, parse, sweep, platforms, issues)", sub);
    }
    if (!kvfp8_outbuf_flush(&o, stdout))
        return KVFP8_EXIT_FAILED;
    return status;
}

/* ---- kvfp8 matrix ----------------------------------------------------------------------- */

static const char *signal_name(int sig) {
    switch (sig) {
    case 6: return "SIGABRT";
    case 9: return "SIGKILL";
    case 11: return "SIGSEGV";
    default: return "a signal";
    }
}

/* One line of evidence: how the process ended, where, what it said. */
static void evidence(const kvfp8_probe_result *r, char *out, size_t cap) {
    char how[64];
    if (r->outcome == KVFP8_OUTCOME_TIMEOUT)
        snprintf(how, sizeof how, "killed by the watchdog (SIGKILL)");
    else if (r->signal)
        snprintf(how, sizeof how, "%s (signal %d)", signal_name(r->signal), r->signal);
    else
        snprintf(how, sizeof how, "exit %d", r->exit_status);
    if (r->outcome == KVFP8_OUTCOME_OK) {
        snprintf(out, cap, "%s", how);
        return;
    }
    char where[80];
    if (r->failed_request > 0)
        snprintf(where, sizeof where, " on request %d", r->failed_request);
    else
        snprintf(where, sizeof where, " at startup");
    snprintf(out, cap, "%s%s%s%s: %s%s%s", how, where, r->site[0] ? " at " : "", r->site, r->error_type,
             r->error_type[0] ? ": " : "", r->error);
}

static void cite_cell_issues(const data *d, const kvfp8_matrix_cell *c, char (*ids)[40], int *n, int max) {
    kvfp8_issue_query q = {d->platform, c->kv_cache_dtype, c->enable_prefix_caching, 0, 0};
    for (size_t i = 0; i < d->db.count; i++) {
        const kvfp8_known_issue *it = &d->db.items[i];
        if (strcmp(it->scope, "stack") || !kvfp8_issue_matches(it, &q))
            continue;
        int seen = 0;
        for (int k = 0; k < *n; k++)
            seen |= !strcmp(ids[k], it->id);
        if (!seen && *n < max)
            snprintf(ids[(*n)++], 40, "%s", it->id);
    }
}

int kvfp8_cmd_matrix(int argc, char **argv) {
    const char *cmd = "matrix";
    if (want_help(argc, argv)) {
        fputs(matrix_help, stdout);
        return KVFP8_EXIT_OK;
    }
    const char *platform = NULL, *platform_file = NULL, *fp8_dtype = "fp8";
    int json = 0, quick = 0, rc;
    long max_tokens = 4, chunk = 0;
    double timeout = 60;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int has_value = i + 1 < argc;
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--quick")) quick = 1;
        else if (!has_value && a[0] == '-' && a[1] == '-')
            return kvfp8_cli_usage_error(cmd, "option %s needs a value (or is unknown: kvfp8 matrix --help)", a);
        else if (!strcmp(a, "--platform")) platform = argv[++i];
        else if (!strcmp(a, "--platform-file")) platform_file = argv[++i];
        else if (!strcmp(a, "--fp8-dtype")) {
            fp8_dtype = argv[++i];
            if (strncmp(fp8_dtype, "fp8", 3) || !kv_dtype_ok(fp8_dtype))
                return kvfp8_cli_usage_error(cmd, "--fp8-dtype: '%s' is not an FP8 kv_cache_dtype (fp8, fp8_e4m3, "
                                                  "fp8_e5m2)", fp8_dtype);
        } else if (!strcmp(a, "--max-tokens")) {
            if ((rc = parse_int(cmd, a, argv[++i], 1, KVFP8_PROBE_MAX_TOKENS, &max_tokens)))
                return rc;
        } else if (!strcmp(a, "--chunked-prefill")) {
            if ((rc = parse_int(cmd, a, argv[++i], 1, 1 << 20, &chunk)))
                return rc;
        } else if (!strcmp(a, "--timeout")) {
            if ((rc = parse_double(cmd, a, argv[++i], 0.01, 86400, &timeout)))
                return rc;
        } else
            return kvfp8_cli_usage_error(cmd, "unknown argument '%s' (kvfp8 matrix --help)", a);
    }
    data d;
    if ((rc = load_data(cmd, platform, platform_file, NULL, 1, &d)))
        return rc;
    kvfp8_tiny_config mc;
    if (quick)
        kvfp8_model_small_config(&mc);
    else
        kvfp8_model_default_config(&mc);
    kvfp8_model *m;
    if (kvfp8_model_create(&mc, &m) != KVFP8_OK) {
        free_data(&d);
        fprintf(stderr, "kvfp8 matrix: model: %s\n", kvfp8_last_error());
        return KVFP8_EXIT_FAILED;
    }
    int64_t prompt[64];
    kvfp8_probe_config base;
    kvfp8_probe_default_config(&base);
    base.model = m;
    base.platform = d.platform;
    base.max_tokens = (int)max_tokens;
    base.max_chunk_tokens = (int)chunk;
    base.timeout_s = timeout;
    if (quick) {
        for (int i = 0; i < 40; i++)
            prompt[i] = (i * 37 + 5) % mc.vocab_size;
        base.prompt = prompt;
        base.n_prompt = 40;
    }
    static kvfp8_matrix mx;
    if (kvfp8_matrix_run(&base, fp8_dtype, &mx) != KVFP8_OK) {
        fprintf(stderr, "kvfp8 matrix: %s\n", kvfp8_last_error());
        kvfp8_model_destroy(m);
        free_data(&d);
        return KVFP8_EXIT_FAILED;
    }
    char ids[16][40];
    int n_ids = 0;
    for (int i = 0; i < 4; i++)
        if (mx.cells[i].result.outcome != KVFP8_OUTCOME_OK)
            cite_cell_issues(&d, &mx.cells[i], ids, &n_ids, 16);
    kvfp8_outbuf o;
    kvfp8_outbuf_init(&o);
    const kvfp8_platform *p = d.platform;
    int status = strcmp(mx.classification, "clean") ? KVFP8_EXIT_FAILED : KVFP8_EXIT_OK;
    if (json) {
        json_t *cells = json_array(), *issues = json_array();
        for (int i = 0; i < 4; i++) {
            const kvfp8_matrix_cell *c = &mx.cells[i];
            const kvfp8_probe_result *r = &c->result;
            json_t *reqs = json_array();
            for (int k = 0; k < r->n_done; k++) {
                json_t *out = json_array();
                for (int t = 0; t < r->req[k].n_output; t++)
                    json_array_append_new(out, json_integer(r->req[k].output[t]));
                json_array_append_new(reqs, json_pack("{s:i, s:i, s:i, s:f, s:s, s:o}", "request", k + 1,
                                                      "prompt_tokens", (int)r->req[k].prompt_tokens, "hit_tokens",
                                                      (int)r->req[k].hit_tokens, "ttft_ms", r->req[k].ttft_ms,
                                                      "path", r->req[k].first_site, "output", out));
            }
            json_t *cell = json_pack("{s:i, s:s, s:b, s:s}", "test", c->test, "kv_cache_dtype", c->kv_cache_dtype,
                                     "enable_prefix_caching", c->enable_prefix_caching, "outcome",
                                     kvfp8_outcome_name(r->outcome));
            json_object_set_new(cell, "failed_request", r->failed_request > 0 ? json_integer(r->failed_request)
                                                                              : json_null());
            json_object_set_new(cell, "error", json_string(r->outcome == KVFP8_OUTCOME_OK ? "" : r->error));
            json_object_set_new(cell, "stage", r->outcome == KVFP8_OUTCOME_OK ? json_null()
                                               : json_string(r->failed_request > 0 ? "request" : "startup"));
            json_object_set_new(cell, "site", r->site[0] ? json_string(r->site) : json_null());
            json_object_set_new(cell, "error_type", r->error_type[0] ? json_string(r->error_type) : json_null());
            json_object_set_new(cell, "exit_status", r->exit_status >= 0 ? json_integer(r->exit_status) : json_null());
            json_object_set_new(cell, "signal", r->signal ? json_integer(r->signal) : json_null());
            json_object_set_new(cell, "requests", reqs);
            json_object_set_new(cell, "cold_warm", json_string(r->cold_warm));
            json_array_append_new(cells, cell);
        }
        for (int k = 0; k < n_ids; k++)
            json_array_append_new(issues, json_string(ids[k]));
        json_t *root = json_pack("{s:s, s:s, s:s, s:o, s:o}", "platform", p->id, "classification", mx.classification,
                                 "explanation", mx.explanation, "cells", cells, "issues", issues);
        if (flush_json(&o, root))
            status = KVFP8_EXIT_FAILED;
    } else {
        const kvfp8_probe_result *r0 = &mx.cells[0].result;
        kvfp8_outbuf_printf(&o, "kvfp8 matrix: %s (%s profile)\n  %s\n", p->id, p->status, p->summary);
        kvfp8_outbuf_printf(&o, "probe: %s (%u tokens) sent twice, max_tokens %ld%s, each test in its own process\n\n",
                            quick ? "a 40-token prompt on a small model" : "the seed guide's prompt",
                            r0->n_done ? r0->req[0].prompt_tokens : 0u, max_tokens,
                            chunk ? ", chunked prefill" : "");
        kvfp8_outbuf_printf(&o, "| test | kv_cache_dtype | prefix caching | outcome | request 1 | request 2 | evidence |\n"
                                "| --- | --- | --- | --- | --- | --- | --- |\n");
        for (int i = 0; i < 4; i++) {
            const kvfp8_matrix_cell *c = &mx.cells[i];
            const kvfp8_probe_result *r = &c->result;
            char req[2][64], ev[700];
            for (int k = 0; k < 2; k++) {
                if (k < r->n_done)
                    snprintf(req[k], sizeof req[k], "served, %u of %u tokens hit", r->req[k].hit_tokens,
                             r->req[k].prompt_tokens);
                else if (r->failed_request == k + 1)
                    snprintf(req[k], sizeof req[k], "%s", r->outcome == KVFP8_OUTCOME_CRASH     ? "DIED"
                                                          : r->outcome == KVFP8_OUTCOME_TIMEOUT ? "HUNG"
                                                                                                 : "FAILED");
                else
                    snprintf(req[k], sizeof req[k], "-");
            }
            evidence(r, ev, sizeof ev);
            kvfp8_outbuf_printf(&o, "| %d | %s | %s | %s | %s | %s | %s |\n", c->test, c->kv_cache_dtype,
                                c->enable_prefix_caching ? "on" : "off", kvfp8_outcome_name(r->outcome), req[0], req[1],
                                ev);
        }
        char cell[4][48];
        for (int i = 0; i < 4; i++) {
            const kvfp8_probe_result *r = &mx.cells[i].result;
            if (r->outcome == KVFP8_OUTCOME_OK)
                snprintf(cell[i], sizeof cell[i], "ok");
            else if (r->failed_request > 0)
                snprintf(cell[i], sizeof cell[i], "%s (request %d)", r->outcome == KVFP8_OUTCOME_CRASH ? "CRASH"
                                                                     : r->outcome == KVFP8_OUTCOME_TIMEOUT ? "TIMEOUT"
                                                                                                            : "ERROR",
                         r->failed_request);
            else
                snprintf(cell[i], sizeof cell[i], "%s (startup)", r->outcome == KVFP8_OUTCOME_CRASH ? "CRASH" : "ERROR");
        }
        kvfp8_outbuf_printf(&o, "\n%-22s%-26s%s\n", "", "prefix caching off", "prefix caching on");
        kvfp8_outbuf_printf(&o, "%-22s%-26s%s\n", "  auto (bf16)", cell[0], cell[2]);
        char lab[40];
        snprintf(lab, sizeof lab, "  %s", fp8_dtype);
        kvfp8_outbuf_printf(&o, "%-22s%-26s%s\n", lab, cell[1], cell[3]);
        kvfp8_outbuf_printf(&o, "\nclassification: %s\n  %s\n", mx.classification, mx.explanation);
        if (n_ids) {
            kvfp8_outbuf_printf(&o, "\nknown issues that apply:\n");
            for (int k = 0; k < n_ids; k++)
                print_issue(&o, &d.db, ids[k], "  ");
        }
    }
    kvfp8_matrix_free(&mx);
    kvfp8_model_destroy(m);
    free_data(&d);
    if (!kvfp8_outbuf_flush(&o, stdout))
        return KVFP8_EXIT_FAILED;
    return status;
}

/* ---- the checklist, shared by plan --verify and verify --------------------------------------- */

static json_t *checklist_json(const kvfp8_checklist *cl) {
    json_t *items = json_array();
    for (int i = 0; i < KVFP8_CHECKLIST_ITEMS; i++)
        json_array_append_new(items, json_pack("{s:i, s:s, s:s, s:s}", "item", i + 1, "name", cl->items[i].name,
                                               "state", cl->items[i].state == KVFP8_CHECK_PASS   ? "pass"
                                                        : cl->items[i].state == KVFP8_CHECK_FAIL ? "fail"
                                                                                                 : "skip",
                                               "detail", cl->items[i].detail));
    return json_pack("{s:b, s:i, s:i, s:i, s:o}", "passed", cl->n_fail == 0, "pass", cl->n_pass, "fail", cl->n_fail,
                     "skip", cl->n_skip, "items", items);
}

static void checklist_text(kvfp8_outbuf *o, const kvfp8_checklist *cl) {
    for (int i = 0; i < KVFP8_CHECKLIST_ITEMS; i++)
        kvfp8_outbuf_printf(o, "  [%s] %d. %s: %s\n", kvfp8_check_state_name(cl->items[i].state), i + 1,
                            cl->items[i].name, cl->items[i].detail);
    kvfp8_outbuf_printf(o, "verify: %s (%d pass, %d fail, %d skip)\n", cl->n_fail ? "FAIL" : "PASS", cl->n_pass,
                        cl->n_fail, cl->n_skip);
}

/* Runs the probe isolated with the log captured, then the checklist on the log. */
static int verify_engine(const kvfp8_platform *p, const char *dtype, int prefix, const float *k, const float *v,
                         int count, const char *scales_source, int calculate, int max_tokens, int quick,
                         kvfp8_checklist *cl, kvfp8_probe_result *r) {
    kvfp8_tiny_config mc;
    if (quick)
        kvfp8_model_small_config(&mc);
    else
        kvfp8_model_default_config(&mc);
    int64_t prompt[40];
    for (int i = 0; i < 40; i++)
        prompt[i] = (i * 37 + 5) % mc.vocab_size;
    kvfp8_model *m;
    if (kvfp8_model_create(&mc, &m) != KVFP8_OK)
        return -1;
    kvfp8_probe_config c;
    kvfp8_probe_default_config(&c);
    c.model = m;
    c.platform = p;
    c.kv_cache_dtype = dtype;
    c.enable_prefix_caching = prefix;
    c.max_tokens = max_tokens;
    c.capture_log = 1;
    c.k_scales = k;
    c.v_scales = v;
    c.scale_count = count;
    c.scales_source = scales_source;
    c.calculate_kv_scales = calculate && !strncmp(dtype, "fp8", 3);
    if (quick) {
        c.prompt = prompt;
        c.n_prompt = 40;
    }
    kvfp8_status st = kvfp8_probe_run_isolated(&c, r);
    kvfp8_model_destroy(m);
    if (st != KVFP8_OK)
        return -1;
    st = kvfp8_checklist_from_log(r->log ? r->log : "", r->log_len, dtype, cl);
    return st == KVFP8_OK ? 0 : -1;
}

/* ---- kvfp8 plan ---------------------------------------------------------------------------- */

int kvfp8_cmd_plan(int argc, char **argv) {
    const char *cmd = "plan";
    if (want_help(argc, argv)) {
        fputs(plan_help, stdout);
        return KVFP8_EXIT_OK;
    }
    const char *platform = NULL, *platform_file = NULL, *issues_file = NULL;
    int json = 0, verify = 0, have_workload = 0, quick = 0, rc;
    kvfp8_plan_request rq;
    kvfp8_plan_default_request(&rq);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int has_value = i + 1 < argc;
        long v;
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--verify")) verify = 1;
        else if (!strcmp(a, "--quick")) quick = 1;
        else if (!has_value && a[0] == '-' && a[1] == '-')
            return kvfp8_cli_usage_error(cmd, "option %s needs a value (or is unknown: kvfp8 plan --help)", a);
        else if (!strcmp(a, "--platform")) platform = argv[++i];
        else if (!strcmp(a, "--platform-file")) platform_file = argv[++i];
        else if (!strcmp(a, "--issues-file")) issues_file = argv[++i];
        else if (!strcmp(a, "--workload")) {
            if (kvfp8_workload_parse(argv[++i], &rq.workload) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "--workload: %s", kvfp8_last_error());
            have_workload = 1;
        } else if (!strcmp(a, "--model")) {
            int l, h, dsz;
            char extra;
            if (sscanf(argv[++i], "%d,%d,%d%c", &l, &h, &dsz, &extra) != 3 || l < 1 || h < 1 || dsz < 1 || l > 4096 ||
                h > 4096 || dsz > 65536)
                return kvfp8_cli_usage_error(cmd, "--model: '%s' is not LAYERS,KV_HEADS,HEAD_SIZE (e.g. 80,8,128), each "
                                                  "a positive integer", argv[i]);
            rq.num_layers = l, rq.num_kv_heads = h, rq.head_size = dsz;
        } else if (!strcmp(a, "--kv-budget")) {
            if ((rc = parse_size(cmd, a, argv[++i], &rq.kv_budget_bytes)))
                return rc;
        } else if (!strcmp(a, "--tokens")) {
            if ((rc = parse_int(cmd, a, argv[++i], 1, 2147483647L, &v)))
                return rc;
            rq.needed_tokens = (uint64_t)v;
        } else if (!strcmp(a, "--prefix-tokens")) {
            if ((rc = parse_int(cmd, a, argv[++i], 1, 2147483647L, &v)))
                return rc;
            rq.shared_prefix_tokens = (uint64_t)v;
        } else
            return kvfp8_cli_usage_error(cmd, "unknown argument '%s' (kvfp8 plan --help)", a);
    }
    if (!have_workload)
        return kvfp8_cli_usage_error(cmd, "--workload is required (memory-bound, prefix-heavy, auto)");
    data d;
    if ((rc = load_data(cmd, platform, platform_file, issues_file, 1, &d)))
        return rc;
    static kvfp8_plan pl;
    if (kvfp8_plan_make(d.platform, &d.db, &rq, &pl) != KVFP8_OK) {
        fprintf(stderr, "kvfp8 plan: %s\n", kvfp8_last_error());
        free_data(&d);
        return KVFP8_EXIT_FAILED;
    }
    kvfp8_checklist cl;
    kvfp8_probe_result pr;
    memset(&pr, 0, sizeof pr);
    int status = KVFP8_EXIT_OK;
    if (verify) {
        if (verify_engine(d.platform, pl.kv_cache_dtype, pl.enable_prefix_caching, NULL, NULL, 0, NULL, 1, 4, quick,
                          &cl, &pr)) {
            fprintf(stderr, "kvfp8 plan: --verify: %s\n", kvfp8_last_error());
            free_data(&d);
            return KVFP8_EXIT_FAILED;
        }
        if (cl.n_fail)
            status = KVFP8_EXIT_FAILED;
    }
    kvfp8_outbuf o;
    kvfp8_outbuf_init(&o);
    if (json) {
        json_t *reasons = json_array(), *issues = json_array();
        for (int i = 0; i < pl.n_reasons; i++)
            json_array_append_new(reasons, json_string(pl.reasons[i]));
        for (int i = 0; i < pl.n_issues; i++)
            json_array_append_new(issues, json_string(pl.issues[i]));
        json_t *root = json_pack("{s:s, s:s, s:s, s:b, s:o, s:o}", "platform", d.platform->id, "workload",
                                 kvfp8_workload_name(rq.workload), "kv_cache_dtype", pl.kv_cache_dtype,
                                 "enable_prefix_caching", pl.enable_prefix_caching, "reasons", reasons, "issues",
                                 issues);
        json_object_set_new(root, "resolved_workload",
                            json_string(pl.resolved == KVFP8_WORKLOAD_AUTO ? "both" : kvfp8_workload_name(pl.resolved)));
        json_object_set_new(root, "flags", json_string(pl.flags));
        json_object_set_new(root, "affected", json_boolean(pl.affected));
        json_object_set_new(root, "software_conversion", json_boolean(pl.software));
        json_object_set_new(root, "model", json_pack("{s:i, s:i, s:i}", "layers", rq.num_layers, "kv_heads",
                                                     rq.num_kv_heads, "head_size", rq.head_size));
        json_object_set_new(root, "kv_budget_bytes", json_integer((json_int_t)pl.kv_budget_bytes));
        json_object_set_new(root, "kv_bytes_per_token", json_integer((json_int_t)pl.kv_bytes_per_token));
        json_object_set_new(root, "capacity_tokens", json_integer((json_int_t)pl.capacity_tokens));
        json_object_set_new(root, "bf16_kv_bytes_per_token", json_integer((json_int_t)pl.bf16_bytes_per_token));
        json_object_set_new(root, "bf16_capacity_tokens", json_integer((json_int_t)pl.bf16_capacity_tokens));
        json_object_set_new(root, "prefix_cache_effect", json_string(pl.prefix_effect));
        if (verify)
            json_object_set_new(root, "verify", checklist_json(&cl));
        if (flush_json(&o, root))
            status = KVFP8_EXIT_FAILED;
    } else {
        kvfp8_outbuf_printf(&o, "kvfp8 plan: %s, workload %s\n", d.platform->id, kvfp8_workload_name(rq.workload));
        kvfp8_outbuf_printf(&o, "choice: kv_cache_dtype=%s, enable_prefix_caching=%s   (vllm serve ... %s)\n",
                            pl.kv_cache_dtype, pl.enable_prefix_caching ? "true" : "false",
                            pl.flags[0] ? pl.flags : "(neither flag)");
        kvfp8_outbuf_printf(&o, "reasons:\n");
        for (int i = 0; i < pl.n_reasons; i++)
            kvfp8_outbuf_printf(&o, "  - %s\n", pl.reasons[i]);
        kvfp8_outbuf_printf(&o, "capacity: %llu KV bytes per token (BF16 %llu); %llu tokens in the budget (BF16 %llu)\n",
                            (unsigned long long)pl.kv_bytes_per_token, (unsigned long long)pl.bf16_bytes_per_token,
                            (unsigned long long)pl.capacity_tokens, (unsigned long long)pl.bf16_capacity_tokens);
        kvfp8_outbuf_printf(&o, "prefix-cache effect: %s\n", pl.prefix_effect);
        if (pl.n_issues) {
            kvfp8_outbuf_printf(&o, "known issues:\n");
            for (int i = 0; i < pl.n_issues; i++) {
                const kvfp8_known_issue *it = find_issue(&d.db, pl.issues[i]);
                if (it)
                    kvfp8_outbuf_printf(&o, "  %s (%s): %s %s\n", it->id, it->scope, it->title, it->url);
            }
        }
        if (verify) {
            kvfp8_outbuf_printf(&o, "\nverify: the seed's checklist on the two-request probe (%s, "
                                    "calculate_kv_scales for FP8) with kv_cache_dtype=%s, prefix caching %s on %s:\n",
                                quick ? "small model, 40-token prompt" : "tiny model, the seed guide's prompt",
                                pl.kv_cache_dtype, pl.enable_prefix_caching ? "on" : "off", d.platform->id);
            checklist_text(&o, &cl);
        }
    }
    kvfp8_probe_result_free(&pr);
    free_data(&d);
    if (!kvfp8_outbuf_flush(&o, stdout))
        return KVFP8_EXIT_FAILED;
    return status;
}

/* ---- kvfp8 verify --------------------------------------------------------------------------- */

int kvfp8_cmd_verify(int argc, char **argv) {
    const char *cmd = "verify";
    if (want_help(argc, argv)) {
        fputs(verify_help, stdout);
        return KVFP8_EXIT_OK;
    }
    const char *log_path = NULL, *expect = NULL, *dtype = NULL, *platform = NULL, *platform_file = NULL,
               *scales_dir = NULL;
    int json = 0, prefix = 0, no_scales = 0, quick = 0, rc;
    long max_tokens = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int has_value = i + 1 < argc;
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--enable-prefix-caching")) prefix = 1;
        else if (!strcmp(a, "--no-scales")) no_scales = 1;
        else if (!strcmp(a, "--quick")) quick = 1;
        else if (!has_value && a[0] == '-' && a[1] == '-')
            return kvfp8_cli_usage_error(cmd, "option %s needs a value (or is unknown: kvfp8 verify --help)", a);
        else if (!strcmp(a, "--log")) log_path = argv[++i];
        else if (!strcmp(a, "--expect-dtype")) expect = argv[++i];
        else if (!strcmp(a, "--kv-cache-dtype")) dtype = argv[++i];
        else if (!strcmp(a, "--platform")) platform = argv[++i];
        else if (!strcmp(a, "--platform-file")) platform_file = argv[++i];
        else if (!strcmp(a, "--scales")) scales_dir = argv[++i];
        else if (!strcmp(a, "--max-tokens")) {
            if ((rc = parse_int(cmd, a, argv[++i], 2, KVFP8_PROBE_MAX_TOKENS, &max_tokens)))
                return rc;
        } else
            return kvfp8_cli_usage_error(cmd, "unknown argument '%s' (kvfp8 verify --help)", a);
    }
    if (log_path && (dtype || platform || platform_file || scales_dir || prefix || no_scales))
        return kvfp8_cli_usage_error(cmd, "--log reads a log; --kv-cache-dtype, --enable-prefix-caching, --platform, "
                                          "--scales and --no-scales run the engine: not both");
    if (!log_path && !dtype)
        return kvfp8_cli_usage_error(cmd, "give --log FILE, or --kv-cache-dtype D to run the engine");
    if (dtype && !kv_dtype_ok(dtype))
        return kvfp8_cli_usage_error(cmd, "--kv-cache-dtype: Unsupported fp8 kv cache data type: %s (auto, fp8, "
                                          "fp8_e4m3, fp8_e5m2)", dtype);
    if (expect && !kv_dtype_ok(expect))
        return kvfp8_cli_usage_error(cmd, "--expect-dtype: '%s' is not a kv_cache_dtype (auto, fp8, fp8_e4m3, "
                                          "fp8_e5m2)", expect);
    if (scales_dir && no_scales)
        return kvfp8_cli_usage_error(cmd, "--scales and --no-scales: not both");
    kvfp8_checklist cl;
    kvfp8_probe_result pr;
    memset(&pr, 0, sizeof pr);
    const char *what;
    char what_buf[256];
    if (log_path) {
        FILE *f = fopen(log_path, "rb");
        if (!f)
            return kvfp8_cli_usage_error(cmd, "--log %s: %s", log_path, strerror(errno));
        size_t cap = 1 << 16, n = 0;
        char *buf = malloc(cap);
        for (size_t k; buf && (k = fread(buf + n, 1, cap - n, f)) > 0;) {
            n += k;
            if (n == cap && cap < (64u << 20)) {
                char *grown = realloc(buf, cap *= 2);
                if (!grown)
                    free(buf);
                buf = grown;
            } else if (n == cap) {
                break;
            }
        }
        fclose(f);
        if (!buf)
            return kvfp8_cli_usage_error(cmd, "--log %s: out of memory", log_path);
        kvfp8_checklist_from_log(buf, n, expect, &cl);
        free(buf);
        snprintf(what_buf, sizeof what_buf, "the log %s", log_path);
        what = what_buf;
    } else {
        data d;
        if ((rc = load_data(cmd, platform, platform_file, NULL, 0, &d)))
            return rc;
        kvfp8_scales sc;
        memset(&sc, 0, sizeof sc);
        if (scales_dir) {
            kvfp8_scale_options so = {KVFP8_SCALE_RULES_AUTO, d.platform ? d.platform->fp8_fnuz : 0,
                                      KVFP8_KV_CACHE_AUTO, 0};
            if (kvfp8_kv_cache_dtype_parse(dtype, &so.kv_cache_dtype) != KVFP8_OK ||
                kvfp8_scales_load(scales_dir, &so, &sc) != KVFP8_OK) {
                free_data(&d);
                return kvfp8_cli_usage_error(cmd, "--scales %s: %s", scales_dir, kvfp8_last_error());
            }
            kvfp8_tiny_config mc;
            kvfp8_model_default_config(&mc);
            if (sc.num_layers != (uint32_t)mc.num_layers || sc.num_kv_heads != (uint32_t)mc.num_kv_heads) {
                kvfp8_scales_free(&sc);
                free_data(&d);
                return kvfp8_cli_usage_error(cmd, "--scales %s/config.json: num_hidden_layers=%u num_key_value_heads=%u"
                                                  ", but the model has %d layers and %d KV heads", scales_dir,
                                             sc.num_layers, sc.num_kv_heads, mc.num_layers, mc.num_kv_heads);
            }
        }
        const int loaded = scales_dir && sc.num_layers;
        const int r = verify_engine(d.platform, dtype, prefix, loaded ? sc.k : NULL, loaded ? sc.v : NULL,
                                    loaded ? (int)sc.per_layer : 0, scales_dir, !scales_dir && !no_scales,
                                    (int)max_tokens, quick && !scales_dir, &cl, &pr);
        snprintf(what_buf, sizeof what_buf, "the two-request probe with kv_cache_dtype=%s, prefix caching %s%s%s, "
                 "scales %s", dtype, prefix ? "on" : "off", d.platform ? " on " : "",
                 d.platform ? d.platform->id : "", scales_dir ? scales_dir : no_scales ? "none (1.0)" : "from "
                                                                                                    "calculate_kv_scales");
        what = what_buf;
        kvfp8_scales_free(&sc);
        free_data(&d);
        if (r) {
            fprintf(stderr, "kvfp8 verify: %s\n", kvfp8_last_error());
            return KVFP8_EXIT_FAILED;
        }
    }
    kvfp8_outbuf o;
    kvfp8_outbuf_init(&o);
    int status = cl.n_fail ? KVFP8_EXIT_FAILED : KVFP8_EXIT_OK;
    if (json) {
        json_t *root = checklist_json(&cl);
        json_object_set_new(root, "source", json_string(what));
        json_object_set_new(root, "kv_cache_dtype", json_string(cl.kv_cache_dtype));
        if (!log_path) {
            json_object_set_new(root, "outcome", json_string(kvfp8_outcome_name(pr.outcome)));
            json_object_set_new(root, "error", json_string(pr.outcome == KVFP8_OUTCOME_OK ? "" : pr.error));
        }
        if (flush_json(&o, root))
            status = KVFP8_EXIT_FAILED;
    } else {
        kvfp8_outbuf_printf(&o, "kvfp8 verify: the seed guide's checklist against %s\n", what);
        (void)quick;
        if (!log_path && pr.outcome != KVFP8_OUTCOME_OK)
            kvfp8_outbuf_printf(&o, "  the probe: %s: %s\n", kvfp8_outcome_name(pr.outcome), pr.error);
        checklist_text(&o, &cl);
    }
    kvfp8_probe_result_free(&pr);
    if (!kvfp8_outbuf_flush(&o, stdout))
        return KVFP8_EXIT_FAILED;
    return status;
}
