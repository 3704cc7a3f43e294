/* Presents a Hugging Face model directory as a GGUF file: config.json becomes the
 * hyperparameter keys, safetensors tensors are renamed (and for llama, q/k rows permuted) as
 * llama.cpp's convert_hf_to_gguf.py does, and the sentence-transformers pipeline sets pooling
 * and normalization. Contract: src/safetensors/hf_dir.h. */
#include "safetensors/hf_dir.h"

#include "base/log.h"
#include "base/status.h"
#include "safetensors/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum hf_arch { HF_BERT, HF_LLAMA, HF_QWEN2 };

struct hf_loader {
    const char *dir;
    struct gguf_builder *b;
    json_t *config;
    enum hf_arch arch;
    const char *arch_name; /* GGUF's */
    int n_head, n_head_kv, head_dim;
    struct kiln_err *err;
};

bool hf_is_model_dir(const char *path)
{
    struct stat sb;
    char p[4096];
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return false;
    snprintf(p, sizeof p, "%s/config.json", path);
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

json_t *hf_read_json(const char *dir, const char *name, kiln_status *st, struct kiln_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *st = KILN_OK;
    struct stat sb;
    if (stat(path, &sb) != 0) return NULL;
    json_error_t jerr;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        *st = kiln_fail(err, KILN_EFORMAT, "%s: not valid JSON: %s (line %d)", path, jerr.text,
                        jerr.line);
    return j;
}

/* ---- hyperparameters ----------------------------------------------------------------- */

/* config[key] as a positive integer (or dflt when absent and dflt > 0). */
static kiln_status cfg_int(struct hf_loader *l, const char *key, int dflt, int *out)
{
    json_t *v = json_object_get(l->config, key);
    if ((!v || json_is_null(v)) && dflt > 0) {
        *out = dflt;
        return KILN_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 24))
        return kiln_fail(l->err, KILN_EFORMAT, "%s/config.json: '%s' %s", l->dir, key,
                         v ? "is not a positive integer" : "is missing");
    *out = (int)json_integer_value(v);
    return KILN_OK;
}

static kiln_status cfg_float(struct hf_loader *l, const char *key, double dflt, float *out)
{
    json_t *v = json_object_get(l->config, key);
    if (!v || json_is_null(v)) {
        *out = (float)dflt;
        return KILN_OK;
    }
    if (!json_is_number(v))
        return kiln_fail(l->err, KILN_EFORMAT, "%s/config.json: '%s' is not a number", l->dir, key);
    *out = (float)json_number_value(v);
    return KILN_OK;
}

static void put_u32(struct hf_loader *l, const char *suffix, uint32_t v)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", l->arch_name, suffix);
    gguf_builder_u32(l->b, key, v);
}

static void put_f32(struct hf_loader *l, const char *suffix, float v)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", l->arch_name, suffix);
    gguf_builder_f32(l->b, key, v);
}

static void put_str(struct hf_loader *l, const char *suffix, const char *v)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", l->arch_name, suffix);
    gguf_builder_str(l->b, key, v, strlen(v));
}

static kiln_status read_arch(struct hf_loader *l)
{
    json_t *mt = json_object_get(l->config, "model_type");
    const char *type = json_is_string(mt) ? json_string_value(mt) : NULL;
    if (!type)
        return kiln_fail(l->err, KILN_EFORMAT, "%s/config.json: missing string 'model_type'",
                         l->dir);
    if (!strcmp(type, "bert")) {
        l->arch = HF_BERT;
        l->arch_name = "bert";
    } else if (!strcmp(type, "llama") || !strcmp(type, "mistral")) {
        l->arch = HF_LLAMA;
        l->arch_name = "llama";
    } else if (!strcmp(type, "qwen2")) {
        l->arch = HF_QWEN2;
        l->arch_name = "qwen2";
    } else {
        return kiln_fail(l->err, KILN_EUNSUPP, "%s/config.json: model_type '%.64s' is not "
                         "supported (bert, llama, mistral, qwen2 are)", l->dir, type);
    }
    gguf_builder_str(l->b, "general.architecture", l->arch_name, strlen(l->arch_name));
    const char *base = strrchr(l->dir, '/');
    base = base && base[1] ? base + 1 : l->dir;
    gguf_builder_str(l->b, "general.name", base, strlen(base));
    return KILN_OK;
}

