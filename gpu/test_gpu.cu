// test_gpu — the KV-cache kernels against the kvfp8 reference library, on random
// inputs drawn afresh for every case (fixed seeds, so a failure replays):
//   encode     every rules table x {f32, f16, bf16}: all 65536 16-bit inputs, 2^18
//              random f32 patterns plus edges, scales 1, 0.37, 7.5 - bitwise
//   decode     every format, all 256 codes x 5 scales (one gives subnormal products)
//   cache      the vectorized E4M3 write (f32/f16/bf16, per-head and per-tensor scales,
//              padding slots, NaN/Inf/-0/subnormal/outlier inputs) and the generic write
//              (every rules table, auto f32/f16/bf16) - bitwise, untouched slots too
//   attention  the tensor-core decode and prefill kernels and the generic kernel:
//              every output element within kvfp8_attention_error_bound(accumulate F32,
//              output F32) of the float64 reference under the same read semantics;
//              outputs poisoned (NaN) first, so an unwritten element fails
// Usage: test_gpu [--out FILE] [--quick]     Exit 0: all passed; 1: failures; 3: CUDA error.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "gpu_run_info.h"
#include "kvfp8_kernels.h"

#define CK(call) KVFP8_GPU_CHECK(call)

namespace {

using namespace kvfp8_gpu;

FILE *g_out;
int g_failures, g_cases;
std::string g_summary;

void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fputs(line, stdout);
    fflush(stdout);
    if (g_out)
        fputs(line, g_out);
}

void result(bool ok, const char *what, const char *detail) {
    g_cases++;
    if (!ok)
        g_failures++;
    say("%s  %-58s %s\n", ok ? "PASS" : "FAIL", what, detail);
    char row[512];
    snprintf(row, sizeof row, "| %s | %s | %s |\n", what, ok ? "PASS" : "**FAIL**", detail);
    g_summary += row;
}

uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
float frand(uint64_t *s, float scale) { return scale * ((float)(rng_next(s) >> 40) / (float)(1 << 24) * 2.0f - 1.0f); }
uint32_t f2u(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    return b;
}

template <typename T>
struct DevBuf {
    T *p = nullptr;
    size_t n = 0;
    explicit DevBuf(size_t count) : n(count) { CK(cudaMalloc(&p, sizeof(T) * (count ? count : 1))); }
    ~DevBuf() { cudaFree(p); }
    void up(const T *h) { CK(cudaMemcpy(p, h, sizeof(T) * n, cudaMemcpyHostToDevice)); }
    void down(T *h) const { CK(cudaMemcpy(h, p, sizeof(T) * n, cudaMemcpyDeviceToHost)); }
};

std::vector<kvfp8_fp8_rules> all_rules() {
    std::vector<kvfp8_fp8_rules> v;
    for (int f = 0; f < KVFP8_FORMAT_COUNT; f++)
        for (int m = 0; m < KVFP8_MODE_COUNT; m++)
            for (int p = 0; p < KVFP8_PROFILE_COUNT; p++) {
                kvfp8_fp8_rules r;
                if (kvfp8_fp8_rules_get((kvfp8_format)f, (kvfp8_mode)m, (kvfp8_profile)p, &r) == KVFP8_OK)
                    v.push_back(r);
            }
    return v;
}

std::string rules_label(const kvfp8_fp8_rules &r) {
    return std::string(kvfp8_format_name(r.format)) + "/" + kvfp8_mode_name(r.mode) + "/" + kvfp8_profile_name(r.profile);
}

// ---- encode / decode -------------------------------------------------------------------------

void test_encode(bool quick) {
    const std::vector<kvfp8_fp8_rules> rules = all_rules();
    const float scales[] = {1.0f, 0.37f, 7.5f};
    const size_t n32 = quick ? (1u << 16) : (1u << 18);
    std::vector<uint32_t> in32(n32 + 64);
    uint64_t s = 12345;
    for (size_t i = 0; i < n32; i++)
        in32[i] = (uint32_t)(rng_next(&s) >> 32);
    const uint32_t edges[] = {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7F800000u, 0xFF800000u,
                              0x00000000u, 0x80000000u, 0x00000001u, 0x80800000u, 0x43E00000u, 0x43E80000u,
                              0xC3E00000u, 0x47600000u, 0x47700000u, 0x3A800000u, 0x3A800001u, 0x3B000000u};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        in32[n32 + i] = edges[i];
    const size_t total32 = n32 + sizeof edges / sizeof edges[0];
    std::vector<uint16_t> in16(65536);
    for (size_t i = 0; i < 65536; i++)
        in16[i] = (uint16_t)i;
    DevBuf<uint32_t> d32(total32);
    d32.up(in32.data());
    DevBuf<uint16_t> d16(65536);
    d16.up(in16.data());
    DevBuf<uint8_t> dout(std::max(total32, (size_t)65536));
    std::vector<uint8_t> out(std::max(total32, (size_t)65536));
    for (const kvfp8_fp8_rules &r : rules) {
        size_t bad = 0, checked = 0;
        char first[160] = "";
        for (int src = 0; src < KVFP8_SOURCE_COUNT; src++)
            for (float sc : scales) {
                const size_t n = src == KVFP8_SRC_F32 ? total32 : 65536;
                const void *din = src == KVFP8_SRC_F32 ? (const void *)d32.p : (const void *)d16.p;
                CK(encode_buffer(r, (kvfp8_source)src, din, dout.p, n, sc, 0));
                CK(cudaMemcpy(out.data(), dout.p, n, cudaMemcpyDeviceToHost));
                for (size_t i = 0; i < n; i++) {
                    const uint32_t bits = src == KVFP8_SRC_F32 ? in32[i] : in16[i];
                    const uint8_t want = kvfp8_fp8_encode_scaled_ref(&r, (kvfp8_source)src, bits, sc);
                    checked++;
                    if (out[i] != want && !(r.any_nan_conforms && kvfp8_fp8_is_nan(r.format, want) &&
                                            kvfp8_fp8_is_nan(r.format, out[i]))) {
                        if (!bad++)
                            snprintf(first, sizeof first, "; first: %s 0x%x / %g => 0x%02x, expected 0x%02x",
                                     kvfp8_source_name((kvfp8_source)src), bits, (double)sc, out[i], want);
                    }
                }
            }
        char detail[320];
        snprintf(detail, sizeof detail, "%zu conversions, %zu mismatches%s", checked, bad, first);
        result(bad == 0, ("encode " + rules_label(r)).c_str(), detail);
    }
}

