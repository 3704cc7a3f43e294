/* The tokenizer of a Hugging Face directory as GGUF tokenizer keys: WordPiece (tokenizer.json
 * or vocab.txt) in llama.cpp's form (word-initial pieces marked with U+2581, "##" dropped),
 * byte-level BPE with its pre-tokenizer regexes spelled out (tokenizer.ggml.pre_regex), and
 * tokenizer_config.json's special tokens and chat template. Contract: src/safetensors/hf_dir.h. */
#include "safetensors/hf_dir.h"

#include "base/status.h"
#include "tokenizer/pretok_regex.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* HF's ByteLevel(use_regex=true) pattern. */
#define BYTE_LEVEL_RE                                                                              \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

struct vocab_build {
    const char *dir;
    struct kiln_err *err;
    int32_t n;
    const char **text; /* [n] NULL for an id nobody names */
    size_t *len;
    int32_t *type;     /* [n] enum token_kind */
    json_t *config;    /* tokenizer_config.json, or NULL */
    json_t *tok;       /* tokenizer.json, or NULL */
};

/* A special token setting of tokenizer_config.json: a string or {"content": ...}. */
static const char *config_token(const struct vocab_build *v, const char *key)
{
    json_t *t = v->config ? json_object_get(v->config, key) : NULL;
    if (json_is_object(t)) t = json_object_get(t, "content");
    return json_string_value(t);
}

static int32_t id_of(const struct vocab_build *v, const char *text)
{
    if (!text) return -1;
    size_t n = strlen(text);
    for (int32_t i = 0; i < v->n; i++)
        if (v->text[i] && v->len[i] == n && memcmp(v->text[i], text, n) == 0) return i;
    return -1;
}

static kiln_status alloc_vocab(struct vocab_build *v, int32_t n)
{
    v->n = n;
    v->text = calloc((size_t)n, sizeof *v->text);
    v->len = calloc((size_t)n, sizeof *v->len);
    v->type = calloc((size_t)n, sizeof *v->type);
    if (!v->text || !v->len || !v->type) return kiln_fail(v->err, KILN_ENOMEM, "out of memory");
    return KILN_OK;
}

/* tokenizer.json's model.vocab and added_tokens by id. */
static kiln_status vocab_from_json(struct vocab_build *v)
{
    json_t *model = json_object_get(v->tok, "model"), *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(v->tok, "added_tokens");
    if (!json_is_object(vocab))
        return kiln_fail(v->err, KILN_EFORMAT, "%s/tokenizer.json: missing object 'model.vocab'",
                         v->dir);
    int64_t max = -1;
    const char *key;
    json_t *id, *a;
    size_t i;
    json_object_foreach(vocab, key, id) {
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= (1 << 24))
            return kiln_fail(v->err, KILN_EFORMAT, "%s/tokenizer.json: token '%.32s' has a bad "
                             "id", v->dir, key);
        if (json_integer_value(id) > max) max = json_integer_value(id);
    }
    json_array_foreach(added, i, a) {
        json_t *aid = json_object_get(a, "id");
        if (!json_is_integer(aid) || json_integer_value(aid) < 0 ||
            json_integer_value(aid) >= (1 << 24) || !json_is_string(json_object_get(a, "content")))
            return kiln_fail(v->err, KILN_EFORMAT, "%s/tokenizer.json: added_tokens[%zu] needs an "
                             "id and a content", v->dir, i);
        if (json_integer_value(aid) > max) max = json_integer_value(aid);
    }
    kiln_status st = alloc_vocab(v, (int32_t)(max + 1));
    if (st != KILN_OK) return st;
    json_object_foreach(vocab, key, id) {
        int32_t k = (int32_t)json_integer_value(id);
        v->text[k] = key;
        v->len[k] = strlen(key);
        v->type[k] = TOKEN_NORMAL;
    }
    json_array_foreach(added, i, a) {
        int32_t k = (int32_t)json_integer_value(json_object_get(a, "id"));
        json_t *c = json_object_get(a, "content");
        v->text[k] = json_string_value(c);
        v->len[k] = json_string_length(c);
        v->type[k] = json_is_true(json_object_get(a, "special")) ? TOKEN_CONTROL
                                                                 : TOKEN_USER_DEFINED;
    }
    return KILN_OK;
}