static kiln_status read_hparams(struct hf_loader *l)
{
    kiln_status st;
    int n_layer, n_ctx, n_embd, n_ff;
#define TRY(x)                                                                                     \
    if ((st = (x)) != KILN_OK) return st
    TRY(cfg_int(l, "num_hidden_layers", 0, &n_layer));
    TRY(cfg_int(l, "max_position_embeddings", l->arch == HF_BERT ? 512 : 2048, &n_ctx));
    TRY(cfg_int(l, "hidden_size", 0, &n_embd));
    TRY(cfg_int(l, "intermediate_size", 0, &n_ff));
    TRY(cfg_int(l, "num_attention_heads", 0, &l->n_head));
    TRY(cfg_int(l, "num_key_value_heads", l->n_head, &l->n_head_kv));
    TRY(cfg_int(l, "head_dim", n_embd / l->n_head, &l->head_dim));
    put_u32(l, "block_count", (uint32_t)n_layer);
    put_u32(l, "context_length", (uint32_t)n_ctx);
    put_u32(l, "embedding_length", (uint32_t)n_embd);
    put_u32(l, "feed_forward_length", (uint32_t)n_ff);
    put_u32(l, "attention.head_count", (uint32_t)l->n_head);
    if (l->head_dim != n_embd / l->n_head) {
        put_u32(l, "attention.key_length", (uint32_t)l->head_dim);
        put_u32(l, "attention.value_length", (uint32_t)l->head_dim);
    }
    float x;
    if (l->arch == HF_BERT) {
        json_t *pe = json_object_get(l->config, "position_embedding_type");
        if (json_is_string(pe) && strcmp(json_string_value(pe), "absolute") != 0)
            return kiln_fail(l->err, KILN_EUNSUPP, "%s/config.json: position_embedding_type "
                             "'%.32s' is not supported (absolute is)", l->dir,
                             json_string_value(pe));
        TRY(cfg_float(l, "layer_norm_eps", 1e-12, &x));
        put_f32(l, "attention.layer_norm_epsilon", x);
        int types;
        TRY(cfg_int(l, "type_vocab_size", 2, &types));
        gguf_builder_u32(l->b, "tokenizer.ggml.token_type_count", (uint32_t)types); /* llama.cpp reads it */
        char key[64];
        snprintf(key, sizeof key, "%s.attention.causal", l->arch_name);
        gguf_builder_bool(l->b, key, false);
        json_t *act = json_object_get(l->config, "hidden_act");
        if (json_is_string(act) && strcmp(json_string_value(act), "gelu") != 0)
            put_str(l, "hidden_act", json_string_value(act)); /* model_load checks it */
        return KILN_OK;
    }
    put_u32(l, "attention.head_count_kv", (uint32_t)l->n_head_kv);
    TRY(cfg_float(l, "rms_norm_eps", 1e-6, &x));
    put_f32(l, "attention.layer_norm_rms_epsilon", x);
    TRY(cfg_float(l, "rope_theta", 10000.0, &x));
    put_f32(l, "rope.freq_base", x);
    json_t *scaling = json_object_get(l->config, "rope_scaling");
    if (json_is_object(scaling)) {
        json_t *t = json_object_get(scaling, "rope_type");
        if (!t) t = json_object_get(scaling, "type");
        const char *type = json_is_string(t) ? json_string_value(t) : "?";
        json_t *f = json_object_get(scaling, "factor");
        if (strcmp(type, "linear") != 0 || !json_is_number(f))
            return kiln_fail(l->err, KILN_EUNSUPP, "%s/config.json: rope_scaling type '%.32s' is "
                             "not supported (linear is)", l->dir, type);
        put_str(l, "rope.scaling.type", "linear");
        put_f32(l, "rope.scaling.factor", (float)json_number_value(f));
    }
#undef TRY
    return KILN_OK;
}

/* sentence-transformers' pipeline: pooling mode and whether it normalizes. Without a
 * modules.json the model's defaults stand. */
