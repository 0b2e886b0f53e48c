/* The tiny serving engine (see include/kvfp8/engine.h and docs/engine.md). */
#include "kvfp8/engine.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvfp8/faults.h"
#include "kvfp8/prefix_manager.h"

#define MAX_LAYERS 64
#define MAX_SCALES 256 /* kvfp8_kv_cache holds at most 256 scales per tensor */
/* The encoding canary lives in the null block (block 0), which the pool never hands
 * out, so no request ever reads it. */
#define CANARY_SLOT 0

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
    /* Scales: what the engine means the kernels to use (loaded, calculated or 1.0),
     * and the values before the last install (what a stale copy holds). */
    float k_auth[MAX_LAYERS][MAX_SCALES], v_auth[MAX_LAYERS][MAX_SCALES];
    float k_prev[MAX_LAYERS][MAX_SCALES], v_prev[MAX_LAYERS][MAX_SCALES];
    int scales_provided;   /* not the 1.0 default */
    const char *scales_from;
    uint32_t *kv_sum[MAX_LAYERS]; /* KVFP8_DETECT_INTEGRITY: a checksum per slot */
    uint64_t detections, saturation_warnings, canary_checks;
    uint64_t req_saturated, req_written;
    const char *req_id;    /* the request being served, for messages */
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
    c->detectors = KVFP8_DETECT_DEFAULT;
    c->saturation_warn = 0.01;
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

/* ---- detectors ---------------------------------------------------------------------- */

