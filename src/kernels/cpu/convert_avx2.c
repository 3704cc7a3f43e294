/* AVX2 + F16C row axpy. Contract: src/kernels/cpu/convert.h. */
#include "kernels/cpu/convert.h"

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>

/* y = a * x + y with one rounding: a fused multiply-add per element, fmaf in the tails (as
 * the scalar references compute it). */
static inline void axpy32(float *y, float a, const float *x, int64_t n)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

static inline void axpy16(float *y, float a, const f16_t *x, int64_t n)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, v, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] = fmaf(a, f16_to_f32(x[i]), y[i]);
}

void axpy_f32_avx2(float *y, float a, const float *x, int64_t n)
{
    axpy32(y, a, x, n);
}

void axpy_f16_avx2(float *y, float a, const f16_t *x, int64_t n)
{
    axpy16(y, a, x, n);
}

/* Several rows in order, each exactly as the single-row call adds it: y is taken 64 values
 * (8 registers) at a time and kept in registers while every row adds to it, which is the
 * same sequence of fused y[i] = w[r] * x[r][i] + y[i] per element without a load and a store
 * per row; the tail past the last 64 goes row by row, as axpy's own. */
enum { AXPY_CHUNK = 64 };

static inline __attribute__((always_inline)) void axpy_rows(float *y, const float *w,
                                                            const void *x, size_t stride,
                                                            int rows, int64_t n, bool f16)
{
    int64_t i = 0;
    for (; i + AXPY_CHUNK <= n; i += AXPY_CHUNK) {
        __m256 acc[AXPY_CHUNK / 8];
        for (int k = 0; k < AXPY_CHUNK / 8; k++) acc[k] = _mm256_loadu_ps(y + i + 8 * k);
        for (int r = 0; r < rows; r++) {
            const char *row = (const char *)x + (size_t)r * stride;
            __m256 va = _mm256_set1_ps(w[r]);
            for (int k = 0; k < AXPY_CHUNK / 8; k++) {
                __m256 v = f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const f16_t *)row + i + 8 * k)))
                               : _mm256_loadu_ps((const float *)row + i + 8 * k);
                acc[k] = _mm256_fmadd_ps(va, v, acc[k]);
            }
        }
        for (int k = 0; k < AXPY_CHUNK / 8; k++) _mm256_storeu_ps(y + i + 8 * k, acc[k]);
    }
    if (i == n) return;
    for (int r = 0; r < rows; r++) {
        const char *row = (const char *)x + (size_t)r * stride;
        if (f16) axpy16(y + i, w[r], (const f16_t *)row + i, n - i);
        else axpy32(y + i, w[r], (const float *)row + i, n - i);
    }
}

void axpy_f32_rows_avx2(float *y, const float *w, const void *x, size_t stride, int rows,
                        int64_t n)
{
    axpy_rows(y, w, x, stride, rows, n, false);
}

void axpy_f16_rows_avx2(float *y, const float *w, const void *x, size_t stride, int rows,
                        int64_t n)
{
    axpy_rows(y, w, x, stride, rows, n, true);
}

/* e^x for x <= 0 (what softmax feeds it): x = k ln2 + r with |r| <= ln2 / 2, e^r by a
 * degree-6 polynomial (relative error about 2e-7, as close as expf), times 2^k through the
 * exponent bits; below -87.3 it is 0. */
static inline __m256 exp_neg(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.33654f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x - k ln2 in two parts, so it stays exact enough */
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.3888949e-3f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3333310e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1666664e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666667e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, y);
}

void softmax_avx2(float *x, int n)
{
    __m256 vmax = _mm256_set1_ps(x[0]);
    int i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float max = _mm_cvtss_f32(h);
    for (; i < n; i++) max = x[i] > max ? x[i] : max;
    __m256 m = _mm256_set1_ps(max);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        _mm256_storeu_ps(x + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double lanes[4], sum = 0;
    _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
    sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (; i < n; i++) {
        float t[8] = {x[i] - max};
        __m256 e = exp_neg(_mm256_loadu_ps(t));
        x[i] = _mm256_cvtss_f32(e);
        sum += x[i];
    }
    __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    float invs = (float)(1.0 / sum);
    for (; i < n; i++) x[i] *= invs;
}
