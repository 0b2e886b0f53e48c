/* The `cpu` backend: the optimized CPU paths behind the backend table.
 *
 * FP8 encode/decode go through the dispatched buffer paths (kvfp8_fp8_encode_buffer,
 * kvfp8_fp8_decode_buffer: portable, AVX2 or AVX-512, bit-exact with the reference).
 * The cache write encodes one head row at a time with the same fast encoder (rows of
 * head_size elements are contiguous in both the input and the cache).  Paged
 * attention is computed in float32 the way a GPU kernel does it, not in double: per
 * KV head the sequence's K/V rows are gathered through the block table and
 * dequantized once, then every query head of the group runs an online softmax over
 * one cache block of keys at a time (block maximum, one rescale of the running sum
 * per block).  Under `uniform` the scales are folded as FA3 does (softmax scale *=
 * k_scale, output *= v_scale).  It is checked against the float64 reference within
 * kvfp8_attention_error_bound(accumulate F32) by the conformance suites.
 *
 * Every operation is timed on the host clock, and device_timing reports that with a
 * memcpy ceiling, so the report's bandwidth chart works on a machine without a GPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvfp8/backend.h"
#include "kvfp8/fp8_cpu.h"

typedef struct {
    double last_seconds;
    double copy_ceiling; /* bytes moved per second by memcpy; 0 until measured */
} cpu_state;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static kvfp8_status cpu_create(const kvfp8_backend_host *host, void **state) {
    (void)host; /* built in: kvfp8_fail is at hand */
    cpu_state *s = calloc(1, sizeof *s);
    if (!s)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "cpu backend state");
    *state = s;
    return KVFP8_OK;
}

static void cpu_destroy(void *state) { free(state); }

static kvfp8_status cpu_supports(void *state, const kvfp8_backend_query *q) {
    (void)state;
    switch (q->op) {
    case KVFP8_OP_FP8_ENCODE:
        if ((unsigned)q->source >= KVFP8_SOURCE_COUNT || (unsigned)q->fp8.format >= KVFP8_FORMAT_COUNT)
            return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "cpu: unknown source type or format");
        return KVFP8_OK;
    case KVFP8_OP_FP8_DECODE:
        if ((unsigned)q->fp8.format >= KVFP8_FORMAT_COUNT)
            return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "cpu: unknown format %d", (int)q->fp8.format);
        return KVFP8_OK;
    case KVFP8_OP_CACHE_WRITE:
    case KVFP8_OP_PAGED_ATTENTION:
        if ((unsigned)q->read >= KVFP8_READ_COUNT || (unsigned)q->model_dtype > KVFP8_DTYPE_BF16)
            return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "cpu: unknown read semantics or model dtype");
        return KVFP8_OK; /* every read semantics, window and soft cap are implemented below */
    case KVFP8_OP_BLOCK_HASH:
        if ((unsigned)q->hash_algo >= KVFP8_HASH_ALGO_COUNT)
            return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "cpu: unknown hash algorithm %d", (int)q->hash_algo);
        return KVFP8_OK;
    case KVFP8_OP_DEVICE_TIMING:
        return KVFP8_OK;
    }
    return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "cpu: unknown operation %d", (int)q->op);
}

static kvfp8_status cpu_encode(void *state, const kvfp8_fp8_rules *r, kvfp8_source src, const void *in, uint8_t *out,
                               size_t n, float scale) {
    cpu_state *s = state;
    if ((unsigned)src >= KVFP8_SOURCE_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "cpu encode: unknown source type %d", (int)src);
    const double t0 = now_seconds();
    kvfp8_status st = kvfp8_fp8_encode_buffer(r, src, in, out, n, scale);
    s->last_seconds = now_seconds() - t0;
    return st;
}

static kvfp8_status cpu_decode(void *state, kvfp8_format f, const uint8_t *in, float *out, size_t n, float scale) {
    cpu_state *s = state;
    if ((unsigned)f >= KVFP8_FORMAT_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "cpu decode: unknown format %d", (int)f);
    const double t0 = now_seconds();
    kvfp8_status st = kvfp8_fp8_decode_buffer(f, in, out, n, scale);
    s->last_seconds = now_seconds() - t0;
    return st;
}

