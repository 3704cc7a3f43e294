/* safetensors reader tests: a valid file's tensors are found with their bytes; every kind of
 * bad file is refused with a message naming the problem. Mirrors src/safetensors/. */
#include "check.h"
#include "safetensors/safetensors.h"

#include <stdint.h>
#include <string.h>

/* An image: 8-byte length, the header text, then data_len bytes of data (0, 1, 2, ...). */
static size_t image(uint8_t *buf, size_t cap, const char *header, size_t data_len)
{
    size_t n = strlen(header);
    if (8 + n + data_len > cap) return 0;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    for (size_t i = 0; i < data_len; i++) buf[8 + n + i] = (uint8_t)i;
    return 8 + n + data_len;
}

/* Opens header + data and expects failure with a message containing want. */
static void expect_refused(const char *header, size_t data_len, const char *want)
{
    uint8_t buf[4096];
    size_t size = image(buf, sizeof buf, header, data_len);
    struct st_file *f = NULL;
    struct kiln_err err = {{0}};
    kiln_status st = st_open_memory(buf, size, "bad.safetensors", &f, &err);
    CHECK(st == KILN_EFORMAT, "accepted %s", header);
    CHECK(strstr(err.msg, want) && strstr(err.msg, "bad.safetensors"), "message '%s' lacks '%s'",
          err.msg, want);
}

static void test_safetensors_reads_tensors(void)
{
    uint8_t buf[512];
    size_t size = image(buf, sizeof buf,
                        "{\"__metadata__\":{\"format\":\"pt\"},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                        "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
                        "\"empty\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[32,32]}}",
                        32);
    struct st_file *f = NULL;
    struct kiln_err err = {{0}};
    CHECK(st_open_memory(buf, size, "ok.safetensors", &f, &err) == KILN_OK, "%s", err.msg);
    CHECK(f->n_tensors == 3, "%llu tensors", (unsigned long long)f->n_tensors);
    const struct st_tensor *a = st_find(f, "a"), *b = st_find(f, "b");
    CHECK(a && a->dtype == ST_F32 && a->n_dims == 2 && a->shape[0] == 2 && a->shape[1] == 3,
          "tensor a");
    CHECK(b && b->dtype == ST_BF16 && ((const uint8_t *)b->data)[0] == 24, "tensor b's bytes");
    CHECK(!st_find(f, "__metadata__") && !st_find(f, "c"), "phantom tensors");
    st_close(f);
}

static void test_safetensors_rejects_header_length_past_eof(void)
{
    uint8_t buf[64];
    size_t size = image(buf, sizeof buf, "{}", 0);
    buf[0] = 200; /* claims a 200-byte header in a 10-byte file */
    struct st_file *f = NULL;
    struct kiln_err err = {{0}};
    CHECK(st_open_memory(buf, size, "short.safetensors", &f, &err) == KILN_EFORMAT, "accepted");
    CHECK(strstr(err.msg, "past the end"), "%s", err.msg);
    CHECK(st_open_memory(buf, 5, "tiny.safetensors", &f, &err) == KILN_EFORMAT, "accepted 5 bytes");
}

static void test_safetensors_rejects_non_object_header(void)
{
    expect_refused("[1, 2, 3]", 0, "not a JSON object");
    expect_refused("{\"a\": ", 0, "not valid JSON");
    expect_refused("{\"a\": 3}", 0, "not a JSON object");
    expect_refused("{\"__metadata__\": 1}", 0, "'__metadata__' is not an object");
}

static void test_safetensors_rejects_offsets_out_of_range(void)
{
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
                   "outside the data section");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                   "outside the data section");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8,
                   "non-negative");
}

static void test_safetensors_rejects_overlapping_tensors(void)
{
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   12, "overlap");
}

static void test_safetensors_rejects_size_mismatch(void)
{
    expect_refused("{\"a\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                   "x shape is 6 bytes but data_offsets span 8");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],"
                   "\"data_offsets\":[0,8]}}", 8, "overflows");
}

static void test_safetensors_rejects_unknown_dtype(void)
{
    expect_refused("{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16,
                   "unknown dtype 'F128'");
    expect_refused("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing string 'dtype'");
}

int main(void)
{
    RUN(test_safetensors_reads_tensors);
    RUN(test_safetensors_rejects_header_length_past_eof);
    RUN(test_safetensors_rejects_non_object_header);
    RUN(test_safetensors_rejects_offsets_out_of_range);
    RUN(test_safetensors_rejects_overlapping_tensors);
    RUN(test_safetensors_rejects_size_mismatch);
    RUN(test_safetensors_rejects_unknown_dtype);
    return check_summary();
}
