/* The reference backend (ref/ behind the backend table) and the table checks. */
#include "kvfp8/backend.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[KVFP8_OP_COUNT] = {"fp8_encode",      "fp8_decode", "cache_write",
                                                     "paged_attention", "block_hash", "device_timing"};

const char *kvfp8_backend_op_name(kvfp8_backend_op op) {
    return (unsigned)op < KVFP8_OP_COUNT ? op_names[op] : "?";
}

int kvfp8_backend_op_optional(kvfp8_backend_op op) {
    return op == KVFP8_OP_BLOCK_HASH || op == KVFP8_OP_DEVICE_TIMING;
}

static const kvfp8_backend_host host_services = {KVFP8_BACKEND_ABI_VERSION, sizeof(kvfp8_backend_host), kvfp8_fail};

const kvfp8_backend_host *kvfp8_backend_host_services(void) { return &host_services; }

static kvfp8_status ref_create(const kvfp8_backend_host *host, void **state) {
    (void)host;
    *state = NULL;
    return KVFP8_OK;
}

static void ref_destroy(void *state) { (void)state; }

static kvfp8_status ref_supports(void *state, const kvfp8_backend_query *q) {
    (void)state;
    if ((unsigned)q->op >= KVFP8_OP_COUNT)
        return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "ref: unknown operation %d", (int)q->op);
    if (q->op == KVFP8_OP_DEVICE_TIMING)
        return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "ref: no device, so no device timing");
    if (q->op == KVFP8_OP_BLOCK_HASH && (unsigned)q->hash_algo >= KVFP8_HASH_ALGO_COUNT)
        return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "ref: unknown hash algorithm %d", (int)q->hash_algo);
    return KVFP8_OK; /* the reference defines every combination the types can express */
}

static kvfp8_status ref_encode(void *state, const kvfp8_fp8_rules *r, kvfp8_source src, const void *in, uint8_t *out,
                               size_t n, float scale) {
    (void)state;
    kvfp8_status st = kvfp8_fp8_check_scale(scale);
    if (st != KVFP8_OK)
        return st;
    if ((unsigned)src >= KVFP8_SOURCE_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "ref encode: unknown source type %d", (int)src);
    const unsigned char *p = in;
    const size_t width = src == KVFP8_SRC_F32 ? 4 : 2;
    for (size_t i = 0; i < n; i++) {
        uint32_t x = p[i * width] | (uint32_t)p[i * width + 1] << 8;
        if (width == 4)
            x |= (uint32_t)p[i * 4 + 2] << 16 | (uint32_t)p[i * 4 + 3] << 24;
        out[i] = kvfp8_fp8_encode_scaled_ref(r, src, x, scale);
    }
    return KVFP8_OK;
}

static kvfp8_status ref_decode(void *state, kvfp8_format f, const uint8_t *in, float *out, size_t n, float scale) {
    (void)state;
    kvfp8_status st = kvfp8_fp8_check_scale(scale);
    if (st != KVFP8_OK)
        return st;
    for (size_t i = 0; i < n; i++)
        out[i] = kvfp8_fp8_dequant(f, in[i], scale);
    return KVFP8_OK;
}

static kvfp8_status ref_cache_write(void *state, kvfp8_kv_cache *c, kvfp8_source src, const void *key,
                                    const void *value, const int64_t *slot_mapping, size_t num_tokens) {
    (void)state;
    return kvfp8_cache_write(c, src, key, value, slot_mapping, num_tokens);
}

static kvfp8_status ref_attention(void *state, const kvfp8_attention_params *p, const kvfp8_kv_cache *c,
                                  const float *query, const float *new_key, const float *new_value, float *out) {
    (void)state;
    size_t n = 0;
    if (p->num_seqs > 0)
        n = (size_t)p->query_start_loc[p->num_seqs] * (size_t)p->num_q_heads * (size_t)c->head_size;
    double *tmp = malloc(sizeof(double) * (n ? n : 1));
    if (!tmp)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "ref attention output");
    kvfp8_status st = kvfp8_paged_attention_ref(p, c, query, new_key, new_value, tmp);
    for (size_t i = 0; st == KVFP8_OK && i < n; i++)
        out[i] = (float)tmp[i];
    free(tmp);
    return st;
}

