/* A growable in-memory output buffer: commands print into it and write it out only
 * after every input has been validated (no half-written output on bad input). */
#ifndef KVFP8_CLI_OUTBUF_H
#define KVFP8_CLI_OUTBUF_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    char *data;
    size_t len, cap;
    int failed; /* an allocation failed: flush refuses to write a partial answer */
} kvfp8_outbuf;

void kvfp8_outbuf_init(kvfp8_outbuf *b);
void kvfp8_outbuf_printf(kvfp8_outbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void kvfp8_outbuf_write(kvfp8_outbuf *b, const void *data, size_t len);
/* Writes everything and frees the buffer; 1 on success. */
int kvfp8_outbuf_flush(kvfp8_outbuf *b, FILE *f);
void kvfp8_outbuf_free(kvfp8_outbuf *b);

#endif