static kiln_status read_pipeline(struct hf_loader *l)
{
    kiln_status st;
    json_t *modules = hf_read_json(l->dir, "modules.json", &st, l->err);
    if (!modules) return st;
    bool normalize = false;
    json_t *m;
    size_t i;
    json_array_foreach(modules, i, m) {
        const char *type = json_string_value(json_object_get(m, "type"));
        const char *path = json_string_value(json_object_get(m, "path"));
        if (!type) continue;
        const char *last = strrchr(type, '.');
        last = last ? last + 1 : type;
        if (!strcmp(last, "Normalize")) normalize = true;
        if (!strcmp(last, "Transformer") || !strcmp(last, "Normalize")) continue;
        if (strcmp(last, "Pooling") != 0) { /* a Dense layer, ...: the vectors would differ */
            st = kiln_fail(l->err, KILN_EUNSUPP, "%s/modules.json: module '%.64s' is not "
                           "supported (Transformer, Pooling and Normalize are)", l->dir, type);
            break;
        }
        if (!path || !path[0] || strstr(path, "..") || path[0] == '/') {
            st = kiln_fail(l->err, KILN_EFORMAT, "%s/modules.json: the Pooling module has a bad "
                           "path", l->dir);
            break;
        }
        char name[512];
        snprintf(name, sizeof name, "%s/config.json", path);
        json_t *pc = hf_read_json(l->dir, name, &st, l->err);
        if (!pc) {
            if (st == KILN_OK)
                st = kiln_fail(l->err, KILN_EFORMAT, "%s/%s: missing (modules.json names it)",
                               l->dir, name);
            break;
        }
        int mode = json_is_true(json_object_get(pc, "pooling_mode_cls_token"))     ? 2
                   : json_is_true(json_object_get(pc, "pooling_mode_mean_tokens")) ? 1
                   : json_is_true(json_object_get(pc, "pooling_mode_lasttoken"))   ? 3
                                                                                   : 0;
        json_decref(pc);
        if (!mode) {
            st = kiln_fail(l->err, KILN_EUNSUPP, "%s/%s: only CLS, mean and last-token pooling "
                           "are supported", l->dir, name);
            break;
        }
        put_u32(l, "pooling_type", (uint32_t)mode);
    }
    json_decref(modules);
    if (st != KILN_OK) return st;
    char key[96];
    snprintf(key, sizeof key, "%s.normalize_embeddings", l->arch_name);
    gguf_builder_bool(l->b, key, normalize);
    return KILN_OK;
}

/* ---- tensors ------------------------------------------------------------------------- */

struct rename {
    const char *hf, *gguf;
};

static const struct rename bert_global[] = {
    {"embeddings.word_embeddings.weight", "token_embd.weight"},
    {"embeddings.position_embeddings.weight", "position_embd.weight"},
    {"embeddings.token_type_embeddings.weight", "token_types.weight"},
    {"embeddings.LayerNorm.weight", "token_embd_norm.weight"},
    {"embeddings.LayerNorm.bias", "token_embd_norm.bias"},
    {"embeddings.LayerNorm.gamma", "token_embd_norm.weight"},
    {"embeddings.LayerNorm.beta", "token_embd_norm.bias"},
    {NULL, NULL},
};
static const struct rename bert_layer[] = { /* after "encoder.layer.N." */
    {"attention.self.query.", "attn_q."},
    {"attention.self.key.", "attn_k."},
    {"attention.self.value.", "attn_v."},
    {"attention.output.dense.", "attn_output."},
    {"attention.output.LayerNorm.", "attn_output_norm."},
    {"intermediate.dense.", "ffn_up."},
    {"output.dense.", "ffn_down."},
    {"output.LayerNorm.", "layer_output_norm."},
    {NULL, NULL},
};
static const struct rename decoder_global[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
    {NULL, NULL},
};
static const struct rename decoder_layer[] = { /* after "model.layers.N." */
    {"input_layernorm.", "attn_norm."},
    {"self_attn.q_proj.", "attn_q."},
    {"self_attn.k_proj.", "attn_k."},
    {"self_attn.v_proj.", "attn_v."},
    {"self_attn.o_proj.", "attn_output."},
    {"post_attention_layernorm.", "ffn_norm."},
    {"mlp.gate_proj.", "ffn_gate."},
    {"mlp.up_proj.", "ffn_up."},
    {"mlp.down_proj.", "ffn_down."},
    {NULL, NULL},
};

