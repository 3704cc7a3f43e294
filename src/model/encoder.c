/* The encoder pass of BERT-style embedding models: absolute position and token type
 * embeddings, bidirectional attention within each sequence, post-layer-norm blocks with a
 * GELU FFN, then pooling (mean, CLS or last token) and L2 normalization.
 * Contract: src/model/model.h. */
#include "model/model.h"

#include "base/status.h"
#include "kernels/cpu/convert.h"
#include "model/ops.h"
#include "tensor/quant.h"

#include <stdlib.h>
#include <string.h>

kiln_status encoder_state_init(struct encoder_state *s, const struct model *m, int n_batch,
                               struct kiln_err *err)
{
    const struct hparams *hp = &m->hp;
    memset(s, 0, sizeof *s);
    s->m = m;
    s->n_batch = n_batch;
    size_t nb = (size_t)n_batch, e = (size_t)hp->n_embd,
           qd = (size_t)hp->n_head * (size_t)hp->head_dim, ff = (size_t)hp->n_ff;
    s->x = malloc(nb * e * sizeof(float));
    s->tmp = malloc(nb * e * sizeof(float));
    s->q = malloc(nb * qd * sizeof(float));
    s->k = malloc(nb * qd * sizeof(float));
    s->v = malloc(nb * qd * sizeof(float));
    s->attn = malloc(nb * qd * sizeof(float));
    s->ff = malloc(nb * ff * sizeof(float));
    s->scores = malloc((size_t)pool_size(m->pool) * nb * sizeof(float));
    s->act = malloc(matmul_scratch_bytes(m, n_batch));
    if (!s->x || !s->tmp || !s->q || !s->k || !s->v || !s->attn || !s->ff || !s->scores ||
        !s->act) {
        encoder_state_free(s);
        return kiln_fail(err, KILN_ENOMEM, "out of memory for encoder scratch of %d tokens",
                         n_batch);
    }
    return KILN_OK;
}

void encoder_state_free(struct encoder_state *s)
{
    free(s->x);
    free(s->tmp);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->attn);
    free(s->ff);
    free(s->scores);
    free(s->act);
    memset(s, 0, sizeof *s);
}

struct attn_job {
    struct encoder_state *s;
    const int *starts;
    int n_seq;
    dot_fn dot;
    axpy_f32_fn axpy;
};

/* One (sequence, head) pair per unit of work: every query of the sequence against every key
 * of it, softmax, and the weighted sum of values. */
static void attention_worker(void *ctx, int ith, int nth)
{
    const struct attn_job *j = ctx;
    struct encoder_state *s = j->s;
    const struct hparams *hp = &s->m->hp;
    int hd = hp->head_dim, nh = hp->n_head;
    size_t qd = (size_t)nh * (size_t)hd;
    float *scores = s->scores + (size_t)ith * (size_t)s->n_batch;
    int units = j->n_seq * nh;
    for (int u = units * ith / nth; u < units * (ith + 1) / nth; u++) {
        int seq = u / nh, h = u % nh, a = j->starts[seq], b = j->starts[seq + 1];
        for (int i = a; i < b; i++) {
            const float *q = s->q + (size_t)i * qd + (size_t)h * hd;
            for (int p = a; p < b; p++)
                scores[p - a] = j->dot(s->k + (size_t)p * qd + (size_t)h * hd, q, hd) *
                                hp->attn_scale;
            softmax(scores, b - a);
            float *out = s->attn + (size_t)i * qd + (size_t)h * hd;
            memset(out, 0, (size_t)hd * sizeof(float));
            for (int p = a; p < b; p++)
                j->axpy(out, scores[p - a], s->v + (size_t)p * qd + (size_t)h * hd, hd);
        }
    }
}

/* The element-wise stages of a layer, one token at a time (split among the threads). */
enum token_stage { QKV_BIAS, ATTN_RESIDUAL, FFN_ACTIVATION, FFN_RESIDUAL };

struct stage_job {
    struct encoder_state *s;
    const struct layer *L;
    enum token_stage stage;
    int n;
};

static void residual_norm(float *x, const float *o, const float *bias, const float *w,
                          const float *b, int e, float eps)
{
    for (int i = 0; i < e; i++) x[i] += o[i] + bias[i];
    layernorm(x, x, w, b, e, eps);
}

