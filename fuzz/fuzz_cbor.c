/* libFuzzer target: kvfp8_cbor_dumps round trip through an independent decoder.
 *
 * The fuzz bytes build an object of the kinds in vLLM's hash inputs (fuzz/hash_shape.h),
 * kvfp8 serializes it as cbor2.dumps(obj, canonical=True) would, and the minimal
 * decoder below reads it back, insisting on what cbor2 writes for these types
 * (stated here independently of ref/cbor.c): definite lengths only, every head in
 * its shortest form (RFC 8949 preferred serialization), ints as major types 0/1,
 * bytes 2, UTF-8 text 3, tuples as arrays 4, None as 0xf6, and nothing after the
 * one top-level item.  The decoded tree must equal the original; any difference
 * aborts with the input and output in hex.  The chain's fast path is also checked
 * against the general serializer for the CBOR algorithms.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Iinclude -Iref fuzz/fuzz_cbor.c \
 *          ref/pickle.c ref/cbor.c ref/serialize.c ref/hash.c ref/status.c \
 *          -lcrypto -lxxhash -lm -o fuzz_cbor
 * Run:   ./fuzz_cbor -max_total_time=20 fuzz/corpus/cbor */
#include <stddef.h>
#include <stdint.h>

#include "hash_shape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *p;
    size_t n, at;
    const char *err;
    dtree t;
} cdec;

/* Reads a head; returns its major type, or -1 with d->err set. */
static int head(cdec *d, uint64_t *arg) {
    if (d->at >= d->n) {
        d->err = "truncated head";
        return -1;
    }
    uint8_t b = d->p[d->at++];
    int major = b >> 5;
    unsigned info = b & 31;
    if (major == 7) {
        if (b != 0xf6) {
            d->err = "simple value other than null";
            return -1;
        }
        *arg = 0;
        return 7;
    }
    if (info < 24) {
        *arg = info;
        return major;
    }
    if (info > 27) {
        d->err = "indefinite length or reserved additional info";
        return -1;
    }
    unsigned w = 1u << (info - 24);
    if (d->n - d->at < w) {
        d->err = "truncated argument";
        return -1;
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < w; i++)
        v = v << 8 | d->p[d->at++];
    /* Shortest form: the argument must not fit the next smaller encoding. */
    static const uint64_t floor_of[4] = {24, 0x100, 0x10000, 0x100000000ull};
    if (v < floor_of[info - 24]) {
        d->err = "head not in its shortest form";
        return -1;
    }
    *arg = v;
    return major;
}

static size_t item(cdec *d, int depth) {
    uint64_t arg;
    int major = head(d, &arg);
    if (major < 0)
        return SIZE_MAX;
    dnode x = {KVFP8_OBJ_NONE, 0, NULL, 0, 0};
    switch (major) {
    case 0:
    case 1:
        if (arg > (uint64_t)INT64_MAX) {
            d->err = "int outside int64";
            return SIZE_MAX;
        }
        x.kind = KVFP8_OBJ_INT;
        x.i = major == 0 ? (int64_t)arg : -1 - (int64_t)arg;
        break;
    case 2:
    case 3:
        if (arg > d->n - d->at) {
            d->err = "payload past the end";
            return SIZE_MAX;
        }
        x.kind = major == 2 ? KVFP8_OBJ_BYTES : KVFP8_OBJ_STR;
        x.p = d->p + d->at;
        x.n = (size_t)arg;
        d->at += (size_t)arg;
        break;
    case 4: {
        if (depth > 100 || arg > d->n - d->at) { /* every item takes a byte at least */
            d->err = "array too deep or longer than the input";
            return SIZE_MAX;
        }
        /* Children first (depth first), then their indices in one run of the kid
         * list: nested arrays append their own runs while this one is read, so
         * the indices wait on a small stack of their own. */
        size_t n = (size_t)arg;
        size_t local[64], *tmp = n <= 64 ? local : malloc(n * sizeof *tmp);
        if (!tmp)
            abort();
        for (size_t i = 0; i < n; i++) {
            tmp[i] = item(d, depth + 1);
            if (tmp[i] == SIZE_MAX) {
                if (tmp != local)
                    free(tmp);
                return SIZE_MAX;
            }
        }
        x.kind = KVFP8_OBJ_TUPLE;
        x.n = n;
        x.children = d->t.n_kids;
        for (size_t i = 0; i < n; i++)
            dtree_kid(&d->t, tmp[i]);
        if (tmp != local)
            free(tmp);
        break;
    }
    case 7:
        break; /* None */
    default:
        d->err = "major type the hash inputs never use (map or tag)";
        return SIZE_MAX;
    }
    return dtree_add(&d->t, x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static shape s; /* large: static, not on the stack */
    shape_reader r = {data, size, 0};
    kvfp8_obj obj = shape_build(&s, &r);

    /* Buffers live across runs: growing them afresh each time costs more than the
     * checks themselves under the sanitizers. */
    static kvfp8_buf out;
    static cdec d;
    if (kvfp8_cbor_dumps(&obj, &out) != KVFP8_OK)
        shape_die("kvfp8_cbor_dumps failed", data, size, NULL, 0);

    d.p = out.data;
    d.n = out.len;
    d.at = 0;
    d.err = NULL;
    d.t.n_nodes = d.t.n_kids = 0;
    size_t root = item(&d, 0);
    if (root != SIZE_MAX && d.at != d.n)
        d.err = "bytes after the item";
    if (d.err) {
        char msg[200];
        snprintf(msg, sizeof msg, "decoder: %s at byte %zu", d.err, d.at);
        shape_die(msg, data, size, out.data, out.len);
    }
    if (!shape_equal(&obj, &d.t, root))
        shape_die("decoded object differs from the original", data, size, out.data, out.len);

    static uint8_t copy[2u << 20];
    size_t len = 0;
    if (out.len <= sizeof copy &&
        (kvfp8_cbor_dumps_to(&obj, copy, out.len, &len) != KVFP8_OK || len != out.len ||
         memcmp(copy, out.data, len)))
        shape_die("kvfp8_cbor_dumps_to differs from kvfp8_cbor_dumps", data, size, out.data, out.len);

    shape_check_chain(shape_u8(&r) & 1 ? KVFP8_HASH_SHA256_CBOR : KVFP8_HASH_XXHASH_CBOR, &r, data,
                      size);

    return 0;
}
