/* Block pool throughput: block operations per second on one core.
 *
 * A "block operation" is one block allocated, freed, touched, registered or looked
 * up.  Each scenario runs the steady state of a serving loop over a pool of 64K
 * blocks whose blocks all carry cache keys, so every allocation evicts one:
 *   alloc+free          allocate 16, free them in reverse (no keys: the bare queue)
 *   alloc+cache+free    allocate 16 (each evicts a cached block), register 16 new
 *                       32-byte hashes (one call each, or one cache_blocks call),
 *                       free in reverse
 *   lookup+touch+free   16 prefix hits: look up (batched, as a prefix walk does),
 *                       touch (out of the free queue), free
 *   lookup hit / miss   lookups alone, one per call or 16 per lookup_many call
 *   manager request     add a 1024-token request sharing 3/4 of its prefix with the
 *                       previous one, look up, allocate, free (blocks handled / s)
 * Prints a Markdown table; bench/results/pool-<date>.md keeps a copy per machine. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvfp8/pool.h"
#include "kvfp8/prefix_manager.h"

#define NBLOCKS 65536u
#define BATCH 16u

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void make_hash(kvfp8_block_hash *h, uint64_t n) {
    h->len = 32;
    for (int k = 0; k < 4; k++) {
        uint64_t z = n * 4 + (uint64_t)k + 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        memcpy(h->bytes + 8 * k, &z, 8);
    }
}

static void die(const char *what, kvfp8_status st) {
    fprintf(stderr, "bench_pool: %s: %s (%s)\n", what, kvfp8_status_name(st), kvfp8_last_error());
    exit(1);
}

#define CHECK(what, call)                          \
    do {                                           \
        kvfp8_status st_ = (call);                 \
        if (st_ != KVFP8_OK) die((what), st_);     \
    } while (0)

/* A pool whose every block carries a distinct key, all of them free. */
static kvfp8_pool *cached_pool(uint64_t *next_hash) {
    kvfp8_pool_config cfg = {.num_blocks = NBLOCKS};
    kvfp8_pool *p;
    CHECK("create", kvfp8_pool_create(&cfg, &p));
    uint32_t *ids = malloc(sizeof(uint32_t) * NBLOCKS);
    CHECK("fill", kvfp8_pool_allocate(p, NBLOCKS - 1, ids));
    for (uint32_t i = 0; i < NBLOCKS - 1; i++) {
        kvfp8_block_hash h;
        make_hash(&h, (*next_hash)++);
        CHECK("fill cache", kvfp8_pool_cache_block(p, ids[i], &h, 0));
    }
    CHECK("fill free", kvfp8_pool_free(p, ids, NBLOCKS - 1));
    free(ids);
    return p;
}

typedef struct {
    const char *name;
    uint64_t ops;
    double secs;
} result;

static void reverse(uint32_t *a, uint32_t n) {
    for (uint32_t i = 0; i < n / 2; i++) {
        uint32_t t = a[i];
        a[i] = a[n - 1 - i];
        a[n - 1 - i] = t;
    }
}

static result bench_alloc_free(uint64_t iters) {
    kvfp8_pool_config cfg = {.num_blocks = NBLOCKS};
    kvfp8_pool *p;
    CHECK("create", kvfp8_pool_create(&cfg, &p));
    uint32_t ids[BATCH];
    double t0 = now();
    for (uint64_t i = 0; i < iters; i++) {
        CHECK("allocate", kvfp8_pool_allocate(p, BATCH, ids));
        reverse(ids, BATCH);
        CHECK("free", kvfp8_pool_free(p, ids, BATCH));
    }
    result r = {"alloc+free", iters * BATCH * 2, now() - t0};
    kvfp8_pool_destroy(p);
    return r;
}

static result bench_alloc_cache_free(uint64_t iters, int batched) {
    uint64_t next = 0;
    kvfp8_pool *p = cached_pool(&next);
    uint32_t ids[BATCH];
    kvfp8_block_hash hs[BATCH];
    double t0 = now();
    for (uint64_t i = 0; i < iters; i++) {
        CHECK("allocate", kvfp8_pool_allocate(p, BATCH, ids)); /* each evicts a key */
        for (uint32_t k = 0; k < BATCH; k++) make_hash(&hs[k], next++);
        if (batched) {
            CHECK("cache", kvfp8_pool_cache_blocks(p, ids, hs, BATCH, 0));
        } else {
            for (uint32_t k = 0; k < BATCH; k++) CHECK("cache", kvfp8_pool_cache_block(p, ids[k], &hs[k], 0));
        }
        reverse(ids, BATCH);
        CHECK("free", kvfp8_pool_free(p, ids, BATCH));
    }
    result r = {batched ? "alloc+cache_blocks+free (evicting)" : "alloc+cache_block+free (evicting)",
                iters * BATCH * 3, now() - t0};
    if (kvfp8_pool_num_cached(p) != NBLOCKS - 1) die("cache count", KVFP8_ERR_STATE);
    kvfp8_pool_destroy(p);
    return r;
}

static result bench_touch(uint64_t iters) {
    uint64_t next = 0;
    kvfp8_pool *p = cached_pool(&next);
    uint32_t ids[BATCH];
    kvfp8_block_hash hs[BATCH];
    uint64_t base = 0;
    double t0 = now();
    for (uint64_t i = 0; i < iters; i++) {
        /* A request whose prefix is 16 cached blocks somewhere in the pool, walked
         * as the manager does: one batched lookup of consecutive hashes. */
        for (uint32_t k = 0; k < BATCH; k++) make_hash(&hs[k], base + k);
        CHECK("lookup", kvfp8_pool_lookup_many(p, hs, BATCH, 0, ids));
        CHECK("touch", kvfp8_pool_touch(p, ids, BATCH));
        reverse(ids, BATCH);
        CHECK("free", kvfp8_pool_free(p, ids, BATCH));
        base = (base + 7919 * BATCH) % (NBLOCKS - 1 - BATCH);
    }
    result r = {"lookup+touch+free (hits)", iters * BATCH * 3, now() - t0};
    kvfp8_pool_destroy(p);
    return r;
}

