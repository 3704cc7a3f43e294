/* GGUF reader: maps a file (or reads a buffer), validates every field, and exposes the
 * metadata and tensor table. Read-only after open, so any thread may read it.
 * Contract for src/gguf/gguf.c. */
#ifndef KILN_GGUF_H
#define KILN_GGUF_H

#include "base/strmap.h"
#include "kiln.h"
#include "tensor/dtype.h"

#include <stdbool.h>
#include <stdint.h>

enum gguf_type {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
    GGUF_TYPE_COUNT
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* Bytes inside the file; not NUL-terminated. */
struct gguf_str {
    const char *ptr;
    uint64_t len;
};

struct gguf_value {
    enum gguf_type type;
    union {
        uint64_t u; /* U8 U16 U32 U64 BOOL */
        int64_t i;  /* I8 I16 I32 I64 */
        double f;   /* F32 F64 */
        struct gguf_str s;
        struct {
            enum gguf_type type; /* element type */
            uint64_t n;
            const void *data;         /* n little-endian scalars, for scalar element types */
            struct gguf_value *items; /* [n], for STRING and ARRAY element types */
        } arr;
    };
};

struct gguf_kv {
    char *key; /* NUL-terminated copy */
    struct gguf_value value;
};

struct gguf_tensor {
    char *name; /* NUL-terminated copy */
    enum dtype type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused dims are 1 */
    uint64_t offset;           /* relative to the data section */
    uint64_t size;             /* bytes */
    const void *data;          /* inside the mapping */
};

struct gguf_file {
    char *path;
    const uint8_t *base; /* the whole file */
    uint64_t size;
    bool mapped;         /* base is an mmap we own */
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    struct gguf_kv *kv;
    uint64_t n_tensors;
    struct gguf_tensor *tensors;
    struct strmap kv_index;     /* key -> index into kv */
    struct strmap tensor_index; /* name -> index into tensors */
    /* built in memory (src/gguf/gguf_build.c): what it owns besides kv and tensors */
    struct gguf_owned *owned;
    size_t n_owned;
};

struct gguf_owned {
    void *p;
    void (*release)(void *);
};

/* Maps and validates the file at path. Fails with KILN_EIO (cannot open or map),
 * KILN_EFORMAT (a malformed field: err names the file, key or tensor, and the problem),
 * KILN_EUNSUPP (a version or tensor type kiln does not read) or KILN_ENOMEM. */
kiln_status gguf_open(const char *path, struct gguf_file **out, struct kiln_err *err);

/* Validates a GGUF image already in memory (not copied: buf must outlive the result);
 * name is used in messages. Fails like gguf_open. */
kiln_status gguf_open_memory(const void *buf, uint64_t size, const char *name,
                             struct gguf_file **out, struct kiln_err *err);

void gguf_close(struct gguf_file *g);

/* The value for key, or NULL. */
const struct gguf_value *gguf_get(const struct gguf_file *g, const char *key);
/* The tensor called name, or NULL. */
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *g, const char *name);

/* Typed reads that accept any integer (or numeric) type and check the range. */
bool gguf_value_int(const struct gguf_value *v, int64_t *out);
bool gguf_value_float(const struct gguf_value *v, double *out);
/* Element i of a scalar array as an integer or float; false when out of range. */
bool gguf_array_int(const struct gguf_value *v, uint64_t i, int64_t *out);
bool gguf_array_float(const struct gguf_value *v, uint64_t i, double *out);

const char *gguf_type_name(enum gguf_type t);
/* Bytes of one scalar of type t; 0 for STRING, ARRAY and unknown types. */
uint64_t gguf_scalar_size(enum gguf_type t);

#endif