void test_decode() {
    const float scales[] = {1.0f, 0.5f, 3.0f, 0.0123f, 1.7e-37f};
    std::vector<uint8_t> codes(256);
    for (int i = 0; i < 256; i++)
        codes[i] = (uint8_t)i;
    DevBuf<uint8_t> din(256);
    din.up(codes.data());
    DevBuf<float> dout(256);
    std::vector<float> out(256);
    for (int f = 0; f < KVFP8_FORMAT_COUNT; f++) {
        size_t bad = 0;
        for (float sc : scales) {
            CK(decode_buffer((kvfp8_format)f, din.p, dout.p, 256, sc, 0));
            dout.down(out.data());
            for (int i = 0; i < 256; i++) {
                const float want = kvfp8_fp8_dequant((kvfp8_format)f, (uint8_t)i, sc);
                const bool same = (want != want) ? out[i] != out[i] : f2u(want) == f2u(out[i]);
                bad += !same;
            }
        }
        char detail[128];
        snprintf(detail, sizeof detail, "256 codes x 5 scales, %zu mismatches", bad);
        result(bad == 0, (std::string("decode ") + kvfp8_format_name((kvfp8_format)f)).c_str(), detail);
    }
}

// ---- cache write ------------------------------------------------------------------------------

uint32_t special_bits(uint64_t *s, kvfp8_source src) {
    static const uint32_t f32[] = {0x7FC00000u, 0xFF800001u, 0x7F800000u, 0xFF800000u,
                                   0x80000000u, 0x00000001u, 0x4B000000u, 0xCB800000u};
    static const uint16_t f16[] = {0x7E00, 0xFC01, 0x7C00, 0xFC00, 0x8000, 0x0001, 0x7BFF, 0xFBFF};
    static const uint16_t bf16[] = {0x7FC0, 0xFF81, 0x7F80, 0xFF80, 0x8000, 0x0001, 0x7F7F, 0xC700};
    const unsigned i = (unsigned)(rng_next(s) >> 61);
    return src == KVFP8_SRC_F32 ? f32[i] : src == KVFP8_SRC_F16 ? f16[i] : bf16[i];
}

void make_source(kvfp8_source src, size_t n, int head_size, uint64_t seed, std::vector<uint8_t> &out) {
    const size_t width = src == KVFP8_SRC_F32 ? 4 : 2;
    out.resize(n * width);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        if (rng_next(&s) % 40 == 0) {
            bits = special_bits(&s, src);
        } else {
            const float big = (i % (size_t)head_size) == 5 ? 600.0f : 4.0f;
            const float x = frand(&s, big);
            bits = src == KVFP8_SRC_F32 ? f2u(x) : src == KVFP8_SRC_F16 ? kvfp8_f32_to_f16(x) : kvfp8_f32_to_bf16(x);
        }
        if (width == 4)
            memcpy(&out[4 * i], &bits, 4);
        else {
            const uint16_t h = (uint16_t)bits;
            memcpy(&out[2 * i], &h, 2);
        }
    }
}