/* A detector fired: the request (or startup) fails, nothing wrong is served. */
static kvfp8_status detected(kvfp8_engine *e, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static kvfp8_status detected(kvfp8_engine *e, const char *fmt, ...) {
    char msg[440];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    e->detections++;
    say(e, "ERROR: corruption detected: %s", msg);
    return kvfp8_fail(KVFP8_ERR_STATE, "corruption detected: %s", msg);
}

static void fault_fired(kvfp8_engine *e, const kvfp8_fault_event *ev, const char *what) {
    say(e, "WARNING: fault injected at %s (call %llu): %s", ev->site, (unsigned long long)ev->call, what);
}

static int same_bits(float a, float b) { return !memcmp(&a, &b, sizeof a); }

/* Scale sanity: the scales a kernel is about to read are finite and > 0 and are the
 * ones the engine installed (a reset to 1.0 or a stale copy is a wrong scale that
 * nothing else would notice: vLLM #21640, SGLang #18818). */
static kvfp8_status check_scales(kvfp8_engine *e, int layer, const char *where) {
    if (!(e->cfg.detectors & KVFP8_DETECT_SCALES) || !e->storage.is_fp8)
        return KVFP8_OK;
    const kvfp8_kv_cache *c = &e->caches[layer];
    int all_one = 1, auth_one = 1;
    for (int i = 0; i < c->scale_count; i++) {
        all_one &= c->k_scale[i] == 1.0f && c->v_scale[i] == 1.0f;
        auth_one &= e->k_auth[layer][i] == 1.0f && e->v_auth[layer][i] == 1.0f;
    }
    for (int i = 0; i < c->scale_count; i++)
        for (int kv = 0; kv < 2; kv++) {
            const float use = kv ? c->v_scale[i] : c->k_scale[i];
            const float want = kv ? e->v_auth[layer][i] : e->k_auth[layer][i];
            const char *name = kv ? "v_scale" : "k_scale";
            if (!(isfinite(use) && use > 0.0f))
                return detected(e, "scale sanity: layer %d %s[%d] is %g at %s (NaN, zero, negative and infinite "
                                   "scales are never valid)", layer, name, i, (double)use, where);
            if (!same_bits(use, want)) {
                if (all_one && !auth_one)
                    return detected(e, "scale sanity: layer %d: 1.0 is in use at %s but the %s scales are "
                                       "k_scale %g, v_scale %g (scales lost on the way to the kernels)",
                                    layer, where, e->scales_from, (double)e->k_auth[layer][0],
                                    (double)e->v_auth[layer][0]);
                return detected(e, "scale sanity: layer %d %s[%d] in use at %s is %g, the %s value is %g (a stale "
                                   "or overwritten scale)", layer, name, i, where, (double)use, e->scales_from,
                                (double)want);
            }
        }
    return KVFP8_OK;
}

/* FNV-1a over a slot's K bytes then V bytes. */
static uint32_t slot_sum(const kvfp8_kv_cache *c, int64_t slot) {
    const size_t n = (size_t)c->num_kv_heads * (size_t)c->head_size * kvfp8_kv_storage_bytes(&c->storage);
    uint32_t h = 2166136261u;
    for (int kv = 0; kv < 2; kv++) {
        const uint8_t *p = (kv ? c->value_cache : c->key_cache) + (size_t)slot * n;
        for (size_t i = 0; i < n; i++)
            h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

static void integrity_record(kvfp8_engine *e, int layer, const int64_t *slots, int n) {
    if (!e->kv_sum[layer])
        return;
    for (int t = 0; t < n; t++)
        if (slots[t] >= 0)
            e->kv_sum[layer][slots[t]] = slot_sum(&e->caches[layer], slots[t]);
}

/* KV integrity: every slot an attention call reads still holds what was written
 * (memory corruption between the write and the read, the analogue of ECC). */
static kvfp8_status integrity_verify(kvfp8_engine *e, int layer, const int64_t *ctx_slots, int n, const char *site) {
    if (!e->kv_sum[layer])
        return KVFP8_OK;
    for (int t = 0; t < n; t++)
        if (e->kv_sum[layer][ctx_slots[t]] != slot_sum(&e->caches[layer], ctx_slots[t]))
            return detected(e, "KV integrity: layer %d slot %lld (token %d of the context) changed after it was "
                               "written, before %s read it (a bit flip in memory?)",
                            layer, (long long)ctx_slots[t], t, site);
    return KVFP8_OK;
}

/* ---- the encoding canary ------------------------------------------------------------ */

/* Multiples of the scale: ordinary values both E4M3 variants hold exactly, and the
 * edges where they differ (240, the E4M3FNUZ maximum; 448, the E4M3FN maximum). */
static const float canary_mult[16] = {1.0f,  -2.0f, 0.5f,   3.0f,  -0.375f, 12.0f, 96.0f, -200.0f,
                                      240.0f, 448.0f, 0.0625f, -7.0f, 1.5f,   20.0f, -0.75f, 64.0f};

static size_t source_width(kvfp8_source s) { return s == KVFP8_SRC_F32 ? 4 : 2; }

static uint32_t source_bits(kvfp8_source src, const void *buf, size_t i) {
    if (src == KVFP8_SRC_F32) {
        uint32_t b;
        memcpy(&b, (const uint8_t *)buf + 4 * i, 4);
        return b;
    }
    uint16_t h;
    memcpy(&h, (const uint8_t *)buf + 2 * i, 2);
    return h;
}

static void put_source(kvfp8_source src, void *buf, size_t i, float x) {
    if (src == KVFP8_SRC_F32) {
        memcpy((uint8_t *)buf + 4 * i, &x, 4);
        return;
    }
    const uint16_t h = src == KVFP8_SRC_F16 ? kvfp8_f32_to_f16(x) : kvfp8_f32_to_bf16(x);
    memcpy((uint8_t *)buf + 2 * i, &h, 2);
}

static void canary_fill(const kvfp8_engine *e, int layer, kvfp8_source src, void *ktok, void *vtok) {
    const kvfp8_kv_cache *c = &e->caches[layer];
    const int D = e->mc.head_size;
    for (int h = 0; h < e->mc.num_kv_heads; h++)
        for (int d = 0; d < D; d++) {
            const int at = c->scale_count == 1 ? 0 : h;
            const float m = canary_mult[(h * D + d) % 16];
            put_source(src, ktok, (size_t)(h * D + d), m * e->k_auth[layer][at]);
            put_source(src, vtok, (size_t)(h * D + d), -m * e->v_auth[layer][at]);
        }
}

/* Reads the canary slot back through the backend's decode (the read path, with the
 * scales the reader uses) and compares with what the reference writer stores and
 * the reference reader returns under the installed scales.  Catches a writer and a
 * reader that disagree on the encoding (E4M3FNUZ vs E4M3FN: every value x2, vLLM
 * #45562) or on the scale. */
static kvfp8_status canary_check(kvfp8_engine *e, int layer, kvfp8_source src, const void *ktok, const void *vtok,
                                 const char *when) {
    kvfp8_kv_cache *c = &e->caches[layer];
    const int KVH = e->mc.num_kv_heads, D = e->mc.head_size;
    const kvfp8_format f = e->storage.fp8.format;
    uint8_t codes[MAX_SCALES * 8];
    float got[MAX_SCALES * 8];
    if ((size_t)KVH * (size_t)D > sizeof codes)
        return KVFP8_OK; /* a head layout too large for the canary buffer: no canary */
    int bad = 0, twice = 0, half = 0, first_h = -1, first_d = -1, first_kv = 0;
    float first_want = 0, first_got = 0;
    e->canary_checks++;
    for (int kv = 0; kv < 2; kv++) {
        const void *tok = kv ? vtok : ktok;
        for (int h = 0; h < KVH; h++)
            for (int d = 0; d < D; d++)
                codes[h * D + d] = (uint8_t)kvfp8_cache_raw(c, kv, CANARY_SLOT, h, d);
        for (int h0 = 0; h0 < KVH; h0 += c->scale_count == 1 ? KVH : 1) {
            const int nh = c->scale_count == 1 ? KVH : 1;
            const float scale = kv ? c->v_scale[c->scale_count == 1 ? 0 : h0] : c->k_scale[c->scale_count == 1 ? 0 : h0];
            kvfp8_backend_query rq = {.op = KVFP8_OP_FP8_DECODE, .storage = e->storage, .fp8 = e->storage.fp8,
                                      .source = src, .read = e->cfg.decode_read, .model_dtype = e->mc.dtype,
                                      .head_size = D, .block_size = e->cfg.block_size,
                                      .num_kv_heads = e->mc.num_kv_heads, .per_head_scales = c->scale_count > 1,
                                      .hash_algo = KVFP8_HASH_SHA256};
            kvfp8_fault_event ev;
            kvfp8_status st = kvfp8_fault_point(KVFP8_SITE_CACHE_READ, &ev);
            if (st == KVFP8_OK)
                st = call_hook(e, KVFP8_SITE_CACHE_READ, &rq);
            if (st == KVFP8_OK)
                st = e->backend.ops->fp8_decode(e->backend.state, f, codes + h0 * D, got + h0 * D, (size_t)(nh * D),
                                                scale);
            if (st != KVFP8_OK)
                return st;
        }
        for (int h = 0; h < KVH; h++)
            for (int d = 0; d < D; d++) {
                const int at = c->scale_count == 1 ? 0 : h;
                const float auth = kv ? e->v_auth[layer][at] : e->k_auth[layer][at];
                const uint8_t code = kvfp8_fp8_encode_scaled_ref(&e->storage.fp8, src,
                                                                 source_bits(src, tok, (size_t)(h * D + d)), auth);
                const float want = kvfp8_fp8_dequant(f, code, auth), have = got[h * D + d];
                if (same_bits(want, have) || (isnan(want) && isnan(have)))
                    continue;
                if (!bad++)
                    first_h = h, first_d = d, first_kv = kv, first_want = want, first_got = have;
                twice += isfinite(have) && want != 0 && have == 2 * want;
                half += isfinite(have) && want != 0 && have == 0.5f * want;
            }
    }
    if (!bad)
        return KVFP8_OK;
    const char *why = 2 * twice >= bad ? "every value x2: E4M3FNUZ bytes read as E4M3FN? (vLLM #45562)"
                      : 2 * half >= bad ? "every value x0.5: E4M3FN bytes read as E4M3FNUZ?"
                                        : "the writer and the reader disagree on the encoding or the scale";
    return detected(e, "encoding canary (%s): layer %d: %d of %d values read back wrong through the decode path, "
                       "e.g. %s head %d dim %d wrote %g, read %g as %s: %s",
                    when, layer, bad, 2 * KVH * D, first_kv ? "V" : "K", first_h, first_d, (double)first_want,
                    (double)first_got, kvfp8_format_name(f), why);
}

/* ---- the cache write ---------------------------------------------------------------- */

/* One backend cache write at its site: n_real request tokens and, with `canary`, one
 * canary token at slots[n_real] (read back after the write).  Where an injected
 * corruption lands: nan, stale-scale and the encoding swaps change what the writer
 * stores (before the integrity record); bitflip changes memory after the write;
 * scale-one resets the scales the reader will use. */
static kvfp8_status write_kv(kvfp8_engine *e, int layer, kvfp8_source src, const void *kin, const void *vin,
                             const int64_t *slots, int n_real, int canary, kvfp8_read_semantics read,
                             const char *when) {
    kvfp8_kv_cache *c = &e->caches[layer];
    const int D = e->mc.head_size;
    kvfp8_backend_query wq = {.op = KVFP8_OP_CACHE_WRITE, .storage = e->storage, .fp8 = e->storage.fp8,
                              .source = src, .read = read, .model_dtype = e->mc.dtype, .head_size = D,
                              .block_size = e->cfg.block_size, .num_kv_heads = e->mc.num_kv_heads,
                              .per_head_scales = c->scale_count > 1, .hash_algo = KVFP8_HASH_SHA256};
    kvfp8_fault_event ev;
    kvfp8_status st = kvfp8_fault_point(KVFP8_SITE_CACHE_WRITE, &ev);
    if (st == KVFP8_OK)
        st = call_hook(e, KVFP8_SITE_CACHE_WRITE, &wq);
    if (st != KVFP8_OK)
        return st;
    char what[200] = "";
    float saved_k[MAX_SCALES], saved_v[MAX_SCALES];
    const int stale = ev.fired && ev.action == KVFP8_FAULT_STALE_SCALE;
    if (stale) { /* the writer holds the previous scales (vLLM #21640: a graph captured an old value) */
        memcpy(saved_k, c->k_scale, sizeof saved_k);
        memcpy(saved_v, c->v_scale, sizeof saved_v);
        kvfp8_fault_corrupt_scales(&ev, c->k_scale, c->v_scale, (size_t)c->scale_count, e->k_prev[layer],
                                   e->v_prev[layer], what, sizeof what);
    }
    st = e->backend.ops->cache_write(e->backend.state, c, src, kin, vin, slots, (size_t)(n_real + canary));
    if (stale) {
        memcpy(c->k_scale, saved_k, sizeof saved_k);
        memcpy(c->v_scale, saved_v, sizeof saved_v);
    }
    if (st != KVFP8_OK)
        return st;
    if (ev.fired && (ev.action == KVFP8_FAULT_FNUZ_AS_FN || ev.action == KVFP8_FAULT_FN_AS_FNUZ))
        kvfp8_fault_corrupt_kv(&ev, c, slots, (size_t)(n_real + canary), what, sizeof what);
    else if (ev.fired && ev.action == KVFP8_FAULT_NAN)
        kvfp8_fault_corrupt_kv(&ev, c, slots, (size_t)n_real, what, sizeof what);
    integrity_record(e, layer, slots, n_real);
    if (ev.fired && ev.action == KVFP8_FAULT_BITFLIP)
        kvfp8_fault_corrupt_kv(&ev, c, slots, (size_t)n_real, what, sizeof what);
    else if (ev.fired && ev.action == KVFP8_FAULT_SCALE_ONE)
        kvfp8_fault_corrupt_scales(&ev, c->k_scale, c->v_scale, (size_t)c->scale_count, e->k_prev[layer],
                                   e->v_prev[layer], what, sizeof what);
    if (ev.fired)
        fault_fired(e, &ev, what);
    if (canary) {
        const size_t tok = (size_t)e->mc.num_kv_heads * (size_t)D * source_width(src);
        st = canary_check(e, layer, src, (const uint8_t *)kin + (size_t)n_real * tok,
                          (const uint8_t *)vin + (size_t)n_real * tok, when);
    }
    return st;
}

/* The startup canary: known values written into the null block of every layer and
 * read back through the decode path, before any request is served. */
static kvfp8_status startup_canary(kvfp8_engine *e) {
    const kvfp8_source src = e->mc.dtype == KVFP8_DTYPE_F32 ? KVFP8_SRC_F32
                             : e->mc.dtype == KVFP8_DTYPE_F16 ? KVFP8_SRC_F16
                                                               : KVFP8_SRC_BF16;
    const size_t tok = (size_t)e->mc.num_kv_heads * (size_t)e->mc.head_size * source_width(src);
    uint8_t *k = malloc(tok), *v = malloc(tok);
    kvfp8_status st = KVFP8_OK;
    if (!k || !v)
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "engine: encoding canary");
    const int64_t slot = CANARY_SLOT;
    for (int l = 0; st == KVFP8_OK && l < e->mc.num_layers; l++) {
        canary_fill(e, l, src, k, v);
        st = write_kv(e, l, src, k, v, &slot, 0, 1, e->cfg.decode_read, "startup");
    }
    free(k), free(v);
    if (st == KVFP8_OK)
        say(e, "Encoding canary: %d layers x %d known values written as %s and read back through the decode path: "
               "as written", e->mc.num_layers, 2 * e->mc.num_kv_heads * e->mc.head_size,
            kvfp8_format_name(e->storage.fp8.format));
    return st;
}

/* ---- attention ------------------------------------------------------------------------ */

static kvfp8_status attend(void *vctx, int layer, const float *q, const float *k, const float *v, int n, float *out) {
    attend_ctx *a = vctx;
    kvfp8_engine *e = a->e;
    kvfp8_kv_cache *c = &e->caches[layer];
    const int KVH = e->mc.num_kv_heads, D = e->mc.head_size, bs = e->cfg.block_size;
    if (e->cfg.observer)
        e->cfg.observer(e->cfg.observer_ctx, layer, q, k, v, n);

    /* the cache write: model-dtype inputs, as vLLM's reshape_and_cache_flash sees them */
    const int canary = (e->cfg.detectors & KVFP8_DETECT_CANARY_WRITES) && e->storage.is_fp8;
    const size_t elems = (size_t)n * KVH * D, tok = (size_t)KVH * D;
    kvfp8_source src = e->mc.dtype == KVFP8_DTYPE_F32 ? KVFP8_SRC_F32
                       : e->mc.dtype == KVFP8_DTYPE_F16 ? KVFP8_SRC_F16
                                                         : KVFP8_SRC_BF16;
    const size_t width = source_width(src);
    uint8_t *kbuf = malloc(width * (elems + tok)), *vbuf = malloc(width * (elems + tok));
    int64_t *slots = malloc(sizeof(int64_t) * (size_t)(a->seq_len + 1));
    int *table = malloc(sizeof(int) * (a->n_blocks ? a->n_blocks : 1));
    kvfp8_status st = KVFP8_OK;
    if (!kbuf || !vbuf || !slots || !table) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "engine: cache write staging");
        goto done;
    }
    /* slots[0..seq_len): every context position's slot; this chunk's are the last n */
    for (int pos = 0; pos < a->seq_len; pos++)
        slots[pos] = (int64_t)a->blocks[pos / bs] * bs + pos % bs;
    int64_t *wslots = slots + (a->seq_len - n);
    for (size_t i = 0; i < elems; i++) {
        put_source(src, kbuf, i, k[i]);
        put_source(src, vbuf, i, v[i]);
    }
    if (canary) { /* one more token at the canary slot: wslots[n] is slots[seq_len], past the context */
        wslots[n] = CANARY_SLOT;
        canary_fill(e, layer, src, kbuf + elems * width, vbuf + elems * width);
    }
    st = write_kv(e, layer, src, kbuf, vbuf, wslots, n, canary, a->read, a->site);
    if (st != KVFP8_OK)
        goto done;
    if (e->storage.is_fp8) /* saturation monitor: elements clipped, |x| / scale > max */
        for (int t = 0; t < n; t++)
            for (int h = 0; h < KVH; h++)
                for (int d = 0; d < D; d++) {
                    const size_t i = ((size_t)t * KVH + h) * D + d;
                    const int at = c->scale_count == 1 ? 0 : h;
                    const uint64_t clipped = (fabsf(k[i] / e->k_auth[layer][at]) > e->storage.fp8.max_value) +
                                             (fabsf(v[i] / e->v_auth[layer][at]) > e->storage.fp8.max_value);
                    e->fp8_saturated += clipped;
                    e->req_saturated += clipped;
                    e->fp8_written += 2;
                    e->req_written += 2;
                }

    int qsl[2] = {0, n};
    int lens[1] = {a->seq_len};
    for (size_t b = 0; b < a->n_blocks; b++)
        table[b] = (int)a->blocks[b];
    kvfp8_attention_params p = {1, qsl, lens, table, (int)a->n_blocks, e->mc.num_q_heads,
                                1.0 / sqrt((double)D), 0, 0, a->read, e->mc.dtype};
    kvfp8_backend_query aq = {.op = KVFP8_OP_PAGED_ATTENTION, .storage = e->storage, .fp8 = e->storage.fp8,
                              .source = src, .read = a->read, .model_dtype = e->mc.dtype, .head_size = D,
                              .block_size = bs, .chunked_prefill = strcmp(a->site, KVFP8_SITE_PREFIX_PREFILL) == 0,
                              .max_query_len = n, .num_q_heads = e->mc.num_q_heads, .num_kv_heads = KVH,
                              .per_head_scales = c->scale_count > 1, .hash_algo = KVFP8_HASH_SHA256};
    kvfp8_fault_event ev;
    if ((st = kvfp8_fault_point(a->site, &ev)) != KVFP8_OK || (st = call_hook(e, a->site, &aq)) != KVFP8_OK)
        goto done;
    if (ev.fired) { /* memory or the reader's scales, just before the kernel reads them */
        char what[200] = "";
        if (ev.action == KVFP8_FAULT_BITFLIP || ev.action == KVFP8_FAULT_NAN)
            kvfp8_fault_corrupt_kv(&ev, c, slots, (size_t)a->seq_len, what, sizeof what);
        else
            kvfp8_fault_corrupt_scales(&ev, c->k_scale, c->v_scale, (size_t)c->scale_count, e->k_prev[layer],
                                       e->v_prev[layer], what, sizeof what);
        fault_fired(e, &ev, what);
    }
    if ((st = check_scales(e, layer, a->site)) != KVFP8_OK ||
        (st = integrity_verify(e, layer, slots, a->seq_len, a->site)) != KVFP8_OK)
        goto done;
    st = e->backend.ops->paged_attention(e->backend.state, &p, c, q, k, v, out);
    if (st == KVFP8_OK && (e->cfg.detectors & KVFP8_DETECT_NONFINITE))
        for (size_t i = 0; i < (size_t)n * e->mc.num_q_heads * D; i++)
            if (!isfinite(out[i])) {
                st = detected(e, "non-finite attention output: layer %d, %s, request %s, token %zu head %zu: the "
                                 "KV cache or its scales hold NaN or Inf",
                              layer, a->site, e->req_id ? e->req_id : "?", i / ((size_t)e->mc.num_q_heads * D),
                              i / (size_t)D % (size_t)e->mc.num_q_heads);
                break;
            }
done:
    free(kbuf), free(vbuf), free(slots), free(table);
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

static kvfp8_status calculate_scales(kvfp8_engine *e, float *k_out, float *v_out) {
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
        k_out[l] = ks;
        v_out[l] = vs;
        say(e, "Calculated KV scales for layer %d from a warmup batch of %d random tokens: k_scale=%.6g v_scale=%.6g",
            l, e->cfg.warmup_tokens, (double)ks, (double)vs);
    }
    return KVFP8_OK;
}

