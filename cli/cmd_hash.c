/* kvfp8 hash — vLLM prefix-cache block hashes of token ids (ref/hash.c).
 *
 * Every input (options, tokens, batch lines) is parsed and validated before any
 * hash is computed, and the answer is assembled in memory, so bad input leaves
 * nothing on standard output.  The batch mode exists so that tests and tools can
 * check thousands of cases per process instead of paying a process per case. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kvfp8/hash.h"
#include "commands.h"
#include "outbuf.h"

static const char *const cmd = "hash";

static const char *const hash_help =
    "usage: kvfp8 hash --algo A --block-size N [--seed S] [--lora NAME]\n"
    "                  [--cache-salt SALT] [options] [TOKEN...]\n"
    "       kvfp8 hash --algo A [--seed S] --none-hash\n"
    "       kvfp8 hash --batch [defaults as options] < cases.jsonl\n"
    "\n"
    "Computes vLLM's prefix-cache block hashes (vllm/v1/core/kv_cache_utils.py),\n"
    "byte for byte: block i hashes the tuple\n"
    "    (parent, tuple(tokens[i*N:(i+1)*N]), extra_keys)\n"
    "serialized with pickle protocol 5 or canonical CBOR, where parent is the hash\n"
    "of block i-1, or NONE_HASH for block 0.  Only full blocks are hashed: a trailing\n"
    "partial block prints nothing.  Output: one lowercase hex hash per full block,\n"
    "one per line.  TOKENs are decimal integers in [0, 2^63-1]; with no TOKEN\n"
    "arguments they are read from standard input, separated by white space.\n"
    "\n"
    "Options:\n"
    "  --algo A            sha256 (pickle + SHA-256, vLLM's default), sha256_cbor\n"
    "                      (CBOR + SHA-256), xxhash (pickle + XXH3-128), xxhash_cbor\n"
    "                      (CBOR + XXH3-128).  SHA-256 gives 32 bytes, XXH3 16.\n"
    "  --block-size N      tokens per block, 1 to 4294967295 (vLLM: 16 by default).\n"
    "  --seed S            NONE_HASH = H(S) with S hashed as a Python str, as vLLM\n"
    "                      does with PYTHONHASHSEED (\"0\" and \"00\" differ).  Without\n"
    "                      --seed the PYTHONHASHSEED environment variable is used;\n"
    "                      with neither, NONE_HASH is 32 random bytes (os.urandom(32))\n"
    "                      and a warning goes to standard error: hashes are then\n"
    "                      different in every run, as in vLLM.\n"
    "  --none-hash-hex H   use H (2 to 64 hex digits) as NONE_HASH, e.g. a random\n"
    "                      NONE_HASH recorded from a vLLM process (overrides --seed).\n"
    "  --none-hash         print NONE_HASH instead of block hashes.\n"
    "  --lora NAME         the request's LoRA name: first extra key of every block.\n"
    "  --cache-salt SALT   the request's cache salt: an extra key of block 0 only\n"
    "                      (an empty salt is no salt, as in vLLM).\n"
    "  --mm ID:OFFSET:LEN  a multimodal item with identifier ID (its mm hash) over\n"
    "                      prompt tokens [OFFSET, OFFSET+LEN); repeat for several,\n"
    "                      in offset order.  ID may itself contain ':'.\n"
    "  --mm-keys M         how an item enters the keys of each block it overlaps:\n"
    "                      id-offset (default, current vLLM: (ID, OFFSET - block\n"
    "                      start), possibly negative) or id (older vLLM: ID alone).\n"
    "  --prompt-embeds F   prompt embeddings as a raw file (row-major, as torch keeps\n"
    "  --embeds-row-bytes B  them, B bytes per token): each block gets the SHA-256\n"
    "                      of its rows as an extra key; rows past the file's end\n"
    "                      slice to nothing (the digest of b'').\n"
    "  --layout-key D,F,P  kvfp8's layout key (not in vLLM, off by default): appends\n"
    "                      the KV dtype D, FP8 format F and scales fingerprint P (the\n"
    "                      rest of the argument, commas included) to every block's\n"
    "                      extra keys, so blocks never hit across layouts.\n"
    "  --group-id G        print pool keys instead: hash + G as 4 big-endian bytes\n"
    "                      (vLLM's make_block_hash_with_group_id).\n"
    "  --kv-events         print the block ids KV events carry instead:\n"
    "                      int.from_bytes(hash, 'big') & (2^64-1), in decimal.\n"
    "  --batch             read JSON lines from standard input, one case per line:\n"
    "                      {\"tokens\": [...], \"algo\": A, \"block_size\": N,\n"
    "                       \"seed\": S, \"none_hash\": HEX, \"lora\": NAME,\n"
    "                       \"cache_salt\": SALT, \"mm\": [[ID, OFFSET, LEN], ...],\n"
    "                       \"mm_keys\": M, \"prompt_embeds\": HEX,\n"
    "                       \"embeds_row_bytes\": B, \"layout_key\": [D, F, P],\n"
    "                       \"group_id\": G}\n"
    "                      Absent fields take the values of the options given.  One\n"
    "                      JSON line out per case: {\"none_hash\": HEX, \"hashes\":\n"
    "                      [HEX...], \"kv_events\": [int...]} plus \"pool_keys\" with a\n"
    "                      group id.  Strings may hold any Unicode, NUL included.\n"
    "  --help              this text.\n"
    "\n"
    "Exit status: 0 ok; 2 bad input (the message names the argument, and nothing is\n"
    "written to standard output); 1 an internal failure.\n"
    "\n"
    "Examples:\n"
    "  kvfp8 hash --algo sha256 --block-size 16 --seed 0 $(seq 1 32)\n"
    "      bea72b7d33de03c1aa715efbb492d0e0d3801f00c1f985756896072ae8b31325\n"
    "      2744667f6645310ff670b0c5d7c64987ffa5940de5a549f17d92dcbb5b559e31\n"
    "  kvfp8 hash --algo sha256 --seed 0 --none-hash\n"
    "      1973e23848344dc43a988a9b478663803cfffe1243480253f9a3cf004b14aa7c\n"
    "  seq 1 40 | kvfp8 hash --algo xxhash_cbor --block-size 16 --seed 0\n"
    "      (two hashes: tokens 33..40 are a partial block)\n"
    "  kvfp8 hash --algo sha256 --block-size 16 --seed 0 --lora my-lora \\\n"
    "      --cache-salt salt-1 $(seq 1 16)\n"
    "      6ef474c974f93085d9c279451c91bcc7bfb2bd6d95f1c1af71f6d667800c9f6b\n"
    "  kvfp8 hash --algo sha256 --block-size 4 --seed 0 --mm img0:2:3 $(seq 1 8)\n"
    "  echo '{\"algo\":\"sha256\",\"block_size\":2,\"seed\":\"0\",\"tokens\":[1,2,3]}' |\n"
    "      kvfp8 hash --batch\n"
    "\n"
    "Byte rules, sources and tests: docs/hashing.md.\n";

/* ---- one case ------------------------------------------------------------------ */

