/* Matmul with AVX-512, one zmm lane per output row, for weights repacked once at load
 * (src/model/repack.c): Q4_K Q5_K Q6_K Q8_0 Q4_0 Q4_1 with VNNI, and F16 BF16 F32 (see
 * repack_float below for theirs).
 *
 * The repacked form keeps each type's bits but transposes blocks of GEMM_ROWS (16) rows by 4
 * bytes, so that one 64-byte vector holds 4 consecutive weights of all 16 rows, with the
 * scales beside them as 16-lane planes. Any number of tokens then run against it, one while
 * decoding or a batch: per 4 weights, unpacked to bytes in registers, one dpbusd of that
 * vector with the token's 4 activation bytes broadcast (64 multiply-adds); for the K-quants
 * one integer multiply per sub-block by the 16 rows' scales; and the float steps for 16
 * outputs at once per super-block or block.
 *
 * Each quantized output is bit for bit the type's dot: the integer sums of a (super-)block
 * are exact whatever the order, and the float steps are those of the dots (simd.h's
 * k_finish8 for the K-quants, q32_dots for the 32-element types), done per lane in the same
 * order. Tested against the dots in test_kernels and through matmul in test_matmul.
 * Contract: src/kernels/cpu/dot.h. */
#include "kernels/cpu/dot.h"
#include "kernels/cpu/simd.h"
#include "tensor/quant.h"

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

_Static_assert(GEMM_ROWS == 16, "one zmm lane per row");

/* The 4 activation bytes at p in every lane: a dpbusd's other operand. */
static inline __m512i bcast4(const void *p)
{
    return _mm512_set1_epi32((int)load_u32(p));
}

/* A batch (two tokens or more) is compute-bound, yet the hardware prefetcher alone leaves it
 * waiting on weights that come from memory (a model larger than the caches): 16 tokens
 * against 1536 x 2048 weights, 20 copies cycled, one thread, ran at 96 GMAC/s for Q4_1 and
 * 104-112 for Q4_K, against 150 from L2. So the runs of batches fetch each unit (super-block
 * or block pair) GEMM_PREFETCH bytes ahead, when they start the unit there: 137-146 (Q4_1),
 * 117-141 (Q4_K); Q6_K and Q8_0, which read more bytes per multiply-add, gained 5-10 %.
 * That distance still left Q8_0 waiting: 16 tokens against SmolLM2's 49152 x 576 output
 * matrix from memory ran at 84 GMAC/s, against 118 from cache. Asking for the unit
 * GEMM_PREFETCH_L2 bytes ahead into L2 as well: 97-107 (16 KiB ahead 99-102; the L1
 * distance alone at 4 or 8 KiB 77-83). The engine's 16-sequence SmolLM2 steps ran at 1.07-1.09x
 * the tokens/s (3 interleaved pairs; the output layer's share of the Q4_1 matmuls' time 0.27
 * -> 0.23); TinyLlama-shaped pp512, whose weights stay in cache across token groups, did not
 * move. A prefetch never faults, so reading ahead past a weight's last block is harmless.
 * Always inlined: GCC 12 dropped the loop as dead code when it was a call. */
enum { GEMM_PREFETCH = 2048, GEMM_PREFETCH_L2 = 8192 };

static inline __attribute__((always_inline)) void prefetch_unit_ahead(const uint8_t *unit,
                                                                    size_t bytes)
{
    for (size_t o = 0; o < bytes; o += 64) {
        _mm_prefetch((const char *)unit + GEMM_PREFETCH + o, _MM_HINT_T0);
        _mm_prefetch((const char *)unit + GEMM_PREFETCH_L2 + o, _MM_HINT_T1);
    }
}

/* Decoding (one token) the K-quants: their unpacking is enough work per byte that the loads
 * the core has in flight, with the hardware prefetcher's, fall short of memory's bandwidth.
 * Asking for each super-block's lines DECODE_PREFETCH bytes ahead, into L2, raised kiln
 * bench tg64 of TinyLlama-shaped Q4_K_M, 2 threads, from 32-44 to 41-51 tok/s (12 interleaved
 * pairs); one thread 24-26 -> 27-28. Into L1 (prefetcht0) it ran at 30-35, slower than
 * without; 2 KiB ahead 33-36, 3 KiB 35-44, 8 KiB 40-52. Q8_0 and F16 decoding, lighter per
 * byte, gained nothing from it and go without. */
enum { DECODE_PREFETCH = 4096 };

static inline __attribute__((always_inline)) void prefetch_unit_for_decode(const uint8_t *unit,
                                                                         size_t bytes)
{
    for (size_t o = 0; o < bytes; o += 64)
        _mm_prefetch((const char *)unit + DECODE_PREFETCH + o, _MM_HINT_T1);
}

/* simd.h's k_finish8 steps for 16 outputs of one token: acc + a.d * (d * s1 - dmin * s2). */
static inline __m512 k_finish16(__m512 acc, __m512i s1, __m512i s2, __m512 d, __m512 dmin, float yd)
{
    __m512 r = _mm512_sub_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(s1)),
                             _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(s2)));
    return _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(yd), r));
}

