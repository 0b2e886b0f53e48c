/* kvfp8 — the AVX-512 (F/BW/VL/DQ) path: 16 lanes per vector.
 *
 * Per lane the exact operations of kvfp8_grid_round and kvfp8_enc_bits
 * (cpu/fp8_impl.h): integer round-to-nearest-even with per-lane variable shifts
 * (vpsrlvd), so normal and subnormal results come from one instruction sequence;
 * the rules table's edge decisions become four compares against broadcast
 * thresholds and masked moves of broadcast per-sign codes.  Half sources are
 * widened with vcvtph2ps (exact), bf16 by a 16-bit shift (exact).  Decoding is a
 * 16-lane gather from the 256-entry table.  Tails go to the portable kernels.
 * Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq (Makefile); only called
 * after cpu/dispatch.c has checked the CPU. */
#include <immintrin.h>

#include "fp8_impl.h"

typedef struct {
    __m512i absmask, mant, norm_exp, norm_exp_m1, shift, c31, c32, c7fff, one, c80;
    __m512i zero_thr, ovf_thr, inf;
    __m512i zero_pos, zero_neg, ovf_pos, ovf_neg, inf_pos, inf_neg, nan_pos, nan_neg;
    __m512 mul, div;
    int op, half_round, inf_differs, nan_differs;
} enc_consts;

static void enc_consts_init(enc_consts *k, const kvfp8_enc_plan *p) {
    k->absmask = _mm512_set1_epi32(0x7FFFFFFF);
    k->mant = _mm512_set1_epi32(0x7FFFFF);
    k->norm_exp = _mm512_set1_epi32((int)p->norm_exp);
    k->norm_exp_m1 = _mm512_set1_epi32((int)p->norm_exp - 1);
    k->shift = _mm512_set1_epi32((int)p->shift);
    k->c31 = _mm512_set1_epi32(31);
    k->c32 = _mm512_set1_epi32(32);
    k->c7fff = _mm512_set1_epi32(0x7FFFFFFF);
    k->one = _mm512_set1_epi32(1);
    k->c80 = _mm512_set1_epi32(0x80);
    k->zero_thr = _mm512_set1_epi32((int)p->zero_thr);
    k->ovf_thr = _mm512_set1_epi32((int)p->ovf_thr);
    k->inf = _mm512_set1_epi32(0x7F800000);
    k->zero_pos = _mm512_set1_epi32(p->zero_code[0]);
    k->zero_neg = _mm512_set1_epi32(p->zero_code[1]);
    k->ovf_pos = _mm512_set1_epi32(p->overflow_code[0]);
    k->ovf_neg = _mm512_set1_epi32(p->overflow_code[1]);
    k->inf_pos = _mm512_set1_epi32(p->inf_code[0]);
    k->inf_neg = _mm512_set1_epi32(p->inf_code[1]);
    k->nan_pos = _mm512_set1_epi32(p->nan_code[0]);
    k->nan_neg = _mm512_set1_epi32(p->nan_code[1]);
    k->mul = _mm512_set1_ps(p->multiplier);
    k->div = _mm512_set1_ps(p->divisor);
    k->op = p->op;
    k->half_round = p->half_round;
    k->inf_differs = p->inf_differs;
    k->nan_differs = p->nan_differs;
}

/* x / scale (or its exact substitute), then for HIP half sources the rounding of
 * the quotient to half: vcvtps2ph with an immediate nearest-even mode ignores
 * MXCSR.RC and overflows to Inf, which is IEEE rounding to half. */
static inline __m512 enc_scale(const enc_consts *k, __m512 x) {
    if (k->op == KVFP8_SCALE_MUL)
        x = _mm512_mul_ps(x, k->mul);
    else if (k->op == KVFP8_SCALE_DIV)
        x = _mm512_div_ps(x, k->div);
    if (k->half_round)
        x = _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return x;
}

/* 16 quotients to 16 codes (one per 32-bit lane). */
static inline __m512i enc_core(const enc_consts *k, __m512 q) {
    const __m512i v = _mm512_castps_si512(q);
    const __m512i a = _mm512_and_si512(v, k->absmask);
    /* kvfp8_grid_round, lane by lane */
    const __m512i e = _mm512_srli_epi32(a, 23);
    const __m512i ec = _mm512_max_epu32(e, k->norm_exp);
    const __m512i sh =
        _mm512_min_epu32(_mm512_add_epi32(_mm512_sub_epi32(ec, e), k->shift), k->c31);
    /* x = ((ec - norm_exp + 1) << 23) | (a & 0x7FFFFF); ternlog 0xF8 is A | (B & C) */
    const __m512i x = _mm512_ternarylogic_epi32(
        _mm512_slli_epi32(_mm512_sub_epi32(ec, k->norm_exp_m1), 23), a, k->mant, 0xF8);
    const __m512i half_m1 = _mm512_srlv_epi32(k->c7fff, _mm512_sub_epi32(k->c32, sh));
    const __m512i lsb = _mm512_and_si512(_mm512_srlv_epi32(x, sh), k->one);
    const __m512i r =
        _mm512_srlv_epi32(_mm512_add_epi32(_mm512_add_epi32(x, half_m1), lsb), sh);
    /* sign bit to bit 7: r | ((v >> 24) & 0x80) */
    __m512i res = _mm512_ternarylogic_epi32(r, _mm512_srli_epi32(v, 24), k->c80, 0xF8);
    /* the edges, lowest priority first so that NaN wins over Inf over overflow */
    const __mmask16 neg = _mm512_movepi32_mask(v);
    res = _mm512_mask_mov_epi32(res, _mm512_cmple_epu32_mask(a, k->zero_thr),
                                _mm512_mask_blend_epi32(neg, k->zero_pos, k->zero_neg));
    res = _mm512_mask_mov_epi32(res, _mm512_cmpgt_epu32_mask(a, k->ovf_thr),
                                _mm512_mask_blend_epi32(neg, k->ovf_pos, k->ovf_neg));
    if (k->inf_differs)
        res = _mm512_mask_mov_epi32(res, _mm512_cmpeq_epi32_mask(a, k->inf),
                                    _mm512_mask_blend_epi32(neg, k->inf_pos, k->inf_neg));
    if (k->nan_differs)
        res = _mm512_mask_mov_epi32(res, _mm512_cmpgt_epu32_mask(a, k->inf),
                                    _mm512_mask_blend_epi32(neg, k->nan_pos, k->nan_neg));
    return res;
}

