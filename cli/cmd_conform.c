/* kvfp8 conform: the conformance runner (docs/conformance.md).
 *
 * The parent never loads the backend under test: a probe child asks what it claims,
 * then every test runs in a child of its own (this same program, re-executed with
 * the hidden --run-one), under a timeout that kills the child's process group.  So a
 * backend that crashes or hangs costs one test, never the run.  Each finished test
 * is one fsynced JSON line in the results file before the next starts; --resume
 * reads them back and runs only what is missing. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "../conformance/suites/conform_suite.h"
#include "commands.h"
#include "kvfp8/conform.h"

static const char conform_help[] =
    "usage: kvfp8 conform [--backend ref|cpu|cuda|PATH] [--filter GLOB]... [--shard K/N]\n"
    "                     [--report DIR] [--results FILE] [--timeout SECONDS] [--resume]\n"
    "                     [--waivers FILE] [--mustpass FILE] [--list] [--list-backends]\n"
    "\n"
    "Runs the conformance suites against a backend, each test in its own process.\n"
    "\n"
    "  --backend B      ref (default), cpu, cuda (libkvfp8_cuda.so from `make cuda`, or\n"
    "                   $KVFP8_CUDA_BACKEND), or the path of a backend shared object\n"
    "  --filter GLOB    run only tests whose id (suite.test) matches; may be repeated\n"
    "  --shard K/N      run the K-th of N round-robin shares of the (filtered) list\n"
    "  --report DIR     write DIR/results.jsonl, DIR/junit.xml and DIR/report.html\n"
    "  --results FILE   the JSONL results file (default DIR/results.jsonl with --report,\n"
    "                   else ./kvfp8-conform-<backend>.jsonl)\n"
    "  --timeout S      seconds per test before it is killed and reported TIMEOUT (60)\n"
    "  --resume         keep the results already in the file and run only the rest\n"
    "  --waivers FILE   lines 'TEST-ID-OR-GLOB REASON': a failing test there is WAIVED\n"
    "  --mustpass FILE  the must-pass list (default conformance/mustpass-v1.txt; the\n"
    "                   optional list is optional-v1.txt beside it)\n"
    "  --list           print the selected test ids and exit\n"
    "  --describe       print every test the suites define: id, level, list, what\n"
    "  --list-backends  say which built-in backends are available here\n"
    "\n"
    "Result codes: PASS, FAIL, NOT_SUPPORTED (the backend declines it: never a pass),\n"
    "WAIVED, CRASH, TIMEOUT.  Exit status 0 only when every selected must-pass test\n"
    "passed or was waived and no optional test failed, crashed or timed out; 1\n"
    "otherwise; 2 for bad input (nothing on standard output).\n";

typedef struct {
    const char *backend;
    const char *filters[64];
    size_t n_filters;
    int shard_k, shard_n;
    const char *report_dir, *results_path, *waivers_path, *mustpass_path;
    double timeout;
    int resume, list_only, list_backends, describe;
    const char *run_one;
    int probe;
} options;

static char self_path[PATH_MAX];

static int find_self(const char *argv0) {
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n > 0) {
        self_path[n] = '\0';
        return 1;
    }
    return snprintf(self_path, sizeof self_path, "%s", argv0) < (int)sizeof self_path;
}

static int parse(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->backend = "ref";
    o->timeout = 60;
    o->shard_k = o->shard_n = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                                                                  \
    do {                                                                                                              \
        if (!v)                                                                                                       \
            return kvfp8_cli_usage_error("conform", "%s needs a value", a);                                           \
        i++;                                                                                                          \
    } while (0)
        if (!strcmp(a, "--backend")) {
            NEED_VALUE();
            o->backend = v;
        } else if (!strcmp(a, "--filter")) {
            NEED_VALUE();
            if (o->n_filters == sizeof o->filters / sizeof o->filters[0])
                return kvfp8_cli_usage_error("conform", "too many --filter options");
            o->filters[o->n_filters++] = v;
        } else if (!strcmp(a, "--shard")) {
            NEED_VALUE();
            if (kvfp8_conform_shard_parse(v, &o->shard_k, &o->shard_n) != KVFP8_OK)
                return kvfp8_cli_usage_error("conform", "%s", kvfp8_last_error());
        } else if (!strcmp(a, "--report")) {
            NEED_VALUE();
            o->report_dir = v;
        } else if (!strcmp(a, "--results")) {
            NEED_VALUE();
            o->results_path = v;
        } else if (!strcmp(a, "--waivers")) {
            NEED_VALUE();
            o->waivers_path = v;
        } else if (!strcmp(a, "--mustpass")) {
            NEED_VALUE();
            o->mustpass_path = v;
        } else if (!strcmp(a, "--timeout")) {
            NEED_VALUE();
            char *end;
            errno = 0;
            o->timeout = strtod(v, &end);
            if (end == v || *end || errno || !(o->timeout > 0) || o->timeout > 86400)
                return kvfp8_cli_usage_error("conform", "--timeout '%s': expected seconds, > 0 and <= 86400", v);
        } else if (!strcmp(a, "--resume")) {
            o->resume = 1;
        } else if (!strcmp(a, "--list")) {
            o->list_only = 1;
        } else if (!strcmp(a, "--list-backends")) {
            o->list_backends = 1;
        } else if (!strcmp(a, "--describe")) {
            o->describe = 1;
        } else if (!strcmp(a, "--run-one")) { /* hidden: the child */
            NEED_VALUE();
            o->run_one = v;
        } else if (!strcmp(a, "--probe")) { /* hidden: the probe child */
            o->probe = 1;
        } else {
            return kvfp8_cli_usage_error("conform", "unknown option '%s' (kvfp8 conform --help)", a);
        }
