/* BOUNDED: paged attention (varlen: decode, and chunked prefill over a cached prefix)
 * against the float64 reference, every output element within
 * kvfp8_attention_error_bound(accumulate F32, output F32) on the same cache contents.
 *
 * Each test runs under every read semantics the backend claims for its shape (a
 * kernel implements the semantics of the engine it comes from: vLLM's CUDA paged
 * attention reads `model-dtype`, FA3/FlashInfer `uniform`, the Triton prefix-prefill
 * `mixed`) and is NOT_SUPPORTED only when it claims none.  Every element's
 * error/bound ratio goes into the test's histogram; the largest is the test's
 * max_ratio, charted in the report. */
#include <stdio.h>
#include <string.h>

#include "attn_fixture.h"

static void run_spec(const attn_spec *s) {
    attn_case c;
    attn_build(&c, s, 0);
    char detail[400] = "", declined[200] = "";
    int claimed = 0;
    for (int r = 0; r < KVFP8_READ_COUNT; r++) {
        kvfp8_backend_query q;
        attn_query(&c, (kvfp8_read_semantics)r, &q);
        const char *name = kvfp8_read_semantics_name((kvfp8_read_semantics)r);
        if (!kvfp8_conform_claims(&q)) {
            snprintf(declined + strlen(declined), sizeof declined - strlen(declined), "%s%s", *declined ? ", " : "",
                     name);
            continue;
        }
        claimed++;
        const double worst = attn_check(&c, (kvfp8_read_semantics)r, NULL);
        snprintf(detail + strlen(detail), sizeof detail - strlen(detail), "%s%s max error/bound %.3g",
                 *detail ? "; " : "", name, worst);
    }
    const size_t n_out = c.n_out;
    attn_free(&c);
    if (!claimed)
        kvfp8_conform_not_supported("the backend declines paged attention for %s under every read semantics",
                                    s->label);
    kvfp8_conform_detail("%zu outputs; %s%s%s", n_out, detail, *declined ? "; declined: " : "", declined);
    kvfp8_conform_check_failures();
}

#define FP8(fmt) 1, KVFP8_##fmt, KVFP8_PROFILE_NVIDIA, KVFP8_DTYPE_BF16
#define FNUZ(fmt) 1, KVFP8_##fmt, KVFP8_PROFILE_HIP, KVFP8_DTYPE_BF16
#define AUTO(dt) 0, KVFP8_E4M3FN, KVFP8_PROFILE_NVIDIA, KVFP8_DTYPE_##dt

/* X(index, name, what, spec...): spec = storage, model dtype, kv heads, q heads, head
 * size, block size, seqs, {seq lens}, {q lens}, per-tensor scale, window, cap, query
 * scale, seed.  Each test's name is written once, here. */
