/* The conformance suites' side: how a test is declared, and what it may call while
 * it runs against the backend under test.
 *
 * Suites are cmocka tests written once against the backend table (never against a
 * particular backend).  Each is identified as suite.test and runs alone in a child
 * process (harness.c), so a test may assume a fresh process and a backend that was
 * just opened.  A test first asks `supports` for what it is about to check: when the
 * backend declines everything the test could check, it calls
 * kvfp8_conform_not_supported(), which is reported as NOT_SUPPORTED, never as a pass.
 * Mismatches are reported in TestFloat's manner, one line per case:
 *     <operation and configuration> <inputs> => <observed>, expected <expected>
 * then the test fails once with the count (kvfp8_conform_check_failures). */
#ifndef KVFP8_CONFORM_SUITE_H
#define KVFP8_CONFORM_SUITE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kvfp8/backend.h"
#include "kvfp8/conform.h"

typedef struct {
    const char *suite; /* "fp8_encode" */
    const char *name;  /* "e4m3fn_f16" */
    const char *level; /* "EXACT", "BOUNDED", "PROPERTY", "API" or "PERF" */
    void (*fn)(void **state);
    const char *what; /* one line for the report */
} kvfp8_conform_test;

/* ---- the registry (registry.c): every suite's table ------------------------------- */

size_t kvfp8_conform_test_count(void);
const kvfp8_conform_test *kvfp8_conform_test_at(size_t i);
/* By "suite.test"; NULL when unknown. */
const kvfp8_conform_test *kvfp8_conform_test_find(const char *id);
/* "suite.test" into buf. */
const char *kvfp8_conform_test_id(const kvfp8_conform_test *t, char *buf, size_t cap);

/* Each suite file exports its table. */
extern const kvfp8_conform_test kvfp8_conform_suite_api[];
extern const size_t kvfp8_conform_suite_api_count;
extern const kvfp8_conform_test kvfp8_conform_suite_fp8[];
extern const size_t kvfp8_conform_suite_fp8_count;
extern const kvfp8_conform_test kvfp8_conform_suite_cache[];
extern const size_t kvfp8_conform_suite_cache_count;
extern const kvfp8_conform_test kvfp8_conform_suite_attention[];
extern const size_t kvfp8_conform_suite_attention_count;
extern const kvfp8_conform_test kvfp8_conform_suite_property[];
extern const size_t kvfp8_conform_suite_property_count;
extern const kvfp8_conform_test kvfp8_conform_suite_hash[];
extern const size_t kvfp8_conform_suite_hash_count;
extern const kvfp8_conform_test kvfp8_conform_suite_perf[];
extern const size_t kvfp8_conform_suite_perf_count;

/* ---- the child (harness.c) ------------------------------------------------------------- */

/* Opens `backend` (kvfp8_backend_load), runs one test under cmocka, closes it, and
 * returns the child's exit status (KVFP8_CONFORM_EXIT_*). */
int kvfp8_conform_run_one(const kvfp8_conform_test *t, const char *backend);
/* Opens `backend` and writes what it claims to the result channel as "detail" lines
 * ("claims OP: ..."); returns KVFP8_CONFORM_EXIT_PASS, _NOT_SUPPORTED (not available
 * here) or _LOAD_ERROR, the reason on the channel. */
int kvfp8_conform_probe(const char *backend);

/* ---- inside a test ----------------------------------------------------------------------- */

kvfp8_backend *kvfp8_conform_backend(void);
/* 1 when the backend's `supports` accepts q. */
int kvfp8_conform_claims(const kvfp8_backend_query *q);
/* Records the reason and ends the test as NOT_SUPPORTED (cmocka skip). */
void kvfp8_conform_not_supported(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* One failure line (the first KVFP8_CONFORM_MAX_LINES go to the channel; all count). */
#define KVFP8_CONFORM_MAX_LINES 12
void kvfp8_conform_failure(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
size_t kvfp8_conform_failure_count(void);
/* Fails the test (cmocka fail_msg) when any failure line was recorded. */
void kvfp8_conform_check_failures(void);
/* A status from the backend that must be KVFP8_OK: otherwise a failure line
 * "<what> => <status> (<reason>), expected ok" and the test ends. */
void kvfp8_conform_expect_ok(kvfp8_status st, const char *what);
void kvfp8_conform_detail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
void kvfp8_conform_metric(const char *key, double value);
/* Adds one error/bound ratio to the test's histogram and maximum ("max_ratio"). */
void kvfp8_conform_ratio(double ratio);

/* ---- shared helpers (harness.c) ------------------------------------------------------- */

/* xorshift64*: reproducible inputs, the same in every backend's run. */
uint64_t kvfp8_conform_rand(uint64_t *state);
/* Uniform in [-scale, scale). */
float kvfp8_conform_frand(uint64_t *state, float scale);
/* Every defined rules table, in a fixed order: returns 0 past the end. */
int kvfp8_conform_rules_at(int index, kvfp8_fp8_rules *out);
/* "e4m3fn/sat/nvidia" */
const char *kvfp8_conform_rules_label(const kvfp8_fp8_rules *r, char *buf, size_t cap);
/* Bits of a float and back. */
uint32_t kvfp8_conform_f32_bits(float x);
float kvfp8_conform_f32(uint32_t bits);
/* 1 when the two floats are the same value: equal bits, or both NaN (a NaN's payload
 * is not part of any dequantization contract). */
int kvfp8_conform_same_float(float a, float b);

#endif
