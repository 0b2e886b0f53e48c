/* vLLM's prefix-cache block hash (include/kvfp8/hash.h, docs/hashing.md).
 *
 * Two ways to one result: kvfp8_hash_block() builds the Python tuple as a kvfp8_obj
 * and runs the general serializers of ref/pickle.c and ref/cbor.c; the chain
 * (kvfp8_hash_chain_update) writes the same bytes directly, token by token, into
 * one reused buffer, because hashing every block of every request is on the
 * scheduler's critical path.  tests/test_hash.c checks that the two agree, and
 * tests/py_hash_vs_python.py checks both against CPython's pickle and cbor2. */
#include "kvfp8/hash.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* The one-message SHA256_* functions are deprecated in OpenSSL 3 (see
 * digester below); this file uses them on purpose. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/sha.h>
#include <xxhash.h>

#include "serialize.h"

/* ---- algorithms ---------------------------------------------------------------- */

static const char *const algo_names[KVFP8_HASH_ALGO_COUNT] = {"sha256", "sha256_cbor", "xxhash",
                                                             "xxhash_cbor"};

static int algo_ok(kvfp8_hash_algo a) { return (unsigned)a < KVFP8_HASH_ALGO_COUNT; }

kvfp8_status kvfp8_hash_algo_parse(const char *name, kvfp8_hash_algo *out) {
    if (!name || !out)
        return kvfp8_fail(KVFP8_ERR_INVALID, "hash algorithm: NULL argument");
    for (int i = 0; i < KVFP8_HASH_ALGO_COUNT; i++)
        if (!strcmp(name, algo_names[i])) {
            *out = (kvfp8_hash_algo)i;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID,
                      "unknown hash algorithm '%s' (sha256, sha256_cbor, xxhash, xxhash_cbor)",
                      name);
}

const char *kvfp8_hash_algo_name(kvfp8_hash_algo algo) {
    return algo_ok(algo) ? algo_names[algo] : "invalid";
}

size_t kvfp8_hash_digest_len(kvfp8_hash_algo algo) {
    if (!algo_ok(algo))
        return 0;
    return (algo == KVFP8_HASH_SHA256 || algo == KVFP8_HASH_SHA256_CBOR) ? 32 : 16;
}

/* Internal copies of the predicates: the library is built -fPIC, so a call to an
 * exported function cannot be inlined (it might be interposed). */
static inline int is_cbor(kvfp8_hash_algo algo) {
    return algo == KVFP8_HASH_SHA256_CBOR || algo == KVFP8_HASH_XXHASH_CBOR;
}

int kvfp8_hash_algo_is_cbor(kvfp8_hash_algo algo) { return is_cbor(algo); }

static int algo_is_sha(kvfp8_hash_algo algo) {
    return algo == KVFP8_HASH_SHA256 || algo == KVFP8_HASH_SHA256_CBOR;
}

/* ---- digests ------------------------------------------------------------------- */

/* SHA-256 comes from OpenSSL's libcrypto either way.  A block's message is about
 * 120 bytes (two or three compressions, ~45 ns each with SHA-NI here), so the
 * per-message overhead decides throughput: EVP in OpenSSL 3.0 costs ~15 ns more
 * per message than the one-message SHA256_Init/Update/Final functions, which run
 * the same SHA-NI block function without the provider dispatch
 * (bench/results/hash-*.md).  Those functions are deprecated in OpenSSL 3 but
 * present in every 3.x; where a build lacks them (OPENSSL_NO_DEPRECATED_3_0, or a
 * future major version) the EVP path below is compiled instead.  The choice is
 * made at compile time and reported by kvfp8_hash_sha256_backend(). */
#if !defined(OPENSSL_NO_DEPRECATED_3_0) && OPENSSL_VERSION_MAJOR == 3
#define KVFP8_SHA256_LOWLEVEL 1
#else
#define KVFP8_SHA256_LOWLEVEL 0
#endif

const char *kvfp8_hash_sha256_backend(void) {
    return KVFP8_SHA256_LOWLEVEL ? "openssl-sha256-oneshot" : "openssl-evp";
}

#if !KVFP8_SHA256_LOWLEVEL
/* Fetched from the provider once: an implicit fetch on every EVP_DigestInit
 * costs more than hashing a block. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static void fetch_sha256(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }
#endif

/* A digest context reused across the blocks of one call. */
typedef struct {
    kvfp8_hash_algo algo;
    int is_sha;
#if !KVFP8_SHA256_LOWLEVEL
    /* Each block starts from a copy of an initialised context, which OpenSSL 3
     * does faster than re-initialising one (no provider lookup). */
    EVP_MD_CTX *ctx, *fresh;
#endif
} digester;

