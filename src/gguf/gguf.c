/* GGUF v2/v3 reader: every length, count and offset is checked before use.
 * Contract: src/gguf/gguf.h. */
#include "gguf/gguf.h"

#include "base/map_file.h"
#include "base/status.h"

#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define MAX_ARRAY_DEPTH 4
#define MAX_NAME_LEN 4096
#define MAX_ELEMENTS (1ull << 60)

/* A read position that knows how many bytes remain. */
struct cursor {
    const uint8_t *p;
    uint64_t left;
    uint64_t start_size; /* for offsets in messages */
};

static uint64_t cursor_offset(const struct cursor *c)
{
    return c->start_size - c->left;
}

static bool take(struct cursor *c, void *dst, uint64_t n)
{
    if (n > c->left) return false;
    memcpy(dst, c->p, n);
    c->p += n;
    c->left -= n;
    return true;
}

static bool skip(struct cursor *c, uint64_t n)
{
    if (n > c->left) return false;
    c->p += n;
    c->left -= n;
    return true;
}

static const uint64_t scalar_size[GGUF_TYPE_COUNT] = {
    [GGUF_U8] = 1,  [GGUF_I8] = 1,  [GGUF_U16] = 2, [GGUF_I16] = 2, [GGUF_U32] = 4,
    [GGUF_I32] = 4, [GGUF_F32] = 4, [GGUF_BOOL] = 1, [GGUF_U64] = 8, [GGUF_I64] = 8,
    [GGUF_F64] = 8,
};

