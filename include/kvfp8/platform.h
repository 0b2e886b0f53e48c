/* kvfp8 — platform capability profiles and the known-issues database.
 *
 * A platform is not a name but a set of capabilities per kernel path (cache write,
 * prefill, prefix-prefill / chunked prefill, decode): which KV encodings the path
 * reads natively, which it converts in software, what "fp8" means on the stack (E4M3FN
 * or E4M3FNUZ), and which kv_cache_dtype values it rejects, with the stack's own
 * message.  The profiles are data (faults/data/platforms.json, embedded in the
 * library; a file of the same shape can replace them), each fact with its source.
 *
 * The engine hook kvfp8_platform_hook() asks the profile before every backend call:
 * the site names the path, the cache's storage names the encoding (Triton's names:
 * fp8e4nv = E4M3FN, fp8e4b8 = E4M3FNUZ, fp8e5 = E5M2, fp8e5b16 = E5M2FNUZ; bf16,
 * fp16, fp32).  A path that can neither read the encoding nor convert it fails with
 * the profile's message; a failure of kind "crash" is a dying worker (the session's
 * on_crash callback, which a supervisor uses to die for real).  So vLLM #13147 comes
 * out of the W7900 profile — the prefix-prefill path reads fp8e5 but not fp8e4nv —
 * at the moment the first prefix hit runs that path, and nothing names the
 * combination.  Docs: docs/faults.md. */
#ifndef KVFP8_PLATFORM_H
#define KVFP8_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/engine.h"
#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KVFP8_PATH_CACHE_WRITE = 0,
    KVFP8_PATH_PREFILL = 1,        /* a chunk with no cached context */
    KVFP8_PATH_PREFIX_PREFILL = 2, /* a chunk over cached context: prefix hit or chunked prefill */
    KVFP8_PATH_DECODE = 3
} kvfp8_kernel_path;
#define KVFP8_PATH_COUNT 4

const char *kvfp8_path_name(kvfp8_kernel_path p); /* "cache_write", "prefill", "prefix_prefill", "decode" */
kvfp8_status kvfp8_path_parse(const char *name, kvfp8_kernel_path *out);
/* The path behind an engine site (cache/read, the canary's read back, is the decode
 * path's reader); -1 for sites that are not backend calls. */
int kvfp8_path_of_site(const char *site);

/* Triton's name of the storage's encoding: "fp8e4nv", "bf16", ... */
const char *kvfp8_encoding_of(const kvfp8_kv_storage *s);
/* 1 if the name is one of the encodings profiles may use. */
int kvfp8_encoding_known(const char *name);

typedef enum { KVFP8_FAILURE_ERROR = 0, KVFP8_FAILURE_CRASH = 1 } kvfp8_failure_kind;
const char *kvfp8_failure_name(kvfp8_failure_kind k); /* "error", "crash" */

#define KVFP8_PLATFORM_MAX_ENC 8
#define KVFP8_PLATFORM_MAX_REJECTS 4
#define KVFP8_PLATFORM_MAX_ALIASES 8
#define KVFP8_PLATFORM_MAX_SOURCES 6

typedef struct {
    char kv_cache_dtype[24];      /* rejections: the dtype refused; unused for `unsupported` */
    char message[256];            /* may hold {encoding}, {native_fp8}, {kv_cache_dtype} */
    kvfp8_failure_kind failure;
    char error_type[32];          /* "ValueError", "" when not recorded */
    char when[160];
    char source[320];
} kvfp8_rejection;

typedef struct {
    char kernel[160];
    int reads_cache;              /* 0: the path reads only the new tokens' own K/V */
    int n_native, n_software;
    char native[KVFP8_PLATFORM_MAX_ENC][12];
    char software[KVFP8_PLATFORM_MAX_ENC][12];
    int n_rejects;
    kvfp8_rejection rejects[KVFP8_PLATFORM_MAX_REJECTS];
    int has_unsupported;
    kvfp8_rejection unsupported;  /* what happens with an encoding it neither reads nor converts */
    char source[400];
} kvfp8_path_caps;

typedef struct {
    char id[64];
    int n_aliases;
    char aliases[KVFP8_PLATFORM_MAX_ALIASES][32];
    char status[16];              /* "reported" or "derived" */
    char summary[256];
    char vendor[16], arch[16], device[64], runtime[96];
    char engine[16], engine_version[16], engine_generation[8];
    int fp8_fnuz;                 /* "fp8" means E4M3FNUZ */
    char fp8_means_source[256];
    kvfp8_profile conversion;     /* the cache write's conversion profile */
    int n_startup_rejects;
    kvfp8_rejection startup_rejects[KVFP8_PLATFORM_MAX_REJECTS];
    kvfp8_path_caps paths[KVFP8_PATH_COUNT];
    int n_sources;
    char sources[KVFP8_PLATFORM_MAX_SOURCES][200];
} kvfp8_platform;

typedef struct {
    size_t count;
    kvfp8_platform *items;
} kvfp8_platform_set;

/* Parses a profiles document (the shape of faults/data/platforms.json).  Strict:
 * unknown keys, wrong types, unknown encodings, paths or dtypes, over-long strings
 * and duplicate ids are errors naming `label` and the field, e.g.
 * "platforms.json: profiles[2].paths.decode.native[1]: unknown encoding 'fp9'". */
