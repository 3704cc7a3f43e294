/* Helpers the AVX2 and AVX-512 kernels share, so that kernels meant to compute alike do:
 * the one horizontal sum of 8 float lanes every SIMD kernel ends with (a fixed order of
 * additions), and the unpacking of 32 four-bit weights. Include only from files built with
 * AVX2 (the *_avx2.c and *_avx512.c kernels). */
#ifndef KILN_KERNELS_CPU_SIMD_H
#define KILN_KERNELS_CPU_SIMD_H

#include <immintrin.h>
#include <stdint.h>

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The totals of 8 vectors of int32 lanes, as one vector: lane k = the sum of p[k]'s lanes. */
static inline __m256i sum8_epi32(const __m256i p[8])
{
    __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                            _mm256_permute2x128_si256(a, b, 0x31));
}

/* 32 four-bit values (low nibbles first, then high) as bytes 0..15. */
static inline __m256i nibbles(const uint8_t *qs)
{
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

#endif
