/* kvfp8 — the backend interface: the porting surface a vendor implements.
 *
 * A backend is a versioned table of operations plus a capability query.  Host
 * buffers in, host buffers out: a backend that runs elsewhere (a GPU) moves data
 * to its device itself.  The engine and the conformance suites call only through
 * this table, so the same tests run against the reference, the optimized CPU paths,
 * CUDA, or a vendor's shared object.
 *
 * Rules every backend keeps:
 *  - An operation the backend does not support is declared by `supports` returning
 *    KVFP8_ERR_UNSUPPORTED with a reason (kvfp8_fail); the runner reports it as
 *    NOT_SUPPORTED, never as a pass.  An operation that is called anyway must fail
 *    the same way, not guess.
 *  - Results must be EXACT (FP8 codes, cache contents) or within the BOUNDED level
 *    (attention: kvfp8_attention_error_bound) of the reference. */
#ifndef KVFP8_BACKEND_H
#define KVFP8_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/attention.h"
#include "kvfp8/fp8.h"
#include "kvfp8/kv_cache.h"
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of kvfp8_backend_ops or the types it uses. */
#define KVFP8_BACKEND_ABI_VERSION 1u

typedef enum {
    KVFP8_OP_FP8_ENCODE = 0,
    KVFP8_OP_FP8_DECODE = 1,
    KVFP8_OP_CACHE_WRITE = 2,
    KVFP8_OP_PAGED_ATTENTION = 3
} kvfp8_backend_op;
#define KVFP8_OP_COUNT 4

const char *kvfp8_backend_op_name(kvfp8_backend_op op);

/* What a capability query asks about; fields that do not apply to the op are
 * ignored. */
typedef struct {
    kvfp8_backend_op op;
    kvfp8_kv_storage storage;        /* cache ops: auto dtype, or FP8 rules */
    kvfp8_fp8_rules fp8;             /* encode/decode */
    kvfp8_source source;             /* encode, cache write */
    kvfp8_read_semantics read;       /* attention */
    kvfp8_model_dtype model_dtype;   /* attention */
    int head_size, block_size;       /* attention, cache write */
    int chunked_prefill;             /* attention over a cached prefix with q_len > 1 */
} kvfp8_backend_query;

typedef struct kvfp8_backend_ops {
    uint32_t abi_version; /* KVFP8_BACKEND_ABI_VERSION */
    uint32_t struct_size; /* sizeof(kvfp8_backend_ops) as the backend was built */
    const char *name;
    kvfp8_status (*create)(void **state);
    void (*destroy)(void *state);
    kvfp8_status (*supports)(void *state, const kvfp8_backend_query *q);
    kvfp8_status (*fp8_encode)(void *state, const kvfp8_fp8_rules *r, kvfp8_source src, const void *in,
                               uint8_t *out, size_t n, float scale);
    kvfp8_status (*fp8_decode)(void *state, kvfp8_format f, const uint8_t *in, float *out, size_t n,
                               float scale);
    kvfp8_status (*cache_write)(void *state, kvfp8_kv_cache *c, kvfp8_source src, const void *key,
                                const void *value, const int64_t *slot_mapping, size_t num_tokens);
    /* out: [num_tokens][num_q_heads][head_size] float32 */
    kvfp8_status (*paged_attention)(void *state, const kvfp8_attention_params *p, const kvfp8_kv_cache *c,
                                    const float *query, const float *new_key, const float *new_value,
                                    float *out);
} kvfp8_backend_ops;

/* The built-in reference backend: ref/ itself, every operation, every combination. */
const kvfp8_backend_ops *kvfp8_backend_ref(void);

/* A backend instance: the table and its state. */
typedef struct {
    const kvfp8_backend_ops *ops;
    void *state;
} kvfp8_backend;

/* Checks the table (ABI version, size, every function present) and creates the
 * state.  Errors name the backend and the missing piece. */
kvfp8_status kvfp8_backend_open(const kvfp8_backend_ops *ops, kvfp8_backend *out);
void kvfp8_backend_close(kvfp8_backend *b);

#ifdef __cplusplus
}
#endif
#endif
