/* A deliberately simple model of the block pool and prefix-cache manager, for the
 * model-based test (tests/test_pool.c) and the fuzzer (fuzz/fuzz_pool.c).
 *
 * It restates each vLLM rule in the plainest form that could work, sharing no code
 * with ref/pool.c or ref/prefix_manager.c: the free queue is an array shifted by
 * memmove, a lookup scans every block for the key and takes the one registered
 * earliest (a global registration counter), all-or-nothing pool operations copy the
 * whole pool state and restore it on error.  Sizes are fixed and small; callers
 * keep within the limits below. */
#ifndef KVFP8_TESTS_POOL_MODEL_H
#define KVFP8_TESTS_POOL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/pool.h"
#include "kvfp8/prefix_manager.h"
#include "kvfp8/status.h"

/* The model's and checker's own loops are not what a fuzzer should learn from, and
 * tracing their comparisons costs most of its time: keep libFuzzer's coverage
 * instrumentation to the code under test. */
#if defined(__clang__) && __clang_major__ >= 13
#define MODEL_NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define MODEL_NO_COVERAGE
#endif

#define MODEL_MAX_BLOCKS 512
#define MODEL_MAX_REQS 32
#define MODEL_MAX_HASHES 256 /* full blocks per request */
#define MODEL_MAX_EVENTS 4096
#define MODEL_MAX_GROUPS 4 /* the harness uses at most 3 */
#define MODEL_MAX_WINDOW 4096

typedef struct {
    int32_t ref;
    int cached;
    kvfp8_block_hash hash;
    uint32_t group;
    uint64_t seq; /* registration order, for "earliest registered wins" */
} model_block;

typedef struct {
    uint32_t num_blocks;
    model_block blocks[MODEL_MAX_BLOCKS];
    uint32_t queue[MODEL_MAX_BLOCKS]; /* queue[0] is allocated next */
    uint32_t qlen;
    uint64_t next_seq;
    int events_on;
    size_t n_events;
    kvfp8_pool_event events[MODEL_MAX_EVENTS];
} model_pool;

void model_pool_init(model_pool *p, uint32_t num_blocks, int events_on);
uint32_t model_pool_num_cached(const model_pool *p);
double model_pool_usage(const model_pool *p);
kvfp8_status model_pool_allocate(model_pool *p, uint32_t n, uint32_t *ids);
kvfp8_status model_pool_free(model_pool *p, const uint32_t *ids, size_t n);
kvfp8_status model_pool_touch(model_pool *p, const uint32_t *ids, size_t n);
kvfp8_status model_pool_cache_block(model_pool *p, uint32_t id, const kvfp8_block_hash *h, uint32_t group);
kvfp8_status model_pool_lookup(const model_pool *p, const kvfp8_block_hash *h, uint32_t group, uint32_t *id);
kvfp8_status model_pool_evict(model_pool *p, const uint32_t *ids, size_t n);
kvfp8_status model_pool_reset(model_pool *p);

typedef struct {
    int used;
    char id[64];
    uint32_t num_tokens, num_computed, num_preemptions;
    uint32_t n_hashes;
    kvfp8_block_hash hashes[MODEL_MAX_HASHES];
    uint32_t n_blocks; /* per group */
    uint32_t blocks[MODEL_MAX_GROUPS][MODEL_MAX_HASHES + 8];
    uint32_t num_cached;
    int has_pending;
    uint32_t n_pending;
    uint32_t pending[MODEL_MAX_GROUPS][MODEL_MAX_HASHES];
} model_request;

typedef struct {
    uint32_t max_recent;
    size_t len;
    kvfp8_hit_window_entry entries[MODEL_MAX_WINDOW];
} model_window;

typedef struct {
    model_pool pool;
    uint32_t block_size, num_groups;
    int caching;
    model_request reqs[MODEL_MAX_REQS];
    kvfp8_prefix_cache_stats stats;
    model_window window;
} model_pm;

void model_window_init(model_window *w, uint32_t max_recent);
void model_window_observe(model_window *w, const kvfp8_prefix_cache_stats *s);
/* Sums over the window. */
void model_window_totals(const model_window *w, uint64_t *requests, uint64_t *queries, uint64_t *hits);
double model_window_rate(const model_window *w);

void model_pm_init(model_pm *m, uint32_t num_blocks, int events_on, uint32_t block_size, uint32_t num_groups,
                   int caching, uint32_t window);
model_request *model_pm_find(model_pm *m, const char *id);
size_t model_pm_num_requests(const model_pm *m);
kvfp8_status model_pm_add_request(model_pm *m, const char *id, uint32_t num_tokens, const kvfp8_block_hash *h,
                                  size_t n);
kvfp8_status model_pm_append_tokens(model_pm *m, const char *id, uint32_t n, const kvfp8_block_hash *h, size_t nh);
kvfp8_status model_pm_get_computed_blocks(model_pm *m, const char *id, uint32_t *hit_tokens);
kvfp8_status model_pm_allocate_slots(model_pm *m, const char *id, uint32_t num_new, uint32_t lookahead);
kvfp8_status model_pm_free(model_pm *m, const char *id);
kvfp8_status model_pm_preempt(model_pm *m, const char *id);
kvfp8_status model_pm_reset(model_pm *m);
void model_pm_end_step(model_pm *m);

#endif
