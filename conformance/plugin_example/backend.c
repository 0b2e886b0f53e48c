/* An example kvfp8 backend, written the way a vendor would write one: a shared object
 * that includes kvfp8's public headers and links against nothing of kvfp8's.  It is
 * an independent implementation (integer bit manipulation and plain float loops, not
 * calls into kvfp8's reference), small on purpose, and it passes the must-pass list.
 * docs/porting.md walks through it.
 *
 * What it does and declines, through `supports`:
 *   fp8_encode      every rules table, every source type (it reads the table's edges)
 *   fp8_decode      every format
 *   cache_write     FP8 and auto storage, per-tensor and per-head scales
 *   paged_attention `model-dtype` and `uniform` reads, in float32 with a two-pass
 *                   softmax; declines `mixed`, sliding windows and soft caps
 *   block_hash, device_timing: optional, left out (NULL, declined)
 *
 * Build (the Makefile does this for build/plugins/libkvfp8_example.so):
 *   cc -std=c11 -O2 -fPIC -fvisibility=hidden -shared -Iinclude \
 *      conformance/plugin_example/backend.c -o libkvfp8_example.so -lm
 * Run:
 *   kvfp8 conform --backend ./libkvfp8_example.so --report report/ */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/backend.h"

/* Everything but kvfp8_backend_entry is static: one exported symbol. */
typedef struct {
    const kvfp8_backend_host *host; /* host->set_error records a reason kvfp8 can print */
    float decode_table[KVFP8_FORMAT_COUNT][256];
} example_state;

/* ---- scalar conversions ------------------------------------------------------------ */

static uint32_t f32_bits(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    return b;
}

static float bits_f32(uint32_t b) {
    float x;
    memcpy(&x, &b, 4);
    return x;
}

static float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    if (exp == 0x1F) /* Inf, or NaN made quiet with its payload kept */
        return bits_f32(sign | 0x7F800000u | (man ? 0x00400000u | man << 13 : 0));
    if (exp == 0) /* zero or subnormal: man * 2^-24, exact in float */
        return sign ? -ldexpf((float)man, -24) : ldexpf((float)man, -24);
    return bits_f32(sign | (exp + 112) << 23 | man << 13);
}

