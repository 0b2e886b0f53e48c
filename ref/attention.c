/* Paged attention reference in double precision, and the BOUNDED error model.
 *
 * Straightforward on purpose: for every query token and head, gather the visible
 * keys through the block table, score, softmax, weight the values.  The read
 * semantics decide only how one K/V element becomes a number (read_kv below). */
#include "kvfp8/attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const read_names[KVFP8_READ_COUNT] = {"model-dtype", "mixed", "uniform"};

const char *kvfp8_read_semantics_name(kvfp8_read_semantics r) {
    return (unsigned)r < KVFP8_READ_COUNT ? read_names[r] : "?";
}

kvfp8_status kvfp8_read_semantics_parse(const char *name, kvfp8_read_semantics *out) {
    for (unsigned i = 0; name && i < KVFP8_READ_COUNT; i++)
        if (!strcmp(name, read_names[i])) {
            *out = (kvfp8_read_semantics)i;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID, "unknown read semantics '%s' (model-dtype, mixed, uniform)",
                      name ? name : "(null)");
}

static kvfp8_status validate(const kvfp8_attention_params *p, const kvfp8_kv_cache *c, const float *new_key,
                             const float *new_value) {
    if (p->num_seqs < 0 || !p->query_start_loc || !p->seq_lens || !p->block_table)
        return kvfp8_fail(KVFP8_ERR_INVALID, "attention: num_seqs, query_start_loc, seq_lens and block_table are required");
    if (p->num_q_heads <= 0 || p->num_q_heads % c->num_kv_heads)
        return kvfp8_fail(KVFP8_ERR_INVALID, "attention: num_q_heads=%d is not a positive multiple of num_kv_heads=%d",
                          p->num_q_heads, c->num_kv_heads);
    if (!(p->softmax_scale > 0) || !isfinite(p->softmax_scale))
        return kvfp8_fail(KVFP8_ERR_INVALID, "attention: softmax_scale must be finite and > 0");
    if (p->sliding_window < 0 || p->logits_soft_cap < 0)
        return kvfp8_fail(KVFP8_ERR_INVALID, "attention: sliding_window and logits_soft_cap must be >= 0");
    if ((unsigned)p->read >= KVFP8_READ_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "attention: unknown read semantics %d", (int)p->read);
    if (p->read == KVFP8_READ_MIXED && (!new_key || !new_value))
        return kvfp8_fail(KVFP8_ERR_INVALID, "attention: read semantics 'mixed' needs the new tokens' K and V");
    if (p->query_start_loc[0] != 0)
        return kvfp8_fail(KVFP8_ERR_INVALID, "attention: query_start_loc[0] must be 0");
    for (int s = 0; s < p->num_seqs; s++) {
        const int q_len = p->query_start_loc[s + 1] - p->query_start_loc[s];
        const int len = p->seq_lens[s];
        if (q_len < 0 || q_len > len)
            return kvfp8_fail(KVFP8_ERR_INVALID, "attention: sequence %d has %d query tokens and seq_len %d", s, q_len, len);
        const int blocks = (len + c->block_size - 1) / c->block_size;
        if (blocks > p->max_blocks_per_seq)
            return kvfp8_fail(KVFP8_ERR_INVALID, "attention: sequence %d needs %d blocks, block table has %d", s,
                              blocks, p->max_blocks_per_seq);
        for (int b = 0; b < blocks; b++) {
            const int id = p->block_table[s * p->max_blocks_per_seq + b];
            if (id < 0 || id >= c->num_blocks)
                return kvfp8_fail(KVFP8_ERR_INVALID, "attention: sequence %d block %d maps to %d, outside 0..%d", s, b,
                                  id, c->num_blocks - 1);
        }
    }
    return KVFP8_OK;
}

typedef struct {
    const kvfp8_attention_params *p;
    const kvfp8_kv_cache *c;
    const float *new_key, *new_value;
    int seq, q_begin, q_len, seq_len;
} seq_view;

/* One K (is_value 0) or V element at context position j of the sequence. */
static double read_kv(const seq_view *v, int is_value, int j, int kv_head, int dim) {
    const kvfp8_kv_cache *c = v->c;
    const int first_new = v->seq_len - v->q_len;
    if (v->p->read == KVFP8_READ_MIXED && j >= first_new) {
        const float *src = is_value ? v->new_value : v->new_key;
        const size_t t = (size_t)(v->q_begin + (j - first_new));
        return (double)src[(t * (size_t)c->num_kv_heads + (size_t)kv_head) * (size_t)c->head_size + (size_t)dim];
    }
    const int block = v->p->block_table[v->seq * v->p->max_blocks_per_seq + j / c->block_size];
    const int64_t slot = (int64_t)block * c->block_size + j % c->block_size;
    if (v->p->read == KVFP8_READ_UNIFORM)
        return kvfp8_cache_read_exact(c, is_value, slot, kv_head, dim);
    const float x = kvfp8_cache_read_f32(c, is_value, slot, kv_head, dim);
    return (double)(c->storage.is_fp8 ? kvfp8_round_to_model_dtype(v->p->model_dtype, x) : x);
}

