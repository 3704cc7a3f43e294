/* Weight quantizers for the K-quant types Q4_K, Q5_K and Q6_K (the types `kiln quantize`
 * writes for its _K_M recipes). Contract: src/tensor/quant.h (quantize_row).
 *
 * Each sub-block's scale (and, for Q4_K/Q5_K, offset) is chosen by a small search that
 * minimizes a weighted squared error, the weights favouring large-magnitude values
 * (w = rms(sub-block) + |x|). The sub-block scales are then quantized to 6 or 8 bits
 * against one F16 super-block scale, and the values are requantized with the scales
 * exactly as the dequantizer will see them. */
#include "tensor/quant.h"

#include <math.h>
#include <string.h>

#define SEARCH_STEPS 10 /* candidate scales tried on each side of the first guess */

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void error_weights(float *w, const float *x, int n)
{
    float sum2 = 0;
    for (int i = 0; i < n; i++) sum2 += x[i] * x[i];
    float rms = sqrtf(sum2 / (float)n);
    for (int i = 0; i < n; i++) w[i] = rms + fabsf(x[i]);
}

/* Fits x ~ scale * q + offset with q in [0, nmax], scale >= 0 and offset <= 0 (the
 * K-quant formats store the offset as a non-negative "min" that is subtracted). */
static void fit_affine(const float *x, const float *w, int n, int nmax, float *scale,
                       float *offset)
{
    float lo = 0, hi = x[0];
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    if (hi <= lo) {
        *scale = 0;
        *offset = lo;
        return;
    }
    float best_err = INFINITY, best_s = (hi - lo) / (float)nmax, best_m = lo;
    for (int step = -SEARCH_STEPS; step <= SEARCH_STEPS; step++) {
        float iscale = ((float)nmax + 0.1f * (float)step) / (hi - lo);
        /* Least squares for (s, m) given the rounding this iscale produces. */
        float sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
        for (int i = 0; i < n; i++) {
            float q = (float)clampi((int)lrintf(iscale * (x[i] - lo)), 0, nmax);
            sw += w[i];
            sq += w[i] * q;
            sqq += w[i] * q * q;
            sx += w[i] * x[i];
            sqx += w[i] * q * x[i];
        }
        float det = sw * sqq - sq * sq;
        if (det <= 0) continue;
        float s = (sw * sqx - sq * sx) / det;
        float m = (sqq * sx - sq * sqx) / det;
        if (m > 0) { /* the format cannot add: pin the offset at zero */
            m = 0;
            s = sqx / sqq;
        }
        if (s <= 0) continue;
        float err = 0;
        for (int i = 0; i < n; i++) {
            int q = clampi((int)lrintf((x[i] - m) / s), 0, nmax);
            float e = s * (float)q + m - x[i];
            err += w[i] * e * e;
        }
        if (err < best_err) {
            best_err = err;
            best_s = s;
            best_m = m;
        }
    }
    *scale = best_s;
    *offset = best_m;
}

/* Fits x ~ scale * q with q in [-nmax, nmax - 1]; scale may be negative, so the value of
 * largest magnitude can use the extra negative level. */
static float fit_symmetric(const float *x, const float *w, int n, int nmax)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax == 0) return 0;
    float best_err = INFINITY, best_s = max / -(float)nmax;
    for (int step = -SEARCH_STEPS; step <= SEARCH_STEPS; step++) {
        float iscale = -((float)nmax + 0.1f * (float)step) / max;
        float sqx = 0, sqq = 0;
        for (int i = 0; i < n; i++) {
            float q = (float)clampi((int)lrintf(iscale * x[i]), -nmax, nmax - 1);
            sqx += w[i] * q * x[i];
            sqq += w[i] * q * q;
        }
        if (sqq <= 0) continue;
        float s = sqx / sqq, err = 0;
        for (int i = 0; i < n; i++) {
            int q = clampi((int)lrintf(x[i] / s), -nmax, nmax - 1);
            float e = s * (float)q - x[i];
            err += w[i] * e * e;
        }
        if (err < best_err) {
            best_err = err;
            best_s = s;
        }
    }
    return best_s;
}

/* Inverse of k4_scale_min: packs eight 6-bit scales and mins into 12 bytes. */
static void k4_pack_scales(uint8_t out[12], const uint8_t sc[8], const uint8_t mn[8])
{
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((sc[j + 4] & 0xf) | ((mn[j + 4] & 0xf) << 4));
    }
}

