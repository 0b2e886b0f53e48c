/* The seed guide's 2x2 isolation matrix: four probes, each in its own process, and
 * the classification of what failed (include/kvfp8/probe.h). */
#include <stdio.h>
#include <string.h>

#include "kvfp8/probe.h"

const char *kvfp8_matrix_classify(const int failed[4], char *why, size_t cap) {
    const char *c, *w;
    if (failed[0]) {
        c = "baseline";
        w = "Test 1 (neither flag) fails: the stack fails without either feature, so the matrix says nothing about "
            "them; fix the baseline first";
    } else if (!failed[1] && !failed[2] && !failed[3]) {
        c = "clean";
        w = "all four tests serve both requests: FP8 and prefix caching work alone and together";
    } else if (failed[3] && !failed[1] && !failed[2]) {
        c = "interaction";
        w = "Test 4 fails while Tests 2 and 3 pass: the combination fails, not either feature (an interaction bug, "
            "as in vLLM #13147)";
    } else if (failed[1] && failed[2]) {
        c = "independent";
        w = "Tests 2 and 3 both fail: each feature fails on its own; not the combination";
    } else if (failed[1]) {
        c = "dtype-specific";
        w = "Test 2 (FP8 only) fails: not the combination; investigate FP8 support on this stack";
    } else {
        c = "prefix-specific";
        w = "Test 3 (prefix caching only) fails: not the combination; investigate prefix caching on this stack";
    }
    if (why && cap)
        snprintf(why, cap, "%s", w);
    return c;
}

kvfp8_status kvfp8_matrix_run(const kvfp8_probe_config *base, const char *fp8_dtype, kvfp8_matrix *m) {
    static const int fp8[4] = {0, 1, 0, 1}, prefix[4] = {0, 0, 1, 1};
    memset(m, 0, sizeof *m);
    m->platform = base->platform;
    if (!fp8_dtype)
        fp8_dtype = "fp8";
    int failed[4];
    for (int i = 0; i < 4; i++) {
        kvfp8_probe_config c = *base;
        kvfp8_matrix_cell *cell = &m->cells[i];
        cell->test = i + 1;
        cell->kv_cache_dtype = fp8[i] ? fp8_dtype : "auto";
        cell->enable_prefix_caching = prefix[i];
        c.kv_cache_dtype = cell->kv_cache_dtype;
        c.enable_prefix_caching = prefix[i];
        if (c.n_requests < 2)
            c.n_requests = 2; /* without a repeated request no prefix hit happens, and every cell starts clean */
        kvfp8_status st = kvfp8_probe_run_isolated(&c, &cell->result);
        if (st != KVFP8_OK) {
            kvfp8_matrix_free(m);
            return st;
        }
        failed[i] = cell->result.outcome != KVFP8_OUTCOME_OK;
    }
    m->classification = kvfp8_matrix_classify(failed, m->explanation, sizeof m->explanation);
    return KVFP8_OK;
}

void kvfp8_matrix_free(kvfp8_matrix *m) {
    for (int i = 0; i < 4; i++)
        kvfp8_probe_result_free(&m->cells[i].result);
}
