/* Byte-level BPE as in GPT-2 and llama.cpp: the pre-tokenizer named by tokenizer.ggml.pre
 * splits text with its regexes (PCRE2), each piece's bytes become GPT-2's byte characters,
 * then the pair with the lowest merge rank is merged until none is left.
 * Contract: src/tokenizer/tokenizer.h. */
#include "tokenizer/tokenizer.h"

#include "base/status.h"
#include "tokenizer/pretok_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kiln_status bpe_init_regexes(struct vocab *v, const char *name, const struct gguf_str *regexes,
                             int n, struct kiln_err *err)
{
    snprintf(v->pre_name, sizeof v->pre_name, "%s", name);
    if (n > MAX_PRE_REGEX)
        return kiln_fail(err, KILN_EUNSUPP, "pre-tokenizer '%s': %d regexes, at most %d are "
                         "supported", name, n, MAX_PRE_REGEX);
    for (int i = 0; i < n; i++) {
        int code;
        PCRE2_SIZE at;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)regexes[i].ptr, (PCRE2_SIZE)regexes[i].len,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF |
                                           PCRE2_DOLLAR_ENDONLY,
                                       &code, &at, NULL);
        if (!re)
            return kiln_fail(err, KILN_EFORMAT, "pre-tokenizer '%s': regex %d does not compile "
                             "at %zu", name, i, (size_t)at);
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
        v->pre_regex[v->n_pre_regex++] = re;
    }
    return KILN_OK;
}

kiln_status bpe_init_pre(struct vocab *v, const char *pre, struct kiln_err *err)
{
    const struct pretok *p = pretok_find(pre);
    if (!p)
        return kiln_fail(err, KILN_EUNSUPP, "pre-tokenizer '%s' (tokenizer.ggml.pre) is not "
                         "supported", pre);
    v->ignore_merges = p->ignore_merges;
    v->add_bos = p->add_bos;
    struct gguf_str res[PRETOK_MAX_REGEX];
    int n = 0;
    for (; n < PRETOK_MAX_REGEX && p->regex[n]; n++) res[n] = (struct gguf_str){p->regex[n], strlen(p->regex[n])};
    return bpe_init_regexes(v, pre, res, n, err);
}

void bpe_free_pre(struct vocab *v)
{
    for (int i = 0; i < v->n_pre_regex; i++) pcre2_code_free(v->pre_regex[i]);
    v->n_pre_regex = 0;
}

/* A piece of the input text: [off, off + len). */
struct span {
    size_t off, len;
};

struct spans {
    struct span *items;
    size_t n, cap;
};

static bool spans_push(struct spans *s, size_t off, size_t len)
{
    if (len == 0) return true;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 32;
        struct span *items = realloc(s->items, cap * sizeof *items);
        if (!items) return false;
        s->items = items;
        s->cap = cap;
    }
    s->items[s->n++] = (struct span){off, len};
    return true;
}

/* Splits every span of in by re into matches and the gaps between them. */
static bool split_by(const pcre2_code *re, const char *text, const struct spans *in,
                     struct spans *out, pcre2_match_data *md)
{
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *subject = text + in->items[i].off;
        size_t len = in->items[i].len, pos = 0, gap = 0;
        while (pos < len) {
            int rc = pcre2_match(re, (PCRE2_SPTR)subject, len, pos, 0, md, NULL);
            if (rc < 0) break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            if (ov[1] == ov[0]) { /* empty match: step one character */
                pos = ov[0] + (size_t)utf8_len((unsigned char)subject[ov[0]]);
                continue;
            }
            if (!spans_push(out, in->items[i].off + gap, ov[0] - gap) ||
                !spans_push(out, in->items[i].off + ov[0], ov[1] - ov[0]))
                return false;
            pos = gap = ov[1];
        }
        if (!spans_push(out, in->items[i].off + gap, len - gap)) return false;
    }
    return true;
}

/* UTF-8 of GPT-2's character for byte b: printable Latin-1 maps to itself, the other 68
 * bytes to U+0100.. in order. Returns the length written (1 or 2). */
