/* Fault sites: the registry, the KVFP8_FAULTS language, triggers and the actions that
 * act in place (error, crash, hang).  See include/kvfp8/faults.h and docs/faults.md. */
#include "kvfp8/faults.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvfp8/engine.h"

#define KV_CORRUPTIONS                                                                                              \
    (KVFP8_FAULT_BIT(KVFP8_FAULT_BITFLIP) | KVFP8_FAULT_BIT(KVFP8_FAULT_NAN))
#define SCALE_CORRUPTIONS                                                                                           \
    (KVFP8_FAULT_BIT(KVFP8_FAULT_SCALE_ONE) | KVFP8_FAULT_BIT(KVFP8_FAULT_STALE_SCALE))
#define ENCODING_CORRUPTIONS                                                                                        \
    (KVFP8_FAULT_BIT(KVFP8_FAULT_FNUZ_AS_FN) | KVFP8_FAULT_BIT(KVFP8_FAULT_FN_AS_FNUZ))

/* The order is the order of `kvfp8 faults list`: I/O boundaries in the order a
 * request meets them, then the backend calls. */
static const kvfp8_fault_site sites[] = {
    {KVFP8_SITE_ENGINE_STARTUP, "I/O boundary", "engine creation, before anything is allocated", KVFP8_FAULT_GENERIC,
     KVFP8_ERR_IO},
    {KVFP8_SITE_SCALES_LOAD, "I/O boundary",
     "the KV scales installed into the caches (checkpoint, caller or calculate_kv_scales); corruptions act on the "
     "values installed",
     KVFP8_FAULT_GENERIC | KV_CORRUPTIONS | SCALE_CORRUPTIONS, KVFP8_ERR_IO},
    {KVFP8_SITE_HASH_COMPUTE, "I/O boundary", "block hashes of a request's tokens; bitflip acts on one hash",
     KVFP8_FAULT_GENERIC | KVFP8_FAULT_BIT(KVFP8_FAULT_BITFLIP), KVFP8_ERR_STATE},
    {KVFP8_SITE_POOL_ALLOC, "I/O boundary", "KV blocks allocated for a request's new tokens", KVFP8_FAULT_GENERIC,
     KVFP8_ERR_EXHAUSTED},
    {KVFP8_SITE_CACHE_WRITE, "backend call",
     "cache_write of one chunk into one layer; nan, stale-scale and the encoding swaps act on what the writer "
     "stores, bitflip on memory after the write, scale-one on the scales the reader will use",
     KVFP8_FAULT_GENERIC | KV_CORRUPTIONS | SCALE_CORRUPTIONS | ENCODING_CORRUPTIONS, KVFP8_ERR_IO},
    {KVFP8_SITE_CACHE_READ, "backend call", "fp8_decode of the encoding canary: the read path read back",
     KVFP8_FAULT_GENERIC, KVFP8_ERR_IO},
    {KVFP8_SITE_PREFILL, "backend call",
     "paged_attention of a chunk with no cached context; corruptions act on the context bytes and the reader's "
     "scales",
     KVFP8_FAULT_GENERIC | KV_CORRUPTIONS | SCALE_CORRUPTIONS, KVFP8_ERR_IO},
    {KVFP8_SITE_PREFIX_PREFILL, "backend call",
     "paged_attention of a chunk over cached context (a prefix hit or an earlier chunk); corruptions as attn/prefill",
     KVFP8_FAULT_GENERIC | KV_CORRUPTIONS | SCALE_CORRUPTIONS, KVFP8_ERR_IO},
    {KVFP8_SITE_DECODE, "backend call", "paged_attention of one new token; corruptions as attn/prefill",
     KVFP8_FAULT_GENERIC | KV_CORRUPTIONS | SCALE_CORRUPTIONS, KVFP8_ERR_IO},
};
#define SITE_COUNT (sizeof sites / sizeof sites[0])

static const char *const action_names[KVFP8_FAULT_ACTION_COUNT] = {
    "crash-abort", "crash-segv", "error",       "hang",       "bitflip",
    "nan",         "scale-one",  "stale-scale", "fnuz-as-fn", "fn-as-fnuz",
};

