/* Reads hyperparameters and binds weights from a GGUF file for the decoder architectures and
 * BERT-style encoders, checking that every tensor exists with the shape the architecture
 * needs.
 * Contract: src/model/model.h. */
#include "model/model.h"

#include "base/status.h"
#include "tensor/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct binder {
    struct model *m;
    struct gguf_file *g;
    struct kiln_err *err;
    const char *arch_name;
    size_t norm_used, norm_cap; /* floats used in m->norms */
};

/* The value of "ARCH.suffix" (its full name written to key), or NULL. */
static const struct gguf_value *arch_value(const struct binder *b, const char *suffix,
                                           char key[128])
{
    snprintf(key, 128, "%s.%s", b->arch_name, suffix);
    return gguf_get(b->g, key);
}

static kiln_status missing_key(const struct binder *b, const char *key)
{
    return kiln_fail(b->err, KILN_EFORMAT, "%s: missing key '%s'", b->g->path, key);
}

static kiln_status get_int(struct binder *b, const char *suffix, bool required, int64_t dflt,
                           int64_t lo, int64_t hi, int *out)
{
    char key[128];
    const struct gguf_value *v = arch_value(b, suffix, key);
    int64_t x = dflt;
    if (!v && required) return missing_key(b, key);
    if (v && v->type == GGUF_ARRAY)
        return kiln_fail(b->err, KILN_EUNSUPP, "%s: key '%s': per-layer values not supported",
                         b->g->path, key);
    if (v && !gguf_value_int(v, &x))
        return kiln_fail(b->err, KILN_EFORMAT, "%s: key '%s' is a %s, expected an integer",
                         b->g->path, key, gguf_type_name(v->type));
    if (x < lo || x > hi)
        return kiln_fail(b->err, KILN_EFORMAT, "%s: key '%s' = %lld is outside [%lld, %lld]",
                         b->g->path, key, (long long)x, (long long)lo, (long long)hi);
    *out = (int)x;
    return KILN_OK;
}

static kiln_status get_float(struct binder *b, const char *suffix, bool required, double dflt,
                             float *out)
{
    char key[128];
    const struct gguf_value *v = arch_value(b, suffix, key);
    double x = dflt;
    if (!v && required) return missing_key(b, key);
    if (v && !gguf_value_float(v, &x))
        return kiln_fail(b->err, KILN_EFORMAT, "%s: key '%s' is a %s, expected a number",
                         b->g->path, key, gguf_type_name(v->type));
    if (!isfinite(x))
        return kiln_fail(b->err, KILN_EFORMAT, "%s: key '%s' is not finite", b->g->path, key);
    *out = (float)x;
    return KILN_OK;
}

static bool str_eq(const struct gguf_value *v, const char *s)
{
    return v && v->type == GGUF_STRING && v->s.len == strlen(s) && memcmp(v->s.ptr, s, v->s.len) == 0;
}

static bool get_bool(struct binder *b, const char *suffix, bool dflt)
{
    char key[128];
    const struct gguf_value *v = arch_value(b, suffix, key);
    return v && v->type == GGUF_BOOL ? v->u != 0 : dflt;
}

/* Pooling, normalization and the encoder-only settings. GGUF files from llama.cpp carry
 * pooling_type, causal and layer_norm_epsilon; hidden_act and normalize_embeddings are kiln's
 * own keys, set when a Hugging Face directory says so (defaults: erf GELU, normalized). */
