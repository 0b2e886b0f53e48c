/* kvfp8 run, kvfp8 calibrate, kvfp8 quality: the tiny engine from the command line.
 *
 * `run` serves prompts the way `vllm serve` plus the operators' two-request test
 * would (docs/engine.md): engine log lines on standard error (or --log FILE), the
 * requests' results and the metrics on standard output. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "kvfp8/calibration.h"
#include "kvfp8/engine.h"
#include "kvfp8/platform.h"
#include "kvfp8/safetensors.h"
#include "kvfp8/scales.h"
#include "commands.h"

#define MAX_PROMPTS 64
#define MAX_PROMPT_TOKENS 4096

static const char *const run_help =
    "usage: kvfp8 run --kv-cache-dtype auto|fp8|fp8_e4m3|fp8_e5m2 [--enable-prefix-caching]\n"
    "                 [--scales DIR] [--calculate-kv-scales] [--prompt-file F] [options]\n"
    "\n"
    "Serves prompts with the tiny model (2 layers, 4 query heads, 2 KV heads, head size 64,\n"
    "bf16) through the reference engine: block hashes, prefix-cache lookup, chunked\n"
    "prefill and decode, the KV cache in the chosen dtype.  Prints each request's output,\n"
    "its time to first token (TTFT) and prefix-cache hit tokens, then vLLM's metrics and,\n"
    "when two consecutive requests have the same prompt, the operators' two-request test:\n"
    "the second must hit at least prompt_blocks - 1 blocks, be faster to its first token,\n"
    "and produce the same greedy output (or one within the bound; a difference is shown).\n"
    "\n"
    "  --kv-cache-dtype D      auto (bf16), fp8 / fp8_e4m3 (E4M3), fp8_e5m2 (E5M2), as vLLM\n"
    "  --enable-prefix-caching reuse cached blocks across requests\n"
    "  --scales DIR            load k/v scales from an llm-compressor-style folder\n"
    "                          (config.json + *.safetensors); a kv_cache_scheme there\n"
    "                          turns auto into fp8, as in vLLM\n"
    "  --scale-rules R         auto (default), llm-compressor or fp8-checkpoint (vLLM's rules)\n"
    "  --calculate-kv-scales   random-token calibration at startup (k = max|K|/200, v = max|V|/100)\n"
    "  --prompt-file F         one prompt per line (text; or 'tokens: 1 2 3'); '#' comments\n"
    "                          (default: the seed guide's prompt, sent twice)\n"
    "  --max-tokens N          tokens to generate per request (default 16, at most 256)\n"
    "  --profile P             FP8 conversion profile of the cache write (default nvidia)\n"
    "  --fnuz                  the platform stores fp8 as E4M3FNUZ (AMD MI300)\n"
    "  --hash-algo A           sha256 (default), sha256_cbor, xxhash, xxhash_cbor\n"
    "  --seed S                PYTHONHASHSEED for NONE_HASH; without it (or the PYTHONHASHSEED\n"
    "                          environment variable) NONE_HASH is random, with vLLM's warning\n"
    "  --num-blocks N          KV pool size in blocks (default 129)\n"
    "  --log FILE              write the engine log to FILE instead of standard error\n"
    "  --platform P            run under a platform capability profile (kvfp8 faults platforms):\n"
    "                          a kernel path that cannot read the cache's encoding fails as that\n"
    "                          stack fails (e.g. w7900-rocm6.3-vllm0.7.2); sets --fnuz and --profile\n"
    "  --platform-file F       profiles from F instead of the built-in ones\n"
    "\n"
    "Exit status: 0 served (and the two-request test passed, when it ran); 1 a request\n"
    "failed or the two-request test failed; 2 bad input (nothing on standard output).\n";

static const char *const calibrate_help =
    "usage: kvfp8 calibrate --mode none|random|dataset --out DIR [--observer O] [--per-head]\n"
    "                       [--dtype bf16|f16|f32]\n"
    "\n"
    "Writes an llm-compressor-style artifact for the tiny model into DIR: config.json\n"
    "(the model's shape and a compressed-tensors quantization_config with kv_cache_scheme)\n"
    "and model.safetensors (model.layers.N.self_attn.k_scale / v_scale).\n"
    "  none     config.json only, no scales: vLLM then runs with 1.0 and warns\n"
    "  random   the scales calculate_kv_scales finds on a random-token warmup (max/200, max/100)\n"
    "  dataset  amax / 448 over the built-in in-domain calibration set, per tensor or per\n"
    "           head (--per-head), through an observer: minmax (moving average 0.01),\n"
    "           memoryless_minmax, static_minmax (default), stored in --dtype (default bf16)\n"
    "Files are written atomically; on error nothing is left half-written.\n";

static const char *const quality_help =
    "usage: kvfp8 quality [--max-tokens N] [--quick]\n"
    "\n"
    "For each calibration mode (none, random, dataset): the attention error of an FP8\n"
    "E4M3 cache against a BF16 cache (per layer, ||o_fp8 - o_bf16|| / ||o_bf16||, mean),\n"
    "the saturation rate (K/V elements with |x|/scale > 448) and the greedy-output\n"
    "agreement with the BF16 run, on held-out in-domain prompts and on random-token\n"
    "prompts.  Ends with whether dataset < random < none on in-domain prompts.\n"
    "--quick uses two prompts of each kind and 4 tokens.  Exit 1 if the order does not hold.\n";

static int want_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

static int parse_int(const char *cmd, const char *opt, const char *text, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end || errno || v < lo || v > hi)
        return kvfp8_cli_usage_error(cmd, "%s: '%s' is not an integer in %d..%d", opt, text, lo, hi);
    *out = (int)v;
    return 0;
}

/* ---- prompts ------------------------------------------------------------------------ */

