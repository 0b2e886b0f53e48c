// bench_gpu — the KV-cache kernels on the GPU, against the device's copy ceiling
// measured in the same run (bench/gpu/run.sh runs it; `make bench-gpu`).
//
//   copy       cudaMemcpy device-to-device, 1 GiB, bytes read + written
//   decode     32 query heads, 8 KV heads, head 128, block 16, batch x context in
//              {1x32768, 8x8192, 32x4096, 128x1024}, FP8 (e4m3fn, per-head scales,
//              model-dtype reads) and BF16 caches; bandwidth = KV bytes read / time.
//              Four block tables per shape over a 0.5 GiB (FP8) / 1 GiB (BF16) pool,
//              used in turn, so repeated runs do not read from L2.  The default split
//              (what the backend uses) and a sweep of others; each timed kernel's
//              output is checked against the generic kernel once.
//   write      cache write bf16 -> e4m3fn, 524288 tokens x 8 heads x 128, scattered
//              blocks; bytes = source read + cache written (+ slot mapping)
//   prefill    chunked prefill over an FP8 prefix vs a BF16 prefix (two shapes)
//   torch      with --torch FILE: the PyTorch baseline of bench/gpu/torch_baseline.py
// Every time is the median of several rounds of 10 launches queued back to back
// between two CUDA events (the host's launch latency hidden, as in a serving loop).
// Usage: bench_gpu [--torch FILE] [--out FILE] [--quick]
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "gpu_run_info.h"
#include "kvfp8_kernels.h"
#include "kvfp8_mma.cuh"

#define CK(call) KVFP8_GPU_CHECK(call)

namespace {

using namespace kvfp8_gpu;

std::string g_md;
void md(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void md(const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    g_md += line;
    fputs(line, stdout);
    fflush(stdout);
}
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void note(const char *fmt, ...) { // stdout only
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

__device__ __forceinline__ uint32_t hash32(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (uint32_t)x;
}

// bf16 values uniform in about [-amp, amp]
__global__ void fill_bf16(uint16_t *p, size_t n, uint64_t seed, float amp) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float u = (float)(hash32(seed * 0x9E3779B97F4A7C15ull + i) >> 8) * (1.0f / 16777216.0f);
        const float x = amp * (2.0f * u - 1.0f);
        const uint32_t b = __float_as_uint(x);
        p[i] = (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
    }
}

__global__ void bf16_to_f32(const uint16_t *in, float *out, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = __uint_as_float((uint32_t)in[i] << 16);
}

struct Timer {
    cudaEvent_t a, b;
    Timer() {
        CK(cudaEventCreate(&a));
        CK(cudaEventCreate(&b));
    }
    ~Timer() { cudaEventDestroy(a), cudaEventDestroy(b); }
};

// Milliseconds per launch: the median over `reps` rounds of the time of kBatch
// launches queued back to back between two events (so the host's launch latency is
// not counted, as in a serving loop or a graph replay); `it` counts every launch, for
// the rotation of inputs.
constexpr int kBatch = 10;
template <typename F>
double median_ms(F launch, int warm, int reps) {
    Timer t;
    int it = 0;
    for (int i = 0; i < warm; i++)
        launch(it++);
    CK(cudaDeviceSynchronize());
    std::vector<float> v;
    for (int i = 0; i < reps; i++) {
        CK(cudaEventRecord(t.a));
        for (int j = 0; j < kBatch; j++)
            launch(it++);
        CK(cudaEventRecord(t.b));
        CK(cudaEventSynchronize(t.b));
        float ms;
        CK(cudaEventElapsedTime(&ms, t.a, t.b));
        v.push_back(ms / kBatch);
    }
    CK(cudaGetLastError());
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

constexpr int kHq = 32, kHkv = 8, kD = 128, kBs = 16, kRot = 4;
constexpr int kPoolBlocks = 32768; // 524288 slots
constexpr size_t kSlotElems = (size_t)kHkv * kD;

struct Pools {
    uint8_t *fp8_k, *fp8_v;   // e4m3fn
    uint16_t *bf_k, *bf_v;    // bf16 (auto)
    float *scales;            // [2][256]
};

struct TorchRow {
    double bf16_ms = NAN, fp8_ms = NAN;
};

std::map<std::string, TorchRow> read_torch(const char *path) {
    std::map<std::string, TorchRow> rows;
    FILE *f = path ? fopen(path, "r") : nullptr;
    if (!f)
        return rows;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char shape[64], dtype[16];
        double ms;
        if (sscanf(line, "%63s %15s %lf", shape, dtype, &ms) == 3) {
            if (!strcmp(dtype, "bf16"))
                rows[shape].bf16_ms = ms;
            else if (!strcmp(dtype, "fp8"))
                rows[shape].fp8_ms = ms;
        }
    }
    fclose(f);
    return rows;
}

AttnArgs base_args(const Pools &P, bool fp8) {
    AttnArgs a;
    memset(&a, 0, sizeof a);
    a.key_cache = fp8 ? P.fp8_k : (const uint8_t *)P.bf_k;
    a.value_cache = fp8 ? P.fp8_v : (const uint8_t *)P.bf_v;
    a.scales = P.scales;
    a.per_head_scales = 1;
    a.num_q_heads = kHq, a.num_kv_heads = kHkv, a.head_size = kD, a.block_size = kBs;
    a.softmax_scale = 1.0f / sqrtf((float)kD);
    a.read = KVFP8_READ_MODEL_DTYPE;
    a.model_dtype = KVFP8_DTYPE_BF16;
    memset(&a.storage, 0, sizeof a.storage);
    a.storage.is_fp8 = fp8;
    a.storage.dtype = KVFP8_DTYPE_BF16;
    if (fp8)
        kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &a.storage.fp8);
    return a;
}

struct DecodeResult {
    double ms_default = 0, ms_best = 0, ms_no_pdl = 0;
    std::string best_cfg, default_cfg;
    double check = 0; // max |mma - generic| / max |generic|
};


// Read-pattern probes (--probe): the decode kernel's KV reads with no attention math,
// to tell the access pattern's ceiling apart from the kernel's own costs.  FP8, head
// 128, block 16; one CTA of 4 warps per (split, KV head, sequence) as in decode.
// PATTERN 0: the decode kernel's fragment mapping (each lane 16 bytes; a K load
// instruction covers 8 tokens x 64 bytes, a V load 4 tokens x 128 bytes);
// PATTERN 1: whole lines (a quarter-warp reads one token's 128 bytes).
template <int PATTERN, int UNROLL>
__global__ void __launch_bounds__(128) read_probe(const uint8_t *kc, const uint8_t *vc, const int *btab, int bps,
                                                   int L, uint32_t *sink) {
    pdl_wait(); // as the decode kernel (no-ops unless launched with the attribute)
    pdl_allow_next();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int kvh = blockIdx.y, seq = blockIdx.z;
    const size_t stride = (size_t)gridDim.y * 128;
    const uint8_t *kb = kc + kvh * 128, *vb = vc + kvh * 128;
    const int *tab = btab + (size_t)seq * bps;
    const int nchunks = L / 16, per = (nchunks + gridDim.x - 1) / gridDim.x;
    const int c0 = blockIdx.x * per, c1 = min(nchunks, c0 + per);
    uint32_t acc = 0;
#pragma unroll UNROLL
    for (int c = c0 + warp; c < c1; c += 4) {
        const size_t slot0 = (size_t)tab[c] * 16;
        uint4 x[8];
        if (PATTERN == 0) {
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int l = 0; l < 2; l++)
                    x[2 * i + l] = __ldg((const uint4 *)(kb + (slot0 + g + 8 * i) * stride + t * 16 + l * 64));
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int T = 2 * t + (i & 1) + (i >> 1) * 8;
                x[4 + i] = __ldg((const uint4 *)(vb + (slot0 + T) * stride + g * 16));
            }
        } else {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const size_t tok = slot0 + j * 4 + (lane >> 3);
                x[j] = __ldg((const uint4 *)(kb + tok * stride + (lane & 7) * 16));
                x[4 + j] = __ldg((const uint4 *)(vb + tok * stride + (lane & 7) * 16));
            }
        }
