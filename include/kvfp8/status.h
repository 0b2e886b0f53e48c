/* kvfp8 — status codes shared by every module.
 *
 * Every fallible public function returns one of these.  A function that fails also
 * writes a one-line human-readable reason into the thread-local buffer behind
 * kvfp8_last_error(), so a command-line tool can name the field or argument that
 * was wrong without each caller re-deriving it. */
#ifndef KVFP8_STATUS_H
#define KVFP8_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KVFP8_OK = 0,
    KVFP8_ERR_INVALID = 1,       /* an argument is out of its domain */
    KVFP8_ERR_UNSUPPORTED = 2,   /* a combination the chosen profile/backend does not define */
    KVFP8_ERR_NOMEM = 3,
    KVFP8_ERR_IO = 4,
    KVFP8_ERR_FORMAT = 5,        /* malformed input file or stream */
    KVFP8_ERR_EXHAUSTED = 6,     /* a pool or resource ran out */
    KVFP8_ERR_STATE = 7          /* an operation not valid in the current state */
} kvfp8_status;

/* Short stable name of a status ("ok", "invalid", ...). */
const char *kvfp8_status_name(kvfp8_status s);

/* The reason recorded by the last failing kvfp8 call on this thread ("" if none). */
const char *kvfp8_last_error(void);

/* Records a reason (printf-style) and returns `s`, so callers can write
 * `return kvfp8_fail(KVFP8_ERR_INVALID, "scale must be > 0, got %g", s);`. */
kvfp8_status kvfp8_fail(kvfp8_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
