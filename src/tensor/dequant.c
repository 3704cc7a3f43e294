/* Scalar dequantization of every GGUF type kiln reads: the truth SIMD kernels are tested against.
 * Contract: src/tensor/quant.h. */
#include "tensor/quant.h"

static void dequant_q4_0(float *y, const struct block_q4_0 *x, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += QK) {
        float d = f16_to_f32(x[i].d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * ((x[i].qs[j] & 0xf) - 8);
            y[j + QK / 2] = d * ((x[i].qs[j] >> 4) - 8);
        }
    }
}

static void dequant_q4_1(float *y, const struct block_q4_1 *x, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += QK) {
        float d = f16_to_f32(x[i].d), m = f16_to_f32(x[i].m);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * (x[i].qs[j] & 0xf) + m;
            y[j + QK / 2] = d * (x[i].qs[j] >> 4) + m;
        }
    }
}

static void dequant_q5_0(float *y, const struct block_q5_0 *x, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += QK) {
        float d = f16_to_f32(x[i].d);
        uint32_t qh = load_u32(x[i].qh);
        for (int j = 0; j < QK / 2; j++) {
            int lo = (x[i].qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
            int hi = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = d * (lo - 16);
            y[j + QK / 2] = d * (hi - 16);
        }
    }
}

static void dequant_q5_1(float *y, const struct block_q5_1 *x, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += QK) {
        float d = f16_to_f32(x[i].d), m = f16_to_f32(x[i].m);
        uint32_t qh = load_u32(x[i].qh);
        for (int j = 0; j < QK / 2; j++) {
            int lo = (x[i].qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
            int hi = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = d * lo + m;
            y[j + QK / 2] = d * hi + m;
        }
    }
}

static void dequant_q8_0(float *y, const struct block_q8_0 *x, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += QK) {
        float d = f16_to_f32(x[i].d);
        for (int j = 0; j < QK; j++) y[j] = d * x[i].qs[j];
    }
}

static void dequant_q2_k(float *y, const struct block_q2_k *x, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int n = 0; n < QK_K; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    uint8_t sc = x[i].scales[is++];
                    float dl = d * (sc & 0xf), ml = dmin * (sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
                }
            }
        }
    }
}

void q3_k_unpack_scales(int8_t out[16], const uint8_t packed[12])
{
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? (packed[j] & 0xf) : (packed[j - 8] >> 4);
        int hi = (packed[8 + (j % 4)] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

static void dequant_q3_k(float *y, const struct block_q3_k *x, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = f16_to_f32(x[i].d);
        int8_t scales[16];
        q3_k_unpack_scales(scales, x[i].scales);
        const uint8_t *q = x[i].qs;
        uint8_t m = 1;
        int is = 0;
        for (int n = 0; n < QK_K; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int half = 0; half < 2; half++) {
                    float dl = d * scales[is++];
                    for (int l = 16 * half; l < 16 * half + 16; l++) {
                        int v = ((q[l] >> shift) & 3) - ((x[i].hmask[l] & m) ? 0 : 4);
                        *y++ = dl * v;
                    }
                }
            }
        }
    }
}

static void dequant_q4_k(float *y, const struct block_q4_k *x, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t sc, m;
            k4_scale_min(j, x[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            k4_scale_min(j + 1, x[i].scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xf) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void dequant_q5_k(float *y, const struct block_q5_k *x, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 8; j += 2, q += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            k4_scale_min(j, x[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            k4_scale_min(j + 1, x[i].scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * ((q[l] & 0xf) + ((x[i].qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * ((q[l] >> 4) + ((x[i].qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

static void dequant_q6_k(float *y, const struct block_q6_k *x, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = f16_to_f32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

bool dequantize_row(enum dtype t, float *y, const void *x, int64_t n)
{
    const struct dtype_info *info = dtype_get(t);
    if (!info) return false;
    int64_t nb = n / info->block_elems;
    switch (t) {
    case DTYPE_F32: memcpy(y, x, (size_t)n * 4); return true;
    case DTYPE_F16:
        for (int64_t i = 0; i < n; i++) y[i] = f16_to_f32(((const f16_t *)x)[i]);
        return true;
    case DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) y[i] = bf16_to_f32(((const bf16_t *)x)[i]);
        return true;
    case DTYPE_Q4_0: dequant_q4_0(y, x, nb); return true;
    case DTYPE_Q4_1: dequant_q4_1(y, x, nb); return true;
    case DTYPE_Q5_0: dequant_q5_0(y, x, nb); return true;
    case DTYPE_Q5_1: dequant_q5_1(y, x, nb); return true;
    case DTYPE_Q8_0: dequant_q8_0(y, x, nb); return true;
    case DTYPE_Q2_K: dequant_q2_k(y, x, nb); return true;
    case DTYPE_Q3_K: dequant_q3_k(y, x, nb); return true;
    case DTYPE_Q4_K: dequant_q4_k(y, x, nb); return true;
    case DTYPE_Q5_K: dequant_q5_k(y, x, nb); return true;
    case DTYPE_Q6_K: dequant_q6_k(y, x, nb); return true;
    case DTYPE_Q8_K:
        for (int64_t i = 0; i < nb; i++, y += QK_K) {
            const struct block_q8_k *b = (const struct block_q8_k *)x + i;
            for (int j = 0; j < QK_K; j++) y[j] = b->d * b->qs[j];
        }
        return true;
    default: return false;
    }
}
