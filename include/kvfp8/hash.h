/* kvfp8 — vLLM-compatible prefix-cache block hashing, byte for byte.
 *
 * vLLM names a full KV-cache block by hashing the Python tuple
 *     (parent_hash: bytes, tokens: tuple[int, ...], extra_keys: tuple | None)
 * after serializing it with pickle protocol 5 or with canonical CBOR, and hashing
 * the bytes with SHA-256 or XXH3-128.  Matching vLLM therefore means reproducing
 * CPython's pickle and the cbor2 package exactly for the object shapes that occur
 * in those tuples; this header exposes that serializer (kvfp8_obj, kvfp8_pickle_*,
 * kvfp8_cbor_*) as well as the chain built on it.
 *
 * Facts, byte rules and sources: docs/hashing.md. */
#ifndef KVFP8_HASH_H
#define KVFP8_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/pool.h" /* kvfp8_block_hash, shared with the block pool */
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- algorithms (vLLM --prefix-caching-hash-algo) ------------------------------ */

typedef enum {
    KVFP8_HASH_SHA256 = 0,      /* pickle protocol 5 + SHA-256 (vLLM's default) */
    KVFP8_HASH_SHA256_CBOR = 1, /* cbor2.dumps(canonical=True) + SHA-256 */
    KVFP8_HASH_XXHASH = 2,      /* pickle protocol 5 + XXH3-128, canonical bytes */
    KVFP8_HASH_XXHASH_CBOR = 3  /* canonical CBOR + XXH3-128 */
} kvfp8_hash_algo;
#define KVFP8_HASH_ALGO_COUNT 4

/* Longest digest (SHA-256); also the length of a random NONE_HASH for every
 * algorithm, because vLLM draws os.urandom(32) whatever the hash function is. */
#define KVFP8_HASH_MAX_BYTES KVFP8_HASH_MAX
/* A pool key is the block hash followed by the KV-cache group id (4 bytes). */
#define KVFP8_POOL_KEY_MAX_BYTES KVFP8_POOL_KEY_MAX

/* "sha256", "sha256_cbor", "xxhash", "xxhash_cbor" (exactly vLLM's spellings). */
kvfp8_status kvfp8_hash_algo_parse(const char *name, kvfp8_hash_algo *out);
const char *kvfp8_hash_algo_name(kvfp8_hash_algo algo);
/* 32 for the SHA-256 algorithms, 16 for the XXH3 ones; 0 for an invalid value. */
size_t kvfp8_hash_digest_len(kvfp8_hash_algo algo);
/* 1 when the algorithm serializes with CBOR, 0 for pickle. */
int kvfp8_hash_algo_is_cbor(kvfp8_hash_algo algo);

/* A block hash is a kvfp8_block_hash (kvfp8/pool.h): vLLM's BlockHash is a bytes
 * object, the digest (32 or 16 bytes) or, for a NONE_HASH drawn at random, 32 bytes
 * whatever the algorithm. */

/* ---- the Python objects that occur in hash inputs ------------------------------ */

typedef enum {
    KVFP8_OBJ_NONE = 0,  /* None */
    KVFP8_OBJ_INT = 1,   /* int in [-2^63, 2^63-1] */
    KVFP8_OBJ_BYTES = 2, /* bytes */
    KVFP8_OBJ_STR = 3,   /* str, given as UTF-8 (must be valid UTF-8) */
    KVFP8_OBJ_TUPLE = 4, /* tuple of objects */
    KVFP8_OBJ_INTS = 5   /* tuple of ints, stored flat: the token tuple */
} kvfp8_obj_kind;

/* One object.  Strings and bytes are borrowed, never copied.
 *
 * Identity: pickle writes an object it has already written as a memo reference
 * (BINGET), and that depends on object identity, not equality.  In vLLM's hash
 * inputs every str and bytes is a separate object except CPython's cached
 * singletons (the empty str, the empty bytes, a one-character str below U+0100),
 * so equal singletons are treated as one object and everything else as distinct
 * objects.  docs/hashing.md explains why. */
