/* Small-shape attention differential: the paged reference (ref/attention.c) against
 * a naive attention written here from the definition, on shapes, block tables,
 * cache contents and options decoded from the input.
 *
 * The naive side gathers each sequence's K/V in logical order with its own index
 * arithmetic, applies the causal / sliding-window mask and the soft cap, and does a
 * plain softmax.  The two are both double precision and must agree to 1e-9
 * relative; on a mismatch the target prints the shape and traps. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/attention.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *p;
    size_t n;
} reader;

static unsigned take(reader *r, unsigned mod) {
    if (r->n == 0)
        return 0;
    unsigned v = *r->p++;
    r->n--;
    return mod ? v % mod : v;
}

/* A bf16 value from two input bytes: every finite bf16 with |x| < 64, roughly. */
static float take_value(reader *r) {
    unsigned b = take(r, 0) | take(r, 0) << 8;
    float x = kvfp8_bf16_to_f32((uint16_t)b);
    if (!isfinite(x) || fabsf(x) > 64.0f)
        x = (float)((int)(b % 257) - 128) / 32.0f;
    return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reader r = {data, size};
    const int kv_heads = 1 + (int)take(&r, 3), group = 1 + (int)take(&r, 3), head_size = 1 + (int)take(&r, 8);
    const int block_size = 1 + (int)take(&r, 5), num_seqs = 1 + (int)take(&r, 3);
    const kvfp8_read_semantics read = (kvfp8_read_semantics)take(&r, KVFP8_READ_COUNT);
    const int fp8 = (int)take(&r, 2), window = (int)take(&r, 4) * 3;
    const double cap = take(&r, 3) == 0 ? 5.0 : 0.0;
    int lens[4], qlens[4], qsl[5] = {0};
    int total_blocks = 0, max_blocks = 0;
    for (int s = 0; s < num_seqs; s++) {
        lens[s] = 1 + (int)take(&r, 24);
        qlens[s] = 1 + (int)take(&r, (unsigned)lens[s]);
        qsl[s + 1] = qsl[s] + qlens[s];
        const int b = (lens[s] + block_size - 1) / block_size;
        total_blocks += b;
        if (b > max_blocks)
            max_blocks = b;
    }
    kvfp8_kv_storage st;
    memset(&st, 0, sizeof st);
    st.is_fp8 = fp8;
    st.dtype = KVFP8_DTYPE_BF16;
    if (fp8 && kvfp8_fp8_rules_get(take(&r, 2) ? KVFP8_E4M3FN : KVFP8_E5M2, KVFP8_SAT, KVFP8_PROFILE_NVIDIA,
                                   &st.fp8) != KVFP8_OK)
        abort();
    kvfp8_kv_cache c;
    if (kvfp8_kv_cache_init(&c, &st, total_blocks + 1, block_size, kv_heads, head_size) != KVFP8_OK)
        abort();
    float ks[4], vs[4];
    for (int h = 0; h < kv_heads; h++)
        ks[h] = 0.01f * (float)(1 + take(&r, 64)), vs[h] = 0.01f * (float)(1 + take(&r, 64));
    if (kvfp8_kv_cache_set_scales(&c, ks, vs, kv_heads) != KVFP8_OK)
        abort();
    /* a block table that is a permutation of the physical blocks 1..total */
    int *table = calloc((size_t)(num_seqs * max_blocks), sizeof(int));
    int *perm = malloc(sizeof(int) * (size_t)total_blocks);
    for (int i = 0; i < total_blocks; i++)
        perm[i] = i + 1;
    for (int i = total_blocks - 1; i > 0; i--) {
        int j = (int)take(&r, (unsigned)(i + 1));
        int t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    const size_t per_tok = (size_t)kv_heads * (size_t)head_size;
    int used = 0, tokens = qsl[num_seqs], all_tokens = 0;
    for (int s = 0; s < num_seqs; s++)
        all_tokens += lens[s];
    float *k_all = malloc(sizeof(float) * (size_t)all_tokens * per_tok);
    float *v_all = malloc(sizeof(float) * (size_t)all_tokens * per_tok);
    int64_t *slots = malloc(sizeof(int64_t) * (size_t)all_tokens);
    float *nk = malloc(sizeof(float) * (size_t)tokens * per_tok), *nv = malloc(sizeof(float) * (size_t)tokens * per_tok);
    const int q_heads = kv_heads * group;
    float *q = malloc(sizeof(float) * (size_t)tokens * (size_t)q_heads * (size_t)head_size);
    int at = 0;
    for (int s = 0; s < num_seqs; s++) {
        const int b = (lens[s] + block_size - 1) / block_size;
        for (int i = 0; i < b; i++)
            table[s * max_blocks + i] = perm[used++];
        for (int t = 0; t < lens[s]; t++, at++) {
            slots[at] = (int64_t)table[s * max_blocks + t / block_size] * block_size + t % block_size;
            for (size_t e = 0; e < per_tok; e++)
                k_all[(size_t)at * per_tok + e] = take_value(&r), v_all[(size_t)at * per_tok + e] = take_value(&r);
            if (t >= lens[s] - qlens[s]) { /* the chunk's unquantized K/V, for `mixed` */
                const size_t qt = (size_t)(qsl[s] + t - (lens[s] - qlens[s]));
                memcpy(nk + qt * per_tok, k_all + (size_t)at * per_tok, sizeof(float) * per_tok);
                memcpy(nv + qt * per_tok, v_all + (size_t)at * per_tok, sizeof(float) * per_tok);
            }
        }
    }
    for (size_t i = 0; i < (size_t)tokens * (size_t)q_heads * (size_t)head_size; i++)
        q[i] = take_value(&r);
    if (kvfp8_cache_write(&c, KVFP8_SRC_F32, k_all, v_all, slots, (size_t)all_tokens) != KVFP8_OK)
        abort();
    const double scale = 1.0 / sqrt((double)head_size);
    kvfp8_attention_params p = {num_seqs, qsl, lens, table, max_blocks, q_heads, scale, window, cap, read,
                                KVFP8_DTYPE_BF16};
    const size_t out_n = (size_t)tokens * (size_t)q_heads * (size_t)head_size;
    double *out = malloc(sizeof(double) * out_n);
    if (kvfp8_paged_attention_ref(&p, &c, q, nk, nv, out) != KVFP8_OK) {
        fprintf(stderr, "attention refused a valid shape: %s\n", kvfp8_last_error());
        abort();
    }
    /* the naive side */
    double *sc = malloc(sizeof(double) * 32);
    for (int s = 0, base = 0; s < num_seqs; base += lens[s], s++)
        for (int i = 0; i < qlens[s]; i++) {
            const int pos = lens[s] - qlens[s] + i;
            for (int h = 0; h < q_heads; h++) {
                const int kvh = h / group;
                const float *qv = q + ((size_t)(qsl[s] + i) * (size_t)q_heads + (size_t)h) * (size_t)head_size;
                double mx = -INFINITY;
                for (int j = 0; j < lens[s]; j++) {
                    sc[j] = NAN;
                    if (j > pos || (window && j <= pos - window))
                        continue;
                    double dot = 0;
                    for (int d = 0; d < head_size; d++) {
                        double kk;
                        const int64_t slot = slots[base + j];
                        if (read == KVFP8_READ_MIXED && j >= lens[s] - qlens[s])
                            kk = k_all[((size_t)(base + j)) * per_tok + (size_t)kvh * head_size + d];
                        else if (read == KVFP8_READ_UNIFORM)
                            kk = kvfp8_cache_read_exact(&c, 0, slot, kvh, d);
                        else
                            kk = fp8 ? kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, kvfp8_cache_read_f32(&c, 0, slot, kvh, d))
                                     : kvfp8_cache_read_f32(&c, 0, slot, kvh, d);
                        dot += qv[d] * kk;
                    }
                    dot *= scale;
                    if (cap > 0)
                        dot = cap * tanh(dot / cap);
                    sc[j] = dot;
                    mx = fmax(mx, dot);
                }
                double sum = 0;
                for (int j = 0; j < lens[s]; j++)
                    if (!isnan(sc[j]))
                        sum += sc[j] = exp(sc[j] - mx);
                for (int d = 0; d < head_size; d++) {
                    double acc = 0, mag = 0;
                    for (int j = 0; j < lens[s]; j++) {
                        if (isnan(sc[j]))
                            continue;
                        const int64_t slot = slots[base + j];
                        double vv;
                        if (read == KVFP8_READ_MIXED && j >= lens[s] - qlens[s])
                            vv = v_all[((size_t)(base + j)) * per_tok + (size_t)kvh * head_size + d];
                        else if (read == KVFP8_READ_UNIFORM)
                            vv = kvfp8_cache_read_exact(&c, 1, slot, kvh, d);
                        else
                            vv = fp8 ? kvfp8_round_to_model_dtype(KVFP8_DTYPE_BF16, kvfp8_cache_read_f32(&c, 1, slot, kvh, d))
                                     : kvfp8_cache_read_f32(&c, 1, slot, kvh, d);
                        acc += sc[j] / sum * vv;
                        mag += fabs(sc[j] / sum * vv);
                    }
                    const double got = out[((size_t)(qsl[s] + i) * (size_t)q_heads + (size_t)h) * (size_t)head_size + d];
                    if (fabs(got - acc) > 1e-9 * (mag + 1e-30)) {
                        fprintf(stderr,
                                "attention mismatch: seq %d token %d head %d dim %d: paged %.17g naive %.17g "
                                "(kv_heads %d group %d head_size %d block %d len %d q_len %d read %s fp8 %d window %d cap %g)\n",
                                s, i, h, d, got, acc, kv_heads, group, head_size, block_size, lens[s], qlens[s],
                                kvfp8_read_semantics_name(read), fp8, window, cap);
                        __builtin_trap();
                    }
                }
            }
        }
    free(sc), free(out), free(q), free(nk), free(nv), free(slots), free(k_all), free(v_all), free(perm), free(table);
    kvfp8_kv_cache_free(&c);
    return 0;
}
