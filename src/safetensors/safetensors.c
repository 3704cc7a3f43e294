/* Reads and validates safetensors files: an 8-byte little-endian header length, a JSON
 * object of tensors (dtype, shape, data_offsets) and the data section they index.
 * Contract: src/safetensors/safetensors.h. */
#include "safetensors/safetensors.h"

#include "base/map_file.h"
#include "base/status.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned bits;
} dtypes[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 8},        [ST_U8] = {"U8", 8},     [ST_I8] = {"I8", 8},
    [ST_F8_E5M2] = {"F8_E5M2", 8},  [ST_F8_E4M3] = {"F8_E4M3", 8},
    [ST_I16] = {"I16", 16},         [ST_U16] = {"U16", 16},  [ST_F16] = {"F16", 16},
    [ST_BF16] = {"BF16", 16},       [ST_I32] = {"I32", 32},  [ST_U32] = {"U32", 32},
    [ST_F32] = {"F32", 32},         [ST_F64] = {"F64", 64},  [ST_I64] = {"I64", 64},
    [ST_U64] = {"U64", 64},
};

const char *st_dtype_name(enum st_dtype t)
{
    return (unsigned)t < ST_DTYPE_COUNT ? dtypes[t].name : "?";
}

static bool dtype_from_name(const char *s, enum st_dtype *out)
{
    for (int t = 0; t < ST_DTYPE_COUNT; t++)
        if (strcmp(s, dtypes[t].name) == 0) {
            *out = (enum st_dtype)t;
            return true;
        }
    return false;
}

/* Reads one tensor's entry; name is for messages. */
static kiln_status read_entry(struct st_file *f, const char *name, json_t *e, uint64_t data_size,
                              struct st_tensor *t, struct kiln_err *err)
{
    if (!json_is_object(e))
        return kiln_fail(err, KILN_EFORMAT, "%s: tensor '%s': entry is not a JSON object",
                         f->path, name);
    json_t *dt = json_object_get(e, "dtype"), *shape = json_object_get(e, "shape"),
           *offs = json_object_get(e, "data_offsets");
    if (!json_is_string(dt))
        return kiln_fail(err, KILN_EFORMAT, "%s: tensor '%s': missing string 'dtype'", f->path,
                         name);
    if (!dtype_from_name(json_string_value(dt), &t->dtype))
        return kiln_fail(err, KILN_EFORMAT, "%s: tensor '%s': unknown dtype '%.32s'", f->path,
                         name, json_string_value(dt));
    if (!json_is_array(shape) || json_array_size(shape) > ST_MAX_DIMS)
        return kiln_fail(err, KILN_EFORMAT, "%s: tensor '%s': 'shape' must be an array of at "
                         "most %d integers", f->path, name, ST_MAX_DIMS);
    t->n_dims = (int)json_array_size(shape);
    uint64_t elems = 1;
    for (int d = 0; d < t->n_dims; d++) {
        json_t *x = json_array_get(shape, (size_t)d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return kiln_fail(err, KILN_EFORMAT, "%s: tensor '%s': shape[%d] is not a "
                             "non-negative integer", f->path, name, d);
        t->shape[d] = json_integer_value(x);
        if (__builtin_mul_overflow(elems, (uint64_t)t->shape[d], &elems))
            return kiln_fail(err, KILN_EFORMAT, "%s: tensor '%s': shape overflows", f->path,
                             name);
    }
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_is_integer(json_array_get(offs, 0)) || !json_is_integer(json_array_get(offs, 1)) ||
        json_integer_value(json_array_get(offs, 0)) < 0 ||
        json_integer_value(json_array_get(offs, 1)) < 0)
        return kiln_fail(err, KILN_EFORMAT, "%s: tensor '%s': 'data_offsets' must be two "
                         "non-negative integers", f->path, name);
    t->begin = (uint64_t)json_integer_value(json_array_get(offs, 0));
    t->end = (uint64_t)json_integer_value(json_array_get(offs, 1));
    if (t->begin > t->end || t->end > data_size)
        return kiln_fail(err, KILN_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] outside "
                         "the data section of %llu bytes", f->path, name,
                         (unsigned long long)t->begin, (unsigned long long)t->end,
                         (unsigned long long)data_size);
    uint64_t bytes;
    if (__builtin_mul_overflow(elems, (uint64_t)dtypes[t->dtype].bits / 8, &bytes) ||
        bytes != t->end - t->begin)
        return kiln_fail(err, KILN_EFORMAT, "%s: tensor '%s': %s x shape is %llu bytes but "
                         "data_offsets span %llu", f->path, name, dtypes[t->dtype].name,
                         (unsigned long long)elems * dtypes[t->dtype].bits / 8,
                         (unsigned long long)(t->end - t->begin));
    return KILN_OK;
}