/* Transposes 16 vectors of 16 dwords: z[r] lane c becomes z[c] lane r. */
static inline __attribute__((always_inline)) void transpose16_epi32(__m512i z[16])
{
    __m512i a[16], b[16];
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_epi32(z[2 * i], z[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(z[2 * i], z[2 * i + 1]);
    }
    /* b[4q + e], 128-bit lane L: rows 4q .. 4q + 3 of dword 4L + e */
    for (int q = 0; q < 4; q++) {
        b[4 * q + 0] = _mm512_unpacklo_epi64(a[4 * q], a[4 * q + 2]);
        b[4 * q + 1] = _mm512_unpackhi_epi64(a[4 * q], a[4 * q + 2]);
        b[4 * q + 2] = _mm512_unpacklo_epi64(a[4 * q + 1], a[4 * q + 3]);
        b[4 * q + 3] = _mm512_unpackhi_epi64(a[4 * q + 1], a[4 * q + 3]);
    }
    for (int e = 0; e < 4; e++) {
        __m512i c0 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0x44);
        __m512i c1 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0xee);
        __m512i c2 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0x44);
        __m512i c3 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0xee);
        z[e] = _mm512_shuffle_i32x4(c0, c2, 0x88);
        z[4 + e] = _mm512_shuffle_i32x4(c0, c2, 0xdd);
        z[8 + e] = _mm512_shuffle_i32x4(c1, c3, 0x88);
        z[12 + e] = _mm512_shuffle_i32x4(c1, c3, 0xdd);
    }
}

/* Q4_K and Q5_K rows repacked once at load (matmul's weights), GEMM_ROWS at a time: per
 * super-block the 4-bit weights as stored but transposed by 4 bytes (vector (p, g) holds
 * bytes 32p + 4g .. 32p + 4g + 3 of all 16 rows: the low nibbles are sub-block 2p's values
 * 4g .. 4g + 3, the high ones sub-block 2p + 1's), Q5_K's qh transposed the same way (vector
 * g: qh bytes 4g .. 4g + 3, whose bit j is sub-block j's fifth bit) and stored between the
 * (0, g) vectors, which decoding reads first, the 6-bit scales and mins unpacked to a byte
 * per row and sub-block, and d and dmin as stored: 2368 / 2880 bytes for 16 rows, 2.8 % /
 * 2.3 % more than the rows themselves, so decoding streams about as many bytes, in order.
 * One token (decoding) and batches run the same code, run_q45_k_tokens. */
enum {
    K45_R_QS = 32 * 64,   /* the nibbles' vectors (p, g) */
    K45_R_QH = 8 * 64,    /* Q5_K's fifth bits' vectors g */
    K45_R_Q5_GROUP = 128, /* Q5_K's (0, g) vector and qh vector g, together */
    K45_R_SCALES_MINS = 2 * 8 * 16,
    K45_R_D_DMIN = 2 * 16 * 2,
};
/* every repacked unit a whole number of vectors, so the runs' aligned loads stay aligned */
_Static_assert((K45_R_QS + K45_R_SCALES_MINS + K45_R_D_DMIN) % 64 == 0 && K45_R_QH % 64 == 0,
               "Q4_K / Q5_K repacked size");

static inline size_t k45_r_weights_bytes(bool q5)
{
    return K45_R_QS + (q5 ? K45_R_QH : 0);
}

/* Offsets in a repacked super-block: weight vector (p, g), qh vector g (Q5_K), the rest. */
static inline size_t k45_r_q(bool q5, int p, int g)
{
    if (!q5) return (size_t)(8 * p + g) * 64;
    return p == 0 ? (size_t)g * K45_R_Q5_GROUP
                  : 8 * K45_R_Q5_GROUP + (size_t)(8 * (p - 1) + g) * 64;
}

static inline size_t k45_r_qh(int g)
{
    return (size_t)g * K45_R_Q5_GROUP + 64;
}

static inline size_t k45_r_scales(bool q5)
{
    return k45_r_weights_bytes(q5);
}

static inline size_t k45_r_mins(bool q5)
{
    return k45_r_scales(q5) + 8 * 16;
}

static inline size_t k45_r_d(bool q5)
{
    return k45_r_weights_bytes(q5) + K45_R_SCALES_MINS;
}

static inline size_t k45_r_bytes(bool q5)
{
    return k45_r_weights_bytes(q5) + K45_R_SCALES_MINS + K45_R_D_DMIN;
}

static inline size_t repacked_bytes_q45_k(int64_t n, bool q5)
{
    return (size_t)(n / QK_K) * k45_r_bytes(q5);
}

static inline __attribute__((always_inline)) void repack_q45_k(void *packed, const void *w,
                                                               size_t row_bytes, int64_t n, bool q5)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t *dst = (uint8_t *)packed + (size_t)i * k45_r_bytes(q5);
        for (int r = 0; r < GEMM_ROWS; r++) {
            const void *row = (const uint8_t *)w + (size_t)r * row_bytes;
            uint8_t sc[8], mn[8];
            k4_unpack_scales(K45_BLOCK(row, q5, i, scales), sc, mn);
            for (int j = 0; j < 8; j++) {
                dst[k45_r_scales(q5) + 16 * j + r] = sc[j];
                dst[k45_r_mins(q5) + 16 * j + r] = mn[j];
            }
            f16_t d = K45_BLOCK(row, q5, i, d), dmin = K45_BLOCK(row, q5, i, dmin);
            memcpy(dst + k45_r_d(q5) + 2 * r, &d, 2);
            memcpy(dst + k45_r_d(q5) + 32 + 2 * r, &dmin, 2);
        }
        /* qs bytes 64q .. 64q + 63: sub-block pairs 2q, 2q + 1; then (Q5_K) qh's 32 bytes */
        for (int part = 0; part < 2 + q5; part++) {
            __m512i z[16];
            for (int r = 0; r < GEMM_ROWS; r++) {
                const void *row = (const uint8_t *)w + (size_t)r * row_bytes;
                z[r] =
                    part < 2
                        ? _mm512_loadu_si512((const void *)(K45_BLOCK(row, q5, i, qs) + 64 * part))
                        : _mm512_castsi256_si512(_mm256_loadu_si256(
                              (const __m256i *)((const struct block_q5_k *)row)[i].qh));
            }
            transpose16_epi32(z);
            for (int c = 0; c < (part < 2 ? 16 : 8); c++) {
                size_t at = part < 2 ? k45_r_q(q5, 2 * part + c / 8, c % 8) : k45_r_qh(c);
                _mm512_store_si512((__m512i *)(dst + at), z[c]);
            }
        }
    }
}

