/* AVX2 + FMA + F16C dot products for every weight type. Tested against dot_ref.c.
 * Contract: src/kernels/cpu/dot.h. */
#include "kernels/cpu/dot.h"
#include "kernels/cpu/simd.h"
#include "tensor/quant.h"

#include <immintrin.h>
#include <stdbool.h>


/* Exact half to float with F16C (same value as f16_to_f32, much faster). */
static inline float half(f16_t h)
{
    return _cvtsh_ss(h);
}


/* 0x10 in byte j where bit j of the 32-bit qh is set, else 0. */
static inline __m256i high_bits(const uint8_t *qh)
{
    uint32_t x = load_u32(qh);
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                             0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* F32 rows against up to 4 activation rows: the weights are loaded once for every column,
 * and each column's arithmetic (two 8-lane accumulators over 16 elements a step, their sum,
 * then a scalar tail) is exactly dot_f32's, which is this with one column. */
static inline __attribute__((always_inline)) void dotn_f32_cols(const void *w, const void *a,
                                                                 size_t stride, const int nc,
                                                                 int64_t n, float *out)
{
    const float *x = w;
    __m256 acc0[DOT_MAX_COLS], acc1[DOT_MAX_COLS];
    for (int c = 0; c < nc; c++) acc0[c] = acc1[c] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        for (int c = 0; c < nc; c++) {
            const float *y = (const float *)((const uint8_t *)a + (size_t)c * stride);
            acc0[c] = _mm256_fmadd_ps(x0, _mm256_loadu_ps(y + i), acc0[c]);
            acc1[c] = _mm256_fmadd_ps(x1, _mm256_loadu_ps(y + i + 8), acc1[c]);
        }
    }
    for (int c = 0; c < nc; c++) {
        const float *y = (const float *)((const uint8_t *)a + (size_t)c * stride);
        float s = hsum_ps(_mm256_add_ps(acc0[c], acc1[c]));
        for (int64_t j = i; j < n; j++) s += x[j] * y[j];
        out[c] = s;
    }
}

/* dot_f16's vector part over the first n / 16 * 16 values: two accumulators, their sum
 * still to be reduced. */
static inline __attribute__((always_inline)) __m256 f16_acc(const f16_t *x, const float *y,
                                                            int64_t n, const bool prefetch)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t i = 0; i + 16 <= n; i += 16) {
        /* 1 KiB ahead: decoding an F16 model is bound by this stream (TinyLlama F16 tg48
         * 14.6-14.8 -> 14.9-15.1 tok/s; the same for Q8_0 rows was slower) */
        if (prefetch) _mm_prefetch((const char *)(x + i) + 1024, _MM_HINT_T0);
        __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 8)));
        acc0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(y + i), acc0);
        acc1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(y + i + 8), acc1);
    }
    return _mm256_add_ps(acc0, acc1);
}

static float dot_f16(const void *w, const void *a, int64_t n)
{
    const f16_t *x = w;
    const float *y = a;
    float s = hsum_ps(f16_acc(x, y, n, true));
    for (int64_t i = n / 16 * 16; i < n; i++) s += half(x[i]) * y[i];
    return s;
}

/* The same arithmetic as dot_f32 on the widened row (two accumulators, 16 a step, scalar
 * tail), so a batch may widen a row once and use dotn_f32 for every token: equal results. */
static float dot_bf16(const void *w, const void *a, int64_t n)
{
    const bf16_t *x = w;
    const float *y = a;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i w0 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        __m256i w1 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i + 8)));
        acc0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(w0, 16)),
                               _mm256_loadu_ps(y + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(w1, 16)),
                               _mm256_loadu_ps(y + i + 8), acc1);
    }
    float s = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += bf16_to_f32(x[i]) * y[i];
    return s;
}

static void widen_f16(float *dst, const void *src, int64_t n)
{
    const f16_t *x = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) dst[i] = half(x[i]);
}

static void widen_bf16(float *dst, const void *src, int64_t n)
{
    const bf16_t *x = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
    }
    for (; i < n; i++) dst[i] = bf16_to_f32(x[i]);
}

/* Multi-column dots: COLUMN_DISPATCH (simd.h) instantiates each for 1..4 columns. */
COLUMN_DISPATCH(dotn_f32, dot_f32)