static const char *const type_names[GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

uint64_t gguf_scalar_size(enum gguf_type t)
{
    return (unsigned)t < GGUF_TYPE_COUNT ? scalar_size[t] : 0;
}

const char *gguf_type_name(enum gguf_type t)
{
    return (unsigned)t < GGUF_TYPE_COUNT ? type_names[t] : "unknown";
}

struct parser {
    struct gguf_file *g;
    struct cursor c;
    struct kiln_err *err;
    const char *what_kind; /* "key" or "tensor" */
    const char *what;      /* the key or tensor being read, for messages */
};

static kiln_status bad(struct parser *ps, const char *problem)
{
    if (!ps->what)
        return kiln_fail(ps->err, KILN_EFORMAT, "%s: %s at offset %llu", ps->g->path, problem,
                         (unsigned long long)cursor_offset(&ps->c));
    return kiln_fail(ps->err, KILN_EFORMAT, "%s: %s '%s': %s at offset %llu", ps->g->path,
                     ps->what_kind, ps->what, problem, (unsigned long long)cursor_offset(&ps->c));
}

static kiln_status read_u32(struct parser *ps, uint32_t *v, const char *field)
{
    if (!take(&ps->c, v, 4)) return bad(ps, field);
    return KILN_OK;
}

static kiln_status read_u64(struct parser *ps, uint64_t *v, const char *field)
{
    if (!take(&ps->c, v, 8)) return bad(ps, field);
    return KILN_OK;
}

static kiln_status read_str(struct parser *ps, struct gguf_str *s)
{
    uint64_t len;
    if (!take(&ps->c, &len, 8)) return bad(ps, "string length truncated");
    if (len > ps->c.left) return bad(ps, "string length past end of file");
    s->ptr = (const char *)ps->c.p;
    s->len = len;
    skip(&ps->c, len);
    return KILN_OK;
}

static char *dup_str(struct gguf_str s)
{
    char *out = malloc(s.len + 1);
    if (out) {
        memcpy(out, s.ptr, s.len);
        out[s.len] = 0;
    }
    return out;
}

static kiln_status read_value(struct parser *ps, enum gguf_type type, struct gguf_value *v,
                              int depth);

static kiln_status read_array(struct parser *ps, struct gguf_value *v, int depth)
{
    uint32_t et = 0;
    uint64_t n = 0;
    kiln_status st;
    if ((st = read_u32(ps, &et, "array element type truncated")) != KILN_OK) return st;
    if (et >= GGUF_TYPE_COUNT) return bad(ps, "unknown array element type");
    if ((st = read_u64(ps, &n, "array length truncated")) != KILN_OK) return st;
    if (depth >= MAX_ARRAY_DEPTH) return bad(ps, "arrays nested too deeply");
    v->arr.type = (enum gguf_type)et;
    v->arr.n = n;
    if (et != GGUF_STRING && et != GGUF_ARRAY) {
        uint64_t bytes;
        if (__builtin_mul_overflow(n, scalar_size[et], &bytes) || bytes > ps->c.left)
            return bad(ps, "array length past end of file");
        v->arr.data = ps->c.p;
        skip(&ps->c, bytes);
        return KILN_OK;
    }
    /* Each string takes at least 8 bytes and each nested array 12, which bounds n. */
    uint64_t min_each = et == GGUF_STRING ? 8 : 12;
    if (n > ps->c.left / min_each) return bad(ps, "array length past end of file");
    if (n == 0) return KILN_OK;
    v->arr.items = calloc(n, sizeof *v->arr.items);
    if (!v->arr.items) return kiln_fail(ps->err, KILN_ENOMEM, "%s: out of memory", ps->g->path);
    for (uint64_t i = 0; i < n; i++)
        if ((st = read_value(ps, (enum gguf_type)et, &v->arr.items[i], depth + 1)) != KILN_OK)
            return st;
    return KILN_OK;
}

static void free_value(struct gguf_value *v)
{
    if (v->type != GGUF_ARRAY || !v->arr.items) return;
    if (v->arr.type == GGUF_ARRAY)
        for (uint64_t i = 0; i < v->arr.n; i++) free_value(&v->arr.items[i]);
    free(v->arr.items);
    v->arr.items = NULL;
}

static kiln_status read_value(struct parser *ps, enum gguf_type type, struct gguf_value *v,
                              int depth)
{
    v->type = type;
    switch (type) {
    case GGUF_STRING:
        return read_str(ps, &v->s);
    case GGUF_ARRAY:
        return read_array(ps, v, depth);
    default:
        break;
    }
    uint8_t raw[8] = {0};
    if (!take(&ps->c, raw, scalar_size[type])) return bad(ps, "value truncated");
    switch (type) {
    case GGUF_U8: v->u = raw[0]; break;
    case GGUF_BOOL:
        if (raw[0] > 1) return bad(ps, "bool value is neither 0 nor 1");
        v->u = raw[0];
        break;
    case GGUF_I8: v->i = (int8_t)raw[0]; break;
    case GGUF_U16: { uint16_t x; memcpy(&x, raw, 2); v->u = x; break; }
    case GGUF_I16: { int16_t x; memcpy(&x, raw, 2); v->i = x; break; }
    case GGUF_U32: { uint32_t x; memcpy(&x, raw, 4); v->u = x; break; }
    case GGUF_I32: { int32_t x; memcpy(&x, raw, 4); v->i = x; break; }
    case GGUF_F32: { float x; memcpy(&x, raw, 4); v->f = x; break; }
    case GGUF_U64: memcpy(&v->u, raw, 8); break;
    case GGUF_I64: memcpy(&v->i, raw, 8); break;
    case GGUF_F64: memcpy(&v->f, raw, 8); break;
    default: return bad(ps, "unknown value type");
    }
    return KILN_OK;
}

static kiln_status read_kv(struct parser *ps, uint64_t index)
{
    struct gguf_kv *kv = &ps->g->kv[index];
    struct gguf_str key;
    uint32_t type = 0;
    kiln_status st;
    ps->what = NULL;
    if ((st = read_str(ps, &key)) != KILN_OK) return st;
    if (key.len == 0 || key.len > MAX_NAME_LEN) return bad(ps, "metadata key empty or too long");
    if (!(kv->key = dup_str(key))) return KILN_ENOMEM;
    ps->what_kind = "key";
    ps->what = kv->key;
    if ((st = read_u32(ps, &type, "value type truncated")) != KILN_OK) return st;
    if (type >= GGUF_TYPE_COUNT) return bad(ps, "unknown value type");
    if ((st = read_value(ps, (enum gguf_type)type, &kv->value, 0)) != KILN_OK) return st;
    if (!strmap_put(&ps->g->kv_index, kv->key, key.len, (int32_t)index))
        return bad(ps, "duplicate key");
    return KILN_OK;
}

static kiln_status read_tensor_info(struct parser *ps, uint64_t index)
{
    struct gguf_tensor *t = &ps->g->tensors[index];
    struct gguf_str name;
    uint32_t n_dims = 0, type = 0;
    kiln_status st;
    ps->what = NULL;
    if ((st = read_str(ps, &name)) != KILN_OK) return st;
    if (name.len == 0 || name.len > MAX_NAME_LEN) return bad(ps, "tensor name empty or too long");
    if (!(t->name = dup_str(name))) return KILN_ENOMEM;
    ps->what_kind = "tensor";
    ps->what = t->name;
    if ((st = read_u32(ps, &n_dims, "dimension count truncated")) != KILN_OK) return st;
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS) return bad(ps, "dimension count not in 1..4");
    t->n_dims = (int)n_dims;
    uint64_t elems = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t ne = 0;
        if ((st = read_u64(ps, &ne, "dimension truncated")) != KILN_OK) return st;
        if (ne == 0) return bad(ps, "dimension of 0");
        if (__builtin_mul_overflow(elems, ne, &elems) || elems > MAX_ELEMENTS)
            return bad(ps, "element count overflows");
        t->ne[d] = (int64_t)ne;
    }
    if ((st = read_u32(ps, &type, "tensor type truncated")) != KILN_OK) return st;
    const struct dtype_info *info = dtype_get(type);
    if (!info) return bad(ps, "unknown tensor type");
    t->type = (enum dtype)type;
    uint64_t row_bytes;
    if (!dtype_row_bytes(t->type, (uint64_t)t->ne[0], &row_bytes))
        return bad(ps, "row length is not a whole number of blocks of its type");
    if (__builtin_mul_overflow(row_bytes, elems / (uint64_t)t->ne[0], &t->size))
        return bad(ps, "byte size overflows");
    if ((st = read_u64(ps, &t->offset, "data offset truncated")) != KILN_OK) return st;
    if (!strmap_put(&ps->g->tensor_index, t->name, name.len, (int32_t)index))
        return bad(ps, "duplicate tensor name");
    return KILN_OK;
}