static kvfp8_status digester_open(digester *d, kvfp8_hash_algo algo) {
    d->algo = algo;
    d->is_sha = algo_is_sha(algo);
#if !KVFP8_SHA256_LOWLEVEL
    d->ctx = d->fresh = NULL;
    if (!d->is_sha)
        return KVFP8_OK;
    pthread_once(&sha256_once, fetch_sha256);
    if (!sha256_md)
        return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "OpenSSL has no SHA256 implementation");
    d->ctx = EVP_MD_CTX_new();
    d->fresh = EVP_MD_CTX_new();
    if (!d->ctx || !d->fresh || EVP_DigestInit_ex2(d->fresh, sha256_md, NULL) != 1) {
        EVP_MD_CTX_free(d->ctx);
        EVP_MD_CTX_free(d->fresh);
        d->ctx = d->fresh = NULL;
        return kvfp8_fail(KVFP8_ERR_NOMEM, "OpenSSL SHA-256 context setup failed");
    }
#endif
    return KVFP8_OK;
}

static void digester_close(digester *d) {
#if !KVFP8_SHA256_LOWLEVEL
    EVP_MD_CTX_free(d->ctx);
    EVP_MD_CTX_free(d->fresh);
    d->ctx = d->fresh = NULL;
#else
    (void)d;
#endif
}

static kvfp8_status digester_run(digester *d, const void *data, size_t len,
                                 kvfp8_block_hash *out) {
    if (d->is_sha) {
#if KVFP8_SHA256_LOWLEVEL
        SHA256_CTX c;
        if (SHA256_Init(&c) != 1 || SHA256_Update(&c, data, len) != 1 ||
            SHA256_Final(out->bytes, &c) != 1)
            return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "OpenSSL SHA-256 failed");
#else
        unsigned int n = 0;
        if (EVP_MD_CTX_copy_ex(d->ctx, d->fresh) != 1 ||
            EVP_DigestUpdate(d->ctx, data, len) != 1 ||
            EVP_DigestFinal_ex(d->ctx, out->bytes, &n) != 1 || n != 32)
            return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "OpenSSL SHA-256 failed");
#endif
        out->len = 32;
        return KVFP8_OK;
    }
    /* xxhash.xxh3_128_digest(): XXH3-128 with seed 0 in canonical form, which is
     * the high half then the low half, each big-endian (XXH128_canonicalFromHash). */
    XXH128_hash_t h = XXH3_128bits(data, len);
    uint64_t hi = kvfp8_be64(h.high64), lo = kvfp8_be64(h.low64);
    memcpy(out->bytes, &hi, 8);
    memcpy(out->bytes + 8, &lo, 8);
    out->len = 16;
    return KVFP8_OK;
}

kvfp8_status kvfp8_hash_digest(kvfp8_hash_algo algo, const void *data, size_t len,
                               kvfp8_block_hash *out) {
    if (!algo_ok(algo) || !out || (!data && len))
        return kvfp8_fail(KVFP8_ERR_INVALID, "hash digest: bad algorithm or NULL argument");
    digester d;
    kvfp8_status st = digester_open(&d, algo);
    if (st == KVFP8_OK)
        st = digester_run(&d, data ? data : "", len, out);
    digester_close(&d);
    return st;
}

kvfp8_status kvfp8_hash_serialize(kvfp8_hash_algo algo, const kvfp8_obj *obj,
                                  kvfp8_buf *out) {
    if (!algo_ok(algo))
        return kvfp8_fail(KVFP8_ERR_INVALID, "hash: invalid algorithm %d", (int)algo);
    return is_cbor(algo) ? kvfp8_cbor_dumps(obj, out)
                                         : kvfp8_pickle_dumps(obj, out);
}

kvfp8_status kvfp8_hash_object(kvfp8_hash_algo algo, const kvfp8_obj *obj,
                               kvfp8_block_hash *out) {
    kvfp8_buf b;
    kvfp8_buf_init(&b);
    kvfp8_status st = kvfp8_hash_serialize(algo, obj, &b);
    if (st == KVFP8_OK)
        st = kvfp8_hash_digest(algo, b.data, b.len, out);
    kvfp8_buf_free(&b);
    return st;
}

/* ---- NONE_HASH ----------------------------------------------------------------- */

kvfp8_status kvfp8_hash_none_from_seed(kvfp8_hash_algo algo, const char *seed,
                                       size_t seed_len, kvfp8_block_hash *out) {
    if (!seed && seed_len)
        return kvfp8_fail(KVFP8_ERR_INVALID, "seed: NULL");
    kvfp8_obj s = kvfp8_obj_str(seed ? seed : "", seed_len);
    if (!kvfp8_utf8_valid(s.u.bytes.data, seed_len))
        return kvfp8_fail(KVFP8_ERR_INVALID, "seed is not valid UTF-8");
    return kvfp8_hash_object(algo, &s, out);
}

