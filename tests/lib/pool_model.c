/* The simple model of the pool and manager: see pool_model.h.  Written from the
 * rules in docs/pool.md, not from ref/pool.c; keep it that way, or the model-based
 * test only checks the implementation against itself. */
#include "pool_model.h"

#include <string.h>

/* ---- pool ----------------------------------------------------------------------- */

static void emit(model_pool *p, kvfp8_pool_event_kind kind, uint32_t id) {
    if (!p->events_on || p->n_events >= MODEL_MAX_EVENTS) return;
    kvfp8_pool_event *e = &p->events[p->n_events++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    if (kind == KVFP8_POOL_EVENT_ALL_CLEARED) return;
    e->block = id;
    e->hash = p->blocks[id].hash;
    e->group = p->blocks[id].group;
}

void model_pool_init(model_pool *p, uint32_t num_blocks, int events_on) {
    memset(p, 0, sizeof *p);
    p->num_blocks = num_blocks;
    p->events_on = events_on;
    for (uint32_t i = 1; i < num_blocks; i++) p->queue[p->qlen++] = i;
}

MODEL_NO_COVERAGE uint32_t model_pool_num_cached(const model_pool *p) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->num_blocks; i++) n += p->blocks[i].cached;
    return n;
}

double model_pool_usage(const model_pool *p) {
    if (p->num_blocks <= 1) return 0.0;
    return 1.0 - (double)p->qlen / (double)(p->num_blocks - 1);
}

MODEL_NO_COVERAGE static int same_key(const model_block *b, const kvfp8_block_hash *h, uint32_t group) {
    return b->cached && b->group == group && b->hash.len == h->len && memcmp(b->hash.bytes, h->bytes, h->len) == 0;
}

MODEL_NO_COVERAGE static void queue_delete(model_pool *p, uint32_t id) {
    for (uint32_t i = 0; i < p->qlen; i++)
        if (p->queue[i] == id) {
            memmove(&p->queue[i], &p->queue[i + 1], (p->qlen - i - 1) * sizeof p->queue[0]);
            p->qlen--;
            return;
        }
}

static void uncache(model_pool *p, uint32_t id) {
    if (!p->blocks[id].cached) return;
    emit(p, KVFP8_POOL_EVENT_REMOVED, id);
    p->blocks[id].cached = 0;
}

kvfp8_status model_pool_allocate(model_pool *p, uint32_t n, uint32_t *ids) {
    if (n > p->qlen) return KVFP8_ERR_EXHAUSTED;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t id = p->queue[0];
        queue_delete(p, id);
        uncache(p, id);
        p->blocks[id].ref = 1;
        ids[k] = id;
    }
    return KVFP8_OK;
}

kvfp8_status model_pool_free(model_pool *p, const uint32_t *ids, size_t n) {
    /* Save everything an entry can change, put it back on error. */
    static model_block saved_blocks[MODEL_MAX_BLOCKS];
    static uint32_t saved_queue[MODEL_MAX_BLOCKS];
    uint32_t saved_qlen = p->qlen;
    size_t nb = p->num_blocks;
    memcpy(saved_blocks, p->blocks, nb * sizeof saved_blocks[0]);
    memcpy(saved_queue, p->queue, nb * sizeof saved_queue[0]);
    for (size_t k = 0; k < n; k++) {
        uint32_t id = ids[k];
        kvfp8_status st = KVFP8_OK;
        if (id >= p->num_blocks) st = KVFP8_ERR_INVALID;
        else if (id != 0 && p->blocks[id].ref <= 0) st = KVFP8_ERR_STATE;
        if (st != KVFP8_OK) {
            memcpy(p->blocks, saved_blocks, nb * sizeof saved_blocks[0]);
            memcpy(p->queue, saved_queue, nb * sizeof saved_queue[0]);
            p->qlen = saved_qlen;
            return st;
        }
        if (id == 0) continue;
        p->blocks[id].ref--;
        if (p->blocks[id].ref == 0) p->queue[p->qlen++] = id;
    }
    return KVFP8_OK;
}

