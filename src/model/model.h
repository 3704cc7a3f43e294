/* Transformer models: decoders (llama, qwen2, gemma3, llama-style mixture of experts) and
 * BERT-style encoders: hyperparameters and weights bound from a GGUF file (or a Hugging Face
 * directory presented as one), the decoder forward pass and the encoder pass.
 * Contract for src/model/load.c, forward.c, encoder.c, ops.c.
 * A model is read-only after load; a forward state belongs to one thread at a time. */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include "base/pool.h"
#include "gguf/gguf.h"
#include "kernels/cpu/convert.h"
#include "kernels/cpu/dot.h"
#include "kiln.h"

#include <stdbool.h>
#include <stdint.h>

enum arch { ARCH_LLAMA, ARCH_QWEN2, ARCH_GEMMA3, ARCH_BERT };
/* How an embedding is made from the last hidden states (values as GGUF's pooling_type). */
enum pooling { POOL_NONE = 0, POOL_MEAN = 1, POOL_CLS = 2, POOL_LAST = 3 };
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
    /* embeddings */
    bool causal;                /* false: every token sees the whole sequence (encoders) */
    float norm_eps;             /* layer norm epsilon (encoders) */
    bool gelu_tanh;             /* encoders: the tanh approximation instead of erf GELU */
    enum pooling pooling;
    bool normalize;             /* L2-normalize pooled embeddings */
    int n_token_types;          /* rows of the token type embedding (encoders) */
};

/* A matrix of `rows` rows of `cols` weights, stored as GGUF lays it out (row-major, each
 * row a whole number of blocks), and the dot kernel chosen for its type. */
struct weight {
    const uint8_t *data;
    enum dtype type;
    int64_t rows, cols;
    size_t row_bytes;
    const struct dot_kernel *kern;
    /* rows 0 .. rows / GEMM_ROWS * GEMM_ROWS - 1 in kern->gemm's repacked form (blocks of
     * repacked_bytes(cols)), which matmul uses instead of data; or NULL (model_repack) */
    const uint8_t *repacked;
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
    /* encoders (post-norm): x = LN(x + attn), x = LN(x + ffn), with biases everywhere */
    float *bo;                         /* [n_embd] */
    float *attn_out_norm, *attn_out_norm_b; /* [n_embd] */
    float *ffn_up_b;                   /* [n_ff] */
    float *ffn_down_b;                 /* [n_embd] */
    float *out_norm, *out_norm_b;      /* [n_embd] */
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
    struct weight pos_embd;   /* [n_ctx_train][n_embd], encoders */
    struct weight type_embd;  /* [n_token_types][n_embd], encoders (rows 0 when absent) */
    float *embd_norm, *embd_norm_b; /* [n_embd], encoders */
    float *norms;           /* one allocation holding every norm vector above */
    struct pool *pool;
    uint8_t *repacked_arena; /* one allocation holding every weight's repacked form, or NULL */
    char desc[96];
};

/* Binds the hyperparameters and weights of a validated GGUF file. Fails with KILN_EUNSUPP
 * for an architecture or tensor type kiln does not run (named), KILN_EFORMAT for a missing
 * key or tensor or a wrong shape (named). Takes ownership of g only on success. */
kiln_status model_load(struct model *m, struct gguf_file *g, int n_threads, struct kiln_err *err);
void model_unload(struct model *m);
/* Repacks the matmul weights whose kernels have a repacked form (src/model/repack.c), on the
 * model's pool; mapped: the file is mapped, so wholly repacked weights' pages go back to the
 * page cache. Fails only for memory. */
kiln_status model_repack(struct model *m, bool mapped, struct kiln_err *err);

/* The model inside a public kiln_model (defined in src/api/kiln.c), for the engine. */
const struct model *kiln_model_internal(const kiln_model *km);

/* KV memory as the forward pass sees it: per layer, blocks of KV_BLOCK_SIZE tokens' keys and
 * values (n_head_kv * head_dim each) in F32, F16 or Q8_0, as rows (an F16 cache's keys
 * transposed, see kv_store below). Which blocks belong
 * to which sequence is the caller's business (src/engine/kv_cache.c; a kiln_context owns
 * one sequence's blocks outright). */
#define KV_BLOCK_SIZE 16

