/* Loads a vocabulary from GGUF metadata, splits special tokens out of text, dispatches to
 * the SPM or BPE tokenizer, and turns ids back into bytes.
 * Contract: src/tokenizer/tokenizer.h. */
#define _GNU_SOURCE /* qsort_r */
#include "tokenizer/tokenizer.h"

#include "base/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int utf8_len(unsigned char c)
{
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0) return 2;
    if ((c & 0xf0) == 0xe0) return 3;
    if ((c & 0xf8) == 0xf0) return 4;
    return 1;
}

void tok_push(struct tok_out *o, int32_t id)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 64;
        int32_t *ids = realloc(o->ids, cap * sizeof *ids);
        if (!ids) {
            o->oom = true;
            return;
        }
        o->ids = ids;
        o->cap = cap;
    }
    o->ids[o->n++] = id;
}

static const struct gguf_value *get_array(const struct gguf_file *g, const char *key,
                                          enum gguf_type et, bool required, int64_t n,
                                          struct kiln_err *err, kiln_status *st)
{
    const struct gguf_value *v = gguf_get(g, key);
    *st = KILN_OK;
    if (!v) {
        if (required) *st = kiln_fail(err, KILN_EFORMAT, "%s: missing key '%s'", g->path, key);
        return NULL;
    }
    if (v->type != GGUF_ARRAY || v->arr.type != et) {
        *st = kiln_fail(err, KILN_EFORMAT, "%s: key '%s' must be an array of %s", g->path, key,
                        gguf_type_name(et));
        return NULL;
    }
    if (n >= 0 && v->arr.n != (uint64_t)n) {
        *st = kiln_fail(err, KILN_EFORMAT, "%s: key '%s' has %llu entries for %lld tokens",
                        g->path, key, (unsigned long long)v->arr.n, (long long)n);
        return NULL;
    }
    return v;
}

static kiln_status get_token_id(const struct vocab *v, const struct gguf_file *g, const char *key,
                                int32_t dflt, int32_t *out, struct kiln_err *err)
{
    const struct gguf_value *x = gguf_get(g, key);
    int64_t id = dflt;
    if (x && !gguf_value_int(x, &id))
        return kiln_fail(err, KILN_EFORMAT, "%s: key '%s' is not an integer", g->path, key);
    if (id < -1 || id >= v->n)
        return kiln_fail(err, KILN_EFORMAT, "%s: key '%s' = %lld is not a token id (vocabulary "
                         "of %d)", g->path, key, (long long)id, v->n);
    *out = (int32_t)id;
    return KILN_OK;
}

static bool get_bool(const struct gguf_file *g, const char *key, bool dflt)
{
    const struct gguf_value *x = gguf_get(g, key);
    return x && x->type == GGUF_BOOL ? x->u != 0 : dflt;
}

static bool text_is(const struct vocab *v, int32_t id, const char *s)
{
    return v->text[id].len == strlen(s) && memcmp(v->text[id].ptr, s, v->text[id].len) == 0;
}

/* Tokens that end generation in chat models even when the metadata names only one EOS. */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "<|end_of_text|>", "<｜end▁of▁sentence｜>", NULL,
};

/* Fills v->eog: the metadata's EOS/EOT/EOM and special tokens with an end-of-turn text. */
static void collect_eog(struct vocab *v)
{
    int32_t named[] = {v->eos, v->eot, v->eom};
    for (int i = 0; i < 3; i++)
        if (named[i] >= 0 && v->n_eog < MAX_EOG) v->eog[v->n_eog++] = named[i];
    for (int32_t i = 0; i < v->n_specials; i++) {
        int32_t id = v->specials[i];
        if (id == v->eos || id == v->eot || id == v->eom) continue;
        for (int k = 0; eog_texts[k] && v->n_eog < MAX_EOG; k++)
            if (text_is(v, id, eog_texts[k])) v->eog[v->n_eog++] = id;
    }
}

bool vocab_is_eog(const struct vocab *v, int32_t id)
{
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) return true;
    return false;
}