kvfp8_status kvfp8_hash_none_random(kvfp8_block_hash *out) {
    size_t got = 0;
    while (got < KVFP8_HASH_MAX_BYTES) {
        ssize_t r = getrandom(out->bytes + got, KVFP8_HASH_MAX_BYTES - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return kvfp8_fail(KVFP8_ERR_IO, "getrandom failed: %s", strerror(errno));
        }
        got += (size_t)r;
    }
    out->len = KVFP8_HASH_MAX_BYTES;
    return KVFP8_OK;
}

kvfp8_status kvfp8_hash_check_pythonhashseed(const char *value) {
    if (!value || !value[0] || !strcmp(value, "random"))
        return KVFP8_OK;
    /* CPython parses the seed with strtoul and takes nothing else. */
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(value, &end, 10);
    if (end == value || *end != '\0' || errno == ERANGE || v > 4294967295ul)
        return kvfp8_fail(KVFP8_ERR_INVALID,
                          "PYTHONHASHSEED must be \"random\" or an integer in [0; 4294967295], "
                          "got '%s' (Python, so vLLM, refuses to start with it)",
                          value);
    return KVFP8_OK;
}

kvfp8_status kvfp8_hash_scales_fingerprint(const float *scales, size_t n, char out[72]) {
    if ((!scales && n) || !out || n > SIZE_MAX / 4)
        return kvfp8_fail(KVFP8_ERR_INVALID, "scales fingerprint: bad argument");
    uint8_t *le = malloc(n * 4 + 1);
    if (!le)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "scales fingerprint: out of memory");
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &scales[i], 4);
        for (int k = 0; k < 4; k++)
            le[4 * i + (size_t)k] = (uint8_t)(u >> (8 * k));
    }
    kvfp8_block_hash h;
    kvfp8_status st = kvfp8_hash_digest(KVFP8_HASH_SHA256, le, n * 4, &h);
    free(le);
    if (st != KVFP8_OK)
        return st;
    memcpy(out, "sha256:", 7);
    kvfp8_hash_hex(&h, out + 7);
    return KVFP8_OK;
}

/* ---- one block, through the general serializers -------------------------------- */

static kvfp8_status check_parent(const kvfp8_block_hash *parent) {
    if (!parent || parent->len == 0 || parent->len > KVFP8_HASH_MAX_BYTES)
        return kvfp8_fail(KVFP8_ERR_INVALID, "parent hash missing or of bad length");
    return KVFP8_OK;
}

kvfp8_status kvfp8_hash_block(kvfp8_hash_algo algo, const kvfp8_block_hash *parent,
                              const int64_t *tokens, size_t n_tokens,
                              const kvfp8_obj *extra_keys, kvfp8_block_hash *out) {
    kvfp8_status st = check_parent(parent);
    if (st != KVFP8_OK)
        return st;
    if ((!tokens && n_tokens) || !out)
        return kvfp8_fail(KVFP8_ERR_INVALID, "hash block: NULL argument");
    kvfp8_obj items[3] = {kvfp8_obj_bytes(parent->bytes, parent->len),
                          kvfp8_obj_ints(tokens, n_tokens),
                          extra_keys ? *extra_keys : kvfp8_obj_none()};
    kvfp8_obj t = kvfp8_obj_tuple(items, 3);
    return kvfp8_hash_object(algo, &t, out);
}

/* ---- extra keys ---------------------------------------------------------------- */

