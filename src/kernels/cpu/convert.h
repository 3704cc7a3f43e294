/* y = a * x + y (fused: one rounding) over a row (or rows) of F32 or F16 values: the
 * attention's weighted sum of values. The caller resolves the version for this CPU once and
 * keeps the pointer.
 * Contract for src/kernels/cpu/convert.c, convert_avx2.c. Pure; any thread. */
#ifndef KILN_KERNELS_CPU_CONVERT_H
#define KILN_KERNELS_CPU_CONVERT_H

#include "tensor/blocks.h"

#include <stdint.h>

typedef void (*axpy_f32_fn)(float *y, float a, const float *x, int64_t n);
typedef void (*axpy_f16_fn)(float *y, float a, const f16_t *x, int64_t n);

axpy_f32_fn axpy_f32_for_cpu(void);
axpy_f16_fn axpy_f16_for_cpu(void);

/* y += w[r] * row r for rows rows of n values stride bytes apart, in order, each exactly as
 * the single-row axpy of the same ISA adds it (one call for a KV block's 16 positions). */
typedef void (*axpy_rows_fn)(float *y, const float *w, const void *x, size_t stride, int rows,
                             int64_t n);
/* The AVX2 version for F32 or F16 rows, or NULL (call the single-row axpy per row). */
axpy_rows_fn axpy_rows_for_cpu(int f16);

/* softmax in place over n floats, with a vectorized exp (relative error ~2e-7): what
 * ops.c's softmax runs on AVX2 machines. */
void softmax_avx2(float *x, int n);

/* The scalar references and the AVX2 + F16C versions (tested against each other). */
void axpy_f32_ref(float *y, float a, const float *x, int64_t n);
void axpy_f32_avx2(float *y, float a, const float *x, int64_t n);
void axpy_f16_ref(float *y, float a, const f16_t *x, int64_t n);
void axpy_f16_avx2(float *y, float a, const f16_t *x, int64_t n);
void axpy_f32_rows_avx2(float *y, const float *w, const void *x, size_t stride, int rows,
                        int64_t n);
void axpy_f16_rows_avx2(float *y, const float *w, const void *x, size_t stride, int rows,
                        int64_t n);

#endif