static const char *const action_descriptions[KVFP8_FAULT_ACTION_COUNT] = {
    "the process aborts (SIGABRT), as a worker that dies",
    "the process gets SIGSEGV with the default disposition",
    "the call fails with the site's natural status and an 'injected fault' message",
    "the call never returns (a supervisor's timeout must catch it)",
    "one bit of the data the site touches flips",
    "one element becomes NaN (the format's NaN code)",
    "the scales in use are reset to 1.0 (scales lost on the way to the kernel)",
    "the scales in effect before the last update are used (a stale copy)",
    "the bytes hold E4M3FNUZ codes where the reader reads E4M3FN: every value x2 (vLLM #45562)",
    "the bytes hold E4M3FN codes where the reader reads E4M3FNUZ: every value x0.5",
};

size_t kvfp8_fault_site_count(void) { return SITE_COUNT; }

const kvfp8_fault_site *kvfp8_fault_site_at(size_t i) { return i < SITE_COUNT ? &sites[i] : NULL; }

static int site_index(const char *name) {
    for (size_t i = 0; i < SITE_COUNT; i++)
        if (sites[i].name == name || !strcmp(sites[i].name, name))
            return (int)i;
    return -1;
}

const kvfp8_fault_site *kvfp8_fault_site_find(const char *name) {
    const int i = name ? site_index(name) : -1;
    return i < 0 ? NULL : &sites[i];
}

const char *kvfp8_fault_action_name(kvfp8_fault_action a) {
    return (unsigned)a < KVFP8_FAULT_ACTION_COUNT ? action_names[a] : "?";
}

const char *kvfp8_fault_action_description(kvfp8_fault_action a) {
    return (unsigned)a < KVFP8_FAULT_ACTION_COUNT ? action_descriptions[a] : "?";
}

kvfp8_status kvfp8_fault_action_parse(const char *name, kvfp8_fault_action *out) {
    for (int a = 0; a < KVFP8_FAULT_ACTION_COUNT; a++)
        if (!strcmp(name, action_names[a])) {
            *out = (kvfp8_fault_action)a;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID,
                      "unknown action '%s' (crash-abort, crash-segv, error, hang, bitflip, nan, scale-one, "
                      "stale-scale, fnuz-as-fn, fn-as-fnuz)",
                      name);
}

int kvfp8_fault_action_is_corruption(kvfp8_fault_action a) { return a >= KVFP8_FAULT_BITFLIP; }

int kvfp8_fault_pattern_matches(const char *pattern, const char *site) {
    if (!strcmp(pattern, "*") || !strcmp(pattern, site))
        return 1;
    size_t n = strlen(pattern);
    if (n >= 2 && pattern[n - 2] == '/' && pattern[n - 1] == '*')
        n -= 2; /* a trailing slash-star is the prefix itself */
    return n > 0 && !strncmp(pattern, site, n) && site[n] == '/';
}

/* ---- the armed state ------------------------------------------------------------- */

int kvfp8_faults_active = 0;

typedef struct {
    kvfp8_fault_item item;
    unsigned site_mask; /* sites where it matches and its action applies */
    uint64_t calls, fired;
    uint64_t rng;
} armed_fault;

static armed_fault armed[KVFP8_FAULTS_MAX];
static size_t n_armed;
static uint64_t seed_value;
static int counting;
static uint64_t site_calls[SITE_COUNT];
static uint64_t total_fired;
static kvfp8_fault_last_words last_words;
static void *last_words_ctx;

static void update_active(void) { kvfp8_faults_active = n_armed > 0 || counting; }

/* splitmix64: seeds each fault's stream so that faults do not share draws. */
static uint64_t splitmix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void reseed(void) {
    for (size_t i = 0; i < n_armed; i++)
        armed[i].rng = splitmix(seed_value ^ splitmix(i + 1));
}