/* The 32-element types with several activation rows: each weight block is loaded and
 * unpacked once and used for every column; each column's arithmetic is exactly what the
 * single-column dot does (it is this function with one column). Q8_0 takes simd.h's block
 * steps (q32_dots), which its row GEMM repeats; Q4_0 and Q4_1 keep a fused multiply-add per
 * lane and block here (their AVX-512 dots take the block steps: dot_avx512.c). */
static inline __attribute__((always_inline)) void dotn_q8_0_cols(const void *w, const void *a, size_t stride, const int nc, int64_t n, float *out)
{
    q32_dots(w, a, stride, nc, n, out, DTYPE_Q8_0);
}

COLUMN_DISPATCH(dotn_q8_0, dot_q8_0)

/* Q4_0 (its nibbles less 8): signed weight bytes times signed activation bytes. */
static inline __attribute__((always_inline)) void dotn_q4_0_cols(const void *w, const void *a,
                                                                 size_t stride, const int nc,
                                                                 int64_t n, float *out)
{
    __m256 acc[DOT_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK; i++) {
        const struct block_q4_0 *b = (const struct block_q4_0 *)w + i;
        __m256i qx = _mm256_sub_epi8(nibbles(b->qs), _mm256_set1_epi8(8));
        float dx = half(b->d);
        for (int c = 0; c < nc; c++) {
            const struct block_q8a *y = ACT_ROW(a, stride, c) + i;
            __m256i qy = _mm256_loadu_si256((const __m256i *)y->qs);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dx * y->d),
                                     _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) out[c] = hsum_ps(acc[c]);
}

COLUMN_DISPATCH(dotn_q4_0, dot_q4_0)

static inline __attribute__((always_inline)) void dotn_q4_1_cols(const void *w, const void *a, size_t stride, const int nc, int64_t n, float *out)
{
    const struct block_q4_1 *x = w;
    __m256 acc[DOT_MAX_COLS];
    float offs[DOT_MAX_COLS];
    for (int c = 0; c < nc; c++) {
        acc[c] = _mm256_setzero_ps();
        offs[c] = 0;
    }
    for (int64_t i = 0; i < n / QK; i++) {
        __m256i qx = nibbles(x[i].qs);
        float dx = half(x[i].d), mx = half(x[i].m);
        for (int c = 0; c < nc; c++) {
            const struct block_q8a *y = ACT_ROW(a, stride, c) + i;
            __m256i qy = _mm256_loadu_si256((const __m256i *)y->qs);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dx * y->d),
                                     _mm256_cvtepi32_ps(dot_u8i8(qx, qy)), acc[c]);
            offs[c] += mx * y->sd;
        }
    }
    for (int c = 0; c < nc; c++) out[c] = hsum_ps(acc[c]) + offs[c];
}

COLUMN_DISPATCH(dotn_q4_1, dot_q4_1)

static float dot_q5_0(const void *w, const void *a, int64_t n)
{
    const struct block_q5_0 *x = w;
    const struct block_q8a *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK; i++) {
        __m256i q = _mm256_or_si256(nibbles(x[i].qs), high_bits(x[i].qh));
        __m256i qx = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
        __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256 d = _mm256_set1_ps(half(x[i].d) * y[i].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc);
    }
    return hsum_ps(acc);
}

static float dot_q5_1(const void *w, const void *a, int64_t n)
{
    const struct block_q5_1 *x = w;
    const struct block_q8a *y = a;
    __m256 acc = _mm256_setzero_ps();
    float offs = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        __m256i q = _mm256_or_si256(nibbles(x[i].qs), high_bits(x[i].qh));
        __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256 d = _mm256_set1_ps(half(x[i].d) * y[i].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8i8(q, qy)), acc);
        offs += half(x[i].m) * y[i].sd;
    }
    return hsum_ps(acc) + offs;
}

/* Scales for two 16-element groups: 16-bit lanes 0..7 get a, lanes 8..15 get b, matching
 * the pair sums maddubs makes of 32 bytes. */
static inline __m256i group_scales(int a, int b)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a));
}

/* Q2_K: 2-bit values; scale and min per 16 values, 4 bits each. Each 32 bytes of qs hold
 * 128 values, 32 per bit pair. */
