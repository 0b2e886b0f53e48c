/* The tiny transformer (see include/kvfp8/model.h).
 *
 * Arithmetic in float32 with every activation rounded to the model dtype after each
 * operation, as a bf16 PyTorch model does; weights are stored rounded too.  The
 * weights come from a xorshift stream, so a seed names a model exactly. */
#include "kvfp8/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct kvfp8_model {
    kvfp8_tiny_config cfg;
    float *embed;   /* [vocab][hidden] */
    float *lm_head; /* [vocab][hidden] */
    float *final_norm;
    struct layer {
        float *attn_norm, *wq, *wk, *wv, *wo; /* w*: [out][in] */
        float *mlp_norm, *w_gate, *w_up, *w_down;
    } *layers;
};

void kvfp8_model_default_config(kvfp8_tiny_config *cfg) {
    cfg->vocab_size = 512;
    cfg->hidden_size = 256;
    cfg->num_layers = 2;
    cfg->num_q_heads = 4;
    cfg->num_kv_heads = 2;
    cfg->head_size = 64;
    cfg->intermediate_size = 512;
    cfg->in_domain_tokens = 128;
    cfg->rope_theta = 10000.0f;
    cfg->rms_eps = 1e-5f;
    cfg->kv_magnitude = 0.002f;
    cfg->outlier_gain = 60.0f;
    cfg->domain_route = 1.0f;
    cfg->domain_square = 0.12f;
    cfg->dtype = KVFP8_DTYPE_BF16;
    cfg->seed = 20250212; /* the day vLLM #13147 was opened */
}

void kvfp8_model_small_config(kvfp8_tiny_config *cfg) {
    kvfp8_model_default_config(cfg);
    cfg->vocab_size = 128;
    cfg->hidden_size = 64;
    cfg->head_size = 16;
    cfg->intermediate_size = 128;
    cfg->in_domain_tokens = 32;
}

static uint64_t next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [-a, a], rounded to the model dtype. */
static float draw(uint64_t *s, float a, kvfp8_model_dtype d) {
    const float u = (float)(next(s) >> 40) / (float)(1 << 24);
    return kvfp8_round_to_model_dtype(d, a * (2.0f * u - 1.0f));
}

static float *matrix(uint64_t *s, int rows, int cols, float a, kvfp8_model_dtype d) {
    float *w = malloc(sizeof(float) * (size_t)rows * (size_t)cols);
    if (w)
        for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++)
            w[i] = draw(s, a, d);
    return w;
}

static float *unit_vector(uint64_t *s, int n) {
    float *v = matrix(s, 1, n, 1.0f, KVFP8_DTYPE_F32);
    if (!v)
        return NULL;
    double norm = 0;
    for (int i = 0; i < n; i++)
        norm += (double)v[i] * v[i];
    for (int i = 0; i < n; i++)
        v[i] = (float)(v[i] / sqrt(norm));
    return v;
}

static float *ones(int n) {
    float *v = malloc(sizeof(float) * (size_t)n);
    if (v)
        for (int i = 0; i < n; i++)
            v[i] = 1.0f;
    return v;
}

void kvfp8_model_destroy(kvfp8_model *m) {
    if (!m)
        return;
    for (int l = 0; m->layers && l < m->cfg.num_layers; l++) {
        struct layer *L = &m->layers[l];
        free(L->attn_norm), free(L->wq), free(L->wk), free(L->wv), free(L->wo);
        free(L->mlp_norm), free(L->w_gate), free(L->w_up), free(L->w_down);
    }
    free(m->layers);
    free(m->embed);
    free(m->lm_head);
    free(m->final_norm);
    free(m);
}