static kiln_status read_embedding_params(struct binder *b)
{
    struct hparams *hp = &b->m->hp;
    bool encoder = hp->arch == ARCH_BERT;
    kiln_status st;
    int pooling;
    if ((st = get_int(b, "pooling_type", false, encoder ? POOL_MEAN : POOL_LAST, 0, 3, &pooling)))
        return st;
    hp->pooling = pooling == POOL_NONE ? (encoder ? POOL_MEAN : POOL_LAST) : (enum pooling)pooling;
    hp->causal = get_bool(b, "attention.causal", !encoder);
    if (encoder && hp->causal)
        return kiln_fail(b->err, KILN_EUNSUPP, "%s: causal BERT models are not supported",
                         b->g->path);
    hp->normalize = get_bool(b, "normalize_embeddings", true);
    if ((st = get_float(b, "attention.layer_norm_epsilon", encoder, 1e-12, &hp->norm_eps)))
        return st;
    char key[128];
    const struct gguf_value *act = arch_value(b, "hidden_act", key);
    hp->gelu_tanh = false;
    if (act && !str_eq(act, "gelu")) {
        if (!str_eq(act, "gelu_new") && !str_eq(act, "gelu_pytorch_tanh") &&
            !str_eq(act, "gelu_fast"))
            return kiln_fail(b->err, KILN_EUNSUPP, "%s: activation '%.*s' is not supported "
                             "(gelu, gelu_new, gelu_pytorch_tanh are)", b->g->path,
                             (int)(act->s.len > 32 ? 32 : act->s.len), act->s.ptr);
        hp->gelu_tanh = true;
    }
    return KILN_OK;
}

static kiln_status read_hparams(struct binder *b)
{
    struct hparams *hp = &b->m->hp;
    kiln_status st;
    const int big = 1 << 20;
#define TRY(x)                                                                                     \
    if ((st = (x)) != KILN_OK) return st
    TRY(get_int(b, "embedding_length", true, 0, 1, big, &hp->n_embd));
    TRY(get_int(b, "block_count", true, 0, 1, 4096, &hp->n_layer));
    TRY(get_int(b, "feed_forward_length", true, 0, 1, big, &hp->n_ff));
    TRY(get_int(b, "attention.head_count", true, 0, 1, 4096, &hp->n_head));
    TRY(get_int(b, "attention.head_count_kv", false, hp->n_head, 1, hp->n_head, &hp->n_head_kv));
    TRY(get_int(b, "context_length", false, 2048, 1, 1 << 24, &hp->n_ctx_train));
    TRY(get_int(b, "attention.key_length", false, hp->n_embd / hp->n_head, 1, 4096,
                &hp->head_dim));
    int v_len;
    TRY(get_int(b, "attention.value_length", false, hp->head_dim, 1, 4096, &v_len));
    if (v_len != hp->head_dim)
        return kiln_fail(b->err, KILN_EUNSUPP, "%s: value_length %d differs from key_length %d",
                         b->g->path, v_len, hp->head_dim);
    if (hp->n_head % hp->n_head_kv)
        return kiln_fail(b->err, KILN_EFORMAT,
                         "%s: head_count %d is not a multiple of head_count_kv %d", b->g->path,
                         hp->n_head, hp->n_head_kv);
    TRY(get_int(b, "rope.dimension_count", false, hp->head_dim, 2, hp->head_dim, &hp->rope_dim));
    if (hp->rope_dim % 2)
        return kiln_fail(b->err, KILN_EFORMAT, "%s: rope.dimension_count is odd", b->g->path);
    TRY(get_float(b, "attention.layer_norm_rms_epsilon", false, 1e-5, &hp->rms_eps));
    TRY(get_float(b, "rope.freq_base", false, 10000.0, &hp->rope_base));
    TRY(get_float(b, "rope.freq_base_swa", false, 10000.0, &hp->rope_base_local));
    TRY(get_int(b, "expert_count", false, 0, 0, 1024, &hp->n_expert));
    TRY(get_int(b, "expert_used_count", false, 0, 0, hp->n_expert, &hp->n_expert_used));
    if (hp->n_expert > 0 && hp->n_expert_used == 0)
        return kiln_fail(b->err, KILN_EFORMAT, "%s: expert_count set without expert_used_count",
                         b->g->path);
    char key[128];
    const struct gguf_value *wn = arch_value(b, "expert_weights_norm", key);
    hp->expert_weights_norm = wn ? wn->u != 0 : true; /* llama-style MoE renormalizes */

    hp->rope_freq_scale = 1.0f;
    const struct gguf_value *scaling = arch_value(b, "rope.scaling.type", key);
    if (scaling && !str_eq(scaling, "none")) {
        if (!str_eq(scaling, "linear"))
            return kiln_fail(b->err, KILN_EUNSUPP, "%s: rope scaling type '%.*s' not supported",
                             b->g->path, (int)scaling->s.len, scaling->s.ptr);
        float factor;
        TRY(get_float(b, "rope.scaling.factor", true, 1.0, &factor));
        if (factor <= 0)
            return kiln_fail(b->err, KILN_EFORMAT, "%s: rope.scaling.factor must be positive",
                             b->g->path);
        hp->rope_freq_scale = 1.0f / factor;
    } else {
        float factor;
        TRY(get_float(b, "rope.scaling.factor", false, 1.0, &factor));
        if (factor > 0 && factor != 1.0f) hp->rope_freq_scale = 1.0f / factor;
    }
    hp->embd_scale = 1.0f;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    TRY(read_embedding_params(b));
    hp->rope_style = hp->arch == ARCH_LLAMA ? ROPE_NORM : ROPE_NEOX;
    if (hp->arch == ARCH_GEMMA3) {
        TRY(get_int(b, "attention.sliding_window", false, 0, 0, 1 << 24, &hp->sliding_window));
        hp->swa_period = 6; /* Gemma 3: five local layers, then one global */
        hp->embd_scale = sqrtf((float)hp->n_embd);
    }
#undef TRY
    return KILN_OK;
}

