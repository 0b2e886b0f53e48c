/* The corruptions a fault site can fire: what each does to KV bytes, scales and
 * opaque data.  The engine decides where a corruption lands (the writer's output,
 * memory after the write, the reader's scales); this file decides what it does. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kvfp8/faults.h"

static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t kvfp8_fault_next(kvfp8_fault_event *ev) {
    ev->rng = mix(ev->rng);
    return ev->rng;
}

static size_t pick(kvfp8_fault_event *ev, size_t n) { return n ? (size_t)(kvfp8_fault_next(ev) % n) : 0; }

static void say(char *what, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void say(char *what, size_t cap, const char *fmt, ...) {
    if (!what || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, cap, fmt, ap);
    va_end(ap);
}

/* Rewrites every FP8 element of the slots from `from` codes to the `to` code of the
 * same value: the bytes a writer using the other encoding would have stored. */
static size_t reencode(kvfp8_kv_cache *c, const int64_t *slots, size_t n, kvfp8_format from, kvfp8_format to) {
    kvfp8_fp8_rules r;
    /* the other writer is ROCm's saturating conversion, which defines both variants */
    if (kvfp8_fp8_rules_get(to, KVFP8_SAT, KVFP8_PROFILE_HIP, &r) != KVFP8_OK)
        return 0;
    const size_t per_slot = (size_t)c->num_kv_heads * (size_t)c->head_size;
    size_t changed = 0;
    for (size_t i = 0; i < n; i++) {
        if (slots[i] < 0)
            continue;
        for (int kv = 0; kv < 2; kv++) {
            uint8_t *p = (kv ? c->value_cache : c->key_cache) + (size_t)slots[i] * per_slot;
            for (size_t j = 0; j < per_slot; j++) {
                const uint8_t code = kvfp8_fp8_encode_f32_ref(&r, kvfp8_fp8_decode(from, p[j]));
                changed += code != p[j];
                p[j] = code;
            }
        }
    }
    return changed;
}

size_t kvfp8_fault_corrupt_kv(kvfp8_fault_event *ev, kvfp8_kv_cache *c, const int64_t *slots, size_t n_slots,
                              char *what, size_t cap) {
    say(what, cap, "nothing to corrupt");
    if (!n_slots)
        return 0;
    const size_t esize = kvfp8_kv_storage_bytes(&c->storage);
    const size_t per_slot = (size_t)c->num_kv_heads * (size_t)c->head_size;
    const int fp8 = c->storage.is_fp8;
    const kvfp8_format f = c->storage.fp8.format;
    switch (ev->action) {
    case KVFP8_FAULT_FNUZ_AS_FN:
    case KVFP8_FAULT_FN_AS_FNUZ: {
        /* the bytes of one E4M3 variant read as the other: the reader's format is the cache's */
        const int as_fn = ev->action == KVFP8_FAULT_FNUZ_AS_FN;
        const kvfp8_format reader = as_fn ? KVFP8_E4M3FN : KVFP8_E4M3FNUZ;
        const kvfp8_format stored = as_fn ? KVFP8_E4M3FNUZ : KVFP8_E4M3FN;
        const char *name = as_fn ? "fnuz-as-fn" : "fn-as-fnuz";
        const char *reader_name = as_fn ? "E4M3FN" : "E4M3FNUZ", *stored_name = as_fn ? "E4M3FNUZ" : "E4M3FN";
        if (!fp8 || f != reader) {
            say(what, cap, "%s: not applicable, the reader does not read %s here", name, reader_name);
            return 0;
        }
        const size_t k = reencode(c, slots, n_slots, reader, stored);
        say(what, cap, "%s: %zu slots stored as %s codes, read as %s (%zu bytes changed)", name, n_slots,
            stored_name, reader_name, k);
        return k;
    }
    case KVFP8_FAULT_BITFLIP:
    case KVFP8_FAULT_NAN: {
        const size_t which = pick(ev, n_slots);
        if (slots[which] < 0)
            return 0;
        const int is_v = (int)(kvfp8_fault_next(ev) & 1);
        const size_t elem = pick(ev, per_slot);
        uint8_t *p = (is_v ? c->value_cache : c->key_cache) + ((size_t)slots[which] * per_slot + elem) * esize;
        const int head = (int)(elem / (size_t)c->head_size), dim = (int)(elem % (size_t)c->head_size);
        uint8_t before[4] = {0}, after[4] = {0};
        memcpy(before, p, esize);
        if (ev->action == KVFP8_FAULT_BITFLIP) {
            const size_t bit = pick(ev, esize * 8);
            p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        } else if (fp8) {
            p[0] = c->storage.fp8.nan_code[0];
        } else if (esize == 2) {
            const uint16_t nan16 = c->storage.dtype == KVFP8_DTYPE_F16 ? 0x7E00 : 0x7FC0;
            memcpy(p, &nan16, 2);
        } else {
            const float nan32 = NAN;
            memcpy(p, &nan32, 4);
        }
        memcpy(after, p, esize);
        uint32_t b = 0, a = 0;
        memcpy(&b, before, esize);
        memcpy(&a, after, esize);
        say(what, cap, "%s: %s of slot %lld head %d dim %d: 0x%0*x -> 0x%0*x", kvfp8_fault_action_name(ev->action),
            is_v ? "V" : "K", (long long)slots[which], head, dim, (int)esize * 2, b, (int)esize * 2, a);
        return memcmp(before, after, esize) != 0;
    }
    default:
        say(what, cap, "%s: not a KV corruption", kvfp8_fault_action_name(ev->action));
        return 0;
    }
}

