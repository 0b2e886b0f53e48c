/* The tiny serving engine (see include/kvfp8/engine.h and docs/engine.md). */
#include "kvfp8/engine.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvfp8/prefix_manager.h"

#define MAX_LAYERS 64

struct kvfp8_engine {
    kvfp8_engine_config cfg;
    const kvfp8_model *model;
    kvfp8_tiny_config mc;
    kvfp8_backend backend;
    kvfp8_kv_storage storage;
    const char *dtype_label; /* as echoed: "auto", "fp8", "fp8_e4m3", ... */
    kvfp8_kv_cache caches[MAX_LAYERS];
    kvfp8_pool *pool;
    kvfp8_pm *pm;
    kvfp8_block_hash none_hash;
    uint64_t queries, hits;
    uint64_t fp8_saturated, fp8_written;
    uint64_t requests_served;
};

/* Per-request state for the attend callback. */
typedef struct {
    kvfp8_engine *e;
    const char *req_id;
    int seq_len;          /* tokens in context after this chunk */
    int q_len;            /* tokens in this chunk */
    const char *site;
    kvfp8_read_semantics read;
    const uint32_t *blocks;
    size_t n_blocks;
} attend_ctx;

void kvfp8_engine_default_config(kvfp8_engine_config *c) {
    memset(c, 0, sizeof *c);
    c->kv_cache_dtype = "auto";
    c->fp8_profile = KVFP8_PROFILE_NVIDIA;
    c->prefill_read = KVFP8_READ_MIXED;        /* a cold chunk reads its own K/V unquantized */
    c->prefix_prefill_read = KVFP8_READ_MIXED; /* Triton prefix-prefill */
    c->decode_read = KVFP8_READ_MODEL_DTYPE;   /* CUDA/HIP paged attention */
    c->block_size = 16;
    c->num_blocks = 129;
    c->hash_algo = KVFP8_HASH_SHA256;
    c->hash_seed = "0";
    c->warmup_tokens = 256;
    c->warmup_seed = 1;
}