/* nt (<= 8) tokens against repacked Q4_K / Q5_K rows. Per super-block s1 = the sum over
 * sub-blocks of scale * (weights . activations) and s2 = the sum of min * (the activations'
 * 16-value sums), then simd.h's steps; the nibbles, fifth bits and scales are unpacked here,
 * each sub-block's values in a pass of their own, which keeps 8 tokens' accumulators in
 * registers. */
static inline __attribute__((always_inline)) void
run_q45_k_tokens(const uint8_t *packed, const struct block_q8_k *const *y, const int nt, int64_t n,
                 float *out, size_t out_stride, bool q5)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
    __m512 acc[8];
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *src = packed + (size_t)i * k45_r_bytes(q5);
        if (nt > 1) prefetch_unit_ahead(src, k45_r_bytes(q5));
        else prefetch_unit_for_decode(src, k45_r_bytes(q5));
        __m512i s1[8], s2[8];
        for (int t = 0; t < nt; t++) s1[t] = s2[t] = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++) {
            __m512i sub[8];
            for (int t = 0; t < nt; t++) sub[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                __m512i v = _mm512_load_si512((const __m512i *)(src + k45_r_q(q5, j / 2, g)));
                __m512i wv;
                if (q5) { /* nibble | bit j of qh at bit 4 */
                    __m512i h = _mm512_load_si512((const __m512i *)(src + k45_r_qh(g)));
                    h = j <= 4 ? _mm512_slli_epi16(h, 4 - j) : _mm512_srli_epi16(h, j - 4);
                    wv = _mm512_ternarylogic_epi32(j % 2 ? _mm512_srli_epi16(v, 4) : v,
                                                   _mm512_and_si512(h, bit4), m4, 0xec);
                } else {
                    wv = _mm512_and_si512(j % 2 ? _mm512_srli_epi16(v, 4) : v, m4);
                }
#pragma GCC unroll 8
                for (int t = 0; t < nt; t++)
                    sub[t] = _mm512_dpbusd_epi32(sub[t], wv, bcast4(y[t][i].qs + 32 * j + 4 * g));
            }
            __m512i scales = _mm512_cvtepu8_epi32(
                _mm_load_si128((const __m128i *)(src + k45_r_scales(q5) + 16 * j)));
            for (int t = 0; t < nt; t++)
                s1[t] = _mm512_add_epi32(s1[t], _mm512_mullo_epi32(sub[t], scales));
        }
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            /* the mins as two equal int16, against two 16-value activation sums */
            __m512i m = _mm512_cvtepu8_epi32(
                _mm_load_si128((const __m128i *)(src + k45_r_mins(q5) + 16 * j)));
            m = _mm512_or_si512(m, _mm512_slli_epi32(m, 16));
            for (int t = 0; t < nt; t++)
                s2[t] = _mm512_dpwssd_epi32(s2[t], m, bcast4(&y[t][i].bsums[2 * j]));
        }
        __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(src + k45_r_d(q5))));
        __m512 dmin = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(src + k45_r_d(q5) + 32)));
        for (int t = 0; t < nt; t++) acc[t] = k_finish16(acc[t], s1[t], s2[t], d, dmin, y[t][i].d);
    }
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(out + (size_t)t * out_stride, acc[t]);
}

/* Q6_K rows repacked once at load, GEMM_ROWS at a time: per super-block ql and qh as stored
 * but transposed by 4 bytes, the 16 scales as planes (scale g of the 16 rows in 16 bytes) and
 * d as stored: the rows' own 210 bytes each, padded to 64-byte vectors. Value 128h + 32m + l
 * (l < 32) is the low (m < 2) or high nibble of ql byte 64h + 32(m % 2) + l with bits 2m,
 * 2m + 1 of qh byte 32h + l above it; so the group of 4 values l = 4e .. 4e + 3 of all four m
 * comes from ql dwords 16h + e and 16h + 8 + e and qh dword 8h + e, which are stored together
 * in that order, (h, e) after (h, e - 1): decoding reads them in one sequential stream (in
 * two separate arrays, the hardware prefetcher kept up with a third of the rate). The group
 * belongs to sub-block 8h + 2m + e / 4. */
enum {
    Q6K_R_Q = 0, /* (h, e) at (8h + e) * Q6K_R_GROUP: ql 16h + e, ql 16h + 8 + e, qh 8h + e */
    Q6K_R_GROUP = 3 * 64,
    Q6K_R_SCALES = Q6K_R_Q + 16 * Q6K_R_GROUP,
    Q6K_R_D = Q6K_R_SCALES + 16 * 16,
    Q6K_R_BYTES = (Q6K_R_D + 16 * 2 + 63) / 64 * 64,
};
_Static_assert(Q6K_R_BYTES % 64 == 0, "Q6_K repacked size");

static size_t repacked_bytes_q6_k(int64_t n)
{
    return (size_t)(n / QK_K) * Q6K_R_BYTES;
}

