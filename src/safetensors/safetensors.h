/* safetensors reader: maps a file (or checks a buffer), validates the JSON header and every
 * tensor's dtype, shape and byte range, and exposes the tensor table.
 * Contract for src/safetensors/safetensors.c. Read-only after open: any thread. */
#ifndef KILN_SAFETENSORS_H
#define KILN_SAFETENSORS_H

#include "base/strmap.h"
#include "kiln.h"

#include <stdbool.h>
#include <stdint.h>

/* The dtypes of the safetensors format. Only F32, F16 and BF16 hold weights kiln runs. */
enum st_dtype {
    ST_BOOL, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_F64, ST_I64, ST_U64, ST_DTYPE_COUNT
};

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20) /* the format's own limit on the JSON header */

struct st_tensor {
    char *name;                /* NUL-terminated copy */
    enum st_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS]; /* outermost first, as PyTorch writes it */
    uint64_t begin, end;       /* byte range in the data section */
    const void *data;          /* inside the mapping */
};

struct st_file {
    char *path;
    const uint8_t *base; /* the whole file */
    uint64_t size;
    bool mapped;
    uint64_t n_tensors;
    struct st_tensor *tensors;
    struct strmap index; /* name -> index into tensors */
};

/* Maps and validates the file at path. Fails with KILN_EIO (cannot open or map),
 * KILN_EFORMAT naming the file, tensor and problem (header length past the end of the file,
 * a header that is not a JSON object, an unknown dtype, offsets out of range or
 * overlapping, dtype x shape not the byte length), or KILN_ENOMEM. */
kiln_status st_open(const char *path, struct st_file **out, struct kiln_err *err);
/* Validates an image already in memory (not copied: buf must outlive the result). */
kiln_status st_open_memory(const void *buf, uint64_t size, const char *name,
                           struct st_file **out, struct kiln_err *err);
void st_close(struct st_file *f);

/* The tensor called name, or NULL. */
const struct st_tensor *st_find(const struct st_file *f, const char *name);
const char *st_dtype_name(enum st_dtype t);

#endif