#pragma unroll
        for (int k = 0; k < 8; k++)
            acc ^= x[k].x ^ x[k].y ^ x[k].z ^ x[k].w;
    }
    if (acc == 0x9E3779B9u) // practically never: keeps the loads alive
        sink[threadIdx.x] = acc;
}

// The same reads through a cp.async ring of NST 4 KB stages per warp in shared
// memory, consumed by one shared-memory read per piece (the decode kernel's ring
// variants, measured slower and removed, staged chunks this way).
template <int NST>
__global__ void __launch_bounds__(128) ring_probe(const uint8_t *kc, const uint8_t *vc, const int *btab, int bps,
                                                   int L, uint32_t *sink) {
    extern __shared__ uint4 ring_smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int kvh = blockIdx.y, seq = blockIdx.z;
    const size_t stride = (size_t)gridDim.y * 128;
    const uint8_t *kb = kc + kvh * 128, *vb = vc + kvh * 128;
    const int *tab = btab + (size_t)seq * bps;
    const int nchunks = L / 16, per = (nchunks + gridDim.x - 1) / gridDim.x;
    const int c0 = blockIdx.x * per, c1 = min(nchunks, c0 + per);
    uint4 *ring = ring_smem + (size_t)warp * NST * 256;
    const int n_my = c0 + warp < c1 ? (c1 - c0 - warp + 3) / 4 : 0;
    auto issue = [&](int i) {
        const size_t slot0 = (size_t)tab[c0 + warp + 4 * i] * 16;
        uint4 *st = ring + (i % NST) * 256;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const size_t tok = slot0 + j * 4 + (lane >> 3);
            const uint32_t d0 = (uint32_t)__cvta_generic_to_shared(st + j * 32 + lane);
            const uint32_t d1 = (uint32_t)__cvta_generic_to_shared(st + (4 + j) * 32 + lane);
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d0), "l"(kb + tok * stride + (lane & 7) * 16));
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d1), "l"(vb + tok * stride + (lane & 7) * 16));
        }
    };
    uint32_t acc = 0;
#pragma unroll
    for (int b = 0; b < NST - 1; b++) {
        if (b < n_my)
            issue(b);
        asm volatile("cp.async.commit_group;\n" ::);
    }
    for (int i = 0; i < n_my; i++) {
        if (i + NST - 1 < n_my)
            issue(i + NST - 1);
        asm volatile("cp.async.commit_group;\n" ::);
        asm volatile("cp.async.wait_group %0;\n" ::"n"(NST - 1) : "memory");
        const uint4 *st = ring + (i % NST) * 256;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const uint4 x = st[k * 32 + lane];
            acc ^= x.x ^ x.y ^ x.z ^ x.w;
        }
    }
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    if (acc == 0x9E3779B9u)
        sink[threadIdx.x] = acc;
}
} // namespace