static void repack_q6_k(void *packed, const void *w, size_t row_bytes, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t *dst = (uint8_t *)packed + (size_t)i * Q6K_R_BYTES;
        memset(dst + Q6K_R_D, 0, Q6K_R_BYTES - Q6K_R_D);
        for (int r = 0; r < GEMM_ROWS; r++) {
            const struct block_q6_k *x =
                (const struct block_q6_k *)((const uint8_t *)w + (size_t)r * row_bytes) + i;
            for (int g = 0; g < 16; g++) dst[Q6K_R_SCALES + 16 * g + r] = (uint8_t)x->scales[g];
            memcpy(dst + Q6K_R_D + 2 * r, &x->d, 2);
        }
        /* ql dwords 0-15 (h = 0), 16-31 (h = 1); qh dwords 0-15 */
        for (int part = 0; part < 3; part++) {
            __m512i z[16];
            for (int r = 0; r < GEMM_ROWS; r++) {
                const struct block_q6_k *x =
                    (const struct block_q6_k *)((const uint8_t *)w + (size_t)r * row_bytes) + i;
                z[r] = _mm512_loadu_si512((const void *)(part < 2 ? x->ql + 64 * part : x->qh));
            }
            transpose16_epi32(z);
            for (int c = 0; c < 16; c++) {
                /* ql dword 16 * part + c is (h = part, e = c % 8), first or second of its
                 * group; qh dword c is (h = c / 8, e = c % 8), third */
                int group = part < 2 ? 8 * part + c % 8 : c, slot = part < 2 ? c / 8 : 2;
                _mm512_store_si512(
                    (__m512i *)(dst + Q6K_R_Q + (size_t)group * Q6K_R_GROUP + 64 * slot), z[c]);
            }
        }
    }
}

/* The 6-bit values of group (h, m, e) for 16 rows: nibble | high bits << 4. */
static inline __attribute__((always_inline)) __m512i q6_k_values(__m512i ql, __m512i qh, int m)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
    __m512i lo = m >= 2 ? _mm512_srli_epi16(ql, 4) : ql;
    __m512i hi = m == 0   ? _mm512_slli_epi16(qh, 4)
                 : m == 1 ? _mm512_slli_epi16(qh, 2)
                 : m == 2 ? qh
                          : _mm512_srli_epi16(qh, 2);
    /* (lo & 0x0f) | (hi & 0x30) */
    return _mm512_ternarylogic_epi32(lo, _mm512_and_si512(hi, bits45), low4, 0xec);
}

/* nt (<= 8) tokens against repacked Q6_K rows: per super-block s = the sum of scale * (q . a)
 * minus 32 * the sum of scale * (the activations' 16-value sums), then simd.h's steps (no
 * mins). One token (decoding) takes each ql / qh vector once for its four values; batches
 * take the values a sub-block at a time, which keeps 8 tokens' accumulators in registers. */
static inline __attribute__((always_inline)) void run_q6_k_tokens(const uint8_t *packed,
                                                                  const struct block_q8_k *const *y,
                                                                  const int nt, int64_t n,
                                                                  float *out, size_t out_stride)
{
    __m512 acc[8];
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *src = packed + (size_t)i * Q6K_R_BYTES;
        if (nt > 1) prefetch_unit_ahead(src, Q6K_R_BYTES);
        else prefetch_unit_for_decode(src, Q6K_R_BYTES);
        __m512i s1[8], s2[8];
        for (int t = 0; t < nt; t++) s1[t] = s2[t] = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            if (nt == 1) {
                __m512i sub[8]; /* sub-block 8h + k */
                for (int k = 0; k < 8; k++) sub[k] = _mm512_setzero_si512();
                const uint8_t *a = (const uint8_t *)y[0][i].qs + 128 * h;
#pragma GCC unroll 8
                for (int e = 0; e < 8; e++) {
                    const uint8_t *q = src + Q6K_R_Q + (size_t)(8 * h + e) * Q6K_R_GROUP;
                    __m512i qa = _mm512_load_si512((const __m512i *)q);
                    __m512i qb = _mm512_load_si512((const __m512i *)(q + 64));
                    __m512i qh = _mm512_load_si512((const __m512i *)(q + 128));
#pragma GCC unroll 4
                    for (int m = 0; m < 4; m++) {
                        int k = 2 * m + e / 4;
                        sub[k] = _mm512_dpbusd_epi32(sub[k], q6_k_values(m % 2 ? qb : qa, qh, m),
                                                     bcast4(a + 32 * m + 4 * e));
                    }
                }
                for (int k = 0; k < 8; k++) {
                    __m512i sc = _mm512_cvtepi8_epi32(
                        _mm_load_si128((const __m128i *)(src + Q6K_R_SCALES + 16 * (8 * h + k))));
                    s1[0] = _mm512_add_epi32(s1[0], _mm512_mullo_epi32(sub[k], sc));
                }
                continue;
            }
            for (int m = 0; m < 4; m++)
                for (int half = 0; half < 2; half++) { /* sub-block 8h + 2m + half */
                    __m512i sub[8];
                    for (int t = 0; t < nt; t++) sub[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
                    for (int e = 4 * half; e < 4 * half + 4; e++) {
                        const uint8_t *q = src + Q6K_R_Q + (size_t)(8 * h + e) * Q6K_R_GROUP;
                        __m512i ql = _mm512_load_si512((const __m512i *)(q + 64 * (m % 2)));
                        __m512i qh = _mm512_load_si512((const __m512i *)(q + 128));
                        __m512i v = q6_k_values(ql, qh, m);
#pragma GCC unroll 8
                        for (int t = 0; t < nt; t++)
                            sub[t] = _mm512_dpbusd_epi32(
                                sub[t], v, bcast4(y[t][i].qs + 128 * h + 32 * m + 4 * e));
                    }
                    __m512i sc = _mm512_cvtepi8_epi32(_mm_load_si128(
                        (const __m128i *)(src + Q6K_R_SCALES + 16 * (8 * h + 2 * m + half))));
                    for (int t = 0; t < nt; t++)
                        s1[t] = _mm512_add_epi32(s1[t], _mm512_mullo_epi32(sub[t], sc));
                }
        }
#pragma GCC unroll 8
        for (int p = 0; p < 8; p++) {
            /* scales 2p and 2p + 1 as an int16 pair, against two 16-value activation sums */
            __m512i lo = _mm512_cvtepi8_epi32(
                _mm_load_si128((const __m128i *)(src + Q6K_R_SCALES + 16 * (2 * p))));
            __m512i hi = _mm512_cvtepi8_epi32(
                _mm_load_si128((const __m128i *)(src + Q6K_R_SCALES + 16 * (2 * p + 1))));
            __m512i pair = _mm512_or_si512(_mm512_and_si512(lo, _mm512_set1_epi32(0xffff)),
                                           _mm512_slli_epi32(hi, 16));
            for (int t = 0; t < nt; t++)
                s2[t] = _mm512_dpwssd_epi32(s2[t], pair, bcast4(&y[t][i].bsums[2 * p]));
        }
        __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(src + Q6K_R_D)));
        for (int t = 0; t < nt; t++) {
            __m512i s = _mm512_sub_epi32(s1[t], _mm512_slli_epi32(s2[t], 5));
            acc[t] =
                k_finish16(acc[t], s, _mm512_setzero_si512(), d, _mm512_setzero_ps(), y[t][i].d);
        }
    }
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(out + (size_t)t * out_stride, acc[t]);
}