static void say(const kvfp8_engine *e, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void say(const kvfp8_engine *e, const char *fmt, ...) {
    if (!e->cfg.log)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(e->cfg.log, fmt, ap);
    va_end(ap);
    fputc('\n', e->cfg.log);
    fflush(e->cfg.log);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* vLLM's kv_cache_dtype strings -> storage. */
static kvfp8_status resolve_dtype(kvfp8_engine *e) {
    const char *d = e->cfg.kv_cache_dtype ? e->cfg.kv_cache_dtype : "auto";
    memset(&e->storage, 0, sizeof e->storage);
    e->dtype_label = d;
    if (!strcmp(d, "auto") || !strcmp(d, "bfloat16") || !strcmp(d, "float16") || !strcmp(d, "float32")) {
        e->storage.dtype = !strcmp(d, "float16") ? KVFP8_DTYPE_F16 : !strcmp(d, "float32") ? KVFP8_DTYPE_F32 : e->mc.dtype;
        return KVFP8_OK;
    }
    kvfp8_format f;
    if (!strcmp(d, "fp8") || !strcmp(d, "fp8_e4m3"))
        f = e->cfg.fp8_fnuz ? KVFP8_E4M3FNUZ : KVFP8_E4M3FN;
    else if (!strcmp(d, "fp8_e5m2"))
        f = e->cfg.fp8_fnuz ? KVFP8_E5M2FNUZ : KVFP8_E5M2;
    else
        return kvfp8_fail(KVFP8_ERR_INVALID, "Unsupported fp8 kv cache data type: %s", d);
    e->storage.is_fp8 = 1;
    return kvfp8_fp8_rules_get(f, KVFP8_SAT, e->cfg.fp8_profile, &e->storage.fp8);
}

static kvfp8_status call_hook(kvfp8_engine *e, const char *site, const kvfp8_backend_query *q) {
    if (!e->cfg.hook)
        return KVFP8_OK;
    return e->cfg.hook(e->cfg.hook_ctx, site, q);
}

static kvfp8_status attend(void *vctx, int layer, const float *q, const float *k, const float *v, int n, float *out) {
    attend_ctx *a = vctx;
    kvfp8_engine *e = a->e;
    kvfp8_kv_cache *c = &e->caches[layer];
    const int KVH = e->mc.num_kv_heads, D = e->mc.head_size, bs = e->cfg.block_size;
    if (e->cfg.observer)
        e->cfg.observer(e->cfg.observer_ctx, layer, q, k, v, n);

    /* the cache write: model-dtype inputs, as vLLM's reshape_and_cache_flash sees them */
    const size_t elems = (size_t)n * KVH * D;
    uint16_t *k16 = malloc(sizeof(uint16_t) * elems), *v16 = malloc(sizeof(uint16_t) * elems);
    int64_t *slots = malloc(sizeof(int64_t) * (size_t)n);
    kvfp8_status st = KVFP8_OK;
    if (!k16 || !v16 || !slots) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "engine: cache write staging");
        goto done;
    }
    const int first_pos = a->seq_len - n;
    for (int t = 0; t < n; t++) {
        const int pos = first_pos + t;
        slots[t] = (int64_t)a->blocks[pos / bs] * bs + pos % bs;
    }
    kvfp8_source src = KVFP8_SRC_BF16;
    const void *kin = k16, *vin = v16;
    if (e->mc.dtype == KVFP8_DTYPE_BF16) {
        for (size_t i = 0; i < elems; i++)
            k16[i] = kvfp8_f32_to_bf16(k[i]), v16[i] = kvfp8_f32_to_bf16(v[i]);
    } else if (e->mc.dtype == KVFP8_DTYPE_F16) {
        src = KVFP8_SRC_F16;
        for (size_t i = 0; i < elems; i++)
            k16[i] = kvfp8_f32_to_f16(k[i]), v16[i] = kvfp8_f32_to_f16(v[i]);
    } else {
        src = KVFP8_SRC_F32;
        kin = k, vin = v;
    }
    const int per_head = c->scale_count > 1;
    kvfp8_backend_query wq = {KVFP8_OP_CACHE_WRITE, e->storage, e->storage.fp8, src, a->read, e->mc.dtype, D, bs, 0,
                              0, 0, KVH, per_head, 0, 0, KVFP8_HASH_SHA256};
    if ((st = call_hook(e, KVFP8_SITE_CACHE_WRITE, &wq)) != KVFP8_OK)
        goto done;
    if ((st = e->backend.ops->cache_write(e->backend.state, c, src, kin, vin, slots, (size_t)n)) != KVFP8_OK)
        goto done;
    if (e->storage.is_fp8) /* saturation monitor: elements clipped, |x| / scale > max */
        for (int t = 0; t < n; t++)
            for (int h = 0; h < KVH; h++)
                for (int d = 0; d < D; d++) {
                    const size_t i = ((size_t)t * KVH + h) * D + d;
                    const int at = c->scale_count == 1 ? 0 : h;
                    e->fp8_saturated += fabsf(k[i] / c->k_scale[at]) > e->storage.fp8.max_value;
                    e->fp8_saturated += fabsf(v[i] / c->v_scale[at]) > e->storage.fp8.max_value;
                    e->fp8_written += 2;
                }

    int qsl[2] = {0, n};
    int lens[1] = {a->seq_len};
    int *table = malloc(sizeof(int) * (a->n_blocks ? a->n_blocks : 1));
    if (!table) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "engine: block table");
        goto done;
    }
    for (size_t b = 0; b < a->n_blocks; b++)
        table[b] = (int)a->blocks[b];
    kvfp8_attention_params p = {1, qsl, lens, table, (int)a->n_blocks, e->mc.num_q_heads,
                                1.0 / sqrt((double)D), 0, 0, a->read, e->mc.dtype};
    kvfp8_backend_query aq = {KVFP8_OP_PAGED_ATTENTION, e->storage, e->storage.fp8, src, a->read, e->mc.dtype, D, bs,
                              strcmp(a->site, KVFP8_SITE_PREFIX_PREFILL) == 0, n, e->mc.num_q_heads, KVH, per_head,
                              0, 0, KVFP8_HASH_SHA256};
    st = call_hook(e, a->site, &aq);
    if (st == KVFP8_OK)
        st = e->backend.ops->paged_attention(e->backend.state, &p, c, q, k, v, out);
    free(table);