// --timeline: one batch of launches back to back (as timed), then the last launch's
// marks (decode_trace_read) as times after the first CTA's entry, and each CTA's
// phases.  Every CTA stamps marks 0 and 7 in every launch; a later mark older than its
// CTA's mark 7 is a previous launch's (the last CTA of a split unit changes from
// launch to launch) and is not counted.
template <typename F>
void print_timeline(F launch, int B, int L, const char *what, int split, unsigned flags) {
    static unsigned long long marks[kDecodeTraceCtas][kDecodeTraceMarks];
    const double ms = median_ms(launch, 3, 3);
    if (decode_trace_read(marks) <= 0) {
        fprintf(stderr, "bench_gpu: --timeline: reading the trace failed\n");
        exit(1);
    }
    const int ctas = B * kHkv * ((L + split - 1) / split);
    unsigned long long t0 = ~0ull;
    for (int c = 0; c < ctas && c < kDecodeTraceCtas; c++)
        if (marks[c][0])
            t0 = std::min(t0, marks[c][0]);
    static const char *const names[kDecodeTraceMarks] = {
        "entry", "queries ready", "first step done", "last step done", "warps merged", "written / counted",
        "combine done", "previous kernel done"};
    // in time order: entry, the wait for the previous kernel (pdl_wait), then the rest
    static const int order[kDecodeTraceMarks] = {0, 7, 1, 2, 3, 4, 5, 6};
    note("  timeline %dx%d %s split %d%s: %d CTAs, %.4f ms per launch (launches back to back)\n", B, L, what,
         split, flags & KVFP8_DECODE_NO_PDL ? ", no PDL" : "", ctas, ms);
    note("    %-20s %6s %9s %9s %9s %9s   (us after the first entry)\n", "mark", "CTAs", "min", "median", "p90",
         "max");
    std::vector<double> at[kDecodeTraceMarks], phase[kDecodeTraceMarks];
    for (int c = 0; c < ctas && c < kDecodeTraceCtas; c++) {
        if (!marks[c][0])
            continue;
        unsigned long long prev = marks[c][0];
        int prev_i = 0;
        for (int i = 0; i < kDecodeTraceMarks; i++) {
            const int k = order[i];
            if (k != 0 && marks[c][k] < marks[c][7])
                continue;
            at[k].push_back((double)(marks[c][k] - t0) * 1e-3);
            if (i > 0 && prev_i == i - 1)
                phase[k].push_back((double)(marks[c][k] - prev) * 1e-3);
            prev = marks[c][k], prev_i = i;
        }
    }
    auto q = [](std::vector<double> &v, double f) {
        return v.empty() ? NAN : v[std::min(v.size() - 1, (size_t)(f * (double)v.size()))];
    };
    for (int i = 0; i < kDecodeTraceMarks; i++) {
        const int k = order[i];
        std::sort(at[k].begin(), at[k].end());
        note("    %-20s %6zu %9.2f %9.2f %9.2f %9.2f\n", names[k], at[k].size(), q(at[k], 0), q(at[k], 0.5),
             q(at[k], 0.9), q(at[k], 1.0));
    }
    note("    %-20s %6s %9s %9s %9s %9s   (us in the phase that ends at the mark)\n", "phase", "CTAs", "min",
         "median", "p90", "max");
    for (int i = 1; i < kDecodeTraceMarks; i++) {
        const int k = order[i];
        std::sort(phase[k].begin(), phase[k].end());
        note("    %-20s %6zu %9.2f %9.2f %9.2f %9.2f\n", names[k], phase[k].size(), q(phase[k], 0),
             q(phase[k], 0.5), q(phase[k], 0.9), q(phase[k], 1.0));
    }
}

