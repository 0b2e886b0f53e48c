/* kvfp8 — per-request KV-cache manager over a kvfp8_pool, with vLLM v1's
 * prefix-caching rules (KVCacheManager + FullAttentionManager).
 *
 * A request is a token count plus the hash of each of its full blocks, supplied by
 * the caller (the block-hashing module computes them; the manager treats them as
 * opaque).  The scheduling cycle mirrors vLLM's scheduler:
 *
 *   kvfp8_pm_add_request(m, "r1", num_prompt_tokens, hashes, n)  n = tokens / block_size
 *   kvfp8_pm_get_computed_blocks(m, "r1", &hit_tokens)  longest cached prefix, before
 *                                                         the first chunk only
 *   kvfp8_pm_allocate_slots(m, "r1", num_new_tokens, 0)   takes the hit, grows the
 *                                                         block list, caches full blocks
 *   kvfp8_pm_append_tokens(m, "r1", 1, hashes, k)         a generated token (k = 1 when
 *                                                         it completes a block)
 *   kvfp8_pm_allocate_slots(m, "r1", 1, 0)                ... decode steps ...
 *   kvfp8_pm_free(m, "r1")                                blocks back, tail first
 *
 * Several KV-cache groups (full attention, one block size) may share the pool; each
 * group allocates its own blocks and keys them with its group id 0..num_groups-1, and
 * a prefix block hits only if it hits in every group.  Not modelled: sliding-window,
 * Mamba and cross-attention groups, EAGLE's dropped last block, KV connectors.
 *
 * Not thread-safe (one scheduler thread, as in vLLM). */
#ifndef KVFP8_PREFIX_MANAGER_H
#define KVFP8_PREFIX_MANAGER_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/pool.h"
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVFP8_PM_MAX_GROUPS 8
#define KVFP8_PM_MAX_ID 255            /* request id length, bytes */
#define KVFP8_PM_MAX_TOKENS (1u << 30) /* per request */
#define KVFP8_HIT_WINDOW_DEFAULT 1000  /* vLLM's PrefixCachingMetrics default */

/* ---- prefix-cache statistics (vLLM's PrefixCacheStats) ---------------------- */
typedef struct {
    int reset;          /* reset_prefix_cache succeeded since the last take */
    uint64_t requests;  /* lookups for requests never preempted */
    uint64_t queries;   /* their tokens (request.num_tokens at lookup) */
    uint64_t hits;      /* their tokens found in the cache */
    uint64_t preempted_requests; /* the same for re-scheduled preempted requests, */
    uint64_t preempted_queries;  /* kept apart so recomputation after preemption */
    uint64_t preempted_hits;     /* does not inflate the hit rate */
} kvfp8_prefix_cache_stats;

/* ---- hit rate over the most recent requests (vLLM's CachingMetrics) ----------
 * Each observe() adds one batch of stats (one scheduler step) as a unit; the
 * oldest batches are dropped while more than max_recent_requests requests are
 * aggregated, but the newest batch is always kept.  Batches with no requests are
 * ignored; a batch flagged reset clears the window first.  Preempted counts are not
 * part of the rate. */
typedef struct {
    uint64_t requests, queries, hits;
} kvfp8_hit_window_entry;

typedef struct {
    uint32_t max_recent_requests;
    uint64_t requests, queries, hits; /* aggregated over the queue */
    kvfp8_hit_window_entry *queue;    /* ring of cap entries */
    size_t head, len, cap;
} kvfp8_hit_window;

/* max_recent_requests 0 means KVFP8_HIT_WINDOW_DEFAULT. */
kvfp8_status kvfp8_hit_window_init(kvfp8_hit_window *w, uint32_t max_recent_requests);
void kvfp8_hit_window_release(kvfp8_hit_window *w);
void kvfp8_hit_window_reset(kvfp8_hit_window *w);
void kvfp8_hit_window_observe(kvfp8_hit_window *w, const kvfp8_prefix_cache_stats *s);
/* hits / queries over the window; 0 when nothing was queried. */
double kvfp8_hit_window_rate(const kvfp8_hit_window *w);

/* ---- the manager -------------------------------------------------------------- */
typedef struct {
    uint32_t block_size;          /* tokens per block, >= 1 */
    uint32_t num_groups;          /* 1..KVFP8_PM_MAX_GROUPS */
    int enable_caching;           /* 0: no lookups, no registration (vLLM enable_prefix_caching) */
    uint32_t max_recent_requests; /* hit-rate window; 0 = 1000 */
} kvfp8_pm_config;

typedef struct kvfp8_pm kvfp8_pm;

/* The pool is borrowed; it must outlive the manager. */
kvfp8_status kvfp8_pm_create(kvfp8_pool *pool, const kvfp8_pm_config *cfg, kvfp8_pm **out);
/* Releases every request (their blocks go back to the pool, as by kvfp8_pm_free). */
void kvfp8_pm_destroy(kvfp8_pm *m);
kvfp8_pool *kvfp8_pm_pool(kvfp8_pm *m);

