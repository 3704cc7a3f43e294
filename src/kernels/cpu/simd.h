/* Helpers the AVX2 and AVX-512 kernels share, so that kernels meant to compute alike do:
 * the one horizontal sum of 8 float lanes every SIMD kernel ends with (a fixed order of
 * additions), the 8-vector integer reduction, the byte dot products, nibble and scale
 * unpacking, and the float steps the dots and the row GEMMs (gemm_avx512.c) share: the
 * K-quants' super-block finish (k_finish8) and the 32-element types' block steps
 * (q32_dots). Include only from files built with AVX2 (the *_avx2.c and *_avx512.c
 * kernels). */
#ifndef KILN_KERNELS_CPU_SIMD_H
#define KILN_KERNELS_CPU_SIMD_H

#include "kernels/cpu/dot.h"
#include "tensor/quant.h"

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>

/* Instantiates name_cols for each column count, so the accumulators stay in registers, and
 * the single-column dot as the one-column instance (so both compute a column alike). */
#define COLUMN_DISPATCH(name, single)                                                              \
    static void name(const void *w, const void *a, size_t stride, int nc, int64_t n, float *out)  \
    {                                                                                              \
        switch (nc) {                                                                              \
        case 1: name##_cols(w, a, stride, 1, n, out); break;                                       \
        case 2: name##_cols(w, a, stride, 2, n, out); break;                                       \
        case 3: name##_cols(w, a, stride, 3, n, out); break;                                       \
        default: name##_cols(w, a, stride, 4, n, out); break;                                      \
        }                                                                                          \
    }                                                                                              \
    static float single(const void *w, const void *a, int64_t n)                                   \
    {                                                                                              \
        float r;                                                                                   \
        name##_cols(w, a, 0, 1, n, &r);                                                            \
        return r;                                                                                  \
    }

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* hsum_ps of four vectors at once, the same additions lane for lane (the halves, A_i =
 * a_i + a_(i+4); then A_0 + A_2 and A_1 + A_3; then those two): {hsum_ps(a), hsum_ps(b),
 * hsum_ps(c), hsum_ps(d)}. */
static inline __m128 hsum4_ps(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
    /* [A0+A2 A1+A3 C0+C2 C1+C3 | B.. D..] */
    __m256 t = _mm256_add_ps(
        _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(ab), _mm256_castps_pd(cd))),
        _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(ab), _mm256_castps_pd(cd))));
    t = _mm256_add_ps(t, _mm256_movehdup_ps(t)); /* a, c, b, d in lanes 0, 2, 4, 6 */
    t = _mm256_permutevar8x32_ps(t, _mm256_setr_epi32(0, 4, 2, 6, 1, 3, 5, 7));
    return _mm256_castps256_ps128(t);
}

/* out[r] = hsum_ps(acc(row r, q, n)) * scale for rows rows stride bytes apart, four at a time
 * with their sums reduced together (a key row is too short for one row's reduction to hide
 * behind its multiply-adds): the scaled rows form of a dot whose vector part is acc and which
 * has no scalar tail at this n. acc is a constant at each use, so it is inlined. */
typedef __m256 (*row_acc_fn)(const void *row, const float *q, int64_t n);
static inline __attribute__((always_inline)) void scaled_rows(float *out, const void *w,
                                                              size_t stride, int rows,
                                                              const float *q, int64_t n,
                                                              float scale, row_acc_fn acc)
{
#define SCALED_ROW(r) ((const char *)w + (size_t)(r) * stride)
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
        __m128 s = hsum4_ps(acc(SCALED_ROW(r), q, n), acc(SCALED_ROW(r + 1), q, n),
                            acc(SCALED_ROW(r + 2), q, n), acc(SCALED_ROW(r + 3), q, n));
        _mm_storeu_ps(out + r, _mm_mul_ps(s, _mm_set1_ps(scale)));
    }
    for (; r < rows; r++) out[r] = hsum_ps(acc(SCALED_ROW(r), q, n)) * scale;