static kiln_status bind(struct binder *b, struct weight *w, const char *name, int64_t cols,
                        int64_t rows, int64_t n_mat, bool required)
{
    const struct gguf_tensor *t = gguf_find_tensor(b->g, name);
    if (!t) {
        if (!required) return KILN_OK;
        return kiln_fail(b->err, KILN_EFORMAT, "%s: missing tensor '%s'", b->g->path, name);
    }
    int64_t want[GGUF_MAX_DIMS] = {cols, rows, n_mat, 1};
    if (memcmp(t->ne, want, sizeof want) != 0)
        return kiln_fail(b->err, KILN_EFORMAT,
                         "%s: tensor '%s' has shape [%lld, %lld, %lld] but the model needs "
                         "[%lld, %lld, %lld]",
                         b->g->path, name, (long long)t->ne[0], (long long)t->ne[1],
                         (long long)t->ne[2], (long long)cols, (long long)rows, (long long)n_mat);
    const struct dot_kernel *k = dot_kernel_for(t->type);
    if (!k)
        return kiln_fail(b->err, KILN_EUNSUPP, "%s: tensor '%s' has type %s, which kiln cannot "
                         "multiply", b->g->path, name, dtype_get(t->type)->name);
    uint64_t row_bytes = 0;
    dtype_row_bytes(t->type, (uint64_t)cols, &row_bytes);
    *w = (struct weight){t->data, t->type, rows * n_mat, cols, (size_t)row_bytes, k, NULL};
    return KILN_OK;
}

/* Copies a vector tensor of n elements into the norms arena as floats. */
static kiln_status bind_vec(struct binder *b, float **out, const char *name, int64_t n,
                            bool required)
{
    const struct gguf_tensor *t = gguf_find_tensor(b->g, name);
    *out = NULL;
    if (!t) {
        if (!required) return KILN_OK;
        return kiln_fail(b->err, KILN_EFORMAT, "%s: missing tensor '%s'", b->g->path, name);
    }
    if (t->ne[0] != n || t->ne[1] * t->ne[2] * t->ne[3] != 1)
        return kiln_fail(b->err, KILN_EFORMAT,
                         "%s: tensor '%s' has %lld elements in dimension 0, the model needs %lld",
                         b->g->path, name, (long long)t->ne[0], (long long)n);
    if (b->norm_used + (size_t)n > b->norm_cap)
        return kiln_fail(b->err, KILN_EFORMAT, "%s: too many vector tensors", b->g->path);
    float *dst = b->m->norms + b->norm_used;
    if (!dequantize_row(t->type, dst, t->data, n))
        return kiln_fail(b->err, KILN_EUNSUPP, "%s: tensor '%s' has type %s, not a float type",
                         b->g->path, name, dtype_get(t->type)->name);
    b->norm_used += (size_t)n;
    *out = dst;
    return KILN_OK;
}

