/* kvfp8 — the conformance runner's pieces (`kvfp8 conform`, docs/conformance.md).
 *
 * In the manner of the Khronos CTS: a versioned must-pass list of test ids
 * (conformance/mustpass-v1.txt) and a list of tests of optional features
 * (conformance/optional-v1.txt); every test runs in its own child process with a
 * timeout; a result is one of six codes; waivers come only from a file that gives a
 * reason for each; results stream to a JSONL file (one fsynced line per test), from
 * which --resume continues and the JUnit XML and HTML reports are written.
 *
 * Results are JSON objects (jansson) from end to end: the runner builds one per test,
 * appends it to the JSONL file, and the reports read them back. */
#ifndef KVFP8_CONFORM_H
#define KVFP8_CONFORM_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KVFP8_CONFORM_PASS = 0,
    KVFP8_CONFORM_FAIL = 1,
    KVFP8_CONFORM_NOT_SUPPORTED = 2, /* declared by the capability query; never a pass */
    KVFP8_CONFORM_WAIVED = 3,        /* only from a waiver file line with a reason */
    KVFP8_CONFORM_CRASH = 4,         /* killed by a signal, or exited other than by the protocol */
    KVFP8_CONFORM_TIMEOUT = 5        /* still running at --timeout: killed */
} kvfp8_conform_result;
#define KVFP8_CONFORM_RESULT_COUNT 6

const char *kvfp8_conform_result_name(kvfp8_conform_result r);
kvfp8_status kvfp8_conform_result_parse(const char *name, kvfp8_conform_result *out);

/* The child's side of the protocol: its exit status, and the descriptor (named by
 * the environment variable) on which it writes tagged lines for the parent:
 *   not_supported REASON | failure LINE | detail TEXT | metric KEY VALUE |
 *   hist C0 C1 ... (error/bound ratio histogram, KVFP8_CONFORM_HIST_BINS counts) */
#define KVFP8_CONFORM_EXIT_PASS 0
#define KVFP8_CONFORM_EXIT_FAIL 1
#define KVFP8_CONFORM_EXIT_NOT_SUPPORTED 77
#define KVFP8_CONFORM_EXIT_LOAD_ERROR 78 /* the backend did not load in the child */
#define KVFP8_CONFORM_EXIT_SANITIZER 86  /* a sanitizer runtime found an error in the child */
#define KVFP8_CONFORM_FD_ENV "KVFP8_CONFORM_FD"
/* Bins of log10(error / bound): [0, 1e-8), [1e-8, 1e-7), ..., [0.1, 1), [1, 10), [10, inf). */
#define KVFP8_CONFORM_HIST_BINS 11
int kvfp8_conform_hist_bin(double ratio);
const char *kvfp8_conform_hist_label(int bin);

/* ---- lists and waivers -------------------------------------------------------------- */

typedef struct {
    char *id;     /* "suite.test" */
    int mustpass; /* 1: from the must-pass list; 0: from the optional list */
} kvfp8_conform_entry;

typedef struct {
    kvfp8_conform_entry *items;
    size_t n, cap;
} kvfp8_conform_list;

/* Appends the ids of a list file: one id per line, '#' comments and blank lines
 * ignored.  Errors name file:line (a malformed id, an id listed twice). */
kvfp8_status kvfp8_conform_list_load(kvfp8_conform_list *l, const char *path, int mustpass);
void kvfp8_conform_list_free(kvfp8_conform_list *l);

/* Shell-style glob (*, ?, [...]) over a whole test id. */
int kvfp8_conform_glob(const char *pattern, const char *id);

/* "K/N" with 1 <= K <= N. */
kvfp8_status kvfp8_conform_shard_parse(const char *text, int *k, int *n);
/* Keeps entries matching any of the globs (all when n_globs is 0), then the K-th of N
 * round-robin shares of what is left: entry i (0-based, after filtering) belongs to
 * shard i % N + 1.  Shards 1..N partition the filtered list exactly. */
void kvfp8_conform_list_select(kvfp8_conform_list *l, const char *const *globs, size_t n_globs, int k, int n);