typedef struct {
    int n;
    int64_t tokens[MAX_PROMPTS][MAX_PROMPT_TOKENS];
    int len[MAX_PROMPTS];
} prompt_set;

static int load_prompts(const char *cmd, const kvfp8_model *m, const char *path, prompt_set *ps) {
    ps->n = 0;
    if (!path) {
        for (int i = 0; i < 2; i++) {
            ps->len[i] = kvfp8_tokenize(m, kvfp8_seed_prompt(), ps->tokens[i], MAX_PROMPT_TOKENS);
            ps->n++;
        }
        return 0;
    }
    FILE *f = fopen(path, "r");
    if (!f)
        return kvfp8_cli_usage_error(cmd, "--prompt-file %s: %s", path, strerror(errno));
    char line[65536];
    int lineno = 0;
    const int vocab = kvfp8_model_get_config(m)->vocab_size;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t l = strlen(line);
        if (l == sizeof line - 1 && line[l - 1] != '\n') {
            fclose(f);
            return kvfp8_cli_usage_error(cmd, "%s:%d: line longer than %zu bytes", path, lineno, sizeof line - 2);
        }
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r'))
            line[--l] = 0;
        if (l == 0 || line[0] == '#')
            continue;
        if (ps->n == MAX_PROMPTS) {
            fclose(f);
            return kvfp8_cli_usage_error(cmd, "%s:%d: more than %d prompts", path, lineno, MAX_PROMPTS);
        }
        int64_t *t = ps->tokens[ps->n];
        int n = 0;
        if (!strncmp(line, "tokens:", 7)) {
            char *p = line + 7;
            for (;;) {
                while (*p == ' ' || *p == '\t')
                    p++;
                if (!*p)
                    break;
                char *end;
                errno = 0;
                long long v = strtoll(p, &end, 10);
                if (end == p || errno || v < 0 || v >= vocab || (*end && *end != ' ' && *end != '\t')) {
                    fclose(f);
                    return kvfp8_cli_usage_error(cmd, "%s:%d: token '%.*s' is not an id in 0..%d", path, lineno,
                                                 (int)strcspn(p, " \t"), p, vocab - 1);
                }
                if (n == MAX_PROMPT_TOKENS) {
                    fclose(f);
                    return kvfp8_cli_usage_error(cmd, "%s:%d: more than %d tokens", path, lineno, MAX_PROMPT_TOKENS);
                }
                t[n++] = v;
                p = end;
            }
            if (n == 0) {
                fclose(f);
                return kvfp8_cli_usage_error(cmd, "%s:%d: 'tokens:' with no token ids", path, lineno);
            }
        } else {
            n = kvfp8_tokenize(m, line, t, MAX_PROMPT_TOKENS);
            if (n < 0) {
                fclose(f);
                return kvfp8_cli_usage_error(cmd, "%s:%d: prompt longer than %d tokens", path, lineno, MAX_PROMPT_TOKENS);
            }
        }
        ps->len[ps->n++] = n;
    }
    fclose(f);
    if (ps->n == 0)
        return kvfp8_cli_usage_error(cmd, "--prompt-file %s: no prompts (one per line; '#' starts a comment)", path);
    return 0;
}

