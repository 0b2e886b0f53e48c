/* kvfp8 — FP8 conversion throughput on one core: the scalar reference and every
 * available CPU path, in the same run, on the same data.
 *
 * Honesty rules: buffers of 16M values (far beyond the caches), rotated so that
 * no pass reads what the previous one left in cache; every path's output is
 * compared with the reference's before it is timed (a wrong fast path is not a
 * fast path); the figure is the median of the timed passes, single thread, in
 * thread CPU time.
 * Prints a markdown table (date, CPU model, compiler) for bench/results/. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvfp8/fp8.h"
#include "kvfp8/fp8_cpu.h"

#define NVALUES (16u << 20) /* per buffer */
#define NBUF 3              /* rotated input/output buffers */
#define SMALL (32u << 10)   /* the cache-resident size: 3 x (128 KB + 32 KB) fits L2 */

/* Thread CPU time: the benchmark machine is shared, and time spent descheduled is
 * not time the conversion took on the core. */
static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Roughly what a K/V projection looks like: Gaussian with a spread of magnitudes
 * (sigma 0.05 .. 50), so that subnormal, normal and saturating codes all occur. */
static float sample_value(void) {
    const double u1 = ((double)(rng() >> 11) + 1.0) / 9007199254740993.0;
    const double u2 = (double)(rng() >> 11) / 9007199254740992.0;
    const double g = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    const double sigma = 0.05 * pow(1000.0, (double)(rng() % 1024) / 1023.0);
    return (float)(g * sigma);
}

typedef enum { OP_ENC_F32, OP_ENC_F32_SCALED, OP_ENC_F16, OP_ENC_BF16, OP_DEC, OP_DEC_SCALED } op_kind;

static const struct {
    op_kind kind;
    const char *label;
    kvfp8_source src;
    float scale;
} ops[] = {
    {OP_ENC_F32, "encode f32 -> e4m3fn sat", KVFP8_SRC_F32, 1.0f},
    {OP_ENC_F32_SCALED, "encode f32 / 0.0123 -> e4m3fn sat", KVFP8_SRC_F32, 0.0123f},
    {OP_ENC_F16, "encode f16 -> e4m3fn sat", KVFP8_SRC_F16, 1.0f},
    {OP_ENC_BF16, "encode bf16 -> e4m3fn sat", KVFP8_SRC_BF16, 1.0f},
    {OP_DEC, "decode e4m3fn -> f32", KVFP8_SRC_F32, 1.0f},
    {OP_DEC_SCALED, "decode e4m3fn * 0.0123 -> f32", KVFP8_SRC_F32, 0.0123f},
};
#define NOPS (sizeof ops / sizeof ops[0])

static float *f32_in[NBUF];
static uint16_t *f16_in[NBUF], *bf16_in[NBUF];
static uint8_t *codes[NBUF], *enc_out[NBUF], *enc_ref[NBUF];
static float *dec_out[NBUF], *dec_ref[NBUF];
static kvfp8_fp8_rules rules;

/* path -1 is the scalar reference; n values of buffer b */
static void run_once(size_t o, int path, int b, size_t n) {
    const kvfp8_source src = ops[o].src;
    const float scale = ops[o].scale;
    const void *in = src == KVFP8_SRC_F32 ? (const void *)f32_in[b]
                     : src == KVFP8_SRC_F16 ? (const void *)f16_in[b] : (const void *)bf16_in[b];
    const int decode = ops[o].kind == OP_DEC || ops[o].kind == OP_DEC_SCALED;
    if (path < 0) {
        if (decode) {
            float *out = dec_out[b];
            for (size_t i = 0; i < n; i++)
                out[i] = kvfp8_fp8_dequant(KVFP8_E4M3FN, codes[b][i], scale);
        } else {
            uint8_t *out = enc_out[b];
            switch (ops[o].kind) {
            case OP_ENC_F32:
                for (size_t i = 0; i < n; i++)
                    out[i] = kvfp8_fp8_encode_f32_ref(&rules, f32_in[b][i]);
                break;
            case OP_ENC_F16:
                for (size_t i = 0; i < n; i++)
                    out[i] = kvfp8_fp8_encode_f16_ref(&rules, f16_in[b][i]);
                break;
            case OP_ENC_BF16:
                for (size_t i = 0; i < n; i++)
                    out[i] = kvfp8_fp8_encode_bf16_ref(&rules, bf16_in[b][i]);
                break;
            default:
                for (size_t i = 0; i < n; i++) {
                    uint32_t bits;
                    memcpy(&bits, &f32_in[b][i], sizeof bits);
                    out[i] = kvfp8_fp8_encode_scaled_ref(&rules, KVFP8_SRC_F32, bits, scale);
                }
            }
        }
        return;
    }
    kvfp8_status st = kvfp8_cpu_impl_force((kvfp8_cpu_impl)path);
    if (st == KVFP8_OK)
        st = decode ? kvfp8_fp8_decode_buffer(KVFP8_E4M3FN, codes[b], dec_out[b], n, scale)
                    : kvfp8_fp8_encode_buffer(&rules, src, in, enc_out[b], n, scale);
    if (st != KVFP8_OK) {
        fprintf(stderr, "bench_fp8: %s on %s: %s\n", ops[o].label,
                kvfp8_cpu_impl_name((kvfp8_cpu_impl)path), kvfp8_last_error());
        exit(1);
    }
}