struct kv_store {
    enum dtype type;
    int n_blocks;
    size_t row_bytes;  /* one token's keys (or values) in one layer */
    size_t head_bytes; /* one head's part of such a row */
    /* [n_layer][n_blocks][KV_BLOCK_SIZE] rows; an F16 cache's keys (key_block set) are
     * stored transposed per block instead: [n_layer][n_blocks][n_head_kv * head_dim]
     * [KV_BLOCK_SIZE], one dimension's positions together */
    uint8_t *k, *v;
    /* how the attention reads this type, resolved once for this CPU */
    const struct dot_kernel *key_dot; /* F16 / F32 keys in place; Q8_0 keys once expanded */
    key_block_fn key_block; /* an F16 cache's transposed keys a block at a time, or NULL */
    dot_rows_fn key_rows;   /* keys in rows a block at a time (Q8_0 ones in place), or NULL */
    axpy_f16_fn axpy_f16;
    axpy_f32_fn axpy_f32;
    axpy_rows_fn axpy_rows; /* values a block at a time (Q8_0 ones in place), or NULL */
    value_heads_fn value_heads; /* F16 values a block and a KV head at a time, or NULL */
    f16_row_fn f16_row;     /* an F16 cache's stores with F16C, or NULL (quantize_row) */
};

/* Allocates n_blocks blocks of type (F32, F16, or Q8_0 when n_head_kv * head_dim is a
 * multiple of 32). Fails with KILN_EINVAL for another type, KILN_ENOMEM naming the size. */
kiln_status kv_store_init(struct kv_store *kv, const struct model *m, enum dtype type,
                          int n_blocks, struct kiln_err *err);
/* The KV cache type a user names ("f16", "q8_0", "f32"); KILN_EINVAL naming it otherwise. */
kiln_status kv_type_parse(const char *name, enum dtype *out, struct kiln_err *err);
void kv_store_free(struct kv_store *kv);

/* One forward call: n tokens of any number of sequences, each at its own position. A
 * token attends to positions 0..pos of its sequence (its block table maps position p to
 * block table[p / KV_BLOCK_SIZE]); positions before pos must be in the cache already or
 * come earlier in this batch. */
struct batch {
    int n;
    const int32_t *tokens;              /* [n] */
    const int32_t *pos;                 /* [n] */
    const int32_t *const *block_tables; /* [n] each token's sequence's block table */
    const bool *want_logits;            /* [n] tokens whose logits are written, in order */
};

/* Scratch for forward calls of up to n_batch tokens attending over up to max_pos positions.
 * Results depend only on each token's own inputs, never on what else is in the batch. */
struct forward_state {
    const struct model *m;
    int n_batch, max_pos;
    float *x, *xn, *q, *k, *v, *attn, *ff_gate, *ff_up; /* [n_batch][...] */
    float *rope_cs;           /* [2][n_batch][rope_dim] cos / sin of each token's angles, for
                                 global then sliding-window layers */
    float *scores;            /* [n_threads][n_head * (max_pos + 16) + head_dim]: the
                                 scores of a token's query heads, and a dequantized row */
    uint8_t *act;             /* encoded activations, [n_batch][row bytes of the widest input] */
    float *ffn_out;           /* [n_batch][n_embd] */
    float *router_logits;     /* [n_batch][n_expert], MoE only (below too) */
    int *expert_sel;          /* [n_batch][n_expert_used] chosen experts */
    float *expert_w;          /* [n_batch][n_expert_used] their weights */
    int *expert_rows;         /* [n_batch] which (token, choice) each gathered row is */
    float *expert_in, *expert_out; /* [n_batch][n_embd] */
};

kiln_status forward_state_init(struct forward_state *s, const struct model *m, int n_batch,
                               int max_pos, struct kiln_err *err);
void forward_state_free(struct forward_state *s);

/* Runs the batch (b->n <= n_batch tokens), storing each token's keys and values at its
 * position, and writes logits [k][n_vocab] for the k tokens that want them (if logits is
 * not NULL). The caller checks positions, block tables and token ids. */
void forward(struct forward_state *s, const struct kv_store *kv, const struct batch *b,
             float *logits);
/* The same, but writes the final (output-normed) hidden states [k][n_embd] of the k tokens
 * that want them instead of logits: what a decoder's embeddings are pooled from. */
void forward_hidden(struct forward_state *s, const struct kv_store *kv, const struct batch *b,
                    float *hidden);

/* Scratch for encoder passes over up to n_batch tokens (in all sequences together). */
struct encoder_state {
    const struct model *m;
    int n_batch;
    float *x, *q, *k, *v, *attn, *tmp, *ff; /* [n_batch][...] */
    float *scores;                          /* [n_threads][n_batch] */
    uint8_t *act;                           /* encoded activations */
};

kiln_status encoder_state_init(struct encoder_state *s, const struct model *m, int n_batch,
                               struct kiln_err *err);
void encoder_state_free(struct encoder_state *s);

/* Encodes n_seq sequences packed one after another in tokens (sequence i is
 * tokens[starts[i] .. starts[i + 1]), each at most n_ctx_train long, starts[n_seq] <= n_batch)
 * and writes each one's pooled (and, if the model says so, normalized) embedding to
 * out[i][n_embd]. The caller checks ids and lengths. A sequence's result does not depend on
 * the others. */
void encode(struct encoder_state *s, const int32_t *tokens, const int *starts, int n_seq,
            float *out);

#endif