/* Lookups of random cached (hit) or absent (miss) hashes, one call each or 16 per
 * lookup_many call. */
static result bench_lookup(uint64_t iters, int hit, int batched) {
    uint64_t next = 0;
    kvfp8_pool *p = cached_pool(&next);
    kvfp8_block_hash hs[BATCH];
    uint32_t ids[BATCH];
    uint64_t found = 0;
    double t0 = now();
    for (uint64_t i = 0; i < iters; i += BATCH) {
        for (uint32_t k = 0; k < BATCH; k++) make_hash(&hs[k], hit ? ((i + k) * 7919) % (NBLOCKS - 1) : next + i + k);
        if (batched) {
            CHECK("lookup", kvfp8_pool_lookup_many(p, hs, BATCH, 0, ids));
        } else {
            for (uint32_t k = 0; k < BATCH; k++) CHECK("lookup", kvfp8_pool_lookup(p, &hs[k], 0, &ids[k]));
        }
        for (uint32_t k = 0; k < BATCH; k++) found += ids[k] != KVFP8_POOL_NO_BLOCK;
    }
    static const char *names[2][2] = {{"lookup miss", "lookup_many miss (x16)"},
                                      {"lookup hit", "lookup_many hit (x16)"}};
    result r = {names[hit][batched], iters, now() - t0};
    if (found != (hit ? iters : 0)) die("lookup results", KVFP8_ERR_STATE);
    kvfp8_pool_destroy(p);
    return r;
}

static result bench_manager(uint64_t iters) {
    kvfp8_pool_config pcfg = {.num_blocks = NBLOCKS};
    kvfp8_pool *p;
    CHECK("create", kvfp8_pool_create(&pcfg, &p));
    kvfp8_pm_config mcfg = {.block_size = 16, .num_groups = 1, .enable_caching = 1};
    kvfp8_pm *m;
    CHECK("create manager", kvfp8_pm_create(p, &mcfg, &m));
    enum { TOKENS = 1024, NB = TOKENS / 16 };
    kvfp8_block_hash h[NB];
    uint64_t blocks = 0, uniq = 1u << 20;
    double t0 = now();
    for (uint64_t i = 0; i < iters; i++) {
        /* 48 shared blocks (one of 4 system prompts), then 16 of the request's own. */
        for (int k = 0; k < NB; k++) make_hash(&h[k], k < 48 ? (i % 4) * 64 + (uint64_t)k : uniq++);
        char id[32];
        snprintf(id, sizeof id, "req-%llu", (unsigned long long)i);
        uint32_t hit;
        CHECK("add", kvfp8_pm_add_request(m, id, TOKENS, h, NB));
        CHECK("lookup", kvfp8_pm_get_computed_blocks(m, id, &hit));
        CHECK("allocate", kvfp8_pm_allocate_slots(m, id, TOKENS - hit, 0));
        CHECK("free", kvfp8_pm_free(m, id));
        /* lookups + (touches or allocations + registrations) + frees */
        blocks += (uint64_t)(hit / 16) * 3 + (uint64_t)(NB - hit / 16) * 3;
    }
    result r = {"manager request (1024 tokens)", blocks, now() - t0};
    kvfp8_pm_destroy(m);
    kvfp8_pool_destroy(p);
    return r;
}

int main(int argc, char **argv) {
    /* --quick for CI smoke runs; the default takes about 2 s. */
    uint64_t scale = (argc > 1 && strcmp(argv[1], "--quick") == 0) ? 20 : 1;
    result res[9];
    int n = 0;
    res[n++] = bench_alloc_free(2000000 / scale);
    res[n++] = bench_alloc_cache_free(600000 / scale, 0);
    res[n++] = bench_alloc_cache_free(600000 / scale, 1);
    res[n++] = bench_touch(600000 / scale);
    res[n++] = bench_lookup(4000000 / scale, 1, 0);
    res[n++] = bench_lookup(4000000 / scale, 1, 1);
    res[n++] = bench_lookup(4000000 / scale, 0, 0);
    res[n++] = bench_lookup(4000000 / scale, 0, 1);
    res[n++] = bench_manager(40000 / scale);
    /* The headline: all block operations of the mixed scenarios over their time. */
    uint64_t ops = 0;
    double secs = 0;
    for (int i = 0; i < n; i++) {
        ops += res[i].ops;
        secs += res[i].secs;
    }
    printf("| scenario | block ops | seconds | M block ops/s | ns/op |\n");
    printf("|---|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++)
        printf("| %s | %llu | %.3f | %.1f | %.1f |\n", res[i].name, (unsigned long long)res[i].ops, res[i].secs,
               (double)res[i].ops / res[i].secs / 1e6, res[i].secs * 1e9 / (double)res[i].ops);
    printf("| **all of the above** | %llu | %.3f | **%.1f** | %.1f |\n", (unsigned long long)ops, secs,
           (double)ops / secs / 1e6, secs * 1e9 / (double)ops);
    printf("\n(CPU time of this thread, pool of %u blocks, 32-byte hashes, batches of %u)\n", NBLOCKS, BATCH);
    return 0;
}