static kiln_status read_alignment(struct parser *ps)
{
    const struct gguf_value *v = gguf_get(ps->g, "general.alignment");
    ps->g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!v) return KILN_OK;
    int64_t a;
    if (v->type != GGUF_U32 || !gguf_value_int(v, &a) || a <= 0 || (a & (a - 1)) || a > 65536)
        return kiln_fail(ps->err, KILN_EFORMAT,
                         "%s: general.alignment must be a u32 power of two up to 65536",
                         ps->g->path);
    ps->g->alignment = (uint64_t)a;
    return KILN_OK;
}

/* Places every tensor's data inside the file, aligned. */
static kiln_status check_tensor_data(struct parser *ps)
{
    struct gguf_file *g = ps->g;
    uint64_t off = cursor_offset(&ps->c);
    uint64_t data_offset = (off + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors > 0 && data_offset > g->size)
        return kiln_fail(ps->err, KILN_EFORMAT, "%s: tensor data section starts past end of file",
                         g->path);
    g->data_offset = data_offset;
    uint64_t data_size = g->size > data_offset ? g->size - data_offset : 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct gguf_tensor *t = &g->tensors[i];
        uint64_t end;
        if (t->offset % g->alignment)
            return kiln_fail(ps->err, KILN_EFORMAT,
                             "%s: tensor '%s': data offset %llu is not a multiple of the "
                             "alignment %llu",
                             g->path, t->name, (unsigned long long)t->offset,
                             (unsigned long long)g->alignment);
        if (__builtin_add_overflow(t->offset, t->size, &end) || end > data_size)
            return kiln_fail(ps->err, KILN_EFORMAT,
                             "%s: tensor '%s': data [%llu, +%llu) runs past end of file",
                             g->path, t->name, (unsigned long long)t->offset,
                             (unsigned long long)t->size);
        t->data = g->base + data_offset + t->offset;
    }
    return KILN_OK;
}

static kiln_status parse(struct gguf_file *g, struct kiln_err *err)
{
    struct parser ps = {g, {g->base, g->size, g->size}, err, NULL, NULL};
    uint32_t magic;
    uint64_t n_tensors = 0, n_kv = 0;
    kiln_status st;
    if (!take(&ps.c, &magic, 4) || magic != GGUF_MAGIC)
        return kiln_fail(err, KILN_EFORMAT, "%s: not a GGUF file (bad magic)", g->path);
    if ((st = read_u32(&ps, &g->version, "version truncated")) != KILN_OK) return st;
    if (g->version < 2 || g->version > 3)
        return kiln_fail(err, KILN_EUNSUPP, "%s: GGUF version %u not supported (2 and 3 are)",
                         g->path, g->version);
    if ((st = read_u64(&ps, &n_tensors, "tensor count truncated")) != KILN_OK) return st;
    if ((st = read_u64(&ps, &n_kv, "metadata count truncated")) != KILN_OK) return st;
    /* A key-value pair takes at least 13 bytes, a tensor entry at least 29. */
    if (n_kv > ps.c.left / 13)
        return kiln_fail(err, KILN_EFORMAT, "%s: metadata count %llu exceeds the file size",
                         g->path, (unsigned long long)n_kv);
    if (n_tensors > ps.c.left / 29)
        return kiln_fail(err, KILN_EFORMAT, "%s: tensor count %llu exceeds the file size",
                         g->path, (unsigned long long)n_tensors);
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors || !strmap_init(&g->kv_index, n_kv) ||
        !strmap_init(&g->tensor_index, n_tensors))
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory reading the header", g->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = i + 1;
        if ((st = read_kv(&ps, i)) != KILN_OK) return st;
    }
    if ((st = read_alignment(&ps)) != KILN_OK) return st;
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = i + 1;
        if ((st = read_tensor_info(&ps, i)) != KILN_OK) return st;
    }
    return check_tensor_data(&ps);
}

