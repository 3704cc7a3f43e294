/* kiln: LLM inference in C. The public API for offline use (the CLI is built on it).
 * No global state: every call works on handles the caller owns. Not installed: other headers. */
#ifndef KILN_H
#define KILN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The only place a status is defined: code, value, message. */
#define KILN_STATUS_LIST(X)                                                                        \
    X(KILN_OK, 0, "ok")                                                                            \
    X(KILN_ENOMEM, -1, "out of memory")                                                            \
    X(KILN_EFORMAT, -2, "malformed input")                                                         \
    X(KILN_ERANGE, -3, "value out of range")                                                       \
    X(KILN_EUNSUPP, -4, "not supported")                                                           \
    X(KILN_EIO, -5, "input/output error")                                                          \
    X(KILN_EINVAL, -6, "invalid argument")                                                         \
    X(KILN_ECANCELED, -7, "canceled")                                                              \
    X(KILN_EBUSY, -8, "busy")

typedef enum {
#define KILN_X_ENUM(name, value, msg) name = value,
    KILN_STATUS_LIST(KILN_X_ENUM)
#undef KILN_X_ENUM
} kiln_status;

/* Detail for a failed call, owned by the caller; names the file, key or field. */
struct kiln_err {
    char msg[256];
};

const char *kiln_status_str(kiln_status st);

/* ---- models ---------------------------------------------------------------------------- */

typedef struct kiln_model kiln_model; /* weights + vocabulary; read-only after open */

struct kiln_model_params {
    int n_threads;       /* 0: one per online core */
    const char *pooling; /* embeddings: "mean", "cls" or "last" instead of the model's own;
                          * NULL keeps it */
};

/* Opens a model: a GGUF file, or a Hugging Face directory (config.json, safetensors,
 * tokenizer.json or vocab.txt): maps it, validates every field, binds the weights.
 * Fails with KILN_EFORMAT / KILN_EUNSUPP / KILN_EIO and a message naming the file and field,
 * KILN_EINVAL for an unknown pooling.
 * params may be NULL. The model owns its thread pool; free it with kiln_model_free. */
kiln_status kiln_model_open(const char *path, const struct kiln_model_params *params,
                            kiln_model **out, struct kiln_err *err);
void kiln_model_free(kiln_model *model);

int32_t kiln_model_n_vocab(const kiln_model *model);
int32_t kiln_model_n_ctx_train(const kiln_model *model);
int32_t kiln_model_bos(const kiln_model *model);      /* -1 when the model has none */
int32_t kiln_model_eos(const kiln_model *model);      /* -1 when the model has none */
bool kiln_model_is_eog(const kiln_model *model, int32_t token); /* end of generation */
/* The model's Jinja chat template (tokenizer.chat_template), or NULL. */
const char *kiln_model_chat_template(const kiln_model *model);
/* A short description ("llama 135M Q4_1"), for logs. */
const char *kiln_model_desc(const kiln_model *model);

/* ---- tokens ---------------------------------------------------------------------------- */

/* Tokenizes len bytes of text. add_special adds BOS/EOS as the model's metadata says;
 * parse_special turns special-token text (e.g. "<|im_start|>") into its id.
 * Writes up to cap ids and the total count to *n_out; KILN_ERANGE when cap is too small
 * (*n_out then holds the count needed). Any thread. */
kiln_status kiln_tokenize(const kiln_model *model, const char *text, size_t len, bool add_special,
                          bool parse_special, int32_t *ids, size_t cap, size_t *n_out);
/* The same into a new array (free it with free()); NULL when out of memory. */
int32_t *kiln_tokenize_new(const kiln_model *model, const char *text, size_t len,
                           bool add_special, bool parse_special, size_t *n_out);

/* Writes the bytes of one token (special tokens rendered only when render_special).
 * Returns the byte count, or -needed when cap is too small. */
int kiln_token_to_piece(const kiln_model *model, int32_t token, bool render_special, char *buf,
                        size_t cap);

/* ---- evaluation ------------------------------------------------------------------------ */

