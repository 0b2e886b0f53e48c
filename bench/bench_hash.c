/* Block hashing throughput on one core: tokens hashed per second by the chain
 * (kvfp8_hash_blocks, the path a scheduler calls) for each algorithm at block
 * sizes 16 and 32.
 *
 * Honesty rules: token ids are uniform over a real vocabulary (152064, Qwen2), so
 * the integer encodings vary as in real prompts (mostly 3- and 5-byte ints); one
 * chain is 4096 blocks, hashed from NONE_HASH with no extra keys (vLLM's common
 * case); every algorithm's chain is first checked block by block against the
 * general serializer path (kvfp8_hash_block) so that a wrong fast path cannot be
 * timed; each figure is given for the fastest pass and for the median pass, in
 * thread CPU time.  On a shared machine the fastest pass is the one least
 * disturbed by other processes (cache, frequency, a virtual CPU's stolen time),
 * the median shows how much they cost.
 *
 * Usage: bench_hash [--tsv]   (--tsv: "algo<TAB>block_size<TAB>best<TAB>median" lines
 * in tokens per second, which bench/run_hash.sh joins with bench/hash_python.py's)
 *        bench_hash --sha256-backend   (which OpenSSL entry point this build uses)
 *        bench_hash --sha256-floor     (the SHA-256 compressions alone for the `sha256`
 * blocks at block size 16: OpenSSL's SHA256_Transform, one 64-byte compression per
 * call, times the mean number of compressions of those blocks' pickles; no hashing of
 * a chain can be faster than this on this machine). */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Transform: the compression alone */
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvfp8/hash.h"

