/* Every conformance suite, in report order.  A new suite file adds one line here and
 * its test ids to conformance/mustpass-v1.txt or optional-v1.txt. */
#include "conform_suite.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const kvfp8_conform_test *tests;
    const size_t *count;
} suites[] = {
    {kvfp8_conform_suite_api, &kvfp8_conform_suite_api_count},
    {kvfp8_conform_suite_fp8, &kvfp8_conform_suite_fp8_count},
    {kvfp8_conform_suite_cache, &kvfp8_conform_suite_cache_count},
    {kvfp8_conform_suite_attention, &kvfp8_conform_suite_attention_count},
    {kvfp8_conform_suite_property, &kvfp8_conform_suite_property_count},
    {kvfp8_conform_suite_hash, &kvfp8_conform_suite_hash_count},
    {kvfp8_conform_suite_perf, &kvfp8_conform_suite_perf_count},
};

size_t kvfp8_conform_test_count(void) {
    size_t n = 0;
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++)
        n += *suites[s].count;
    return n;
}

const kvfp8_conform_test *kvfp8_conform_test_at(size_t i) {
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
        if (i < *suites[s].count)
            return &suites[s].tests[i];
        i -= *suites[s].count;
    }
    return NULL;
}

const char *kvfp8_conform_test_id(const kvfp8_conform_test *t, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", t->suite, t->name);
    return buf;
}

const kvfp8_conform_test *kvfp8_conform_test_find(const char *id) {
    const char *dot = id ? strchr(id, '.') : NULL;
    if (!dot)
        return NULL;
    const size_t suite_len = (size_t)(dot - id);
    for (size_t i = 0, n = kvfp8_conform_test_count(); i < n; i++) {
        const kvfp8_conform_test *t = kvfp8_conform_test_at(i);
        if (strlen(t->suite) == suite_len && !strncmp(t->suite, id, suite_len) && !strcmp(t->name, dot + 1))
            return t;
    }
    return NULL;
}