/* GGUF's name for an HF tensor name into out, or false for a tensor kiln does not use. */
static bool gguf_name(const struct hf_loader *l, const char *hf, char *out, size_t cap)
{
    bool bert = l->arch == HF_BERT;
    if (bert && !strncmp(hf, "bert.", 5)) hf += 5;
    for (const struct rename *r = bert ? bert_global : decoder_global; r->hf; r++)
        if (!strcmp(hf, r->hf)) {
            snprintf(out, cap, "%s", r->gguf);
            return true;
        }
    const char *prefix = bert ? "encoder.layer." : "model.layers.";
    size_t pl = strlen(prefix);
    if (strncmp(hf, prefix, pl) != 0) return false;
    char *end;
    long il = strtol(hf + pl, &end, 10);
    if (end == hf + pl || *end != '.' || il < 0 || il > 4096) return false;
    const char *rest = end + 1;
    for (const struct rename *r = bert ? bert_layer : decoder_layer; r->hf; r++) {
        size_t n = strlen(r->hf);
        if (!strncmp(rest, r->hf, n)) {
            const char *leaf = rest + n;
            if (!strcmp(leaf, "gamma")) leaf = "weight";
            if (!strcmp(leaf, "beta")) leaf = "bias";
            if (strcmp(leaf, "weight") != 0 && strcmp(leaf, "bias") != 0) return false;
            snprintf(out, cap, "blk.%ld.%s%s", il, r->gguf, leaf);
            return true;
        }
    }
    return false;
}

/* llama.cpp stores llama's q and k with the two halves of each head's rotary dims
 * interleaved (its rope rotates adjacent pairs); HF rotates halves. A permuted copy of the
 * rows, which the file owns. */
static const void *permute_rows(struct hf_loader *l, const struct st_tensor *t, int n_head)
{
    int64_t rows = t->shape[0];
    size_t row_bytes = (size_t)((t->end - t->begin) / (uint64_t)(rows ? rows : 1));
    int64_t hd = rows / n_head;
    uint8_t *out = malloc(t->end - t->begin ? t->end - t->begin : 1);
    if (!out || !gguf_builder_own(l->b, out, free)) return NULL;
    const uint8_t *in = t->data;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < hd / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(out + (size_t)(h * hd + 2 * i + j) * row_bytes,
                       in + (size_t)(h * hd + j * (hd / 2) + i) * row_bytes, row_bytes);
    return out;
}

static kiln_status add_tensor(struct hf_loader *l, const struct st_file *f,
                              const struct st_tensor *t)
{
    char name[160];
    if (!gguf_name(l, t->name, name, sizeof name)) {
        log_debug("%s: tensor '%s' is not used", f->path, t->name);
        return KILN_OK;
    }
    enum dtype type;
    switch (t->dtype) {
    case ST_F32: type = DTYPE_F32; break;
    case ST_F16: type = DTYPE_F16; break;
    case ST_BF16: type = DTYPE_BF16; break;
    default:
        return kiln_fail(l->err, KILN_EUNSUPP, "%s: tensor '%s' is %s (F32, F16 and BF16 are "
                         "supported)", f->path, t->name, st_dtype_name(t->dtype));
    }
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return kiln_fail(l->err, KILN_EFORMAT, "%s: tensor '%s' has %d dimensions", f->path,
                         t->name, t->n_dims);
    int64_t ne[GGUF_MAX_DIMS];
    for (int d = 0; d < t->n_dims; d++) ne[d] = t->shape[t->n_dims - 1 - d];
    const void *data = t->data;
    /* q and k (weights and biases) of llama: the rows of each head reordered */
    bool q = strstr(name, ".attn_q.") != NULL, k = strstr(name, ".attn_k.") != NULL;
    if (l->arch == HF_LLAMA && (q || k)) {
        int heads = q ? l->n_head : l->n_head_kv;
        if (t->n_dims > 2 || t->shape[0] != (int64_t)heads * l->head_dim || l->head_dim % 2)
            return kiln_fail(l->err, KILN_EFORMAT, "%s: tensor '%s' does not have %d heads of %d "
                             "rows", f->path, t->name, heads, l->head_dim);
        if (!(data = permute_rows(l, t, heads)))
            return kiln_fail(l->err, KILN_ENOMEM, "%s: out of memory", f->path);
    }
    if (!gguf_builder_tensor(l->b, name, type, t->n_dims, ne, data, t->end - t->begin))
        return kiln_fail(l->err, KILN_ENOMEM, "%s: out of memory", f->path);
    return KILN_OK;
}

