/* `kiln_quantize`: rewrites a GGUF model with its weight matrices in another type, choosing
 * each tensor's type by the recipe of the requested file type. Contract: include/kiln.h.
 *
 * The _M recipes follow llama.cpp's (so files compare like for like): the output matrix
 * (or the tied token embedding) at Q6_K, attn_v and ffn_down at Q6_K in the first and last
 * eighth of the layers and every third layer between, everything else at the base type.
 * A matrix whose rows are not whole K-quant super-blocks falls back to a 32-element type
 * of similar size (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), and to F16 when its rows are
 * not whole 32-element blocks either. */
#include "kiln.h"

#include "base/log.h"
#include "base/pool.h"
#include "base/status.h"
#include "gguf/gguf.h"
#include "gguf/gguf_write.h"
#include "safetensors/hf_dir.h"
#include "tensor/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* general.file_type values (llama_ftype). */
enum file_type {
    FTYPE_F32 = 0,
    FTYPE_F16 = 1,
    FTYPE_Q4_0 = 2,
    FTYPE_Q4_1 = 3,
    FTYPE_Q8_0 = 7,
    FTYPE_Q5_0 = 8,
    FTYPE_Q5_1 = 9,
    FTYPE_Q4_K_M = 15,
    FTYPE_Q5_K_M = 17,
    FTYPE_Q6_K = 18,
    FTYPE_BF16 = 32,
};

struct recipe {
    const char *name;
    enum file_type ftype;
    enum dtype base;   /* most weight matrices */
    enum dtype output; /* output.weight (or the tied token embedding) */
    bool mixed;        /* _M: attn_v and ffn_down get Q6_K in some layers */
};

static const struct recipe recipes[] = {
    {"f32", FTYPE_F32, DTYPE_F32, DTYPE_F32, false},
    {"f16", FTYPE_F16, DTYPE_F16, DTYPE_F16, false},
    {"bf16", FTYPE_BF16, DTYPE_BF16, DTYPE_BF16, false},
    {"q8_0", FTYPE_Q8_0, DTYPE_Q8_0, DTYPE_Q8_0, false},
    {"q4_0", FTYPE_Q4_0, DTYPE_Q4_0, DTYPE_Q6_K, false},
    {"q4_1", FTYPE_Q4_1, DTYPE_Q4_1, DTYPE_Q6_K, false},
    {"q5_0", FTYPE_Q5_0, DTYPE_Q5_0, DTYPE_Q6_K, false},
    {"q5_1", FTYPE_Q5_1, DTYPE_Q5_1, DTYPE_Q6_K, false},
    {"q4_k_m", FTYPE_Q4_K_M, DTYPE_Q4_K, DTYPE_Q6_K, true},
    {"q5_k_m", FTYPE_Q5_K_M, DTYPE_Q5_K, DTYPE_Q6_K, true},
    {"q6_k", FTYPE_Q6_K, DTYPE_Q6_K, DTYPE_Q6_K, false},
};

