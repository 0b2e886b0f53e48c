/* Per-request KV-cache manager and prefix-cache statistics
 * (see include/kvfp8/prefix_manager.h and docs/pool.md). */
#include "kvfp8/prefix_manager.h"

#include <stdlib.h>
#include <string.h>

/* ---- hit-rate window ---------------------------------------------------------- */

kvfp8_status kvfp8_hit_window_init(kvfp8_hit_window *w, uint32_t max_recent) {
    memset(w, 0, sizeof *w);
    w->max_recent_requests = max_recent ? max_recent : KVFP8_HIT_WINDOW_DEFAULT;
    /* Every batch holds >= 1 request, and trimming leaves either one batch or at
     * most max_recent requests, so the queue never exceeds max_recent + 1. */
    w->cap = (size_t)w->max_recent_requests + 1;
    w->queue = calloc(w->cap, sizeof *w->queue);
    if (!w->queue) return kvfp8_fail(KVFP8_ERR_NOMEM, "hit window: out of memory for %zu entries", w->cap);
    return KVFP8_OK;
}

void kvfp8_hit_window_release(kvfp8_hit_window *w) {
    free(w->queue);
    memset(w, 0, sizeof *w);
}

void kvfp8_hit_window_reset(kvfp8_hit_window *w) {
    w->requests = w->queries = w->hits = 0;
    w->head = w->len = 0;
}

void kvfp8_hit_window_observe(kvfp8_hit_window *w, const kvfp8_prefix_cache_stats *s) {
    if (s->reset) kvfp8_hit_window_reset(w);
    /* An empty step would push useful batches out of the window for nothing. */
    if (s->requests == 0) return;
    kvfp8_hit_window_entry *e = &w->queue[(w->head + w->len) % w->cap];
    e->requests = s->requests;
    e->queries = s->queries;
    e->hits = s->hits;
    w->len++;
    w->requests += s->requests;
    w->queries += s->queries;
    w->hits += s->hits;
    while (w->len > 1 && w->requests > w->max_recent_requests) {
        const kvfp8_hit_window_entry *old = &w->queue[w->head];
        w->requests -= old->requests;
        w->queries -= old->queries;
        w->hits -= old->hits;
        w->head = (w->head + 1) % w->cap;
        w->len--;
    }
}

double kvfp8_hit_window_rate(const kvfp8_hit_window *w) {
    return w->queries ? (double)w->hits / (double)w->queries : 0.0;
}

/* ---- requests ----------------------------------------------------------------- */

typedef struct pm_request {
    struct pm_request *hnext;
    char *id;
    uint32_t num_tokens, num_computed, num_preemptions;
    kvfp8_block_hash *hashes;
    size_t n_hashes, cap_hashes;
    uint32_t *blocks[KVFP8_PM_MAX_GROUPS]; /* each cap_blocks long */
    size_t n_blocks, cap_blocks;
    uint32_t num_cached; /* vLLM's num_cached_block[request_id] */
    int has_pending;
    uint32_t *pending[KVFP8_PM_MAX_GROUPS];
    size_t n_pending, cap_pending;
} pm_request;

struct kvfp8_pm {
    kvfp8_pool *pool;
    uint32_t block_size, num_groups;
    int enable_caching;
    pm_request **buckets;
    size_t n_buckets, n_requests;
    uint32_t *scratch; /* reversed block lists for free */
    size_t cap_scratch;
    kvfp8_prefix_cache_stats stats;
    kvfp8_hit_window window;
};

static uint64_t id_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static pm_request *find_req(const kvfp8_pm *m, const char *id) {
    for (pm_request *r = m->buckets[id_hash(id) & (m->n_buckets - 1)]; r; r = r->hnext)
        if (strcmp(r->id, id) == 0) return r;
    return NULL;
}