typedef struct {
    int have_algo;
    kvfp8_hash_algo algo;
    int have_block_size;
    size_t block_size;
    const char *seed; /* NULL: none given */
    size_t seed_len;
    int have_none_hex;
    kvfp8_block_hash none_hex;
    const char *lora; /* NULL: no LoRA */
    size_t lora_len;
    const char *salt;
    size_t salt_len;
    kvfp8_mm_item *mm; /* owned */
    size_t n_mm;
    kvfp8_mm_keys mm_keys;
    uint8_t *embeds; /* owned */
    size_t embeds_len;
    int have_embeds;
    size_t row_bytes;
    int have_layout;
    kvfp8_layout_key layout;
    char *layout_store; /* owned: the three fields */
    int have_group;
    uint32_t group_id;
    int kv_events;
    int64_t *tokens; /* owned */
    size_t n_tokens;
    /* Computed */
    kvfp8_hash_extras extras;
    kvfp8_block_hash none_hash;
} hash_case;

static void case_free(hash_case *c) {
    free(c->mm);
    free(c->embeds);
    free(c->layout_store);
    free(c->tokens);
}

/* Strict decimal: digits only, value <= max. */
static int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out) {
    if (len == 0)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

/* A token: names what is wrong with it, or returns NULL. */
static const char *token_problem(const char *s, size_t len, int64_t *out) {
    uint64_t v;
    if (len && s[0] == '-' && len > 1 && s[1] >= '0' && s[1] <= '9') {
        size_t i = 1;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        return i == len ? "is negative" : "is not an integer";
    }
    if (parse_u64(s, len, (uint64_t)INT64_MAX, &v)) {
        *out = (int64_t)v;
        return NULL;
    }
    size_t i = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == len && len)
        return "is above 2^63-1 (9223372036854775807)";
    return "is not an integer";
}

static int push_token(hash_case *c, size_t *cap, int64_t v) {
    if (c->n_tokens == *cap) {
        size_t n = *cap ? *cap * 2 : 1024;
        int64_t *t = realloc(c->tokens, n * sizeof *t);
        if (!t)
            return 0;
        c->tokens = t;
        *cap = n;
    }
    c->tokens[c->n_tokens++] = v;
    return 1;
}

static int add_mm(hash_case *c, const char *id, size_t id_len, uint64_t off, uint64_t len) {
    kvfp8_mm_item *m = realloc(c->mm, (c->n_mm + 1) * sizeof *m);
    if (!m)
        return 0;
    c->mm = m;
    m[c->n_mm].identifier = id;
    m[c->n_mm].identifier_len = id_len;
    m[c->n_mm].offset = off;
    m[c->n_mm].length = len;
    c->n_mm++;
    return 1;
}