static kvfp8_status check_extras(const kvfp8_hash_extras *x) {
    if (!x)
        return KVFP8_OK;
    if (x->lora_name && !kvfp8_utf8_valid((const uint8_t *)x->lora_name, x->lora_name_len))
        return kvfp8_fail(KVFP8_ERR_INVALID, "LoRA name is not valid UTF-8");
    if (x->cache_salt && !kvfp8_utf8_valid((const uint8_t *)x->cache_salt, x->cache_salt_len))
        return kvfp8_fail(KVFP8_ERR_INVALID, "cache salt is not valid UTF-8");
    if (x->n_mm && !x->mm)
        return kvfp8_fail(KVFP8_ERR_INVALID, "multimodal items: NULL array");
    if (x->mm_keys != KVFP8_MM_KEYS_ID_OFFSET && x->mm_keys != KVFP8_MM_KEYS_ID)
        return kvfp8_fail(KVFP8_ERR_INVALID, "multimodal key mode %d unknown", (int)x->mm_keys);
    for (size_t i = 0; i < x->n_mm; i++) {
        const kvfp8_mm_item *m = &x->mm[i];
        if ((!m->identifier && m->identifier_len) ||
            !kvfp8_utf8_valid((const uint8_t *)m->identifier, m->identifier_len))
            return kvfp8_fail(KVFP8_ERR_INVALID, "multimodal item %zu: identifier is not valid UTF-8", i);
        if (m->offset > (uint64_t)INT64_MAX || m->length > (uint64_t)INT64_MAX - m->offset)
            return kvfp8_fail(KVFP8_ERR_INVALID, "multimodal item %zu: offset + length exceeds 2^63-1", i);
        if (i && m->offset < x->mm[i - 1].offset)
            return kvfp8_fail(KVFP8_ERR_INVALID, "multimodal items must be sorted by offset (item %zu)", i);
    }
    if (x->prompt_embeds && x->embeds_row_bytes && x->embeds_rows > SIZE_MAX / x->embeds_row_bytes)
        return kvfp8_fail(KVFP8_ERR_INVALID, "prompt embeds: size overflows");
    if (x->layout && (!x->layout->kv_dtype || !x->layout->fp8_format || !x->layout->scales_fingerprint))
        return kvfp8_fail(KVFP8_ERR_INVALID, "layout key: NULL field");
    if (x->layout) {
        const char *f[3] = {x->layout->kv_dtype, x->layout->fp8_format, x->layout->scales_fingerprint};
        for (int i = 0; i < 3; i++)
            if (!kvfp8_utf8_valid((const uint8_t *)f[i], strlen(f[i])))
                return kvfp8_fail(KVFP8_ERR_INVALID, "layout key: field %d is not valid UTF-8", i);
    }
    return KVFP8_OK;
}

/* Scratch for one block's extra keys: the key list, the (identifier, offset) pairs
 * and the prompt-embeds digest they point into. */
typedef struct {
    kvfp8_obj *keys;  /* 5 + n_mm */
    kvfp8_obj *pairs; /* 2 * n_mm */
    kvfp8_block_hash embeds;
    size_t mm_cursor;
} extra_scratch;

/* vLLM's generate_block_hash_extra_keys for the block [start, end): returns 1 and
 * the key tuple in *out, or 0 when there are no keys (extra_keys is None). */
static int build_extra_keys(const kvfp8_hash_extras *x, extra_scratch *s, uint64_t start,
                            uint64_t end, kvfp8_obj *out) {
    size_t n = 0;
    if (x->lora_name)
        s->keys[n++] = kvfp8_obj_str(x->lora_name, x->lora_name_len);
    /* Multimodal items overlapping the block, walked with vLLM's cursor so that the
     * same items are found as there (items are sorted by offset). */
    const kvfp8_mm_item *last = x->n_mm ? &x->mm[x->n_mm - 1] : NULL;
    if (last && last->offset + last->length > start) {
        size_t np = 0;
        while (s->mm_cursor < x->n_mm) {
            const kvfp8_mm_item *m = &x->mm[s->mm_cursor];
            if (end <= m->offset)
                break; /* the block has not reached this item */
            if (start >= m->offset + m->length) {
                s->mm_cursor++; /* the block is past this item */
                continue;
            }
            kvfp8_obj id = kvfp8_obj_str(m->identifier, m->identifier_len);
            if (x->mm_keys == KVFP8_MM_KEYS_ID) {
                s->keys[n++] = id;
            } else {
                s->pairs[np] = id;
                s->pairs[np + 1] = kvfp8_obj_int((int64_t)m->offset - (int64_t)start);
                s->keys[n++] = kvfp8_obj_tuple(&s->pairs[np], 2);
                np += 2;
            }
            if (end >= m->offset + m->length)
                s->mm_cursor++; /* the item ends here; the next may start in this block */
            else
                break;
        }
    }
    if (start == 0 && x->cache_salt && x->cache_salt_len)
        s->keys[n++] = kvfp8_obj_str(x->cache_salt, x->cache_salt_len);
    if (x->prompt_embeds) {
        /* tensor_data(prompt_embeds[start:end]): rows past the end slice to nothing. */
        uint64_t r0 = start < x->embeds_rows ? start : x->embeds_rows;
        uint64_t r1 = end < x->embeds_rows ? end : x->embeds_rows;
        const uint8_t *p = x->prompt_embeds + (size_t)r0 * x->embeds_row_bytes;
        kvfp8_hash_digest(KVFP8_HASH_SHA256, p, (size_t)(r1 - r0) * x->embeds_row_bytes,
                          &s->embeds);
        s->keys[n++] = kvfp8_obj_bytes(s->embeds.bytes, s->embeds.len);
    }
    if (x->layout) {
        s->keys[n++] = kvfp8_obj_str(x->layout->kv_dtype, strlen(x->layout->kv_dtype));
        s->keys[n++] = kvfp8_obj_str(x->layout->fp8_format, strlen(x->layout->fp8_format));
        s->keys[n++] = kvfp8_obj_str(x->layout->scales_fingerprint,
                                     strlen(x->layout->scales_fingerprint));
    }
    if (!n)
        return 0;
    *out = kvfp8_obj_tuple(s->keys, n);
    return 1;
}

