/* Stop strings and UTF-8 safety for streamed text. Contract: src/engine/text_stream.h. */
#define _GNU_SOURCE /* memmem */
#include "engine/text_stream.h"

#include "base/buf.h"

#include <stdlib.h>
#include <string.h>

static const char REPLACEMENT[] = "\xef\xbf\xbd"; /* U+FFFD */

void text_stream_init(struct text_stream *s, const char *const *stop, size_t n_stop)
{
    memset(s, 0, sizeof *s);
    s->stop = stop;
    s->n_stop = n_stop;
}

void text_stream_free(struct text_stream *s)
{
    buf_free(&s->raw);
    buf_free(&s->out);
    memset(s, 0, sizeof *s);
}

/* The length of the UTF-8 sequence at p: 1..4 when valid, 0 when invalid, -1 when valid so
 * far but cut short by the end of the n bytes. Overlong forms and surrogates are invalid. */
static int utf8_sequence(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    int len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return 0;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return -1;
        unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xbf;
        if (p[i] < lo_i || p[i] > hi_i) return 0;
    }
    return len;
}

size_t utf8_complete_prefix(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        int len = utf8_sequence((const unsigned char *)p + i, n - i);
        if (len < 0) break;
        i += len > 0 ? (size_t)len : 1;
    }
    return i;
}

/* Copies src[0..n) to dst with invalid sequences as U+FFFD; unless final, stops before an
 * unfinished sequence at the end (a cut-short one at the very end of a final text is one
 * character). Writes *used, the source bytes consumed; returns the bytes written. */
static size_t sanitize(char *dst, const char *src, size_t n, bool final, size_t *used)
{
    size_t i = 0, o = 0;
    while (i < n) {
        int len = utf8_sequence((const unsigned char *)src + i, n - i);
        if (len > 0) {
            memcpy(dst + o, src + i, (size_t)len);
            o += (size_t)len;
            i += (size_t)len;
            continue;
        }
        if (len < 0 && !final) break;
        memcpy(dst + o, REPLACEMENT, 3);
        o += 3;
        i += len < 0 ? n - i : 1;
    }
    dst[o] = 0;
    *used = i;
    return o;
}

size_t utf8_sanitize(char *dst, const char *src, size_t n)
{
    size_t used;
    return sanitize(dst, src, n, true, &used);
}

/* Turns raw[raw_done..end) into valid UTF-8 in s->out. Unless final, an unfinished sequence
 * at the end is left for later. */
static kiln_status convert(struct text_stream *s, size_t end, bool final, const char **text,
                           size_t *len)
{
    size_t n = end - s->raw_done, used;
    /* Each raw byte becomes at most 3 output bytes (an invalid byte -> U+FFFD). */
    s->out.len = 0;
    if (!buf_reserve(&s->out, 3 * n)) return KILN_ENOMEM;
    s->out.len = sanitize(s->out.p, s->raw.p ? s->raw.p + s->raw_done : "", n, final, &used);
    s->raw_done += used;
    *text = s->out.p;
    *len = s->out.len;
    return KILN_OK;
}

/* The length of the longest tail of raw[from..) that is a proper prefix of a stop string. */
static size_t stop_prefix_tail(const struct text_stream *s, size_t from)
{
    size_t hold = 0, avail = s->raw.len - from;
    for (size_t i = 0; i < s->n_stop; i++) {
        size_t sl = strlen(s->stop[i]);
        for (size_t k = sl ? sl - 1 : 0; k > hold; k--)
            if (k <= avail && memcmp(s->raw.p + s->raw.len - k, s->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

kiln_status text_stream_push(struct text_stream *s, const char *bytes, size_t n,
                             const char **text, size_t *len)
{
    *text = "";
    *len = 0;
    if (s->stopped) return KILN_OK;
    if (!buf_append(&s->raw, bytes, n)) return KILN_ENOMEM;
    /* Any stop string must begin at or after raw_done: text before it was handed out only
     * once it could no longer start one. */
    size_t first = s->raw.len;
    for (size_t i = 0; i < s->n_stop; i++) {
        size_t sl = strlen(s->stop[i]);
        if (!sl || s->raw.len - s->raw_done < sl) continue;
        const char *hit = memmem(s->raw.p + s->raw_done, s->raw.len - s->raw_done, s->stop[i], sl);
        if (hit && (size_t)(hit - s->raw.p) < first) first = (size_t)(hit - s->raw.p);
    }
    if (first < s->raw.len) {
        s->stopped = true;
        s->raw.len = first; /* nothing after the stop string counts */
        s->raw.p[first] = 0;
        return convert(s, first, true, text, len);
    }
    return convert(s, s->raw.len - stop_prefix_tail(s, s->raw_done), false, text, len);
}

kiln_status text_stream_finish(struct text_stream *s, const char **text, size_t *len)
{
    return convert(s, s->raw.len, true, text, len);
}
