/* Scalar quantization: activations for the integer dot products, and weights for
 * `kiln quantize`. Contract: src/tensor/quant.h. */
#include "tensor/quant.h"

#include <math.h>

/* Rounds like llama.cpp's Q8_0/Q8_1 activations (scale and offset stored as F16), so dot
 * products agree with llama.cpp to float summation order. */
void quantize_row_q8a(struct block_q8a *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = amax ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            int q = (int)lrintf(x[j] * id);
            y[i].qs[j] = (int8_t)q;
            sum += y[i].qs[j];
        }
        y[i].sum = sum;
        y[i].d = f16_to_f32(f32_to_f16(d));
        y[i].sd = f16_to_f32(f32_to_f16(d * (float)sum));
    }
}

/* As llama.cpp's Q8_K: the value of largest magnitude maps to -127 (so d may be negative). */
void quantize_row_q8_k(struct block_q8_k *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        if (amax == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            int q = (int)lrintf(iscale * x[j]);
            y[i].qs[j] = (int8_t)(q > 127 ? 127 : q);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += y[i].qs[g * 16 + j];
            y[i].bsums[g] = (int16_t)s;
        }
        y[i].d = 1.0f / iscale;
    }
}

/* The weight quantizers of the 32-element types round exactly as llama.cpp's reference
 * (and the `gguf` Python package) do, so their output is byte-identical. */

static int clamp_level(float v, int hi)
{
    int q = (int)v; /* truncation, as the reference does; v >= 0 here */
    return q < 0 ? 0 : q > hi ? hi : q;
}

static void quantize_q8_0(struct block_q8_0 *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_f16(d);
        for (int j = 0; j < QK; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* The value of largest magnitude maps to the most negative level, so it is exact. x * id + c
 * is rounded to float once, as llama.cpp's fused multiply-add does (exact in double first). */
static float symmetric_scale(const float *x, float levels, float *id)
{
    float amax = 0, max = 0;
    for (int j = 0; j < QK; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    float d = max / -levels;
    *id = d ? 1.0f / d : 0.0f;
    return d;
}

static void quantize_q4_0(struct block_q4_0 *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float id;
        y[i].d = f32_to_f16(symmetric_scale(x, 8.0f, &id));
        for (int j = 0; j < QK / 2; j++) {
            int a = clamp_level((float)((double)x[j] * id + 8.5), 15);
            int b = clamp_level((float)((double)x[j + QK / 2] * id + 8.5), 15);
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

static void quantize_q5_0(struct block_q5_0 *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float id;
        y[i].d = f32_to_f16(symmetric_scale(x, 16.0f, &id));
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            int a = clamp_level((float)((double)x[j] * id + 16.5), 31);
            int b = clamp_level((float)((double)x[j + QK / 2] * id + 16.5), 31);
            y[i].qs[j] = (uint8_t)((a & 0xf) | ((b & 0xf) << 4));
            qh |= (uint32_t)(a >> 4) << j | (uint32_t)(b >> 4) << (j + QK / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

/* Q4_1 and Q5_1: min and max map to levels 0 and nmax. */
static float affine_scale(const float *x, float nmax, float *min, float *id)
{
    float lo = x[0], hi = x[0];
    for (int j = 1; j < QK; j++) {
        lo = fminf(lo, x[j]);
        hi = fmaxf(hi, x[j]);
    }
    float d = (hi - lo) / nmax;
    *min = lo;
    *id = d ? 1.0f / d : 0.0f;
    return d;
}

static void quantize_q4_1(struct block_q4_1 *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float min, id;
        y[i].d = f32_to_f16(affine_scale(x, 15.0f, &min, &id));
        y[i].m = f32_to_f16(min);
        for (int j = 0; j < QK / 2; j++) {
            int a = clamp_level((x[j] - min) * id + 0.5f, 15);
            int b = clamp_level((x[j + QK / 2] - min) * id + 0.5f, 15);
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

static void quantize_q5_1(struct block_q5_1 *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float min, id;
        y[i].d = f32_to_f16(affine_scale(x, 31.0f, &min, &id));
        y[i].m = f32_to_f16(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            int a = clamp_level((x[j] - min) * id + 0.5f, 31);
            int b = clamp_level((x[j + QK / 2] - min) * id + 0.5f, 31);
            y[i].qs[j] = (uint8_t)((a & 0xf) | ((b & 0xf) << 4));
            qh |= (uint32_t)(a >> 4) << j | (uint32_t)(b >> 4) << (j + QK / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

bool quantize_row(enum dtype t, void *y, const float *x, int64_t n)
{
    switch (t) {
    case DTYPE_F32: memcpy(y, x, (size_t)n * 4); return true;
    case DTYPE_F16:
        for (int64_t i = 0; i < n; i++) ((f16_t *)y)[i] = f32_to_f16(x[i]);
        return true;
    case DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) ((bf16_t *)y)[i] = f32_to_bf16(x[i]);
        return true;
    case DTYPE_Q8_0: quantize_q8_0(y, x, n); return true;
    case DTYPE_Q4_0: quantize_q4_0(y, x, n); return true;
    case DTYPE_Q4_1: quantize_q4_1(y, x, n); return true;
    case DTYPE_Q5_0: quantize_q5_0(y, x, n); return true;
    case DTYPE_Q5_1: quantize_q5_1(y, x, n); return true;
    case DTYPE_Q4_K: quantize_q4_k(y, x, n); return true;
    case DTYPE_Q5_K: quantize_q5_k(y, x, n); return true;
    case DTYPE_Q6_K: quantize_q6_k(y, x, n); return true;
    default: return false;
    }
}