static kiln_status open_common(struct gguf_file *g, const char *name, struct gguf_file **out,
                               struct kiln_err *err)
{
    kiln_status st;
    if (!(g->path = strdup(name))) {
        st = KILN_ENOMEM;
        goto fail;
    }
    if ((st = parse(g, err)) != KILN_OK) goto fail;
    *out = g;
    return KILN_OK;
fail:
    gguf_close(g);
    return st;
}

kiln_status gguf_open_memory(const void *buf, uint64_t size, const char *name,
                             struct gguf_file **out, struct kiln_err *err)
{
    struct gguf_file *g = calloc(1, sizeof *g);
    if (!g) return KILN_ENOMEM;
    g->base = buf;
    g->size = size;
    return open_common(g, name, out, err);
}

kiln_status gguf_open(const char *path, struct gguf_file **out, struct kiln_err *err)
{
    const uint8_t *base;
    uint64_t size;
    kiln_status st = map_file(path, 24, "GGUF", &base, &size, err);
    if (st != KILN_OK) return st;
    struct gguf_file *g = calloc(1, sizeof *g);
    if (!g) {
        map_file_release(base, size);
        return KILN_ENOMEM;
    }
    g->base = base;
    g->size = size;
    g->mapped = true;
    return open_common(g, path, out, err);
}

void gguf_close(struct gguf_file *g)
{
    if (!g) return;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free_value(&g->kv[i].value);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    strmap_free(&g->kv_index);
    strmap_free(&g->tensor_index);
    if (g->mapped) map_file_release(g->base, g->size);
    for (size_t i = g->n_owned; i-- > 0;) g->owned[i].release(g->owned[i].p);
    free(g->owned);
    free(g->path);
    free(g);
}

const struct gguf_value *gguf_get(const struct gguf_file *g, const char *key)
{
    int32_t i = strmap_get(&g->kv_index, key, strlen(key));
    return i < 0 ? NULL : &g->kv[i].value;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *g, const char *name)
{
    int32_t i = strmap_get(&g->tensor_index, name, strlen(name));
    return i < 0 ? NULL : &g->tensors[i];
}

static bool scalar_int(enum gguf_type t, uint64_t u, int64_t i, int64_t *out)
{
    switch (t) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_BOOL:
        *out = (int64_t)u;
        return true;
    case GGUF_U64:
        if (u > INT64_MAX) return false;
        *out = (int64_t)u;
        return true;
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64:
        *out = i;
        return true;
    default:
        return false;
    }
}

bool gguf_value_int(const struct gguf_value *v, int64_t *out)
{
    return v && scalar_int(v->type, v->u, v->i, out);
}

bool gguf_value_float(const struct gguf_value *v, double *out)
{
    if (!v) return false;
    if (v->type == GGUF_F32 || v->type == GGUF_F64) {
        *out = v->f;
        return true;
    }
    int64_t i;
    if (!gguf_value_int(v, &i)) return false;
    *out = (double)i;
    return true;
}

/* Reads element i of a scalar array into a gguf_value. */
static bool array_elem(const struct gguf_value *v, uint64_t i, struct gguf_value *e)
{
    if (!v || v->type != GGUF_ARRAY || i >= v->arr.n || !v->arr.data) return false;
    enum gguf_type t = v->arr.type;
    const uint8_t *p = (const uint8_t *)v->arr.data + i * scalar_size[t];
    e->type = t;
    e->u = 0;
    switch (t) {
    case GGUF_U8: case GGUF_BOOL: e->u = p[0]; break;
    case GGUF_I8: e->i = (int8_t)p[0]; break;
    case GGUF_U16: { uint16_t x; memcpy(&x, p, 2); e->u = x; break; }
    case GGUF_I16: { int16_t x; memcpy(&x, p, 2); e->i = x; break; }
    case GGUF_U32: { uint32_t x; memcpy(&x, p, 4); e->u = x; break; }
    case GGUF_I32: { int32_t x; memcpy(&x, p, 4); e->i = x; break; }
    case GGUF_F32: { float x; memcpy(&x, p, 4); e->f = x; break; }
    case GGUF_U64: memcpy(&e->u, p, 8); break;
    case GGUF_I64: memcpy(&e->i, p, 8); break;
    case GGUF_F64: memcpy(&e->f, p, 8); break;
    default: return false;
    }
    return true;
}

bool gguf_array_int(const struct gguf_value *v, uint64_t i, int64_t *out)
{
    struct gguf_value e;
    return array_elem(v, i, &e) && gguf_value_int(&e, out);
}

bool gguf_array_float(const struct gguf_value *v, uint64_t i, double *out)
{
    struct gguf_value e;
    return array_elem(v, i, &e) && gguf_value_float(&e, out);
}
