/* GGUF v3 writer. Contract: src/gguf/gguf_write.h. */
#include "gguf/gguf_write.h"

#include "base/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_WRITE_VERSION 3u

struct writer_kv {
    char *key;
    struct gguf_value value; /* deep copy owned by the writer */
};

struct writer_tensor {
    char *name;
    enum dtype type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t offset, size;
};

struct gguf_writer {
    char *path, *tmp_path;
    FILE *f;
    struct writer_kv *kv;
    size_t n_kv, cap_kv;
    struct writer_tensor *tensors;
    size_t n_tensors, cap_tensors;
    uint64_t data_size;     /* of all declared tensors, padded */
    bool header_written;
    size_t current;         /* tensor being written */
    uint64_t current_done;  /* its bytes written so far */
    bool finished;
    struct kiln_err *err;
};

static uint64_t pad_to(uint64_t n, uint64_t align)
{
    return (n + align - 1) / align * align;
}

static kiln_status io_fail(struct gguf_writer *w)
{
    return kiln_fail(w->err, KILN_EIO, "%s: cannot write: %s", w->path, strerror(errno));
}

kiln_status gguf_writer_open(const char *path, struct gguf_writer **out, struct kiln_err *err)
{
    struct gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", path);
    w->err = err;
    size_t n = strlen(path);
    w->path = strdup(path);
    w->tmp_path = malloc(n + 8);
    if (!w->path || !w->tmp_path) {
        gguf_writer_free(w);
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", path);
    }
    snprintf(w->tmp_path, n + 8, "%s.part", path);
    if (!(w->f = fopen(w->tmp_path, "wb"))) {
        kiln_status st = kiln_fail(err, KILN_EIO, "%s: cannot create: %s", w->tmp_path,
                                   strerror(errno));
        gguf_writer_free(w);
        return st;
    }
    *out = w;
    return KILN_OK;
}

static void free_value(struct gguf_value *v)
{
    if (v->type == GGUF_STRING) free((void *)v->s.ptr);
    if (v->type != GGUF_ARRAY) return;
    if (v->arr.items)
        for (uint64_t i = 0; i < v->arr.n; i++) free_value(&v->arr.items[i]);
    free(v->arr.items);
    free((void *)v->arr.data);
}

static bool copy_value(struct gguf_value *dst, const struct gguf_value *src)
{
    *dst = *src;
    if (src->type == GGUF_STRING) {
        char *p = malloc(src->s.len ? src->s.len : 1);
        if (!p) return false;
        memcpy(p, src->s.ptr, src->s.len);
        dst->s.ptr = p;
        return true;
    }
    if (src->type != GGUF_ARRAY) return true;
    dst->arr.data = NULL;
    dst->arr.items = NULL;
    if (src->arr.type == GGUF_STRING || src->arr.type == GGUF_ARRAY) {
        if (src->arr.n == 0) return true;
        dst->arr.items = calloc(src->arr.n, sizeof *dst->arr.items);
        if (!dst->arr.items) return false;
        for (uint64_t i = 0; i < src->arr.n; i++)
            if (!copy_value(&dst->arr.items[i], &src->arr.items[i])) {
                dst->arr.n = i; /* free only what was copied */
                return false;
            }
        return true;
    }
    uint64_t bytes = src->arr.n * gguf_scalar_size(src->arr.type);
    void *p = malloc(bytes ? bytes : 1);
    if (!p) return false;
    memcpy(p, src->arr.data, bytes);
    dst->arr.data = p;
    return true;
}

kiln_status gguf_writer_set(struct gguf_writer *w, const char *key, const struct gguf_value *v)
{
    if (w->header_written)
        return kiln_fail(w->err, KILN_EINVAL, "%s: metadata %s set after tensor data", w->path,
                         key);
    struct gguf_value copy;
    if (!copy_value(&copy, v)) {
        free_value(&copy);
        return kiln_fail(w->err, KILN_ENOMEM, "%s: out of memory", w->path);
    }
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) {
            free_value(&w->kv[i].value);
            w->kv[i].value = copy;
            return KILN_OK;
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        struct writer_kv *kv = realloc(w->kv, cap * sizeof *kv);
        if (!kv) goto oom;
        w->kv = kv;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) goto oom;
    w->kv[w->n_kv++] = (struct writer_kv){k, copy};
    return KILN_OK;
oom:
    free_value(&copy);
    return kiln_fail(w->err, KILN_ENOMEM, "%s: out of memory", w->path);
}

kiln_status gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
    struct gguf_value val = {.type = GGUF_U32, .u = v};
    return gguf_writer_set(w, key, &val);
}

kiln_status gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v)
{
    struct gguf_value val = {.type = GGUF_STRING, .s = {v, strlen(v)}};
    return gguf_writer_set(w, key, &val);
}

kiln_status gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum dtype type,
                                   int n_dims, const int64_t *ne)
{
    if (w->header_written)
        return kiln_fail(w->err, KILN_EINVAL, "%s: tensor %s declared after tensor data",
                         w->path, name);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !dtype_get(type))
        return kiln_fail(w->err, KILN_EINVAL, "%s: tensor %s: bad type or dims", w->path, name);
    uint64_t rows = 1, row_bytes, size;
    for (int d = 1; d < n_dims; d++) rows *= (uint64_t)ne[d];
    if (ne[0] <= 0 || !dtype_row_bytes(type, (uint64_t)ne[0], &row_bytes) ||
        __builtin_mul_overflow(row_bytes, rows, &size))
        return kiln_fail(w->err, KILN_EINVAL, "%s: tensor %s: %lld columns do not fit %s blocks",
                         w->path, name, (long long)ne[0], dtype_get(type)->name);
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        struct writer_tensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) return kiln_fail(w->err, KILN_ENOMEM, "%s: out of memory", w->path);
        w->tensors = t;
        w->cap_tensors = cap;
    }
    struct writer_tensor *t = &w->tensors[w->n_tensors];
    *t = (struct writer_tensor){.type = type, .n_dims = n_dims, .offset = w->data_size,
                                .size = size};
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    if (!(t->name = strdup(name))) return kiln_fail(w->err, KILN_ENOMEM, "out of memory");
    w->n_tensors++;
    w->data_size = pad_to(w->data_size + size, GGUF_DEFAULT_ALIGNMENT);
    return KILN_OK;
}

