/* Backend differential: any backend, driven through the backend interface, against
 * the reference on inputs decoded from the fuzz data.
 *
 * The backend under test is KVFP8_FUZZ_BACKEND ("cpu" by default; "cuda" or a
 * plugin path work too).  Per input, one operation: FP8 encode (EXACT), FP8 decode
 * (EXACT), cache write (EXACT, the whole cache compared), or paged attention (within
 * kvfp8_attention_error_bound for float32 accumulation).  A combination the backend
 * declines through `supports` is skipped: declining is allowed, a wrong answer is
 * not.  On a mismatch the target prints the operation, the inputs in hex and both
 * results, and traps. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/backend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kvfp8_backend backend;

static const kvfp8_backend *under_test(void) {
    static int ready;
    if (!ready) {
        const char *name = getenv("KVFP8_FUZZ_BACKEND");
        if (kvfp8_backend_load(name ? name : "cpu", &backend) != KVFP8_OK) {
            fprintf(stderr, "fuzz_backend: cannot load backend %s: %s\n", name ? name : "cpu", kvfp8_last_error());
            abort();
        }
        ready = 1;
    }
    return &backend;
}

typedef struct {
    const uint8_t *p;
    size_t n;
} reader;

static unsigned take(reader *r, unsigned mod) {
    unsigned v = 0;
    if (r->n) {
        v = *r->p++;
        r->n--;
    }
    return mod ? v % mod : v;
}

static int pick_rules(reader *r, kvfp8_fp8_rules *out) {
    kvfp8_fp8_rules all[KVFP8_FORMAT_COUNT * KVFP8_MODE_COUNT * KVFP8_PROFILE_COUNT];
    int n = 0;
    for (int p = 0; p < KVFP8_PROFILE_COUNT; p++)
        for (int f = 0; f < KVFP8_FORMAT_COUNT; f++)
            for (int m = 0; m < KVFP8_MODE_COUNT; m++)
                if (kvfp8_fp8_rules_get((kvfp8_format)f, (kvfp8_mode)m, (kvfp8_profile)p, &all[n]) == KVFP8_OK)
                    n++;
    *out = all[take(r, (unsigned)n)];
    return 1;
}

static float pick_scale(reader *r) {
    static const float scales[] = {1.0f, 0.5f, 3.0f, 1.0f / 448.0f, 0.0173f, 17.25f, 0x1p-20f, 1000.0f};
    return scales[take(r, 8)];
}

static void fuzz_encode(const kvfp8_backend *b, reader *r) {
    kvfp8_backend_query q;
    memset(&q, 0, sizeof q);
    q.op = KVFP8_OP_FP8_ENCODE;
    pick_rules(r, &q.fp8);
    q.source = (kvfp8_source)take(r, KVFP8_SOURCE_COUNT);
    const float scale = pick_scale(r);
    if (b->ops->supports(b->state, &q) != KVFP8_OK)
        return;
    const size_t width = q.source == KVFP8_SRC_F32 ? 4 : 2, n = r->n / width;
    if (n == 0)
        return;
    uint8_t *got = malloc(n), *want = malloc(n);
    if (b->ops->fp8_encode(b->state, &q.fp8, q.source, r->p, got, n, scale) != KVFP8_OK) {
        fprintf(stderr, "backend %s: fp8_encode failed after supports said yes: %s\n", b->ops->name, kvfp8_last_error());
        __builtin_trap();
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t x = r->p[i * width] | (uint32_t)r->p[i * width + 1] << 8;
        if (width == 4)
            x |= (uint32_t)r->p[i * 4 + 2] << 16 | (uint32_t)r->p[i * 4 + 3] << 24;
        want[i] = kvfp8_fp8_encode_scaled_ref(&q.fp8, q.source, x, scale);
        const int nan_ok = q.fp8.any_nan_conforms && kvfp8_fp8_is_nan(q.fp8.format, got[i]) &&
                           kvfp8_fp8_is_nan(q.fp8.format, want[i]);
        if (got[i] != want[i] && !nan_ok) {
            fprintf(stderr, "backend %s: fp8_encode %s 0x%0*x / %a fmt=%s mode=%s profile=%s => 0x%02x, expected 0x%02x\n",
                    b->ops->name, kvfp8_source_name(q.source), (int)width * 2, x, (double)scale,
                    kvfp8_format_name(q.fp8.format), kvfp8_mode_name(q.fp8.mode), kvfp8_profile_name(q.fp8.profile),
                    got[i], want[i]);
            __builtin_trap();
        }
    }
    free(got), free(want);
}

static void fuzz_decode(const kvfp8_backend *b, reader *r) {
    kvfp8_backend_query q;
    memset(&q, 0, sizeof q);
    q.op = KVFP8_OP_FP8_DECODE;
    q.fp8.format = (kvfp8_format)take(r, KVFP8_FORMAT_COUNT);
    const float scale = pick_scale(r);
    if (b->ops->supports(b->state, &q) != KVFP8_OK || r->n == 0)
        return;
    float *got = malloc(r->n * sizeof(float));
    if (b->ops->fp8_decode(b->state, q.fp8.format, r->p, got, r->n, scale) != KVFP8_OK)
        __builtin_trap();
    for (size_t i = 0; i < r->n; i++) {
        const float want = kvfp8_fp8_dequant(q.fp8.format, r->p[i], scale);
        uint32_t a, c;
        memcpy(&a, &got[i], 4);
        memcpy(&c, &want, 4);
        if (a != c && !(isnan(got[i]) && isnan(want))) {
            fprintf(stderr, "backend %s: fp8_decode %s 0x%02x * %a => %08x, expected %08x\n", b->ops->name,
                    kvfp8_format_name(q.fp8.format), r->p[i], (double)scale, a, c);
            __builtin_trap();
        }
    }
    free(got);
}

/* A small cache filled through the backend and through the reference; then either
 * the two caches are compared byte for byte, or attention runs on the reference's
 * cache through both. */