#undef SCALED_ROW
}

/* The totals of 8 vectors of int32 lanes, as one vector: lane k = the sum of p[k]'s lanes.
 * By unpacks and adds, not vphaddd, which issues only every other cycle here (Zen 4). */
static inline __m256i sum8_epi32(const __m256i p[8])
{
    __m256i t[4], u[2];
    for (int i = 0; i < 4; i++) /* per 128-bit lane: p[2i] and p[2i + 1] folded to 2 each */
        t[i] = _mm256_add_epi32(_mm256_unpacklo_epi32(p[2 * i], p[2 * i + 1]),
                                _mm256_unpackhi_epi32(p[2 * i], p[2 * i + 1]));
    for (int i = 0; i < 2; i++) /* per 128-bit lane: the totals of p[4i] .. p[4i + 3] */
        u[i] = _mm256_add_epi32(_mm256_unpacklo_epi64(t[2 * i], t[2 * i + 1]),
                                _mm256_unpackhi_epi64(t[2 * i], t[2 * i + 1]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(u[0], u[1], 0x20),
                            _mm256_permute2x128_si256(u[0], u[1], 0x31));
}

/* The pshufb mask that copies the int16 at index k of each 128-bit lane to all of that
 * lane's 8 int16s: a scale broadcast when the lane holds 8 sub-block scales. */
static inline __m256i pick_epi16(int k)
{
    return _mm256_set1_epi16((short)(0x0100 * (2 * k + 1) + 2 * k));
}

/* Sum of products of 32 signed bytes, as 8 int32 lanes (a byte of y may be -128 only where
 * x's is not negative: the activation encoders never write -128). */
static inline __m256i dot_i8(__m256i x, __m256i y)
{
    __m256i ax = _mm256_sign_epi8(x, x);
    __m256i sy = _mm256_sign_epi8(y, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

/* Sum of products of 32 unsigned bytes x with signed bytes y, as 8 int32 lanes. */
static inline __m256i dot_u8i8(__m256i x, __m256i y)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
}

/* Activation row c of rows stride bytes apart. */
#define ACT_ROW(a, stride, c) ((const struct block_q8a *)((const uint8_t *)(a) + (size_t)(c) * (stride)))

/* Q6_K's 16 sub-block scales: sc16 holds them as int16 (vpmovsxbw of the 16 bytes). For half
 * h (sub-blocks 8h .. 8h + 7) the 8 scales in both 128-bit lanes; from that, for k = 0..3,
 * sub-block 8h + 2k's scale in the low lane and 8h + 2k + 1's in the high lane, as the dots
 * multiply a 32-byte group (two 16-value sub-blocks) with them. */
static inline __m256i q6_k_half_scales(__m256i sc16, int h)
{
    return h == 0 ? _mm256_permute2x128_si256(sc16, sc16, 0x00)
                  : _mm256_permute2x128_si256(sc16, sc16, 0x11);
}

static inline __m256i q6_k_pair_scales(__m256i half_scales, int k)
{
    /* scale 2k in the low lane, 2k + 1 in the high one */
    return _mm256_shuffle_epi8(half_scales,
                               _mm256_blend_epi32(pick_epi16(2 * k), pick_epi16(2 * k + 1), 0xf0));
}

/* 32 four-bit values (low nibbles first, then high) as bytes 0..15. */
static inline __m256i nibbles(const uint8_t *qs)
{
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

/* The fields of super-block i of a Q4_K (q5 false) or Q5_K row, which share their layout
 * but for Q5_K's high bits. */
#define K45_BLOCK(row, q5, i, field)                                                               \
    ((q5) ? ((const struct block_q5_k *)(row))[i].field : ((const struct block_q4_k *)(row))[i].field)

/* The K-quant dots (Q4_K, Q5_K, Q6_K) all end each super-block with the scalar reference's
 * float steps (k_dot in dot_ref.c): with s1 = the sum over sub-blocks of scale * (weights .
 * activations) and s2 = the sum of min * (the activations' sums), both exact integers,
 *     r = a.d * (d * (float)s1 - dmin * (float)s2),   acc = acc + r,
 * super-block by super-block in order (Q6_K has no mins: dmin = s2 = 0). Integer sums do not
 * depend on how they are formed, so every kernel that follows these steps (the reference, the
 * AVX2 and AVX-512 dots, the batched GEMM) gives bit for bit the same result.
 *
 * k_finish8 does the float steps of m <= 8 super-blocks at once: lane k of s1 / s2 holds
 * super-block k's sums, d / dmin / yd its scales and the activations' scale. */
static inline __attribute__((always_inline)) void k_finish8(float *acc, __m256i s1, __m256i s2,
                                                            const float d[8], const float dmin[8],
                                                            const float yd[8], int m)
{
    __m256 r = _mm256_mul_ps(_mm256_loadu_ps(yd),
                             _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(d), _mm256_cvtepi32_ps(s1)),
                                           _mm256_mul_ps(_mm256_loadu_ps(dmin), _mm256_cvtepi32_ps(s2))));
    float t[8];
    _mm256_storeu_ps(t, r);
    for (int k = 0; k < m; k++) *acc += t[k];
}

/* Finishes super-blocks i0 .. i0 + m - 1 (m <= 8) of a Q4_K / Q5_K row against one activation
 * row into *acc: s1p[k] is a vector whose int32 lanes sum to super-block i0 + k's s1 (lanes of
 * k >= m are ignored); the mins' s2 are computed here from the activations' 16-value sums. */
static inline __attribute__((always_inline)) void k45_finish_group(const void *w, bool q5,
                                                                   const struct block_q8_k *y,
                                                                   int64_t i0, int m,
                                                                   const __m256i s1p[8], float *acc)
{
    __m256i p[8], s[8];
    float d[8], dmin[8], yd[8];
    for (int k = 0; k < 8; k++) {
        if (k >= m) {
            p[k] = s[k] = _mm256_setzero_si256();
            d[k] = dmin[k] = yd[k] = 0;
            continue;
        }
        int64_t i = i0 + k;
        uint8_t sc[8], mn[8];
        k4_unpack_scales(K45_BLOCK(w, q5, i, scales), sc, mn);
        __m128i m8 = _mm_loadl_epi64((const __m128i *)mn);
        /* lane k holds the min of sub-block k / 2, against bsums k (16 values each) */
        __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
        p[k] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), mins16);
        s[k] = s1p[k];
        d[k] = _cvtsh_ss(K45_BLOCK(w, q5, i, d));
        dmin[k] = _cvtsh_ss(K45_BLOCK(w, q5, i, dmin));
        yd[k] = y[i].d;
    }
    k_finish8(acc, sum8_epi32(s), sum8_epi32(p), d, dmin, yd, m);
}