/* Q8_0, Q4_0 and Q4_1 rows repacked once at load, GEMM_ROWS at a time, two blocks of 32 per
 * unit: each block's weights transposed by 4 bytes (Q8_0 offset by 128 to unsigned bytes: 8
 * vectors; Q4_0 / Q4_1 nibbles as stored: 4 vectors, the low nibbles values 4e .. 4e + 3 and
 * the high ones 16 + 4e ..), then both blocks' d and Q4_1's m as stored. Exactly the rows'
 * own bytes (34 / 18 / 20 per row and block), and 64-byte aligned per pair. Every token count
 * runs the steps of the types' dots at this ISA (dot_avx2.c's Q8_0, dot_avx512.c's Q4_0 and
 * Q4_1): eight partial sums per output by block index, added in hsum_ps's order, then Q4_1's
 * offsets summed apart; the weights' offsets (128, 8) come back out through the activations'
 * exact block sums. */
static inline int q32_block_weight_bytes(enum dtype type)
{
    return type == DTYPE_Q8_0 ? 8 * 64 : 4 * 64;
}

/* two blocks' weights, then their d (and Q4_1's m): 1088, 576 or 640 bytes, whole vectors */
static inline size_t q32_pair_bytes(enum dtype type)
{
    return (size_t)(2 * q32_block_weight_bytes(type) + (type == DTYPE_Q4_1 ? 128 : 64));
}

static inline __attribute__((always_inline)) size_t repacked_bytes_q32(int64_t n, enum dtype type)
{
    return (size_t)((n / QK + 1) / 2) * q32_pair_bytes(type);
}

/* Block i of a row: its weight bytes as the repacked form holds them (Q8_0's offset by 128),
 * 32 (Q8_0) or 16 bytes in the low half; its d and m. */
static inline __attribute__((always_inline)) __m256i
q32_row_block(const void *row, int64_t i, enum dtype type, f16_t *d, f16_t *m)
{
    if (type == DTYPE_Q8_0) {
        const struct block_q8_0 *b = (const struct block_q8_0 *)row + i;
        *d = b->d;
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b->qs),
                                _mm256_set1_epi8((char)0x80));
    }
    if (type == DTYPE_Q4_0) {
        const struct block_q4_0 *b = (const struct block_q4_0 *)row + i;
        *d = b->d;
        return _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)b->qs));
    }
    const struct block_q4_1 *b = (const struct block_q4_1 *)row + i;
    *d = b->d;
    *m = b->m;
    return _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)b->qs));
}

static inline __attribute__((always_inline)) void
repack_q32(void *packed, const void *w, size_t row_bytes, int64_t n, enum dtype type)
{
    const int wb = q32_block_weight_bytes(type);
    int64_t nb = n / QK;
    for (int64_t i = 0; i < nb; i += 2) {
        uint8_t *dst = (uint8_t *)packed + (size_t)(i / 2) * q32_pair_bytes(type);
        f16_t *d = (f16_t *)(dst + 2 * wb), *m = d + 2 * GEMM_ROWS;
        memset(dst, 0, q32_pair_bytes(type)); /* an odd last block leaves its pair half empty */
        bool pair = i + 1 < nb;
        __m512i z[16];
        for (int r = 0; r < GEMM_ROWS; r++) {
            const void *row = (const uint8_t *)w + (size_t)r * row_bytes;
            f16_t m0 = 0, m1 = 0;
            __m256i b0 = q32_row_block(row, i, type, &d[r], &m0);
            __m256i b1 = pair ? q32_row_block(row, i + 1, type, &d[GEMM_ROWS + r], &m1)
                              : _mm256_setzero_si256();
            if (type == DTYPE_Q4_1) m[r] = m0, m[GEMM_ROWS + r] = m1;
            /* dwords 0-7 block i, 8-15 block i + 1 (the 4-bit types fill 0-3 and 8-11) */
            z[r] = _mm512_inserti64x4(_mm512_castsi256_si512(b0), b1, 1);
        }
        transpose16_epi32(z);
        /* z[c]: dword c of the 16 rows: block i + c / 8, group c % 8 (the 4-bit types use
         * groups 0-3 of each block) */
        for (int c = 0; c < 16; c++) {
            int block = c / 8, g = c % 8;
            if (type != DTYPE_Q8_0 && g >= 4) continue;
            if (block == 1 && !pair) continue;
            _mm512_store_si512((__m512i *)(dst + (size_t)block * wb + (size_t)g * 64), z[c]);
        }
    }
}

/* Block i's integer sums for nt (<= 8, a constant) tokens y[0 .. nt) from its repacked
 * weights wq, then its float steps (its scales at dh) into the tokens' partial sums
 * part[t][i % 8] and Q4_1's offsets offs[t]. The scales are read after the weights, in
 * memory order: read first (they follow the pair's weights), one-thread decoding of SmolLM2
 * ran at 0.85-0.9x. */