/* ---- the chain ----------------------------------------------------------------- */

kvfp8_status kvfp8_hash_chain_init(kvfp8_hash_chain *chain, kvfp8_hash_algo algo,
                                   size_t block_size, const kvfp8_block_hash *none_hash,
                                   const kvfp8_hash_extras *extras) {
    if (!chain)
        return kvfp8_fail(KVFP8_ERR_INVALID, "hash chain: NULL");
    if (!algo_ok(algo))
        return kvfp8_fail(KVFP8_ERR_INVALID, "hash chain: invalid algorithm %d", (int)algo);
    if (block_size == 0)
        return kvfp8_fail(KVFP8_ERR_INVALID, "block size must be > 0");
    kvfp8_status st = check_parent(none_hash);
    if (st == KVFP8_OK)
        st = check_extras(extras);
    if (st != KVFP8_OK)
        return st;
    memset(chain, 0, sizeof *chain);
    chain->algo = algo;
    chain->block_size = block_size;
    chain->none_hash = *none_hash;
    chain->extras = extras;
    return KVFP8_OK;
}

/* Token encoders of the chain: one table lookup by size class and one 8-byte store
 * per token, the token's whole encoding built in a register.  A block with a token
 * the tables do not cover (negative, or too wide to fit one word with its opcode)
 * is noticed from the OR of its tokens and serialized by the general path.
 *
 * CBOR, by idx = v < 256 ? 64 + v : clz(v): head byte, left shift that brings the
 * argument's big-endian bytes first, encoded size.  Covers v < 2^32. */
static uint8_t cbor_head[320], cbor_shl[320], cbor_size[320];
/* Pickle, by idx = clz(v | 1): opcode, LONG1's byte count, shift of the value past
 * the opcode (and count), encoded size.  Covers v < 2^47 (LONG1 up to 6 bytes). */
static uint8_t pk_op[64], pk_nb[64], pk_shl[64], pk_size[64];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void init_tables(void) {
    for (unsigned idx = 0; idx < 320; idx++) {
        unsigned bits = idx < 64 ? 64 - idx : 0;
        if (idx >= 64 && idx - 64 < 24)
            cbor_head[idx] = (uint8_t)(idx - 64), cbor_shl[idx] = 0, cbor_size[idx] = 1;
        else if (idx >= 64)
            cbor_head[idx] = 0x18, cbor_shl[idx] = 56, cbor_size[idx] = 2;
        else if (bits <= 16)
            cbor_head[idx] = 0x19, cbor_shl[idx] = 48, cbor_size[idx] = 3;
        else if (bits <= 32)
            cbor_head[idx] = 0x1a, cbor_shl[idx] = 32, cbor_size[idx] = 5;
        else /* not covered: flagged by the caller; any size that stays in bounds */
            cbor_head[idx] = 0x1b, cbor_shl[idx] = 0, cbor_size[idx] = 9;
    }
    for (unsigned idx = 0; idx < 64; idx++) {
        unsigned bits = 64 - idx;
        pk_nb[idx] = 0, pk_shl[idx] = 8;
        if (bits <= 8)
            pk_op[idx] = 'K', pk_size[idx] = 2; /* BININT1 */
        else if (bits <= 16)
            pk_op[idx] = 'M', pk_size[idx] = 3; /* BININT2 */
        else if (bits <= 31)
            pk_op[idx] = 'J', pk_size[idx] = 5; /* BININT */
        else if (bits <= 47) { /* LONG1: bit length / 8 + 1 bytes of two's complement */
            pk_op[idx] = 0x8a, pk_nb[idx] = (uint8_t)(bits / 8 + 1), pk_shl[idx] = 16;
            pk_size[idx] = (uint8_t)(2 + pk_nb[idx]);
        } else { /* not covered: flagged by the caller; any size that stays in bounds */
            pk_op[idx] = 0x8a, pk_nb[idx] = 0, pk_shl[idx] = 16, pk_size[idx] = 8;
        }
    }
}

static inline uint8_t *cbor_token(uint8_t *p, uint64_t v) {
    unsigned idx = v < 256 ? 64 + (unsigned)v : (unsigned)__builtin_clzll(v);
    uint64_t w = (kvfp8_be64(v << cbor_shl[idx]) << 8) | cbor_head[idx];
    w = kvfp8_le64(w); /* the head first in memory */
    memcpy(p, &w, 8);
    return p + cbor_size[idx];
}

