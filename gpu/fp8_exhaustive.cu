// fp8_exhaustive — NVIDIA's FP8 conversion, run on the GPU, against the kvfp8
// reference (profile `nvidia`) on every input.
//
// What runs where: the GPU converts (that is what is under test); the CPU computes
// kvfp8_fp8_encode_*_ref for the same input and compares, one std::thread per core.
// Checked, each against the reference for the same (format, mode):
//   f32   all 2^32 bit patterns (--quick: every 4099th), in chunks of 2^28:
//         __nv_cvt_float_to_fp8 for {E4M3, E5M2} x {SATFINITE, NOSAT}, and two
//         kvfp8 device paths for (E4M3FN, SATFINITE): the header's software
//         conversion (what gfx90a/gfx1030/sm_80 run) and the encode kernel of
//         gpu/fp8_convert_kernels.cu (scale 1; on sm_89+ the hardware conversion);
//   f16   all 65536 inputs, __nv_cvt_halfraw_to_fp8, the same 4 combinations;
//   bf16  all 65536 inputs, __nv_cvt_bfloat16raw_to_fp8, the same 4 combinations;
//   decode the decode kernel, all 256 codes of E4M3FN and E4M3FNUZ times a few
//         scales, against kvfp8_fp8_dequant.
// The reference is called for every input, NaNs included: it tests isnan first, so
// the 2^24 NaN patterns are already its cheapest inputs and need no fast path
// (a shortcut there would stop checking exactly what NVIDIA does with payloads).
//
// CUDA only: this tests NVIDIA's intrinsics, so the HIP build (gpu/build.sh hip)
// skips this file; the portable kernels it also exercises build under hipcc.
//
// Usage: fp8_exhaustive [--quick] [--out FILE] [--threads N]
// Exit: 0 no mismatch; 1 mismatches; 2 bad usage; 3 CUDA error.
#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <cuda_fp8.h>

#include "fp8_convert_kernels.h"
#include "kvfp8_gpu_compat.h"
#include "kvfp8/fp8.h" // C library; the header carries its own extern "C" guards

namespace {

constexpr int kFirstMismatches = 20;
constexpr uint64_t kQuickStride = 4099;
constexpr int kBlock = 256;

// ---- output: every line goes to stdout and, with --out, to the file ------------

FILE *g_out_file = nullptr;

void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
    if (g_out_file) {
        va_start(ap, fmt);
        vfprintf(g_out_file, fmt, ap);
        va_end(ap);
        fflush(g_out_file);
    }
}

// ---- the checks -------------------------------------------------------------------

struct Mismatch {
    uint32_t input; // source bits (f32/f16/bf16), or code | scale index << 8 for decode
    uint32_t gpu, ref;
};

struct Check {
    const char *source;     // f32, f16, bf16, e4m3 (decode)
    const char *conversion; // what ran on the GPU
    const char *format, *mode;
    uint64_t checked = 0, mismatches = 0;
    std::vector<Mismatch> first;
    std::string coverage;

    Check(const char *src, const char *conv, const char *fmt, const char *md, std::string cov)
        : source(src), conversion(conv), format(fmt), mode(md), coverage(std::move(cov)) {}

    void add(const Mismatch &m) {
        mismatches++;
        if ((int)first.size() < kFirstMismatches)
            first.push_back(m);
    }
};

// f32 result slots, in the order the kernel writes them.
enum { F32_NV_E4_SAT, F32_NV_E4_NOSAT, F32_NV_E5_SAT, F32_NV_E5_NOSAT, F32_SOFT, F32_KERNEL, F32_SLOTS };
// f16 / bf16 result slots: format-major, mode-minor.
enum { H_E4_SAT, H_E4_NOSAT, H_E5_SAT, H_E5_NOSAT, H_SLOTS };

kvfp8_fp8_rules g_rules[2][2]; // [E4M3FN, E5M2][SAT, NONSAT], profile nvidia

