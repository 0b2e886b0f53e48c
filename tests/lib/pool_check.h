/* Lock-step harness for the model-based pool test and the pool fuzzer: applies one
 * operation to the real pool + manager (ref/pool.c, ref/prefix_manager.c) and to the
 * simple model (pool_model.c), then compares every observable: status codes, block
 * ids handed out, per-block reference counts and keys, the free-queue order, every
 * lookup, events, each request's block lists, statistics, the hit-rate window and
 * usage.  Operations are five bytes, so a seeded generator and fuzz input drive the
 * same code. */
#ifndef KVFP8_TESTS_POOL_CHECK_H
#define KVFP8_TESTS_POOL_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum {
    PC_ADD,       /* new request (or a duplicate id / a wrong hash count) */
    PC_APPEND,    /* tokens appended to a request */
    PC_LOOKUP,    /* get_computed_blocks */
    PC_ALLOC,     /* allocate_slots with an arbitrary (sometimes invalid) count */
    PC_SCHEDULE,  /* a scheduler step: append if done, look up if new, allocate a chunk */
    PC_FREE,      /* request finished (or an unknown id) */
    PC_PREEMPT,   /* request preempted */
    PC_EVICT,     /* pool evict of 1..3 block ids, some out of range */
    PC_RESET,     /* reset_prefix_cache */
    PC_END_STEP,  /* stats into the hit-rate window */
    PC_RAW_ALLOC, /* pool-level allocate held by the harness */
    PC_RAW_FREE,  /* pool-level free of harness-held blocks */
    PC_RAW_TOUCH, /* pool-level touch, by id or by lookup */
    PC_RAW_CACHE, /* pool-level cache_block, any block, any group */
    PC_BAD_FREE,  /* pool-level free that must fail and change nothing */
    PC_NUM_OPS
};

typedef struct {
    uint8_t kind, a, b, c, d;
} pool_check_op;

typedef struct {
    uint32_t num_blocks; /* 1..MODEL_MAX_BLOCKS */
    uint32_t block_size; /* >= 1 */
    uint32_t num_groups; /* 1..KVFP8_PM_MAX_GROUPS */
    int caching;
    int events;
    uint32_t window; /* hit-rate window, small so it slides */
} pool_check_config;

/* How often each interesting thing happened, so a test can show it was reached. */
typedef struct {
    uint64_t ops, ok[PC_NUM_OPS], failed[PC_NUM_OPS];
    uint64_t hit_tokens, hit_lookups, evictions, exhausted, resets;
    uint64_t dup_keys; /* block-steps where a block carried a key an earlier block also carries */
} pool_check_counts;

typedef struct pool_check pool_check;

pool_check *pool_check_new(const pool_check_config *cfg);
void pool_check_delete(pool_check *pc);
/* 0 when real and model agree after the operation; otherwise 1, with the first
 * difference in pool_check_message(). */
int pool_check_step(pool_check *pc, const pool_check_op *op);
const char *pool_check_message(const pool_check *pc);
/* The last operations applied, oldest first, then the mismatch. */
void pool_check_print_trace(const pool_check *pc, FILE *f);
const pool_check_counts *pool_check_get_counts(const pool_check *pc);
/* The real pool under test, so a test can make it diverge on purpose and show the
 * check notices. */
struct kvfp8_pool *pool_check_real_pool(pool_check *pc);

/* Decoders shared by the fuzzer and the seeded test. */
pool_check_config pool_check_config_from_bytes(const uint8_t b[5]);
pool_check_op pool_check_op_from_bytes(const uint8_t b[5]);

#endif