static inline uint8_t *pickle_token(uint8_t *p, uint64_t v) {
    unsigned idx = (unsigned)__builtin_clzll(v | 1);
    uint64_t w = kvfp8_le64(pk_op[idx] | (uint64_t)pk_nb[idx] << 8 | v << pk_shl[idx]);
    memcpy(p, &w, 8);
    return p + pk_size[idx];
}

/* Room the tables' 8-byte stores need past the end. */
#define FAST_SLACK 16

static int ensure(kvfp8_buf *b, size_t need) {
    if (need <= b->cap)
        return 1;
    uint8_t *d = realloc(b->data, need);
    if (!d)
        return 0;
    b->data = d;
    b->cap = need;
    return 1;
}

static uint8_t *cbor_head_fast(uint8_t *p, uint8_t major, uint64_t arg) {
    major = (uint8_t)(major << 5);
    if (arg < 24) {
        *p++ = (uint8_t)(major | arg);
    } else if (arg < 0x100) {
        *p++ = major | 24;
        *p++ = (uint8_t)arg;
    } else {
        unsigned n = arg < 0x10000 ? 2 : arg < 0x100000000ull ? 4 : 8;
        *p++ = (uint8_t)(major | (n == 2 ? 25 : n == 4 ? 26 : 27));
        for (unsigned i = 0; i < n; i++)
            *p++ = (uint8_t)(arg >> (8 * (n - 1 - i)));
    }
    return p;
}

/* A block serialized but for its parent, which is known only once the previous
 * block is hashed: the bytes, and where the parent's bytes go. */
typedef struct {
    kvfp8_buf buf;
    size_t len;
    size_t parent_at;
    uint8_t parent_len;
} block_slot;

/* What stays the same over the blocks of one update call. */
typedef struct {
    kvfp8_hash_algo algo;
    size_t bs;
    const kvfp8_hash_extras *x;
    extra_scratch s;
    kvfp8_buf ext; /* the serialized extra keys of the block being prepared */
    int ext_ready, has_keys, keys_vary;
    kvfp8_obj keys;
} chain_ctx;

/* The extra keys serialized as they appear inside the block tuple: CBOR as is;
 * pickle with the memo already holding the parent (0) and the tokens (1). */
static kvfp8_status serialize_extra(kvfp8_hash_algo algo, const kvfp8_obj *keys,
                                    kvfp8_buf *out) {
    kvfp8_writer w;
    kvfp8_writer_buf(&w, out);
    if (is_cbor(algo)) {
        const char *bad = kvfp8_cbor_write(&w, keys, 1);
        if (bad)
            return kvfp8_fail(KVFP8_ERR_INVALID, "cbor: %s", bad);
        return kvfp8_writer_finish(&w);
    }
    kvfp8_pickler p;
    kvfp8_pickler_init_part(&p, w, 2);
    kvfp8_pickler_save(&p, keys);
    return kvfp8_pickler_finish(&p, KVFP8_OK);
}

/* The general path for one block, with zeros where the parent goes: the parent is
 * the first bytes object of the outer tuple, so its offset does not depend on the
 * rest (pickle: PROTO, FRAME header, SHORT_BINBYTES and length; CBOR: array head
 * and byte-string head). */
static kvfp8_status prepare_general(const chain_ctx *cx, block_slot *s, const int64_t *tok,
                                    uint8_t parent_len) {
    static const uint8_t zeros[KVFP8_HASH_MAX_BYTES];
    kvfp8_obj items[3] = {kvfp8_obj_bytes(zeros, parent_len), kvfp8_obj_ints(tok, cx->bs),
                          cx->has_keys ? cx->keys : kvfp8_obj_none()};
    kvfp8_obj t = kvfp8_obj_tuple(items, 3);
    kvfp8_status st = kvfp8_hash_serialize(cx->algo, &t, &s->buf);
    s->len = s->buf.len;
    s->parent_at = is_cbor(cx->algo) ? (parent_len < 24 ? 2u : 3u) : 13u;
    s->parent_len = parent_len;
    return st;
}

