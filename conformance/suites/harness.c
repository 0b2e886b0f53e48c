/* The child side of the conformance runner: open the backend, run one cmocka test,
 * report on the result descriptor, exit with the protocol's status
 * (include/kvfp8/conform.h).  Also the helpers every suite shares. */
#include "conform_suite.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static kvfp8_backend g_backend;
static int g_fd = -1;
static size_t g_failures, g_lines;
static int g_not_supported;
static int g_have_ratio;
static double g_max_ratio;
static unsigned long g_hist[KVFP8_CONFORM_HIST_BINS];

/* One tagged line on the result descriptor (stderr when run by hand). */
static void channel(const char *tag, const char *text) {
    char line[1200];
    int n = snprintf(line, sizeof line, "%s %s", tag, text);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2;
    for (int i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    if (g_fd < 0) {
        fprintf(stderr, "# %.*s", n, line);
        return;
    }
    for (int off = 0; off < n;) {
        ssize_t w = write(g_fd, line + off, (size_t)(n - off));
        if (w <= 0)
            return;
        off += (int)w;
    }
}

static void vchannel(const char *tag, const char *fmt, va_list ap) {
    char text[1100];
    vsnprintf(text, sizeof text, fmt, ap);
    channel(tag, text);
}

kvfp8_backend *kvfp8_conform_backend(void) { return &g_backend; }

int kvfp8_conform_claims(const kvfp8_backend_query *q) {
    return g_backend.ops->supports(g_backend.state, q) == KVFP8_OK;
}

void kvfp8_conform_not_supported(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vchannel("not_supported", fmt, ap);
    va_end(ap);
    g_not_supported = 1;
    skip();
}

void kvfp8_conform_failure(const char *fmt, ...) {
    g_failures++;
    if (g_lines >= KVFP8_CONFORM_MAX_LINES)
        return;
    g_lines++;
    va_list ap;
    va_start(ap, fmt);
    vchannel("failure", fmt, ap);
    va_end(ap);
}

size_t kvfp8_conform_failure_count(void) { return g_failures; }

void kvfp8_conform_check_failures(void) {
    if (g_failures)
        fail_msg("%zu mismatches against the reference (the first %zu are listed as failure lines)", g_failures,
                 g_lines);
}

void kvfp8_conform_expect_ok(kvfp8_status st, const char *what) {
    if (st == KVFP8_OK)
        return;
    kvfp8_conform_failure("%s => %s (%s), expected ok", what, kvfp8_status_name(st), kvfp8_last_error());
    fail_msg("%s failed: %s", what, kvfp8_last_error());
}

void kvfp8_conform_detail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vchannel("detail", fmt, ap);
    va_end(ap);
}

void kvfp8_conform_metric(const char *key, double value) {
    char text[200];
    snprintf(text, sizeof text, "%s %.9g", key, value);
    channel("metric", text);
}

void kvfp8_conform_ratio(double ratio) {
    if (!(ratio == ratio))
        ratio = INFINITY; /* a NaN output is as far off as it gets */
    g_hist[kvfp8_conform_hist_bin(ratio)]++;
    if (!g_have_ratio || ratio > g_max_ratio)
        g_max_ratio = ratio;
    g_have_ratio = 1;
}

static void flush_ratios(void) {
    if (g_failures)
        kvfp8_conform_metric("failures", (double)g_failures);
    if (!g_have_ratio)
        return;
    kvfp8_conform_metric("max_ratio", g_max_ratio);
    char text[400];
    size_t n = 0;
    for (int b = 0; b < KVFP8_CONFORM_HIST_BINS; b++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%s%lu", b ? " " : "", g_hist[b]);
    channel("hist", text);
}

/* ---- running one test ------------------------------------------------------------------ */

static void trampoline(void **state) {
    const kvfp8_conform_test *t = *state;
    /* cmocka catches SIGSEGV and friends and reports a plain failure.  A backend that
     * crashes must be seen as a CRASH by the runner, so the default actions come back
     * for the test body (the parent classifies the signal). */
    static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT};
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
        signal(crash_signals[i], SIG_DFL);
    *state = NULL;
    t->fn(state);
}

static void open_channel(void) {
    const char *fd = getenv(KVFP8_CONFORM_FD_ENV);
    g_fd = fd && *fd ? atoi(fd) : -1;
    setvbuf(stdout, NULL, _IONBF, 0); /* nothing lost in a buffer when the test crashes */
}

static int load(const char *backend) {
    kvfp8_status st = kvfp8_backend_load(backend, &g_backend);
    if (st == KVFP8_OK)
        return KVFP8_CONFORM_EXIT_PASS;
    channel(st == KVFP8_ERR_UNSUPPORTED ? "not_supported" : "failure", kvfp8_last_error());
    return st == KVFP8_ERR_UNSUPPORTED ? KVFP8_CONFORM_EXIT_NOT_SUPPORTED : KVFP8_CONFORM_EXIT_LOAD_ERROR;
}

int kvfp8_conform_run_one(const kvfp8_conform_test *t, const char *backend) {
    open_channel();
    int rc = load(backend);
    if (rc != KVFP8_CONFORM_EXIT_PASS)
        return rc;
    char id[160];
    kvfp8_conform_test_id(t, id, sizeof id);
    struct CMUnitTest one[1] = {{id, trampoline, NULL, NULL, (void *)t}};
    cmocka_set_message_output(CM_OUTPUT_STDOUT);
    const int failed = _cmocka_run_group_tests(t->suite, one, 1, NULL, NULL);
    flush_ratios();
    kvfp8_backend_close(&g_backend);
    if (g_not_supported)
        return KVFP8_CONFORM_EXIT_NOT_SUPPORTED;
    return failed || g_failures ? KVFP8_CONFORM_EXIT_FAIL : KVFP8_CONFORM_EXIT_PASS;
}

