/* Block pool: free queue, reference counts and the prefix-cache key table
 * (see include/kvfp8/pool.h and docs/pool.md).
 *
 * Layout, chosen so that every block operation is O(1) and touches one cache line
 * of block metadata plus, for keyed operations, one slot of the key table:
 *  - blocks[0..num_blocks) plus a sentinel blocks[num_blocks] that closes the free
 *    queue into a ring, so insertion and removal never test for an empty list;
 *  - the key table is open addressing with linear probing over 8-byte slots (a
 *    32-bit hash of the key and the first block carrying it; eight to a cache
 *    line, at least two slots per block); the blocks carrying one key are chained
 *    through dprev/dnext in registration order, and the first block's dprev names
 *    the last.  Block id 0 (the null block, never cached) marks an empty slot and
 *    the end of a chain;
 *  - keys are kept in a fixed-size form (hash bytes zero-padded to 32, length,
 *    group), so hashing and comparing one is a few word operations, no loops.
 * A lookup reads the slots of its probe run (nearly always one cache line) and,
 * where a slot's 32-bit hash matches, the key record of that slot's block. */
#include "kvfp8/pool.h"

#include <stdlib.h>
#include <string.h>

/* Hot metadata, touched by every queue and reference operation: 24 bytes, so a
 * 64K-block pool's worth stays within a few MB of cache. */
typedef struct {
    uint32_t prev, next;   /* free-queue links; meaningful only while queued */
    uint32_t dprev, dnext; /* same-key chain, registration order; 0 = none, but
                              the first block's dprev is the chain's last block */
    int32_t ref;
    uint32_t cached;       /* carries a key (its bytes are in keys[]) */
} pool_block;

/* A cache key (hash bytes + group id, vLLM's make_block_hash_with_group_id) in
 * fixed-size form: the hash bytes in native-order words, zero past len.  Two keys
 * are equal exactly when all five fields are. */
typedef struct {
    uint64_t w[4];  /* hash bytes 0..31, zero from len on */
    uint32_t group;
    uint32_t len;   /* hash length, 1..KVFP8_HASH_MAX */
} pool_key;

/* Cold, per block: its key, read only by keyed operations on that block. */
typedef struct {
    pool_key k;
    uint32_t khash; /* key_hash(k), kept so removal needs no rehash */
} block_key;

/* Eight to a cache line.  The low bits of khash are the home slot; all 32 are
 * compared before a key record is read. */
typedef struct {
    uint32_t khash;
    uint32_t head; /* first block carrying the key; 0: empty slot */
} key_slot;

/* Slots per block: at most num_blocks - 1 distinct keys exist at once, so the
 * table is at most half full, which keeps probe runs short. */
#define SLOTS_PER_BLOCK 2u

struct kvfp8_pool {
    uint32_t num_blocks;
    uint32_t num_free;
    uint32_t num_cached;
    pool_block *blocks; /* num_blocks + 1: the last is the queue sentinel */
    block_key *keys;    /* num_blocks */
    key_slot *slots;
    uint32_t slot_mask;
    int enable_events;
    kvfp8_pool_event *events;
    size_t ev_head, ev_len, ev_cap;
    uint64_t ev_dropped;
};

/* Group size for overlapping cache misses: enough independent loads in flight to
 * cover memory latency, small enough for the scratch arrays to live on the stack. */
#define POOL_BATCH 16

static inline void prefetch(const void *a) {
#if defined(__GNUC__)
    __builtin_prefetch(a);
#else
    (void)a;
#endif
}

/* Index of the lowest set bit of m != 0. */
static inline unsigned lowest_bit(unsigned m) {
#if defined(__GNUC__)
    return (unsigned)__builtin_ctz(m);
#else
    unsigned i = 0;
    while (!(m & 1u)) m >>= 1, i++;
    return i;
#endif
}

/* ---- keys ------------------------------------------------------------------- */

/* Byte i of mask_tab + 32 - len is 0xff for i < len, 0 after. */
static const uint8_t mask_tab[64] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

/* The key of (hash, group); hash->len must be 0..KVFP8_HASH_MAX.  All 32 bytes of
 * hash->bytes are read (they exist whatever len is); those past len are masked. */