static void print_text(const int64_t *t, int n) {
    putchar('"');
    for (int i = 0; i < n; i++) {
        if (t[i] >= 32 && t[i] < 127 && t[i] != '"' && t[i] != '\\')
            putchar((int)t[i]);
        else
            printf("<%lld>", (long long)t[i]);
    }
    putchar('"');
}

/* ---- run ------------------------------------------------------------------------------ */

int kvfp8_cmd_run(int argc, char **argv) {
    const char *cmd = "run";
    if (want_help(argc, argv)) {
        fputs(run_help, stdout);
        return KVFP8_EXIT_OK;
    }
    kvfp8_engine_config c;
    kvfp8_engine_default_config(&c);
    const char *dtype = NULL, *scales_dir = NULL, *prompt_file = NULL, *log_path = NULL, *seed = NULL;
    const char *platform = NULL, *platform_file = NULL;
    kvfp8_scale_rules rules = KVFP8_SCALE_RULES_AUTO;
    int max_tokens = 16, rc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int has_value = i + 1 < argc;
        if (!strcmp(a, "--enable-prefix-caching")) c.enable_prefix_caching = 1;
        else if (!strcmp(a, "--calculate-kv-scales")) c.calculate_kv_scales = 1;
        else if (!strcmp(a, "--fnuz")) c.fp8_fnuz = 1;
        else if (!has_value && a[0] == '-' && a[1] == '-')
            return kvfp8_cli_usage_error(cmd, "option %s needs a value (or is unknown: kvfp8 run --help)", a);
        else if (!strcmp(a, "--kv-cache-dtype")) dtype = argv[++i];
        else if (!strcmp(a, "--scales")) scales_dir = argv[++i];
        else if (!strcmp(a, "--prompt-file")) prompt_file = argv[++i];
        else if (!strcmp(a, "--log")) log_path = argv[++i];
        else if (!strcmp(a, "--seed")) seed = argv[++i];
        else if (!strcmp(a, "--platform")) platform = argv[++i];
        else if (!strcmp(a, "--platform-file")) platform_file = argv[++i];
        else if (!strcmp(a, "--scale-rules")) {
            if (kvfp8_scale_rules_parse(argv[++i], &rules) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "--scale-rules: unknown rules '%s' (auto, llm-compressor, fp8-checkpoint)", argv[i]);
        } else if (!strcmp(a, "--max-tokens")) {
            if ((rc = parse_int(cmd, a, argv[++i], 1, 256, &max_tokens)))
                return rc;
        } else if (!strcmp(a, "--num-blocks")) {
            if ((rc = parse_int(cmd, a, argv[++i], 2, 1 << 20, &c.num_blocks)))
                return rc;
        } else if (!strcmp(a, "--profile")) {
            if (kvfp8_profile_parse(argv[++i], &c.fp8_profile) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "--profile: unknown profile '%s'", argv[i]);
        } else if (!strcmp(a, "--hash-algo")) {
            if (kvfp8_hash_algo_parse(argv[++i], &c.hash_algo) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "--hash-algo: unknown algorithm '%s' (sha256, sha256_cbor, xxhash, xxhash_cbor)", argv[i]);
        } else
            return kvfp8_cli_usage_error(cmd, "unknown argument '%s' (kvfp8 run --help)", a);
    }
    if (!dtype)
        return kvfp8_cli_usage_error(cmd, "--kv-cache-dtype is required (auto, fp8, fp8_e4m3, fp8_e5m2)");
    if (strcmp(dtype, "auto") && strcmp(dtype, "fp8") && strcmp(dtype, "fp8_e4m3") && strcmp(dtype, "fp8_e5m2"))
        return kvfp8_cli_usage_error(cmd, "--kv-cache-dtype: Unsupported fp8 kv cache data type: %s (auto, fp8, fp8_e4m3, fp8_e5m2)", dtype);
    if (!seed)
        seed = getenv("PYTHONHASHSEED");
    if (seed && kvfp8_hash_check_pythonhashseed(seed) != KVFP8_OK)
        return kvfp8_cli_usage_error(cmd, "--seed / PYTHONHASHSEED: %s", kvfp8_last_error());
    c.hash_seed = seed && strcmp(seed, "random") ? seed : NULL;
    c.kv_cache_dtype = dtype;

    kvfp8_tiny_config mc;
    kvfp8_model_default_config(&mc);
    kvfp8_model *m;
    if (kvfp8_model_create(&mc, &m) != KVFP8_OK)
        return kvfp8_cli_usage_error(cmd, "model: %s", kvfp8_last_error());
    static prompt_set ps;
    int status = KVFP8_EXIT_OK;
    FILE *log = NULL;
    kvfp8_scales sc;
    memset(&sc, 0, sizeof sc);
    kvfp8_engine *e = NULL;
    kvfp8_platform_set pset;
    memset(&pset, 0, sizeof pset);
    kvfp8_platform_session session;
    memset(&session, 0, sizeof session);
    const kvfp8_platform *pf = NULL;
    if ((rc = load_prompts(cmd, m, prompt_file, &ps)))
        goto out_rc;
    if (platform || platform_file) { /* the stack's FP8 variant and conversion, before the scales are read */
        if ((platform_file ? kvfp8_platforms_load_file(platform_file, &pset) : kvfp8_platforms_builtin(&pset)) != KVFP8_OK ||
            !(pf = kvfp8_platform_find(&pset, platform ? platform : pset.items[0].id))) {
            rc = kvfp8_cli_usage_error(cmd, "--platform: %s", kvfp8_last_error());
            goto out_rc;
        }
        c.fp8_fnuz = pf->fp8_fnuz;
    }
    if (scales_dir) {
        kvfp8_scale_options so = {rules, c.fp8_fnuz, KVFP8_KV_CACHE_AUTO, 0};
        if (kvfp8_kv_cache_dtype_parse(dtype, &so.kv_cache_dtype) != KVFP8_OK ||
            kvfp8_scales_load(scales_dir, &so, &sc) != KVFP8_OK) {
            rc = kvfp8_cli_usage_error(cmd, "--scales %s: %s", scales_dir, kvfp8_last_error());
            goto out_rc;
        }
        if (sc.num_layers != (uint32_t)mc.num_layers || sc.num_kv_heads != (uint32_t)mc.num_kv_heads) {
            rc = kvfp8_cli_usage_error(cmd, "--scales %s/config.json: num_hidden_layers=%u num_key_value_heads=%u, "
                                            "but the model has %d layers and %d KV heads", scales_dir, sc.num_layers,
                                       sc.num_kv_heads, mc.num_layers, mc.num_kv_heads);
            goto out_rc;
        }
        if (sc.kv_cache_dtype != KVFP8_KV_CACHE_AUTO)
            c.kv_cache_dtype = kvfp8_kv_cache_dtype_name(sc.kv_cache_dtype);
        int loaded = 0;
        for (uint32_t l = 0; l < sc.num_layers; l++)
            loaded += sc.k_source[l] != KVFP8_SCALE_SRC_DEFAULT || sc.v_source[l] != KVFP8_SCALE_SRC_DEFAULT;
        if (loaded) { /* else: no scales stored, the engine runs at 1.0 and warns as vLLM does */
            c.k_scales = sc.k;
            c.v_scales = sc.v;
            c.scale_count = (int)sc.per_layer;
            c.scales_source = scales_dir;
        }
    }
    if (log_path) {
        log = fopen(log_path, "w");
        if (!log) {
            rc = kvfp8_cli_usage_error(cmd, "--log %s: %s", log_path, strerror(errno));
            goto out_rc;
        }
        c.log = log;
    } else {
        c.log = stderr;
    }
    for (size_t w = 0; w < sc.warning_count; w++)
        if (c.k_scales || !strstr(sc.warnings[w], "scaling factor 1.0")) /* the engine says that one itself */
            fprintf(c.log, "WARNING: %s\n", sc.warnings[w]);
    if ((pf && kvfp8_platform_attach(&session, pf, &c) != KVFP8_OK) || kvfp8_engine_create(&c, m, &e) != KVFP8_OK) {
        fprintf(c.log, "ERROR: engine startup failed: %s\n", kvfp8_last_error());
        printf("startup: FAILED: %s\n", kvfp8_last_error());
        status = KVFP8_EXIT_FAILED;
        goto out;
    }
    kvfp8_request_result prev;
    memset(&prev, 0, sizeof prev);
    int two_request_ran = 0, two_request_ok = 1;
    for (int r = 0; r < ps.n; r++) {
        char id[32];
        snprintf(id, sizeof id, "req-%d", r + 1);
        kvfp8_request_result res;
        if (kvfp8_engine_generate(e, id, ps.tokens[r], ps.len[r], max_tokens, &res) != KVFP8_OK) {
            fprintf(c.log, "ERROR: request %s failed: %s\n", id, kvfp8_last_error());
            if (session.crashed) /* the platform says the worker dies here */
                printf("request %d: CRASHED (the worker dies at %s): %s%s%s\n", r + 1, session.failed_site,
                       session.failure.error_type, session.failure.error_type[0] ? ": " : "", kvfp8_last_error());
            else
                printf("request %d: FAILED: %s\n", r + 1, kvfp8_last_error());
            status = KVFP8_EXIT_FAILED;
            break;
        }
        printf("request %d: prompt %u tokens, hit %u tokens from the prefix cache, computed %u, TTFT %.2f ms, path %s\n",
               r + 1, res.prompt_tokens, res.hit_tokens, res.computed_tokens, res.ttft_ms, res.first_site);
        printf("  output tokens:");
        for (int t = 0; t < res.n_output; t++)
            printf(" %lld", (long long)res.output[t]);
        printf("\n  output text: ");
        print_text(res.output, res.n_output);
        putchar('\n');
        if (r > 0 && ps.len[r] == ps.len[r - 1] &&
            !memcmp(ps.tokens[r], ps.tokens[r - 1], sizeof(int64_t) * (size_t)ps.len[r])) {
            two_request_ran = 1;
            const uint32_t blocks = res.prompt_tokens / (uint32_t)c.block_size;
            const uint32_t hit_blocks = res.hit_tokens / (uint32_t)c.block_size;
            const int hit_ok = !c.enable_prefix_caching || hit_blocks + 1 >= blocks;
            const int faster = !c.enable_prefix_caching || res.ttft_ms < prev.ttft_ms;
            int same = 0;
            while (same < res.n_output && same < prev.n_output && res.output[same] == prev.output[same])
                same++;
            const int identical = same == res.n_output && res.n_output == prev.n_output;
            printf("two-request test (requests %d and %d): hit %u of %u prompt blocks (need >= %u): %s; TTFT %.2f -> %.2f ms: %s; "
                   "outputs %s\n",
                   r, r + 1, hit_blocks, blocks, blocks ? blocks - 1 : 0, hit_ok ? "ok" : "FAIL", prev.ttft_ms,
                   res.ttft_ms, faster ? "ok" : "FAIL",
                   identical ? "identical" : "differ");
            if (!identical)
                printf("  outputs agree on the first %d of %d tokens (FP8 read back under different semantics cold "
                       "and warm: docs/attention.md)\n", same, res.n_output);
            two_request_ok &= hit_ok && faster;
        }
        prev = res;
    }
    kvfp8_engine_metrics mt;
    kvfp8_engine_get_metrics(e, &mt);
    printf("metrics: vllm:prefix_cache_queries_total %llu\n", (unsigned long long)mt.prefix_cache_queries);
    printf("metrics: vllm:prefix_cache_hits_total %llu\n", (unsigned long long)mt.prefix_cache_hits);
    printf("metrics: prefix cache hit rate %.1f%%\n", 100.0 * mt.hit_rate);
    printf("metrics: kv cache %s, %llu bytes per token, pool %.2f MiB (bfloat16 at the same settings: %.2f MiB)\n",
           kvfp8_engine_storage(e)->is_fp8 ? kvfp8_format_name(kvfp8_engine_storage(e)->fp8.format) : "bfloat16",
           (unsigned long long)mt.kv_bytes_per_token, mt.kv_pool_bytes / 1048576.0, mt.kv_pool_bytes_bf16 / 1048576.0);
    if (kvfp8_engine_storage(e)->is_fp8)
        printf("metrics: fp8 saturation %.4f%% (%llu of %llu K/V elements clipped)\n",
               mt.fp8_written ? 100.0 * mt.fp8_saturated / mt.fp8_written : 0.0,
               (unsigned long long)mt.fp8_saturated, (unsigned long long)mt.fp8_written);
    if (two_request_ran) {
        printf("two-request test: %s\n", two_request_ok ? "PASS" : "FAIL");
        if (!two_request_ok && status == KVFP8_EXIT_OK)
            status = KVFP8_EXIT_FAILED;
    }
