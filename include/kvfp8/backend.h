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
 *    KVFP8_ERR_UNSUPPORTED with a reason (host->set_error); the runner reports it as
 *    NOT_SUPPORTED, never as a pass.  An operation that is called anyway must fail
 *    the same way, not guess.
 *  - Results must be EXACT (FP8 codes, cache contents, block hashes) or within the
 *    BOUNDED level (attention: kvfp8_attention_error_bound with float32
 *    accumulation) of the reference.
 *  - Optional operations (block_hash, device_timing) may be NULL; `supports` must
 *    then decline them.  Every other operation must be present.
 *
 * How to write one, build it and run the conformance suites on it: docs/porting.md
 * (around the example plugin in conformance/plugin_example/). */
#ifndef KVFP8_BACKEND_H
#define KVFP8_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/attention.h"
#include "kvfp8/fp8.h"
#include "kvfp8/hash.h"
#include "kvfp8/kv_cache.h"
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of kvfp8_backend_ops or the types it uses.
 * 2: host services passed to create, max_query_len and the GQA/scale/window/cap
 *    fields of the query, the optional block_hash and device_timing operations. */
#define KVFP8_BACKEND_ABI_VERSION 2u

typedef enum {
    KVFP8_OP_FP8_ENCODE = 0,
    KVFP8_OP_FP8_DECODE = 1,
    KVFP8_OP_CACHE_WRITE = 2,
    KVFP8_OP_PAGED_ATTENTION = 3,
    KVFP8_OP_BLOCK_HASH = 4,   /* optional */
    KVFP8_OP_DEVICE_TIMING = 5 /* optional */
} kvfp8_backend_op;
#define KVFP8_OP_COUNT 6

const char *kvfp8_backend_op_name(kvfp8_backend_op op);
/* 1 for operations a backend may leave out (NULL in the table). */
int kvfp8_backend_op_optional(kvfp8_backend_op op);

/* What a capability query asks about; fields that do not apply to the op are
 * ignored, and 0 in a field means "not asked" (a backend must accept a query whose
 * later fields are zero: the engine asks with only the first ones). */
typedef struct {
    kvfp8_backend_op op;
    kvfp8_kv_storage storage;        /* cache ops: auto dtype, or FP8 rules */
    kvfp8_fp8_rules fp8;             /* encode/decode (decode reads only fp8.format) */
    kvfp8_source source;             /* encode, cache write */
    kvfp8_read_semantics read;       /* attention */
    kvfp8_model_dtype model_dtype;   /* attention */
    int head_size, block_size;       /* attention, cache write */
    int chunked_prefill;             /* attention over a cached prefix with q_len > 1 */
    /* ABI 2 */
    int max_query_len;               /* attention: largest q_len in the batch (1: decode only) */
    int num_q_heads, num_kv_heads;   /* attention: GQA (q a multiple of kv), MQA (kv 1) */
    int per_head_scales;             /* cache ops: scale_count == num_kv_heads > 1 */
    int sliding_window;              /* attention: params.sliding_window > 0 */
    int soft_cap;                    /* attention: params.logits_soft_cap > 0 */
    kvfp8_hash_algo hash_algo;       /* block hash */
} kvfp8_backend_query;

/* What kvfp8 gives a backend when it creates one.  A backend built as a shared
 * object links against nothing of kvfp8's: it records failure reasons through
 * `set_error`, which writes where kvfp8_last_error() of the host reads. */
typedef struct {
    uint32_t abi_version; /* KVFP8_BACKEND_ABI_VERSION of the host */
    uint32_t struct_size; /* sizeof(kvfp8_backend_host) of the host */
    kvfp8_status (*set_error)(kvfp8_status s, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 2, 3)))
#endif
        ;
} kvfp8_backend_host;

/* The host's services (set_error is kvfp8_fail). */
const kvfp8_backend_host *kvfp8_backend_host_services(void);

/* Device timing of the most recent operation, for the bandwidth charts. */
typedef struct {
    /* Seconds the device spent on the last operation's work, not counting the moves
     * of host buffers to and from the device. */
    double seconds;
    /* The device's copy ceiling: bytes moved (read + written) per second by a
     * device-to-device copy, as the backend measured it. */
    double copy_bytes_per_second;
} kvfp8_backend_timing;

