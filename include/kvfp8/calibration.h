/* kvfp8 — the three calibration modes of an FP8 KV cache, the tiny model's
 * tokenizer and prompt sets, and the quality comparison against a BF16 cache.
 *
 *  none     k_scale = v_scale = 1.0 (vLLM warns).
 *  random   calculate_kv_scales: on the first forward pass over a warmup batch of
 *           random tokens, k = max|K| / 200, v = max|V| / 100 per layer; frozen.
 *  dataset  llm-compressor: per layer (or per KV head) amax / 448 over a calibration
 *           set, through an observer, rounded to the scale dtype, zero -> eps.
 * Facts and sources: docs/calibration.md. */
#ifndef KVFP8_CALIBRATION_H
#define KVFP8_CALIBRATION_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/engine.h"
#include "kvfp8/model.h"
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { KVFP8_CALIB_NONE = 0, KVFP8_CALIB_RANDOM = 1, KVFP8_CALIB_DATASET = 2 } kvfp8_calib_mode;
#define KVFP8_CALIB_MODE_COUNT 3

/* llm-compressor observers: "minmax" (moving average, constant 0.01: the default
 * before 2026-01), "memoryless_minmax" (the last batch: the default after),
 * "static_minmax" (global running max: the FP8 presets). */
typedef enum { KVFP8_OBSERVER_MINMAX = 0, KVFP8_OBSERVER_MEMORYLESS = 1, KVFP8_OBSERVER_STATIC = 2 } kvfp8_observer;
#define KVFP8_OBSERVER_COUNT 3

const char *kvfp8_calib_mode_name(kvfp8_calib_mode m);
kvfp8_status kvfp8_calib_mode_parse(const char *name, kvfp8_calib_mode *out);
const char *kvfp8_observer_name(kvfp8_observer o);
kvfp8_status kvfp8_observer_parse(const char *name, kvfp8_observer *out);

/* Built-in prompt sets: in-domain calibration text, held-out in-domain evaluation
 * text (never used for calibration), and the seed's two-request prompt. */
size_t kvfp8_calibration_set(const char *const **texts);
size_t kvfp8_evaluation_set(const char *const **texts);
const char *kvfp8_seed_prompt(void);

typedef struct {
    kvfp8_calib_mode mode;
    kvfp8_observer observer;       /* dataset */
    int per_head;                  /* dataset: one scale per KV head (strategy attn_head) */
    kvfp8_model_dtype scale_dtype; /* dataset: the dtype scales are computed and stored in */
    int warmup_tokens;             /* random: the warmup batch size (default 256) */
    uint64_t warmup_seed;
} kvfp8_calib_options;

void kvfp8_calib_default_options(kvfp8_calib_options *o);

/* Computes the scales: k and v are [num_layers][*count] with *count 1 or
 * num_kv_heads (caller-provided, num_layers * num_kv_heads floats each). */
kvfp8_status kvfp8_calibrate(const kvfp8_model *m, const kvfp8_calib_options *o, float *k, float *v, int *count);

/* Quality of one calibration against a BF16 cache on a set of prompts. */
typedef struct {
    double attention_error;  /* mean over prompts and layers of ||o_fp8 - o_bf16|| / ||o_bf16|| */
    double saturation_rate;  /* fraction of K/V elements clipped: |x| / scale > max */
    double output_agreement; /* fraction of greedy tokens equal to the BF16 run's */
    int prompts;
} kvfp8_quality;

/* Runs every prompt through a BF16 engine (recording each layer's Q, K, V), then
 * computes each layer's attention over an FP8 cache written with the given scales
 * (model-dtype reads) and compares; output agreement from an FP8 engine run. */
kvfp8_status kvfp8_quality_measure(const kvfp8_model *m, const char *const *texts, size_t n_texts,
                                   const float *k, const float *v, int count, int max_tokens, kvfp8_quality *q);

#ifdef __cplusplus
}
#endif
#endif