out:
    kvfp8_engine_destroy(e);
    kvfp8_platforms_free(&pset);
    kvfp8_scales_free(&sc);
    kvfp8_model_destroy(m);
    if (log)
        fclose(log);
    return status;
out_rc:
    kvfp8_platforms_free(&pset);
    kvfp8_scales_free(&sc);
    kvfp8_model_destroy(m);
    return rc;
}

/* ---- calibrate -------------------------------------------------------------------------- */

/* mkdir -p: the output folder and its parents. */
static int make_dirs(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return -1;
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(path, 0777) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(path, 0777) && errno != EEXIST ? -1 : 0;
}

/* config.json with the model's shape and no quantization_config: what a plain bf16
 * checkpoint has, so vLLM runs fp8 at scale 1.0 and warns. */
static int write_plain_config(const char *cmd, const char *dir, const kvfp8_tiny_config *mc) {
    if (make_dirs(dir))
        return kvfp8_cli_usage_error(cmd, "--out %s: %s", dir, strerror(errno));
    json_t *cfg = json_pack("{s:s, s:[s], s:i, s:i, s:i, s:i, s:i, s:i, s:s}", "model_type", "llama", "architectures",
                            "LlamaForCausalLM", "num_hidden_layers", mc->num_layers, "num_attention_heads",
                            mc->num_q_heads, "num_key_value_heads", mc->num_kv_heads, "head_dim", mc->head_size,
                            "hidden_size", mc->hidden_size, "vocab_size", mc->vocab_size, "torch_dtype", "bfloat16");
    char path[4096];
    char *text = cfg ? json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(cfg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    kvfp8_status st = text ? kvfp8_write_file_atomic(path, text, strlen(text)) : KVFP8_ERR_NOMEM;
    free(text);
    /* the checkpoint's weights file, holding no KV scales (the tiny model's weights
     * come from its seed) */
    static const char *const keys[] = {"format"}, *const values[] = {"pt"};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st == KVFP8_OK)
        st = kvfp8_st_write(path, NULL, 0, keys, values, 1);
    if (st != KVFP8_OK)
        return kvfp8_cli_usage_error(cmd, "--out %s: %s", dir, kvfp8_last_error());
    return 0;
}

