/* kvfp8 — internal interface between cpu/dispatch.c and the per-instruction-set
 * kernels (cpu/fp8_portable.c, cpu/fp8_avx2.c, cpu/fp8_avx512.c).  Not installed.
 *
 * Layout after BLAKE3's C port: one file per instruction set, each compiled with
 * only its own -m flags (see the Makefile), a portable file every other file may
 * call for its tail, and a dispatcher that is the only code deciding at run time
 * which file may run.
 *
 * A call is turned into a plan once (kvfp8_enc_plan_init): the rules table is
 * resolved into integer thresholds and per-sign codes, and the scale into "no
 * division", "exact multiply" or "divide".  Every kernel reads the same plan, so a
 * profile stays data and the kernels contain no vendor knowledge.  docs/fp8-cpu.md
 * explains why each step is exact. */
#ifndef KVFP8_CPU_FP8_IMPL_H
#define KVFP8_CPU_FP8_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/fp8.h"
#include "kvfp8/fp8_cpu.h"

/* How the source value is brought to the quotient v = x / scale. */
typedef enum {
    KVFP8_SCALE_NONE = 0, /* the scale is 1: x / 1 == x */
    KVFP8_SCALE_MUL = 1,  /* a power of two with a normal reciprocal: x * (1/d) == x / d */
    KVFP8_SCALE_DIV = 2   /* anything else: a real IEEE division */
} kvfp8_scale_op;

typedef struct {
    /* The format's grid, in float32 terms (see kvfp8_grid_round). */
    uint32_t norm_exp; /* float32 biased exponent of the smallest normal: 128 - bias */
    uint32_t shift;    /* 23 - mantissa_bits */
    /* Edge decisions of the rules table turned into magnitude thresholds on the
     * float32 bits of |v| (integer compares are order-preserving for |v|). */
    uint32_t ovf_thr;  /* |v| above this overflows; Inf and NaN are above it too */
    uint32_t zero_thr; /* |v| at or below this rounds to zero */
    uint8_t overflow_code[2], inf_code[2], nan_code[2], zero_code[2];
    int inf_differs;   /* inf_code != overflow_code: Inf needs its own select */
    int nan_differs;   /* nan_code != overflow_code: NaN needs its own select */
    /* The division by the scale. */
    kvfp8_scale_op op;
    float divisor;     /* the scale */
    float multiplier;  /* 1 / divisor, exact, when op == KVFP8_SCALE_MUL */
    int half_round;    /* round the quotient to half before encoding (f16 source under
                        * half_scale_in_half: vLLM's ROCm write) */
} kvfp8_enc_plan;

/* Resolves (rules, source, scale) into a plan.  KVFP8_ERR_INVALID for a rules
 * table the kernels cannot represent (the reference's tables always can).  The
 * scale must already have passed kvfp8_fp8_check_scale. */
kvfp8_status kvfp8_enc_plan_init(kvfp8_enc_plan *p, const kvfp8_fp8_rules *r,
                                 kvfp8_source src, float scale);

/* The unscaled value of each code of a format, built once (no reference call:
 * integer construction, so the decode tests compare two independent derivations).
 * NaN codes decode to the quiet NaN 0x7FC00000 with the code's sign (FNUZ: +). */
const float *kvfp8_decode_table(kvfp8_format f);

/* Decoding: out = value(code) * scale, one float32 multiply as in the reference.
 * The portable kernel reads the table; the vector kernels rebuild each code as an
 * IEEE half (exact), widen it with vcvtph2ps (exact) and multiply by 2^(15-bias)
 * (exact), so the only rounding left is the multiply by the scale. */
enum { KVFP8_HALF_E4M3 = 0, KVFP8_HALF_E5M2 = 1, KVFP8_HALF_E5M2FNUZ = 2 };

typedef struct {
    const float *table; /* kvfp8_decode_table(format) */
    float scale;
    /* How a code becomes the half of its value (times 2^(bias - 15) for E4M3):
     * KVFP8_HALF_E4M3: the 7 magnitude bits at half bits 7..13, the sign at 15;
     * KVFP8_HALF_E5M2: the code shifted left by 8 (the same layout as a half);
     * KVFP8_HALF_E5M2FNUZ: bias 16 puts its top binade on the half's Inf/NaN
     * exponent, so the magnitude is rebased by one binade, max(mag << 7,
     * (mag << 8) - 0x400): the first for the two lowest binades (which become
     * half subnormals), the second above. */
    int layout;
    /* NaN codes, seen on the half h: (h & nan_and) - nan_lo <= nan_span (unsigned,
     * 16 bits).  They become the half NaN (h & nan_sign) | 0x7E00, which widens to
     * 0x7FC00000 with that sign, the table's NaN. */
    uint16_t nan_and, nan_lo, nan_span, nan_sign;
    /* value = widen(h) * rebias * scale: one multiply by mul when rebias * scale is
     * exact (then both orders round the same exact product once), else two. */
    float rebias, mul;
    int two_muls;
} kvfp8_dec_plan;

