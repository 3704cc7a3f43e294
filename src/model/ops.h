/* Element-wise and row operations of the forward pass, and the threaded matmul.
 * Contract for src/model/ops.c. Pure functions over caller buffers. */
#ifndef KILN_MODEL_OPS_H
#define KILN_MODEL_OPS_H

#include "model/model.h"

/* out[t][0..w->rows) = w . in[t] for t < n_tok; act is scratch of at least
 * n_tok * act_row_bytes(w->kern->act, w->cols) bytes. Runs on the pool. */
void matmul(struct pool *pool, float *out, const struct weight *w, const float *in, int n_tok,
            uint8_t *act);
/* The same with activations already encoded for w's kernel (act_row_bytes apart). */
void matmul_encoded(struct pool *pool, float *out, const struct weight *w, const uint8_t *act,
                    int n_tok);

void rmsnorm(float *out, const float *x, const float *weight, int n, float eps);
/* Rotates the first rope_dim dims of each of n_heads heads of x at position pos. */
void rope(float *x, int n_heads, const struct hparams *hp, float base, const float *freq_div,
          int pos);
void softmax(float *x, int n);
float silu(float x);
float gelu_tanh(float x);

#endif
