/* Block layouts of the quantized types (bit-exact with GGUF) and half-float conversions.
 * Header-only; the functions over these blocks are declared in tensor/quant.h. */
#ifndef KILN_TENSOR_BLOCKS_H
#define KILN_TENSOR_BLOCKS_H

#include <stdint.h>
#include <string.h>

#define QK 32   /* elements per block of the 32-element types */
#define QK_K 256 /* elements per K-quant super-block */

typedef uint16_t f16_t;
typedef uint16_t bf16_t;

struct block_q4_0 { f16_t d; uint8_t qs[QK / 2]; };
struct block_q4_1 { f16_t d, m; uint8_t qs[QK / 2]; };
struct block_q5_0 { f16_t d; uint8_t qh[4]; uint8_t qs[QK / 2]; };
struct block_q5_1 { f16_t d, m; uint8_t qh[4]; uint8_t qs[QK / 2]; };
struct block_q8_0 { f16_t d; int8_t qs[QK]; };
struct block_q8_1 { f16_t d, s; int8_t qs[QK]; };
struct block_q2_k { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; f16_t d, dmin; };
struct block_q3_k { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; f16_t d; };
struct block_q4_k { f16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; };
struct block_q5_k { f16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
struct block_q6_k { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; f16_t d; };
struct block_q8_k { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; };

/* Activations quantized for dot products with the 32-element types (kiln's own layout):
 * sd = d * sum(qs) (rounded to F16, as llama.cpp's Q8_1 stores it), which the Q4_1 / Q5_1
 * dots need for their offsets; sum = sum(qs) exactly, which the Q8_0 row GEMM needs to take
 * back out the 128 its weights are offset by. */
struct block_q8a { float d, sd; int8_t qs[QK]; int32_t sum; };
_Static_assert(sizeof(struct block_q8a) == 44, "q8a layout, no padding");

_Static_assert(sizeof(struct block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(struct block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(struct block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(struct block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(struct block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(struct block_q2_k) == 84, "q2_k layout");
_Static_assert(sizeof(struct block_q3_k) == 110, "q3_k layout");
_Static_assert(sizeof(struct block_q4_k) == 144, "q4_k layout");
_Static_assert(sizeof(struct block_q5_k) == 176, "q5_k layout");
_Static_assert(sizeof(struct block_q6_k) == 210, "q6_k layout");
_Static_assert(sizeof(struct block_q8_k) == 292, "q8_k layout");

/* The 32 high bits of a Q5_0/Q5_1 block (stored as bytes, possibly unaligned). */
static inline uint32_t load_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* IEEE half to float, exact for every input (subnormals, inf, nan). */
static inline float f16_to_f32(f16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        /* subnormal or zero: mant * 2^-24 */
        float f = (float)mant * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Float to IEEE half, round to nearest even. */
static inline f16_t f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (f16_t)(sign | 0x7e00); /* nan */
    if (ax >= 0x477ff000u) return (f16_t)(sign | 0x7c00); /* overflow to inf */
    if (ax < 0x38800000u) {
        /* subnormal half: round ax as a multiple of 2^-24 */
        float a = f32_from_bits(ax) * 16777216.0f;
        uint32_t m = (uint32_t)a;
        float rem = a - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1))) m++;
        return (f16_t)(sign | m);
    }
    uint32_t mant = ax & 0x7fffff, exp = (ax >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (f16_t)(sign | h);
}

static inline float bf16_to_f32(bf16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

static inline bf16_t f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((x >> 16) | 64); /* quiet nan */
    return (bf16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

#endif
