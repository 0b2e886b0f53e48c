/* The output writer and buffer shared by the pickle and CBOR serializers, and the
 * UTF-8 check that both rely on (see ref/serialize.h). */
#include "serialize.h"

#include <stdlib.h>

void kvfp8_buf_init(kvfp8_buf *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void kvfp8_buf_free(kvfp8_buf *b) {
    free(b->data);
    kvfp8_buf_init(b);
}

void kvfp8_writer_to(kvfp8_writer *w, uint8_t *dst, size_t cap) {
    w->dst = dst;
    w->cap = dst ? cap : 0;
    w->len = 0;
    w->peak = 0;
    w->grow = NULL;
    w->oom = 0;
}

void kvfp8_writer_buf(kvfp8_writer *w, kvfp8_buf *b) {
    b->len = 0;
    w->dst = b->data;
    w->cap = b->cap;
    w->len = 0;
    w->peak = 0;
    w->grow = b;
    w->oom = 0;
}

uint8_t *kvfp8_writer_room(kvfp8_writer *w, size_t n) {
    size_t at = w->len;
    if (n > SIZE_MAX - at) {
        w->oom = 1;
        return NULL;
    }
    w->len = at + n;
    if (w->len > w->peak)
        w->peak = w->len;
    if (w->oom)
        return NULL;
    if (w->len > w->cap) {
        if (!w->grow)
            return NULL;
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len)
            cap = cap > SIZE_MAX / 2 ? w->len : cap * 2;
        uint8_t *d = realloc(w->grow->data, cap);
        if (!d) {
            w->oom = 1;
            return NULL;
        }
        w->grow->data = d;
        w->grow->cap = cap;
        w->dst = d;
        w->cap = cap;
    }
    if (w->grow)
        w->grow->len = w->len;
    return w->dst + at;
}

void kvfp8_writer_put(kvfp8_writer *w, const void *p, size_t n) {
    uint8_t *d = kvfp8_writer_room(w, n);
    if (d && n)
        memcpy(d, p, n);
}

kvfp8_status kvfp8_writer_finish(const kvfp8_writer *w) {
    if (w->oom)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "serializer: out of memory");
    if (w->peak > w->cap)
        return kvfp8_fail(KVFP8_ERR_EXHAUSTED,
                          "serializer: output needs %zu bytes, the buffer holds %zu",
                          w->peak, w->cap);
    return KVFP8_OK;
}

int kvfp8_utf8_valid(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1fu, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0fu, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07u, min = 0x10000;
        } else {
            return 0; /* continuation byte, C0/C1 overlong lead, or F5..FF */
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        /* Overlong forms, UTF-16 surrogates (which str.encode refuses) and code
         * points past Unicode's end are all ill-formed. */
        if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return 0;
        i += n + 1;
    }
    return 1;
}
