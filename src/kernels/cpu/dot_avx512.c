/* AVX-512 float GEMM tile: TILE_ROWS float weight rows (F32, or F16 / BF16 widened) against
 * TILE_COLS activation rows, all full-length dots, with 24 zmm accumulators in registers.
 * Each output's arithmetic is exactly dot_f32's in dot_avx2.c: a zmm lane i holds what its
 * accumulator acc0 (lanes 0-7) or acc1 (lanes 8-15) holds there, the halves are added and
 * reduced by the same hsum_ps, and the tail is the same scalar loop, so a token's result is
 * the same alone (single-token dots) or in any batch. Tested against them in test_kernels.
 * Contract: src/kernels/cpu/dot.h. */
#include "kernels/cpu/dot.h"
#include "kernels/cpu/hsum.h"

#include <immintrin.h>

static void tile_f32(const float *const *w, const void *a, size_t stride, int64_t n, float *out,
                     size_t out_stride)
{
    __m512 acc[TILE_ROWS][TILE_COLS];
    const float *x[TILE_COLS];
    for (int c = 0; c < TILE_COLS; c++) x[c] = (const float *)((const char *)a + (size_t)c * stride);
    for (int r = 0; r < TILE_ROWS; r++)
        for (int c = 0; c < TILE_COLS; c++) acc[r][c] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 wr[TILE_ROWS];
#pragma GCC unroll 8
        for (int r = 0; r < TILE_ROWS; r++) wr[r] = _mm512_loadu_ps(w[r] + i);
#pragma GCC unroll 8
        for (int c = 0; c < TILE_COLS; c++) {
            __m512 xc = _mm512_loadu_ps(x[c] + i);
#pragma GCC unroll 8
            for (int r = 0; r < TILE_ROWS; r++) acc[r][c] = _mm512_fmadd_ps(wr[r], xc, acc[r][c]);
        }
    }
    for (int r = 0; r < TILE_ROWS; r++)
        for (int c = 0; c < TILE_COLS; c++) {
            __m256 lo = _mm512_castps512_ps256(acc[r][c]), hi = _mm512_extractf32x8_ps(acc[r][c], 1);
            float s = hsum_ps(_mm256_add_ps(lo, hi));
            for (int64_t j = i; j < n; j++) s += w[r][j] * x[c][j];
            out[(size_t)c * out_stride + (size_t)r] = s;
        }
}

const dot_tile_fn tile_f32_avx512 = tile_f32;