/* The block steps of the 32-element types where the row GEMMs batch them (Q8_0 on AVX2 and
 * AVX-512, Q4_0 and Q4_1 on AVX-512): block b's exact integer sum S_b (weights . activations)
 * goes into one of eight partial sums by block index,
 *     part[b % 8] = fma(half(w.d) * a.d, (float)S_b, part[b % 8]),
 * which hsum_ps adds at the end; Q4_1's offsets are summed apart, offs = offs + half(w.m) *
 * a.sd block by block, and added last. A group of 8 blocks has its sums reduced together
 * (sum8_epi32) and its scales gathered into one vector. */

/* Block i of a row: its 32 weights as bytes (signed for Q8_0 and Q4_0, unsigned for Q4_1),
 * with its d and (Q4_1) m. */
static inline __attribute__((always_inline)) __m256i q32_weights(const void *w, int64_t i,
                                                                 enum dtype type, float *dx,
                                                                 float *mx)
{
    if (type == DTYPE_Q4_0) {
        const struct block_q4_0 *b = (const struct block_q4_0 *)w + i;
        *dx = _cvtsh_ss(b->d);
        return _mm256_sub_epi8(nibbles(b->qs), _mm256_set1_epi8(8));
    }
    if (type == DTYPE_Q4_1) {
        const struct block_q4_1 *b = (const struct block_q4_1 *)w + i;
        *dx = _cvtsh_ss(b->d);
        *mx = _cvtsh_ss(b->m);
        return nibbles(b->qs);
    }
    const struct block_q8_0 *b = (const struct block_q8_0 *)w + i;
    *dx = _cvtsh_ss(b->d);
    return _mm256_loadu_si256((const __m256i *)b->qs);
}

