/* Tests of the optimized CPU FP8 paths (cpu/) against the scalar reference (ref/).
 *
 * The reference is the specification, so every test computes the reference's
 * answer and requires every available path to give the same byte (or float bits)
 * for every input:
 *   - all 2^32 float32 inputs, every path, for E4M3FN and E5M2 x SAT and NONSAT
 *     under the nvidia and ocp profiles (threads; KVFP8_QUICK=1 samples 1/4096);
 *   - all 65536 f16 and all 65536 bf16 inputs, every path, every rules table that
 *     kvfp8_fp8_rules_get accepts, several scales (exact multiply, division, the
 *     half-rounded quotient of the HIP profiles, subnormal and huge scales);
 *   - float32 inputs with scales (a fixed sample plus values next to every tie);
 *   - decoding of all 256 codes with scales, NaN compared by bits;
 *   - forcing, the environment variable, and bad arguments.
 * A mismatch prints one TestFloat-style line with the input, the table, the path,
 * and the observed and expected results. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvfp8/fp8.h"
#include "kvfp8/fp8_cpu.h"
#include "../cpu/fp8_impl.h"

/* ---- shared helpers ---------------------------------------------------------------- */

static kvfp8_cpu_impl paths[KVFP8_CPU_IMPL_COUNT];
static int npaths;

