/* libFuzzer target: kvfp8_pickle_dumps round trip through an independent decoder.
 *
 * The fuzz bytes build an object of the kinds in vLLM's hash inputs (fuzz/hash_shape.h),
 * kvfp8 serializes it as pickle protocol 5, and the minimal decoder below reads it
 * back.  The decoder does not just accept what pickle.loads would: it insists on
 * the exact choices CPython's pickler makes, stated here independently of
 * ref/pickle.c —
 *   - ints in the shortest opcode (BININT1 < 256, BININT2 < 65536, BININT in int32,
 *     else LONG1 of minimal two's-complement length);
 *   - str/bytes in the short form below 256 bytes, 4-byte length below 2^32;
 *   - MEMOIZE after every str, bytes and non-empty tuple and nowhere else; BINGET
 *     only for an object equal to a memoized one that CPython caches ("", b"", a
 *     one-character str below U+0100), and always for those;
 *   - framing: a FRAME is never shorter than 4 bytes; a frame under 64 KiB is last
 *     or followed by a payload of >= 64 KiB, which is never framed; unframed bytes
 *     other than such payloads are fewer than 4 and likewise followed;
 *   - nothing after STOP.
 * Then the decoded tree must equal the original.  Any difference aborts with the
 * input and output in hex.  The chain's fast path is also checked against the
 * general serializer for the pickle algorithms.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Iinclude -Iref fuzz/fuzz_pickle.c \
 *          ref/pickle.c ref/cbor.c ref/serialize.c ref/hash.c ref/status.c \
 *          -lcrypto -lxxhash -lm -o fuzz_pickle
 * Run:   ./fuzz_pickle -max_total_time=20 fuzz/corpus/pickle */
#include <stddef.h>
#include <stdint.h>

#include "hash_shape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BIG 65536u /* pickle's FRAME_SIZE_TARGET */

typedef struct {
    const uint8_t *p;
    size_t n, at;
    const char *err;
    dtree t;
    size_t *stack; /* node indices; MARK is SIZE_MAX */
    size_t depth, cap;
    size_t *memo; /* node index of each memo slot */
    size_t n_memo, cap_memo;
    /* framing */
    size_t frame_end;        /* 0 when not inside a frame */
    size_t last_frame_len;   /* length of the frame that just ended, or 0 */
    size_t unframed_run;     /* small unframed bytes since the last large payload */
    int after_short_frame;   /* a frame under 64 KiB just ended */
    int memo_pending;        /* the last object pushed still needs its MEMOIZE */
} pdec;

static void push(pdec *d, size_t v) {
    if (d->depth == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 64;
        d->stack = realloc(d->stack, d->cap * sizeof *d->stack);
        if (!d->stack)
            abort();
    }
    d->stack[d->depth++] = v;
}

static int need(pdec *d, size_t k) {
    if (d->n - d->at < k) {
        d->err = "truncated";
        return 0;
    }
    if (d->frame_end && d->at + k > d->frame_end) {
        d->err = "opcode straddles a frame end";
        return 0;
    }
    return 1;
}