/* Installs the FP8 scales the engine means to use (loaded, calculated, or the 1.0
 * default) through the scales/load site, then checks that the caches hold them. */
static kvfp8_status install_scales(kvfp8_engine *e) {
    const kvfp8_engine_config *cfg = &e->cfg;
    const int L = e->mc.num_layers;
    int count = 1;
    kvfp8_status st = KVFP8_OK;
    if (cfg->calculate_kv_scales) {
        float ks[MAX_LAYERS], vs[MAX_LAYERS];
        if ((st = calculate_scales(e, ks, vs)) != KVFP8_OK)
            return st;
        for (int l = 0; l < L; l++)
            e->k_auth[l][0] = ks[l], e->v_auth[l][0] = vs[l];
        e->scales_provided = 1;
        e->scales_from = "calculated";
    } else if (cfg->k_scales && cfg->v_scales) {
        count = cfg->scale_count;
        if (count != 1 && count != e->mc.num_kv_heads)
            return kvfp8_fail(KVFP8_ERR_INVALID, "scales for layer 0: count %d is neither 1 (per tensor) nor "
                              "num_kv_heads=%d", count, e->mc.num_kv_heads);
        for (int l = 0; l < L; l++)
            for (int i = 0; i < count; i++)
                e->k_auth[l][i] = cfg->k_scales[(size_t)l * count + i],
                e->v_auth[l][i] = cfg->v_scales[(size_t)l * count + i];
        e->scales_provided = 1;
        e->scales_from = "loaded";
    } else {
        for (int l = 0; l < L; l++)
            e->k_auth[l][0] = e->v_auth[l][0] = 1.0f;
        e->scales_from = "default";
    }
    /* what the caches held before: a stale copy's values */
    for (int l = 0; l < L; l++) {
        memcpy(e->k_prev[l], e->caches[l].k_scale, sizeof e->k_prev[l]);
        memcpy(e->v_prev[l], e->caches[l].v_scale, sizeof e->v_prev[l]);
    }
    float *k = malloc(sizeof(float) * (size_t)L * (size_t)count), *v = malloc(sizeof(float) * (size_t)L * (size_t)count);
    float *pk = malloc(sizeof(float) * (size_t)L * (size_t)count), *pv = malloc(sizeof(float) * (size_t)L * (size_t)count);
    if (!k || !v || !pk || !pv) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "engine: scales");
        goto out;
    }
    for (int l = 0; l < L; l++)
        for (int i = 0; i < count; i++) {
            k[l * count + i] = e->k_auth[l][i], v[l * count + i] = e->v_auth[l][i];
            pk[l * count + i] = e->k_prev[l][i], pv[l * count + i] = e->v_prev[l][i];
        }
    kvfp8_fault_event ev;
    if ((st = kvfp8_fault_point(KVFP8_SITE_SCALES_LOAD, &ev)) != KVFP8_OK)
        goto out;
    if (ev.fired) {
        char what[200] = "";
        kvfp8_fault_corrupt_scales(&ev, k, v, (size_t)L * (size_t)count, pk, pv, what, sizeof what);
        fault_fired(e, &ev, what);
    }
    for (int l = 0; l < L; l++)
        if ((st = kvfp8_kv_cache_set_scales(&e->caches[l], k + (size_t)l * count, v + (size_t)l * count, count)) !=
            KVFP8_OK) {
            st = kvfp8_fail(st, "scales for layer %d: %s", l, kvfp8_last_error());
            goto out;
        }
    if (cfg->calculate_kv_scales) {
        /* calculate_scales logged the values */
    } else if (e->scales_provided) {
        say(e, "Loaded KV cache scales (k_scale, v_scale) for %d layers, %s, from %s", L,
            count == 1 ? "per tensor" : "per head", cfg->scales_source ? cfg->scales_source : "the caller");
    } else {
        say(e, "WARNING: Using KV cache scaling factor 1.0 for %s. If this is unintended, verify that k/v_scale "
               "scaling factors are properly set in the checkpoint.",
            e->storage.fp8.format == KVFP8_E5M2 || e->storage.fp8.format == KVFP8_E5M2FNUZ ? "fp8_e5m2" : "fp8_e4m3");
    }
    for (int l = 0; st == KVFP8_OK && l < L; l++)
        st = check_scales(e, l, "startup");
