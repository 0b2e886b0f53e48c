/* API: the contract around the numbers.
 *
 * api.unknown_op_declined   `supports` declines an operation it cannot know.
 * api.declined_call_fails   an operation called with what `supports` declined fails
 *                           with KVFP8_ERR_UNSUPPORTED, rather than guessing.
 * api.bad_scale_rejected    encode/decode refuse a scale of 0, < 0, NaN or Inf with
 *                           KVFP8_ERR_INVALID, as vLLM's scale checks do.
 * api.bad_slot_rejected     a cache write with a slot beyond the cache fails and
 *                           writes nothing (every slot is checked first).
 * api.empty_calls           zero elements, zero tokens, zero sequences: success, and
 *                           nothing written (a GPU port must not launch a kernel of
 *                           zero blocks and report its error). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conform_suite.h"

static void test_unknown_op_declined(void **state) {
    (void)state;
    kvfp8_backend *b = kvfp8_conform_backend();
    const int ops[] = {KVFP8_OP_COUNT, 99, -1};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        kvfp8_backend_query q;
        memset(&q, 0, sizeof q);
        q.op = (kvfp8_backend_op)ops[i];
        const kvfp8_status st = b->ops->supports(b->state, &q);
        if (st == KVFP8_OK)
            kvfp8_conform_failure("supports(op=%d) => ok, expected a refusal (unsupported)", ops[i]);
    }
    kvfp8_conform_check_failures();
}

/* The first claimed FP8 encode table (e4m3fn first), or 0. */
static int first_claimed_encode(kvfp8_fp8_rules *out, kvfp8_source src) {
    kvfp8_fp8_rules r;
    for (int i = 0; kvfp8_conform_rules_at(i, &r); i++) {
        kvfp8_backend_query q;
        memset(&q, 0, sizeof q);
        q.op = KVFP8_OP_FP8_ENCODE, q.fp8 = r, q.source = src;
        if (kvfp8_conform_claims(&q)) {
            *out = r;
            return 1;
        }
    }
    return 0;
}

static void test_declined_call_fails(void **state) {
    (void)state;
    kvfp8_backend *b = kvfp8_conform_backend();
    int tried = 0;
    char label[64];
    /* FP8 encode: the first declined (table, source) */
    kvfp8_fp8_rules r;
    for (int i = 0; kvfp8_conform_rules_at(i, &r) && !tried; i++)
        for (int s = 0; s < KVFP8_SOURCE_COUNT && !tried; s++) {
            kvfp8_backend_query q;
            memset(&q, 0, sizeof q);
            q.op = KVFP8_OP_FP8_ENCODE, q.fp8 = r, q.source = (kvfp8_source)s;
            if (kvfp8_conform_claims(&q))
                continue;
            tried++;
            const uint32_t in[4] = {0x3F800000u, 0x40000000u, 0x3C003C00u, 0};
            uint8_t out[4];
            const kvfp8_status st = b->ops->fp8_encode(b->state, &r, (kvfp8_source)s, in, out, 4, 1.0f);
            if (st != KVFP8_ERR_UNSUPPORTED)
                kvfp8_conform_failure("fp8_encode %s %s (declined by supports) => %s, expected unsupported",
                                      kvfp8_conform_rules_label(&r, label, sizeof label),
                                      kvfp8_source_name((kvfp8_source)s), kvfp8_status_name(st));
        }
    /* paged attention: the first declined read semantics on a small e4m3fn case */
    int declined_read = -1;
    kvfp8_kv_storage st;
    memset(&st, 0, sizeof st);
    st.is_fp8 = 1;
    assert_int_equal(kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &st.fp8), KVFP8_OK);
    for (int rd = 0; rd < KVFP8_READ_COUNT && declined_read < 0; rd++) {
        kvfp8_backend_query q;
        memset(&q, 0, sizeof q);
        q.op = KVFP8_OP_PAGED_ATTENTION, q.storage = st, q.fp8 = st.fp8, q.read = (kvfp8_read_semantics)rd;
        q.model_dtype = KVFP8_DTYPE_BF16, q.head_size = 64, q.block_size = 16, q.max_query_len = 1;
        q.num_q_heads = 2, q.num_kv_heads = 1;
        if (!kvfp8_conform_claims(&q))
            declined_read = rd;
    }
    if (declined_read >= 0) {
        tried++;
        kvfp8_kv_cache c;
        assert_int_equal(kvfp8_kv_cache_init(&c, &st, 2, 16, 1, 64), KVFP8_OK);
        const int qsl[2] = {0, 1}, lens[1] = {5}, table[1] = {1};
        kvfp8_attention_params p = {1, qsl, lens, table, 1, 2, 0.125, 0, 0, (kvfp8_read_semantics)declined_read,
                                    KVFP8_DTYPE_BF16};
        float query[2 * 64] = {0}, nk[64] = {0}, nv[64] = {0}, out[2 * 64];
        const kvfp8_status s = b->ops->paged_attention(b->state, &p, &c, query, nk, nv, out);
        if (s != KVFP8_ERR_UNSUPPORTED)
            kvfp8_conform_failure("paged_attention read=%s (declined by supports) => %s, expected unsupported",
                                  kvfp8_read_semantics_name((kvfp8_read_semantics)declined_read),
                                  kvfp8_status_name(s));
        kvfp8_kv_cache_free(&c);
    }
    kvfp8_conform_detail(tried ? "%d declined calls made" : "the backend declines no FP8 table and no read semantics "
                                                            "(%d declined calls to make)",
                         tried);
    kvfp8_conform_check_failures();
}