static inline __attribute__((always_inline)) void
q32_block_tokens(const uint8_t *wq, const f16_t *dh, const struct block_q8a *const *y,
                 const int nt, int64_t i, __m512 (*part)[8], __m512 *offs, enum dtype type)
{
    const int offset = type == DTYPE_Q8_0 ? -128 : type == DTYPE_Q4_0 ? -8 : 0;
    __m512i sum[8];
    for (int t = 0; t < nt; t++) sum[t] = _mm512_set1_epi32(offset * y[t][i].sum);
    if (type == DTYPE_Q8_0) {
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m512i wv = _mm512_load_si512((const __m512i *)(wq + (size_t)g * 64));
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++)
                sum[t] = _mm512_dpbusd_epi32(sum[t], wv, bcast4(y[t][i].qs + 4 * g));
        }
    } else {
        const __m512i m4 = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++) {
            __m512i v = _mm512_load_si512((const __m512i *)(wq + (size_t)e * 64));
            __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                sum[t] = _mm512_dpbusd_epi32(sum[t], lo, bcast4(y[t][i].qs + 4 * e));
                sum[t] = _mm512_dpbusd_epi32(sum[t], hi, bcast4(y[t][i].qs + 16 + 4 * e));
            }
        }
    }
    __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)dh));
    for (int t = 0; t < nt; t++) {
        __m512 scale = _mm512_mul_ps(d, _mm512_set1_ps(y[t][i].d));
        part[t][i % 8] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sum[t]), part[t][i % 8]);
    }
    if (type == DTYPE_Q4_1) {
        __m512 m = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(dh + 2 * GEMM_ROWS)));
        for (int t = 0; t < nt; t++)
            offs[t] = _mm512_add_ps(offs[t], _mm512_mul_ps(m, _mm512_set1_ps(y[t][i].sd)));
    }
}

/* nt (<= 16, a constant) tokens against a repacked row block, block by block, the tokens
 * eight at a time through each block while it is in L1 (their partial sums live in memory
 * either way: part[t][i % 8] has a varying index). So a batch of 16 streams the weights
 * once, not once per 8 tokens: 16 tokens against SmolLM2-shaped layers streamed from memory
 * (66 MiB Q4_1, 113 MiB Q8_0), one thread, ran Q8_0 at 133 GMAC/s against 101 in two
 * passes, Q4_1 at 133 against 131-134. */
static inline __attribute__((always_inline)) void
run_q32_tokens(const uint8_t *packed, const struct block_q8a *const *y, const int nt, int64_t n,
               float *out, size_t out_stride, enum dtype type)
{
    const int wb = q32_block_weight_bytes(type);
    const int nt0 = nt < 8 ? nt : 8, nt1 = nt - nt0; /* the two groups of tokens */
    __m512 part[16][8], offs[16];
    for (int t = 0; t < nt; t++) {
        offs[t] = _mm512_setzero_ps();
        for (int k = 0; k < 8; k++) part[t][k] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < n / QK; i++) {
        const uint8_t *unit = packed + (size_t)(i / 2) * q32_pair_bytes(type);
        if (nt > 1 && i % 2 == 0) prefetch_unit_ahead(unit, q32_pair_bytes(type));
        const uint8_t *wq = unit + (size_t)(i % 2) * wb;
        const f16_t *dh = (const f16_t *)(unit + 2 * wb) + (i % 2) * GEMM_ROWS;
        q32_block_tokens(wq, dh, y, nt0, i, part, offs, type);
        if (nt1 > 0) q32_block_tokens(wq, dh, y + 8, nt1, i, part + 8, offs + 8, type);
    }
    for (int t = 0; t < nt; t++) {
        __m512 *p = part[t];
        __m512 r =
            _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(p[0], p[4]), _mm512_add_ps(p[2], p[6])),
                          _mm512_add_ps(_mm512_add_ps(p[1], p[5]), _mm512_add_ps(p[3], p[7])));
        if (type == DTYPE_Q4_1) r = _mm512_add_ps(r, offs[t]);
        _mm512_storeu_ps(out + (size_t)t * out_stride, r);
    }
}

/* The run of a 32-element type: tokens 16 at a time (the last group smaller), each count its
 * own instance of run_q32_tokens (a row GEMM's run, as ROW_GEMM_RUN8 makes the others'). */
// clang-format off
#define RUN_Q32_CASE(k, type) case k: run_q32_tokens(packed, y, k, n, o, out_stride, type); break;
#define RUN_Q32(name, type)                                                                        \
    static void name##_run(const void *packed, const void *a, size_t stride, int n_tok, int64_t n, \
                           float *out, size_t out_stride)                                          \
    {                                                                                              \
        for (int t0 = 0; t0 < n_tok; t0 += 16) {                                                   \
            const struct block_q8a *y[16];                                                         \
            int nt = n_tok - t0 < 16 ? n_tok - t0 : 16;                                            \
            for (int t = 0; t < nt; t++)                                                           \
                y[t] = (const struct block_q8a *)((const uint8_t *)a + (size_t)(t0 + t) * stride); \
            float *o = out + (size_t)t0 * out_stride;                                              \
            switch (nt) {                                                                          \
                RUN_Q32_CASE(1, type) RUN_Q32_CASE(2, type) RUN_Q32_CASE(3, type)                  \
                RUN_Q32_CASE(4, type) RUN_Q32_CASE(5, type) RUN_Q32_CASE(6, type)                  \
                RUN_Q32_CASE(7, type) RUN_Q32_CASE(8, type) RUN_Q32_CASE(9, type)                  \
                RUN_Q32_CASE(10, type) RUN_Q32_CASE(11, type) RUN_Q32_CASE(12, type)               \
                RUN_Q32_CASE(13, type) RUN_Q32_CASE(14, type) RUN_Q32_CASE(15, type)               \
                default: RUN_Q32_CASE(16, type)                                                    \
            }                                                                                      \
        }                                                                                          \
    }
