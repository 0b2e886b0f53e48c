/* The platform-profile and known-issue readers: arbitrary bytes as
 * faults/data/platforms.json (first byte even) or known_issues.json (odd), the rest
 * being the document.
 *
 * The readers must never crash or leak; on failure they leave the set empty and
 * name the label; on success every string is terminated, every encoding known, and
 * the capability decisions and issue matches run over every profile, path and dtype
 * without crashing, with a message for every path that cannot run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/platform.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "fuzz_platform: invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

static const char *const dtypes[] = {"auto", "bfloat16", "float16", "float32", "fp8", "fp8_e4m3", "fp8_e5m2"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    const size_t len = size - 1;
    if (data[0] & 1) {
        kvfp8_issue_db db;
        if (kvfp8_issues_parse(text, len, "fuzz.json", &db) != KVFP8_OK) {
            CHECK(db.count == 0 && db.items == NULL);
            CHECK(!strncmp(kvfp8_last_error(), "fuzz.json", 9));
            return 0;
        }
        kvfp8_platform_set ps;
        CHECK(kvfp8_platforms_builtin(&ps) == KVFP8_OK);
        for (size_t i = 0; i < db.count; i++) {
            CHECK(memchr(db.items[i].id, 0, sizeof db.items[i].id) != NULL);
            for (size_t p = 0; p <= ps.count; p++)
                for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
                    kvfp8_issue_query q = {p < ps.count ? &ps.items[p] : NULL, dtypes[d], (int)(d & 1),
                                           (int)((d >> 1) & 1), 0};
                    (void)kvfp8_issue_matches(&db.items[i], &q);
                }
        }
        kvfp8_platforms_free(&ps);
        kvfp8_issues_free(&db);
        return 0;
    }
    kvfp8_platform_set s;
    if (kvfp8_platforms_parse(text, len, "fuzz.json", &s) != KVFP8_OK) {
        CHECK(s.count == 0 && s.items == NULL);
        CHECK(!strncmp(kvfp8_last_error(), "fuzz.json", 9));
        return 0;
    }
    CHECK(s.count >= 1);
    for (size_t i = 0; i < s.count; i++) {
        const kvfp8_platform *p = &s.items[i];
        CHECK(p->id[0] && memchr(p->id, 0, sizeof p->id));
        CHECK(kvfp8_platform_find(&s, p->id) == p);
        for (int k = 0; k < KVFP8_PATH_COUNT; k++) {
            for (int e = 0; e < p->paths[k].n_native; e++)
                CHECK(kvfp8_encoding_known(p->paths[k].native[e]));
            for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
                const char *enc;
                CHECK(kvfp8_platform_storage_encoding(p, dtypes[d], KVFP8_DTYPE_BF16, &enc) == KVFP8_OK);
                kvfp8_capability c;
                kvfp8_platform_check(p, (kvfp8_kernel_path)k, dtypes[d], enc, &c);
                CHECK(c.ok || c.message[0]);
                CHECK(memchr(c.message, 0, sizeof c.message) != NULL);
            }
        }
        for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++)
            for (int prefix = 0; prefix <= 1; prefix++) {
                kvfp8_capability c;
                int path = -2;
                kvfp8_platform_check_config(p, dtypes[d], prefix, 0, KVFP8_DTYPE_BF16, &c, &path);
                CHECK(c.ok || (path >= -1 && path < KVFP8_PATH_COUNT));
            }
    }
    kvfp8_platforms_free(&s);
    return 0;
}