/* Validates an item: returns the mask of sites where it acts (0 with an error). */
static kvfp8_status item_mask(const kvfp8_fault_item *it, unsigned *mask) {
    unsigned selected = 0, acting = 0;
    for (size_t s = 0; s < SITE_COUNT; s++)
        if (kvfp8_fault_pattern_matches(it->pattern, sites[s].name)) {
            selected |= 1u << s;
            if (sites[s].actions & KVFP8_FAULT_BIT(it->action))
                acting |= 1u << s;
        }
    if (!selected)
        return kvfp8_fail(KVFP8_ERR_INVALID, "'%s' matches no fault site (kvfp8 faults list)", it->pattern);
    if (!acting)
        return kvfp8_fail(KVFP8_ERR_INVALID, "no site matched by '%s' supports the action %s (kvfp8 faults list)",
                          it->pattern, kvfp8_fault_action_name(it->action));
    if (it->trigger.kind == KVFP8_TRIGGER_NTH && it->trigger.n < 1)
        return kvfp8_fail(KVFP8_ERR_INVALID, "nth:N counts from 1, got nth:0");
    if (it->trigger.kind == KVFP8_TRIGGER_PROB && !(it->trigger.p >= 0.0 && it->trigger.p <= 1.0))
        return kvfp8_fail(KVFP8_ERR_INVALID, "p:P must be in [0, 1], got %g", it->trigger.p);
    if ((unsigned)it->trigger.kind > KVFP8_TRIGGER_PROB)
        return kvfp8_fail(KVFP8_ERR_INVALID, "unknown trigger kind %d", (int)it->trigger.kind);
    *mask = acting;
    return KVFP8_OK;
}

kvfp8_status kvfp8_faults_arm(const char *pattern, kvfp8_fault_action a, kvfp8_fault_trigger t) {
    if (!pattern || !*pattern || strlen(pattern) >= KVFP8_FAULT_PATTERN_MAX)
        return kvfp8_fail(KVFP8_ERR_INVALID, "fault pattern must be 1..%d characters", KVFP8_FAULT_PATTERN_MAX - 1);
    if ((unsigned)a >= KVFP8_FAULT_ACTION_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "unknown fault action %d", (int)a);
    if (n_armed == KVFP8_FAULTS_MAX)
        return kvfp8_fail(KVFP8_ERR_EXHAUSTED, "at most %d faults can be armed", KVFP8_FAULTS_MAX);
    armed_fault f;
    memset(&f, 0, sizeof f);
    snprintf(f.item.pattern, sizeof f.item.pattern, "%s", pattern);
    f.item.action = a;
    f.item.trigger = t;
    kvfp8_status st = item_mask(&f.item, &f.site_mask);
    if (st != KVFP8_OK)
        return st;
    f.rng = splitmix(seed_value ^ splitmix(n_armed + 1));
    armed[n_armed++] = f;
    update_active();
    return KVFP8_OK;
}

kvfp8_status kvfp8_faults_arm_plan(const kvfp8_fault_plan *p) {
    kvfp8_faults_disarm();
    if (p->has_seed)
        seed_value = p->seed;
    for (size_t i = 0; i < p->count; i++) {
        kvfp8_status st = kvfp8_faults_arm(p->items[i].pattern, p->items[i].action, p->items[i].trigger);
        if (st != KVFP8_OK) {
            kvfp8_faults_disarm();
            return st;
        }
    }
    return KVFP8_OK;
}

kvfp8_status kvfp8_faults_arm_spec(const char *spec, const char *label) {
    kvfp8_fault_plan p;
    kvfp8_status st = kvfp8_fault_plan_parse(spec, strlen(spec), label, &p);
    return st != KVFP8_OK ? st : kvfp8_faults_arm_plan(&p);
}

kvfp8_status kvfp8_faults_arm_from_env(void) {
    static int done;
    if (done)
        return KVFP8_OK;
    done = 1;
    const char *spec = getenv("KVFP8_FAULTS");
    if (!spec || !*spec)
        return KVFP8_OK;
    return kvfp8_faults_arm_spec(spec, "KVFP8_FAULTS");
}

