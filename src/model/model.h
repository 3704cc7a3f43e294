/* Decoder-only transformer models (llama, qwen2, gemma3, llama-style mixture of experts):
 * hyperparameters and weights bound from a GGUF file, and the forward pass.
 * Contract for src/model/load.c, src/model/forward.c, src/model/ops.c.
 * A model is read-only after load; a forward state belongs to one thread at a time. */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include "base/pool.h"
#include "gguf/gguf.h"
#include "kernels/cpu/dot.h"
#include "kiln.h"

#include <stdbool.h>
#include <stdint.h>

enum arch { ARCH_LLAMA, ARCH_QWEN2, ARCH_GEMMA3 };
enum rope_style { ROPE_NORM, ROPE_NEOX }; /* adjacent pairs, or halves of the head */

struct hparams {
    enum arch arch;
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    int n_expert, n_expert_used; /* 0 for dense models */
    bool expert_weights_norm;    /* renormalize the top-k router weights to sum to 1 */
    float rms_eps;
    enum rope_style rope_style;
    int rope_dim;               /* leading dims of each head that are rotated */
    float rope_base, rope_base_local; /* local: for sliding-window layers (gemma3) */
    float rope_freq_scale;      /* linear rope scaling: positions are multiplied by it */
    int sliding_window;         /* 0: none */
    int swa_period;             /* layer il is sliding-window when il % period < period - 1 */
    float embd_scale;           /* multiply token embeddings (gemma: sqrt(n_embd)) */
    float attn_scale;           /* multiply q.k */
};

/* A matrix of `rows` rows of `cols` weights, stored as GGUF lays it out (row-major, each
 * row a whole number of blocks), and the dot kernel chosen for its type. */
struct weight {
    const uint8_t *data;
    enum dtype type;
    int64_t rows, cols;
    size_t row_bytes;
    const struct dot_kernel *kern;
};

struct layer {
    float *attn_norm;                  /* [n_embd] */
    struct weight wq, wk, wv, wo;      /* [n_head*head_dim][n_embd] ... [n_embd][n_head*head_dim] */
    float *bq, *bk, *bv;               /* qwen2 biases, else NULL */
    float *q_norm, *k_norm;            /* [head_dim], gemma3 */
    float *post_attn_norm;             /* [n_embd], gemma3 */
    float *ffn_norm;                   /* [n_embd] */
    struct weight ffn_gate, ffn_up, ffn_down; /* dense FFN */
    float *post_ffn_norm;              /* [n_embd], gemma3 */
    struct weight router;              /* [n_expert][n_embd], MoE */
    struct weight gate_exps, up_exps, down_exps; /* [n_expert * n_ff][n_embd], down: [n_expert * n_embd][n_ff] */
};

struct model {
    struct gguf_file *gguf;
    struct hparams hp;
    struct weight tok_embd; /* [n_vocab][n_embd] */
    float *output_norm;     /* [n_embd] */
    struct weight output;   /* [n_vocab][n_embd]; the embedding when tied */
    float *rope_freqs;      /* [rope_dim/2] divisors of each frequency, or NULL */
    float *rope_theta;      /* [2][rope_dim/2] angle per position of each pair: global layers,
                               then sliding-window layers (their own base) */
    struct layer *layers;   /* [n_layer] */
    float *norms;           /* one allocation holding every norm vector above */
    struct pool *pool;
    char desc[96];
};

/* Binds the hyperparameters and weights of a validated GGUF file. Fails with KILN_EUNSUPP
 * for an architecture or tensor type kiln does not run (named), KILN_EFORMAT for a missing
 * key or tensor or a wrong shape (named). Takes ownership of g only on success. */
kiln_status model_load(struct model *m, struct gguf_file *g, int n_threads, struct kiln_err *err);
void model_unload(struct model *m);

/* Per-sequence state: the KV cache and scratch buffers for up to n_batch tokens per call. */
struct forward_state {
    const struct model *m;
    int n_ctx, n_batch, n_past;
    float *k_cache, *v_cache; /* [n_layer][n_ctx][n_head_kv][head_dim] */
    float *x, *xn, *q, *k, *v, *attn, *ff_gate, *ff_up; /* [n_batch][...] */
    float *scores;            /* [n_threads][n_ctx] */
    uint8_t *act;             /* encoded activations, [n_batch][row bytes of the widest input] */
    float *ffn_out;           /* [n_batch][n_embd] */
    float *router_logits;     /* [n_batch][n_expert], MoE only (below too) */
    int *expert_sel;          /* [n_batch][n_expert_used] chosen experts */
    float *expert_w;          /* [n_batch][n_expert_used] their weights */
    int *expert_rows;         /* [n_batch] which (token, choice) each gathered row is */
    float *expert_in, *expert_out; /* [n_batch][n_embd] */
};

kiln_status forward_state_init(struct forward_state *s, const struct model *m, int n_ctx,
                               int n_batch, struct kiln_err *err);
void forward_state_free(struct forward_state *s);

/* Runs n (<= n_batch) tokens at positions n_past.. and appends them to the KV cache.
 * Writes logits [n][n_vocab] when all_logits, else [n_vocab] for the last token, if logits
 * is not NULL. The caller checks n_past + n <= n_ctx and token ids. */
void forward(struct forward_state *s, const int32_t *tokens, int n, bool all_logits,
             float *logits);

#endif
