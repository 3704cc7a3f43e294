/* F16 row conversion: the scalar reference and the dispatch. Contract:
 * src/kernels/cpu/convert.h. */
#include "kernels/cpu/convert.h"

#include "kernels/cpu/dot.h"

void f16_row_to_f32_ref(float *y, const f16_t *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = f16_to_f32(x[i]);
}

void f16_row_to_f32(float *y, const f16_t *x, int64_t n)
{
    if (cpu_best_isa() >= ISA_AVX2) f16_row_to_f32_avx2(y, x, n);
    else f16_row_to_f32_ref(y, x, n);
}

void axpy_f32_ref(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void axpy_f16_ref(float *y, float a, const f16_t *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * f16_to_f32(x[i]);
}

void axpy_f32(float *y, float a, const float *x, int64_t n)
{
    if (cpu_best_isa() >= ISA_AVX2) axpy_f32_avx2(y, a, x, n);
    else axpy_f32_ref(y, a, x, n);
}

void axpy_f16(float *y, float a, const f16_t *x, int64_t n)
{
    if (cpu_best_isa() >= ISA_AVX2) axpy_f16_avx2(y, a, x, n);
    else axpy_f16_ref(y, a, x, n);
}