static float f32_of(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint32_t bits_of(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Which variable asked for the sampled run, or NULL for the full one.  The
 * sanitizer build sets KVFP8_SANITIZE: instrumented, the full space takes hours. */
static const char *quick_reason(void) {
    const char *q = getenv("KVFP8_QUICK");
    if (q && !strcmp(q, "1"))
        return "KVFP8_QUICK";
    const char *s = getenv("KVFP8_SANITIZE");
    if (s && !strcmp(s, "1"))
        return "KVFP8_SANITIZE";
    return NULL;
}

static int find_paths(void **state) {
    (void)state;
    npaths = 0;
    for (int i = KVFP8_CPU_PORTABLE; i < KVFP8_CPU_IMPL_COUNT; i++) {
        if (kvfp8_cpu_impl_available((kvfp8_cpu_impl)i))
            paths[npaths++] = (kvfp8_cpu_impl)i;
        else
            printf("note: path %s is not available on this CPU; not tested\n",
                   kvfp8_cpu_impl_name((kvfp8_cpu_impl)i));
    }
    printf("paths under test:");
    for (int i = 0; i < npaths; i++)
        printf(" %s", kvfp8_cpu_impl_name(paths[i]));
    printf(" (active by default: %s)\n", kvfp8_cpu_impl_name(kvfp8_cpu_impl_active()));
    return 0;
}

static const char *path_name(kvfp8_cpu_impl p) { return kvfp8_cpu_impl_name(p); }

static void rules_desc(const kvfp8_fp8_rules *r, char *buf, size_t len) {
    snprintf(buf, len, "fmt=%s mode=%s profile=%s", kvfp8_format_name(r->format),
             kvfp8_mode_name(r->mode), kvfp8_profile_name(r->profile));
}

/* Every rules table kvfp8_fp8_rules_get accepts; the rejected ones are named. */
static int all_tables(kvfp8_fp8_rules *out, int max, int verbose) {
    int n = 0;
    for (int p = 0; p < KVFP8_PROFILE_COUNT; p++)
        for (int f = 0; f < KVFP8_FORMAT_COUNT; f++)
            for (int m = 0; m < KVFP8_MODE_COUNT; m++) {
                kvfp8_fp8_rules r;
                if (kvfp8_fp8_rules_get((kvfp8_format)f, (kvfp8_mode)m, (kvfp8_profile)p, &r) !=
                    KVFP8_OK) {
                    if (verbose)
                        printf("note: skipping fmt=%s mode=%s profile=%s: %s\n",
                               kvfp8_format_name((kvfp8_format)f), kvfp8_mode_name((kvfp8_mode)m),
                               kvfp8_profile_name((kvfp8_profile)p), kvfp8_last_error());
                    continue;
                }
                if (n < max)
                    out[n++] = r;
            }
    return n;
}

/* Scales: 1 (no division), powers of two (the exact-multiply substitute), plain
 * divisions, 1/448 (a KV cache's typical amax/448), a subnormal scale, huge ones
 * (quotients that underflow), 1e-8 (quotients that overflow the half rounding of
 * the HIP profiles), and scales that barely miss 1 and a power of two. */
#define NSCALES 15
static float scales[NSCALES];
static void init_scales(void) {
    const float s[NSCALES] = {1.0f,     0.5f,    3.0f,     1.0f / 448.0f, 1e-3f,
                              17.25f,   0.0f,    0x1p-20f, 0x1p100f,      65520.0f,
                              1e-8f,    3e38f,   0x1p126f, 1.0001f,       0.50001f};
    memcpy(scales, s, sizeof s);
    scales[6] = f32_of(0x00012345u); /* subnormal, about 1.04e-40 */
}

/* ---- (a) every float32 input ------------------------------------------------------- */

#define UNIT 65536u /* inputs per work item */

typedef struct {
    kvfp8_fp8_rules rules[8];
    int nrules;
    int quick;
    unsigned units;
    unsigned next;   /* next work item; atomic */
    unsigned done;   /* work items finished; atomic */
    double t0;
    int failed;      /* atomic */
    pthread_mutex_t print_lock;
} exhaustive_job;

/* KVFP8_QUICK: one input in each aligned block of 4096, at an offset that moves
 * from block to block (Fibonacci hashing), so every exponent, sign and top
 * mantissa pattern is seen with varying low bits. */
static uint32_t quick_input(uint32_t k) { return (k << 12) | ((k * 2654435761u) >> 20); }

static void *exhaustive_worker(void *arg) {
    exhaustive_job *job = arg;
    float *in = malloc(UNIT * sizeof *in);
    uint8_t *ref = malloc(UNIT), *out = malloc(UNIT);
    if (!in || !ref || !out) {
        __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
        goto done;
    }
    for (;;) {
        if (__atomic_load_n(&job->failed, __ATOMIC_RELAXED))
            break;
        const unsigned u = __atomic_fetch_add(&job->next, 1u, __ATOMIC_RELAXED);
        if (u >= job->units)
            break;
        for (uint32_t i = 0; i < UNIT; i++)
            in[i] = f32_of(job->quick ? quick_input(u * UNIT + i) : (u << 16) | i);
        for (int t = 0; t < job->nrules; t++) {
            const kvfp8_fp8_rules *r = &job->rules[t];
            /* the reference once per input; every path is compared with it */
            for (uint32_t i = 0; i < UNIT; i++)
                ref[i] = kvfp8_fp8_encode_f32_ref(r, in[i]);
            for (int p = 0; p < npaths; p++) {
                /* two calls, so that the vector loop, its remainder and the
                 * portable tail all run */
                const size_t head = UNIT - 13;
                kvfp8_status s1 = kvfp8_fp8_encode_buffer_on(paths[p], r, KVFP8_SRC_F32, in, out,
                                                             head, 1.0f);
                kvfp8_status s2 = kvfp8_fp8_encode_buffer_on(paths[p], r, KVFP8_SRC_F32, in + head,
                                                             out + head, UNIT - head, 1.0f);
                if (s1 != KVFP8_OK || s2 != KVFP8_OK || memcmp(out, ref, UNIT) != 0) {
                    uint32_t i = 0;
                    while (i < UNIT - 1 && out[i] == ref[i])
                        i++;
                    char desc[128];
                    rules_desc(r, desc, sizeof desc);
                    pthread_mutex_lock(&job->print_lock);
                    if (!__atomic_exchange_n(&job->failed, 1, __ATOMIC_RELAXED))
                        printf("encode f32 0x%08x (%a) %s path=%s: observed 0x%02x expected "
                               "0x%02x (status %s)\n",
                               bits_of(in[i]), (double)in[i], desc, path_name(paths[p]), out[i],
                               ref[i], kvfp8_status_name(s1 != KVFP8_OK ? s1 : s2));
                    fflush(stdout);
                    pthread_mutex_unlock(&job->print_lock);
                    goto done;
                }
            }
        }
        /* a line per tenth, so a multi-minute run is visibly alive */
        const uint64_t d = __atomic_add_fetch(&job->done, 1u, __ATOMIC_RELAXED);
        const unsigned tenth = (unsigned)(d * 10 / job->units);
        if (tenth != (unsigned)((d - 1) * 10 / job->units)) {
            pthread_mutex_lock(&job->print_lock);
            printf("f32: %u%% (%.0f s)\n", tenth * 10, now_s() - job->t0);
            pthread_mutex_unlock(&job->print_lock);
        }
    }
done:
    free(in);
    free(ref);
    free(out);
    return NULL;
}

static void test_f32_every_input(void **state) {
    (void)state;
    exhaustive_job job;
    memset(&job, 0, sizeof job);
    pthread_mutex_init(&job.print_lock, NULL);
    const kvfp8_profile profiles[2] = {KVFP8_PROFILE_NVIDIA, KVFP8_PROFILE_OCP};
    const kvfp8_format formats[2] = {KVFP8_E4M3FN, KVFP8_E5M2};
    for (int p = 0; p < 2; p++)
        for (int f = 0; f < 2; f++)
            for (int m = 0; m < KVFP8_MODE_COUNT; m++)
                assert_int_equal(kvfp8_fp8_rules_get(formats[f], (kvfp8_mode)m, profiles[p],
                                                     &job.rules[job.nrules++]),
                                 KVFP8_OK);
    const char *why = quick_reason();
    job.quick = why != NULL;
    job.units = job.quick ? (1u << 20) / UNIT : (uint32_t)((1ull << 32) / UNIT);
    long nthreads = sysconf(_SC_NPROCESSORS_ONLN);
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > 64)
        nthreads = 64;
    if (job.quick)
        printf("f32: sampled 1/4096 of the float32 space (%s=1): %u inputs\n", why,
               job.units * UNIT);
    else
        printf("f32: all 2^32 float32 inputs (set KVFP8_QUICK=1 for a 1/4096 sample)\n");
    printf("f32: %d tables (nvidia, ocp x e4m3fn, e5m2 x sat, nonsat) x %d paths, %ld threads\n",
           job.nrules, npaths, nthreads);
    fflush(stdout);
    const double t0 = now_s();
    job.t0 = t0;
    pthread_t tid[64];
    for (long i = 0; i < nthreads; i++)
        assert_int_equal(pthread_create(&tid[i], NULL, exhaustive_worker, &job), 0);
    for (long i = 0; i < nthreads; i++)
        pthread_join(tid[i], NULL);
    printf("f32: %s in %.1f s\n", job.failed ? "FAILED" : "all equal to the reference",
           now_s() - t0);
    pthread_mutex_destroy(&job.print_lock);
    assert_false(job.failed);
}

/* ---- (b) every f16 and bf16 input, every table, several scales -------------------- */

/* Runs one source buffer through every path (forced through the public API, so the
 * dispatcher is exercised too) and compares with `expected`; then a misaligned,
 * odd-length slice of it, so that every kernel's remainder and tail run.  Prints
 * the first mismatch and returns 0 there. */
static int check_paths(const kvfp8_fp8_rules *r, kvfp8_source src, const void *in,
                       size_t n, float scale, const uint8_t *expected, uint8_t *out) {
    const size_t width = src == KVFP8_SRC_F32 ? 4 : 2;
    const size_t off = n > 8 ? 3 : 0, len = n - off > 1001 ? 1001 : n - off;
    uint8_t slice[1001];
    for (int p = 0; p < npaths; p++) {
        assert_int_equal(kvfp8_cpu_impl_force(paths[p]), KVFP8_OK);
        assert_int_equal(kvfp8_cpu_impl_active(), paths[p]);
        memset(out, 0xA5, n);
        memset(slice, 0xA5, sizeof slice);
        kvfp8_status s = kvfp8_fp8_encode_buffer(r, src, in, out, n, scale);
        if (s == KVFP8_OK)
            s = kvfp8_fp8_encode_buffer(r, src, (const char *)in + off * width, slice, len, scale);
        size_t bad = n;
        uint8_t seen = 0;
        for (size_t i = 0; i < n && bad == n; i++)
            if (out[i] != expected[i])
                bad = i, seen = out[i];
        for (size_t i = 0; i < len && bad == n; i++)
            if (slice[i] != expected[off + i])
                bad = off + i, seen = slice[i];
        if (s != KVFP8_OK || bad != n) {
            if (bad == n)
                bad = 0, seen = out[0];
            uint32_t xb = 0;
            memcpy(&xb, (const char *)in + bad * width, width);
            char desc[128];
            rules_desc(r, desc, sizeof desc);
            printf("encode %s 0x%0*x %s scale=%a path=%s: observed 0x%02x expected 0x%02x "
                   "(status %s)\n",
                   kvfp8_source_name(src), (int)width * 2, xb, desc, (double)scale,
                   path_name(paths[p]), seen, expected[bad], kvfp8_status_name(s));
            kvfp8_cpu_impl_force(KVFP8_CPU_AUTO);
            return 0;
        }
    }
    kvfp8_cpu_impl_force(KVFP8_CPU_AUTO);
    return 1;
}

static void test_f16_bf16_every_input(void **state) {
    (void)state;
    kvfp8_fp8_rules tables[64];
    const int ntables = all_tables(tables, 64, 1);
    uint16_t *in = malloc(65536 * sizeof *in);
    uint8_t *expected = malloc(65536), *out = malloc(65536);
    assert_non_null(in);
    assert_non_null(expected);
    assert_non_null(out);
    for (uint32_t i = 0; i < 65536; i++)
        in[i] = (uint16_t)i;
    int ok = 1;
    for (int t = 0; t < ntables && ok; t++)
        for (int src = KVFP8_SRC_F16; src <= KVFP8_SRC_BF16 && ok; src++)
            for (int s = 0; s < NSCALES && ok; s++) {
                for (uint32_t i = 0; i < 65536; i++)
                    expected[i] =
                        kvfp8_fp8_encode_scaled_ref(&tables[t], (kvfp8_source)src, i, scales[s]);
                ok = check_paths(&tables[t], (kvfp8_source)src, in, 65536, scales[s], expected,
                                 out);
            }
    printf("f16, bf16: all 65536 inputs x %d tables x %d scales x %d paths%s\n", ntables, NSCALES,
           npaths, ok ? ": all equal to the reference" : ": FAILED");
    free(in);
    free(expected);
    free(out);
    assert_true(ok);
}

/* ---- float32 with scales ----------------------------------------------------------- */

static void test_f32_scaled(void **state) {
    (void)state;
    kvfp8_fp8_rules tables[64];
    const int ntables = all_tables(tables, 64, 0);
    /* 65536 samples: every top-16-bit pattern (sign, exponent, top of the mantissa)
     * with a varying low half; then, per scale, the float32 neighbours (+-3 ulps)
     * of every grid value and every midpoint of both FP8 grids times the scale, so
     * that quotients land on and next to the ties. */
    const size_t nsample = 65536, nprobe = 2 * 256 * 2 * 7;
    float *in = malloc((nsample + nprobe) * sizeof *in);
    uint8_t *expected = malloc(nsample + nprobe), *out = malloc(nsample + nprobe);
    assert_non_null(in);
    assert_non_null(expected);
    assert_non_null(out);
    for (uint32_t k = 0; k < nsample; k++)
        in[k] = f32_of((k << 16) | ((k * 40503u) & 0xFFFFu));
    int ok = 1;
    for (int s = 0; s < NSCALES && ok; s++) {
        size_t n = nsample;
        const kvfp8_format grids[2] = {KVFP8_E4M3FN, KVFP8_E5M2};
        for (int g = 0; g < 2; g++)
            for (uint32_t c = 0; c < 256; c++) {
                const float v = kvfp8_fp8_decode(grids[g], (uint8_t)c);
                const float next = kvfp8_fp8_decode(grids[g], (uint8_t)(c + 1));
                const float pts[2] = {v, (v + next) / 2}; /* exact: one more bit */
                for (int q = 0; q < 2; q++) {
                    const uint32_t b = bits_of(pts[q] * scales[s]);
                    for (int d = -3; d <= 3; d++)
                        in[n++] = f32_of(b + (uint32_t)d);
                }
            }
        for (int t = 0; t < ntables && ok; t++) {
            for (size_t i = 0; i < n; i++)
                expected[i] =
                    kvfp8_fp8_encode_scaled_ref(&tables[t], KVFP8_SRC_F32, bits_of(in[i]), scales[s]);
            ok = check_paths(&tables[t], KVFP8_SRC_F32, in, n, scales[s], expected, out);
        }
    }
    printf("f32 scaled: %zu sampled + %zu tie probes x %d tables x %d scales x %d paths%s\n",
           nsample, nprobe, ntables, NSCALES, npaths, ok ? ": all equal to the reference" : ": FAILED");
    free(in);
    free(expected);
    free(out);
    assert_true(ok);
}

/* ---- (c) decoding ------------------------------------------------------------------ */

static void test_decode_all_codes(void **state) {
    (void)state;
    enum { N = 256 * 3 + 5 };
    uint8_t codes[N];
    float out[N], expected[N];
    for (int i = 0; i < N; i++)
        codes[i] = (uint8_t)(i * 7 + (i >> 8)); /* every code, three times, shuffled */
    int ok = 1;
    for (int f = 0; f < KVFP8_FORMAT_COUNT && ok; f++)
        for (int s = 0; s < NSCALES && ok; s++) {
            for (int i = 0; i < N; i++)
                expected[i] = kvfp8_fp8_decode((kvfp8_format)f, codes[i]) * scales[s];
            for (int p = 0; p < npaths && ok; p++) {
                assert_int_equal(kvfp8_cpu_impl_force(paths[p]), KVFP8_OK);
                /* a misaligned odd-length slice (remainder and tail code), then the
                 * whole buffer */
                const struct {
                    int off, len;
                } runs[2] = {{1, 37}, {0, N}};
                for (int run = 0; run < 2 && ok; run++) {
                    memset(out, 0xA5, sizeof out);
                    const int off = runs[run].off, len = runs[run].len;
                    assert_int_equal(kvfp8_fp8_decode_buffer((kvfp8_format)f, codes + off, out + off,
                                                             (size_t)len, scales[s]),
                                     KVFP8_OK);
                    for (int i = off; i < off + len && ok; i++)
                        if (bits_of(out[i]) != bits_of(expected[i])) {
                            printf("decode 0x%02x fmt=%s scale=%a path=%s: observed 0x%08x (%a) "
                                   "expected 0x%08x (%a)\n",
                                   codes[i], kvfp8_format_name((kvfp8_format)f), (double)scales[s],
                                   path_name(paths[p]), bits_of(out[i]), (double)out[i],
                                   bits_of(expected[i]), (double)expected[i]);
                            ok = 0;
                        }
                }
            }
        }
    kvfp8_cpu_impl_force(KVFP8_CPU_AUTO);
    printf("decode: 256 codes x %d formats x %d scales x %d paths%s\n", KVFP8_FORMAT_COUNT, NSCALES,
           npaths, ok ? ": all equal to the reference, bit for bit" : ": FAILED");
    assert_true(ok);
}

/* ---- (d) forcing and bad arguments ------------------------------------------------- */

static void test_force_unavailable(void **state) {
    (void)state;
    /* On this CPU a path may simply be missing; if not, hide the vector paths (a
     * test hook) to see what a CPU without them gets. */
    for (int i = KVFP8_CPU_AVX2; i < KVFP8_CPU_IMPL_COUNT; i++) {
        const kvfp8_cpu_impl impl = (kvfp8_cpu_impl)i;
        const int had = kvfp8_cpu_impl_available(impl);
        kvfp8_cpu_test_hide(impl, 1);
        assert_false(kvfp8_cpu_impl_available(impl));
        assert_int_equal(kvfp8_cpu_impl_force(impl), KVFP8_ERR_UNSUPPORTED);
        assert_true(strstr(kvfp8_last_error(), kvfp8_cpu_impl_name(impl)) != NULL);
        assert_int_not_equal(kvfp8_cpu_impl_active(), impl);
        kvfp8_fp8_rules r;
        assert_int_equal(kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &r),
                         KVFP8_OK);
        const float x = 1.0f;
        uint8_t c = 0;
        float y = 0;
        assert_int_equal(kvfp8_fp8_encode_buffer_on(impl, &r, KVFP8_SRC_F32, &x, &c, 1, 1.0f),
                         KVFP8_ERR_UNSUPPORTED);
        assert_int_equal(kvfp8_fp8_decode_buffer_on(impl, KVFP8_E4M3FN, &c, &y, 1, 1.0f),
                         KVFP8_ERR_UNSUPPORTED);
        /* the automatic choice still works, on some other path */
        assert_int_equal(kvfp8_fp8_encode_buffer(&r, KVFP8_SRC_F32, &x, &c, 1, 1.0f), KVFP8_OK);
        assert_int_equal(c, 0x38);
        kvfp8_cpu_test_hide(impl, 0);
        assert_int_equal(kvfp8_cpu_impl_available(impl), had);
    }
    /* the portable path is always there, AUTO restores the default, junk is invalid */
    assert_true(kvfp8_cpu_impl_available(KVFP8_CPU_PORTABLE));
    assert_int_equal(kvfp8_cpu_impl_force(KVFP8_CPU_PORTABLE), KVFP8_OK);
    assert_int_equal(kvfp8_cpu_impl_active(), KVFP8_CPU_PORTABLE);
    assert_int_equal(kvfp8_cpu_impl_force(KVFP8_CPU_AUTO), KVFP8_OK);
    assert_int_equal(kvfp8_cpu_impl_force((kvfp8_cpu_impl)99), KVFP8_ERR_INVALID);
    assert_false(kvfp8_cpu_impl_available((kvfp8_cpu_impl)99));
    kvfp8_cpu_impl parsed;
    for (int i = 0; i < KVFP8_CPU_IMPL_COUNT; i++) {
        assert_int_equal(kvfp8_cpu_impl_parse(kvfp8_cpu_impl_name((kvfp8_cpu_impl)i), &parsed),
                         KVFP8_OK);
        assert_int_equal(parsed, i);
    }
    assert_int_equal(kvfp8_cpu_impl_parse("sse9", &parsed), KVFP8_ERR_INVALID);
}

