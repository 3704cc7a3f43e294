/* AVX-512 GEMM tiles for batches of float, Q4_0 and Q4_1 rows, each output bit for bit the
 * single-token AVX2 dot's; and Q4_K's own single-row dot.
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

/* Tiles of the 4-bit 32-element types Q4_0 and Q4_1 (Q8_0 and the K-quants batch through the
 * row GEMMs of gemm_avx512.c): QTILE_ROWS rows against QTILE_COLS Q8A activation rows. Per
 * block and output they do what dotn_q4_0 / dotn_q4_1 in dot_avx2.c do, in 8 lanes: the same int32 lane sums (maddubs + madd there, no pair can
 * saturate), the same float scale (half(w.d) * a.d), the same fused multiply-add into the lane
 * accumulator, the same scalar sum of Q4_1's offsets, then the same hsum. The lane sums come
 * from VNNI's dpbusd, which multiplies unsigned by signed bytes: Q4_1's weights are unsigned;
 * for the signed weights of Q4_0 the activations are shifted to unsigned (a + 128,
 * once per column) and the accumulator starts at -128 * (the lane's weights' sum, once per
 * row), which leaves exactly the lane's sum of a * w with one instruction per output. (The
 * activation encoders never write -128: their scale is amax / 127. The AVX2 dot's sign trick
 * needs that too, so both agree on every input the encoders produce.)
 * type is a constant in each use. */
_Static_assert(QTILE_COLS == 4, "the per-block scales are computed as one 4-lane vector");

static inline __attribute__((always_inline)) void tile_q32(const void *const *w, const void *a,
                                                           size_t stride, int64_t n, float *out,
                                                           size_t out_stride, enum dtype type)
{
    __m256 acc[QTILE_ROWS][QTILE_COLS];
    __m128 offs[QTILE_ROWS]; /* Q4_1: lane c holds column c's offset sum */
    const struct block_q8a *y[QTILE_COLS];
    for (int c = 0; c < QTILE_COLS; c++)
        y[c] = (const struct block_q8a *)((const char *)a + (size_t)c * stride);
#pragma GCC unroll 8
    for (int r = 0; r < QTILE_ROWS; r++) {
        offs[r] = _mm_setzero_ps();
#pragma GCC unroll 8
        for (int c = 0; c < QTILE_COLS; c++) acc[r][c] = _mm256_setzero_ps();
    }
    const __m256i k80 = _mm256_set1_epi8((char)0x80);
    for (int64_t i = 0; i < n / QK; i++) {
        __m256i sx[QTILE_ROWS], init[QTILE_ROWS];
        float dx[QTILE_ROWS], mx[QTILE_ROWS];
#pragma GCC unroll 8
        for (int r = 0; r < QTILE_ROWS; r++) {
            if (type == DTYPE_Q4_0) {
                const struct block_q4_0 *b = (const struct block_q4_0 *)w[r] + i;
                sx[r] = _mm256_sub_epi8(nibbles(b->qs), _mm256_set1_epi8(8));
                dx[r] = _cvtsh_ss(b->d);
            } else {
                const struct block_q4_1 *b = (const struct block_q4_1 *)w[r] + i;
                sx[r] = nibbles(b->qs);
                dx[r] = _cvtsh_ss(b->d);
                mx[r] = _cvtsh_ss(b->m);
            }
            init[r] = type == DTYPE_Q4_1 ? _mm256_setzero_si256()
                                         : _mm256_sub_epi32(_mm256_setzero_si256(),
                                                            _mm256_dpbusd_epi32(_mm256_setzero_si256(), k80, sx[r]));
        }
        /* every (row, column) scale dx * dy of this block at once: the same float products */
        __m128 dy = _mm_setr_ps(y[0][i].d, y[1][i].d, y[2][i].d, y[3][i].d);
        float scale[QTILE_ROWS][QTILE_COLS];
#pragma GCC unroll 8
        for (int r = 0; r < QTILE_ROWS; r++) {
            _mm_storeu_ps(scale[r], _mm_mul_ps(_mm_set1_ps(dx[r]), dy));
            if (type == DTYPE_Q4_1) { /* offs += mx * sd, a multiply then an add, per column */
                __m128 sd = _mm_setr_ps(y[0][i].sd, y[1][i].sd, y[2][i].sd, y[3][i].sd);
                offs[r] = _mm_add_ps(offs[r], _mm_mul_ps(_mm_set1_ps(mx[r]), sd));
            }
        }
#pragma GCC unroll 8
        for (int c = 0; c < QTILE_COLS; c++) {
            __m256i qy = _mm256_loadu_si256((const __m256i *)y[c][i].qs);
            __m256i uy = _mm256_xor_si256(qy, k80); /* a + 128 as unsigned bytes */
#pragma GCC unroll 8
            for (int r = 0; r < QTILE_ROWS; r++) {
                __m256i sum = type == DTYPE_Q4_1 ? _mm256_dpbusd_epi32(init[r], sx[r], qy)
                                                 : _mm256_dpbusd_epi32(init[r], uy, sx[r]);
                acc[r][c] = _mm256_fmadd_ps(_mm256_broadcast_ss(&scale[r][c]),
                                            _mm256_cvtepi32_ps(sum), acc[r][c]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < QTILE_ROWS; r++) {
        float off[QTILE_COLS];
        _mm_storeu_ps(off, offs[r]);
#pragma GCC unroll 8
        for (int c = 0; c < QTILE_COLS; c++)
            out[(size_t)c * out_stride + (size_t)r] =
                type == DTYPE_Q4_1 ? hsum_ps(acc[r][c]) + off[c] : hsum_ps(acc[r][c]);
    }
}

static void tile_q4_0(const void *const *w, const void *a, size_t stride, int64_t n, float *out,
                      size_t out_stride)
{
    tile_q32(w, a, stride, n, out, out_stride, DTYPE_Q4_0);
}

static void tile_q4_1(const void *const *w, const void *a, size_t stride, int64_t n, float *out,
                      size_t out_stride)
{
    tile_q32(w, a, stride, n, out, out_stride, DTYPE_Q4_1);
}


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

const dot_fn dot_table_avx512[DTYPE_COUNT] = {[DTYPE_Q4_K] = dot_q4_k};
const dotn_fn dotn_table_avx512[DTYPE_COUNT] = {[DTYPE_Q4_K] = dotn_q4_k};

const dot_qtile_fn qtile_table_avx512[DTYPE_COUNT] = {
    [DTYPE_Q4_0] = tile_q4_0, [DTYPE_Q4_1] = tile_q4_1,
};
