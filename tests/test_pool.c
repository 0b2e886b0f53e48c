/* Block pool and prefix-cache manager: one directed test per vLLM rule and per
 * error, then model-based runs that drive the real code and the simple model in
 * tests/lib/pool_model.c through thousands of seeded random operations, comparing
 * every observable after each one (tests/lib/pool_check.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kvfp8/pool.h"
#include "kvfp8/prefix_manager.h"
#include "pool_check.h"

/* ---- helpers ---------------------------------------------------------------------- */

static kvfp8_pool *new_pool(uint32_t n, int events) {
    kvfp8_pool_config cfg = {.num_blocks = n, .enable_events = events};
    kvfp8_pool *p = NULL;
    assert_int_equal(kvfp8_pool_create(&cfg, &p), KVFP8_OK);
    return p;
}

static kvfp8_pm *new_pm(kvfp8_pool *p, uint32_t bs, uint32_t groups, uint32_t window) {
    kvfp8_pm_config cfg = {.block_size = bs, .num_groups = groups, .enable_caching = 1, .max_recent_requests = window};
    kvfp8_pm *m = NULL;
    assert_int_equal(kvfp8_pm_create(p, &cfg, &m), KVFP8_OK);
    return m;
}

static kvfp8_block_hash H(uint8_t tag, uint8_t i) {
    kvfp8_block_hash h;
    memset(&h, 0, sizeof h);
    h.len = 32;
    h.bytes[0] = tag;
    h.bytes[1] = i;
    return h;
}

/* Hashes of a prompt whose block i hashes as H(tag, i). */
static void prompt_hashes(kvfp8_block_hash *h, size_t n, uint8_t tag) {
    for (size_t i = 0; i < n; i++) h[i] = H(tag, (uint8_t)i);
}

static uint32_t lookup(kvfp8_pool *p, kvfp8_block_hash h, uint32_t g) {
    uint32_t id;
    assert_int_equal(kvfp8_pool_lookup(p, &h, g, &id), KVFP8_OK);
    return id;
}

static uint32_t ref_of(kvfp8_pool *p, uint32_t id) {
    kvfp8_pool_block_info bi;
    assert_int_equal(kvfp8_pool_get_block(p, id, &bi), KVFP8_OK);
    return bi.ref_cnt;
}

static void assert_queue(kvfp8_pool *p, const uint32_t *want, size_t n) {
    uint32_t q[256];
    size_t got = kvfp8_pool_free_queue(p, q, 256);
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++) assert_int_equal(q[i], want[i]);
    assert_int_equal(kvfp8_pool_check(p), KVFP8_OK);
}

static void assert_error_mentions(const char *needle) {
    if (!strstr(kvfp8_last_error(), needle)) fail_msg("error \"%s\" does not mention \"%s\"", kvfp8_last_error(), needle);
}

static const uint32_t *req_blocks(kvfp8_pm *m, const char *id, uint32_t g, size_t *n) {
    const uint32_t *ids;
    assert_int_equal(kvfp8_pm_request_blocks(m, id, g, &ids, n), KVFP8_OK);
    return ids;
}

/* A request added and scheduled in one go: lookup, then every remaining token. */
static uint32_t admit(kvfp8_pm *m, const char *id, uint32_t tokens, uint8_t tag) {
    kvfp8_block_hash h[64];
    kvfp8_pm_request_info info;
    prompt_hashes(h, 64, tag);
    assert_int_equal(kvfp8_pm_add_request(m, id, tokens, h, tokens / 4), KVFP8_OK);
    uint32_t hit = 0;
    assert_int_equal(kvfp8_pm_get_computed_blocks(m, id, &hit), KVFP8_OK);
    assert_int_equal(kvfp8_pm_allocate_slots(m, id, tokens - hit, 0), KVFP8_OK);
    assert_int_equal(kvfp8_pm_get_request(m, id, &info), KVFP8_OK);
    assert_int_equal(info.num_computed_tokens, tokens);
    return hit;
}

/* ---- pool rules --------------------------------------------------------------------- */

static void test_null_block(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(4, 0);
    assert_int_equal(kvfp8_pool_num_free(p), 3);
    uint32_t q0[] = {1, 2, 3};
    assert_queue(p, q0, 3);
    assert_true(kvfp8_pool_usage(p) == 0.0);
    uint32_t ids[3];
    assert_int_equal(kvfp8_pool_allocate(p, 3, ids), KVFP8_OK);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[2], 3);
    assert_true(kvfp8_pool_usage(p) == 1.0); /* the null block is not counted */
    kvfp8_block_hash h = H(1, 0);
    assert_int_equal(kvfp8_pool_cache_block(p, 0, &h, 0), KVFP8_ERR_INVALID);
    assert_error_mentions("null block");
    uint32_t null = 0;
    assert_int_equal(kvfp8_pool_free(p, &null, 1), KVFP8_OK); /* skipped, never queued */
    assert_int_equal(kvfp8_pool_touch(p, &null, 1), KVFP8_OK);
    assert_queue(p, NULL, 0);
    assert_int_equal(ref_of(p, 0), 0);
    kvfp8_pool_destroy(p);

    p = new_pool(1, 0); /* only the null block */
    assert_true(kvfp8_pool_usage(p) == 0.0);
    assert_int_equal(kvfp8_pool_allocate(p, 1, ids), KVFP8_ERR_EXHAUSTED);
    kvfp8_pool_destroy(p);
    kvfp8_pool_config bad = {.num_blocks = 0};
    assert_int_equal(kvfp8_pool_create(&bad, &p), KVFP8_ERR_INVALID);
}

static void test_free_queue_lru_order(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(6, 0);
    uint32_t a[3];
    assert_int_equal(kvfp8_pool_allocate(p, 3, a), KVFP8_OK); /* 1 2 3 from the head */
    uint32_t q1[] = {4, 5};
    assert_queue(p, q1, 2);
    uint32_t two = 2, one = 1;
    assert_int_equal(kvfp8_pool_free(p, &two, 1), KVFP8_OK); /* to the tail */
    assert_int_equal(kvfp8_pool_free(p, &one, 1), KVFP8_OK);
    uint32_t q2[] = {4, 5, 2, 1};
    assert_queue(p, q2, 4);
    uint32_t b[4];
    assert_int_equal(kvfp8_pool_allocate(p, 4, b), KVFP8_OK);
    uint32_t want[] = {4, 5, 2, 1}; /* least recently freed first */
    for (int i = 0; i < 4; i++) assert_int_equal(b[i], want[i]);
    kvfp8_pool_destroy(p);
}

