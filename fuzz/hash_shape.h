/* Shared by fuzz/fuzz_pickle.c and fuzz/fuzz_cbor.c: builds a Python object of the
 * kinds that occur in vLLM's hash inputs from fuzz bytes, compares a decoded tree
 * with it, and cross-checks the hash chain's fast path against the general path.
 *
 * Included (not linked) so that each target stays one file on the clang command
 * line; every function is static inline, so a target need not use them all. */
#ifndef KVFP8_FUZZ_HASH_SHAPE_H
#define KVFP8_FUZZ_HASH_SHAPE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/hash.h"

/* ---- reading the fuzz input ---------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n, at;
} shape_reader;

static inline uint8_t shape_u8(shape_reader *r) { return r->at < r->n ? r->p[r->at++] : 0; }

static inline uint64_t shape_u64(shape_reader *r, unsigned nbytes) {
    uint64_t v = 0;
    for (unsigned i = 0; i < nbytes; i++)
        v |= (uint64_t)shape_u8(r) << (8 * i);
    return v;
}

/* ---- the object under test --------------------------------------------------------- */

#define SHAPE_MAX_NODES 512
#define SHAPE_MAX_INTS 40000
#define SHAPE_MAX_BYTES (300u * 1024u)

typedef struct {
    kvfp8_obj nodes[SHAPE_MAX_NODES];
    size_t n_nodes;
    int64_t ints[SHAPE_MAX_INTS];
    size_t n_ints;
    uint8_t bytes[SHAPE_MAX_BYTES + 4096]; /* slack for the few short fixed-size items */
    size_t n_bytes;
} shape;

/* Room left for a variable-length payload. */
static inline size_t shape_room(const shape *s) {
    return s->n_bytes < SHAPE_MAX_BYTES ? SHAPE_MAX_BYTES - s->n_bytes : 0;
}

/* Ints biased to the encodings' boundaries, of every width and both signs. */
static inline int64_t shape_int(shape_reader *r) {
    static const int64_t edges[] = {0, 1, 23, 24, 255, 256, 65535, 65536, 2147483647LL,
                                    2147483648LL, 4294967295LL, 4294967296LL, 549755813887LL,
                                    549755813888LL, INT64_MAX, -1, -24, -25, -256, -257,
                                    INT32_MIN, (int64_t)INT32_MIN - 1, INT64_MIN};
    uint8_t k = shape_u8(r);
    if (k < 96) {
        int64_t e = edges[k % (sizeof edges / sizeof edges[0])];
        int delta = (k / 32) % 3 - 1; /* the edge, one below, one above */
        if ((e == INT64_MAX && delta > 0) || (e == INT64_MIN && delta < 0))
            delta = 0;
        return e + delta;
    }
    if (k < 160)
        return (int64_t)shape_u64(r, 1 + k % 8);
    return (int64_t)shape_u64(r, 8);
}

/* UTF-8 text: single characters that are CPython singletons, ASCII, 2-, 3- and
 * 4-byte sequences; sometimes long, to cross the 255-byte and 64 KiB edges. */
