/* The one horizontal sum of 8 float lanes every SIMD kernel ends with: a fixed order of
 * additions, so an AVX2 and an AVX-512 kernel reducing the same lanes give the same float.
 * Include only from files built with AVX (the *_avx2.c and *_avx512.c kernels). */
#ifndef KILN_KERNELS_CPU_HSUM_H
#define KILN_KERNELS_CPU_HSUM_H

#include <immintrin.h>

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#endif
