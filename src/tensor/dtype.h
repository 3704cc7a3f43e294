/* Tensor element types as numbered in GGUF, their block layouts and sizes.
 * Contract for src/tensor/dtype.c; block structs for the kernels live in tensor/blocks.h. */
#ifndef KILN_TENSOR_DTYPE_H
#define KILN_TENSOR_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values are GGUF's (ggml_type); gaps are types kiln does not read. */
enum dtype {
    DTYPE_F32 = 0,
    DTYPE_F16 = 1,
    DTYPE_Q4_0 = 2,
    DTYPE_Q4_1 = 3,
    DTYPE_Q5_0 = 6,
    DTYPE_Q5_1 = 7,
    DTYPE_Q8_0 = 8,
    DTYPE_Q8_1 = 9,
    DTYPE_Q2_K = 10,
    DTYPE_Q3_K = 11,
    DTYPE_Q4_K = 12,
    DTYPE_Q5_K = 13,
    DTYPE_Q6_K = 14,
    DTYPE_Q8_K = 15,
    DTYPE_I8 = 24,
    DTYPE_I16 = 25,
    DTYPE_I32 = 26,
    DTYPE_I64 = 27,
    DTYPE_F64 = 28,
    DTYPE_BF16 = 30,
    DTYPE_COUNT = 31
};

struct dtype_info {
    const char *name;   /* "Q4_K"; NULL for numbers kiln does not know */
    int block_elems;    /* elements per block */
    int block_bytes;    /* bytes per block */
};

/* The info for t, or NULL when t is not a type kiln reads. */
const struct dtype_info *dtype_get(uint32_t t);

/* Bytes of one row of n elements; false when n is not a whole number of blocks
 * or the size overflows. */
bool dtype_row_bytes(enum dtype t, uint64_t n, uint64_t *bytes);

/* Parses a type name ("q4_k", "Q8_0", "f16"); returns -1 when unknown. */
int dtype_parse(const char *name);

#endif