done:
    free(k16), free(v16), free(slots);
    return st;
}

/* Random-token calibration (calculate_kv_scales): the first forward pass over a
 * warmup batch of random tokens sets k = max|K| / 200 and v = max|V| / 100 per
 * layer; then they are frozen. */
typedef struct {
    float kmax[MAX_LAYERS], vmax[MAX_LAYERS];
    int kv_heads, head_size;
} amax_obs;

static void observe_amax(void *ctx, int layer, const float *q, const float *k, const float *v, int n) {
    (void)q;
    amax_obs *o = ctx;
    for (size_t i = 0; i < (size_t)n * o->kv_heads * o->head_size; i++) {
        if (fabsf(k[i]) > o->kmax[layer])
            o->kmax[layer] = fabsf(k[i]);
        if (fabsf(v[i]) > o->vmax[layer])
            o->vmax[layer] = fabsf(v[i]);
    }
}

static kvfp8_status calculate_scales(kvfp8_engine *e) {
    kvfp8_engine_config wc;
    kvfp8_engine_default_config(&wc);
    wc.kv_cache_dtype = "auto";
    wc.num_blocks = e->cfg.warmup_tokens / e->cfg.block_size + 3;
    wc.block_size = e->cfg.block_size;
    amax_obs o;
    memset(&o, 0, sizeof o);
    o.kv_heads = e->mc.num_kv_heads;
    o.head_size = e->mc.head_size;
    wc.observer = observe_amax;
    wc.observer_ctx = &o;
    kvfp8_engine *w;
    kvfp8_status st = kvfp8_engine_create(&wc, e->model, &w);
    if (st != KVFP8_OK)
        return st;
    int64_t *tokens = malloc(sizeof(int64_t) * (size_t)e->cfg.warmup_tokens);
    if (!tokens) {
        kvfp8_engine_destroy(w);
        return kvfp8_fail(KVFP8_ERR_NOMEM, "warmup tokens");
    }
    kvfp8_random_prompt(e->model, e->cfg.warmup_seed, e->cfg.warmup_tokens, tokens);
    kvfp8_request_result r;
    st = kvfp8_engine_generate(w, "warmup", tokens, e->cfg.warmup_tokens, 1, &r);
    free(tokens);
    kvfp8_engine_destroy(w);
    if (st != KVFP8_OK)
        return st;
    for (int l = 0; l < e->mc.num_layers; l++) {
        float ks = o.kmax[l] / 200.0f, vs = o.vmax[l] / 100.0f;
        if (!(ks > 0)) ks = 1.0f;
        if (!(vs > 0)) vs = 1.0f;
        if ((st = kvfp8_kv_cache_set_scales(&e->caches[l], &ks, &vs, 1)) != KVFP8_OK)
            return st;
        say(e, "Calculated KV scales for layer %d from a warmup batch of %d random tokens: k_scale=%.6g v_scale=%.6g",
            l, e->cfg.warmup_tokens, (double)ks, (double)vs);
    }
    return KVFP8_OK;
}