void kvfp8_faults_disarm(void) {
    n_armed = 0;
    total_fired = 0;
    memset(site_calls, 0, sizeof site_calls);
    update_active();
}

void kvfp8_faults_seed(uint64_t seed) {
    seed_value = seed;
    reseed();
}

uint64_t kvfp8_faults_get_seed(void) { return seed_value; }

void kvfp8_faults_count_calls(int on) {
    counting = on != 0;
    if (counting)
        memset(site_calls, 0, sizeof site_calls);
    update_active();
}

uint64_t kvfp8_faults_site_calls(const char *site) {
    const int i = site ? site_index(site) : -1;
    return i < 0 ? 0 : site_calls[i];
}

uint64_t kvfp8_faults_fired(void) { return total_fired; }
size_t kvfp8_faults_armed_count(void) { return n_armed; }

size_t kvfp8_faults_describe(char *buf, size_t cap) {
    kvfp8_fault_plan p;
    memset(&p, 0, sizeof p);
    p.has_seed = 1;
    p.seed = seed_value;
    for (size_t i = 0; i < n_armed; i++)
        p.items[p.count++] = armed[i].item;
    return kvfp8_fault_plan_format(&p, buf, cap);
}

void kvfp8_faults_set_last_words(kvfp8_fault_last_words fn, void *ctx) {
    last_words = fn;
    last_words_ctx = ctx;
}

/* ---- the site check ---------------------------------------------------------------- */

/* A coverage build's counters are written at exit; a process an injected fault kills
 * never gets there, so write them first (weak: absent outside coverage builds). */
extern void __gcov_dump(void) __attribute__((weak));

static void before_dying(const char *site, kvfp8_fault_action a, const char *msg) {
    if (last_words)
        last_words(last_words_ctx, site, a, msg);
    if (__gcov_dump)
        __gcov_dump();
}

static int trigger_fires(armed_fault *f) {
    const kvfp8_fault_trigger *t = &f->item.trigger;
    switch (t->kind) {
    case KVFP8_TRIGGER_EVERY: return 1;
    case KVFP8_TRIGGER_NTH: return f->calls == t->n;
    case KVFP8_TRIGGER_AFTER: return f->calls > t->n;
    case KVFP8_TRIGGER_PROB:
        f->rng = splitmix(f->rng);
        /* 53 random bits as a double in [0, 1): p = 1 always fires, p = 0 never */
        return (double)(f->rng >> 11) * 0x1.0p-53 < t->p;
    }
    return 0;
}

kvfp8_status kvfp8_fault_hit(const char *site, kvfp8_fault_event *ev) {
    memset(ev, 0, sizeof *ev);
    const int s = site_index(site);
    if (s < 0)
        return KVFP8_OK; /* a site the registry does not know is never a target */
    site_calls[s]++;
    size_t which = 0;
    for (size_t i = 0; i < n_armed; i++) {
        armed_fault *f = &armed[i];
        if (!(f->site_mask & (1u << s)))
            continue;
        f->calls++;
        if (trigger_fires(f) && !ev->fired) {
            f->fired++;
            total_fired++;
            ev->fired = 1;
            ev->action = f->item.action;
            ev->site = sites[s].name;
            ev->call = f->calls;
            ev->rng = splitmix(f->rng ^ splitmix(f->calls));
            which = i;
        }
    }
    if (!ev->fired)
        return KVFP8_OK;
    char msg[300];
    snprintf(msg, sizeof msg, "injected fault: %s at %s (call %llu of the fault '%s=%s')",
             kvfp8_fault_action_name(ev->action), sites[s].name, (unsigned long long)ev->call,
             armed[which].item.pattern, kvfp8_fault_action_name(ev->action));
    switch (ev->action) {
    case KVFP8_FAULT_ERROR:
        return kvfp8_fail(sites[s].error, "%s", msg);
    case KVFP8_FAULT_CRASH_ABORT:
        before_dying(sites[s].name, ev->action, msg);
        abort();
    case KVFP8_FAULT_CRASH_SEGV:
        before_dying(sites[s].name, ev->action, msg);
        /* the default disposition, so that no handler (a sanitizer's) turns the
         * signal into an ordinary exit */
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
        abort();
    case KVFP8_FAULT_HANG:
        before_dying(sites[s].name, ev->action, msg);
        for (;;)
            sleep(1000);
    default:
        return KVFP8_OK; /* a corruption: the caller applies it */
    }
}