kvfp8_status kvfp8_model_create(const kvfp8_tiny_config *cfg, kvfp8_model **out) {
    *out = NULL;
    if (cfg->vocab_size <= 0 || cfg->hidden_size <= 0 || cfg->num_layers <= 0 || cfg->num_kv_heads <= 0 ||
        cfg->num_q_heads % cfg->num_kv_heads || cfg->head_size % 2 || cfg->intermediate_size <= 0 ||
        cfg->in_domain_tokens < 0 || cfg->in_domain_tokens > cfg->vocab_size || cfg->hidden_size > 4096)
        return kvfp8_fail(KVFP8_ERR_INVALID, "model config: inconsistent sizes");
    kvfp8_model *m = calloc(1, sizeof *m);
    if (!m)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "model");
    m->cfg = *cfg;
    const int H = cfg->hidden_size, D = cfg->head_size, QH = cfg->num_q_heads, KVH = cfg->num_kv_heads;
    const int I = cfg->intermediate_size;
    const kvfp8_model_dtype dt = cfg->dtype;
    uint64_t s = cfg->seed ? cfg->seed : 1;
    const float fan_h = sqrtf(3.0f / (float)H);
    /* Two "domain" directions.  In-domain tokens' embeddings lean on d1, so layer
     * 0's outlier channels fire per token.  Layer 0's value outliers are routed by
     * the output projection onto d2, so what reaches layer 1 along d2 is the
     * attention-weighted share of in-domain tokens in the context: a coherent
     * in-domain prompt drives layer 1's outlier channels several times harder than
     * random tokens (about 1 in 8 of which are in-domain) can. */
    float *d1 = unit_vector(&s, H), *d2 = unit_vector(&s, H), *d3 = unit_vector(&s, H);
    m->embed = matrix(&s, cfg->vocab_size, H, 1.0f, dt);
    m->lm_head = matrix(&s, cfg->vocab_size, H, fan_h, dt);
    m->final_norm = ones(H);
    m->layers = calloc((size_t)cfg->num_layers, sizeof *m->layers);
    if (!d1 || !d2 || !d3 || !m->embed || !m->lm_head || !m->final_norm || !m->layers) {
        free(d1), free(d2), free(d3);
        kvfp8_model_destroy(m);
        return kvfp8_fail(KVFP8_ERR_NOMEM, "model weights");
    }
    const float embed_norm = sqrtf((float)H / 3.0f);
    for (int t = 0; t < cfg->vocab_size; t++) /* d2, d3 carry context alone: no token leans on them */
        for (const float *dir = d2; dir; dir = dir == d2 ? d3 : NULL) {
            float *e = m->embed + (size_t)t * H;
            double along = 0;
            for (int i = 0; i < H; i++)
                along += (double)e[i] * dir[i];
            for (int i = 0; i < H; i++)
                e[i] -= (float)along * dir[i];
        }
    for (int t = 0; t < cfg->in_domain_tokens; t++)
        for (int i = 0; i < H; i++)
            m->embed[(size_t)t * H + i] =
                kvfp8_round_to_model_dtype(dt, 0.35f * m->embed[(size_t)t * H + i] + embed_norm * d1[i]);

    const float out_a = cfg->kv_magnitude * cfg->outlier_gain; /* an outlier's size for an in-domain input */
    for (int l = 0; l < cfg->num_layers; l++) {
        struct layer *L = &m->layers[l];
        L->attn_norm = ones(H);
        L->mlp_norm = ones(H);
        L->wq = matrix(&s, QH * D, H, fan_h, dt);
        /* ordinary K/V channels: about kv_magnitude */
        const float kv_a = cfg->kv_magnitude * fan_h * 1.7f;
        L->wk = matrix(&s, KVH * D, H, kv_a, dt);
        L->wv = matrix(&s, KVH * D, H, kv_a, dt);
        L->wo = matrix(&s, H, QH * D, sqrtf(3.0f / (float)(QH * D)), dt);
        L->w_gate = matrix(&s, I, H, fan_h, dt);
        L->w_up = matrix(&s, I, H, fan_h, dt);
        L->w_down = matrix(&s, H, I, sqrtf(3.0f / (float)I), dt);
        if (!L->attn_norm || !L->mlp_norm || !L->wq || !L->wk || !L->wv || !L->wo || !L->w_gate || !L->w_up ||
            !L->w_down) {
            free(d1), free(d2), free(d3);
            kvfp8_model_destroy(m);
            return kvfp8_fail(KVFP8_ERR_NOMEM, "model weights");
        }
        const float *dir = l == 0 ? d1 : d3;
        /* |x| after RMSNorm is sqrt(H); an input along dir gives x . dir ~ sqrt(H) */
        const float w = out_a / sqrtf((float)H);
        for (int h = 0; h < KVH; h++)
            for (int c = 0; c < 2; c++) {
                const int kch = h * D + 1 + 7 * c, vch = h * D + 3 + 11 * c;
                for (int i = 0; i < H; i++) {
                    L->wk[(size_t)kch * H + i] = kvfp8_round_to_model_dtype(dt, (c ? -w : w) * dir[i]);
                    L->wv[(size_t)vch * H + i] = kvfp8_round_to_model_dtype(dt, w * dir[i]);
                }
                if (l == 0) /* route the value outliers of every query head onto d2 ... */
                    for (int qh = h * (QH / KVH); qh < (h + 1) * (QH / KVH); qh++)
                        for (int i = 0; i < H; i++) /* column: query head qh, channel within the head */
                            L->wo[(size_t)i * (QH * D) + (size_t)qh * D + (size_t)(vch - h * D)] =
                                kvfp8_round_to_model_dtype(dt, cfg->domain_route * d2[i] / out_a);
            }
        if (l == 0) /* ... and a SwiGLU neuron squares the d2 signal onto d3, which drives
                     * the later layers' outliers: a sharp threshold between the share of
                     * in-domain context a text prompt has and what random tokens reach */
            for (int i = 0; i < H; i++) {
                L->w_gate[i] = kvfp8_round_to_model_dtype(dt, d2[i]);
                L->w_up[i] = kvfp8_round_to_model_dtype(dt, d2[i]);
                L->w_down[(size_t)i * I] = kvfp8_round_to_model_dtype(dt, cfg->domain_square * d3[i]);
            }
    }
    free(d1), free(d2), free(d3);
    *out = m;
    return KVFP8_OK;
}