static float dot_q2_k(const void *w, const void *a, int64_t n)
{
    const struct block_q2_k *x = w;
    const struct block_q8_k *y = a;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float acc_min = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i sumi = _mm256_setzero_si256();
        int summ = 0;
        for (int g = 0; g < 16; g++) summ += (x[i].scales[g] >> 4) * y[i].bsums[g];
        for (int half = 0; half < 2; half++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * half));
            for (int k = 0; k < 4; k++) {
                int g = 8 * half + 2 * k;
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                __m256i yy = _mm256_loadu_si256((const __m256i *)(y[i].qs + 128 * half + 32 * k));
                __m256i sc = group_scales(x[i].scales[g] & 0xf, x[i].scales[g + 1] & 0xf);
                sumi = _mm256_add_epi32(sumi,
                                        _mm256_madd_epi16(_mm256_maddubs_epi16(v, yy), sc));
            }
        }
        float d = half(x[i].d) * y[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        acc_min += half(x[i].dmin) * y[i].d * (float)summ;
    }
    return hsum_ps(acc) - acc_min;
}

/* Q3_K: 2 low bits in qs as Q2_K, and a high bit in hmask that, when clear, subtracts 4;
 * signed 6-bit scales per 16 values. */
static float dot_q3_k(const void *w, const void *a, int64_t n)
{
    const struct block_q3_k *x = w;
    const struct block_q8_k *y = a;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t sc[16];
        q3_k_unpack_scales(sc, x[i].scales);
        __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        __m256i sumi = _mm256_setzero_si256();
        for (int half = 0; half < 2; half++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * half));
            for (int k = 0; k < 4; k++) {
                int g = 8 * half + 2 * k;
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                __m256i hbit = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * half + k), one);
                __m256i minus4 = _mm256_slli_epi16(_mm256_xor_si256(hbit, one), 2);
                __m256i yy = _mm256_loadu_si256((const __m256i *)(y[i].qs + 128 * half + 32 * k));
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(v, yy),
                                             _mm256_maddubs_epi16(minus4, yy));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, group_scales(sc[g], sc[g + 1])));
            }
        }
        float d = half(x[i].d) * y[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

/* Q4_K and Q5_K share the scale layout; qh is NULL for Q4_K. One super-block (index i)
 * against nc activation rows: s1[c] gets int32 lanes that sum to column c's s1 (simd.h). */
static inline __attribute__((always_inline)) void dotn_q45_k_block(const uint8_t *scales,
                                    const uint8_t *qs, const uint8_t *qh, const void *a,
                                    size_t stride, int64_t i, int nc, __m256i *s1)
{
    uint8_t sc[8], mn[8];
    k4_unpack_scales(scales, sc, mn);
    /* the 8 scales as int16 in both 128-bit lanes; pshufb broadcasts sub-block k's */
    __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
    for (int c = 0; c < nc; c++) s1[c] = _mm256_setzero_si256();
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        __m256i lo = _mm256_and_si256(q, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (qh) {
            __m256i b0 = _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), _mm256_set1_epi8(1));
            __m256i b1 =
                _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), _mm256_set1_epi8(1));
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(b0, 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(b1, 4));
        }
        __m256i s0 = _mm256_shuffle_epi8(sc16, pick_epi16(2 * j));
        __m256i s1j = _mm256_shuffle_epi8(sc16, pick_epi16(2 * j + 1));
        for (int c = 0; c < nc; c++) {
            const struct block_q8_k *y =
                (const struct block_q8_k *)((const uint8_t *)a + (size_t)c * stride) + i;
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * j));
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * j + 32));
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), s0);
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), s1j);
            s1[c] = _mm256_add_epi32(s1[c], _mm256_add_epi32(p0, p1));
        }
    }
}

/* Super-blocks i0 .. i0 + m - 1 (m <= 8) of a Q4_K / Q5_K row against nc activation rows:
 * their integer sums reduced together, then finished in order by k45_finish_group. Called
 * with m = 8 as a constant for whole groups, so that the group's sums stay in registers. */
