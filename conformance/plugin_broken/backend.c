/* A deliberately broken copy of the example plugin, for the runner's own tests
 * (tests/py_conform_runner.py): it shows that each way a port can go wrong is
 * reported, and that none of them stops the run.
 *
 *   FAIL     e5m2 encode writes +-Inf (0x7C/0xFC) where the rules table says NaN
 *            -> fp8_encode.e5m2_f32/_f16/_bf16, with TestFloat-style failure lines
 *   CRASH    the cache write into blocks of 32 slots writes through a null pointer
 *            -> the cache_write tests that use block size 32 (SIGSEGV)
 *   TIMEOUT  e5m2 decode never returns -> fp8_decode.e5m2 is killed at --timeout
 *
 * It is the example's source with three operations wrapped, so that everything
 * else stays exactly as conformant as the example. */

/* the example's own entry point becomes an ordinary function here */
#define kvfp8_backend_entry example_backend_entry
#include "../plugin_example/backend.c"
#undef kvfp8_backend_entry

#include <signal.h>

static kvfp8_status broken_encode(void *state, const kvfp8_fp8_rules *r, kvfp8_source src, const void *in,
                                  uint8_t *out, size_t n, float scale) {
    const kvfp8_status st = example_encode(state, r, src, in, out, n, scale);
    if (st == KVFP8_OK && r->format == KVFP8_E5M2)
        for (size_t i = 0; i < n; i++)
            if ((out[i] & 0x7C) == 0x7C && (out[i] & 0x03))
                out[i] = (uint8_t)((out[i] & 0x80) | 0x7C); /* the bug: NaN becomes an infinity */
    return st;
}

/* Opaque to the optimizer, so the store below really happens and really faults. */
static int *volatile nowhere;

static kvfp8_status broken_cache_write(void *state, kvfp8_kv_cache *c, kvfp8_source src, const void *key,
                                       const void *value, const int64_t *slots, size_t num_tokens) {
    if (c->block_size == 32)
        *nowhere = 1; /* the bug: a stray pointer */
    return example_cache_write(state, c, src, key, value, slots, num_tokens);
}

static volatile sig_atomic_t spinning = 1;

static kvfp8_status broken_decode(void *state, kvfp8_format f, const uint8_t *in, float *out, size_t n, float scale) {
    while (f == KVFP8_E5M2 && spinning) {
        /* the bug: a loop that never ends */
    }
    return example_decode(state, f, in, out, n, scale);
}

static kvfp8_backend_ops broken_ops;

const kvfp8_backend_ops *kvfp8_backend_entry(uint32_t host_abi_version);
KVFP8_BACKEND_EXPORT const kvfp8_backend_ops *kvfp8_backend_entry(uint32_t host_abi_version) {
    const kvfp8_backend_ops *base = example_backend_entry(host_abi_version);
    if (!base)
        return NULL;
    broken_ops = *base;
    broken_ops.name = "broken";
    broken_ops.fp8_encode = broken_encode;
    broken_ops.cache_write = broken_cache_write;
    broken_ops.fp8_decode = broken_decode;
    return &broken_ops;
}