// One write through the GPU kernel and the reference; returns the mismatching bytes.
size_t write_case(const kvfp8_kv_storage &stor, kvfp8_source src, int H, int D, int bs, int nblocks, int tokens,
                  bool per_head, uint64_t seed, bool expect_fast, std::string *first, int variant = 0) {
    kvfp8_kv_cache want;
    if (kvfp8_kv_cache_init(&want, &stor, nblocks, bs, H, D) != KVFP8_OK) {
        *first = kvfp8_last_error();
        return 1;
    }
    float ks[256], vs[256];
    const int count = per_head ? H : 1;
    for (int h = 0; h < count; h++)
        ks[h] = 0.37f + 0.013f * (float)h, vs[h] = 1.9f - 0.11f * (float)h;
    kvfp8_kv_cache_set_scales(&want, ks, vs, count);
    const size_t slots = (size_t)nblocks * bs, row = (size_t)H * D;
    const size_t bytes = slots * row * kvfp8_kv_storage_bytes(&stor);
    uint64_t s = seed ^ 0xCAFE;
    for (size_t i = 0; i < bytes; i++)
        want.key_cache[i] = (uint8_t)(rng_next(&s) >> 56), want.value_cache[i] = (uint8_t)(rng_next(&s) >> 56);
    std::vector<uint8_t> gk(want.key_cache, want.key_cache + bytes), gv(want.value_cache, want.value_cache + bytes);
    std::vector<int64_t> perm(slots), slot_mapping((size_t)tokens);
    for (size_t i = 0; i < slots; i++)
        perm[i] = (int64_t)i;
    for (size_t i = slots - 1; i > 0; i--)
        std::swap(perm[i], perm[rng_next(&s) % (i + 1)]);
    for (int t = 0; t < tokens; t++)
        slot_mapping[(size_t)t] = t % 7 == 3 ? -1 : perm[(size_t)t];
    std::vector<uint8_t> key, value;
    make_source(src, (size_t)tokens * row, D, seed + 1, key);
    make_source(src, (size_t)tokens * row, D, seed + 2, value);
    kvfp8_cache_write(&want, src, key.data(), value.data(), slot_mapping.data(), (size_t)tokens);

    DevBuf<uint8_t> dk(key.size()), dv(value.size()), dkc(bytes), dvc(bytes);
    DevBuf<int64_t> dslots((size_t)tokens);
    DevBuf<float> dscales(512);
    dk.up(key.data()), dv.up(value.data()), dkc.up(gk.data()), dvc.up(gv.data()), dslots.up(slot_mapping.data());
    std::vector<float> hs(512, 1.0f);
    for (int h = 0; h < count; h++)
        hs[(size_t)h] = ks[h], hs[256 + (size_t)h] = vs[h];
    dscales.up(hs.data());
    CacheWriteArgs a;
    memset(&a, 0, sizeof a);
    a.key = dk.p, a.value = dv.p, a.slot_mapping = dslots.p, a.num_tokens = tokens;
    a.key_cache = dkc.p, a.value_cache = dvc.p, a.num_heads = H, a.head_size = D, a.storage = stor, a.src = src;
    a.scales = dscales.p, a.per_head = per_head && H > 1;
    if (cache_write_is_fast(a) != expect_fast) {
        *first = expect_fast ? "expected the vectorized kernel, got the generic one"
                             : "expected the generic kernel, got the vectorized one";
        kvfp8_kv_cache_free(&want);
        return 1;
    }
    CK(cache_write(a, 0, variant));
    CK(cudaDeviceSynchronize());
    dkc.down(gk.data()), dvc.down(gv.data());
    size_t bad = 0;
    for (size_t i = 0; i < bytes; i++) {
        const bool kb = gk[i] != want.key_cache[i], vb = gv[i] != want.value_cache[i];
        if ((kb || vb) && !bad++) {
            char buf[200];
            snprintf(buf, sizeof buf, "; first at byte %zu: %s 0x%02x expected 0x%02x", i, kb ? "key" : "value",
                     kb ? gk[i] : gv[i], kb ? want.key_cache[i] : want.value_cache[i]);
            *first = buf;
        }
        bad += (size_t)kb + (size_t)vb - (kb || vb ? 1 : 0);
    }
    kvfp8_kv_cache_free(&want);
    return bad;
}

