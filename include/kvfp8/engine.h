/* kvfp8 — a tiny serving engine: requests of token ids in, greedy tokens out, with
 * vLLM's prefix caching and FP8 KV cache semantics.
 *
 * Per request: block hashes (ref/hash.c) -> longest cached prefix and allocation
 * (ref/prefix_manager.c over ref/pool.c) -> chunked prefill of the tokens not cached,
 * then decode steps, every KV write and attention call going through a backend
 * (include/kvfp8/backend.h).  Before each backend call the engine names the kernel
 * path it takes (a "site": cache/write, cache/read, attn/prefill, attn/prefix_prefill,
 * attn/decode) and asks an optional hook whether that call may run — the platform
 * capability model (include/kvfp8/platform.h) plugs in there.  Those sites and the
 * engine's I/O boundaries (engine/startup, scales/load, hash/compute, pool/alloc) are
 * also fault sites (include/kvfp8/faults.h), and detectors for faults that do not
 * crash (an encoding canary, scale sanity, a saturation monitor, a KV integrity
 * check, a non-finite guard) run where they can see them (docs/faults.md).  Logs
 * echo vLLM's lines so the operators' verification checklist reads kvfp8 as it reads
 * vLLM (docs/engine.md). */
#ifndef KVFP8_ENGINE_H
#define KVFP8_ENGINE_H

#include <stdint.h>
#include <stdio.h>

#include "kvfp8/attention.h"
#include "kvfp8/backend.h"
#include "kvfp8/hash.h"
#include "kvfp8/model.h"
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Kernel paths the engine distinguishes, as vLLM's attention backends do. */
#define KVFP8_SITE_CACHE_WRITE "cache/write"
#define KVFP8_SITE_PREFILL "attn/prefill"               /* a chunk with no cached prefix */
#define KVFP8_SITE_PREFIX_PREFILL "attn/prefix_prefill" /* a chunk over a cached prefix */
#define KVFP8_SITE_DECODE "attn/decode"                 /* one new token */
#define KVFP8_SITE_CACHE_READ "cache/read"              /* fp8_decode of the encoding canary */
/* I/O boundaries (fault sites only; the hook is not asked). */
#define KVFP8_SITE_ENGINE_STARTUP "engine/startup"
#define KVFP8_SITE_SCALES_LOAD "scales/load"
#define KVFP8_SITE_HASH_COMPUTE "hash/compute"
#define KVFP8_SITE_POOL_ALLOC "pool/alloc"

/* Detectors (kvfp8_engine_config.detectors).  Each one that fires fails the
 * request (or startup) with a message starting "corruption detected: " and counts
 * in kvfp8_engine_metrics.corruption_detected; the saturation monitor only warns. */
#define KVFP8_DETECT_CANARY 0x01u        /* FP8: known values written and read back at startup */
#define KVFP8_DETECT_CANARY_WRITES 0x02u /* FP8: one canary token in every cache write, read back */
#define KVFP8_DETECT_SCALES 0x04u        /* scales in use = scales installed = scales loaded */
#define KVFP8_DETECT_NONFINITE 0x08u     /* attention outputs must be finite */
#define KVFP8_DETECT_INTEGRITY 0x10u     /* a checksum per slot at write, checked before each read */
#define KVFP8_DETECT_SATURATION 0x20u    /* warn when a request clips more than saturation_warn */
#define KVFP8_DETECT_DEFAULT                                                                                        \
    (KVFP8_DETECT_CANARY | KVFP8_DETECT_SCALES | KVFP8_DETECT_NONFINITE | KVFP8_DETECT_SATURATION)
#define KVFP8_DETECT_ALL 0x3Fu

/* Asked before every backend call; anything but KVFP8_OK fails the request with
 * that status and kvfp8_last_error() as the error text. */
typedef kvfp8_status (*kvfp8_engine_hook)(void *ctx, const char *site, const kvfp8_backend_query *q);

/* Sees each chunk's Q ([n][q_heads][head_size]), K and V ([n][kv_heads][head_size]),
 * model-dtype values after RoPE, before the cache write: how calibration observes
 * activations. */
typedef void (*kvfp8_kv_observer)(void *ctx, int layer, const float *q, const float *k, const float *v,
                                  int n_tokens);