static void stage_worker(void *ctx, int ith, int nth)
{
    const struct stage_job *j = ctx;
    struct encoder_state *s = j->s;
    const struct layer *L = j->L;
    const struct hparams *hp = &s->m->hp;
    int e = hp->n_embd, qd = hp->n_head * hp->head_dim, ff = hp->n_ff;
    for (int t = j->n * ith / nth; t < j->n * (ith + 1) / nth; t++) {
        size_t te = (size_t)t * (size_t)e;
        switch (j->stage) {
        case QKV_BIAS:
            add_bias(s->q + (size_t)t * qd, L->bq, 1, qd);
            add_bias(s->k + (size_t)t * qd, L->bk, 1, qd);
            add_bias(s->v + (size_t)t * qd, L->bv, 1, qd);
            break;
        case ATTN_RESIDUAL:
            residual_norm(s->x + te, s->tmp + te, L->bo, L->attn_out_norm, L->attn_out_norm_b, e,
                          hp->norm_eps);
            break;
        case FFN_ACTIVATION: {
            float *f = s->ff + (size_t)t * (size_t)ff;
            for (int i = 0; i < ff; i++) {
                float v = f[i] + L->ffn_up_b[i];
                f[i] = hp->gelu_tanh ? gelu_tanh(v) : gelu_erf(v);
            }
            break;
        }
        case FFN_RESIDUAL:
            residual_norm(s->x + te, s->tmp + te, L->ffn_down_b, L->out_norm, L->out_norm_b, e,
                          hp->norm_eps);
            break;
        }
    }
}

static void run_stage(struct encoder_state *s, const struct layer *L, enum token_stage stage,
                      int n)
{
    struct stage_job job = {s, L, stage, n};
    pool_run(s->m->pool, stage_worker, &job);
}

static void encoder_layer(struct encoder_state *s, const struct layer *L, const int *starts,
                          int n_seq, int n)
{
    const struct model *m = s->m;
    float *qkv_out[] = {s->q, s->k, s->v};
    const struct weight *qkv[] = {&L->wq, &L->wk, &L->wv};
    matmul_set(m->pool, qkv_out, qkv, 3, s->x, n, s->act);
    run_stage(s, L, QKV_BIAS, n);
    struct attn_job job = {s, starts, n_seq, dot_kernel_for(DTYPE_F32)->dot, axpy_f32_for_cpu()};
    pool_run(m->pool, attention_worker, &job);
    matmul(m->pool, s->tmp, &L->wo, s->attn, n, s->act);
    run_stage(s, L, ATTN_RESIDUAL, n);
    matmul(m->pool, s->ff, &L->ffn_up, s->x, n, s->act);
    run_stage(s, L, FFN_ACTIVATION, n);
    matmul(m->pool, s->tmp, &L->ffn_down, s->ff, n, s->act);
    run_stage(s, L, FFN_RESIDUAL, n);
}

/* Pools sequence [a, b) of the final hidden states into out and normalizes it. */
static void pool_sequence(const struct encoder_state *s, int a, int b, float *out)
{
    const struct hparams *hp = &s->m->hp;
    int e = hp->n_embd;
    if (hp->pooling == POOL_CLS || hp->pooling == POOL_LAST) {
        memcpy(out, s->x + (size_t)(hp->pooling == POOL_CLS ? a : b - 1) * e, (size_t)e * sizeof(float));
    } else {
        for (int i = 0; i < e; i++) {
            double sum = 0;
            for (int t = a; t < b; t++) sum += s->x[(size_t)t * e + i];
            out[i] = (float)(sum / (b - a));
        }
    }
    if (hp->normalize) l2_normalize(out, e);
}

void encode(struct encoder_state *s, const int32_t *tokens, const int *starts, int n_seq,
            float *out)
{
    const struct model *m = s->m;
    const struct hparams *hp = &m->hp;
    int e = hp->n_embd, n = starts[n_seq];
    float *row = s->tmp, *type_row = s->tmp + e; /* every token is of type 0 (one text) */
    if (hp->n_token_types > 0) dequantize_row(m->type_embd.type, type_row, m->type_embd.data, e);
    for (int seq = 0; seq < n_seq; seq++)
        for (int t = starts[seq]; t < starts[seq + 1]; t++) {
            float *x = s->x + (size_t)t * e;
            const struct weight *te = &m->tok_embd, *pe = &m->pos_embd;
            dequantize_row(te->type, x, te->data + (size_t)tokens[t] * te->row_bytes, e);
            dequantize_row(pe->type, row, pe->data + (size_t)(t - starts[seq]) * pe->row_bytes, e);
            for (int i = 0; i < e; i++) x[i] += row[i];
            if (hp->n_token_types > 0)
                for (int i = 0; i < e; i++) x[i] += type_row[i];
            layernorm(x, x, m->embd_norm, m->embd_norm_b, e, hp->norm_eps);
        }
    for (int il = 0; il < hp->n_layer; il++)
        encoder_layer(s, &m->layers[il], starts, n_seq, n);
    for (int seq = 0; seq < n_seq; seq++)
        pool_sequence(s, starts[seq], starts[seq + 1], out + (size_t)seq * e);
}
