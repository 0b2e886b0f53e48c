/* pickle.dumps(obj, protocol=5), byte for byte as CPython writes it, for the object
 * shapes of vLLM's hash inputs: None, int, bytes, str and tuples.
 *
 * The rules (docs/hashing.md has them with sources):
 *  - "\x80\x05" (PROTO 5), then the body in frames, then "." (STOP) in the last frame.
 *  - Framing: a frame opens at the first byte written after PROTO or after a frame
 *    closed, with a 9-byte header FRAME (0x95) + u64 LE length.  At the start of
 *    saving any object, an open frame holding >= 64 KiB is closed.  A closed frame
 *    shorter than 4 bytes is written without its header.  A bytes or str payload of
 *    >= 64 KiB closes the open frame and is written, with its opcode, outside any
 *    frame.
 *  - Memo: every bytes, str and non-empty tuple gets MEMOIZE (0x94) after it, taking
 *    the next memo index; an object already in the memo is written as BINGET (0x68
 *    idx) or LONG_BINGET (0x6a u32 LE).  Ints, None and () are never memoized. */
#include <stdlib.h>

#include "serialize.h"

enum {
    OP_MARK = '(',
    OP_STOP = '.',
    OP_NONE = 'N',
    OP_BININT = 'J',
    OP_BININT1 = 'K',
    OP_BININT2 = 'M',
    OP_LONG1 = 0x8a,
    OP_BINBYTES = 'B',
    OP_SHORT_BINBYTES = 'C',
    OP_BINBYTES8 = 0x8e,
    OP_BINUNICODE = 'X',
    OP_SHORT_BINUNICODE = 0x8c,
    OP_BINUNICODE8 = 0x8d,
    OP_EMPTY_TUPLE = ')',
    OP_TUPLE = 't',
    OP_TUPLE1 = 0x85,
    OP_TUPLE2 = 0x86,
    OP_TUPLE3 = 0x87,
    OP_MEMOIZE = 0x94,
    OP_BINGET = 'h',
    OP_LONG_BINGET = 'j',
    OP_PROTO = 0x80,
    OP_FRAME = 0x95
};

static void put1(kvfp8_pickler *p, uint8_t b);

static void store_le(uint8_t *d, uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; i++)
        d[i] = (uint8_t)(v >> (8 * i));
}

/* ---- framing ------------------------------------------------------------------- */

static int frame_open(const kvfp8_pickler *p) { return p->frame_start != SIZE_MAX; }

/* Every write goes through here so that a frame opens lazily, as in CPython. */
static uint8_t *room(kvfp8_pickler *p, size_t n) {
    if (p->framing && !frame_open(p)) {
        p->frame_start = p->w.len;
        kvfp8_writer_room(&p->w, KVFP8_PICKLE_FRAME_HEADER);
    }
    return kvfp8_writer_room(&p->w, n);
}

static void put1(kvfp8_pickler *p, uint8_t b) {
    uint8_t *d = room(p, 1);
    if (d)
        *d = b;
}

static void put(kvfp8_pickler *p, const void *src, size_t n) {
    uint8_t *d = room(p, n);
    if (d && n)
        memcpy(d, src, n);
}

static void commit_frame(kvfp8_pickler *p) {
    if (!frame_open(p))
        return;
    size_t start = p->frame_start;
    size_t body = p->w.len - start - KVFP8_PICKLE_FRAME_HEADER;
    int stored = !p->w.oom && p->w.peak <= p->w.cap;
    if (body >= KVFP8_PICKLE_FRAME_MIN) {
        if (stored) {
            p->w.dst[start] = OP_FRAME;
            store_le(p->w.dst + start + 1, body, 8);
        }
    } else {
        /* Too short to be worth a header: the bytes move up over it. */
        if (stored)
            memmove(p->w.dst + start, p->w.dst + start + KVFP8_PICKLE_FRAME_HEADER, body);
        p->w.len -= KVFP8_PICKLE_FRAME_HEADER;
        if (p->w.grow)
            p->w.grow->len = p->w.len;
    }
    p->frame_start = SIZE_MAX;
}

/* CPython closes a full frame when it starts saving the next object. */
static void object_boundary(kvfp8_pickler *p) {
    if (frame_open(p) &&
        p->w.len - p->frame_start - KVFP8_PICKLE_FRAME_HEADER >= KVFP8_PICKLE_FRAME_TARGET)
        commit_frame(p);
}

/* ---- memo ---------------------------------------------------------------------- */