#undef NEED_VALUE
    }
    return -1;
}

/* "ref", "cpu", "cuda", or a plugin's short name: libkvfp8_example.so -> example. */
static void backend_label(const char *backend, char *out, size_t cap) {
    const char *base = strrchr(backend, '/');
    base = base ? base + 1 : backend;
    if (!strncmp(base, "lib", 3))
        base += 3;
    if (!strncmp(base, "kvfp8_", 6))
        base += 6;
    snprintf(out, cap, "%s", base);
    char *dot = strstr(out, ".so");
    if (dot && dot != out)
        *dot = '\0';
}

static int file_exists(const char *p) { return access(p, R_OK) == 0; }

static int find_mustpass(const options *o, char *out, size_t cap) {
    if (o->mustpass_path)
        return snprintf(out, cap, "%s", o->mustpass_path) < (int)cap;
    const char *env = getenv("KVFP8_CONFORM_DIR");
    if (env && *env && snprintf(out, cap, "%s/mustpass-v1.txt", env) < (int)cap && file_exists(out))
        return 1;
    if (snprintf(out, cap, "conformance/mustpass-v1.txt") < (int)cap && file_exists(out))
        return 1;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", self_path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        static const char *const where[] = {"%s/../../conformance/mustpass-v1.txt",
                                            "%s/../share/kvfp8/conformance/mustpass-v1.txt"};
        for (size_t i = 0; i < 2; i++)
            if (snprintf(out, cap, where[i], dir) < (int)cap && file_exists(out))
                return 1;
    }
    snprintf(out, cap, "conformance/mustpass-v1.txt");
    return 1; /* the load names it when it is not there */
}

/* mustpass-vN.txt -> optional-vN.txt in the same directory */
static int optional_path(const char *mustpass, char *out, size_t cap) {
    const char *base = strrchr(mustpass, '/');
    base = base ? base + 1 : mustpass;
    if (strncmp(base, "mustpass-", 9))
        return 0;
    snprintf(out, cap, "%.*soptional-%s", (int)(base - mustpass), mustpass, base + 9);
    return file_exists(out);
}

static void list_name(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    snprintf(out, cap, "%.100s", base ? base + 1 : path);
    char *dot = strrchr(out, '.');
    if (dot)
        *dot = '\0';
}

static int mkdirs(const char *dir) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return 0;
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return 0;
            *p = '/';
        }
    return mkdir(buf, 0777) == 0 || errno == EEXIST;
}

/* ---- children ----------------------------------------------------------------------------- */

typedef struct {
    json_t *failures, *detail, *metrics, *histogram;
    char not_supported[600];
} channel_lines;