static inline __attribute__((always_inline)) void dotn_q45_k_group(const void *w, bool q5,
                                                                   const void *a, size_t stride,
                                                                   const int nc, int64_t i0,
                                                                   const int m, float *acc)
{
    __m256i s1p[DOT_MAX_COLS][8], s1[DOT_MAX_COLS];
    for (int k = 0; k < m; k++) {
        int64_t i = i0 + k;
        dotn_q45_k_block(K45_BLOCK(w, q5, i, scales), K45_BLOCK(w, q5, i, qs),
                         q5 ? ((const struct block_q5_k *)w)[i].qh : NULL, a, stride, i, nc, s1);
        for (int c = 0; c < nc; c++) s1p[c][k] = s1[c];
    }
    for (int c = 0; c < nc; c++)
        k45_finish_group(w, q5, (const struct block_q8_k *)((const uint8_t *)a + (size_t)c * stride),
                         i0, m, s1p[c], &acc[c]);
}

/* A Q4_K / Q5_K row against nc activation rows, 8 super-blocks at a time. */
static inline __attribute__((always_inline)) void dotn_q45_k_cols(const void *w, bool q5,
                                                                  const void *a, size_t stride,
                                                                  const int nc, int64_t n, float *out)
{
    int64_t nb = n / QK_K, i0 = 0;
    float acc[DOT_MAX_COLS] = {0};
    for (; i0 + 8 <= nb; i0 += 8) dotn_q45_k_group(w, q5, a, stride, nc, i0, 8, acc);
    if (i0 < nb) dotn_q45_k_group(w, q5, a, stride, nc, i0, (int)(nb - i0), acc);
    for (int c = 0; c < nc; c++) out[c] = acc[c];
}

static inline __attribute__((always_inline)) void dotn_q4_k_cols(const void *w, const void *a, size_t stride, const int nc, int64_t n, float *out)
{
    dotn_q45_k_cols(w, false, a, stride, nc, n, out);
}

COLUMN_DISPATCH(dotn_q4_k, dot_q4_k)

static inline __attribute__((always_inline)) void dotn_q5_k_cols(const void *w, const void *a, size_t stride, const int nc, int64_t n, float *out)
{
    dotn_q45_k_cols(w, true, a, stride, nc, n, out);
}

COLUMN_DISPATCH(dotn_q5_k, dot_q5_k)

/* One Q6_K super-block against nc activation rows: s[c] gets int32 lanes that sum to the
 * exact sum over sub-blocks of scale * ((q - 32) . a). */
static inline __attribute__((always_inline)) void dotn_q6_k_block(const struct block_q6_k *x,
                                                                  const void *a, size_t stride,
                                                                  int64_t i, int nc, __m256i *s)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    const __m256i k32 = _mm256_set1_epi8(32);
    for (int c = 0; c < nc; c++) s[c] = _mm256_setzero_si256();
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = x->ql + 64 * h, *qh = x->qh + 32 * h;
        __m256i sch = q6_k_half_scales(sc16, h);
        __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
        __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
        __m256i q[4] = {
            _mm256_or_si256(_mm256_and_si256(l0, m4),
                            _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4)),
            _mm256_or_si256(_mm256_and_si256(l1, m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4)),
        };
        for (int k = 0; k < 4; k++) {
            __m256i scales = q6_k_pair_scales(sch, k);
            for (int c = 0; c < nc; c++) {
                const struct block_q8_k *y =
                    (const struct block_q8_k *)((const uint8_t *)a + (size_t)c * stride) + i;
                __m256i yy = _mm256_loadu_si256((const __m256i *)(y->qs + 128 * h + 32 * k));
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[k], yy),
                                             _mm256_maddubs_epi16(k32, yy));
                s[c] = _mm256_add_epi32(s[c], _mm256_madd_epi16(p, scales));
            }
        }
    }
}

/* Super-blocks i0 .. i0 + m - 1 (m <= 8) of a Q6_K row against nc activation rows, as
 * dotn_q45_k_group does them (no mins). */