/* vocab.txt: one token per line, id = line number; bracketed BERT specials are control. */
static kiln_status vocab_from_txt(struct vocab_build *v, char **blob)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", v->dir);
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_fail(v->err, KILN_EIO, "%s: no tokenizer.json or vocab.txt", v->dir);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = size >= 0 && size < (256 << 20) ? malloc((size_t)size + 1) : NULL;
    bool ok = buf && fread(buf, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    if (!ok) {
        free(buf);
        return kiln_fail(v->err, KILN_EIO, "%s: cannot read", path);
    }
    buf[size] = 0;
    *blob = buf;
    int32_t n = 0;
    for (long i = 0; i < size; i++) n += buf[i] == '\n';
    if (size > 0 && buf[size - 1] != '\n') n++;
    kiln_status st = alloc_vocab(v, n);
    if (st != KILN_OK) return st;
    char *p = buf;
    for (int32_t k = 0; k < n; k++) {
        char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len && p[len - 1] == '\r') len--;
        v->text[k] = p;
        v->len[k] = len;
        v->type[k] = len > 2 && p[0] == '[' && p[len - 1] == ']' &&
                             (len == 5 || strncmp(p, "[unused", 7) != 0)
                         ? TOKEN_CONTROL
                         : TOKEN_NORMAL;
        p = eol ? eol + 1 : p + len;
    }
    return KILN_OK;
}

/* Writes tokens (texts converted by wordpiece) and types; gaps become unused "[PADn]". */
static kiln_status put_tokens(struct gguf_builder *b, struct vocab_build *v, bool wordpiece)
{
    char **owned = calloc((size_t)v->n, sizeof *owned);
    const char **texts = malloc((size_t)v->n * sizeof *texts);
    size_t *lens = malloc((size_t)v->n * sizeof *lens);
    kiln_status st = KILN_OK;
    if (!owned || !texts || !lens) {
        st = kiln_fail(v->err, KILN_ENOMEM, "out of memory");
        goto done;
    }
    for (int32_t i = 0; i < v->n; i++) {
        const char *t = v->text[i];
        size_t n = v->len[i];
        if (!t) {
            owned[i] = malloc(24);
            if (!owned[i]) {
                st = kiln_fail(v->err, KILN_ENOMEM, "out of memory");
                goto done;
            }
            n = (size_t)snprintf(owned[i], 24, "[PAD%d]", i);
            t = owned[i];
            v->type[i] = TOKEN_UNUSED;
        } else if (wordpiece && v->type[i] == TOKEN_NORMAL) {
            if (n >= 2 && t[0] == '#' && t[1] == '#') { /* a continuation: no marker */
                t += 2;
                n -= 2;
            } else { /* a word start: U+2581 in front */
                owned[i] = malloc(n + 3);
                if (!owned[i]) {
                    st = kiln_fail(v->err, KILN_ENOMEM, "out of memory");
                    goto done;
                }
                memcpy(owned[i], "\xe2\x96\x81", 3);
                memcpy(owned[i] + 3, t, n);
                t = owned[i];
                n += 3;
            }
        }
        texts[i] = t;
        lens[i] = n;
    }
    if (!gguf_builder_str_array(b, "tokenizer.ggml.tokens", texts, lens, (uint64_t)v->n) ||
        !gguf_builder_i32_array(b, "tokenizer.ggml.token_type", v->type, (uint64_t)v->n))
        st = kiln_fail(v->err, KILN_ENOMEM, "out of memory");
done:
    if (owned)
        for (int32_t i = 0; i < v->n; i++) free(owned[i]);
    free(owned);
    free(texts);
    free(lens);
    return st;
}

static void put_id(struct gguf_builder *b, const char *key, int32_t id)
{
    if (id >= 0) gguf_builder_u32(b, key, (uint32_t)id);
}