static int first_visible(const kvfp8_attention_params *p, int pos) {
    if (p->sliding_window <= 0)
        return 0;
    const int first = pos - p->sliding_window + 1;
    return first > 0 ? first : 0;
}

static double capped(const kvfp8_attention_params *p, double s) {
    return p->logits_soft_cap > 0 ? p->logits_soft_cap * tanh(s / p->logits_soft_cap) : s;
}

/* Runs over every (token, head): scores into `scores` (size >= max seq_len), then
 * calls emit for the output row.  Shared by the reference and the bound. */
typedef void (*row_fn)(void *ctx, const seq_view *v, size_t token, int head, int kv_head, int first, int pos,
                       const double *probs, const double *abs_qk);

static kvfp8_status for_each_row(const kvfp8_attention_params *p, const kvfp8_kv_cache *c, const float *query,
                                 const float *new_key, const float *new_value, row_fn emit, void *ctx) {
    kvfp8_status st = validate(p, c, new_key, new_value);
    if (st != KVFP8_OK)
        return st;
    int max_len = 1;
    for (int s = 0; s < p->num_seqs; s++)
        if (p->seq_lens[s] > max_len)
            max_len = p->seq_lens[s];
    double *probs = malloc(sizeof(double) * (size_t)max_len);
    double *abs_qk = malloc(sizeof(double) * (size_t)max_len);
    if (!probs || !abs_qk) {
        free(probs);
        free(abs_qk);
        return kvfp8_fail(KVFP8_ERR_NOMEM, "attention: scratch for %d keys", max_len);
    }
    const int group = p->num_q_heads / c->num_kv_heads;
    const int d = c->head_size;
    for (int s = 0; s < p->num_seqs; s++) {
        seq_view v = {p, c, new_key, new_value, s, p->query_start_loc[s],
                      p->query_start_loc[s + 1] - p->query_start_loc[s], p->seq_lens[s]};
        for (int i = 0; i < v.q_len; i++) {
            const size_t token = (size_t)(v.q_begin + i);
            const int pos = v.seq_len - v.q_len + i;
            const int first = first_visible(p, pos);
            for (int h = 0; h < p->num_q_heads; h++) {
                const int kvh = h / group;
                const float *q = query + (token * (size_t)p->num_q_heads + (size_t)h) * (size_t)d;
                double max_score = -INFINITY;
                for (int j = first; j <= pos; j++) {
                    double dot = 0, abs_dot = 0;
                    for (int e = 0; e < d; e++) {
                        const double k = read_kv(&v, 0, j, kvh, e);
                        dot += (double)q[e] * k;
                        abs_dot += fabs((double)q[e] * k);
                    }
                    probs[j] = capped(p, dot * p->softmax_scale);
                    abs_qk[j] = abs_dot * p->softmax_scale;
                    if (probs[j] > max_score)
                        max_score = probs[j];
                }
                double sum = 0;
                for (int j = first; j <= pos; j++) {
                    probs[j] = exp(probs[j] - max_score);
                    sum += probs[j];
                }
                for (int j = first; j <= pos; j++)
                    probs[j] /= sum;
                emit(ctx, &v, token, h, kvh, first, pos, probs, abs_qk);
            }
        }
    }
    free(probs);
    free(abs_qk);
    return KVFP8_OK;
}

static void emit_output(void *ctx, const seq_view *v, size_t token, int head, int kv_head, int first, int pos,
                        const double *probs, const double *abs_qk) {
    (void)abs_qk;
    double *out = ctx;
    const int d = v->c->head_size;
    double *row = out + (token * (size_t)v->p->num_q_heads + (size_t)head) * (size_t)d;
    for (int e = 0; e < d; e++) {
        double acc = 0;
        for (int j = first; j <= pos; j++)
            acc += probs[j] * read_kv(v, 1, j, kv_head, e);
        row[e] = acc;
    }
}

kvfp8_status kvfp8_paged_attention_ref(const kvfp8_attention_params *p, const kvfp8_kv_cache *cache,
                                       const float *query, const float *new_key, const float *new_value,
                                       double *out) {
    return for_each_row(p, cache, query, new_key, new_value, emit_output, out);
}

/* ---- the error bound (derivation in docs/attention.md) -------------------------- */

static double unit_roundoff(kvfp8_model_dtype d) {
    switch (d) {
    case KVFP8_DTYPE_F16: return 0x1p-11;
    case KVFP8_DTYPE_BF16: return 0x1p-8;
    case KVFP8_DTYPE_F32: break;
    }
    return 0x1p-24;
}

static double gamma_n(int n, double u) {
    const double nu = n * u;
    return nu < 0.5 ? nu / (1 - nu) : INFINITY;
}

typedef struct {
    double *bound;
    double u_acc, u_out;
} bound_ctx;

