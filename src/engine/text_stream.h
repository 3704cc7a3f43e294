/* The text side of generation: appends each token's bytes, finds stop strings, and hands
 * out only text that is final: never the start of a possible stop string, never part of
 * an unfinished UTF-8 sequence, and always valid UTF-8 (invalid bytes become U+FFFD).
 * Contract for src/engine/text_stream.c. One stream per sequence; one thread at a time. */
#ifndef KILN_ENGINE_TEXT_STREAM_H
#define KILN_ENGINE_TEXT_STREAM_H

#include "base/buf.h"
#include "kiln.h"

#include <stdbool.h>
#include <stddef.h>

struct text_stream {
    const char *const *stop; /* not owned */
    size_t n_stop;
    struct buf raw;          /* every byte generated, up to a stop string */
    size_t raw_done;         /* raw bytes already turned into output */
    struct buf out;          /* the last piece handed out (valid UTF-8) */
    bool stopped;            /* a stop string was found; nothing more is accepted */
};

void text_stream_init(struct text_stream *s, const char *const *stop, size_t n_stop);
void text_stream_free(struct text_stream *s);

/* Appends n bytes and sets *text / *len to the text that became final (possibly empty;
 * valid until the next call). Sets s->stopped when a stop string appeared: the text before
 * it is handed out and nothing after. KILN_ENOMEM leaves the stream unchanged. */
kiln_status text_stream_push(struct text_stream *s, const char *bytes, size_t n,
                             const char **text, size_t *len);

/* At the end of generation: hands out whatever was held back (an unfinished UTF-8
 * sequence becomes U+FFFD). Empty after a stop string. */
kiln_status text_stream_finish(struct text_stream *s, const char **text, size_t *len);

/* Bytes of valid UTF-8 at the start of p[0..n): the whole of it unless it ends in an
 * unfinished (but so far valid) sequence. */
size_t utf8_complete_prefix(const char *p, size_t n);

/* Copies src to dst with every invalid or unfinished UTF-8 sequence replaced by U+FFFD;
 * dst needs room for 3 * n + 1 bytes. Returns the bytes written (dst is NUL-terminated). */
size_t utf8_sanitize(char *dst, const char *src, size_t n);

#endif