static inline void make_key(pool_key *k, const kvfp8_block_hash *h, uint32_t group) {
    uint64_t m[4];
    memcpy(k->w, h->bytes, sizeof k->w);
    memcpy(m, mask_tab + KVFP8_HASH_MAX - h->len, sizeof m);
    for (int i = 0; i < 4; i++) k->w[i] &= m[i];
    k->group = group;
    k->len = h->len;
}

static inline int key_eq(const pool_key *a, const pool_key *b) {
    uint64_t d = (a->w[0] ^ b->w[0]) | (a->w[1] ^ b->w[1]) | (a->w[2] ^ b->w[2]) | (a->w[3] ^ b->w[3]) |
                 (a->group ^ b->group) | (a->len ^ b->len);
    return d == 0;
}

/* 64 x 64 -> 128-bit product, folded: every input bit reaches the low half. */
static inline uint64_t fold_mul(uint64_t a, uint64_t b) {
#if defined(__SIZEOF_INT128__)
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    uint64_t al = (uint32_t)a, ah = a >> 32, bl = (uint32_t)b, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
    uint64_t lo = (mid << 32) | (uint32_t)ll;
    uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return lo ^ hi;
#endif
}

/* Keys are usually cryptographic hashes already, but the pool must not rely on
 * that (tests use short structured ones), so every byte, the length and the group
 * go through a folded multiply (wyhash's mixing step): two independent products
 * over the hash words, then one over their sum with the length and group. */
static inline uint32_t key_hash(const pool_key *k) {
    uint64_t a = fold_mul(k->w[0] ^ 0xa0761d6478bd642full, k->w[1] ^ 0xe7037ed1a0b428dbull);
    uint64_t b = fold_mul(k->w[2] ^ 0x8ebc6af09c88c6e3ull, k->w[3] ^ 0x589965cc75374cc3ull);
    uint64_t lg = ((uint64_t)k->group << 32) | k->len;
    uint64_t h = fold_mul(a ^ b ^ 0x1d8e4e27c47d124full, lg ^ 0x9e3779b97f4a7c15ull);
    return (uint32_t)(h ^ (h >> 32));
}

/* The slot holding key k (hash kh), or the empty slot where it would go. */
static inline uint32_t find_slot(const kvfp8_pool *p, const pool_key *k, uint32_t kh) {
    uint32_t i = kh & p->slot_mask;
    for (;;) {
        const key_slot *s = &p->slots[i];
        if (s->head == 0 || (s->khash == kh && key_eq(&p->keys[s->head].k, k))) return i;
        i = (i + 1) & p->slot_mask;
    }
}

/* The first block carrying key k (hash kh), or 0: find_slot's answer, arranged
 * for a run of single lookups.  Their cost is mostly the cache misses of the slot
 * and the key record, and those of consecutive lookups overlap only where the
 * processor predicts the branches between them.  So: a home slot carrying kh (the
 * usual hit) is checked first; otherwise the first four slots of the probe run
 * are tested together, without a branch between them, for the first that is
 * empty (a miss, the usual outcome here) or carries kh.  Longer runs, a 32-bit
 * hash collision and the table's end take find_slot. */
#define PROBE_WINDOW 4u
static inline uint32_t find_block(const kvfp8_pool *p, const pool_key *k, uint32_t kh) {
    uint32_t i = kh & p->slot_mask;
    const key_slot *s = &p->slots[i];
    if (s->khash == kh && s->head) {
        if (key_eq(&p->keys[s->head].k, k)) return s->head;
    } else if (i <= p->slot_mask + 1 - PROBE_WINDOW) {
        unsigned m = (unsigned)(s[0].head == 0) | (unsigned)((s[1].head == 0) | (s[1].khash == kh)) << 1 |
                     (unsigned)((s[2].head == 0) | (s[2].khash == kh)) << 2 |
                     (unsigned)((s[3].head == 0) | (s[3].khash == kh)) << 3;
        if (m) {
            uint32_t c = s[lowest_bit(m)].head;
            if (c == 0 || key_eq(&p->keys[c].k, k)) return c;
        }
    }
    return p->slots[find_slot(p, k, kh)].head;
}

/* Backward-shift deletion: keeps every probe run contiguous without tombstones, so
 * lookups never slow down however often keys come and go. */