size_t kvfp8_fault_corrupt_scales(kvfp8_fault_event *ev, float *k, float *v, size_t count, const float *prev_k,
                                  const float *prev_v, char *what, size_t cap) {
    size_t changed = 0;
    say(what, cap, "nothing to corrupt");
    if (!count)
        return 0;
    switch (ev->action) {
    case KVFP8_FAULT_SCALE_ONE: {
        const float k0 = k[0], v0 = v[0];
        for (size_t i = 0; i < count; i++) {
            changed += (k[i] != 1.0f) + (v[i] != 1.0f);
            k[i] = v[i] = 1.0f;
        }
        say(what, cap, "scale-one: %zu of %zu k/v scales reset to 1.0 (k_scale[0] was %g, v_scale[0] %g)", changed,
            2 * count, (double)k0, (double)v0);
        return changed;
    }
    case KVFP8_FAULT_STALE_SCALE:
        for (size_t i = 0; i < count; i++) {
            changed += (memcmp(&k[i], &prev_k[i], sizeof(float)) != 0) + (memcmp(&v[i], &prev_v[i], sizeof(float)) != 0);
            k[i] = prev_k[i];
            v[i] = prev_v[i];
        }
        say(what, cap, "stale-scale: %zu of %zu k/v scales replaced by the values before the last update (k %g, v %g)",
            changed, 2 * count, (double)k[0], (double)v[0]);
        return changed;
    case KVFP8_FAULT_NAN:
    case KVFP8_FAULT_BITFLIP: {
        const size_t i = pick(ev, count);
        const int is_v = (int)(kvfp8_fault_next(ev) & 1);
        float *p = is_v ? &v[i] : &k[i];
        const float before = *p;
        if (ev->action == KVFP8_FAULT_NAN) {
            *p = NAN;
        } else {
            uint32_t bits;
            memcpy(&bits, p, 4);
            bits ^= 1u << pick(ev, 32);
            memcpy(p, &bits, 4);
        }
        say(what, cap, "%s: %s_scale[%zu] %g -> %g", kvfp8_fault_action_name(ev->action), is_v ? "v" : "k", i,
            (double)before, (double)*p);
        return 1;
    }
    default:
        say(what, cap, "%s: not a scale corruption", kvfp8_fault_action_name(ev->action));
        return 0;
    }
}

size_t kvfp8_fault_corrupt_bytes(kvfp8_fault_event *ev, void *buf, size_t len, char *what, size_t cap) {
    if (!len || ev->action != KVFP8_FAULT_BITFLIP) {
        say(what, cap, "%s: nothing to corrupt", kvfp8_fault_action_name(ev->action));
        return 0;
    }
    const size_t bit = pick(ev, len * 8);
    ((uint8_t *)buf)[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    say(what, cap, "bitflip: bit %zu of byte %zu (of %zu)", bit % 8, bit / 8, len);
    return 1;
}