static void test_bad_scale_rejected(void **state) {
    (void)state;
    kvfp8_backend *b = kvfp8_conform_backend();
    kvfp8_fp8_rules r;
    if (!first_claimed_encode(&r, KVFP8_SRC_F32))
        kvfp8_conform_not_supported("the backend claims no FP8 encode from float32");
    const float bad[] = {0.0f, -0.0f, -1.0f, NAN, INFINITY};
    const float in[3] = {1.0f, 2.0f, -3.0f};
    uint8_t out[3];
    float dec[3];
    char label[64];
    kvfp8_conform_rules_label(&r, label, sizeof label);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kvfp8_status st = b->ops->fp8_encode(b->state, &r, KVFP8_SRC_F32, in, out, 3, bad[i]);
        if (st != KVFP8_ERR_INVALID)
            kvfp8_conform_failure("fp8_encode %s f32 [1 2 -3] / scale %g => %s, expected invalid", label,
                                  (double)bad[i], kvfp8_status_name(st));
        st = b->ops->fp8_decode(b->state, r.format, out, dec, 3, bad[i]);
        if (st != KVFP8_ERR_INVALID)
            kvfp8_conform_failure("fp8_decode %s * scale %g => %s, expected invalid", kvfp8_format_name(r.format),
                                  (double)bad[i], kvfp8_status_name(st));
    }
    kvfp8_conform_check_failures();
}

/* A claimed cache storage for the slot and empty-call checks: e4m3fn, else bf16. */
static int claimed_storage(kvfp8_kv_storage *st) {
    memset(st, 0, sizeof *st);
    for (int fp8 = 1; fp8 >= 0; fp8--) {
        st->is_fp8 = fp8;
        st->dtype = KVFP8_DTYPE_BF16;
        if (fp8)
            assert_int_equal(kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &st->fp8), KVFP8_OK);
        kvfp8_backend_query q;
        memset(&q, 0, sizeof q);
        q.op = KVFP8_OP_CACHE_WRITE, q.storage = *st, q.fp8 = st->fp8, q.source = KVFP8_SRC_F32;
        q.head_size = 64, q.block_size = 16, q.num_kv_heads = 1;
        if (kvfp8_conform_claims(&q))
            return 1;
    }
    return 0;
}

static void test_bad_slot_rejected(void **state) {
    (void)state;
    kvfp8_backend *b = kvfp8_conform_backend();
    kvfp8_kv_storage st;
    if (!claimed_storage(&st))
        kvfp8_conform_not_supported("the backend claims no cache write to e4m3fn or bf16 storage");
    kvfp8_kv_cache c;
    assert_int_equal(kvfp8_kv_cache_init(&c, &st, 2, 16, 1, 64), KVFP8_OK);
    const size_t bytes = 2 * 16 * 64 * kvfp8_kv_storage_bytes(&st);
    memset(c.key_cache, 0x11, bytes), memset(c.value_cache, 0x22, bytes);
    float k[3 * 64], v[3 * 64];
    for (int i = 0; i < 3 * 64; i++)
        k[i] = 1.0f + (float)i, v[i] = -1.0f - (float)i;
    const int64_t bad_slots[][3] = {{0, 5, 32}, {3, 1000, 4}};
    for (size_t i = 0; i < 2; i++) {
        const kvfp8_status s = b->ops->cache_write(b->state, &c, KVFP8_SRC_F32, k, v, bad_slots[i], 3);
        if (s == KVFP8_OK)
            kvfp8_conform_failure("cache_write slots [%lld %lld %lld] into 32 slots => ok, expected an error",
                                  (long long)bad_slots[i][0], (long long)bad_slots[i][1], (long long)bad_slots[i][2]);
        for (size_t j = 0; j < bytes; j++)
            if (c.key_cache[j] != 0x11 || c.value_cache[j] != 0x22) {
                kvfp8_conform_failure("cache_write slots [%lld %lld %lld] into 32 slots => byte %zu written, expected "
                                      "nothing written (validate every slot first)",
                                      (long long)bad_slots[i][0], (long long)bad_slots[i][1],
                                      (long long)bad_slots[i][2], j);
                break;
            }
    }
    kvfp8_kv_cache_free(&c);
    kvfp8_conform_check_failures();
}

