/* The float helpers of the forward pass: y = a * x + y (fused: one rounding) over a row (or
 * a KV block's rows) of F32, F16 or Q8_0 values, the attention's weighted sum of values (for
 * an F16 cache with AVX-512, all the query heads of a KV head at once); a Q8_0 cache's key
 * scores, and an F16 cache's transposed ones; an F16 cache's stores; rmsnorm's steps, the
 * residual adds, softmax and SwiGLU. The caller resolves the version for this CPU once and
 * keeps the pointer.
 * Contract for src/kernels/cpu/convert.c, convert_avx2.c, convert_avx512.c. Pure; any
 * thread. */
#ifndef KILN_KERNELS_CPU_CONVERT_H
#define KILN_KERNELS_CPU_CONVERT_H

#include "kernels/cpu/dot.h"
#include "tensor/blocks.h"

#include <stdint.h>

typedef void (*axpy_f32_fn)(float *y, float a, const float *x, int64_t n);
typedef void (*axpy_f16_fn)(float *y, float a, const f16_t *x, int64_t n);

axpy_f32_fn axpy_f32_for_cpu(void);
axpy_f16_fn axpy_f16_for_cpu(void);

/* y += w[r] * row r for rows rows of n values stride bytes apart, in order, each exactly as
 * the single-row axpy of the same ISA adds it (one call for a KV block's 16 positions). */
typedef void (*axpy_rows_fn)(float *y, const float *w, const void *x, size_t stride, int rows,
                             int64_t n);
/* The AVX2 version for F32, F16 or Q8_0 rows, or NULL (call the single-row axpy per row,
 * on the expanded row for Q8_0). */
axpy_rows_fn axpy_rows_for_cpu(enum dtype t);

/* A Q8_0 KV cache read in place, n a multiple of 32 (whole blocks): the key scores
 * out[r] = dot(row r, q) * scale and the value sums y += w[r] * row r, each with exactly the
 * arithmetic of expanding the row with dequantize_row and making the AVX2 F32 call (dot_f32,
 * axpy_f32) on it, without the expanded copy or a call per row. */
void key_rows_q8_0_avx2(float *out, const void *k, size_t stride, int rows, const void *q,
                        int64_t n, float scale);
/* A KV cache's key scores a block at a time for this CPU: the F16 / F32 dot kernel's rows
 * form, the Q8_0 one above; or NULL (one row at a time, Q8_0 rows expanded first). */
dot_rows_fn key_rows_for_cpu(enum dtype t);
/* An F16 cache's keys of one KV head in a block, stored transposed: dimension d's 16 positions
 * (a KV block's) at kt + 16 d, so that a vector holds one dimension of many positions and a
 * score needs no horizontal sum. The scores of `heads` consecutive query heads (q, hd floats
 * each) for block positions s0 .. s1 - 1:
 *   out[h * out_stride + s - s0] = ((c0 + c1) + (c2 + c3)) * scale,
 * c_i being the fused multiply-add chain of q[h][d] * k[d][s] over the d = i mod 4 in order
 * (hd a multiple of 4; four chains, so that one head's multiply-adds do not wait on each
 * other). Every version computes exactly that, so a score never depends on which version,
 * how many heads or which positions a call takes. */
typedef void (*key_block_fn)(float *out, size_t out_stride, const f16_t *kt, const float *q,
                             int heads, int hd, int s0, int s1, float scale);
enum { KEY_BLOCK_POSITIONS = 16 };
void key_block_f16t_ref(float *out, size_t out_stride, const f16_t *kt, const float *q,
                        int heads, int hd, int s0, int s1, float scale);
void key_block_f16t_avx2(float *out, size_t out_stride, const f16_t *kt, const float *q,
                         int heads, int hd, int s0, int s1, float scale);
void key_block_f16t_avx512(float *out, size_t out_stride, const f16_t *kt, const float *q,
                           int heads, int hd, int s0, int s1, float scale);
key_block_fn key_block_f16t_for_cpu(void);
/* An F16 cache's values of one KV head in a block, for `heads` consecutive query heads:
 * y[h * n + i] += w[h * w_stride + r] * row r [i] for the rows (stride bytes apart) in order,
 * each head exactly as axpy_rows adds it (the same fused steps per value), each row widened
 * once for all the heads. AVX-512; value_heads_for_cpu gives it or NULL (one axpy_rows call
 * per head). */
typedef void (*value_heads_fn)(float *y, const float *w, size_t w_stride, const void *x,
                               size_t stride, int rows, int heads, int64_t n);
void value_heads_f16_avx512(float *y, const float *w, size_t w_stride, const void *x,
                            size_t stride, int rows, int heads, int64_t n);
value_heads_fn value_heads_for_cpu(enum dtype t);
void axpy_q8_0_rows_avx2(float *y, const float *w, const void *x, size_t stride, int rows,
                         int64_t n);

/* A row of floats to halves with F16C, eight at a time: for every input but NaN the same
 * half as f32_to_f16 (round to nearest even, subnormals, overflow to infinity); a NaN stays
 * a NaN. What an F16 KV cache stores. NULL without AVX2 (use quantize_row). */
typedef void (*f16_row_fn)(f16_t *dst, const float *src, int64_t n);
void f32_to_f16_row_avx2(f16_t *dst, const float *src, int64_t n);
f16_row_fn f16_row_for_cpu(void);

/* The sum of x[i]^2 in double precision (rmsnorm's) with AVX2: a scalar loop's value to
 * within double rounding (the order and the fused squares differ). */
double sum_squares_avx2(const float *x, int64_t n);

/* out[i] = x[i] * scale * w[i] with AVX2, bit for bit the scalar expression's; out may be x. */
void scale_mul_avx2(float *out, const float *x, float scale, const float *w, int64_t n);

/* x[i] += y[i] with AVX2 (a residual add; the same sums as the scalar loop). */
void add_avx2(float *x, const float *y, int64_t n);

/* softmax in place over n floats, with a vectorized exp (relative error ~2e-7): what
 * ops.c's softmax runs on AVX2 machines. */
void softmax_avx2(float *x, int n);
/* g[i] = silu(g[i]) * u[i] (SwiGLU) with the same vectorized exp: within a few float ulps of
 * the scalar x / (1 + expf(-x)). */
void swiglu_avx2(float *g, const float *u, int64_t n);

/* The scalar references and the AVX2 + F16C versions (tested against each other). */
void axpy_f32_ref(float *y, float a, const float *x, int64_t n);
void axpy_f32_avx2(float *y, float a, const float *x, int64_t n);
void axpy_f16_ref(float *y, float a, const f16_t *x, int64_t n);
void axpy_f16_avx2(float *y, float a, const f16_t *x, int64_t n);
void axpy_f32_rows_avx2(float *y, const float *w, const void *x, size_t stride, int rows,
                        int64_t n);
void axpy_f16_rows_avx2(float *y, const float *w, const void *x, size_t stride, int rows,
                        int64_t n);

#endif
