/* The table of element types: names, block sizes, bytes per block.
 * Contract: src/tensor/dtype.h. */
#include "tensor/dtype.h"

#include <strings.h>

static const struct dtype_info table[DTYPE_COUNT] = {
    [DTYPE_F32] = {"F32", 1, 4},       [DTYPE_F16] = {"F16", 1, 2},
    [DTYPE_BF16] = {"BF16", 1, 2},     [DTYPE_Q4_0] = {"Q4_0", 32, 18},
    [DTYPE_Q4_1] = {"Q4_1", 32, 20},   [DTYPE_Q5_0] = {"Q5_0", 32, 22},
    [DTYPE_Q5_1] = {"Q5_1", 32, 24},   [DTYPE_Q8_0] = {"Q8_0", 32, 34},
    [DTYPE_Q8_1] = {"Q8_1", 32, 36},   [DTYPE_Q2_K] = {"Q2_K", 256, 84},
    [DTYPE_Q3_K] = {"Q3_K", 256, 110}, [DTYPE_Q4_K] = {"Q4_K", 256, 144},
    [DTYPE_Q5_K] = {"Q5_K", 256, 176}, [DTYPE_Q6_K] = {"Q6_K", 256, 210},
    [DTYPE_Q8_K] = {"Q8_K", 256, 292}, [DTYPE_I8] = {"I8", 1, 1},
    [DTYPE_I16] = {"I16", 1, 2},       [DTYPE_I32] = {"I32", 1, 4},
    [DTYPE_I64] = {"I64", 1, 8},       [DTYPE_F64] = {"F64", 1, 8},
};

const struct dtype_info *dtype_get(uint32_t t)
{
    if (t >= DTYPE_COUNT || !table[t].name) return NULL;
    return &table[t];
}

bool dtype_row_bytes(enum dtype t, uint64_t n, uint64_t *bytes)
{
    const struct dtype_info *info = dtype_get(t);
    if (!info || n % (uint64_t)info->block_elems) return false;
    return !__builtin_mul_overflow(n / (uint64_t)info->block_elems, (uint64_t)info->block_bytes,
                                   bytes);
}

int dtype_parse(const char *name)
{
    for (int t = 0; t < DTYPE_COUNT; t++)
        if (table[t].name && strcasecmp(table[t].name, name) == 0) return t;
    return -1;
}
