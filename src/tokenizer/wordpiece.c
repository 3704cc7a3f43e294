/* WordPiece (BERT): the BERT normalizer and pre-tokenizer as Hugging Face's tokenizers run
 * them (control characters dropped, accents stripped through NFD, lowercased, CJK characters
 * and punctuation split out, whitespace splits words), then greedy longest-match-first
 * subwords. The vocabulary is in llama.cpp's GGUF form: a word-initial piece starts with
 * U+2581, a continuation piece has no "##". Contract: src/tokenizer/tokenizer.h. */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

enum { MAX_WORD_CHARS = 100 }; /* longer words become [UNK], as in BERT */

static bool is_control(utf8proc_int32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r') return false;
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
           cat == UTF8PROC_CATEGORY_CS || cat == UTF8PROC_CATEGORY_CO ||
           cat == UTF8PROC_CATEGORY_CN;
}

static bool is_whitespace(utf8proc_int32_t c)
{
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return true;
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL ||
           cat == UTF8PROC_CATEGORY_ZP;
}

static bool is_punctuation(utf8proc_int32_t c)
{
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
        (c >= 123 && c <= 126))
        return true;
    utf8proc_category_t cat = utf8proc_category(c);
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

static bool is_cjk(utf8proc_int32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* The normalized text being cut into words: bytes, and where each word ends. */
struct words {
    char *text;
    size_t len, cap;
    size_t *ends; /* [n] end offset of each word in text */
    size_t n, ends_cap;
    size_t word_start;
    bool oom;
};

static void put_char(struct words *w, utf8proc_int32_t c)
{
    if (w->len + 4 > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        char *p = realloc(w->text, cap);
        if (!p) {
            w->oom = true;
            return;
        }
        w->text = p;
        w->cap = cap;
    }
    w->len += (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)w->text + w->len);
}

static void end_word(struct words *w)
{
    if (w->len == w->word_start || w->oom) return;
    if (w->n == w->ends_cap) {
        size_t cap = w->ends_cap ? w->ends_cap * 2 : 64;
        size_t *p = realloc(w->ends, cap * sizeof *p);
        if (!p) {
            w->oom = true;
            return;
        }
        w->ends = p;
        w->ends_cap = cap;
    }
    w->ends[w->n++] = w->len;
    w->word_start = w->len;
}

/* One character after cleaning: for uncased models accents stripped and lowercased;
 * punctuation alone. */
static void add_char(struct words *w, utf8proc_int32_t c, bool uncased)
{
    utf8proc_int32_t dec[8];
    int last_boundclass = 0;
    utf8proc_ssize_t n = uncased ? utf8proc_decompose_char(c, dec, 8, UTF8PROC_DECOMPOSE,
                                                           &last_boundclass)
                                 : 0;
    if (n < 1 || n > 8) {
        dec[0] = c;
        n = 1;
    }
    for (utf8proc_ssize_t i = 0; i < n; i++) {
        if (uncased && utf8proc_category(dec[i]) == UTF8PROC_CATEGORY_MN) continue;
        utf8proc_int32_t lc = uncased ? utf8proc_tolower(dec[i]) : dec[i];
        if (is_punctuation(lc)) {
            end_word(w);
            put_char(w, lc);
            end_word(w);
        } else {
            put_char(w, lc);
        }
    }
}

static void split_words(const char *text, size_t len, bool uncased, struct words *w)
{
    for (size_t i = 0; i < len && !w->oom;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t n =
            utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &c);
        if (n < 1) { /* an invalid byte is dropped, like the U+FFFD it would decode to */
            i++;
            continue;
        }
        i += (size_t)n;
        if (c == 0 || c == 0xFFFD || is_control(c)) continue;
        if (is_whitespace(c)) {
            end_word(w);
        } else if (is_cjk(c)) {
            end_word(w);
            put_char(w, c);
            end_word(w);
        } else {
            add_char(w, c, uncased);
        }
    }
    end_word(w);
}

/* Greedy longest-match-first pieces of one word; the whole word is [UNK] when some part of
 * it matches nothing (or it is too long). scratch holds U+2581 then room for the word. */
static void tokenize_word(const struct vocab *v, const char *word, size_t len, char *scratch,
                          struct tok_out *out)
{
    size_t chars = 0;
    for (size_t i = 0; i < len; i += (size_t)utf8_len((unsigned char)word[i])) chars++;
    size_t mark = out->n;
    if (chars <= MAX_WORD_CHARS) {
        memcpy(scratch + 3, word, len);
        for (size_t start = 0; start < len;) {
            int32_t id = -1;
            size_t end = len;
            while (end > start) {
                id = start == 0 ? strmap_get(&v->by_text, scratch, 3 + end)
                                : strmap_get(&v->by_text, word + start, end - start);
                if (id >= 0) break;
                do end--; /* back to the previous character boundary */
                while (end > start && ((unsigned char)word[end] & 0xC0) == 0x80);
            }
            if (id < 0) {
                out->n = mark; /* drop the pieces already found */
                goto unknown;
            }
            tok_push(out, id);
            start = end;
        }
        return;
    }
unknown:
    if (v->unk >= 0) tok_push(out, v->unk);
}

void wpm_tokenize(const struct vocab *v, const char *text, size_t len, struct tok_out *out)
{
    struct words w = {0};
    split_words(text, len, v->lowercase, &w);
    char *scratch = w.oom ? NULL : malloc(w.len + 4);
    if (!scratch) {
        out->oom = true;
    } else {
        memcpy(scratch, "\xe2\x96\x81", 3);
        size_t start = 0;
        for (size_t i = 0; i < w.n; i++) {
            tokenize_word(v, w.text + start, w.ends[i] - start, scratch, out);
            start = w.ends[i];
        }
    }
    free(scratch);
    free(w.text);
    free(w.ends);
}