static kiln_status bind_layer(struct binder *b, int il)
{
    const struct hparams *hp = &b->m->hp;
    struct layer *L = &b->m->layers[il];
    int64_t e = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim,
            kvd = (int64_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff;
    bool gemma = hp->arch == ARCH_GEMMA3, qwen = hp->arch == ARCH_QWEN2;
    char n[96];
    kiln_status st;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
#define TRY(x)                                                                                     \
    if ((st = (x)) != KILN_OK) return st
    TRY(bind_vec(b, &L->attn_norm, NAME("attn_norm.weight"), e, true));
    TRY(bind(b, &L->wq, NAME("attn_q.weight"), e, qd, 1, true));
    TRY(bind(b, &L->wk, NAME("attn_k.weight"), e, kvd, 1, true));
    TRY(bind(b, &L->wv, NAME("attn_v.weight"), e, kvd, 1, true));
    TRY(bind(b, &L->wo, NAME("attn_output.weight"), qd, e, 1, true));
    TRY(bind_vec(b, &L->bq, NAME("attn_q.bias"), qd, qwen));
    TRY(bind_vec(b, &L->bk, NAME("attn_k.bias"), kvd, qwen));
    TRY(bind_vec(b, &L->bv, NAME("attn_v.bias"), kvd, qwen));
    TRY(bind_vec(b, &L->q_norm, NAME("attn_q_norm.weight"), hp->head_dim, gemma));
    TRY(bind_vec(b, &L->k_norm, NAME("attn_k_norm.weight"), hp->head_dim, gemma));
    TRY(bind_vec(b, &L->post_attn_norm, NAME("post_attention_norm.weight"), e, gemma));
    TRY(bind_vec(b, &L->ffn_norm, NAME("ffn_norm.weight"), e, true));
    TRY(bind_vec(b, &L->post_ffn_norm, NAME("post_ffw_norm.weight"), e, gemma));
    if (hp->n_expert > 0) {
        TRY(bind(b, &L->router, NAME("ffn_gate_inp.weight"), e, hp->n_expert, 1, true));
        TRY(bind(b, &L->gate_exps, NAME("ffn_gate_exps.weight"), e, ff, hp->n_expert, true));
        TRY(bind(b, &L->up_exps, NAME("ffn_up_exps.weight"), e, ff, hp->n_expert, true));
        TRY(bind(b, &L->down_exps, NAME("ffn_down_exps.weight"), ff, e, hp->n_expert, true));
    } else {
        TRY(bind(b, &L->ffn_gate, NAME("ffn_gate.weight"), e, ff, 1, true));
        TRY(bind(b, &L->ffn_up, NAME("ffn_up.weight"), e, ff, 1, true));
        TRY(bind(b, &L->ffn_down, NAME("ffn_down.weight"), ff, e, 1, true));
    }
#undef NAME
#undef TRY
    return KILN_OK;
}

/* A BERT layer: biased projections, post-attention and post-FFN layer norms, GELU FFN. */
static kiln_status bind_encoder_layer(struct binder *b, int il)
{
    const struct hparams *hp = &b->m->hp;
    struct layer *L = &b->m->layers[il];
    int64_t e = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim, ff = hp->n_ff;
    char n[96];
    kiln_status st;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
#define TRY(x)                                                                                     \
    if ((st = (x)) != KILN_OK) return st
    TRY(bind(b, &L->wq, NAME("attn_q.weight"), e, qd, 1, true));
    TRY(bind(b, &L->wk, NAME("attn_k.weight"), e, qd, 1, true));
    TRY(bind(b, &L->wv, NAME("attn_v.weight"), e, qd, 1, true));
    TRY(bind(b, &L->wo, NAME("attn_output.weight"), qd, e, 1, true));
    TRY(bind_vec(b, &L->bq, NAME("attn_q.bias"), qd, true));
    TRY(bind_vec(b, &L->bk, NAME("attn_k.bias"), qd, true));
    TRY(bind_vec(b, &L->bv, NAME("attn_v.bias"), qd, true));
    TRY(bind_vec(b, &L->bo, NAME("attn_output.bias"), e, true));
    TRY(bind_vec(b, &L->attn_out_norm, NAME("attn_output_norm.weight"), e, true));
    TRY(bind_vec(b, &L->attn_out_norm_b, NAME("attn_output_norm.bias"), e, true));
    TRY(bind(b, &L->ffn_up, NAME("ffn_up.weight"), e, ff, 1, true));
    TRY(bind_vec(b, &L->ffn_up_b, NAME("ffn_up.bias"), ff, true));
    TRY(bind(b, &L->ffn_down, NAME("ffn_down.weight"), ff, e, 1, true));
    TRY(bind_vec(b, &L->ffn_down_b, NAME("ffn_down.bias"), e, true));
    TRY(bind_vec(b, &L->out_norm, NAME("layer_output_norm.weight"), e, true));
    TRY(bind_vec(b, &L->out_norm_b, NAME("layer_output_norm.bias"), e, true));
#undef NAME
#undef TRY
    return KILN_OK;
}

/* The embedding tables and norm of an encoder, and its layers. */
static kiln_status bind_encoder(struct binder *b)
{
    struct model *m = b->m;
    struct hparams *hp = &m->hp;
    kiln_status st;
    if ((st = bind(b, &m->pos_embd, "position_embd.weight", hp->n_embd, hp->n_ctx_train, 1,
                   true)))
        return st;
    const struct gguf_tensor *tt = gguf_find_tensor(b->g, "token_types.weight");
    hp->n_token_types = tt ? (int)(tt->ne[1] > 0 && tt->ne[1] < 64 ? tt->ne[1] : 0) : 0;
    if (tt && (st = bind(b, &m->type_embd, "token_types.weight", hp->n_embd, hp->n_token_types,
                         1, true)))
        return st;
    if ((st = bind_vec(b, &m->embd_norm, "token_embd_norm.weight", hp->n_embd, true)) ||
        (st = bind_vec(b, &m->embd_norm_b, "token_embd_norm.bias", hp->n_embd, true)))
        return st;
    for (int il = 0; il < hp->n_layer; il++)
        if ((st = bind_encoder_layer(b, il)) != KILN_OK) return st;
    return KILN_OK;
}

static const char *size_label(char *buf, size_t cap, const struct gguf_file *g)
{
    uint64_t params = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        uint64_t n = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) n *= (uint64_t)g->tensors[i].ne[d];
        params += n;
    }
    if (params >= 1000000000ull)
        snprintf(buf, cap, "%.1fB", (double)params / 1e9);
    else
        snprintf(buf, cap, "%.0fM", (double)params / 1e6);
    return buf;
}