static uint64_t le(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* CPython's cached singletons, which alone may be written twice as one object. */
static int is_singleton(const dnode *x) {
    if (x->kind == KVFP8_OBJ_BYTES)
        return x->n == 0;
    if (x->kind != KVFP8_OBJ_STR)
        return 0;
    if (x->n == 0 || (x->n == 1 && x->p[0] < 0x80))
        return 1;
    return x->n == 2 && (x->p[0] == 0xc2 || x->p[0] == 0xc3);
}

static int same_payload(const dnode *a, const dnode *b) {
    return a->kind == b->kind && a->n == b->n && (!a->n || !memcmp(a->p, b->p, a->n));
}

static void new_payload(pdec *d, kvfp8_obj_kind kind, size_t len, int op_short, int framed) {
    if (!need(d, len))
        return;
    if (op_short != (len < 256)) {
        d->err = "str/bytes not in the shortest form";
        return;
    }
    if (framed && len >= BIG) {
        d->err = "payload of >= 64 KiB inside a frame";
        return;
    }
    dnode x = {kind, 0, d->p + d->at, len, 0};
    d->at += len;
    /* An equal singleton already in the memo must have been a BINGET. */
    if (is_singleton(&x))
        for (size_t i = 0; i < d->n_memo; i++)
            if (same_payload(&d->t.nodes[d->memo[i]], &x)) {
                d->err = "a repeated singleton written again instead of BINGET";
                return;
            }
    push(d, dtree_add(&d->t, x));
    d->memo_pending = 1;
}

static void make_tuple(pdec *d, size_t n) {
    if (d->depth < n) {
        d->err = "tuple of missing items";
        return;
    }
    size_t first = d->t.n_kids;
    for (size_t i = d->depth - n; i < d->depth; i++) {
        if (d->stack[i] == SIZE_MAX) {
            d->err = "MARK inside a tuple";
            return;
        }
        dtree_kid(&d->t, d->stack[i]);
    }
    d->depth -= n;
    dnode x = {KVFP8_OBJ_TUPLE, 0, NULL, n, first};
    push(d, dtree_add(&d->t, x));
    d->memo_pending = n > 0;
}

/* Decodes one pickle; returns the root node index, or SIZE_MAX with d->err set. */
static size_t decode(pdec *d) {
    if (d->n < 2 || d->p[0] != 0x80 || d->p[1] != 5) {
        d->err = "no PROTO 5";
        return SIZE_MAX;
    }
    d->at = 2;
    int stopped = 0;
    while (!d->err && !stopped) {
        if (d->frame_end && d->at == d->frame_end) {
            d->frame_end = 0;
            d->after_short_frame = d->last_frame_len < BIG;
        }
        if (d->at >= d->n) {
            d->err = "no STOP";
            break;
        }
        uint8_t op = d->p[d->at];
        int framed = d->frame_end != 0;
        if (!framed && op == 0x95) { /* FRAME */
            if (d->unframed_run) {
                d->err = "unframed bytes followed by a frame";
                break;
            }
            if (d->after_short_frame) {
                d->err = "a frame under 64 KiB followed by another frame";
                break;
            }
            if (d->n - d->at < 9) {
                d->err = "truncated FRAME";
                break;
            }
            uint64_t len = le(d->p + d->at + 1, 8);
            d->at += 9;
            if (len < 4 || len > d->n - d->at) {
                d->err = "FRAME shorter than 4 bytes or past the end";
                break;
            }
            d->frame_end = d->at + (size_t)len;
            d->last_frame_len = (size_t)len;
            continue;
        }
        if (!framed && d->after_short_frame && op != 'B' && op != 'X') {
            d->err = "a frame under 64 KiB followed by neither a large payload nor the end";
            break;
        }
        if (op != 0x94 && d->memo_pending) {
            d->err = "a str, bytes or tuple without MEMOIZE";
            break;
        }
        size_t op_start = d->at;
        d->at++;
        switch (op) {
        case 0x94: /* MEMOIZE */
            if (!d->memo_pending || !d->depth) {
                d->err = "MEMOIZE not right after a str, bytes or tuple";
                break;
            }
            if (d->n_memo == d->cap_memo) {
                d->cap_memo = d->cap_memo ? 2 * d->cap_memo : 64;
                d->memo = realloc(d->memo, d->cap_memo * sizeof *d->memo);
                if (!d->memo)
                    abort();
            }
            d->memo[d->n_memo++] = d->stack[d->depth - 1];
            d->memo_pending = 0;
            break;
        case 'h': /* BINGET */
        case 'j': { /* LONG_BINGET */
            unsigned w = op == 'h' ? 1 : 4;
            if (!need(d, w))
                break;
            uint64_t idx = le(d->p + d->at, w);
            d->at += w;
            if ((op == 'j') != (idx >= 256) || idx >= d->n_memo) {
                d->err = "bad BINGET index or form";
                break;
            }
            if (!is_singleton(&d->t.nodes[d->memo[idx]])) {
                d->err = "BINGET of an object that is not a CPython singleton";
                break;
            }
            push(d, d->memo[idx]);
            break;
        }
        case '(':
            push(d, SIZE_MAX);
            break;
        case 'N': {
            dnode x = {KVFP8_OBJ_NONE, 0, NULL, 0, 0};
            push(d, dtree_add(&d->t, x));
            break;
        }
        case 'K':
        case 'M':
        case 'J': {
            unsigned w = op == 'K' ? 1 : op == 'M' ? 2 : 4;
            if (!need(d, w))
                break;
            uint64_t u = le(d->p + d->at, w);
            d->at += w;
            int64_t v = op == 'J' ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
            if ((op == 'M' && v < 256) || (op == 'J' && v >= 0 && v < 65536)) {
                d->err = "int not in its shortest opcode";
                break;
            }
            dnode x = {KVFP8_OBJ_INT, v, NULL, 0, 0};
            push(d, dtree_add(&d->t, x));
            break;
        }
        case 0x8a: { /* LONG1 */
            if (!need(d, 1))
                break;
            unsigned w = d->p[d->at++];
            if (w < 1 || w > 8 || !need(d, w)) {
                d->err = d->err ? d->err : "LONG1 outside int64";
                break;
            }
            uint64_t u = le(d->p + d->at, w);
            d->at += w;
            if (w < 8 && (u >> (8 * w - 1)) & 1)
                u |= ~(uint64_t)0 << (8 * w); /* sign-extend */
            int64_t v = (int64_t)u;
            int64_t lim = w > 1 ? ((int64_t)1 << (8 * (w - 1) - 1)) : 0;
            if (v >= INT32_MIN && v <= INT32_MAX) {
                d->err = "LONG1 for an int32 value";
                break;
            }
            if (w > 1 && v >= -lim && v < lim) {
                d->err = "LONG1 longer than needed";
                break;
            }
            dnode x = {KVFP8_OBJ_INT, v, NULL, 0, 0};
            push(d, dtree_add(&d->t, x));
            break;
        }
        case 'C':
        case 0x8c:
            if (need(d, 1)) {
                size_t len = d->p[d->at++];
                new_payload(d, op == 'C' ? KVFP8_OBJ_BYTES : KVFP8_OBJ_STR, len, 1, framed);
            }
            break;
        case 'B':
        case 'X':
            if (need(d, 4)) {
                size_t len = (size_t)le(d->p + d->at, 4);
                d->at += 4;
                new_payload(d, op == 'B' ? KVFP8_OBJ_BYTES : KVFP8_OBJ_STR, len, 0, framed);
            }
            break;
        case ')':
            make_tuple(d, 0);
            break;
        case 0x85:
        case 0x86:
        case 0x87:
            make_tuple(d, (size_t)(op - 0x84));
            break;
        case 't': {
            size_t m = d->depth;
            while (m > 0 && d->stack[m - 1] != SIZE_MAX)
                m--;
            if (m == 0) {
                d->err = "TUPLE without MARK";
                break;
            }
            size_t n = d->depth - m;
            if (n <= 3) {
                d->err = "MARK/TUPLE for a tuple of 0..3 items";
                break;
            }
            make_tuple(d, n);
            if (!d->err) { /* drop the MARK under the new tuple */
                d->stack[d->depth - 2] = d->stack[d->depth - 1];
                d->depth--;
            }
            break;
        }
        case '.':
            stopped = 1;
            break;
        default:
            d->err = "opcode the hash inputs never use";
            break;
        }
        if (d->err || framed)
            continue;
        /* Outside frames: a payload of >= 64 KiB, or the bytes of a frame too short
         * to get a header (< 4 bytes), which must then reach a large payload or the
         * end without another frame. */
        if ((op == 'B' || op == 'X') && d->at - op_start >= 5 + BIG) {
            d->unframed_run = 0;
            d->after_short_frame = 0;
        } else {
            d->unframed_run += d->at - op_start;
            if (d->unframed_run >= 4)
                d->err = "4 or more unframed bytes that are not a large payload";
        }
    }
    if (d->err)
        return SIZE_MAX;
    if (d->at != d->n) {
        d->err = "bytes after STOP";
        return SIZE_MAX;
    }
    if (d->frame_end && d->frame_end != d->at) {
        d->err = "frame runs past STOP";
        return SIZE_MAX;
    }
    if (d->depth != 1 || d->stack[0] == SIZE_MAX) {
        d->err = "not exactly one object on the stack at STOP";
        return SIZE_MAX;
    }
    return d->stack[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static shape s; /* large: static, not on the stack */
    shape_reader r = {data, size, 0};
    kvfp8_obj obj = shape_build(&s, &r);

    /* Buffers live across runs: growing them afresh each time costs more than the
     * checks themselves under the sanitizers. */
    static kvfp8_buf out;
    static pdec d;
    if (kvfp8_pickle_dumps(&obj, &out) != KVFP8_OK)
        shape_die("kvfp8_pickle_dumps failed", data, size, NULL, 0);

    d.p = out.data;
    d.n = out.len;
    d.at = 0;
    d.err = NULL;
    d.t.n_nodes = d.t.n_kids = 0;
    d.depth = d.n_memo = 0;
    d.frame_end = d.last_frame_len = d.unframed_run = 0;
    d.after_short_frame = d.memo_pending = 0;
    size_t root = decode(&d);
    if (root == SIZE_MAX) {
        char msg[200];
        snprintf(msg, sizeof msg, "decoder: %s at byte %zu", d.err, d.at);
        shape_die(msg, data, size, out.data, out.len);
    }
    if (!shape_equal(&obj, &d.t, root))
        shape_die("decoded object differs from the original", data, size, out.data, out.len);

    /* the caller-buffer entry point writes the same bytes */
    static uint8_t copy[2u << 20];
    size_t len = 0;
    if (out.len + 16 <= sizeof copy &&
        (kvfp8_pickle_dumps_to(&obj, copy, out.len + 16, &len) != KVFP8_OK || len != out.len ||
         memcmp(copy, out.data, len)))
        shape_die("kvfp8_pickle_dumps_to differs from kvfp8_pickle_dumps", data, size, out.data, out.len);

    shape_check_chain(shape_u8(&r) & 1 ? KVFP8_HASH_SHA256 : KVFP8_HASH_XXHASH, &r, data, size);

    return 0;
}
