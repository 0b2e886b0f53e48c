/* Paged attention reference and cache write:
 *  - against a brute-force dense attention that materialises the full K/V and mask
 *    matrices (different code, same maths);
 *  - block-table permutation invariance, GQA/MQA head mapping, head sizes 64/128/256,
 *    block sizes 16/32, sliding window, soft cap;
 *  - cold versus warm: bit-identical under `uniform`, different but bounded under
 *    `mixed`;
 *  - the cache write against the FP8 reference element by element, slot -1 skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/attention.h"
#include "fp8_oracle.h"

static float frand(uint64_t *s, float scale) {
    return scale * ((float)(kvfp8_test_rand(s) >> 40) / (float)(1 << 24) * 2.0f - 1.0f);
}

typedef struct {
    int num_kv_heads, num_q_heads, head_size, block_size, num_blocks;
    kvfp8_kv_storage storage;
    kvfp8_kv_cache cache;
    int seq_len;
    float *k, *v; /* [seq_len][kv_heads][head_size], model-dtype values */
    int *block_table;
} fixture;

static void make_fixture(fixture *f, int kv_heads, int q_heads, int head_size, int block_size, int seq_len, int fp8,
                         uint64_t seed, int permute) {
    memset(f, 0, sizeof *f);
    f->num_kv_heads = kv_heads;
    f->num_q_heads = q_heads;
    f->head_size = head_size;
    f->block_size = block_size;
    const int blocks = (seq_len + block_size - 1) / block_size;
    f->num_blocks = blocks + 3;
    f->seq_len = seq_len;
    f->storage.is_fp8 = fp8;
    f->storage.dtype = KVFP8_DTYPE_BF16;
    if (fp8)
        assert_int_equal(kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &f->storage.fp8), KVFP8_OK);
    assert_int_equal(kvfp8_kv_cache_init(&f->cache, &f->storage, f->num_blocks, block_size, kv_heads, head_size), KVFP8_OK);
    float ks[256], vs[256];
    for (int h = 0; h < kv_heads; h++)
        ks[h] = 0.02f + 0.01f * (float)h, vs[h] = 0.015f + 0.005f * (float)h;
    assert_int_equal(kvfp8_kv_cache_set_scales(&f->cache, ks, vs, kv_heads), KVFP8_OK);
    const size_t n = (size_t)seq_len * (size_t)kv_heads * (size_t)head_size;
    f->k = malloc(n * sizeof(float));
    f->v = malloc(n * sizeof(float));
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        /* bf16-valued inputs with an outlier channel now and then */
        float big = (i % (size_t)head_size) == 3 ? 6.0f : 1.5f;
        f->k[i] = kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, frand(&s, big));
        f->v[i] = kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, frand(&s, 1.0f));
    }
    f->block_table = malloc(sizeof(int) * (size_t)blocks);
    for (int b = 0; b < blocks; b++)
        f->block_table[b] = permute ? (f->num_blocks - 1 - b) : b + 1; /* never rely on identity */
    int64_t *slots = malloc(sizeof(int64_t) * (size_t)seq_len);
    for (int t = 0; t < seq_len; t++)
        slots[t] = (int64_t)f->block_table[t / block_size] * block_size + t % block_size;
    assert_int_equal(kvfp8_cache_write(&f->cache, KVFP8_SRC_F32, f->k, f->v, slots, (size_t)seq_len), KVFP8_OK);
    free(slots);
}

static void free_fixture(fixture *f) {
    kvfp8_kv_cache_free(&f->cache);
    free(f->k);
    free(f->v);
    free(f->block_table);
}

static float *make_queries(int tokens, int q_heads, int head_size, uint64_t seed) {
    float *q = malloc(sizeof(float) * (size_t)tokens * (size_t)q_heads * (size_t)head_size);
    uint64_t s = seed;
    for (size_t i = 0; i < (size_t)tokens * (size_t)q_heads * (size_t)head_size; i++)
        q[i] = kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, frand(&s, 1.0f));
    return q;
}