static inline __attribute__((always_inline)) void dotn_q6_k_group(const struct block_q6_k *x,
                                                                  const void *a, size_t stride,
                                                                  const int nc, int64_t i0,
                                                                  const int m, float *acc)
{
    static const float zero[8];
    __m256i sp[DOT_MAX_COLS][8], s[DOT_MAX_COLS];
    float d[8], yd[DOT_MAX_COLS][8];
    for (int k = 0; k < 8; k++) {
        if (k >= m) {
            d[k] = 0;
            for (int c = 0; c < nc; c++) sp[c][k] = _mm256_setzero_si256(), yd[c][k] = 0;
            continue;
        }
        dotn_q6_k_block(&x[i0 + k], a, stride, i0 + k, nc, s);
        d[k] = half(x[i0 + k].d);
        for (int c = 0; c < nc; c++) {
            sp[c][k] = s[c];
            yd[c][k] = ((const struct block_q8_k *)((const uint8_t *)a + (size_t)c * stride))[i0 + k].d;
        }
    }
    for (int c = 0; c < nc; c++)
        k_finish8(&acc[c], sum8_epi32(sp[c]), _mm256_setzero_si256(), d, zero, yd[c], m);
}

static inline __attribute__((always_inline)) void dotn_q6_k_cols(const void *w, const void *a, size_t stride, const int nc, int64_t n, float *out)
{
    int64_t nb = n / QK_K, i0 = 0;
    float acc[DOT_MAX_COLS] = {0};
    for (; i0 + 8 <= nb; i0 += 8) dotn_q6_k_group(w, a, stride, nc, i0, 8, acc);
    if (i0 < nb) dotn_q6_k_group(w, a, stride, nc, i0, (int)(nb - i0), acc);
    for (int c = 0; c < nc; c++) out[c] = acc[c];
}

COLUMN_DISPATCH(dotn_q6_k, dot_q6_k)

/* f16_acc for simd.h's scaled_rows (a KV row is read once: no prefetch) */
static inline __m256 f16_row_acc(const void *row, const float *q, int64_t n)
{
    return f16_acc(row, q, n, false);
}

/* Dots of several rows with one activation row, scaled: each exactly dot(row) * scale. F16
 * rows of whole 16-value steps (the attention's heads) through scaled_rows, four at a time;
 * others one by one. */
static void dot_rows_f16(float *out, const void *w, size_t stride, int rows, const void *a,
                         int64_t n, float scale)
{
    if (n % 16 == 0) {
        scaled_rows(out, w, stride, rows, a, n, scale, f16_row_acc);
        return;
    }
    for (int r = 0; r < rows; r++) out[r] = dot_f16((const char *)w + (size_t)r * stride, a, n) * scale;
}

static void dot_rows_f32(float *out, const void *w, size_t stride, int rows, const void *a,
                         int64_t n, float scale)
{
    for (int r = 0; r < rows; r++) out[r] = dot_f32((const char *)w + (size_t)r * stride, a, n) * scale;
}

const dot_rows_fn dot_rows_table_avx2[DTYPE_COUNT] = {
    [DTYPE_F32] = dot_rows_f32,
    [DTYPE_F16] = dot_rows_f16,
};

const widen_fn widen_table_avx2[DTYPE_COUNT] = {
    [DTYPE_F16] = widen_f16,
    [DTYPE_BF16] = widen_bf16,
};

const dotn_fn dotn_table_avx2[DTYPE_COUNT] = {
    [DTYPE_F32] = dotn_f32,
    [DTYPE_Q4_0] = dotn_q4_0, [DTYPE_Q4_1] = dotn_q4_1, [DTYPE_Q8_0] = dotn_q8_0,
    [DTYPE_Q4_K] = dotn_q4_k, [DTYPE_Q5_K] = dotn_q5_k, [DTYPE_Q6_K] = dotn_q6_k,
};

const dot_fn dot_table_avx2[DTYPE_COUNT] = {
    [DTYPE_F32] = dot_f32,   [DTYPE_F16] = dot_f16,   [DTYPE_BF16] = dot_bf16,
    [DTYPE_Q4_0] = dot_q4_0, [DTYPE_Q4_1] = dot_q4_1, [DTYPE_Q5_0] = dot_q5_0,
    [DTYPE_Q5_1] = dot_q5_1, [DTYPE_Q8_0] = dot_q8_0, [DTYPE_Q2_K] = dot_q2_k,
    [DTYPE_Q3_K] = dot_q3_k, [DTYPE_Q4_K] = dot_q4_k, [DTYPE_Q5_K] = dot_q5_k,
    [DTYPE_Q6_K] = dot_q6_k,
};