static void memo_get(kvfp8_pickler *p, uint32_t idx) {
    if (idx < 256) {
        uint8_t op[2] = {OP_BINGET, (uint8_t)idx};
        put(p, op, 2);
    } else {
        uint8_t op[5] = {OP_LONG_BINGET};
        store_le(op + 1, idx, 4);
        put(p, op, 5);
    }
}

static uint32_t memoize(kvfp8_pickler *p) {
    put1(p, OP_MEMOIZE);
    return p->memo_len++;
}

/* The memo slot of a CPython singleton, or NULL when `o` is not one.  Only
 * singletons can be the same object twice in a hash input (see hash.h). */
static uint32_t *singleton_slot(kvfp8_pickler *p, const kvfp8_obj *o) {
    const uint8_t *s = o->u.bytes.data;
    size_t n = o->u.bytes.len;
    if (o->kind == KVFP8_OBJ_BYTES) {
        /* b"" is always the one empty bytes object.  A one-byte bytes is CPython's
         * cached singleton only on some creation paths (a literal, not a digest or
         * bytes(bytearray)), and bytes in hash inputs are digests: distinct. */
        return n == 0 ? &p->single.bytes_empty : NULL;
    }
    unsigned idx;
    if (n == 0)
        return &p->single.str_empty;
    if (n == 1 && s[0] < 0x80)
        idx = s[0];
    else if (n == 2 && (s[0] == 0xc2 || s[0] == 0xc3))
        idx = ((s[0] & 0x1fu) << 6) | (s[1] & 0x3fu); /* U+0080..U+00FF */
    else
        return NULL;
    if (!p->single.str1) {
        p->single.str1 = calloc(256, sizeof *p->single.str1);
        if (!p->single.str1) {
            p->w.oom = 1;
            return NULL;
        }
    }
    return &p->single.str1[idx];
}

/* ---- objects ------------------------------------------------------------------- */

static void save_int(kvfp8_pickler *p, int64_t v) {
    uint8_t b[10];
    if (v >= 0 && v < 256) {
        b[0] = OP_BININT1, b[1] = (uint8_t)v;
        put(p, b, 2);
    } else if (v >= 0 && v < 65536) {
        b[0] = OP_BININT2;
        store_le(b + 1, (uint64_t)v, 2);
        put(p, b, 3);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        b[0] = OP_BININT;
        store_le(b + 1, (uint64_t)v, 4);
        put(p, b, 5);
    } else {
        /* LONG1: the shortest little-endian two's complement that holds v. */
        unsigned n = 8;
        while (n > 1) {
            int64_t lo = -((int64_t)1 << (8 * (n - 1) - 1));
            int64_t hi = ((int64_t)1 << (8 * (n - 1) - 1)) - 1;
            if (v < lo || v > hi)
                break;
            n--;
        }
        b[0] = OP_LONG1, b[1] = (uint8_t)n;
        store_le(b + 2, (uint64_t)v, n);
        put(p, b, 2 + n);
    }
}

static void save_payload(kvfp8_pickler *p, uint8_t op_short, uint8_t op_4, uint8_t op_8,
                         const uint8_t *data, size_t n) {
    uint8_t h[9];
    size_t hn;
    if (n < 256) {
        h[0] = op_short, h[1] = (uint8_t)n, hn = 2;
    } else if ((uint64_t)n <= 0xffffffffu) {
        h[0] = op_4, hn = 5;
        store_le(h + 1, n, 4);
    } else {
        h[0] = op_8, hn = 9;
        store_le(h + 1, n, 8);
    }
    if (p->framing && n >= KVFP8_PICKLE_FRAME_TARGET) {
        /* A large payload travels outside frames; the next write opens a new one. */
        commit_frame(p);
        kvfp8_writer_put(&p->w, h, hn);
        kvfp8_writer_put(&p->w, data, n);
        return;
    }
    put(p, h, hn);
    put(p, data, n);
}