static int set_layout(hash_case *c, const char *d, size_t dl, const char *f, size_t fl,
                      const char *p, size_t pl) {
    char *s = malloc(dl + fl + pl + 3);
    if (!s)
        return 0;
    memcpy(s, d, dl), s[dl] = 0;
    memcpy(s + dl + 1, f, fl), s[dl + 1 + fl] = 0;
    memcpy(s + dl + fl + 2, p, pl), s[dl + fl + 2 + pl] = 0;
    free(c->layout_store);
    c->layout_store = s;
    c->layout.kv_dtype = s;
    c->layout.fp8_format = s + dl + 1;
    c->layout.scales_fingerprint = s + dl + fl + 2;
    c->have_layout = 1;
    return 1;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int parse_hex_bytes(const char *hex, size_t n, uint8_t **out, size_t *out_len) {
    if (n % 2)
        return 0;
    uint8_t *b = malloc(n / 2 + 1);
    if (!b)
        return 0;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
        if (hi < 0 || lo < 0) {
            free(b);
            return 0;
        }
        b[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    *out = b;
    *out_len = n / 2;
    return 1;
}

/* Fills in the derived fields (extras, NONE_HASH) and validates what the library
 * checks (UTF-8, item order).  `where` prefixes messages ("" or "line N: ").
 * `warned` keeps the random-NONE_HASH warning to one per run. */
static int case_prepare(hash_case *c, const char *where, int need_block_size, int *warned) {
    if (!c->have_algo)
        return kvfp8_cli_usage_error(cmd, "%s--algo is required (sha256, sha256_cbor, xxhash, xxhash_cbor)", where);
    if (need_block_size && !c->have_block_size)
        return kvfp8_cli_usage_error(cmd, "%s--block-size is required", where);
    if (c->have_embeds) {
        if (c->row_bytes == 0)
            return kvfp8_cli_usage_error(cmd, "%s--embeds-row-bytes must be given and > 0 with prompt embeds", where);
        if (c->embeds_len % c->row_bytes)
            return kvfp8_cli_usage_error(cmd, "%sprompt embeds: %zu bytes is not a whole number of %zu-byte rows", where, c->embeds_len, c->row_bytes);
    }
    memset(&c->extras, 0, sizeof c->extras);
    c->extras.lora_name = c->lora;
    c->extras.lora_name_len = c->lora_len;
    c->extras.cache_salt = c->salt;
    c->extras.cache_salt_len = c->salt_len;
    c->extras.mm = c->mm;
    c->extras.n_mm = c->n_mm;
    c->extras.mm_keys = c->mm_keys;
    if (c->have_embeds) {
        c->extras.prompt_embeds = c->embeds ? c->embeds : (const uint8_t *)"";
        c->extras.embeds_row_bytes = c->row_bytes;
        c->extras.embeds_rows = c->embeds_len / c->row_bytes;
    }
    c->extras.layout = c->have_layout ? &c->layout : NULL;

    kvfp8_status st;
    if (c->have_none_hex) {
        c->none_hash = c->none_hex;
    } else if (c->seed) {
        st = kvfp8_hash_none_from_seed(c->algo, c->seed, c->seed_len, &c->none_hash);
        if (st != KVFP8_OK)
            return kvfp8_cli_usage_error(cmd, "%s--seed: %s", where, kvfp8_last_error());
    } else {
        const char *env = getenv("PYTHONHASHSEED");
        if (env) {
            if (kvfp8_hash_check_pythonhashseed(env) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "%s%s", where, kvfp8_last_error());
            st = kvfp8_hash_none_from_seed(c->algo, env, strlen(env), &c->none_hash);
            if (st != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "%sPYTHONHASHSEED: %s", where, kvfp8_last_error());
        } else {
            st = kvfp8_hash_none_random(&c->none_hash);
            if (st != KVFP8_OK) {
                fprintf(stderr, "kvfp8 hash: %s\n", kvfp8_last_error());
                return KVFP8_EXIT_FAILED;
            }
            if (!*warned) {
                fprintf(stderr,
                        "kvfp8 hash: warning: PYTHONHASHSEED is not set and no --seed was given: "
                        "NONE_HASH is 32 random bytes, so these hashes are not reproducible "
                        "(vLLM warns likewise for the CBOR algorithms).\n");
                *warned = 1;
            }
        }
    }
    if (need_block_size) {
        kvfp8_hash_chain chain;
        st = kvfp8_hash_chain_init(&chain, c->algo, c->block_size, &c->none_hash, &c->extras);
        if (st != KVFP8_OK)
            return kvfp8_cli_usage_error(cmd, "%s%s", where, kvfp8_last_error());
    }
    return KVFP8_EXIT_OK;
}

static void print_hex(kvfp8_outbuf *out, const uint8_t *b, size_t n) {
    static const char digits[] = "0123456789abcdef";
    char tmp[2 * (KVFP8_POOL_KEY_MAX_BYTES + 1)];
    for (size_t i = 0; i < n; i++) {
        tmp[2 * i] = digits[b[i] >> 4];
        tmp[2 * i + 1] = digits[b[i] & 15];
    }
    kvfp8_outbuf_write(out, tmp, 2 * n);
}

static kvfp8_status case_hash(const hash_case *c, kvfp8_block_hash **hashes, size_t *n) {
    size_t cap = c->n_tokens / c->block_size;
    *hashes = malloc((cap ? cap : 1) * sizeof **hashes);
    if (!*hashes)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "out of memory");
    /* The case may have moved since case_prepare (batch cases live in a growing
     * array), so its pointer to its own layout key is taken afresh. */
    kvfp8_hash_extras x = c->extras;
    x.layout = c->have_layout ? &c->layout : NULL;
    return kvfp8_hash_blocks(c->algo, c->block_size, &c->none_hash, &x, c->tokens,
                             c->n_tokens, *hashes, cap, n);
}

/* ---- command-line form ------------------------------------------------------------ */

typedef struct {
    hash_case c;
    int none_hash_only;
    int batch;
    const char *embeds_file;
    size_t first_token, argc;
} hash_args;

static int option_value(int argc, char **argv, int *i, const char *name, const char **val) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n))
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        *val = NULL;
        return 1;
    }
    *val = argv[++*i];
    return 1;
}

