// NVIDIA's own host conversion (cuda_fp8.h, from the CUDA toolkit) against the kvfp8
// reference's `nvidia` profile.  Compiled and run by tests/py_fp8_nvidia_host.py
// only where the toolkit's headers exist; the GPU's hardware conversion is checked
// separately on an H200 (bench/gpu/fp8_check.sh, results in bench/results/).
//
// Usage: host_check STRIDE   (checks every STRIDE-th float32 bit pattern, plus all
// f16 and bf16 inputs, for E4M3/E5M2 x SATFINITE/NOSAT)
#include <cuda_fp8.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kvfp8/fp8.h"

static unsigned long long mismatches = 0;

static void report(const char *what, uint32_t bits, const kvfp8_fp8_rules &r, unsigned nv, unsigned ref) {
    if (++mismatches <= 20)
        std::printf("encode %s 0x%08x fmt=%s mode=%s profile=nvidia: cuda_fp8.h 0x%02x kvfp8 0x%02x\n", what, bits,
                    kvfp8_format_name(r.format), kvfp8_mode_name(r.mode), nv, ref);
}

int main(int argc, char **argv) {
    const uint64_t stride = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 61;
    const __nv_fp8_interpretation_t interp[2] = {__NV_E4M3, __NV_E5M2};
    const kvfp8_format fmt[2] = {KVFP8_E4M3FN, KVFP8_E5M2};
    const __nv_saturation_t sat[2] = {__NV_SATFINITE, __NV_NOSAT};
    const kvfp8_mode mode[2] = {KVFP8_SAT, KVFP8_NONSAT};
    unsigned long long checked = 0;
    for (int f = 0; f < 2; f++)
        for (int m = 0; m < 2; m++) {
            kvfp8_fp8_rules r;
            if (kvfp8_fp8_rules_get(fmt[f], mode[m], KVFP8_PROFILE_NVIDIA, &r) != KVFP8_OK) {
                std::printf("rules: %s\n", kvfp8_last_error());
                return 2;
            }
            for (uint64_t b = 0; b < (1ull << 32); b += stride) {
                float x;
                uint32_t bits = (uint32_t)b;
                std::memcpy(&x, &bits, 4);
                unsigned nv = __nv_cvt_float_to_fp8(x, sat[m], interp[f]);
                unsigned ref = kvfp8_fp8_encode_f32_ref(&r, x);
                if (nv != ref) report("f32", bits, r, nv, ref);
                checked++;
            }
            for (uint32_t h = 0; h < 0x10000; h++) {
                __half_raw hr;
                hr.x = (unsigned short)h;
                unsigned nv = __nv_cvt_halfraw_to_fp8(hr, sat[m], interp[f]);
                unsigned ref = kvfp8_fp8_encode_f16_ref(&r, (uint16_t)h);
                if (nv != ref) report("f16", h, r, nv, ref);
                __nv_bfloat16_raw br;
                br.x = (unsigned short)h;
                nv = __nv_cvt_bfloat16raw_to_fp8(br, sat[m], interp[f]);
                ref = kvfp8_fp8_encode_bf16_ref(&r, (uint16_t)h);
                if (nv != ref) report("bf16", h, r, nv, ref);
                checked += 2;
            }
        }
    std::printf("checked %llu conversions (float32 stride %llu, all f16 and bf16), %llu mismatches\n", checked,
                (unsigned long long)stride, mismatches);
    return mismatches ? 1 : 0;
}
