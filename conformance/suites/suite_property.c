/* PROPERTY: what must hold of the backend's own outputs, whatever its rounding.
 *
 * property.block_table_permutation: the same logical sequences stored in other
 *   physical blocks give bit-identical outputs (a kernel walks logical blocks; where
 *   they live cannot change the arithmetic).
 * property.gqa_head_mapping: query heads of one group given the same query give
 *   bit-identical outputs, heads of different groups do not (query head h reads KV
 *   head h / (num_q_heads / num_kv_heads)); MQA: every head reads the one KV head.
 * property.cold_warm_equivalence: a prompt served cold (the whole prompt is the
 *   chunk) and warm (the prefix comes from the cache, only the last chunk is new)
 *   agree within one bound under every claimed semantics that reads everything from
 *   the cache (`uniform`, and `model-dtype`); the reference agrees bit for bit there.
 *   `mixed` is left out on purpose: it legitimately differs (docs/attention.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_fixture.h"

#define E4M3 1, KVFP8_E4M3FN, KVFP8_PROFILE_NVIDIA, KVFP8_DTYPE_BF16, KVFP8_DTYPE_BF16

static int claims_read(const attn_case *c, kvfp8_read_semantics r) {
    kvfp8_backend_query q;
    attn_query(c, r, &q);
    return kvfp8_conform_claims(&q);
}

static void test_block_table_permutation(void **state) {
    (void)state;
    const attn_spec s = {"permutation_e4m3fn_d128_bs16", E4M3, 2, 8, 128, 16, 3, {77, 20, 5}, {9, 1, 5}, 0, 0, 0, 0, 41};
    attn_case a, b;
    attn_build(&a, &s, 0);
    attn_build(&b, &s, 1);
    int checked = 0;
    float *oa = malloc(sizeof(float) * a.n_out), *ob = malloc(sizeof(float) * a.n_out);
    assert_true(oa && ob);
    for (int r = 0; r < KVFP8_READ_COUNT; r++) {
        if (!claims_read(&a, (kvfp8_read_semantics)r))
            continue;
        checked++;
        attn_run(&a, (kvfp8_read_semantics)r, oa);
        attn_run(&b, (kvfp8_read_semantics)r, ob);
        for (size_t i = 0; i < a.n_out; i++)
            if (!kvfp8_conform_same_float(oa[i], ob[i]))
                kvfp8_conform_failure("paged_attention %s read=%s output %zu with block table A => %a, with the "
                                      "same blocks permuted => %a, expected identical",
                                      s.label, kvfp8_read_semantics_name((kvfp8_read_semantics)r), i, (double)oa[i],
                                      (double)ob[i]);
    }
    free(oa), free(ob);
    attn_free(&a), attn_free(&b);
    if (!checked)
        kvfp8_conform_not_supported("the backend declines paged attention for %s under every read semantics", s.label);
    kvfp8_conform_detail("%d read semantics, 3 sequences, two physical layouts of the same contents", checked);
    kvfp8_conform_check_failures();
}

/* Gives every query head of a group the query of the group's first head. */
static void share_queries(attn_case *c) {
    const size_t H = (size_t)c->spec.q_heads, D = (size_t)c->spec.head_size;
    const size_t group = H / (size_t)c->spec.kv_heads;
    for (size_t t = 0; t < c->n_tokens; t++)
        for (size_t h = 0; h < H; h++)
            memcpy(c->query + (t * H + h) * D, c->query + (t * H + h / group * group) * D, sizeof(float) * D);
}

static int gqa_case(const attn_spec *s) {
    attn_case c;
    attn_build(&c, s, 0);
    share_queries(&c);
    /* the heads of different groups now have the same query too, so their outputs
     * differ only through the KV head they read */
    const size_t H = (size_t)s->q_heads, D = (size_t)s->head_size, group = H / (size_t)s->kv_heads;
    for (size_t t = 0; t < c.n_tokens; t++)
        for (size_t h = group; h < H; h++)
            memcpy(c.query + (t * H + h) * D, c.query + t * H * D, sizeof(float) * D);
    int checked = 0;
    float *out = malloc(sizeof(float) * c.n_out);
    assert_non_null(out);
    for (int r = 0; r < KVFP8_READ_COUNT; r++) {
        if (!claims_read(&c, (kvfp8_read_semantics)r))
            continue;
        checked++;
        attn_check(&c, (kvfp8_read_semantics)r, out); /* within the bound, too */
        const char *rn = kvfp8_read_semantics_name((kvfp8_read_semantics)r);
        for (size_t t = 0; t < c.n_tokens; t++)
            for (size_t h = 0; h < H; h++) {
                const float *row = out + (t * H + h) * D, *lead = out + (t * H + h / group * group) * D;
                for (size_t e = 0; e < D; e++)
                    if (!kvfp8_conform_same_float(row[e], lead[e])) {
                        kvfp8_conform_failure("paged_attention %s read=%s token %zu head %zu dim %zu => %a, head %zu "
                                              "(same group, same query) => %a, expected identical",
                                              s->label, rn, t, h, e, (double)row[e], h / group * group, (double)lead[e]);
                        break;
                    }
                if (h >= group && h % group == 0 && !memcmp(row, out + t * H * D, sizeof(float) * D))
                    kvfp8_conform_failure("paged_attention %s read=%s token %zu head %zu (KV head %zu) => the output of "
                                          "head 0 (KV head 0), expected another KV head's result",
                                          s->label, rn, t, h, h / group);
            }
    }
    free(out);
    attn_free(&c);
    return checked;
}

