// kvfp8 — the `cuda` backend: kvfp8's backend table (include/kvfp8/backend.h) on an
// NVIDIA GPU.  Built by gpu/build.sh into BUILD/lib/libkvfp8_cuda.so, which exports
// only kvfp8_backend_entry and links nothing of kvfp8's (failure reasons go through
// the host's `fail`); `kvfp8 conform --backend cuda` loads it.
//
// Host buffers in, host buffers out: each call copies what it needs to the device
// (device buffers are kept between calls and grow), runs the kernels on the
// backend's stream and copies the results back.  device_timing reports the kernels'
// time of the last call (CUDA events around the kernels only, not the copies) and a
// device-to-device copy ceiling measured once, on first use.
//
// What runs where (docs/gpu.md):
//   fp8_encode / fp8_decode    rules-table kernels (any profile, any format)
//   cache_write                the vectorized E4M3 kernel for the `nvidia` e4m3fn
//                              table (head size a multiple of 16), else the generic one
//   paged_attention            decode (q_len 1): the tensor-core split-KV kernel (an
//                              e4m3fn cache under `uniform` reads on float16 MMAs
//                              fed straight by the hardware E4M3 conversion);
//                              q_len > 1: the tensor-core prefill kernel; both for
//                              e4m3fn/e5m2/16-bit caches, head 64/128/256, blocks of
//                              a multiple of 16, bf16/f16 models, model-dtype and
//                              uniform reads, queries exact in the model dtype.
//                              Everything else (mixed reads, windows, soft caps, FNUZ,
//                              float32 models, other shapes): the generic kernel.
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "kvfp8/backend.h"
#include "kvfp8_kernels.h"

namespace {

using namespace kvfp8_gpu;

enum { B_IN0, B_IN1, B_OUT0, B_OUT1, B_AUX0, B_AUX1, B_AUX2, B_AUX3, B_AUX4, B_AUX5, B_SCALES, B_COUNT };

struct cuda_state {
    const kvfp8_backend_host *host;
    cudaStream_t stream;
    cudaEvent_t ev0, ev1;
    int num_sms;
    double last_seconds;
    double copy_bps;
    void *buf[B_COUNT];
    size_t cap[B_COUNT];
    void *ws;
    size_t ws_cap;
};

// The host's error-recording service: named set_error in the current header (fail in
// an earlier draft of ABI 2); whichever the header has.
template <typename H>
auto host_fail(const H *h, int) -> decltype(h->set_error) {
    return h->set_error;
}
template <typename H>
auto host_fail(const H *h, long) -> decltype(h->fail) {
    return h->fail;
}
#define FAIL(st, ...) host_fail(s->host, 0)((st), __VA_ARGS__)
#define CK(call)                                                                                                   \
    do {                                                                                                           \
        const cudaError_t e_ = (call);                                                                             \
        if (e_ != cudaSuccess)                                                                                     \
            return FAIL(KVFP8_ERR_IO, "cuda: %s: %s", #call, cudaGetErrorString(e_));                              \
    } while (0)

kvfp8_status dev_buf(cuda_state *s, int which, size_t bytes, void **out) {
    if (bytes == 0)
        bytes = 16;
    if (s->cap[which] < bytes) {
        if (s->buf[which])
            cudaFree(s->buf[which]);
        s->buf[which] = nullptr;
        s->cap[which] = 0;
        const size_t want = std::max(bytes, s->cap[which] * 2);
        CK(cudaMalloc(&s->buf[which], want));
        s->cap[which] = want;
    }
    *out = s->buf[which];
    return KVFP8_OK;
}

kvfp8_status to_dev(cuda_state *s, int which, const void *host, size_t bytes, void **out) {
    kvfp8_status st = dev_buf(s, which, bytes, out);
    if (st != KVFP8_OK)
        return st;
    if (bytes)
        CK(cudaMemcpyAsync(*out, host, bytes, cudaMemcpyHostToDevice, s->stream));
    return KVFP8_OK;
}

kvfp8_status check_scale(cuda_state *s, float scale) {
    if (isnan(scale))
        return FAIL(KVFP8_ERR_INVALID, "cuda: scale is NaN");
    if (isinf(scale))
        return FAIL(KVFP8_ERR_INVALID, "cuda: scale is infinite");
    if (!(scale > 0.0f))
        return FAIL(KVFP8_ERR_INVALID, "cuda: scale must be > 0, got %g", (double)scale);
    return KVFP8_OK;
}

// Kernel time of the last call: events around the kernels only.
kvfp8_status begin_timing(cuda_state *s) {
    CK(cudaEventRecord(s->ev0, s->stream));
    return KVFP8_OK;
}
kvfp8_status end_timing(cuda_state *s) {
    CK(cudaEventRecord(s->ev1, s->stream));
    return KVFP8_OK;
}
kvfp8_status finish(cuda_state *s) {
    CK(cudaStreamSynchronize(s->stream));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, s->ev0, s->ev1));
    s->last_seconds = ms * 1e-3;
    return KVFP8_OK;
}