static void test_empty_calls(void **state) {
    (void)state;
    kvfp8_backend *b = kvfp8_conform_backend();
    int made = 0;
    kvfp8_fp8_rules r;
    uint8_t codes[4] = {0x5A, 0x5A, 0x5A, 0x5A};
    float f[4] = {7, 7, 7, 7};
    if (first_claimed_encode(&r, KVFP8_SRC_F32)) {
        made++;
        kvfp8_conform_expect_ok(b->ops->fp8_encode(b->state, &r, KVFP8_SRC_F32, f, codes, 0, 1.0f), "fp8_encode n=0");
        kvfp8_conform_expect_ok(b->ops->fp8_decode(b->state, r.format, codes, f, 0, 1.0f), "fp8_decode n=0");
        if (codes[0] != 0x5A || f[0] != 7)
            kvfp8_conform_failure("fp8_encode/decode n=0 => an element written, expected nothing written");
    }
    kvfp8_kv_storage st;
    if (claimed_storage(&st)) {
        made++;
        kvfp8_kv_cache c;
        assert_int_equal(kvfp8_kv_cache_init(&c, &st, 2, 16, 1, 64), KVFP8_OK);
        const int64_t slot = 0;
        kvfp8_conform_expect_ok(b->ops->cache_write(b->state, &c, KVFP8_SRC_F32, f, f, &slot, 0),
                                "cache_write num_tokens=0");
        for (int rd = 0; rd < KVFP8_READ_COUNT; rd++) {
            kvfp8_backend_query q;
            memset(&q, 0, sizeof q);
            q.op = KVFP8_OP_PAGED_ATTENTION, q.storage = st, q.fp8 = st.fp8, q.read = (kvfp8_read_semantics)rd;
            q.model_dtype = KVFP8_DTYPE_BF16, q.head_size = 64, q.block_size = 16, q.max_query_len = 1;
            q.num_q_heads = 1, q.num_kv_heads = 1;
            if (!kvfp8_conform_claims(&q))
                continue;
            const int qsl[1] = {0}, lens[1] = {0}, table[1] = {0};
            kvfp8_attention_params p = {0, qsl, lens, table, 1, 1, 0.125, 0, 0, (kvfp8_read_semantics)rd,
                                        KVFP8_DTYPE_BF16};
            float out[1] = {7};
            kvfp8_conform_expect_ok(b->ops->paged_attention(b->state, &p, &c, f, f, f, out), "paged_attention num_seqs=0");
            if (out[0] != 7)
                kvfp8_conform_failure("paged_attention num_seqs=0 => an output written, expected nothing written");
            break;
        }
        kvfp8_kv_cache_free(&c);
    }
    if (!made)
        kvfp8_conform_not_supported("the backend claims neither FP8 encode from float32 nor a cache write");
    kvfp8_conform_check_failures();
}

const kvfp8_conform_test kvfp8_conform_suite_api[] = {
    {"api", "unknown_op_declined", "API", test_unknown_op_declined, "supports() declines operations it cannot know"},
    {"api", "declined_call_fails", "API", test_declined_call_fails,
     "a call with what supports() declined fails with unsupported"},
    {"api", "bad_scale_rejected", "API", test_bad_scale_rejected, "scale 0, -0, -1, NaN, Inf: invalid"},
    {"api", "bad_slot_rejected", "API", test_bad_slot_rejected, "a slot beyond the cache: error, nothing written"},
    {"api", "empty_calls", "API", test_empty_calls, "zero elements, tokens, sequences: ok, nothing written"},
};
const size_t kvfp8_conform_suite_api_count = sizeof kvfp8_conform_suite_api / sizeof kvfp8_conform_suite_api[0];