static int by_length_desc(const void *a, const void *b, void *vocab)
{
    const struct vocab *v = vocab;
    uint64_t la = v->text[*(const int32_t *)a].len, lb = v->text[*(const int32_t *)b].len;
    return la < lb ? 1 : la > lb ? -1 : (*(const int32_t *)a - *(const int32_t *)b);
}

static kiln_status collect_specials(struct vocab *v)
{
    v->specials = malloc((size_t)v->n * sizeof(int32_t));
    if (!v->specials) return KILN_ENOMEM;
    for (int32_t i = 0; i < v->n; i++)
        if ((v->kind[i] == TOKEN_CONTROL || v->kind[i] == TOKEN_USER_DEFINED ||
             v->kind[i] == TOKEN_UNKNOWN) && v->text[i].len)
            v->specials[v->n_specials++] = i;
    qsort_r(v->specials, (size_t)v->n_specials, sizeof(int32_t), by_length_desc, v);
    return KILN_OK;
}

kiln_status vocab_load(struct vocab *v, const struct gguf_file *g, struct kiln_err *err)
{
    memset(v, 0, sizeof *v);
    kiln_status st;
    const struct gguf_value *model = gguf_get(g, "tokenizer.ggml.model");
    if (!model || model->type != GGUF_STRING)
        return kiln_fail(err, KILN_EFORMAT, "%s: missing string key 'tokenizer.ggml.model'",
                         g->path);
    if (model->s.len == 5 && memcmp(model->s.ptr, "llama", 5) == 0)
        v->type = VOCAB_SPM;
    else if (model->s.len == 4 && memcmp(model->s.ptr, "gpt2", 4) == 0)
        v->type = VOCAB_BPE;
    else if (model->s.len == 4 && memcmp(model->s.ptr, "bert", 4) == 0)
        v->type = VOCAB_WPM;
    else
        return kiln_fail(err, KILN_EUNSUPP, "%s: tokenizer model '%.*s' is not supported "
                         "(llama, gpt2, bert are)", g->path, (int)(model->s.len > 32 ? 32 : model->s.len),
                         model->s.ptr);
    const struct gguf_value *tokens =
        get_array(g, "tokenizer.ggml.tokens", GGUF_STRING, true, -1, err, &st);
    if (!tokens) return st;
    if (tokens->arr.n == 0 || tokens->arr.n > (1u << 24))
        return kiln_fail(err, KILN_EFORMAT, "%s: key 'tokenizer.ggml.tokens' has %llu entries",
                         g->path, (unsigned long long)tokens->arr.n);
    v->n = (int32_t)tokens->arr.n;
    const struct gguf_value *scores =
        get_array(g, "tokenizer.ggml.scores", GGUF_F32, false, v->n, err, &st);
    if (st) return st;
    const struct gguf_value *types =
        get_array(g, "tokenizer.ggml.token_type", GGUF_I32, false, v->n, err, &st);
    if (st) return st;

    v->text = malloc((size_t)v->n * sizeof *v->text);
    v->scores = calloc((size_t)v->n, sizeof *v->scores);
    v->kind = malloc((size_t)v->n);
    if (!v->text || !v->scores || !v->kind || !strmap_init(&v->by_text, (size_t)v->n)) {
        st = KILN_ENOMEM;
        goto fail;
    }
    for (int32_t i = 0; i < v->n; i++) {
        v->text[i] = tokens->arr.items[i].s;
        if (scores) memcpy(&v->scores[i], (const float *)scores->arr.data + i, sizeof(float));
        int64_t kind = TOKEN_NORMAL;
        if (types) gguf_array_int(types, (uint64_t)i, &kind);
        v->kind[i] = (uint8_t)(kind >= TOKEN_NORMAL && kind <= TOKEN_BYTE ? kind : TOKEN_NORMAL);
        /* Duplicate texts keep the first id, as llama.cpp does. */
        strmap_put(&v->by_text, v->text[i].ptr, v->text[i].len, i);
    }
    bool spm = v->type == VOCAB_SPM, wpm = v->type == VOCAB_WPM;
    if ((st = get_token_id(v, g, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, &v->bos, err)) ||
        (st = get_token_id(v, g, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, &v->eos, err)) ||
        /* BERT's [CLS] and [SEP] play the parts of BOS and EOS (older files name only them) */
        (wpm && (st = get_token_id(v, g, "tokenizer.ggml.cls_token_id", v->bos, &v->bos, err))) ||
        (wpm && (st = get_token_id(v, g, "tokenizer.ggml.seperator_token_id", v->eos, &v->eos,
                                   err))) ||
        (st = get_token_id(v, g, "tokenizer.ggml.eot_token_id", -1, &v->eot, err)) ||
        (st = get_token_id(v, g, "tokenizer.ggml.eom_token_id", -1, &v->eom, err)) ||
        (st = get_token_id(v, g, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, &v->unk, err)) ||
        (st = get_token_id(v, g, "tokenizer.ggml.padding_token_id", -1, &v->pad, err)))
        goto fail;
    v->add_eos = get_bool(g, "tokenizer.ggml.add_eos_token", wpm);
    v->lowercase = get_bool(g, "tokenizer.ggml.normalizer.lowercase", true);
    v->add_space_prefix = get_bool(g, "tokenizer.ggml.add_space_prefix", spm);

    for (int b = 0; b < 256; b++) v->byte_token[b] = -1;
    if (wpm) {
        /* nothing more: WordPiece has no byte tokens or merges */
    } else if (spm) {
        for (int b = 0; b < 256; b++) {
            char hex[8];
            snprintf(hex, sizeof hex, "<0x%02X>", b);
            v->byte_token[b] = strmap_get(&v->by_text, hex, 6);
            char raw = (char)b;
            if (v->byte_token[b] < 0) v->byte_token[b] = strmap_get(&v->by_text, &raw, 1);
        }
    } else {
        const struct gguf_value *merges =
            get_array(g, "tokenizer.ggml.merges", GGUF_STRING, true, -1, err, &st);
        if (!merges) goto fail;
        if (!strmap_init(&v->merges, merges->arr.n)) {
            st = KILN_ENOMEM;
            goto fail;
        }
        for (uint64_t i = 0; i < merges->arr.n; i++)
            strmap_put(&v->merges, merges->arr.items[i].s.ptr, merges->arr.items[i].s.len,
                       (int32_t)i);
        const struct gguf_value *pre = gguf_get(g, "tokenizer.ggml.pre");
        char pre_name[32] = "default";
        if (pre && pre->type == GGUF_STRING)
            snprintf(pre_name, sizeof pre_name, "%.*s", (int)(pre->s.len > 31 ? 31 : pre->s.len),
                     pre->s.ptr);
        /* kiln's own key: the regexes themselves, from a Hugging Face tokenizer.json */
        const struct gguf_value *pre_regex =
            get_array(g, "tokenizer.ggml.pre_regex", GGUF_STRING, false, -1, err, &st);
        if (st) goto fail;
        if (pre_regex) {
            struct gguf_str res[MAX_PRE_REGEX];
            int n = 0;
            for (; n < MAX_PRE_REGEX && (uint64_t)n < pre_regex->arr.n; n++)
                res[n] = pre_regex->arr.items[n].s;
            st = bpe_init_regexes(v, pre_name, res, pre_regex->arr.n > MAX_PRE_REGEX ? MAX_PRE_REGEX + 1 : n, err);
            v->ignore_merges = get_bool(g, "tokenizer.ggml.ignore_merges", false);
        } else {
            st = bpe_init_pre(v, pre_name, err);
        }
        if (st != KILN_OK) {
            if (err && st != KILN_ENOMEM) {
                char msg[sizeof err->msg];
                memcpy(msg, err->msg, sizeof msg);
                kiln_fail(err, st, "%s: %.200s", g->path, msg);
            }
            goto fail;
        }
    }
    v->add_bos = get_bool(g, "tokenizer.ggml.add_bos_token", spm || wpm || v->add_bos);
    if ((st = collect_specials(v)) != KILN_OK) goto fail;
    collect_eog(v);
    return KILN_OK;
fail:
    if (st == KILN_ENOMEM) kiln_fail(err, st, "%s: out of memory loading the vocabulary", g->path);
    vocab_free(v);
    return st;
}