static void test_bad_arguments(void **state) {
    (void)state;
    kvfp8_fp8_rules r;
    assert_int_equal(kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &r),
                     KVFP8_OK);
    const float bad[] = {0.0f, -0.0f, -1.0f, -INFINITY, INFINITY, NAN, -NAN, f32_of(0x80000001u)};
    const float x[4] = {1, 2, 3, 4};
    uint8_t c[4] = {0};
    float y[4];
    for (int p = 0; p < npaths; p++)
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            assert_int_equal(kvfp8_fp8_encode_buffer_on(paths[p], &r, KVFP8_SRC_F32, x, c, 4, bad[i]),
                             KVFP8_ERR_INVALID);
            assert_int_equal(kvfp8_fp8_decode_buffer_on(paths[p], KVFP8_E4M3FN, c, y, 4, bad[i]),
                             KVFP8_ERR_INVALID);
        }
    assert_int_equal(kvfp8_fp8_encode_buffer(&r, KVFP8_SRC_F32, x, c, 4, 0.0f), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_fp8_decode_buffer(KVFP8_E4M3FN, c, y, 4, NAN), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_fp8_encode_buffer(NULL, KVFP8_SRC_F32, x, c, 4, 1.0f), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_fp8_encode_buffer(&r, (kvfp8_source)7, x, c, 4, 1.0f), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_fp8_encode_buffer(&r, KVFP8_SRC_F32, NULL, c, 4, 1.0f), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_fp8_decode_buffer((kvfp8_format)9, c, y, 4, 1.0f), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_fp8_decode_buffer(KVFP8_E4M3FN, c, NULL, 4, 1.0f), KVFP8_ERR_INVALID);
    /* n == 0 needs no buffers */
    assert_int_equal(kvfp8_fp8_encode_buffer(&r, KVFP8_SRC_F16, NULL, NULL, 0, 1.0f), KVFP8_OK);
    assert_int_equal(kvfp8_fp8_decode_buffer(KVFP8_E5M2, NULL, NULL, 0, 2.0f), KVFP8_OK);
    /* a rules table the kernels cannot represent is refused, not misencoded */
    kvfp8_fp8_rules odd = r;
    odd.mantissa_bits = 4;
    assert_int_equal(kvfp8_fp8_encode_buffer(&odd, KVFP8_SRC_F32, x, c, 4, 1.0f), KVFP8_ERR_INVALID);
    odd = r;
    odd.max_value = INFINITY;
    assert_int_equal(kvfp8_fp8_encode_buffer(&odd, KVFP8_SRC_F32, x, c, 4, 1.0f), KVFP8_ERR_INVALID);
}