static void delete_slot(kvfp8_pool *p, uint32_t i) {
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & p->slot_mask;
        if (p->slots[j].head == 0) break;
        uint32_t home = p->slots[j].khash & p->slot_mask;
        /* Move j back to i unless its home lies cyclically in (i, j]. */
        int stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            p->slots[i] = p->slots[j];
            i = j;
        }
    }
    p->slots[i].head = 0;
}

/* Hash bytes and group id back out of a key. */
static void split_key(const pool_key *k, kvfp8_block_hash *h, uint32_t *group) {
    h->len = (uint8_t)k->len;
    memcpy(h->bytes, k->w, k->len);
    *group = k->group;
}

/* ---- events ----------------------------------------------------------------- */

static void push_event(kvfp8_pool *p, kvfp8_pool_event_kind kind, uint32_t id) {
    if (!p->enable_events) return;
    if (p->ev_len == p->ev_cap) {
        size_t cap = p->ev_cap ? p->ev_cap * 2 : 64;
        kvfp8_pool_event *ev = malloc(cap * sizeof *ev);
        if (!ev) {
            p->ev_dropped++;
            return;
        }
        for (size_t k = 0; k < p->ev_len; k++) ev[k] = p->events[(p->ev_head + k) % p->ev_cap];
        free(p->events);
        p->events = ev;
        p->ev_cap = cap;
        p->ev_head = 0;
    }
    kvfp8_pool_event *e = &p->events[(p->ev_head + p->ev_len) % p->ev_cap];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->block = id;
    if (kind != KVFP8_POOL_EVENT_ALL_CLEARED) {
        split_key(&p->keys[id].k, &e->hash, &e->group);
    }
    p->ev_len++;
}

size_t kvfp8_pool_take_events(kvfp8_pool *p, kvfp8_pool_event *out, size_t cap) {
    size_t n = p->ev_len < cap ? p->ev_len : cap;
    for (size_t k = 0; k < n; k++) out[k] = p->events[(p->ev_head + k) % p->ev_cap];
    if (n) {
        p->ev_head = (p->ev_head + n) % p->ev_cap;
        p->ev_len -= n;
    }
    return n;
}

uint64_t kvfp8_pool_events_dropped(const kvfp8_pool *p) { return p->ev_dropped; }

/* ---- key registration ------------------------------------------------------- */

/* Drops block id's key: vLLM's _maybe_evict_cached_block.  The rest of its chain
 * keeps its order, so the next-oldest duplicate becomes the one lookups return. */
static void drop_key(kvfp8_pool *p, uint32_t id) {
    pool_block *b = &p->blocks[id];
    const block_key *k = &p->keys[id];
    push_event(p, KVFP8_POOL_EVENT_REMOVED, id);
    uint32_t si = find_slot(p, &k->k, k->khash);
    key_slot *s = &p->slots[si];
    if (s->head == id) {
        if (b->dnext) {
            p->blocks[b->dnext].dprev = b->dprev; /* the chain's last block */
            s->head = b->dnext;
        } else {
            delete_slot(p, si);
        }
    } else {
        p->blocks[b->dprev].dnext = b->dnext;
        if (b->dnext) p->blocks[b->dnext].dprev = b->dprev;
        else p->blocks[s->head].dprev = b->dprev; /* it was the last */
    }
    b->cached = 0;
    b->dprev = b->dnext = 0;
    p->num_cached--;
}

/* ---- free queue ------------------------------------------------------------- */

static void queue_remove(kvfp8_pool *p, uint32_t id) {
    pool_block *b = &p->blocks[id];
    p->blocks[b->prev].next = b->next;
    p->blocks[b->next].prev = b->prev;
    p->num_free--;
}

static void queue_append(kvfp8_pool *p, uint32_t id) {
    uint32_t s = p->num_blocks; /* sentinel */
    uint32_t last = p->blocks[s].prev;
    p->blocks[id].prev = last;
    p->blocks[id].next = s;
    p->blocks[last].next = id;
    p->blocks[s].prev = id;
    p->num_free++;
}

/* ---- lifecycle -------------------------------------------------------------- */

