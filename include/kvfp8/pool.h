/* kvfp8 — KV-cache block pool with vLLM v1 prefix-caching semantics.
 *
 * The pool owns block *metadata* only (reference counts, cache keys, eviction
 * order); the KV bytes of block i live wherever the caller keeps them.  Every rule
 * below is the one vLLM v1's BlockPool follows, so a trace of pool operations gives
 * the same block ids, the same hits and the same evictions as vLLM would
 * (docs/pool.md lists each rule with its vLLM source):
 *
 *  - Block 0 is the null block: a placeholder that is never handed out, never
 *    cached, never queued, and does not count towards usage.
 *  - Free blocks sit in a queue, initially in block-id order.  Allocation takes from
 *    the head (least recently used first); a block whose reference count drops to 0
 *    goes to the tail.  A block in the queue may still carry a cache key: it is an
 *    eviction candidate, and it is evicted lazily, when allocation takes it.
 *  - Touching a block (a prefix hit) takes it out of the queue if its count was 0
 *    and adds a reference.
 *  - Cache keys are (hash bytes, group id); several blocks may carry the same key
 *    (no de-duplication, so block tables stay append-only) and a lookup returns the
 *    earliest-inserted block that still carries it.
 *
 * Not thread-safe: one pool is driven by one scheduler thread, as in vLLM. */
#ifndef KVFP8_POOL_H
#define KVFP8_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVFP8_POOL_NULL_BLOCK 0u
/* Returned by a lookup that misses (0 would also do, since the null block is never
 * cached, but a distinct value keeps callers from mistaking a miss for a block). */
#define KVFP8_POOL_NO_BLOCK UINT32_MAX
/* A block hash is an opaque byte string of 1..32 bytes, produced by the block
 * hashing module; the pool never interprets it. */
#define KVFP8_HASH_MAX 32
/* The pool key: hash bytes followed by the group id as 4 big-endian bytes, exactly
 * vLLM's make_block_hash_with_group_id(). */
#define KVFP8_POOL_KEY_MAX (KVFP8_HASH_MAX + 4)
/* Largest pool; keeps every count in 32 bits with room for the queue sentinel. */
#define KVFP8_POOL_MAX_BLOCKS (1u << 30)

typedef struct {
    uint8_t len; /* 1..KVFP8_HASH_MAX */
    uint8_t bytes[KVFP8_HASH_MAX];
} kvfp8_block_hash;

typedef struct {
    uint32_t num_blocks; /* including the null block: 1..KVFP8_POOL_MAX_BLOCKS */
    int enable_events;   /* record stored/removed/cleared events for take_events */
} kvfp8_pool_config;

typedef struct kvfp8_pool kvfp8_pool;

kvfp8_status kvfp8_pool_create(const kvfp8_pool_config *cfg, kvfp8_pool **out);
void kvfp8_pool_destroy(kvfp8_pool *pool);

uint32_t kvfp8_pool_num_blocks(const kvfp8_pool *pool);
/* Blocks in the free queue, cached eviction candidates included (vLLM's
 * get_num_free_blocks). */
uint32_t kvfp8_pool_num_free(const kvfp8_pool *pool);
/* Blocks currently carrying a cache key, free or in use. */
uint32_t kvfp8_pool_num_cached(const kvfp8_pool *pool);
/* 1 - free / (num_blocks - 1): the fraction of non-null blocks in use; 0 for a pool
 * that holds only the null block. */
double kvfp8_pool_usage(const kvfp8_pool *pool);

/* Takes n blocks from the head of the free queue into ids[0..n), evicting any cache
 * key they carry, each with reference count 1.  All or nothing: with fewer than n
 * free blocks it fails with KVFP8_ERR_EXHAUSTED and changes nothing. */
kvfp8_status kvfp8_pool_allocate(kvfp8_pool *pool, uint32_t n, uint32_t *ids);

/* Drops one reference from each of ids[0..n), in order; a block whose count reaches
 * 0 is appended to the free-queue tail, so ids[0] is evicted first.  The null block
 * is skipped (its count is not maintained).  All or nothing: an id out of range, or
 * one more reference dropped from a block than it holds (a double free), fails with
 * nothing changed. */
kvfp8_status kvfp8_pool_free(kvfp8_pool *pool, const uint32_t *ids, size_t n);

/* Adds one reference to each of ids[0..n), first taking a block out of the free
 * queue if its count was 0 (a prefix hit on an eviction candidate).  The null block
 * is skipped.  Fails, changing nothing, on an id out of range. */
