/* Embeddings through the public API: encoder models run many inputs packed into one pass;
 * decoder models run each input over a private KV store and pool its last hidden states.
 * Contract: include/kiln.h. */
#include "kiln.h"

#include "base/status.h"
#include "model/model.h"
#include "model/ops.h"

#include <stdlib.h>
#include <string.h>

#define ENCODER_BATCH_TOKENS 2048 /* tokens per encoder pass: several inputs at once */
#define DECODER_BATCH_TOKENS 256

int32_t kiln_model_n_embd(const kiln_model *km)
{
    return kiln_model_internal(km)->hp.n_embd;
}

bool kiln_model_is_encoder(const kiln_model *km)
{
    return kiln_model_internal(km)->hp.arch == ARCH_BERT;
}

int32_t kiln_model_max_embed_tokens(const kiln_model *km)
{
    return kiln_model_internal(km)->hp.n_ctx_train;
}

static kiln_status check_inputs(const struct model *m, const int32_t *const *inputs,
                                const size_t *lens, size_t n, struct kiln_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (lens[i] == 0) return kiln_fail(err, KILN_EINVAL, "input %zu is empty", i);
        if (lens[i] > (size_t)m->hp.n_ctx_train)
            return kiln_fail(err, KILN_ERANGE, "input %zu has %zu tokens, more than the model's "
                             "limit of %d", i, lens[i], m->hp.n_ctx_train);
        for (size_t j = 0; j < lens[i]; j++)
            if (inputs[i][j] < 0 || inputs[i][j] >= m->hp.n_vocab)
                return kiln_fail(err, KILN_EINVAL, "input %zu: token id %d is outside the "
                                 "vocabulary of %d", i, inputs[i][j], m->hp.n_vocab);
    }
    return KILN_OK;
}

/* Packs consecutive inputs into passes of up to ENCODER_BATCH_TOKENS (or one longer input). */
static kiln_status embed_encoder(const struct model *m, const int32_t *const *inputs,
                                 const size_t *lens, size_t n, float *out, struct kiln_err *err)
{
    size_t cap = ENCODER_BATCH_TOKENS > (size_t)m->hp.n_ctx_train ? ENCODER_BATCH_TOKENS
                                                                  : (size_t)m->hp.n_ctx_train;
    struct encoder_state s;
    kiln_status st = encoder_state_init(&s, m, (int)cap, err);
    if (st != KILN_OK) return st;
    int32_t *tokens = malloc(cap * sizeof *tokens);
    int *starts = malloc((n + 1) * sizeof *starts);
    if (!tokens || !starts) {
        st = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t first = 0; first < n;) {
        size_t used = 0, k = 0;
        while (first + k < n && used + lens[first + k] <= cap) {
            starts[k] = (int)used;
            memcpy(tokens + used, inputs[first + k], lens[first + k] * sizeof *tokens);
            used += lens[first + k];
            k++;
        }
        starts[k] = (int)used;
        encode(&s, tokens, starts, (int)k, out + first * (size_t)m->hp.n_embd);
        first += k;
    }
done:
    free(tokens);
    free(starts);
    encoder_state_free(&s);
    return st;
}

/* One input through the decoder, in chunks, pooling the output-normed hidden states. */
static kiln_status embed_decoder_one(const struct model *m, const int32_t *ids, size_t len,
                                     float *out, struct kiln_err *err)
{
    const struct hparams *hp = &m->hp;
    int e = hp->n_embd, n_batch = len < DECODER_BATCH_TOKENS ? (int)len : DECODER_BATCH_TOKENS;
    int n_blocks = (int)((len + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE);
    struct forward_state fs;
    struct kv_store kv;
    kiln_status st = forward_state_init(&fs, m, n_batch, (int)len, err);
    if (st != KILN_OK) return st;
    if ((st = kv_store_init(&kv, m, DTYPE_F16, n_blocks, err)) != KILN_OK) {
        forward_state_free(&fs);
        return st;
    }
    int32_t *table = malloc((size_t)n_blocks * sizeof *table), *pos = malloc((size_t)n_batch * sizeof *pos);
    const int32_t **tables = malloc((size_t)n_batch * sizeof *tables);
    bool *want = malloc((size_t)n_batch);
    float *hidden = malloc((size_t)n_batch * (size_t)e * sizeof(float));
    if (!table || !pos || !tables || !want || !hidden) {
        st = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n_blocks; i++) table[i] = i;
    memset(out, 0, (size_t)e * sizeof(float));
    for (size_t done = 0; done < len;) {
        int chunk = (int)(len - done < (size_t)n_batch ? len - done : (size_t)n_batch), k = 0;
        for (int i = 0; i < chunk; i++) {
            size_t p = done + (size_t)i;
            pos[i] = (int32_t)p;
            tables[i] = table;
            want[i] = hp->pooling == POOL_MEAN || (hp->pooling == POOL_CLS && p == 0) ||
                      (hp->pooling == POOL_LAST && p == len - 1);
            k += want[i];
        }
        struct batch b = {chunk, ids + done, pos, tables, want};
        forward_hidden(&fs, &kv, &b, hidden);
        for (int t = 0; t < k; t++)
            for (int i = 0; i < e; i++) out[i] += hidden[(size_t)t * e + i];
        done += (size_t)chunk;
    }
    if (hp->pooling == POOL_MEAN)
        for (int i = 0; i < e; i++) out[i] /= (float)len;
    if (hp->normalize) l2_normalize(out, e);
done:
    free(table);
    free(pos);
    free(tables);
    free(want);
    free(hidden);
    kv_store_free(&kv);
    forward_state_free(&fs);
    return st;
}

kiln_status kiln_embed(kiln_model *km, const int32_t *const *inputs, const size_t *lens, size_t n,
                       float *out, struct kiln_err *err)
{
    const struct model *m = kiln_model_internal(km);
    kiln_status st = check_inputs(m, inputs, lens, n, err);
    if (st != KILN_OK || n == 0) return st;
    if (kiln_model_is_encoder(km)) return embed_encoder(m, inputs, lens, n, out, err);
    for (size_t i = 0; i < n && st == KILN_OK; i++)
        st = embed_decoder_one(m, inputs[i], lens[i], out + i * (size_t)m->hp.n_embd, err);
    return st;
}