static kvfp8_status check_id(const char *id) {
    if (!id || !*id) return kvfp8_fail(KVFP8_ERR_INVALID, "manager: request id must be a non-empty string");
    if (strlen(id) > KVFP8_PM_MAX_ID)
        return kvfp8_fail(KVFP8_ERR_INVALID, "manager: request id longer than %d bytes", KVFP8_PM_MAX_ID);
    return KVFP8_OK;
}

static kvfp8_status lookup_req(const kvfp8_pm *m, const char *id, pm_request **out) {
    kvfp8_status st = check_id(id);
    if (st != KVFP8_OK) return st;
    *out = find_req(m, id);
    if (!*out)
        return kvfp8_fail(KVFP8_ERR_STATE, "manager: request %s is not known (never added, or already freed)", id);
    return KVFP8_OK;
}

static kvfp8_status check_hashes(const char *id, const kvfp8_block_hash *h, size_t n, size_t first) {
    if (n && !h) return kvfp8_fail(KVFP8_ERR_INVALID, "manager: request %s: hashes must not be NULL", id);
    for (size_t i = 0; i < n; i++)
        if (h[i].len < 1 || h[i].len > KVFP8_HASH_MAX)
            return kvfp8_fail(KVFP8_ERR_INVALID, "manager: request %s: hash of block %zu has length %u, not 1..%d",
                              id, first + i, h[i].len, KVFP8_HASH_MAX);
    return KVFP8_OK;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 8;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

/* Grows every group's array together, so they stay the same capacity. */
static int grow_groups(uint32_t **arrs, uint32_t groups, size_t *cap, size_t need) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 8;
    while (c < need) c *= 2;
    for (uint32_t g = 0; g < groups; g++) {
        uint32_t *q = realloc(arrs[g], c * sizeof *q);
        if (!q) return 0; /* arrays already grown keep their larger size: harmless */
        arrs[g] = q;
    }
    *cap = c;
    return 1;
}

static void free_req(kvfp8_pm *m, pm_request *r) {
    for (uint32_t g = 0; g < m->num_groups; g++) {
        free(r->blocks[g]);
        free(r->pending[g]);
    }
    free(r->hashes);
    free(r->id);
    free(r);
}

static void unlink_req(kvfp8_pm *m, pm_request *r) {
    pm_request **pp = &m->buckets[id_hash(r->id) & (m->n_buckets - 1)];
    while (*pp != r) pp = &(*pp)->hnext;
    *pp = r->hnext;
    m->n_requests--;
}

/* ---- lifecycle ---------------------------------------------------------------- */

kvfp8_status kvfp8_pm_create(kvfp8_pool *pool, const kvfp8_pm_config *cfg, kvfp8_pm **out) {
    if (!pool || !cfg || !out)
        return kvfp8_fail(KVFP8_ERR_INVALID, "manager: pool, config and output must not be NULL");
    *out = NULL;
    if (cfg->block_size < 1 || cfg->block_size > KVFP8_PM_MAX_TOKENS)
        return kvfp8_fail(KVFP8_ERR_INVALID, "manager: block_size must be >= 1, got %u", cfg->block_size);
    if (cfg->num_groups < 1 || cfg->num_groups > KVFP8_PM_MAX_GROUPS)
        return kvfp8_fail(KVFP8_ERR_INVALID, "manager: num_groups must be 1..%d, got %u", KVFP8_PM_MAX_GROUPS,
                          cfg->num_groups);
    kvfp8_pm *m = calloc(1, sizeof *m);
    if (!m) return kvfp8_fail(KVFP8_ERR_NOMEM, "manager: out of memory");
    m->pool = pool;
    m->block_size = cfg->block_size;
    m->num_groups = cfg->num_groups;
    m->enable_caching = cfg->enable_caching != 0;
    m->n_buckets = 64;
    m->buckets = calloc(m->n_buckets, sizeof *m->buckets);
    kvfp8_status st = m->buckets ? kvfp8_hit_window_init(&m->window, cfg->max_recent_requests)
                                 : kvfp8_fail(KVFP8_ERR_NOMEM, "manager: out of memory");
    if (st != KVFP8_OK) {
        free(m->buckets);
        free(m);
        return st;
    }
    *out = m;
    return KVFP8_OK;
}