int main(int argc, char **argv) {
    const char *torch_path = nullptr, *out_path = nullptr;
    bool quick = false, contiguous = false, probe = false, resident = false, timeline = false,
         write_only = false;
    int only_b = 0, only_l = 0, only_var = -1; // --decode-only, --var
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--torch") && i + 1 < argc)
            torch_path = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out_path = argv[++i];
        else if (!strcmp(argv[i], "--quick"))
            quick = true;
        else if (!strcmp(argv[i], "--decode-only") && i + 1 < argc &&
                 sscanf(argv[i + 1], "%dx%d", &only_b, &only_l) == 2)
            i++;
        else if (!strcmp(argv[i], "--contiguous"))
            contiguous = true;
        else if (!strcmp(argv[i], "--probe"))
            probe = true;
        else if (!strcmp(argv[i], "--cache-resident"))
            resident = true;
        else if (!strcmp(argv[i], "--timeline"))
            timeline = true;
        else if (!strcmp(argv[i], "--write-only"))
            write_only = true;
        else if (!strcmp(argv[i], "--var") && i + 1 < argc &&
                 (!strcmp(argv[i + 1], "fp8") || !strcmp(argv[i + 1], "bf16")))
            only_var = !strcmp(argv[++i], "fp8") ? 1 : 0;
        else {
            fprintf(stderr, "usage: bench_gpu [--torch FILE] [--out FILE] [--quick]\n"
                            "       bench_gpu --decode-only BxL [--var fp8|bf16] [--contiguous | --cache-resident]\n"
                            "                 [--probe] [--timeline] [--quick]\n"
                            "       bench_gpu --write-only [--quick]\n"
                            "  --decode-only: only the decode sweep of that shape (for profilers: ncu -k\n"
                            "  regex:decode_mma_kernel -c 1 catches its first launch); --contiguous: block\n"
                            "  tables of consecutive blocks instead of scattered ones (a locality experiment);\n"
                            "  --cache-resident: every block-table entry is block 0, so the KV reads hit\n"
                            "  L1/L2 and the time is the kernel's work without DRAM (its compute floor);\n"
                            "  --probe: first the read-pattern probes (the KV reads without the math);\n"
                            "  --write-only: the copy ceiling and the cache write, every variant of it;\n"
                            "  --timeline: after each default decode, when and how long each CTA spends in\n"
                            "  each phase (needs a build with -DKVFP8_DECODE_TRACE: bench/gpu/timeline.sh)\n");
            return 2;
        }
    }
    const int reps = quick ? 3 : 7;
    if (only_b && !((only_b == 1 && only_l == 32768) || (only_b == 8 && only_l == 8192) ||
                    (only_b == 32 && only_l == 4096) || (only_b == 128 && only_l == 1024))) {
        fprintf(stderr, "bench_gpu: --decode-only %dx%d: the shapes are 1x32768, 8x8192, 32x4096 and 128x1024\n",
                only_b, only_l);
        return 2;
    }
    if (!only_b && (contiguous || resident || probe || timeline || only_var >= 0)) {
        fprintf(stderr,
                "bench_gpu: --contiguous, --cache-resident, --probe, --timeline and --var go with --decode-only BxL\n");
        return 2;
    }
    if (write_only && (only_b || torch_path || out_path)) {
        fprintf(stderr, "bench_gpu: --write-only goes alone (or with --quick)\n");
        return 2;
    }
    if (timeline && decode_trace_read(nullptr) == 0) {
        fprintf(stderr, "bench_gpu: --timeline: this bench_gpu was built without -DKVFP8_DECODE_TRACE "
                        "(bench/gpu/timeline.sh builds one)\n");
        return 2;
    }
    if (contiguous && resident) {
        fprintf(stderr, "bench_gpu: --contiguous and --cache-resident exclude each other\n");
        return 2;
    }
    GpuRunInfo run;
    if (!gpu_run_info(&run))
        return 1;
    const cudaDeviceProp &prop = run.prop;

    // ---- copy ceiling ----
    const size_t copy_bytes = (size_t)1 << 30;
    void *ca, *cb;
    CK(cudaMalloc(&ca, copy_bytes));
    CK(cudaMalloc(&cb, copy_bytes));
    CK(cudaMemset(ca, 1, copy_bytes));
    const double copy_ms = median_ms([&](int) { CK(cudaMemcpyAsync(cb, ca, copy_bytes, cudaMemcpyDeviceToDevice)); },
                                     3, reps);
    const double copy_gbs = 2.0 * copy_bytes / (copy_ms * 1e-3) / 1e9;
    CK(cudaFree(ca));
    CK(cudaFree(cb));
    note("copy: %.3f ms per GiB, %.0f GB/s (read + write)\n", copy_ms, copy_gbs);

    // ---- pools: random bf16 K/V, then the FP8 pool written from it by the cache write ----
    Pools P;
    const size_t pool_elems = (size_t)kPoolBlocks * kBs * kSlotElems;
    CK(cudaMalloc(&P.bf_k, 2 * pool_elems));
    CK(cudaMalloc(&P.bf_v, 2 * pool_elems));
    CK(cudaMalloc(&P.fp8_k, pool_elems));
    CK(cudaMalloc(&P.fp8_v, pool_elems));
    CK(cudaMalloc(&P.scales, 512 * sizeof(float)));
    fill_bf16<<<4096, 256>>>(P.bf_k, pool_elems, 1, 2.0f);
    fill_bf16<<<4096, 256>>>(P.bf_v, pool_elems, 2, 1.0f);
    CK(cudaGetLastError());
    std::vector<float> hs(512, 1.0f);
    for (int h = 0; h < kHkv; h++)
        hs[(size_t)h] = 2.0f / 448.0f * (1.0f + 0.05f * (float)h), hs[256 + (size_t)h] = 1.0f / 448.0f;
    CK(cudaMemcpy(P.scales, hs.data(), 512 * sizeof(float), cudaMemcpyHostToDevice));

    // ---- cache write: bf16 [token][8][128] -> e4m3fn at scattered blocks ----
    const int64_t wtokens = (int64_t)kPoolBlocks * kBs;
    std::vector<int> bperm(kPoolBlocks);
    for (int i = 0; i < kPoolBlocks; i++)
        bperm[(size_t)i] = i;
    uint64_t rs = 42;
    for (int i = kPoolBlocks - 1; i > 0; i--) {
        rs = rs * 6364136223846793005ull + 1442695040888963407ull;
        std::swap(bperm[(size_t)i], bperm[(size_t)((rs >> 33) % (uint64_t)(i + 1))]);
    }
    std::vector<int64_t> slots((size_t)wtokens);
    for (int64_t t = 0; t < wtokens; t++)
        slots[(size_t)t] = (int64_t)bperm[(size_t)(t / kBs)] * kBs + t % kBs;
    int64_t *dslots;
    CK(cudaMalloc(&dslots, sizeof(int64_t) * (size_t)wtokens));
    CK(cudaMemcpy(dslots, slots.data(), sizeof(int64_t) * (size_t)wtokens, cudaMemcpyHostToDevice));
    CacheWriteArgs w;
    memset(&w, 0, sizeof w);
    w.key = P.bf_k, w.value = P.bf_v, w.slot_mapping = dslots, w.num_tokens = wtokens;
    w.key_cache = P.fp8_k, w.value_cache = P.fp8_v, w.num_heads = kHkv, w.head_size = kD;
    w.storage.is_fp8 = 1;
    kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &w.storage.fp8);
    w.src = KVFP8_SRC_BF16, w.scales = P.scales, w.per_head = 1;
    const bool write_fast = cache_write_is_fast(w);
    const double write_bytes = (double)wtokens * kSlotElems * 2 * (2 + 1) + 8.0 * wtokens;
    const double write_ms = median_ms([&](int) { CK(cache_write(w, 0)); }, 2, quick ? 2 : 5);
    const double write_gbs = write_bytes / (write_ms * 1e-3) / 1e9;
    // the vectorized kernel's other shapes (the default is one of them), same run
    for (int v = 1; write_fast && !only_b && cache_write_variant_name(v); v++) {
        const double ms = median_ms([&](int) { CK(cache_write(w, 0, v)); }, 2, quick ? 2 : 5);
        note("  cache write variant %d (%s): %.3f ms, %.0f GB/s, %.1f%% of copy\n", v, cache_write_variant_name(v),
             ms, write_bytes / (ms * 1e-3) / 1e9, 100.0 * write_bytes / (ms * 1e-3) / 1e9 / copy_gbs);
    }
    if (write_only) {
        note("cache write (default): %.3f ms, %.0f GB/s, %.1f%% of copy\n", write_ms, write_gbs,
             100.0 * write_gbs / copy_gbs);
        return 0;
    }
    // spot check against the reference (the cache write's exhaustive checks are test_gpu's)
    size_t write_bad = 0, write_checked = 0;
    {
        std::vector<uint16_t> src(4096);
        std::vector<uint8_t> got(4096);
        for (int probe = 0; probe < 64; probe++) {
            const int64_t t = (int64_t)((uint64_t)probe * 2654435761u % (uint64_t)wtokens);
            CK(cudaMemcpy(src.data(), P.bf_k + (size_t)t * kSlotElems, 2 * kSlotElems, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(got.data(), P.fp8_k + (size_t)slots[(size_t)t] * kSlotElems, kSlotElems,
                          cudaMemcpyDeviceToHost));
            for (size_t e = 0; e < kSlotElems; e++, write_checked++)
                write_bad += got[e] != kvfp8_fp8_encode_scaled_ref(&w.storage.fp8, KVFP8_SRC_BF16, src[e],
                                                                   hs[e / kD]);
        }
    }
    note("cache write: %.3f ms, %.0f GB/s (%s kernel), %zu/%zu spot-checked codes differ\n", write_ms, write_gbs,
         write_fast ? "vectorized" : "generic", write_bad, write_checked);

    // ---- decode ----
    struct Shape {
        int B, L;
    };
    const Shape shapes[] = {{1, 32768}, {8, 8192}, {32, 4096}, {128, 1024}};
    std::map<std::string, TorchRow> torch = read_torch(torch_path);
    DecodeResult res[4][3]; // [shape][0: BF16, 1: FP8 uniform, 2: FP8 model-dtype]
    int *dtab, *dlens, *dqsl, *dseq;
    CK(cudaMalloc(&dtab, sizeof(int) * kPoolBlocks));
    CK(cudaMalloc(&dlens, sizeof(int) * 128));
    CK(cudaMalloc(&dqsl, sizeof(int) * 129));
    CK(cudaMalloc(&dseq, sizeof(int) * 128));
    float *dq, *dout, *dref;
    CK(cudaMalloc(&dq, sizeof(float) * 128 * kHq * kD));
    CK(cudaMalloc(&dout, sizeof(float) * 128 * kHq * kD));
    CK(cudaMalloc(&dref, sizeof(float) * 128 * kHq * kD));
    {
        uint16_t *qb;
        CK(cudaMalloc(&qb, 2 * 128 * kHq * kD));
        fill_bf16<<<256, 256>>>(qb, (size_t)128 * kHq * kD, 3, 1.0f);
        bf16_to_f32<<<256, 256>>>(qb, dq, (size_t)128 * kHq * kD);
        CK(cudaDeviceSynchronize());
        CK(cudaFree(qb));
    }
    int q_f16 = 0;
    {
        std::vector<float> hq((size_t)128 * kHq * kD);
        CK(cudaMemcpy(hq.data(), dq, sizeof(float) * hq.size(), cudaMemcpyDeviceToHost));
        q_f16 = queries_f16_rows(hq.data(), (size_t)128 * kHq, kD);
    }
    std::vector<int> seqv(128), qslv(129);
    for (int i = 0; i < 128; i++)
        seqv[(size_t)i] = i;
    for (int i = 0; i <= 128; i++)
        qslv[(size_t)i] = i;
    CK(cudaMemcpy(dseq, seqv.data(), sizeof(int) * 128, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dqsl, qslv.data(), sizeof(int) * 129, cudaMemcpyHostToDevice));
    void *ws;
    const size_t ws_bytes = decode_workspace_bytes(128, kHkv, kHq / kHkv, kD, 256);
    CK(cudaMalloc(&ws, ws_bytes));
    CK(cudaMemset(ws, 0, ws_bytes));

    for (int si = 0; si < 4; si++) {
        const int B = shapes[si].B, L = shapes[si].L, bps = L / kBs;
        if (only_b && (B != only_b || L != only_l))
            continue;
        // kRot block tables, disjoint, together covering the pool
        std::vector<int> tab((size_t)kRot * B * bps);
        for (size_t i = 0; i < tab.size(); i++)
            tab[i] = resident     ? 0
                     : contiguous ? (int)(i % kPoolBlocks)
                                  : bperm[(kPoolBlocks - 1 - i * 7919 % kPoolBlocks + kPoolBlocks) % kPoolBlocks];
        // (7919 is prime to 32768, so the tables are disjoint blocks)
        CK(cudaMemcpy(dtab, tab.data(), sizeof(int) * tab.size(), cudaMemcpyHostToDevice));
        if (probe) {
            uint32_t *sink;
            CK(cudaMalloc(&sink, 512));
            const double bytes = (double)B * L * kSlotElems * 2;
            auto one = [&](const char *name, auto kernel, int splits, size_t smem, bool pdl = false) {
                if (smem > 48 * 1024)
                    CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
                cudaLaunchAttribute attr[1];
                attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
                attr[0].val.programmaticStreamSerializationAllowed = 1;
                cudaLaunchConfig_t lc = {};
                lc.gridDim = dim3(splits, kHkv, B), lc.blockDim = dim3(128), lc.dynamicSmemBytes = smem;
                lc.attrs = attr, lc.numAttrs = pdl ? 1 : 0;
                const uint8_t *kc = P.fp8_k, *vc = P.fp8_v;
                const double ms = median_ms(
                    [&](int it) {
                        const int *tb = dtab + (size_t)(it % kRot) * B * bps;
                        CK(cudaLaunchKernelEx(&lc, kernel, kc, vc, tb, bps, L, sink));
                    },
                    3, reps);
                note("  probe %dx%d %-28s %4d CTAs %.4f ms  %.0f GB/s\n", B, L, name, splits * kHkv * B, ms,
                     bytes / (ms * 1e-3) / 1e9);
            };
            {
                // the copy ceiling at this size: the same bytes moved (half read, half written)
                void *ca, *cb;
                const size_t half = (size_t)(bytes / 2);
                CK(cudaMalloc(&ca, half * kRot));
                CK(cudaMalloc(&cb, half * kRot));
                const double ms = median_ms(
                    [&](int it) {
                        CK(cudaMemcpyAsync((char *)cb + half * (it % kRot), (char *)ca + half * (it % kRot), half,
                                           cudaMemcpyDeviceToDevice));
                    },
                    3, reps);
                note("  probe %dx%d %-28s           %.4f ms  %.0f GB/s\n", B, L, "copy of as many bytes", ms,
                     bytes / (ms * 1e-3) / 1e9);
                CK(cudaFree(ca));
                CK(cudaFree(cb));
            }
            for (int ctas : {264, 528, 1056, 2112}) {
                const int splits = std::max(1, ctas / (B * kHkv));
                one("fragment mapping", read_probe<0, 1>, splits, 0);
                one("whole lines", read_probe<1, 1>, splits, 0);
                one("whole lines, PDL", read_probe<1, 1>, splits, 0, true);
                one("ring 2", ring_probe<2>, splits, 2 * 16384);
                one("ring 4", ring_probe<4>, splits, 4 * 16384);
                one("ring 8", ring_probe<8>, splits, 8 * 16384);
            }
            CK(cudaFree(sink));
        }
        std::vector<int> lens((size_t)B, L);
        CK(cudaMemcpy(dlens, lens.data(), sizeof(int) * B, cudaMemcpyHostToDevice));
        for (int var = 1; var >= 0; var = var == 1 ? 2 : var == 2 ? 0 : -1) {
            const int fp8 = var != 0;
            if (only_var >= 0 && fp8 != only_var)
                continue;
            AttnArgs a = base_args(P, fp8);
            a.seq_lens = dlens, a.query_start_loc = dqsl, a.query = dq, a.num_seqs = B, a.max_blocks_per_seq = bps;
            if (var == 1)
                a.read = KVFP8_READ_UNIFORM, a.q_f16_rows = q_f16;
            const double kv_bytes = (double)B * L * kSlotElems * 2 * (fp8 ? 1 : 2);
            auto run = [&](int split, int nbuf, int it, float *out, unsigned flags = 0) {
                AttnArgs r = a;
                r.block_table = dtab + (size_t)(it % kRot) * B * bps;
                r.out = out;
                CK(decode_mma(r, dseq, B, L, split, ws, 0, nbuf, flags));
            };
            // check once against the generic kernel (rotation 0)
            {
                CK(cudaMemset(ws, 0, ws_bytes));
                AttnArgs r = a;
                r.block_table = dtab, r.out = dref;
                CK(attention_generic(r, dseq, dseq, B, 0));
                const int split = decode_default_split(B, L, kHkv, kHq / kHkv, prop.multiProcessorCount);
                run(split, 0, 0, dout);
                CK(cudaDeviceSynchronize());
                std::vector<float> x((size_t)B * kHq * kD), y(x.size());
                CK(cudaMemcpy(x.data(), dout, sizeof(float) * x.size(), cudaMemcpyDeviceToHost));
                CK(cudaMemcpy(y.data(), dref, sizeof(float) * y.size(), cudaMemcpyDeviceToHost));
                double md_ = 0, mx = 0;
                for (size_t i = 0; i < x.size(); i++) {
                    const double dd = fabs((double)x[i] - y[i]);
                    md_ = dd == dd ? std::max(md_, dd) : INFINITY;
                    mx = std::max(mx, fabs((double)y[i]));
                }
                res[si][var].check = md_ / mx;
            }
            const int def = decode_default_split(B, L, kHkv, kHq / kHkv, prop.multiProcessorCount);
            struct Cfg {
                int split, nbuf;
                unsigned flags;
            };
            // the default, then the same without programmatic dependent launch
            std::vector<Cfg> cfgs = {{def, 0, 0}, {def, 0, KVFP8_DECODE_NO_PDL}};
            // FP8: every pipeline variant (gpu/paged_decode.cu, launch_decode) at the
            // default split and at every split of the sweep from 512 tokens up;
            // BF16: its 2-deep register pipeline at the default split
            for (int sl : {def, 128, 256, 512, 1024, 2048, 4096, 8192, 32768})
                if (sl <= L && (L + sl - 1) / sl <= 256 && (sl != def || cfgs.size() == 2)) {
                    if (sl != def)
                        cfgs.push_back({sl, 0, 0});
                    if (fp8 && (sl >= 512 || sl == def))
                        for (int nb = 2; decode_variant_name(nb); nb++)
                            cfgs.push_back({sl, nb, 0});
                }
            if (!fp8)
                cfgs.push_back({def, 2, 0});
            if (var == 2) { // model-dtype FP8: the pipeline variants at the default split only
                cfgs.resize(2);
                for (int nb = 2; decode_variant_name(nb); nb++)
                    cfgs.push_back({def, nb, 0});
            }
            if (timeline)
                for (unsigned flags : {0u, (unsigned)KVFP8_DECODE_NO_PDL})
                    print_timeline([&](int it) { run(def, 0, it, dout, flags); }, B, L,
                                   var == 1 ? "fp8 uniform" : var == 2 ? "fp8 model-dtype" : "bf16", def, flags);
            double best = 1e30;
            for (size_t c = 0; c < cfgs.size(); c++) {
                // the split counters' place depends on the number of splits: start clean
                CK(cudaMemset(ws, 0, ws_bytes));
                const double ms =
                    median_ms([&](int it) { run(cfgs[c].split, cfgs[c].nbuf, it, dout, cfgs[c].flags); }, 3, reps);
                char cfg[112];
                const int nb = cfgs[c].nbuf;
                char depth[64] = "";
                const int picked = nb ? 0 : decode_default_variant(a, B, L, cfgs[c].split);
                if (fp8 && nb)
                    snprintf(depth, sizeof depth, ", v%d %s", nb, decode_variant_name(nb));
                else if (picked)
                    snprintf(depth, sizeof depth, " (default: v%d)", picked);
                else if (!fp8 && nb)
                    snprintf(depth, sizeof depth, ", register pipeline %d deep", nb);
                snprintf(cfg, sizeof cfg, "split %d%s%s", cfgs[c].split, depth,
                         cfgs[c].flags & KVFP8_DECODE_NO_PDL ? ", no PDL" : "");
                note("  decode %dx%d %s %-56s %.4f ms  %.0f GB/s\n", B, L,
                     var == 1 ? "fp8 uniform" : var == 2 ? "fp8 model-dtype" : "bf16", cfg, ms,
                     kv_bytes / (ms * 1e-3) / 1e9);
                if (c == 0)
                    res[si][var].ms_default = ms, res[si][var].default_cfg = cfg;
                if (c == 1)
                    res[si][var].ms_no_pdl = ms;
                if (ms < best)
                    best = ms, res[si][var].ms_best = ms, res[si][var].best_cfg = cfg;
            }
        }
    }

    if (only_b)
        return 0;

    // ---- prefill over a cached prefix ----
    struct PShape {
        int B, prefix, chunk;
    };
    const PShape pshapes[] = {{16, 4096, 64}, {4, 4096, 1024}};
    double pre_ms[2][2];
    double pre_check[2][2];
    for (int pi = 0; pi < 2; pi++) {
        const int B = pshapes[pi].B, len = pshapes[pi].prefix + pshapes[pi].chunk, bps = (len + kBs - 1) / kBs;
        const int chunk = pshapes[pi].chunk;
        std::vector<int> tab((size_t)B * bps), lens((size_t)B, len), qsl((size_t)B + 1);
        for (size_t i = 0; i < tab.size(); i++)
            tab[i] = bperm[i];
        for (int b = 0; b <= B; b++)
            qsl[(size_t)b] = b * chunk;
        CK(cudaMemcpy(dtab, tab.data(), sizeof(int) * tab.size(), cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dlens, lens.data(), sizeof(int) * B, cudaMemcpyHostToDevice));
        int *dqsl2, *ditems, *dtokseq, *dtoks;
        float *pq, *pout, *pref;
        const size_t ntok = (size_t)B * chunk;
        CK(cudaMalloc(&dqsl2, sizeof(int) * (B + 1)));
        CK(cudaMemcpy(dqsl2, qsl.data(), sizeof(int) * (B + 1), cudaMemcpyHostToDevice));
        const int tq = prefill_tile_tokens(kHq / kHkv);
        std::vector<int> items, tokseq(ntok), toks(ntok);
        for (int b = 0; b < B; b++)
            for (int t0 = 0; t0 < chunk; t0 += tq)
                items.push_back(b), items.push_back(t0);
        for (size_t t = 0; t < ntok; t++)
            tokseq[t] = (int)(t / (size_t)chunk), toks[t] = (int)t;
        CK(cudaMalloc(&ditems, sizeof(int) * items.size()));
        CK(cudaMemcpy(ditems, items.data(), sizeof(int) * items.size(), cudaMemcpyHostToDevice));
        CK(cudaMalloc(&dtokseq, sizeof(int) * ntok));
        CK(cudaMemcpy(dtokseq, tokseq.data(), sizeof(int) * ntok, cudaMemcpyHostToDevice));
        CK(cudaMalloc(&dtoks, sizeof(int) * ntok));
        CK(cudaMemcpy(dtoks, toks.data(), sizeof(int) * ntok, cudaMemcpyHostToDevice));
        CK(cudaMalloc(&pq, sizeof(float) * ntok * kHq * kD));
        CK(cudaMalloc(&pout, sizeof(float) * ntok * kHq * kD));
        CK(cudaMalloc(&pref, sizeof(float) * ntok * kHq * kD));
        {
            uint16_t *qb;
            CK(cudaMalloc(&qb, 2 * ntok * kHq * kD));
            fill_bf16<<<1024, 256>>>(qb, ntok * kHq * kD, 5 + pi, 1.0f);
            bf16_to_f32<<<1024, 256>>>(qb, pq, ntok * kHq * kD);
            CK(cudaDeviceSynchronize());
            CK(cudaFree(qb));
        }
        for (int fp8 = 1; fp8 >= 0; fp8--) {
            AttnArgs a = base_args(P, fp8);
            a.seq_lens = dlens, a.query_start_loc = dqsl2, a.query = pq, a.out = pout, a.num_seqs = B;
            a.max_blocks_per_seq = bps, a.block_table = dtab;
            pre_ms[pi][fp8] = median_ms([&](int) { CK(prefill_mma(a, ditems, (int)(items.size() / 2), 0)); }, 2,
                                        quick ? 2 : 3);
            // check a sample of tokens against the generic kernel
            AttnArgs r = a;
            r.out = pref;
            const int nchk = std::min<int>((int)ntok, 64);
            CK(attention_generic(r, dtokseq, dtoks + (ntok - (size_t)nchk), nchk, 0));
            CK(cudaDeviceSynchronize());
            std::vector<float> x((size_t)nchk * kHq * kD), y(x.size());
            const size_t off = (ntok - (size_t)nchk) * kHq * kD;
            CK(cudaMemcpy(x.data(), pout + off, sizeof(float) * x.size(), cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(y.data(), pref + off, sizeof(float) * y.size(), cudaMemcpyDeviceToHost));
            double md_ = 0, mx = 0;
            for (size_t i = 0; i < x.size(); i++) {
                const double dd = fabs((double)x[i] - y[i]);
                md_ = dd == dd ? std::max(md_, dd) : INFINITY;
                mx = std::max(mx, fabs((double)y[i]));
            }
            pre_check[pi][fp8] = md_ / mx;
            note("  prefill %dx(%d+%d) %s %.4f ms (vs generic: %.2g)\n", B, pshapes[pi].prefix, chunk,
                 fp8 ? "fp8 " : "bf16", pre_ms[pi][fp8], pre_check[pi][fp8]);
        }
        cudaFree(dqsl2), cudaFree(ditems), cudaFree(dtokseq), cudaFree(dtoks), cudaFree(pq), cudaFree(pout),
            cudaFree(pref);
    }

    // ---- the table ----
    md("# kvfp8 GPU bench (`make bench-gpu`)\n\n");
    md("%s%s\n\n", run.line, quick ? ", --quick" : "");
    md("Device-to-device copy (ceiling, measured in this run): **%.0f GB/s** (bytes read + written, 1 GiB).\n\n",
       copy_gbs);
    md("## Decode: KV-read bandwidth\n\n32 query heads, 8 KV heads, head 128, block 16, bf16 model; GB/s = K and V "
       "bytes read / time; times are the backend's default split-KV setting (best of the sweep in brackets). "
       "FP8 = e4m3fn with per-head scales read with the `uniform` semantics (FA3/FlashInfer: the exact decoded "
       "values on float16 MMAs, scales folded into the scores and the output; queries %s); FP8 `model-dtype` "
       "(vLLM's CUDA kernel: decode * scale in float32 rounded to bf16 per element) for comparison.\n\n",
       q_f16 ? "scaled per row into float16 exactly" : "NOT float16-exact: the bf16 MMA path ran");
    md("| batch x context | FP8 ms | FP8 GB/s | FP8 %% of copy | FP8 model-dtype ms (GB/s) | BF16 ms | BF16 GB/s | BF16 %% "
       "of copy | FP8 speed-up vs BF16 | torch BF16 ms | torch FP8 ms | FP8 speed-up vs torch FP8 |\n");
    md("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    bool t_fp8_bw = true, t_fp8_vs_bf16 = true, t_vs_torch = true, have_torch = true;
    for (int si = 0; si < 4; si++) {
        const int B = shapes[si].B, L = shapes[si].L;
        const double fb = (double)B * L * kSlotElems * 2;
        const DecodeResult &f = res[si][1], &b = res[si][0], &fm = res[si][2];
        const double fgbs = fb / (f.ms_default * 1e-3) / 1e9, bgbs = 2 * fb / (b.ms_default * 1e-3) / 1e9;
        char shape[32];
        snprintf(shape, sizeof shape, "%dx%d", B, L);
        const TorchRow tr = torch.count(shape) ? torch[shape] : TorchRow();
        if (!(tr.fp8_ms > 0))
            have_torch = false;
        const double vs_torch = tr.fp8_ms / f.ms_default;
        t_fp8_bw &= fgbs >= 0.85 * copy_gbs;
        t_fp8_vs_bf16 &= b.ms_default / f.ms_default >= 1.8;
        t_vs_torch &= vs_torch >= 15;
        md("| %d x %d | %.4f (%.4f) | %.0f | %.1f%% | %.4f (%.0f) | %.4f (%.4f) | %.0f | %.1f%% | %.2fx | %.3f | %.3f | "
           "%.1fx |\n",
           B, L, f.ms_default, f.ms_best, fgbs, 100 * fgbs / copy_gbs, fm.ms_default,
           fb / (fm.ms_default * 1e-3) / 1e9, b.ms_default, b.ms_best, bgbs, 100 * bgbs / copy_gbs,
           b.ms_default / f.ms_default, tr.bf16_ms, tr.fp8_ms, vs_torch);
    }
    md("\nSplit settings (default / best): ");
    for (int si = 0; si < 4; si++)
        md("%dx%d FP8 %s / %s, BF16 %s / %s%s", shapes[si].B, shapes[si].L, res[si][1].default_cfg.c_str(),
           res[si][1].best_cfg.c_str(), res[si][0].default_cfg.c_str(), res[si][0].best_cfg.c_str(),
           si < 3 ? "; " : ".\n");
    md("Launched without programmatic dependent launch (the default's kernel, each launch starting only after the "
       "previous one ended; ms, FP8 / FP8 model-dtype / BF16): ");
    for (int si = 0; si < 4; si++)
        md("%dx%d %.4f / %.4f / %.4f%s", shapes[si].B, shapes[si].L, res[si][1].ms_no_pdl, res[si][2].ms_no_pdl,
           res[si][0].ms_no_pdl, si < 3 ? "; " : ".\n");
    md("Each timed decode kernel's output vs the generic float32 kernel on the same data (max |diff| / max |out|): ");
    for (int si = 0; si < 4; si++)
        md("%dx%d FP8 %.1e, FP8 model-dtype %.1e, BF16 %.1e%s", shapes[si].B, shapes[si].L, res[si][1].check,
           res[si][2].check, res[si][0].check, si < 3 ? "; " : ".\n\n");
    md("## Cache write\n\nbf16 -> e4m3fn (`nvidia` table, per-head scales), %lld tokens x 8 heads x 128 into "
       "scattered blocks (%s kernel): **%.3f ms, %.0f GB/s = %.1f%% of copy** (bytes: K and V read as bf16 + written as "
       "FP8 + slot mapping). Spot check against the reference: %zu of %zu codes differ.\n\n",
       (long long)wtokens, write_fast ? "vectorized" : "generic", write_ms, write_gbs, 100 * write_gbs / copy_gbs,
       write_bad, write_checked);
    md("## Prefill over a cached prefix\n\n32/8 heads, head 128, block 16, causal within the chunk, `model-dtype` "
       "reads; tensor cores (mma.sync bf16, float32 accumulation), each K/V tile dequantized once into shared "
       "memory.\n\n| sequences x (cached prefix + new chunk) | FP8 prefix ms | BF16 prefix ms | FP8 / BF16 time | check vs "
       "generic (FP8, BF16) |\n|---|---|---|---|---|\n");
    bool t_prefill = true;
    for (int pi = 0; pi < 2; pi++) {
        t_prefill &= pre_ms[pi][1] <= pre_ms[pi][0];
        md("| %d x (%d + %d) | %.4f | %.4f | %.3f | %.1e, %.1e |\n", pshapes[pi].B, pshapes[pi].prefix,
           pshapes[pi].chunk, pre_ms[pi][1], pre_ms[pi][0], pre_ms[pi][1] / pre_ms[pi][0], pre_check[pi][1],
           pre_check[pi][0]);
    }
    md("\n## Targets\n\n| target | result |\n|---|---|\n");
    md("| FP8 decode >= 85%% of copy bandwidth at every shape | %s |\n", t_fp8_bw ? "MET" : "NOT MET");
    md("| FP8 decode >= 1.8x faster than BF16 decode | %s |\n", t_fp8_vs_bf16 ? "MET" : "NOT MET");
    md("| FP8 decode >= 15x faster than the PyTorch FP8 baseline | %s |\n",
       have_torch ? (t_vs_torch ? "MET" : "NOT MET") : "not measured (no torch baseline)");
    md("| cache write >= 90%% of copy bandwidth | %s |\n", write_gbs >= 0.9 * copy_gbs ? "MET" : "NOT MET");
    md("| prefill over an FP8 prefix no slower than over a BF16 prefix | %s |\n", t_prefill ? "MET" : "NOT MET");
    if (out_path) {
        FILE *f = fopen(out_path, "w");
        if (f) {
            fputs(g_md.c_str(), f);
            fclose(f);
        }
    }
    return 0;
}
