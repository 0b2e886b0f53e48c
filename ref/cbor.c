/* cbor2.dumps(obj, canonical=True), byte for byte, for the object shapes of vLLM's
 * hash inputs.  RFC 8949 shortest-form heads throughout; `canonical` only reorders
 * map keys and shrinks floats, and neither occurs here.  cbor2 writes a tuple as an
 * array, int >= 0 as major type 0 and int < 0 as major type 1 with argument -1-n,
 * bytes as major type 2, str as major type 3 (UTF-8), None as simple value 22
 * (0xf6).  No value sharing or string references: cbor2 leaves both off unless
 * asked, so a repeated object is written again in full. */
#include "serialize.h"

/* Major type in the top 3 bits, then the argument in the shortest form. */
static void put_head(kvfp8_writer *w, uint8_t major, uint64_t arg) {
    uint8_t h[9];
    size_t n;
    major = (uint8_t)(major << 5);
    if (arg < 24) {
        h[0] = (uint8_t)(major | arg), n = 1;
    } else if (arg < 0x100) {
        h[0] = major | 24, h[1] = (uint8_t)arg, n = 2;
    } else if (arg < 0x10000) {
        h[0] = major | 25, n = 3;
    } else if (arg < 0x100000000ull) {
        h[0] = major | 26, n = 5;
    } else {
        h[0] = major | 27, n = 9;
    }
    if (n > 2)
        for (size_t i = 1; i < n; i++) /* big-endian argument */
            h[i] = (uint8_t)(arg >> (8 * (n - 1 - i)));
    kvfp8_writer_put(w, h, n);
}

static void put_int(kvfp8_writer *w, int64_t v) {
    if (v >= 0)
        put_head(w, 0, (uint64_t)v);
    else
        put_head(w, 1, (uint64_t)(-(v + 1))); /* -1-v without overflow at INT64_MIN */
}

const char *kvfp8_cbor_write(kvfp8_writer *w, const kvfp8_obj *o, int depth) {
    switch (o->kind) {
    case KVFP8_OBJ_NONE:
        kvfp8_writer_put(w, "\xf6", 1);
        return NULL;
    case KVFP8_OBJ_INT:
        put_int(w, o->u.i);
        return NULL;
    case KVFP8_OBJ_BYTES:
    case KVFP8_OBJ_STR:
        if (!o->u.bytes.data && o->u.bytes.len)
            return "bytes or str with NULL data";
        if (o->kind == KVFP8_OBJ_STR && !kvfp8_utf8_valid(o->u.bytes.data, o->u.bytes.len))
            return "str is not valid UTF-8";
        put_head(w, o->kind == KVFP8_OBJ_BYTES ? 2 : 3, o->u.bytes.len);
        kvfp8_writer_put(w, o->u.bytes.data, o->u.bytes.len);
        return NULL;
    case KVFP8_OBJ_TUPLE:
        if (o->u.tuple.len && !o->u.tuple.items)
            return "tuple with NULL items";
        if (depth >= KVFP8_SERIALIZE_MAX_DEPTH)
            return "object nested too deep";
        put_head(w, 4, o->u.tuple.len);
        for (size_t i = 0; i < o->u.tuple.len; i++) {
            const char *bad = kvfp8_cbor_write(w, &o->u.tuple.items[i], depth + 1);
            if (bad)
                return bad;
        }
        return NULL;
    case KVFP8_OBJ_INTS:
        if (o->u.ints.len && !o->u.ints.items)
            return "tuple with NULL items";
        put_head(w, 4, o->u.ints.len);
        for (size_t i = 0; i < o->u.ints.len; i++)
            put_int(w, o->u.ints.items[i]);
        return NULL;
    }
    return "object of unknown kind";
}

static kvfp8_status finish(kvfp8_writer *w, const char *bad) {
    if (bad)
        return kvfp8_fail(KVFP8_ERR_INVALID, "cbor: %s", bad);
    return kvfp8_writer_finish(w);
}

kvfp8_status kvfp8_cbor_dumps(const kvfp8_obj *obj, kvfp8_buf *out) {
    if (!obj || !out)
        return kvfp8_fail(KVFP8_ERR_INVALID, "cbor: NULL argument");
    kvfp8_writer w;
    kvfp8_writer_buf(&w, out);
    return finish(&w, kvfp8_cbor_write(&w, obj, 0));
}

kvfp8_status kvfp8_cbor_dumps_to(const kvfp8_obj *obj, uint8_t *dst, size_t cap,
                                 size_t *out_len) {
    if (!obj || !out_len)
        return kvfp8_fail(KVFP8_ERR_INVALID, "cbor: NULL argument");
    kvfp8_writer w;
    kvfp8_writer_to(&w, dst, cap);
    const char *bad = kvfp8_cbor_write(&w, obj, 0);
    *out_len = w.len;
    return finish(&w, bad);
}