typedef struct {
    char *pattern; /* a test id or a glob */
    char *reason;
    int line;
} kvfp8_conform_waiver;

typedef struct {
    kvfp8_conform_waiver *items;
    size_t n;
} kvfp8_conform_waivers;

/* Lines "ID-OR-GLOB REASON..." ('#' comments, blank lines ignored).  A line without
 * a reason is an error naming file:line: a waiver must say why. */
kvfp8_status kvfp8_conform_waivers_load(kvfp8_conform_waivers *w, const char *path);
/* The waiver covering `id`, or NULL. */
const kvfp8_conform_waiver *kvfp8_conform_waiver_for(const kvfp8_conform_waivers *w, const char *id);
void kvfp8_conform_waivers_free(kvfp8_conform_waivers *w);

/* ---- child processes -------------------------------------------------------------- */

typedef struct {
    int timed_out;
    int signal;     /* the signal that ended it, 0 if it exited */
    int exit_code;  /* when it exited */
    double seconds; /* wall clock */
    char *output;   /* its stdout and stderr (the last 64 KiB), NUL-terminated */
    char *channel;  /* what it wrote on the result descriptor, NUL-terminated */
} kvfp8_conform_child;

/* Runs argv (argv[0] a path) in a new process group with stdout/stderr and the
 * result descriptor captured in anonymous files, and KVFP8_CONFORM_FD set; kills the
 * whole group at `timeout_s`.  Fails only when the process cannot be started. */
kvfp8_status kvfp8_conform_spawn(char *const argv[], double timeout_s, kvfp8_conform_child *out);
void kvfp8_conform_child_free(kvfp8_conform_child *c);
/* The child being waited for, so that a signal handler can kill its group (0: none). */
int kvfp8_conform_current_child(void);

/* ---- results ------------------------------------------------------------------------ */

/* The JSONL results file.  kvfp8_conform_results_open with resume=0 truncates it
 * and writes `header`; with resume=1 it reads every complete line (a torn last line
 * from a killed run is cut off), checks that the file's first header has the same
 * "backend" and "list" as `header`, and appends `header` again (marked "resumed").
 * *records receives the test lines already there (a JSON array). */
typedef struct {
    FILE *f;
    char *path;
} kvfp8_conform_results;

kvfp8_status kvfp8_conform_results_open(kvfp8_conform_results *r, const char *path, json_t *header, int resume,
                                        json_t **records);
/* A JSON string of arbitrary bytes (a child's output may be anything): invalid UTF-8
 * and control characters other than newline and tab become '?'. */
json_t *kvfp8_conform_json_text(const char *s);

/* Appends one compact JSON line and fsyncs it: an interrupted run loses nothing. */
kvfp8_status kvfp8_conform_results_append(kvfp8_conform_results *r, json_t *record);
void kvfp8_conform_results_close(kvfp8_conform_results *r);

/* The verdict over the records of a run: 1 (conformant) when every must-pass test is
 * PASS or WAIVED and no optional test is FAIL, CRASH or TIMEOUT (an optional feature
 * need not be supported, but one that is claimed must be right).  `why` gets a
 * one-line account either way. */
int kvfp8_conform_verdict(json_t *records, char *why, size_t cap);

/* ---- reports ------------------------------------------------------------------------ */

/* JUnit XML: one <testsuite> per suite, one <testcase> per record; FAIL as <failure>,
 * CRASH and TIMEOUT as <error>, NOT_SUPPORTED and WAIVED as <skipped> with the
 * reason. */
kvfp8_status kvfp8_conform_write_junit(const char *path, json_t *header, json_t *records);
/* report.html: self-contained (inline CSS and SVG, no scripts, no network): summary,
 * capability claims, per-suite tables with failure lines, the distribution of
 * error/bound ratios of the BOUNDED tests, and achieved bandwidth against the copy
 * ceiling where the backend reports device timing. */
kvfp8_status kvfp8_conform_write_html(const char *path, json_t *header, json_t *records);

#ifdef __cplusplus
}
#endif
#endif
