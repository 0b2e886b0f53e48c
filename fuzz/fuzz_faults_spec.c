/* The KVFP8_FAULTS parser: arbitrary bytes as a spec.
 *
 * It must never crash; on failure it leaves the plan empty and names the label; on
 * success every item selects a site that supports its action, and the canonical
 * form parses back to the same plan (format o parse is a fixed point).  An accepted
 * plan is armed, each site is hit a few times (error faults only: crashes and hangs
 * would end the run), and disarmed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/faults.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                 \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            fprintf(stderr, "fuzz_faults_spec: invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                                \
        }                                                                                           \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kvfp8_fault_plan p, q, zero;
    memset(&zero, 0, sizeof zero);
    if (kvfp8_fault_plan_parse((const char *)data, size, "fuzz", &p) != KVFP8_OK) {
        CHECK(!memcmp(&p, &zero, sizeof p));
        CHECK(!strncmp(kvfp8_last_error(), "fuzz: item ", 11));
        return 0;
    }
    CHECK(p.count <= KVFP8_FAULTS_MAX);
    for (size_t i = 0; i < p.count; i++) {
        const kvfp8_fault_item *it = &p.items[i];
        CHECK((unsigned)it->action < KVFP8_FAULT_ACTION_COUNT);
        int acts = 0;
        for (size_t s = 0; s < kvfp8_fault_site_count(); s++) {
            const kvfp8_fault_site *site = kvfp8_fault_site_at(s);
            acts |= kvfp8_fault_pattern_matches(it->pattern, site->name) &&
                    (site->actions & KVFP8_FAULT_BIT(it->action));
        }
        CHECK(acts);
        CHECK(it->trigger.kind != KVFP8_TRIGGER_NTH || it->trigger.n >= 1);
        CHECK(it->trigger.kind != KVFP8_TRIGGER_PROB || (it->trigger.p >= 0 && it->trigger.p <= 1));
    }
    char a[4096], b[4096];
    const size_t na = kvfp8_fault_plan_format(&p, a, sizeof a);
    CHECK(na < sizeof a);
    CHECK(kvfp8_fault_plan_parse(a, na, "fuzz", &q) == KVFP8_OK);
    CHECK(q.count == p.count && q.has_seed == p.has_seed && (!p.has_seed || q.seed == p.seed));
    const size_t nb = kvfp8_fault_plan_format(&q, b, sizeof b);
    CHECK(na == nb && !memcmp(a, b, na));
    /* armed: only what returns (errors, corruptions) is exercised */
    kvfp8_fault_plan safe = p;
    safe.count = 0;
    for (size_t i = 0; i < p.count; i++)
        if (p.items[i].action != KVFP8_FAULT_CRASH_ABORT && p.items[i].action != KVFP8_FAULT_CRASH_SEGV &&
            p.items[i].action != KVFP8_FAULT_HANG)
            safe.items[safe.count++] = p.items[i];
    CHECK(kvfp8_faults_arm_plan(&safe) == KVFP8_OK);
    CHECK(kvfp8_faults_armed_count() == safe.count);
    for (int round = 0; round < 3; round++)
        for (size_t s = 0; s < kvfp8_fault_site_count(); s++) {
            kvfp8_fault_event ev;
            const kvfp8_status st = kvfp8_fault_point(kvfp8_fault_site_at(s)->name, &ev);
            CHECK(st == KVFP8_OK || !strncmp(kvfp8_last_error(), "injected fault: error at ", 25));
            if (ev.fired) {
                uint8_t buf[16] = {0};
                kvfp8_fault_corrupt_bytes(&ev, buf, sizeof buf, NULL, 0);
            }
        }
    kvfp8_faults_disarm();
    CHECK(!kvfp8_faults_active);
    return 0;
}