kvfp8_status kvfp8_engine_create(const kvfp8_engine_config *cfg, const kvfp8_model *model, kvfp8_engine **out) {
    *out = NULL;
    kvfp8_engine *e = calloc(1, sizeof *e);
    if (!e)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "engine");
    e->cfg = *cfg;
    e->model = model;
    e->mc = *kvfp8_model_get_config(model);
    kvfp8_status st;
    if (e->mc.num_layers > MAX_LAYERS) {
        st = kvfp8_fail(KVFP8_ERR_INVALID, "engine: at most %d layers", MAX_LAYERS);
        goto fail;
    }
    if (cfg->block_size <= 0 || cfg->num_blocks < 2) {
        st = kvfp8_fail(KVFP8_ERR_INVALID, "engine: block_size must be > 0 and num_blocks >= 2 (got %d, %d)",
                        cfg->block_size, cfg->num_blocks);
        goto fail;
    }
    if ((st = resolve_dtype(e)) != KVFP8_OK)
        goto fail;
    if ((st = kvfp8_backend_open(cfg->backend ? cfg->backend : kvfp8_backend_ref(), &e->backend)) != KVFP8_OK)
        goto fail;
    for (int l = 0; l < e->mc.num_layers; l++)
        if ((st = kvfp8_kv_cache_init(&e->caches[l], &e->storage, cfg->num_blocks, cfg->block_size,
                                      e->mc.num_kv_heads, e->mc.head_size)) != KVFP8_OK)
            goto fail;
    kvfp8_pool_config pc = {(uint32_t)cfg->num_blocks, 0};
    if ((st = kvfp8_pool_create(&pc, &e->pool)) != KVFP8_OK)
        goto fail;
    kvfp8_pm_config pmc = {(uint32_t)cfg->block_size, 1, cfg->enable_prefix_caching, 0};
    if ((st = kvfp8_pm_create(e->pool, &pmc, &e->pm)) != KVFP8_OK)
        goto fail;
    if (cfg->hash_seed)
        st = kvfp8_hash_none_from_seed(cfg->hash_algo, cfg->hash_seed, strlen(cfg->hash_seed), &e->none_hash);
    else
        st = kvfp8_hash_none_random(&e->none_hash);
    if (st != KVFP8_OK)
        goto fail;

    const int is_fp8 = e->storage.is_fp8;
    say(e,
        "Initializing a V1 LLM engine (kvfp8 0.1.0) with config: model='kvfp8-tiny', dtype=%s, "
        "kv_cache_dtype=%s, enable_prefix_caching=%s, block_size=%d, prefix_caching_hash_algo=%s, "
        "calculate_kv_scales=%s, backend=%s",
        kvfp8_model_dtype_name(e->mc.dtype), e->dtype_label, cfg->enable_prefix_caching ? "True" : "False",
        cfg->block_size, kvfp8_hash_algo_name(cfg->hash_algo), cfg->calculate_kv_scales ? "True" : "False",
        e->backend.ops->name);
    if (is_fp8)
        say(e, "Using fp8 data type to store kv cache. It reduces the GPU memory footprint and boosts the "
               "performance. Meanwhile, it may cause accuracy drop without a proper scaling factor "
               "(stored as %s, conversion profile %s)",
            kvfp8_format_name(e->storage.fp8.format), kvfp8_profile_name(e->storage.fp8.profile));
    if (!cfg->hash_seed)
        say(e, "WARNING: PYTHONHASHSEED is not set; NONE_HASH is random, so block hashes are not reproducible "
               "across processes");

    if (is_fp8 && cfg->calculate_kv_scales) {
        if ((st = calculate_scales(e)) != KVFP8_OK)
            goto fail;
    } else if (is_fp8 && cfg->k_scales && cfg->v_scales) {
        for (int l = 0; l < e->mc.num_layers; l++)
            if ((st = kvfp8_kv_cache_set_scales(&e->caches[l], cfg->k_scales + (size_t)l * cfg->scale_count,
                                                cfg->v_scales + (size_t)l * cfg->scale_count, cfg->scale_count)) !=
                KVFP8_OK) {
                st = kvfp8_fail(st, "scales for layer %d: %s", l, kvfp8_last_error());
                goto fail;
            }
        say(e, "Loaded KV cache scales (k_scale, v_scale) for %d layers, %s, from %s", e->mc.num_layers,
            cfg->scale_count == 1 ? "per tensor" : "per head", cfg->scales_source ? cfg->scales_source : "the caller");
    } else if (is_fp8) {
        say(e, "WARNING: Using KV cache scaling factor 1.0 for %s. If this is unintended, verify that k/v_scale "
               "scaling factors are properly set in the checkpoint.",
            e->storage.fp8.format == KVFP8_E5M2 || e->storage.fp8.format == KVFP8_E5M2FNUZ ? "fp8_e5m2" : "fp8_e4m3");
    }
    kvfp8_engine_metrics m;
    kvfp8_engine_get_metrics(e, &m);
    say(e, "KV cache pool: %d blocks x %d tokens, %llu bytes per token (2 x %d layers x %d kv heads x %d x %zu bytes), "
           "%.2f MiB; a bfloat16 cache at the same settings: %.2f MiB",
        cfg->num_blocks, cfg->block_size, (unsigned long long)m.kv_bytes_per_token, e->mc.num_layers,
        e->mc.num_kv_heads, e->mc.head_size, kvfp8_kv_storage_bytes(&e->storage), m.kv_pool_bytes / 1048576.0,
        m.kv_pool_bytes_bf16 / 1048576.0);
    say(e, "Prefix caching is %s", cfg->enable_prefix_caching ? "enabled" : "disabled");
    *out = e;
    return KVFP8_OK;
