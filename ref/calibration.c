/* Calibration modes, prompt sets and the quality comparison (include/kvfp8/calibration.h). */
#include "kvfp8/calibration.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/attention.h"
#include "kvfp8/scales.h"

static const char *const mode_names[KVFP8_CALIB_MODE_COUNT] = {"none", "random", "dataset"};
static const char *const observer_names[KVFP8_OBSERVER_COUNT] = {"minmax", "memoryless_minmax", "static_minmax"};

const char *kvfp8_calib_mode_name(kvfp8_calib_mode m) {
    return (unsigned)m < KVFP8_CALIB_MODE_COUNT ? mode_names[m] : "?";
}

kvfp8_status kvfp8_calib_mode_parse(const char *name, kvfp8_calib_mode *out) {
    for (unsigned i = 0; name && i < KVFP8_CALIB_MODE_COUNT; i++)
        if (!strcmp(name, mode_names[i])) {
            *out = (kvfp8_calib_mode)i;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID, "unknown calibration mode '%s' (none, random, dataset)", name ? name : "(null)");
}

const char *kvfp8_observer_name(kvfp8_observer o) {
    return (unsigned)o < KVFP8_OBSERVER_COUNT ? observer_names[o] : "?";
}

kvfp8_status kvfp8_observer_parse(const char *name, kvfp8_observer *out) {
    for (unsigned i = 0; name && i < KVFP8_OBSERVER_COUNT; i++)
        if (!strcmp(name, observer_names[i])) {
            *out = (kvfp8_observer)i;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID, "unknown observer '%s' (minmax, memoryless_minmax, static_minmax)",
                      name ? name : "(null)");
}

/* In-domain text: English prose and technical sentences (the tiny model's
 * "domain" is printable ASCII).  Calibration and evaluation sets do not overlap. */
static const char *const calibration_texts[] = {
    "The reference implementation defines what every optimized kernel must compute, bit for bit where it can.",
    "A block of sixteen tokens is hashed together with its parent block, so equal prefixes share cached blocks.",
    "Quantizing the key and value cache to eight bits halves its memory and doubles the batch that fits.",
    "When the scale is too small, large activations saturate at the largest finite value of the format.",
    "Operators verify the deployment by sending the same request twice and comparing the time to first token.",
    "The scheduler allocates blocks from the head of the free queue and returns them to its tail when done.",
    "Calibration runs a representative dataset through the model and records the largest absolute activation.",
    "Each layer keeps its own scale for keys and another for values, stored next to the model weights.",
};

static const char *const evaluation_texts[] = {
    "Prefix caching lets a chatbot with a long system prompt skip most of the prefill work on every turn.",
    "The kernel reads each cached byte once, converts it to half precision, and multiplies by the scale.",
    "A conformance suite reports unsupported features separately from failures, and never counts them as passes.",
    "Retrieval augmented generation places the same documents in front of many different user questions.",
};

static const char *const seed_prompt =
    "You are a precise technical assistant. Answer the following question concisely and accurately.\n\n"
    "Question: What is the boiling point of water at sea level?";

size_t kvfp8_calibration_set(const char *const **texts) {
    *texts = calibration_texts;
    return sizeof calibration_texts / sizeof calibration_texts[0];
}

size_t kvfp8_evaluation_set(const char *const **texts) {
    *texts = evaluation_texts;
    return sizeof evaluation_texts / sizeof evaluation_texts[0];
}

const char *kvfp8_seed_prompt(void) { return seed_prompt; }

void kvfp8_calib_default_options(kvfp8_calib_options *o) {
    memset(o, 0, sizeof *o);
    o->mode = KVFP8_CALIB_DATASET;
    o->observer = KVFP8_OBSERVER_STATIC;
    o->scale_dtype = KVFP8_DTYPE_BF16;
    o->warmup_tokens = 256;
    o->warmup_seed = 1;
}

/* amax / 448 rounded to the scale dtype, zero -> eps: the scales module's rule. */
static float scale_from_amax(float amax, kvfp8_model_dtype scale_dtype) {
    const kvfp8_st_dtype st = scale_dtype == KVFP8_DTYPE_BF16  ? KVFP8_ST_BF16
                              : scale_dtype == KVFP8_DTYPE_F16 ? KVFP8_ST_F16
                                                               : KVFP8_ST_F32;
    float s = 1.0f;
    (void)kvfp8_scales_round_amax(amax, st, &s, NULL); /* amax is finite and >= 0 here */
    return s;
}

/* ---- dataset calibration: observers over batches ------------------------------- */