kvfp8_status kvfp8_pool_create(const kvfp8_pool_config *cfg, kvfp8_pool **out) {
    if (!cfg || !out) return kvfp8_fail(KVFP8_ERR_INVALID, "pool: config and output must not be NULL");
    *out = NULL;
    if (cfg->num_blocks < 1 || cfg->num_blocks > KVFP8_POOL_MAX_BLOCKS)
        return kvfp8_fail(KVFP8_ERR_INVALID, "pool: num_blocks must be 1..%u (block 0 is the null block), got %u",
                          KVFP8_POOL_MAX_BLOCKS, cfg->num_blocks);
    kvfp8_pool *p = calloc(1, sizeof *p);
    if (!p) return kvfp8_fail(KVFP8_ERR_NOMEM, "pool: out of memory for the pool");
    uint32_t n = cfg->num_blocks;
    uint32_t slots = 16;
    while (slots < (uint64_t)SLOTS_PER_BLOCK * n && slots < (1u << 31)) slots <<= 1;
    p->blocks = calloc((size_t)n + 1, sizeof *p->blocks);
    p->keys = calloc(n, sizeof *p->keys);
    size_t slot_bytes = (size_t)slots * sizeof *p->slots;
    p->slots = aligned_alloc(64, slot_bytes); /* whole cache lines of slots */
    if (p->slots) memset(p->slots, 0, slot_bytes);
    if (!p->blocks || !p->keys || !p->slots) {
        kvfp8_pool_destroy(p);
        return kvfp8_fail(KVFP8_ERR_NOMEM, "pool: out of memory for %u blocks", n);
    }
    p->num_blocks = n;
    p->slot_mask = slots - 1;
    p->enable_events = cfg->enable_events != 0;
    /* Queue 1..n-1 in id order: vLLM builds the queue over all blocks and pops the
     * head (block 0) as the null block, which leaves exactly this. */
    p->blocks[n].next = p->blocks[n].prev = n;
    for (uint32_t i = 1; i < n; i++) queue_append(p, i);
    *out = p;
    return KVFP8_OK;
}

void kvfp8_pool_destroy(kvfp8_pool *p) {
    if (!p) return;
    free(p->blocks);
    free(p->keys);
    free(p->slots);
    free(p->events);
    free(p);
}

uint32_t kvfp8_pool_num_blocks(const kvfp8_pool *p) { return p->num_blocks; }
uint32_t kvfp8_pool_num_free(const kvfp8_pool *p) { return p->num_free; }
uint32_t kvfp8_pool_num_cached(const kvfp8_pool *p) { return p->num_cached; }

double kvfp8_pool_usage(const kvfp8_pool *p) {
    if (p->num_blocks <= 1) return 0.0;
    return 1.0 - (double)p->num_free / (double)(p->num_blocks - 1);
}

/* ---- block operations ------------------------------------------------------- */

kvfp8_status kvfp8_pool_allocate(kvfp8_pool *p, uint32_t n, uint32_t *ids) {
    if (n > p->num_free)
        return kvfp8_fail(KVFP8_ERR_EXHAUSTED, "pool: cannot allocate %u blocks, only %u free of %u", n,
                          p->num_free, p->num_blocks - 1);
    if (n && !ids) return kvfp8_fail(KVFP8_ERR_INVALID, "pool: allocate needs an output array");
    /* The head run of n blocks leaves the queue in one splice (vLLM's popleft_n). */
    uint32_t s = p->num_blocks, id = p->blocks[s].next;
    for (uint32_t k = 0; k < n; k++) {
        ids[k] = id;
        p->blocks[id].ref = 1;
        id = p->blocks[id].next;
    }
    p->blocks[s].next = id;
    p->blocks[id].prev = s;
    p->num_free -= n;
    /* Lazy eviction of the keys they still carry, in allocation order.  Their key
     * records and table slots are scattered, so request them all before using any:
     * the misses then overlap instead of queueing. */
    for (uint32_t k0 = 0; k0 < n; k0 += POOL_BATCH) {
        uint32_t k1 = n - k0 < POOL_BATCH ? n : k0 + POOL_BATCH;
        for (uint32_t k = k0; k < k1; k++)
            if (p->blocks[ids[k]].cached) prefetch(&p->keys[ids[k]]);
        for (uint32_t k = k0; k < k1; k++)
            if (p->blocks[ids[k]].cached) prefetch(&p->slots[p->keys[ids[k]].khash & p->slot_mask]);
        for (uint32_t k = k0; k < k1; k++)
            if (p->blocks[ids[k]].cached) drop_key(p, ids[k]);
    }
    return KVFP8_OK;
}