/* Rounds a non-negative integer significand right by `shift` bits, nearest even. */
static uint64_t round_shift(uint64_t sig, int shift) {
    if (shift <= 0)
        return sig << -shift;
    if (shift >= 40)
        return 0;
    const uint64_t q = sig >> shift, rem = sig & ((1ull << shift) - 1), half = 1ull << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

static uint16_t float_to_half(float x) {
    const uint32_t b = f32_bits(x), sign = (b >> 16) & 0x8000;
    const int exp = (int)((b >> 23) & 0xFF);
    const uint32_t man = b & 0x7FFFFF;
    if (exp == 0xFF)
        return (uint16_t)(sign | (man ? 0x7E00 : 0x7C00));
    if (exp == 0)
        return (uint16_t)sign; /* float subnormals are far below half's smallest */
    const int e = exp - 127;
    const uint64_t sig = (uint64_t)(man | 0x800000);
    if (e < -14) { /* half subnormal: units of 2^-24 */
        const uint64_t q = round_shift(sig, -1 - e); /* sig * 2^(e - 23) / 2^-24 */
        return (uint16_t)(sign | q); /* q == 0x400 is the smallest normal: right bits */
    }
    uint64_t q = round_shift(sig, 13); /* 11 significant bits */
    int he = e + 15;
    if (q == 0x800)
        q >>= 1, he++;
    if (he >= 31)
        return (uint16_t)(sign | 0x7C00);
    return (uint16_t)(sign | (uint32_t)he << 10 | (q & 0x3FF));
}

static uint16_t float_to_bf16(float x) {
    const uint32_t b = f32_bits(x);
    if ((b & 0x7F800000u) == 0x7F800000u && (b & 0x7FFFFF))
        return (uint16_t)((b >> 16) | 0x40); /* NaN: keep the top payload, make it quiet */
    return (uint16_t)((b + 0x7FFF + ((b >> 16) & 1)) >> 16);
}

static float round_to_dtype(kvfp8_model_dtype d, float x) {
    if (d == KVFP8_DTYPE_F16)
        return half_to_float(float_to_half(x));
    if (d == KVFP8_DTYPE_BF16)
        return bits_f32((uint32_t)float_to_bf16(x) << 16);
    return x;
}

/* FP8 encode of one float32 under a rules table: round to nearest even on the
 * format's grid from the float's bits, then apply the table's edge decisions. */
static uint8_t encode_f32(const kvfp8_fp8_rules *r, float x) {
    const uint32_t b = f32_bits(x);
    const int neg = (int)(b >> 31);
    const int exp = (int)((b >> 23) & 0xFF);
    const uint32_t man = b & 0x7FFFFF;
    if (exp == 0xFF)
        return man ? r->nan_code[neg] : r->inf_code[neg];
    if (r->overflow_before_rounding && fabsf(x) > r->max_value)
        return r->overflow_code[neg];
    if (exp == 0)
        return r->zero_code[neg]; /* float subnormals round to zero in every FP8 format */
    const int m = r->mantissa_bits, emin = 1 - r->exponent_bias, e = exp - 127;
    const uint64_t sig = (uint64_t)(man | 0x800000);
    unsigned magnitude;
    if (e < emin) {
        /* subnormal: count of quanta 2^(emin - m); a count of 2^m is the smallest
         * normal, whose code is the same number */
        magnitude = (unsigned)round_shift(sig, 23 - m + emin - e);
    } else {
        uint64_t q = round_shift(sig, 23 - m);
        int field = e + r->exponent_bias;
        if (q == (2ull << m))
            q >>= 1, field++;
        if (field >= (1 << r->exponent_bits))
            return r->overflow_code[neg];
        magnitude = (unsigned)field << m | (unsigned)(q & ((1u << m) - 1));
    }
    if (magnitude > r->max_code)
        return r->overflow_code[neg];
    if (magnitude == 0)
        return r->zero_code[neg];
    return (uint8_t)(neg << 7 | magnitude);
}

static uint32_t load_bits(kvfp8_source src, const void *in, size_t i) {
    const unsigned char *p = (const unsigned char *)in;
    if (src == KVFP8_SRC_F32) {
        uint32_t b;
        memcpy(&b, p + 4 * i, 4);
        return b;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return h;
}

static float source_float(kvfp8_source src, uint32_t bits) {
    if (src == KVFP8_SRC_F32)
        return bits_f32(bits);
    if (src == KVFP8_SRC_F16)
        return half_to_float((uint16_t)bits);
    return bits_f32(bits << 16);
}

/* vLLM's scaled conversion: encode(x / scale), the quotient rounded to half first
 * for a half input under a table that says so (vLLM on ROCm). */
static uint8_t encode_scaled(const kvfp8_fp8_rules *r, kvfp8_source src, uint32_t bits, float scale) {
    if (src == KVFP8_SRC_F16 && r->f16_nan_unsigned && (bits & 0x7C00) == 0x7C00 && (bits & 0x3FF))
        return r->nan_code[0]; /* the profile's half NaN has no sign (PyTorch on CUDA) */
    float q = source_float(src, bits) / scale;
    if (src == KVFP8_SRC_F16 && r->half_scale_in_half)
        q = half_to_float(float_to_half(q));
    return encode_f32(r, q);
}

static int good_scale(float s) { return s > 0 && s <= 3.4e38f; } /* false for NaN and Inf */

/* ---- the operations -------------------------------------------------------------------- */

static const struct {
    int ebits, mbits, bias, fnuz;
} shapes[KVFP8_FORMAT_COUNT] = {{4, 3, 7, 0}, {5, 2, 15, 0}, {4, 3, 8, 1}, {5, 2, 16, 1}};

static float decode_code(int f, unsigned c) {
    const int m = shapes[f].mbits, field = (int)(c & 0x7F) >> m, man = (int)(c & ((1u << m) - 1));
    const int neg = (int)(c >> 7);
    if (shapes[f].fnuz ? c == 0x80 : (f == KVFP8_E4M3FN ? (c & 0x7F) == 0x7F : field == 31 && man))
        return NAN;
    if (f == KVFP8_E5M2 && field == 31)
        return neg ? -INFINITY : INFINITY;
    const float v = field ? ldexpf((float)((1 << m) | man), field - shapes[f].bias - m)
                          : ldexpf((float)man, 1 - shapes[f].bias - m);
    return neg ? -v : v;
}

static kvfp8_status example_create(const kvfp8_backend_host *host, void **state) {
    example_state *s = calloc(1, sizeof *s);
    if (!s)
        return host->set_error(KVFP8_ERR_NOMEM, "example: out of memory");
    s->host = host;
    for (int f = 0; f < KVFP8_FORMAT_COUNT; f++)
        for (unsigned c = 0; c < 256; c++)
            s->decode_table[f][c] = decode_code(f, c);
    *state = s;
    return KVFP8_OK;
}

static void example_destroy(void *state) { free(state); }

static kvfp8_status decline(const example_state *s, const char *what) {
    return s->host->set_error(KVFP8_ERR_UNSUPPORTED, "example: %s is not implemented", what);
}

static kvfp8_status attention_supported(const example_state *s, kvfp8_read_semantics read, int window, int cap) {
    if (read == KVFP8_READ_MIXED)
        return decline(s, "the `mixed` read semantics");
    if ((unsigned)read >= KVFP8_READ_COUNT)
        return decline(s, "this read semantics");
    if (window)
        return decline(s, "a sliding window");
    if (cap)
        return decline(s, "a logits soft cap");
    return KVFP8_OK;
}

static kvfp8_status example_supports(void *state, const kvfp8_backend_query *q) {
    const example_state *s = state;
    switch (q->op) {
    case KVFP8_OP_FP8_ENCODE:
        if ((unsigned)q->source >= KVFP8_SOURCE_COUNT || (unsigned)q->fp8.format >= KVFP8_FORMAT_COUNT)
            return decline(s, "this source type or format");
        return KVFP8_OK;
    case KVFP8_OP_FP8_DECODE:
        return (unsigned)q->fp8.format < KVFP8_FORMAT_COUNT ? KVFP8_OK : decline(s, "this format");
    case KVFP8_OP_CACHE_WRITE:
        return KVFP8_OK;
    case KVFP8_OP_PAGED_ATTENTION:
        return attention_supported(s, q->read, q->sliding_window, q->soft_cap);
    case KVFP8_OP_BLOCK_HASH: return decline(s, "block hashing");
    case KVFP8_OP_DEVICE_TIMING: return decline(s, "device timing");
    }
    return decline(s, "this operation");
}

static kvfp8_status example_encode(void *state, const kvfp8_fp8_rules *r, kvfp8_source src, const void *in,
                                   uint8_t *out, size_t n, float scale) {
    const example_state *s = state;
    if (!good_scale(scale))
        return s->host->set_error(KVFP8_ERR_INVALID, "example: scale must be finite and > 0, got %g", (double)scale);
    if ((unsigned)src >= KVFP8_SOURCE_COUNT)
        return decline(s, "this source type");
    for (size_t i = 0; i < n; i++)
        out[i] = encode_scaled(r, src, load_bits(src, in, i), scale);
    return KVFP8_OK;
}

static kvfp8_status example_decode(void *state, kvfp8_format f, const uint8_t *in, float *out, size_t n,
                                   float scale) {
    const example_state *s = state;
    if (!good_scale(scale))
        return s->host->set_error(KVFP8_ERR_INVALID, "example: scale must be finite and > 0, got %g", (double)scale);
    if ((unsigned)f >= KVFP8_FORMAT_COUNT)
        return decline(s, "this format");
    for (size_t i = 0; i < n; i++)
        out[i] = s->decode_table[f][in[i]] * scale;
    return KVFP8_OK;
}

static float scale_of(const kvfp8_kv_cache *c, int is_value, int head) {
    return (is_value ? c->v_scale : c->k_scale)[c->scale_count == 1 ? 0 : head];
}

static size_t element_bytes(const kvfp8_kv_storage *st) {
    return st->is_fp8 ? 1 : st->dtype == KVFP8_DTYPE_F32 ? 4 : 2;
}

static kvfp8_status example_cache_write(void *state, kvfp8_kv_cache *c, kvfp8_source src, const void *key,
                                        const void *value, const int64_t *slots, size_t num_tokens) {
    const example_state *s = state;
    if ((unsigned)src >= KVFP8_SOURCE_COUNT)
        return decline(s, "this source type");
    const int64_t n_slots = (int64_t)c->num_blocks * c->block_size;
    for (size_t t = 0; t < num_tokens; t++) /* check every slot before writing any */
        if (slots[t] >= n_slots)
            return s->host->set_error(KVFP8_ERR_INVALID, "example: token %zu has slot %lld of %lld", t,
                                 (long long)slots[t], (long long)n_slots);
    const size_t H = (size_t)c->num_kv_heads, D = (size_t)c->head_size, eb = element_bytes(&c->storage);
    for (size_t t = 0; t < num_tokens; t++) {
        if (slots[t] < 0)
            continue;
        for (size_t h = 0; h < H; h++)
            for (size_t d = 0; d < D; d++) {
                const size_t in = (t * H + h) * D + d, at = ((size_t)slots[t] * H + h) * D + d;
                for (int v = 0; v < 2; v++) {
                    const uint32_t bits = load_bits(src, v ? value : key, in);
                    uint8_t *dst = (v ? c->value_cache : c->key_cache) + at * eb;
                    if (c->storage.is_fp8) {
                        *dst = encode_scaled(&c->storage.fp8, src, bits, scale_of(c, v, (int)h));
                        continue;
                    }
                    const float x = source_float(src, bits);
                    if (c->storage.dtype == KVFP8_DTYPE_F32) {
                        memcpy(dst, &x, 4);
                    } else {
                        const uint16_t y = c->storage.dtype == KVFP8_DTYPE_F16 ? float_to_half(x) : float_to_bf16(x);
                        memcpy(dst, &y, 2);
                    }
                }
            }
    }
    return KVFP8_OK;
}

/* One K or V element as the attention reads it. */
static float read_kv(const example_state *s, const kvfp8_kv_cache *c, kvfp8_read_semantics read,
                     kvfp8_model_dtype dtype, int is_value, int64_t slot, int head, int dim) {
    const size_t at = ((size_t)slot * (size_t)c->num_kv_heads + (size_t)head) * (size_t)c->head_size + (size_t)dim;
    const uint8_t *base = is_value ? c->value_cache : c->key_cache;
    if (c->storage.is_fp8) {
        const float x = s->decode_table[c->storage.fp8.format][base[at]] * scale_of(c, is_value, head);
        return read == KVFP8_READ_MODEL_DTYPE ? round_to_dtype(dtype, x) : x;
    }
    if (c->storage.dtype == KVFP8_DTYPE_F32) {
        float x;
        memcpy(&x, base + 4 * at, 4);
        return x;
    }
    uint16_t h;
    memcpy(&h, base + 2 * at, 2);
    return c->storage.dtype == KVFP8_DTYPE_F16 ? half_to_float(h) : bits_f32((uint32_t)h << 16);
}

static kvfp8_status example_attention(void *state, const kvfp8_attention_params *p, const kvfp8_kv_cache *c,
                                      const float *query, const float *new_key, const float *new_value, float *out) {
    (void)new_key, (void)new_value; /* only `mixed` reads them, and that is declined */
    const example_state *s = state;
    kvfp8_status st = attention_supported(s, p->read, p->sliding_window > 0, p->logits_soft_cap > 0);
    if (st != KVFP8_OK)
        return st;
    if (p->num_q_heads <= 0 || p->num_q_heads % c->num_kv_heads)
        return s->host->set_error(KVFP8_ERR_INVALID, "example: %d query heads for %d KV heads", p->num_q_heads,
                             c->num_kv_heads);
    const int H = p->num_q_heads, D = c->head_size, bs = c->block_size, group = H / c->num_kv_heads;
    int max_len = 1;
    for (int q = 0; q < p->num_seqs; q++)
        if (p->seq_lens[q] > max_len)
            max_len = p->seq_lens[q];
    float *w = malloc(sizeof(float) * (size_t)max_len);
    if (!w)
        return s->host->set_error(KVFP8_ERR_NOMEM, "example: attention scratch");
    for (int q = 0; q < p->num_seqs; q++) {
        const int begin = p->query_start_loc[q], q_len = p->query_start_loc[q + 1] - begin, len = p->seq_lens[q];
        for (int b = 0; b < (len + bs - 1) / bs; b++) {
            const int id = p->block_table[q * p->max_blocks_per_seq + b];
            if (id < 0 || id >= c->num_blocks) {
                free(w);
                return s->host->set_error(KVFP8_ERR_INVALID, "example: sequence %d block %d maps to %d", q, b, id);
            }
        }
        for (int i = 0; i < q_len; i++) {
            const int pos = len - q_len + i;
            for (int h = 0; h < H; h++) {
                const float *qv = query + ((size_t)(begin + i) * (size_t)H + (size_t)h) * (size_t)D;
                float *o = out + ((size_t)(begin + i) * (size_t)H + (size_t)h) * (size_t)D;
                float max = -INFINITY, sum = 0;
                for (int j = 0; j <= pos; j++) { /* pass 1: scores and their maximum */
                    const int64_t slot = (int64_t)p->block_table[q * p->max_blocks_per_seq + j / bs] * bs + j % bs;
                    float dot = 0;
                    for (int d = 0; d < D; d++)
                        dot += qv[d] * read_kv(s, c, p->read, p->model_dtype, 0, slot, h / group, d);
                    w[j] = dot * (float)p->softmax_scale;
                    if (w[j] > max)
                        max = w[j];
                }
                for (int j = 0; j <= pos; j++) { /* pass 2: exponentials */
                    w[j] = expf(w[j] - max);
                    sum += w[j];
                }
                for (int d = 0; d < D; d++)
                    o[d] = 0;
                for (int j = 0; j <= pos; j++) {
                    const int64_t slot = (int64_t)p->block_table[q * p->max_blocks_per_seq + j / bs] * bs + j % bs;
                    const float pj = w[j] / sum;
                    for (int d = 0; d < D; d++)
                        o[d] += pj * read_kv(s, c, p->read, p->model_dtype, 1, slot, h / group, d);
                }
            }
        }
    }
    free(w);
    return KVFP8_OK;
}

static const kvfp8_backend_ops example_ops = {
    KVFP8_BACKEND_ABI_VERSION,
    sizeof(kvfp8_backend_ops),
    "example",
    example_create,
    example_destroy,
    example_supports,
    example_encode,
    example_decode,
    example_cache_write,
    example_attention,
    NULL, /* block_hash: optional, declined in supports */
    NULL, /* device_timing: optional, declined in supports */
};

KVFP8_BACKEND_EXPORT const kvfp8_backend_ops *kvfp8_backend_entry(uint32_t host_abi_version) {
    /* A plugin built for one ABI answers only that one: the host refuses NULL clearly. */
    return host_abi_version == KVFP8_BACKEND_ABI_VERSION ? &example_ops : NULL;
}