kvfp8_status kvfp8_dec_plan_init(kvfp8_dec_plan *p, kvfp8_format f, float scale);

/* Rounds |v| (a finite float32's bits without the sign) to nearest-even on the
 * grid whose smallest normal has float32 biased exponent norm_exp and whose
 * mantissa has 23 - shift bits, exponent unbounded above.  Returns the grid's
 * magnitude code: exponent field << mantissa_bits | mantissa, carries included,
 * so "rounds to zero" is 0 and "overflows" is > the largest finite code.
 *
 * x rebuilds the significand with the exponent rebased so that the format's
 * smallest normal has exponent field 1 (subnormals keep field 1 and shift further
 * right instead), and x + (half - 1) + lsb, shifted right, is round-to-nearest-even
 * in integers.  Every vector kernel performs exactly these operations per lane. */
static inline uint32_t kvfp8_grid_round(uint32_t a, uint32_t norm_exp, uint32_t shift) {
    const uint32_t e = a >> 23;
    const uint32_t ec = e > norm_exp ? e : norm_exp;
    uint32_t sh = shift + (ec - e);
    if (sh > 31) /* far below half the smallest subnormal: any sh >= 25 gives 0 */
        sh = 31;
    const uint32_t x = ((ec - norm_exp + 1) << 23) | (a & 0x7FFFFFu);
    return (x + ((1u << (sh - 1)) - 1) + ((x >> sh) & 1u)) >> sh;
}

/* One value: sign and magnitude of the quotient's bits to a code.  The portable
 * kernels and every vector tail use this. */
static inline uint8_t kvfp8_enc_bits(const kvfp8_enc_plan *p, uint32_t bits) {
    const uint32_t a = bits & 0x7FFFFFFFu;
    const unsigned s = bits >> 31;
    if (a > p->ovf_thr) {
        if (a > 0x7F800000u)
            return p->nan_code[s];
        if (a == 0x7F800000u)
            return p->inf_code[s];
        return p->overflow_code[s];
    }
    if (a <= p->zero_thr)
        return p->zero_code[s];
    return (uint8_t)(kvfp8_grid_round(a, p->norm_exp, p->shift) | (s << 7));
}

/* Kernels.  `in` may be unaligned; n may be 0.  The vector kernels handle their
 * tail with the portable kernel of the same name. */
typedef void (*kvfp8_enc_kernel)(const kvfp8_enc_plan *p, const void *in, uint8_t *out,
                                 size_t n);
/* out[i] = value(in[i]) * scale. */
typedef void (*kvfp8_dec_kernel)(const kvfp8_dec_plan *p, const uint8_t *in, float *out,
                                 size_t n);

typedef struct {
    kvfp8_enc_kernel encode[KVFP8_SOURCE_COUNT]; /* indexed by kvfp8_source */
    kvfp8_dec_kernel decode;
} kvfp8_cpu_kernels;

void kvfp8_encode_f32_portable(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n);
void kvfp8_encode_f16_portable(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n);
void kvfp8_encode_bf16_portable(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n);
void kvfp8_decode_portable(const kvfp8_dec_plan *p, const uint8_t *in, float *out, size_t n);

void kvfp8_encode_f32_avx2(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n);
void kvfp8_encode_f16_avx2(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n);
void kvfp8_encode_bf16_avx2(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n);
void kvfp8_decode_avx2(const kvfp8_dec_plan *p, const uint8_t *in, float *out, size_t n);

void kvfp8_encode_f32_avx512(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n);
void kvfp8_encode_f16_avx512(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n);
void kvfp8_encode_bf16_avx512(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n);
void kvfp8_decode_avx512(const kvfp8_dec_plan *p, const uint8_t *in, float *out, size_t n);

/* The kernels of one path, or NULL when this CPU (or build) cannot run it.
 * KVFP8_CPU_AUTO is resolved to the active path. */
const kvfp8_cpu_kernels *kvfp8_cpu_kernels_get(kvfp8_cpu_impl impl);

/* Tests only: makes a path look absent from this CPU (hide = 1) or present again
 * (0), so that "forcing an unavailable path" can be tested on a CPU that has them
 * all.  The portable path cannot be hidden. */
void kvfp8_cpu_test_hide(kvfp8_cpu_impl impl, int hide);

/* kvfp8_fp8_encode_buffer / _decode_buffer on an explicit path, without touching
 * the process-wide choice: what the tests and the benchmark use to run several
 * paths side by side (from several threads).  KVFP8_ERR_UNSUPPORTED when the path
 * is not available. */
kvfp8_status kvfp8_fp8_encode_buffer_on(kvfp8_cpu_impl impl, const kvfp8_fp8_rules *r,
                                        kvfp8_source src, const void *in, uint8_t *out,
                                        size_t n, float scale);
kvfp8_status kvfp8_fp8_decode_buffer_on(kvfp8_cpu_impl impl, kvfp8_format f,
                                        const uint8_t *in, float *out, size_t n, float scale);

#endif