static kvfp8_status prepare_block(chain_ctx *cx, block_slot *s, size_t b, const int64_t *tok,
                                  uint8_t parent_len) {
    const kvfp8_hash_extras *x = cx->x;
    uint64_t start = (uint64_t)b * cx->bs, end = start + cx->bs;
    if (x && (!cx->ext_ready || cx->keys_vary || start == 0)) {
        cx->has_keys = build_extra_keys(x, &cx->s, start, end, &cx->keys);
        if (cx->has_keys) {
            kvfp8_status st = serialize_extra(cx->algo, &cx->keys, &cx->ext);
            if (st != KVFP8_OK)
                return st;
        }
        cx->ext_ready = start != 0; /* block 0 alone carries the cache salt */
    }
    size_t n = cx->bs, extra_len = cx->has_keys ? cx->ext.len : 0;
    /* Header and tail, at most 9 bytes per token (CBOR's widest head; the pickle
     * tables advance at most 8), the keys, and the last token's 8-byte store. */
    size_t bound = 64 + 9 * n + extra_len + FAST_SLACK;
    int cbor = is_cbor(cx->algo);
    if ((!cbor && bound >= KVFP8_PICKLE_FRAME_TARGET) || !ensure(&s->buf, bound))
        return prepare_general(cx, s, tok, parent_len);
    uint8_t *p0 = s->buf.data, *p = p0;
    uint64_t acc = 0;
    s->parent_len = parent_len;
    if (cbor) {
        *p++ = 0x83; /* array(3) */
        p = cbor_head_fast(p, 2, parent_len);
        s->parent_at = (size_t)(p - p0);
        p += parent_len;
        p = cbor_head_fast(p, 4, n);
        for (size_t i = 0; i < n; i++) {
            acc |= (uint64_t)tok[i];
            p = cbor_token(p, (uint64_t)tok[i]);
        }
        if (acc >> 32)
            return prepare_general(cx, s, tok, parent_len);
        if (cx->has_keys) {
            memcpy(p, cx->ext.data, extra_len);
            p += extra_len;
        } else {
            *p++ = 0xf6;
        }
        s->len = (size_t)(p - p0);
        return KVFP8_OK;
    }
    /* Pickle in one frame: PROTO 5, FRAME <u64 len>, then the body. */
    p += 11;
    *p++ = 'C'; /* SHORT_BINBYTES */
    *p++ = parent_len;
    s->parent_at = (size_t)(p - p0);
    p += parent_len;
    *p++ = 0x94; /* MEMOIZE: memo 0 */
    if (n > 3)
        *p++ = '('; /* MARK */
    for (size_t i = 0; i < n; i++) {
        acc |= (uint64_t)tok[i];
        p = pickle_token(p, (uint64_t)tok[i]);
    }
    if (acc >> 47)
        return prepare_general(cx, s, tok, parent_len);
    static const uint8_t tuple_op[4] = {0, 0x85, 0x86, 0x87};
    *p++ = n <= 3 ? tuple_op[n] : 't';
    *p++ = 0x94; /* memo 1 */
    if (cx->has_keys) {
        memcpy(p, cx->ext.data, extra_len);
        p += extra_len;
    } else {
        *p++ = 'N';
    }
    *p++ = 0x87; /* TUPLE3 */
    *p++ = 0x94;
    *p++ = '.';
    uint64_t body = (uint64_t)(p - p0) - 11;
    p0[0] = 0x80, p0[1] = 5, p0[2] = 0x95;
    for (int i = 0; i < 8; i++)
        p0[3 + i] = (uint8_t)(body >> (8 * i));
    s->len = (size_t)(p - p0);
    return KVFP8_OK;
}