kvfp8_status kvfp8_pool_free(kvfp8_pool *p, const uint32_t *ids, size_t n) {
    /* One optimistic pass, in list order, exactly as vLLM's free_blocks: a block
     * listed twice reaches 0 (and the tail) at its second entry.  On an error the
     * entries already done are undone in reverse; the blocks they queued are then
     * the tail of the queue, so unlinking them restores it exactly. */
    for (size_t k = 0; k < n; k++) {
        uint32_t id = ids[k];
        kvfp8_status st = KVFP8_OK;
        if (id >= p->num_blocks)
            st = kvfp8_fail(KVFP8_ERR_INVALID, "pool: free of block %u (entry %zu), out of range 0..%u", id, k,
                            p->num_blocks - 1);
        else if (id != KVFP8_POOL_NULL_BLOCK && p->blocks[id].ref <= 0)
            st = kvfp8_fail(KVFP8_ERR_STATE, "pool: double free of block %u (entry %zu): it holds no reference", id,
                            k);
        if (st != KVFP8_OK) {
            while (k--) {
                uint32_t u = ids[k];
                if (u == KVFP8_POOL_NULL_BLOCK) continue;
                if (p->blocks[u].ref == 0) queue_remove(p, u);
                p->blocks[u].ref++;
            }
            return st;
        }
        if (id == KVFP8_POOL_NULL_BLOCK) continue;
        if (--p->blocks[id].ref == 0) queue_append(p, id);
    }
    return KVFP8_OK;
}

kvfp8_status kvfp8_pool_touch(kvfp8_pool *p, const uint32_t *ids, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (ids[k] >= p->num_blocks)
            return kvfp8_fail(KVFP8_ERR_INVALID, "pool: touch of block %u (entry %zu), out of range 0..%u", ids[k],
                              k, p->num_blocks - 1);
    for (size_t k = 0; k < n; k++) {
        uint32_t id = ids[k];
        if (id == KVFP8_POOL_NULL_BLOCK) continue;
        if (p->blocks[id].ref == 0) queue_remove(p, id);
        p->blocks[id].ref++;
    }
    return KVFP8_OK;
}

static kvfp8_status check_hash(const char *what, const kvfp8_block_hash *h) {
    if (!h) return kvfp8_fail(KVFP8_ERR_INVALID, "pool: %s: hash must not be NULL", what);
    if (h->len < 1 || h->len > KVFP8_HASH_MAX)
        return kvfp8_fail(KVFP8_ERR_INVALID, "pool: %s: hash length must be 1..%d bytes, got %u", what,
                          KVFP8_HASH_MAX, h->len);
    return KVFP8_OK;
}

/* Whether block id may be registered under key: 1 to register, 0 when it already
 * carries exactly this key (a no-op), or a failure. */
static kvfp8_status check_cache(const kvfp8_pool *p, uint32_t id, const kvfp8_block_hash *hash, const pool_key *key,
                                int *todo) {
    kvfp8_status st = check_hash("cache_block", hash);
    if (st != KVFP8_OK) return st;
    if (id >= p->num_blocks)
        return kvfp8_fail(KVFP8_ERR_INVALID, "pool: cache of block %u, out of range 0..%u", id, p->num_blocks - 1);
    if (id == KVFP8_POOL_NULL_BLOCK)
        return kvfp8_fail(KVFP8_ERR_INVALID, "pool: block 0 is the null block and is never cached");
    const pool_block *b = &p->blocks[id];
    if (b->ref <= 0)
        return kvfp8_fail(KVFP8_ERR_STATE, "pool: cache of block %u, which is free: only a block in use is cached",
                          id);
    *todo = 1;
    if (b->cached) {
        if (key_eq(&p->keys[id].k, key)) *todo = 0;
        else return kvfp8_fail(KVFP8_ERR_STATE, "pool: block %u already carries another hash", id);
    }
    return KVFP8_OK;
}

/* Appends block id to the chain of its key (vLLM's cached_block_hash_to_block
 * insert: after every block already registered under it). */