static void test_touch_removes_from_middle(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(5, 0);
    uint32_t mid = 2;
    assert_int_equal(kvfp8_pool_touch(p, &mid, 1), KVFP8_OK); /* ref 0 -> 1, out of the queue */
    uint32_t q[] = {1, 3, 4};
    assert_queue(p, q, 3);
    assert_int_equal(ref_of(p, 2), 1);
    assert_int_equal(kvfp8_pool_touch(p, &mid, 1), KVFP8_OK); /* ref 1 -> 2, queue unchanged */
    assert_queue(p, q, 3);
    assert_int_equal(ref_of(p, 2), 2);
    assert_int_equal(kvfp8_pool_free(p, &mid, 1), KVFP8_OK); /* 2 -> 1: stays out */
    assert_queue(p, q, 3);
    assert_int_equal(kvfp8_pool_free(p, &mid, 1), KVFP8_OK); /* 1 -> 0: to the tail */
    uint32_t q2[] = {1, 3, 4, 2};
    assert_queue(p, q2, 4);
    uint32_t bad = 5;
    assert_int_equal(kvfp8_pool_touch(p, &bad, 1), KVFP8_ERR_INVALID);
    kvfp8_pool_destroy(p);
}

static void test_lazy_eviction(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(3, 1);
    uint32_t id;
    assert_int_equal(kvfp8_pool_allocate(p, 1, &id), KVFP8_OK);
    kvfp8_block_hash h = H(7, 0);
    assert_int_equal(kvfp8_pool_cache_block(p, id, &h, 0), KVFP8_OK);
    assert_int_equal(kvfp8_pool_free(p, &id, 1), KVFP8_OK);
    /* Free but still cached: an eviction candidate, still a hit. */
    assert_int_equal(lookup(p, h, 0), id);
    assert_int_equal(kvfp8_pool_num_cached(p), 1);
    uint32_t got[2];
    assert_int_equal(kvfp8_pool_allocate(p, 2, got), KVFP8_OK); /* block 2, then block 1 (evicted) */
    assert_int_equal(got[1], id);
    assert_int_equal(lookup(p, h, 0), KVFP8_POOL_NO_BLOCK);
    assert_int_equal(ref_of(p, id), 1);
    kvfp8_pool_event ev[4];
    size_t n = kvfp8_pool_take_events(p, ev, 4);
    assert_int_equal(n, 2);
    assert_int_equal(ev[0].kind, KVFP8_POOL_EVENT_STORED);
    assert_int_equal(ev[1].kind, KVFP8_POOL_EVENT_REMOVED);
    assert_int_equal(ev[1].block, id);
    assert_memory_equal(ev[1].hash.bytes, h.bytes, 32);
    assert_int_equal(kvfp8_pool_take_events(p, ev, 4), 0);
    kvfp8_pool_destroy(p);
}

static void test_duplicate_keys_first_registered(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(8, 0);
    uint32_t b[4];
    assert_int_equal(kvfp8_pool_allocate(p, 4, b), KVFP8_OK);
    kvfp8_block_hash h = H(9, 9);
    /* Registered out of id order: lookups follow registration, not ids. */
    assert_int_equal(kvfp8_pool_cache_block(p, b[2], &h, 0), KVFP8_OK);
    assert_int_equal(kvfp8_pool_cache_block(p, b[0], &h, 0), KVFP8_OK);
    assert_int_equal(kvfp8_pool_cache_block(p, b[3], &h, 0), KVFP8_OK);
    assert_int_equal(kvfp8_pool_cache_block(p, b[0], &h, 0), KVFP8_OK); /* same key again: no-op */
    assert_int_equal(kvfp8_pool_num_cached(p), 3);
    assert_int_equal(lookup(p, h, 0), b[2]);
    assert_int_equal(kvfp8_pool_evict(p, &b[0], 1), KVFP8_OK); /* a middle one */
    assert_int_equal(lookup(p, h, 0), b[2]);
    assert_int_equal(kvfp8_pool_evict(p, &b[2], 1), KVFP8_OK); /* the first: the next remaining wins */
    assert_int_equal(lookup(p, h, 0), b[3]);
    assert_int_equal(kvfp8_pool_cache_block(p, b[2], &h, 0), KVFP8_OK); /* re-registered: now last */
    assert_int_equal(lookup(p, h, 0), b[3]);
    assert_int_equal(kvfp8_pool_evict(p, &b[3], 1), KVFP8_OK);
    assert_int_equal(lookup(p, h, 0), b[2]);
    assert_int_equal(kvfp8_pool_check(p), KVFP8_OK);
    /* An evicted block keeps its reference and stays out of the queue. */
    assert_int_equal(ref_of(p, b[3]), 1);
    kvfp8_pool_destroy(p);
}