typedef struct {
    int layers, heads, head_size, per_head;
    kvfp8_observer observer;
    int batches;
    float *batch_k, *batch_v; /* this batch's amax [layers][heads] */
    float *k, *v;             /* observed value */
} dataset_obs;

static void observe_batch(void *ctx, int layer, const float *q, const float *k, const float *v, int n) {
    (void)q;
    dataset_obs *o = ctx;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < o->heads; h++)
            for (int d = 0; d < o->head_size; d++) {
                const size_t i = ((size_t)t * o->heads + h) * o->head_size + d;
                const size_t at = (size_t)layer * o->heads + (o->per_head ? h : 0);
                if (fabsf(k[i]) > o->batch_k[at])
                    o->batch_k[at] = fabsf(k[i]);
                if (fabsf(v[i]) > o->batch_v[at])
                    o->batch_v[at] = fabsf(v[i]);
            }
}

/* Folds one batch's amax into the observed value, per observer. */
static void end_batch(dataset_obs *o) {
    const size_t n = (size_t)o->layers * o->heads;
    for (size_t i = 0; i < n; i++) {
        float *cur[2] = {&o->k[i], &o->v[i]};
        const float got[2] = {o->batch_k[i], o->batch_v[i]};
        for (int w = 0; w < 2; w++) {
            if (o->batches == 0 || o->observer == KVFP8_OBSERVER_MEMORYLESS)
                *cur[w] = got[w];
            else if (o->observer == KVFP8_OBSERVER_STATIC)
                *cur[w] = fmaxf(*cur[w], got[w]);
            else /* moving average with constant 0.01 */
                *cur[w] = *cur[w] + 0.01f * (got[w] - *cur[w]);
        }
        o->batch_k[i] = o->batch_v[i] = 0;
    }
    o->batches++;
}

static kvfp8_status calibrate_dataset(const kvfp8_model *m, const kvfp8_calib_options *opt, float *k, float *v,
                                      int *count) {
    const kvfp8_tiny_config *mc = kvfp8_model_get_config(m);
    dataset_obs o = {mc->num_layers, mc->num_kv_heads, mc->head_size, opt->per_head, opt->observer, 0, NULL, NULL, NULL, NULL};
    const size_t n = (size_t)mc->num_layers * mc->num_kv_heads;
    o.batch_k = calloc(n, sizeof(float));
    o.batch_v = calloc(n, sizeof(float));
    o.k = calloc(n, sizeof(float));
    o.v = calloc(n, sizeof(float));
    kvfp8_status st = KVFP8_OK;
    kvfp8_engine *e = NULL;
    if (!o.batch_k || !o.batch_v || !o.k || !o.v) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "calibration");
        goto done;
    }
    kvfp8_engine_config c;
    kvfp8_engine_default_config(&c);
    c.observer = observe_batch;
    c.observer_ctx = &o;
    if ((st = kvfp8_engine_create(&c, m, &e)) != KVFP8_OK)
        goto done;
    const char *const *texts;
    const size_t nt = kvfp8_calibration_set(&texts);
    for (size_t i = 0; i < nt; i++) { /* one prompt per batch */
        int64_t tokens[1024];
        const int len = kvfp8_tokenize(m, texts[i], tokens, 1024);
        kvfp8_request_result r;
        char id[32];
        snprintf(id, sizeof id, "calib-%zu", i);
        if ((st = kvfp8_engine_generate(e, id, tokens, len, 1, &r)) != KVFP8_OK)
            goto done;
        end_batch(&o);
    }
    const int heads = opt->per_head ? mc->num_kv_heads : 1;
    for (int l = 0; l < mc->num_layers; l++)
        for (int h = 0; h < heads; h++) {
            k[l * heads + h] = scale_from_amax(o.k[(size_t)l * mc->num_kv_heads + h], opt->scale_dtype);
            v[l * heads + h] = scale_from_amax(o.v[(size_t)l * mc->num_kv_heads + h], opt->scale_dtype);
        }
    *count = heads;
done:
    kvfp8_engine_destroy(e);
    free(o.batch_k), free(o.batch_v), free(o.k), free(o.v);
    return st;
}