/* A new request of num_tokens >= 1 tokens with the hashes of its full blocks:
 * n_hashes must equal num_tokens / block_size. */
kvfp8_status kvfp8_pm_add_request(kvfp8_pm *m, const char *req_id, uint32_t num_tokens,
                                  const kvfp8_block_hash *hashes, size_t n_hashes);

/* n >= 1 more tokens (generated, or resumed), with the hashes of the blocks they
 * complete: n_hashes must equal (num_tokens + n) / block_size - num_tokens / block_size. */
kvfp8_status kvfp8_pm_append_tokens(kvfp8_pm *m, const char *req_id, uint32_t n,
                                    const kvfp8_block_hash *hashes, size_t n_hashes);

/* The longest cached prefix: walks the request's block hashes from the first and
 * stops at the first block that misses in any group, covering at most
 * num_tokens - 1 tokens (the last token is always recomputed for its logits, so a
 * prompt of exactly k full blocks hits at most k - 1).  The hit is remembered for
 * the next allocate_slots, which takes it; nothing is touched yet.  Records the
 * lookup in the statistics (as preempted if the request was ever preempted).
 * Only valid before the request's first chunk (no computed tokens): otherwise
 * KVFP8_ERR_STATE.  With caching disabled, 0 and no statistics. */
kvfp8_status kvfp8_pm_get_computed_blocks(kvfp8_pm *m, const char *req_id, uint32_t *num_hit_tokens);

/* Schedules num_new_tokens >= 1 tokens (at most the tokens neither computed nor
 * hit) plus num_lookahead_tokens speculative slots: takes the pending hit (touching
 * its blocks), allocates the blocks still missing in every group, registers every
 * block that these tokens fill (before their KV is computed, as vLLM does), and
 * advances the computed-token count by hit + num_new_tokens.  All or nothing: with
 * too few free blocks (an evictable hit block counts as one needed) it fails with
 * KVFP8_ERR_EXHAUSTED and changes nothing but dropping the pending hit, so the
 * caller looks it up again next time.  A pending hit whose block lost its key since
 * the lookup fails with KVFP8_ERR_STATE, likewise. */
kvfp8_status kvfp8_pm_allocate_slots(kvfp8_pm *m, const char *req_id, uint32_t num_new_tokens,
                                     uint32_t num_lookahead_tokens);

/* The request finished: its blocks go back to the pool, each group's in reverse
 * order (tail blocks become evictable first), and the request is forgotten.  An
 * unknown id (never added, or already freed) is KVFP8_ERR_STATE. */
kvfp8_status kvfp8_pm_free(kvfp8_pm *m, const char *req_id);

/* The request was preempted: its blocks are freed as above, but the request stays,
 * with no computed tokens, to be looked up and scheduled again. */
kvfp8_status kvfp8_pm_preempt(kvfp8_pm *m, const char *req_id);

/* Forgets every cached prefix; refused (KVFP8_ERR_STATE) while any block is in use. */
kvfp8_status kvfp8_pm_reset_prefix_cache(kvfp8_pm *m);

/* ---- inspection ------------------------------------------------------------- */
typedef struct {
    uint32_t num_tokens;
    uint32_t num_computed_tokens;
    uint32_t num_preemptions;
    uint32_t num_hashes;
    uint32_t num_blocks;        /* per group; every group holds the same number */
    uint32_t num_cached_blocks; /* leading blocks registered (or hit), per group */
    int has_pending_hit;
    uint32_t pending_hit_blocks;
} kvfp8_pm_request_info;

kvfp8_status kvfp8_pm_get_request(const kvfp8_pm *m, const char *req_id, kvfp8_pm_request_info *info);
/* The request's blocks in group g, in token order (valid until the next call that
 * changes the request). */
kvfp8_status kvfp8_pm_request_blocks(const kvfp8_pm *m, const char *req_id, uint32_t group,
                                     const uint32_t **ids, size_t *n);
/* The blocks of the pending hit in group g. */
kvfp8_status kvfp8_pm_pending_blocks(const kvfp8_pm *m, const char *req_id, uint32_t group,
                                     const uint32_t **ids, size_t *n);
size_t kvfp8_pm_num_requests(const kvfp8_pm *m);
double kvfp8_pm_usage(const kvfp8_pm *m);

/* Returns the statistics gathered since the last take and starts new ones (vLLM's
 * make_prefix_cache_stats). */
void kvfp8_pm_take_stats(kvfp8_pm *m, kvfp8_prefix_cache_stats *out);
/* The statistics gathered since the last take, without taking them. */
const kvfp8_prefix_cache_stats *kvfp8_pm_stats(const kvfp8_pm *m);
/* Ends a scheduler step: takes the statistics and observes them into the
 * manager's own hit-rate window. */
void kvfp8_pm_end_step(kvfp8_pm *m);
double kvfp8_pm_hit_rate(const kvfp8_pm *m);
const kvfp8_hit_window *kvfp8_pm_window(const kvfp8_pm *m);

#ifdef __cplusplus
}
#endif
#endif