static void emit_bound(void *ctx, const seq_view *v, size_t token, int head, int kv_head, int first, int pos,
                       const double *probs, const double *abs_qk) {
    bound_ctx *b = ctx;
    const int d = v->c->head_size;
    const int n = pos - first + 1;
    /* S: the largest error of one score (dot product of length d, then the scale
     * multiply and the soft cap's tanh, each a few roundings). */
    double s_err = 0;
    for (int j = first; j <= pos; j++) {
        double e = gamma_n(d + 2, b->u_acc) * abs_qk[j];
        if (v->p->logits_soft_cap > 0)
            e += 4 * b->u_acc * v->p->logits_soft_cap;
        if (e > s_err)
            s_err = e;
    }
    /* relative error of each probability: 2S from the scores, exp and the sum of n
     * terms and the division */
    const double p_rel = 2 * s_err + gamma_n(n + 4, b->u_acc);
    double *row = b->bound + (token * (size_t)v->p->num_q_heads + (size_t)head) * (size_t)d;
    for (int e = 0; e < d; e++) {
        double weighted_abs = 0, value = 0;
        for (int j = first; j <= pos; j++) {
            const double x = read_kv(v, 1, j, kv_head, e);
            weighted_abs += probs[j] * fabs(x);
            value += probs[j] * x;
        }
        /* factor 2: a margin for second-order terms, stated in docs/attention.md */
        row[e] = 2 * (p_rel + gamma_n(n + 1, b->u_acc)) * weighted_abs + b->u_out * fabs(value) + 0x1p-60;
    }
}

kvfp8_status kvfp8_attention_error_bound(const kvfp8_attention_params *p, const kvfp8_kv_cache *cache,
                                         const float *query, const float *new_key, const float *new_value,
                                         kvfp8_model_dtype accumulate, kvfp8_model_dtype output, double *bound) {
    bound_ctx b = {bound, unit_roundoff(accumulate), output == KVFP8_DTYPE_F32 ? 0x1p-24 : unit_roundoff(output)};
    return for_each_row(p, cache, query, new_key, new_value, emit_bound, &b);
}

/* ---- cold versus warm (docs/attention.md) ------------------------------------------- */

typedef struct {
    double *bound;
    const float *q, *exact_key, *exact_value;
} reuse_ctx;

static void emit_reuse(void *ctx, const seq_view *v, size_t token, int head, int kv_head, int first, int pos,
                       const double *probs, const double *abs_qk) {
    (void)abs_qk;
    reuse_ctx *r = ctx;
    const int d = v->c->head_size, kvh = v->c->num_kv_heads;
    const int first_new = v->seq_len - v->q_len;
    const float *q = r->q + (token * (size_t)v->p->num_q_heads + (size_t)head) * (size_t)d;
    /* S: the largest change of a score between exact and cached K */
    double s_max = 0;
    for (int j = first; j <= pos && j < first_new; j++) {
        double ds = 0;
        for (int e = 0; e < d; e++) {
            const double exact = r->exact_key[((size_t)j * kvh + kv_head) * d + e];
            ds += fabs((double)q[e]) * fabs(exact - read_kv(v, 0, j, kv_head, e));
        }
        ds *= v->p->softmax_scale;
        if (ds > s_max)
            s_max = ds;
    }
    const double grow = expm1(2 * s_max);
    double *row = r->bound + (token * (size_t)v->p->num_q_heads + (size_t)head) * (size_t)d;
    for (int e = 0; e < d; e++) {
        double spread = 0, shift = 0, mag = 0;
        for (int j = first; j <= pos; j++) {
            const double exact = r->exact_value[((size_t)j * kvh + kv_head) * d + e];
            spread += probs[j] * fabs(exact);
            if (j < first_new)
                shift += probs[j] * fabs(exact - read_kv(v, 1, j, kv_head, e));
            mag += probs[j] * fabs(exact);
        }
        /* plus a rounding allowance for two double-precision evaluations */
        row[e] = grow * spread + shift + 1e-12 * mag + 0x1p-60;
    }
}

kvfp8_status kvfp8_attention_reuse_bound(const kvfp8_attention_params *p, const kvfp8_kv_cache *cache,
                                         const float *query, const float *exact_key, const float *exact_value,
                                         double *bound) {
    if (p->num_seqs != 1)
        return kvfp8_fail(KVFP8_ERR_INVALID, "reuse bound: one sequence at a time (got %d)", p->num_seqs);
    if (!exact_key || !exact_value)
        return kvfp8_fail(KVFP8_ERR_INVALID, "reuse bound: the exact K and V are required");
    /* the warm run's reads; `mixed` needs the chunk's own K/V, which are exact */
    const int first_new = p->seq_lens[0] - (p->query_start_loc[1] - p->query_start_loc[0]);
    const size_t per_tok = (size_t)cache->num_kv_heads * (size_t)cache->head_size;
    reuse_ctx r = {bound, query, exact_key, exact_value};
    return for_each_row(p, cache, query, exact_key + (size_t)first_new * per_tok,
                        exact_value + (size_t)first_new * per_tok, emit_reuse, &r);
}