void test_cache_write(bool quick) {
    struct Shape {
        int H, D, bs, nblocks, tokens;
    };
    const Shape shapes[] = {{8, 128, 16, 64, 700}, {2, 64, 32, 8, 200}, {4, 256, 16, 12, 150}, {1, 80, 16, 4, 50}};
    kvfp8_kv_storage e4;
    memset(&e4, 0, sizeof e4);
    e4.is_fp8 = 1;
    kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &e4.fp8);
    // the vectorized kernel: every source, both scale kinds, every shape (head 80: generic)
    for (int src = 0; src < KVFP8_SOURCE_COUNT; src++)
        for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
            for (int per_head = 0; per_head < 2; per_head++) {
                const Shape &S = shapes[sh];
                std::string first;
                const bool fast = S.D % 16 == 0;
                const size_t bad = write_case(e4, (kvfp8_source)src, S.H, S.D, S.bs, S.nblocks, S.tokens, per_head,
                                              1000 + sh * 10 + (size_t)src * 2 + (size_t)per_head, fast, &first);
                char what[160], detail[300];
                snprintf(what, sizeof what, "cache_write %s e4m3fn/sat/nvidia %s H%d D%d bs%d %s",
                         fast ? "vec" : "generic", kvfp8_source_name((kvfp8_source)src), S.H, S.D, S.bs,
                         per_head ? "per-head" : "per-tensor");
                snprintf(detail, sizeof detail, "%d tokens, %zu bad bytes%s", S.tokens, bad, first.c_str());
                result(bad == 0, what, detail);
            }
    // every other shape of the vectorized kernel (the bench's variants), the same cases
    for (int variant = 1; cache_write_variant_name(variant); variant++) {
        size_t bad_total = 0, cases = 0;
        std::string first_all;
        for (int src = 0; src < KVFP8_SOURCE_COUNT; src++)
            for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
                for (int per_head = 0; per_head < 2; per_head++) {
                    const Shape &S = shapes[sh];
                    std::string first;
                    const size_t bad =
                        write_case(e4, (kvfp8_source)src, S.H, S.D, S.bs, S.nblocks, S.tokens, per_head,
                                   1000 + sh * 10 + (size_t)src * 2 + (size_t)per_head, S.D % 16 == 0, &first, variant);
                    cases++;
                    if (bad && first_all.empty())
                        first_all = std::string(kvfp8_source_name((kvfp8_source)src)) + " D" + std::to_string(S.D) + first;
                    bad_total += bad;
                }
        char what[160], detail[400];
        snprintf(what, sizeof what, "cache_write variant %d (%s): every source x shape x scale kind", variant,
                 cache_write_variant_name(variant));
        snprintf(detail, sizeof detail, "%zu cases, %zu bad bytes%s%s", cases, bad_total,
                 first_all.empty() ? "" : "; first: ", first_all.c_str());
        result(bad_total == 0, what, detail);
    }
    if (quick)
        return;
    // the generic kernel: every other rules table and every auto storage
    int t = 0;
    size_t bad_total = 0, cases = 0;
    std::string first_all;
    for (const kvfp8_fp8_rules &r : all_rules()) {
        kvfp8_kv_storage st;
        memset(&st, 0, sizeof st);
        st.is_fp8 = 1, st.fp8 = r;
        for (int src = 0; src < KVFP8_SOURCE_COUNT; src++, t++) {
            const Shape &S = shapes[t % 3];
            std::string first;
            CacheWriteArgs probe;
            memset(&probe, 0, sizeof probe);
            probe.storage = st, probe.src = (kvfp8_source)src, probe.head_size = S.D;
            // alignment of real buffers is 256 bytes; the probe's null pointers are aligned too
            const bool fast = cache_write_is_fast(probe);
            const size_t bad = write_case(st, (kvfp8_source)src, S.H, S.D, S.bs, S.nblocks, S.tokens / 4, t % 2,
                                          5000 + (uint64_t)t, fast, &first);
            cases++;
            if (bad && first_all.empty())
                first_all = rules_label(r) + " " + kvfp8_source_name((kvfp8_source)src) + first;
            bad_total += bad;
        }
    }
    char detail[400];
    snprintf(detail, sizeof detail, "%zu (rules table, source) cases, %zu bad bytes%s%s", cases, bad_total,
             first_all.empty() ? "" : "; first: ", first_all.c_str());
    result(bad_total == 0, "cache_write every rules table x source", detail);
    bad_total = 0, cases = 0, first_all.clear();
    for (int dt = 0; dt <= KVFP8_DTYPE_BF16; dt++)
        for (int src = 0; src < KVFP8_SOURCE_COUNT; src++) {
            kvfp8_kv_storage st;
            memset(&st, 0, sizeof st);
            st.dtype = (kvfp8_model_dtype)dt;
            std::string first;
            const Shape &S = shapes[(dt + src) % 3];
            const size_t bad = write_case(st, (kvfp8_source)src, S.H, S.D, S.bs, S.nblocks, S.tokens / 4, 1,
                                          7000 + (uint64_t)(dt * 3 + src), false, &first);
            cases++;
            if (bad && first_all.empty())
                first_all = std::string(kvfp8_model_dtype_name((kvfp8_model_dtype)dt)) + " " +
                            kvfp8_source_name((kvfp8_source)src) + first;
            bad_total += bad;
        }
    snprintf(detail, sizeof detail, "%zu (dtype, source) cases, %zu bad bytes%s%s", cases, bad_total,
             first_all.empty() ? "" : "; first: ", first_all.c_str());
    result(bad_total == 0, "cache_write auto f32/f16/bf16 x source", detail);
}

// ---- attention --------------------------------------------------------------------------------

enum Path { P_MMA, P_GENERIC };

struct AttnCase {
    std::string label;
    int fp8;                   // else auto storage of the model dtype
    kvfp8_format format;
    kvfp8_model_dtype model;
    kvfp8_read_semantics read;
    int Hkv, Hq, D, bs;
    std::vector<int> lens, qlens;
    int per_head, window;
    double cap;
    Path path;
    int split_len; // decode: 0 = default
    uint64_t seed;
    int no_f16 = 0; // keep e4m3fn/uniform decode off the float16 path
    int q_spread = 0; // query head h scaled by 2^(3 (h % 8) - 10): rows of very different size
    int nbuf = 0;     // decode pipeline variant (decode_mma's nbuf; 0 = the default)
    int repeat = 1;   // decode launches back to back on one workspace (the last one checked)
    int expect_pdl = 0; // the decode must have run as a programmatic dependent launch
};

struct AttnData {
    kvfp8_kv_cache cache;
    std::vector<int> table, qsl;
    int max_blocks;
    std::vector<float> query, nk, nv;
    std::vector<double> ref, bound;
    kvfp8_attention_params p;
    bool ok = false;
};

