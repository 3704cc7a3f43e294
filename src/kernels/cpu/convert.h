/* Row conversions the attention reads its cache through: F16 to F32, chosen once for this
 * CPU like the dot products. Contract for src/kernels/cpu/convert.c, convert_avx2.c.
 * Pure; any thread. */
#ifndef KILN_KERNELS_CPU_CONVERT_H
#define KILN_KERNELS_CPU_CONVERT_H

#include "tensor/blocks.h"

#include <stdint.h>

/* y[i] = x[i] as float, exactly (every half is a float). */
void f16_row_to_f32(float *y, const f16_t *x, int64_t n);

/* The scalar reference and the AVX2 + F16C version (tested against each other). */
void f16_row_to_f32_ref(float *y, const f16_t *x, int64_t n);
void f16_row_to_f32_avx2(float *y, const f16_t *x, int64_t n);

#endif
