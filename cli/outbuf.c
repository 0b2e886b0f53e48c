/* In-memory output buffer for the CLI (see outbuf.h). */
#include "outbuf.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void kvfp8_outbuf_init(kvfp8_outbuf *b) { memset(b, 0, sizeof *b); }

static int reserve(kvfp8_outbuf *b, size_t extra) {
    if (b->failed)
        return 0;
    if (b->len + extra + 1 <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown) {
        b->failed = 1;
        return 0;
    }
    b->data = grown;
    b->cap = cap;
    return 1;
}

void kvfp8_outbuf_write(kvfp8_outbuf *b, const void *data, size_t len) {
    if (!reserve(b, len))
        return;
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

void kvfp8_outbuf_printf(kvfp8_outbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0 || !reserve(b, (size_t)need)) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)need + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)need;
}

int kvfp8_outbuf_flush(kvfp8_outbuf *b, FILE *f) {
    int ok = !b->failed && fwrite(b->data ? b->data : "", 1, b->len, f) == b->len && fflush(f) == 0;
    kvfp8_outbuf_free(b);
    return ok;
}

void kvfp8_outbuf_free(kvfp8_outbuf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}