void build_case(const AttnCase &c, AttnData &d) {
    kvfp8_kv_storage st;
    memset(&st, 0, sizeof st);
    st.is_fp8 = c.fp8;
    st.dtype = c.model;
    if (c.fp8)
        kvfp8_fp8_rules_get(c.format, KVFP8_SAT, c.format == KVFP8_E4M3FNUZ ? KVFP8_PROFILE_HIP : KVFP8_PROFILE_NVIDIA,
                            &st.fp8);
    const int n = (int)c.lens.size();
    int total_blocks = 0;
    d.max_blocks = 1;
    d.qsl.assign((size_t)n + 1, 0);
    for (int q = 0; q < n; q++) {
        const int b = (c.lens[(size_t)q] + c.bs - 1) / c.bs;
        total_blocks += b;
        d.max_blocks = std::max(d.max_blocks, b);
        d.qsl[(size_t)q + 1] = d.qsl[(size_t)q] + c.qlens[(size_t)q];
    }
    const int nblocks = total_blocks + 5;
    kvfp8_kv_cache_init(&d.cache, &st, nblocks, c.bs, c.Hkv, c.D);
    float ks[256], vs[256];
    const int count = c.per_head ? c.Hkv : 1;
    uint64_t s = c.seed;
    for (int h = 0; h < count; h++)
        ks[h] = 0.02f + 0.01f * (float)h, vs[h] = 0.015f + 0.005f * (float)h;
    kvfp8_kv_cache_set_scales(&d.cache, ks, vs, count);
    // garbage (finite or not) everywhere first: unused slots must not matter
    const size_t bytes = (size_t)nblocks * c.bs * c.Hkv * c.D * kvfp8_kv_storage_bytes(&st);
    for (size_t i = 0; i < bytes; i++)
        d.cache.key_cache[i] = (uint8_t)(rng_next(&s) >> 56), d.cache.value_cache[i] = (uint8_t)(rng_next(&s) >> 56);
    std::vector<int> perm((size_t)nblocks);
    for (int i = 0; i < nblocks; i++)
        perm[(size_t)i] = i;
    for (int i = nblocks - 1; i > 0; i--)
        std::swap(perm[(size_t)i], perm[rng_next(&s) % (uint64_t)(i + 1)]);
    d.table.assign((size_t)n * d.max_blocks, 0);
    int next = 0;
    for (int q = 0; q < n; q++)
        for (int b = 0; b < (c.lens[(size_t)q] + c.bs - 1) / c.bs; b++)
            d.table[(size_t)q * d.max_blocks + b] = perm[(size_t)next++];
    const size_t per_tok = (size_t)c.Hkv * c.D, qrow = (size_t)c.Hq * c.D;
    const int ntok = d.qsl[(size_t)n];
    d.query.assign((size_t)ntok * qrow, 0.f);
    d.nk.assign((size_t)ntok * per_tok + 1, 0.f);
    d.nv.assign((size_t)ntok * per_tok + 1, 0.f);
    std::vector<float> k(per_tok), v(per_tok);
    for (int q = 0; q < n; q++) {
        const int len = c.lens[(size_t)q], first_new = len - c.qlens[(size_t)q];
        for (int j = 0; j < len; j++) {
            for (size_t i = 0; i < per_tok; i++) {
                const float big = (i % (size_t)c.D) == 3 ? 6.0f : 1.5f;
                k[i] = kvfp8_round_to_model_dtype(c.model, frand(&s, big));
                v[i] = kvfp8_round_to_model_dtype(c.model, frand(&s, 1.0f));
            }
            const int block = d.table[(size_t)q * d.max_blocks + j / c.bs];
            const int64_t slot = (int64_t)block * c.bs + j % c.bs;
            kvfp8_cache_write(&d.cache, KVFP8_SRC_F32, k.data(), v.data(), &slot, 1);
            if (j >= first_new) {
                const size_t t = (size_t)(d.qsl[(size_t)q] + j - first_new);
                memcpy(&d.nk[t * per_tok], k.data(), sizeof(float) * per_tok);
                memcpy(&d.nv[t * per_tok], v.data(), sizeof(float) * per_tok);
                for (size_t i = 0; i < qrow; i++) {
                    const float sc = c.q_spread ? ldexpf(1.0f, 3 * (int)((i / (size_t)c.D) % 8) - 10) : 1.0f;
                    d.query[t * qrow + i] = kvfp8_round_to_model_dtype(c.model, frand(&s, sc));
                }
            }
        }
    }
    memset(&d.p, 0, sizeof d.p);
    d.p.num_seqs = n;
    d.p.query_start_loc = d.qsl.data();
    d.p.seq_lens = c.lens.data();
    d.p.block_table = d.table.data();
    d.p.max_blocks_per_seq = d.max_blocks;
    d.p.num_q_heads = c.Hq;
    d.p.softmax_scale = 1.0 / sqrt((double)c.D);
    d.p.sliding_window = c.window;
    d.p.logits_soft_cap = c.cap;
    d.p.read = c.read;
    d.p.model_dtype = c.model;
    const size_t nout = (size_t)ntok * qrow;
    d.ref.assign(nout, 0), d.bound.assign(nout, 0);
    d.ok = kvfp8_paged_attention_ref(&d.p, &d.cache, d.query.data(), d.nk.data(), d.nv.data(), d.ref.data()) ==
               KVFP8_OK &&
           kvfp8_attention_error_bound(&d.p, &d.cache, d.query.data(), d.nk.data(), d.nv.data(), KVFP8_DTYPE_F32,
                                       KVFP8_DTYPE_F32, d.bound.data()) == KVFP8_OK;
}

