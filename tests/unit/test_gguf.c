/* Tests for the GGUF reader: valid files parse, and every kind of broken file is refused
 * with a message, never a crash. Mirrors src/gguf/gguf.c. */
#include "check.h"
#include "gguf/gguf.h"
#include "gguf/gguf_write.h"

#include <unistd.h>

#include <stdint.h>
#include <string.h>

/* A growable byte buffer for building GGUF images by hand. */
struct buf {
    uint8_t data[1 << 16];
    size_t len;
};

static void put(struct buf *b, const void *p, size_t n)
{
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
static void put_u32(struct buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(struct buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(struct buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad_to(struct buf *b, size_t align)
{
    while (b->len % align) b->data[b->len++] = 0;
}

/* Offsets of interesting fields in the image build_valid makes. */
struct layout {
    size_t n_tensors, n_kv, arch_len, arr_len, tensor_ndims, tensor_dim0, tensor_type,
        tensor_offset, data;
};

/* A small valid v3 file: 3 keys (a string, a u32 alignment, an array of strings),
 * and two tensors (F32 [8], Q8_0 [32 x 2]). */
static void build_valid(struct buf *b, struct layout *l)
{
    memset(b, 0, sizeof *b);
    put_u32(b, 0x46554747u);
    put_u32(b, 3);
    l->n_tensors = b->len;
    put_u64(b, 2);
    l->n_kv = b->len;
    put_u64(b, 3);
    put_str(b, "general.architecture");
    put_u32(b, GGUF_STRING);
    l->arch_len = b->len;
    put_str(b, "llama");
    put_str(b, "general.alignment");
    put_u32(b, GGUF_U32);
    put_u32(b, 32);
    put_str(b, "tokenizer.ggml.tokens");
    put_u32(b, GGUF_ARRAY);
    put_u32(b, GGUF_STRING);
    l->arr_len = b->len;
    put_u64(b, 2);
    put_str(b, "a");
    put_str(b, "bc");
    put_str(b, "vec");
    l->tensor_ndims = b->len;
    put_u32(b, 1);
    l->tensor_dim0 = b->len;
    put_u64(b, 8);
    l->tensor_type = b->len;
    put_u32(b, DTYPE_F32);
    l->tensor_offset = b->len;
    put_u64(b, 0);
    put_str(b, "mat");
    put_u32(b, 2);
    put_u64(b, 32);
    put_u64(b, 2);
    put_u32(b, DTYPE_Q8_0);
    put_u64(b, 32);
    pad_to(b, 32);
    l->data = b->len;
    for (int i = 0; i < 8; i++) {
        float f = (float)i;
        put(b, &f, 4);
    }
    uint8_t q[68] = {0};
    put(b, q, sizeof q);
}

static kiln_status parse(const struct buf *b, size_t len, struct kiln_err *err)
{
    struct gguf_file *g = NULL;
    kiln_status st = gguf_open_memory(b->data, len, "test.gguf", &g, err);
    gguf_close(g);
    return st;
}

static struct buf b;
static struct layout l;

static void test_gguf_reads_valid_file(void)
{
    build_valid(&b, &l);
    struct gguf_file *g = NULL;
    struct kiln_err err = {{0}};
    kiln_status st = gguf_open_memory(b.data, b.len, "test.gguf", &g, &err);
    CHECK(st == KILN_OK, "%s", err.msg);
    CHECK(g->version == 3 && g->n_kv == 3 && g->n_tensors == 2, "counts");
    const struct gguf_value *arch = gguf_get(g, "general.architecture");
    CHECK(arch && arch->type == GGUF_STRING && arch->s.len == 5 &&
              memcmp(arch->s.ptr, "llama", 5) == 0,
          "architecture");
    const struct gguf_value *toks = gguf_get(g, "tokenizer.ggml.tokens");
    CHECK(toks && toks->arr.n == 2 && toks->arr.items[1].s.len == 2, "token array");
    const struct gguf_tensor *t = gguf_find_tensor(g, "mat");
    CHECK(t && t->type == DTYPE_Q8_0 && t->ne[0] == 32 && t->ne[1] == 2 && t->size == 68,
          "tensor mat");
    const struct gguf_tensor *v = gguf_find_tensor(g, "vec");
    CHECK(v && ((const float *)v->data)[7] == 7.0f, "tensor data");
    CHECK(gguf_find_tensor(g, "nope") == NULL && gguf_get(g, "nope") == NULL, "absent names");
    gguf_close(g);
}

static void test_gguf_rejects_every_truncation(void)
{
    build_valid(&b, &l);
    for (size_t len = 0; len < b.len; len++) {
        struct kiln_err err = {{0}};
        kiln_status st = parse(&b, len, &err);
        CHECK(st != KILN_OK, "truncated at %zu accepted", len);
        CHECK(strstr(err.msg, "test.gguf") != NULL, "message without file name: %s", err.msg);
    }
}

static void expect_refused(size_t at, uint64_t value, int width, const char *needle)
{
    build_valid(&b, &l);
    if (width == 8)
        memcpy(b.data + at, &value, 8);
    else {
        uint32_t v32 = (uint32_t)value;
        memcpy(b.data + at, &v32, 4);
    }
    struct kiln_err err = {{0}};
    kiln_status st = parse(&b, b.len, &err);
    if (st == KILN_OK || !strstr(err.msg, needle)) {
        fprintf(stderr, "  patch at %zu = %llu: status %d, message '%s', expected '%s'\n", at,
                (unsigned long long)value, st, err.msg, needle);
        check_current_failed = 1;
    }
}

static void test_gguf_rejects_huge_counts_and_lengths(void)
{
    expect_refused(l.n_tensors, 1ull << 63, 8, "tensor count");
    expect_refused(l.n_kv, 1ull << 63, 8, "metadata count");
    expect_refused(l.arch_len, 1ull << 63, 8, "string length past end");
    expect_refused(l.arr_len, 1ull << 63, 8, "array length past end");
    expect_refused(l.arr_len, UINT64_MAX, 8, "array length past end");
    expect_refused(l.tensor_dim0, 1ull << 62, 8, "'vec'");
}

static void test_gguf_rejects_bad_tensor_fields(void)
{
    expect_refused(l.tensor_ndims, 0, 4, "dimension count");
    expect_refused(l.tensor_ndims, 5, 4, "dimension count");
    expect_refused(l.tensor_dim0, 0, 8, "dimension of 0");
    expect_refused(l.tensor_type, 99, 4, "unknown tensor type");
    expect_refused(l.tensor_type, DTYPE_Q4_K, 4, "whole number of blocks");
    expect_refused(l.tensor_offset, 4, 8, "alignment");
    expect_refused(l.tensor_offset, 1ull << 40, 8, "past end of file");
    expect_refused(l.tensor_offset, UINT64_MAX - 31, 8, "'vec'");
}

static void test_gguf_rejects_bad_header(void)
{
    expect_refused(0, 0x12345678, 4, "bad magic");
    expect_refused(4, 1, 4, "version 1");
    expect_refused(4, 4, 4, "version 4");
}

static void test_gguf_rejects_duplicates_and_unknown_types(void)
{
    /* "vec" renamed to "mat" (same length) duplicates the second tensor. */
    build_valid(&b, &l);
    memcpy(b.data + l.tensor_ndims - 3, "mat", 3);
    struct kiln_err err = {{0}};
    CHECK(parse(&b, b.len, &err) == KILN_EFORMAT && strstr(err.msg, "duplicate tensor"), "%s",
          err.msg);
    /* key "general.alignment" value type patched to an unknown type */
    build_valid(&b, &l);
    size_t type_at = l.arch_len + 8 + 5 + 8 + strlen("general.alignment");
    uint32_t bad = 77;
    memcpy(b.data + type_at, &bad, 4);
    CHECK(parse(&b, b.len, &err) == KILN_EFORMAT && strstr(err.msg, "unknown value type"), "%s",
          err.msg);
    /* alignment that is not a power of two */
    build_valid(&b, &l);
    uint32_t align = 24;
    memcpy(b.data + type_at + 4, &align, 4);
    CHECK(parse(&b, b.len, &err) == KILN_EFORMAT && strstr(err.msg, "alignment"), "%s", err.msg);
    /* the same key twice */
    struct buf d;
    memset(&d, 0, sizeof d);
    put_u32(&d, 0x46554747u);
    put_u32(&d, 3);
    put_u64(&d, 0);
    put_u64(&d, 2);
    for (int i = 0; i < 2; i++) {
        put_str(&d, "k");
        put_u32(&d, GGUF_U8);
        d.data[d.len++] = 1;
    }
    CHECK(parse(&d, d.len, &err) == KILN_EFORMAT && strstr(err.msg, "duplicate key"), "%s",
          err.msg);
}

static void test_gguf_reads_nested_arrays_and_rejects_deep_nesting(void)
{
    struct buf d;
    struct kiln_err err = {{0}};
    for (int depth = 1; depth <= 6; depth++) {
        memset(&d, 0, sizeof d);
        put_u32(&d, 0x46554747u);
        put_u32(&d, 3);
        put_u64(&d, 0);
        put_u64(&d, 1);
        put_str(&d, "nested");
        put_u32(&d, GGUF_ARRAY);
        for (int i = 1; i < depth; i++) {
            put_u32(&d, GGUF_ARRAY);
            put_u64(&d, 1);
        }
        put_u32(&d, GGUF_I32);
        put_u64(&d, 2);
        put_u32(&d, 5);
        put_u32(&d, (uint32_t)-6);
        kiln_status st = parse(&d, d.len, &err);
        if (depth <= 4)
            CHECK(st == KILN_OK, "depth %d: %s", depth, err.msg);
        else
            CHECK(st == KILN_EFORMAT && strstr(err.msg, "nested"), "depth %d accepted", depth);
    }
}

static void test_gguf_reads_every_synthetic_model(void)
{
    const char *names[] = {"llama-gqa.f32", "llama-gqa.q4_k_m", "qwen2.f16", "llama-moe.f16"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/models/synthetic/%s.gguf", check_shared_dir(), names[i]);
        struct gguf_file *g = NULL;
        struct kiln_err err = {{0}};
        CHECK(gguf_open(path, &g, &err) == KILN_OK, "%s", err.msg);
        CHECK(g->n_tensors > 10 && gguf_get(g, "general.architecture"), "%s: contents", path);
        gguf_close(g);
    }
    struct kiln_err err = {{0}};
    struct gguf_file *g = NULL;
    CHECK(gguf_open("/nonexistent.gguf", &g, &err) == KILN_EIO && strstr(err.msg, "nonexistent"),
          "%s", err.msg);
}

static bool values_equal(const struct gguf_value *a, const struct gguf_value *b)
{
    if (a->type != b->type) return false;
    switch (a->type) {
    case GGUF_STRING: return a->s.len == b->s.len && !memcmp(a->s.ptr, b->s.ptr, a->s.len);
    case GGUF_ARRAY:
        if (a->arr.type != b->arr.type || a->arr.n != b->arr.n) return false;
        if (a->arr.items) {
            for (uint64_t i = 0; i < a->arr.n; i++)
                if (!values_equal(&a->arr.items[i], &b->arr.items[i])) return false;
            return true;
        }
        return !memcmp(a->arr.data, b->arr.data, a->arr.n * gguf_scalar_size(a->arr.type));
    case GGUF_F32: case GGUF_F64: return a->f == b->f;
    default: return a->u == b->u;
    }
}

/* A model copied through the writer reads back with the same metadata (string arrays,
 * every scalar type) and the same tensor bytes, at the writer's alignment. */
static void test_gguf_writer_roundtrips_a_model(void)
{
    char src[1024], dst[256];
    snprintf(src, sizeof src, "%s/models/synthetic/llama-gqa.q4_k_m.gguf", check_shared_dir());
    snprintf(dst, sizeof dst, "/tmp/kiln-test-writer-%d.gguf", (int)getpid());
    struct kiln_err err = {{0}};
    struct gguf_file *g = NULL, *back = NULL;
    struct gguf_writer *w = NULL;
    CHECK(gguf_open(src, &g, &err) == KILN_OK, "%s", err.msg);
    CHECK(gguf_writer_open(dst, &w, &err) == KILN_OK, "%s", err.msg);
    for (uint64_t i = 0; i < g->n_kv; i++)
        CHECK(gguf_writer_set(w, g->kv[i].key, &g->kv[i].value) == KILN_OK, "%s", err.msg);
    struct gguf_value u8 = {.type = GGUF_U8, .u = 200}, i16 = {.type = GGUF_I16, .i = -300};
    struct gguf_value f64 = {.type = GGUF_F64, .f = 0.125}, b = {.type = GGUF_BOOL, .u = 1};
    CHECK(gguf_writer_set(w, "test.u8", &u8) == KILN_OK && gguf_writer_set(w, "test.i16", &i16) ==
          KILN_OK && gguf_writer_set(w, "test.f64", &f64) == KILN_OK &&
          gguf_writer_set(w, "test.bool", &b) == KILN_OK, "%s", err.msg);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *t = &g->tensors[i];
        CHECK(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne) == KILN_OK, "%s",
              err.msg);
    }
    CHECK(access(dst, F_OK) != 0, "the file appears before it is finished");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        /* Data in two uneven pieces, to exercise partial writes. */
        const struct gguf_tensor *t = &g->tensors[i];
        uint64_t half = t->size / 3;
        CHECK(gguf_writer_write(w, t->data, half) == KILN_OK &&
              gguf_writer_write(w, (const uint8_t *)t->data + half, t->size - half) == KILN_OK,
              "%s", err.msg);
    }
    CHECK(gguf_writer_finish(w) == KILN_OK, "%s", err.msg);
    gguf_writer_free(w);
    CHECK(gguf_open(dst, &back, &err) == KILN_OK, "%s", err.msg);
    CHECK(back->n_kv == g->n_kv + 4 && back->n_tensors == g->n_tensors, "counts");
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct gguf_value *v = gguf_get(back, g->kv[i].key);
        CHECK(v && values_equal(v, &g->kv[i].value), "key %s differs", g->kv[i].key);
    }
    int64_t iv;
    double fv;
    CHECK(gguf_value_int(gguf_get(back, "test.u8"), &iv) && iv == 200, "u8");
    CHECK(gguf_value_int(gguf_get(back, "test.i16"), &iv) && iv == -300, "i16");
    CHECK(gguf_value_float(gguf_get(back, "test.f64"), &fv) && fv == 0.125, "f64");
    CHECK(gguf_get(back, "test.bool")->u == 1, "bool");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *a = &g->tensors[i], *c = gguf_find_tensor(back, a->name);
        CHECK(c && c->type == a->type && c->size == a->size &&
              !memcmp(c->ne, a->ne, sizeof a->ne) && !memcmp(c->data, a->data, a->size),
              "tensor %s differs", a->name);
        CHECK(c->offset % GGUF_DEFAULT_ALIGNMENT == 0, "tensor %s misaligned", a->name);
    }
    gguf_close(back);
    gguf_close(g);
    remove(dst);
}