#define NBLOCKS 4096u
#define VOCAB 152064u
#define PASSES 31

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* splitmix64: bench/hash_python.py draws the same tokens with the same function. */
static uint64_t sm_state = 20250917;
static uint64_t splitmix64(void) {
    uint64_t z = (sm_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void verify(kvfp8_hash_algo algo, size_t bs, const int64_t *tok, const kvfp8_block_hash *none,
                   const kvfp8_block_hash *chain) {
    kvfp8_block_hash parent = *none, h;
    for (size_t b = 0; b < NBLOCKS; b++) {
        if (kvfp8_hash_block(algo, &parent, tok + b * bs, bs, NULL, &h) != KVFP8_OK ||
            h.len != chain[b].len || memcmp(h.bytes, chain[b].bytes, h.len)) {
            fprintf(stderr, "bench_hash: %s block %zu differs from the general path\n",
                    kvfp8_hash_algo_name(algo), b);
            exit(1);
        }
        parent = h;
    }
}

static void draw_tokens(int64_t *tok, size_t n) {
    for (size_t i = 0; i < n; i++)
        tok[i] = (int64_t)(splitmix64() % VOCAB);
}

/* The compressions alone: mean SHA-256 compressions per block of the bench's
 * `sha256` chain at block size 16 (message length + 9 bytes of padding, in 64-byte
 * blocks) times the fastest time of one compression. */
static int sha256_floor(void) {
    const size_t bs = 16;
    int64_t *tok = malloc(sizeof *tok * NBLOCKS * bs);
    if (!tok)
        return 1;
    draw_tokens(tok, NBLOCKS * bs);
    kvfp8_block_hash parent;
    kvfp8_hash_none_from_seed(KVFP8_HASH_SHA256, "0", 1, &parent);
    kvfp8_buf buf = {0};
    double compressions = 0;
    for (size_t b = 0; b < NBLOCKS; b++) {
        kvfp8_obj items[3] = {kvfp8_obj_bytes(parent.bytes, parent.len), kvfp8_obj_ints(tok + b * bs, bs),
                              kvfp8_obj_none()};
        kvfp8_obj tuple = kvfp8_obj_tuple(items, 3);
        buf.len = 0;
        if (kvfp8_pickle_dumps(&tuple, &buf) != KVFP8_OK ||
            kvfp8_hash_digest(KVFP8_HASH_SHA256, buf.data, buf.len, &parent) != KVFP8_OK) {
            fprintf(stderr, "bench_hash: %s\n", kvfp8_last_error());
            return 1;
        }
        compressions += (double)((buf.len + 9 + 63) / 64);
    }
    compressions /= NBLOCKS;
    kvfp8_buf_free(&buf);
    free(tok);
    unsigned char block[64] = {1};
    SHA256_CTX c;
    SHA256_Init(&c);
    double t[PASSES];
    const int reps = 200000;
    for (int p = 0; p < PASSES; p++) {
        double t0 = now_s();
        for (int r = 0; r < reps; r++) {
            block[0] = (unsigned char)c.h[0]; /* a chain, as in hashing: no overlap between calls */
            SHA256_Transform(&c, block);
        }
        t[p] = (now_s() - t0) / reps;
    }
    qsort(t, PASSES, sizeof t[0], cmp_double);
    printf("SHA-256 compression (OpenSSL SHA256_Transform, chained): %.1f ns (fastest pass), %.1f ns (median)\n"
           "sha256 blocks at block size 16: %.3f compressions each on average\n"
           "floor: %.1f ns per block = %.1f M tokens/s at most\n",
           t[0] * 1e9, t[PASSES / 2] * 1e9, compressions, compressions * t[0] * 1e9,
           (double)bs / (compressions * t[0]) / 1e6);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--sha256-backend")) {
        puts(kvfp8_hash_sha256_backend());
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "--sha256-floor"))
        return sha256_floor();
    int tsv = argc > 1 && !strcmp(argv[1], "--tsv");
    if (argc > 2 || (argc == 2 && !tsv)) {
        fprintf(stderr, "usage: bench_hash [--tsv | --sha256-backend | --sha256-floor]\n");
        return 2;
    }
    static const size_t sizes[2] = {16, 32};
    int64_t *tok = malloc(NBLOCKS * 32 * sizeof *tok);
    kvfp8_block_hash *out = malloc(NBLOCKS * sizeof *out);
    if (!tok || !out)
        return 1;
    draw_tokens(tok, NBLOCKS * 32); /* the same first tokens as --sha256-floor's */
    if (!tsv) {
        char model[128] = "unknown";
        FILE *f = fopen("/proc/cpuinfo", "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10)) {
                char *c = strchr(line, ':');
                if (c) {
                    snprintf(model, sizeof model, "%s", c + 2);
                    model[strcspn(model, "\n")] = 0;
                }
                break;
            }
        if (f)
            fclose(f);
        printf("Block hashing, one core (%s), %u-block chains, tokens uniform in [0, %u), "
               "%d passes, thread CPU time; SHA-256 via %s\n\n",
               model, NBLOCKS, VOCAB, PASSES, kvfp8_hash_sha256_backend());
        printf("| algorithm | block size | M tokens/s (best) | M tokens/s (median) | ns/block (best) |\n"
               "|---|---|---|---|---|\n");
    }
    for (int a = 0; a < KVFP8_HASH_ALGO_COUNT; a++) {
        kvfp8_hash_algo algo = (kvfp8_hash_algo)a;
        kvfp8_block_hash none;
        kvfp8_hash_none_from_seed(algo, "0", 1, &none);
        for (int s = 0; s < 2; s++) {
            size_t bs = sizes[s], n = 0;
            if (kvfp8_hash_blocks(algo, bs, &none, NULL, tok, NBLOCKS * bs, out, NBLOCKS, &n) != KVFP8_OK ||
                n != NBLOCKS) {
                fprintf(stderr, "bench_hash: %s failed: %s\n", kvfp8_hash_algo_name(algo),
                        kvfp8_last_error());
                return 1;
            }
            verify(algo, bs, tok, &none, out);
            double t[PASSES];
            for (int p = 0; p < PASSES; p++) {
                double t0 = now_s();
                kvfp8_hash_blocks(algo, bs, &none, NULL, tok, NBLOCKS * bs, out, NBLOCKS, &n);
                t[p] = now_s() - t0;
            }
            qsort(t, PASSES, sizeof t[0], cmp_double);
            double best = (double)(NBLOCKS * bs) / t[0], median = (double)(NBLOCKS * bs) / t[PASSES / 2];
            if (tsv)
                printf("%s\t%zu\t%.0f\t%.0f\n", kvfp8_hash_algo_name(algo), bs, best, median);
            else
                printf("| %s | %zu | %.1f | %.1f | %.1f |\n", kvfp8_hash_algo_name(algo), bs,
                       best / 1e6, median / 1e6, t[0] / NBLOCKS * 1e9);
        }
    }
    free(tok);
    free(out);
    return 0;
}