void run_case(const AttnCase &c, AttnData &d) {
    const int n = (int)c.lens.size(), ntok = d.qsl[(size_t)n];
    const size_t cache_bytes = (size_t)d.cache.num_blocks * c.bs * c.Hkv * c.D * kvfp8_kv_storage_bytes(&d.cache.storage);
    DevBuf<uint8_t> kc(cache_bytes), vc(cache_bytes);
    kc.up(d.cache.key_cache), vc.up(d.cache.value_cache);
    DevBuf<int> table(d.table.size()), lens((size_t)n), qsl((size_t)n + 1);
    table.up(d.table.data()), lens.up(c.lens.data()), qsl.up(d.qsl.data());
    DevBuf<float> q(d.query.size()), nk(d.nk.size()), nv(d.nv.size()), out(d.ref.size()), scales(512);
    q.up(d.query.data()), nk.up(d.nk.data()), nv.up(d.nv.data());
    std::vector<float> hs(512, 1.0f);
    for (int h = 0; h < d.cache.scale_count; h++)
        hs[(size_t)h] = d.cache.k_scale[h], hs[256 + (size_t)h] = d.cache.v_scale[h];
    scales.up(hs.data());
    std::vector<float> poison(d.ref.size(), NAN);
    out.up(poison.data());
    AttnArgs a;
    memset(&a, 0, sizeof a);
    a.key_cache = kc.p, a.value_cache = vc.p, a.block_table = table.p, a.max_blocks_per_seq = d.max_blocks;
    a.seq_lens = lens.p, a.query_start_loc = qsl.p, a.query = q.p, a.out = out.p, a.new_key = nk.p, a.new_value = nv.p;
    a.scales = scales.p, a.per_head_scales = d.cache.scale_count > 1, a.num_seqs = n, a.num_q_heads = c.Hq;
    a.num_kv_heads = c.Hkv, a.head_size = c.D, a.block_size = c.bs, a.softmax_scale = (float)d.p.softmax_scale;
    a.sliding_window = c.window, a.soft_cap = (float)c.cap, a.read = c.read, a.model_dtype = c.model;
    a.storage = d.cache.storage;
    a.q_f16_rows = !c.no_f16 && queries_f16_rows(d.query.data(), (size_t)ntok * c.Hq, c.D);
    std::vector<int> token_seq((size_t)ntok), all_tokens((size_t)ntok), dec, pre;
    int max_len = 1;
    const int tq = prefill_tile_tokens(c.Hq / c.Hkv);
    for (int s = 0; s < n; s++) {
        for (int i = d.qsl[(size_t)s]; i < d.qsl[(size_t)s + 1]; i++)
            token_seq[(size_t)i] = s, all_tokens[(size_t)i] = i;
        const int ql = c.qlens[(size_t)s];
        if (ql == 1)
            dec.push_back(s), max_len = std::max(max_len, c.lens[(size_t)s]);
        else
            for (int t0 = 0; t0 < ql; t0 += tq)
                pre.push_back(s), pre.push_back(t0);
    }
    DevBuf<int> dts(token_seq.size()), dall(all_tokens.size()), ddec(dec.size()), dpre(pre.size());
    dts.up(token_seq.data()), dall.up(all_tokens.data());
    if (!dec.empty())
        ddec.up(dec.data());
    if (!pre.empty())
        dpre.up(pre.data());
    if (c.path == P_GENERIC) {
        CK(attention_generic(a, dts.p, dall.p, ntok, 0));
    } else {
        if (!dec.empty()) {
            const int split = c.split_len ? c.split_len
                                          : decode_default_split((int)dec.size(), max_len, c.Hkv, c.Hq / c.Hkv, 132);
            const int max_splits = (max_len + split - 1) / split;
            const size_t ws = decode_workspace_bytes((int)dec.size(), c.Hkv, c.Hq / c.Hkv, c.D, max_splits);
            DevBuf<uint8_t> dws(ws);
            CK(cudaMemset(dws.p, 0, ws));
            for (int rep = 0; rep < c.repeat; rep++) // no sync between: the next may start early
                CK(decode_mma(a, ddec.p, (int)dec.size(), max_len, split, dws.p, 0, c.nbuf));
            CK(cudaDeviceSynchronize());
            if (c.expect_pdl && !decode_last_launch_pdl()) {
                result(false, c.label.c_str(), "launched without programmatic dependent launch");
                return;
            }
            // the counters must be back to zero
            const size_t units = dec.size() * (size_t)c.Hkv * (size_t)((c.Hq / c.Hkv + 7) / 8);
            std::vector<int> cnt(units);
            CK(cudaMemcpy(cnt.data(), dws.p + units * (size_t)max_splits * 8 * ((size_t)c.D + 2) * 4,
                          units * sizeof(int), cudaMemcpyDeviceToHost));
            for (int x : cnt)
                if (x != 0) {
                    result(false, c.label.c_str(), "split counters not reset");
                    return;
                }
        }
        if (!pre.empty())
            CK(prefill_mma(a, dpre.p, (int)(pre.size() / 2), 0));
    }
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    std::vector<float> got(d.ref.size());
    out.down(got.data());
    double worst = 0;
    size_t bad = 0;
    char first[240] = "";
    for (size_t i = 0; i < got.size(); i++) {
        const double err = fabs((double)got[i] - d.ref[i]);
        const double ratio = err / d.bound[i];
        if (!(ratio <= worst))
            worst = ratio == ratio ? ratio : INFINITY;
        if (!(err <= d.bound[i]) && !bad++)
            snprintf(first, sizeof first, "; first: element %zu (token %zu head %zu dim %zu) %.9g, expected %.9g +- %.3g",
                     i, i / ((size_t)c.Hq * c.D), (i / c.D) % c.Hq, i % c.D, (double)got[i], d.ref[i], d.bound[i]);
    }
    char detail[400];
    snprintf(detail, sizeof detail, "%zu outputs, max error/bound %.3g, %zu outside%s", got.size(), worst, bad, first);
    result(bad == 0, c.label.c_str(), detail);
}