#define ATTENTION_TESTS(X)                                                                                            \
    X(0, decode_e4m3fn_d64_bs16_gqa, "decode, e4m3fn cache, head 64, block 16, GQA 8:2, three sequences",            \
      FP8(E4M3FN), KVFP8_DTYPE_BF16, 2, 8, 64, 16, 3, {1, 17, 93}, {1, 1, 1}, 0, 0, 0, 0, 11)                          \
    X(1, decode_e4m3fn_d128_bs16_gqa, "decode, e4m3fn cache, head 128, block 16, GQA 8:2", FP8(E4M3FN),              \
      KVFP8_DTYPE_BF16, 2, 8, 128, 16, 2, {33, 150}, {1, 1}, 0, 0, 0, 0, 12)                                           \
    X(2, decode_e4m3fn_d256_bs32_gqa, "decode, e4m3fn cache, head 256, block 32, GQA 4:2", FP8(E4M3FN),              \
      KVFP8_DTYPE_BF16, 2, 4, 256, 32, 2, {64, 97}, {1, 1}, 0, 0, 0, 0, 13)                                            \
    X(3, decode_e4m3fn_d128_bs32_mqa, "decode, e4m3fn cache, head 128, block 32, MQA 8:1", FP8(E4M3FN),              \
      KVFP8_DTYPE_BF16, 1, 8, 128, 32, 2, {45, 120}, {1, 1}, 0, 0, 0, 0, 14)                                           \
    X(4, decode_e5m2_d128_bs16_gqa, "decode, e5m2 cache, head 128, block 16, GQA 8:2", FP8(E5M2), KVFP8_DTYPE_BF16,  \
      2, 8, 128, 16, 2, {70, 31}, {1, 1}, 0, 0, 0, 0, 15)                                                              \
    X(5, decode_bf16_d128_bs16_gqa, "decode, bf16 (auto) cache, head 128, block 16, GQA 8:2", AUTO(BF16),            \
      KVFP8_DTYPE_BF16, 2, 8, 128, 16, 2, {70, 31}, {1, 1}, 0, 0, 0, 0, 16)                                            \
    X(6, decode_e4m3fn_d128_bs16_f16_model, "decode, e4m3fn cache, float16 model, head 128, block 16", FP8(E4M3FN),  \
      KVFP8_DTYPE_F16, 2, 8, 128, 16, 2, {58, 9}, {1, 1}, 0, 0, 0, 0, 17)                                              \
    X(7, decode_e4m3fn_d128_bs16_per_tensor, "decode, e4m3fn cache, per-tensor scales, 4 KV heads", FP8(E4M3FN),     \
      KVFP8_DTYPE_BF16, 4, 8, 128, 16, 2, {40, 77}, {1, 1}, 1, 0, 0, 0, 18)                                            \
    X(8, prefill_e4m3fn_d128_bs16_gqa, "chunked prefill: 16 new tokens over an 80-token cached prefix, e4m3fn",      \
      FP8(E4M3FN), KVFP8_DTYPE_BF16, 2, 8, 128, 16, 1, {96}, {16}, 0, 0, 0, 0, 21)                                     \
    X(9, prefill_e4m3fn_d64_bs32_mqa, "chunked prefill: 11 over 64 cached, e4m3fn, head 64, block 32, MQA",          \
      FP8(E4M3FN), KVFP8_DTYPE_BF16, 1, 4, 64, 32, 1, {75}, {11}, 0, 0, 0, 0, 22)                                      \
    X(10, prefill_e5m2_d256_bs16_gqa, "chunked prefill: 9 over 41 cached, e5m2, head 256, block 16", FP8(E5M2),      \
      KVFP8_DTYPE_BF16, 2, 4, 256, 16, 1, {50}, {9}, 0, 0, 0, 0, 23)                                                   \
    X(11, prefill_bf16_d128_bs32_gqa, "chunked prefill: 13 over 57 cached, bf16 (auto) cache, block 32", AUTO(BF16), \
      KVFP8_DTYPE_BF16, 2, 8, 128, 32, 1, {70}, {13}, 0, 0, 0, 0, 24)                                                  \
    X(12, prefill_cold_e4m3fn_d128_bs16, "prefill of a whole 40-token prompt (no cached prefix), e4m3fn",            \
      FP8(E4M3FN), KVFP8_DTYPE_BF16, 2, 8, 128, 16, 1, {40}, {40}, 0, 0, 0, 0, 25)                                     \
    X(13, varlen_batch_e4m3fn_d128_bs16, "one varlen batch mixing decode, chunked prefill and a whole prompt",       \
      FP8(E4M3FN), KVFP8_DTYPE_BF16, 2, 8, 128, 16, 4, {1, 60, 33, 20}, {1, 12, 1, 20}, 0, 0, 0, 0, 26)                \
    X(14, sliding_window_e4m3fn_d128_bs16, "sliding window 24 over prefill and decode (query.sliding_window)",        \
      FP8(E4M3FN), KVFP8_DTYPE_BF16, 2, 8, 128, 16, 2, {90, 50}, {8, 1}, 0, 24, 0, 0, 31)                              \
    X(15, soft_cap_e4m3fn_d128_bs16, "logits soft cap 30 with large scores (query.soft_cap)", FP8(E4M3FN),           \
      KVFP8_DTYPE_BF16, 2, 8, 128, 16, 2, {64, 30}, {6, 1}, 0, 0, 30.0, 8.0f, 32)                                      \
    X(16, decode_e4m3fnuz_d128_bs16_gqa, "decode, e4m3fnuz cache (hip profile), head 128, block 16", FNUZ(E4M3FNUZ), \
      KVFP8_DTYPE_BF16, 2, 8, 128, 16, 2, {70, 31}, {1, 1}, 0, 0, 0, 0, 33)

#define SPEC(i, name, what, ...) {#name, __VA_ARGS__},
static const attn_spec specs[] = {ATTENTION_TESTS(SPEC)};

#define TEST_FN(i, name, ...)                                                                                         \
    static void test_##name(void **state) {                                                                           \
        (void)state;                                                                                                  \
        run_spec(&specs[i]);                                                                                          \
    }
ATTENTION_TESTS(TEST_FN)

#define ENTRY(i, name, what, ...) {"attention", #name, "BOUNDED", test_##name, what},
const kvfp8_conform_test kvfp8_conform_suite_attention[] = {ATTENTION_TESTS(ENTRY)};
const size_t kvfp8_conform_suite_attention_count =
    sizeof kvfp8_conform_suite_attention / sizeof kvfp8_conform_suite_attention[0];