// clang-format on

/* F16, BF16 and F32 rows repacked once at load, GEMM_ROWS at a time: column k of the 16 rows
 * (their 16 values, as stored) at k * 16 values, so that one load (and for F16 / BF16 one
 * widening) gives a weight of every row, the rows' own size. Each output is two fused
 * multiply-add chains, over the even and the odd columns in order from 0, added at the end,
 * whatever the number of tokens: the arithmetic of these weights' matmuls with AVX-512 (the
 * rows past the last block go by dot_float_chain, the same). Two chains, not one: decoding a
 * single token is a chain of dependent multiply-adds per 16 rows, and one chain capped it at
 * 7.3 Mrows/s of 2048 from L2 (two: 14.3). */
static inline size_t float_elem_bytes(enum dtype type)
{
    return type == DTYPE_F32 ? 4 : 2;
}

static inline __attribute__((always_inline)) size_t repacked_bytes_float(int64_t n, enum dtype type)
{
    return ((size_t)n * GEMM_ROWS * float_elem_bytes(type) + 63) / 64 * 64;
}

static inline __attribute__((always_inline)) void
repack_float(void *packed, const void *w, size_t row_bytes, int64_t n, enum dtype type)
{
    size_t eb = float_elem_bytes(type);
    uint8_t *dst = packed;
    size_t used = (size_t)n * GEMM_ROWS * eb;
    memset(dst + used, 0, repacked_bytes_float(n, type) - used);
    /* 64 bytes of each row at a time, transposed by 4 bytes: for F32 that is column k + c of
     * the 16 rows in vector c; for 16-bit values vector c holds columns k + 2c and k + 2c + 1
     * pairwise, which one permutation per vector separates */
    const int64_t step = (int64_t)(64 / eb);
    const __m512i pairs =
        _mm512_set_epi16(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1, /* odd */
                         30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0); /* even */
    int64_t k = 0;
    for (; k + step <= n; k += step) {
        __m512i z[16];
        for (int r = 0; r < GEMM_ROWS; r++)
            z[r] = _mm512_loadu_si512(
                (const void *)((const uint8_t *)w + (size_t)r * row_bytes + (size_t)k * eb));
        transpose16_epi32(z);
        for (int c = 0; c < 16; c++)
            _mm512_store_si512((__m512i *)(dst + (size_t)k * GEMM_ROWS * eb + (size_t)c * 64),
                               eb == 4 ? z[c] : _mm512_permutexvar_epi16(pairs, z[c]));
    }
    for (; k < n; k++) /* the last columns, past a whole 64 bytes */
        for (int r = 0; r < GEMM_ROWS; r++)
            memcpy(dst + ((size_t)k * GEMM_ROWS + (size_t)r) * eb,
                   (const uint8_t *)w + (size_t)r * row_bytes + (size_t)k * eb, eb);
}

/* Column k's 16 weights as floats (exact: F16 and BF16 widen without rounding). */
static inline __attribute__((always_inline)) __m512 float_column(const uint8_t *packed, int64_t k,
                                                                 enum dtype type)
{
    const void *p = packed + (size_t)k * GEMM_ROWS * float_elem_bytes(type);
    if (type == DTYPE_F32) return _mm512_load_ps(p);
    __m256i h = _mm256_load_si256((const __m256i *)p);
    if (type == DTYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* One row against one activation row with the row GEMM's arithmetic: the even and odd
 * columns' chains of fused multiply-adds, added (the rows past the last block of a repacked
 * weight). */
static inline __attribute__((always_inline)) float dot_float_chain(const void *w, const void *a,
                                                                   int64_t n, enum dtype type)
{
    const float *x = a;
    __m128 acc[2] = {_mm_setzero_ps(), _mm_setzero_ps()};
    for (int64_t k = 0; k < n; k++) {
        float v = type == DTYPE_F32   ? ((const float *)w)[k]
                  : type == DTYPE_F16 ? _cvtsh_ss(((const f16_t *)w)[k])
                                      : bf16_to_f32(((const bf16_t *)w)[k]);
        acc[k % 2] = _mm_fmadd_ss(_mm_set_ss(v), _mm_set_ss(x[k]), acc[k % 2]);
    }
    return _mm_cvtss_f32(_mm_add_ss(acc[0], acc[1]));
}

static float dot_f16_chain(const void *w, const void *a, int64_t n)
{
    return dot_float_chain(w, a, n, DTYPE_F16);
}

static float dot_bf16_chain(const void *w, const void *a, int64_t n)
{
    return dot_float_chain(w, a, n, DTYPE_BF16);
}

static float dot_f32_chain(const void *w, const void *a, int64_t n)
{
    return dot_float_chain(w, a, n, DTYPE_F32);
}

/* nt (<= 8) tokens of F32 activations against repacked float rows. */
static inline __attribute__((always_inline)) void
run_float_tokens(const uint8_t *packed, const float *const *y, const int nt, int64_t n,
                 float *out, size_t out_stride, enum dtype type)
{
    const size_t column_bytes = GEMM_ROWS * float_elem_bytes(type);
    __m512 even[8], odd[8];
    for (int t = 0; t < nt; t++) even[t] = odd[t] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 2 <= n; k += 2) {
        /* a pair of columns is the unit: one cache line (F16, BF16) or two (F32) */
        if (nt > 1) prefetch_unit_ahead(packed + (size_t)k * column_bytes, 2 * column_bytes);
        __m512 w0 = float_column(packed, k, type), w1 = float_column(packed, k + 1, type);
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            even[t] = _mm512_fmadd_ps(w0, _mm512_set1_ps(y[t][k]), even[t]);
            odd[t] = _mm512_fmadd_ps(w1, _mm512_set1_ps(y[t][k + 1]), odd[t]);
        }
    }
    if (k < n) {
        __m512 w0 = float_column(packed, k, type);
        for (int t = 0; t < nt; t++)
            even[t] = _mm512_fmadd_ps(w0, _mm512_set1_ps(y[t][k]), even[t]);
    }
    for (int t = 0; t < nt; t++)
        _mm512_storeu_ps(out + (size_t)t * out_stride, _mm512_add_ps(even[t], odd[t]));
}