void vocab_free(struct vocab *v)
{
    free(v->text);
    free(v->scores);
    free(v->kind);
    free(v->specials);
    strmap_free(&v->by_text);
    strmap_free(&v->merges);
    bpe_free_pre(v);
    memset(v, 0, sizeof *v);
}

/* The special token whose text starts at p (longest first), or -1. */
static int32_t special_at(const struct vocab *v, const char *p, size_t left, bool parse_special)
{
    for (int32_t i = 0; i < v->n_specials; i++) {
        int32_t id = v->specials[i];
        if (!parse_special && v->kind[id] != TOKEN_USER_DEFINED) continue;
        const struct gguf_str *t = &v->text[id];
        if (t->len <= left && (unsigned char)t->ptr[0] == (unsigned char)p[0] &&
            memcmp(t->ptr, p, t->len) == 0)
            return id;
    }
    return -1;
}

/* Tokenizes one fragment of plain text. prev_special: the fragment follows BOS or a
 * special token, which is where SentencePiece adds its space prefix. */
static void tokenize_fragment(const struct vocab *v, const char *text, size_t len,
                              bool prev_special, struct tok_out *out)
{
    if (v->type == VOCAB_BPE)
        bpe_tokenize(v, text, len, out);
    else if (v->type == VOCAB_WPM)
        wpm_tokenize(v, text, len, out);
    else
        spm_tokenize(v, text, len, v->add_space_prefix && prev_special, out);
}

