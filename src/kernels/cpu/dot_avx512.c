/* AVX-512 kernels: the GEMM tile for batches of float rows that are not repacked (a weight of
 * fewer than 16 rows, a slice that is not whole blocks: repacked float weights go through
 * gemm_avx512.c), each output bit for bit the single-token AVX2 dot's; and the single-row
 * dots AVX-512 has of its own, Q4_0's and Q4_1's in the block steps of their row GEMMs.
 * (Every other type's dot is AVX2's: the quantized matmuls decode through the row GEMMs, so a
 * dot of their own would serve only the rows past the last block of 16.)
 *
 * Float tile: TILE_ROWS float weight rows (F32, or F16 / BF16 widened) against
 * TILE_COLS activation rows, all full-length dots, with 24 zmm accumulators in registers.
 * Each output's arithmetic is exactly dot_f32's in dot_avx2.c: a zmm lane i holds what its
 * accumulator acc0 (lanes 0-7) or acc1 (lanes 8-15) holds there, the halves are added and
 * reduced by the same hsum_ps, and the tail is the same scalar loop, so a token's result is
 * the same alone (single-token dots) or in any batch. Tested against them in test_kernels.
 * Contract: src/kernels/cpu/dot.h. */
#include "kernels/cpu/dot.h"
#include "kernels/cpu/simd.h"
#include "tensor/quant.h"

#include <immintrin.h>
#include <stdbool.h>

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

/* Q4_0 and Q4_1 dots in simd.h's block steps, which their row GEMMs (gemm_avx512.c) repeat
 * per lane. (The AVX2 dots of these types keep a fused multiply-add per lane and block: in
 * the block steps their decoding ran 15-30 % slower on rows of 512-576, and AVX2 has no row
 * GEMM to gain from them. AVX-512 decodes these types through the repacked row GEMM.) */
static inline __attribute__((always_inline)) void dotn_q4_0_cols(const void *w, const void *a,
                                                                 size_t stride, const int nc,
                                                                 int64_t n, float *out)
{
    q32_dots(w, a, stride, nc, n, out, DTYPE_Q4_0);
}

COLUMN_DISPATCH(dotn_q4_0, dot_q4_0)

static inline __attribute__((always_inline)) void dotn_q4_1_cols(const void *w, const void *a,
                                                                 size_t stride, const int nc,
                                                                 int64_t n, float *out)
{
    q32_dots(w, a, stride, nc, n, out, DTYPE_Q4_1);
}

COLUMN_DISPATCH(dotn_q4_1, dot_q4_1)

const dot_fn dot_table_avx512[DTYPE_COUNT] = {[DTYPE_Q4_0] = dot_q4_0, [DTYPE_Q4_1] = dot_q4_1};
const dotn_fn dotn_table_avx512[DTYPE_COUNT] = {[DTYPE_Q4_0] = dotn_q4_0, [DTYPE_Q4_1] = dotn_q4_1};

