/* AVX-512 version of the attention's transposed F16 key scores: one zmm holds a dimension of
 * a KV block's 16 positions. Contract: src/kernels/cpu/convert.h. */
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