kvfp8_status kvfp8_hash_chain_update(kvfp8_hash_chain *chain, const int64_t *tokens,
                                     size_t n_tokens, kvfp8_block_hash *out,
                                     size_t out_cap, size_t *n_new) {
    if (!chain || !n_new || (!tokens && n_tokens))
        return kvfp8_fail(KVFP8_ERR_INVALID, "hash chain: NULL argument");
    *n_new = 0;
    size_t bs = chain->block_size;
    size_t total = n_tokens / bs;
    if (total <= chain->n_blocks)
        return KVFP8_OK;
    size_t due = total - chain->n_blocks;
    if (due > out_cap || !out)
        return kvfp8_fail(KVFP8_ERR_EXHAUSTED, "hash chain: %zu blocks due, room for %zu", due,
                          out_cap);
    pthread_once(&tables_once, init_tables);

    const kvfp8_hash_extras *x = chain->extras;
    chain_ctx cx;
    memset(&cx, 0, sizeof cx);
    cx.algo = chain->algo;
    cx.bs = bs;
    cx.x = x;
    /* Blocks past the first one have the same keys when nothing varies per block. */
    cx.keys_vary = x && (x->n_mm || x->prompt_embeds);
    block_slot slot[2];
    memset(slot, 0, sizeof slot);
    digester d;
    kvfp8_status st = digester_open(&d, chain->algo);
    if (st == KVFP8_OK && x) {
        cx.s.keys = malloc((8 + x->n_mm) * sizeof *cx.s.keys);
        cx.s.pairs = malloc((2 * x->n_mm + 1) * sizeof *cx.s.pairs);
        if (!cx.s.keys || !cx.s.pairs)
            st = kvfp8_fail(KVFP8_ERR_NOMEM, "hash chain: out of memory");
        /* vLLM restarts a later call at the last multimodal item (curr_mm_idx = -1). */
        cx.s.mm_cursor = chain->n_blocks && x->n_mm ? x->n_mm - 1 : 0;
    }

    /* Software pipeline: block b+1 is serialized (all but its parent) before block
     * b is hashed, so that the hash reads bytes whose stores have long retired and
     * the only thing on the chain's critical path is parent -> digest. */
    const kvfp8_block_hash first = chain->n_blocks ? chain->last : chain->none_hash;
    const kvfp8_block_hash *parent = &first;
    uint8_t digest_len = (uint8_t)kvfp8_hash_digest_len(chain->algo);
    size_t b0 = chain->n_blocks;
    if (st == KVFP8_OK)
        st = prepare_block(&cx, &slot[b0 & 1], b0, tokens + b0 * bs, first.len);
    for (size_t b = b0; st == KVFP8_OK && b < total; b++) {
        block_slot *cur = &slot[b & 1];
        if (b + 1 < total) {
            st = prepare_block(&cx, &slot[(b + 1) & 1], b + 1, tokens + (b + 1) * bs, digest_len);
            if (st != KVFP8_OK)
                break;
        }
        /* The parent moves in 8-byte words, the width the digest was stored in, so
         * that each load is served from one pending store (a wider load spanning
         * two stores would wait for both to retire, on the critical path). */
        uint8_t *dst = cur->buf.data + cur->parent_at;
        size_t plen = cur->parent_len, i = 0;
        for (; i + 8 <= plen; i += 8) {
            uint64_t w;
            memcpy(&w, parent->bytes + i, 8);
            memcpy(dst + i, &w, 8);
        }
        if (i < plen)
            memcpy(dst + i, parent->bytes + i, plen - i);
        st = digester_run(&d, cur->buf.data, cur->len, &out[b - b0]);
        parent = &out[b - b0];
    }
    if (st == KVFP8_OK) {
        chain->n_blocks = total;
        chain->last = *parent;
        *n_new = due;
    }
    digester_close(&d);
    kvfp8_buf_free(&slot[0].buf);
    kvfp8_buf_free(&slot[1].buf);
    kvfp8_buf_free(&cx.ext);
    free(cx.s.keys);
    free(cx.s.pairs);
    return st;
}

kvfp8_status kvfp8_hash_blocks(kvfp8_hash_algo algo, size_t block_size,
                               const kvfp8_block_hash *none_hash,
                               const kvfp8_hash_extras *extras, const int64_t *tokens,
                               size_t n_tokens, kvfp8_block_hash *out, size_t out_cap,
                               size_t *n_out) {
    kvfp8_hash_chain c;
    kvfp8_status st = kvfp8_hash_chain_init(&c, algo, block_size, none_hash, extras);
    if (st != KVFP8_OK)
        return st;
    return kvfp8_hash_chain_update(&c, tokens, n_tokens, out, out_cap, n_out);
}

/* ---- uses of the hash ---------------------------------------------------------- */

size_t kvfp8_hash_pool_key(const kvfp8_block_hash *hash, uint32_t group_id,
                           uint8_t out[KVFP8_POOL_KEY_MAX_BYTES]) {
    size_t n = hash->len;
    memcpy(out, hash->bytes, n);
    for (int i = 0; i < 4; i++)
        out[n + (size_t)i] = (uint8_t)(group_id >> (24 - 8 * i));
    return n + 4;
}

uint64_t kvfp8_hash_kv_event_id(const kvfp8_block_hash *hash) {
    uint64_t v = 0;
    size_t from = hash->len > 8 ? hash->len - 8u : 0;
    for (size_t i = from; i < hash->len; i++)
        v = (v << 8) | hash->bytes[i];
    return v;
}

void kvfp8_hash_hex(const kvfp8_block_hash *hash, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < hash->len; i++) {
        out[2 * i] = digits[hash->bytes[i] >> 4];
        out[2 * i + 1] = digits[hash->bytes[i] & 15];
    }
    out[2 * (size_t)hash->len] = '\0';
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

kvfp8_status kvfp8_hash_from_hex(const char *hex, kvfp8_block_hash *out) {
    size_t n = hex ? strlen(hex) : 0;
    if (n == 0 || n % 2 || n > 2 * KVFP8_HASH_MAX_BYTES)
        return kvfp8_fail(KVFP8_ERR_INVALID,
                          "hash hex must have an even number of digits, 2 to %d, got %zu",
                          2 * KVFP8_HASH_MAX_BYTES, n);
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(hex[i]), lo = hexval(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return kvfp8_fail(KVFP8_ERR_INVALID, "hash hex: '%c%c' is not hex", hex[i],
                              hex[i + 1]);
        out->bytes[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    out->len = (uint8_t)(n / 2);
    return KVFP8_OK;
}