kvfp8_status kvfp8_calibrate(const kvfp8_model *m, const kvfp8_calib_options *o, float *k, float *v, int *count) {
    const kvfp8_tiny_config *mc = kvfp8_model_get_config(m);
    switch (o->mode) {
    case KVFP8_CALIB_NONE:
        for (int l = 0; l < mc->num_layers; l++)
            k[l] = v[l] = 1.0f;
        *count = 1;
        return KVFP8_OK;
    case KVFP8_CALIB_RANDOM: {
        /* exactly what the engine does with calculate_kv_scales */
        kvfp8_engine_config c;
        kvfp8_engine_default_config(&c);
        c.kv_cache_dtype = "fp8";
        c.calculate_kv_scales = 1;
        c.warmup_tokens = o->warmup_tokens;
        c.warmup_seed = o->warmup_seed;
        kvfp8_engine *e;
        kvfp8_status st = kvfp8_engine_create(&c, m, &e);
        if (st != KVFP8_OK)
            return st;
        for (int l = 0; l < mc->num_layers; l++) {
            const float *ks, *vs;
            int n;
            kvfp8_engine_scales(e, l, &ks, &vs, &n);
            k[l] = ks[0];
            v[l] = vs[0];
        }
        *count = 1;
        kvfp8_engine_destroy(e);
        return KVFP8_OK;
    }
    case KVFP8_CALIB_DATASET:
        return calibrate_dataset(m, o, k, v, count);
    }
    return kvfp8_fail(KVFP8_ERR_INVALID, "unknown calibration mode %d", (int)o->mode);
}

/* ---- quality ---------------------------------------------------------------------- */

typedef struct {
    int layers, q_heads, kv_heads, head_size, n;
    float *q[64], *k[64], *v[64]; /* per layer, the prompt's chunk */
} capture;

static void capture_qkv(void *ctx, int layer, const float *q, const float *k, const float *v, int n) {
    capture *c = ctx;
    if (c->q[layer]) /* only the prefill chunk */
        return;
    c->n = n;
    const size_t qn = (size_t)n * c->q_heads * c->head_size, kn = (size_t)n * c->kv_heads * c->head_size;
    c->q[layer] = malloc(qn * sizeof(float));
    c->k[layer] = malloc(kn * sizeof(float));
    c->v[layer] = malloc(kn * sizeof(float));
    if (c->q[layer] && c->k[layer] && c->v[layer]) {
        memcpy(c->q[layer], q, qn * sizeof(float));
        memcpy(c->k[layer], k, kn * sizeof(float));
        memcpy(c->v[layer], v, kn * sizeof(float));
    }
}

static void capture_free(capture *c) {
    for (int l = 0; l < 64; l++)
        free(c->q[l]), free(c->k[l]), free(c->v[l]);
}

/* One layer's attention over a cache of the given storage, model-dtype reads. */
static kvfp8_status layer_attention(const capture *cap, int layer, const kvfp8_kv_storage *st, const float *ks,
                                    const float *vs, int count, double *out, uint64_t *saturated) {
    const int bs = 16, n = cap->n, blocks = (n + bs - 1) / bs;
    kvfp8_kv_cache c;
    kvfp8_status s = kvfp8_kv_cache_init(&c, st, blocks, bs, cap->kv_heads, cap->head_size);
    if (s != KVFP8_OK)
        return s;
    int64_t *slots = malloc(sizeof(int64_t) * (size_t)n);
    int *table = malloc(sizeof(int) * (size_t)blocks);
    if (!slots || !table) {
        free(slots), free(table);
        kvfp8_kv_cache_free(&c);
        return kvfp8_fail(KVFP8_ERR_NOMEM, "quality");
    }
    for (int t = 0; t < n; t++)
        slots[t] = t;
    for (int b = 0; b < blocks; b++)
        table[b] = b;
    if (st->is_fp8 && (s = kvfp8_kv_cache_set_scales(&c, ks, vs, count)) != KVFP8_OK)
        goto done;
    if ((s = kvfp8_cache_write(&c, KVFP8_SRC_F32, cap->k[layer], cap->v[layer], slots, (size_t)n)) != KVFP8_OK)
        goto done;
    if (st->is_fp8) /* clipped: |x| / scale beyond the largest finite value */
        for (size_t i = 0; i < (size_t)n * cap->kv_heads * cap->head_size; i++) {
            const int h = (int)(i / (size_t)cap->head_size % (size_t)cap->kv_heads), at = count == 1 ? 0 : h;
            *saturated += fabsf(cap->k[layer][i] / ks[at]) > st->fp8.max_value;
            *saturated += fabsf(cap->v[layer][i] / vs[at]) > st->fp8.max_value;
        }
    int qsl[2] = {0, n}, lens[1] = {n};
    kvfp8_attention_params p = {1, qsl, lens, table, blocks, cap->q_heads, 1.0 / sqrt((double)cap->head_size), 0, 0,
                                KVFP8_READ_MODEL_DTYPE, KVFP8_DTYPE_BF16};
    s = kvfp8_paged_attention_ref(&p, &c, cap->q[layer], NULL, NULL, out);
done:
    free(slots), free(table);
    kvfp8_kv_cache_free(&c);
    return s;
}

