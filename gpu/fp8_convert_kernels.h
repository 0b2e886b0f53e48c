/* kvfp8 — device FP8 conversion over buffers (the KV-cache write and read), for CUDA
 * and HIP alike.  Defined in gpu/fp8_convert_kernels.cu; conversions as documented in
 * gpu/kvfp8_gpu_compat.h.  Pointers are device pointers; the calls only enqueue work
 * on `stream` (0: the default stream) and return the launch's error, if any. */
#ifndef KVFP8_FP8_CONVERT_KERNELS_H
#define KVFP8_FP8_CONVERT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8_gpu_compat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = kvfp8_gpu_f32_to_e4m3_sat(in[i] / scale): an IEEE float32 division, as
 * kvfp8_fp8_encode_scaled_ref specifies (not in[i] * (1 / scale), which rounds
 * twice).  scale 1.0f is a plain conversion.  E4M3FN codes, or E4M3FNUZ on gfx94x
 * (kvfp8_gpu_e4m3_is_fnuz says which). */
cudaError_t kvfp8_gpu_encode_e4m3_sat(const float *in, uint8_t *out, size_t n, float scale,
                                      cudaStream_t stream);

/* out[i] = decode(in[i]) * scale in float32, as kvfp8_fp8_dequant; fnuz selects
 * E4M3FNUZ instead of E4M3FN. */
cudaError_t kvfp8_gpu_decode_e4m3(const uint8_t *in, float *out, size_t n, float scale, int fnuz,
                                  cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
