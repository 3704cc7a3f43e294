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

void key_block_f16t_ref(float *out, size_t out_stride, const f16_t *kt, const float *q,
                        int heads, int hd, int s0, int s1, float scale)
{
    for (int h = 0; h < heads; h++, q += hd)
        for (int s = s0; s < s1; s++) {
            float c[4] = {0, 0, 0, 0};
            for (int d = 0; d < hd; d++)
                c[d % 4] = fmaf(q[d], f16_to_f32(kt[d * KEY_BLOCK_POSITIONS + s]), c[d % 4]);
            out[(size_t)h * out_stride + (size_t)(s - s0)] = ((c[0] + c[1]) + (c[2] + c[3])) * scale;
        }
}

key_block_fn key_block_f16t_for_cpu(void)
{
    enum cpu_isa isa = cpu_best_isa();
    return isa >= ISA_AVX512 ? key_block_f16t_avx512
           : isa >= ISA_AVX2 ? key_block_f16t_avx2
                             : key_block_f16t_ref;
}

value_heads_fn value_heads_for_cpu(enum dtype t)
{
    return t == DTYPE_F16 && cpu_best_isa() >= ISA_AVX512 ? value_heads_f16_avx512 : NULL;
}

axpy_f32_fn axpy_f32_for_cpu(void)
{
    return cpu_best_isa() >= ISA_AVX2 ? axpy_f32_avx2 : axpy_f32_ref;
}

axpy_f16_fn axpy_f16_for_cpu(void)
{
    return cpu_best_isa() >= ISA_AVX2 ? axpy_f16_avx2 : axpy_f16_ref;
}

f16_row_fn f16_row_for_cpu(void)
{
    return cpu_best_isa() >= ISA_AVX2 ? f32_to_f16_row_avx2 : NULL;
}

dot_rows_fn key_rows_for_cpu(enum dtype t)
{
    if (t == DTYPE_Q8_0) return cpu_best_isa() >= ISA_AVX2 ? key_rows_q8_0_avx2 : NULL;
    const struct dot_kernel *k = dot_kernel_for(t);
    return k ? k->rows : NULL;
}

axpy_rows_fn axpy_rows_for_cpu(enum dtype t)
{
    if (cpu_best_isa() < ISA_AVX2) return NULL;
    switch (t) {
    case DTYPE_F32: return axpy_f32_rows_avx2;
    case DTYPE_F16: return axpy_f16_rows_avx2;
    case DTYPE_Q8_0: return axpy_q8_0_rows_avx2;
    default: return NULL;
    }
}