typedef struct kvfp8_obj {
    kvfp8_obj_kind kind;
    union {
        int64_t i;
        struct {
            const uint8_t *data;
            size_t len;
        } bytes; /* BYTES and STR */
        struct {
            const struct kvfp8_obj *items;
            size_t len;
        } tuple;
        struct {
            const int64_t *items;
            size_t len;
        } ints;
    } u;
} kvfp8_obj;

static inline kvfp8_obj kvfp8_obj_none(void) {
    kvfp8_obj o;
    o.kind = KVFP8_OBJ_NONE;
    o.u.i = 0;
    return o;
}
static inline kvfp8_obj kvfp8_obj_int(int64_t v) {
    kvfp8_obj o;
    o.kind = KVFP8_OBJ_INT;
    o.u.i = v;
    return o;
}
static inline kvfp8_obj kvfp8_obj_bytes(const void *data, size_t len) {
    kvfp8_obj o;
    o.kind = KVFP8_OBJ_BYTES;
    o.u.bytes.data = (const uint8_t *)data;
    o.u.bytes.len = len;
    return o;
}
static inline kvfp8_obj kvfp8_obj_str(const char *utf8, size_t len) {
    kvfp8_obj o;
    o.kind = KVFP8_OBJ_STR;
    o.u.bytes.data = (const uint8_t *)utf8;
    o.u.bytes.len = len;
    return o;
}
static inline kvfp8_obj kvfp8_obj_tuple(const kvfp8_obj *items, size_t len) {
    kvfp8_obj o;
    o.kind = KVFP8_OBJ_TUPLE;
    o.u.tuple.items = items;
    o.u.tuple.len = len;
    return o;
}
static inline kvfp8_obj kvfp8_obj_ints(const int64_t *items, size_t len) {
    kvfp8_obj o;
    o.kind = KVFP8_OBJ_INTS;
    o.u.ints.items = items;
    o.u.ints.len = len;
    return o;
}

/* 1 when s[0..len) is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), which is what CPython's str.encode("utf-8") and so
 * cbor2 can produce. */
int kvfp8_utf8_valid(const uint8_t *s, size_t len);

/* ---- serializers ---------------------------------------------------------------- */

/* A growable output buffer.  Zero-initialise it (or kvfp8_buf_init) before use. */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} kvfp8_buf;

void kvfp8_buf_init(kvfp8_buf *b);
void kvfp8_buf_free(kvfp8_buf *b);

/* pickle.dumps(obj, protocol=5), byte for byte as CPython 3.8+ writes it (framing
 * included).  Replaces the buffer's contents. */
kvfp8_status kvfp8_pickle_dumps(const kvfp8_obj *obj, kvfp8_buf *out);
/* The same into a caller buffer: on success *out_len is the length written; when
 * `cap` is too small the result is KVFP8_ERR_EXHAUSTED and *out_len the size needed. */
kvfp8_status kvfp8_pickle_dumps_to(const kvfp8_obj *obj, uint8_t *dst, size_t cap,
                                   size_t *out_len);

/* cbor2.dumps(obj, canonical=True) (RFC 8949 shortest-form heads; tuples become
 * arrays).  Same conventions as the pickle functions. */
kvfp8_status kvfp8_cbor_dumps(const kvfp8_obj *obj, kvfp8_buf *out);
kvfp8_status kvfp8_cbor_dumps_to(const kvfp8_obj *obj, uint8_t *dst, size_t cap,
                                 size_t *out_len);

/* The serializer of `algo` (pickle or CBOR) into `out`. */
kvfp8_status kvfp8_hash_serialize(kvfp8_hash_algo algo, const kvfp8_obj *obj,
                                  kvfp8_buf *out);

/* The digest of `algo` over bytes already serialized (SHA-256, or XXH3-128 with
 * seed 0 in canonical big-endian order). */