struct plan {
    const struct recipe *r;
    int n_layer;
    bool has_output; /* an untied output.weight exists */
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int layer_of(const char *name)
{
    int layer;
    return sscanf(name, "blk.%d.", &layer) == 1 ? layer : -1;
}

/* The layers llama.cpp's _M recipes give more bits. */
static bool more_bits_layer(int layer, int n_layer)
{
    return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

static bool is_float(enum dtype t)
{
    return t == DTYPE_F32 || t == DTYPE_F16 || t == DTYPE_BF16;
}

static enum dtype fallback(enum dtype t, int64_t ne0)
{
    const struct dtype_info *info = dtype_get(t);
    if (ne0 % info->block_elems == 0) return t;
    switch (t) {
    case DTYPE_Q4_K: t = DTYPE_Q5_0; break;
    case DTYPE_Q5_K: t = DTYPE_Q5_1; break;
    case DTYPE_Q6_K: t = DTYPE_Q8_0; break;
    default: break;
    }
    return ne0 % dtype_get(t)->block_elems == 0 ? t : DTYPE_F16;
}

/* The type tensor t gets; its own type when it is not a weight matrix. */
static enum dtype choose_type(const struct plan *p, const struct gguf_tensor *t)
{
    /* llama.cpp adds BERT's token type row to F32 activations directly: keep it F32 */
    if (t->n_dims < 2 || !ends_with(t->name, ".weight") || !strcmp(t->name, "token_types.weight"))
        return t->type;
    const struct recipe *r = p->r;
    enum dtype type = r->base;
    if (!strcmp(t->name, "output.weight") ||
        (!p->has_output && !strcmp(t->name, "token_embd.weight")))
        type = r->output;
    else if (r->mixed && (strstr(t->name, "attn_v.") || strstr(t->name, "ffn_down")) &&
             more_bits_layer(layer_of(t->name), p->n_layer))
        type = DTYPE_Q6_K;
    return fallback(type, t->ne[0]);
}

/* ---- converting one tensor on every thread ---------------------------------------------- */

struct convert_job {
    const struct gguf_tensor *src;
    enum dtype to;
    uint8_t *out;
    uint64_t rows, in_row_bytes, out_row_bytes;
    float *scratch; /* [n_threads][ne0] */
    bool failed;
};

static void convert_rows(void *arg, int ith, int nth)
{
    struct convert_job *j = arg;
    int64_t ne0 = j->src->ne[0];
    float *row = j->scratch + (size_t)ith * (size_t)ne0;
    const uint8_t *in = j->src->data;
    for (uint64_t r = (uint64_t)ith; r < j->rows; r += (uint64_t)nth) {
        const float *x = row;
        if (j->src->type == DTYPE_F32) x = (const float *)(in + r * j->in_row_bytes);
        else if (!dequantize_row(j->src->type, row, in + r * j->in_row_bytes, ne0))
            j->failed = true;
        if (!quantize_row(j->to, j->out + r * j->out_row_bytes, x, ne0)) j->failed = true;
    }
}

static kiln_status convert_tensor(struct pool *pool, const struct gguf_tensor *t, enum dtype to,
                                  struct gguf_writer *w, uint64_t *out_bytes,
                                  struct kiln_err *err)
{
    struct convert_job j = {.src = t, .to = to};
    j.rows = t->ne[1] * t->ne[2] * t->ne[3];
    if (!dtype_row_bytes(t->type, (uint64_t)t->ne[0], &j.in_row_bytes) ||
        !dtype_row_bytes(to, (uint64_t)t->ne[0], &j.out_row_bytes))
        return kiln_fail(err, KILN_EINVAL, "tensor %s: rows do not fit %s", t->name,
                         dtype_get(to)->name);
    *out_bytes = j.rows * j.out_row_bytes;
    j.out = malloc(*out_bytes);
    j.scratch = malloc((size_t)pool_size(pool) * (size_t)t->ne[0] * sizeof(float));
    kiln_status st = KILN_OK;
    if (!j.out || !j.scratch) {
        st = kiln_fail(err, KILN_ENOMEM, "tensor %s: out of memory for %llu bytes", t->name,
                       (unsigned long long)*out_bytes);
        goto done;
    }
    pool_run(pool, convert_rows, &j);
    if (j.failed) {
        st = kiln_fail(err, KILN_EUNSUPP, "tensor %s: cannot convert %s to %s", t->name,
                       dtype_get(t->type)->name, dtype_get(to)->name);
        goto done;
    }
    st = gguf_writer_write(w, j.out, *out_bytes);
done:
    free(j.out);
    free(j.scratch);
    return st;
}

/* ---- the whole file --------------------------------------------------------------------- */

static const struct recipe *find_recipe(const char *name)
{
    for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
        if (!strcasecmp(recipes[i].name, name)) return &recipes[i];
    return NULL;
}

static kiln_status make_plan(const struct gguf_file *g, const struct recipe *r, struct plan *p,
                             struct kiln_err *err)
{
    p->r = r;
    p->has_output = gguf_find_tensor(g, "output.weight") != NULL;
    p->n_layer = 0;
    const struct gguf_value *arch = gguf_get(g, "general.architecture");
    if (!arch || arch->type != GGUF_STRING || arch->s.len > 64)
        return kiln_fail(err, KILN_EFORMAT, "%s: general.architecture missing or not a string",
                         g->path);
    char key[96];
    snprintf(key, sizeof key, "%.*s.block_count", (int)arch->s.len, arch->s.ptr);
    int64_t n;
    const struct gguf_value *v = gguf_get(g, key);
    if (v && gguf_value_int(v, &n) && n > 0 && n < 100000) p->n_layer = (int)n;
    else if (r->mixed)
        return kiln_fail(err, KILN_EFORMAT, "%s: %s missing (the %s recipe needs it)", g->path,
                         key, r->name);
    return KILN_OK;
}

static kiln_status write_metadata(const struct gguf_file *g, const struct recipe *r,
                                  struct gguf_writer *w)
{
    kiln_status st;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const char *key = g->kv[i].key;
        /* The writer lays tensors out at its own alignment; the others are rewritten. */
        if (!strcmp(key, "general.alignment") || !strcmp(key, "general.file_type") ||
            !strcmp(key, "general.quantization_version"))
            continue;
        if ((st = gguf_writer_set(w, key, &g->kv[i].value)) != KILN_OK) return st;
    }
    if ((st = gguf_writer_set_u32(w, "general.file_type", (uint32_t)r->ftype)) != KILN_OK)
        return st;
    return gguf_writer_set_u32(w, "general.quantization_version", 2);
}

kiln_status kiln_quantize(const char *in_path, const char *out_path,
                          const struct kiln_quantize_params *params, struct kiln_err *err)
{
    const struct recipe *r = params && params->type ? find_recipe(params->type) : NULL;
    if (!r)
        return kiln_fail(err, KILN_EINVAL,
                         "unknown quantization type '%s' (known: q8_0 q4_0 q4_1 q5_0 q5_1 "
                         "q4_k_m q5_k_m q6_k f16 bf16 f32)",
                         params && params->type ? params->type : "");
    struct gguf_file *g = NULL;
    struct gguf_writer *w = NULL;
    struct pool *pool = NULL;
    enum dtype *types = NULL;
    struct plan plan;
    kiln_status st = model_source_open(in_path, &g, err);
    if (st != KILN_OK) return st;
    if ((st = make_plan(g, r, &plan, err)) != KILN_OK) goto done;
    if (!(types = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *types))) {
        st = kiln_fail(err, KILN_ENOMEM, "out of memory");
        goto done;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *t = &g->tensors[i];
        types[i] = choose_type(&plan, t);
        if (types[i] != t->type && !is_float(t->type) && !params->allow_requantize) {
            st = kiln_fail(err, KILN_EINVAL,
                           "%s: tensor %s is already %s; requantizing loses quality "
                           "(allow it with --allow-requantize)",
                           in_path, t->name, dtype_get(t->type)->name);
            goto done;
        }
    }
    if (!(pool = pool_new(params->n_threads))) {
        st = kiln_fail(err, KILN_ENOMEM, "cannot start threads");
        goto done;
    }
    if ((st = gguf_writer_open(out_path, &w, err)) != KILN_OK) goto done;
    if ((st = write_metadata(g, r, w)) != KILN_OK) goto done;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *t = &g->tensors[i];
        if ((st = gguf_writer_add_tensor(w, t->name, types[i], t->n_dims, t->ne)) != KILN_OK)
            goto done;
    }
    uint64_t total_in = 0, total_out = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *t = &g->tensors[i];
        uint64_t out_bytes = t->size;
        if (types[i] == t->type) st = gguf_writer_write(w, t->data, t->size);
        else st = convert_tensor(pool, t, types[i], w, &out_bytes, err);
        if (st != KILN_OK) goto done;
        total_in += t->size;
        total_out += out_bytes;
        log_info("[%4llu/%4llu] %-32s %5s -> %-5s %9.2f -> %9.2f MiB",
                 (unsigned long long)i + 1, (unsigned long long)g->n_tensors, t->name,
                 dtype_get(t->type)->name, dtype_get(types[i])->name, (double)t->size / 1048576.0,
                 (double)out_bytes / 1048576.0);
    }
    if ((st = gguf_writer_finish(w)) != KILN_OK) goto done;
    log_info("%s: %.2f MiB -> %.2f MiB (%s)", out_path, (double)total_in / 1048576.0,
             (double)total_out / 1048576.0, r->name);
done:
    gguf_writer_free(w);
    pool_free(pool);
    free(types);
    gguf_close(g);
    return st;
}