static void insert_key(kvfp8_pool *p, uint32_t id, const pool_key *key, uint32_t kh) {
    pool_block *b = &p->blocks[id];
    block_key *k = &p->keys[id];
    uint32_t si = find_slot(p, key, kh);
    k->k = *key;
    k->khash = kh;
    b->cached = 1;
    b->dnext = 0;
    key_slot *s = &p->slots[si];
    if (s->head == 0) {
        s->khash = kh;
        s->head = id;
        b->dprev = id; /* first and last */
    } else {
        pool_block *first = &p->blocks[s->head];
        b->dprev = first->dprev;
        p->blocks[first->dprev].dnext = id;
        first->dprev = id;
    }
    p->num_cached++;
    push_event(p, KVFP8_POOL_EVENT_STORED, id);
}

kvfp8_status kvfp8_pool_cache_block(kvfp8_pool *p, uint32_t id, const kvfp8_block_hash *hash, uint32_t group) {
    pool_key key;
    if (hash && hash->len <= KVFP8_HASH_MAX) make_key(&key, hash, group);
    else memset(&key, 0, sizeof key); /* check_cache refuses the hash */
    int todo = 0;
    kvfp8_status st = check_cache(p, id, hash, &key, &todo);
    if (st != KVFP8_OK || !todo) return st;
    insert_key(p, id, &key, key_hash(&key));
    return KVFP8_OK;
}

kvfp8_status kvfp8_pool_cache_blocks(kvfp8_pool *p, const uint32_t *ids, const kvfp8_block_hash *hashes, size_t n,
                                     uint32_t group) {
    pool_key key[POOL_BATCH];
    /* Validate everything first.  A block listed twice is seen by its second entry
     * as already registered by the first: same key, a no-op; another key, an
     * error.  The first entry's index is parked in the (unused, since the block
     * has no key) dprev field while checking, then cleared. */
    kvfp8_status st = KVFP8_OK;
    size_t k = 0;
    for (; k < n && st == KVFP8_OK; k++) {
        if (hashes[k].len <= KVFP8_HASH_MAX) make_key(&key[0], &hashes[k], group);
        else memset(&key[0], 0, sizeof key[0]); /* check_cache refuses the hash */
        int todo = 0;
        st = check_cache(p, ids[k], &hashes[k], &key[0], &todo);
        if (st != KVFP8_OK) {
            st = kvfp8_fail(st, "%s (entry %zu)", kvfp8_last_error(), k);
            break;
        }
        if (!todo) continue;
        pool_block *b = &p->blocks[ids[k]];
        if (b->dprev) {
            const kvfp8_block_hash *first = &hashes[b->dprev - 1];
            if (first->len != hashes[k].len || memcmp(first->bytes, hashes[k].bytes, first->len) != 0)
                st = kvfp8_fail(KVFP8_ERR_STATE, "pool: block %u listed twice with different hashes (entries %u, %zu)",
                                ids[k], b->dprev - 1, k);
        } else {
            b->dprev = (uint32_t)k + 1;
        }
    }
    for (size_t j = 0; j < k && j < n; j++)
        if (ids[j] < p->num_blocks && !p->blocks[ids[j]].cached) p->blocks[ids[j]].dprev = 0;
    if (st != KVFP8_OK) return st;
    /* Register in order, the table slots of a batch requested ahead of use. */
    uint32_t kh[POOL_BATCH];
    for (size_t i0 = 0; i0 < n; i0 += POOL_BATCH) {
        size_t m = n - i0 < POOL_BATCH ? n - i0 : POOL_BATCH;
        for (size_t j = 0; j < m; j++) {
            make_key(&key[j], &hashes[i0 + j], group);
            kh[j] = key_hash(&key[j]);
            prefetch(&p->slots[kh[j] & p->slot_mask]);
        }
        for (size_t j = 0; j < m; j++) {
            uint32_t id = ids[i0 + j];
            if (p->blocks[id].cached) continue; /* registered already, same key */
            insert_key(p, id, &key[j], kh[j]);
        }
    }
    return KVFP8_OK;
}

kvfp8_status kvfp8_pool_lookup(const kvfp8_pool *p, const kvfp8_block_hash *hash, uint32_t group, uint32_t *id) {
    kvfp8_status st = check_hash("lookup", hash);
    if (st != KVFP8_OK) return st;
    pool_key key;
    make_key(&key, hash, group);
    uint32_t head = find_block(p, &key, key_hash(&key));
    *id = head ? head : KVFP8_POOL_NO_BLOCK;
    return KVFP8_OK;
}