/* Blocks i0 .. i0 + m - 1 (m <= 8, a constant) of a row against nc activation rows. */
static inline __attribute__((always_inline)) void q32_group(const void *w, const void *a,
                                                            size_t stride, const int nc,
                                                            int64_t i0, const int m,
                                                            enum dtype type, __m256 *part,
                                                            float *offs)
{
    __m256i p[DOT_MAX_COLS][8];
    float scale[DOT_MAX_COLS][8];
    for (int k = 0; k < 8; k++) {
        if (k >= m) {
            for (int c = 0; c < nc; c++) p[c][k] = _mm256_setzero_si256(), scale[c][k] = 0;
            continue;
        }
        float dx, mx = 0;
        __m256i qx = q32_weights(w, i0 + k, type, &dx, &mx);
        for (int c = 0; c < nc; c++) {
            const struct block_q8a *y = ACT_ROW(a, stride, c) + i0 + k;
            __m256i qy = _mm256_loadu_si256((const __m256i *)y->qs);
            p[c][k] = type == DTYPE_Q4_1 ? dot_u8i8(qx, qy) : dot_i8(qx, qy);
            scale[c][k] = dx * y->d;
            if (type == DTYPE_Q4_1) offs[c] += mx * y->sd;
        }
    }
    for (int c = 0; c < nc; c++) {
        const float *f = scale[c];
        __m256 s8 = _mm256_setr_ps(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]);
        part[c] = _mm256_fmadd_ps(s8, _mm256_cvtepi32_ps(sum8_epi32(p[c])), part[c]);
    }
}

/* A row against nc (<= DOT_MAX_COLS) activation rows stride bytes apart: out[c]. */
static inline __attribute__((always_inline)) void q32_dots(const void *w, const void *a,
                                                           size_t stride, const int nc, int64_t n,
                                                           float *out, enum dtype type)
{
    __m256 part[DOT_MAX_COLS];
    float offs[DOT_MAX_COLS];
    for (int c = 0; c < nc; c++) part[c] = _mm256_setzero_ps(), offs[c] = 0;
    int64_t nb = n / QK, i0 = 0;
    for (; i0 + 8 <= nb; i0 += 8) q32_group(w, a, stride, nc, i0, 8, type, part, offs);
    /* the last group's size as a constant too: rows of 576 (18 blocks) end with 2 */
    switch (nb - i0) {
    case 0: break;
    case 1: q32_group(w, a, stride, nc, i0, 1, type, part, offs); break;
    case 2: q32_group(w, a, stride, nc, i0, 2, type, part, offs); break;
    case 3: q32_group(w, a, stride, nc, i0, 3, type, part, offs); break;
    case 4: q32_group(w, a, stride, nc, i0, 4, type, part, offs); break;
    case 5: q32_group(w, a, stride, nc, i0, 5, type, part, offs); break;
    case 6: q32_group(w, a, stride, nc, i0, 6, type, part, offs); break;
    default: q32_group(w, a, stride, nc, i0, 7, type, part, offs); break;
    }
    for (int c = 0; c < nc; c++) out[c] = type == DTYPE_Q4_1 ? hsum_ps(part[c]) + offs[c] : hsum_ps(part[c]);
}

#endif