// The bit pattern of input `index` when every `stride`-th f32 is checked; the index
// range is chosen so the product stays below 2^32.
__host__ __device__ inline uint32_t f32_input(uint64_t index, uint64_t stride) {
    return (uint32_t)(index * stride);
}

__global__ void f32_kernel(uint64_t first, uint64_t stride, uint64_t n, float *xs,
                           uint8_t *out /* F32_SLOTS planes of n bytes; F32_KERNEL later */) {
    const uint64_t step = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        const float x = __uint_as_float(f32_input(first + i, stride));
        xs[i] = x;
        out[F32_NV_E4_SAT * n + i] = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
        out[F32_NV_E4_NOSAT * n + i] = __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E4M3);
        out[F32_NV_E5_SAT * n + i] = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2);
        out[F32_NV_E5_NOSAT * n + i] = __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E5M2);
        out[F32_SOFT * n + i] = kvfp8_gpu_f32_to_e4m3fn_sat_soft(x);
    }
}

__global__ void half_kernel(uint8_t *out /* 2 sources x H_SLOTS planes of 65536 */) {
    const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= 65536)
        return;
    __half_raw h;
    h.x = (unsigned short)i;
    __nv_bfloat16_raw b;
    b.x = (unsigned short)i;
    const __nv_saturation_t sat[2] = {__NV_SATFINITE, __NV_NOSAT};
    const __nv_fp8_interpretation_t fmt[2] = {__NV_E4M3, __NV_E5M2};
    for (int f = 0; f < 2; f++)
        for (int m = 0; m < 2; m++) {
            out[(f * 2 + m) * 65536 + i] = __nv_cvt_halfraw_to_fp8(h, sat[m], fmt[f]);
            out[(H_SLOTS + f * 2 + m) * 65536 + i] = __nv_cvt_bfloat16raw_to_fp8(b, sat[m], fmt[f]);
        }
}

// Reports __CUDA_ARCH__ of the device code the driver picked for this GPU: that,
// not the compute capability alone, decides whether __nv_cvt_float_to_fp8 took the
// hardware path (sm_89+ cubin) or cuda_fp8.hpp's software path (sm_80 cubin).
__global__ void arch_kernel(int *arch) {
#ifdef __CUDA_ARCH__
    *arch = __CUDA_ARCH__;
#endif
}

unsigned grid_for(uint64_t n) {
    const uint64_t b = (n + kBlock - 1) / kBlock;
    return (unsigned)std::min<uint64_t>(std::max<uint64_t>(b, 1), 65535u * 8);
}

// ---- CPU side of the f32 pass -----------------------------------------------------

struct F32Local {
    uint64_t mismatches[F32_SLOTS] = {};
    std::vector<Mismatch> first[F32_SLOTS];
};

