/* config.json parser and the scale rules that follow it: arbitrary bytes as a
 * checkpoint's config.json, optionally followed by a NUL byte and a safetensors file.
 *
 * The parser must never crash or leak; on failure it must leave its output zeroed
 * and name the file; on success the model fields must be consistent (bounds, KV
 * heads dividing attention heads, a scheme's strategy only with a scheme).  The
 * scales loader then runs under every rule set and KV-cache dtype: it either fails
 * cleanly or returns finite positive scales of the model's shape, 1.0 with source
 * default-1.0 wherever nothing was loaded. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/safetensors.h"
#include "kvfp8/scales.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz_config_json: invariant failed: %s (line %d)\n", #cond, \
                    __LINE__);                                                           \
            abort();                                                                     \
        }                                                                                \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    const size_t config_len = nul ? (size_t)(nul - data) : size;
    kvfp8_model_config cfg, zero;
    memset(&zero, 0, sizeof zero);
    if (kvfp8_model_config_parse((const char *)data, config_len, "fuzz/config.json", &cfg) != KVFP8_OK) {
        CHECK(!memcmp(&cfg, &zero, sizeof cfg));
        CHECK(strstr(kvfp8_last_error(), "fuzz/config.json") != NULL);
        return 0;
    }
    CHECK(cfg.num_layers >= 1 && cfg.num_layers <= KVFP8_SCALES_MAX_LAYERS);
    CHECK(cfg.num_attention_heads >= 1 && cfg.num_kv_heads >= 1 && cfg.num_attention_heads % cfg.num_kv_heads == 0);
    CHECK(cfg.head_dim >= 1);
    CHECK((uint64_t)cfg.num_layers * cfg.num_kv_heads <= KVFP8_SCALES_MAX_VALUES);
    CHECK(cfg.strategy == KVFP8_SCALE_TENSOR || (cfg.has_kv_cache_scheme && cfg.strategy == KVFP8_SCALE_ATTN_HEAD));
    CHECK(memchr(cfg.quant_method, 0, sizeof cfg.quant_method) != NULL);
    /* Keep each run cheap: the loader's cost is linear in the model's scales. */
    if ((uint64_t)cfg.num_layers * cfg.num_kv_heads > 4096)
        return 0;

    kvfp8_st_file file;
    size_t nfiles = 0;
    if (nul && kvfp8_st_parse(nul + 1, size - config_len - 1, "fuzz/model.safetensors", kvfp8_scales_is_scale_name,
                              NULL, &file) == KVFP8_OK)
        nfiles = 1;
    for (int rules = 0; rules < 3; rules++)
        for (int kvd = 0; kvd < 4; kvd++)
            for (int fnuz = 0; fnuz < 2; fnuz++) {
                const kvfp8_scale_options o = {(kvfp8_scale_rules)rules, fnuz, (kvfp8_kv_cache_dtype)kvd, fnuz};
                kvfp8_scales s;
                if (kvfp8_scales_build(&cfg, "fuzz/config.json", &file, nfiles, "fuzz", &o, &s) != KVFP8_OK) {
                    CHECK(s.k == NULL && s.num_layers == 0 && s.warnings == NULL && s.warning_count == 0);
                    continue;
                }
                CHECK(s.num_layers == cfg.num_layers && s.num_kv_heads == cfg.num_kv_heads);
                CHECK(s.rules != KVFP8_SCALE_RULES_AUTO);
                CHECK(s.per_layer == (s.strategy == KVFP8_SCALE_ATTN_HEAD ? cfg.num_kv_heads : 1u));
                for (uint32_t l = 0; l < s.num_layers; l++)
                    for (uint32_t h = 0; h < s.per_layer; h++) {
                        const float k = s.k[(size_t)l * s.per_layer + h], v = s.v[(size_t)l * s.per_layer + h];
                        CHECK(isfinite(k) && k > 0 && isfinite(v) && v > 0);
                        if (s.k_source[l] == KVFP8_SCALE_SRC_DEFAULT)
                            CHECK(k == 1.0f);
                        if (s.v_source[l] == KVFP8_SCALE_SRC_DEFAULT)
                            CHECK(v == 1.0f);
                        if (!nfiles)
                            CHECK(k == 1.0f && v == 1.0f);
                    }
                for (size_t w = 0; w < s.warning_count; w++)
                    CHECK(s.warnings[w] != NULL);
                kvfp8_scales_free(&s);
            }
    if (nfiles)
        kvfp8_st_free(&file);
    return 0;
}
