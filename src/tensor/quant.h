/* Reference (scalar) dequantization of every readable type, and quantization of
 * activations (and of weights, for `kiln quantize`). Pure functions; any thread.
 * Contract for src/tensor/dequant.c and src/tensor/quantize.c. */
#ifndef KILN_TENSOR_QUANT_H
#define KILN_TENSOR_QUANT_H

#include "tensor/blocks.h"
#include "tensor/dtype.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Writes n floats decoded from x of type t (n a multiple of t's block size).
 * Returns false for a type that has no dequantization (integer types). */
bool dequantize_row(enum dtype t, float *y, const void *x, int64_t n);

/* Unpacks the 16 6-bit Q3_K scales (stored biased by 32) into signed values. */
void q3_k_unpack_scales(int8_t out[16], const uint8_t packed[12]);
/* Scale and min j (0..7) of a Q4_K/Q5_K super-block, 6 bits each. Inline: the dot
 * kernels call it for every sub-block. */
static inline void k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* All eight scales (sc[0..7]) and mins (mn[0..7]) of a Q4_K/Q5_K super-block at once, as
 * k4_scale_min gives them, by operating on the 12 packed bytes as three 32-bit words (four
 * bytes per word op, instead of a dozen scalar steps per sub-block in the dot kernels). The
 * words are little-endian, as on every machine kiln builds for (x86-64). */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "k4_unpack_scales reads words");

static inline void k4_unpack_scales(const uint8_t *q, uint8_t sc[8], uint8_t mn[8])
{
    uint32_t u0, u1, u2, w[4];
    memcpy(&u0, q, 4);
    memcpy(&u1, q + 4, 4);
    memcpy(&u2, q + 8, 4);
    w[0] = u0 & 0x3f3f3f3fu;                                            /* sc 0-3: low 6 bits */
    w[1] = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);       /* sc 4-7 */
    w[2] = u1 & 0x3f3f3f3fu;                                            /* mn 0-3 */
    w[3] = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4); /* mn 4-7 */
    memcpy(sc, w, 8);
    memcpy(mn, w + 2, 8);
}

/* Activations for the 32-element types: [n/32] block_q8a. */
void quantize_row_q8a(struct block_q8a *y, const float *x, int64_t n);
/* Activations for the K-quants: [n/256] block_q8_k. */
void quantize_row_q8_k(struct block_q8_k *y, const float *x, int64_t n);

/* Weight quantizers (GGUF layouts), for `kiln quantize`; n a multiple of the block size.
 * Writes F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (byte-identical to llama.cpp's
 * reference quantizers) and Q4_K, Q5_K, Q6_K (kiln's own error-minimizing search).
 * Returns false for a type kiln cannot write. */
bool quantize_row(enum dtype t, void *y, const float *x, int64_t n);

/* The K-quant weight quantizers behind quantize_row (src/tensor/quantize_k.c). */
void quantize_q4_k(struct block_q4_k *y, const float *x, int64_t n);
void quantize_q5_k(struct block_q5_k *y, const float *x, int64_t n);
void quantize_q6_k(struct block_q6_k *y, const float *x, int64_t n);

#endif