void kvfp8_pickler_save(kvfp8_pickler *p, const kvfp8_obj *o) {
    object_boundary(p);
    switch (o->kind) {
    case KVFP8_OBJ_NONE:
        put1(p, OP_NONE);
        return;
    case KVFP8_OBJ_INT:
        save_int(p, o->u.i);
        return;
    case KVFP8_OBJ_BYTES:
    case KVFP8_OBJ_STR: {
        if (!o->u.bytes.data && o->u.bytes.len) {
            p->bad = "bytes or str with NULL data";
            return;
        }
        if (o->kind == KVFP8_OBJ_STR && !kvfp8_utf8_valid(o->u.bytes.data, o->u.bytes.len)) {
            p->bad = "str is not valid UTF-8";
            return;
        }
        uint32_t *slot = singleton_slot(p, o);
        if (slot && *slot) {
            memo_get(p, *slot - 1);
            return;
        }
        if (o->kind == KVFP8_OBJ_BYTES)
            save_payload(p, OP_SHORT_BINBYTES, OP_BINBYTES, OP_BINBYTES8, o->u.bytes.data,
                         o->u.bytes.len);
        else
            save_payload(p, OP_SHORT_BINUNICODE, OP_BINUNICODE, OP_BINUNICODE8,
                         o->u.bytes.data, o->u.bytes.len);
        uint32_t idx = memoize(p);
        if (slot)
            *slot = idx + 1;
        return;
    }
    case KVFP8_OBJ_TUPLE:
    case KVFP8_OBJ_INTS: {
        size_t n = o->kind == KVFP8_OBJ_TUPLE ? o->u.tuple.len : o->u.ints.len;
        if (n && !(o->kind == KVFP8_OBJ_TUPLE ? (const void *)o->u.tuple.items
                                                : (const void *)o->u.ints.items)) {
            p->bad = "tuple with NULL items";
            return;
        }
        if (n == 0) {
            put1(p, OP_EMPTY_TUPLE); /* () is a singleton pickle never memoizes */
            return;
        }
        if (p->depth >= KVFP8_SERIALIZE_MAX_DEPTH) {
            p->bad = "object nested too deep";
            return;
        }
        p->depth++;
        if (n > 3)
            put1(p, OP_MARK);
        for (size_t i = 0; i < n; i++) {
            if (o->kind == KVFP8_OBJ_TUPLE) {
                kvfp8_pickler_save(p, &o->u.tuple.items[i]);
            } else {
                object_boundary(p);
                save_int(p, o->u.ints.items[i]);
            }
        }
        static const uint8_t small[4] = {0, OP_TUPLE1, OP_TUPLE2, OP_TUPLE3};
        put1(p, n <= 3 ? small[n] : OP_TUPLE);
        memoize(p);
        p->depth--;
        return;
    }
    }
    p->bad = "object of unknown kind";
}

void kvfp8_pickler_init_part(kvfp8_pickler *p, kvfp8_writer w, uint32_t memo_base) {
    memset(p, 0, sizeof *p);
    p->w = w;
    p->framing = 0;
    p->frame_start = SIZE_MAX;
    p->memo_len = memo_base;
}

kvfp8_status kvfp8_pickler_finish(kvfp8_pickler *p, kvfp8_status st) {
    free(p->single.str1);
    p->single.str1 = NULL;
    if (st != KVFP8_OK)
        return st;
    if (p->bad)
        return kvfp8_fail(KVFP8_ERR_INVALID, "pickle: %s", p->bad);
    return kvfp8_writer_finish(&p->w);
}

static kvfp8_status dumps(const kvfp8_obj *obj, kvfp8_writer w, size_t *out_len) {
    kvfp8_pickler p;
    kvfp8_pickler_init_part(&p, w, 0);
    static const uint8_t proto[2] = {OP_PROTO, 5};
    kvfp8_writer_put(&p.w, proto, 2); /* PROTO precedes the first frame */
    p.framing = 1;
    kvfp8_pickler_save(&p, obj);
    put1(&p, OP_STOP);
    commit_frame(&p);
    if (out_len)
        *out_len = p.w.peak > p.w.cap && !p.w.grow ? p.w.peak : p.w.len;
    return kvfp8_pickler_finish(&p, KVFP8_OK);
}

kvfp8_status kvfp8_pickle_dumps(const kvfp8_obj *obj, kvfp8_buf *out) {
    if (!obj || !out)
        return kvfp8_fail(KVFP8_ERR_INVALID, "pickle: NULL argument");
    kvfp8_writer w;
    kvfp8_writer_buf(&w, out);
    return dumps(obj, w, NULL);
}

kvfp8_status kvfp8_pickle_dumps_to(const kvfp8_obj *obj, uint8_t *dst, size_t cap,
                                   size_t *out_len) {
    if (!obj || !out_len)
        return kvfp8_fail(KVFP8_ERR_INVALID, "pickle: NULL argument");
    kvfp8_writer w;
    kvfp8_writer_to(&w, dst, cap);
    return dumps(obj, w, out_len);
}