kiln_status model_load(struct model *m, struct gguf_file *g, int n_threads, struct kiln_err *err)
{
    memset(m, 0, sizeof *m);
    struct binder b = {m, g, err, NULL, 0, 0};
    const struct gguf_value *arch = gguf_get(g, "general.architecture");
    if (!arch || arch->type != GGUF_STRING)
        return kiln_fail(err, KILN_EFORMAT, "%s: missing string key 'general.architecture'",
                         g->path);
    if (str_eq(arch, "llama") || str_eq(arch, "mistral"))
        m->hp.arch = ARCH_LLAMA;
    else if (str_eq(arch, "qwen2"))
        m->hp.arch = ARCH_QWEN2;
    else if (str_eq(arch, "gemma3"))
        m->hp.arch = ARCH_GEMMA3;
    else if (str_eq(arch, "bert"))
        m->hp.arch = ARCH_BERT;
    else
        return kiln_fail(err, KILN_EUNSUPP,
                         "%s: architecture '%.*s' is not supported (llama, mistral, qwen2, gemma3, "
                         "bert are)",
                         g->path, (int)(arch->s.len > 64 ? 64 : arch->s.len), arch->s.ptr);
    char arch_name[72];
    snprintf(arch_name, sizeof arch_name, "%.*s", (int)arch->s.len, arch->s.ptr);
    b.arch_name = arch_name;
    kiln_status st = read_hparams(&b);
    if (st != KILN_OK) return st;
    struct hparams *hp = &m->hp;

    const struct gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
    if (!te) return kiln_fail(err, KILN_EFORMAT, "%s: missing tensor 'token_embd.weight'", g->path);
    if (te->ne[1] < 1 || te->ne[1] > (1 << 24))
        return kiln_fail(err, KILN_EFORMAT, "%s: tensor 'token_embd.weight' has a vocabulary of "
                         "%lld", g->path, (long long)te->ne[1]);
    hp->n_vocab = (int)te->ne[1];

    /* Room for every vector tensor: norms, biases, q/k norms. */
    b.norm_cap = (size_t)hp->n_layer * (8 * (size_t)hp->n_embd + 2 * (size_t)hp->head_dim +
                                        (size_t)hp->n_ff +
                                        (size_t)(hp->n_head + 2 * hp->n_head_kv) * hp->head_dim) +
                 3 * (size_t)hp->n_embd + (size_t)hp->rope_dim;
    m->norms = malloc(b.norm_cap * sizeof(float));
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->norms || !m->layers) {
        st = kiln_fail(err, KILN_ENOMEM, "%s: out of memory binding weights", g->path);
        goto fail;
    }
    if ((st = bind(&b, &m->tok_embd, "token_embd.weight", hp->n_embd, hp->n_vocab, 1, true)))
        goto fail;
    if (hp->arch == ARCH_BERT) {
        if ((st = bind_encoder(&b)) != KILN_OK) goto fail;
        goto bound;
    }
    if ((st = bind_vec(&b, &m->output_norm, "output_norm.weight", hp->n_embd, true))) goto fail;
    m->output = m->tok_embd;
    if ((st = bind(&b, &m->output, "output.weight", hp->n_embd, hp->n_vocab, 1, false)))
        goto fail;
    if ((st = bind_vec(&b, &m->rope_freqs, "rope_freqs.weight", hp->rope_dim / 2, false)))
        goto fail;
    for (int il = 0; il < hp->n_layer; il++)
        if ((st = bind_layer(&b, il)) != KILN_OK) goto fail;