// Compares [lo, hi) of a chunk.  The reference runs four times per input (two
// formats x two modes); the two kvfp8 device paths reuse the (E4M3FN, SAT) value.
void compare_f32(const uint8_t *gpu, uint64_t n, uint64_t first, uint64_t stride, uint64_t lo,
                 uint64_t hi, F32Local *local) {
    for (uint64_t i = lo; i < hi; i++) {
        const uint32_t bits = f32_input(first + i, stride);
        float x;
        memcpy(&x, &bits, sizeof x);
        uint8_t ref[F32_SLOTS];
        ref[F32_NV_E4_SAT] = kvfp8_fp8_encode_f32_ref(&g_rules[0][0], x);
        ref[F32_NV_E4_NOSAT] = kvfp8_fp8_encode_f32_ref(&g_rules[0][1], x);
        ref[F32_NV_E5_SAT] = kvfp8_fp8_encode_f32_ref(&g_rules[1][0], x);
        ref[F32_NV_E5_NOSAT] = kvfp8_fp8_encode_f32_ref(&g_rules[1][1], x);
        ref[F32_SOFT] = ref[F32_KERNEL] = ref[F32_NV_E4_SAT];
        for (int s = 0; s < F32_SLOTS; s++) {
            const uint8_t g = gpu[(uint64_t)s * n + i];
            if (g != ref[s]) {
                if (local->mismatches[s]++ < (uint64_t)kFirstMismatches)
                    local->first[s].push_back({bits, g, ref[s]});
            }
        }
    }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string version_text(int v) { // 13000 -> "13.0"
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d", v / 1000, (v % 1000) / 10);
    return buf;
}

void usage(FILE *to) {
    fprintf(to,
            "usage: fp8_exhaustive [--quick] [--out FILE] [--threads N]\n"
            "  Converts every float32 bit pattern (--quick: every %llu-th) and every f16\n"
            "  and bf16 input with NVIDIA's __nv_cvt_*_to_fp8 on the GPU and compares each\n"
            "  result with the kvfp8 reference (profile nvidia).  --out also writes the\n"
            "  report to FILE; --threads sets the CPU comparison threads (default: all).\n"
            "  Exit: 0 no mismatch, 1 mismatches, 2 bad usage, 3 CUDA error.\n",
            (unsigned long long)kQuickStride);
}

} // namespace