/* Runs one sequence: the last q_len tokens of the fixture query the whole context. */
static void run_attention(const fixture *f, int q_len, kvfp8_read_semantics read, int window, double cap, const float *q,
                          double *out) {
    int qsl[2] = {0, q_len};
    int lens[1] = {f->seq_len};
    kvfp8_attention_params p = {1, qsl, lens, f->block_table, (f->seq_len + f->block_size - 1) / f->block_size,
                                f->num_q_heads, 1.0 / sqrt((double)f->head_size), window, cap, read, KVFP8_DTYPE_BF16};
    const size_t per_tok = (size_t)f->num_kv_heads * (size_t)f->head_size;
    const float *nk = f->k + (size_t)(f->seq_len - q_len) * per_tok, *nv = f->v + (size_t)(f->seq_len - q_len) * per_tok;
    assert_int_equal(kvfp8_paged_attention_ref(&p, &f->cache, q, nk, nv, out), KVFP8_OK);
}

/* Brute force: K/V matrices in logical order, a full mask matrix, softmax rows. */
static void dense_attention(const fixture *f, int q_len, kvfp8_read_semantics read, int window, double cap,
                            const float *q, double *out) {
    const int L = f->seq_len, H = f->num_q_heads, D = f->head_size, KV = f->num_kv_heads;
    double *K = malloc(sizeof(double) * (size_t)L * KV * D), *V = malloc(sizeof(double) * (size_t)L * KV * D);
    for (int j = 0; j < L; j++)
        for (int h = 0; h < KV; h++)
            for (int d = 0; d < D; d++) {
                const size_t i = ((size_t)j * KV + h) * D + d;
                const int64_t slot = (int64_t)f->block_table[j / f->block_size] * f->block_size + j % f->block_size;
                double kk, vv;
                if (read == KVFP8_READ_MIXED && j >= L - q_len) {
                    kk = f->k[i], vv = f->v[i];
                } else if (read == KVFP8_READ_UNIFORM) {
                    kk = kvfp8_cache_read_exact(&f->cache, 0, slot, h, d);
                    vv = kvfp8_cache_read_exact(&f->cache, 1, slot, h, d);
                } else {
                    kk = kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, kvfp8_cache_read_f32(&f->cache, 0, slot, h, d));
                    vv = kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, kvfp8_cache_read_f32(&f->cache, 1, slot, h, d));
                }
                K[i] = kk, V[i] = vv;
            }
    double *S = malloc(sizeof(double) * (size_t)L);
    for (int i = 0; i < q_len; i++) {
        const int pos = L - q_len + i;
        for (int h = 0; h < H; h++) {
            const int kvh = h / (H / KV);
            double mx = -INFINITY;
            for (int j = 0; j < L; j++) {
                int visible = j <= pos && (window == 0 || j > pos - window);
                if (!visible) {
                    S[j] = -INFINITY;
                    continue;
                }
                double dot = 0;
                for (int d = 0; d < D; d++)
                    dot += (double)q[((size_t)i * H + h) * D + d] * K[((size_t)j * KV + kvh) * D + d];
                dot /= sqrt((double)D);
                if (cap > 0)
                    dot = cap * tanh(dot / cap);
                S[j] = dot;
                mx = fmax(mx, dot);
            }
            double sum = 0;
            for (int j = 0; j < L; j++)
                sum += S[j] = S[j] == -INFINITY ? 0 : exp(S[j] - mx);
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int j = 0; j < L; j++)
                    acc += S[j] / sum * V[((size_t)j * KV + kvh) * D + d];
                out[((size_t)i * H + h) * D + d] = acc;
            }
        }
    }
    free(K), free(V), free(S);
}

static double max_rel_diff(const double *a, const double *b, size_t n) {
    double worst = 0, norm = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(a[i] - b[i]));
        norm = fmax(norm, fabs(b[i]));
    }
    return worst / (norm > 0 ? norm : 1);
}