static kiln_status wordpiece_keys(struct gguf_builder *b, struct vocab_build *v)
{
    gguf_builder_str(b, "tokenizer.ggml.model", "bert", 4);
    kiln_status st = put_tokens(b, v, true);
    if (st != KILN_OK) return st;
    const char *cls = config_token(v, "cls_token"), *sep = config_token(v, "sep_token"),
               *unk = config_token(v, "unk_token"), *pad = config_token(v, "pad_token"),
               *mask = config_token(v, "mask_token");
    int32_t cls_id = id_of(v, cls ? cls : "[CLS]"), sep_id = id_of(v, sep ? sep : "[SEP]");
    put_id(b, "tokenizer.ggml.cls_token_id", cls_id);
    put_id(b, "tokenizer.ggml.bos_token_id", cls_id);
    put_id(b, "tokenizer.ggml.seperator_token_id", sep_id);
    put_id(b, "tokenizer.ggml.eos_token_id", sep_id);
    put_id(b, "tokenizer.ggml.unknown_token_id", id_of(v, unk ? unk : "[UNK]"));
    put_id(b, "tokenizer.ggml.padding_token_id", id_of(v, pad ? pad : "[PAD]"));
    put_id(b, "tokenizer.ggml.mask_token_id", id_of(v, mask ? mask : "[MASK]"));
    gguf_builder_bool(b, "tokenizer.ggml.add_bos_token", cls_id >= 0);
    gguf_builder_bool(b, "tokenizer.ggml.add_eos_token", sep_id >= 0);
    /* lowercasing: the normalizer's setting, else tokenizer_config's do_lower_case */
    json_t *norm = v->tok ? json_object_get(v->tok, "normalizer") : NULL;
    json_t *lower = norm ? json_object_get(norm, "lowercase") : NULL;
    if (!lower && v->config) lower = json_object_get(v->config, "do_lower_case");
    gguf_builder_bool(b, "tokenizer.ggml.normalizer.lowercase", !lower || json_is_true(lower));
    return KILN_OK;
}

/* One pre-tokenizer of tokenizer.json as regexes appended to res. */
static kiln_status pre_regexes(struct vocab_build *v, json_t *p, const char **res, size_t *lens,
                               int *n)
{
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type)
        return kiln_fail(v->err, KILN_EFORMAT, "%s/tokenizer.json: a pre_tokenizer has no type",
                         v->dir);
    if (*n >= MAX_PRE_REGEX)
        return kiln_fail(v->err, KILN_EUNSUPP, "%s/tokenizer.json: too many pre-tokenizers",
                         v->dir);
    if (!strcmp(type, "Sequence")) {
        json_t *q;
        size_t i;
        json_array_foreach(json_object_get(p, "pretokenizers"), i, q) {
            kiln_status st = pre_regexes(v, q, res, lens, n);
            if (st != KILN_OK) return st;
        }
        return KILN_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        if (json_is_true(json_object_get(p, "add_prefix_space")))
            return kiln_fail(v->err, KILN_EUNSUPP, "%s/tokenizer.json: ByteLevel with "
                             "add_prefix_space is not supported", v->dir);
        json_t *use = json_object_get(p, "use_regex");
        if (!use || json_is_true(use)) {
            res[*n] = BYTE_LEVEL_RE;
            lens[(*n)++] = strlen(BYTE_LEVEL_RE);
        }
        return KILN_OK;
    }
    if (!strcmp(type, "Digits")) {
        const char *re = json_is_true(json_object_get(p, "individual_digits")) ? "\\p{N}"
                                                                               : "\\p{N}+";
        res[*n] = re;
        lens[(*n)++] = strlen(re);
        return KILN_OK;
    }
    json_t *regex = json_object_get(json_object_get(p, "pattern"), "Regex");
    const char *behavior = json_string_value(json_object_get(p, "behavior"));
    if (!strcmp(type, "Split") && json_is_string(regex) &&
        !json_is_true(json_object_get(p, "invert")) && behavior &&
        !strcmp(behavior, "Isolated")) {
        res[*n] = json_string_value(regex);
        lens[(*n)++] = json_string_length(regex);
        return KILN_OK;
    }
    return kiln_fail(v->err, KILN_EUNSUPP, "%s/tokenizer.json: pre-tokenizer '%.32s' is not "
                     "supported (ByteLevel, Digits and isolating regex Splits are)", v->dir, type);
}

