/* AVX-512 kernels: the GEMM tile for batches of float rows, each output bit for bit the
 * single-token AVX2 dot's; and the single-row dots AVX-512 has of its own (Q4_K's, and
 * Q4_0's and Q4_1's in the block steps of their row GEMMs).
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

/* Q4_K dots of one row against 1..DOT_MAX_COLS activation rows (decoding): dotn_q4_k of
 * dot_avx2.c with VNNI's dpwssd (multiply by the sub-block scale and accumulate in one) for
 * its madd + add. The integer sums are the same integers, and the float steps are simd.h's
 * k45_finish_group, so the results are the same bits. */
static inline __attribute__((always_inline)) void dotn_q4_k_group(const struct block_q4_k *x,
                                                                  const struct block_q8_k *const *y,
                                                                  const int nc, int64_t i0,
                                                                  const int m, float *acc)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i s1p[DOT_MAX_COLS][8];
    for (int k = 0; k < m; k++) {
        int64_t i = i0 + k;
        uint8_t sc[8], mn[8];
        k4_unpack_scales(x[i].scales, sc, mn);
        __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
        __m256i sumi[DOT_MAX_COLS];
        for (int c = 0; c < nc; c++) sumi[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i s0 = _mm256_shuffle_epi8(sc16, pick_epi16(2 * j));
            __m256i s1 = _mm256_shuffle_epi8(sc16, pick_epi16(2 * j + 1));
            for (int c = 0; c < nc; c++) {
                __m256i y0 = _mm256_loadu_si256((const __m256i *)(y[c][i].qs + 64 * j));
                __m256i y1 = _mm256_loadu_si256((const __m256i *)(y[c][i].qs + 64 * j + 32));
                sumi[c] = _mm256_dpwssd_epi32(sumi[c], _mm256_maddubs_epi16(lo, y0), s0);
                sumi[c] = _mm256_dpwssd_epi32(sumi[c], _mm256_maddubs_epi16(hi, y1), s1);
            }
        }
        for (int c = 0; c < nc; c++) s1p[c][k] = sumi[c];
    }
    for (int c = 0; c < nc; c++) k45_finish_group(x, false, y[c], i0, m, s1p[c], &acc[c]);
}

static inline __attribute__((always_inline)) void dotn_q4_k_cols(const void *w, const void *a,
                                                                 size_t stride, const int nc,
                                                                 int64_t n, float *out)
{
    const struct block_q8_k *y[DOT_MAX_COLS];
    float acc[DOT_MAX_COLS];
    for (int c = 0; c < nc; c++) {
        y[c] = (const struct block_q8_k *)((const uint8_t *)a + (size_t)c * stride);
        acc[c] = 0;
    }
    int64_t nb = n / QK_K, i0 = 0;
    for (; i0 + 8 <= nb; i0 += 8) dotn_q4_k_group(w, y, nc, i0, 8, acc);
    if (i0 < nb) dotn_q4_k_group(w, y, nc, i0, (int)(nb - i0), acc);
    for (int c = 0; c < nc; c++) out[c] = acc[c];
}

COLUMN_DISPATCH(dotn_q4_k, dot_q4_k)

const dot_fn dot_table_avx512[DTYPE_COUNT] = {
    [DTYPE_Q4_0] = dot_q4_0, [DTYPE_Q4_1] = dot_q4_1, [DTYPE_Q4_K] = dot_q4_k};
const dotn_fn dotn_table_avx512[DTYPE_COUNT] = {
    [DTYPE_Q4_0] = dotn_q4_0, [DTYPE_Q4_1] = dotn_q4_1, [DTYPE_Q4_K] = dotn_q4_k};

