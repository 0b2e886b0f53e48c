/* kvfp8 — fault sites: named points at every backend call and every I/O boundary of
 * the engine where a test makes the run crash, fail, hang or corrupt data, on a
 * chosen call, deterministically (SQLite's fault sites and sweeps, libfiu's named
 * points, FoundationDB's seeded BUGGIFY; docs/faults.md).
 *
 * Sites are hierarchical names ("attn/prefix_prefill", "cache/write", "pool/alloc");
 * `kvfp8 faults list` prints them all.  A fault is (pattern, action, trigger):
 *   pattern  a site name, a prefix ending at a '/' boundary ("attn", also written
 *            "attn/" followed by '*': every attention path), or "*" (every site);
 *   action   crash-abort, crash-segv, error, hang, or a corruption: bitflip, nan,
 *            scale-one, stale-scale, fnuz-as-fn, fn-as-fnuz (each site lists the
 *            corruptions that have something to act on there);
 *   trigger  every call, the nth call, every call after the first N, or each call
 *            with probability p drawn from the seed.
 * One seed drives every random choice (probabilistic triggers, which bit flips), so
 * a seed and a spec replay a whole run of the deterministic engine.
 *
 * Arming: through this API, or through the environment, KVFP8_FAULTS, read once by
 * the first kvfp8_engine_create of the process, e.g.
 *   KVFP8_FAULTS='seed=7; attn/prefix_prefill=crash-abort@nth:1; cache/write=bitflip@p:0.05'
 *
 * Always compiled in.  A site costs one load and one branch when nothing is armed:
 * kvfp8_fault_point() tests the global kvfp8_faults_active before calling anything.
 * The fault state is global and not thread-safe: arm, run and disarm on one thread. */
#ifndef KVFP8_FAULTS_H
#define KVFP8_FAULTS_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/kv_cache.h"
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KVFP8_FAULT_CRASH_ABORT = 0, /* abort(): the worker dies with SIGABRT */
    KVFP8_FAULT_CRASH_SEGV = 1,  /* SIGSEGV with the default disposition */
    KVFP8_FAULT_ERROR = 2,       /* the call returns the site's natural error status */
    KVFP8_FAULT_HANG = 3,        /* the call never returns */
    KVFP8_FAULT_BITFLIP = 4,     /* one bit of the data the site touches flips */
    KVFP8_FAULT_NAN = 5,         /* one element becomes NaN (the format's NaN code) */
    KVFP8_FAULT_SCALE_ONE = 6,   /* the scales in use are reset to 1.0 */
    KVFP8_FAULT_STALE_SCALE = 7, /* the scales in effect before the last update are used */
    KVFP8_FAULT_FNUZ_AS_FN = 8,  /* E4M3FNUZ bytes where the reader reads E4M3FN (x2) */
    KVFP8_FAULT_FN_AS_FNUZ = 9   /* E4M3FN bytes where the reader reads E4M3FNUZ (x0.5) */
} kvfp8_fault_action;
#define KVFP8_FAULT_ACTION_COUNT 10
#define KVFP8_FAULT_BIT(a) (1u << (unsigned)(a))
/* The actions every site supports. */
#define KVFP8_FAULT_GENERIC                                                                                         \
    (KVFP8_FAULT_BIT(KVFP8_FAULT_CRASH_ABORT) | KVFP8_FAULT_BIT(KVFP8_FAULT_CRASH_SEGV) |                           \
     KVFP8_FAULT_BIT(KVFP8_FAULT_ERROR) | KVFP8_FAULT_BIT(KVFP8_FAULT_HANG))

typedef enum {
    KVFP8_TRIGGER_EVERY = 0, /* every matching call */
    KVFP8_TRIGGER_NTH = 1,   /* the nth matching call only (n >= 1) */
    KVFP8_TRIGGER_AFTER = 2, /* every matching call after the first n (SQLite's persistent mode) */
    KVFP8_TRIGGER_PROB = 3   /* each matching call with probability p */
} kvfp8_trigger_kind;

typedef struct {
    kvfp8_trigger_kind kind;
    uint64_t n;
    double p;
} kvfp8_fault_trigger;

/* One site of the registry. */
typedef struct {
    const char *name;       /* "cache/write" */
    const char *kind;       /* "backend call" or "I/O boundary" */
    const char *what;       /* one line: what the call is, what corruptions act on */
    unsigned actions;       /* KVFP8_FAULT_BIT() of each action it supports */
    kvfp8_status error;     /* the status an injected error returns */
} kvfp8_fault_site;

size_t kvfp8_fault_site_count(void);
const kvfp8_fault_site *kvfp8_fault_site_at(size_t i);
const kvfp8_fault_site *kvfp8_fault_site_find(const char *name); /* NULL if unknown */

const char *kvfp8_fault_action_name(kvfp8_fault_action a);        /* "crash-abort", ... */
const char *kvfp8_fault_action_description(kvfp8_fault_action a);
kvfp8_status kvfp8_fault_action_parse(const char *name, kvfp8_fault_action *out);
int kvfp8_fault_action_is_corruption(kvfp8_fault_action a);

/* 1 when the pattern selects the site (see the top of this file). */
int kvfp8_fault_pattern_matches(const char *pattern, const char *site);

/* ---- specs ---------------------------------------------------------------------- */

#define KVFP8_FAULTS_MAX 16
#define KVFP8_FAULT_PATTERN_MAX 64

typedef struct {
    char pattern[KVFP8_FAULT_PATTERN_MAX];
    kvfp8_fault_action action;
    kvfp8_fault_trigger trigger;
} kvfp8_fault_item;