static void test_group_ids_and_key_layout(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(8, 0);
    uint32_t b[3];
    assert_int_equal(kvfp8_pool_allocate(p, 3, b), KVFP8_OK);
    kvfp8_block_hash h = H(1, 1);
    assert_int_equal(kvfp8_pool_cache_block(p, b[0], &h, 0), KVFP8_OK);
    assert_int_equal(kvfp8_pool_cache_block(p, b[1], &h, 0x01020304u), KVFP8_OK);
    assert_int_equal(lookup(p, h, 0), b[0]);
    assert_int_equal(lookup(p, h, 0x01020304u), b[1]);
    assert_int_equal(lookup(p, h, 1), KVFP8_POOL_NO_BLOCK);
    kvfp8_pool_block_info bi;
    assert_int_equal(kvfp8_pool_get_block(p, b[1], &bi), KVFP8_OK);
    assert_int_equal(bi.group, 0x01020304u);
    assert_int_equal(bi.hash.len, 32);
    /* Key = hash bytes + 4 group bytes: a 1-byte hash and a 5-byte hash whose tail
     * spells a group id are still different keys (lengths differ). */
    kvfp8_block_hash one = {.len = 1, .bytes = {0xAA}};
    kvfp8_block_hash five = {.len = 5, .bytes = {0xAA, 0, 0, 0, 0}};
    assert_int_equal(kvfp8_pool_cache_block(p, b[2], &one, 0), KVFP8_OK);
    assert_int_equal(lookup(p, one, 0), b[2]);
    assert_int_equal(lookup(p, five, 0), KVFP8_POOL_NO_BLOCK);
    kvfp8_block_hash empty = {.len = 0};
    uint32_t id;
    assert_int_equal(kvfp8_pool_lookup(p, &empty, 0, &id), KVFP8_ERR_INVALID);
    kvfp8_block_hash big = {.len = 33};
    assert_int_equal(kvfp8_pool_cache_block(p, b[0], &big, 0), KVFP8_ERR_INVALID);
    kvfp8_pool_destroy(p);
}

static void test_lookup_many(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(64, 0);
    uint32_t b[40];
    kvfp8_block_hash h[40];
    assert_int_equal(kvfp8_pool_allocate(p, 40, b), KVFP8_OK);
    for (int i = 0; i < 40; i++) {
        h[i] = H(4, (uint8_t)i);
        if (i % 3 != 2) assert_int_equal(kvfp8_pool_cache_block(p, b[i], &h[i], 1), KVFP8_OK);
    }
    uint32_t got[40];
    assert_int_equal(kvfp8_pool_lookup_many(p, h, 40, 1, got), KVFP8_OK); /* crosses batches */
    for (int i = 0; i < 40; i++) assert_int_equal(got[i], i % 3 != 2 ? b[i] : KVFP8_POOL_NO_BLOCK);
    assert_int_equal(kvfp8_pool_lookup_many(p, h, 40, 0, got), KVFP8_OK); /* other group: all miss */
    for (int i = 0; i < 40; i++) assert_int_equal(got[i], KVFP8_POOL_NO_BLOCK);
    h[33].len = 0;
    assert_int_equal(kvfp8_pool_lookup_many(p, h, 40, 1, got), KVFP8_ERR_INVALID);
    assert_error_mentions("entry 33");
    kvfp8_pool_destroy(p);
}

static void test_cache_block_errors(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(4, 0);
    kvfp8_block_hash h = H(3, 0), h2 = H(3, 1);
    assert_int_equal(kvfp8_pool_cache_block(p, 2, &h, 0), KVFP8_ERR_STATE); /* free */
    assert_error_mentions("block 2");
    assert_int_equal(kvfp8_pool_cache_block(p, 4, &h, 0), KVFP8_ERR_INVALID);
    uint32_t id;
    assert_int_equal(kvfp8_pool_allocate(p, 1, &id), KVFP8_OK);
    assert_int_equal(kvfp8_pool_cache_block(p, id, &h, 0), KVFP8_OK);
    assert_int_equal(kvfp8_pool_cache_block(p, id, &h2, 0), KVFP8_ERR_STATE); /* another key */
    assert_int_equal(kvfp8_pool_cache_block(p, id, &h, 1), KVFP8_ERR_STATE);  /* another group */
    assert_int_equal(lookup(p, h, 0), id);
    kvfp8_pool_destroy(p);
}

static void test_cache_blocks_batch(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(40, 1);
    uint32_t b[20];
    kvfp8_block_hash h[20];
    assert_int_equal(kvfp8_pool_allocate(p, 20, b), KVFP8_OK);
    prompt_hashes(h, 20, 6);
    /* The same block twice with two hashes: refused, nothing registered. */
    uint32_t ids[20];
    memcpy(ids, b, sizeof ids);
    ids[17] = b[3];
    assert_int_equal(kvfp8_pool_cache_blocks(p, ids, h, 20, 2), KVFP8_ERR_STATE);
    assert_error_mentions("entries 3, 17");
    assert_int_equal(kvfp8_pool_num_cached(p), 0);
    kvfp8_pool_event ev[64];
    assert_int_equal(kvfp8_pool_take_events(p, ev, 64), 0);
    /* A free block anywhere in the list: refused likewise. */
    uint32_t freed = b[19];
    assert_int_equal(kvfp8_pool_free(p, &freed, 1), KVFP8_OK);
    assert_int_equal(kvfp8_pool_cache_blocks(p, b, h, 20, 2), KVFP8_ERR_STATE);
    assert_error_mentions("entry 19");
    assert_int_equal(kvfp8_pool_num_cached(p), 0);
    assert_int_equal(kvfp8_pool_check(p), KVFP8_OK);
    /* Twice with the same hash is fine, and so is one already registered under it. */
    kvfp8_block_hash hh[20];
    memcpy(hh, h, sizeof hh);
    ids[17] = b[3];
    hh[17] = h[3];
    assert_int_equal(kvfp8_pool_cache_block(p, b[0], &h[0], 2), KVFP8_OK);
    assert_int_equal(kvfp8_pool_cache_blocks(p, ids, hh, 19, 2), KVFP8_OK);
    assert_int_equal(kvfp8_pool_num_cached(p), 18); /* 0..18 minus the repeat of 3 */
    for (int i = 0; i < 19; i++)
        if (i != 17) assert_int_equal(lookup(p, h[i], 2), b[i]);
    assert_int_equal(kvfp8_pool_take_events(p, ev, 64), 18); /* one STORED per new key */
    assert_int_equal(kvfp8_pool_check(p), KVFP8_OK);
    kvfp8_pool_destroy(p);
}

static void test_pool_exhausted_all_or_nothing(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(4, 0);
    uint32_t ids[4] = {0};
    assert_int_equal(kvfp8_pool_allocate(p, 4, ids), KVFP8_ERR_EXHAUSTED);
    assert_error_mentions("only 3 free");
    uint32_t q[] = {1, 2, 3};
    assert_queue(p, q, 3);
    assert_int_equal(ids[0], 0); /* nothing handed out */
    assert_int_equal(kvfp8_pool_allocate(p, 0, NULL), KVFP8_OK);
    kvfp8_pool_destroy(p);
}