kvfp8_status cuda_create(const kvfp8_backend_host *host, void **state) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        return host_fail(host, 0)(KVFP8_ERR_UNSUPPORTED, "cuda backend not available: %s",
                          e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device");
    cuda_state *s = (cuda_state *)calloc(1, sizeof *s);
    if (!s)
        return host_fail(host, 0)(KVFP8_ERR_NOMEM, "cuda: backend state");
    s->host = host;
    int dev = 0;
    if ((e = cudaSetDevice(dev)) != cudaSuccess || (e = cudaStreamCreate(&s->stream)) != cudaSuccess ||
        (e = cudaEventCreate(&s->ev0)) != cudaSuccess || (e = cudaEventCreate(&s->ev1)) != cudaSuccess ||
        (e = cudaDeviceGetAttribute(&s->num_sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) {
        free(s);
        return host_fail(host, 0)(KVFP8_ERR_UNSUPPORTED, "cuda backend not available: %s", cudaGetErrorString(e));
    }
    *state = s;
    return KVFP8_OK;
}

void cuda_destroy(void *state) {
    cuda_state *s = (cuda_state *)state;
    if (!s)
        return;
    for (int i = 0; i < B_COUNT; i++)
        if (s->buf[i])
            cudaFree(s->buf[i]);
    if (s->ws)
        cudaFree(s->ws);
    cudaEventDestroy(s->ev0);
    cudaEventDestroy(s->ev1);
    cudaStreamDestroy(s->stream);
    free(s);
}

kvfp8_status decline(cuda_state *s, const char *what) {
    return FAIL(KVFP8_ERR_UNSUPPORTED, "cuda: %s is not supported", what);
}

kvfp8_status cuda_supports(void *state, const kvfp8_backend_query *q) {
    cuda_state *s = (cuda_state *)state;
    switch (q->op) {
    case KVFP8_OP_FP8_ENCODE:
        if ((unsigned)q->source >= KVFP8_SOURCE_COUNT || (unsigned)q->fp8.format >= KVFP8_FORMAT_COUNT)
            return decline(s, "this source type or format");
        return KVFP8_OK;
    case KVFP8_OP_FP8_DECODE:
        return (unsigned)q->fp8.format < KVFP8_FORMAT_COUNT ? KVFP8_OK : decline(s, "this FP8 format");
    case KVFP8_OP_CACHE_WRITE:
        if ((unsigned)q->source >= KVFP8_SOURCE_COUNT)
            return decline(s, "this source type");
        if (q->storage.is_fp8 ? (unsigned)q->storage.fp8.format >= KVFP8_FORMAT_COUNT
                              : (unsigned)q->storage.dtype > KVFP8_DTYPE_BF16)
            return decline(s, "this cache storage");
        return KVFP8_OK;
    case KVFP8_OP_PAGED_ATTENTION:
        if ((unsigned)q->read >= KVFP8_READ_COUNT || (unsigned)q->model_dtype > KVFP8_DTYPE_BF16)
            return decline(s, "this read semantics or model dtype");
        if (q->storage.is_fp8 ? (unsigned)q->storage.fp8.format >= KVFP8_FORMAT_COUNT
                              : (unsigned)q->storage.dtype > KVFP8_DTYPE_BF16)
            return decline(s, "this cache storage");
        if (q->head_size > 512)
            return decline(s, "a head size over 512");
        return KVFP8_OK;
    case KVFP8_OP_BLOCK_HASH:
        return decline(s, "block hashing (a CPU operation)");
    case KVFP8_OP_DEVICE_TIMING:
        return KVFP8_OK;
    }
    return FAIL(KVFP8_ERR_UNSUPPORTED, "cuda: unknown operation %d", (int)q->op);
}

kvfp8_status cuda_encode(void *state, const kvfp8_fp8_rules *r, kvfp8_source src, const void *in, uint8_t *out,
                         size_t n, float scale) {
    cuda_state *s = (cuda_state *)state;
    kvfp8_status st = check_scale(s, scale);
    if (st != KVFP8_OK)
        return st;
    if ((unsigned)src >= KVFP8_SOURCE_COUNT || (unsigned)r->format >= KVFP8_FORMAT_COUNT)
        return decline(s, "this source type or format");
    s->last_seconds = 0;
    if (n == 0)
        return KVFP8_OK;
    const size_t width = src == KVFP8_SRC_F32 ? 4 : 2;
    void *din = nullptr, *dout = nullptr;
    if ((st = to_dev(s, B_IN0, in, n * width, &din)) != KVFP8_OK || (st = dev_buf(s, B_OUT0, n, &dout)) != KVFP8_OK)
        return st;
    if ((st = begin_timing(s)) != KVFP8_OK)
        return st;
    CK(encode_buffer(*r, src, din, (uint8_t *)dout, n, scale, s->stream));
    if ((st = end_timing(s)) != KVFP8_OK)
        return st;
    CK(cudaMemcpyAsync(out, dout, n, cudaMemcpyDeviceToHost, s->stream));
    return finish(s);
}

kvfp8_status cuda_decode(void *state, kvfp8_format f, const uint8_t *in, float *out, size_t n, float scale) {
    cuda_state *s = (cuda_state *)state;
    kvfp8_status st = check_scale(s, scale);
    if (st != KVFP8_OK)
        return st;
    if ((unsigned)f >= KVFP8_FORMAT_COUNT)
        return decline(s, "this FP8 format");
    s->last_seconds = 0;
    if (n == 0)
        return KVFP8_OK;
    void *din = nullptr, *dout = nullptr;
    if ((st = to_dev(s, B_IN0, in, n, &din)) != KVFP8_OK || (st = dev_buf(s, B_OUT0, n * 4, &dout)) != KVFP8_OK)
        return st;
    if ((st = begin_timing(s)) != KVFP8_OK)
        return st;
    CK(decode_buffer(f, (const uint8_t *)din, (float *)dout, n, scale, s->stream));
    if ((st = end_timing(s)) != KVFP8_OK)
        return st;
    CK(cudaMemcpyAsync(out, dout, n * 4, cudaMemcpyDeviceToHost, s->stream));
    return finish(s);
}

size_t storage_bytes(const kvfp8_kv_storage *st) { return st->is_fp8 ? 1 : st->dtype == KVFP8_DTYPE_F32 ? 4 : 2; }

kvfp8_status upload_scales(cuda_state *s, const kvfp8_kv_cache *c, float **out) {
    float host[512];
    for (int i = 0; i < 256; i++) {
        host[i] = i < c->scale_count ? c->k_scale[i] : 1.0f;
        host[256 + i] = i < c->scale_count ? c->v_scale[i] : 1.0f;
    }
    return to_dev(s, B_SCALES, host, sizeof host, (void **)out);
}

kvfp8_status cuda_cache_write(void *state, kvfp8_kv_cache *c, kvfp8_source src, const void *key, const void *value,
                              const int64_t *slot_mapping, size_t num_tokens) {
    cuda_state *s = (cuda_state *)state;
    if ((unsigned)src >= KVFP8_SOURCE_COUNT)
        return FAIL(KVFP8_ERR_INVALID, "cache write: unknown source type %d", (int)src);
    const int64_t slots = (int64_t)c->num_blocks * c->block_size;
    for (size_t t = 0; t < num_tokens; t++) // validate everything before writing anything
        if (slot_mapping[t] >= slots)
            return FAIL(KVFP8_ERR_INVALID, "cache write: token %zu has slot %lld, beyond the %lld slots", t,
                        (long long)slot_mapping[t], (long long)slots);
    s->last_seconds = 0;
    if (num_tokens == 0)
        return KVFP8_OK;
    const size_t row = (size_t)c->num_kv_heads * (size_t)c->head_size;
    const size_t in_bytes = num_tokens * row * (src == KVFP8_SRC_F32 ? 4 : 2);
    const size_t cache_bytes = (size_t)slots * row * storage_bytes(&c->storage);
    CacheWriteArgs a;
    memset(&a, 0, sizeof a);
    void *p = nullptr;
    kvfp8_status st;
    if ((st = to_dev(s, B_IN0, key, in_bytes, &p)) != KVFP8_OK)
        return st;
    a.key = p;
    if ((st = to_dev(s, B_IN1, value, in_bytes, &p)) != KVFP8_OK)
        return st;
    a.value = p;
    if ((st = to_dev(s, B_AUX0, slot_mapping, num_tokens * sizeof(int64_t), &p)) != KVFP8_OK)
        return st;
    a.slot_mapping = (const int64_t *)p;
    if ((st = to_dev(s, B_OUT0, c->key_cache, cache_bytes, &p)) != KVFP8_OK)
        return st;
    a.key_cache = (uint8_t *)p;
    if ((st = to_dev(s, B_OUT1, c->value_cache, cache_bytes, &p)) != KVFP8_OK)
        return st;
    a.value_cache = (uint8_t *)p;
    float *scales;
    if ((st = upload_scales(s, c, &scales)) != KVFP8_OK)
        return st;
    a.scales = scales;
    a.per_head = c->scale_count > 1;
    a.num_tokens = (int64_t)num_tokens;
    a.num_heads = c->num_kv_heads;
    a.head_size = c->head_size;
    a.storage = c->storage;
    a.src = src;
    if ((st = begin_timing(s)) != KVFP8_OK)
        return st;
    CK(cache_write(a, s->stream));
    if ((st = end_timing(s)) != KVFP8_OK)
        return st;
    CK(cudaMemcpyAsync(c->key_cache, a.key_cache, cache_bytes, cudaMemcpyDeviceToHost, s->stream));
    CK(cudaMemcpyAsync(c->value_cache, a.value_cache, cache_bytes, cudaMemcpyDeviceToHost, s->stream));
    return finish(s);
}

// ---- paged attention ------------------------------------------------------------------------

float host_round_bf16(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7F800000u) == 0x7F800000u)
        return x;
    b = (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;
    float y;
    memcpy(&y, &b, 4);
    return y;
}

// Whether x is exactly a float16 value (finite).
bool host_is_f16(float x) {
    if (!isfinite(x))
        return false;
    const float a = fabsf(x);
    if (a == 0.0f)
        return true;
    if (a > 65504.0f)
        return false;
    int e;
    frexpf(a, &e); // a = f * 2^e, f in [0.5, 1)
    const int exponent = std::max(e - 1, -14);
    const float q = ldexpf(a, 10 - exponent); // an integer iff a is on the half grid
    return q == floorf(q);
}

bool queries_exact(const float *q, size_t n, kvfp8_model_dtype d) {
    for (size_t i = 0; i < n; i++) {
        if (d == KVFP8_DTYPE_BF16 ? !(isfinite(q[i]) && host_round_bf16(q[i]) == q[i]) : !host_is_f16(q[i]))
            return false;
    }
    return true;
}

kvfp8_status validate(cuda_state *s, const kvfp8_attention_params *p, const kvfp8_kv_cache *c, const float *nk,
                      const float *nv) {
    if (p->num_seqs < 0 || !p->query_start_loc || !p->seq_lens || !p->block_table)
        return FAIL(KVFP8_ERR_INVALID, "attention: num_seqs, query_start_loc, seq_lens and block_table are required");
    if (p->num_q_heads <= 0 || p->num_q_heads % c->num_kv_heads)
        return FAIL(KVFP8_ERR_INVALID, "attention: num_q_heads=%d is not a positive multiple of num_kv_heads=%d",
                    p->num_q_heads, c->num_kv_heads);
    if (!(p->softmax_scale > 0) || !isfinite(p->softmax_scale))
        return FAIL(KVFP8_ERR_INVALID, "attention: softmax_scale must be finite and > 0");
    if (p->sliding_window < 0 || p->logits_soft_cap < 0)
        return FAIL(KVFP8_ERR_INVALID, "attention: sliding_window and logits_soft_cap must be >= 0");
    if ((unsigned)p->read >= KVFP8_READ_COUNT)
        return FAIL(KVFP8_ERR_INVALID, "attention: unknown read semantics %d", (int)p->read);
    if ((unsigned)p->model_dtype > KVFP8_DTYPE_BF16)
        return FAIL(KVFP8_ERR_INVALID, "attention: unknown model dtype %d", (int)p->model_dtype);
    if (p->read == KVFP8_READ_MIXED && (!nk || !nv))
        return FAIL(KVFP8_ERR_INVALID, "attention: read semantics 'mixed' needs the new tokens' K and V");
    if (c->head_size > 512)
        return FAIL(KVFP8_ERR_UNSUPPORTED, "cuda: a head size over 512 is not supported");
    if (p->num_seqs > 0 && p->query_start_loc[0] != 0)
        return FAIL(KVFP8_ERR_INVALID, "attention: query_start_loc[0] must be 0");
    for (int q = 0; q < p->num_seqs; q++) {
        const int q_len = p->query_start_loc[q + 1] - p->query_start_loc[q], len = p->seq_lens[q];
        if (q_len < 0 || q_len > len)
            return FAIL(KVFP8_ERR_INVALID, "attention: sequence %d has %d query tokens and seq_len %d", q, q_len, len);
        const int blocks = (len + c->block_size - 1) / c->block_size;
        if (blocks > p->max_blocks_per_seq)
            return FAIL(KVFP8_ERR_INVALID, "attention: sequence %d needs %d blocks, block table has %d", q, blocks,
                        p->max_blocks_per_seq);
        for (int b = 0; b < blocks; b++) {
            const int id = p->block_table[q * p->max_blocks_per_seq + b];
            if (id < 0 || id >= c->num_blocks)
                return FAIL(KVFP8_ERR_INVALID, "attention: sequence %d block %d maps to %d, outside 0..%d", q, b, id,
                            c->num_blocks - 1);
        }
    }
    return KVFP8_OK;
}

kvfp8_status cuda_attention(void *state, const kvfp8_attention_params *p, const kvfp8_kv_cache *c,
                            const float *query, const float *new_key, const float *new_value, float *out) {
    cuda_state *s = (cuda_state *)state;
    kvfp8_status st = validate(s, p, c, new_key, new_value);
    if (st != KVFP8_OK)
        return st;
    s->last_seconds = 0;
    const int num_tokens = p->num_seqs > 0 ? p->query_start_loc[p->num_seqs] : 0;
    if (num_tokens == 0)
        return KVFP8_OK;
    const int Hq = p->num_q_heads, Hkv = c->num_kv_heads, D = c->head_size, group = Hq / Hkv;
    const size_t q_elems = (size_t)num_tokens * Hq * D, kv_new = (size_t)num_tokens * Hkv * D;
    const size_t cache_bytes =
        (size_t)c->num_blocks * c->block_size * Hkv * D * storage_bytes(&c->storage);

    AttnArgs a;
    memset(&a, 0, sizeof a);
    a.max_blocks_per_seq = p->max_blocks_per_seq;
    a.per_head_scales = c->scale_count > 1;
    a.num_seqs = p->num_seqs;
    a.num_q_heads = Hq;
    a.num_kv_heads = Hkv;
    a.head_size = D;
    a.block_size = c->block_size;
    a.softmax_scale = (float)p->softmax_scale;
    a.sliding_window = p->sliding_window;
    a.soft_cap = (float)p->logits_soft_cap;
    a.read = p->read;
    a.model_dtype = p->model_dtype;
    a.storage = c->storage;

    // which kernel serves which sequence
    const bool exact_q = (p->model_dtype == KVFP8_DTYPE_BF16 || p->model_dtype == KVFP8_DTYPE_F16) &&
                         queries_exact(query, q_elems, p->model_dtype);
    // e4m3fn under `uniform`: the decode kernel's float16 path when the query rows allow it
    a.q_f16_rows = c->storage.is_fp8 && c->storage.fp8.format == KVFP8_E4M3FN && p->read == KVFP8_READ_UNIFORM &&
                   queries_f16_rows(query, (size_t)num_tokens * Hq, D);
    const bool mma_decode = exact_q && attention_mma_ok(a, 0, nullptr);
    const bool mma_prefill = exact_q && attention_mma_ok(a, 1, nullptr);
    std::vector<int> decode_seqs, prefill_items, generic_tokens, token_seq((size_t)num_tokens);
    int max_len_decode = 1;
    const int tq = prefill_tile_tokens(group);
    for (int q = 0; q < p->num_seqs; q++) {
        const int begin = p->query_start_loc[q], q_len = p->query_start_loc[q + 1] - begin;
        for (int i = 0; i < q_len; i++)
            token_seq[(size_t)(begin + i)] = q;
        if (q_len == 0)
            continue;
        if (q_len == 1 && mma_decode) {
            decode_seqs.push_back(q);
            max_len_decode = std::max(max_len_decode, p->seq_lens[q]);
        } else if (q_len > 1 && mma_prefill) {
            for (int t0 = 0; t0 < q_len; t0 += tq)
                prefill_items.push_back(q), prefill_items.push_back(t0);
        } else {
            for (int i = 0; i < q_len; i++)
                generic_tokens.push_back(begin + i);
        }
    }

    void *d = nullptr;
    float *scales = nullptr;
#define UP(slot, host, bytes, field, type)                                                                          \
    do {                                                                                                           \
        if ((st = to_dev(s, slot, host, bytes, &d)) != KVFP8_OK)                                                   \
            return st;                                                                                             \
        field = (type)d;                                                                                           \
    } while (0)
    UP(B_IN0, c->key_cache, cache_bytes, a.key_cache, const uint8_t *);
    UP(B_IN1, c->value_cache, cache_bytes, a.value_cache, const uint8_t *);
    UP(B_AUX0, p->block_table, sizeof(int) * (size_t)p->num_seqs * p->max_blocks_per_seq, a.block_table, const int *);
    UP(B_AUX1, p->seq_lens, sizeof(int) * (size_t)p->num_seqs, a.seq_lens, const int *);
    UP(B_AUX2, p->query_start_loc, sizeof(int) * (size_t)(p->num_seqs + 1), a.query_start_loc, const int *);
    UP(B_OUT1, query, sizeof(float) * q_elems, a.query, const float *);
    if (p->read == KVFP8_READ_MIXED) {
        // new K and V share one buffer: [key | value]
        if ((st = dev_buf(s, B_AUX5, 2 * sizeof(float) * kv_new, &d)) != KVFP8_OK)
            return st;
        CK(cudaMemcpyAsync(d, new_key, sizeof(float) * kv_new, cudaMemcpyHostToDevice, s->stream));
        CK(cudaMemcpyAsync((float *)d + kv_new, new_value, sizeof(float) * kv_new, cudaMemcpyHostToDevice, s->stream));
        a.new_key = (const float *)d;
        a.new_value = (const float *)d + kv_new;
    }
    if ((st = upload_scales(s, c, &scales)) != KVFP8_OK)
        return st;
    a.scales = scales;
    if ((st = dev_buf(s, B_OUT0, sizeof(float) * q_elems, &d)) != KVFP8_OK)
        return st;
    a.out = (float *)d;
    // lists: [token_seq | generic tokens | decode seqs | prefill items]
    std::vector<int> lists(token_seq);
    const size_t off_gen = lists.size();
    lists.insert(lists.end(), generic_tokens.begin(), generic_tokens.end());
    const size_t off_dec = lists.size();
    lists.insert(lists.end(), decode_seqs.begin(), decode_seqs.end());
    const size_t off_pre = lists.size();
    lists.insert(lists.end(), prefill_items.begin(), prefill_items.end());
    int *dl = nullptr;
    UP(B_AUX3, lists.data(), sizeof(int) * lists.size(), dl, int *);
#undef UP

    int split_len = 16, max_splits = 1;
    if (!decode_seqs.empty()) {
        split_len = decode_default_split((int)decode_seqs.size(), max_len_decode, Hkv, group, s->num_sms);
        max_splits = (max_len_decode + split_len - 1) / split_len;
        const size_t ws = decode_workspace_bytes((int)decode_seqs.size(), Hkv, group, D, max_splits);
        if (s->ws_cap < ws) {
            if (s->ws)
                cudaFree(s->ws);
            s->ws = nullptr;
            s->ws_cap = 0;
            CK(cudaMalloc(&s->ws, ws));
            CK(cudaMemset(s->ws, 0, ws)); // the split counters start (and stay) at zero
            s->ws_cap = ws;
        }
    }
    // the counters sit after the partial results, whose size depends on the call: clear them
    if (!decode_seqs.empty() && max_splits > 1) {
        const size_t units = decode_seqs.size() * (size_t)Hkv * (size_t)((group + 7) / 8);
        const size_t cnt_off = units * (size_t)max_splits * 8 * ((size_t)D + 2) * sizeof(float);
        CK(cudaMemsetAsync((char *)s->ws + cnt_off, 0, units * sizeof(int), s->stream));
    }

    if ((st = begin_timing(s)) != KVFP8_OK)
        return st;
    if (!decode_seqs.empty())
        CK(decode_mma(a, dl + off_dec, (int)decode_seqs.size(), max_len_decode, split_len, s->ws, s->stream));
    if (!prefill_items.empty())
        CK(prefill_mma(a, dl + off_pre, (int)(prefill_items.size() / 2), s->stream));
    if (!generic_tokens.empty())
        CK(attention_generic(a, dl, dl + off_gen, (int)generic_tokens.size(), s->stream));
    if ((st = end_timing(s)) != KVFP8_OK)
        return st;
    CK(cudaMemcpyAsync(out, a.out, sizeof(float) * q_elems, cudaMemcpyDeviceToHost, s->stream));
    return finish(s);
}

kvfp8_status cuda_timing(void *state, kvfp8_backend_timing *out) {
    cuda_state *s = (cuda_state *)state;
    if (s->copy_bps <= 0) {
        const size_t bytes = (size_t)256 << 20;
        void *x = nullptr, *y = nullptr;
        CK(cudaMalloc(&x, bytes));
        if (cudaMalloc(&y, bytes) != cudaSuccess) {
            cudaFree(x);
            return FAIL(KVFP8_ERR_IO, "cuda: no memory for the copy ceiling");
        }
        cudaMemsetAsync(x, 1, bytes, s->stream);
        float best = 1e30f;
        for (int i = 0; i < 12; i++) {
            cudaEventRecord(s->ev0, s->stream);
            cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice, s->stream);
            cudaEventRecord(s->ev1, s->stream);
            cudaEventSynchronize(s->ev1);
            float ms = 0;
            cudaEventElapsedTime(&ms, s->ev0, s->ev1);
            if (i >= 2 && ms > 0 && ms < best)
                best = ms;
        }
        cudaFree(x);
        cudaFree(y);
        CK(cudaGetLastError());
        s->copy_bps = 2.0 * (double)bytes / (best * 1e-3);
    }
    out->seconds = s->last_seconds;
    out->copy_bytes_per_second = s->copy_bps;
    return KVFP8_OK;
}

const kvfp8_backend_ops cuda_ops = {
    KVFP8_BACKEND_ABI_VERSION,
    sizeof(kvfp8_backend_ops),
    "cuda",
    cuda_create,
    cuda_destroy,
    cuda_supports,
    cuda_encode,
    cuda_decode,
    cuda_cache_write,
    cuda_attention,
    nullptr, // block_hash: declined
    cuda_timing,
};

} // namespace

extern "C" KVFP8_BACKEND_EXPORT const kvfp8_backend_ops *kvfp8_backend_entry(uint32_t host_abi_version) {
    return host_abi_version == KVFP8_BACKEND_ABI_VERSION ? &cuda_ops : nullptr;
}