/* Too little or too much data is an error, and an abandoned writer leaves no file. */
static void test_gguf_writer_checks_data_and_cleans_up(void)
{
    char dst[256];
    snprintf(dst, sizeof dst, "/tmp/kiln-test-writer-bad-%d.gguf", (int)getpid());
    char part[300];
    snprintf(part, sizeof part, "%s.part", dst);
    struct kiln_err err = {{0}};
    struct gguf_writer *w = NULL;
    int64_t ne[2] = {32, 2};
    uint8_t data[256] = {0};
    CHECK(gguf_writer_open(dst, &w, &err) == KILN_OK, "%s", err.msg);
    CHECK(gguf_writer_add_tensor(w, "a", DTYPE_Q8_0, 2, ne) == KILN_OK, "%s", err.msg);
    int64_t odd[2] = {33, 1};
    CHECK(gguf_writer_add_tensor(w, "b", DTYPE_Q8_0, 2, odd) == KILN_EINVAL &&
          strstr(err.msg, "columns"), "33 columns accepted for Q8_0");
    CHECK(gguf_writer_write(w, data, 34) == KILN_OK, "%s", err.msg);
    CHECK(gguf_writer_finish(w) == KILN_EINVAL && strstr(err.msg, "tensor a"), "short data: %s",
          err.msg);
    CHECK(access(part, F_OK) == 0, "the partial file should exist until freed");
    gguf_writer_free(w);
    CHECK(access(part, F_OK) != 0 && access(dst, F_OK) != 0, "abandoned writer left a file");
    CHECK(gguf_writer_open(dst, &w, &err) == KILN_OK, "%s", err.msg);
    CHECK(gguf_writer_add_tensor(w, "a", DTYPE_Q8_0, 2, ne) == KILN_OK, "%s", err.msg);
    CHECK(gguf_writer_write(w, data, 69) == KILN_EINVAL && strstr(err.msg, "more tensor data"),
          "long data accepted");
    gguf_writer_free(w);
    CHECK(access(dst, F_OK) != 0, "failed writer left a file");
    CHECK(gguf_writer_open("/nonexistent-dir/x.gguf", &w, &err) == KILN_EIO &&
          strstr(err.msg, "nonexistent-dir"), "%s", err.msg);
}

int main(void)
{
    RUN(test_gguf_reads_valid_file);
    RUN(test_gguf_rejects_every_truncation);
    RUN(test_gguf_rejects_huge_counts_and_lengths);
    RUN(test_gguf_rejects_bad_tensor_fields);
    RUN(test_gguf_rejects_bad_header);
    RUN(test_gguf_rejects_duplicates_and_unknown_types);
    RUN(test_gguf_reads_nested_arrays_and_rejects_deep_nesting);
    RUN(test_gguf_reads_every_synthetic_model);
    RUN(test_gguf_writer_roundtrips_a_model);
    RUN(test_gguf_writer_checks_data_and_cleans_up);
    return check_summary();
}