/* ---- the spec language ------------------------------------------------------------ */

static int parse_u64(const char *s, size_t n, uint64_t *out) {
    if (n == 0 || n > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        const uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* A probability: a decimal number (exponent allowed, no hex, inf or nan) in [0, 1]. */
static int parse_prob(const char *s, size_t n, double *out) {
    if (n == 0 || n > 32)
        return -1;
    char tmp[40];
    int digits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= '0' && s[i] <= '9')
            digits++;
        else if (s[i] != '.' && s[i] != 'e' && s[i] != 'E' && s[i] != '+' && s[i] != '-')
            return -1;
    }
    if (digits == 0)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *end;
    errno = 0;
    const double v = strtod(tmp, &end);
    if (*end || errno || !(v >= 0.0 && v <= 1.0))
        return -1;
    *out = v;
    return 0;
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

static kvfp8_status item_error(const char *label, int index, const char *text, size_t len, const char *why) {
    return kvfp8_fail(KVFP8_ERR_INVALID, "%s: item %d '%.*s': %s", label, index, (int)(len > 80 ? 80 : len), text,
                      why);
}

static kvfp8_status parse_item(const char *s, size_t n, const char *label, int index, kvfp8_fault_plan *out) {
    const char *eq = memchr(s, '=', n);
    if (!eq)
        return item_error(label, index, s, n, "expected PATTERN=ACTION[@TRIGGER] or seed=N");
    size_t kn = (size_t)(eq - s);
    while (kn && is_blank(s[kn - 1]))
        kn--;
    const char *v = eq + 1;
    size_t vn = n - (size_t)(v - s);
    while (vn && is_blank(*v))
        v++, vn--;
    if (kn == 4 && !memcmp(s, "seed", 4)) {
        if (parse_u64(v, vn, &out->seed))
            return item_error(label, index, s, n, "seed must be a decimal integer below 2^64");
        out->has_seed = 1;
        return KVFP8_OK;
    }
    if (kn == 0)
        return item_error(label, index, s, n, "empty site pattern");
    if (kn >= KVFP8_FAULT_PATTERN_MAX)
        return item_error(label, index, s, n, "site pattern too long");
    for (size_t i = 0; i < kn; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '/' ||
              s[i] == '*'))
            return item_error(label, index, s, n, "a site pattern uses a-z, 0-9, '_', '/' and '*'");
    if (out->count == KVFP8_FAULTS_MAX)
        return item_error(label, index, s, n, "more than 16 faults");
    kvfp8_fault_item *it = &out->items[out->count];
    memset(it, 0, sizeof *it);
    memcpy(it->pattern, s, kn);
    it->pattern[kn] = 0;
    const char *at = memchr(v, '@', vn);
    size_t an = at ? (size_t)(at - v) : vn;
    while (an && is_blank(v[an - 1]))
        an--;
    char action[32];
    if (an == 0 || an >= sizeof action)
        return item_error(label, index, s, n, "missing or unknown action");
    memcpy(action, v, an);
    action[an] = 0;
    if (kvfp8_fault_action_parse(action, &it->action) != KVFP8_OK) {
        char why[300];
        snprintf(why, sizeof why, "%s", kvfp8_last_error());
        return item_error(label, index, s, n, why);
    }
    it->trigger.kind = KVFP8_TRIGGER_EVERY;
    if (at) {
        const char *t = at + 1;
        size_t tn = vn - (size_t)(t - v);
        while (tn && is_blank(*t))
            t++, tn--;
        if (tn == 5 && !memcmp(t, "every", 5)) {
            it->trigger.kind = KVFP8_TRIGGER_EVERY;
        } else if (tn > 4 && !memcmp(t, "nth:", 4)) {
            it->trigger.kind = KVFP8_TRIGGER_NTH;
            if (parse_u64(t + 4, tn - 4, &it->trigger.n) || it->trigger.n == 0)
                return item_error(label, index, s, n, "nth:N needs a decimal N >= 1");
        } else if (tn > 6 && !memcmp(t, "after:", 6)) {
            it->trigger.kind = KVFP8_TRIGGER_AFTER;
            if (parse_u64(t + 6, tn - 6, &it->trigger.n))
                return item_error(label, index, s, n, "after:N needs a decimal N >= 0");
        } else if (tn > 2 && !memcmp(t, "p:", 2)) {
            it->trigger.kind = KVFP8_TRIGGER_PROB;
            if (parse_prob(t + 2, tn - 2, &it->trigger.p))
                return item_error(label, index, s, n, "p:P needs a decimal P in [0, 1]");
        } else {
            return item_error(label, index, s, n, "unknown trigger (every, nth:N, after:N, p:P)");
        }
    }
    unsigned mask;
    if (item_mask(it, &mask) != KVFP8_OK) {
        char why[300];
        snprintf(why, sizeof why, "%s", kvfp8_last_error());
        return item_error(label, index, s, n, why);
    }
    out->count++;
    return KVFP8_OK;
}

