/* Stop strings and UTF-8 safety for streamed text. Contract: src/engine/text_stream.h. */
#define _GNU_SOURCE /* memmem */
#include "engine/text_stream.h"

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
    free(s->raw);
    free(s->out);
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

size_t utf8_sanitize(char *dst, const char *src, size_t n)
{
    size_t i = 0, o = 0;
    while (i < n) {
        int len = utf8_sequence((const unsigned char *)src + i, n - i);
        if (len > 0) {
            memcpy(dst + o, src + i, (size_t)len);
            o += (size_t)len;
            i += (size_t)len;
        } else {
            memcpy(dst + o, REPLACEMENT, 3);
            o += 3;
            i += len < 0 ? n - i : 1;
        }
    }
    dst[o] = 0;
    return o;
}

static bool reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    char *p = realloc(*buf, c);
    if (!p) return false;
    *buf = p;
    *cap = c;
    return true;
}

/* Turns raw[raw_done..end) into valid UTF-8 in s->out. Unless final, an unfinished sequence
 * at the end is left for later. */
static kiln_status convert(struct text_stream *s, size_t end, bool final, const char **text,
                           size_t *len)
{
    size_t n = end - s->raw_done;
    /* Each raw byte becomes at most 3 output bytes (an invalid byte -> U+FFFD). */
    if (!reserve(&s->out, &s->out_cap, 3 * n + 1)) return KILN_ENOMEM;
    const unsigned char *p = (const unsigned char *)s->raw + s->raw_done;
    size_t i = 0, o = 0;
    while (i < n) {
        int seq = utf8_sequence(p + i, n - i);
        if (seq > 0) {
            memcpy(s->out + o, p + i, (size_t)seq);
            o += (size_t)seq;
            i += (size_t)seq;
            continue;
        }
        if (seq < 0 && !final) break;
        memcpy(s->out + o, REPLACEMENT, 3);
        o += 3;
        i += seq < 0 ? n - i : 1; /* a cut-short sequence at the very end is one character */
    }
    s->raw_done += i;
    s->out[o] = 0;
    *text = s->out;
    *len = o;
    return KILN_OK;
}

/* The length of the longest tail of raw[from..) that is a proper prefix of a stop string. */
static size_t stop_prefix_tail(const struct text_stream *s, size_t from)
{
    size_t hold = 0, avail = s->raw_len - from;
    for (size_t i = 0; i < s->n_stop; i++) {
        size_t sl = strlen(s->stop[i]);
        for (size_t k = sl ? sl - 1 : 0; k > hold; k--)
            if (k <= avail && memcmp(s->raw + s->raw_len - k, s->stop[i], k) == 0) {
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
    if (!reserve(&s->raw, &s->raw_cap, s->raw_len + n + 1)) return KILN_ENOMEM;
    memcpy(s->raw + s->raw_len, bytes, n);
    s->raw_len += n;
    /* Any stop string must begin at or after raw_done: text before it was handed out only
     * once it could no longer start one. */
    size_t first = s->raw_len;
    for (size_t i = 0; i < s->n_stop; i++) {
        size_t sl = strlen(s->stop[i]);
        if (!sl || s->raw_len - s->raw_done < sl) continue;
        const char *hit = memmem(s->raw + s->raw_done, s->raw_len - s->raw_done, s->stop[i], sl);
        if (hit && (size_t)(hit - s->raw) < first) first = (size_t)(hit - s->raw);
    }
    if (first < s->raw_len) {
        s->stopped = true;
        s->raw_len = first;
        return convert(s, first, true, text, len);
    }
    return convert(s, s->raw_len - stop_prefix_tail(s, s->raw_done), false, text, len);
}

kiln_status text_stream_finish(struct text_stream *s, const char **text, size_t *len)
{
    return convert(s, s->raw_len, true, text, len);
}