static int read_file(const char *path, uint8_t **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        uint8_t *g = realloc(b, cap * 2);
        if (!g) {
            free(b);
            b = NULL;
            break;
        }
        b = g;
        cap *= 2;
    }
    int ok = b && !ferror(f);
    fclose(f);
    if (!ok) {
        free(b);
        return 0;
    }
    *out = b;
    *len = n;
    return 1;
}

/* Parses options into a; returns -1 to go on, else an exit status. */
static int parse_args(int argc, char **argv, hash_args *a) {
    hash_case *c = &a->c;
    int i;
    for (i = 1; i < argc; i++) {
        const char *s = argv[i], *v = NULL;
        if (!strcmp(s, "--")) {
            i++;
            break;
        }
        if (s[0] != '-' || (s[1] >= '0' && s[1] <= '9'))
            break; /* the first token (a negative one is reported as such) */
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            fputs(hash_help, stdout);
            return KVFP8_EXIT_OK;
        }
        if (!strcmp(s, "--none-hash")) {
            a->none_hash_only = 1;
            continue;
        }
        if (!strcmp(s, "--kv-events")) {
            c->kv_events = 1;
            continue;
        }
        if (!strcmp(s, "--batch")) {
            a->batch = 1;
            continue;
        }
        static const char *const valued[] = {"--algo", "--block-size", "--seed", "--lora",
                                             "--cache-salt", "--mm", "--mm-keys",
                                             "--prompt-embeds", "--embeds-row-bytes",
                                             "--layout-key", "--group-id", "--none-hash-hex"};
        size_t k;
        for (k = 0; k < sizeof valued / sizeof valued[0]; k++)
            if (option_value(argc, argv, &i, valued[k], &v))
                break;
        if (k == sizeof valued / sizeof valued[0])
            return kvfp8_cli_usage_error(cmd, "unknown option '%s' (kvfp8 hash --help)", s);
        const char *name = valued[k];
        if (!v)
            return kvfp8_cli_usage_error(cmd, "option %s needs a value", name);
        uint64_t u;
        if (!strcmp(name, "--algo")) {
            if (kvfp8_hash_algo_parse(v, &c->algo) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "--algo: unknown algorithm '%s' (sha256, sha256_cbor, xxhash, xxhash_cbor)", v);
            c->have_algo = 1;
        } else if (!strcmp(name, "--block-size")) {
            if (!parse_u64(v, strlen(v), 4294967295u, &u) || u == 0)
                return kvfp8_cli_usage_error(cmd, "--block-size: '%s' is not an integer in [1, 4294967295]", v);
            c->block_size = (size_t)u;
            c->have_block_size = 1;
        } else if (!strcmp(name, "--seed")) {
            c->seed = v;
            c->seed_len = strlen(v);
        } else if (!strcmp(name, "--none-hash-hex")) {
            if (kvfp8_hash_from_hex(v, &c->none_hex) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "--none-hash-hex: %s", kvfp8_last_error());
            c->have_none_hex = 1;
        } else if (!strcmp(name, "--lora")) {
            c->lora = v;
            c->lora_len = strlen(v);
        } else if (!strcmp(name, "--cache-salt")) {
            c->salt = v;
            c->salt_len = strlen(v);
        } else if (!strcmp(name, "--mm")) {
            /* ID:OFFSET:LEN, split at the last two colons so that ID may hold some. */
            size_t vl = strlen(v), p2 = vl, p1;
            while (p2 > 0 && v[p2 - 1] != ':')
                p2--; /* p2: just past the last colon */
            p1 = p2 ? p2 - 1 : 0;
            while (p1 > 0 && v[p1 - 1] != ':')
                p1--; /* p1: just past the colon before it */
            uint64_t off, len;
            if (p2 == 0 || p1 == 0 ||
                !parse_u64(v + p1, p2 - 1 - p1, (uint64_t)INT64_MAX, &off) ||
                !parse_u64(v + p2, vl - p2, (uint64_t)INT64_MAX, &len))
                return kvfp8_cli_usage_error(cmd, "--mm: '%s' is not ID:OFFSET:LENGTH with decimal OFFSET and LENGTH", v);
            if (!add_mm(c, v, p1 - 1, off, len))
                return kvfp8_cli_usage_error(cmd, "--mm: out of memory");
        } else if (!strcmp(name, "--mm-keys")) {
            if (!strcmp(v, "id-offset"))
                c->mm_keys = KVFP8_MM_KEYS_ID_OFFSET;
            else if (!strcmp(v, "id"))
                c->mm_keys = KVFP8_MM_KEYS_ID;
            else
                return kvfp8_cli_usage_error(cmd, "--mm-keys: '%s' is not id-offset or id", v);
        } else if (!strcmp(name, "--prompt-embeds")) {
            a->embeds_file = v;
        } else if (!strcmp(name, "--embeds-row-bytes")) {
            if (!parse_u64(v, strlen(v), SIZE_MAX / 2, &u) || u == 0)
                return kvfp8_cli_usage_error(cmd, "--embeds-row-bytes: '%s' is not a positive integer", v);
            c->row_bytes = (size_t)u;
        } else if (!strcmp(name, "--layout-key")) {
            const char *k1 = strchr(v, ','), *k2 = k1 ? strchr(k1 + 1, ',') : NULL;
            if (!k2)
                return kvfp8_cli_usage_error(cmd, "--layout-key: '%s' is not DTYPE,FORMAT,FINGERPRINT", v);
            if (!set_layout(c, v, (size_t)(k1 - v), k1 + 1, (size_t)(k2 - k1 - 1), k2 + 1,
                            strlen(k2 + 1)))
                return kvfp8_cli_usage_error(cmd, "--layout-key: out of memory");
        } else if (!strcmp(name, "--group-id")) {
            if (!parse_u64(v, strlen(v), 4294967295u, &u))
                return kvfp8_cli_usage_error(cmd, "--group-id: '%s' is not an integer in [0, 4294967295]", v);
            c->group_id = (uint32_t)u;
            c->have_group = 1;
        }
    }
    a->first_token = (size_t)i;
    a->argc = (size_t)argc;
    if (c->have_group && c->kv_events)
        return kvfp8_cli_usage_error(cmd, "--group-id and --kv-events choose different outputs: give one");
    if (a->embeds_file) {
        if (!read_file(a->embeds_file, &c->embeds, &c->embeds_len))
            return kvfp8_cli_usage_error(cmd, "--prompt-embeds: cannot read '%s': %s", a->embeds_file, strerror(errno));
        c->have_embeds = 1;
    } else if (c->row_bytes) {
        return kvfp8_cli_usage_error(cmd, "--embeds-row-bytes needs --prompt-embeds");
    }
    return -1;
}