static void test_against_dense(void **state) {
    (void)state;
    static const struct {
        int kv, q, d, bs, len, qlen, window;
        double cap;
    } shapes[] = {
        {2, 8, 64, 16, 70, 1, 0, 0},      {2, 8, 64, 16, 70, 13, 0, 0},  {1, 4, 128, 32, 45, 45, 0, 0},
        {4, 4, 256, 16, 33, 5, 0, 0},     {2, 4, 64, 32, 90, 20, 17, 0}, {2, 6, 128, 16, 40, 3, 0, 30.0},
        {1, 1, 64, 16, 16, 16, 0, 0},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int fp8 = 0; fp8 <= 1; fp8++)
            for (int r = 0; r < KVFP8_READ_COUNT; r++) {
                fixture f;
                make_fixture(&f, shapes[i].kv, shapes[i].q, shapes[i].d, shapes[i].bs, shapes[i].len, fp8, 1000 + i, 0);
                float *q = make_queries(shapes[i].qlen, shapes[i].q, shapes[i].d, 77 + i);
                const size_t n = (size_t)shapes[i].qlen * shapes[i].q * shapes[i].d;
                double *a = malloc(n * sizeof(double)), *b = malloc(n * sizeof(double));
                run_attention(&f, shapes[i].qlen, (kvfp8_read_semantics)r, shapes[i].window, shapes[i].cap, q, a);
                dense_attention(&f, shapes[i].qlen, (kvfp8_read_semantics)r, shapes[i].window, shapes[i].cap, q, b);
                double diff = max_rel_diff(a, b, n);
                if (diff > 1e-12)
                    fail_msg("shape %zu fp8=%d read=%s: paged vs dense relative difference %g", i, fp8,
                             kvfp8_read_semantics_name((kvfp8_read_semantics)r), diff);
                free(a), free(b), free(q);
                free_fixture(&f);
            }
}

static void test_block_table_permutation(void **state) {
    (void)state;
    for (int r = 0; r < KVFP8_READ_COUNT; r++) {
        fixture f1, f2;
        make_fixture(&f1, 2, 8, 128, 16, 77, 1, 5, 0);
        make_fixture(&f2, 2, 8, 128, 16, 77, 1, 5, 1);
        float *q = make_queries(9, 8, 128, 6);
        size_t n = 9 * 8 * 128;
        double *a = malloc(n * sizeof(double)), *b = malloc(n * sizeof(double));
        run_attention(&f1, 9, (kvfp8_read_semantics)r, 0, 0, q, a);
        run_attention(&f2, 9, (kvfp8_read_semantics)r, 0, 0, q, b);
        assert_memory_equal(a, b, n * sizeof(double));
        free(a), free(b), free(q);
        free_fixture(&f1), free_fixture(&f2);
    }
}

static void test_gqa_and_mqa_mapping(void **state) {
    (void)state;
    /* Query heads of one group with the same query give the same output; a head of
     * another group (another KV head) does not. */
    fixture f;
    make_fixture(&f, 2, 8, 64, 16, 40, 1, 9, 0);
    float *q = make_queries(1, 8, 64, 10);
    for (int h = 1; h < 8; h++)
        memcpy(q + h * 64, q, 64 * sizeof(float));
    double out[8 * 64];
    run_attention(&f, 1, KVFP8_READ_MODEL_DTYPE, 0, 0, q, out);
    for (int h = 1; h < 4; h++)
        assert_memory_equal(out, out + h * 64, 64 * sizeof(double));
    assert_true(memcmp(out, out + 4 * 64, 64 * sizeof(double)) != 0);
    free(q);
    free_fixture(&f);
    /* MQA: one KV head serves every query head */
    make_fixture(&f, 1, 8, 64, 32, 40, 1, 11, 0);
    q = make_queries(2, 8, 64, 12);
    double out2[2 * 8 * 64], dense[2 * 8 * 64];
    run_attention(&f, 2, KVFP8_READ_UNIFORM, 0, 0, q, out2);
    dense_attention(&f, 2, KVFP8_READ_UNIFORM, 0, 0, q, dense);
    assert_true(max_rel_diff(out2, dense, 2 * 8 * 64) < 1e-12);
    free(q);
    free_fixture(&f);
}

/* Cold: the whole prompt is the current chunk.  Warm: the prefix comes from the
 * cache and only the last chunk is new.  Compare the last chunk's outputs. */