kvfp8_status model_pool_touch(model_pool *p, const uint32_t *ids, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (ids[k] >= p->num_blocks) return KVFP8_ERR_INVALID;
    for (size_t k = 0; k < n; k++) {
        uint32_t id = ids[k];
        if (id == 0) continue;
        if (p->blocks[id].ref == 0) queue_delete(p, id);
        p->blocks[id].ref++;
    }
    return KVFP8_OK;
}

static int hash_ok(const kvfp8_block_hash *h) { return h->len >= 1 && h->len <= KVFP8_HASH_MAX; }

kvfp8_status model_pool_cache_block(model_pool *p, uint32_t id, const kvfp8_block_hash *h, uint32_t group) {
    if (!hash_ok(h) || id >= p->num_blocks || id == 0) return KVFP8_ERR_INVALID;
    model_block *b = &p->blocks[id];
    if (b->ref <= 0) return KVFP8_ERR_STATE;
    if (b->cached) return same_key(b, h, group) ? KVFP8_OK : KVFP8_ERR_STATE;
    b->cached = 1;
    b->hash = *h;
    b->group = group;
    b->seq = ++p->next_seq;
    emit(p, KVFP8_POOL_EVENT_STORED, id);
    return KVFP8_OK;
}

MODEL_NO_COVERAGE kvfp8_status model_pool_lookup(const model_pool *p, const kvfp8_block_hash *h, uint32_t group, uint32_t *id) {
    if (!hash_ok(h)) return KVFP8_ERR_INVALID;
    uint32_t best = KVFP8_POOL_NO_BLOCK;
    uint64_t best_seq = UINT64_MAX;
    for (uint32_t i = 0; i < p->num_blocks; i++)
        if (same_key(&p->blocks[i], h, group) && p->blocks[i].seq < best_seq) {
            best = i;
            best_seq = p->blocks[i].seq;
        }
    *id = best;
    return KVFP8_OK;
}

kvfp8_status model_pool_evict(model_pool *p, const uint32_t *ids, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (ids[k] >= p->num_blocks) return KVFP8_ERR_INVALID;
    for (size_t k = 0; k < n; k++) uncache(p, ids[k]);
    return KVFP8_OK;
}

kvfp8_status model_pool_reset(model_pool *p) {
    if (p->qlen != p->num_blocks - 1) return KVFP8_ERR_STATE;
    for (uint32_t i = 0; i < p->num_blocks; i++) p->blocks[i].cached = 0;
    emit(p, KVFP8_POOL_EVENT_ALL_CLEARED, 0);
    return KVFP8_OK;
}

/* ---- hit window ------------------------------------------------------------------ */

void model_window_init(model_window *w, uint32_t max_recent) {
    memset(w, 0, sizeof *w);
    w->max_recent = max_recent ? max_recent : 1000;
}

MODEL_NO_COVERAGE void model_window_totals(const model_window *w, uint64_t *requests, uint64_t *queries, uint64_t *hits) {
    *requests = *queries = *hits = 0;
    for (size_t i = 0; i < w->len; i++) {
        *requests += w->entries[i].requests;
        *queries += w->entries[i].queries;
        *hits += w->entries[i].hits;
    }
}

void model_window_observe(model_window *w, const kvfp8_prefix_cache_stats *s) {
    if (s->reset) w->len = 0;
    if (s->requests == 0) return;
    if (w->len == MODEL_MAX_WINDOW) return; /* callers keep max_recent small */
    w->entries[w->len].requests = s->requests;
    w->entries[w->len].queries = s->queries;
    w->entries[w->len].hits = s->hits;
    w->len++;
    for (;;) {
        uint64_t r, q, h;
        model_window_totals(w, &r, &q, &h);
        if (w->len <= 1 || r <= w->max_recent) break;
        memmove(&w->entries[0], &w->entries[1], (w->len - 1) * sizeof w->entries[0]);
        w->len--;
    }
}

double model_window_rate(const model_window *w) {
    uint64_t r, q, h;
    model_window_totals(w, &r, &q, &h);
    return q ? (double)h / (double)q : 0.0;
}

/* ---- manager ---------------------------------------------------------------------- */

void model_pm_init(model_pm *m, uint32_t num_blocks, int events_on, uint32_t block_size, uint32_t num_groups,
                   int caching, uint32_t window) {
    memset(m, 0, sizeof *m);
    model_pool_init(&m->pool, num_blocks, events_on);
    m->block_size = block_size;
    m->num_groups = num_groups;
    m->caching = caching;
    model_window_init(&m->window, window);
}