static int read_stdin_tokens(hash_case *c) {
    size_t cap = 0;
    char word[64];
    size_t wl = 0, index = 0;
    int ch, too_long = 0;
    for (;;) {
        ch = getchar();
        int space = ch == EOF || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' ||
                    ch == '\v' || ch == '\f';
        if (!space) {
            if (wl < sizeof word - 1)
                word[wl++] = (char)ch;
            else
                too_long = 1;
            continue;
        }
        if (wl) {
            word[wl] = 0;
            int64_t v;
            const char *why = too_long ? "is not an integer in [0, 2^63-1]" : token_problem(word, wl, &v);
            if (why)
                return kvfp8_cli_usage_error(cmd, "token %zu on standard input ('%s%s') %s", index,
                                             word, too_long ? "..." : "", why);
            if (!push_token(c, &cap, v))
                return kvfp8_cli_usage_error(cmd, "out of memory reading tokens");
            index++;
            wl = 0;
            too_long = 0;
        }
        if (ch == EOF)
            break;
    }
    if (ferror(stdin))
        return kvfp8_cli_usage_error(cmd, "cannot read standard input");
    return -1;
}

static int run_single(hash_args *a, char **argv) {
    hash_case *c = &a->c;
    int warned = 0;
    if (a->none_hash_only) {
        if (a->first_token < a->argc)
            return kvfp8_cli_usage_error(cmd, "--none-hash takes no tokens (got '%s')", argv[a->first_token]);
        int rc = case_prepare(c, "", 0, &warned);
        if (rc)
            return rc;
        kvfp8_outbuf out;
        kvfp8_outbuf_init(&out);
        print_hex(&out, c->none_hash.bytes, c->none_hash.len);
        kvfp8_outbuf_write(&out, "\n", 1);
        return kvfp8_outbuf_flush(&out, stdout) ? KVFP8_EXIT_OK : KVFP8_EXIT_FAILED;
    }
    /* Options first, then every token, then NONE_HASH: all before any output. */
    if (!c->have_algo)
        return kvfp8_cli_usage_error(cmd, "--algo is required (sha256, sha256_cbor, xxhash, xxhash_cbor)");
    if (!c->have_block_size)
        return kvfp8_cli_usage_error(cmd, "--block-size is required");
    size_t cap = 0;
    if (a->first_token < a->argc) {
        for (size_t i = a->first_token; i < a->argc; i++) {
            int64_t v;
            const char *why = token_problem(argv[i], strlen(argv[i]), &v);
            if (why)
                return kvfp8_cli_usage_error(cmd, "token %zu ('%s') %s", i - a->first_token, argv[i], why);
            if (!push_token(c, &cap, v))
                return kvfp8_cli_usage_error(cmd, "out of memory reading tokens");
        }
    } else {
        int rc = read_stdin_tokens(c);
        if (rc >= 0)
            return rc;
    }
    int rc = case_prepare(c, "", 1, &warned);
    if (rc)
        return rc;
    kvfp8_block_hash *h = NULL;
    size_t n = 0;
    if (case_hash(c, &h, &n) != KVFP8_OK) {
        fprintf(stderr, "kvfp8 hash: %s\n", kvfp8_last_error());
        free(h);
        return KVFP8_EXIT_FAILED;
    }
    kvfp8_outbuf out;
    kvfp8_outbuf_init(&out);
    for (size_t i = 0; i < n; i++) {
        if (c->kv_events) {
            kvfp8_outbuf_printf(&out, "%llu\n", (unsigned long long)kvfp8_hash_kv_event_id(&h[i]));
        } else if (c->have_group) {
            uint8_t key[KVFP8_POOL_KEY_MAX_BYTES];
            size_t kl = kvfp8_hash_pool_key(&h[i], c->group_id, key);
            print_hex(&out, key, kl);
            kvfp8_outbuf_write(&out, "\n", 1);
        } else {
            print_hex(&out, h[i].bytes, h[i].len);
            kvfp8_outbuf_write(&out, "\n", 1);
        }
    }
    free(h);
    return kvfp8_outbuf_flush(&out, stdout) ? KVFP8_EXIT_OK : KVFP8_EXIT_FAILED;
}

