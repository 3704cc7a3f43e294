/* Element-wise and row operations of the forward pass, and the threaded matmul.
 * Contract for src/model/ops.c. Pure functions over caller buffers. */
#ifndef KILN_MODEL_OPS_H
#define KILN_MODEL_OPS_H

#include "model/model.h"

/* Rows of F16 / BF16 weights widened at once per thread, for batches (see ops.c). */
#define WIDE_TILE 8

/* out[t][0..w->rows) = w . in[t] for t < n_tok; act is scratch of at least
 * (n_tok + WIDE_TILE * threads in the pool) * act_row_bytes(w->kern->act, w->cols) bytes
 * (the extra rows: each thread's widened F16 / BF16 weight rows). Runs on the pool. */
void matmul(struct pool *pool, float *out, const struct weight *w, const float *in, int n_tok,
            uint8_t *act);
/* out[i] = w[i] . in for n_w weights of the same input (q, k and v; gate and up):
 * it is encoded once for the weights whose kernels want the same encoding, and they run in
 * one pass of the pool (up to three at a time). The results are matmul's, bit for bit. */
void matmul_set(struct pool *pool, float *const *out, const struct weight *const *w, int n_w,
                const float *in, int n_tok, uint8_t *act);

/* Encodes tokens t0 .. t1 - 1 of in ([n_tok][w->cols]) for w's kernel into act, where
 * matmul_set_encoded reads them: a pool worker's share, so that a per-token stage that
 * produces a matmul's input encodes it in its own pass (one wait fewer per matmul). */
void matmul_encode_tokens(const struct weight *w, const float *in, int t0, int t1, uint8_t *act);
/* matmul_set when act already holds every token of in encoded for w[0] (by
 * matmul_encode_tokens); in is still read where a later weight wants another encoding. */
void matmul_set_encoded(struct pool *pool, float *const *out, const struct weight *const *w,
                        int n_w, const float *in, int n_tok, uint8_t *act);
/* A view of rows r0 .. r0 + rows - 1 of w (an expert's slice of a stacked weight), with
 * w's repacked blocks where they line up with the view's. */
struct weight weight_rows(const struct weight *w, int64_t r0, int64_t rows);

/* Bytes of matmul scratch (act above) enough for any weight of m and up to n_batch tokens. */
size_t matmul_scratch_bytes(const struct model *m, int n_batch);

/* x[t] += bias for each of n_tok rows of dim values; nothing when bias is NULL. */
void add_bias(float *x, const float *bias, int n_tok, int dim);
/* out = (x - mean) / sqrt(var + eps) * weight + bias (out may be x). */
void layernorm(float *out, const float *x, const float *weight, const float *bias, int n,
               float eps);
/* x[i] += y[i]: a residual add (vectorized where the CPU has AVX2; the same sums). */
void add_in_place(float *x, const float *y, int n);
void rmsnorm(float *out, const float *x, const float *weight, int n, float eps);
/* cos and sin of each rotated pair's angle at position pos, interleaved (cs[2i], cs[2i+1]);
 * theta[i] is the angle per position of pair i (struct model's rope_theta). */
void rope_angles(float *cs, const struct hparams *hp, const float *theta, int pos);
/* Rotates the first rope_dim dims of each of n_heads heads of x by the angles cs. */
void rope(float *x, int n_heads, const struct hparams *hp, const float *cs);
void softmax(float *x, int n);
/* v /= |v| (left all zero when it is zero). */
void l2_normalize(float *v, int n);
float silu(float x);
/* g[i] = silu(g[i]) * u[i] over n values, vectorized where the CPU allows. */
void swiglu(float *g, const float *u, int64_t n);
float gelu_tanh(float x);
float gelu_erf(float x); /* exact: x * Phi(x) */

#endif