int64_t vocab_tokenize(const struct vocab *v, const char *text, size_t len, bool add_special,
                       bool parse_special, int32_t *ids, size_t cap)
{
    struct tok_out out = {0};
    if (add_special && v->add_bos && v->bos >= 0) tok_push(&out, v->bos);
    bool prev_special = true;
    size_t start = 0;
    for (size_t i = 0; i <= len;) {
        int32_t sp = i < len ? special_at(v, text + i, len - i, parse_special) : -1;
        if (i < len && sp < 0) {
            i++;
            continue;
        }
        if (i > start) {
            tokenize_fragment(v, text + start, i - start, prev_special, &out);
            prev_special = false;
        }
        if (i == len) break;
        tok_push(&out, sp);
        prev_special = true;
        i += v->text[sp].len;
        start = i;
    }
    if (add_special && v->add_eos && v->eos >= 0) tok_push(&out, v->eos);
    int64_t n = out.oom ? -1 : (int64_t)out.n;
    if (!out.oom && out.n && cap) memcpy(ids, out.ids, (out.n < cap ? out.n : cap) * sizeof(int32_t));
    free(out.ids);
    return n;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int vocab_piece(const struct vocab *v, int32_t id, bool render_special, char *buf, size_t cap)
{
    if (id < 0 || id >= v->n) return 0;
    const struct gguf_str *t = &v->text[id];
    uint8_t kind = v->kind[id];
    if (kind == TOKEN_CONTROL || kind == TOKEN_UNUSED) {
        if (!render_special) return 0;
    } else if (kind == TOKEN_BYTE && v->type == VOCAB_SPM && t->len == 6) {
        if (cap < 1) return -1;
        int hi = hex_digit(t->ptr[3]), lo = hex_digit(t->ptr[4]);
        if (hi < 0 || lo < 0) return 0;
        buf[0] = (char)(hi << 4 | lo);
        return 1;
    } else if (v->type == VOCAB_BPE && kind != TOKEN_USER_DEFINED) {
        return bpe_token_bytes(t, buf, cap);
    } else if (v->type != VOCAB_BPE && kind != TOKEN_USER_DEFINED) {
        /* U+2581 (e2 96 81) is a space (SentencePiece; a word start in WordPiece) */
        size_t n = 0;
        for (size_t i = 0; i < t->len; n++) {
            bool space = i + 2 < t->len && (unsigned char)t->ptr[i] == 0xe2 &&
                         (unsigned char)t->ptr[i + 1] == 0x96 && (unsigned char)t->ptr[i + 2] == 0x81;
            if (n < cap) buf[n] = space ? ' ' : t->ptr[i];
            i += space ? 3 : 1;
        }
        return n <= cap ? (int)n : -(int)n;
    }
    if (t->len > cap) return -(int)t->len;
    memcpy(buf, t->ptr, t->len);
    return (int)t->len;
}