typedef struct {
    const char *kv_cache_dtype;   /* "auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2" */
    int enable_prefix_caching;
    int calculate_kv_scales;      /* random-token warmup: k = max|K|/200, v = max|V|/100 */
    kvfp8_profile fp8_profile;    /* whose conversion the cache write reproduces (default nvidia) */
    int fp8_fnuz;                 /* the platform's "fp8" is E4M3FNUZ (AMD gfx94x) */
    kvfp8_read_semantics prefill_read, prefix_prefill_read, decode_read;
    int block_size;               /* 16 */
    int num_blocks;               /* KV pool size in blocks, the null block included */
    kvfp8_hash_algo hash_algo;
    const char *hash_seed;        /* PYTHONHASHSEED; NULL: random NONE_HASH */
    /* Scales from a checkpoint: [num_layers][scale_count] each; NULL: none. */
    const float *k_scales, *v_scales;
    int scale_count;              /* 1 (per tensor) or num_kv_heads */
    const char *scales_source;    /* for the log line, e.g. the artifact folder */
    int warmup_tokens;            /* random tokens for calculate_kv_scales (default 256) */
    uint64_t warmup_seed;
    FILE *log;                    /* NULL: silent */
    const kvfp8_backend_ops *backend; /* NULL: the reference backend */
    kvfp8_engine_hook hook;
    void *hook_ctx;
    kvfp8_kv_observer observer;
    void *observer_ctx;
    unsigned detectors;           /* KVFP8_DETECT_* (default KVFP8_DETECT_DEFAULT) */
    double saturation_warn;       /* fraction of clipped K/V elements per request that warns (0.01) */
    int max_chunk_tokens;         /* chunked prefill: at most this many prompt tokens per chunk (0: one chunk) */
} kvfp8_engine_config;

void kvfp8_engine_default_config(kvfp8_engine_config *cfg);

typedef struct kvfp8_engine kvfp8_engine;

/* The model is borrowed and must outlive the engine.  Logs the startup lines. */
kvfp8_status kvfp8_engine_create(const kvfp8_engine_config *cfg, const kvfp8_model *model, kvfp8_engine **out);
void kvfp8_engine_destroy(kvfp8_engine *e);

typedef struct {
    uint32_t prompt_tokens;
    uint32_t hit_tokens;       /* prompt tokens served from the prefix cache */
    uint32_t computed_tokens;  /* prompt tokens run through the model */
    double ttft_ms;            /* request start to first token */
    double total_ms;
    const char *first_site;    /* the attention path of the prefill chunk */
    int n_output;
    int64_t output[256];       /* generated tokens (at most 256) */
} kvfp8_request_result;

/* Serves one request to completion: max_tokens greedy tokens (1..256).  The prompt
 * runs in chunks of max_chunk_tokens (all at once by default): the first chunk with
 * no cached context on attn/prefill, every later one (and a first one after a prefix
 * hit) on attn/prefix_prefill. */
kvfp8_status kvfp8_engine_generate(kvfp8_engine *e, const char *req_id, const int64_t *prompt, int n_prompt,
                                   int max_tokens, kvfp8_request_result *res);

typedef struct {
    uint64_t prefix_cache_queries; /* tokens looked up (vllm:prefix_cache_queries_total) */
    uint64_t prefix_cache_hits;    /* tokens found (vllm:prefix_cache_hits_total) */
    double hit_rate;               /* over the last 1000 requests */
    double kv_cache_usage;         /* fraction of blocks in use */
    uint64_t kv_bytes_per_token;   /* 2 x layers x kv_heads x head_size x element bytes */
    uint64_t kv_pool_bytes;        /* num_blocks x block_size x kv_bytes_per_token */
    uint64_t kv_pool_bytes_bf16;   /* the same pool in bfloat16, for comparison */
    uint64_t fp8_saturated;        /* K/V elements clipped: |x| / scale > max (FP8 only) */
    uint64_t fp8_written;
    uint64_t corruption_detected;  /* detectors that fired */
    uint64_t saturation_warnings;  /* requests over saturation_warn */
    uint64_t canary_checks;        /* encoding canaries read back */
} kvfp8_engine_metrics;

void kvfp8_engine_get_metrics(const kvfp8_engine *e, kvfp8_engine_metrics *m);

/* The scales in use for layer l ([scale_count] each); count in *n. */
void kvfp8_engine_scales(const kvfp8_engine *e, int layer, const float **k, const float **v, int *n);

/* The storage the engine resolved from kv_cache_dtype. */
const kvfp8_kv_storage *kvfp8_engine_storage(const kvfp8_engine *e);

#ifdef __cplusplus
}
#endif
#endif
