/* Row operations the attention reads its cache through: F16 to F32 conversion and
 * y += a * x, chosen for this CPU like the dot products. Contract for src/kernels/cpu/convert.c, convert_avx2.c.
 * Pure; any thread. */
#ifndef KILN_KERNELS_CPU_CONVERT_H
#define KILN_KERNELS_CPU_CONVERT_H

#include "tensor/blocks.h"

#include <stdint.h>

/* y[i] = x[i] as float, exactly (every half is a float). */
void f16_row_to_f32(float *y, const f16_t *x, int64_t n);

/* y[i] += a * x[i] for a row of F32 or F16 values (attention's weighted sum of values). */
void axpy_f32(float *y, float a, const float *x, int64_t n);
void axpy_f16(float *y, float a, const f16_t *x, int64_t n);

/* The scalar references and the AVX2 + F16C versions (tested against each other). */
void f16_row_to_f32_ref(float *y, const f16_t *x, int64_t n);
void f16_row_to_f32_avx2(float *y, const f16_t *x, int64_t n);
void axpy_f32_ref(float *y, float a, const float *x, int64_t n);
void axpy_f32_avx2(float *y, float a, const float *x, int64_t n);
void axpy_f16_ref(float *y, float a, const f16_t *x, int64_t n);
void axpy_f16_avx2(float *y, float a, const f16_t *x, int64_t n);

#endif