static void test_double_free_all_or_nothing(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(6, 0);
    uint32_t b[3];
    assert_int_equal(kvfp8_pool_allocate(p, 3, b), KVFP8_OK);
    assert_int_equal(kvfp8_pool_free(p, &b[1], 1), KVFP8_OK);
    assert_int_equal(kvfp8_pool_free(p, &b[1], 1), KVFP8_ERR_STATE);
    assert_error_mentions("double free of block 2");
    uint32_t q[] = {4, 5, 2};
    assert_queue(p, q, 3);
    /* A list whose last entry is bad: the good entries before it are undone. */
    uint32_t list[] = {b[2], b[0], b[1]};
    assert_int_equal(kvfp8_pool_free(p, list, 3), KVFP8_ERR_STATE);
    assert_error_mentions("entry 2");
    assert_queue(p, q, 3);
    assert_int_equal(ref_of(p, b[0]), 1);
    assert_int_equal(ref_of(p, b[2]), 1);
    /* The same block listed twice needs two references. */
    uint32_t twice[] = {b[0], b[0]};
    assert_int_equal(kvfp8_pool_free(p, twice, 2), KVFP8_ERR_STATE);
    assert_int_equal(ref_of(p, b[0]), 1);
    assert_int_equal(kvfp8_pool_touch(p, &b[0], 1), KVFP8_OK);
    assert_int_equal(kvfp8_pool_free(p, twice, 2), KVFP8_OK);
    uint32_t q2[] = {4, 5, 2, 1};
    assert_queue(p, q2, 4);
    uint32_t out = 6;
    assert_int_equal(kvfp8_pool_free(p, &out, 1), KVFP8_ERR_INVALID);
    assert_error_mentions("block 6");
    kvfp8_pool_destroy(p);
}

static void test_reset_prefix_cache(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(4, 1);
    uint32_t id;
    kvfp8_block_hash h = H(5, 5);
    assert_int_equal(kvfp8_pool_allocate(p, 1, &id), KVFP8_OK);
    assert_int_equal(kvfp8_pool_cache_block(p, id, &h, 0), KVFP8_OK);
    assert_int_equal(kvfp8_pool_reset_prefix_cache(p), KVFP8_ERR_STATE);
    assert_error_mentions("1 blocks are in use");
    assert_int_equal(lookup(p, h, 0), id);
    assert_int_equal(kvfp8_pool_free(p, &id, 1), KVFP8_OK);
    assert_int_equal(kvfp8_pool_reset_prefix_cache(p), KVFP8_OK);
    assert_int_equal(lookup(p, h, 0), KVFP8_POOL_NO_BLOCK);
    assert_int_equal(kvfp8_pool_num_cached(p), 0);
    uint32_t q[] = {2, 3, 1}; /* order kept */
    assert_queue(p, q, 3);
    kvfp8_pool_event ev[4];
    assert_int_equal(kvfp8_pool_take_events(p, ev, 4), 2);
    assert_int_equal(ev[1].kind, KVFP8_POOL_EVENT_ALL_CLEARED);
    kvfp8_pool_destroy(p);
}

static void test_usage(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(5, 0);
    uint32_t b[2];
    assert_int_equal(kvfp8_pool_allocate(p, 2, b), KVFP8_OK);
    assert_true(kvfp8_pool_usage(p) == 0.5);
    kvfp8_block_hash h = H(1, 0);
    assert_int_equal(kvfp8_pool_cache_block(p, b[0], &h, 0), KVFP8_OK);
    assert_int_equal(kvfp8_pool_free(p, b, 1), KVFP8_OK);
    assert_true(kvfp8_pool_usage(p) == 0.25); /* a cached free block is not in use */
    kvfp8_pool_destroy(p);
}

/* ---- manager rules -------------------------------------------------------------------- */

