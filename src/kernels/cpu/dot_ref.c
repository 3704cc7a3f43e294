/* Scalar dot products, one per weight type: the truth every SIMD kernel is tested against.
 * Contract: src/kernels/cpu/dot.h. */
#include "kernels/cpu/dot.h"
#include "tensor/quant.h"


static float dot_f32(const void *w, const void *a, int64_t n)
{
    const float *x = w, *y = a;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}

static float dot_f16(const void *w, const void *a, int64_t n)
{
    const f16_t *x = w;
    const float *y = a;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += f16_to_f32(x[i]) * y[i];
    return s;
}

static float dot_bf16(const void *w, const void *a, int64_t n)
{
    const bf16_t *x = w;
    const float *y = a;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += bf16_to_f32(x[i]) * y[i];
    return s;
}

/* Sum of q[j] * a[j] for the 32 values of a 32-element block given as lo/hi nibbles. */
static int nibble_dot(const uint8_t *qs, uint32_t qh, int offset, const int8_t *a)
{
    int s = 0;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        s += (lo - offset) * a[j] + (hi - offset) * a[j + QK / 2];
    }
    return s;
}

static float dot_q4_0(const void *w, const void *a, int64_t n)
{
    const struct block_q4_0 *x = w;
    const struct block_q8a *y = a;
    float s = 0;
    for (int64_t i = 0; i < n / QK; i++)
        s += f16_to_f32(x[i].d) * y[i].d * (float)nibble_dot(x[i].qs, 0, 8, y[i].qs);
    return s;
}

static float dot_q4_1(const void *w, const void *a, int64_t n)
{
    const struct block_q4_1 *x = w;
    const struct block_q8a *y = a;
    float s = 0;
    for (int64_t i = 0; i < n / QK; i++)
        s += f16_to_f32(x[i].d) * y[i].d * (float)nibble_dot(x[i].qs, 0, 0, y[i].qs) +
             f16_to_f32(x[i].m) * y[i].sd;
    return s;
}

static float dot_q5_0(const void *w, const void *a, int64_t n)
{
    const struct block_q5_0 *x = w;
    const struct block_q8a *y = a;
    float s = 0;
    for (int64_t i = 0; i < n / QK; i++)
        s += f16_to_f32(x[i].d) * y[i].d *
             (float)nibble_dot(x[i].qs, load_u32(x[i].qh), 16, y[i].qs);
    return s;
}

static float dot_q5_1(const void *w, const void *a, int64_t n)
{
    const struct block_q5_1 *x = w;
    const struct block_q8a *y = a;
    float s = 0;
    for (int64_t i = 0; i < n / QK; i++)
        s += f16_to_f32(x[i].d) * y[i].d *
                 (float)nibble_dot(x[i].qs, load_u32(x[i].qh), 0, y[i].qs) +
             f16_to_f32(x[i].m) * y[i].sd;
    return s;
}

static float dot_q8_0(const void *w, const void *a, int64_t n)
{
    const struct block_q8_0 *x = w;
    const struct block_q8a *y = a;
    float s = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int si = 0;
        for (int j = 0; j < QK; j++) si += x[i].qs[j] * y[i].qs[j];
        s += f16_to_f32(x[i].d) * y[i].d * (float)si;
    }
    return s;
}

/* A K-quant super-block unpacked to integers, in element order: value j is
 * d * scale[j/16] * q[j] - dmin * min[j/16]. */
struct k_unpacked {
    float d, dmin;
    int8_t q[QK_K];
    int scale[16], min[16];
};

static float k_dot(const struct k_unpacked *u, const struct block_q8_k *y)
{
    int sum_q = 0, sum_m = 0;
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int j = 16 * g; j < 16 * g + 16; j++) s += u->q[j] * y->qs[j];
        sum_q += u->scale[g] * s;
        sum_m += u->min[g] * y->bsums[g];
    }
    return y->d * (u->d * (float)sum_q - u->dmin * (float)sum_m);
}

static void unpack_q2_k(struct k_unpacked *u, const struct block_q2_k *x)
{
    u->d = f16_to_f32(x->d);
    u->dmin = f16_to_f32(x->dmin);
    int8_t *q = u->q;
    for (int n = 0, g = 0; n < 2; n++)
        for (int shift = 0; shift < 8; shift += 2)
            for (int half = 0; half < 2; half++, g++) {
                u->scale[g] = x->scales[g] & 0xf;
                u->min[g] = x->scales[g] >> 4;
                for (int l = 0; l < 16; l++)
                    *q++ = (int8_t)((x->qs[32 * n + 16 * half + l] >> shift) & 3);
            }
}