typedef struct {
    size_t count;
    kvfp8_fault_item items[KVFP8_FAULTS_MAX];
    int has_seed;
    uint64_t seed;
} kvfp8_fault_plan;

/* Parses the KVFP8_FAULTS language:
 *   spec    := item { (';' | newline) item }       blanks around items are ignored
 *   item    := 'seed=' UINT | PATTERN '=' ACTION [ '@' TRIGGER ]
 *   TRIGGER := 'every' | 'nth:' N | 'after:' N | 'p:' P      (default: every)
 * N is decimal (nth: >= 1), P a decimal in [0, 1].  A pattern must select at least
 * one site, and the action must be supported by at least one selected site.  Errors
 * name `label` (e.g. "KVFP8_FAULTS"), the item number and text, and what was wrong. */
kvfp8_status kvfp8_fault_plan_parse(const char *text, size_t len, const char *label, kvfp8_fault_plan *out);

/* The plan in canonical form ("seed=7; cache/write=bitflip@nth:3"); returns the
 * length it needed (snprintf-style). */
size_t kvfp8_fault_plan_format(const kvfp8_fault_plan *p, char *buf, size_t cap);

/* ---- arming --------------------------------------------------------------------- */

/* Non-zero while any fault is armed or calls are being counted. */
extern int kvfp8_faults_active;

/* Adds one fault (validated as the parser does). */
kvfp8_status kvfp8_faults_arm(const char *pattern, kvfp8_fault_action a, kvfp8_fault_trigger t);
/* Replaces everything armed by the plan (its seed too, when it has one). */
kvfp8_status kvfp8_faults_arm_plan(const kvfp8_fault_plan *p);
kvfp8_status kvfp8_faults_arm_spec(const char *spec, const char *label);
/* Arms KVFP8_FAULTS the first time it is called in the process; later calls do
 * nothing (so a fork()ed child inherits the parent's decision). */
kvfp8_status kvfp8_faults_arm_from_env(void);
/* Disarms every fault and resets the counters; the seed stays. */
void kvfp8_faults_disarm(void);
/* The seed of every random choice (default 0).  Re-seeds armed faults. */
void kvfp8_faults_seed(uint64_t seed);
uint64_t kvfp8_faults_get_seed(void);
/* Counts calls per site even with nothing armed (the sweep's first pass). */
void kvfp8_faults_count_calls(int on);
uint64_t kvfp8_faults_site_calls(const char *site);
uint64_t kvfp8_faults_fired(void);
size_t kvfp8_faults_armed_count(void);
/* The armed plan in canonical form, with its seed (for logs: a replayable line). */
size_t kvfp8_faults_describe(char *buf, size_t cap);

/* Called just before an injected crash or hang, so a supervisor can record the
 * site and the text ("last words"); the process then dies or hangs. */
typedef void (*kvfp8_fault_last_words)(void *ctx, const char *site, kvfp8_fault_action a, const char *message);
void kvfp8_faults_set_last_words(kvfp8_fault_last_words fn, void *ctx);

/* ---- the site check ----------------------------------------------------------- */

/* What a fired corruption must do; the caller applies it where it belongs (the
 * engine decides whether a corruption hits the writer's output, memory after the
 * write, or the reader). */
typedef struct {
    int fired;
    kvfp8_fault_action action;
    const char *site;
    uint64_t call;      /* the fault's matching-call number that fired */
    uint64_t rng;       /* state for the corruption's random choices */
} kvfp8_fault_event;

/* The slow path: counts the call, fires at most one armed fault (the first in plan
 * order whose trigger says so).  error: returns the site's status with a message;
 * crash and hang: never return; a corruption: fills *ev and returns KVFP8_OK. */
kvfp8_status kvfp8_fault_hit(const char *site, kvfp8_fault_event *ev);

static inline kvfp8_status kvfp8_fault_point(const char *site, kvfp8_fault_event *ev) {
    ev->fired = 0;
    return kvfp8_faults_active ? kvfp8_fault_hit(site, ev) : KVFP8_OK;
}

/* ---- corruptions (faults/corrupt.c) -------------------------------------------- */

/* The next random number of the event's stream. */
uint64_t kvfp8_fault_next(kvfp8_fault_event *ev);

/* Applies a KV corruption (bitflip, nan, fnuz-as-fn, fn-as-fnuz) to the K/V bytes
 * of the given slots.  fnuz-as-fn acts only on E4M3FN storage (it rewrites every
 * element as the E4M3FNUZ code of its value: what an FNUZ writer would have
 * stored), fn-as-fnuz only on E4M3FNUZ storage.  Returns the number of bytes
 * changed; `what` (may be NULL) receives a one-line description. */
size_t kvfp8_fault_corrupt_kv(kvfp8_fault_event *ev, kvfp8_kv_cache *c, const int64_t *slots, size_t n_slots,
                              char *what, size_t cap);

/* Applies a scale corruption (scale-one, stale-scale, nan, bitflip) to count k and
 * count v scales; prev_k/prev_v are the values before the last update (stale-scale).
 * Returns the number of scales changed. */
size_t kvfp8_fault_corrupt_scales(kvfp8_fault_event *ev, float *k, float *v, size_t count, const float *prev_k,
                                  const float *prev_v, char *what, size_t cap);

/* Flips one random bit of buf (bitflip on opaque data such as block hashes). */
size_t kvfp8_fault_corrupt_bytes(kvfp8_fault_event *ev, void *buf, size_t len, char *what, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
