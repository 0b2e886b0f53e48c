/* kvfp8 — optimized CPU FP8 conversion over buffers, with runtime dispatch.
 *
 * Same results, bit for bit, as the reference in fp8.h for every rules table: the
 * reference is the specification, these are the fast paths (BLAKE3-style: one file
 * per instruction set under cpu/, a dispatcher, and a way to force each path so
 * tests can compare every path with the reference on the same inputs). */
#ifndef KVFP8_FP8_CPU_H
#define KVFP8_FP8_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/fp8.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KVFP8_CPU_AUTO = 0,     /* the best the running CPU has */
    KVFP8_CPU_PORTABLE = 1, /* integer bit tricks in plain C, any CPU */
    KVFP8_CPU_AVX2 = 2,     /* AVX2 + F16C */
    KVFP8_CPU_AVX512 = 3    /* AVX-512F/BW/VL */
} kvfp8_cpu_impl;
#define KVFP8_CPU_IMPL_COUNT 4

const char *kvfp8_cpu_impl_name(kvfp8_cpu_impl impl);
kvfp8_status kvfp8_cpu_impl_parse(const char *name, kvfp8_cpu_impl *out);

/* Whether this CPU (and this build) can run the path. */
int kvfp8_cpu_impl_available(kvfp8_cpu_impl impl);

/* Forces a path for this process (KVFP8_CPU_AUTO restores automatic choice).
 * KVFP8_ERR_UNSUPPORTED when the CPU lacks it.  The KVFP8_CPU_IMPL environment
 * variable (portable|avx2|avx512|auto) is read once, on first use. */
kvfp8_status kvfp8_cpu_impl_force(kvfp8_cpu_impl impl);

/* The path the next call will take. */
kvfp8_cpu_impl kvfp8_cpu_impl_active(void);

/* Encodes n source values (packed little-endian f32, f16 or bf16) to FP8 codes,
 * each as kvfp8_fp8_encode_scaled_ref(rules, src, x, scale) would; pass scale 1.0f
 * for an unscaled conversion.  KVFP8_ERR_INVALID for a bad scale. */
kvfp8_status kvfp8_fp8_encode_buffer(const kvfp8_fp8_rules *r, kvfp8_source src,
                                     const void *in, uint8_t *out, size_t n, float scale);

/* Decodes n codes to float32, each multiplied by scale in float32 (1.0f: plain). */
kvfp8_status kvfp8_fp8_decode_buffer(kvfp8_format f, const uint8_t *in, float *out,
                                     size_t n, float scale);

#ifdef __cplusplus
}
#endif
#endif