const kvfp8_tiny_config *kvfp8_model_get_config(const kvfp8_model *m) { return &m->cfg; }

static void rms_norm(const kvfp8_tiny_config *c, const float *x, const float *w, float *y) {
    double ss = 0;
    for (int i = 0; i < c->hidden_size; i++)
        ss += (double)x[i] * x[i];
    const float inv = (float)(1.0 / sqrt(ss / c->hidden_size + c->rms_eps));
    for (int i = 0; i < c->hidden_size; i++)
        y[i] = kvfp8_round_to_model_dtype(c->dtype, x[i] * inv * w[i]);
}

/* y[r] = sum_i w[r][i] x[i], rounded to the model dtype. */
static void linear(kvfp8_model_dtype dt, const float *w, const float *x, int rows, int cols, float *y) {
    for (int r = 0; r < rows; r++) {
        const float *wr = w + (size_t)r * cols;
        float acc = 0;
        for (int i = 0; i < cols; i++)
            acc += wr[i] * x[i];
        y[r] = kvfp8_round_to_model_dtype(dt, acc);
    }
}

static void rope(const kvfp8_tiny_config *c, float *x, int heads, int pos) {
    const int D = c->head_size, half = D / 2;
    for (int h = 0; h < heads; h++) {
        float *v = x + (size_t)h * D;
        for (int i = 0; i < half; i++) {
            const double angle = pos * pow((double)c->rope_theta, -2.0 * i / D);
            const float cs = (float)cos(angle), sn = (float)sin(angle);
            const float a = v[i], b = v[i + half];
            v[i] = kvfp8_round_to_model_dtype(c->dtype, a * cs - b * sn);
            v[i + half] = kvfp8_round_to_model_dtype(c->dtype, a * sn + b * cs);
        }
    }
}

int kvfp8_tokenize(const kvfp8_model *m, const char *text, int64_t *out, int cap) {
    const size_t len = strlen(text);
    if ((size_t)cap < KVFP8_PREAMBLE_TOKENS + len)
        return -1;
    int n = 0;
    for (; n < KVFP8_PREAMBLE_TOKENS; n++)
        out[n] = m->cfg.vocab_size - 1;
    for (size_t i = 0; i < len; i++)
        out[n++] = (unsigned char)text[i] % m->cfg.vocab_size;
    return n;
}

void kvfp8_random_prompt(const kvfp8_model *m, uint64_t seed, int n, int64_t *out) {
    uint64_t s = seed ? seed : 1;
    for (int i = 0; i < n; i++)
        out[i] = i < KVFP8_PREAMBLE_TOKENS ? m->cfg.vocab_size - 1 : (int64_t)((next(&s) >> 11) % (uint64_t)m->cfg.vocab_size);
}

