/* SentencePiece-style tokenization as llama.cpp does it: spaces become U+2581, then the
 * adjacent pair whose merge is a token with the highest score is merged until none is left;
 * pieces that are not tokens fall back to <0xXX> byte tokens.
 * Contract: src/tokenizer/tokenizer.h. */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

struct symbol {
    int prev, next;
    const char *text;
    size_t len; /* 0 once merged into its left neighbour */
};

struct bigram {
    int left, right;
    float score;
    size_t len; /* the merged length when queued, to detect stale entries */
};

struct heap {
    struct bigram *items;
    size_t n, cap;
};

static bool better(const struct bigram *a, const struct bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static bool heap_push(struct heap *h, struct bigram b)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        struct bigram *items = realloc(h->items, cap * sizeof *items);
        if (!items) return false;
        h->items = items;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && better(&b, &h->items[(i - 1) / 2])) {
        h->items[i] = h->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->items[i] = b;
    return true;
}

static struct bigram heap_pop(struct heap *h)
{
    struct bigram top = h->items[0], last = h->items[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && better(&h->items[c + 1], &h->items[c])) c++;
        if (!better(&h->items[c], &last)) break;
        h->items[i] = h->items[c];
        i = c;
    }
    if (h->n) h->items[i] = last;
    return top;
}

static bool try_pair(const struct vocab *v, struct symbol *sym, struct heap *h, int left,
                     int right)
{
    if (left < 0 || right < 0) return true;
    size_t len = sym[left].len + sym[right].len;
    int32_t id = strmap_get(&v->by_text, sym[left].text, len);
    if (id < 0) return true;
    return heap_push(h, (struct bigram){left, right, v->scores[id], len});
}

static void emit(const struct vocab *v, const char *text, size_t len, struct tok_out *out)
{
    int32_t id = strmap_get(&v->by_text, text, len);
    if (id >= 0) {
        tok_push(out, id);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        int32_t b = v->byte_token[(unsigned char)text[i]];
        tok_push(out, b >= 0 ? b : v->unk);
    }
}

void spm_tokenize(const struct vocab *v, const char *text, size_t len, bool space_prefix,
                  struct tok_out *out)
{
    /* Escape spaces (and the prefix space): each becomes the three bytes of U+2581. */
    size_t spaces = space_prefix;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    size_t elen = len + space_prefix + 2 * spaces;
    char *esc = malloc(elen ? elen : 1);
    struct symbol *sym = malloc((elen ? elen : 1) * sizeof *sym);
    struct heap h = {0};
    if (!esc || !sym) goto oom;
    size_t j = 0;
    if (space_prefix) {
        memcpy(esc, "\xe2\x96\x81", 3);
        j = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(esc + j, "\xe2\x96\x81", 3);
            j += 3;
        } else {
            esc[j++] = text[i];
        }
    }
    int n = 0;
    for (size_t i = 0; i < elen; n++) {
        size_t l = (size_t)utf8_len((unsigned char)esc[i]);
        if (l > elen - i) l = elen - i;
        sym[n] = (struct symbol){n - 1, -1, esc + i, l};
        if (n > 0) sym[n - 1].next = n;
        i += l;
    }
    for (int i = 1; i < n; i++)
        if (!try_pair(v, sym, &h, i - 1, i)) goto oom;
    while (h.n) {
        struct bigram b = heap_pop(&h);
        struct symbol *l = &sym[b.left], *r = &sym[b.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != b.len) continue; /* stale */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        if (!try_pair(v, sym, &h, l->prev, b.left) || !try_pair(v, sym, &h, b.left, l->next))
            goto oom;
    }
    for (int i = 0; i >= 0 && n > 0; i = sym[i].next) emit(v, sym[i].text, sym[i].len, out);
    free(h.items);
    free(esc);
    free(sym);
    return;
oom:
    out->oom = true;
    free(h.items);
    free(esc);
    free(sym);
}
