/* kvfp8 — the AVX2 + F16C path: 8 lanes per vector.
 *
 * The same per-lane integer rounding as kvfp8_grid_round (cpu/fp8_impl.h), with
 * vpsrlvd for the per-lane shift.  AVX2 has no mask registers, so the edges are
 * compare results used as vpblendvb masks; the per-sign code is picked with
 * vblendvps, which reads exactly the lane's sign bit.  Four vectors of 32-bit codes
 * are packed into 32 bytes with saturating packs (codes are <= 0xFF, so nothing
 * saturates) and one lane-fixing permute.  Tails go to the portable kernels.
 * Compiled with -mavx2 -mf16c -mfma (Makefile); only called after
 * cpu/dispatch.c has checked the CPU. */
#include <immintrin.h>

#include "fp8_impl.h"

typedef struct {
    __m256i absmask, mant, norm_exp, norm_exp_m1, shift, c31, c32, c7fff, one, c80;
    __m256i zero_thr, ovf_thr, inf;
    __m256 zero_pos, zero_neg, ovf_pos, ovf_neg, inf_pos, inf_neg, nan_pos, nan_neg;
    __m256 mul, div;
    int op, half_round, inf_differs, nan_differs;
} enc_consts;

static __m256 code_ps(uint8_t c) { return _mm256_castsi256_ps(_mm256_set1_epi32(c)); }

static void enc_consts_init(enc_consts *k, const kvfp8_enc_plan *p) {
    k->absmask = _mm256_set1_epi32(0x7FFFFFFF);
    k->mant = _mm256_set1_epi32(0x7FFFFF);
    k->norm_exp = _mm256_set1_epi32((int)p->norm_exp);
    k->norm_exp_m1 = _mm256_set1_epi32((int)p->norm_exp - 1);
    k->shift = _mm256_set1_epi32((int)p->shift);
    k->c31 = _mm256_set1_epi32(31);
    k->c32 = _mm256_set1_epi32(32);
    k->c7fff = _mm256_set1_epi32(0x7FFFFFFF);
    k->one = _mm256_set1_epi32(1);
    k->c80 = _mm256_set1_epi32(0x80);
    /* Thresholds and |v| are below 2^31, so the signed vpcmpgtd orders them right. */
    k->zero_thr = _mm256_set1_epi32((int)p->zero_thr);
    k->ovf_thr = _mm256_set1_epi32((int)p->ovf_thr);
    k->inf = _mm256_set1_epi32(0x7F800000);
    k->zero_pos = code_ps(p->zero_code[0]);
    k->zero_neg = code_ps(p->zero_code[1]);
    k->ovf_pos = code_ps(p->overflow_code[0]);
    k->ovf_neg = code_ps(p->overflow_code[1]);
    k->inf_pos = code_ps(p->inf_code[0]);
    k->inf_neg = code_ps(p->inf_code[1]);
    k->nan_pos = code_ps(p->nan_code[0]);
    k->nan_neg = code_ps(p->nan_code[1]);
    k->mul = _mm256_set1_ps(p->multiplier);
    k->div = _mm256_set1_ps(p->divisor);
    k->op = p->op;
    k->half_round = p->half_round;
    k->inf_differs = p->inf_differs;
    k->nan_differs = p->nan_differs;
}

/* See fp8_avx512.c: the division (or its exact substitute), then HIP's rounding of
 * a half quotient to half with an immediate nearest-even mode. */
static inline __m256 enc_scale(const enc_consts *k, __m256 x) {
    if (k->op == KVFP8_SCALE_MUL)
        x = _mm256_mul_ps(x, k->mul);
    else if (k->op == KVFP8_SCALE_DIV)
        x = _mm256_div_ps(x, k->div);
    if (k->half_round)
        x = _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return x;
}

static inline __m256i sel(__m256i under, __m256i over, __m256i mask) {
    return _mm256_blendv_epi8(under, over, mask);
}