MODEL_NO_COVERAGE model_request *model_pm_find(model_pm *m, const char *id) {
    for (int i = 0; i < MODEL_MAX_REQS; i++)
        if (m->reqs[i].used && strcmp(m->reqs[i].id, id) == 0) return &m->reqs[i];
    return NULL;
}

MODEL_NO_COVERAGE size_t model_pm_num_requests(const model_pm *m) {
    size_t n = 0;
    for (int i = 0; i < MODEL_MAX_REQS; i++) n += m->reqs[i].used != 0;
    return n;
}

static int hashes_ok(const kvfp8_block_hash *h, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!hash_ok(&h[i])) return 0;
    return 1;
}

kvfp8_status model_pm_add_request(model_pm *m, const char *id, uint32_t num_tokens, const kvfp8_block_hash *h,
                                  size_t n) {
    if (model_pm_find(m, id)) return KVFP8_ERR_STATE;
    if (num_tokens < 1) return KVFP8_ERR_INVALID;
    if (n != num_tokens / m->block_size) return KVFP8_ERR_INVALID;
    if (!hashes_ok(h, n)) return KVFP8_ERR_INVALID;
    for (int i = 0; i < MODEL_MAX_REQS; i++) {
        model_request *r = &m->reqs[i];
        if (r->used) continue;
        memset(r, 0, sizeof *r);
        r->used = 1;
        strncpy(r->id, id, sizeof r->id - 1);
        r->num_tokens = num_tokens;
        r->n_hashes = (uint32_t)n;
        memcpy(r->hashes, h, n * sizeof *h);
        return KVFP8_OK;
    }
    return KVFP8_ERR_NOMEM; /* the harness never has this many */
}

kvfp8_status model_pm_append_tokens(model_pm *m, const char *id, uint32_t n, const kvfp8_block_hash *h, size_t nh) {
    model_request *r = model_pm_find(m, id);
    if (!r) return KVFP8_ERR_STATE;
    if (n < 1) return KVFP8_ERR_INVALID;
    uint32_t bs = m->block_size;
    if (nh != (r->num_tokens + n) / bs - r->num_tokens / bs) return KVFP8_ERR_INVALID;
    if (!hashes_ok(h, nh)) return KVFP8_ERR_INVALID;
    memcpy(&r->hashes[r->n_hashes], h, nh * sizeof *h);
    r->n_hashes += (uint32_t)nh;
    r->num_tokens += n;
    return KVFP8_OK;
}

kvfp8_status model_pm_get_computed_blocks(model_pm *m, const char *id, uint32_t *hit_tokens) {
    model_request *r = model_pm_find(m, id);
    if (!r) return KVFP8_ERR_STATE;
    if (r->num_computed > 0) return KVFP8_ERR_STATE;
    r->has_pending = 0;
    r->n_pending = 0;
    *hit_tokens = 0;
    if (!m->caching) return KVFP8_OK;
    /* Whole blocks only, and never the last token. */
    uint32_t limit = (r->num_tokens - 1) / m->block_size;
    uint32_t k = 0;
    while (k < limit && k < r->n_hashes) {
        uint32_t found[MODEL_MAX_GROUPS];
        int all = 1;
        for (uint32_t g = 0; g < m->num_groups; g++) {
            model_pool_lookup(&m->pool, &r->hashes[k], g, &found[g]);
            if (found[g] == KVFP8_POOL_NO_BLOCK) all = 0;
        }
        if (!all) break;
        for (uint32_t g = 0; g < m->num_groups; g++) r->pending[g][k] = found[g];
        k++;
    }
    r->has_pending = 1;
    r->n_pending = k;
    *hit_tokens = k * m->block_size;
    if (r->num_preemptions) {
        m->stats.preempted_requests += 1;
        m->stats.preempted_queries += r->num_tokens;
        m->stats.preempted_hits += *hit_tokens;
    } else {
        m->stats.requests += 1;
        m->stats.queries += r->num_tokens;
        m->stats.hits += *hit_tokens;
    }
    return KVFP8_OK;
}

