/* Attention cases shared by the attention (BOUNDED) and property suites: a batch of
 * sequences whose K/V are written into a paged cache by the reference write (so the
 * backend's attention is judged on exactly the reference's cache contents), scattered
 * over physical blocks by a seeded permutation, with queries for the last q_len
 * positions of each sequence. */
#ifndef KVFP8_CONFORM_ATTN_FIXTURE_H
#define KVFP8_CONFORM_ATTN_FIXTURE_H

#include "conform_suite.h"

#define ATTN_MAX_SEQS 8

typedef struct {
    const char *label;        /* names the case in failure lines */
    int fp8;                  /* FP8 storage (else auto storage of storage_dtype) */
    kvfp8_format format;      /* with fp8 */
    kvfp8_profile profile;    /* with fp8: the rules table (mode sat) */
    kvfp8_model_dtype storage_dtype;
    kvfp8_model_dtype model_dtype;
    int kv_heads, q_heads, head_size, block_size;
    int num_seqs;
    int seq_lens[ATTN_MAX_SEQS], q_lens[ATTN_MAX_SEQS];
    int per_tensor_scale;     /* 1: one k and one v scale; else one per KV head */
    int sliding_window;
    double soft_cap;
    float query_scale;        /* 0 means 1: larger queries give larger scores */
    uint64_t seed;
} attn_spec;

typedef struct {
    attn_spec spec;
    kvfp8_kv_cache cache;
    int *block_table;
    int max_blocks;
    int qsl[ATTN_MAX_SEQS + 1];
    float *query;               /* [tokens][q_heads][head_size] */
    float *new_key, *new_value; /* [tokens][kv_heads][head_size]: the new tokens' K/V, model-dtype values */
    size_t n_tokens, n_out;     /* query tokens; output elements */
} attn_case;

/* layout picks the block permutation: the same spec with another layout holds the
 * same logical contents in other physical blocks. */
void attn_build(attn_case *c, const attn_spec *s, int layout);
void attn_free(attn_case *c);
kvfp8_attention_params attn_params(const attn_case *c, kvfp8_read_semantics read);
/* The capability query for running this case under `read`. */
void attn_query(const attn_case *c, kvfp8_read_semantics read, kvfp8_backend_query *q);

/* Runs the backend under `read`, compares every output element with the float64
 * reference within kvfp8_attention_error_bound(accumulate F32, output F32), records
 * each error/bound ratio and a failure line per element outside the bound.  out (may
 * be NULL) receives the backend's output (n_out floats).  Returns the largest ratio. */
double attn_check(const attn_case *c, kvfp8_read_semantics read, float *out);

/* Runs the backend only (no comparison). */
void attn_run(const attn_case *c, kvfp8_read_semantics read, float *out);

#endif
