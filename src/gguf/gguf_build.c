/* Assembles a gguf_file in memory: copied metadata, borrowed tensor data, and a list of
 * things to release when the file is closed. Contract: src/gguf/gguf_build.h. */
#include "gguf/gguf_build.h"

#include "base/status.h"

#include <stdlib.h>
#include <string.h>

struct gguf_builder {
    struct gguf_file *g;
    size_t kv_cap, tensor_cap, owned_cap;
    bool oom;
};

struct gguf_builder *gguf_builder_new(const char *path)
{
    struct gguf_builder *b = calloc(1, sizeof *b);
    if (!b || !(b->g = calloc(1, sizeof *b->g)) || !(b->g->path = strdup(path))) {
        if (b) free(b->g);
        free(b);
        return NULL;
    }
    b->g->version = 3;
    b->g->alignment = GGUF_DEFAULT_ALIGNMENT;
    return b;
}

void gguf_builder_free(struct gguf_builder *b)
{
    if (!b) return;
    gguf_close(b->g);
    free(b);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return false;
    memset((char *)q + *cap * elem, 0, (n - *cap) * elem);
    *p = q;
    *cap = n;
    return true;
}

bool gguf_builder_own(struct gguf_builder *b, void *p, void (*release)(void *))
{
    struct gguf_file *g = b->g;
    if (!grow((void **)&g->owned, &b->owned_cap, g->n_owned + 1, sizeof *g->owned)) {
        release(p);
        b->oom = true;
        return false;
    }
    g->owned[g->n_owned++] = (struct gguf_owned){p, release};
    return true;
}

/* A copy of n bytes owned by the file, or NULL. */
static void *owned_copy(struct gguf_builder *b, const void *p, size_t n)
{
    void *q = malloc(n ? n : 1);
    if (!q) {
        b->oom = true;
        return NULL;
    }
    if (n) memcpy(q, p, n);
    return gguf_builder_own(b, q, free) ? q : NULL;
}

/* The slot for key: the existing one (its old value freed) or a new one. */
static struct gguf_value *slot(struct gguf_builder *b, const char *key)
{
    struct gguf_file *g = b->g;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) {
            struct gguf_value *v = &g->kv[i].value;
            if (v->type == GGUF_ARRAY) free(v->arr.items);
            memset(v, 0, sizeof *v);
            return v;
        }
    char *k = strdup(key);
    if (!k || !grow((void **)&g->kv, &b->kv_cap, g->n_kv + 1, sizeof *g->kv)) {
        free(k);
        b->oom = true;
        return NULL;
    }
    g->kv[g->n_kv].key = k;
    return &g->kv[g->n_kv++].value;
}

bool gguf_builder_str(struct gguf_builder *b, const char *key, const char *s, size_t len)
{
    const char *copy = owned_copy(b, s, len);
    struct gguf_value *v = copy ? slot(b, key) : NULL;
    if (!v) return false;
    v->type = GGUF_STRING;
    v->s = (struct gguf_str){copy, len};
    return true;
}

bool gguf_builder_u32(struct gguf_builder *b, const char *key, uint32_t x)
{
    struct gguf_value *v = slot(b, key);
    if (!v) return false;
    v->type = GGUF_U32;
    v->u = x;
    return true;
}

bool gguf_builder_f32(struct gguf_builder *b, const char *key, float x)
{
    struct gguf_value *v = slot(b, key);
    if (!v) return false;
    v->type = GGUF_F32;
    v->f = x;
    return true;
}

bool gguf_builder_bool(struct gguf_builder *b, const char *key, bool x)
{
    struct gguf_value *v = slot(b, key);
    if (!v) return false;
    v->type = GGUF_BOOL;
    v->u = x;
    return true;
}

static bool scalar_array(struct gguf_builder *b, const char *key, enum gguf_type type,
                         const void *data, uint64_t n)
{
    const void *copy = owned_copy(b, data, (size_t)n * gguf_scalar_size(type));
    struct gguf_value *v = copy ? slot(b, key) : NULL;
    if (!v) return false;
    v->type = GGUF_ARRAY;
    v->arr.type = type;
    v->arr.n = n;
    v->arr.data = copy;
    return true;
}