/* ---- the probe: what the backend claims, for the report's capability table ------ */

static void claims_line(const char *op, const char *what, int claimed, int asked) {
    char text[600];
    snprintf(text, sizeof text, "claims %s %s: %d of %d", op, what, claimed, asked);
    channel("detail", text);
}

int kvfp8_conform_probe(const char *backend) {
    open_channel();
    int rc = load(backend);
    if (rc != KVFP8_CONFORM_EXIT_PASS)
        return rc;
    char text[300];
    snprintf(text, sizeof text, "name %s", g_backend.ops->name ? g_backend.ops->name : "(unnamed)");
    channel("detail", text);
    kvfp8_backend_query q;
    for (int f = 0; f < KVFP8_FORMAT_COUNT; f++) {
        int tables = 0, claimed = 0, decode = 0;
        kvfp8_fp8_rules r;
        for (int i = 0; kvfp8_conform_rules_at(i, &r); i++) {
            if ((int)r.format != f)
                continue;
            for (int s = 0; s < KVFP8_SOURCE_COUNT; s++) {
                memset(&q, 0, sizeof q);
                q.op = KVFP8_OP_FP8_ENCODE, q.fp8 = r, q.source = (kvfp8_source)s;
                tables++;
                claimed += kvfp8_conform_claims(&q);
            }
            if (!decode) {
                memset(&q, 0, sizeof q);
                q.op = KVFP8_OP_FP8_DECODE, q.fp8 = r;
                decode = 1 + kvfp8_conform_claims(&q);
            }
        }
        snprintf(text, sizeof text, "%s (rules table x source)", kvfp8_format_name((kvfp8_format)f));
        claims_line("fp8_encode", text, claimed, tables);
        claims_line("fp8_decode", kvfp8_format_name((kvfp8_format)f), decode == 2, 1);
    }
    for (int rd = 0; rd < KVFP8_READ_COUNT; rd++) {
        kvfp8_fp8_rules r;
        kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &r);
        memset(&q, 0, sizeof q);
        q.op = KVFP8_OP_PAGED_ATTENTION, q.storage.is_fp8 = 1, q.storage.fp8 = r, q.fp8 = r;
        q.read = (kvfp8_read_semantics)rd, q.model_dtype = KVFP8_DTYPE_BF16, q.head_size = 128, q.block_size = 16;
        q.max_query_len = 16, q.chunked_prefill = 1, q.num_q_heads = 8, q.num_kv_heads = 2, q.per_head_scales = 1;
        snprintf(text, sizeof text, "read %s (e4m3fn cache, bf16 model, head 128, block 16, chunked prefill)",
                 kvfp8_read_semantics_name((kvfp8_read_semantics)rd));
        claims_line("paged_attention", text, kvfp8_conform_claims(&q), 1);
    }
    for (int a = 0; a < KVFP8_HASH_ALGO_COUNT; a++) {
        memset(&q, 0, sizeof q);
        q.op = KVFP8_OP_BLOCK_HASH, q.hash_algo = (kvfp8_hash_algo)a;
        claims_line("block_hash", kvfp8_hash_algo_name((kvfp8_hash_algo)a), kvfp8_conform_claims(&q), 1);
    }
    memset(&q, 0, sizeof q);
    q.op = KVFP8_OP_DEVICE_TIMING;
    claims_line("device_timing", "timing", kvfp8_conform_claims(&q), 1);
    kvfp8_backend_close(&g_backend);
    return KVFP8_CONFORM_EXIT_PASS;
}

/* ---- shared helpers --------------------------------------------------------------------- */

uint64_t kvfp8_conform_rand(uint64_t *s) {
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float kvfp8_conform_frand(uint64_t *s, float scale) {
    return scale * ((float)(kvfp8_conform_rand(s) >> 40) / (float)(1 << 24) * 2.0f - 1.0f);
}

int kvfp8_conform_rules_at(int index, kvfp8_fp8_rules *out) {
    int seen = 0;
    for (int f = 0; f < KVFP8_FORMAT_COUNT; f++)
        for (int m = 0; m < KVFP8_MODE_COUNT; m++)
            for (int p = 0; p < KVFP8_PROFILE_COUNT; p++)
                if (kvfp8_fp8_rules_get((kvfp8_format)f, (kvfp8_mode)m, (kvfp8_profile)p, out) == KVFP8_OK &&
                    seen++ == index)
                    return 1;
    return 0;
}

const char *kvfp8_conform_rules_label(const kvfp8_fp8_rules *r, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s/%s", kvfp8_format_name(r->format), kvfp8_mode_name(r->mode),
             kvfp8_profile_name(r->profile));
    return buf;
}

uint32_t kvfp8_conform_f32_bits(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    return b;
}

float kvfp8_conform_f32(uint32_t bits) {
    float x;
    memcpy(&x, &bits, 4);
    return x;
}

int kvfp8_conform_same_float(float a, float b) {
    if (a != a || b != b)
        return a != a && b != b;
    return kvfp8_conform_f32_bits(a) == kvfp8_conform_f32_bits(b);
}
