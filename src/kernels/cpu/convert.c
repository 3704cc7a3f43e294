/* Row axpy: the scalar references and the choice for this CPU. Contract:
 * src/kernels/cpu/convert.h. */
#include "kernels/cpu/convert.h"

#include "kernels/cpu/dot.h"

#include <math.h>

/* y[i] = a * x[i] + y[i] with one rounding (fmaf), as the vector versions' fused
 * multiply-add computes it. */
void axpy_f32_ref(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

void axpy_f16_ref(float *y, float a, const f16_t *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = fmaf(a, f16_to_f32(x[i]), y[i]);
}

axpy_f32_fn axpy_f32_for_cpu(void)
{
    return cpu_best_isa() >= ISA_AVX2 ? axpy_f32_avx2 : axpy_f32_ref;
}

axpy_f16_fn axpy_f16_for_cpu(void)
{
    return cpu_best_isa() >= ISA_AVX2 ? axpy_f16_avx2 : axpy_f16_ref;
}

axpy_rows_fn axpy_rows_for_cpu(int f16)
{
    if (cpu_best_isa() < ISA_AVX2) return NULL;
    return f16 ? axpy_f16_rows_avx2 : axpy_f32_rows_avx2;
}
