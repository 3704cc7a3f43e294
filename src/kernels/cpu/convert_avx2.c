/* AVX2 + F16C row axpy. Contract: src/kernels/cpu/convert.h. */
#include "kernels/cpu/convert.h"

#include <immintrin.h>

/* The tails use separate multiply and add, as the vector part does (no contraction). */
void axpy_f32_avx2(float *y, float a, const float *x, int64_t n)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i),
                                              _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}

void axpy_f16_avx2(float *y, float a, const f16_t *x, int64_t n)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, v)));
    }
    for (; i < n; i++) y[i] += a * f16_to_f32(x[i]);
}