static int by_begin(const void *a, const void *b)
{
    const struct st_tensor *x = *(const struct st_tensor *const *)a,
                           *y = *(const struct st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* No two tensors share a byte (empty tensors take none). */
static kiln_status check_overlaps(struct st_file *f, struct kiln_err *err)
{
    if (f->n_tensors < 2) return KILN_OK;
    const struct st_tensor **order = malloc(f->n_tensors * sizeof *order);
    if (!order) return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", f->path);
    for (uint64_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, f->n_tensors, sizeof *order, by_begin);
    kiln_status st = KILN_OK;
    const struct st_tensor *prev = NULL;
    for (uint64_t i = 0; i < f->n_tensors && st == KILN_OK; i++) {
        if (order[i]->begin == order[i]->end) continue;
        if (prev && order[i]->begin < prev->end)
            st = kiln_fail(err, KILN_EFORMAT, "%s: tensors '%s' and '%s' overlap", f->path,
                           prev->name, order[i]->name);
        prev = order[i];
    }
    free(order);
    return st;
}

static kiln_status parse(struct st_file *f, struct kiln_err *err)
{
    if (f->size < 8)
        return kiln_fail(err, KILN_EFORMAT, "%s: file too short for a safetensors header "
                         "(%llu bytes)", f->path, (unsigned long long)f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | f->base[i];
    if (n > f->size - 8)
        return kiln_fail(err, KILN_EFORMAT, "%s: header length %llu runs past the end of the "
                         "file (%llu bytes)", f->path, (unsigned long long)n,
                         (unsigned long long)f->size);
    if (n > ST_MAX_HEADER)
        return kiln_fail(err, KILN_EFORMAT, "%s: header length %llu exceeds the format's "
                         "limit of %u", f->path, (unsigned long long)n, ST_MAX_HEADER);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return kiln_fail(err, KILN_EFORMAT, "%s: header is not valid JSON: %s (at byte %d)",
                         f->path, jerr.text, jerr.position);
    kiln_status st = KILN_OK;
    if (!json_is_object(root)) {
        st = kiln_fail(err, KILN_EFORMAT, "%s: header is not a JSON object", f->path);
        goto done;
    }
    size_t cap = json_object_size(root);
    f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
    if (!f->tensors || !strmap_init(&f->index, cap ? cap : 1)) {
        st = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", f->path);
        goto done;
    }
    uint64_t data_size = f->size - 8 - n;
    const uint8_t *data = f->base + 8 + n;
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(value)) {
                st = kiln_fail(err, KILN_EFORMAT, "%s: '__metadata__' is not an object", f->path);
                goto done;
            }
            continue;
        }
        struct st_tensor *t = &f->tensors[f->n_tensors];
        if ((st = read_entry(f, key, value, data_size, t, err)) != KILN_OK) goto done;
        if (!(t->name = strdup(key))) {
            st = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", f->path);
            goto done;
        }
        t->data = data + t->begin;
        strmap_put(&f->index, t->name, strlen(t->name), (int32_t)f->n_tensors);
        f->n_tensors++;
    }
    st = check_overlaps(f, err);
done:
    json_decref(root);
    return st;
}

static kiln_status open_common(struct st_file *f, const char *name, struct st_file **out,
                               struct kiln_err *err)
{
    kiln_status st;
    if (!(f->path = strdup(name))) {
        st = kiln_fail(err, KILN_ENOMEM, "%s: out of memory", name);
        goto fail;
    }
    if ((st = parse(f, err)) != KILN_OK) goto fail;
    *out = f;
    return KILN_OK;
fail:
    st_close(f);
    return st;
}

kiln_status st_open_memory(const void *buf, uint64_t size, const char *name,
                           struct st_file **out, struct kiln_err *err)
{
    struct st_file *f = calloc(1, sizeof *f);
    if (!f) return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", name);
    f->base = buf;
    f->size = size;
    return open_common(f, name, out, err);
}

kiln_status st_open(const char *path, struct st_file **out, struct kiln_err *err)
{
    const uint8_t *base;
    uint64_t size;
    kiln_status st = map_file(path, 8, "safetensors", &base, &size, err);
    if (st != KILN_OK) return st;
    struct st_file *f = calloc(1, sizeof *f);
    if (!f) {
        map_file_release(base, size);
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", path);
    }
    f->base = base;
    f->size = size;
    f->mapped = true;
    return open_common(f, path, out, err);
}

void st_close(struct st_file *f)
{
    if (!f) return;
    for (uint64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    strmap_free(&f->index);
    if (f->mapped) map_file_release(f->base, f->size);
    free(f->path);
    free(f);
}

const struct st_tensor *st_find(const struct st_file *f, const char *name)
{
    if (!f->index.slots) return NULL;
    int32_t i = strmap_get(&f->index, name, strlen(name));
    return i < 0 ? NULL : &f->tensors[i];
}