fail:
    kvfp8_engine_destroy(e);
    return st;
}

void kvfp8_engine_destroy(kvfp8_engine *e) {
    if (!e)
        return;
    if (e->pm)
        kvfp8_pm_destroy(e->pm);
    if (e->pool)
        kvfp8_pool_destroy(e->pool);
    for (int l = 0; l < MAX_LAYERS; l++)
        kvfp8_kv_cache_free(&e->caches[l]);
    kvfp8_backend_close(&e->backend);
    free(e);
}

static kvfp8_status run_chunk(kvfp8_engine *e, const char *req_id, const int64_t *tokens, int first, int count,
                              const char *site, kvfp8_read_semantics read, float *logits) {
    attend_ctx a = {e, req_id, first + count, count, site, read, NULL, 0};
    kvfp8_status st = kvfp8_pm_request_blocks(e->pm, req_id, 0, &a.blocks, &a.n_blocks);
    if (st != KVFP8_OK)
        return st;
    int *positions = malloc(sizeof(int) * (size_t)count);
    if (!positions)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "positions");
    for (int i = 0; i < count; i++)
        positions[i] = first + i;
    st = kvfp8_model_forward(e->model, tokens + first, positions, count, attend, &a, logits);
    free(positions);
    return st;
}

kvfp8_status kvfp8_engine_generate(kvfp8_engine *e, const char *req_id, const int64_t *prompt, int n_prompt,
                                   int max_tokens, kvfp8_request_result *res) {
    memset(res, 0, sizeof *res);
    if (n_prompt <= 0)
        return kvfp8_fail(KVFP8_ERR_INVALID, "request %s: empty prompt", req_id);
    if (max_tokens < 1 || max_tokens > 256)
        return kvfp8_fail(KVFP8_ERR_INVALID, "request %s: max_tokens must be 1..256, got %d", req_id, max_tokens);
    const double t0 = now_ms();
    const int bs = e->cfg.block_size;
    const int cap = n_prompt + max_tokens;
    int64_t *tokens = malloc(sizeof(int64_t) * (size_t)cap);
    kvfp8_block_hash *hashes = malloc(sizeof(kvfp8_block_hash) * (size_t)(cap / bs + 1));
    float *logits = malloc(sizeof(float) * (size_t)e->mc.vocab_size);
    kvfp8_status st = KVFP8_OK;
    int added = 0;
    if (!tokens || !hashes || !logits) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "request %s", req_id);
        goto done;
    }
    memcpy(tokens, prompt, sizeof(int64_t) * (size_t)n_prompt);
    kvfp8_hash_chain chain;
    size_t n_hashes = 0;
    if ((st = kvfp8_hash_chain_init(&chain, e->cfg.hash_algo, (size_t)bs, &e->none_hash, NULL)) != KVFP8_OK ||
        (st = kvfp8_hash_chain_update(&chain, tokens, (size_t)n_prompt, hashes, (size_t)(cap / bs + 1), &n_hashes)) !=
            KVFP8_OK)
        goto done;
    if ((st = kvfp8_pm_add_request(e->pm, req_id, (uint32_t)n_prompt, hashes, n_hashes)) != KVFP8_OK)
        goto done;
    added = 1;
    uint32_t hit = 0;
    if ((st = kvfp8_pm_get_computed_blocks(e->pm, req_id, &hit)) != KVFP8_OK)
        goto done;
    if ((st = kvfp8_pm_allocate_slots(e->pm, req_id, (uint32_t)n_prompt - hit, 0)) != KVFP8_OK)
        goto done;
    if (e->cfg.enable_prefix_caching) {
        e->queries += (uint64_t)n_prompt;
        e->hits += hit;
    }
    res->prompt_tokens = (uint32_t)n_prompt;
    res->hit_tokens = hit;
    res->computed_tokens = (uint32_t)n_prompt - hit;
    const char *site = hit > 0 ? KVFP8_SITE_PREFIX_PREFILL : KVFP8_SITE_PREFILL;
    res->first_site = site;
    if ((st = run_chunk(e, req_id, tokens, (int)hit, n_prompt - (int)hit, site,
                        hit > 0 ? e->cfg.prefix_prefill_read : e->cfg.prefill_read, logits)) != KVFP8_OK)
        goto done;
    int len = n_prompt;
    res->output[res->n_output++] = kvfp8_argmax(logits, e->mc.vocab_size);
    res->ttft_ms = now_ms() - t0;
    while (res->n_output < max_tokens) {
        tokens[len++] = res->output[res->n_output - 1];
        size_t n_new = 0;
        if ((st = kvfp8_hash_chain_update(&chain, tokens, (size_t)len, hashes, (size_t)(cap / bs + 1), &n_new)) != KVFP8_OK)
            goto done;
        if ((st = kvfp8_pm_append_tokens(e->pm, req_id, 1, hashes, n_new)) != KVFP8_OK)
            goto done;
        if ((st = kvfp8_pm_allocate_slots(e->pm, req_id, 1, 0)) != KVFP8_OK)
            goto done;
        if ((st = run_chunk(e, req_id, tokens, len - 1, 1, KVFP8_SITE_DECODE, e->cfg.decode_read, logits)) != KVFP8_OK)
            goto done;
        res->output[res->n_output++] = kvfp8_argmax(logits, e->mc.vocab_size);
    }
    res->total_ms = now_ms() - t0;