static void parse_channel(const char *text, channel_lines *c) {
    c->failures = json_array(), c->detail = json_array(), c->metrics = json_object(), c->histogram = NULL;
    c->not_supported[0] = '\0';
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        const size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[1400];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), p);
        p += len + (nl ? 1 : 0);
        char *sp = strchr(line, ' ');
        const char *rest = sp ? sp + 1 : "";
        if (sp)
            *sp = '\0';
        if (!strcmp(line, "failure"))
            json_array_append_new(c->failures, kvfp8_conform_json_text(rest));
        else if (!strcmp(line, "detail"))
            json_array_append_new(c->detail, kvfp8_conform_json_text(rest));
        else if (!strcmp(line, "not_supported"))
            snprintf(c->not_supported, sizeof c->not_supported, "%s", rest);
        else if (!strcmp(line, "metric")) {
            char key[64];
            double v;
            if (sscanf(rest, "%63s %lf", key, &v) == 2)
                json_object_set_new(c->metrics, key, json_real(v));
        } else if (!strcmp(line, "hist")) {
            json_decref(c->histogram);
            c->histogram = json_array();
            char *end;
            for (const char *q = rest; *q;) {
                long long v = strtoll(q, &end, 10);
                if (end == q)
                    break;
                json_array_append_new(c->histogram, json_integer(v));
                q = end;
            }
        }
    }
}

static void free_channel(channel_lines *c) {
    json_decref(c->failures), json_decref(c->detail), json_decref(c->metrics), json_decref(c->histogram);
}

/* The first cmocka error message in the output: why a test failed, in one line.
 * cmocka 1.1 prints a fail_msg() as "ERROR: <message>" and an assertion as
 * "[  ERROR   ] --- <message>". */
static void first_error(const char *output, char *out, size_t cap) {
    static const char *const marks[] = {"\nERROR: ", "[  ERROR   ] --- "};
    out[0] = '\0';
    for (size_t i = 0; i < 2 && !out[0]; i++) {
        const char *e = strstr(output, marks[i]);
        if (!e)
            continue;
        e += strlen(marks[i]);
        const char *nl = strchr(e, '\n');
        snprintf(out, cap, "%.*s", (int)(nl ? (size_t)(nl - e) : strlen(e)), e);
        if (!strncmp(out, "[   LINE   ]", 12))
            out[0] = '\0'; /* only the location: look further */
    }
}

