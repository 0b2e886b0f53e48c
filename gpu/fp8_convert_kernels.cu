// kvfp8 — the device FP8 conversion kernels: float32 -> E4M3 (saturating) with a
// scale, and E4M3 -> float32 with a scale.  Portable: nvcc builds it for sm_80/89/90
// and hipcc for gfx90a/gfx1030 (gpu/build.sh); the per-target conversion is chosen
// inside kvfp8_gpu_compat.h, so nothing here is vendor-specific.
#include "fp8_convert_kernels.h"

namespace {

// One thread per element over a grid-stride loop: any n fits any grid, and the
// launch size can stay modest (a block count capped well below every vendor's
// grid limit).
constexpr int kBlock = 256;
constexpr size_t kMaxBlocks = 65535;

unsigned blocks_for(size_t n) {
    size_t b = (n + kBlock - 1) / kBlock;
    if (b == 0)
        b = 1;
    return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

__global__ void encode_e4m3_sat_kernel(const float *__restrict__ in, uint8_t *__restrict__ out,
                                       size_t n, float scale) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = kvfp8_gpu_f32_to_e4m3_sat(in[i] / scale);
}

__global__ void decode_e4m3_kernel(const uint8_t *__restrict__ in, float *__restrict__ out,
                                   size_t n, float scale, int fnuz) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = kvfp8_gpu_e4m3_to_f32(in[i], fnuz) * scale;
}

} // namespace

extern "C" cudaError_t kvfp8_gpu_encode_e4m3_sat(const float *in, uint8_t *out, size_t n,
                                                 float scale, cudaStream_t stream) {
    if (n == 0)
        return cudaSuccess;
    encode_e4m3_sat_kernel<<<blocks_for(n), kBlock, 0, stream>>>(in, out, n, scale);
    return cudaGetLastError();
}

extern "C" cudaError_t kvfp8_gpu_decode_e4m3(const uint8_t *in, float *out, size_t n, float scale,
                                             int fnuz, cudaStream_t stream) {
    if (n == 0)
        return cudaSuccess;
    decode_e4m3_kernel<<<blocks_for(n), kBlock, 0, stream>>>(in, out, n, scale, fnuz);
    return cudaGetLastError();
}
