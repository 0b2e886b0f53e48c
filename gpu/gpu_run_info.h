// kvfp8 — the line that heads a GPU result file (gpu/test_gpu, gpu/bench_gpu): when,
// which device, which CUDA.  CUDA-only (the harness and the bench are not built by hipcc).
#ifndef KVFP8_GPU_RUN_INFO_H
#define KVFP8_GPU_RUN_INFO_H

#include <stdio.h>
#include <time.h>

#include "kvfp8_kernels.h"

namespace kvfp8_gpu {

struct GpuRunInfo {
    cudaDeviceProp prop;
    char line[320]; // "2026-11-30 08:28 UTC, NVIDIA H200 (sm_90, 132 SMs, 63 MB L2), CUDA driver 13.0, runtime 13.0"
};

// The current device's properties and the heading line; false (and a message on
// stderr) if the device cannot be queried.
inline bool gpu_run_info(GpuRunInfo *info) {
    int dev = 0, drv = 0, rt = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&info->prop, dev) != cudaSuccess) {
        fprintf(stderr, "kvfp8: cannot query the CUDA device: %s\n", cudaGetErrorString(cudaGetLastError()));
        return false;
    }
    // the versions are CUDA API versions (1000 * major + 10 * minor), not the driver build
    if (cudaDriverGetVersion(&drv) != cudaSuccess || cudaRuntimeGetVersion(&rt) != cudaSuccess)
        drv = rt = 0;
    char date[64];
    const time_t now = time(nullptr);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    const cudaDeviceProp &p = info->prop;
    snprintf(info->line, sizeof info->line, "%s, %s (sm_%d%d, %d SMs, %.0f MB L2), CUDA driver %d.%d, runtime %d.%d",
             date, p.name, p.major, p.minor, p.multiProcessorCount, p.l2CacheSize / 1e6, drv / 1000, drv % 1000 / 10,
             rt / 1000, rt % 1000 / 10);
    return true;
}

} // namespace kvfp8_gpu

#endif