bound:
    if (!(m->rope_theta = malloc((size_t)hp->rope_dim * sizeof(float)))) {
        st = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", g->path);
        goto fail;
    }
    for (int i = 0; i < hp->rope_dim / 2; i++) {
        float div = m->rope_freqs ? m->rope_freqs[i] : 1.0f;
        float expo = -2.0f * (float)i / (float)hp->rope_dim;
        m->rope_theta[i] = powf(hp->rope_base, expo) / div;
        m->rope_theta[hp->rope_dim / 2 + i] = powf(hp->rope_base_local, expo) / div;
    }

    if (!(m->pool = pool_new(n_threads))) {
        st = kiln_fail(err, KILN_ENOMEM, "cannot start worker threads");
        goto fail;
    }
    if ((st = model_repack(m, g->mapped, err)) != KILN_OK) goto fail;
    const struct gguf_value *ft = gguf_get(g, "general.file_type");
    int64_t ftype = -1;
    gguf_value_int(ft, &ftype);
    char size[16];
    snprintf(m->desc, sizeof m->desc, "%s %s%s %s", arch_name, size_label(size, sizeof size, g),
             hp->n_expert ? " MoE" : "", dtype_get(m->layers[0].wq.type)->name);
    m->gguf = g;
    return KILN_OK;
fail:
    if (m->pool) pool_free(m->pool);
    free(m->repacked_arena);
    free(m->norms);
    free(m->layers);
    free(m->rope_theta);
    memset(m, 0, sizeof *m);
    return st;
}

void model_unload(struct model *m)
{
    if (m->pool) pool_free(m->pool);
    free(m->repacked_arena);
    free(m->norms);
    free(m->layers);
    free(m->rope_theta);
    gguf_close(m->gguf);
    memset(m, 0, sizeof *m);
}