static void unpack_q3_k(struct k_unpacked *u, const struct block_q3_k *x)
{
    int8_t sc[16];
    q3_k_unpack_scales(sc, x->scales);
    u->d = f16_to_f32(x->d);
    u->dmin = 0;
    int8_t *q = u->q;
    uint8_t m = 1;
    for (int n = 0, g = 0; n < 2; n++)
        for (int shift = 0; shift < 8; shift += 2, m <<= 1)
            for (int half = 0; half < 2; half++, g++) {
                u->scale[g] = sc[g];
                u->min[g] = 0;
                for (int l = 16 * half; l < 16 * half + 16; l++)
                    *q++ = (int8_t)(((x->qs[32 * n + l] >> shift) & 3) -
                                    ((x->hmask[l] & m) ? 0 : 4));
            }
}

static void unpack_q45_k(struct k_unpacked *u, f16_t d, f16_t dmin, const uint8_t *scales,
                         const uint8_t *qs, const uint8_t *qh)
{
    u->d = f16_to_f32(d);
    u->dmin = f16_to_f32(dmin);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        k4_scale_min(j, scales, &sc, &m);
        u->scale[2 * j] = u->scale[2 * j + 1] = sc;
        u->min[2 * j] = u->min[2 * j + 1] = m;
        const uint8_t *q = qs + 32 * (j / 2);
        for (int l = 0; l < 32; l++) {
            int v = (j & 1) ? q[l] >> 4 : q[l] & 0xf;
            if (qh && (qh[l] >> j) & 1) v += 16;
            u->q[32 * j + l] = (int8_t)v;
        }
    }
}

static void unpack_q6_k(struct k_unpacked *u, const struct block_q6_k *x)
{
    u->d = f16_to_f32(x->d);
    u->dmin = 0;
    for (int g = 0; g < 16; g++) {
        u->scale[g] = x->scales[g];
        u->min[g] = 0;
    }
    for (int n = 0; n < 2; n++) {
        const uint8_t *ql = x->ql + 64 * n, *qh = x->qh + 32 * n;
        int8_t *q = u->q + 128 * n;
        for (int l = 0; l < 32; l++) {
            q[l] = (int8_t)(((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32);
            q[l + 32] = (int8_t)(((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32);
            q[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

static float dot_q2_k(const void *w, const void *a, int64_t n)
{
    const struct block_q2_k *x = w;
    const struct block_q8_k *y = a;
    struct k_unpacked u;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        unpack_q2_k(&u, &x[i]);
        s += k_dot(&u, &y[i]);
    }
    return s;
}

static float dot_q3_k(const void *w, const void *a, int64_t n)
{
    const struct block_q3_k *x = w;
    const struct block_q8_k *y = a;
    struct k_unpacked u;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        unpack_q3_k(&u, &x[i]);
        s += k_dot(&u, &y[i]);
    }
    return s;
}

static float dot_q4_k(const void *w, const void *a, int64_t n)
{
    const struct block_q4_k *x = w;
    const struct block_q8_k *y = a;
    struct k_unpacked u;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        unpack_q45_k(&u, x[i].d, x[i].dmin, x[i].scales, x[i].qs, NULL);
        s += k_dot(&u, &y[i]);
    }
    return s;
}

static float dot_q5_k(const void *w, const void *a, int64_t n)
{
    const struct block_q5_k *x = w;
    const struct block_q8_k *y = a;
    struct k_unpacked u;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        unpack_q45_k(&u, x[i].d, x[i].dmin, x[i].scales, x[i].qs, x[i].qh);
        s += k_dot(&u, &y[i]);
    }
    return s;
}

static float dot_q6_k(const void *w, const void *a, int64_t n)
{
    const struct block_q6_k *x = w;
    const struct block_q8_k *y = a;
    struct k_unpacked u;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        unpack_q6_k(&u, &x[i]);
        s += k_dot(&u, &y[i]);
    }
    return s;
}

const dot_fn dot_table_ref[DTYPE_COUNT] = {
    [DTYPE_F32] = dot_f32,   [DTYPE_F16] = dot_f16,   [DTYPE_BF16] = dot_bf16,
    [DTYPE_Q4_0] = dot_q4_0, [DTYPE_Q4_1] = dot_q4_1, [DTYPE_Q5_0] = dot_q5_0,
    [DTYPE_Q5_1] = dot_q5_1, [DTYPE_Q8_0] = dot_q8_0, [DTYPE_Q2_K] = dot_q2_k,
    [DTYPE_Q3_K] = dot_q3_k, [DTYPE_Q4_K] = dot_q4_k, [DTYPE_Q5_K] = dot_q5_k,
    [DTYPE_Q6_K] = dot_q6_k,
};