typedef struct kiln_context kiln_context; /* one sequence: its KV cache and scratch */

/* Creates a context for sequences of up to n_ctx tokens (0: the model's training length,
 * capped at 4096). One thread at a time per context. KILN_EUNSUPP for an encoder model. */
kiln_status kiln_context_new(kiln_model *model, int32_t n_ctx, kiln_context **out,
                             struct kiln_err *err);
/* The same with more settings; zero fields (or params NULL) take kiln_context_new's
 * defaults. KILN_EINVAL for a KV cache type other than these, or q8_0 for a model whose head
 * size is not a multiple of 32. */
struct kiln_context_params {
    int32_t n_ctx;
    const char *kv_cache_type; /* "f16" (default), "q8_0" or "f32" */
};
kiln_status kiln_context_new_with(kiln_model *model, const struct kiln_context_params *params,
                                  kiln_context **out, struct kiln_err *err);
void kiln_context_free(kiln_context *ctx);
/* Forgets every token evaluated so far. */
void kiln_context_reset(kiln_context *ctx);
int32_t kiln_context_n_past(const kiln_context *ctx);
int32_t kiln_context_n_ctx(const kiln_context *ctx);

/* Appends n tokens to the sequence and runs the model over them. logits receives
 * [n][n_vocab] floats when all_logits, else [n_vocab] for the last token; may be NULL.
 * KILN_ERANGE when the context would overflow; KILN_EINVAL for an id outside the vocabulary. */
kiln_status kiln_eval(kiln_context *ctx, const int32_t *tokens, size_t n, bool all_logits,
                      float *logits, struct kiln_err *err);

/* ---- generation ------------------------------------------------------------------------ */

struct kiln_logit_bias {
    int32_t token;
    float bias;
};

struct kiln_sampling {
    float temperature;       /* 0: greedy */
    int32_t top_k;           /* 0: off */
    float top_p;             /* 1: off */
    float min_p;             /* 0: off */
    float repetition_penalty; /* 1: off; divides positive logits of seen tokens */
    float presence_penalty;  /* 0: off */
    float frequency_penalty; /* 0: off */
    int32_t penalty_last_n;  /* window for the penalties; -1: the whole sequence */
    uint64_t seed;
    const struct kiln_logit_bias *logit_bias;
    size_t n_logit_bias;
};

/* Sampling that changes nothing: temperature 1, every filter off, seed 0. */
struct kiln_sampling kiln_sampling_default(void);

struct kiln_generate_params {
    struct kiln_sampling sampling;
    int32_t max_tokens;      /* < 0: until the context is full */
    const char *const *stop; /* stop strings; generation ends before their first byte */
    size_t n_stop;
    bool ignore_eos;
};

enum kiln_finish { KILN_FINISH_STOP, KILN_FINISH_LENGTH, KILN_FINISH_CANCELED };

struct kiln_generate_result {
    enum kiln_finish finish;
    int32_t n_prompt;
    int32_t n_generated;
};

/* Called with each piece of new text as soon as it is complete UTF-8 and cannot be the
 * start of a stop string; token is the id that completed it. Return false to stop. */
typedef bool (*kiln_text_cb)(void *user, int32_t token, const char *text, size_t len);

/* Resets ctx, evaluates the prompt and generates with the given sampling, streaming text
 * through cb (may be NULL). Fails like kiln_eval. */
kiln_status kiln_generate(kiln_context *ctx, const int32_t *prompt, size_t n_prompt,
                          const struct kiln_generate_params *params, kiln_text_cb cb, void *user,
                          struct kiln_generate_result *result, struct kiln_err *err);

/* ---- embeddings ------------------------------------------------------------------------ */

int32_t kiln_model_n_embd(const kiln_model *model);
/* True for encoder (BERT-style) models: they embed but cannot generate. */
bool kiln_model_is_encoder(const kiln_model *model);
/* The most tokens one input to kiln_embed may have. */
int32_t kiln_model_max_embed_tokens(const kiln_model *model);