/* ---- batch form -------------------------------------------------------------------- */

/* A copy of the defaults whose owned arrays are duplicated. */
static int case_copy(hash_case *dst, const hash_case *src) {
    *dst = *src;
    dst->mm = NULL;
    dst->embeds = NULL;
    dst->layout_store = NULL;
    dst->tokens = NULL;
    dst->n_tokens = 0;
    if (src->n_mm) {
        dst->mm = malloc(src->n_mm * sizeof *dst->mm);
        if (!dst->mm)
            return 0;
        memcpy(dst->mm, src->mm, src->n_mm * sizeof *dst->mm);
    }
    if (src->have_embeds) {
        dst->embeds = malloc(src->embeds_len + 1);
        if (!dst->embeds)
            return 0;
        if (src->embeds_len)
            memcpy(dst->embeds, src->embeds, src->embeds_len);
    }
    if (src->have_layout) {
        const kvfp8_layout_key *l = &src->layout;
        if (!set_layout(dst, l->kv_dtype, strlen(l->kv_dtype), l->fp8_format,
                        strlen(l->fp8_format), l->scales_fingerprint, strlen(l->scales_fingerprint)))
            return 0;
    }
    return 1;
}

/* A JSON value as an integer in [0, max]. */
static int json_u64(const json_t *v, uint64_t max, uint64_t *out) {
    if (!json_is_integer(v))
        return 0;
    json_int_t i = json_integer_value(v);
    if (i < 0 || (uint64_t)i > max)
        return 0;
    *out = (uint64_t)i;
    return 1;
}

static int json_str(const json_t *v, const char **s, size_t *n) {
    if (!json_is_string(v))
        return 0;
    *s = json_string_value(v);
    *n = json_string_length(v);
    return 1;
}