int kvfp8_cmd_calibrate(int argc, char **argv) {
    const char *cmd = "calibrate";
    if (want_help(argc, argv)) {
        fputs(calibrate_help, stdout);
        return KVFP8_EXIT_OK;
    }
    kvfp8_calib_options o;
    kvfp8_calib_default_options(&o);
    const char *mode = NULL, *out = NULL;
    kvfp8_st_dtype dtype = KVFP8_ST_BF16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--per-head")) {
            o.per_head = 1;
            continue;
        }
        if (i + 1 >= argc)
            return kvfp8_cli_usage_error(cmd, "option %s needs a value (or is unknown: kvfp8 calibrate --help)", a);
        if (!strcmp(a, "--mode")) mode = argv[++i];
        else if (!strcmp(a, "--out")) out = argv[++i];
        else if (!strcmp(a, "--observer")) {
            if (kvfp8_observer_parse(argv[++i], &o.observer) != KVFP8_OK)
                return kvfp8_cli_usage_error(cmd, "--observer: %s", kvfp8_last_error());
        } else if (!strcmp(a, "--dtype")) {
            const char *d = argv[++i];
            if (!strcmp(d, "bf16")) dtype = KVFP8_ST_BF16, o.scale_dtype = KVFP8_DTYPE_BF16;
            else if (!strcmp(d, "f16")) dtype = KVFP8_ST_F16, o.scale_dtype = KVFP8_DTYPE_F16;
            else if (!strcmp(d, "f32")) dtype = KVFP8_ST_F32, o.scale_dtype = KVFP8_DTYPE_F32;
            else return kvfp8_cli_usage_error(cmd, "--dtype: '%s' (bf16, f16, f32)", d);
        } else
            return kvfp8_cli_usage_error(cmd, "unknown argument '%s' (kvfp8 calibrate --help)", a);
    }
    if (!mode)
        return kvfp8_cli_usage_error(cmd, "--mode is required (none, random, dataset)");
    if (kvfp8_calib_mode_parse(mode, &o.mode) != KVFP8_OK)
        return kvfp8_cli_usage_error(cmd, "--mode: %s", kvfp8_last_error());
    if (!out)
        return kvfp8_cli_usage_error(cmd, "--out DIR is required");
    kvfp8_tiny_config mc;
    kvfp8_model_default_config(&mc);
    kvfp8_model *m;
    if (kvfp8_model_create(&mc, &m) != KVFP8_OK)
        return kvfp8_cli_usage_error(cmd, "model: %s", kvfp8_last_error());
    int rc = KVFP8_EXIT_OK;
    if (o.mode == KVFP8_CALIB_NONE) {
        rc = write_plain_config(cmd, out, &mc);
        if (!rc)
            printf("calibrate none: wrote %s/config.json and a model.safetensors without kv scales "
                   "(vLLM will use 1.0 and warn)\n", out);
        kvfp8_model_destroy(m);
        return rc;
    }
    float k[256], v[256];
    int count;
    kvfp8_scales s;
    memset(&s, 0, sizeof s);
    if (kvfp8_calibrate(m, &o, k, v, &count) != KVFP8_OK) {
        fprintf(stderr, "kvfp8 calibrate: %s\n", kvfp8_last_error());
        rc = KVFP8_EXIT_FAILED;
    } else if (kvfp8_scales_init(&s, (uint32_t)mc.num_layers, (uint32_t)mc.num_q_heads, (uint32_t)mc.num_kv_heads,
                                 (uint32_t)mc.head_size, (uint32_t)mc.hidden_size,
                                 count == 1 ? KVFP8_SCALE_TENSOR : KVFP8_SCALE_ATTN_HEAD, dtype) != KVFP8_OK) {
        fprintf(stderr, "kvfp8 calibrate: %s\n", kvfp8_last_error());
        rc = KVFP8_EXIT_FAILED;
    } else {
        for (int i = 0; i < mc.num_layers * count; i++) {
            s.k[i] = k[i];
            s.v[i] = v[i];
        }
        for (int l = 0; l < mc.num_layers; l++)
            s.k_source[l] = s.v_source[l] = KVFP8_SCALE_SRC_LOADED;
        if (make_dirs(out)) {
            rc = kvfp8_cli_usage_error(cmd, "--out %s: %s", out, strerror(errno));
        } else if (kvfp8_scales_save(out, &s) != KVFP8_OK) {
            rc = kvfp8_cli_usage_error(cmd, "--out %s: %s", out, kvfp8_last_error());
        } else {
            printf("calibrate %s%s: wrote %s/config.json and %s/model.safetensors\n", mode,
                   o.mode == KVFP8_CALIB_DATASET ? (o.per_head ? " (per head)" : " (per tensor)") : "", out, out);
            for (int l = 0; l < mc.num_layers; l++)
                for (int h = 0; h < count; h++)
                    printf("  layer %d%s: k_scale %.6g v_scale %.6g\n", l, count > 1 ? (h ? " head 1" : " head 0") : "",
                           (double)k[l * count + h], (double)v[l * count + h]);
        }
    }
    kvfp8_scales_free(&s);
    kvfp8_model_destroy(m);
    return rc;
}