/* 8 quotients to 8 codes (one per 32-bit lane). */
static inline __m256i enc_core(const enc_consts *k, __m256 q) {
    const __m256i v = _mm256_castps_si256(q);
    const __m256i a = _mm256_and_si256(v, k->absmask);
    const __m256i e = _mm256_srli_epi32(a, 23);
    const __m256i ec = _mm256_max_epu32(e, k->norm_exp);
    const __m256i sh =
        _mm256_min_epu32(_mm256_add_epi32(_mm256_sub_epi32(ec, e), k->shift), k->c31);
    const __m256i x = _mm256_or_si256(_mm256_slli_epi32(_mm256_sub_epi32(ec, k->norm_exp_m1), 23),
                                      _mm256_and_si256(a, k->mant));
    const __m256i half_m1 = _mm256_srlv_epi32(k->c7fff, _mm256_sub_epi32(k->c32, sh));
    const __m256i lsb = _mm256_and_si256(_mm256_srlv_epi32(x, sh), k->one);
    const __m256i r =
        _mm256_srlv_epi32(_mm256_add_epi32(_mm256_add_epi32(x, half_m1), lsb), sh);
    __m256i res = _mm256_or_si256(r, _mm256_and_si256(_mm256_srli_epi32(v, 24), k->c80));
    /* edges, lowest priority first; the per-sign code by the lane's sign bit */
    const __m256i nonzero = _mm256_cmpgt_epi32(a, k->zero_thr);
    res = sel(_mm256_castps_si256(_mm256_blendv_ps(k->zero_pos, k->zero_neg, q)), res, nonzero);
    res = sel(res, _mm256_castps_si256(_mm256_blendv_ps(k->ovf_pos, k->ovf_neg, q)),
              _mm256_cmpgt_epi32(a, k->ovf_thr));
    if (k->inf_differs)
        res = sel(res, _mm256_castps_si256(_mm256_blendv_ps(k->inf_pos, k->inf_neg, q)),
                  _mm256_cmpeq_epi32(a, k->inf));
    if (k->nan_differs)
        res = sel(res, _mm256_castps_si256(_mm256_blendv_ps(k->nan_pos, k->nan_neg, q)),
                  _mm256_cmpgt_epi32(a, k->inf));
    return res;
}

/* 4 x 8 codes in 32-bit lanes to 32 bytes in order.  packus works within 128-bit
 * halves, leaving the dwords of 4-byte groups in the order 0 4 1 5 2 6 3 7. */
static inline void store32(uint8_t *out, __m256i c0, __m256i c1, __m256i c2, __m256i c3) {
    const __m256i w01 = _mm256_packus_epi32(c0, c1), w23 = _mm256_packus_epi32(c2, c3);
    const __m256i b = _mm256_packus_epi16(w01, w23);
    const __m256i fix = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    _mm256_storeu_si256((__m256i *)(void *)out, _mm256_permutevar8x32_epi32(b, fix));
}

static inline __m256 load_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

