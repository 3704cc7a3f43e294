/* A growable byte buffer, kept NUL-terminated so text in it is a C string.
 * Contract for src/base/buf.c. One owner at a time. */
#ifndef KILN_BASE_BUF_H
#define KILN_BASE_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *p; /* NULL until the first append */
    size_t len, cap;
};

/* Makes room for extra more bytes (plus the NUL). False when out of memory (b unchanged). */
bool buf_reserve(struct buf *b, size_t extra);
/* Appends n bytes. False when out of memory (b unchanged). */
bool buf_append(struct buf *b, const void *p, size_t n);
/* Appends formatted text. False when out of memory. */
bool buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(struct buf *b);

#endif