static void test_gqa_head_mapping(void **state) {
    (void)state;
    const attn_spec gqa = {"gqa_8_to_2_e4m3fn_d64_bs16", E4M3, 2, 8, 64, 16, 2, {40, 19}, {3, 1}, 0, 0, 0, 0, 51};
    const attn_spec gqa4 = {"gqa_12_to_4_e4m3fn_d128_bs32", E4M3, 4, 12, 128, 32, 1, {50}, {1}, 0, 0, 0, 0, 52};
    const attn_spec mqa = {"mqa_8_to_1_e4m3fn_d128_bs16", E4M3, 1, 8, 128, 16, 1, {33}, {2}, 0, 0, 0, 0, 53};
    const int checked = gqa_case(&gqa) + gqa_case(&gqa4) + gqa_case(&mqa);
    if (!checked)
        kvfp8_conform_not_supported("the backend declines paged attention for every GQA/MQA case");
    kvfp8_conform_detail("GQA 8:2, GQA 12:4 and MQA 8:1; %d (case, read semantics) runs", checked);
    kvfp8_conform_check_failures();
}

static void test_cold_warm_equivalence(void **state) {
    (void)state;
    const int L = 64, chunk = 16;
    attn_spec cold_spec = {"cold_64_e4m3fn_d128_bs16", E4M3, 2, 8, 128, 16, 1, {L}, {L}, 0, 0, 0, 0, 61};
    attn_spec warm_spec = cold_spec;
    warm_spec.label = "warm_48+16_e4m3fn_d128_bs16";
    warm_spec.q_lens[0] = chunk;
    attn_case cold, warm;
    attn_build(&cold, &cold_spec, 0);
    attn_build(&warm, &warm_spec, 0);
    const size_t row = (size_t)cold_spec.q_heads * (size_t)cold_spec.head_size;
    const size_t tail = (size_t)(L - chunk) * row; /* the cold output rows of the last chunk */
    float *oc = malloc(sizeof(float) * cold.n_out), *ow = malloc(sizeof(float) * warm.n_out);
    double *rc = malloc(sizeof(double) * cold.n_out), *rw = malloc(sizeof(double) * warm.n_out);
    double *bound = malloc(sizeof(double) * warm.n_out);
    assert_true(oc && ow && rc && rw && bound);
    static const kvfp8_read_semantics reads[] = {KVFP8_READ_UNIFORM, KVFP8_READ_MODEL_DTYPE};
    char detail[300] = "";
    int checked = 0;
    for (size_t k = 0; k < 2; k++) {
        const kvfp8_read_semantics r = reads[k];
        if (!claims_read(&cold, r) || !claims_read(&warm, r))
            continue;
        checked++;
        const kvfp8_attention_params pc = attn_params(&cold, r), pw = attn_params(&warm, r);
        assert_int_equal(kvfp8_paged_attention_ref(&pc, &cold.cache, cold.query, cold.new_key, cold.new_value, rc),
                         KVFP8_OK);
        assert_int_equal(kvfp8_paged_attention_ref(&pw, &warm.cache, warm.query, warm.new_key, warm.new_value, rw),
                         KVFP8_OK);
        assert_memory_equal(rc + tail, rw, sizeof(double) * warm.n_out); /* the reference's own equivalence */
        assert_int_equal(kvfp8_attention_error_bound(&pw, &warm.cache, warm.query, warm.new_key, warm.new_value,
                                                     KVFP8_DTYPE_F32, KVFP8_DTYPE_F32, bound),
                         KVFP8_OK);
        attn_run(&cold, r, oc);
        attn_run(&warm, r, ow);
        size_t identical = 0;
        for (size_t i = 0; i < warm.n_out; i++) {
            const double diff = fabs((double)oc[tail + i] - (double)ow[i]);
            identical += kvfp8_conform_same_float(oc[tail + i], ow[i]);
            kvfp8_conform_ratio(diff / bound[i]);
            if (!(diff <= bound[i]))
                kvfp8_conform_failure("paged_attention read=%s position %zu head %zu dim %zu: cold (64-token prompt) "
                                      "=> %.9g, warm (48 cached + 16) => %.9g, expected within %.3g of each other",
                                      kvfp8_read_semantics_name(r), (size_t)(L - chunk) + i / row,
                                      (i / (size_t)cold_spec.head_size) % (size_t)cold_spec.q_heads,
                                      i % (size_t)cold_spec.head_size, (double)oc[tail + i], (double)ow[i], bound[i]);
        }
        snprintf(detail + strlen(detail), sizeof detail - strlen(detail), "%s%s: %zu of %zu outputs bit-identical",
                 *detail ? "; " : "", kvfp8_read_semantics_name(r), identical, warm.n_out);
    }
    free(oc), free(ow), free(rc), free(rw), free(bound);
    attn_free(&cold), attn_free(&warm);
    if (!checked)
        kvfp8_conform_not_supported("the backend claims neither `uniform` nor `model-dtype` for both the cold prompt "
                                    "and the warm chunk");
    kvfp8_conform_detail("%s", detail);
    kvfp8_conform_check_failures();
}

const kvfp8_conform_test kvfp8_conform_suite_property[] = {
    {"property", "block_table_permutation", "PROPERTY", test_block_table_permutation,
     "same contents in other physical blocks: bit-identical outputs"},
    {"property", "gqa_head_mapping", "PROPERTY", test_gqa_head_mapping,
     "GQA/MQA: heads of a group agree bit for bit, groups read their own KV head"},
    {"property", "cold_warm_equivalence", "PROPERTY", test_cold_warm_equivalence,
     "cold prompt vs warm prefix + chunk agree within the bound (uniform, model-dtype)"},
};
const size_t kvfp8_conform_suite_property_count =
    sizeof kvfp8_conform_suite_property / sizeof kvfp8_conform_suite_property[0];