kvfp8_status kvfp8_quality_measure(const kvfp8_model *m, const char *const *texts, size_t n_texts, const float *k,
                                   const float *v, int count, int max_tokens, kvfp8_quality *q) {
    memset(q, 0, sizeof *q);
    const kvfp8_tiny_config *mc = kvfp8_model_get_config(m);
    kvfp8_kv_storage bf16 = {0, KVFP8_DTYPE_BF16, {0}}, fp8 = {1, KVFP8_DTYPE_BF16, {0}};
    kvfp8_status st = kvfp8_fp8_rules_get(KVFP8_E4M3FN, KVFP8_SAT, KVFP8_PROFILE_NVIDIA, &fp8.fp8);
    if (st != KVFP8_OK)
        return st;
    double err_sum = 0;
    int err_n = 0, agree = 0, total = 0;
    uint64_t saturated = 0, written = 0;
    for (size_t i = 0; i < n_texts; i++) {
        int64_t tokens[1024];
        const int len = kvfp8_tokenize(m, texts[i], tokens, 1024);
        if (len < 0)
            return kvfp8_fail(KVFP8_ERR_INVALID, "quality: prompt %zu is too long", i);
        capture cap;
        memset(&cap, 0, sizeof cap);
        cap.layers = mc->num_layers, cap.q_heads = mc->num_q_heads, cap.kv_heads = mc->num_kv_heads;
        cap.head_size = mc->head_size;
        kvfp8_engine_config c;
        kvfp8_engine_default_config(&c);
        c.observer = capture_qkv;
        c.observer_ctx = &cap;
        kvfp8_engine *e = NULL, *ef = NULL;
        kvfp8_request_result rb, rf;
        double *ob = NULL, *of = NULL;
        if ((st = kvfp8_engine_create(&c, m, &e)) != KVFP8_OK ||
            (st = kvfp8_engine_generate(e, "bf16", tokens, len, max_tokens, &rb)) != KVFP8_OK)
            goto next;
        const size_t on = (size_t)cap.n * cap.q_heads * cap.head_size;
        ob = malloc(on * sizeof(double));
        of = malloc(on * sizeof(double));
        if (!ob || !of) {
            st = kvfp8_fail(KVFP8_ERR_NOMEM, "quality");
            goto next;
        }
        for (int l = 0; l < mc->num_layers; l++) {
            if ((st = layer_attention(&cap, l, &bf16, NULL, NULL, 1, ob, &saturated)) != KVFP8_OK ||
                (st = layer_attention(&cap, l, &fp8, k + (size_t)l * count, v + (size_t)l * count, count, of,
                                      &saturated)) != KVFP8_OK)
                goto next;
            written += 2 * (uint64_t)cap.n * cap.kv_heads * cap.head_size;
            double num = 0, den = 0;
            for (size_t j = 0; j < on; j++) {
                num += (of[j] - ob[j]) * (of[j] - ob[j]);
                den += ob[j] * ob[j];
            }
            err_sum += sqrt(num / (den > 0 ? den : 1));
            err_n++;
        }
        /* output agreement: the FP8 engine with these scales, prefix caching off */
        c.observer = NULL;
        c.kv_cache_dtype = "fp8";
        c.k_scales = k;
        c.v_scales = v;
        c.scale_count = count;
        if ((st = kvfp8_engine_create(&c, m, &ef)) != KVFP8_OK ||
            (st = kvfp8_engine_generate(ef, "fp8", tokens, len, max_tokens, &rf)) != KVFP8_OK)
            goto next;
        for (int t = 0; t < rb.n_output && t < rf.n_output; t++)
            agree += rb.output[t] == rf.output[t];
        total += rb.n_output;
    next:
        kvfp8_engine_destroy(e);
        kvfp8_engine_destroy(ef);
        free(ob), free(of);
        capture_free(&cap);
        if (st != KVFP8_OK)
            return st;
    }
    q->prompts = (int)n_texts;
    q->attention_error = err_n ? err_sum / err_n : 0;
    q->saturation_rate = written ? (double)saturated / (double)written : 0;
    q->output_agreement = total ? (double)agree / total : 0;
    return KVFP8_OK;
}
