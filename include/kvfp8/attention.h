/* kvfp8 — paged attention reference (varlen: decode and chunked prefill over a
 * cached prefix in one entry point), and the error bound of the BOUNDED level.
 *
 * The batch is a list of sequences.  Sequence s has seq_lens[s] tokens of context in
 * the cache (its block_table row maps logical block i to a physical block), of which
 * the last q_len = query_start_loc[s+1] - query_start_loc[s] are the new tokens whose
 * queries are given (q_len 1: decode; more: a prefill chunk over a cached prefix).
 * The new tokens' K/V must already be in the cache (the engine writes them first, as
 * vLLM does); `mixed` reads them from new_key / new_value instead.
 *
 * Computed in double precision.  Facts and the bound's derivation: docs/attention.md. */
#ifndef KVFP8_ATTENTION_H
#define KVFP8_ATTENTION_H

#include <stddef.h>

#include "kvfp8/kv_cache.h"
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How K/V are read back, as real engines do it. */
typedef enum {
    /* vLLM's CUDA paged attention: every K/V element dequantized in float32
     * (decode * scale) and rounded to the model dtype before the dot products. */
    KVFP8_READ_MODEL_DTYPE = 0,
    /* vLLM's Triton prefix-prefill: the cached context as model-dtype, the current
     * chunk's K/V from the unquantized inputs (so cold and warm runs differ). */
    KVFP8_READ_MIXED = 1,
    /* FA3 / FlashInfer style: everything read back from the cache, scales folded
     * (decode(code) exactly, times the scale, no per-element rounding). */
    KVFP8_READ_UNIFORM = 2
} kvfp8_read_semantics;
#define KVFP8_READ_COUNT 3

const char *kvfp8_read_semantics_name(kvfp8_read_semantics r);
kvfp8_status kvfp8_read_semantics_parse(const char *name, kvfp8_read_semantics *out);

typedef struct {
    int num_seqs;
    const int *query_start_loc;  /* [num_seqs + 1], cumulative query token counts */
    const int *seq_lens;         /* [num_seqs], context length including the new tokens */
    const int *block_table;      /* [num_seqs][max_blocks_per_seq] physical block ids */
    int max_blocks_per_seq;
    int num_q_heads;             /* a multiple of the cache's num_kv_heads (GQA, MQA) */
    double softmax_scale;        /* usually 1/sqrt(head_size) */
    int sliding_window;          /* 0: none; else a query at position i sees keys j > i - window */
    double logits_soft_cap;      /* 0: none; else score = cap * tanh(score / cap) */
    kvfp8_read_semantics read;
    kvfp8_model_dtype model_dtype;
} kvfp8_attention_params;

/* out[t][h][d] for every query token t (query_start_loc[num_seqs] of them):
 * query, out: [num_tokens][num_q_heads][head_size]; new_key, new_value:
 * [num_tokens][num_kv_heads][head_size] (float32 values of the model-dtype inputs;
 * read only under KVFP8_READ_MIXED and may be NULL otherwise). */
kvfp8_status kvfp8_paged_attention_ref(const kvfp8_attention_params *p, const kvfp8_kv_cache *cache,
                                       const float *query, const float *new_key, const float *new_value,
                                       double *out);

/* The BOUNDED level: for each output element, the largest difference from the
 * reference that an implementation computing in the given precisions may show,
 * given the same cache contents and read semantics.  accumulate: the precision of
 * dot products, softmax and the weighted sum (F32 for every GPU kernel we know);
 * output: the dtype the result is stored in.  bound has the shape of out. */
kvfp8_status kvfp8_attention_error_bound(const kvfp8_attention_params *p, const kvfp8_kv_cache *cache,
                                         const float *query, const float *new_key, const float *new_value,
                                         kvfp8_model_dtype accumulate, kvfp8_model_dtype output, double *bound);

/* Cold versus warm (the PROPERTY level under `mixed`): a request served cold reads
 * every K/V of its prompt unquantized (the whole prompt is the current chunk); served
 * warm, it reads the cached prefix back from the cache.  For the warm run described
 * by p (one sequence: num_seqs == 1), bound[t][h][d] is the largest difference the
 * two outputs may show, given the exact (unquantized) K/V of every position,
 * exact_key / exact_value: [seq_len][num_kv_heads][head_size].  Derivation in
 * docs/attention.md: (exp(2S) - 1) * sum_j p_j |v_j| + sum_j p_j |dv_j|, with S the
 * largest score change sum_i |q_i| |dk_ji| * softmax_scale. */
kvfp8_status kvfp8_attention_reuse_bound(const kvfp8_attention_params *p, const kvfp8_kv_cache *cache,
                                         const float *query, const float *exact_key, const float *exact_value,
                                         double *bound);

#ifdef __cplusplus
}
#endif
#endif