static inline void store16(uint8_t *out, __m512i codes) {
    _mm_storeu_si128((__m128i *)(void *)out, _mm512_cvtepi32_epi8(codes));
}

void kvfp8_encode_f32_avx512(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n) {
    enc_consts k;
    enc_consts_init(&k, p);
    const float *src = in;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 x0 = _mm512_loadu_ps(src + i), x1 = _mm512_loadu_ps(src + i + 16);
        store16(out + i, enc_core(&k, enc_scale(&k, x0)));
        store16(out + i + 16, enc_core(&k, enc_scale(&k, x1)));
    }
    for (; i + 16 <= n; i += 16)
        store16(out + i, enc_core(&k, enc_scale(&k, _mm512_loadu_ps(src + i))));
    kvfp8_encode_f32_portable(p, src + i, out + i, n - i);
}

void kvfp8_encode_f16_avx512(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n) {
    enc_consts k;
    enc_consts_init(&k, p);
    const uint16_t *src = in;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(src + i)));
        store16(out + i, enc_core(&k, enc_scale(&k, x)));
    }
    kvfp8_encode_f16_portable(p, src + i, out + i, n - i);
}

void kvfp8_encode_bf16_avx512(const kvfp8_enc_plan *p, const void *in, uint8_t *out, size_t n) {
    enc_consts k;
    enc_consts_init(&k, p);
    const uint16_t *src = in;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(src + i)));
        const __m512 x = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
        store16(out + i, enc_core(&k, enc_scale(&k, x)));
    }
    kvfp8_encode_bf16_portable(p, src + i, out + i, n - i);
}

/* Decoding, 32 codes at a time: each code becomes an IEEE half (cpu/fp8_impl.h,
 * kvfp8_dec_plan), NaN codes become the half NaN with the table's sign rule, and
 * vcvtph2ps widens exactly; `muls` is 0 (the fold is 1), 1 or 2 multiplies. */
static inline __attribute__((always_inline)) void
dec_loop(const kvfp8_dec_plan *p, const uint8_t *in, float *out, size_t n, const int layout,
         const int muls) {
    const __m512i nan_and = _mm512_set1_epi16((short)p->nan_and);
    const __m512i nan_lo = _mm512_set1_epi16((short)p->nan_lo);
    const __m512i nan_span = _mm512_set1_epi16((short)p->nan_span);
    const __m512i nan_sign = _mm512_set1_epi16((short)p->nan_sign);
    const __m512i nan_half = _mm512_set1_epi16(0x7E00);
    const __m512i no_bit14 = _mm512_set1_epi16((short)0xBFFF);
    const __m512i c7f = _mm512_set1_epi16(0x7F), c400 = _mm512_set1_epi16(0x400);
    const __m512 mul = _mm512_set1_ps(p->mul), scale = _mm512_set1_ps(p->scale);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(in + i));
        __m512i h;
        if (layout == KVFP8_HALF_E4M3) /* sign-extended code << 7: sign at 15 and 14 */
            h = _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(b), 7), no_bit14);
        else if (layout == KVFP8_HALF_E5M2)
            h = _mm512_slli_epi16(_mm512_cvtepu8_epi16(b), 8);
        else { /* E5M2FNUZ: rebased magnitude (signed max: both sides < 0x8000 or negative) */
            const __m512i w = _mm512_cvtepu8_epi16(b);
            const __m512i mag = _mm512_and_si512(w, c7f);
            h = _mm512_max_epi16(_mm512_slli_epi16(mag, 7),
                                 _mm512_sub_epi16(_mm512_slli_epi16(mag, 8), c400));
            h = _mm512_or_si512(h, _mm512_slli_epi16(_mm512_andnot_si512(c7f, w), 8));
        }
        const __mmask32 nan = _mm512_cmple_epu16_mask(
            _mm512_sub_epi16(_mm512_and_si512(h, nan_and), nan_lo), nan_span);
        /* ternlog 0xEA is (A & B) | C */
        h = _mm512_mask_blend_epi16(nan, h, _mm512_ternarylogic_epi32(h, nan_sign, nan_half, 0xEA));
        __m512 lo = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
        __m512 hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
        if (muls >= 1) {
            lo = _mm512_mul_ps(lo, mul);
            hi = _mm512_mul_ps(hi, mul);
        }
        if (muls >= 2) {
            lo = _mm512_mul_ps(lo, scale);
            hi = _mm512_mul_ps(hi, scale);
        }
        _mm512_storeu_ps(out + i, lo);
        _mm512_storeu_ps(out + i + 16, hi);
    }
    kvfp8_decode_portable(p, in + i, out + i, n - i);
}

void kvfp8_decode_avx512(const kvfp8_dec_plan *p, const uint8_t *in, float *out, size_t n) {
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