static void test_request_freed_in_reverse(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(8, 0);
    kvfp8_pm *m = new_pm(p, 4, 1, 0);
    admit(m, "a", 10, 1); /* 3 blocks: 1 2 3 */
    size_t n;
    const uint32_t *ids = req_blocks(m, "a", 0, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(kvfp8_pm_free(m, "a"), KVFP8_OK);
    uint32_t q[] = {4, 5, 6, 7, 3, 2, 1}; /* tail of the prompt evicted before its head */
    assert_queue(p, q, 7);
    kvfp8_pm_destroy(m);
    kvfp8_pool_destroy(p);
}

static void test_registered_at_allocation(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(16, 0);
    kvfp8_pm *m = new_pm(p, 4, 1, 0);
    kvfp8_block_hash h[8];
    prompt_hashes(h, 8, 2);
    assert_int_equal(kvfp8_pm_add_request(m, "a", 10, h, 2), KVFP8_OK);
    uint32_t hit;
    assert_int_equal(kvfp8_pm_get_computed_blocks(m, "a", &hit), KVFP8_OK);
    assert_int_equal(hit, 0);
    /* A first chunk of 6 tokens fills block 0 only; it is registered at once,
     * before any KV would be computed. */
    assert_int_equal(kvfp8_pm_allocate_slots(m, "a", 6, 0), KVFP8_OK);
    size_t n;
    const uint32_t *ids = req_blocks(m, "a", 0, &n);
    assert_int_equal(n, 2);
    assert_int_equal(lookup(p, h[0], 0), ids[0]);
    assert_int_equal(lookup(p, h[1], 0), KVFP8_POOL_NO_BLOCK); /* half full */
    /* In the same step, a second request with the same prompt already hits it. */
    assert_int_equal(kvfp8_pm_add_request(m, "b", 10, h, 2), KVFP8_OK);
    assert_int_equal(kvfp8_pm_get_computed_blocks(m, "b", &hit), KVFP8_OK);
    assert_int_equal(hit, 4);
    assert_int_equal(kvfp8_pm_allocate_slots(m, "a", 4, 0), KVFP8_OK); /* rest of a's prompt */
    assert_int_equal(lookup(p, h[1], 0), ids[1]);
    kvfp8_pm_request_info info;
    assert_int_equal(kvfp8_pm_get_request(m, "a", &info), KVFP8_OK);
    assert_int_equal(info.num_cached_blocks, 2);
    /* Decode: tokens appended until block 2 fills; registered when it is scheduled. */
    kvfp8_block_hash h2 = H(2, 2);
    assert_int_equal(kvfp8_pm_append_tokens(m, "a", 1, NULL, 0), KVFP8_OK);
    assert_int_equal(kvfp8_pm_allocate_slots(m, "a", 1, 0), KVFP8_OK);
    assert_int_equal(kvfp8_pm_append_tokens(m, "a", 1, &h2, 1), KVFP8_OK);
    assert_int_equal(lookup(p, h2, 0), KVFP8_POOL_NO_BLOCK);
    assert_int_equal(kvfp8_pm_allocate_slots(m, "a", 1, 0), KVFP8_OK);
    ids = req_blocks(m, "a", 0, &n);
    assert_int_equal(n, 3);
    assert_int_equal(lookup(p, h2, 0), ids[2]);
    kvfp8_pm_destroy(m);
    assert_int_equal(kvfp8_pool_num_free(p), 15); /* destroy gave everything back */
    kvfp8_pool_destroy(p);
}

static void test_hit_cap_last_token(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(32, 0);
    kvfp8_pm *m = new_pm(p, 4, 1, 0);
    admit(m, "a", 12, 1);                  /* exactly 3 full blocks */
    assert_int_equal(admit(m, "b", 12, 1), 8); /* hits 2 of 3: the last token is recomputed */
    assert_int_equal(admit(m, "c", 13, 1), 12); /* one token more: all 3 blocks hit */
    assert_int_equal(admit(m, "d", 3, 1), 0);   /* no full block at all */
    assert_int_equal(admit(m, "e", 4, 1), 0);   /* one full block, but it holds the last token */
    assert_int_equal(admit(m, "f", 5, 1), 4);
    /* b recomputed its third block and registered a duplicate of a's: lookups still
     * return a's, registered first. */
    size_t na, nb;
    const uint32_t *a = req_blocks(m, "a", 0, &na), *b = req_blocks(m, "b", 0, &nb);
    assert_int_equal(a[0], b[0]);
    assert_int_not_equal(a[2], b[2]);
    assert_int_equal(lookup(p, H(1, 2), 0), a[2]);
    kvfp8_pm_destroy(m);
    kvfp8_pool_destroy(p);
}

static void test_longest_hit_stops_at_first_miss(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(32, 0);
    kvfp8_pm *m = new_pm(p, 4, 1, 0);
    admit(m, "a", 17, 1); /* 4 full blocks + 1 token */
    size_t n;
    const uint32_t *a = req_blocks(m, "a", 0, &n);
    uint32_t second = a[1];
    assert_int_equal(kvfp8_pool_evict(p, &second, 1), KVFP8_OK);
    assert_int_equal(admit(m, "b", 17, 1), 4); /* blocks 2 and 3 still cached, but unreachable */
    kvfp8_pm_destroy(m);
    kvfp8_pool_destroy(p);
}

static void test_lookup_only_before_first_chunk(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(16, 0);
    kvfp8_pm *m = new_pm(p, 4, 1, 0);
    admit(m, "a", 9, 1);
    uint32_t hit;
    assert_int_equal(kvfp8_pm_get_computed_blocks(m, "a", &hit), KVFP8_ERR_STATE);
    assert_error_mentions("request a already has 9 computed tokens");
    /* After preemption it may look up again (and counts as preempted). */
    assert_int_equal(kvfp8_pm_preempt(m, "a"), KVFP8_OK);
    assert_int_equal(kvfp8_pm_get_computed_blocks(m, "a", &hit), KVFP8_OK);
    assert_int_equal(hit, 8);
    const kvfp8_prefix_cache_stats *s = kvfp8_pm_stats(m);
    assert_int_equal(s->requests, 1);
    assert_int_equal(s->queries, 9);
    assert_int_equal(s->hits, 0);
    assert_int_equal(s->preempted_requests, 1);
    assert_int_equal(s->preempted_queries, 9);
    assert_int_equal(s->preempted_hits, 8);
    kvfp8_pm_destroy(m);
    kvfp8_pool_destroy(p);
}

static void test_multi_group(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(32, 0);
    kvfp8_pm *m = new_pm(p, 4, 2, 0);
    admit(m, "a", 9, 1); /* 3 blocks per group: group 0 gets 1 2 3, group 1 gets 4 5 6 */
    size_t n;
    const uint32_t *g0 = req_blocks(m, "a", 0, &n);
    assert_int_equal(g0[0], 1);
    const uint32_t *g1 = req_blocks(m, "a", 1, &n);
    assert_int_equal(g1[0], 4);
    assert_int_equal(lookup(p, H(1, 0), 0), 1);
    assert_int_equal(lookup(p, H(1, 0), 1), 4);
    uint32_t evict = g1[1];
    assert_int_equal(kvfp8_pool_evict(p, &evict, 1), KVFP8_OK);
    /* Block 1 still hits in group 0 but not group 1: the hit stops there. */
    assert_int_equal(admit(m, "b", 9, 1), 4);
    assert_int_equal(kvfp8_pm_free(m, "a"), KVFP8_OK);
    /* Each group freed in reverse, group 0 first (g1[0] is shared with b). */
    uint32_t q[32];
    size_t qn = kvfp8_pool_free_queue(p, q, 32);
    assert_int_equal(q[qn - 4], 3);
    assert_int_equal(q[qn - 3], 2);
    assert_int_equal(q[qn - 2], 6);
    assert_int_equal(q[qn - 1], 5);
    kvfp8_pm_destroy(m);
    kvfp8_pool_destroy(p);
}

static void test_allocate_slots_exhausted_changes_nothing(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(5, 0); /* 4 usable */
    kvfp8_pm *m = new_pm(p, 4, 1, 0);
    admit(m, "a", 9, 1);             /* 3 blocks */
    assert_int_equal(kvfp8_pm_free(m, "a"), KVFP8_OK); /* all cached, queued: 4 3 2 1 */
    kvfp8_block_hash h[8];
    prompt_hashes(h, 8, 1);
    assert_int_equal(kvfp8_pm_add_request(m, "b", 21, h, 5), KVFP8_OK);
    uint32_t hit;
    assert_int_equal(kvfp8_pm_get_computed_blocks(m, "b", &hit), KVFP8_OK);
    assert_int_equal(hit, 8);
    /* 21 tokens = 6 blocks: 2 hit (both evictable, so they count) + 4 new = 6 > 4. */
    uint32_t before[8];
    size_t nb = kvfp8_pool_free_queue(p, before, 8);
    assert_int_equal(kvfp8_pm_allocate_slots(m, "b", 13, 0), KVFP8_ERR_EXHAUSTED);
    assert_error_mentions("request b needs 6 blocks");
    assert_queue(p, before, nb);
    kvfp8_pm_request_info info;
    assert_int_equal(kvfp8_pm_get_request(m, "b", &info), KVFP8_OK);
    assert_int_equal(info.num_blocks, 0);
    assert_int_equal(info.num_computed_tokens, 0);
    assert_int_equal(info.has_pending_hit, 0); /* must look up again */
    assert_int_equal(lookup(p, H(1, 0), 0), 1);
    /* A smaller chunk fits: 2 hit + 1 new = 3 <= 4, and evicts nothing it hit. */
    assert_int_equal(kvfp8_pm_get_computed_blocks(m, "b", &hit), KVFP8_OK);
    assert_int_equal(kvfp8_pm_allocate_slots(m, "b", 4, 0), KVFP8_OK);
    size_t n;
    const uint32_t *ids = req_blocks(m, "b", 0, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_int_equal(ids[2], 4); /* the queue head; block 3 (a's third) stays cached */
    kvfp8_pm_destroy(m);
    kvfp8_pool_destroy(p);
}

static void test_pending_hit_evicted(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(16, 0);
    kvfp8_pm *m = new_pm(p, 4, 1, 0);
    admit(m, "a", 9, 1);
    assert_int_equal(kvfp8_pm_free(m, "a"), KVFP8_OK);
    kvfp8_block_hash h[4];
    prompt_hashes(h, 4, 1);
    assert_int_equal(kvfp8_pm_add_request(m, "b", 9, h, 2), KVFP8_OK);
    uint32_t hit;
    assert_int_equal(kvfp8_pm_get_computed_blocks(m, "b", &hit), KVFP8_OK);
    assert_int_equal(hit, 8);
    assert_int_equal(kvfp8_pm_reset_prefix_cache(m), KVFP8_OK);
    assert_int_equal(kvfp8_pm_allocate_slots(m, "b", 1, 0), KVFP8_ERR_STATE);
    assert_error_mentions("was evicted since get_computed_blocks");
    assert_int_equal(kvfp8_pm_get_computed_blocks(m, "b", &hit), KVFP8_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(kvfp8_pm_allocate_slots(m, "b", 9, 0), KVFP8_OK);
    kvfp8_pm_destroy(m);
    kvfp8_pool_destroy(p);
}

static void test_manager_errors(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(16, 0);
    kvfp8_pm *m = new_pm(p, 4, 1, 0);
    kvfp8_block_hash h[4];
    prompt_hashes(h, 4, 1);
    assert_int_equal(kvfp8_pm_add_request(m, "a", 9, h, 3), KVFP8_ERR_INVALID);
    assert_error_mentions("9 tokens make 2 full blocks");
    assert_int_equal(kvfp8_pm_add_request(m, "a", 0, h, 0), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_pm_add_request(m, "", 4, h, 1), KVFP8_ERR_INVALID);
    kvfp8_block_hash badh[2] = {h[0], {.len = 0}};
    assert_int_equal(kvfp8_pm_add_request(m, "a", 8, badh, 2), KVFP8_ERR_INVALID);
    assert_error_mentions("block 1");
    assert_int_equal(kvfp8_pm_add_request(m, "a", 9, h, 2), KVFP8_OK);
    assert_int_equal(kvfp8_pm_add_request(m, "a", 9, h, 2), KVFP8_ERR_STATE);
    assert_error_mentions("request a already exists");
    assert_int_equal(kvfp8_pm_append_tokens(m, "a", 3, NULL, 0), KVFP8_ERR_INVALID); /* 12 completes block 2 */
    assert_int_equal(kvfp8_pm_append_tokens(m, "a", 0, NULL, 0), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_pm_allocate_slots(m, "a", 0, 0), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_pm_allocate_slots(m, "a", 10, 0), KVFP8_ERR_INVALID);
    assert_error_mentions("only 9 are neither computed nor hit");
    assert_int_equal(kvfp8_pm_free(m, "zz"), KVFP8_ERR_STATE);
    assert_error_mentions("request zz is not known");
    assert_int_equal(kvfp8_pm_preempt(m, "zz"), KVFP8_ERR_STATE);
    assert_int_equal(kvfp8_pm_allocate_slots(m, "a", 9, 3), KVFP8_OK); /* 12 slots: 3 blocks */
    kvfp8_pm_request_info info;
    assert_int_equal(kvfp8_pm_get_request(m, "a", &info), KVFP8_OK);
    assert_int_equal(info.num_blocks, 3);
    assert_int_equal(info.num_cached_blocks, 2); /* lookahead slots are never registered */
    assert_int_equal(kvfp8_pm_reset_prefix_cache(m), KVFP8_ERR_STATE);
    assert_int_equal(kvfp8_pm_free(m, "a"), KVFP8_OK);
    assert_int_equal(kvfp8_pm_free(m, "a"), KVFP8_ERR_STATE); /* double free */
    assert_error_mentions("already freed");
    assert_int_equal(kvfp8_pool_num_free(p), 15);
    kvfp8_pm_config bad = {.block_size = 0, .num_groups = 1};
    kvfp8_pm *m2;
    assert_int_equal(kvfp8_pm_create(p, &bad, &m2), KVFP8_ERR_INVALID);
    bad.block_size = 4;
    bad.num_groups = KVFP8_PM_MAX_GROUPS + 1;
    assert_int_equal(kvfp8_pm_create(p, &bad, &m2), KVFP8_ERR_INVALID);
    kvfp8_pm_destroy(m);
    kvfp8_pool_destroy(p);
}

static void test_request_table_grows(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(400, 0);
    kvfp8_pm *m = new_pm(p, 4, 1, 0);
    char id[16];
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "req-%d", i);
        admit(m, id, 5, (uint8_t)(i % 7));
    }
    assert_int_equal(kvfp8_pm_num_requests(m), 300);
    for (int i = 0; i < 300; i += 2) {
        snprintf(id, sizeof id, "req-%d", i);
        assert_int_equal(kvfp8_pm_free(m, id), KVFP8_OK);
    }
    assert_int_equal(kvfp8_pm_num_requests(m), 150);
    assert_int_equal(kvfp8_pool_check(p), KVFP8_OK);
    kvfp8_pm_destroy(m);
    assert_int_equal(kvfp8_pool_num_free(p), 399);
    kvfp8_pool_destroy(p);
}

static void test_caching_disabled(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(16, 0);
    kvfp8_pm_config cfg = {.block_size = 4, .num_groups = 1, .enable_caching = 0};
    kvfp8_pm *m;
    assert_int_equal(kvfp8_pm_create(p, &cfg, &m), KVFP8_OK);
    assert_int_equal(admit(m, "a", 9, 1), 0);
    assert_int_equal(admit(m, "b", 9, 1), 0);
    assert_int_equal(kvfp8_pool_num_cached(p), 0);
    assert_int_equal(kvfp8_pm_stats(m)->requests, 0); /* no lookup, no statistics */
    kvfp8_pm_destroy(m);
    kvfp8_pool_destroy(p);
}

/* ---- metrics ------------------------------------------------------------------------ */

static void test_stats_and_window(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(64, 0);
    kvfp8_pm *m = new_pm(p, 4, 1, 0);
    admit(m, "a", 9, 1);  /* 9 queried, 0 hit */
    admit(m, "b", 13, 1); /* 13 queried, 8 hit */
    kvfp8_prefix_cache_stats s;
    kvfp8_pm_take_stats(m, &s);
    assert_int_equal(s.requests, 2);
    assert_int_equal(s.queries, 22);
    assert_int_equal(s.hits, 8);
    assert_int_equal(kvfp8_pm_stats(m)->requests, 0); /* taken */
    admit(m, "c", 9, 1);
    kvfp8_pm_end_step(m);
    assert_true(kvfp8_pm_hit_rate(m) == 8.0 / 9.0);
    kvfp8_pm_destroy(m);
    kvfp8_pool_destroy(p);

    /* The window keeps whole batches: at most max_recent requests, except that the
     * newest batch always stays; empty batches are skipped; reset clears first. */
    kvfp8_hit_window w;
    assert_int_equal(kvfp8_hit_window_init(&w, 3), KVFP8_OK);
    kvfp8_prefix_cache_stats b1 = {.requests = 2, .queries = 10, .hits = 5};
    kvfp8_prefix_cache_stats b2 = {.requests = 1, .queries = 10, .hits = 0};
    kvfp8_prefix_cache_stats b3 = {.requests = 1, .queries = 20, .hits = 20};
    kvfp8_prefix_cache_stats big = {.requests = 5, .queries = 100, .hits = 1};
    kvfp8_prefix_cache_stats empty = {.preempted_requests = 4, .preempted_queries = 9};
    kvfp8_prefix_cache_stats reset = {.reset = 1, .requests = 1, .queries = 4, .hits = 4};
    assert_true(kvfp8_hit_window_rate(&w) == 0.0);
    kvfp8_hit_window_observe(&w, &b1);
    kvfp8_hit_window_observe(&w, &b2);
    assert_int_equal(w.requests, 3);
    assert_true(kvfp8_hit_window_rate(&w) == 0.25);
    kvfp8_hit_window_observe(&w, &b3); /* 4 > 3: b1 (2 requests) drops */
    assert_int_equal(w.requests, 2);
    assert_true(kvfp8_hit_window_rate(&w) == 20.0 / 30.0);
    kvfp8_hit_window_observe(&w, &empty); /* preempted-only: not part of the rate */
    assert_int_equal(w.len, 2);
    kvfp8_hit_window_observe(&w, &big); /* alone over the limit, yet kept */
    assert_int_equal(w.len, 1);
    assert_int_equal(w.requests, 5);
    kvfp8_hit_window_observe(&w, &reset);
    assert_int_equal(w.len, 1);
    assert_true(kvfp8_hit_window_rate(&w) == 1.0);
    kvfp8_hit_window_release(&w);

    /* Default: the last 1000 requests. */
    assert_int_equal(kvfp8_hit_window_init(&w, 0), KVFP8_OK);
    kvfp8_prefix_cache_stats one = {.requests = 1, .queries = 10, .hits = 0};
    kvfp8_prefix_cache_stats hit = {.requests = 1, .queries = 10, .hits = 10};
    for (int i = 0; i < 500; i++) kvfp8_hit_window_observe(&w, &one);
    for (int i = 0; i < 1000; i++) kvfp8_hit_window_observe(&w, &hit);
    assert_int_equal(w.requests, 1000);
    assert_true(kvfp8_hit_window_rate(&w) == 1.0);
    kvfp8_hit_window_release(&w);
}

static void test_reset_sets_stats_flag(void **state) {
    (void)state;
    kvfp8_pool *p = new_pool(16, 0);
    kvfp8_pm *m = new_pm(p, 4, 1, 0);
    admit(m, "a", 9, 1);
    assert_int_equal(kvfp8_pm_free(m, "a"), KVFP8_OK);
    kvfp8_pm_end_step(m);
    assert_int_equal(kvfp8_pm_window(m)->len, 1);
    assert_int_equal(kvfp8_pm_reset_prefix_cache(m), KVFP8_OK);
    assert_int_equal(kvfp8_pm_stats(m)->reset, 1);
    assert_int_equal(admit(m, "b", 9, 1), 0);
    kvfp8_pm_end_step(m); /* the window restarts from this batch */
    assert_int_equal(kvfp8_pm_window(m)->len, 1);
    assert_int_equal(kvfp8_pm_window(m)->requests, 1);
    kvfp8_pm_destroy(m);
    kvfp8_pool_destroy(p);
}

/* ---- model-based runs --------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) { /* splitmix64: seeded, portable */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void run_model(pool_check_config cfg, uint64_t seed, int ops, pool_check_counts *total) {
    pool_check *pc = pool_check_new(&cfg);
    assert_non_null(pc);
    uint64_t s = seed;
    for (int i = 0; i < ops; i++) {
        uint64_t r = rng_next(&s);
        uint8_t b[5] = {(uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16), (uint8_t)(r >> 24), (uint8_t)(r >> 32)};
        pool_check_op op = pool_check_op_from_bytes(b);
        if (pool_check_step(pc, &op)) {
            pool_check_print_trace(pc, stderr);
            fail_msg("seed %llu: model mismatch at op %d: %s", (unsigned long long)seed, i, pool_check_message(pc));
        }
    }
    const pool_check_counts *c = pool_check_get_counts(pc);
    total->ops += c->ops;
    for (int k = 0; k < PC_NUM_OPS; k++) {
        total->ok[k] += c->ok[k];
        total->failed[k] += c->failed[k];
    }
    total->hit_tokens += c->hit_tokens;
    total->hit_lookups += c->hit_lookups;
    total->evictions += c->evictions;
    total->exhausted += c->exhausted;
    total->dup_keys += c->dup_keys;
    total->resets += c->resets;
    pool_check_delete(pc);
}

static void test_model_random_sequences(void **state) {
    (void)state;
    /* Small pools so that eviction, exhaustion and the sliding window all happen. */
    static const pool_check_config cfgs[] = {
        {.num_blocks = 24, .block_size = 4, .num_groups = 1, .caching = 1, .events = 1, .window = 5},
        {.num_blocks = 48, .block_size = 2, .num_groups = 2, .caching = 1, .events = 1, .window = 8},
        {.num_blocks = 12, .block_size = 1, .num_groups = 1, .caching = 1, .events = 0, .window = 3},
        {.num_blocks = 64, .block_size = 8, .num_groups = 3, .caching = 1, .events = 1, .window = 1000},
        {.num_blocks = 32, .block_size = 3, .num_groups = 1, .caching = 0, .events = 1, .window = 4},
        {.num_blocks = 2, .block_size = 2, .num_groups = 1, .caching = 1, .events = 1, .window = 2},
    };
    static const uint64_t seeds[] = {1, 42, 20240601, 0xdeadbeef};
    pool_check_counts total;
    memset(&total, 0, sizeof total);
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++)
        for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++)
            run_model(cfgs[c], seeds[s] * 1000 + c, 3000, &total);
    print_message("model: %llu ops; schedule ok %llu / failed %llu; hit lookups %llu (%llu tokens); "
                  "exhausted %llu; duplicate-key block-steps %llu; resets %llu; bad frees caught %llu\n",
                  (unsigned long long)total.ops, (unsigned long long)total.ok[PC_SCHEDULE],
                  (unsigned long long)total.failed[PC_SCHEDULE], (unsigned long long)total.hit_lookups,
                  (unsigned long long)total.hit_tokens, (unsigned long long)total.exhausted,
                  (unsigned long long)total.dup_keys, (unsigned long long)total.resets,
                  (unsigned long long)total.failed[PC_BAD_FREE]);
    /* The runs must actually reach the rules they are meant to check. */
    assert_true(total.hit_lookups > 100);
    assert_true(total.exhausted > 10);
    assert_true(total.dup_keys > 100);
    assert_true(total.resets > 5);
    assert_true(total.failed[PC_BAD_FREE] > 10);
    assert_true(total.ok[PC_RAW_TOUCH] > 10);
    assert_true(total.failed[PC_ADD] > 10 && total.failed[PC_FREE] > 10 && total.failed[PC_ALLOC] > 10);
}