out:
    free(k), free(v), free(pk), free(pv);
    return st;
}

kvfp8_status kvfp8_engine_create(const kvfp8_engine_config *cfg, const kvfp8_model *model, kvfp8_engine **out) {
    *out = NULL;
    kvfp8_status st = kvfp8_faults_arm_from_env();
    kvfp8_fault_event ev;
    if (st != KVFP8_OK || (st = kvfp8_fault_point(KVFP8_SITE_ENGINE_STARTUP, &ev)) != KVFP8_OK)
        return st;
    kvfp8_engine *e = calloc(1, sizeof *e);
    if (!e)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "engine");
    e->cfg = *cfg;
    e->model = model;
    e->mc = *kvfp8_model_get_config(model);
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
    if (cfg->detectors & KVFP8_DETECT_INTEGRITY)
        for (int l = 0; l < e->mc.num_layers; l++)
            if (!(e->kv_sum[l] = calloc((size_t)cfg->num_blocks * (size_t)cfg->block_size, sizeof(uint32_t)))) {
                st = kvfp8_fail(KVFP8_ERR_NOMEM, "engine: KV integrity checksums");
                goto fail;
            }
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
    if (kvfp8_faults_armed_count()) {
        char plan[512];
        kvfp8_faults_describe(plan, sizeof plan);
        say(e, "WARNING: fault injection armed: %s", plan);
    }

    if (is_fp8 && (st = install_scales(e)) != KVFP8_OK)
        goto fail;
    if (is_fp8 && (cfg->detectors & KVFP8_DETECT_CANARY) && (st = startup_canary(e)) != KVFP8_OK)
        goto fail;
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
    for (int l = 0; l < MAX_LAYERS; l++) {
        kvfp8_kv_cache_free(&e->caches[l]);
        free(e->kv_sum[l]);
    }
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

