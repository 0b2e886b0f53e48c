/* kvfp8 — run-time choice of the CPU path for FP8 buffers (include/kvfp8/fp8_cpu.h).
 *
 * This is the only file that decides which instruction-set file may run, so it is
 * compiled without any -m flag: everything it executes runs on any x86-64 (or any
 * CPU at all, where only the portable path exists).  The choice is, in order:
 * a path forced with kvfp8_cpu_impl_force(); else the KVFP8_CPU_IMPL environment
 * variable, read once; else the best path the CPU supports. */
#include <pthread.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp8_impl.h"

static const char *const impl_names[KVFP8_CPU_IMPL_COUNT] = {"auto", "portable", "avx2",
                                                             "avx512"};

static const kvfp8_cpu_kernels kernels_portable = {
    {kvfp8_encode_f32_portable, kvfp8_encode_f16_portable, kvfp8_encode_bf16_portable},
    kvfp8_decode_portable,
};

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KVFP8_HAVE_X86 1
static const kvfp8_cpu_kernels kernels_avx2 = {
    {kvfp8_encode_f32_avx2, kvfp8_encode_f16_avx2, kvfp8_encode_bf16_avx2},
    kvfp8_decode_avx2,
};
static const kvfp8_cpu_kernels kernels_avx512 = {
    {kvfp8_encode_f32_avx512, kvfp8_encode_f16_avx512, kvfp8_encode_bf16_avx512},
    kvfp8_decode_avx512,
};
#endif

static const kvfp8_cpu_kernels *available[KVFP8_CPU_IMPL_COUNT]; /* NULL: not on this CPU */
static kvfp8_cpu_impl default_impl = KVFP8_CPU_PORTABLE;          /* env, else the best */
static int forced = KVFP8_CPU_AUTO;                               /* atomic accesses only */
static unsigned hidden;                /* bit per path hidden by kvfp8_cpu_test_hide; atomic */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void detect(void) {
    available[KVFP8_CPU_PORTABLE] = &kernels_portable;
#ifdef KVFP8_HAVE_X86
    /* libgcc's __builtin_cpu_supports also checks XGETBV, i.e. that the OS saves
     * the AVX / AVX-512 registers, not just that CPUID lists the instructions. */
    __builtin_cpu_init();
    /* F16C through CPUID leaf 1 (ECX bit 29): clang 14 does not know the "f16c"
     * feature name; F16C is VEX-encoded, so the AVX state check above covers it. */
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const int f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29));
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    if (avx2)
        available[KVFP8_CPU_AVX2] = &kernels_avx2;
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        available[KVFP8_CPU_AVX512] = &kernels_avx512;
#endif
    for (int i = KVFP8_CPU_IMPL_COUNT - 1; i > KVFP8_CPU_AUTO; i--)
        if (available[i]) {
            default_impl = (kvfp8_cpu_impl)i;
            break;
        }
    /* A bad or unavailable KVFP8_CPU_IMPL is said once on stderr rather than
     * ignored in silence: whoever set it believes some path is being exercised. */
    const char *env = getenv("KVFP8_CPU_IMPL");
    if (env && *env) {
        kvfp8_cpu_impl want;
        if (kvfp8_cpu_impl_parse(env, &want) != KVFP8_OK)
            fprintf(stderr, "kvfp8: KVFP8_CPU_IMPL=%s is not portable|avx2|avx512|auto; using %s\n",
                    env, impl_names[default_impl]);
        else if (want != KVFP8_CPU_AUTO && !available[want])
            fprintf(stderr, "kvfp8: KVFP8_CPU_IMPL=%s is not available on this CPU; using %s\n",
                    env, impl_names[default_impl]);
        else if (want != KVFP8_CPU_AUTO)
            default_impl = want;
    }
}

static void ensure_init(void) { pthread_once(&init_once, detect); }

const char *kvfp8_cpu_impl_name(kvfp8_cpu_impl impl) {
    return (unsigned)impl < KVFP8_CPU_IMPL_COUNT ? impl_names[impl] : "?";
}

kvfp8_status kvfp8_cpu_impl_parse(const char *name, kvfp8_cpu_impl *out) {
    for (int i = 0; name && i < KVFP8_CPU_IMPL_COUNT; i++)
        if (!strcmp(name, impl_names[i])) {
            *out = (kvfp8_cpu_impl)i;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID, "unknown CPU path '%s' (auto|portable|avx2|avx512)",
                      name ? name : "(null)");
}

/* The kernels of a concrete path if this CPU has it and no test has hidden it. */
static const kvfp8_cpu_kernels *usable(kvfp8_cpu_impl impl) {
    if (__atomic_load_n(&hidden, __ATOMIC_RELAXED) & (1u << impl))
        return NULL;
    return available[impl];
}

