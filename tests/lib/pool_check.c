/* Lock-step harness: real pool + manager against pool_model (see pool_check.h). */
#include "pool_check.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/pool.h"
#include "kvfp8/prefix_manager.h"
#include "pool_model.h"

#define PC_SLOTS 12
#define PC_TRACE 48
#define PC_LINE 200
#define PC_MAX_RAW (MODEL_MAX_BLOCKS * 2)
#define PC_TOKEN_LIMIT_BLOCKS 200 /* keeps every request inside the model's arrays */

typedef struct {
    uint32_t gen;        /* bumped per add, so a freed slot's old id stays unknown */
    uint32_t family;     /* shared-prefix family 0..3 */
    uint32_t diverge;    /* blocks before this index use the family's hashes */
    uint32_t salt;       /* unique per add: the request's own suffix */
    uint32_t echo_at;    /* 0, or a block index whose hash repeats the previous one */
} pc_slot;

struct pool_check {
    pool_check_config cfg;
    kvfp8_pool *pool;
    kvfp8_pm *pm;
    model_pm *model;
    pc_slot slots[PC_SLOTS];
    uint32_t salt_counter;
    uint32_t raw[PC_MAX_RAW];
    size_t n_raw;
    pool_check_counts counts;
    char trace[PC_TRACE][PC_LINE];
    size_t trace_next, trace_len;
    char line[PC_LINE];
    char msg[512];
    kvfp8_status last_st; /* the model's status of the step's last call */
    char focus[32];       /* the request the step operated on */
    kvfp8_pool_event events[MODEL_MAX_EVENTS];
};

/* ---- trace and mismatch reporting ---------------------------------------------------- */

static void line_add(pool_check *pc, const char *fmt, ...) {
    size_t used = strlen(pc->line);
    if (used >= sizeof pc->line - 1) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pc->line + used, sizeof pc->line - used, fmt, ap);
    va_end(ap);
}

static int mismatch(pool_check *pc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pc->msg, sizeof pc->msg, fmt, ap);
    va_end(ap);
    return 1;
}

static const char *st_name(kvfp8_status s) { return kvfp8_status_name(s); }

/* Compares two statuses of one call and notes them in the trace line. */
static int same_status(pool_check *pc, const char *what, kvfp8_status real, kvfp8_status model) {
    line_add(pc, " %s=%s", what, st_name(real));
    pc->last_st = model;
    if (real != model)
        return mismatch(pc, "%s: real returned %s (%s), model %s", what, st_name(real),
                        real == KVFP8_OK ? "" : kvfp8_last_error(), st_name(model));
    return 0;
}

/* ---- hashes ---------------------------------------------------------------------------- */

/* Family prefixes are shared between requests; lengths differ per family so keys of
 * every length meet in one table, and family 3's one-byte hash is the same for
 * every block (a request whose blocks all carry one key). */
static kvfp8_block_hash family_hash(uint32_t family, uint32_t i) {
    static const uint8_t lens[4] = {4, 16, 32, 1};
    kvfp8_block_hash h;
    memset(&h, 0, sizeof h);
    h.len = lens[family & 3];
    h.bytes[0] = (uint8_t)(family & 3);
    if (h.len > 1) h.bytes[1] = (uint8_t)i;
    if (h.len > 2) h.bytes[2] = (uint8_t)(i >> 8);
    for (uint32_t k = 3; k < h.len; k++) h.bytes[k] = (uint8_t)(k * 37 + i);
    return h;
}

static kvfp8_block_hash slot_hash(const pc_slot *s, uint32_t i) {
    if (s->echo_at && i == s->echo_at) return slot_hash(s, i - 1);
    if (i < s->diverge) return family_hash(s->family, i);
    kvfp8_block_hash h;
    memset(&h, 0, sizeof h);
    h.len = 8;
    h.bytes[0] = 0x80;
    memcpy(h.bytes + 1, &s->salt, 4);
    h.bytes[5] = (uint8_t)i;
    h.bytes[6] = (uint8_t)(i >> 8);
    return h;
}

/* ---- comparison of everything observable ----------------------------------------------- */