kvfp8_status kvfp8_pool_touch(kvfp8_pool *pool, const uint32_t *ids, size_t n);

/* Registers block id as holding the KV of the full block `hash` in KV-cache group
 * `group`, after any blocks already registered under that key.  The block must be
 * in use (count > 0) and not the null block.  Registering a block again under the
 * key it already has is a no-op; under a different key it is KVFP8_ERR_STATE. */
kvfp8_status kvfp8_pool_cache_block(kvfp8_pool *pool, uint32_t id,
                                    const kvfp8_block_hash *hash, uint32_t group);

/* kvfp8_pool_cache_block for ids[k] under hashes[k], k = 0..n-1, in order, in one
 * group: what the manager does when a chunk fills several blocks.  All or nothing:
 * every entry is checked first (a block listed twice must be listed with the same
 * hash), and on any error nothing is registered. */
kvfp8_status kvfp8_pool_cache_blocks(kvfp8_pool *pool, const uint32_t *ids, const kvfp8_block_hash *hashes,
                                     size_t n, uint32_t group);

/* The earliest-registered block still carrying (hash, group), or
 * KVFP8_POOL_NO_BLOCK.  Does not touch it. */
kvfp8_status kvfp8_pool_lookup(const kvfp8_pool *pool, const kvfp8_block_hash *hash,
                               uint32_t group, uint32_t *id);

/* kvfp8_pool_lookup for each of hashes[0..n) in one group, into ids[0..n): the
 * same answers, with the cache misses of independent lookups overlapped (a prefix
 * walk looks up a run of consecutive block hashes).  Fails, writing nothing, if any
 * hash is malformed. */
kvfp8_status kvfp8_pool_lookup_many(const kvfp8_pool *pool, const kvfp8_block_hash *hashes, size_t n,
                                    uint32_t group, uint32_t *ids);

/* Drops the cache key of each listed block, in use or not, leaving its reference
 * count and queue position alone (vLLM's evict_blocks).  Blocks without a key are
 * ignored; an id out of range fails, changing nothing. */
kvfp8_status kvfp8_pool_evict(kvfp8_pool *pool, const uint32_t *ids, size_t n);

/* Forgets every cache key.  Refused with KVFP8_ERR_STATE (and nothing changed)
 * while any non-null block is in use, as in vLLM. */
kvfp8_status kvfp8_pool_reset_prefix_cache(kvfp8_pool *pool);

/* ---- inspection (tests, tools) ---------------------------------------------- */
typedef struct {
    uint32_t ref_cnt;      /* 0 for the null block: its count is not kept */
    int in_free_queue;
    int cached;            /* carries a cache key */
    kvfp8_block_hash hash; /* valid when cached */
    uint32_t group;        /* valid when cached */
} kvfp8_pool_block_info;

kvfp8_status kvfp8_pool_get_block(const kvfp8_pool *pool, uint32_t id,
                                  kvfp8_pool_block_info *info);
/* Copies the free queue, head (next to be allocated) first, into out[0..cap);
 * returns the queue length, which may exceed cap. */
size_t kvfp8_pool_free_queue(const kvfp8_pool *pool, uint32_t *out, size_t cap);
/* Walks every internal structure (queue links, key table, duplicate chains,
 * counters) and fails with KVFP8_ERR_STATE naming the first inconsistency. */
kvfp8_status kvfp8_pool_check(const kvfp8_pool *pool);

/* ---- events (vLLM's BlockStored / BlockRemoved / AllBlocksCleared) ---------- */
typedef enum {
    KVFP8_POOL_EVENT_STORED = 1,     /* a block was registered under a key */
    KVFP8_POOL_EVENT_REMOVED = 2,    /* a block lost its key (allocation or evict) */
    KVFP8_POOL_EVENT_ALL_CLEARED = 3 /* reset_prefix_cache succeeded */
} kvfp8_pool_event_kind;

typedef struct {
    kvfp8_pool_event_kind kind;
    uint32_t block;        /* not meaningful for ALL_CLEARED */
    uint32_t group;
    kvfp8_block_hash hash; /* len 0 for ALL_CLEARED */
} kvfp8_pool_event;

/* Moves up to cap of the oldest pending events into out and returns how many were
 * moved; with events disabled there are never any. */
size_t kvfp8_pool_take_events(kvfp8_pool *pool, kvfp8_pool_event *out, size_t cap);
/* Events lost because the queue could not grow (out of memory). */
uint64_t kvfp8_pool_events_dropped(const kvfp8_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
