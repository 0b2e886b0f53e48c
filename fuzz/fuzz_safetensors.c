/* safetensors reader: arbitrary bytes as a file in memory.
 *
 * The reader must never crash or leak, and must never report success for a file
 * that breaks the format's rules.  On failure the output must be empty and the
 * message must name the buffer's label.  On success the target checks, from the
 * raw bytes and independently of the reader's own validation, that the tensors
 * tile the data area exactly and that each copy matches the bytes in the buffer;
 * then that the writer reproduces an equivalent file, and that the scales loader,
 * run over the file under every rule set, either fails cleanly or returns only
 * finite positive scales. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfp8/safetensors.h"
#include "kvfp8/scales.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_safetensors: invariant failed: %s (line %d)\n", #cond, \
                    __LINE__);                                                          \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static void check_empty(const kvfp8_st_file *f) {
    CHECK(f->label == NULL && f->tensors == NULL && f->count == 0 && f->metadata_count == 0 &&
          f->metadata_keys == NULL && f->metadata_values == NULL);
}

static void check_round_trip(const kvfp8_st_file *f) {
    kvfp8_st_entry *e = calloc(f->count ? f->count : 1, sizeof *e);
    CHECK(e != NULL);
    for (size_t i = 0; i < f->count; i++) {
        e[i].name = f->tensors[i].name;
        e[i].dtype = f->tensors[i].dtype;
        e[i].ndim = f->tensors[i].ndim;
        e[i].shape = f->tensors[i].shape;
        e[i].data = f->tensors[i].data;
    }
    uint8_t *bytes;
    size_t len;
    const kvfp8_status st = kvfp8_st_serialize(e, f->count, (const char *const *)f->metadata_keys,
                                               (const char *const *)f->metadata_values, f->metadata_count, &bytes,
                                               &len);
    CHECK(st == KVFP8_OK);
    kvfp8_st_file g;
    CHECK(kvfp8_st_parse(bytes, len, "round-trip", NULL, NULL, &g) == KVFP8_OK);
    CHECK(g.count == f->count && g.metadata_count == f->metadata_count && g.data_len == f->data_len);
    for (size_t i = 0; i < f->count; i++) {
        const kvfp8_st_tensor *a = &f->tensors[i], *b = kvfp8_st_find(&g, a->name);
        CHECK(b != NULL && b->dtype == a->dtype && b->ndim == a->ndim && b->numel == a->numel &&
              b->end - b->begin == a->end - a->begin);
        for (size_t d = 0; d < a->ndim; d++)
            CHECK(a->shape[d] == b->shape[d]);
        if (a->end > a->begin)
            CHECK(!memcmp(a->data, b->data, (size_t)(a->end - a->begin)));
    }
    for (size_t i = 0; i < f->metadata_count; i++) {
        CHECK(!strcmp(f->metadata_keys[i], g.metadata_keys[i]));
        CHECK(!strcmp(f->metadata_values[i], g.metadata_values[i]));
    }
    kvfp8_st_free(&g);
    free(bytes);
    free(e);
}

static void check_scales(const kvfp8_st_file *f) {
    /* A model of 4 layers, 8 heads, 2 KV heads; both strategies. */
    static const char *const configs[2] = {
        "{\"num_hidden_layers\": 4, \"num_attention_heads\": 8, \"num_key_value_heads\": 2, \"head_dim\": 16,"
        " \"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"kv_cache_scheme\":"
        " {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"tensor\", \"symmetric\": true}}}",
        "{\"num_hidden_layers\": 4, \"num_attention_heads\": 8, \"num_key_value_heads\": 2, \"head_dim\": 16,"
        " \"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"kv_cache_scheme\":"
        " {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"attn_head\", \"symmetric\": true}}}",
    };
    for (int c = 0; c < 2; c++) {
        kvfp8_model_config cfg;
        CHECK(kvfp8_model_config_parse(configs[c], strlen(configs[c]), "config.json", &cfg) == KVFP8_OK);
        for (int rules = KVFP8_SCALE_RULES_LLM_COMPRESSOR; rules <= KVFP8_SCALE_RULES_FP8_CHECKPOINT; rules++)
            for (int fnuz = 0; fnuz < 2; fnuz++) {
                const kvfp8_scale_options o = {(kvfp8_scale_rules)rules, fnuz, KVFP8_KV_CACHE_FP8, fnuz};
                kvfp8_scales s;
                if (kvfp8_scales_build(&cfg, "config.json", f, 1, "ckpt", &o, &s) != KVFP8_OK) {
                    CHECK(s.k == NULL && s.num_layers == 0 && s.warnings == NULL);
                    continue;
                }
                CHECK(s.num_layers == 4 && s.per_layer == (c ? 2u : 1u));
                for (size_t i = 0; i < (size_t)s.num_layers * s.per_layer; i++)
                    CHECK(isfinite(s.k[i]) && s.k[i] > 0 && isfinite(s.v[i]) && s.v[i] > 0);
                char fp[65];
                CHECK(kvfp8_scales_fingerprint(&s, fp) == KVFP8_OK && strlen(fp) == 64);
                kvfp8_scales_free(&s);
            }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kvfp8_st_file f;
    if (kvfp8_st_parse(data, size, "fuzz-input", NULL, NULL, &f) != KVFP8_OK) {
        check_empty(&f);
        CHECK(strstr(kvfp8_last_error(), "fuzz-input") != NULL);
        return 0;
    }
    /* The bytes, read here without the reader: length field, header, data. */
    CHECK(size >= 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | data[i];
    CHECK(n == f.header_len && n >= 2 && 8 + n + f.data_len == size);
    CHECK(data[8] == '{');
    const uint8_t *area = data + 8 + n;
    uint64_t pos = 0;
    for (size_t i = 0; i < f.count; i++) {
        const kvfp8_st_tensor *t = &f.tensors[i];
        CHECK(t->name != NULL && strcmp(t->name, "__metadata__") != 0);
        CHECK(t->begin == pos && t->end >= t->begin && t->end <= f.data_len);
        uint64_t numel = 1;
        for (size_t d = 0; d < t->ndim; d++)
            numel *= t->shape[d];
        CHECK(numel == t->numel);
        CHECK(t->numel * kvfp8_st_dtype_bits(t->dtype) == 8 * (t->end - t->begin));
        if (t->end > t->begin)
            CHECK(t->data != NULL && !memcmp(t->data, area + t->begin, (size_t)(t->end - t->begin)));
        else
            CHECK(t->data == NULL);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(f.tensors[j].name, t->name) != 0);
        if (kvfp8_st_dtype_is_scale_float(t->dtype) && t->numel <= 4096) {
            float *v = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *v);
            CHECK(v != NULL);
            CHECK(kvfp8_st_tensor_to_f32(&f, t, v) == KVFP8_OK);
            free(v);
        }
        pos = t->end;
    }
    CHECK(pos == f.data_len);
    check_round_trip(&f);
    check_scales(&f);
    kvfp8_st_free(&f);
    return 0;
}