void kvfp8_cpu_test_hide(kvfp8_cpu_impl impl, int hide) {
    if (impl <= KVFP8_CPU_PORTABLE || (unsigned)impl >= KVFP8_CPU_IMPL_COUNT)
        return; /* the portable path always exists */
    ensure_init();
    if (hide)
        __atomic_fetch_or(&hidden, 1u << impl, __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(&hidden, ~(1u << impl), __ATOMIC_RELAXED);
}

int kvfp8_cpu_impl_available(kvfp8_cpu_impl impl) {
    if ((unsigned)impl >= KVFP8_CPU_IMPL_COUNT)
        return 0;
    ensure_init();
    return impl == KVFP8_CPU_AUTO || usable(impl) != NULL;
}

kvfp8_status kvfp8_cpu_impl_force(kvfp8_cpu_impl impl) {
    if ((unsigned)impl >= KVFP8_CPU_IMPL_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "unknown CPU path %d", (int)impl);
    ensure_init();
    if (impl != KVFP8_CPU_AUTO && !usable(impl))
        return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "CPU path %s is not available on this CPU",
                          impl_names[impl]);
    __atomic_store_n(&forced, (int)impl, __ATOMIC_RELAXED);
    return KVFP8_OK;
}

kvfp8_cpu_impl kvfp8_cpu_impl_active(void) {
    ensure_init();
    const int f = __atomic_load_n(&forced, __ATOMIC_RELAXED);
    if (f != KVFP8_CPU_AUTO && usable((kvfp8_cpu_impl)f))
        return (kvfp8_cpu_impl)f;
    if (usable(default_impl))
        return default_impl;
    for (int i = KVFP8_CPU_IMPL_COUNT - 1; i > KVFP8_CPU_PORTABLE; i--) /* a test hid it */
        if (usable((kvfp8_cpu_impl)i))
            return (kvfp8_cpu_impl)i;
    return KVFP8_CPU_PORTABLE;
}

const kvfp8_cpu_kernels *kvfp8_cpu_kernels_get(kvfp8_cpu_impl impl) {
    if ((unsigned)impl >= KVFP8_CPU_IMPL_COUNT)
        return NULL;
    if (impl == KVFP8_CPU_AUTO)
        impl = kvfp8_cpu_impl_active();
    ensure_init();
    return usable(impl);
}

static kvfp8_status resolve(kvfp8_cpu_impl impl, const kvfp8_cpu_kernels **k) {
    *k = kvfp8_cpu_kernels_get(impl);
    if (*k)
        return KVFP8_OK;
    if ((unsigned)impl >= KVFP8_CPU_IMPL_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "unknown CPU path %d", (int)impl);
    return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "CPU path %s is not available on this CPU",
                      impl_names[impl]);
}

kvfp8_status kvfp8_fp8_encode_buffer_on(kvfp8_cpu_impl impl, const kvfp8_fp8_rules *r,
                                        kvfp8_source src, const void *in, uint8_t *out,
                                        size_t n, float scale) {
    if (!r)
        return kvfp8_fail(KVFP8_ERR_INVALID, "rules table is NULL");
    if ((unsigned)src >= KVFP8_SOURCE_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "unknown source type %d", (int)src);
    kvfp8_status st = kvfp8_fp8_check_scale(scale);
    if (st != KVFP8_OK)
        return st;
    const kvfp8_cpu_kernels *k;
    if ((st = resolve(impl, &k)) != KVFP8_OK)
        return st;
    if (n == 0)
        return KVFP8_OK;
    if (!in || !out)
        return kvfp8_fail(KVFP8_ERR_INVALID, "NULL buffer for %zu values", n);
    kvfp8_enc_plan plan;
    if ((st = kvfp8_enc_plan_init(&plan, r, src, scale)) != KVFP8_OK)
        return st;
    k->encode[src](&plan, in, out, n);
    return KVFP8_OK;
}

kvfp8_status kvfp8_fp8_decode_buffer_on(kvfp8_cpu_impl impl, kvfp8_format f,
                                        const uint8_t *in, float *out, size_t n, float scale) {
    if ((unsigned)f >= KVFP8_FORMAT_COUNT)
        return kvfp8_fail(KVFP8_ERR_INVALID, "unknown format %d", (int)f);
    kvfp8_status st = kvfp8_fp8_check_scale(scale);
    if (st != KVFP8_OK)
        return st;
    const kvfp8_cpu_kernels *k;
    if ((st = resolve(impl, &k)) != KVFP8_OK)
        return st;
    if (n == 0)
        return KVFP8_OK;
    if (!in || !out)
        return kvfp8_fail(KVFP8_ERR_INVALID, "NULL buffer for %zu values", n);
    kvfp8_dec_plan plan;
    if ((st = kvfp8_dec_plan_init(&plan, f, scale)) != KVFP8_OK)
        return st;
    k->decode(&plan, in, out, n);
    return KVFP8_OK;
}

kvfp8_status kvfp8_fp8_encode_buffer(const kvfp8_fp8_rules *r, kvfp8_source src,
                                     const void *in, uint8_t *out, size_t n, float scale) {
    return kvfp8_fp8_encode_buffer_on(KVFP8_CPU_AUTO, r, src, in, out, n, scale);
}

kvfp8_status kvfp8_fp8_decode_buffer(kvfp8_format f, const uint8_t *in, float *out, size_t n,
                                     float scale) {
    return kvfp8_fp8_decode_buffer_on(KVFP8_CPU_AUTO, f, in, out, n, scale);
}