static void test_cold_versus_warm(void **state) {
    (void)state;
    const int L = 64, chunk = 8, H = 8, D = 128;
    fixture f;
    make_fixture(&f, 2, H, D, 16, L, 1, 21, 0);
    float *q_all = make_queries(L, H, D, 22);
    const float *q_tail = q_all + (size_t)(L - chunk) * H * D;
    const size_t n_tail = (size_t)chunk * H * D;
    double *cold = malloc(sizeof(double) * (size_t)L * H * D), *warm = malloc(sizeof(double) * n_tail);
    double *bound = malloc(sizeof(double) * n_tail);
    /* uniform: both read everything from the cache: bit-identical */
    run_attention(&f, L, KVFP8_READ_UNIFORM, 0, 0, q_all, cold);
    run_attention(&f, chunk, KVFP8_READ_UNIFORM, 0, 0, q_tail, warm);
    assert_memory_equal(cold + (size_t)(L - chunk) * H * D, warm, n_tail * sizeof(double));
    /* mixed: cold reads unquantized K/V, warm reads the prefix from FP8; the
     * difference is real, reported, and within the reuse bound */
    run_attention(&f, L, KVFP8_READ_MIXED, 0, 0, q_all, cold);
    run_attention(&f, chunk, KVFP8_READ_MIXED, 0, 0, q_tail, warm);
    int qsl[2] = {0, chunk}, lens[1] = {L};
    kvfp8_attention_params p = {1, qsl, lens, f.block_table, L / 16, H, 1.0 / sqrt((double)D), 0, 0, KVFP8_READ_MIXED,
                                KVFP8_DTYPE_BF16};
    assert_int_equal(kvfp8_attention_reuse_bound(&p, &f.cache, q_tail, f.k, f.v, bound), KVFP8_OK);
    double worst = 0, worst_ratio = 0;
    for (size_t i = 0; i < n_tail; i++) {
        const double diff = fabs(cold[(size_t)(L - chunk) * H * D + i] - warm[i]);
        worst = fmax(worst, diff);
        worst_ratio = fmax(worst_ratio, diff / bound[i]);
        if (diff > bound[i])
            fail_msg("element %zu: cold %.17g warm %.17g differ by %g, beyond the reuse bound %g", i,
                     cold[(size_t)(L - chunk) * H * D + i], warm[i], diff, bound[i]);
    }
    double rel = max_rel_diff(cold + (size_t)(L - chunk) * H * D, warm, n_tail);
    printf("cold vs warm under mixed (FP8 E4M3, per-head scales): max relative difference %.3g, "
           "largest difference %.3g = %.0f%% of its bound\n", rel, worst, 100 * worst_ratio);
    assert_true(worst > 0);          /* they do differ: the prefix was quantized */
    assert_true(worst_ratio > 0.01); /* and the bound is not vacuous */
    free(cold), free(warm), free(bound), free(q_all);
    free_fixture(&f);
}

static void test_error_bound_covers_float32_kernel(void **state) {
    (void)state;
    /* A float32 re-computation of the same attention (what a GPU kernel does: online
     * softmax, float32 dot products) lands within the bound, and the bound is tight
     * enough to mean something: far below the outputs' own size. */
    fixture f;
    make_fixture(&f, 2, 8, 128, 16, 100, 1, 31, 0);
    float *q = make_queries(4, 8, 128, 32);
    const size_t n = 4 * 8 * 128;
    double *ref = malloc(n * sizeof(double)), *bound = malloc(n * sizeof(double));
    run_attention(&f, 4, KVFP8_READ_MODEL_DTYPE, 0, 0, q, ref);
    int qsl[2] = {0, 4}, lens[1] = {100};
    kvfp8_attention_params p = {1, qsl, lens, f.block_table, 7, 8, 1.0 / sqrt(128.0), 0, 0, KVFP8_READ_MODEL_DTYPE,
                                KVFP8_DTYPE_BF16};
    assert_int_equal(kvfp8_attention_error_bound(&p, &f.cache, q, NULL, NULL, KVFP8_DTYPE_F32, KVFP8_DTYPE_F32, bound),
                     KVFP8_OK);
    double worst_bound = 0, worst_err = 0, largest = 0;
    /* float32 kernel: online softmax in float32 */
    for (int i = 0; i < 4; i++)
        for (int h = 0; h < 8; h++) {
            float m = -INFINITY, l = 0, acc[128] = {0};
            const int pos = 96 + i;
            for (int j = 0; j <= pos; j++) {
                const int64_t slot = (int64_t)f.block_table[j / 16] * 16 + j % 16;
                float s = 0;
                for (int d = 0; d < 128; d++)
                    s += q[((size_t)i * 8 + h) * 128 + d] *
                         kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, kvfp8_cache_read_f32(&f.cache, 0, slot, h / 4, d));
                s *= 1.0f / sqrtf(128.0f);
                float m_new = fmaxf(m, s), corr = expf(m - m_new), pj = expf(s - m_new);
                l = l * corr + pj;
                for (int d = 0; d < 128; d++)
                    acc[d] = acc[d] * corr +
                             pj * kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, kvfp8_cache_read_f32(&f.cache, 1, slot, h / 4, d));
                m = m_new;
            }
            for (int d = 0; d < 128; d++) {
                const size_t k = ((size_t)i * 8 + h) * 128 + d;
                const double err = fabs((double)(acc[d] / l) - ref[k]);
                if (err > bound[k])
                    fail_msg("token %d head %d dim %d: float32 error %g exceeds the bound %g", i, h, d, err, bound[k]);
                worst_bound = fmax(worst_bound, bound[k]);
                worst_err = fmax(worst_err, err);
                largest = fmax(largest, fabs(ref[k]));
            }
        }
    printf("float32 kernel: largest error %.3g, largest bound %.3g, largest output %.3g\n", worst_err, worst_bound, largest);
    assert_true(worst_err > 0);                  /* the two computations do differ */
    assert_true(worst_bound < 1e-3 * largest);   /* and the bound is not vacuous */
    free(ref), free(bound), free(q);
    free_fixture(&f);
}