bool gguf_builder_i32_array(struct gguf_builder *b, const char *key, const int32_t *x, uint64_t n)
{
    return scalar_array(b, key, GGUF_I32, x, n);
}

bool gguf_builder_f32_array(struct gguf_builder *b, const char *key, const float *x, uint64_t n)
{
    return scalar_array(b, key, GGUF_F32, x, n);
}

bool gguf_builder_str_array(struct gguf_builder *b, const char *key, const char *const *s,
                            const size_t *lens, uint64_t n)
{
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += lens[i];
    char *blob = malloc(total ? total : 1);
    struct gguf_value *items = calloc(n ? n : 1, sizeof *items);
    if (!blob || !items) {
        free(blob);
        free(items);
        b->oom = true;
        return false;
    }
    size_t at = 0;
    for (uint64_t i = 0; i < n; i++) {
        memcpy(blob + at, s[i], lens[i]);
        items[i] = (struct gguf_value){.type = GGUF_STRING, .s = {blob + at, lens[i]}};
        at += lens[i];
    }
    struct gguf_value *v = gguf_builder_own(b, blob, free) ? slot(b, key) : NULL;
    if (!v) {
        free(items);
        return false;
    }
    v->type = GGUF_ARRAY;
    v->arr.type = GGUF_STRING;
    v->arr.n = n;
    v->arr.items = items;
    return true;
}

bool gguf_builder_tensor(struct gguf_builder *b, const char *name, enum dtype type, int n_dims,
                         const int64_t *ne, const void *data, uint64_t size)
{
    struct gguf_file *g = b->g;
    char *nm = strdup(name);
    if (!nm || n_dims < 1 || n_dims > GGUF_MAX_DIMS ||
        !grow((void **)&g->tensors, &b->tensor_cap, g->n_tensors + 1, sizeof *g->tensors)) {
        free(nm);
        b->oom = true;
        return false;
    }
    struct gguf_tensor *t = &g->tensors[g->n_tensors++];
    *t = (struct gguf_tensor){.name = nm, .type = type, .n_dims = n_dims, .size = size,
                              .data = data};
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    return true;
}

kiln_status gguf_builder_finish(struct gguf_builder *b, struct gguf_file **out,
                                struct kiln_err *err)
{
    struct gguf_file *g = b->g;
    kiln_status st = KILN_OK;
    if (b->oom || !strmap_init(&g->kv_index, g->n_kv) ||
        !strmap_init(&g->tensor_index, g->n_tensors)) {
        st = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", g->path);
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        strmap_put(&g->kv_index, g->kv[i].key, strlen(g->kv[i].key), (int32_t)i);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct gguf_tensor *t = &g->tensors[i];
        uint64_t rows = 1, row_bytes = 0, bytes;
        bool overflow = false;
        for (int d = 1; d < GGUF_MAX_DIMS; d++)
            overflow |= t->ne[d] < 0 || __builtin_mul_overflow(rows, (uint64_t)t->ne[d], &rows);
        if (overflow || t->ne[0] < 0 || !dtype_row_bytes(t->type, (uint64_t)t->ne[0], &row_bytes) ||
            __builtin_mul_overflow(rows, row_bytes, &bytes) || bytes != t->size) {
            st = kiln_fail(err, KILN_EFORMAT, "%s: tensor '%s' has %llu bytes, not what its "
                           "type and shape need", g->path, t->name, (unsigned long long)t->size);
            goto fail;
        }
        if (!strmap_put(&g->tensor_index, t->name, strlen(t->name), (int32_t)i)) {
            st = kiln_fail(err, KILN_EFORMAT, "%s: tensor '%s' appears twice", g->path, t->name);
            goto fail;
        }
    }
    *out = g;
    free(b);
    return KILN_OK;
fail:
    gguf_builder_free(b);
    return st;
}