/* The run of a row GEMM (name##_run): tokens 8 at a time (the last group smaller), each count
 * its own instance of tokens_fn so that its accumulators stay in registers; act_t is the
 * activation row's element (the encoded block, or float). */
// clang-format off
#define ROW_GEMM_RUN8(name, act_t, tokens_fn, ...)                                                 \
    static void name##_run(const void *packed, const void *a, size_t stride, int n_tok, int64_t n, \
                           float *out, size_t out_stride)                                          \
    {                                                                                              \
        for (int t0 = 0; t0 < n_tok; t0 += 8) {                                                    \
            const act_t *y[8];                                                                     \
            int nt = n_tok - t0 < 8 ? n_tok - t0 : 8;                                              \
            for (int t = 0; t < nt; t++)                                                           \
                y[t] = (const act_t *)((const uint8_t *)a + (size_t)(t0 + t) * stride);            \
            float *o = out + (size_t)t0 * out_stride;                                              \
            switch (nt) {                                                                          \
            case 1: tokens_fn(packed, y, 1, n, o, out_stride, ##__VA_ARGS__); break;               \
            case 2: tokens_fn(packed, y, 2, n, o, out_stride, ##__VA_ARGS__); break;               \
            case 3: tokens_fn(packed, y, 3, n, o, out_stride, ##__VA_ARGS__); break;               \
            case 4: tokens_fn(packed, y, 4, n, o, out_stride, ##__VA_ARGS__); break;               \
            case 5: tokens_fn(packed, y, 5, n, o, out_stride, ##__VA_ARGS__); break;               \
            case 6: tokens_fn(packed, y, 6, n, o, out_stride, ##__VA_ARGS__); break;               \
            case 7: tokens_fn(packed, y, 7, n, o, out_stride, ##__VA_ARGS__); break;               \
            default: tokens_fn(packed, y, 8, n, o, out_stride, ##__VA_ARGS__); break;              \
            }                                                                                      \
        }                                                                                          \
    }

/* A type's row GEMM from the generic functions above and their variant argument (q5, the
 * type, or none): the repacked size, the repacking, and name##_run (defined before it);
 * dot is the single-row form of its outputs (NULL: the type's own dot). */
#define ROW_GEMM(name, dot, bytes_fn, repack_fn, ...)                                              \
    static size_t name##_bytes(int64_t n) { return bytes_fn(n, ##__VA_ARGS__); }                   \
    static void name##_repack(void *packed, const void *w, size_t row_bytes, int64_t n)            \
    {                                                                                              \
        repack_fn(packed, w, row_bytes, n, ##__VA_ARGS__);                                         \
    }                                                                                              \
    static const struct row_gemm name = {name##_bytes, name##_repack, name##_run, dot};
// clang-format on

ROW_GEMM_RUN8(gemm_q4_k, struct block_q8_k, run_q45_k_tokens, false)
ROW_GEMM_RUN8(gemm_q5_k, struct block_q8_k, run_q45_k_tokens, true)
ROW_GEMM_RUN8(gemm_q6_k, struct block_q8_k, run_q6_k_tokens)
ROW_GEMM_RUN8(gemm_f16, float, run_float_tokens, DTYPE_F16)
ROW_GEMM_RUN8(gemm_bf16, float, run_float_tokens, DTYPE_BF16)
ROW_GEMM_RUN8(gemm_f32, float, run_float_tokens, DTYPE_F32)
RUN_Q32(gemm_q8_0, DTYPE_Q8_0)
RUN_Q32(gemm_q4_0, DTYPE_Q4_0)
RUN_Q32(gemm_q4_1, DTYPE_Q4_1)

ROW_GEMM(gemm_q4_k, NULL, repacked_bytes_q45_k, repack_q45_k, false)
ROW_GEMM(gemm_q5_k, NULL, repacked_bytes_q45_k, repack_q45_k, true)
ROW_GEMM(gemm_q6_k, NULL, repacked_bytes_q6_k, repack_q6_k)
ROW_GEMM(gemm_q8_0, NULL, repacked_bytes_q32, repack_q32, DTYPE_Q8_0)
ROW_GEMM(gemm_q4_0, NULL, repacked_bytes_q32, repack_q32, DTYPE_Q4_0)
ROW_GEMM(gemm_q4_1, NULL, repacked_bytes_q32, repack_q32, DTYPE_Q4_1)
ROW_GEMM(gemm_f16, dot_f16_chain, repacked_bytes_float, repack_float, DTYPE_F16)
ROW_GEMM(gemm_bf16, dot_bf16_chain, repacked_bytes_float, repack_float, DTYPE_BF16)
ROW_GEMM(gemm_f32, dot_f32_chain, repacked_bytes_float, repack_float, DTYPE_F32)

const struct row_gemm *const row_gemm_table_avx512[DTYPE_COUNT] = {
    [DTYPE_Q4_K] = &gemm_q4_k, [DTYPE_Q5_K] = &gemm_q5_k, [DTYPE_Q6_K] = &gemm_q6_k,
    [DTYPE_Q8_0] = &gemm_q8_0, [DTYPE_Q4_0] = &gemm_q4_0, [DTYPE_Q4_1] = &gemm_q4_1,
    [DTYPE_F16] = &gemm_f16,   [DTYPE_BF16] = &gemm_bf16, [DTYPE_F32] = &gemm_f32,
};