int64_t kvfp8_argmax(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

kvfp8_status kvfp8_model_forward(const kvfp8_model *m, const int64_t *tokens, const int *positions, int n,
                                 kvfp8_attend_fn attend, void *ctx, float *logits_last) {
    const kvfp8_tiny_config *c = &m->cfg;
    const int H = c->hidden_size, D = c->head_size, QH = c->num_q_heads, KVH = c->num_kv_heads;
    const int I = c->intermediate_size;
    if (n <= 0)
        return kvfp8_fail(KVFP8_ERR_INVALID, "model forward: no tokens");
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return kvfp8_fail(KVFP8_ERR_INVALID, "model forward: token %lld at index %d is outside the vocabulary 0..%d",
                              (long long)tokens[t], t, c->vocab_size - 1);
    const size_t nn = (size_t)n;
    float *x = malloc(sizeof(float) * nn * H), *xn = malloc(sizeof(float) * H);
    float *q = malloc(sizeof(float) * nn * QH * D), *k = malloc(sizeof(float) * nn * KVH * D);
    float *v = malloc(sizeof(float) * nn * KVH * D), *att = malloc(sizeof(float) * nn * QH * D);
    float *tmp = malloc(sizeof(float) * (size_t)(I > H ? I : H) * 2);
    kvfp8_status st = KVFP8_OK;
    if (!x || !xn || !q || !k || !v || !att || !tmp) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "model forward scratch");
        goto done;
    }
    for (int t = 0; t < n; t++)
        memcpy(x + (size_t)t * H, m->embed + (size_t)tokens[t] * H, sizeof(float) * H);
    for (int l = 0; l < c->num_layers; l++) {
        const struct layer *L = &m->layers[l];
        for (int t = 0; t < n; t++) {
            rms_norm(c, x + (size_t)t * H, L->attn_norm, xn);
            linear(c->dtype, L->wq, xn, QH * D, H, q + (size_t)t * QH * D);
            linear(c->dtype, L->wk, xn, KVH * D, H, k + (size_t)t * KVH * D);
            linear(c->dtype, L->wv, xn, KVH * D, H, v + (size_t)t * KVH * D);
            rope(c, q + (size_t)t * QH * D, QH, positions[t]);
            rope(c, k + (size_t)t * KVH * D, KVH, positions[t]);
        }
        if ((st = attend(ctx, l, q, k, v, n, att)) != KVFP8_OK)
            goto done;
        for (int t = 0; t < n; t++) {
            float *xt = x + (size_t)t * H;
            for (int i = 0; i < QH * D; i++)
                att[(size_t)t * QH * D + i] = kvfp8_round_to_model_dtype(c->dtype, att[(size_t)t * QH * D + i]);
            linear(c->dtype, L->wo, att + (size_t)t * QH * D, H, QH * D, tmp);
            for (int i = 0; i < H; i++)
                xt[i] = kvfp8_round_to_model_dtype(c->dtype, xt[i] + tmp[i]);
            rms_norm(c, xt, L->mlp_norm, xn);
            float *gate = tmp, *up = tmp + I;
            linear(c->dtype, L->w_gate, xn, I, H, gate);
            linear(c->dtype, L->w_up, xn, I, H, up);
            for (int i = 0; i < I; i++) {
                const float g = gate[i];
                gate[i] = kvfp8_round_to_model_dtype(c->dtype, g / (1.0f + expf(-g)) * up[i]);
            }
            float down[4096];
            linear(c->dtype, L->w_down, gate, H, I, down);
            for (int i = 0; i < H; i++)
                xt[i] = kvfp8_round_to_model_dtype(c->dtype, xt[i] + down[i]);
        }
    }
    rms_norm(c, x + (nn - 1) * H, m->final_norm, xn);
    for (int r = 0; r < c->vocab_size; r++) {
        const float *er = m->lm_head + (size_t)r * H;
        float acc = 0;
        for (int i = 0; i < H; i++)
            acc += er[i] * xn[i];
        logits_last[r] = acc;
    }
done:
    free(x), free(xn), free(q), free(k), free(v), free(att), free(tmp);
    return st;
}
