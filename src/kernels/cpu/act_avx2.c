/* AVX2 encoding of activations: for the 32-element types the same block_q8a bytes as
 * quantize_row_q8a (src/tensor/quantize.c) computes, eight lanes at a time (the absolute
 * maximum is order-free, x * id is one rounding either way, and cvtps rounds to nearest
 * even as lrintf does); a block with NaN, infinities or a scale too small to invert goes to
 * the scalar encoder; for the K-quants the same block_q8_k as quantize_row_q8_k (the first
 * value of largest magnitude sets the scale, as the scalar scan finds it). Tested against
 * them in test_kernels. Contract: src/kernels/cpu/dot.h. */
#include "kernels/cpu/dot.h"
#include "tensor/quant.h"

#include <immintrin.h>
#include <math.h>

/* f16_to_f32(f32_to_f16(x)) for a finite x, by F16C: both round to nearest even. */
static inline float f16_round(float x)
{
    return _cvtsh_ss(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

void quantize_row_q8a_avx2(struct block_q8a *y, const float *x, int64_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        __m256 v[4], m = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v[k], v[k], _CMP_UNORD_Q));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        float d = amax / 127.0f, id = amax ? 127.0f / amax : 0.0f;
        if (_mm256_movemask_ps(nan) || !isfinite(amax) || !isfinite(id)) {
            quantize_row_q8a(&y[i], x, QK); /* NaN, inf or subnormal scale: as the scalar does */
            continue;
        }
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4], sum = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vid));
            sum = _mm256_add_epi32(sum, q[k]);
        }
        /* int32 x 32 -> int8 x 32 in order: packs interleave 128-bit lanes, permute undoes it */
        __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
        __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[i].qs, p8);
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
        int total = _mm_cvtsi128_si32(s);
        y[i].d = f16_round(d);
        y[i].sd = f16_round(d * (float)total);
        y[i].sum = total;
    }
}

void quantize_row_q8_k_avx2(struct block_q8_k *y, const float *x, int64_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m256 m = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
        for (int k = 0; k < QK_K; k += 8) {
            __m256 v = _mm256_loadu_ps(x + k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        if (_mm256_movemask_ps(nan) || !isfinite(amax) || amax == 0) {
            quantize_row_q8_k(&y[i], x, QK_K); /* NaN, infinities, zeros: as the scalar does */
            continue;
        }
        int j = 0;
        while (fabsf(x[j]) != amax) j++; /* the first of largest magnitude, with its sign */
        float iscale = -127.0f / x[j];
        if (!isfinite(iscale)) {
            quantize_row_q8_k(&y[i], x, QK_K);
            continue;
        }
        __m256 vs = _mm256_set1_ps(iscale);
        const __m256i top = _mm256_set1_epi32(127);
        for (int k = 0; k < QK_K; k += 32) {
            __m256i q[4];
            for (int t = 0; t < 4; t++)
                q[t] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(x + k + 8 * t))), top);
            __m256i p8 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(y[i].qs + k), p8);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int t = 0; t < 16; t++) s += y[i].qs[g * 16 + t];
            y[i].bsums[g] = (int16_t)s;
        }
        y[i].d = 1.0f / iscale;
    }
}