static kiln_status bpe_keys(struct gguf_builder *b, struct vocab_build *v)
{
    json_t *model = json_object_get(v->tok, "model");
    if (json_is_true(json_object_get(model, "byte_fallback")))
        return kiln_fail(v->err, KILN_EUNSUPP, "%s/tokenizer.json: a SentencePiece-style BPE "
                         "(byte_fallback) is not supported; use the model's GGUF", v->dir);
    gguf_builder_str(b, "tokenizer.ggml.model", "gpt2", 4);
    gguf_builder_str(b, "tokenizer.ggml.pre", "hf-tokenizer-json", 17);
    kiln_status st = put_tokens(b, v, false);
    if (st != KILN_OK) return st;
    json_t *merges = json_object_get(model, "merges"), *m;
    size_t n = json_array_size(merges), i;
    const char **texts = malloc((n ? n : 1) * sizeof *texts);
    size_t *lens = malloc((n ? n : 1) * sizeof *lens);
    char **joined = calloc(n ? n : 1, sizeof *joined);
    if (!texts || !lens || !joined) st = kiln_fail(v->err, KILN_ENOMEM, "out of memory");
    json_array_foreach(merges, i, m) {
        if (st != KILN_OK) break;
        if (json_is_string(m)) { /* "a b" */
            texts[i] = json_string_value(m);
            lens[i] = json_string_length(m);
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            size_t la = json_string_length(json_array_get(m, 0)),
                   lb = json_string_length(json_array_get(m, 1));
            if (!(joined[i] = malloc(la + lb + 1))) {
                st = kiln_fail(v->err, KILN_ENOMEM, "out of memory");
                break;
            }
            memcpy(joined[i], json_string_value(json_array_get(m, 0)), la);
            joined[i][la] = ' ';
            memcpy(joined[i] + la + 1, json_string_value(json_array_get(m, 1)), lb);
            texts[i] = joined[i];
            lens[i] = la + lb + 1;
        } else {
            st = kiln_fail(v->err, KILN_EFORMAT, "%s/tokenizer.json: merges[%zu] is neither \"a "
                           "b\" nor [\"a\", \"b\"]", v->dir, i);
        }
    }
    if (st == KILN_OK && !gguf_builder_str_array(b, "tokenizer.ggml.merges", texts, lens, n))
        st = kiln_fail(v->err, KILN_ENOMEM, "out of memory");
    for (size_t k = 0; joined && k < n; k++) free(joined[k]);
    free(joined);
    free(texts);
    free(lens);
    if (st != KILN_OK) return st;

    const char *res[MAX_PRE_REGEX];
    size_t res_len[MAX_PRE_REGEX];
    int n_res = 0;
    json_t *pre = json_object_get(v->tok, "pre_tokenizer");
    if (pre && !json_is_null(pre) && (st = pre_regexes(v, pre, res, res_len, &n_res)) != KILN_OK)
        return st;
    gguf_builder_str_array(b, "tokenizer.ggml.pre_regex", res, res_len, (uint64_t)n_res);
    gguf_builder_bool(b, "tokenizer.ggml.ignore_merges",
                      json_is_true(json_object_get(model, "ignore_merges")));

    /* BOS / EOS: added by the post-processor's template (alone or inside a Sequence) when it
     * starts / ends with a special token */
    int32_t bos = id_of(v, config_token(v, "bos_token")), eos = id_of(v, config_token(v, "eos_token"));
    bool add_bos = false, add_eos = false;
    json_t *post = json_object_get(v->tok, "post_processor"), *single = NULL, *p;
    size_t k;
    if (json_is_array(json_object_get(post, "single"))) single = json_object_get(post, "single");
    json_array_foreach(json_object_get(post, "processors"), k, p)
        if (!single && json_is_array(json_object_get(p, "single"))) single = json_object_get(p, "single");
    size_t n_single = json_array_size(single);
    json_t *first = json_object_get(json_array_get(single, 0), "SpecialToken");
    json_t *last = n_single > 1 ? json_object_get(json_array_get(single, n_single - 1), "SpecialToken")
                                : NULL;
    int32_t id = first ? id_of(v, json_string_value(json_object_get(first, "id"))) : -1;
    if (id >= 0) {
        bos = id;
        add_bos = true;
    }
    id = last ? id_of(v, json_string_value(json_object_get(last, "id"))) : -1;
    if (id >= 0) {
        eos = id;
        add_eos = true;
    }
    json_t *cfg_add = v->config ? json_object_get(v->config, "add_bos_token") : NULL;
    if (json_is_boolean(cfg_add)) add_bos = json_is_true(cfg_add);
    cfg_add = v->config ? json_object_get(v->config, "add_eos_token") : NULL;
    if (json_is_boolean(cfg_add)) add_eos = json_is_true(cfg_add);
    put_id(b, "tokenizer.ggml.bos_token_id", bos);
    put_id(b, "tokenizer.ggml.eos_token_id", eos);
    put_id(b, "tokenizer.ggml.padding_token_id", id_of(v, config_token(v, "pad_token")));
    gguf_builder_bool(b, "tokenizer.ggml.add_bos_token", add_bos && bos >= 0);
    gguf_builder_bool(b, "tokenizer.ggml.add_eos_token", add_eos && eos >= 0);
    return KILN_OK;
}

