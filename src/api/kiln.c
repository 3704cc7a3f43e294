/* The public API: opens models, tokenizes, evaluates and generates.
 * Contract: include/kiln.h. */
#include "kiln.h"

#include "base/log.h"
#include "base/status.h"
#include "engine/sampler.h"
#include "engine/text_stream.h"
#include "model/model.h"
#include "safetensors/hf_dir.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_CTX_CAP 4096
#define BATCH_TOKENS 256

struct kiln_model {
    struct model m;
    struct vocab vocab;
    char *chat_template;
};

struct kiln_context {
    kiln_model *model;
    struct forward_state fs;
    struct kv_store kv;  /* this sequence's blocks, in order: the block table is 0, 1, 2... */
    int32_t *table;      /* [kv.n_blocks] */
    int n_ctx, n_past;
    float *logits;       /* [n_vocab] for generation */
    int32_t *tokens;     /* [n_ctx] the sequence so far */
    /* per forward call: [BATCH_TOKENS] */
    int32_t *pos;
    const int32_t **tables;
    bool *want;
};

kiln_status kiln_model_open(const char *path, const struct kiln_model_params *params,
                            kiln_model **out, struct kiln_err *err)
{
    const char *pooling = params ? params->pooling : NULL;
    static const char *const poolings[] = {[POOL_MEAN] = "mean", [POOL_CLS] = "cls",
                                           [POOL_LAST] = "last"};
    int pool = 0;
    for (int i = POOL_MEAN; pooling && i <= POOL_LAST; i++)
        if (!strcmp(pooling, poolings[i])) pool = i;
    if (pooling && !pool)
        return kiln_fail(err, KILN_EINVAL, "pooling '%s' is not one of mean, cls, last", pooling);
    struct gguf_file *g = NULL;
    kiln_status st = model_source_open(path, &g, err);
    if (st != KILN_OK) return st;
    kiln_model *km = calloc(1, sizeof *km);
    if (!km) {
        gguf_close(g);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    if ((st = vocab_load(&km->vocab, g, err)) != KILN_OK) {
        gguf_close(g);
        free(km);
        return st;
    }
    if ((st = model_load(&km->m, g, params ? params->n_threads : 0, err)) != KILN_OK) {
        vocab_free(&km->vocab);
        gguf_close(g);
        free(km);
        return st;
    }
    if (pool) km->m.hp.pooling = (enum pooling)pool;
    if (km->vocab.n < km->m.hp.n_vocab) {
        /* The output layer may be padded past the vocabulary; the reverse is an error. */
        log_debug("%s: %d embedding rows for %d tokens", path, km->m.hp.n_vocab, km->vocab.n);
    } else if (km->vocab.n > km->m.hp.n_vocab) {
        st = kiln_fail(err, KILN_EFORMAT, "%s: %d tokens but only %d embedding rows", path,
                       km->vocab.n, km->m.hp.n_vocab);
        kiln_model_free(km);
        return st;
    }
    const struct gguf_value *tmpl = gguf_get(g, "tokenizer.chat_template");
    if (tmpl && tmpl->type == GGUF_STRING) {
        km->chat_template = malloc(tmpl->s.len + 1);
        if (km->chat_template) {
            memcpy(km->chat_template, tmpl->s.ptr, tmpl->s.len);
            km->chat_template[tmpl->s.len] = 0;
        }
    }
    log_info("loaded %s: %s, %d layers, vocabulary %d, %d threads, %s kernels", path, km->m.desc,
             km->m.hp.n_layer, km->vocab.n, pool_size(km->m.pool),
             cpu_isa_name(cpu_best_isa()));
    *out = km;
    return KILN_OK;
}

void kiln_model_free(kiln_model *km)
{
    if (!km) return;
    vocab_free(&km->vocab);
    model_unload(&km->m);
    free(km->chat_template);
    free(km);
}

int32_t kiln_model_n_vocab(const kiln_model *km)
{
    return km->m.hp.n_vocab;
}

int32_t kiln_model_n_ctx_train(const kiln_model *km)
{
    return km->m.hp.n_ctx_train;
}

const struct model *kiln_model_internal(const kiln_model *km)
{
    return &km->m;
}

int32_t kiln_model_bos(const kiln_model *km)
{
    return km->vocab.bos;
}

int32_t kiln_model_eos(const kiln_model *km)
{
    return km->vocab.eos;
}

bool kiln_model_is_eog(const kiln_model *km, int32_t token)
{
    return vocab_is_eog(&km->vocab, token);
}

const char *kiln_model_chat_template(const kiln_model *km)
{
    return km->chat_template;
}

const char *kiln_model_desc(const kiln_model *km)
{
    return km->m.desc;
}

kiln_status kiln_tokenize(const kiln_model *km, const char *text, size_t len, bool add_special,
                          bool parse_special, int32_t *ids, size_t cap, size_t *n_out)
{
    int64_t n = vocab_tokenize(&km->vocab, text, len, add_special, parse_special, ids, cap);
    if (n < 0) return KILN_ENOMEM;
    *n_out = (size_t)n;
    return (size_t)n > cap ? KILN_ERANGE : KILN_OK;
}

int32_t *kiln_tokenize_new(const kiln_model *km, const char *text, size_t len,
                           bool add_special, bool parse_special, size_t *n_out)
{
    size_t cap = len + 8; /* at most one id per byte, plus BOS, EOS and a space prefix */
    int32_t *ids = malloc(cap * sizeof *ids);
    if (ids && kiln_tokenize(km, text, len, add_special, parse_special, ids, cap, n_out) != KILN_OK) {
        free(ids);
        ids = NULL;
    }
    return ids;
}

int kiln_token_to_piece(const kiln_model *km, int32_t token, bool render_special, char *buf,
                        size_t cap)
{
    return vocab_piece(&km->vocab, token, render_special, buf, cap);
}

kiln_status kiln_context_new(kiln_model *km, int32_t n_ctx, kiln_context **out,
                             struct kiln_err *err)
{
    struct kiln_context_params p = {.n_ctx = n_ctx};
    return kiln_context_new_with(km, &p, out, err);
}

kiln_status kiln_context_new_with(kiln_model *km, const struct kiln_context_params *params,
                                  kiln_context **out, struct kiln_err *err)
{
    const struct kiln_context_params defaults = {0}, *p = params ? params : &defaults;
    int32_t n_ctx = p->n_ctx;
    enum dtype kv_type = DTYPE_F16;
    if (p->kv_cache_type) {
        kiln_status st = kv_type_parse(p->kv_cache_type, &kv_type, err);
        if (st != KILN_OK) return st;
    }
    if (kiln_model_is_encoder(km))
        return kiln_fail(err, KILN_EUNSUPP, "%s is an embedding model: it cannot generate",
                         km->m.desc);
    if (n_ctx <= 0) n_ctx = km->m.hp.n_ctx_train < DEFAULT_CTX_CAP ? km->m.hp.n_ctx_train
                                                                  : DEFAULT_CTX_CAP;
    kiln_context *c = calloc(1, sizeof *c);
    if (!c) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    c->model = km;
    c->n_ctx = n_ctx;
    int n_blocks = (n_ctx + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
    kiln_status st = forward_state_init(&c->fs, &km->m, BATCH_TOKENS, n_ctx, err);
    if (st == KILN_OK) st = kv_store_init(&c->kv, &km->m, kv_type, n_blocks, err);
    if (st != KILN_OK) {
        kiln_context_free(c);
        return st;
    }
    c->logits = malloc((size_t)km->m.hp.n_vocab * sizeof(float));
    c->tokens = malloc((size_t)n_ctx * sizeof(int32_t));
    c->table = malloc((size_t)n_blocks * sizeof(int32_t));
    c->pos = malloc(BATCH_TOKENS * sizeof *c->pos);
    c->tables = malloc(BATCH_TOKENS * sizeof *c->tables);
    c->want = malloc(BATCH_TOKENS * sizeof *c->want);
    if (!c->logits || !c->tokens || !c->table || !c->pos || !c->tables || !c->want) {
        kiln_context_free(c);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n_blocks; i++) c->table[i] = i;
    *out = c;
    return KILN_OK;
}

void kiln_context_free(kiln_context *c)
{
    if (!c) return;
    forward_state_free(&c->fs);
    kv_store_free(&c->kv);
    free(c->logits);
    free(c->tokens);
    free(c->table);
    free(c->pos);
    free(c->tables);
    free(c->want);
    free(c);
}

void kiln_context_reset(kiln_context *c)
{
    c->n_past = 0;
}

int32_t kiln_context_n_past(const kiln_context *c)
{
    return c->n_past;
}

int32_t kiln_context_n_ctx(const kiln_context *c)
{
    return c->n_ctx;
}

kiln_status kiln_eval(kiln_context *c, const int32_t *tokens, size_t n, bool all_logits,
                      float *logits, struct kiln_err *err)
{
    const struct hparams *hp = &c->model->m.hp;
    if (n > (size_t)(c->n_ctx - c->n_past))
        return kiln_fail(err, KILN_ERANGE, "%zu tokens do not fit: %d of the context's %d are "
                         "used", n, c->n_past, c->n_ctx);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return kiln_fail(err, KILN_EINVAL, "token id %d at position %zu is outside the "
                             "vocabulary of %d", tokens[i], i, hp->n_vocab);
    memcpy(c->tokens + c->n_past, tokens, n * sizeof(int32_t));
    for (size_t done = 0; done < n;) {
        int chunk = (int)(n - done < BATCH_TOKENS ? n - done : BATCH_TOKENS);
        bool last = done + (size_t)chunk == n;
        for (int i = 0; i < chunk; i++) {
            c->pos[i] = c->n_past + i;
            c->tables[i] = c->table;
            c->want[i] = all_logits || (last && i == chunk - 1);
        }
        struct batch b = {chunk, tokens + done, c->pos, c->tables, c->want};
        float *out = NULL;
        if (logits && all_logits) out = logits + done * (size_t)hp->n_vocab;
        else if (logits && last) out = logits;
        forward(&c->fs, &c->kv, &b, out);
        c->n_past += chunk;
        done += (size_t)chunk;
    }
    return KILN_OK;
}

kiln_status kiln_generate(kiln_context *c, const int32_t *prompt, size_t n_prompt,
                          const struct kiln_generate_params *params, kiln_text_cb cb, void *user,
                          struct kiln_generate_result *result, struct kiln_err *err)
{
    const kiln_model *km = c->model;
    struct sampler smp;
    struct text_stream out;
    struct kiln_generate_result res = {KILN_FINISH_LENGTH, (int32_t)n_prompt, 0};
    const char *text;
    size_t len;
    if (n_prompt == 0) return kiln_fail(err, KILN_EINVAL, "the prompt is empty");
    kiln_status st = sampler_init(&smp, &params->sampling, km->m.hp.n_vocab, err);
    if (st != KILN_OK) return st;
    text_stream_init(&out, params->stop, params->n_stop);
    kiln_context_reset(c);
    if ((st = kiln_eval(c, prompt, n_prompt, false, c->logits, err)) != KILN_OK) goto done;
    for (;;) {
        int32_t tok = sampler_sample(&smp, c->logits, c->tokens, c->n_past);
        if (!params->ignore_eos && kiln_model_is_eog(km, tok)) {
            res.finish = KILN_FINISH_STOP;
            break;
        }
        res.n_generated++;
        char piece[256];
        int n = kiln_token_to_piece(km, tok, false, piece, sizeof piece);
        if (n < 0 || text_stream_push(&out, piece, (size_t)n, &text, &len) != KILN_OK) {
            st = kiln_fail(err, KILN_ENOMEM, "out of memory for the output text");
            goto done;
        }
        if (len > 0 && cb && !cb(user, tok, text, len)) {
            res.finish = KILN_FINISH_CANCELED;
            break;
        }
        if (out.stopped) {
            res.finish = KILN_FINISH_STOP;
            break;
        }
        if ((params->max_tokens >= 0 && res.n_generated >= params->max_tokens) ||
            c->n_past >= c->n_ctx)
            break;
        if ((st = kiln_eval(c, &tok, 1, false, c->logits, err)) != KILN_OK) goto done;
    }
    /* Flush what was held back for a stop string or an unfinished UTF-8 sequence. */
    if (res.finish != KILN_FINISH_CANCELED && text_stream_finish(&out, &text, &len) == KILN_OK &&
        len > 0 && cb)
        cb(user, -1, text, len);
done:
    sampler_free(&smp);
    text_stream_free(&out);
    if (result) *result = res;
    return st;
}