kvfp8_status kvfp8_hash_digest(kvfp8_hash_algo algo, const void *data, size_t len,
                               kvfp8_block_hash *out);

/* Which OpenSSL entry point computes SHA-256 in this build: "openssl-sha256-oneshot"
 * (SHA256_Init/Update/Final, the faster one) or "openssl-evp".  Both are libcrypto;
 * benchmarks print it so a figure can be traced to the path that produced it. */
const char *kvfp8_hash_sha256_backend(void);

/* vLLM's hash function applied to a Python object: digest(serialize(obj)). */
kvfp8_status kvfp8_hash_object(kvfp8_hash_algo algo, const kvfp8_obj *obj,
                               kvfp8_block_hash *out);

/* ---- NONE_HASH: the parent of every first block ------------------------------- */

/* NONE_HASH = H(seed) with the seed hashed as a Python str, which is what vLLM does
 * with the PYTHONHASHSEED string ("0" and "00" are different seeds). */
kvfp8_status kvfp8_hash_none_from_seed(kvfp8_hash_algo algo, const char *seed,
                                       size_t seed_len, kvfp8_block_hash *out);
/* NONE_HASH when no seed is set: 32 random bytes from the kernel (os.urandom(32)),
 * for every algorithm.  Non-reproducible by design. */
kvfp8_status kvfp8_hash_none_random(kvfp8_block_hash *out);

/* PYTHONHASHSEED as CPython accepts it: "random", or a decimal integer in
 * [0, 4294967295] as strtoul reads it; the empty string is also accepted (CPython
 * then ignores it, vLLM still hashes ""). Returns KVFP8_ERR_INVALID otherwise,
 * because Python — hence vLLM — refuses to start with such a value. */
kvfp8_status kvfp8_hash_check_pythonhashseed(const char *value);

/* ---- extra keys ---------------------------------------------------------------- */

/* How a multimodal item enters the extra keys of a block it overlaps. */
typedef enum {
    /* (identifier, offset - block_start): current vLLM; the offset is relative to the
     * block's first token and may be negative. */
    KVFP8_MM_KEYS_ID_OFFSET = 0,
    /* identifier alone: vLLM releases before the offset was added. */
    KVFP8_MM_KEYS_ID = 1
} kvfp8_mm_keys;

/* One multimodal item: its identifier (the mm hash string) and the placeholder
 * tokens it covers, [offset, offset + length) in the request's tokens.  Items must
 * be sorted by offset, as vLLM assumes. */
typedef struct {
    const char *identifier; /* UTF-8 */
    size_t identifier_len;
    uint64_t offset;
    uint64_t length;
} kvfp8_mm_item;

/* The layout key, kvfp8's own addition (vLLM has none): three strings appended to
 * the extra keys of every block so that blocks written under one KV dtype, FP8
 * format or set of scales are never reused under another.  Off unless given. */
typedef struct {
    const char *kv_dtype;           /* e.g. "fp8_e4m3" */
    const char *fp8_format;         /* e.g. "e4m3fn" */
    const char *scales_fingerprint; /* e.g. kvfp8_hash_scales_fingerprint() */
} kvfp8_layout_key;

/* The request fields that become extra keys, in vLLM's order:
 * [lora_name] + multimodal keys + [cache_salt] (first block only) +
 * [sha256(prompt-embeds rows of the block)] + layout key (kvfp8 only). */
typedef struct {
    const char *lora_name;  /* NULL: no LoRA.  "" is a LoRA named "" */
    size_t lora_name_len;
    const kvfp8_mm_item *mm; /* n_mm items sorted by offset */
    size_t n_mm;
    kvfp8_mm_keys mm_keys;
    const char *cache_salt; /* NULL or empty: none (vLLM tests truthiness) */
    size_t cache_salt_len;
    /* Prompt embeddings as raw bytes, row-major, `embeds_row_bytes` per token for
     * `embeds_rows` tokens (vLLM: torch tensor_data() of the slice).  A block past
     * the last row hashes the empty slice, as slicing the tensor does. */
    const uint8_t *prompt_embeds; /* NULL: none */
    size_t embeds_row_bytes;
    size_t embeds_rows;
    const kvfp8_layout_key *layout; /* NULL: off (vLLM-compatible) */
} kvfp8_hash_extras;

