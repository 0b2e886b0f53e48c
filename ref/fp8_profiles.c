/* The vendor profiles as data: for each (profile, format, mode), the edge decisions
 * that implementation makes.  Sources of each fact are in docs/fp8.md; the tests
 * check every table against vectors from the real implementations (tests/data/,
 * bench/results/ for the GPU).
 *
 * Only edges live here.  Every profile rounds finite values to nearest, ties to
 * even, once, from the source value; where an implementation does not (HIP's
 * wrapped shift for tiny inputs) that is a defect the conformance suite reports,
 * not a behaviour the reference copies. */
#include <string.h>

#include "kvfp8/fp8.h"
#include "fp8_internal.h"

static const char *const format_names[KVFP8_FORMAT_COUNT] = {"e4m3fn", "e5m2", "e4m3fnuz",
                                                             "e5m2fnuz"};
static const char *const mode_names[KVFP8_MODE_COUNT] = {"sat", "nonsat"};
static const char *const profile_names[KVFP8_PROFILE_COUNT] = {
    "ocp", "nvidia", "torch", "mldtypes", "hip", "hip-6.2", "hip-next", "torch-cuda"};
static const char *const source_names[KVFP8_SOURCE_COUNT] = {"f32", "f16", "bf16"};

static const char *const profile_descriptions[KVFP8_PROFILE_COUNT] = {
    "OCP 8-bit Floating Point Specification (OFP8) r1.0; E4M3FN and E5M2 only; "
    "any NaN code conforms",
    "NVIDIA sm_90 conversion behind __nv_cvt_float_to_fp8: cvt.rn.satfinite.{e4m3,e5m2}x2 "
    "for __NV_SATFINITE, cuda_fp8.hpp's software path for __NV_NOSAT; E4M3FN and E5M2",
    "PyTorch tensor.to(torch.float8_*) (c10 Float8 types); no saturating mode",
    "ml_dtypes numpy casts (astype) to float8_*; no saturating mode",
    "ROCm 6.3 amd_hip_fp8.h host path (ROCm/clr e729f0870): overflow tested before rounding; "
    "SATFINITE maps +-Inf, and NaN in FNUZ, to +-max",
    "ROCm 6.2 amd_hip_fp8.h host path (ROCm/clr d7b0d78fa): FNUZ only, overflow after rounding, "
    "NONSAT overflow gives the finite code 0x78/0x7C (a header bug)",
    "later ROCm/clr amd_hip_fp8.h (00387053): as hip, but +-Inf gives NaN (Inf for e5m2) in every mode "
    "and FNUZ NaN stays NaN",
    "PyTorch tensor.to(torch.float8_*) on a CUDA tensor: as torch, but a half NaN loses its sign "
    "(measured on an H200, torch 2.11)",
};

#define NAME_FUNCS(type, names, count, label)                                                  \
    const char *kvfp8_##type##_name(kvfp8_##type v) {                                          \
        return (unsigned)v < (count) ? names[v] : "?";                                         \
    }                                                                                          \
    kvfp8_status kvfp8_##type##_parse(const char *name, kvfp8_##type *out) {                   \
        for (unsigned i = 0; name && i < (count); i++)                                         \
            if (!strcmp(name, names[i])) {                                                     \
                *out = (kvfp8_##type)i;                                                        \
                return KVFP8_OK;                                                               \
            }                                                                                  \
        return kvfp8_fail(KVFP8_ERR_INVALID, "unknown " label " '%s'", name ? name : "(null)"); \
    }

NAME_FUNCS(format, format_names, KVFP8_FORMAT_COUNT, "format")
NAME_FUNCS(mode, mode_names, KVFP8_MODE_COUNT, "mode")
NAME_FUNCS(profile, profile_names, KVFP8_PROFILE_COUNT, "profile")
NAME_FUNCS(source, source_names, KVFP8_SOURCE_COUNT, "source type")

const char *kvfp8_profile_description(kvfp8_profile p) {
    return (unsigned)p < KVFP8_PROFILE_COUNT ? profile_descriptions[p] : "?";
}

static void set2(uint8_t dst[2], uint8_t positive, uint8_t negative) {
    dst[0] = positive;
    dst[1] = negative;
}

/* Codes used below, per format. */
#define SIGNED(c) (c), (uint8_t)((c) | 0x80)
#define FNUZ_NAN 0x80, 0x80