done:
    if (added) {
        const char *why = st != KVFP8_OK ? kvfp8_last_error() : NULL;
        char saved[512];
        if (why)
            snprintf(saved, sizeof saved, "%s", why);
        kvfp8_pm_free(e->pm, req_id);
        kvfp8_pm_end_step(e->pm);
        if (why)
            (void)kvfp8_fail(st, "%s", saved); /* keep the request's own error text */
    }
    if (st == KVFP8_OK) {
        e->requests_served++;
        kvfp8_engine_metrics m;
        kvfp8_engine_get_metrics(e, &m);
        say(e, "Request %s: %u prompt tokens, %u from the prefix cache, TTFT %.2f ms, %d tokens generated", req_id,
            res->prompt_tokens, res->hit_tokens, res->ttft_ms, res->n_output);
        say(e, "Engine 000: Avg prompt throughput: %.1f tokens/s, GPU KV cache usage: %.1f%%, Prefix cache hit rate: %.1f%%",
            res->total_ms > 0 ? res->prompt_tokens / (res->total_ms / 1e3) : 0.0, 100.0 * m.kv_cache_usage,
            100.0 * m.hit_rate);
    }
    free(tokens), free(hashes), free(logits);
    return st;
}

void kvfp8_engine_get_metrics(const kvfp8_engine *e, kvfp8_engine_metrics *m) {
    memset(m, 0, sizeof *m);
    m->prefix_cache_queries = e->queries;
    m->prefix_cache_hits = e->hits;
    m->hit_rate = e->pm ? kvfp8_pm_hit_rate(e->pm) : 0;
    m->kv_cache_usage = e->pm ? kvfp8_pm_usage(e->pm) : 0;
    const uint64_t per_elem = kvfp8_kv_storage_bytes(&e->storage);
    const uint64_t elems = 2ull * (uint64_t)e->mc.num_layers * (uint64_t)e->mc.num_kv_heads * (uint64_t)e->mc.head_size;
    m->kv_bytes_per_token = elems * per_elem;
    m->kv_pool_bytes = (uint64_t)e->cfg.num_blocks * (uint64_t)e->cfg.block_size * m->kv_bytes_per_token;
    m->kv_pool_bytes_bf16 = (uint64_t)e->cfg.num_blocks * (uint64_t)e->cfg.block_size * elems * 2;
    m->fp8_saturated = e->fp8_saturated;
    m->fp8_written = e->fp8_written;
}

void kvfp8_engine_scales(const kvfp8_engine *e, int layer, const float **k, const float **v, int *n) {
    *k = e->caches[layer].k_scale;
    *v = e->caches[layer].v_scale;
    *n = e->caches[layer].scale_count;
}

const kvfp8_kv_storage *kvfp8_engine_storage(const kvfp8_engine *e) { return &e->storage; }