kvfp8_status model_pm_allocate_slots(model_pm *m, const char *id, uint32_t num_new, uint32_t lookahead) {
    model_request *r = model_pm_find(m, id);
    if (!r) return KVFP8_ERR_STATE;
    if (num_new < 1) return KVFP8_ERR_INVALID;
    uint32_t bs = m->block_size, G = m->num_groups;
    uint32_t hit = r->has_pending ? r->n_pending : 0;
    uint32_t computed = r->num_computed + hit * bs;
    if (num_new > r->num_tokens - computed) return KVFP8_ERR_INVALID;
    /* Each hit block must still carry its key. */
    for (uint32_t g = 0; g < G; g++)
        for (uint32_t i = 0; i < hit; i++)
            if (!same_key(&m->pool.blocks[r->pending[g][i]], &r->hashes[i], g)) {
                r->has_pending = 0;
                r->n_pending = 0;
                return KVFP8_ERR_STATE;
            }
    uint32_t slots = computed + num_new + lookahead;
    uint32_t blocks_needed = (slots + bs - 1) / bs;
    uint32_t new_blocks = 0;
    if (blocks_needed > r->n_blocks + hit) new_blocks = blocks_needed - r->n_blocks - hit;
    uint32_t take = new_blocks * G;
    for (uint32_t g = 0; g < G; g++)
        for (uint32_t i = 0; i < hit; i++) take += m->pool.blocks[r->pending[g][i]].ref == 0;
    if (take > m->pool.qlen) {
        r->has_pending = 0;
        r->n_pending = 0;
        return KVFP8_ERR_EXHAUSTED;
    }
    for (uint32_t g = 0; g < G; g++) {
        model_pool_touch(&m->pool, r->pending[g], hit);
        for (uint32_t i = 0; i < hit; i++) r->blocks[g][r->n_blocks + i] = r->pending[g][i];
    }
    r->n_blocks += hit;
    if (hit) r->num_cached = r->n_blocks;
    for (uint32_t g = 0; g < G; g++) model_pool_allocate(&m->pool, new_blocks, &r->blocks[g][r->n_blocks]);
    r->n_blocks += new_blocks;
    r->has_pending = 0;
    r->n_pending = 0;
    r->num_computed = computed + num_new;
    if (m->caching) {
        uint32_t full = r->num_computed / bs;
        for (uint32_t g = 0; g < G; g++)
            for (uint32_t i = r->num_cached; i < full; i++)
                if (!m->pool.blocks[r->blocks[g][i]].cached)
                    model_pool_cache_block(&m->pool, r->blocks[g][i], &r->hashes[i], g);
        if (full > r->num_cached) r->num_cached = full;
    }
    return KVFP8_OK;
}

static kvfp8_status release(model_pm *m, model_request *r) {
    uint32_t order[MODEL_MAX_GROUPS * (MODEL_MAX_HASHES + 8)];
    size_t n = 0;
    for (uint32_t g = 0; g < m->num_groups; g++)
        for (uint32_t i = r->n_blocks; i > 0; i--) order[n++] = r->blocks[g][i - 1];
    kvfp8_status st = model_pool_free(&m->pool, order, n);
    if (st != KVFP8_OK) return st;
    r->n_blocks = 0;
    r->num_cached = 0;
    r->num_computed = 0;
    r->has_pending = 0;
    r->n_pending = 0;
    return KVFP8_OK;
}

kvfp8_status model_pm_free(model_pm *m, const char *id) {
    model_request *r = model_pm_find(m, id);
    if (!r) return KVFP8_ERR_STATE;
    kvfp8_status st = release(m, r);
    if (st == KVFP8_OK) r->used = 0;
    return st;
}

kvfp8_status model_pm_preempt(model_pm *m, const char *id) {
    model_request *r = model_pm_find(m, id);
    if (!r) return KVFP8_ERR_STATE;
    kvfp8_status st = release(m, r);
    if (st == KVFP8_OK) r->num_preemptions++;
    return st;
}

kvfp8_status model_pm_reset(model_pm *m) {
    kvfp8_status st = model_pool_reset(&m->pool);
    if (st == KVFP8_OK) m->stats.reset = 1;
    return st;
}

void model_pm_end_step(model_pm *m) {
    model_window_observe(&m->window, &m->stats);
    memset(&m->stats, 0, sizeof m->stats);
}