kvfp8_status kvfp8_platforms_parse(const char *text, size_t len, const char *label, kvfp8_platform_set *out);
kvfp8_status kvfp8_platforms_load_file(const char *path, kvfp8_platform_set *out);
/* The built-in profiles (faults/data/platforms.json as compiled in). */
kvfp8_status kvfp8_platforms_builtin(kvfp8_platform_set *out);
void kvfp8_platforms_free(kvfp8_platform_set *s);
/* By id or alias; NULL (with a reason listing the ids) if none. */
const kvfp8_platform *kvfp8_platform_find(const kvfp8_platform_set *s, const char *name);

/* The built-in data as text (what the files in faults/data/ held at build time). */
const char *kvfp8_platforms_builtin_json(void);
const char *kvfp8_issues_builtin_json(void);

/* ---- capability decisions ------------------------------------------------------- */

typedef struct {
    int ok;                       /* the path can run */
    int software;                 /* ... by converting in software (slower) */
    int rejected;                 /* refused by dtype (a rejection), not by capability */
    kvfp8_failure_kind failure;   /* when !ok */
    char error_type[32];
    char message[400];            /* the stack's text, placeholders filled in */
    char source[320];
} kvfp8_capability;

/* The storage a kv_cache_dtype gets on the platform ("auto" -> the model dtype). */
kvfp8_status kvfp8_platform_storage_encoding(const kvfp8_platform *p, const char *kv_cache_dtype,
                                             kvfp8_model_dtype model_dtype, const char **encoding);

/* Can the path run with this dtype and encoding? */
void kvfp8_platform_check(const kvfp8_platform *p, kvfp8_kernel_path path, const char *kv_cache_dtype,
                          const char *encoding, kvfp8_capability *out);
/* Startup: the stack refuses the dtype before serving anything. */
void kvfp8_platform_check_startup(const kvfp8_platform *p, const char *kv_cache_dtype, kvfp8_capability *out);

/* A whole configuration, without running it: every path it uses (prefix_prefill
 * when prefix caching or chunked prefill is on).  *failing_path is the first path
 * that cannot run (-1 at startup), or is left alone when everything runs. */
void kvfp8_platform_check_config(const kvfp8_platform *p, const char *kv_cache_dtype, int enable_prefix_caching,
                                 int chunked_prefill, kvfp8_model_dtype model_dtype, kvfp8_capability *out,
                                 int *failing_path);

/* ---- the engine hook -------------------------------------------------------------- */

typedef struct kvfp8_platform_session kvfp8_platform_session;
typedef void (*kvfp8_platform_on_crash)(void *ctx, const char *site, const kvfp8_capability *cap);

struct kvfp8_platform_session {
    const kvfp8_platform *platform;
    const char *kv_cache_dtype;
    /* Called when a path fails with kind "crash" (the worker dies).  A supervisor's
     * child records the text and aborts; without a callback the hook returns the
     * error and sets `crashed`, so one process can observe the crash. */
    kvfp8_platform_on_crash on_crash;
    void *on_crash_ctx;
    int crashed;
    char failed_site[32];
    kvfp8_capability failure;     /* the last failing decision */
    uint64_t calls, software_conversions;
};

/* Binds a session to an engine configuration: the platform's FP8 variant
 * (fp8_fnuz) and conversion profile, and the hook.  Fails (KVFP8_ERR_UNSUPPORTED,
 * the stack's message) when the stack rejects kv_cache_dtype at startup; the
 * session must outlive the engine. */
kvfp8_status kvfp8_platform_attach(kvfp8_platform_session *s, const kvfp8_platform *p, kvfp8_engine_config *cfg);

/* The kvfp8_engine_hook: ctx is a kvfp8_platform_session. */
kvfp8_status kvfp8_platform_hook(void *ctx, const char *site, const kvfp8_backend_query *q);

/* ---- known issues ------------------------------------------------------------------ */

#define KVFP8_ISSUE_MAX_LIST 8

typedef struct {
    int n;
    char v[KVFP8_ISSUE_MAX_LIST][32];
} kvfp8_issue_list;

typedef struct {
    char id[40];
    char title[200];
    char category[4];              /* A kernel path, B encoding, C scales, D reuse */
    char scope[8];                 /* "stack" or "class" */
    char url[120];
    /* match: a list with n == 0 (or a tri-state -1) is "any" */
    kvfp8_issue_list vendor, arch, profile, engine, engine_version, engine_generation, kv_cache_dtype, path_fails;
    int kv_fp8, enable_prefix_caching, chunked_prefill, calculate_kv_scales, fp8_fnuz; /* -1 any, 0, 1 */
    char symptom[400];
    char cause[400];
    int n_remedies;
    char remedies[6][240];
    char detector[240];
} kvfp8_known_issue;

typedef struct {
    size_t count;
    kvfp8_known_issue *items;
} kvfp8_issue_db;

kvfp8_status kvfp8_issues_parse(const char *text, size_t len, const char *label, kvfp8_issue_db *out);
kvfp8_status kvfp8_issues_load_file(const char *path, kvfp8_issue_db *out);
kvfp8_status kvfp8_issues_builtin(kvfp8_issue_db *out);
void kvfp8_issues_free(kvfp8_issue_db *db);

typedef struct {
    const kvfp8_platform *platform; /* NULL: platform conditions never hold */
    const char *kv_cache_dtype;
    int enable_prefix_caching, chunked_prefill, calculate_kv_scales;
} kvfp8_issue_query;

/* 1 when every match condition holds. */
int kvfp8_issue_matches(const kvfp8_known_issue *i, const kvfp8_issue_query *q);

#ifdef __cplusplus
}
#endif
#endif