/* ---- quality ---------------------------------------------------------------------------- */

int kvfp8_cmd_quality(int argc, char **argv) {
    const char *cmd = "quality";
    if (want_help(argc, argv)) {
        fputs(quality_help, stdout);
        return KVFP8_EXIT_OK;
    }
    int max_tokens = 8, quick = 0, rc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--max-tokens") && i + 1 < argc) {
            if ((rc = parse_int(cmd, "--max-tokens", argv[++i], 1, 256, &max_tokens)))
                return rc;
        } else
            return kvfp8_cli_usage_error(cmd, "unknown argument '%s' (kvfp8 quality --help)", argv[i]);
    }
    if (quick)
        max_tokens = 4;
    kvfp8_tiny_config mc;
    kvfp8_model_default_config(&mc);
    kvfp8_model *m;
    if (kvfp8_model_create(&mc, &m) != KVFP8_OK)
        return kvfp8_cli_usage_error(cmd, "model: %s", kvfp8_last_error());
    const char *const *ev;
    size_t n_ev = kvfp8_evaluation_set(&ev);
    /* random-token prompts: bytes 128..254 are outside the model's domain */
    static char rnd[4][201];
    const char *rp[4];
    uint64_t s = 99;
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 200; j++) {
            s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
            rnd[i][j] = (char)(128 + (s * 0x2545F4914F6CDD1Dull >> 33) % 127);
        }
        rnd[i][200] = 0;
        rp[i] = rnd[i];
    }
    const size_t n_rnd = quick ? 2 : 4;
    if (quick)
        n_ev = 2;
    printf("| calibration | in-domain attention error | saturation | output agreement | random-prompt attention error | saturation | output agreement |\n"
           "| --- | --- | --- | --- | --- | --- | --- |\n");
    double err[KVFP8_CALIB_MODE_COUNT];
    int status = KVFP8_EXIT_OK;
    for (int mode = 0; mode < KVFP8_CALIB_MODE_COUNT; mode++) {
        kvfp8_calib_options o;
        kvfp8_calib_default_options(&o);
        o.mode = (kvfp8_calib_mode)mode;
        float k[256], v[256];
        int count;
        kvfp8_quality qi, qr;
        if (kvfp8_calibrate(m, &o, k, v, &count) != KVFP8_OK ||
            kvfp8_quality_measure(m, ev, n_ev, k, v, count, max_tokens, &qi) != KVFP8_OK ||
            kvfp8_quality_measure(m, rp, n_rnd, k, v, count, max_tokens, &qr) != KVFP8_OK) {
            fprintf(stderr, "kvfp8 quality: %s: %s\n", kvfp8_calib_mode_name((kvfp8_calib_mode)mode), kvfp8_last_error());
            kvfp8_model_destroy(m);
            return KVFP8_EXIT_FAILED;
        }
        err[mode] = qi.attention_error;
        printf("| %s | %.4f | %.4f%% | %.0f%% | %.4f | %.4f%% | %.0f%% |\n", kvfp8_calib_mode_name((kvfp8_calib_mode)mode),
               qi.attention_error, 100 * qi.saturation_rate, 100 * qi.output_agreement, qr.attention_error,
               100 * qr.saturation_rate, 100 * qr.output_agreement);
    }
    const int ordered = err[KVFP8_CALIB_DATASET] < err[KVFP8_CALIB_RANDOM] && err[KVFP8_CALIB_RANDOM] < err[KVFP8_CALIB_NONE];
    printf("\nin-domain order dataset < random < none: %s (%.4f < %.4f < %.4f); %zu in-domain and %zu random prompts, "
           "%d tokens each\n",
           ordered ? "yes" : "NO", err[KVFP8_CALIB_DATASET], err[KVFP8_CALIB_RANDOM], err[KVFP8_CALIB_NONE], n_ev, n_rnd,
           max_tokens);
    if (!ordered)
        status = KVFP8_EXIT_FAILED;
    kvfp8_model_destroy(m);
    return status;
}