static json_t *run_conform_test(const options *o, const kvfp8_conform_test *t, const char *id, int mustpass,
                        const char *unavailable, const kvfp8_conform_waivers *waivers) {
    json_t *rec = json_object();
    json_object_set_new(rec, "type", json_string("test"));
    json_object_set_new(rec, "id", json_string(id));
    json_object_set_new(rec, "suite", json_string(t->suite));
    json_object_set_new(rec, "test", json_string(t->name));
    json_object_set_new(rec, "level", json_string(t->level));
    json_object_set_new(rec, "what", json_string(t->what));
    json_object_set_new(rec, "mustpass", json_boolean(mustpass));
    kvfp8_conform_result result;
    char reason[1200] = "";
    channel_lines ch = {0};
    char *output = NULL;
    if (unavailable) { /* the backend cannot be loaded here at all: nothing to run */
        result = KVFP8_CONFORM_NOT_SUPPORTED;
        snprintf(reason, sizeof reason, "%s", unavailable);
        json_object_set_new(rec, "seconds", json_real(0));
        parse_channel("", &ch);
    } else {
        char *args[] = {self_path, "conform", "--run-one", (char *)id, "--backend", (char *)o->backend, NULL};
        kvfp8_conform_child child;
        if (kvfp8_conform_spawn(args, o->timeout, &child) != KVFP8_OK) {
            result = KVFP8_CONFORM_CRASH;
            snprintf(reason, sizeof reason, "could not start the test process: %s", kvfp8_last_error());
            parse_channel("", &ch);
            json_object_set_new(rec, "seconds", json_real(0));
        } else {
            parse_channel(child.channel, &ch);
            json_object_set_new(rec, "seconds", json_real(child.seconds));
            if (child.timed_out) {
                result = KVFP8_CONFORM_TIMEOUT;
                snprintf(reason, sizeof reason, "still running after %g s: killed with its process group",
                         o->timeout);
            } else if (child.signal) {
                result = KVFP8_CONFORM_CRASH;
                snprintf(reason, sizeof reason, "killed by signal %d (%s)", child.signal, strsignal(child.signal));
                json_object_set_new(rec, "signal", json_integer(child.signal));
            } else {
                json_object_set_new(rec, "exit_code", json_integer(child.exit_code));
                switch (child.exit_code) {
                case KVFP8_CONFORM_EXIT_PASS: result = KVFP8_CONFORM_PASS; break;
                case KVFP8_CONFORM_EXIT_NOT_SUPPORTED:
                    result = KVFP8_CONFORM_NOT_SUPPORTED;
                    snprintf(reason, sizeof reason, "%s", ch.not_supported);
                    break;
                case KVFP8_CONFORM_EXIT_FAIL:
                    result = KVFP8_CONFORM_FAIL;
                    first_error(child.output, reason, sizeof reason);
                    if (!*reason)
                        snprintf(reason, sizeof reason, "the test failed (see its output)");
                    break;
                case KVFP8_CONFORM_EXIT_SANITIZER:
                    result = KVFP8_CONFORM_CRASH;
                    snprintf(reason, sizeof reason, "a sanitizer found an error in the test's process (see output)");
                    break;
                case KVFP8_CONFORM_EXIT_LOAD_ERROR:
                    result = KVFP8_CONFORM_FAIL;
                    snprintf(reason, sizeof reason, "the backend did not load in the test's process");
                    break;
                default:
                    result = KVFP8_CONFORM_CRASH;
                    snprintf(reason, sizeof reason,
                             "exited with status %d, outside the protocol (0 pass, 1 fail, 77 not supported)",
                             child.exit_code);
                }
            }
            if (result != KVFP8_CONFORM_PASS && result != KVFP8_CONFORM_NOT_SUPPORTED)
                output = strdup(child.output);
            kvfp8_conform_child_free(&child);
        }
    }
    const kvfp8_conform_waiver *w = kvfp8_conform_waiver_for(waivers, id);
    if (w && result != KVFP8_CONFORM_PASS) {
        json_object_set_new(rec, "original_result", json_string(kvfp8_conform_result_name(result)));
        json_object_set_new(rec, "waiver", kvfp8_conform_json_text(w->reason));
        result = KVFP8_CONFORM_WAIVED;
    }
    json_object_set_new(rec, "result", json_string(kvfp8_conform_result_name(result)));
    if (*reason)
        json_object_set_new(rec, "reason", kvfp8_conform_json_text(reason));
    json_object_set(rec, "failures", ch.failures);
    json_t *nfail = json_object_get(ch.metrics, "failures");
    json_object_set_new(rec, "failures_total",
                        json_integer(nfail ? (json_int_t)json_number_value(nfail)
                                           : (json_int_t)json_array_size(ch.failures)));
    json_object_set(rec, "detail", ch.detail);
    json_object_set(rec, "metrics", ch.metrics);
    if (ch.histogram)
        json_object_set(rec, "histogram", ch.histogram);
    if (output) {
        json_object_set_new(rec, "output", kvfp8_conform_json_text(output));
        free(output);
    }
    free_channel(&ch);
    return rec;
}

typedef struct {
    int ok; /* 1 available, 0 not available here, -1 broken (load error), -2 probe crashed */
    char reason[800];
    char name[200];
    json_t *capabilities;
} probe_result;

static void probe(const char *backend, double timeout, probe_result *p) {
    memset(p, 0, sizeof *p);
    p->capabilities = json_array();
    char *args[] = {self_path, "conform", "--probe", "--backend", (char *)backend, NULL};
    kvfp8_conform_child child;
    if (kvfp8_conform_spawn(args, timeout, &child) != KVFP8_OK) {
        p->ok = -2;
        snprintf(p->reason, sizeof p->reason, "%s", kvfp8_last_error());
        return;
    }
    channel_lines ch;
    parse_channel(child.channel, &ch);
    if (child.timed_out || child.signal) {
        p->ok = -2;
        snprintf(p->reason, sizeof p->reason, "loading the backend %s",
                 child.timed_out ? "did not finish within the timeout" : strsignal(child.signal));
    } else if (child.exit_code == KVFP8_CONFORM_EXIT_PASS) {
        p->ok = 1;
        size_t i;
        json_t *v;
        json_array_foreach(ch.detail, i, v) {
            const char *s = json_string_value(v);
            if (!strncmp(s, "name ", 5))
                snprintf(p->name, sizeof p->name, "%s", s + 5);
            else if (!strncmp(s, "claims ", 7))
                json_array_append_new(p->capabilities, json_string(s + 7));
        }
    } else if (child.exit_code == KVFP8_CONFORM_EXIT_NOT_SUPPORTED) {
        p->ok = 0;
        snprintf(p->reason, sizeof p->reason, "%s", ch.not_supported);
    } else {
        p->ok = -1;
        const char *why = json_string_value(json_array_get(ch.failures, 0));
        snprintf(p->reason, sizeof p->reason, "%s", why ? why : "the backend did not load");
    }
    free_channel(&ch);
    kvfp8_conform_child_free(&child);
}

