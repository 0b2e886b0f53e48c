/* Attention cases for the conformance suites (see attn_fixture.h). */
#include "attn_fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float model_value(const attn_spec *s, uint64_t *rng, float scale) {
    return kvfp8_round_to_model_dtype(s->model_dtype, kvfp8_conform_frand(rng, scale));
}

void attn_build(attn_case *c, const attn_spec *s, int layout) {
    memset(c, 0, sizeof *c);
    c->spec = *s;
    kvfp8_kv_storage st;
    memset(&st, 0, sizeof st);
    st.is_fp8 = s->fp8;
    st.dtype = s->storage_dtype;
    if (s->fp8)
        assert_int_equal(kvfp8_fp8_rules_get(s->format, KVFP8_SAT, s->profile, &st.fp8), KVFP8_OK);
    int total_blocks = 0;
    c->max_blocks = 1;
    for (int q = 0; q < s->num_seqs; q++) {
        const int blocks = (s->seq_lens[q] + s->block_size - 1) / s->block_size;
        total_blocks += blocks;
        if (blocks > c->max_blocks)
            c->max_blocks = blocks;
        c->qsl[q + 1] = c->qsl[q] + s->q_lens[q];
    }
    const int num_blocks = total_blocks + 3; /* spare blocks stay garbage-free zeros */
    assert_int_equal(kvfp8_kv_cache_init(&c->cache, &st, num_blocks, s->block_size, s->kv_heads, s->head_size),
                     KVFP8_OK);
    float ks[256], vs[256];
    const int count = s->per_tensor_scale ? 1 : s->kv_heads;
    for (int h = 0; h < count; h++)
        ks[h] = 0.02f + 0.01f * (float)h, vs[h] = 0.015f + 0.005f * (float)h;
    assert_int_equal(kvfp8_kv_cache_set_scales(&c->cache, ks, vs, count), KVFP8_OK);

    /* physical blocks: a seeded permutation, never the identity */
    int *perm = malloc(sizeof(int) * (size_t)num_blocks);
    assert_non_null(perm);
    uint64_t r = s->seed * 31 + (uint64_t)layout + 1;
    for (int i = 0; i < num_blocks; i++)
        perm[i] = num_blocks - 1 - i;
    for (int i = num_blocks - 1; i > 0; i--) {
        const int j = (int)(kvfp8_conform_rand(&r) % (uint64_t)(i + 1));
        const int t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    c->block_table = calloc((size_t)s->num_seqs * (size_t)c->max_blocks, sizeof(int));
    assert_non_null(c->block_table);
    int next = 0;
    for (int q = 0; q < s->num_seqs; q++)
        for (int b = 0; b < (s->seq_lens[q] + s->block_size - 1) / s->block_size; b++)
            c->block_table[q * c->max_blocks + b] = perm[next++];
    free(perm);

    const size_t D = (size_t)s->head_size, KV = (size_t)s->kv_heads, H = (size_t)s->q_heads;
    c->n_tokens = (size_t)c->qsl[s->num_seqs];
    c->n_out = c->n_tokens * H * D;
    c->query = malloc(sizeof(float) * (c->n_out ? c->n_out : 1));
    c->new_key = malloc(sizeof(float) * (c->n_tokens * KV * D + 1));
    c->new_value = malloc(sizeof(float) * (c->n_tokens * KV * D + 1));
    assert_true(c->query && c->new_key && c->new_value);
    const float qscale = s->query_scale > 0 ? s->query_scale : 1.0f;
    for (int q = 0; q < s->num_seqs; q++) {
        const int len = s->seq_lens[q], first_new = len - s->q_lens[q];
        /* contents depend on the sequence's seed and position only (not on q_len), so
         * a cold and a warm case of the same sequence hold the same cache */
        uint64_t kv_rng = s->seed * 1000003u + (uint64_t)q * 7919u + 17;
        uint64_t q_rng = s->seed * 2000003u + (uint64_t)q * 104729u + 5;
        const size_t per_tok = KV * D;
        float *k = malloc(sizeof(float) * per_tok), *v = malloc(sizeof(float) * per_tok);
        float *qrow = malloc(sizeof(float) * H * D);
        assert_true(k && v && qrow);
        for (int j = 0; j < len; j++) {
            for (size_t i = 0; i < per_tok; i++) {
                const float big = (i % D) == 3 ? 6.0f : 1.5f; /* an outlier channel */
                k[i] = model_value(s, &kv_rng, big);
                v[i] = model_value(s, &kv_rng, 1.0f);
            }
            for (size_t i = 0; i < H * D; i++)
                qrow[i] = model_value(s, &q_rng, qscale);
            const int block = c->block_table[q * c->max_blocks + j / s->block_size];
            const int64_t slot = (int64_t)block * s->block_size + j % s->block_size;
            assert_int_equal(kvfp8_cache_write(&c->cache, KVFP8_SRC_F32, k, v, &slot, 1), KVFP8_OK);
            if (j >= first_new) {
                const size_t t = (size_t)(c->qsl[q] + (j - first_new));
                memcpy(c->new_key + t * per_tok, k, sizeof(float) * per_tok);
                memcpy(c->new_value + t * per_tok, v, sizeof(float) * per_tok);
                memcpy(c->query + t * H * D, qrow, sizeof(float) * H * D);
            }
        }
        free(k), free(v), free(qrow);
    }
}

void attn_free(attn_case *c) {
    kvfp8_kv_cache_free(&c->cache);
    free(c->block_table), free(c->query), free(c->new_key), free(c->new_value);
    memset(c, 0, sizeof *c);
}

kvfp8_attention_params attn_params(const attn_case *c, kvfp8_read_semantics read) {
    kvfp8_attention_params p;
    memset(&p, 0, sizeof p);
    p.num_seqs = c->spec.num_seqs;
    p.query_start_loc = c->qsl;
    p.seq_lens = c->spec.seq_lens;
    p.block_table = c->block_table;
    p.max_blocks_per_seq = c->max_blocks;
    p.num_q_heads = c->spec.q_heads;
    p.softmax_scale = 1.0 / sqrt((double)c->spec.head_size);
    p.sliding_window = c->spec.sliding_window;
    p.logits_soft_cap = c->spec.soft_cap;
    p.read = read;
    p.model_dtype = c->spec.model_dtype;
    return p;
}

void attn_query(const attn_case *c, kvfp8_read_semantics read, kvfp8_backend_query *q) {
    memset(q, 0, sizeof *q);
    q->op = KVFP8_OP_PAGED_ATTENTION;
    q->storage = c->cache.storage;
    q->fp8 = c->cache.storage.fp8;
    q->read = read;
    q->model_dtype = c->spec.model_dtype;
    q->head_size = c->spec.head_size;
    q->block_size = c->spec.block_size;
    q->num_q_heads = c->spec.q_heads;
    q->num_kv_heads = c->spec.kv_heads;
    q->per_head_scales = c->cache.scale_count > 1;
    q->sliding_window = c->spec.sliding_window > 0;
    q->soft_cap = c->spec.soft_cap > 0;
    for (int s = 0; s < c->spec.num_seqs; s++) {
        if (c->spec.q_lens[s] > q->max_query_len)
            q->max_query_len = c->spec.q_lens[s];
        if (c->spec.q_lens[s] > 1 && c->spec.seq_lens[s] > c->spec.q_lens[s])
            q->chunked_prefill = 1;
    }
}

void attn_run(const attn_case *c, kvfp8_read_semantics read, float *out) {
    kvfp8_backend *b = kvfp8_conform_backend();
    const kvfp8_attention_params p = attn_params(c, read);
    for (size_t i = 0; i < c->n_out; i++)
        out[i] = NAN; /* an element the backend forgets to write fails */
    char what[200];
    snprintf(what, sizeof what, "paged_attention %s read=%s", c->spec.label, kvfp8_read_semantics_name(read));
    kvfp8_conform_expect_ok(b->ops->paged_attention(b->state, &p, &c->cache, c->query, c->new_key, c->new_value, out),
                            what);
}

double attn_check(const attn_case *c, kvfp8_read_semantics read, float *out_copy) {
    const kvfp8_attention_params p = attn_params(c, read);
    const size_t n = c->n_out ? c->n_out : 1;
    float *out = malloc(sizeof(float) * n);
    double *ref = malloc(sizeof(double) * n), *bound = malloc(sizeof(double) * n);
    assert_true(out && ref && bound);
    assert_int_equal(kvfp8_paged_attention_ref(&p, &c->cache, c->query, c->new_key, c->new_value, ref), KVFP8_OK);
    assert_int_equal(kvfp8_attention_error_bound(&p, &c->cache, c->query, c->new_key, c->new_value, KVFP8_DTYPE_F32,
                                                 KVFP8_DTYPE_F32, bound),
                     KVFP8_OK);
    attn_run(c, read, out);
    const size_t H = (size_t)c->spec.q_heads, D = (size_t)c->spec.head_size;
    double worst = 0;
    for (size_t i = 0; i < c->n_out; i++) {
        const double err = fabs((double)out[i] - ref[i]);
        const double ratio = err / bound[i];
        kvfp8_conform_ratio(ratio);
        if (!(ratio <= worst))
            worst = ratio == ratio ? ratio : INFINITY;
        if (err <= bound[i])
            continue;
        const size_t token = i / (H * D), h = (i / D) % H, e = i % D;
        int s = 0;
        while (s + 1 < c->spec.num_seqs && (size_t)c->qsl[s + 1] <= token)
            s++;
        const int pos = c->spec.seq_lens[s] - c->spec.q_lens[s] + (int)(token - (size_t)c->qsl[s]);
        kvfp8_conform_failure("paged_attention %s read=%s seq %d (len %d, q_len %d) position %d head %zu dim %zu => "
                              "%.9g, expected %.9g +- %.3g (error %.3g = %.3gx the bound)",
                              c->spec.label, kvfp8_read_semantics_name(read), s, c->spec.seq_lens[s], c->spec.q_lens[s],
                              pos, h, e, (double)out[i], ref[i], bound[i], err, ratio);
    }
    if (out_copy)
        memcpy(out_copy, out, sizeof(float) * c->n_out);
    free(out), free(ref), free(bound);
    return worst;
}