/* "sha256:" + hex SHA-256 of the scales as little-endian float32, a stable string
 * for kvfp8_layout_key.scales_fingerprint.  `out` needs 72 bytes. */
kvfp8_status kvfp8_hash_scales_fingerprint(const float *scales, size_t n, char out[72]);

/* ---- the chain ------------------------------------------------------------------ */

/* One block: H((parent, tuple(tokens), extra_keys)); extra_keys NULL means None. */
kvfp8_status kvfp8_hash_block(kvfp8_hash_algo algo, const kvfp8_block_hash *parent,
                              const int64_t *tokens, size_t n_tokens,
                              const kvfp8_obj *extra_keys, kvfp8_block_hash *out);

/* The incremental hasher of one request, as vLLM's request_block_hasher: every call
 * hashes the full blocks not hashed yet, given all of the request's tokens so far.
 * The struct holds pointers to `extras`; keep it alive while the chain is used. */
typedef struct {
    kvfp8_hash_algo algo;
    size_t block_size;
    kvfp8_block_hash none_hash;
    const kvfp8_hash_extras *extras; /* NULL: no extra keys */
    size_t n_blocks;                 /* full blocks hashed so far */
    kvfp8_block_hash last;           /* hash of block n_blocks - 1 */
} kvfp8_hash_chain;

kvfp8_status kvfp8_hash_chain_init(kvfp8_hash_chain *chain, kvfp8_hash_algo algo,
                                   size_t block_size, const kvfp8_block_hash *none_hash,
                                   const kvfp8_hash_extras *extras);
/* Hashes blocks n_blocks .. n_tokens/block_size - 1 into out[0..), at most out_cap
 * of them (KVFP8_ERR_EXHAUSTED, nothing hashed, when more are due); *n_new is the
 * count written.  A trailing partial block is left for a later call. */
kvfp8_status kvfp8_hash_chain_update(kvfp8_hash_chain *chain, const int64_t *tokens,
                                     size_t n_tokens, kvfp8_block_hash *out,
                                     size_t out_cap, size_t *n_new);

/* All full blocks of one token sequence: init + update. */
kvfp8_status kvfp8_hash_blocks(kvfp8_hash_algo algo, size_t block_size,
                               const kvfp8_block_hash *none_hash,
                               const kvfp8_hash_extras *extras, const int64_t *tokens,
                               size_t n_tokens, kvfp8_block_hash *out, size_t out_cap,
                               size_t *n_out);

/* ---- what the hash is used as --------------------------------------------------- */

/* The block-pool key: hash bytes then group_id as 4 big-endian bytes.  Returns
 * the key length (hash->len + 4); `out` needs KVFP8_POOL_KEY_MAX_BYTES. */
size_t kvfp8_hash_pool_key(const kvfp8_block_hash *hash, uint32_t group_id,
                           uint8_t out[KVFP8_POOL_KEY_MAX_BYTES]);

/* The integer KV events carry: int.from_bytes(hash, "big") & (2^64 - 1), i.e. the
 * last 8 bytes read big-endian. */
uint64_t kvfp8_hash_kv_event_id(const kvfp8_block_hash *hash);

/* Lowercase hex of the hash into `out` (2*len + 1 bytes). */
void kvfp8_hash_hex(const kvfp8_block_hash *hash, char *out);
/* Parses an even number of hex digits, 2 to 64 (a hash of 1 to 32 bytes; digests
 * are 16 or 32 bytes, an explicit NONE_HASH may be any of these lengths). */
kvfp8_status kvfp8_hash_from_hex(const char *hex, kvfp8_block_hash *out);

#ifdef __cplusplus
}
#endif
#endif