/* ---- cache write ------------------------------------------------------------------ */

static float source_value(kvfp8_source src, const unsigned char *p, size_t i) {
    if (src == KVFP8_SRC_F32) {
        float x;
        memcpy(&x, p + 4 * i, 4);
        return x;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return src == KVFP8_SRC_F16 ? kvfp8_f16_to_f32(h) : kvfp8_bf16_to_f32(h);
}

/* One row of `auto` storage.  Same dtype in and out is a copy, except that a NaN
 * takes the form the reference's round trip through float32 gives it (f16: the
 * canonical 0x7E00 with its sign; bf16: the quiet bit set), so the bytes match. */
static void store_auto_row(kvfp8_model_dtype dtype, kvfp8_source src, const unsigned char *in, unsigned char *out,
                           size_t n) {
    if (dtype == KVFP8_DTYPE_F32) {
        for (size_t i = 0; i < n; i++) {
            const float x = source_value(src, in, i);
            memcpy(out + 4 * i, &x, 4);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        if ((dtype == KVFP8_DTYPE_F16 && src == KVFP8_SRC_F16) || (dtype == KVFP8_DTYPE_BF16 && src == KVFP8_SRC_BF16)) {
            memcpy(&h, in + 2 * i, 2);
            if (dtype == KVFP8_DTYPE_F16 && (h & 0x7C00) == 0x7C00 && (h & 0x03FF))
                h = (uint16_t)((h & 0x8000) | 0x7E00);
            else if (dtype == KVFP8_DTYPE_BF16 && (h & 0x7F80) == 0x7F80 && (h & 0x007F))
                h |= 0x0040;
        } else {
            const float x = source_value(src, in, i);
            h = dtype == KVFP8_DTYPE_F16 ? kvfp8_f32_to_f16(x) : kvfp8_f32_to_bf16(x);
        }
        memcpy(out + 2 * i, &h, 2);
    }
}

static kvfp8_status cpu_cache_write(void *state, kvfp8_kv_cache *c, kvfp8_source src, const void *key,
                                    const void *value, const int64_t *slot_mapping, size_t num_tokens) {
    cpu_state *s = state;
    if ((unsigned)src >= KVFP8_SOURCE_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "cache write: unknown source type %d", (int)src);
    const int64_t slots = (int64_t)c->num_blocks * c->block_size;
    for (size_t t = 0; t < num_tokens; t++) /* validate everything before writing anything */
        if (slot_mapping[t] >= slots)
            return kvfp8_fail(KVFP8_ERR_INVALID, "cache write: token %zu has slot %lld, beyond the %lld slots", t,
                              (long long)slot_mapping[t], (long long)slots);
    const double t0 = now_seconds();
    const size_t D = (size_t)c->head_size, H = (size_t)c->num_kv_heads;
    const size_t in_width = src == KVFP8_SRC_F32 ? 4 : 2, elem = kvfp8_kv_storage_bytes(&c->storage);
    for (size_t t = 0; t < num_tokens; t++) {
        if (slot_mapping[t] < 0)
            continue; /* padding */
        for (size_t h = 0; h < H; h++) {
            const size_t in_at = (t * H + h) * D * in_width;
            const size_t out_at = ((size_t)slot_mapping[t] * H + h) * D * elem;
            const unsigned char *k = (const unsigned char *)key + in_at, *v = (const unsigned char *)value + in_at;
            if (c->storage.is_fp8) {
                const size_t at = c->scale_count == 1 ? 0 : h;
                kvfp8_status st = kvfp8_fp8_encode_buffer(&c->storage.fp8, src, k, c->key_cache + out_at, D, c->k_scale[at]);
                if (st == KVFP8_OK)
                    st = kvfp8_fp8_encode_buffer(&c->storage.fp8, src, v, c->value_cache + out_at, D, c->v_scale[at]);
                if (st != KVFP8_OK)
                    return st;
            } else {
                store_auto_row(c->storage.dtype, src, k, c->key_cache + out_at, D);
                store_auto_row(c->storage.dtype, src, v, c->value_cache + out_at, D);
            }
        }
    }
    s->last_seconds = now_seconds() - t0;
    return KVFP8_OK;
}

/* ---- paged attention in float32 ---------------------------------------------------- */

static kvfp8_status check_params(const kvfp8_attention_params *p, const kvfp8_kv_cache *c, const float *new_key,
                                 const float *new_value) {
    if (p->num_seqs < 0 || (p->num_seqs > 0 && (!p->query_start_loc || !p->seq_lens || !p->block_table)))
        return kvfp8_fail(KVFP8_ERR_INVALID, "cpu attention: query_start_loc, seq_lens and block_table are required");
    if (p->num_q_heads <= 0 || p->num_q_heads % c->num_kv_heads)
        return kvfp8_fail(KVFP8_ERR_INVALID, "cpu attention: num_q_heads=%d is not a positive multiple of num_kv_heads=%d",
                          p->num_q_heads, c->num_kv_heads);
    if ((unsigned)p->read >= KVFP8_READ_COUNT || !(p->softmax_scale > 0) || !isfinite(p->softmax_scale) ||
        p->sliding_window < 0 || p->logits_soft_cap < 0)
        return kvfp8_fail(KVFP8_ERR_INVALID, "cpu attention: bad read semantics, softmax scale, window or soft cap");
    if (p->read == KVFP8_READ_MIXED && (!new_key || !new_value))
        return kvfp8_fail(KVFP8_ERR_INVALID, "cpu attention: read semantics 'mixed' needs the new tokens' K and V");
    if (p->num_seqs > 0 && p->query_start_loc[0] != 0)
        return kvfp8_fail(KVFP8_ERR_INVALID, "cpu attention: query_start_loc[0] must be 0");
    for (int s = 0; s < p->num_seqs; s++) {
        const int q_len = p->query_start_loc[s + 1] - p->query_start_loc[s], len = p->seq_lens[s];
        if (q_len < 0 || q_len > len)
            return kvfp8_fail(KVFP8_ERR_INVALID, "cpu attention: sequence %d has %d query tokens and seq_len %d", s,
                              q_len, len);
        const int blocks = (len + c->block_size - 1) / c->block_size;
        if (blocks > p->max_blocks_per_seq)
            return kvfp8_fail(KVFP8_ERR_INVALID, "cpu attention: sequence %d needs %d blocks, block table has %d", s,
                              blocks, p->max_blocks_per_seq);
        for (int b = 0; b < blocks; b++) {
            const int id = p->block_table[s * p->max_blocks_per_seq + b];
            if (id < 0 || id >= c->num_blocks)
                return kvfp8_fail(KVFP8_ERR_INVALID, "cpu attention: sequence %d block %d maps to %d, outside 0..%d", s,
                                  b, id, c->num_blocks - 1);
        }
    }
    return KVFP8_OK;
}

/* The K or V row of one token and KV head as float32, as the read semantics says:
 * `fold` (uniform over FP8) leaves the scale out, the caller folds it. */
static void load_row(const kvfp8_attention_params *p, const kvfp8_kv_cache *c, int is_value, int64_t slot, int kvh,
                     int fold, float *row) {
    const size_t D = (size_t)c->head_size;
    const uint8_t *base = (is_value ? c->value_cache : c->key_cache) +
                          ((size_t)slot * (size_t)c->num_kv_heads + (size_t)kvh) * D * kvfp8_kv_storage_bytes(&c->storage);
    if (c->storage.is_fp8) {
        const float *scales = is_value ? c->v_scale : c->k_scale;
        const float scale = fold ? 1.0f : scales[c->scale_count == 1 ? 0 : kvh];
        (void)kvfp8_fp8_decode_buffer(c->storage.fp8.format, base, row, D, scale); /* scale validated at set_scales */
        if (!fold)
            for (size_t e = 0; e < D; e++)
                row[e] = kvfp8_round_to_model_dtype(p->model_dtype, row[e]);
        return;
    }
    for (size_t e = 0; e < D; e++) {
        if (c->storage.dtype == KVFP8_DTYPE_F32) {
            memcpy(&row[e], base + 4 * e, 4);
        } else {
            uint16_t h;
            memcpy(&h, base + 2 * e, 2);
            row[e] = c->storage.dtype == KVFP8_DTYPE_F16 ? kvfp8_f16_to_f32(h) : kvfp8_bf16_to_f32(h);
        }
    }
}

typedef struct {
    float *k, *v;       /* [len][D] gathered rows of one KV head */
    float *scores;      /* one block of scores */
    float *acc;         /* [D] */
    size_t cap_len;
} scratch;

static int reserve(scratch *w, size_t len, size_t D, size_t bs) {
    if (len <= w->cap_len)
        return 1;
    free(w->k), free(w->v);
    w->k = malloc(sizeof(float) * len * D);
    w->v = malloc(sizeof(float) * len * D);
    w->cap_len = (w->k && w->v) ? len : 0;
    if (!w->scores) {
        w->scores = malloc(sizeof(float) * bs);
        w->acc = malloc(sizeof(float) * D);
    }
    return w->cap_len && w->scores && w->acc;
}

/* One query row against keys first..pos: online softmax, one cache block at a time. */
static void attend_row(const kvfp8_attention_params *p, const scratch *w, const float *q, size_t D, int bs, int first,
                       int pos, float score_scale, float out_scale, float *out) {
    const float cap = (float)p->logits_soft_cap;
    float m = -INFINITY, l = 0.0f;
    for (size_t e = 0; e < D; e++)
        w->acc[e] = 0.0f;
    for (int start = first; start <= pos;) {
        /* the tile ends at the next cache-block boundary, as a paged kernel's does */
        int end = (start / bs + 1) * bs - 1;
        if (end > pos)
            end = pos;
        float tile_max = -INFINITY;
        for (int j = start; j <= end; j++) {
            const float *k = w->k + (size_t)j * D;
            float dot = 0.0f;
            for (size_t e = 0; e < D; e++)
                dot += q[e] * k[e];
            float sc = dot * score_scale;
            if (cap > 0.0f)
                sc = cap * tanhf(sc / cap);
            w->scores[j - start] = sc;
            if (sc > tile_max)
                tile_max = sc;
        }
        if (tile_max > m) { /* rescale what was accumulated under the old maximum */
            const float corr = expf(m - tile_max);
            l *= corr;
            for (size_t e = 0; e < D; e++)
                w->acc[e] *= corr;
            m = tile_max;
        }
        for (int j = start; j <= end; j++) {
            const float pj = expf(w->scores[j - start] - m);
            const float *v = w->v + (size_t)j * D;
            l += pj;
            for (size_t e = 0; e < D; e++)
                w->acc[e] += pj * v[e];
        }
        start = end + 1;
    }
    const float inv = out_scale / l;
    for (size_t e = 0; e < D; e++)
        out[e] = w->acc[e] * inv;
}

static kvfp8_status cpu_attention(void *state, const kvfp8_attention_params *p, const kvfp8_kv_cache *c,
                                  const float *query, const float *new_key, const float *new_value, float *out) {
    cpu_state *s = state;
    kvfp8_status st = check_params(p, c, new_key, new_value);
    if (st != KVFP8_OK)
        return st;
    const double t0 = now_seconds();
    const size_t D = (size_t)c->head_size, KVH = (size_t)c->num_kv_heads, H = (size_t)p->num_q_heads;
    const int group = p->num_q_heads / c->num_kv_heads, bs = c->block_size;
    const int fold = p->read == KVFP8_READ_UNIFORM && c->storage.is_fp8;
    scratch w = {0};
    for (int sq = 0; sq < p->num_seqs; sq++) {
        const int q_begin = p->query_start_loc[sq], q_len = p->query_start_loc[sq + 1] - q_begin;
        const int len = p->seq_lens[sq], first_new = len - q_len;
        if (q_len == 0)
            continue;
        if (!reserve(&w, (size_t)len, D, (size_t)bs)) {
            st = kvfp8_fail(KVFP8_ERR_NOMEM, "cpu attention: scratch for %d keys", len);
            break;
        }
        for (size_t kvh = 0; kvh < KVH; kvh++) {
            for (int j = 0; j < len; j++) { /* gather through the block table, dequantize once */
                float *krow = w.k + (size_t)j * D, *vrow = w.v + (size_t)j * D;
                if (p->read == KVFP8_READ_MIXED && j >= first_new) {
                    const size_t at = ((size_t)(q_begin + j - first_new) * KVH + kvh) * D;
                    memcpy(krow, new_key + at, sizeof(float) * D);
                    memcpy(vrow, new_value + at, sizeof(float) * D);
                    continue;
                }
                const int64_t slot = (int64_t)p->block_table[sq * p->max_blocks_per_seq + j / bs] * bs + j % bs;
                load_row(p, c, 0, slot, (int)kvh, fold, krow);
                load_row(p, c, 1, slot, (int)kvh, fold, vrow);
            }
            const size_t at = c->scale_count == 1 ? 0 : kvh;
            const float score_scale = fold ? (float)p->softmax_scale * c->k_scale[at] : (float)p->softmax_scale;
            const float out_scale = fold ? c->v_scale[at] : 1.0f;
            for (int g = 0; g < group; g++) {
                const size_t h = kvh * (size_t)group + (size_t)g;
                for (int i = 0; i < q_len; i++) {
                    const size_t token = (size_t)(q_begin + i);
                    const int pos = first_new + i;
                    int first = 0;
                    if (p->sliding_window > 0 && pos - p->sliding_window + 1 > 0)
                        first = pos - p->sliding_window + 1;
                    attend_row(p, &w, query + (token * H + h) * D, D, bs, first, pos, score_scale, out_scale,
                               out + (token * H + h) * D);
                }
            }
        }
    }
    free(w.k), free(w.v), free(w.scores), free(w.acc);
    s->last_seconds = now_seconds() - t0;
    return st;
}

static kvfp8_status cpu_block_hash(void *state, kvfp8_hash_algo algo, const kvfp8_block_hash *none_hash,
                                   size_t block_size, const int64_t *tokens, size_t n_tokens, kvfp8_block_hash *out,
                                   size_t out_cap, size_t *n_out) {
    cpu_state *s = state;
    const double t0 = now_seconds();
    kvfp8_status st = kvfp8_hash_blocks(algo, block_size, none_hash, NULL, tokens, n_tokens, out, out_cap, n_out);
    s->last_seconds = now_seconds() - t0;
    return st;
}

/* The copy ceiling: the best of a few memcpy runs over 32 MiB (well past the caches),
 * counted as bytes read plus bytes written. */
static double measure_copy_ceiling(void) {
    const size_t n = (size_t)32 << 20;
    unsigned char *a = malloc(n), *b = malloc(n);
    if (!a || !b) {
        free(a), free(b);
        return 0;
    }
    memset(a, 1, n), memset(b, 2, n);
    double best = 0;
    for (int run = 0; run < 4; run++) {
        const double t0 = now_seconds();
        memcpy(run & 1 ? a : b, run & 1 ? b : a, n);
        const double dt = now_seconds() - t0;
        if (dt > 0 && 2.0 * (double)n / dt > best)
            best = 2.0 * (double)n / dt;
    }
    free(a), free(b);
    return best;
}

static kvfp8_status cpu_device_timing(void *state, kvfp8_backend_timing *out) {
    cpu_state *s = state;
    if (s->copy_ceiling == 0)
        s->copy_ceiling = measure_copy_ceiling();
    out->seconds = s->last_seconds;
    out->copy_bytes_per_second = s->copy_ceiling;
    return KVFP8_OK;
}

static const kvfp8_backend_ops cpu_ops = {
    KVFP8_BACKEND_ABI_VERSION, sizeof(kvfp8_backend_ops), "cpu", cpu_create, cpu_destroy, cpu_supports,
    cpu_encode, cpu_decode, cpu_cache_write, cpu_attention, cpu_block_hash, cpu_device_timing,
};

const kvfp8_backend_ops *kvfp8_backend_cpu(void) { return &cpu_ops; }