/* The reference's answer for buffer 0, then each path's, compared bit for bit. */
static int verify(size_t o, int path) {
    const int decode = ops[o].kind == OP_DEC || ops[o].kind == OP_DEC_SCALED;
    run_once(o, path, 0, NVALUES);
    if (path < 0) {
        if (decode)
            memcpy(dec_ref[0], dec_out[0], NVALUES * sizeof(float));
        else
            memcpy(enc_ref[0], enc_out[0], NVALUES);
        return 1;
    }
    return decode ? !memcmp(dec_ref[0], dec_out[0], NVALUES * sizeof(float))
                  : !memcmp(enc_ref[0], enc_out[0], NVALUES);
}

/* Median values/s over timed passes (at least 3, and at least min_s seconds) of
 * `len` values per call; a pass is enough calls for 4M values, each call on the
 * next buffer. */
static double measure(size_t o, int path, double min_s, size_t len) {
    double rates[64];
    int n = 0;
    const size_t calls = len >= (4u << 20) ? 1 : (4u << 20) / len;
    const double start = now_s();
    run_once(o, path, 1, len); /* warm-up: page faults, caches, frequency */
    while (n < 64 && (n < 3 || now_s() - start < min_s)) {
        const double t0 = now_s();
        for (size_t c = 0; c < calls; c++)
            run_once(o, path, (int)((n * calls + c) % NBUF), len);
        rates[n++] = (double)(calls * len) / (now_s() - t0);
    }
    qsort(rates, (size_t)n, sizeof rates[0], cmp_double);
    return rates[n / 2];
}

static void cpu_model(char *buf, size_t len) {
    snprintf(buf, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            const char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ')
                    c++;
                snprintf(buf, len, "%s", c);
                buf[strcspn(buf, "\n")] = 0;
            }
            break;
        }
    }
    fclose(f);
}

int main(void) {
    if (kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &rules) != KVFP8_OK) {
        fprintf(stderr, "bench_fp8: %s\n", kvfp8_last_error());
        return 1;
    }
    for (int b = 0; b < NBUF; b++) {
        f32_in[b] = malloc(NVALUES * sizeof(float));
        f16_in[b] = malloc(NVALUES * sizeof(uint16_t));
        bf16_in[b] = malloc(NVALUES * sizeof(uint16_t));
        codes[b] = malloc(NVALUES);
        enc_out[b] = malloc(NVALUES);
        enc_ref[b] = malloc(NVALUES);
        dec_out[b] = malloc(NVALUES * sizeof(float));
        dec_ref[b] = malloc(NVALUES * sizeof(float));
        if (!f32_in[b] || !f16_in[b] || !bf16_in[b] || !codes[b] || !enc_out[b] || !enc_ref[b] ||
            !dec_out[b] || !dec_ref[b]) {
            fprintf(stderr, "bench_fp8: out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < NVALUES; i++) {
            const float x = sample_value();
            f32_in[b][i] = x;
            f16_in[b][i] = kvfp8_f32_to_f16(x);
            bf16_in[b][i] = kvfp8_f32_to_bf16(x);
            codes[b][i] = (uint8_t)rng(); /* every code, NaN included */
        }
    }

    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    char date[32];
    const time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&t));
    printf("## kvfp8 FP8 CPU conversion, one core\n\n");
    printf("- date: %s\n- CPU: %s (paths available:", date, cpu);
    for (int p = KVFP8_CPU_PORTABLE; p < KVFP8_CPU_IMPL_COUNT; p++)
        if (kvfp8_cpu_impl_available((kvfp8_cpu_impl)p))
            printf(" %s", kvfp8_cpu_impl_name((kvfp8_cpu_impl)p));
    printf(")\n- compiler: %s, library built -O2\n", __VERSION__);
    printf("- %u values per buffer (DRAM), %d buffers rotated; also %u-value calls that stay in "
           "cache; Gaussian inputs, sigma 0.05..50; decode inputs uniform over all 256 codes\n",
           NVALUES, NBUF, SMALL);
    printf("- single thread, timed in thread CPU time (shared machine); median of >= 3 passes; "
           "every path checked bit for bit against the reference on the same buffer first\n");
    printf("- rules: e4m3fn, sat, nvidia profile\n\n");
    printf("| operation | path | M values/s (16M) | ns/value | x reference | M values/s (%uK, "
           "in cache) | x reference |\n",
           SMALL >> 10);
    printf("|---|---|---:|---:|---:|---:|---:|\n");
    fflush(stdout);

    int bad = 0;
    for (size_t o = 0; o < NOPS; o++) {
        double ref_rate = 0, ref_small = 0;
        for (int path = -1; path < KVFP8_CPU_IMPL_COUNT; path++) {
            if (path == KVFP8_CPU_AUTO ||
                (path > 0 && !kvfp8_cpu_impl_available((kvfp8_cpu_impl)path)))
                continue;
            const char *name = path < 0 ? "reference" : kvfp8_cpu_impl_name((kvfp8_cpu_impl)path);
            if (!verify(o, path)) {
                printf("| %s | %s | WRONG RESULT | | |\n", ops[o].label, name);
                bad = 1;
                continue;
            }
            const double rate = measure(o, path, path < 0 ? 1.0 : 0.5, NVALUES);
            const double small = measure(o, path, 0.3, SMALL);
            if (path < 0)
                ref_rate = rate, ref_small = small;
            printf("| %s | %s | %.0f | %.3f | %.1f | %.0f | %.1f |\n", ops[o].label, name,
                   rate / 1e6, 1e9 / rate, rate / ref_rate, small / 1e6, small / ref_small);
            fflush(stdout);
        }
    }
    kvfp8_cpu_impl_force(KVFP8_CPU_AUTO);
    return bad;
}