static void test_cache_write(void **state) {
    (void)state;
    kvfp8_kv_storage st = {1, KVFP8_DTYPE_BF16, {0}};
    assert_int_equal(kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &st.fp8), KVFP8_OK);
    kvfp8_kv_cache c;
    assert_int_equal(kvfp8_kv_cache_init(&c, &st, 4, 16, 2, 64), KVFP8_OK);
    float ks[2] = {0.5f, 0.25f}, vs[2] = {2.0f, 0.125f};
    assert_int_equal(kvfp8_kv_cache_set_scales(&c, ks, vs, 2), KVFP8_OK);
    uint16_t key[3 * 2 * 64], val[3 * 2 * 64];
    uint64_t s = 3;
    for (int i = 0; i < 3 * 2 * 64; i++) {
        key[i] = kvfp8_f32_to_bf16(frand(&s, 300.0f));
        val[i] = kvfp8_f32_to_bf16(frand(&s, 3.0f));
    }
    int64_t slots[3] = {17, -1, 63};
    assert_int_equal(kvfp8_cache_write(&c, KVFP8_SRC_BF16, key, val, slots, 3), KVFP8_OK);
    for (int t = 0; t < 3; t++) {
        if (slots[t] < 0)
            continue;
        for (int h = 0; h < 2; h++)
            for (int d = 0; d < 64; d++) {
                const int i = (t * 2 + h) * 64 + d;
                uint8_t want_k = kvfp8_test_oracle_encode(&st.fp8, (double)(kvfp8_bf16_to_f32(key[i]) / ks[h]));
                uint8_t want_v = kvfp8_test_oracle_encode(&st.fp8, (double)(kvfp8_bf16_to_f32(val[i]) / vs[h]));
                assert_int_equal(kvfp8_cache_raw(&c, 0, slots[t], h, d), want_k);
                assert_int_equal(kvfp8_cache_raw(&c, 1, slots[t], h, d), want_v);
            }
    }
    /* the skipped token wrote nothing: every other slot is still zero */
    for (int64_t slot = 0; slot < 64; slot++)
        if (slot != 17 && slot != 63)
            for (int d = 0; d < 128; d++)
                assert_int_equal(c.key_cache[slot * 128 + d], 0);
    int64_t bad[1] = {64};
    assert_int_equal(kvfp8_cache_write(&c, KVFP8_SRC_BF16, key, val, bad, 1), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_kv_cache_set_scales(&c, ks, vs, 3), KVFP8_ERR_INVALID);
    float zero[1] = {0.0f};
    assert_int_equal(kvfp8_kv_cache_set_scales(&c, zero, vs, 1), KVFP8_ERR_INVALID);
    kvfp8_kv_cache_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_write),
        cmocka_unit_test(test_against_dense),
        cmocka_unit_test(test_block_table_permutation),
        cmocka_unit_test(test_gqa_and_mqa_mapping),
        cmocka_unit_test(test_cold_versus_warm),
        cmocka_unit_test(test_error_bound_covers_float32_kernel),
    };
    return cmocka_run_group_tests_name("attention", tests, NULL, NULL);
}