/* Embeds n token sequences (tokenize with add_special) into out[n][n_embd], pooled as the
 * model says (mean, CLS or last token; a decoder pools its last token unless its GGUF says
 * otherwise) and L2-normalized unless the model's pipeline does not normalize. Encoder
 * inputs are packed into shared passes; each result is what that input gives alone.
 * Runs on the model's threads: not at the same time as another call that runs this model.
 * Fails with KILN_EINVAL (an empty input, an id outside the vocabulary), KILN_ERANGE (an
 * input longer than kiln_model_max_embed_tokens) or KILN_ENOMEM, naming the input. */
kiln_status kiln_embed(kiln_model *model, const int32_t *const *inputs, const size_t *lens,
                       size_t n, float *out, struct kiln_err *err);

/* ---- offline batches ------------------------------------------------------------------- */

/* The engine behind kiln_generate_batch (and kiln serve): continuous batching over a paged
 * KV cache with prefix sharing. Zero fields take the defaults. */
struct kiln_engine_params {
    int32_t n_ctx;         /* tokens per sequence (default: the model's, at most 4096) */
    int max_num_seqs;      /* sequences generated at once (default 16) */
    int max_batch_tokens;  /* tokens per step (default 512) */
    int n_kv_blocks;       /* KV pool in blocks of 16 tokens (default n_ctx * max_num_seqs) */
    const char *kv_cache_type; /* "f16" (default), "q8_0" or "f32" */
    bool no_prefix_cache;
};

struct kiln_batch_request {
    const int32_t *prompt;
    size_t n_prompt;
    struct kiln_generate_params params; /* max_tokens < 0: until the context is full */
};

struct kiln_batch_result {
    kiln_status status;    /* KILN_OK, or why this request failed (err_msg says more) */
    char err_msg[256];
    enum kiln_finish finish;
    int32_t *tokens;       /* the generated ids (malloc'd) */
    size_t n_tokens;
    char *text;            /* their text, valid UTF-8, stop strings cut (malloc'd) */
    size_t text_len;
};

struct kiln_batch_stats {
    uint64_t prefix_hit_tokens; /* prompt tokens served from the prefix cache */
    uint64_t preemptions;       /* sequences recomputed because the KV pool ran out */
};

/* Generates a continuation for every request, all at once (results[i] for requests[i]).
 * Each result is what the request would give alone. Fails only when the engine cannot
 * start (KILN_ENOMEM, KILN_EINVAL for bad params); per-request problems (a prompt too long
 * for the context, bad sampling settings) are in results[i].status. stats may be NULL. */
kiln_status kiln_generate_batch(kiln_model *model, const struct kiln_engine_params *params,
                                const struct kiln_batch_request *requests, size_t n,
                                struct kiln_batch_result *results, struct kiln_batch_stats *stats,
                                struct kiln_err *err);
/* Frees what kiln_generate_batch put in results. */
void kiln_batch_results_free(struct kiln_batch_result *results, size_t n);

/* ---- quantization ---------------------------------------------------------------------- */

struct kiln_quantize_params {
    const char *type;      /* "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m",
                            * "q6_k", "f16", "bf16" or "f32" (any case) */
    int n_threads;         /* 0: one per online core */
    bool allow_requantize; /* accept already-quantized input tensors (loses quality) */
};

/* Writes a copy of the GGUF file (or Hugging Face directory, which this converts) at in_path
 * to out_path with its weight matrices in the requested type: metadata copied, general.file_type updated, norms and biases kept, and
 * for the _M types the more sensitive tensors (output, some attn_v / ffn_down layers) at
 * Q6_K, as llama.cpp's recipes do. Logs one line per tensor at info level. out_path
 * appears only when complete. Fails with KILN_EINVAL (unknown type, quantized input
 * without allow_requantize), KILN_EFORMAT / KILN_EIO / KILN_ENOMEM. */
kiln_status kiln_quantize(const char *in_path, const char *out_path,
                          const struct kiln_quantize_params *params, struct kiln_err *err);

#ifdef __cplusplus
}
#endif
#endif
