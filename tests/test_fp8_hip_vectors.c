/* The hip profiles against vectors produced by ROCm's real amd_hip_fp8.h host path
 * (tests/data/hip/, layout in its README): every f16 and bf16 input, ~2700 boundary
 * inputs and up to 200000 random float32 inputs per format and mode, for ROCm 6.2,
 * ROCm 6.3 and a later clr tree.
 *
 * Expected: the reference equals the header on every input except those the file
 * flags as the header's tiny-shift defect (an undefined 64-bit shift for inputs far
 * below the smallest subnormal).  There the reference gives the correctly rounded
 * zero and the header does not: this test detects and reports each such input as a
 * defect of the header, as a conformance suite should, and fails if a flagged input
 * agrees (the flags would be wrong) or an unflagged one differs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/fp8.h"

static uint32_t le32(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int bit(const uint8_t *map, size_t i) { return (map[i >> 3] >> (i & 7)) & 1; }

typedef struct {
    unsigned long long checked, defects_detected;
} tally;

static void check_one(const kvfp8_fp8_rules *r, const char *file, const char *what, uint32_t input, uint8_t header,
                      uint8_t ref, int flagged, tally *t) {
    t->checked++;
    if (flagged) {
        if (header == ref)
            fail_msg("%s: %s 0x%08x is flagged as a header defect but the reference agrees (0x%02x)", file, what,
                     input, ref);
        t->defects_detected++;
        return;
    }
    if (header != ref)
        fail_msg("encode %s 0x%08x fmt=%s mode=%s profile=%s: observed 0x%02x (kvfp8) expected 0x%02x (amd_hip_fp8.h, %s)",
                 what, input, kvfp8_format_name(r->format), kvfp8_mode_name(r->mode), kvfp8_profile_name(r->profile),
                 ref, header, file);
}

static void check_file(const char *dir, kvfp8_profile profile, uint32_t behaviour, const char *fmt_name,
                       kvfp8_format f, const char *mode_name, kvfp8_mode m) {
    char path[256];
    snprintf(path, sizeof path, "tests/data/hip/%s/%s-%s.bin", dir, fmt_name, mode_name);
    size_t len;
    uint8_t *d = slurp(path, &len);
    if (!d)
        fail_msg("cannot read %s (run the tests from the repository root)", path);
    assert_true(len >= 48 && memcmp(d, "KVHIPFP8", 8) == 0);
    assert_int_equal(le32(d + 8), 1);
    assert_int_equal(le32(d + 12), behaviour);
    assert_int_equal(le32(d + 16), (uint32_t)f);
    assert_int_equal(le32(d + 20), m == KVFP8_NONSAT ? 0u : 1u);
    const uint32_t n_f16 = le32(d + 24), n_bf16 = le32(d + 28), n_bnd = le32(d + 32), n_rand = le32(d + 36);
    uint64_t seed = le32(d + 40) | (uint64_t)le32(d + 44) << 32;
    const size_t need = 48 + n_f16 + n_bf16 + n_bf16 / 8 + 5ull * n_bnd + (n_bnd + 7) / 8 + n_rand + (n_rand + 7) / 8;
    if (len != need)
        fail_msg("%s: %zu bytes, layout says %zu", path, len, need);
    kvfp8_fp8_rules r;
    assert_int_equal(kvfp8_fp8_rules_get(f, m, profile, &r), KVFP8_OK);
    const uint8_t *A = d + 48, *B = A + n_f16, *C = B + n_bf16, *D = C + n_bf16 / 8, *E = D + 5ull * n_bnd;
    const uint8_t *F = E + (n_bnd + 7) / 8, *G = F + n_rand;
    tally t = {0, 0};
    for (uint32_t i = 0; i < n_f16; i++)
        check_one(&r, path, "f16", i, A[i], kvfp8_fp8_encode_f16_ref(&r, (uint16_t)i), 0, &t);
    for (uint32_t i = 0; i < n_bf16; i++)
        check_one(&r, path, "bf16", i, B[i], kvfp8_fp8_encode_bf16_ref(&r, (uint16_t)i), bit(C, i), &t);
    for (uint32_t k = 0; k < n_bnd; k++) {
        const uint32_t x = le32(D + 5ull * k);
        float fx;
        memcpy(&fx, &x, 4);
        check_one(&r, path, "f32", x, D[5ull * k + 4], kvfp8_fp8_encode_f32_ref(&r, fx), bit(E, k), &t);
    }
    for (uint32_t k = 0; k < n_rand; k++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        const uint32_t x = (uint32_t)(seed >> 32);
        float fx;
        memcpy(&fx, &x, 4);
        check_one(&r, path, "f32", x, F[k], kvfp8_fp8_encode_f32_ref(&r, fx), bit(G, k), &t);
    }
    printf("%-24s %-9s %-6s: %llu inputs agree with the header; %llu header defects detected (tiny-shift)\n",
           kvfp8_profile_name(profile), fmt_name, mode_name, t.checked - t.defects_detected, t.defects_detected);
    free(d);
}

static void run_profile(const char *dir, kvfp8_profile p, uint32_t behaviour, int fnuz_only) {
    static const struct {
        const char *name;
        kvfp8_format f;
    } formats[] = {{"e4m3fn", KVFP8_E4M3FN}, {"e5m2", KVFP8_E5M2}, {"e4m3fnuz", KVFP8_E4M3FNUZ}, {"e5m2fnuz", KVFP8_E5M2FNUZ}};
    for (size_t i = fnuz_only ? 2 : 0; i < 4; i++) {
        check_file(dir, p, behaviour, formats[i].name, formats[i].f, "nonsat", KVFP8_NONSAT);
        check_file(dir, p, behaviour, formats[i].name, formats[i].f, "satfinite", KVFP8_SAT);
    }
}

static void test_hip_rocm63(void **state) {
    (void)state;
    run_profile("rocm-6.3", KVFP8_PROFILE_HIP, 2, 0);
}

static void test_hip_rocm62(void **state) {
    (void)state;
    run_profile("rocm-6.2", KVFP8_PROFILE_HIP_62, 1, 1);
}

static void test_hip_next(void **state) {
    (void)state;
    run_profile("clr-00387053", KVFP8_PROFILE_HIP_NEXT, 3, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hip_rocm63),
        cmocka_unit_test(test_hip_rocm62),
        cmocka_unit_test(test_hip_next),
    };
    return cmocka_run_group_tests_name("fp8_hip_vectors", tests, NULL, NULL);
}