static void test_model_detects_divergence(void **state) {
    (void)state;
    /* The check must have teeth: one extra reference taken behind the model's back
     * is reported at the next step. */
    pool_check_config cfg = {.num_blocks = 8, .block_size = 2, .num_groups = 1, .caching = 1, .events = 0, .window = 4};
    pool_check *pc = pool_check_new(&cfg);
    assert_non_null(pc);
    pool_check_op end = {PC_END_STEP, 0, 0, 0, 0};
    assert_int_equal(pool_check_step(pc, &end), 0);
    uint32_t id = 3;
    assert_int_equal(kvfp8_pool_touch(pool_check_real_pool(pc), &id, 1), KVFP8_OK);
    assert_int_equal(pool_check_step(pc, &end), 1);
    assert_non_null(strstr(pool_check_message(pc), "num_free"));
    pool_check_delete(pc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_block),
        cmocka_unit_test(test_free_queue_lru_order),
        cmocka_unit_test(test_touch_removes_from_middle),
        cmocka_unit_test(test_lazy_eviction),
        cmocka_unit_test(test_duplicate_keys_first_registered),
        cmocka_unit_test(test_group_ids_and_key_layout),
        cmocka_unit_test(test_lookup_many),
        cmocka_unit_test(test_cache_block_errors),
        cmocka_unit_test(test_cache_blocks_batch),
        cmocka_unit_test(test_pool_exhausted_all_or_nothing),
        cmocka_unit_test(test_double_free_all_or_nothing),
        cmocka_unit_test(test_reset_prefix_cache),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_request_freed_in_reverse),
        cmocka_unit_test(test_registered_at_allocation),
        cmocka_unit_test(test_hit_cap_last_token),
        cmocka_unit_test(test_longest_hit_stops_at_first_miss),
        cmocka_unit_test(test_lookup_only_before_first_chunk),
        cmocka_unit_test(test_multi_group),
        cmocka_unit_test(test_allocate_slots_exhausted_changes_nothing),
        cmocka_unit_test(test_pending_hit_evicted),
        cmocka_unit_test(test_manager_errors),
        cmocka_unit_test(test_request_table_grows),
        cmocka_unit_test(test_caching_disabled),
        cmocka_unit_test(test_stats_and_window),
        cmocka_unit_test(test_reset_sets_stats_flag),
        cmocka_unit_test(test_model_random_sequences),
        cmocka_unit_test(test_model_detects_divergence),
    };
    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