static int batch_line(json_t *root, hash_case *c, const char *where) {
    if (!json_is_object(root))
        return kvfp8_cli_usage_error(cmd, "%snot a JSON object", where);
    const char *key;
    json_t *v;
    uint64_t u;
    int have_tokens = 0;
    json_object_foreach(root, key, v) {
        const char *s;
        size_t n;
        if (!strcmp(key, "tokens")) {
            if (!json_is_array(v))
                return kvfp8_cli_usage_error(cmd, "%s\"tokens\" is not an array", where);
            size_t cnt = json_array_size(v);
            c->tokens = malloc((cnt ? cnt : 1) * sizeof *c->tokens);
            if (!c->tokens)
                return kvfp8_cli_usage_error(cmd, "%sout of memory", where);
            for (size_t i = 0; i < cnt; i++) {
                json_t *t = json_array_get(v, i);
                if (!json_is_integer(t))
                    return kvfp8_cli_usage_error(cmd, "%stoken %zu is not an integer", where, i);
                if (json_integer_value(t) < 0)
                    return kvfp8_cli_usage_error(cmd, "%stoken %zu (%lld) is negative", where, i,
                                                 (long long)json_integer_value(t));
                c->tokens[i] = (int64_t)json_integer_value(t);
            }
            c->n_tokens = cnt;
            have_tokens = 1;
        } else if (!strcmp(key, "algo")) {
            if (!json_is_string(v) || kvfp8_hash_algo_parse(json_string_value(v), &c->algo) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "%s\"algo\" is not one of sha256, sha256_cbor, xxhash, xxhash_cbor", where);
            c->have_algo = 1;
        } else if (!strcmp(key, "block_size")) {
            if (!json_u64(v, 4294967295u, &u) || u == 0)
                return kvfp8_cli_usage_error(cmd, "%s\"block_size\" is not an integer in [1, 4294967295]", where);
            c->block_size = (size_t)u;
            c->have_block_size = 1;
        } else if (!strcmp(key, "seed")) {
            if (!json_str(v, &c->seed, &c->seed_len))
                return kvfp8_cli_usage_error(cmd, "%s\"seed\" is not a string", where);
        } else if (!strcmp(key, "none_hash")) {
            if (!json_is_string(v) || kvfp8_hash_from_hex(json_string_value(v), &c->none_hex) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "%s\"none_hash\" is not 2 to 64 hex digits", where);
            c->have_none_hex = 1;
        } else if (!strcmp(key, "lora")) {
            if (json_is_null(v))
                c->lora = NULL, c->lora_len = 0;
            else if (!json_str(v, &c->lora, &c->lora_len))
                return kvfp8_cli_usage_error(cmd, "%s\"lora\" is not a string", where);
        } else if (!strcmp(key, "cache_salt")) {
            if (json_is_null(v))
                c->salt = NULL, c->salt_len = 0;
            else if (!json_str(v, &c->salt, &c->salt_len))
                return kvfp8_cli_usage_error(cmd, "%s\"cache_salt\" is not a string", where);
        } else if (!strcmp(key, "mm")) {
            if (!json_is_array(v))
                return kvfp8_cli_usage_error(cmd, "%s\"mm\" is not an array", where);
            free(c->mm);
            c->mm = NULL;
            c->n_mm = 0;
            for (size_t i = 0; i < json_array_size(v); i++) {
                json_t *it = json_array_get(v, i);
                uint64_t off, len;
                if (!json_is_array(it) || json_array_size(it) != 3 ||
                    !json_str(json_array_get(it, 0), &s, &n) ||
                    !json_u64(json_array_get(it, 1), (uint64_t)INT64_MAX, &off) ||
                    !json_u64(json_array_get(it, 2), (uint64_t)INT64_MAX, &len))
                    return kvfp8_cli_usage_error(cmd, "%s\"mm\" item %zu is not [ID, OFFSET, LENGTH]", where, i);
                if (!add_mm(c, s, n, off, len))
                    return kvfp8_cli_usage_error(cmd, "%sout of memory", where);
            }
        } else if (!strcmp(key, "mm_keys")) {
            if (json_str(v, &s, &n) && !strcmp(s, "id-offset"))
                c->mm_keys = KVFP8_MM_KEYS_ID_OFFSET;
            else if (json_str(v, &s, &n) && !strcmp(s, "id"))
                c->mm_keys = KVFP8_MM_KEYS_ID;
            else
                return kvfp8_cli_usage_error(cmd, "%s\"mm_keys\" is not \"id-offset\" or \"id\"", where);
        } else if (!strcmp(key, "prompt_embeds")) {
            free(c->embeds);
            c->embeds = NULL;
            c->have_embeds = 0;
            if (json_is_null(v))
                continue;
            if (!json_str(v, &s, &n) || !parse_hex_bytes(s, n, &c->embeds, &c->embeds_len))
                return kvfp8_cli_usage_error(cmd, "%s\"prompt_embeds\" is not a hex string", where);
            c->have_embeds = 1;
        } else if (!strcmp(key, "embeds_row_bytes")) {
            if (!json_u64(v, SIZE_MAX / 2, &u) || u == 0)
                return kvfp8_cli_usage_error(cmd, "%s\"embeds_row_bytes\" is not a positive integer", where);
            c->row_bytes = (size_t)u;
        } else if (!strcmp(key, "layout_key")) {
            const char *f[3];
            size_t fl[3];
            if (json_is_null(v)) {
                c->have_layout = 0;
                continue;
            }
            if (!json_is_array(v) || json_array_size(v) != 3 ||
                !json_str(json_array_get(v, 0), &f[0], &fl[0]) ||
                !json_str(json_array_get(v, 1), &f[1], &fl[1]) ||
                !json_str(json_array_get(v, 2), &f[2], &fl[2]) ||
                strlen(f[0]) != fl[0] || strlen(f[1]) != fl[1] || strlen(f[2]) != fl[2])
                return kvfp8_cli_usage_error(cmd, "%s\"layout_key\" is not three strings without NUL", where);
            if (!set_layout(c, f[0], fl[0], f[1], fl[1], f[2], fl[2]))
                return kvfp8_cli_usage_error(cmd, "%sout of memory", where);
        } else if (!strcmp(key, "group_id")) {
            if (!json_u64(v, 4294967295u, &u))
                return kvfp8_cli_usage_error(cmd, "%s\"group_id\" is not an integer in [0, 4294967295]", where);
            c->group_id = (uint32_t)u;
            c->have_group = 1;
        } else {
            return kvfp8_cli_usage_error(cmd, "%sunknown field \"%s\"", where, key);
        }
    }
    if (!have_tokens)
        return kvfp8_cli_usage_error(cmd, "%s\"tokens\" is missing", where);
    return KVFP8_EXIT_OK;
}