/* tokenizer_config.json's chat_template: a string, or a list of {name, template}. */
static void put_chat_template(struct gguf_builder *b, const struct vocab_build *v)
{
    json_t *t = v->config ? json_object_get(v->config, "chat_template") : NULL, *e;
    size_t i;
    if (json_is_array(t)) {
        json_t *chosen = NULL;
        json_array_foreach(t, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            if (!chosen || (name && !strcmp(name, "default"))) chosen = json_object_get(e, "template");
        }
        t = chosen;
    }
    if (json_is_string(t))
        gguf_builder_str(b, "tokenizer.chat_template", json_string_value(t), json_string_length(t));
}

kiln_status hf_tokenizer_keys(struct gguf_builder *b, const char *dir, bool bert,
                              struct kiln_err *err)
{
    struct vocab_build v = {.dir = dir, .err = err};
    char *blob = NULL;
    kiln_status st;
    v.config = hf_read_json(dir, "tokenizer_config.json", &st, err);
    if (st == KILN_OK) v.tok = hf_read_json(dir, "tokenizer.json", &st, err);
    if (st != KILN_OK) goto done;
    const char *type = v.tok ? json_string_value(json_object_get(json_object_get(v.tok, "model"),
                                                                 "type"))
                             : NULL;
    if (v.tok && !type) {
        st = kiln_fail(err, KILN_EFORMAT, "%s/tokenizer.json: missing string 'model.type'", dir);
    } else if (bert) {
        if (type && strcmp(type, "WordPiece") != 0)
            st = kiln_fail(err, KILN_EUNSUPP, "%s/tokenizer.json: a BERT model with a '%.32s' "
                           "tokenizer is not supported (WordPiece is)", dir, type);
        else
            st = v.tok ? vocab_from_json(&v) : vocab_from_txt(&v, &blob);
        if (st == KILN_OK) st = wordpiece_keys(b, &v);
    } else if (!v.tok) {
        st = kiln_fail(err, KILN_EIO, "%s: no tokenizer.json", dir);
    } else if (strcmp(type, "BPE") != 0) {
        st = kiln_fail(err, KILN_EUNSUPP, "%s/tokenizer.json: tokenizer model '%.32s' is not "
                       "supported (BPE and WordPiece are)", dir, type);
    } else if ((st = vocab_from_json(&v)) == KILN_OK) {
        st = bpe_keys(b, &v);
    }
    if (st == KILN_OK) put_chat_template(b, &v);
done:
    free(v.text);
    free(v.len);
    free(v.type);
    free(blob);
    json_decref(v.config);
    json_decref(v.tok);
    return st;
}