static bool put(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n;
}

static bool put_u32(FILE *f, uint32_t v) { return put(f, &v, 4); }
static bool put_u64(FILE *f, uint64_t v) { return put(f, &v, 8); }

static bool put_str(FILE *f, const char *p, uint64_t n)
{
    return put_u64(f, n) && put(f, p, n);
}

static bool put_value(FILE *f, const struct gguf_value *v)
{
    switch (v->type) {
    case GGUF_STRING: return put_str(f, v->s.ptr, v->s.len);
    case GGUF_ARRAY:
        if (!put_u32(f, v->arr.type) || !put_u64(f, v->arr.n)) return false;
        if (v->arr.type == GGUF_STRING || v->arr.type == GGUF_ARRAY) {
            for (uint64_t i = 0; i < v->arr.n; i++)
                if (!put_value(f, &v->arr.items[i])) return false;
            return true;
        }
        return put(f, v->arr.data, v->arr.n * gguf_scalar_size(v->arr.type));
    case GGUF_F32: {
        float x = (float)v->f;
        return put(f, &x, 4);
    }
    case GGUF_F64: return put(f, &v->f, 8);
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64:
        return put(f, &v->i, gguf_scalar_size(v->type)); /* little-endian: low bytes first */
    default: return put(f, &v->u, gguf_scalar_size(v->type));
    }
}

static kiln_status write_header(struct gguf_writer *w)
{
    FILE *f = w->f;
    if (!put(f, GGUF_MAGIC, 4) || !put_u32(f, GGUF_WRITE_VERSION) ||
        !put_u64(f, w->n_tensors) || !put_u64(f, w->n_kv))
        return io_fail(w);
    for (size_t i = 0; i < w->n_kv; i++)
        if (!put_str(f, w->kv[i].key, strlen(w->kv[i].key)) ||
            !put_u32(f, w->kv[i].value.type) || !put_value(f, &w->kv[i].value))
            return io_fail(w);
    for (size_t i = 0; i < w->n_tensors; i++) {
        const struct writer_tensor *t = &w->tensors[i];
        if (!put_str(f, t->name, strlen(t->name)) || !put_u32(f, (uint32_t)t->n_dims))
            return io_fail(w);
        for (int d = 0; d < t->n_dims; d++)
            if (!put_u64(f, (uint64_t)t->ne[d])) return io_fail(w);
        if (!put_u32(f, t->type) || !put_u64(f, t->offset)) return io_fail(w);
    }
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
    long pos = ftell(f);
    if (pos < 0) return io_fail(w);
    size_t pad = (size_t)(pad_to((uint64_t)pos, GGUF_DEFAULT_ALIGNMENT) - (uint64_t)pos);
    if (!put(f, zeros, pad)) return io_fail(w);
    w->header_written = true;
    return KILN_OK;
}

/* Pads after a completed tensor and moves on to the next. */
static kiln_status close_tensor(struct gguf_writer *w)
{
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
    const struct writer_tensor *t = &w->tensors[w->current];
    size_t pad = (size_t)(pad_to(t->size, GGUF_DEFAULT_ALIGNMENT) - t->size);
    if (!put(w->f, zeros, pad)) return io_fail(w);
    w->current++;
    w->current_done = 0;
    return KILN_OK;
}

kiln_status gguf_writer_write(struct gguf_writer *w, const void *data, uint64_t size)
{
    kiln_status st;
    if (!w->header_written && (st = write_header(w)) != KILN_OK) return st;
    const uint8_t *p = data;
    while (size > 0) {
        if (w->current >= w->n_tensors)
            return kiln_fail(w->err, KILN_EINVAL, "%s: more tensor data than declared",
                             w->path);
        const struct writer_tensor *t = &w->tensors[w->current];
        uint64_t take = t->size - w->current_done;
        if (take > size) take = size;
        if (!put(w->f, p, take)) return io_fail(w);
        p += take;
        size -= take;
        w->current_done += take;
        if (w->current_done == t->size && (st = close_tensor(w)) != KILN_OK) return st;
    }
    return KILN_OK;
}

kiln_status gguf_writer_finish(struct gguf_writer *w)
{
    kiln_status st;
    if (!w->header_written && (st = write_header(w)) != KILN_OK) return st;
    /* Zero-size tensors complete without a write call. */
    while (w->current < w->n_tensors && w->tensors[w->current].size == 0)
        if ((st = close_tensor(w)) != KILN_OK) return st;
    if (w->current != w->n_tensors)
        return kiln_fail(w->err, KILN_EINVAL, "%s: tensor %s is missing data", w->path,
                         w->tensors[w->current].name);
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0) return io_fail(w);
    if (rename(w->tmp_path, w->path) != 0) return io_fail(w);
    w->finished = true;
    return KILN_OK;
}

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w) return;
    if (w->f) fclose(w->f);
    if (!w->finished && w->tmp_path) remove(w->tmp_path);
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free_value(&w->kv[i].value);
    }
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kv);
    free(w->tensors);
    free(w->path);
    free(w->tmp_path);
    free(w);
}