static int byte_char(unsigned char b, char *out)
{
    unsigned cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
        cp = b;
    else
        cp = 256u + (b <= 32 ? b : b <= 160 ? 33u + (b - 127u) : 67u);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

/* The inverse of byte_char: a token's byte-level characters back to bytes. */
int bpe_token_bytes(const struct gguf_str *t, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < t->len;) {
        unsigned char c = (unsigned char)t->ptr[i];
        int l = utf8_len(c);
        uint32_t cp = c;
        if (l == 2 && i + 1 < t->len) cp = ((c & 0x1fu) << 6) | ((unsigned char)t->ptr[i + 1] & 0x3f);
        else if (l > 2 || (l == 2 && i + 1 >= t->len)) cp = 0xffffffff;
        int byte;
        if (cp >= 256 && cp < 256 + 68) {
            /* the 68 bytes that map above 255, in order: 0-32, 127-160, 173 */
            int k = (int)cp - 256;
            byte = k <= 32 ? k : k <= 66 ? 127 + (k - 33) : 173;
        } else if (cp < 256) {
            byte = (int)cp;
        } else {
            /* not a byte-level character: copy the raw UTF-8 */
            for (int j = 0; j < l && i + (size_t)j < t->len; j++, n++)
                if (n < cap) buf[n] = t->ptr[i + (size_t)j];
            i += (size_t)l;
            continue;
        }
        if (n < cap) buf[n] = (char)byte;
        n++;
        i += (size_t)l;
    }
    return n <= cap ? (int)n : -(int)n;
}

struct symbol {
    int prev, next;
    size_t off, len; /* in the mapped word; len 0 once merged away */
};

/* Merges one mapped word and emits its tokens. */
static bool merge_word(const struct vocab *v, const char *w, size_t wlen, struct tok_out *out)
{
    if (v->ignore_merges) {
        int32_t id = strmap_get(&v->by_text, w, wlen);
        if (id >= 0) {
            tok_push(out, id);
            return true;
        }
    }
    struct symbol *sym = malloc(wlen * sizeof *sym);
    char *pair = malloc(wlen + 1);
    if (!sym || !pair) {
        free(sym);
        free(pair);
        return false;
    }
    int n = 0;
    for (size_t i = 0; i < wlen; n++) {
        size_t l = (size_t)utf8_len((unsigned char)w[i]);
        if (l > wlen - i) l = wlen - i;
        sym[n] = (struct symbol){n - 1, -1, i, l};
        if (n) sym[n - 1].next = n;
        i += l;
    }
    /* Each round merges the lowest-ranked pair (leftmost on ties). Words are short, so a
     * scan per round costs less than keeping a queue. */
    for (;;) {
        int best = -1;
        int32_t best_rank = INT32_MAX;
        for (int i = 0; i >= 0 && sym[i].next >= 0; i = sym[i].next) {
            const struct symbol *a = &sym[i], *b = &sym[a->next];
            memcpy(pair, w + a->off, a->len);
            pair[a->len] = ' ';
            memcpy(pair + a->len + 1, w + b->off, b->len);
            int32_t rank = strmap_get(&v->merges, pair, a->len + 1 + b->len);
            if (rank >= 0 && rank < best_rank) {
                best_rank = rank;
                best = i;
            }
        }
        if (best < 0) break;
        struct symbol *a = &sym[best], *b = &sym[a->next];
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (a->next >= 0) sym[a->next].prev = best;
    }
    for (int i = 0; n > 0 && i >= 0; i = sym[i].next) {
        int32_t id = strmap_get(&v->by_text, w + sym[i].off, sym[i].len);
        if (id >= 0) {
            tok_push(out, id);
            continue;
        }
        for (size_t j = 0; j < sym[i].len; j++) {
            int32_t bid = strmap_get(&v->by_text, w + sym[i].off + j, 1);
            if (bid >= 0) tok_push(out, bid);
        }
    }
    free(sym);
    free(pair);
    return true;
}

void bpe_tokenize(const struct vocab *v, const char *text, size_t len, struct tok_out *out)
{
    struct spans a = {0}, b = {0};
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    char *word = malloc(2 * len + 1);
    if (!md || !word || !spans_push(&a, 0, len)) goto oom;
    for (int r = 0; r < v->n_pre_regex; r++) {
        if (!split_by(v->pre_regex[r], text, &a, &b, md)) goto oom;
        struct spans t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < a.n; i++) {
        size_t wlen = 0;
        for (size_t j = 0; j < a.items[i].len; j++)
            wlen += (size_t)byte_char((unsigned char)text[a.items[i].off + j], word + wlen);
        if (!merge_word(v, word, wlen, out)) goto oom;
    }
    goto done;
oom:
    out->oom = true;
done:
    free(a.items);
    free(b.items);
    free(word);
    if (md) pcre2_match_data_free(md);
}