static kvfp8_status release_blocks(kvfp8_pm *m, pm_request *r);

void kvfp8_pm_destroy(kvfp8_pm *m) {
    if (!m) return;
    for (size_t b = 0; b < m->n_buckets; b++) {
        pm_request *r = m->buckets[b];
        while (r) {
            pm_request *next = r->hnext;
            (void)release_blocks(m, r);
            free_req(m, r);
            r = next;
        }
    }
    free(m->buckets);
    free(m->scratch);
    kvfp8_hit_window_release(&m->window);
    free(m);
}

kvfp8_pool *kvfp8_pm_pool(kvfp8_pm *m) { return m->pool; }

/* ---- token bookkeeping -------------------------------------------------------- */

static kvfp8_status add_hashes(pm_request *r, const kvfp8_block_hash *h, size_t n) {
    if (!grow((void **)&r->hashes, &r->cap_hashes, r->n_hashes + n, sizeof *r->hashes))
        return kvfp8_fail(KVFP8_ERR_NOMEM, "manager: request %s: out of memory for %zu hashes", r->id,
                          r->n_hashes + n);
    if (n) memcpy(r->hashes + r->n_hashes, h, n * sizeof *h);
    r->n_hashes += n;
    return KVFP8_OK;
}

static kvfp8_status rehash_requests(kvfp8_pm *m) {
    size_t nb = m->n_buckets * 2;
    pm_request **b = calloc(nb, sizeof *b);
    if (!b) return kvfp8_fail(KVFP8_ERR_NOMEM, "manager: out of memory for the request table");
    for (size_t i = 0; i < m->n_buckets; i++) {
        for (pm_request *r = m->buckets[i], *next; r; r = next) {
            next = r->hnext;
            pm_request **slot = &b[id_hash(r->id) & (nb - 1)];
            r->hnext = *slot;
            *slot = r;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = nb;
    return KVFP8_OK;
}

kvfp8_status kvfp8_pm_add_request(kvfp8_pm *m, const char *id, uint32_t num_tokens,
                                  const kvfp8_block_hash *hashes, size_t n_hashes) {
    kvfp8_status st = check_id(id);
    if (st != KVFP8_OK) return st;
    if (find_req(m, id)) return kvfp8_fail(KVFP8_ERR_STATE, "manager: request %s already exists", id);
    if (num_tokens < 1 || num_tokens > KVFP8_PM_MAX_TOKENS)
        return kvfp8_fail(KVFP8_ERR_INVALID, "manager: request %s: num_tokens must be 1..%u, got %u", id,
                          KVFP8_PM_MAX_TOKENS, num_tokens);
    if (n_hashes != num_tokens / m->block_size)
        return kvfp8_fail(KVFP8_ERR_INVALID, "manager: request %s: %u tokens make %u full blocks, got %zu hashes", id,
                          num_tokens, num_tokens / m->block_size, n_hashes);
    st = check_hashes(id, hashes, n_hashes, 0);
    if (st != KVFP8_OK) return st;
    if (m->n_requests >= m->n_buckets && (st = rehash_requests(m)) != KVFP8_OK) return st;
    pm_request *r = calloc(1, sizeof *r);
    if (!r || !(r->id = strdup(id))) {
        free(r);
        return kvfp8_fail(KVFP8_ERR_NOMEM, "manager: request %s: out of memory", id);
    }
    r->num_tokens = num_tokens;
    if ((st = add_hashes(r, hashes, n_hashes)) != KVFP8_OK) {
        free_req(m, r);
        return st;
    }
    pm_request **slot = &m->buckets[id_hash(id) & (m->n_buckets - 1)];
    r->hnext = *slot;
    *slot = r;
    m->n_requests++;
    return KVFP8_OK;
}

kvfp8_status kvfp8_pm_append_tokens(kvfp8_pm *m, const char *id, uint32_t n, const kvfp8_block_hash *hashes,
                                    size_t n_hashes) {
    pm_request *r;
    kvfp8_status st = lookup_req(m, id, &r);
    if (st != KVFP8_OK) return st;
    if (n < 1 || n > KVFP8_PM_MAX_TOKENS - r->num_tokens)
        return kvfp8_fail(KVFP8_ERR_INVALID, "manager: request %s: cannot append %u tokens to %u (limit %u)", id, n,
                          r->num_tokens, KVFP8_PM_MAX_TOKENS);
    uint32_t completed = (r->num_tokens + n) / m->block_size - r->num_tokens / m->block_size;
    if (n_hashes != completed)
        return kvfp8_fail(KVFP8_ERR_INVALID, "manager: request %s: %u appended tokens complete %u blocks, got %zu hashes",
                          id, n, completed, n_hashes);
    st = check_hashes(id, hashes, n_hashes, r->n_hashes);
    if (st != KVFP8_OK) return st;
    if ((st = add_hashes(r, hashes, n_hashes)) != KVFP8_OK) return st;
    r->num_tokens += n;
    return KVFP8_OK;
}

/* ---- lookup ------------------------------------------------------------------- */

static void record_stats(kvfp8_pm *m, const pm_request *r, uint32_t hit_tokens) {
    if (r->num_preemptions > 0) {
        m->stats.preempted_requests++;
        m->stats.preempted_queries += r->num_tokens;
        m->stats.preempted_hits += hit_tokens;
    } else {
        m->stats.requests++;
        m->stats.queries += r->num_tokens;
        m->stats.hits += hit_tokens;
    }
}

kvfp8_status kvfp8_pm_get_computed_blocks(kvfp8_pm *m, const char *id, uint32_t *num_hit_tokens) {
    pm_request *r;
    kvfp8_status st = lookup_req(m, id, &r);
    if (st != KVFP8_OK) return st;
    if (r->num_computed > 0)
        return kvfp8_fail(KVFP8_ERR_STATE,
                          "manager: request %s already has %u computed tokens; the prefix cache is looked up only "
                          "before its first chunk",
                          id, r->num_computed);
    r->has_pending = 0;
    r->n_pending = 0;
    if (!m->enable_caching) {
        if (num_hit_tokens) *num_hit_tokens = 0;
        return KVFP8_OK;
    }
    /* The last token must be recomputed to produce logits, so the hit covers at
     * most num_tokens - 1 tokens; only whole blocks count. */
    size_t max_blocks = (r->num_tokens - 1) / m->block_size;
    if (max_blocks > r->n_hashes) max_blocks = r->n_hashes;
    if (!grow_groups(r->pending, m->num_groups, &r->cap_pending, max_blocks ? max_blocks : 1))
        return kvfp8_fail(KVFP8_ERR_NOMEM, "manager: request %s: out of memory for the lookup", id);
    /* Chunks of consecutive hashes go to the pool together so that their cache
     * misses overlap; each later group only re-checks what still hits. */
    size_t k = 0;
    while (k < max_blocks) {
        size_t chunk = max_blocks - k < 16 ? max_blocks - k : 16, run = chunk;
        for (uint32_t g = 0; g < m->num_groups && run; g++) {
            kvfp8_pool_lookup_many(m->pool, &r->hashes[k], run, g, &r->pending[g][k]);
            for (size_t j = 0; j < run; j++)
                if (r->pending[g][k + j] == KVFP8_POOL_NO_BLOCK) run = j;
        }
        k += run;
        if (run < chunk) break; /* hashes chain, so nothing after a miss can be a prefix */
    }
    r->n_pending = k;
    r->has_pending = 1;
    uint32_t hit = (uint32_t)k * m->block_size;
    record_stats(m, r, hit);
    if (num_hit_tokens) *num_hit_tokens = hit;
    return KVFP8_OK;
}

/* ---- allocation --------------------------------------------------------------- */

static void drop_pending(pm_request *r) {
    r->has_pending = 0;
    r->n_pending = 0;
}

kvfp8_status kvfp8_pm_allocate_slots(kvfp8_pm *m, const char *id, uint32_t num_new, uint32_t lookahead) {
    pm_request *r;
    kvfp8_status st = lookup_req(m, id, &r);
    if (st != KVFP8_OK) return st;
    if (num_new < 1)
        return kvfp8_fail(KVFP8_ERR_INVALID, "manager: request %s: num_new_tokens must be >= 1", id);
    const uint32_t bs = m->block_size;
    size_t n_hit = r->has_pending ? r->n_pending : 0;
    uint64_t local_computed = (uint64_t)r->num_computed + (uint64_t)n_hit * bs;
    if ((uint64_t)num_new > r->num_tokens - local_computed)
        return kvfp8_fail(KVFP8_ERR_INVALID,
                          "manager: request %s: %u new tokens scheduled but only %llu are neither computed nor hit", id,
                          num_new, (unsigned long long)(r->num_tokens - local_computed));
    uint64_t need_tokens = local_computed + num_new + lookahead;
    if (lookahead > KVFP8_PM_MAX_TOKENS || need_tokens > KVFP8_PM_MAX_TOKENS)
        return kvfp8_fail(KVFP8_ERR_INVALID, "manager: request %s: %u lookahead tokens exceed the request limit", id,
                          lookahead);
    /* A hit block may have been evicted (its key dropped) since the lookup, by an
     * allocation for another request or by evict/reset: its KV is gone. */
    for (uint32_t g = 0; g < m->num_groups; g++) {
        for (size_t i = 0; i < n_hit; i++) {
            kvfp8_pool_block_info bi;
            kvfp8_pool_get_block(m->pool, r->pending[g][i], &bi);
            const kvfp8_block_hash *h = &r->hashes[i];
            if (!bi.cached || bi.group != g || bi.hash.len != h->len || memcmp(bi.hash.bytes, h->bytes, h->len)) {
                drop_pending(r);
                return kvfp8_fail(KVFP8_ERR_STATE,
                                  "manager: request %s: hit block %u (position %zu, group %u) was evicted since "
                                  "get_computed_blocks; look it up again",
                                  id, r->pending[g][i], i, g);
            }
        }
    }
    /* vLLM's get_num_blocks_to_allocate, summed over groups: the blocks still
     * missing, plus every hit block now sitting in the free queue, since taking it
     * out shrinks the free count just as an allocation does. */
    size_t required = (size_t)((need_tokens + bs - 1) / bs);
    size_t have = r->n_blocks + n_hit;
    size_t new_per_group = required > have ? required - have : 0;
    uint64_t to_allocate = (uint64_t)new_per_group * m->num_groups;
    for (uint32_t g = 0; g < m->num_groups; g++)
        for (size_t i = 0; i < n_hit; i++) {
            kvfp8_pool_block_info bi;
            kvfp8_pool_get_block(m->pool, r->pending[g][i], &bi);
            to_allocate += bi.in_free_queue;
        }
    uint32_t nfree = kvfp8_pool_num_free(m->pool);
    if (to_allocate > nfree) {
        drop_pending(r);
        return kvfp8_fail(KVFP8_ERR_EXHAUSTED, "manager: request %s needs %llu blocks for %llu tokens, only %u free", id,
                          (unsigned long long)to_allocate, (unsigned long long)need_tokens, nfree);
    }
    if (!grow_groups(r->blocks, m->num_groups, &r->cap_blocks, have + new_per_group)) {
        drop_pending(r);
        return kvfp8_fail(KVFP8_ERR_NOMEM, "manager: request %s: out of memory for %zu blocks", id,
                          have + new_per_group);
    }
    /* From here nothing can fail: the count above covers every block taken. */
    if (n_hit) {
        for (uint32_t g = 0; g < m->num_groups; g++) {
            kvfp8_pool_touch(m->pool, r->pending[g], n_hit);
            memcpy(r->blocks[g] + r->n_blocks, r->pending[g], n_hit * sizeof(uint32_t));
        }
        r->n_blocks += n_hit;
        r->num_cached = (uint32_t)r->n_blocks;
    }
    if (new_per_group)
        for (uint32_t g = 0; g < m->num_groups; g++)
            kvfp8_pool_allocate(m->pool, (uint32_t)new_per_group, r->blocks[g] + r->n_blocks);
    r->n_blocks += new_per_group;
    drop_pending(r);
    r->num_computed = (uint32_t)local_computed + num_new;
    if (m->enable_caching) {
        /* Registered now, before the KV is computed: a request scheduled later in
         * the same step can already hit these blocks (vLLM's cache_blocks runs
         * inside allocate_slots).  Lookahead slots are never registered. */
        uint32_t full = r->num_computed / bs;
        for (uint32_t g = 0; full > r->num_cached && g < m->num_groups; g++) {
            /* Fresh blocks carry no key; one that does (registered through the pool
             * API behind the manager's back) keeps it, as vLLM keeps a hit block's. */
            int fresh = 1;
            for (uint32_t i = r->num_cached; i < full && fresh; i++) {
                kvfp8_pool_block_info bi;
                kvfp8_pool_get_block(m->pool, r->blocks[g][i], &bi);
                fresh = !bi.cached;
            }
            if (fresh) {
                kvfp8_pool_cache_blocks(m->pool, r->blocks[g] + r->num_cached, r->hashes + r->num_cached,
                                        full - r->num_cached, g);
                continue;
            }
            for (uint32_t i = r->num_cached; i < full; i++) {
                kvfp8_pool_block_info bi;
                kvfp8_pool_get_block(m->pool, r->blocks[g][i], &bi);
                if (!bi.cached) kvfp8_pool_cache_block(m->pool, r->blocks[g][i], &r->hashes[i], g);
            }
        }
        if (full > r->num_cached) r->num_cached = full;
    }
    return KVFP8_OK;
}

/* ---- release ------------------------------------------------------------------ */

/* Every group's blocks in reverse, group after group, in one pool call so that a
 * failure (a block freed behind the manager's back) changes nothing. */
static kvfp8_status release_blocks(kvfp8_pm *m, pm_request *r) {
    size_t total = r->n_blocks * m->num_groups;
    if (!grow((void **)&m->scratch, &m->cap_scratch, total ? total : 1, sizeof *m->scratch))
        return kvfp8_fail(KVFP8_ERR_NOMEM, "manager: request %s: out of memory to free %zu blocks", r->id, total);
    size_t k = 0;
    for (uint32_t g = 0; g < m->num_groups; g++)
        for (size_t i = r->n_blocks; i-- > 0;) m->scratch[k++] = r->blocks[g][i];
    kvfp8_status st = kvfp8_pool_free(m->pool, m->scratch, total);
    if (st != KVFP8_OK) return kvfp8_fail(st, "manager: request %s: %s", r->id, kvfp8_last_error());
    r->n_blocks = 0;
    r->num_cached = 0;
    r->num_computed = 0;
    drop_pending(r);
    return KVFP8_OK;
}

kvfp8_status kvfp8_pm_free(kvfp8_pm *m, const char *id) {
    pm_request *r;
    kvfp8_status st = lookup_req(m, id, &r);
    if (st != KVFP8_OK) return st;
    if ((st = release_blocks(m, r)) != KVFP8_OK) return st;
    unlink_req(m, r);
    free_req(m, r);
    return KVFP8_OK;
}

kvfp8_status kvfp8_pm_preempt(kvfp8_pm *m, const char *id) {
    pm_request *r;
    kvfp8_status st = lookup_req(m, id, &r);
    if (st != KVFP8_OK) return st;
    if ((st = release_blocks(m, r)) != KVFP8_OK) return st;
    r->num_preemptions++;
    return KVFP8_OK;
}

kvfp8_status kvfp8_pm_reset_prefix_cache(kvfp8_pm *m) {
    kvfp8_status st = kvfp8_pool_reset_prefix_cache(m->pool);
    if (st != KVFP8_OK) return st;
    m->stats.reset = 1;
    return KVFP8_OK;
}

/* ---- inspection --------------------------------------------------------------- */

kvfp8_status kvfp8_pm_get_request(const kvfp8_pm *m, const char *id, kvfp8_pm_request_info *info) {
    pm_request *r;
    kvfp8_status st = lookup_req(m, id, &r);
    if (st != KVFP8_OK) return st;
    memset(info, 0, sizeof *info);
    info->num_tokens = r->num_tokens;
    info->num_computed_tokens = r->num_computed;
    info->num_preemptions = r->num_preemptions;
    info->num_hashes = (uint32_t)r->n_hashes;
    info->num_blocks = (uint32_t)r->n_blocks;
    info->num_cached_blocks = r->num_cached;
    info->has_pending_hit = r->has_pending;
    info->pending_hit_blocks = r->has_pending ? (uint32_t)r->n_pending : 0;
    return KVFP8_OK;
}

static kvfp8_status group_arg(const kvfp8_pm *m, const char *id, uint32_t g) {
    if (g >= m->num_groups)
        return kvfp8_fail(KVFP8_ERR_INVALID, "manager: request %s: group %u out of range 0..%u", id, g,
                          m->num_groups - 1);
    return KVFP8_OK;
}

kvfp8_status kvfp8_pm_request_blocks(const kvfp8_pm *m, const char *id, uint32_t g, const uint32_t **ids, size_t *n) {
    pm_request *r;
    kvfp8_status st = lookup_req(m, id, &r);
    if (st == KVFP8_OK) st = group_arg(m, id, g);
    if (st != KVFP8_OK) return st;
    *ids = r->blocks[g];
    *n = r->n_blocks;
    return KVFP8_OK;
}

kvfp8_status kvfp8_pm_pending_blocks(const kvfp8_pm *m, const char *id, uint32_t g, const uint32_t **ids, size_t *n) {
    pm_request *r;
    kvfp8_status st = lookup_req(m, id, &r);
    if (st == KVFP8_OK) st = group_arg(m, id, g);
    if (st != KVFP8_OK) return st;
    *ids = r->pending[g];
    *n = r->has_pending ? r->n_pending : 0;
    return KVFP8_OK;
}

size_t kvfp8_pm_num_requests(const kvfp8_pm *m) { return m->n_requests; }
double kvfp8_pm_usage(const kvfp8_pm *m) { return kvfp8_pool_usage(m->pool); }

void kvfp8_pm_take_stats(kvfp8_pm *m, kvfp8_prefix_cache_stats *out) {
    *out = m->stats;
    memset(&m->stats, 0, sizeof m->stats);
}

const kvfp8_prefix_cache_stats *kvfp8_pm_stats(const kvfp8_pm *m) { return &m->stats; }

void kvfp8_pm_end_step(kvfp8_pm *m) {
    kvfp8_prefix_cache_stats s;
    kvfp8_pm_take_stats(m, &s);
    kvfp8_hit_window_observe(&m->window, &s);
}

double kvfp8_pm_hit_rate(const kvfp8_pm *m) { return kvfp8_hit_window_rate(&m->window); }
const kvfp8_hit_window *kvfp8_pm_window(const kvfp8_pm *m) { return &m->window; }