/* The hash/compute site: bitflip acts on one of the hashes just computed. */
static kvfp8_status hash_site(kvfp8_engine *e, kvfp8_block_hash *hashes, size_t n) {
    kvfp8_fault_event ev;
    kvfp8_status st = kvfp8_fault_point(KVFP8_SITE_HASH_COMPUTE, &ev);
    if (st == KVFP8_OK && ev.fired) {
        char what[200] = "";
        kvfp8_fault_corrupt_bytes(&ev, hashes, n * sizeof *hashes, what, sizeof what);
        fault_fired(e, &ev, what);
    }
    return st;
}

static kvfp8_status alloc_slots(kvfp8_engine *e, const char *req_id, uint32_t n) {
    kvfp8_fault_event ev;
    kvfp8_status st = kvfp8_fault_point(KVFP8_SITE_POOL_ALLOC, &ev);
    return st != KVFP8_OK ? st : kvfp8_pm_allocate_slots(e->pm, req_id, n, 0);
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
    e->req_id = req_id;
    e->req_saturated = e->req_written = 0;
    if ((st = kvfp8_hash_chain_init(&chain, e->cfg.hash_algo, (size_t)bs, &e->none_hash, NULL)) != KVFP8_OK ||
        (st = kvfp8_hash_chain_update(&chain, tokens, (size_t)n_prompt, hashes, (size_t)(cap / bs + 1), &n_hashes)) !=
            KVFP8_OK ||
        (st = hash_site(e, hashes, n_hashes)) != KVFP8_OK)
        goto done;
    if ((st = kvfp8_pm_add_request(e->pm, req_id, (uint32_t)n_prompt, hashes, n_hashes)) != KVFP8_OK)
        goto done;
    added = 1;
    uint32_t hit = 0;
    if ((st = kvfp8_pm_get_computed_blocks(e->pm, req_id, &hit)) != KVFP8_OK)
        goto done;
    if ((st = alloc_slots(e, req_id, (uint32_t)n_prompt - hit)) != KVFP8_OK)
        goto done;
    if (e->cfg.enable_prefix_caching) {
        e->queries += (uint64_t)n_prompt;
        e->hits += hit;
    }
    res->prompt_tokens = (uint32_t)n_prompt;
    res->hit_tokens = hit;
    res->computed_tokens = (uint32_t)n_prompt - hit;
    res->first_site = hit > 0 ? KVFP8_SITE_PREFIX_PREFILL : KVFP8_SITE_PREFILL;
    /* chunked prefill: every chunk after the first reads the earlier ones from the
     * cache, on the same kernel path as a prefix hit */
    const int chunk = e->cfg.max_chunk_tokens > 0 ? e->cfg.max_chunk_tokens : n_prompt;
    for (int pos = (int)hit; pos < n_prompt;) {
        const int count = n_prompt - pos < chunk ? n_prompt - pos : chunk;
        if ((st = run_chunk(e, req_id, tokens, pos, count, pos > 0 ? KVFP8_SITE_PREFIX_PREFILL : KVFP8_SITE_PREFILL,
                            pos > 0 ? e->cfg.prefix_prefill_read : e->cfg.prefill_read, logits)) != KVFP8_OK)
            goto done;
        pos += count;
    }
    int len = n_prompt;
    res->output[res->n_output++] = kvfp8_argmax(logits, e->mc.vocab_size);
    res->ttft_ms = now_ms() - t0;
    while (res->n_output < max_tokens) {
        tokens[len++] = res->output[res->n_output - 1];
        size_t n_new = 0;
        if ((st = kvfp8_hash_chain_update(&chain, tokens, (size_t)len, hashes, (size_t)(cap / bs + 1), &n_new)) != KVFP8_OK)
            goto done;
        if (n_new && (st = hash_site(e, hashes, n_new)) != KVFP8_OK)
            goto done;
        if ((st = kvfp8_pm_append_tokens(e->pm, req_id, 1, hashes, n_new)) != KVFP8_OK)
            goto done;
        if ((st = alloc_slots(e, req_id, 1)) != KVFP8_OK)
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
        char toks[256 * 8] = "";
        size_t used = 0;
        for (int t = 0; t < res->n_output && used < sizeof toks - 24; t++)
            used += (size_t)snprintf(toks + used, sizeof toks - used, "%s%lld", t ? " " : "", (long long)res->output[t]);
        say(e, "Request %s output tokens: %s", req_id, toks);
        if ((e->cfg.detectors & KVFP8_DETECT_SATURATION) && e->req_written &&
            (double)e->req_saturated > e->cfg.saturation_warn * (double)e->req_written) {
            e->saturation_warnings++;
            say(e, "WARNING: FP8 KV saturation: %.2f%% of the K/V elements written for request %s were clipped "
                   "(|x| / scale > %g), above %.2f%%: the scales are too small for this traffic (1.0 in use, or "
                   "calibrated on other data?)",
                100.0 * (double)e->req_saturated / (double)e->req_written, req_id,
                (double)e->storage.fp8.max_value, 100.0 * e->cfg.saturation_warn);
        }
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
    m->corruption_detected = e->detections;
    m->saturation_warnings = e->saturation_warnings;
    m->canary_checks = e->canary_checks;
}

void kvfp8_engine_scales(const kvfp8_engine *e, int layer, const float **k, const float **v, int *n) {
    *k = e->caches[layer].k_scale;
    *v = e->caches[layer].v_scale;
    *n = e->caches[layer].scale_count;
}

const kvfp8_kv_storage *kvfp8_engine_storage(const kvfp8_engine *e) { return &e->storage; }