static kvfp8_status ref_block_hash(void *state, kvfp8_hash_algo algo, const kvfp8_block_hash *none_hash,
                                   size_t block_size, const int64_t *tokens, size_t n_tokens, kvfp8_block_hash *out,
                                   size_t out_cap, size_t *n_out) {
    (void)state;
    return kvfp8_hash_blocks(algo, block_size, none_hash, NULL, tokens, n_tokens, out, out_cap, n_out);
}

static const kvfp8_backend_ops ref_ops = {
    KVFP8_BACKEND_ABI_VERSION, sizeof(kvfp8_backend_ops), "ref", ref_create, ref_destroy, ref_supports,
    ref_encode, ref_decode, ref_cache_write, ref_attention, ref_block_hash, NULL,
};

const kvfp8_backend_ops *kvfp8_backend_ref(void) { return &ref_ops; }

kvfp8_status kvfp8_backend_open(const kvfp8_backend_ops *ops, kvfp8_backend *out) {
    memset(out, 0, sizeof *out);
    if (!ops)
        return kvfp8_fail(KVFP8_ERR_INVALID, "backend: no operations table");
    const char *name = ops->name ? ops->name : "(unnamed)";
    /* Read the two header words before anything else: a table of another ABI may be
     * shorter than ours, so no other field of it can be trusted. */
    if (ops->abi_version != KVFP8_BACKEND_ABI_VERSION)
        return kvfp8_fail(KVFP8_ERR_FORMAT, "backend %s: ABI version %u, this kvfp8 speaks %u (rebuild it against "
                          "this kvfp8's include/kvfp8/backend.h)", name, ops->abi_version, KVFP8_BACKEND_ABI_VERSION);
    if (ops->struct_size != sizeof(kvfp8_backend_ops))
        return kvfp8_fail(KVFP8_ERR_FORMAT, "backend %s: operations table of %u bytes, expected %zu for ABI version %u",
                          name, ops->struct_size, sizeof(kvfp8_backend_ops), KVFP8_BACKEND_ABI_VERSION);
    const struct {
        const char *what;
        int present;
    } parts[] = {{"create", ops->create != NULL},         {"destroy", ops->destroy != NULL},
                 {"supports", ops->supports != NULL},     {"fp8_encode", ops->fp8_encode != NULL},
                 {"fp8_decode", ops->fp8_decode != NULL}, {"cache_write", ops->cache_write != NULL},
                 {"paged_attention", ops->paged_attention != NULL}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (!parts[i].present)
            return kvfp8_fail(KVFP8_ERR_INVALID, "backend %s: operation %s is missing (declare it unsupported instead)",
                              name, parts[i].what);
    kvfp8_status st = ops->create(&host_services, &out->state);
    if (st != KVFP8_OK)
        return st;
    /* An optional operation left out must be declared so; otherwise a caller that
     * trusts `supports` would call through NULL. */
    const struct {
        kvfp8_backend_op op;
        int present;
    } optional[] = {{KVFP8_OP_BLOCK_HASH, ops->block_hash != NULL}, {KVFP8_OP_DEVICE_TIMING, ops->device_timing != NULL}};
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++) {
        if (optional[i].present)
            continue;
        for (int algo = 0; algo < (optional[i].op == KVFP8_OP_BLOCK_HASH ? KVFP8_HASH_ALGO_COUNT : 1); algo++) {
            kvfp8_backend_query q;
            memset(&q, 0, sizeof q);
            q.op = optional[i].op;
            q.hash_algo = (kvfp8_hash_algo)algo;
            if (ops->supports(out->state, &q) == KVFP8_OK) {
                ops->destroy(out->state);
                out->state = NULL;
                return kvfp8_fail(KVFP8_ERR_INVALID,
                                  "backend %s: `supports` accepts %s but the operation is NULL (decline it instead)",
                                  name, kvfp8_backend_op_name(optional[i].op));
            }
        }
    }
    out->ops = ops;
    return KVFP8_OK;
}

void kvfp8_backend_close(kvfp8_backend *b) {
    if (b->ops)
        b->ops->destroy(b->state);
    if (b->dl_handle) /* after destroy: the table and its code live in the object */
        dlclose(b->dl_handle);
    memset(b, 0, sizeof *b);
}