static inline size_t shape_text(shape_reader *r, uint8_t *out, size_t cap) {
    uint8_t k = shape_u8(r);
    size_t want;
    if (k < 64)
        want = k % 3; /* "", one or two characters: the singleton cases */
    else if (k < 200)
        want = k % 40;
    else if (k < 240)
        want = 250 + k % 12;
    else
        want = (size_t)65530 + (k % 16) * 700;
    size_t n = 0;
    for (size_t c = 0; c < want && n + 4 <= cap; c++) {
        /* Past 64 characters the input is not consumed: long texts are for the
         * length edges, and the bytes that follow shape the rest of the object. */
        uint8_t b = c < 64 ? shape_u8(r) : (uint8_t)(c % 200);
        uint32_t cp;
        switch (b >> 6) {
        case 0: cp = b & 0x7f; break;                          /* ASCII, NUL included */
        case 1: cp = 0x80 + (b & 0x3f) * 2 + (b & 1); break;  /* Latin-1: singletons */
        case 2: cp = 0x400 + (uint32_t)b * 37; break;         /* 2 and 3 bytes */
        default: cp = 0x10000 + (uint32_t)b * 1021; break;    /* 4 bytes */
        }
        if (cp >= 0xd800 && cp <= 0xdfff)
            cp = 0xe000;
        if (cp < 0x80) {
            out[n++] = (uint8_t)cp;
        } else if (cp < 0x800) {
            out[n++] = (uint8_t)(0xc0 | cp >> 6);
            out[n++] = (uint8_t)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out[n++] = (uint8_t)(0xe0 | cp >> 12);
            out[n++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
            out[n++] = (uint8_t)(0x80 | (cp & 0x3f));
        } else {
            out[n++] = (uint8_t)(0xf0 | cp >> 18);
            out[n++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
            out[n++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
            out[n++] = (uint8_t)(0x80 | (cp & 0x3f));
        }
    }
    return n;
}

static inline kvfp8_obj *shape_node(shape *s) {
    return s->n_nodes < SHAPE_MAX_NODES ? &s->nodes[s->n_nodes++] : NULL;
}

/* One object; nested tuples down to `depth` 0. */
static inline kvfp8_obj shape_obj(shape *s, shape_reader *r, int depth) {
    uint8_t k = shape_u8(r) % (depth > 0 ? 6 : 4);
    switch (k) {
    case 0:
        return kvfp8_obj_none();
    case 1:
        return kvfp8_obj_int(shape_int(r));
    case 2: { /* bytes: digests mostly, sometimes long */
        uint8_t l = shape_u8(r);
        size_t n = l < 128 ? (l & 1 ? 32 : 16) : l < 224 ? l % 40 : (size_t)65530 + (l % 8) * 3;
        if (n > shape_room(s))
            n = 0;
        uint8_t *d = s->bytes + s->n_bytes;
        for (size_t i = 0; i < n; i++)
            d[i] = i < 64 ? shape_u8(r) : (uint8_t)i;
        s->n_bytes += n;
        return kvfp8_obj_bytes(d, n);
    }
    case 3: {
        uint8_t *d = s->bytes + s->n_bytes;
        size_t n = shape_text(r, d, shape_room(s));
        s->n_bytes += n;
        return kvfp8_obj_str((const char *)d, n);
    }
    case 4: { /* a token tuple, sometimes long enough for several pickle frames */
        uint8_t l = shape_u8(r);
        size_t n = l < 248 ? l % 70 : (size_t)(l - 247) * 3000;
        if (n > SHAPE_MAX_INTS - s->n_ints)
            n = 0;
        int64_t *t = s->ints + s->n_ints;
        uint8_t fill = shape_u8(r);
        for (size_t i = 0; i < n; i++)
            t[i] = i < 256 ? shape_int(r) : (int64_t)(fill * (i % 7)) << (fill % 40);
        s->n_ints += n;
        return kvfp8_obj_ints(t, n);
    }
    default: { /* a tuple of objects */
        size_t n = shape_u8(r) % 6;
        if (shape_u8(r) > 250)
            n = 4 + shape_u8(r) % 40;
        if (s->n_nodes + n > SHAPE_MAX_NODES)
            n = 0;
        kvfp8_obj *items = s->nodes + s->n_nodes;
        s->n_nodes += n;
        for (size_t i = 0; i < n; i++)
            items[i] = shape_obj(s, r, depth - 1);
        return kvfp8_obj_tuple(items, n);
    }
    }
}

/* Either vLLM's exact shape, (parent, tokens, extra_keys or None), or any tree. */
static inline kvfp8_obj shape_build(shape *s, shape_reader *r) {
    s->n_nodes = s->n_ints = s->n_bytes = 0;
    if (shape_u8(r) & 1)
        return shape_obj(s, r, 5);
    kvfp8_obj *top = shape_node(s);
    kvfp8_obj *items = s->nodes + s->n_nodes;
    s->n_nodes += 3;
    uint8_t plen = shape_u8(r) & 1 ? 32 : 16;
    uint8_t *parent = s->bytes + s->n_bytes;
    for (unsigned i = 0; i < plen; i++)
        parent[i] = shape_u8(r);
    s->n_bytes += plen;
    items[0] = kvfp8_obj_bytes(parent, plen);
    {
        uint8_t l = shape_u8(r);
        size_t n = 1 + (l < 248 ? l % 64 : (size_t)(l - 247) * 3000); /* to 24001: frames */
        int64_t *t = s->ints + s->n_ints;
        if (n > SHAPE_MAX_INTS - s->n_ints)
            n = 1;
        for (size_t i = 0; i < n; i++)
            t[i] = i < 512 ? (shape_int(r) & INT64_MAX) : (int64_t)(i * 7919);
        s->n_ints += n;
        items[1] = kvfp8_obj_ints(t, n);
    }
    if (shape_u8(r) & 1) {
        items[2] = kvfp8_obj_none();
    } else {
        size_t n = 1 + shape_u8(r) % 5;
        kvfp8_obj *keys = s->nodes + s->n_nodes;
        s->n_nodes += n;
        for (size_t i = 0; i < n; i++) {
            uint8_t k = shape_u8(r) % 3;
            if (k == 0) {
                keys[i] = shape_obj(s, r, 0);
                if (keys[i].kind != KVFP8_OBJ_STR)
                    keys[i] = kvfp8_obj_str("lora", 4);
            } else if (k == 1) { /* (mm identifier, offset - block start) */
                kvfp8_obj *pair = s->nodes + s->n_nodes;
                s->n_nodes += 2;
                uint8_t *d = s->bytes + s->n_bytes;
                size_t tn = shape_text(r, d, 64);
                s->n_bytes += tn;
                pair[0] = kvfp8_obj_str((const char *)d, tn);
                pair[1] = kvfp8_obj_int((int64_t)(int8_t)shape_u8(r) * 3);
                keys[i] = kvfp8_obj_tuple(pair, 2);
            } else { /* prompt-embeds digest */
                uint8_t *d = s->bytes + s->n_bytes;
                for (int j = 0; j < 32; j++)
                    d[j] = shape_u8(r);
                s->n_bytes += 32;
                keys[i] = kvfp8_obj_bytes(d, 32);
            }
        }
        items[2] = kvfp8_obj_tuple(keys, n);
    }
    *top = kvfp8_obj_tuple(items, 3);
    return *top;
}

/* ---- reporting ------------------------------------------------------------------- */

static inline void shape_die(const char *what, const uint8_t *data, size_t size,
                             const uint8_t *out, size_t out_len) {
    fprintf(stderr, "FAIL: %s\ninput (%zu bytes): ", what, size);
    for (size_t i = 0; i < size; i++)
        fprintf(stderr, "%02x", data[i]);
    fprintf(stderr, "\noutput (%zu bytes, first 512): ", out_len);
    for (size_t i = 0; i < out_len && i < 512; i++)
        fprintf(stderr, "%02x", out[i]);
    fprintf(stderr, "\n");
    fflush(stderr);
    abort();
}

/* ---- the decoded tree ----------------------------------------------------------------- */

typedef struct {
    kvfp8_obj_kind kind; /* NONE, INT, BYTES, STR or TUPLE */
    int64_t i;
    const uint8_t *p;
    size_t n;        /* payload length, or number of children */
    size_t children; /* index of the first child in the child list */
} dnode;

typedef struct {
    dnode *nodes;
    size_t n_nodes, cap_nodes;
    size_t *kids; /* child node indices */
    size_t n_kids, cap_kids;
} dtree;

static inline size_t dtree_add(dtree *t, dnode d) {
    if (t->n_nodes == t->cap_nodes) {
        t->cap_nodes = t->cap_nodes ? 2 * t->cap_nodes : 256;
        t->nodes = realloc(t->nodes, t->cap_nodes * sizeof *t->nodes);
        if (!t->nodes)
            abort();
    }
    t->nodes[t->n_nodes] = d;
    return t->n_nodes++;
}

static inline size_t dtree_kid(dtree *t, size_t idx) {
    if (t->n_kids == t->cap_kids) {
        t->cap_kids = t->cap_kids ? 2 * t->cap_kids : 256;
        t->kids = realloc(t->kids, t->cap_kids * sizeof *t->kids);
        if (!t->kids)
            abort();
    }
    t->kids[t->n_kids] = idx;
    return t->n_kids++;
}

static inline void dtree_free(dtree *t) {
    free(t->nodes);
    free(t->kids);
    memset(t, 0, sizeof *t);
}

/* 1 when the decoded node equals the object (a token tuple equals a tuple of ints). */
static inline int shape_equal(const kvfp8_obj *o, const dtree *t, size_t at) {
    const dnode *d = &t->nodes[at];
    switch (o->kind) {
    case KVFP8_OBJ_NONE:
        return d->kind == KVFP8_OBJ_NONE;
    case KVFP8_OBJ_INT:
        return d->kind == KVFP8_OBJ_INT && d->i == o->u.i;
    case KVFP8_OBJ_BYTES:
    case KVFP8_OBJ_STR:
        return d->kind == o->kind && d->n == o->u.bytes.len &&
               (d->n == 0 || !memcmp(d->p, o->u.bytes.data, d->n));
    case KVFP8_OBJ_TUPLE:
        if (d->kind != KVFP8_OBJ_TUPLE || d->n != o->u.tuple.len)
            return 0;
        for (size_t i = 0; i < d->n; i++)
            if (!shape_equal(&o->u.tuple.items[i], t, t->kids[d->children + i]))
                return 0;
        return 1;
    case KVFP8_OBJ_INTS:
        if (d->kind != KVFP8_OBJ_TUPLE || d->n != o->u.ints.len)
            return 0;
        for (size_t i = 0; i < d->n; i++) {
            const dnode *e = &t->nodes[t->kids[d->children + i]];
            if (e->kind != KVFP8_OBJ_INT || e->i != o->u.ints.items[i])
                return 0;
        }
        return 1;
    }
    return 0;
}

/* ---- the chain's fast path against the general path ---------------------------------- */

/* Hashes a token sequence with kvfp8_hash_blocks (the chain writes bytes directly)
 * and block by block with kvfp8_hash_block (the general serializer); aborts on a
 * difference. */
static inline void shape_check_chain(kvfp8_hash_algo algo, shape_reader *r, const uint8_t *data,
                                     size_t size) {
    int64_t tok[96];
    size_t bs = 1 + shape_u8(r) % 12, n = shape_u8(r) % 96;
    for (size_t i = 0; i < n; i++)
        tok[i] = shape_int(r) & INT64_MAX;
    char lora[8], salt[8];
    size_t ll = shape_u8(r) % 3, sl = shape_u8(r) % 3;
    for (size_t i = 0; i < ll; i++)
        lora[i] = (char)('a' + shape_u8(r) % 2);
    for (size_t i = 0; i < sl; i++)
        salt[i] = (char)('a' + shape_u8(r) % 2);
    int with = shape_u8(r) & 1;
    kvfp8_hash_extras x = {0};
    if (with) {
        x.lora_name = lora, x.lora_name_len = ll;
        x.cache_salt = salt, x.cache_salt_len = sl;
    }
    kvfp8_block_hash none, got[96], want;
    kvfp8_hash_none_from_seed(algo, "0", 1, &none);
    size_t nb = 0;
    if (kvfp8_hash_blocks(algo, bs, &none, with ? &x : NULL, tok, n, got, 96, &nb) != KVFP8_OK ||
        nb != n / bs)
        shape_die("kvfp8_hash_blocks failed", data, size, NULL, 0);
    kvfp8_block_hash parent = none;
    for (size_t b = 0; b < nb; b++) {
        kvfp8_obj keys[2];
        size_t nk = 0;
        if (with) {
            keys[nk++] = kvfp8_obj_str(lora, ll);
            if (b == 0 && sl)
                keys[nk++] = kvfp8_obj_str(salt, sl);
        }
        kvfp8_obj kt = kvfp8_obj_tuple(keys, nk);
        if (kvfp8_hash_block(algo, &parent, tok + b * bs, bs, nk ? &kt : NULL, &want) != KVFP8_OK ||
            want.len != got[b].len || memcmp(want.bytes, got[b].bytes, want.len))
            shape_die("chain fast path differs from the general serializer", data, size,
                      got[b].bytes, got[b].len);
        parent = want;
    }
}

#endif