/* ---- the summary ------------------------------------------------------------------------- */

static void summary(json_t *records, const char *label, const char *list) {
    static const kvfp8_conform_result order[] = {KVFP8_CONFORM_PASS,   KVFP8_CONFORM_FAIL,  KVFP8_CONFORM_NOT_SUPPORTED,
                                                 KVFP8_CONFORM_WAIVED, KVFP8_CONFORM_CRASH, KVFP8_CONFORM_TIMEOUT};
    printf("\n%-14s %6s", "suite", "tests");
    for (size_t r = 0; r < 6; r++)
        printf(" %*s", r == 2 ? 13 : 7, kvfp8_conform_result_name(order[r]));
    printf("\n");
    int total[6] = {0}, all = 0;
    size_t i, j;
    json_t *rec, *other;
    json_array_foreach(records, i, rec) {
        const char *suite = json_string_value(json_object_get(rec, "suite"));
        int first = 1;
        for (j = 0; j < i && first; j++)
            first = strcmp(json_string_value(json_object_get(json_array_get(records, j), "suite")), suite) != 0;
        if (!first)
            continue;
        int c[6] = {0}, n = 0;
        json_array_foreach(records, j, other) {
            if (strcmp(json_string_value(json_object_get(other, "suite")), suite))
                continue;
            n++;
            kvfp8_conform_result r;
            if (kvfp8_conform_result_parse(json_string_value(json_object_get(other, "result")), &r) == KVFP8_OK)
                c[r]++;
        }
        printf("%-14s %6d", suite, n);
        for (size_t r = 0; r < 6; r++) {
            printf(" %*d", r == 2 ? 13 : 7, c[order[r]]);
            total[order[r]] += c[order[r]];
        }
        all += n;
        printf("\n");
    }
    printf("%-14s %6d", "total", all);
    for (size_t r = 0; r < 6; r++)
        printf(" %*d", r == 2 ? 13 : 7, total[order[r]]);
    char why[400];
    const int ok = kvfp8_conform_verdict(records, why, sizeof why);
    printf("\n\nconform %s (%s): %s: %s\n", label, list, ok ? "CONFORMANT" : "NOT CONFORMANT", why);
}

static void on_signal(int sig) {
    const int child = kvfp8_conform_current_child();
    if (child > 0)
        kill(-child, SIGKILL); /* no orphaned test keeps running after the runner */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void print_result_line(json_t *rec) {
    const char *result = json_string_value(json_object_get(rec, "result"));
    const char *reason = json_string_value(json_object_get(rec, "reason"));
    printf("%-13s %-46s %7.2f s", result, json_string_value(json_object_get(rec, "id")),
           json_number_value(json_object_get(rec, "seconds")));
    if (reason && strcmp(result, "PASS"))
        printf("  %s", reason);
    printf("\n");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "failures"), i, v) printf("    %s\n", json_string_value(v));
    fflush(stdout);
}