/* Shared by Q4_K and Q5_K: eight sub-blocks of 32 with 6-bit scales and mins. Writes the
 * F16 d/dmin, the packed scales and one level per value (0..nmax). */
static void quantize_k4_superblock(const float *x, int nmax, f16_t *d_out, f16_t *dmin_out,
                                   uint8_t scales[12], uint8_t levels[QK_K])
{
    float w[32], s[8], m[8], max_s = 0, max_m = 0;
    for (int j = 0; j < 8; j++) {
        error_weights(w, x + 32 * j, 32);
        fit_affine(x + 32 * j, w, 32, nmax, &s[j], &m[j]);
        m[j] = -m[j];
        max_s = fmaxf(max_s, s[j]);
        max_m = fmaxf(max_m, m[j]);
    }
    *d_out = f32_to_f16(max_s / 63.0f);
    *dmin_out = f32_to_f16(max_m / 63.0f);
    float d = f16_to_f32(*d_out), dmin = f16_to_f32(*dmin_out);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = (uint8_t)(d > 0 ? clampi((int)lrintf(s[j] / d), 0, 63) : 0);
        mn[j] = (uint8_t)(dmin > 0 ? clampi((int)lrintf(m[j] / dmin), 0, 63) : 0);
    }
    k4_pack_scales(scales, sc, mn);
    for (int j = 0; j < 8; j++) {
        float step = d * sc[j], min = dmin * mn[j];
        for (int i = 0; i < 32; i++) {
            int q = step > 0 ? (int)lrintf((x[32 * j + i] + min) / step) : 0;
            levels[32 * j + i] = (uint8_t)clampi(q, 0, nmax);
        }
    }
}

void quantize_q4_k(struct block_q4_k *y, const float *x, int64_t n)
{
    uint8_t L[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        quantize_k4_superblock(x, 15, &y[b].d, &y[b].dmin, y[b].scales, L);
        /* 64 values per 32 bytes: the first 32 in the low nibbles, the next in the high. */
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[b].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

void quantize_q5_k(struct block_q5_k *y, const float *x, int64_t n)
{
    uint8_t L[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        quantize_k4_superblock(x, 31, &y[b].d, &y[b].dmin, y[b].scales, L);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                y[b].qs[32 * c + l] = (uint8_t)((lo & 0xf) | ((hi & 0xf) << 4));
                y[b].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
            }
    }
}

void quantize_q6_k(struct block_q6_k *y, const float *x, int64_t n)
{
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float w[16], s[16], amax = 0, max = 0;
        for (int j = 0; j < 16; j++) {
            error_weights(w, x + 16 * j, 16);
            s[j] = fit_symmetric(x + 16 * j, w, 16, 32);
            if (fabsf(s[j]) > amax) {
                amax = fabsf(s[j]);
                max = s[j];
            }
        }
        memset(&y[b], 0, sizeof y[b]);
        if (amax == 0) continue;
        /* The sub-block scale of largest magnitude maps to -128 (int8 scales). */
        float iscale = -128.0f / max;
        y[b].d = f32_to_f16(1.0f / iscale);
        float d = f16_to_f32(y[b].d);
        uint8_t L[QK_K];
        for (int j = 0; j < 16; j++) {
            y[b].scales[j] = (int8_t)clampi((int)lrintf(iscale * s[j]), -128, 127);
            float step = d * y[b].scales[j];
            for (int i = 0; i < 16; i++) {
                int q = step != 0 ? (int)lrintf(x[16 * j + i] / step) : 0;
                L[16 * j + i] = (uint8_t)(clampi(q, -32, 31) + 32);
            }
        }
        /* Per 128 values: ql holds low nibbles (values l and l+64 share a byte, as do l+32
         * and l+96), qh the two high bits of all four. */
        for (int h = 0; h < 2; h++) {
            const uint8_t *Lh = L + 128 * h;
            uint8_t *ql = y[b].ql + 64 * h, *qh = y[b].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
                ql[l] = (uint8_t)((q1 & 0xf) | ((q3 & 0xf) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xf) | ((q4 & 0xf) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) |
                                  ((q4 >> 4) << 6));
            }
        }
    }
}