kvfp8_status kvfp8_fp8_rules_get(kvfp8_format f, kvfp8_mode m, kvfp8_profile p,
                                 kvfp8_fp8_rules *out) {
    if ((unsigned)f >= KVFP8_FORMAT_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "unknown format %d", (int)f);
    if ((unsigned)m >= KVFP8_MODE_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "unknown mode %d", (int)m);
    if ((unsigned)p >= KVFP8_PROFILE_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "unknown profile %d", (int)p);

    const int fnuz = f == KVFP8_E4M3FNUZ || f == KVFP8_E5M2FNUZ;
    const int sat = m == KVFP8_SAT;
    if ((p == KVFP8_PROFILE_OCP || p == KVFP8_PROFILE_NVIDIA) && fnuz)
        return kvfp8_fail(KVFP8_ERR_UNSUPPORTED,
                          "profile %s does not define format %s (only e4m3fn and e5m2)",
                          profile_names[p], format_names[f]);
    if (p == KVFP8_PROFILE_HIP_62 && !fnuz)
        return kvfp8_fail(KVFP8_ERR_UNSUPPORTED,
                          "profile hip-6.2 does not define format %s (ROCm 6.2's header has only the FNUZ formats)",
                          format_names[f]);
    if ((p == KVFP8_PROFILE_TORCH || p == KVFP8_PROFILE_TORCH_CUDA || p == KVFP8_PROFILE_MLDTYPES) && sat)
        return kvfp8_fail(KVFP8_ERR_UNSUPPORTED,
                          "profile %s does not define mode sat (its casts never saturate; "
                          "use --mode nonsat)",
                          profile_names[p]);

    kvfp8_fp8_rules r;
    memset(&r, 0, sizeof r);
    r.format = f;
    r.mode = m;
    r.profile = p;
    (void)kvfp8_fp8_shape(f, &r.exponent_bits, &r.mantissa_bits, &r.exponent_bias);
    r.max_code = f == KVFP8_E4M3FN ? 0x7E : f == KVFP8_E5M2 ? 0x7B : 0x7F;
    r.max_value = kvfp8_fp8_decode(f, r.max_code);

    /* The common ground: signed zeros where the format has -0, +0 otherwise; on
     * overflow and Inf, SAT gives +-max and NONSAT the format's NaN or Inf. */
    const uint8_t max_pos = r.max_code, max_neg = (uint8_t)(r.max_code | 0x80);
    if (fnuz)
        set2(r.zero_code, 0x00, 0x00);
    else
        set2(r.zero_code, SIGNED(0x00));
    uint8_t big_pos, big_neg; /* NONSAT result for overflow and Inf */
    switch (f) {
    case KVFP8_E4M3FN: big_pos = 0x7F, big_neg = 0xFF; break;
    case KVFP8_E5M2: big_pos = 0x7C, big_neg = 0xFC; break;
    default: big_pos = 0x80, big_neg = 0x80; break;
    }
    if (sat) {
        set2(r.overflow_code, max_pos, max_neg);
        set2(r.inf_code, max_pos, max_neg);
    } else {
        set2(r.overflow_code, big_pos, big_neg);
        set2(r.inf_code, big_pos, big_neg);
    }

    switch (p) {
    case KVFP8_PROFILE_OCP:
        /* OFP8 leaves the NaN code open; the reference returns the quiet NaN with
         * the input's sign (0x7F / 0x7E family) and accepts any NaN from a port. */
        if (f == KVFP8_E4M3FN)
            set2(r.nan_code, SIGNED(0x7F));
        else
            set2(r.nan_code, SIGNED(0x7E));
        r.any_nan_conforms = 1;
        break;
    case KVFP8_PROFILE_NVIDIA:
        /* sm_90 hardware (SATFINITE) and cuda_fp8.hpp's software path (NOSAT, which
         * first canonicalises every NaN to +0x7FFFFFFF) both give 0x7F for any NaN,
         * in both formats. */
        set2(r.nan_code, 0x7F, 0x7F);
        break;
    case KVFP8_PROFILE_TORCH:
    case KVFP8_PROFILE_TORCH_CUDA:
        /* c10: NaN -> 0x7F with the sign OR-ed in, for E4M3FN and E5M2.  On CUDA a
         * half input is widened by the hardware first, which drops a NaN's sign
         * (bench/results/fp8-gpu-2026-11-30.md: all 1023 negative half NaNs -> 0x7F). */
        r.f16_nan_unsigned = p == KVFP8_PROFILE_TORCH_CUDA;
        if (fnuz)
            set2(r.nan_code, FNUZ_NAN);
        else
            set2(r.nan_code, SIGNED(0x7F));
        break;
    case KVFP8_PROFILE_MLDTYPES:
        /* ml_dtypes: quiet NaN with sign, 0x7F (E4M3FN) and 0x7E (E5M2). */
        if (fnuz)
            set2(r.nan_code, FNUZ_NAN);
        else if (f == KVFP8_E4M3FN)
            set2(r.nan_code, SIGNED(0x7F));
        else
            set2(r.nan_code, SIGNED(0x7E));
        break;
    case KVFP8_PROFILE_HIP:
    case KVFP8_PROFILE_HIP_NEXT:
        /* amd_hip_fp8.h host path (docs/fp8-hip.md): |x| > max is tested on the
         * input, before rounding; the NaN code keeps the input's sign in the OCP
         * formats; vLLM's ROCm write rounds a half quotient to half first. */
        r.overflow_before_rounding = 1;
        r.half_scale_in_half = 1;
        if (fnuz)
            set2(r.nan_code, FNUZ_NAN);
        else
            set2(r.nan_code, SIGNED(0x7F));
        if (p == KVFP8_PROFILE_HIP && fnuz && sat)
            set2(r.nan_code, max_pos, max_neg); /* ROCm 6.3: clip turns the FNUZ NaN into +-max */
        if (p == KVFP8_PROFILE_HIP_NEXT) {
            /* later trees: Inf is NaN in E4M3 and FNUZ, Inf in E5M2, whatever the mode */
            if (f == KVFP8_E5M2)
                set2(r.inf_code, SIGNED(0x7C));
            else
                memcpy(r.inf_code, r.nan_code, 2);
        }
        break;
    case KVFP8_PROFILE_HIP_62:
        /* ROCm 6.2 (FNUZ only): overflow after rounding; NaN and Inf give 0x80 in both
         * modes; NONSAT overflow gives (sign << 7) + (all-ones exponent << mantissa
         * bits), a finite code: 0x78 (+128) in e4m3fnuz, 0x7C (+32768) in e5m2fnuz. */
        r.half_scale_in_half = 1;
        set2(r.nan_code, FNUZ_NAN);
        set2(r.inf_code, FNUZ_NAN);
        if (!sat) {
            const uint8_t ovf = f == KVFP8_E4M3FNUZ ? 0x78 : 0x7C;
            set2(r.overflow_code, ovf, (uint8_t)(ovf | 0x80));
        }
        break;
    }
    *out = r;
    return KVFP8_OK;
}
