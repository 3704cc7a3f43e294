/* AVX-512 versions of two attention helpers for an F16 cache: the transposed key scores (one
 * zmm holds a dimension of a KV block's 16 positions) and the value sums of all the query
 * heads of a KV head at once (each row widened once). Contract: src/kernels/cpu/convert.h. */
#include "kernels/cpu/convert.h"

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

_Static_assert(KEY_BLOCK_POSITIONS == 16, "one zmm lane per position");

/* NH (1 to 4) heads: per head its four chains (16 accumulators at most: four chains keep a
 * single head's multiply-adds from waiting on each other), each dimension's keys widened once
 * for all of them. */
static inline __attribute__((always_inline)) void key_block_heads(float *out, size_t out_stride,
                                                                  const f16_t *kt, const float *q,
                                                                  const int nh, int hd, int s0,
                                                                  int s1, float scale)
{
    __m512 acc[4][4]; /* [head][d % 4] */
    for (int h = 0; h < nh; h++)
        for (int c = 0; c < 4; c++) acc[h][c] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d += 4) {
        __m512 k[4];
        for (int c = 0; c < 4; c++)
            k[c] = _mm512_cvtph_ps(
                _mm256_loadu_si256((const __m256i *)(kt + (size_t)(d + c) * KEY_BLOCK_POSITIONS)));
        for (int h = 0; h < nh; h++)
            for (int c = 0; c < 4; c++)
                acc[h][c] = _mm512_fmadd_ps(k[c], _mm512_set1_ps(q[(size_t)h * hd + d + c]),
                                            acc[h][c]);
    }
    /* lanes s0 .. s1 - 1 to out[0 .. s1 - s0): a part of a block through a copy (a compressing
     * store to memory is microcoded on Zen 4) */
    bool whole = s0 == 0 && s1 == KEY_BLOCK_POSITIONS;
    for (int h = 0; h < nh; h++) {
        __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[h][0], acc[h][1]),
                                   _mm512_add_ps(acc[h][2], acc[h][3]));
        __m512 r = _mm512_mul_ps(sum, _mm512_set1_ps(scale));
        float *o = out + (size_t)h * out_stride, all[KEY_BLOCK_POSITIONS];
        _mm512_storeu_ps(whole ? o : all, r);
        if (!whole) memcpy(o, all + s0, (size_t)(s1 - s0) * sizeof(float));
    }
}

void key_block_f16t_avx512(float *out, size_t out_stride, const f16_t *kt, const float *q,
                           int heads, int hd, int s0, int s1, float scale)
{
    int h = 0;
    for (; h + 4 <= heads; h += 4)
        key_block_heads(out + (size_t)h * out_stride, out_stride, kt, q + (size_t)h * hd, 4, hd,
                        s0, s1, scale);
    float *o = out + (size_t)h * out_stride;
    const float *qh = q + (size_t)h * hd;
    switch (heads - h) {
    case 3: key_block_heads(o, out_stride, kt, qh, 3, hd, s0, s1, scale); break;
    case 2: key_block_heads(o, out_stride, kt, qh, 2, hd, s0, s1, scale); break;
    case 1: key_block_heads(o, out_stride, kt, qh, 1, hd, s0, s1, scale); break;
    default: break;
    }
}

/* NH (1 to 4) heads' outputs, 64 values (four zmm) each, held in registers while every row
 * adds to them: each row's 64 halves widened once for all the heads. */
static inline __attribute__((always_inline)) void value_heads_chunk(float *y, const float *w,
                                                                    size_t w_stride,
                                                                    const f16_t *x, size_t stride,
                                                                    int rows, const int nh,
                                                                    int64_t hd)
{
    __m512 acc[4][4]; /* [head][16 values] */
    for (int h = 0; h < nh; h++)
        for (int k = 0; k < 4; k++) acc[h][k] = _mm512_loadu_ps(y + (size_t)h * hd + 16 * k);
    for (int r = 0; r < rows; r++) {
        const f16_t *row = (const f16_t *)((const char *)x + (size_t)r * stride);
        __m512 v[4];
        for (int k = 0; k < 4; k++)
            v[k] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 16 * k)));
        for (int h = 0; h < nh; h++) {
            __m512 wh = _mm512_set1_ps(w[(size_t)h * w_stride + (size_t)r]);
            for (int k = 0; k < 4; k++) acc[h][k] = _mm512_fmadd_ps(wh, v[k], acc[h][k]);
        }
    }
    for (int h = 0; h < nh; h++)
        for (int k = 0; k < 4; k++) _mm512_storeu_ps(y + (size_t)h * hd + 16 * k, acc[h][k]);
}

void value_heads_f16_avx512(float *y, const float *w, size_t w_stride, const void *x,
                            size_t stride, int rows, int heads, int64_t hd)
{
    int64_t i = 0;
    for (; i + 64 <= hd; i += 64) {
        const f16_t *xi = (const f16_t *)x + i;
        int h = 0;
        for (; h + 4 <= heads; h += 4)
            value_heads_chunk(y + (size_t)h * hd + i, w + (size_t)h * w_stride, w_stride, xi,
                              stride, rows, 4, hd);
        float *yh = y + (size_t)h * hd + i;
        const float *wh = w + (size_t)h * w_stride;
        switch (heads - h) {
        case 3: value_heads_chunk(yh, wh, w_stride, xi, stride, rows, 3, hd); break;
        case 2: value_heads_chunk(yh, wh, w_stride, xi, stride, rows, 2, hd); break;
        case 1: value_heads_chunk(yh, wh, w_stride, xi, stride, rows, 1, hd); break;
        default: break;
        }
    }
    if (i == hd) return;
    /* the values past the last 64: AVX2's rows form per head (the same fused steps) */
    for (int h = 0; h < heads; h++)
        axpy_f16_rows_avx2(y + (size_t)h * hd + i, w + (size_t)h * w_stride,
                           (const f16_t *)x + i, stride, rows, hd - i);
}