static inline __m256 load_bf16(const uint16_t *p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

#define ENC(x) enc_core(&k, enc_scale(&k, (x)))

void kvfp8_encode_f32_avx2(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n) {
    enc_consts k;
    enc_consts_init(&k, p);
    const float *src = in;
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        store32(out + i, ENC(_mm256_loadu_ps(src + i)), ENC(_mm256_loadu_ps(src + i + 8)),
                ENC(_mm256_loadu_ps(src + i + 16)), ENC(_mm256_loadu_ps(src + i + 24)));
    kvfp8_encode_f32_portable(p, src + i, out + i, n - i);
}

void kvfp8_encode_f16_avx2(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n) {
    enc_consts k;
    enc_consts_init(&k, p);
    const uint16_t *src = in;
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        store32(out + i, ENC(load_f16(src + i)), ENC(load_f16(src + i + 8)),
                ENC(load_f16(src + i + 16)), ENC(load_f16(src + i + 24)));
    kvfp8_encode_f16_portable(p, src + i, out + i, n - i);
}

void kvfp8_encode_bf16_avx2(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n) {
    enc_consts k;
    enc_consts_init(&k, p);
    const uint16_t *src = in;
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        store32(out + i, ENC(load_bf16(src + i)), ENC(load_bf16(src + i + 8)),
                ENC(load_bf16(src + i + 16)), ENC(load_bf16(src + i + 24)));
    kvfp8_encode_bf16_portable(p, src + i, out + i, n - i);
}

/* Decoding, 16 codes at a time, as in fp8_avx512.c: code to IEEE half, NaN codes
 * to the half NaN, vcvtph2ps (exact), then 0, 1 or 2 multiplies. */
static inline __attribute__((always_inline)) void
dec_loop(const kvfp8_dec_plan *p, const uint8_t *in, float *out, size_t n, const int layout,
         const int muls) {
    const __m256i nan_and = _mm256_set1_epi16((short)p->nan_and);
    const __m256i nan_lo = _mm256_set1_epi16((short)p->nan_lo);
    const __m256i nan_span = _mm256_set1_epi16((short)p->nan_span);
    const __m256i nan_sign = _mm256_set1_epi16((short)p->nan_sign);
    const __m256i nan_half = _mm256_set1_epi16(0x7E00);
    const __m256i no_bit14 = _mm256_set1_epi16((short)0xBFFF);
    const __m256i c7f = _mm256_set1_epi16(0x7F), c400 = _mm256_set1_epi16(0x400);
    const __m256 mul = _mm256_set1_ps(p->mul), scale = _mm256_set1_ps(p->scale);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(in + i));
        __m256i h;
        if (layout == KVFP8_HALF_E4M3) /* sign-extended code << 7: sign at 15 and 14 */
            h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7), no_bit14);
        else if (layout == KVFP8_HALF_E5M2)
            h = _mm256_slli_epi16(_mm256_cvtepu8_epi16(b), 8);
        else { /* E5M2FNUZ: rebased magnitude (signed max: both sides < 0x8000 or negative) */
            const __m256i w = _mm256_cvtepu8_epi16(b);
            const __m256i mag = _mm256_and_si256(w, c7f);
            h = _mm256_max_epi16(_mm256_slli_epi16(mag, 7),
                                 _mm256_sub_epi16(_mm256_slli_epi16(mag, 8), c400));
            h = _mm256_or_si256(h, _mm256_slli_epi16(_mm256_andnot_si256(c7f, w), 8));
        }
        /* unsigned x <= span as min(x, span) == x */
        const __m256i d = _mm256_sub_epi16(_mm256_and_si256(h, nan_and), nan_lo);
        const __m256i nan = _mm256_cmpeq_epi16(_mm256_min_epu16(d, nan_span), d);
        h = _mm256_blendv_epi8(h, _mm256_or_si256(_mm256_and_si256(h, nan_sign), nan_half), nan);
        __m256 lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
        __m256 hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
        if (muls >= 1) {
            lo = _mm256_mul_ps(lo, mul);
            hi = _mm256_mul_ps(hi, mul);
        }
        if (muls >= 2) {
            lo = _mm256_mul_ps(lo, scale);
            hi = _mm256_mul_ps(hi, scale);
        }
        _mm256_storeu_ps(out + i, lo);
        _mm256_storeu_ps(out + i + 8, hi);
    }
    kvfp8_decode_portable(p, in + i, out + i, n - i);
}

void kvfp8_decode_avx2(const kvfp8_dec_plan *p, const uint8_t *in, float *out, size_t n) {
    const int muls = p->two_muls ? 2 : p->mul != 1.0f;
#define KVFP8_DEC(layout)                                                                       \
    (muls == 0 ? dec_loop(p, in, out, n, layout, 0)                                            \
               : muls == 1 ? dec_loop(p, in, out, n, layout, 1) : dec_loop(p, in, out, n, layout, 2))
    switch (p->layout) {
    case KVFP8_HALF_E4M3: KVFP8_DEC(KVFP8_HALF_E4M3); break;
    case KVFP8_HALF_E5M2: KVFP8_DEC(KVFP8_HALF_E5M2); break;
    default: KVFP8_DEC(KVFP8_HALF_E5M2FNUZ); break;
    }
#undef KVFP8_DEC
}
