/* Internal to ref/: the output writer shared by ref/pickle.c and ref/cbor.c, the
 * pickler state that ref/hash.c drives directly on its fast path, and the
 * branch-free token encoders of that fast path.
 *
 * Not installed: only include/kvfp8/hash.h is public. */
#ifndef KVFP8_REF_SERIALIZE_H
#define KVFP8_REF_SERIALIZE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kvfp8/hash.h"

/* ---- writer -------------------------------------------------------------------- */

/* Writes into a caller buffer (grow == NULL), counting past its end so the caller
 * learns the size needed, or into a growable buffer. */
typedef struct {
    uint8_t *dst;
    size_t cap;
    size_t len; /* may exceed cap when counting */
    size_t peak; /* the most ever written at once: pickle frames shrink at times */
    kvfp8_buf *grow;
    int oom;
} kvfp8_writer;

void kvfp8_writer_to(kvfp8_writer *w, uint8_t *dst, size_t cap);
void kvfp8_writer_buf(kvfp8_writer *w, kvfp8_buf *b);
/* Makes room for n more bytes; returns where to write them, or NULL when counting
 * past a caller buffer or out of memory (the length still advances). */
uint8_t *kvfp8_writer_room(kvfp8_writer *w, size_t n);
void kvfp8_writer_put(kvfp8_writer *w, const void *p, size_t n);
/* OK, NOMEM, or EXHAUSTED (caller buffer too small: w->peak bytes are needed). */
kvfp8_status kvfp8_writer_finish(const kvfp8_writer *w);

/* Nesting deeper than this is refused: hash inputs are three levels deep. */
#define KVFP8_SERIALIZE_MAX_DEPTH 64

/* ---- pickle -------------------------------------------------------------------- */

/* pickle's FRAME_SIZE_TARGET (64 KiB) and FRAME_SIZE_MIN (4): a frame is committed
 * when it reaches the target at an object boundary; one shorter than the minimum
 * loses its FRAME header. */
#define KVFP8_PICKLE_FRAME_TARGET 65536u
#define KVFP8_PICKLE_FRAME_MIN 4u
#define KVFP8_PICKLE_FRAME_HEADER 9u

/* The singletons of CPython that can occur twice in one hash input (see hash.h on
 * identity): memo indices of "" and b"" and of the 256 one-character str below
 * U+0100, 0 meaning "not yet written" (stored as index + 1). */
typedef struct {
    uint32_t str_empty, bytes_empty;
    uint32_t *str1; /* 256 entries, allocated on first use */
} kvfp8_pickle_singletons;

typedef struct {
    kvfp8_writer w;
    int framing;        /* protocol >= 4 frames the output */
    size_t frame_start; /* offset of the open frame's header, or SIZE_MAX */
    uint32_t memo_len;  /* next memo index */
    kvfp8_pickle_singletons single;
    int depth;
    const char *bad; /* why an object could not be written, or NULL */
} kvfp8_pickler;

/* A pickler with the memo starting at `memo_base` (objects already memoized before
 * this point by the caller) and framing off: for writing a part of a pickle. */
void kvfp8_pickler_init_part(kvfp8_pickler *p, kvfp8_writer w, uint32_t memo_base);
/* Writes one object as pickle's save() does (memo, framing included). */
void kvfp8_pickler_save(kvfp8_pickler *p, const kvfp8_obj *obj);
/* Frees the singleton tables; returns the writer's status (or INVALID for a bad
 * object, recorded by kvfp8_pickler_save). */
kvfp8_status kvfp8_pickler_finish(kvfp8_pickler *p, kvfp8_status st);

/* ---- CBOR -------------------------------------------------------------------- */

/* Appends one object in canonical CBOR; returns NULL, or why it cannot be written. */
const char *kvfp8_cbor_write(kvfp8_writer *w, const kvfp8_obj *obj, int depth);

/* ---- byte order -------------------------------------------------------------- */

static inline uint64_t kvfp8_le64(uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap64(v);
#else
    return v;
#endif
}
static inline uint64_t kvfp8_be64(uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return v;
#else
    return __builtin_bswap64(v);
#endif
}

#endif