static int same_hash(const kvfp8_block_hash *a, const kvfp8_block_hash *b) {
    return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

MODEL_NO_COVERAGE static int compare_lookup(pool_check *pc, const kvfp8_block_hash *h, uint32_t g) {
    uint32_t r = 0, m = 0;
    kvfp8_status sr = kvfp8_pool_lookup(pc->pool, h, g, &r);
    kvfp8_status sm = model_pool_lookup(&pc->model->pool, h, g, &m);
    if (sr != sm || r != m)
        return mismatch(pc, "lookup of a %u-byte hash (first byte %02x) in group %u: real block %u, model %u",
                        h->len, h->bytes[0], g, r, m);
    return 0;
}

MODEL_NO_COVERAGE static int compare_pool(pool_check *pc) {
    model_pool *mp = &pc->model->pool;
    kvfp8_status st = kvfp8_pool_check(pc->pool);
    if (st != KVFP8_OK) return mismatch(pc, "%s", kvfp8_last_error());
    if (kvfp8_pool_num_free(pc->pool) != mp->qlen)
        return mismatch(pc, "num_free: real %u, model %u", kvfp8_pool_num_free(pc->pool), mp->qlen);
    if (kvfp8_pool_num_cached(pc->pool) != model_pool_num_cached(mp))
        return mismatch(pc, "num_cached: real %u, model %u", kvfp8_pool_num_cached(pc->pool),
                        model_pool_num_cached(mp));
    if (kvfp8_pool_usage(pc->pool) != model_pool_usage(mp))
        return mismatch(pc, "usage: real %.17g, model %.17g", kvfp8_pool_usage(pc->pool), model_pool_usage(mp));
    uint32_t q[MODEL_MAX_BLOCKS];
    size_t n = kvfp8_pool_free_queue(pc->pool, q, MODEL_MAX_BLOCKS);
    if (n != mp->qlen) return mismatch(pc, "free queue length: real %zu, model %u", n, mp->qlen);
    for (size_t i = 0; i < n; i++)
        if (q[i] != mp->queue[i])
            return mismatch(pc, "free queue position %zu: real block %u, model block %u", i, q[i], mp->queue[i]);
    for (uint32_t i = 0; i < mp->num_blocks; i++) {
        kvfp8_pool_block_info bi;
        kvfp8_pool_get_block(pc->pool, i, &bi);
        const model_block *mb = &mp->blocks[i];
        uint32_t mref = i == 0 ? 0 : (uint32_t)mb->ref;
        if (bi.ref_cnt != mref) return mismatch(pc, "block %u ref_cnt: real %u, model %u", i, bi.ref_cnt, mref);
        if (bi.cached != mb->cached)
            return mismatch(pc, "block %u cached: real %d, model %d", i, bi.cached, mb->cached);
        if (bi.cached && (!same_hash(&bi.hash, &mb->hash) || bi.group != mb->group))
            return mismatch(pc, "block %u key: real (%u bytes, group %u), model (%u bytes, group %u)", i,
                            bi.hash.len, bi.group, mb->hash.len, mb->group);
        if (mb->cached) {
            if (compare_lookup(pc, &mb->hash, mb->group)) return 1;
            uint32_t first;
            model_pool_lookup(mp, &mb->hash, mb->group, &first);
            pc->counts.dup_keys += first != i; /* a later duplicate of a key */
        }
    }
    return 0;
}

MODEL_NO_COVERAGE static int compare_events(pool_check *pc) {
    model_pool *mp = &pc->model->pool;
    size_t n = kvfp8_pool_take_events(pc->pool, pc->events, MODEL_MAX_EVENTS);
    if (n != mp->n_events) return mismatch(pc, "events: real %zu, model %zu", n, mp->n_events);
    for (size_t i = 0; i < n; i++) {
        const kvfp8_pool_event *r = &pc->events[i], *m = &mp->events[i];
        if (r->kind != m->kind || r->block != m->block || r->group != m->group || !same_hash(&r->hash, &m->hash))
            return mismatch(pc, "event %zu: real kind %d block %u group %u, model kind %d block %u group %u", i,
                            (int)r->kind, r->block, r->group, (int)m->kind, m->block, m->group);
    }
    mp->n_events = 0;
    return 0;
}

MODEL_NO_COVERAGE static int compare_blocks(pool_check *pc, const char *what, const char *id, uint32_t g, const uint32_t *real,
                          size_t nr, const uint32_t *model, size_t nm) {
    if (nr != nm) return mismatch(pc, "request %s group %u: %s count real %zu, model %zu", id, g, what, nr, nm);
    for (size_t i = 0; i < nr; i++)
        if (real[i] != model[i])
            return mismatch(pc, "request %s group %u: %s[%zu] real %u, model %u", id, g, what, i, real[i], model[i]);
    return 0;
}

MODEL_NO_COVERAGE static int compare_manager(pool_check *pc) {
    model_pm *m = pc->model;
    if (kvfp8_pm_num_requests(pc->pm) != model_pm_num_requests(m))
        return mismatch(pc, "requests: real %zu, model %zu", kvfp8_pm_num_requests(pc->pm), model_pm_num_requests(m));
    for (int k = 0; k < MODEL_MAX_REQS; k++) {
        const model_request *r = &m->reqs[k];
        if (!r->used) continue;
        kvfp8_pm_request_info info;
        if (kvfp8_pm_get_request(pc->pm, r->id, &info) != KVFP8_OK)
            return mismatch(pc, "request %s: known to the model, not to the manager", r->id);
        uint32_t mpend = r->has_pending ? r->n_pending : 0;
        if (info.num_tokens != r->num_tokens || info.num_computed_tokens != r->num_computed ||
            info.num_preemptions != r->num_preemptions || info.num_hashes != r->n_hashes ||
            info.num_blocks != r->n_blocks || info.num_cached_blocks != r->num_cached ||
            info.has_pending_hit != r->has_pending || info.pending_hit_blocks != mpend)
            return mismatch(pc,
                            "request %s: real tokens %u computed %u preempted %u blocks %u cached %u pending %d/%u; "
                            "model %u %u %u %u %u %d/%u",
                            r->id, info.num_tokens, info.num_computed_tokens, info.num_preemptions, info.num_blocks,
                            info.num_cached_blocks, info.has_pending_hit, info.pending_hit_blocks, r->num_tokens,
                            r->num_computed, r->num_preemptions, r->n_blocks, r->num_cached, r->has_pending, mpend);
        for (uint32_t g = 0; g < m->num_groups; g++) {
            const uint32_t *ids;
            size_t n;
            kvfp8_pm_request_blocks(pc->pm, r->id, g, &ids, &n);
            if (compare_blocks(pc, "blocks", r->id, g, ids, n, r->blocks[g], r->n_blocks)) return 1;
            kvfp8_pm_pending_blocks(pc->pm, r->id, g, &ids, &n);
            if (compare_blocks(pc, "pending", r->id, g, ids, n, r->pending[g], mpend)) return 1;
        }
        /* Every hash the operated-on request carries, in each group and one group
         * beyond: present keys are all checked by compare_pool, this adds misses. */
        if (strcmp(r->id, pc->focus) != 0) continue;
        uint32_t nh = r->n_hashes < 64 ? r->n_hashes : 64, many[64];
        for (uint32_t g = 0; g <= m->num_groups; g++) {
            if (kvfp8_pool_lookup_many(pc->pool, r->hashes, nh, g, many) != KVFP8_OK)
                return mismatch(pc, "lookup_many failed: %s", kvfp8_last_error());
            for (uint32_t i = 0; i < nh; i++) {
                if (compare_lookup(pc, &r->hashes[i], g)) return 1;
                uint32_t want;
                model_pool_lookup(&m->pool, &r->hashes[i], g, &want);
                if (many[i] != want)
                    return mismatch(pc, "lookup_many of request %s hash %u in group %u: real %u, model %u", r->id,
                                    i, g, many[i], want);
            }
        }
    }
    const kvfp8_prefix_cache_stats *s = kvfp8_pm_stats(pc->pm);
    if (memcmp(s, &m->stats, sizeof *s) != 0)
        return mismatch(pc,
                        "stats: real reset %d req %llu q %llu h %llu pre %llu/%llu/%llu; model %d %llu %llu %llu "
                        "%llu/%llu/%llu",
                        s->reset, (unsigned long long)s->requests, (unsigned long long)s->queries,
                        (unsigned long long)s->hits, (unsigned long long)s->preempted_requests,
                        (unsigned long long)s->preempted_queries, (unsigned long long)s->preempted_hits,
                        m->stats.reset, (unsigned long long)m->stats.requests, (unsigned long long)m->stats.queries,
                        (unsigned long long)m->stats.hits, (unsigned long long)m->stats.preempted_requests,
                        (unsigned long long)m->stats.preempted_queries, (unsigned long long)m->stats.preempted_hits);
    const kvfp8_hit_window *w = kvfp8_pm_window(pc->pm);
    uint64_t rq, qq, hq;
    model_window_totals(&m->window, &rq, &qq, &hq);
    if (w->len != m->window.len || w->requests != rq || w->queries != qq || w->hits != hq)
        return mismatch(pc, "hit window: real %zu batches %llu/%llu/%llu, model %zu batches %llu/%llu/%llu", w->len,
                        (unsigned long long)w->requests, (unsigned long long)w->queries,
                        (unsigned long long)w->hits, m->window.len, (unsigned long long)rq,
                        (unsigned long long)qq, (unsigned long long)hq);
    if (kvfp8_pm_hit_rate(pc->pm) != model_window_rate(&m->window))
        return mismatch(pc, "hit rate: real %.17g, model %.17g", kvfp8_pm_hit_rate(pc->pm),
                        model_window_rate(&m->window));
    if (kvfp8_pm_usage(pc->pm) != model_pool_usage(&m->pool))
        return mismatch(pc, "manager usage: real %.17g, model %.17g", kvfp8_pm_usage(pc->pm),
                        model_pool_usage(&m->pool));
    return 0;
}

static int compare_all(pool_check *pc) {
    return compare_pool(pc) || compare_events(pc) || compare_manager(pc);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

pool_check *pool_check_new(const pool_check_config *cfg) {
    if (cfg->num_blocks < 1 || cfg->num_blocks > MODEL_MAX_BLOCKS || cfg->block_size < 1 || cfg->num_groups < 1 ||
        cfg->num_groups > MODEL_MAX_GROUPS || cfg->window > MODEL_MAX_WINDOW - 1)
        return NULL;
    pool_check *pc = calloc(1, sizeof *pc);
    if (!pc) return NULL;
    pc->cfg = *cfg;
    pc->model = malloc(sizeof *pc->model);
    kvfp8_pool_config pcfg = {.num_blocks = cfg->num_blocks, .enable_events = cfg->events};
    kvfp8_pm_config mcfg = {.block_size = cfg->block_size,
                            .num_groups = cfg->num_groups,
                            .enable_caching = cfg->caching,
                            .max_recent_requests = cfg->window};
    if (!pc->model || kvfp8_pool_create(&pcfg, &pc->pool) != KVFP8_OK ||
        kvfp8_pm_create(pc->pool, &mcfg, &pc->pm) != KVFP8_OK) {
        pool_check_delete(pc);
        return NULL;
    }
    model_pm_init(pc->model, cfg->num_blocks, cfg->events, cfg->block_size, cfg->num_groups, cfg->caching,
                  cfg->window);
    return pc;
}

void pool_check_delete(pool_check *pc) {
    if (!pc) return;
    kvfp8_pm_destroy(pc->pm);
    kvfp8_pool_destroy(pc->pool);
    free(pc->model);
    free(pc);
}

const char *pool_check_message(const pool_check *pc) { return pc->msg; }
const pool_check_counts *pool_check_get_counts(const pool_check *pc) { return &pc->counts; }
kvfp8_pool *pool_check_real_pool(pool_check *pc) { return pc->pool; }

void pool_check_print_trace(const pool_check *pc, FILE *f) {
    fprintf(f, "pool model check: config blocks=%u block_size=%u groups=%u caching=%d events=%d window=%u\n",
            pc->cfg.num_blocks, pc->cfg.block_size, pc->cfg.num_groups, pc->cfg.caching, pc->cfg.events,
            pc->cfg.window);
    fprintf(f, "last %zu operations (of %llu):\n", pc->trace_len, (unsigned long long)pc->counts.ops);
    for (size_t i = 0; i < pc->trace_len; i++)
        fprintf(f, "  %s\n", pc->trace[(pc->trace_next + PC_TRACE - pc->trace_len + i) % PC_TRACE]);
    fprintf(f, "MISMATCH: %s\n", pc->msg);
}

pool_check_config pool_check_config_from_bytes(const uint8_t b[5]) {
    pool_check_config c;
    c.num_blocks = b[0] == 255 ? 1 : 2 + b[0] % 63;
    c.block_size = 1 + b[1] % 8;
    c.num_groups = 1 + b[2] % 3;
    c.caching = (b[3] & 7) != 0;
    c.events = (b[3] >> 3) & 1;
    c.window = 1 + b[4] % 20;
    return c;
}

pool_check_op pool_check_op_from_bytes(const uint8_t b[5]) {
    /* Scheduling steps dominate, as in a serving loop; the rest keep every rule and
     * error path in reach. */
    static const uint8_t mix[32] = {
        PC_SCHEDULE, PC_SCHEDULE, PC_SCHEDULE, PC_SCHEDULE, PC_SCHEDULE, PC_SCHEDULE, PC_SCHEDULE, PC_SCHEDULE,
        PC_ADD,      PC_ADD,      PC_ADD,      PC_APPEND,   PC_APPEND,   PC_LOOKUP,   PC_LOOKUP,   PC_ALLOC,
        PC_ALLOC,    PC_FREE,     PC_FREE,     PC_FREE,     PC_PREEMPT,  PC_EVICT,    PC_RESET,    PC_END_STEP,
        PC_END_STEP, PC_RAW_ALLOC, PC_RAW_FREE, PC_RAW_FREE, PC_RAW_TOUCH, PC_RAW_CACHE, PC_BAD_FREE, PC_RESET};
    pool_check_op op = {mix[b[0] % 32], b[1], b[2], b[3], b[4]};
    return op;
}

/* ---- operations ------------------------------------------------------------------------- */

static void slot_id(const pool_check *pc, uint32_t s, char *id, size_t cap) {
    snprintf(id, cap, "r%u.%u", s, pc->slots[s].gen);
}

static int do_add(pool_check *pc, uint32_t s, const pool_check_op *op) {
    char id[32];
    kvfp8_block_hash h[PC_TOKEN_LIMIT_BLOCKS + 2];
    uint32_t bs = pc->cfg.block_size;
    slot_id(pc, s, id, sizeof id);
    pc_slot saved = pc->slots[s];
    int dup = model_pm_find(pc->model, id) != NULL;
    if (!dup) { /* a fresh request in this slot */
        pc_slot *sl = &pc->slots[s];
        sl->gen++;
        sl->family = op->c & 3;
        sl->diverge = (op->c >> 2) % 12;
        sl->echo_at = (op->c & 0x40) ? 1 + op->d % 6 : 0;
        sl->salt = ++pc->salt_counter;
        slot_id(pc, s, id, sizeof id);
        snprintf(pc->focus, sizeof pc->focus, "%s", id);
    }
    uint32_t tokens = (op->d & 3) == 0 ? bs * (1 + op->b % 10) : 1 + (op->b * 7u + op->d) % (bs * 14);
    size_t n = tokens / bs;
    for (size_t i = 0; i < n + 1; i++) h[i] = slot_hash(&pc->slots[s], (uint32_t)i);
    if ((op->d & 0xF0) == 0xF0) n++;                      /* one hash too many */
    else if ((op->d & 0xF0) == 0xE0 && n > 0) h[0].len = 0; /* a malformed hash */
    line_add(pc, "ADD %s tokens=%u hashes=%zu fam=%u div=%u echo=%u", id, tokens, n, pc->slots[s].family,
             pc->slots[s].diverge, pc->slots[s].echo_at);
    kvfp8_status sr = kvfp8_pm_add_request(pc->pm, id, tokens, h, n);
    kvfp8_status sm = model_pm_add_request(pc->model, id, tokens, h, n);
    if (sm != KVFP8_OK && !dup) pc->slots[s] = saved;
    return same_status(pc, "add", sr, sm);
}

static int do_append(pool_check *pc, uint32_t s, uint32_t n) {
    char id[32];
    kvfp8_block_hash h[2 * 8 + 2];
    uint32_t bs = pc->cfg.block_size;
    slot_id(pc, s, id, sizeof id);
    model_request *r = model_pm_find(pc->model, id);
    uint32_t old = r ? r->num_tokens : 0;
    if ((old + n) / bs >= PC_TOKEN_LIMIT_BLOCKS) n = 1;
    if ((old + n) / bs >= PC_TOKEN_LIMIT_BLOCKS) {
        line_add(pc, "APPEND %s skipped (request at its size limit)", id);
        return 0;
    }
    size_t nh = 0;
    for (uint32_t i = old / bs; i < (old + n) / bs && nh < 2 * 8 + 2; i++) h[nh++] = slot_hash(&pc->slots[s], i);
    line_add(pc, "APPEND %s +%u hashes=%zu", id, n, nh);
    return same_status(pc, "append", kvfp8_pm_append_tokens(pc->pm, id, n, h, nh),
                       model_pm_append_tokens(pc->model, id, n, h, nh));
}

static int do_lookup(pool_check *pc, const char *id) {
    uint32_t hr = 0, hm = 0;
    kvfp8_status sr = kvfp8_pm_get_computed_blocks(pc->pm, id, &hr);
    kvfp8_status sm = model_pm_get_computed_blocks(pc->model, id, &hm);
    line_add(pc, " lookup(%s)", id);
    if (same_status(pc, "lookup", sr, sm)) return 1;
    line_add(pc, " hit=%u", hr);
    if (sr == KVFP8_OK && hr != hm) return mismatch(pc, "request %s hit tokens: real %u, model %u", id, hr, hm);
    if (sr == KVFP8_OK) {
        pc->counts.hit_lookups += hr > 0;
        pc->counts.hit_tokens += hr;
    }
    return 0;
}

static int do_alloc(pool_check *pc, const char *id, uint32_t num_new, uint32_t lookahead) {
    line_add(pc, " alloc(%s,%u,+%u)", id, num_new, lookahead);
    kvfp8_status sr = kvfp8_pm_allocate_slots(pc->pm, id, num_new, lookahead);
    kvfp8_status sm = model_pm_allocate_slots(pc->model, id, num_new, lookahead);
    if (sm == KVFP8_ERR_EXHAUSTED) pc->counts.exhausted++;
    return same_status(pc, "alloc", sr, sm);
}

static uint32_t remaining(const model_request *r, uint32_t bs) {
    uint32_t hit = r->has_pending ? r->n_pending * bs : 0;
    return r->num_tokens - r->num_computed - hit;
}

static int do_schedule(pool_check *pc, uint32_t s, const pool_check_op *op) {
    char id[32];
    uint32_t bs = pc->cfg.block_size;
    slot_id(pc, s, id, sizeof id);
    model_request *r = model_pm_find(pc->model, id);
    if (!r) {
        line_add(pc, "SCHEDULE(new) ");
        return do_add(pc, s, op);
    }
    line_add(pc, "SCHEDULE %s", id);
    if (r->num_computed == r->num_tokens) { /* decode: one generated token */
        if (do_append(pc, s, 1)) return 1;
        if (r->num_computed == r->num_tokens) return 0; /* at its size limit */
    }
    if (r->num_computed == 0 && do_lookup(pc, id)) return 1;
    uint32_t rem = remaining(r, bs);
    uint32_t chunk = 1 + op->b % (4 * bs);
    return do_alloc(pc, id, chunk < rem ? chunk : rem, op->d % 3 == 0 ? op->c % 3 : 0);
}

static int do_release(pool_check *pc, uint32_t s, int preempt) {
    char id[32];
    slot_id(pc, s, id, sizeof id);
    line_add(pc, "%s %s", preempt ? "PREEMPT" : "FREE", id);
    if (preempt) return same_status(pc, "preempt", kvfp8_pm_preempt(pc->pm, id), model_pm_preempt(pc->model, id));
    return same_status(pc, "free", kvfp8_pm_free(pc->pm, id), model_pm_free(pc->model, id));
}

static int raw_push(pool_check *pc, uint32_t id) {
    if (pc->n_raw >= PC_MAX_RAW) return 0;
    pc->raw[pc->n_raw++] = id;
    return 1;
}

static int do_raw(pool_check *pc, const pool_check_op *op) {
    model_pool *mp = &pc->model->pool;
    uint32_t N = pc->cfg.num_blocks;
    switch (op->kind) {
    case PC_EVICT: {
        uint32_t ids[3] = {op->b % (N + 1), op->c % N, op->d % N};
        size_t n = 1 + op->a % 3;
        line_add(pc, "EVICT n=%zu [%u %u %u]", n, ids[0], ids[1], ids[2]);
        pc->counts.evictions += n;
        return same_status(pc, "evict", kvfp8_pool_evict(pc->pool, ids, n), model_pool_evict(mp, ids, n));
    }
    case PC_RAW_ALLOC: {
        uint32_t n = op->a % 5, ri[8] = {0}, mi[8] = {0};
        if (pc->n_raw + n > PC_MAX_RAW) n = 0;
        line_add(pc, "RAW_ALLOC %u", n);
        kvfp8_status sr = kvfp8_pool_allocate(pc->pool, n, ri);
        kvfp8_status sm = model_pool_allocate(mp, n, mi);
        if (same_status(pc, "alloc", sr, sm)) return 1;
        if (sr != KVFP8_OK) return 0;
        for (uint32_t i = 0; i < n; i++) {
            if (ri[i] != mi[i]) return mismatch(pc, "raw allocate #%u: real block %u, model %u", i, ri[i], mi[i]);
            raw_push(pc, ri[i]);
        }
        return 0;
    }
    case PC_RAW_FREE: {
        uint32_t ids[PC_MAX_RAW];
        size_t k = pc->n_raw ? 1 + op->a % pc->n_raw : 0;
        /* The last k in reverse (a request's order), or the first k in order. */
        if (op->b & 1) {
            for (size_t i = 0; i < k; i++) ids[i] = pc->raw[pc->n_raw - 1 - i];
            pc->n_raw -= k;
        } else {
            memcpy(ids, pc->raw, k * sizeof ids[0]);
            memmove(pc->raw, pc->raw + k, (pc->n_raw - k) * sizeof ids[0]);
            pc->n_raw -= k;
        }
        line_add(pc, "RAW_FREE %zu", k);
        return same_status(pc, "free", kvfp8_pool_free(pc->pool, ids, k), model_pool_free(mp, ids, k));
    }
    case PC_RAW_TOUCH: {
        uint32_t id = op->b % (N + 1);
        if (op->c & 1) { /* a prefix hit by key, as a request would make */
            kvfp8_block_hash h = family_hash(op->c >> 1, op->d % 12);
            model_pool_lookup(mp, &h, op->a % (pc->cfg.num_groups + 1), &id);
            if (id == KVFP8_POOL_NO_BLOCK) id = 0;
        }
        if (pc->n_raw >= PC_MAX_RAW) return 0;
        line_add(pc, "RAW_TOUCH %u", id);
        kvfp8_status sr = kvfp8_pool_touch(pc->pool, &id, 1);
        if (same_status(pc, "touch", sr, model_pool_touch(mp, &id, 1))) return 1;
        if (sr == KVFP8_OK && id != 0) raw_push(pc, id);
        return 0;
    }
    case PC_RAW_CACHE: {
        uint32_t id = op->b % (N + 1), g = op->a % (pc->cfg.num_groups + 2);
        kvfp8_block_hash h = family_hash(op->c, op->d % 12);
        if (op->a & 0x80) h.len = 0;
        line_add(pc, "RAW_CACHE block=%u group=%u hash=%u/%u", id, g, op->c & 3, op->d % 12);
        return same_status(pc, "cache", kvfp8_pool_cache_block(pc->pool, id, &h, g),
                           model_pool_cache_block(mp, id, &h, g));
    }
    case PC_BAD_FREE: {
        uint32_t ids[2];
        size_t n = 0;
        if (pc->n_raw) ids[n++] = pc->raw[pc->n_raw - 1];
        uint32_t bad = N + op->b;
        if (op->a % 3 == 1) { /* a block holding no reference */
            bad = 0;
            for (uint32_t k = 0; k < N; k++) {
                uint32_t c = (op->b + k) % N;
                if (c != 0 && mp->blocks[c].ref == 0) {
                    bad = c;
                    break;
                }
            }
        } else if (op->a % 3 == 2) {
            bad = 0; /* the null block: skipped, so this free succeeds */
        }
        ids[n++] = bad;
        line_add(pc, "BAD_FREE [%s%u]", n == 2 ? "held, " : "", bad);
        kvfp8_status sr = kvfp8_pool_free(pc->pool, ids, n);
        if (same_status(pc, "free", sr, model_pool_free(mp, ids, n))) return 1;
        if (sr == KVFP8_OK && n == 2) pc->n_raw--;
        return 0;
    }
    default:
        return 0;
    }
}

int pool_check_step(pool_check *pc, const pool_check_op *op) {
    pc->line[0] = 0;
    line_add(pc, "#%llu ", (unsigned long long)pc->counts.ops);
    pc->counts.ops++;
    uint32_t s = op->a % PC_SLOTS;
    char id[32];
    slot_id(pc, s, id, sizeof id);
    snprintf(pc->focus, sizeof pc->focus, "%s", id);
    int bad = 0;
    pc->last_st = KVFP8_OK;
    switch (op->kind % PC_NUM_OPS) {
    case PC_ADD: bad = do_add(pc, s, op); break;
    case PC_APPEND: bad = do_append(pc, s, 1 + op->b % (2 * pc->cfg.block_size)); break;
    case PC_LOOKUP: line_add(pc, "LOOKUP"); bad = do_lookup(pc, id); break;
    case PC_ALLOC: {
        model_request *r = model_pm_find(pc->model, id);
        uint32_t rem = r ? remaining(r, pc->cfg.block_size) : 1;
        uint32_t n = op->b % 4 == 0 ? rem : op->b % 4 == 1 ? 1 : op->b % 4 == 2 ? 1 + op->c % (rem ? rem : 1) : rem + 1;
        line_add(pc, "ALLOC");
        bad = do_alloc(pc, id, n, op->d % 3);
        break;
    }
    case PC_SCHEDULE: bad = do_schedule(pc, s, op); break;
    case PC_FREE: bad = do_release(pc, s, 0); break;
    case PC_PREEMPT: bad = do_release(pc, s, 1); break;
    case PC_RESET: {
        line_add(pc, "RESET");
        kvfp8_status sr = kvfp8_pm_reset_prefix_cache(pc->pm);
        bad = same_status(pc, "reset", sr, model_pm_reset(pc->model));
        pc->counts.resets += sr == KVFP8_OK;
        break;
    }
    case PC_END_STEP:
        line_add(pc, "END_STEP");
        kvfp8_pm_end_step(pc->pm);
        model_pm_end_step(pc->model);
        break;
    default: bad = do_raw(pc, op); break;
    }
    if (pc->last_st != KVFP8_OK) pc->counts.failed[op->kind % PC_NUM_OPS]++;
    else pc->counts.ok[op->kind % PC_NUM_OPS]++;
    if (!bad) bad = compare_all(pc);
    snprintf(pc->trace[pc->trace_next], PC_LINE, "%s", pc->line);
    pc->trace_next = (pc->trace_next + 1) % PC_TRACE;
    if (pc->trace_len < PC_TRACE) pc->trace_len++;
    return bad;
}
