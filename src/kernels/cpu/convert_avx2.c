/* AVX2 + F16C row axpy. Contract: src/kernels/cpu/convert.h. */
#include "kernels/cpu/convert.h"

#include <immintrin.h>

/* The tails use separate multiply and add, as the vector part does (no contraction). */
static inline void axpy32(float *y, float a, const float *x, int64_t n)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i),
                                              _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}

static inline void axpy16(float *y, float a, const f16_t *x, int64_t n)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, v)));
    }
    for (; i < n; i++) y[i] += a * f16_to_f32(x[i]);
}

void axpy_f32_avx2(float *y, float a, const float *x, int64_t n)
{
    axpy32(y, a, x, n);
}

void axpy_f16_avx2(float *y, float a, const f16_t *x, int64_t n)
{
    axpy16(y, a, x, n);
}

/* Several rows in order, each exactly as the single-row call adds it. */
void axpy_f32_rows_avx2(float *y, const float *w, const void *x, size_t stride, int rows,
                        int64_t n)
{
    for (int r = 0; r < rows; r++)
        axpy32(y, w[r], (const float *)((const char *)x + (size_t)r * stride), n);
}

void axpy_f16_rows_avx2(float *y, const float *w, const void *x, size_t stride, int rows,
                        int64_t n)
{
    for (int r = 0; r < rows; r++)
        axpy16(y, w[r], (const f16_t *)((const char *)x + (size_t)r * stride), n);
}