kvfp8_status kvfp8_pool_lookup_many(const kvfp8_pool *p, const kvfp8_block_hash *hashes, size_t n, uint32_t group,
                                    uint32_t *ids) {
    for (size_t i = 0; i < n; i++) {
        kvfp8_status st = check_hash("lookup_many", &hashes[i]);
        if (st != KVFP8_OK) return kvfp8_fail(st, "%s (entry %zu)", kvfp8_last_error(), i);
    }
    pool_key key[POOL_BATCH];
    uint32_t kh[POOL_BATCH];
    uint32_t cand[POOL_BATCH];
    for (size_t i0 = 0; i0 < n; i0 += POOL_BATCH) {
        size_t m = n - i0 < POOL_BATCH ? n - i0 : POOL_BATCH;
        /* Three passes so that the slot loads, then the key loads, overlap. */
        for (size_t j = 0; j < m; j++) {
            make_key(&key[j], &hashes[i0 + j], group);
            kh[j] = key_hash(&key[j]);
            prefetch(&p->slots[kh[j] & p->slot_mask]);
        }
        for (size_t j = 0; j < m; j++) {
            uint32_t si = kh[j] & p->slot_mask;
            while (p->slots[si].head && p->slots[si].khash != kh[j]) si = (si + 1) & p->slot_mask;
            cand[j] = p->slots[si].head;
            if (cand[j]) prefetch(&p->keys[cand[j]]);
        }
        for (size_t j = 0; j < m; j++) {
            uint32_t c = cand[j];
            if (c && !key_eq(&p->keys[c].k, &key[j]))
                c = p->slots[find_slot(p, &key[j], kh[j])].head; /* 32-bit hash collision */
            ids[i0 + j] = c ? c : KVFP8_POOL_NO_BLOCK;
        }
    }
    return KVFP8_OK;
}

kvfp8_status kvfp8_pool_evict(kvfp8_pool *p, const uint32_t *ids, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (ids[k] >= p->num_blocks)
            return kvfp8_fail(KVFP8_ERR_INVALID, "pool: evict of block %u (entry %zu), out of range 0..%u", ids[k],
                              k, p->num_blocks - 1);
    for (size_t k = 0; k < n; k++)
        if (p->blocks[ids[k]].cached) drop_key(p, ids[k]);
    return KVFP8_OK;
}

kvfp8_status kvfp8_pool_reset_prefix_cache(kvfp8_pool *p) {
    uint32_t used = p->num_blocks - 1 - p->num_free;
    if (used)
        return kvfp8_fail(KVFP8_ERR_STATE, "pool: cannot reset the prefix cache while %u blocks are in use", used);
    for (uint32_t i = 1; i < p->num_blocks; i++) {
        p->blocks[i].cached = 0;
        p->blocks[i].dprev = p->blocks[i].dnext = 0;
    }
    memset(p->slots, 0, ((size_t)p->slot_mask + 1) * sizeof *p->slots);
    p->num_cached = 0;
    push_event(p, KVFP8_POOL_EVENT_ALL_CLEARED, 0);
    return KVFP8_OK;
}

/* ---- inspection ------------------------------------------------------------- */

kvfp8_status kvfp8_pool_get_block(const kvfp8_pool *p, uint32_t id, kvfp8_pool_block_info *info) {
    if (id >= p->num_blocks)
        return kvfp8_fail(KVFP8_ERR_INVALID, "pool: block %u out of range 0..%u", id, p->num_blocks - 1);
    const pool_block *b = &p->blocks[id];
    memset(info, 0, sizeof *info);
    info->ref_cnt = id == KVFP8_POOL_NULL_BLOCK ? 0 : (uint32_t)b->ref;
    info->in_free_queue = id != KVFP8_POOL_NULL_BLOCK && b->ref == 0;
    if (b->cached) {
        info->cached = 1;
        split_key(&p->keys[id].k, &info->hash, &info->group);
    }
    return KVFP8_OK;
}

size_t kvfp8_pool_free_queue(const kvfp8_pool *p, uint32_t *out, size_t cap) {
    size_t n = 0;
    uint32_t s = p->num_blocks;
    for (uint32_t id = p->blocks[s].next; id != s && n <= p->num_blocks; id = p->blocks[id].next, n++)
        if (n < cap) out[n] = id;
    return n;
}

