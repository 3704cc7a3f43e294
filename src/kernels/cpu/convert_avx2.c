/* AVX2 + F16C versions of the forward pass's float helpers. Contract:
 * src/kernels/cpu/convert.h. */
#include "kernels/cpu/convert.h"

#include "kernels/cpu/simd.h"

#include <assert.h>
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

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

/* A Q8_0 cache read in place. A row's 16 values at i as floats: d * q rounded once, exactly
 * what dequantize_row writes. */
static inline void q8_0_widen16(const struct block_q8_0 *b, int j, __m256 d, __m256 *lo, __m256 *hi)
{
    __m128i q = _mm_loadu_si128((const __m128i *)(b->qs + j));
    *lo = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
    *hi = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8))));
}

/* dot_f32's steps over an expanded row: two accumulators over 16 values a step; their sum
 * still to be reduced (hsum_ps). */
static inline __m256 key_q8_0_acc(const void *row, const float *q, int64_t n)
{
    const struct block_q8_0 *b = row;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += QK, b++) {
        __m256 d = _mm256_set1_ps(_cvtsh_ss(b->d));
        for (int j = 0; j < QK; j += 16) {
            __m256 x0, x1;
            q8_0_widen16(b, j, d, &x0, &x1);
            acc0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(q + i + j), acc0);
            acc1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(q + i + j + 8), acc1);
        }
    }
    return _mm256_add_ps(acc0, acc1);
}

void key_rows_q8_0_avx2(float *out, const void *k, size_t stride, int rows, const void *a,
                        int64_t n, float scale)
{
    assert(n % QK == 0);
    scaled_rows(out, k, stride, rows, a, n, scale, key_q8_0_acc);
}

/* As axpy_rows: y kept in registers two blocks (64 values: 8 chains of fused multiply-adds,
 * enough to hide their latency) or one at a time while every row adds to it, each element's
 * fused y = w[r] * (d * q) + y in row order, as axpy_f32 adds an expanded row. */
static inline __attribute__((always_inline)) void axpy_q8_0_chunk(float *y, const float *w,
                                                                   const void *x, size_t stride,
                                                                   int rows, int64_t i,
                                                                   const int nblk)
{
    __m256 acc[2 * QK / 8];
    for (int k = 0; k < nblk * QK / 8; k++) acc[k] = _mm256_loadu_ps(y + i + 8 * k);
    for (int r = 0; r < rows; r++) {
        const struct block_q8_0 *b =
            (const struct block_q8_0 *)((const char *)x + (size_t)r * stride) + i / QK;
        __m256 va = _mm256_set1_ps(w[r]);
        for (int blk = 0; blk < nblk; blk++) {
            __m256 d = _mm256_set1_ps(_cvtsh_ss(b[blk].d));
            for (int j = 0; j < QK; j += 16) {
                __m256 x0, x1;
                q8_0_widen16(b + blk, j, d, &x0, &x1);
                int k = (blk * QK + j) / 8;
                acc[k] = _mm256_fmadd_ps(va, x0, acc[k]);
                acc[k + 1] = _mm256_fmadd_ps(va, x1, acc[k + 1]);
            }
        }
    }
    for (int k = 0; k < nblk * QK / 8; k++) _mm256_storeu_ps(y + i + 8 * k, acc[k]);
}

void axpy_q8_0_rows_avx2(float *y, const float *w, const void *x, size_t stride, int rows,
                         int64_t n)
{
    assert(n % QK == 0);
    int64_t i = 0;
    for (; i + 2 * QK <= n; i += 2 * QK) axpy_q8_0_chunk(y, w, x, stride, rows, i, 2);
    if (i < n) axpy_q8_0_chunk(y, w, x, stride, rows, i, 1);
}

void f32_to_f16_row_avx2(f16_t *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = f32_to_f16(src[i]);
}

/* The sum of the squares of n floats in double precision, as rmsnorm's scalar loop but in
 * another order (two 4-lane accumulators of fused multiply-adds, then the rest one by one):
 * the scalar loop waited on each addition in turn, about four cycles a value. */
double sum_squares_avx2(const float *x, int64_t n)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        __m256d hi = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        s0 = _mm256_fmadd_pd(lo, lo, s0);
        s1 = _mm256_fmadd_pd(hi, hi, s1);
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
    double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (; i < n; i++) sum += (double)x[i] * x[i];
    return sum;
}

/* out[i] = x[i] * scale * w[i], each rounded as the scalar expression is (x * scale first):
 * rmsnorm's last step; out may be x. */
void scale_mul_avx2(float *out, const float *x, float scale, const float *w, int64_t n)
{
    __m256 s = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), s),
                                                _mm256_loadu_ps(w + i)));
    for (; i < n; i++) out[i] = x[i] * scale * w[i];
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
    if (i < n) { /* the last n - i values in one masked vector, added to the sum one by one */
        static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1};
        __m256i mask = _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 8 - (n - i)));
        __m256 e = exp_neg(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), m));
        _mm256_maskstore_ps(x + i, mask, e);
        for (; i < n; i++) sum += x[i];
    }
    __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    float invs = (float)(1.0 / sum);
    for (; i < n; i++) x[i] *= invs;
}

/* g = silu(g) * u with silu(x) = x * sigmoid(x); sigmoid from t = e^-|x| <= 1 (exp_neg's
 * range): 1 / (1 + t) for x >= 0, t / (1 + t) below. */
void swiglu_avx2(float *g, const float *u, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 t = exp_neg(_mm256_or_ps(x, sign)); /* e^-|x| */
        __m256 num = _mm256_blendv_ps(one, t, x); /* t where x's sign bit is set */
        __m256 sig = _mm256_div_ps(num, _mm256_add_ps(one, t));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_mul_ps(x, sig), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* key_block_f16t for one head: its four chains over positions 0-7 and 8-15 (eight
 * accumulators; AVX2's sixteen registers hold no second head's). */
static void key_block_head_avx2(float *out, const f16_t *kt, const float *q, int hd, int s0,
                                int s1, float scale)
{
    __m256 acc[4][2]; /* [d % 4][positions 0-7, 8-15] */
    for (int c = 0; c < 4; c++) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d += 4)
        for (int c = 0; c < 4; c++) {
            const f16_t *k = kt + (size_t)(d + c) * KEY_BLOCK_POSITIONS;
            __m256 qd = _mm256_broadcast_ss(q + d + c);
            acc[c][0] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)k)), qd,
                                        acc[c][0]);
            acc[c][1] = _mm256_fmadd_ps(
                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + 8))), qd, acc[c][1]);
        }
    __m256 vs = _mm256_set1_ps(scale);
    float all[KEY_BLOCK_POSITIONS];
    bool whole = s0 == 0 && s1 == KEY_BLOCK_POSITIONS;
    float *dst = whole ? out : all;
    for (int half = 0; half < 2; half++) {
        __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[0][half], acc[1][half]),
                                   _mm256_add_ps(acc[2][half], acc[3][half]));
        _mm256_storeu_ps(dst + 8 * half, _mm256_mul_ps(sum, vs));
    }
    if (!whole) memcpy(out, all + s0, (size_t)(s1 - s0) * sizeof(float));
}

void key_block_f16t_avx2(float *out, size_t out_stride, const f16_t *kt, const float *q,
                         int heads, int hd, int s0, int s1, float scale)
{
    for (int h = 0; h < heads; h++)
        key_block_head_avx2(out + (size_t)h * out_stride, kt, q + (size_t)h * hd, hd, s0, s1,
                            scale);
}

void add_avx2(float *x, const float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) x[i] += y[i];
}