kvfp8_status kvfp8_fault_plan_parse(const char *text, size_t len, const char *label, kvfp8_fault_plan *out) {
    memset(out, 0, sizeof *out);
    if (!label)
        label = "faults";
    int index = 0;
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && text[j] != ';' && text[j] != '\n')
            j++;
        size_t a = i, b = j;
        while (a < b && is_blank(text[a]))
            a++;
        while (b > a && is_blank(text[b - 1]))
            b--;
        if (b > a) {
            index++;
            if (memchr(text + a, 0, b - a)) {
                memset(out, 0, sizeof *out);
                return kvfp8_fail(KVFP8_ERR_INVALID, "%s: item %d contains a NUL byte", label, index);
            }
            kvfp8_status st = parse_item(text + a, b - a, label, index, out);
            if (st != KVFP8_OK) {
                memset(out, 0, sizeof *out);
                return st;
            }
        }
        i = j + 1;
    }
    return KVFP8_OK;
}

size_t kvfp8_fault_plan_format(const kvfp8_fault_plan *p, char *buf, size_t cap) {
    size_t used = 0;
    char tmp[160];
#define EMIT(...)                                                                                                   \
    do {                                                                                                            \
        int k_ = snprintf(tmp, sizeof tmp, __VA_ARGS__);                                                            \
        if (k_ > 0) {                                                                                               \
            if (used + (size_t)k_ < cap)                                                                            \
                memcpy(buf + used, tmp, (size_t)k_ + 1);                                                            \
            else if (cap > 0 && used < cap)                                                                         \
                buf[used] = 0;                                                                                      \
            used += (size_t)k_;                                                                                     \
        }                                                                                                           \
    } while (0)
    if (cap)
        buf[0] = 0;
    if (p->has_seed)
        EMIT("seed=%llu", (unsigned long long)p->seed);
    for (size_t i = 0; i < p->count; i++) {
        const kvfp8_fault_item *it = &p->items[i];
        if (used)
            EMIT("; ");
        EMIT("%s=%s", it->pattern, kvfp8_fault_action_name(it->action));
        switch (it->trigger.kind) {
        case KVFP8_TRIGGER_EVERY: EMIT("@every"); break;
        case KVFP8_TRIGGER_NTH: EMIT("@nth:%llu", (unsigned long long)it->trigger.n); break;
        case KVFP8_TRIGGER_AFTER: EMIT("@after:%llu", (unsigned long long)it->trigger.n); break;
        case KVFP8_TRIGGER_PROB: EMIT("@p:%.17g", it->trigger.p); break;
        }
    }
#undef EMIT
    return used;
}