int main(int argc, char **argv) {
    bool quick = false;
    const char *out_path = nullptr;
    unsigned threads = std::thread::hardware_concurrency();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            quick = true;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out_path = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = (unsigned)strtoul(argv[++i], nullptr, 10);
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "fp8_exhaustive: unknown or incomplete argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (threads == 0)
        threads = 1;
    if (out_path && !(g_out_file = fopen(out_path, "w"))) {
        fprintf(stderr, "fp8_exhaustive: cannot write %s: %s\n", out_path, strerror(errno));
        return 2;
    }

    const kvfp8_format formats[2] = {KVFP8_E4M3FN, KVFP8_E5M2};
    const kvfp8_mode modes[2] = {KVFP8_SAT, KVFP8_NONSAT};
    for (int f = 0; f < 2; f++)
        for (int m = 0; m < 2; m++)
            if (kvfp8_fp8_rules_get(formats[f], modes[m], KVFP8_PROFILE_NVIDIA, &g_rules[f][m]) != KVFP8_OK) {
                fprintf(stderr, "fp8_exhaustive: kvfp8 rules: %s\n", kvfp8_last_error());
                return 3;
            }

    // ---- the device -------------------------------------------------------------
    const auto t_start = std::chrono::steady_clock::now();
    char date[64];
    const time_t now = time(nullptr);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    int device = 0, driver = 0, runtime = 0, arch = 0;
    cudaDeviceProp prop;
    KVFP8_GPU_CHECK(cudaGetDevice(&device));
    KVFP8_GPU_CHECK(cudaGetDeviceProperties(&prop, device));
    KVFP8_GPU_CHECK(cudaDriverGetVersion(&driver));
    KVFP8_GPU_CHECK(cudaRuntimeGetVersion(&runtime));
    {
        int *d_arch;
        KVFP8_GPU_CHECK(cudaMalloc(&d_arch, sizeof(int)));
        KVFP8_GPU_CHECK(cudaMemset(d_arch, 0, sizeof(int)));
        arch_kernel<<<1, 1>>>(d_arch);
        KVFP8_GPU_CHECK_LAUNCH();
        KVFP8_GPU_CHECK(cudaMemcpy(&arch, d_arch, sizeof(int), cudaMemcpyDeviceToHost));
        KVFP8_GPU_CHECK(cudaFree(d_arch));
    }
    const bool hw = arch >= 890;
    const std::string path =
        hw ? "SATFINITE: hardware cvt.rn.satfinite (e4m3x2/e5m2x2 from f32, and from f16x2 for f16); "
             "NOSAT: cuda_fp8.hpp software path (via double); bf16 is widened to f32 first"
           : "software path of cuda_fp8.hpp for every combination (no FP8 conversion instruction below sm_89)";

    say("# kvfp8 fp8_exhaustive: NVIDIA FP8 conversion on the GPU vs the kvfp8 reference (profile nvidia)\n");
    say("date: %s\n", date);
    say("device: %s, compute capability %d.%d, driver %s, runtime %s\n", prop.name, prop.major,
        prop.minor, version_text(driver).c_str(), version_text(runtime).c_str());
    say("device code: __CUDA_ARCH__ %d -> %s\n", arch, path.c_str());
    say("CPU comparison threads: %u\n", threads);

    // ---- f32 ----------------------------------------------------------------------
    const uint64_t stride = quick ? kQuickStride : 1;
    const uint64_t total = ((1ull << 32) - 1) / stride + 1; // indices whose product < 2^32
    const uint64_t chunk = std::min<uint64_t>(total, 1ull << 28);
    const std::string f32_coverage =
        quick ? "every " + std::to_string(stride) + "th f32 bit pattern (sample, NOT exhaustive)"
              : "all 2^32 f32 bit patterns (exhaustive)";
    say("f32: %s: %llu inputs in chunks of %llu\n", f32_coverage.c_str(), (unsigned long long)total,
        (unsigned long long)chunk);

    std::vector<Check> checks;
    const char *fmt_names[2] = {"e4m3fn", "e5m2"}, *mode_names[2] = {"sat", "nonsat"};
    const std::string cov = quick ? "sample, stride " + std::to_string(stride) : "all 2^32";
    for (int f = 0; f < 2; f++)
        for (int m = 0; m < 2; m++)
            checks.emplace_back("f32", "__nv_cvt_float_to_fp8", fmt_names[f], mode_names[m], cov);
    checks.emplace_back("f32", "kvfp8_gpu_f32_to_e4m3fn_sat_soft (software, gpu/kvfp8_gpu_compat.h)",
                        "e4m3fn", "sat", cov);
    checks.emplace_back("f32",
                        hw ? "kvfp8_gpu_encode_e4m3_sat kernel, scale 1 (hardware path here)"
                           : "kvfp8_gpu_encode_e4m3_sat kernel, scale 1 (software path here)",
                        "e4m3fn", "sat", cov);

    float *d_x = nullptr;
    uint8_t *d_out = nullptr, *h_out = nullptr;
    KVFP8_GPU_CHECK(cudaMalloc(&d_x, chunk * sizeof(float)));
    KVFP8_GPU_CHECK(cudaMalloc(&d_out, chunk * F32_SLOTS));
    KVFP8_GPU_CHECK(cudaMallocHost(&h_out, chunk * F32_SLOTS));
    double gpu_seconds = 0, cpu_seconds = 0;
    const auto t_f32 = std::chrono::steady_clock::now();
    for (uint64_t first = 0; first < total; first += chunk) {
        const uint64_t n = std::min(chunk, total - first);
        auto t0 = std::chrono::steady_clock::now();
        f32_kernel<<<grid_for(n), kBlock>>>(first, stride, n, d_x, d_out);
        KVFP8_GPU_CHECK_LAUNCH();
        KVFP8_GPU_CHECK(kvfp8_gpu_encode_e4m3_sat(d_x, d_out + F32_KERNEL * n, n, 1.0f, 0));
        KVFP8_GPU_CHECK(cudaMemcpy(h_out, d_out, n * F32_SLOTS, cudaMemcpyDeviceToHost));
        gpu_seconds += seconds_since(t0);

        t0 = std::chrono::steady_clock::now();
        std::vector<F32Local> locals(threads);
        std::vector<std::thread> pool;
        for (unsigned t = 0; t < threads; t++) {
            const uint64_t lo = n * t / threads, hi = n * (t + 1) / threads;
            pool.emplace_back(compare_f32, h_out, n, first, stride, lo, hi, &locals[t]);
        }
        for (auto &th : pool)
            th.join();
        // Threads cover ascending ranges, so merging in thread order keeps the
        // recorded mismatches in input order.
        for (auto &l : locals)
            for (int s = 0; s < F32_SLOTS; s++) {
                checks[s].mismatches += l.mismatches[s];
                for (const auto &m : l.first[s])
                    if ((int)checks[s].first.size() < kFirstMismatches)
                        checks[s].first.push_back(m);
            }
        for (int s = 0; s < F32_SLOTS; s++)
            checks[s].checked += n;
        cpu_seconds += seconds_since(t0);
        say("  f32 chunk %llu/%llu done (%.1f s so far)\n", (unsigned long long)(first / chunk + 1),
            (unsigned long long)((total + chunk - 1) / chunk), seconds_since(t_f32));
    }
    KVFP8_GPU_CHECK(cudaFree(d_x));
    KVFP8_GPU_CHECK(cudaFree(d_out));
    KVFP8_GPU_CHECK(cudaFreeHost(h_out));
    say("f32: %.1f s (GPU + copy %.1f s, CPU reference %.1f s)\n", seconds_since(t_f32), gpu_seconds,
        cpu_seconds);

    // ---- f16 and bf16: all 65536 inputs each ----------------------------------------
    {
        uint8_t *d_h;
        std::vector<uint8_t> h(2 * H_SLOTS * 65536);
        KVFP8_GPU_CHECK(cudaMalloc(&d_h, h.size()));
        half_kernel<<<65536 / kBlock, kBlock>>>(d_h);
        KVFP8_GPU_CHECK_LAUNCH();
        KVFP8_GPU_CHECK(cudaMemcpy(h.data(), d_h, h.size(), cudaMemcpyDeviceToHost));
        KVFP8_GPU_CHECK(cudaFree(d_h));
        for (int src = 0; src < 2; src++)
            for (int f = 0; f < 2; f++)
                for (int m = 0; m < 2; m++) {
                    Check c(src ? "bf16" : "f16",
                            src ? "__nv_cvt_bfloat16raw_to_fp8" : "__nv_cvt_halfraw_to_fp8",
                            fmt_names[f], mode_names[m], "all 65536");
                    const uint8_t *plane = &h[(size_t)(src * H_SLOTS + f * 2 + m) * 65536];
                    for (uint32_t v = 0; v < 65536; v++) {
                        const uint8_t ref = src ? kvfp8_fp8_encode_bf16_ref(&g_rules[f][m], (uint16_t)v)
                                                : kvfp8_fp8_encode_f16_ref(&g_rules[f][m], (uint16_t)v);
                        c.checked++;
                        if (plane[v] != ref)
                            c.add({v, plane[v], ref});
                    }
                    checks.push_back(c);
                }
    }

    // ---- decode kernel: all 256 codes x scales, E4M3FN and E4M3FNUZ -----------------
    {
        static const float scales[] = {1.0f, 0.5f, 3.0f, 1e-3f, 448.0f};
        const int ns = (int)(sizeof scales / sizeof scales[0]);
        uint8_t codes[256];
        for (int c = 0; c < 256; c++)
            codes[c] = (uint8_t)c;
        uint8_t *d_codes;
        float *d_vals;
        KVFP8_GPU_CHECK(cudaMalloc(&d_codes, 256));
        KVFP8_GPU_CHECK(cudaMalloc(&d_vals, 256 * sizeof(float)));
        KVFP8_GPU_CHECK(cudaMemcpy(d_codes, codes, 256, cudaMemcpyHostToDevice));
        for (int fnuz = 0; fnuz < 2; fnuz++) {
            Check c("fp8", "kvfp8_gpu_decode_e4m3 kernel, x scale", fnuz ? "e4m3fnuz" : "e4m3fn", "-",
                    "all 256 codes x " + std::to_string(ns) + " scales");
            for (int s = 0; s < ns; s++) {
                float vals[256];
                KVFP8_GPU_CHECK(kvfp8_gpu_decode_e4m3(d_codes, d_vals, 256, scales[s], fnuz, 0));
                KVFP8_GPU_CHECK(cudaMemcpy(vals, d_vals, sizeof vals, cudaMemcpyDeviceToHost));
                for (int code = 0; code < 256; code++) {
                    const float ref = kvfp8_fp8_dequant(fnuz ? KVFP8_E4M3FNUZ : KVFP8_E4M3FN,
                                                        (uint8_t)code, scales[s]);
                    uint32_t g, r;
                    memcpy(&g, &vals[code], 4);
                    memcpy(&r, &ref, 4);
                    c.checked++;
                    // NaN is NaN: a payload or sign produced by the multiply is not a
                    // decoding difference.
                    if (g != r && !(std::isnan(vals[code]) && std::isnan(ref)))
                        c.add({(uint32_t)code | (uint32_t)s << 8, g, r});
                }
            }
            checks.push_back(c);
        }
        KVFP8_GPU_CHECK(cudaFree(d_codes));
        KVFP8_GPU_CHECK(cudaFree(d_vals));
    }

    // ---- report -----------------------------------------------------------------------
    uint64_t total_mismatches = 0;
    say("\n");
    for (const Check &c : checks) {
        total_mismatches += c.mismatches;
        say("%s -> %s %s via %s: %llu checked (%s), %llu mismatches\n", c.source, c.format, c.mode,
            c.conversion, (unsigned long long)c.checked, c.coverage.c_str(),
            (unsigned long long)c.mismatches);
        for (const Mismatch &m : c.first) {
            if (!strcmp(c.source, "f32"))
                say("  f32 0x%08x: gpu 0x%02x ref 0x%02x\n", m.input, m.gpu, m.ref);
            else if (!strcmp(c.source, "fp8"))
                say("  %s 0x%02x scale #%u: gpu 0x%08x ref 0x%08x\n", c.format, m.input & 0xFF,
                    m.input >> 8, m.gpu, m.ref);
            else
                say("  %s 0x%04x: gpu 0x%02x ref 0x%02x\n", c.source, m.input, m.gpu, m.ref);
        }
        if (c.mismatches > c.first.size())
            say("  ... %llu more\n", (unsigned long long)(c.mismatches - c.first.size()));
    }

    say("\n## fp8_exhaustive summary\n\n");
    say("| | |\n|---|---|\n");
    say("| date | %s |\n", date);
    say("| device | %s |\n", prop.name);
    say("| compute capability | %d.%d (device code __CUDA_ARCH__ %d) |\n", prop.major, prop.minor, arch);
    say("| conversion path | %s |\n", path.c_str());
    say("| driver / runtime | %s / %s |\n", version_text(driver).c_str(), version_text(runtime).c_str());
    say("| f32 coverage | %s |\n", f32_coverage.c_str());
    say("| reference | libkvfp8 kvfp8_fp8_encode_*_ref, profile nvidia |\n");
    say("| wall time | %.1f s |\n\n", seconds_since(t_start));
    say("| source | GPU conversion | format | mode | checked | coverage | mismatches |\n");
    say("|---|---|---|---|---:|---|---:|\n");
    for (const Check &c : checks)
        say("| %s | %s | %s | %s | %llu | %s | %llu |\n", c.source, c.conversion, c.format, c.mode,
            (unsigned long long)c.checked, c.coverage.c_str(), (unsigned long long)c.mismatches);
    say("\nresult: %s (%llu mismatches)\n", total_mismatches ? "FAIL" : "PASS",
        (unsigned long long)total_mismatches);
    if (g_out_file)
        fclose(g_out_file);
    return total_mismatches ? 1 : 0;
}