typedef struct kvfp8_backend_ops {
    uint32_t abi_version; /* KVFP8_BACKEND_ABI_VERSION */
    uint32_t struct_size; /* sizeof(kvfp8_backend_ops) as the backend was built */
    const char *name;
    /* KVFP8_ERR_UNSUPPORTED from create means "not available on this machine" (no
     * device, no driver): the runner reports every test NOT_SUPPORTED. */
    kvfp8_status (*create)(const kvfp8_backend_host *host, void **state);
    void (*destroy)(void *state);
    kvfp8_status (*supports)(void *state, const kvfp8_backend_query *q);
    /* code[i] = kvfp8_fp8_encode_scaled_ref(r, src, in[i], scale) */
    kvfp8_status (*fp8_encode)(void *state, const kvfp8_fp8_rules *r, kvfp8_source src, const void *in,
                               uint8_t *out, size_t n, float scale);
    /* out[i] = kvfp8_fp8_dequant(f, in[i], scale) */
    kvfp8_status (*fp8_decode)(void *state, kvfp8_format f, const uint8_t *in, float *out, size_t n,
                               float scale);
    /* kvfp8_cache_write: same bytes in the cache, same validation */
    kvfp8_status (*cache_write)(void *state, kvfp8_kv_cache *c, kvfp8_source src, const void *key,
                                const void *value, const int64_t *slot_mapping, size_t num_tokens);
    /* kvfp8_paged_attention_ref within the bound; out: [num_tokens][num_q_heads][head_size] float32 */
    kvfp8_status (*paged_attention)(void *state, const kvfp8_attention_params *p, const kvfp8_kv_cache *c,
                                    const float *query, const float *new_key, const float *new_value,
                                    float *out);
    /* Optional.  kvfp8_hash_blocks(algo, block_size, none_hash, NULL extras, tokens, ...):
     * vLLM's chain over the full blocks of `tokens`, extra keys None. */
    kvfp8_status (*block_hash)(void *state, kvfp8_hash_algo algo, const kvfp8_block_hash *none_hash,
                               size_t block_size, const int64_t *tokens, size_t n_tokens, kvfp8_block_hash *out,
                               size_t out_cap, size_t *n_out);
    /* Optional.  Timing of the last operation (see kvfp8_backend_timing). */
    kvfp8_status (*device_timing)(void *state, kvfp8_backend_timing *out);
} kvfp8_backend_ops;

/* A shared-object backend exports this one symbol (and need export nothing else):
 *   KVFP8_BACKEND_EXPORT const kvfp8_backend_ops *kvfp8_backend_entry(uint32_t host_abi);
 * It returns its table for the host's ABI version, or NULL when it cannot speak it. */
#define KVFP8_BACKEND_ENTRY_SYMBOL "kvfp8_backend_entry"
typedef const kvfp8_backend_ops *(*kvfp8_backend_entry_fn)(uint32_t host_abi_version);
#if defined(__GNUC__)
#define KVFP8_BACKEND_EXPORT __attribute__((visibility("default")))
#else
#define KVFP8_BACKEND_EXPORT
#endif
/* Defined by a plugin, never by libkvfp8 (declared here so a plugin's definition has
 * its prototype). */
KVFP8_BACKEND_EXPORT const kvfp8_backend_ops *kvfp8_backend_entry(uint32_t host_abi_version);

/* The built-in reference backend: ref/ itself, every operation, every combination. */
const kvfp8_backend_ops *kvfp8_backend_ref(void);
/* The built-in optimized CPU backend (cpu/backend_cpu.c): FP8 through the dispatched
 * buffer paths, attention in float32 with an online softmax. */
const kvfp8_backend_ops *kvfp8_backend_cpu(void);

/* A backend instance: the table, its state, and the shared object it came from. */
typedef struct {
    const kvfp8_backend_ops *ops;
    void *state;
    void *dl_handle; /* NULL for a built-in backend */
} kvfp8_backend;

/* Checks the table (ABI version, size, every required function present, optional
 * ones NULL only where `supports` declines them) and creates the state.  Errors name
 * the backend and the missing piece: KVFP8_ERR_FORMAT for a table of another ABI,
 * KVFP8_ERR_INVALID for a missing operation, create's own status otherwise. */
kvfp8_status kvfp8_backend_open(const kvfp8_backend_ops *ops, kvfp8_backend *out);

/* Resolves a backend by name or path, then opens it:
 *   "ref", "cpu"  built in;
 *   "cuda"        libkvfp8_cuda.so (built by `make cuda`), from $KVFP8_CUDA_BACKEND,
 *                 else next to the running program (its directory, then ../lib);
 *   anything else a shared object (a path; a bare name is refused so that a typo
 *                 is not searched for on the library path), whose
 *                 kvfp8_backend_entry(KVFP8_BACKEND_ABI_VERSION) gives the table.
 * KVFP8_ERR_UNSUPPORTED means the backend is not available here ("cuda backend not
 * available: ..."); KVFP8_ERR_IO a shared object that cannot be loaded (missing file,
 * missing symbol it needs); KVFP8_ERR_FORMAT one without kvfp8_backend_entry or of
 * another ABI; KVFP8_ERR_INVALID an unknown name or a missing operation. */
kvfp8_status kvfp8_backend_load(const char *name_or_path, kvfp8_backend *out);

/* Destroys the state and unloads the shared object, if any. */
void kvfp8_backend_close(kvfp8_backend *b);

#ifdef __cplusplus
}
#endif
#endif