int kvfp8_cmd_conform(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(conform_help, stdout);
            return KVFP8_EXIT_OK;
        }
    options o;
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (!find_self(argv[0]))
        return kvfp8_cli_usage_error("conform", "cannot find this program's own path");
    if (o.run_one) {
        const kvfp8_conform_test *t = kvfp8_conform_test_find(o.run_one);
        if (!t)
            return kvfp8_cli_usage_error("conform", "unknown test '%s'", o.run_one);
        return kvfp8_conform_run_one(t, o.backend);
    }
    if (o.probe)
        return kvfp8_conform_probe(o.backend);
    if (o.list_backends) {
        static const char *const builtins[] = {"ref", "cpu", "cuda"};
        for (size_t i = 0; i < 3; i++) {
            probe_result p;
            probe(builtins[i], o.timeout, &p);
            if (p.ok == 1)
                printf("%s\tavailable\t%s\n", builtins[i], p.name);
            else
                printf("%s\tnot available\t%s\n", builtins[i], p.reason);
            json_decref(p.capabilities);
        }
        return KVFP8_EXIT_OK;
    }

    /* the lists */
    char mustpass[PATH_MAX], optional[PATH_MAX], list[128];
    find_mustpass(&o, mustpass, sizeof mustpass);
    kvfp8_conform_list tests = {0};
    if (kvfp8_conform_list_load(&tests, mustpass, 1) != KVFP8_OK)
        return kvfp8_cli_usage_error("conform", "must-pass list: %s", kvfp8_last_error());
    if (optional_path(mustpass, optional, sizeof optional) &&
        kvfp8_conform_list_load(&tests, optional, 0) != KVFP8_OK) {
        kvfp8_conform_list_free(&tests);
        return kvfp8_cli_usage_error("conform", "optional list: %s", kvfp8_last_error());
    }
    list_name(mustpass, list, sizeof list);
    for (size_t i = 0; i < tests.n; i++)
        if (!kvfp8_conform_test_find(tests.items[i].id)) {
            rc = kvfp8_cli_usage_error("conform", "%s lists '%s', which no suite defines",
                                       tests.items[i].mustpass ? mustpass : optional, tests.items[i].id);
            kvfp8_conform_list_free(&tests);
            return rc;
        }
    if (o.describe) { /* every registered test, and which list has it (a test in neither is a mistake) */
        for (size_t i = 0, n = kvfp8_conform_test_count(); i < n; i++) {
            const kvfp8_conform_test *t = kvfp8_conform_test_at(i);
            char id[160];
            kvfp8_conform_test_id(t, id, sizeof id);
            const char *where = "unlisted";
            for (size_t k = 0; k < tests.n; k++)
                if (!strcmp(tests.items[k].id, id))
                    where = tests.items[k].mustpass ? "mustpass" : "optional";
            printf("%s\t%s\t%s\t%s\n", id, t->level, where, t->what);
        }
        kvfp8_conform_list_free(&tests);
        return KVFP8_EXIT_OK;
    }
    const size_t listed = tests.n;
    kvfp8_conform_list_select(&tests, o.filters, o.n_filters, o.shard_k, o.shard_n);
    if (o.n_filters && tests.n == 0 && o.shard_n == 1) {
        kvfp8_conform_list_free(&tests);
        return kvfp8_cli_usage_error("conform", "no test matches --filter (%zu tests listed)", listed);
    }
    if (o.list_only) {
        for (size_t i = 0; i < tests.n; i++)
            printf("%s\n", tests.items[i].id);
        kvfp8_conform_list_free(&tests);
        return KVFP8_EXIT_OK;
    }
    kvfp8_conform_waivers waivers = {0};
    if (o.waivers_path && kvfp8_conform_waivers_load(&waivers, o.waivers_path) != KVFP8_OK) {
        kvfp8_conform_list_free(&tests);
        return kvfp8_cli_usage_error("conform", "%s", kvfp8_last_error());
    }

    /* the backend: probed in a child, never loaded here */
    char label[128];
    backend_label(o.backend, label, sizeof label);
    probe_result p;
    probe(o.backend, o.timeout, &p);
    if (p.ok == -1) {
        json_decref(p.capabilities);
        kvfp8_conform_list_free(&tests), kvfp8_conform_waivers_free(&waivers);
        return kvfp8_cli_usage_error("conform", "%s", p.reason); /* the reason names the backend */
    }
    if (p.ok == -2)
        fprintf(stderr, "kvfp8 conform: backend '%s' crashed or hung while loading (%s); running the tests anyway\n",
                o.backend, p.reason);
    if (p.ok == 0)
        fprintf(stderr, "kvfp8 conform: %s: every test is NOT_SUPPORTED\n", p.reason);

    char results_path[PATH_MAX];
    if (o.report_dir && !mkdirs(o.report_dir)) {
        json_decref(p.capabilities);
        kvfp8_conform_list_free(&tests), kvfp8_conform_waivers_free(&waivers);
        return kvfp8_cli_usage_error("conform", "--report %s: %s", o.report_dir, strerror(errno));
    }
    if (o.results_path)
        snprintf(results_path, sizeof results_path, "%s", o.results_path);
    else if (o.report_dir)
        snprintf(results_path, sizeof results_path, "%s/results.jsonl", o.report_dir);
    else
        snprintf(results_path, sizeof results_path, "kvfp8-conform-%s.jsonl", label);

    json_t *header = json_object();
    json_object_set_new(header, "type", json_string("run"));
    json_object_set_new(header, "tool", json_string("kvfp8 0.1.0"));
    json_object_set_new(header, "backend", json_string(label));
    json_object_set_new(header, "backend_arg", kvfp8_conform_json_text(o.backend));
    json_object_set_new(header, "backend_name", kvfp8_conform_json_text(p.name));
    json_object_set_new(header, "abi_version", json_integer(KVFP8_BACKEND_ABI_VERSION));
    json_object_set_new(header, "list", json_string(list));
    char selection[1024] = "";
    for (size_t i = 0; i < o.n_filters; i++)
        snprintf(selection + strlen(selection), sizeof selection - strlen(selection), "%s%s", i ? "," : "filter=",
                 o.filters[i]);
    snprintf(selection + strlen(selection), sizeof selection - strlen(selection), "%sshard=%d/%d",
             *selection ? " " : "", o.shard_k, o.shard_n);
    json_object_set_new(header, "selection", kvfp8_conform_json_text(selection));
    char when[64];
    const time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_set_new(header, "started", json_string(when));
    struct utsname un;
    if (uname(&un) == 0) {
        char host[400];
        snprintf(host, sizeof host, "%s %s %s", un.nodename, un.sysname, un.machine);
        json_object_set_new(header, "host", kvfp8_conform_json_text(host));
    }
    json_object_set_new(header, "timeout", json_real(o.timeout));
    json_object_set_new(header, "capabilities", p.capabilities);
    if (p.ok == 0)
        json_object_set_new(header, "unavailable", kvfp8_conform_json_text(p.reason));

    kvfp8_conform_results results;
    json_t *previous = NULL;
    if (kvfp8_conform_results_open(&results, results_path, header, o.resume, &previous) != KVFP8_OK) {
        json_decref(header);
        kvfp8_conform_list_free(&tests), kvfp8_conform_waivers_free(&waivers);
        return kvfp8_cli_usage_error("conform", "%s", kvfp8_last_error());
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);

    printf("kvfp8 conform: backend %s (%s), %s, %zu tests, timeout %g s, results %s\n", label,
           *p.name ? p.name : "?", list, tests.n, o.timeout, results_path);
    /* the final record of each selected test: from an earlier run (--resume) or now */
    json_t *final = json_array();
    size_t resumed = 0;
    int io_error = 0;
    for (size_t i = 0; i < tests.n; i++) {
        const char *id = tests.items[i].id;
        json_t *done = NULL;
        size_t k;
        json_t *rec;
        json_array_foreach(previous, k, rec) if (!strcmp(json_string_value(json_object_get(rec, "id")), id)) done = rec;
        if (done) {
            json_array_append(final, done);
            resumed++;
            continue;
        }
        rec = run_conform_test(&o, kvfp8_conform_test_find(id), id, tests.items[i].mustpass, p.ok == 0 ? p.reason : NULL,
                       &waivers);
        json_object_set_new(rec, "backend", json_string(label));
        if (kvfp8_conform_results_append(&results, rec) != KVFP8_OK && !io_error) {
            fprintf(stderr, "kvfp8 conform: %s\n", kvfp8_last_error());
            io_error = 1;
        }
        print_result_line(rec);
        json_array_append_new(final, rec);
    }
    if (resumed)
        printf("(%zu tests already in %s were not run again)\n", resumed, results_path);
    kvfp8_conform_results_close(&results);

    summary(final, label, list);
    if (o.report_dir) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/junit.xml", o.report_dir);
        if (kvfp8_conform_write_junit(path, header, final) != KVFP8_OK) {
            fprintf(stderr, "kvfp8 conform: %s\n", kvfp8_last_error());
            io_error = 1;
        }
        snprintf(path, sizeof path, "%s/report.html", o.report_dir);
        if (kvfp8_conform_write_html(path, header, final) != KVFP8_OK) {
            fprintf(stderr, "kvfp8 conform: %s\n", kvfp8_last_error());
            io_error = 1;
        }
        printf("report: %s/report.html, %s/junit.xml, %s\n", o.report_dir, o.report_dir, results_path);
    }
    char why[400];
    const int ok = kvfp8_conform_verdict(final, why, sizeof why) && !io_error;
    json_decref(final), json_decref(previous), json_decref(header);
    kvfp8_conform_list_free(&tests), kvfp8_conform_waivers_free(&waivers);
    return ok ? KVFP8_EXIT_OK : KVFP8_EXIT_FAILED;
}