/* KVFP8_CPU_IMPL is read once per process, so it is checked in child processes:
 * this binary re-run with --print-active-path prints the path it would take. */
static char self_path[4096];

static void run_child(const char *env_value, char *out, size_t len) {
    char cmd[4096 + 128];
    snprintf(cmd, sizeof cmd, "KVFP8_CPU_IMPL='%s' '%s' --print-active-path 2>&1", env_value,
             self_path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t got = fread(out, 1, len - 1, f);
    out[got] = 0;
    assert_int_equal(pclose(f), 0);
}

static void test_environment_variable(void **state) {
    (void)state;
    char buf[512];
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0) {
        printf("note: /proc/self/exe unreadable; KVFP8_CPU_IMPL not tested\n");
        skip();
    }
    self_path[n] = 0;
    for (int p = 0; p < npaths; p++) {
        run_child(path_name(paths[p]), buf, sizeof buf);
        char want[64];
        snprintf(want, sizeof want, "active=%s\n", path_name(paths[p]));
        assert_string_equal(buf, want);
    }
    run_child("auto", buf, sizeof buf);
    assert_true(strstr(buf, "active=") != NULL && strstr(buf, "kvfp8:") == NULL);
    /* junk is reported on stderr, once, and the default path is used */
    run_child("sse9", buf, sizeof buf);
    assert_true(strstr(buf, "KVFP8_CPU_IMPL=sse9") != NULL);
    assert_true(strstr(buf, "active=") != NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--print-active-path")) {
        printf("active=%s\n", kvfp8_cpu_impl_name(kvfp8_cpu_impl_active()));
        return 0;
    }
    /* Line-buffered: cmocka writes some lines to stderr, and a fully buffered stdout
     * split mid-line would glue them to ours, out of reach of the runner's greps. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    init_scales();
    const int quick = quick_reason() != NULL;
    /* The test's name says which f32 run it is, so a sampled run is never mistaken
     * for the exhaustive one in a CI log. */
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_force_unavailable),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_environment_variable),
        cmocka_unit_test(test_decode_all_codes),
        cmocka_unit_test(test_f16_bf16_every_input),
        cmocka_unit_test(test_f32_scaled),
        cmocka_unit_test(test_f32_every_input),
    };
    static char f32_name[96];
    if (quick)
        snprintf(f32_name, sizeof f32_name, "test_f32_sampled_1_in_4096_%s", quick_reason());
    tests[6].name = quick ? f32_name : "test_f32_all_2^32_inputs";
    return cmocka_run_group_tests_name("fp8_cpu", tests, find_paths, NULL);
}
