/* EXACT, optional operation: block hashing.  vLLM's chain of full-block hashes
 * H((parent, tuple(tokens of the block), None)) from NONE_HASH = H("0"), for every
 * algorithm the backend claims, against kvfp8_hash_blocks; token ids that exercise
 * every integer encoding of pickle and CBOR; block sizes 1, 16 and 32; sequences
 * with and without a trailing partial block (which must not be hashed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conform_suite.h"

static void hex(const kvfp8_block_hash *h, char *out) {
    if (h->len > KVFP8_HASH_MAX) {
        snprintf(out, 16, "(len %u)", h->len);
        return;
    }
    kvfp8_hash_hex(h, out);
}

static void hash_algo(kvfp8_hash_algo algo) {
    kvfp8_backend *b = kvfp8_conform_backend();
    kvfp8_backend_query q;
    memset(&q, 0, sizeof q);
    q.op = KVFP8_OP_BLOCK_HASH, q.hash_algo = algo;
    const char *name = kvfp8_hash_algo_name(algo);
    if (!kvfp8_conform_claims(&q) || !b->ops->block_hash)
        kvfp8_conform_not_supported("the backend declines block hashing with %s (an optional operation)", name);
    kvfp8_block_hash none;
    assert_int_equal(kvfp8_hash_none_from_seed(algo, "0", 1, &none), KVFP8_OK);
    static const int64_t edges[] = {0, 1, 23, 24, 255, 256, 65535, 65536, 2147483647, 2147483648LL, 4294967296LL,
                                    INT64_MAX, -1, -256, INT64_MIN};
    static const size_t lengths[] = {0, 1, 15, 16, 17, 64, 100, 1003};
    static const size_t block_sizes[] = {1, 16, 32};
    uint64_t rng = 0x4A5Bu + (uint64_t)algo;
    size_t hashes = 0;
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
        for (size_t bi = 0; bi < sizeof block_sizes / sizeof block_sizes[0]; bi++) {
            const size_t n = lengths[li], bs = block_sizes[bi];
            if (bs == 1 && n > 100)
                continue; /* a thousand one-token blocks add nothing the others lack */
            int64_t *tokens = malloc(sizeof(int64_t) * (n + 1));
            assert_non_null(tokens);
            for (size_t i = 0; i < n; i++)
                tokens[i] = kvfp8_conform_rand(&rng) % 4 == 0 ? edges[kvfp8_conform_rand(&rng) % 15]
                                                              : (int64_t)(kvfp8_conform_rand(&rng) % 200000);
            const size_t cap = n / bs + 1;
            kvfp8_block_hash *want = calloc(cap, sizeof *want), *got = calloc(cap, sizeof *got);
            assert_true(want && got);
            size_t n_want = 0, n_got = 0;
            assert_int_equal(kvfp8_hash_blocks(algo, bs, &none, NULL, tokens, n, want, cap, &n_want), KVFP8_OK);
            char what[120];
            snprintf(what, sizeof what, "block_hash %s block_size %zu, %zu tokens", name, bs, n);
            kvfp8_conform_expect_ok(b->ops->block_hash(b->state, algo, &none, bs, tokens, n, got, cap, &n_got), what);
            if (n_got != n_want)
                kvfp8_conform_failure("%s => %zu hashes, expected %zu (full blocks only)", what, n_got, n_want);
            for (size_t k = 0; k < n_want && k < n_got; k++) {
                if (got[k].len == want[k].len && !memcmp(got[k].bytes, want[k].bytes, want[k].len))
                    continue;
                char g[80], w[80], toks[160] = "";
                hex(&got[k], g), hex(&want[k], w);
                for (size_t i = k * bs; i < (k + 1) * bs && i < k * bs + 4; i++)
                    snprintf(toks + strlen(toks), sizeof toks - strlen(toks), "%s%lld", i > k * bs ? " " : "",
                             (long long)tokens[i]);
                kvfp8_conform_failure("%s: block %zu (tokens %s%s) => %s, expected %s", what, k, toks,
                                      bs > 4 ? " ..." : "", g, w);
                break; /* later blocks chain on this one */
            }
            hashes += n_want;
            free(tokens), free(want), free(got);
        }
    kvfp8_conform_detail("%zu block hashes, NONE_HASH from seed \"0\"", hashes);
    kvfp8_conform_check_failures();
}

static void test_sha256(void **state) {
    (void)state;
    hash_algo(KVFP8_HASH_SHA256);
}
static void test_sha256_cbor(void **state) {
    (void)state;
    hash_algo(KVFP8_HASH_SHA256_CBOR);
}
static void test_xxhash(void **state) {
    (void)state;
    hash_algo(KVFP8_HASH_XXHASH);
}
static void test_xxhash_cbor(void **state) {
    (void)state;
    hash_algo(KVFP8_HASH_XXHASH_CBOR);
}

const kvfp8_conform_test kvfp8_conform_suite_hash[] = {
    {"block_hash", "sha256", "EXACT", test_sha256, "pickle + SHA-256 chain vs kvfp8_hash_blocks"},
    {"block_hash", "sha256_cbor", "EXACT", test_sha256_cbor, "canonical CBOR + SHA-256 chain"},
    {"block_hash", "xxhash", "EXACT", test_xxhash, "pickle + XXH3-128 chain"},
    {"block_hash", "xxhash_cbor", "EXACT", test_xxhash_cbor, "canonical CBOR + XXH3-128 chain"},
};
const size_t kvfp8_conform_suite_hash_count = sizeof kvfp8_conform_suite_hash / sizeof kvfp8_conform_suite_hash[0];