static void fuzz_cache_and_attention(const kvfp8_backend *b, reader *r, int attention) {
    kvfp8_kv_storage st;
    memset(&st, 0, sizeof st);
    st.is_fp8 = (int)take(r, 2);
    st.dtype = KVFP8_DTYPE_BF16;
    if (st.is_fp8)
        pick_rules(r, &st.fp8);
    static const int head_sizes[] = {64, 128, 256, 8};
    const int kv_heads = 1 + (int)take(r, 2), group = 1 + (int)take(r, 4), head_size = head_sizes[take(r, 4)];
    const int block_size = take(r, 2) ? 16 : 32, blocks = 2 + (int)take(r, 3);
    const int per_head = kv_heads > 1 && take(r, 2);
    const kvfp8_source src = (kvfp8_source)take(r, KVFP8_SOURCE_COUNT);
    kvfp8_backend_query q;
    memset(&q, 0, sizeof q);
    q.op = attention ? KVFP8_OP_PAGED_ATTENTION : KVFP8_OP_CACHE_WRITE;
    q.storage = st;
    q.fp8 = st.fp8;
    q.source = src;
    q.read = (kvfp8_read_semantics)take(r, KVFP8_READ_COUNT);
    q.model_dtype = KVFP8_DTYPE_BF16;
    q.head_size = head_size;
    q.block_size = block_size;
    q.num_q_heads = kv_heads * group;
    q.num_kv_heads = kv_heads;
    q.per_head_scales = per_head;
    const int seq_len = 1 + (int)take(r, (unsigned)(blocks * block_size));
    const int q_len = 1 + (int)take(r, (unsigned)seq_len);
    q.max_query_len = q_len;
    q.chunked_prefill = q_len > 1 && q_len < seq_len;
    if (b->ops->supports(b->state, &q) != KVFP8_OK)
        return;
    kvfp8_kv_cache mine, ref;
    if (kvfp8_kv_cache_init(&mine, &st, blocks + 1, block_size, kv_heads, head_size) != KVFP8_OK ||
        kvfp8_kv_cache_init(&ref, &st, blocks + 1, block_size, kv_heads, head_size) != KVFP8_OK)
        abort();
    float ks[4], vs[4];
    for (int h = 0; h < (per_head ? kv_heads : 1); h++)
        ks[h] = 0.005f * (float)(1 + take(r, 200)), vs[h] = 0.005f * (float)(1 + take(r, 200));
    (void)kvfp8_kv_cache_set_scales(&mine, ks, vs, per_head ? kv_heads : 1);
    (void)kvfp8_kv_cache_set_scales(&ref, ks, vs, per_head ? kv_heads : 1);
    const size_t per_tok = (size_t)kv_heads * (size_t)head_size, n = (size_t)seq_len * per_tok;
    const size_t width = src == KVFP8_SRC_F32 ? 4 : 2;
    uint8_t *k = malloc(n * width), *v = malloc(n * width);
    float *kf = malloc(n * sizeof(float)), *vf = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        /* bf16 values from about 0.008 to 500 (FP8 saturates some of them): the model
         * dtype holds them exactly */
        const float a = kvfp8_bf16_to_f32((uint16_t)(take(r, 0) | (0x3C00u + (take(r, 0) & 0x7Fu) * 0x10u))) *
                        (take(r, 2) ? 1.0f : -1.0f);
        const float c = kvfp8_bf16_to_f32((uint16_t)(take(r, 0) | (0x3C00u + (take(r, 0) & 0x7Fu) * 0x10u)));
        kf[i] = a, vf[i] = c;
        uint32_t ab, cb;
        if (src == KVFP8_SRC_F32) {
            memcpy(&ab, &a, 4), memcpy(&cb, &c, 4);
        } else if (src == KVFP8_SRC_F16) {
            ab = kvfp8_f32_to_f16(a), cb = kvfp8_f32_to_f16(c);
            kf[i] = kvfp8_f16_to_f32((uint16_t)ab), vf[i] = kvfp8_f16_to_f32((uint16_t)cb);
        } else {
            ab = kvfp8_f32_to_bf16(a), cb = kvfp8_f32_to_bf16(c);
        }
        memcpy(k + i * width, &ab, width);
        memcpy(v + i * width, &cb, width);
    }
    int64_t *slots = malloc(sizeof(int64_t) * (size_t)seq_len);
    int *table = malloc(sizeof(int) * (size_t)blocks);
    for (int i = 0; i < blocks; i++)
        table[i] = blocks - i; /* physical blocks in reverse: never the identity */
    for (int t = 0; t < seq_len; t++)
        slots[t] = (int64_t)table[t / block_size] * block_size + t % block_size;
    if (kvfp8_cache_write(&ref, src, k, v, slots, (size_t)seq_len) != KVFP8_OK)
        abort();
    if (!attention) {
        if (b->ops->cache_write(b->state, &mine, src, k, v, slots, (size_t)seq_len) != KVFP8_OK)
            __builtin_trap();
        const size_t bytes = (size_t)(blocks + 1) * block_size * per_tok * kvfp8_kv_storage_bytes(&st);
        for (size_t i = 0; i < bytes; i++)
            if (mine.key_cache[i] != ref.key_cache[i] || mine.value_cache[i] != ref.value_cache[i]) {
                fprintf(stderr, "backend %s: cache_write byte %zu: K %02x/%02x V %02x/%02x (backend/reference)\n",
                        b->ops->name, i, mine.key_cache[i], ref.key_cache[i], mine.value_cache[i],
                        ref.value_cache[i]);
                __builtin_trap();
            }
    } else {
        const int qh = kv_heads * group;
        const size_t on = (size_t)q_len * qh * head_size;
        float *query = malloc(on * sizeof(float)), *got = malloc(on * sizeof(float));
        double *want = malloc(on * sizeof(double)), *bound = malloc(on * sizeof(double));
        for (size_t i = 0; i < on; i++)
            query[i] = kvfp8_bf16_to_f32((uint16_t)(0x3E00u + take(r, 0) * 2u)) * (take(r, 2) ? 1.0f : -1.0f);
        int qsl[2] = {0, q_len}, lens[1] = {seq_len};
        kvfp8_attention_params p = {1, qsl, lens, table, blocks, qh, 1.0 / sqrt((double)head_size), 0, 0, q.read,
                                    KVFP8_DTYPE_BF16};
        const float *nk = kf + (size_t)(seq_len - q_len) * per_tok, *nv = vf + (size_t)(seq_len - q_len) * per_tok;
        if (kvfp8_paged_attention_ref(&p, &ref, query, nk, nv, want) != KVFP8_OK ||
            kvfp8_attention_error_bound(&p, &ref, query, nk, nv, KVFP8_DTYPE_F32, KVFP8_DTYPE_F32, bound) != KVFP8_OK)
            abort();
        if (b->ops->paged_attention(b->state, &p, &ref, query, nk, nv, got) != KVFP8_OK)
            __builtin_trap();
        for (size_t i = 0; i < on; i++) {
            /* a NaN in the cache (NONSAT overflow) makes the reference NaN: the
             * backend must agree on that, not land within a NaN bound */
            if (isnan(want[i]) && isnan(got[i]))
                continue;
            if (!(fabs((double)got[i] - want[i]) <= bound[i])) {
                fprintf(stderr, "backend %s: attention element %zu (read %s, head %d, block %d, len %d, q_len %d): "
                                "%.9g, reference %.17g, bound %.3g\n",
                        b->ops->name, i, kvfp8_read_semantics_name(q.read), head_size, block_size, seq_len, q_len,
                        (double)got[i], want[i], bound[i]);
                __builtin_trap();
            }
        }
        free(query), free(got), free(want), free(bound);
    }
    free(k), free(v), free(kf), free(vf), free(slots), free(table);
    kvfp8_kv_cache_free(&mine);
    kvfp8_kv_cache_free(&ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const kvfp8_backend *b = under_test();
    reader r = {data, size};
    switch (take(&r, 4)) {
    case 0: fuzz_encode(b, &r); break;
    case 1: fuzz_decode(b, &r); break;
    case 2: fuzz_cache_and_attention(b, &r, 0); break;
    default: fuzz_cache_and_attention(b, &r, 1); break;
    }
    return 0;
}