static void close_st(void *p)
{
    st_close(p);
}

static kiln_status add_file(struct hf_loader *l, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", l->dir, name);
    struct st_file *f = NULL;
    kiln_status st = st_open(path, &f, l->err);
    if (st != KILN_OK) return st;
    if (!gguf_builder_own(l->b, f, close_st))
        return kiln_fail(l->err, KILN_ENOMEM, "%s: out of memory", path);
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if ((st = add_tensor(l, f, &f->tensors[i])) != KILN_OK) return st;
    return KILN_OK;
}

/* model.safetensors, or every shard model.safetensors.index.json names (each once). */
static kiln_status read_weights(struct hf_loader *l)
{
    kiln_status st;
    json_t *index = hf_read_json(l->dir, "model.safetensors.index.json", &st, l->err);
    if (st != KILN_OK) return st;
    if (!index) {
        char path[4096];
        struct stat sb;
        snprintf(path, sizeof path, "%s/model.safetensors", l->dir);
        if (stat(path, &sb) != 0)
            return kiln_fail(l->err, KILN_EIO, "%s: no model.safetensors or "
                             "model.safetensors.index.json (PyTorch .bin weights are not read)",
                             l->dir);
        return add_file(l, "model.safetensors");
    }
    json_t *map = json_object_get(index, "weight_map");
    if (!json_is_object(map)) {
        json_decref(index);
        return kiln_fail(l->err, KILN_EFORMAT, "%s/model.safetensors.index.json: missing object "
                         "'weight_map'", l->dir);
    }
    json_t *seen = json_object();
    const char *key;
    json_t *file;
    st = seen ? KILN_OK : KILN_ENOMEM;
    json_object_foreach(map, key, file) {
        if (st != KILN_OK) break;
        const char *name = json_string_value(file);
        if (!name || strstr(name, "..") || strchr(name, '/')) {
            st = kiln_fail(l->err, KILN_EFORMAT, "%s/model.safetensors.index.json: tensor '%.64s' "
                           "maps to a bad file name", l->dir, key);
            break;
        }
        if (json_object_get(seen, name)) continue;
        json_object_set_new(seen, name, json_true());
        st = add_file(l, name);
    }
    json_decref(seen);
    json_decref(index);
    return st;
}

kiln_status hf_dir_open(const char *dir, struct gguf_file **out, struct kiln_err *err)
{
    struct hf_loader l = {.dir = dir, .err = err};
    kiln_status st;
    if (!(l.b = gguf_builder_new(dir))) return kiln_fail(err, KILN_ENOMEM, "out of memory");
    l.config = hf_read_json(dir, "config.json", &st, err);
    if (!l.config && st == KILN_OK) st = kiln_fail(err, KILN_EIO, "%s: no config.json", dir);
    if (st == KILN_OK && !json_is_object(l.config))
        st = kiln_fail(err, KILN_EFORMAT, "%s/config.json: not a JSON object", dir);
    if (st == KILN_OK) st = read_arch(&l);
    if (st == KILN_OK) st = read_hparams(&l);
    if (st == KILN_OK) st = read_pipeline(&l);
    if (st == KILN_OK) st = hf_tokenizer_keys(l.b, dir, l.arch == HF_BERT, err);
    if (st == KILN_OK) st = read_weights(&l);
    json_decref(l.config);
    if (st != KILN_OK) {
        gguf_builder_free(l.b);
        return st;
    }
    return gguf_builder_finish(l.b, out, err);
}

kiln_status model_source_open(const char *path, struct gguf_file **out, struct kiln_err *err)
{
    return hf_is_model_dir(path) ? hf_dir_open(path, out, err) : gguf_open(path, out, err);
}
