/* FP8 differential: the reference against every optimized CPU path this machine
 * has, for every format, mode and profile the fuzz input selects.
 *
 * Input layout: byte 0 selects (profile, format, mode) modulo the defined ones,
 * byte 1 the source type, bytes 2..5 a scale (used only when finite and > 0, else
 * 1.0), the rest packed source values.  On a mismatch the target prints the input
 * and both results in hex and traps. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/fp8.h"
#include "kvfp8/fp8_cpu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 6)
        return 0;
    kvfp8_fp8_rules all[KVFP8_FORMAT_COUNT * KVFP8_MODE_COUNT * KVFP8_PROFILE_COUNT];
    int n_rules = 0;
    for (int p = 0; p < KVFP8_PROFILE_COUNT; p++)
        for (int f = 0; f < KVFP8_FORMAT_COUNT; f++)
            for (int m = 0; m < KVFP8_MODE_COUNT; m++)
                if (kvfp8_fp8_rules_get((kvfp8_format)f, (kvfp8_mode)m, (kvfp8_profile)p, &all[n_rules]) == KVFP8_OK)
                    n_rules++;
    const kvfp8_fp8_rules *r = &all[data[0] % n_rules];
    const kvfp8_source src = (kvfp8_source)(data[1] % KVFP8_SOURCE_COUNT);
    float scale;
    memcpy(&scale, data + 2, 4);
    if (!(isfinite(scale) && scale > 0))
        scale = 1.0f;
    const size_t width = src == KVFP8_SRC_F32 ? 4 : 2;
    const uint8_t *in = data + 6;
    const size_t n = (size - 6) / width;
    if (n == 0)
        return 0;
    uint8_t *want = malloc(n), *got = malloc(n);
    if (!want || !got)
        abort();
    for (size_t i = 0; i < n; i++) {
        uint32_t x = in[i * width] | (uint32_t)in[i * width + 1] << 8;
        if (width == 4)
            x |= (uint32_t)in[i * 4 + 2] << 16 | (uint32_t)in[i * 4 + 3] << 24;
        want[i] = kvfp8_fp8_encode_scaled_ref(r, src, x, scale);
    }
    for (int impl = KVFP8_CPU_PORTABLE; impl < KVFP8_CPU_IMPL_COUNT; impl++) {
        if (kvfp8_cpu_impl_force((kvfp8_cpu_impl)impl) != KVFP8_OK)
            continue;
        if (kvfp8_fp8_encode_buffer(r, src, in, got, n, scale) != KVFP8_OK)
            abort();
        for (size_t i = 0; i < n; i++)
            if (got[i] != want[i]) {
                uint32_t x = in[i * width] | (uint32_t)in[i * width + 1] << 8;
                if (width == 4)
                    x |= (uint32_t)in[i * 4 + 2] << 16 | (uint32_t)in[i * 4 + 3] << 24;
                fprintf(stderr, "fp8 mismatch: %s 0x%0*x / %a fmt=%s mode=%s profile=%s path=%s: observed 0x%02x expected 0x%02x\n",
                        kvfp8_source_name(src), (int)width * 2, x, (double)scale, kvfp8_format_name(r->format),
                        kvfp8_mode_name(r->mode), kvfp8_profile_name(r->profile),
                        kvfp8_cpu_impl_name((kvfp8_cpu_impl)impl), got[i], want[i]);
                __builtin_trap();
            }
    }
    (void)kvfp8_cpu_impl_force(KVFP8_CPU_AUTO);
    /* decode: the buffer path against the reference, every code of the input */
    float *dec = malloc(size * sizeof(float));
    if (!dec)
        abort();
    if (kvfp8_fp8_decode_buffer(r->format, data, dec, size, scale) != KVFP8_OK)
        abort();
    for (size_t i = 0; i < size; i++) {
        float ref = kvfp8_fp8_dequant(r->format, data[i], scale);
        uint32_t a, b;
        memcpy(&a, &dec[i], 4);
        memcpy(&b, &ref, 4);
        if (a != b && !(isnan(dec[i]) && isnan(ref))) {
            fprintf(stderr, "fp8 decode mismatch: %s 0x%02x * %a: observed %08x expected %08x\n",
                    kvfp8_format_name(r->format), data[i], (double)scale, a, b);
            __builtin_trap();
        }
    }
    free(dec);
    free(want);
    free(got);
    return 0;
}