void test_attention(bool quick) {
    std::vector<AttnCase> cases;
    const char *rn[] = {"model-dtype", "mixed", "uniform"};
    auto add = [&](const char *what, int fp8, kvfp8_format f, kvfp8_model_dtype m, kvfp8_read_semantics r, int Hkv,
                   int Hq, int D, int bs, std::vector<int> lens, std::vector<int> ql, Path path, int split = 0,
                   int window = 0, double cap = 0, int per_head = 1) {
        AttnCase c;
        char label[200];
        snprintf(label, sizeof label, "%s %s %s %s %s D%d bs%d %d:%d%s", path == P_MMA ? "mma" : "generic", what,
                 fp8 ? kvfp8_format_name(f) : "16bit", kvfp8_model_dtype_name(m), rn[r], D, bs, Hq, Hkv,
                 split ? (" split" + std::to_string(split)).c_str() : "");
        c.label = label, c.fp8 = fp8, c.format = f, c.model = m, c.read = r, c.Hkv = Hkv, c.Hq = Hq, c.D = D, c.bs = bs;
        c.lens = lens, c.qlens = ql, c.per_head = per_head, c.window = window, c.cap = cap, c.path = path;
        c.split_len = split, c.seed = 100 + cases.size() * 7919;
        cases.push_back(c);
    };
    const kvfp8_model_dtype BF = KVFP8_DTYPE_BF16, F16 = KVFP8_DTYPE_F16;
    const kvfp8_read_semantics MD = KVFP8_READ_MODEL_DTYPE, UN = KVFP8_READ_UNIFORM, MX = KVFP8_READ_MIXED;
    const kvfp8_format E4 = KVFP8_E4M3FN, E5 = KVFP8_E5M2;
    // decode: every head size x block size x KV kind, model-dtype and uniform
    for (int D : {64, 128, 256})
        for (int bs : {16, 32})
            for (int kind = 0; kind < 3; kind++)
                for (kvfp8_read_semantics r : {MD, UN}) {
                    if (quick && (bs == 32 || r == UN) && D != 128)
                        continue;
                    add("decode", kind < 2, kind == 1 ? E5 : E4, BF, r, 2, 8, D, bs, {1, 17, 93, 300}, {1, 1, 1, 1},
                        P_MMA);
                }
    add("decode", 1, E4, F16, MD, 2, 8, 128, 16, {58, 9, 200}, {1, 1, 1}, P_MMA);
    add("decode", 0, E4, F16, MD, 2, 8, 128, 16, {58, 9, 200}, {1, 1, 1}, P_MMA);
    add("decode mqa", 1, E4, BF, MD, 1, 8, 128, 32, {45, 120}, {1, 1}, P_MMA);
    add("decode g16", 1, E4, BF, MD, 2, 32, 128, 16, {70, 33}, {1, 1}, P_MMA);
    add("decode g1", 1, E4, BF, UN, 4, 4, 64, 16, {70, 33}, {1, 1}, P_MMA);
    add("decode per-tensor", 1, E4, BF, MD, 4, 8, 128, 16, {40, 77}, {1, 1}, P_MMA, 0, 0, 0, 0);
    add("decode long", 1, E4, BF, MD, 8, 32, 128, 16, {3000, 1000, 17}, {1, 1, 1}, P_MMA);
    add("decode long", 0, E4, BF, MD, 8, 32, 128, 16, {3000, 1000, 17}, {1, 1, 1}, P_MMA);
    add("decode splits", 1, E4, BF, MD, 2, 8, 128, 16, {1000, 513, 16}, {1, 1, 1}, P_MMA, 16);
    add("decode splits", 1, E4, BF, UN, 2, 8, 256, 32, {1000, 513, 31}, {1, 1, 1}, P_MMA, 64);
    add("decode splits", 0, E4, BF, MD, 2, 8, 64, 16, {1000, 513, 31}, {1, 1, 1}, P_MMA, 128);
    add("decode long", 1, E4, BF, UN, 8, 32, 128, 16, {3000, 1000, 17}, {1, 1, 1}, P_MMA);
    add("decode f16 model", 1, E4, F16, UN, 2, 8, 128, 16, {300, 9}, {1, 1}, P_MMA);
    add("decode q-spread", 1, E4, BF, UN, 2, 16, 128, 16, {300, 64}, {1, 1}, P_MMA);
    cases.back().q_spread = 1;
    add("decode q-spread", 1, E4, BF, UN, 1, 8, 64, 32, {200, 65}, {1, 1}, P_MMA, 64);
    cases.back().q_spread = 1;
    // every decode pipeline variant the bench sweeps (gpu/paged_decode.cu,
    // launch_decode, named by decode_variant_name); odd lengths end mid-chunk and
    // mid-step, split 64 (odd variants) exercises the combine, 8 query heads per KV
    // head (even variants, uniform reads) fill every row of the queries-as-A tiles
    for (int nb = 2; decode_variant_name(nb); nb++)
        for (kvfp8_read_semantics r : {MD, UN}) {
            const int hq = (nb % 2 == 0 && r == UN) ? 16 : 8;
            add("decode pipeline", 1, E4, BF, r, 2, hq, 128, 16, {1, 17, 93, 300, 1000}, {1, 1, 1, 1, 1}, P_MMA,
                nb % 2 ? 64 : 0);
            cases.back().nbuf = nb;
            cases.back().label += " nbuf" + std::to_string(nb) + " (" + decode_variant_name(nb) + ")";
        }
    // one full wave (2 CTAs per multiprocessor: 2 KV heads x one split of 32 tokens per
    // multiprocessor), which runs as a programmatic dependent launch: five launches
    // back to back on one workspace, each waiting for the one before (split counters)
    {
        int sms = 0;
        CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
        for (kvfp8_read_semantics r : {MD, UN}) {
            add("decode full wave x5", 1, E4, BF, r, 2, 8, 128, 16, {32 * sms}, {1}, P_MMA, 32);
            cases.back().repeat = 5;
            cases.back().expect_pdl = r == UN; // the uniform default (v6) holds 2 CTAs per multiprocessor
            cases.back().label += r == UN ? " (PDL)" : "";
        }
    }
    // the bf16 MMA path under uniform reads (what runs when the queries do not fit float16)
    for (int D : {64, 128, 256}) {
        add("decode no-f16", 1, E4, BF, UN, 2, 8, D, 16, {1, 17, 93, 300}, {1, 1, 1, 1}, P_MMA);
        cases.back().no_f16 = 1;
        cases.back().label += " (bf16 MMA)";
    }
    // chunked prefill over a cached prefix
    for (int D : {64, 128, 256})
        for (int kind = 0; kind < 3; kind++)
            for (kvfp8_read_semantics r : {MD, UN}) {
                if (quick && D != 128)
                    continue;
                add("prefill", kind < 2, kind == 1 ? E5 : E4, BF, r, 2, 8, D, D == 64 ? 32 : 16, {96, 50, 200},
                    {16, 9, 70}, P_MMA);
            }
    add("prefill", 1, E4, F16, MD, 2, 8, 128, 16, {96, 40}, {16, 40}, P_MMA);
    add("prefill mqa", 1, E4, BF, MD, 1, 4, 64, 32, {75}, {11}, P_MMA);
    add("prefill g1", 1, E4, BF, UN, 4, 4, 128, 16, {300, 64}, {100, 64}, P_MMA);
    add("prefill cold", 1, E4, BF, MD, 2, 8, 128, 16, {40}, {40}, P_MMA);
    add("prefill long", 1, E4, BF, MD, 2, 8, 128, 16, {1100}, {100}, P_MMA);
    add("prefill long", 0, E4, BF, MD, 2, 8, 128, 16, {1100}, {100}, P_MMA);
    // the generic kernel: everything
    for (kvfp8_read_semantics r : {MD, MX, UN}) {
        add("varlen", 1, E4, BF, r, 2, 8, 128, 16, {1, 60, 33, 20}, {1, 12, 1, 20}, P_GENERIC);
        add("varlen", 0, E4, BF, r, 2, 8, 128, 16, {1, 60, 33, 20}, {1, 12, 1, 20}, P_GENERIC);
    }
    add("e5m2", 1, E5, BF, MD, 2, 4, 256, 16, {50}, {9}, P_GENERIC);
    add("f16 model", 1, E4, F16, MD, 2, 8, 128, 16, {58, 9}, {1, 1}, P_GENERIC);
    add("f32 model", 0, E4, KVFP8_DTYPE_F32, MD, 2, 8, 64, 16, {58, 9}, {4, 1}, P_GENERIC);
    add("window", 1, E4, BF, MD, 2, 8, 128, 16, {90, 50}, {8, 1}, P_GENERIC, 0, 24);
    add("soft cap", 1, E4, BF, UN, 2, 8, 128, 16, {64, 30}, {6, 1}, P_GENERIC, 0, 0, 30.0);
    add("fnuz", 1, KVFP8_E4M3FNUZ, BF, MD, 2, 8, 128, 16, {70, 31}, {1, 1}, P_GENERIC);
    add("varlen mixed-batch", 1, E4, BF, MD, 2, 8, 128, 16, {1, 60, 33, 20}, {1, 12, 1, 20}, P_MMA);

    // references on every core, then the GPU runs in order
    std::vector<AttnData> data(cases.size());
    const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    size_t next = 0;
    while (next < cases.size()) {
        std::vector<std::thread> pool;
        for (unsigned i = 0; i < threads && next < cases.size(); i++, next++)
            pool.emplace_back([&, k = next] { build_case(cases[k], data[k]); });
        for (std::thread &t : pool)
            t.join();
    }
    for (size_t i = 0; i < cases.size(); i++) {
        if (!data[i].ok) {
            result(false, cases[i].label.c_str(), "the reference refused the case");
            continue;
        }
        const char *why = nullptr;
        AttnArgs probe;
        memset(&probe, 0, sizeof probe);
        probe.model_dtype = cases[i].model, probe.read = cases[i].read, probe.head_size = cases[i].D;
        probe.block_size = cases[i].bs, probe.storage = data[i].cache.storage, probe.num_q_heads = cases[i].Hq;
        probe.num_kv_heads = cases[i].Hkv, probe.sliding_window = cases[i].window, probe.soft_cap = (float)cases[i].cap;
        bool has_prefill = false;
        for (int ql : cases[i].qlens)
            has_prefill |= ql > 1;
        if (cases[i].path == P_MMA && !attention_mma_ok(probe, has_prefill, &why)) {
            result(false, cases[i].label.c_str(), why);
            continue;
        }
        run_case(cases[i], data[i]);
        kvfp8_kv_cache_free(&data[i].cache);
    }
}

} // namespace

int main(int argc, char **argv) {
    const char *out_path = nullptr;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out_path = argv[++i];
        else if (!strcmp(argv[i], "--quick"))
            quick = true;
        else {
            fprintf(stderr, "usage: test_gpu [--out FILE] [--quick]\n");
            return 2;
        }
    }
    if (out_path && !(g_out = fopen(out_path, "w"))) {
        perror(out_path);
        return 2;
    }
    GpuRunInfo run;
    if (!gpu_run_info(&run))
        return 1;
    say("# kvfp8 GPU kernels vs the reference (test_gpu%s)\n\n%s\n\n", quick ? " --quick" : "", run.line);
    test_encode(quick);
    test_decode();
    test_cache_write(quick);
    test_attention(quick);
    say("\n%d cases, %d failed\n", g_cases, g_failures);
    if (g_out) {
        fprintf(g_out, "\n## summary\n\n| case | result | detail |\n|---|---|---|\n%s\n%d cases, %d failed\n",
                g_summary.c_str(), g_cases, g_failures);
        fclose(g_out);
    }
    return g_failures ? 1 : 0;
}