static void json_hex_list(kvfp8_outbuf *out, const char *name, const kvfp8_block_hash *h,
                          size_t n, int group, uint32_t group_id) {
    kvfp8_outbuf_printf(out, ", \"%s\": [", name);
    for (size_t i = 0; i < n; i++) {
        uint8_t key[KVFP8_POOL_KEY_MAX_BYTES];
        size_t kl = group ? kvfp8_hash_pool_key(&h[i], group_id, key) : h[i].len;
        kvfp8_outbuf_write(out, i ? ", \"" : "\"", i ? 3 : 1);
        print_hex(out, group ? key : h[i].bytes, kl);
        kvfp8_outbuf_write(out, "\"", 1);
    }
    kvfp8_outbuf_write(out, "]", 1);
}

static int run_batch(hash_args *a) {
    if (a->first_token < a->argc)
        return kvfp8_cli_usage_error(cmd, "--batch takes its tokens from the JSON lines, not arguments");
    if (a->none_hash_only)
        return kvfp8_cli_usage_error(cmd, "--batch prints NONE_HASH with every case; --none-hash does not apply");
    size_t n_cases = 0, cap_cases = 0;
    hash_case *cases = NULL;
    json_t **roots = NULL;
    int rc = KVFP8_EXIT_OK, warned = 0;
    char *line = NULL;
    size_t line_cap = 0, line_no = 0;
    ssize_t got;
    while (rc == KVFP8_EXIT_OK && (got = getline(&line, &line_cap, stdin)) >= 0) {
        line_no++;
        size_t k = 0;
        while (k < (size_t)got && strchr(" \t\r\n", line[k]))
            k++;
        if (k == (size_t)got)
            continue; /* blank line */
        char where[48];
        snprintf(where, sizeof where, "line %zu: ", line_no);
        if (n_cases == cap_cases) {
            size_t nc = cap_cases ? cap_cases * 2 : 64;
            hash_case *gc = realloc(cases, nc * sizeof *gc);
            json_t **gr = gc ? realloc(roots, nc * sizeof *gr) : NULL;
            if (gc)
                cases = gc;
            if (!gr) {
                rc = kvfp8_cli_usage_error(cmd, "out of memory");
                break;
            }
            roots = gr;
            cap_cases = nc;
        }
        json_error_t err;
        json_t *root = json_loadb(line, (size_t)got, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err);
        if (!root) {
            rc = kvfp8_cli_usage_error(cmd, "%sbad JSON: %s (column %d)", where, err.text, err.column);
            break;
        }
        hash_case *c = &cases[n_cases];
        roots[n_cases] = root;
        if (!case_copy(c, &a->c)) {
            n_cases++;
            rc = kvfp8_cli_usage_error(cmd, "out of memory");
            break;
        }
        n_cases++;
        rc = batch_line(root, c, where);
        if (rc == KVFP8_EXIT_OK && c->have_group && c->kv_events)
            rc = kvfp8_cli_usage_error(cmd, "%sgroup id and --kv-events together", where);
        if (rc == KVFP8_EXIT_OK)
            rc = case_prepare(c, where, 1, &warned);
    }
    free(line);
    if (rc == KVFP8_EXIT_OK && ferror(stdin))
        rc = kvfp8_cli_usage_error(cmd, "cannot read standard input");

    kvfp8_outbuf out;
    kvfp8_outbuf_init(&out);
    for (size_t i = 0; rc == KVFP8_EXIT_OK && i < n_cases; i++) {
        const hash_case *c = &cases[i];
        kvfp8_block_hash *h = NULL;
        size_t n = 0;
        if (case_hash(c, &h, &n) != KVFP8_OK) {
            fprintf(stderr, "kvfp8 hash: case %zu: %s\n", i, kvfp8_last_error());
            rc = KVFP8_EXIT_FAILED;
        } else {
            kvfp8_outbuf_write(&out, "{\"none_hash\": \"", 15);
            print_hex(&out, c->none_hash.bytes, c->none_hash.len);
            kvfp8_outbuf_write(&out, "\"", 1);
            json_hex_list(&out, "hashes", h, n, 0, 0);
            if (c->have_group)
                json_hex_list(&out, "pool_keys", h, n, 1, c->group_id);
            kvfp8_outbuf_write(&out, ", \"kv_events\": [", 16);
            for (size_t j = 0; j < n; j++)
                kvfp8_outbuf_printf(&out, "%s%llu", j ? ", " : "",
                                    (unsigned long long)kvfp8_hash_kv_event_id(&h[j]));
            kvfp8_outbuf_write(&out, "]}\n", 3);
        }
        free(h);
    }
    for (size_t i = 0; i < n_cases; i++) {
        case_free(&cases[i]);
        json_decref(roots[i]);
    }
    free(cases);
    free(roots);
    if (rc != KVFP8_EXIT_OK) {
        kvfp8_outbuf_free(&out);
        return rc;
    }
    return kvfp8_outbuf_flush(&out, stdout) ? KVFP8_EXIT_OK : KVFP8_EXIT_FAILED;
}

int kvfp8_cmd_hash(int argc, char **argv) {
    hash_args a;
    memset(&a, 0, sizeof a);
    a.c.mm_keys = KVFP8_MM_KEYS_ID_OFFSET;
    int rc = parse_args(argc, argv, &a);
    if (rc < 0)
        rc = a.batch ? run_batch(&a) : run_single(&a, argv);
    case_free(&a.c);
    return rc;
}