kvfp8_status kvfp8_pool_check(const kvfp8_pool *p) {
    uint32_t s = p->num_blocks, count = 0;
    for (uint32_t id = p->blocks[s].next, prev = s; id != s; prev = id, id = p->blocks[id].next) {
        if (id == 0 || id > s) return kvfp8_fail(KVFP8_ERR_STATE, "pool check: free queue holds block %u", id);
        if (p->blocks[id].prev != prev)
            return kvfp8_fail(KVFP8_ERR_STATE, "pool check: block %u's prev link is %u, expected %u", id,
                              p->blocks[id].prev, prev);
        if (p->blocks[id].ref != 0)
            return kvfp8_fail(KVFP8_ERR_STATE, "pool check: queued block %u has ref_cnt %d", id, p->blocks[id].ref);
        if (++count > p->num_blocks) return kvfp8_fail(KVFP8_ERR_STATE, "pool check: free queue has a cycle");
    }
    if (count != p->num_free)
        return kvfp8_fail(KVFP8_ERR_STATE, "pool check: %u blocks queued but num_free is %u", count, p->num_free);
    uint32_t zero = 0, keyed = 0;
    for (uint32_t i = 1; i < p->num_blocks; i++) {
        const pool_block *b = &p->blocks[i];
        if (b->ref < 0) return kvfp8_fail(KVFP8_ERR_STATE, "pool check: block %u has ref_cnt %d", i, b->ref);
        zero += b->ref == 0;
        if (!b->cached) continue;
        keyed++;
        const block_key *k = &p->keys[i];
        kvfp8_block_hash h;
        uint32_t group;
        pool_key again;
        if (k->k.len >= 1 && k->k.len <= KVFP8_HASH_MAX) {
            split_key(&k->k, &h, &group);
            make_key(&again, &h, group);
        }
        if (k->k.len < 1 || k->k.len > KVFP8_HASH_MAX || !key_eq(&again, &k->k) || k->khash != key_hash(&k->k))
            return kvfp8_fail(KVFP8_ERR_STATE, "pool check: block %u's key is malformed", i);
        uint32_t si = find_slot(p, &k->k, k->khash);
        if (p->slots[si].head == 0)
            return kvfp8_fail(KVFP8_ERR_STATE, "pool check: block %u's key is not in the table", i);
        uint32_t c = p->slots[si].head, steps = 0;
        while (c && c != i && steps++ <= p->num_blocks) c = p->blocks[c].dnext;
        if (c != i) return kvfp8_fail(KVFP8_ERR_STATE, "pool check: block %u missing from its key's chain", i);
    }
    if (zero != count)
        return kvfp8_fail(KVFP8_ERR_STATE, "pool check: %u blocks have ref_cnt 0 but %u are queued", zero, count);
    if (p->blocks[0].cached) return kvfp8_fail(KVFP8_ERR_STATE, "pool check: the null block carries a key");
    if (keyed != p->num_cached)
        return kvfp8_fail(KVFP8_ERR_STATE, "pool check: %u blocks keyed but num_cached is %u", keyed,
                          p->num_cached);
    uint32_t chained = 0;
    for (uint32_t si = 0; si <= p->slot_mask; si++) {
        const key_slot *sl = &p->slots[si];
        if (!sl->head) continue;
        uint32_t prev = 0, c = sl->head;
        for (; c; prev = c, c = p->blocks[c].dnext) {
            if (c >= p->num_blocks || !p->blocks[c].cached || p->keys[c].khash != sl->khash ||
                !key_eq(&p->keys[c].k, &p->keys[sl->head].k) || (prev && p->blocks[c].dprev != prev) ||
                ++chained > p->num_cached)
                return kvfp8_fail(KVFP8_ERR_STATE, "pool check: key chain at slot %u is broken at block %u", si, c);
        }
        if (p->blocks[sl->head].dprev != prev)
            return kvfp8_fail(KVFP8_ERR_STATE, "pool check: key slot %u's last block is %u, chain ends at %u", si,
                              p->blocks[sl->head].dprev, prev);
        if (find_slot(p, &p->keys[sl->head].k, sl->khash) != si)
            return kvfp8_fail(KVFP8_ERR_STATE, "pool check: key slot %u is unreachable by probing", si);
    }
    if (chained != p->num_cached)
        return kvfp8_fail(KVFP8_ERR_STATE, "pool check: %u blocks chained but %u keyed", chained, p->num_cached);
    return KVFP8_OK;
}
