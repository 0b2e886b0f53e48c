/* kvfp8 — a tiny deterministic Llama-like transformer for CPU tests.
 *
 * RMSNorm, rotary position embedding (rotate-half), grouped-query attention, SwiGLU
 * MLP, tied embeddings, greedy decoding; weights drawn from a seed.  It is built so
 * that KV-cache quantization matters the way it does in real models (docs/engine.md):
 * K and V are small in most channels with a few outlier channels, and "in-domain"
 * tokens (ids below in_domain_tokens) excite those outliers far more than random
 * tokens do, so random-token calibration under-estimates the range that in-domain
 * prompts reach.
 *
 * The model does no attention itself: for each layer it hands the chunk's Q, K and V
 * (after RoPE) to a callback, which writes the KV cache and runs paged attention
 * (the engine routes that through the backend interface and the fault sites). */
#ifndef KVFP8_MODEL_H
#define KVFP8_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/kv_cache.h"
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int vocab_size;
    int hidden_size;
    int num_layers;
    int num_q_heads;
    int num_kv_heads;
    int head_size;
    int intermediate_size;
    int in_domain_tokens;  /* token ids [0, in_domain_tokens) are the "domain" */
    float rope_theta;
    float rms_eps;
    float kv_magnitude;    /* typical |K|, |V| in ordinary channels */
    float outlier_gain;    /* an outlier channel's size for in-domain input, in kv_magnitudes */
    float domain_route;    /* how strongly layer 0's attention carries "in-domain context" */
    float domain_square;   /* gain of layer 0's squaring neuron that drives later outliers */
    kvfp8_model_dtype dtype;
    uint64_t seed;
} kvfp8_tiny_config;

void kvfp8_model_default_config(kvfp8_tiny_config *cfg);
/* The default with a small vocabulary and narrow layers (the same outlier structure):
 * fast enough for the many runs of a fault sweep, `kvfp8 matrix --quick` and tests. */
void kvfp8_model_small_config(kvfp8_tiny_config *cfg);

typedef struct kvfp8_model kvfp8_model;

kvfp8_status kvfp8_model_create(const kvfp8_tiny_config *cfg, kvfp8_model **out);
void kvfp8_model_destroy(kvfp8_model *m);
const kvfp8_tiny_config *kvfp8_model_get_config(const kvfp8_model *m);

/* Called once per layer with the chunk's n tokens: q [n][num_q_heads][head_size],
 * k and v [n][num_kv_heads][head_size] (model-dtype values as float32).  It must
 * store the attention output [n][num_q_heads][head_size] in out. */
typedef kvfp8_status (*kvfp8_attend_fn)(void *ctx, int layer, const float *q, const float *k, const float *v,
                                        int n_tokens, float *out);

/* Runs the chunk tokens[0..n) at positions[0..n) through every layer and returns
 * the logits of the last token (vocab_size floats). */
kvfp8_status kvfp8_model_forward(const kvfp8_model *m, const int64_t *tokens, const int *positions, int n,
                                 kvfp8_attend_fn attend, void *ctx, float *logits_last);

/* The tiny model's tokenizer: a fixed preamble (KVFP8_PREAMBLE_TOKENS copies of the
 * BOS token vocab_size - 1, like a chat template's system prefix), then one token
 * per byte of the UTF-8 text.  Returns the token count, or -1 when cap is too small. */
#define KVFP8_PREAMBLE_TOKENS 32
int kvfp8_tokenize(const kvfp8_model *m, const char *text, int64_t *out, int cap);

/* A random prompt as the warmup of calculate_kv_scales sees it: the preamble, then
 * n - KVFP8_PREAMBLE_TOKENS tokens drawn uniformly from the vocabulary. */
void kvfp8_random_prompt(const kvfp8_model *m, uint64_t seed, int n, int64_t *out);

/* Greedy choice: the index of the largest logit (the smallest index on ties). */
int64_t kvfp8_argmax(const float *logits, int n);

#ifdef __cplusplus
}
#endif
#endif
