/* The scheduler: one thread that owns the model's evaluation, the paged KV cache and every
 * running sequence. Other threads (the HTTP server's, the offline batch API's) submit
 * requests and read each sequence's events through its channel; they never touch the model.
 *
 * Each step is one forward call over a batch that holds one token for every decoding
 * sequence and then prompt chunks of prefilling ones (chunked prefill), up to
 * max_batch_tokens. New requests join at the next step (first come, first served), finished
 * ones leave at once, a canceled one is dropped at the next step. A sequence's prompt
 * starts from the longest prefix of full blocks already in the prefix cache. When the KV
 * pool runs out, the newest running sequence is preempted: its blocks are freed and it is
 * requeued at the front, to be recomputed; its output is unchanged.
 * Contract for src/engine/scheduler.c. All functions here are thread-safe. */
#ifndef KILN_ENGINE_SCHEDULER_H
#define KILN_ENGINE_SCHEDULER_H

#include "kiln.h"
#include "tensor/dtype.h"

#include <stdbool.h>
#include <stdint.h>

struct sched_params {
    int32_t n_ctx;        /* tokens per sequence (0: the model's default, at most 4096) */
    int max_num_seqs;     /* sequences running at once (default 16) */
    int max_waiting;      /* sequences queued beyond those; more and submit says busy */
    int max_batch_tokens; /* tokens per step (default 512) */
    int n_kv_blocks;      /* KV pool size in blocks (0: n_ctx * max_num_seqs tokens' worth) */
    bool kv_type_set;     /* kv_type below was chosen; else the cache is F16 */
    enum dtype kv_type;   /* F16, Q8_0 or F32 */
    bool no_prefix_cache;
};

#define SEQ_MAX_TOP_LOGPROBS 20

struct token_logprob {
    int32_t token;
    float logprob;
};

/* A token with its log-probability under the model (before sampling settings) and the
 * most likely alternatives. */
struct token_logprobs {
    int32_t token;
    float logprob; /* NAN for the first prompt token, which has none */
    int n_top;
    struct token_logprob top[SEQ_MAX_TOP_LOGPROBS];
};

struct seq_request {
    const int32_t *prompt; /* copied */
    size_t n_prompt;
    struct kiln_sampling sampling; /* logit_bias copied */
    int32_t max_tokens;            /* >= 0; 0 only evaluates the prompt */
    const char *const *stop;       /* copied */
    size_t n_stop;
    bool ignore_eos;
    int top_logprobs;     /* < 0: no logprobs for generated tokens, else alternatives */
    bool prompt_logprobs; /* also the prompt tokens' logprobs (echo) */
};

enum seq_event_type {
    SEQ_PROMPT, /* the prompt's logprobs, when asked */
    SEQ_TOKEN,  /* one generated token and the text it released (possibly empty) */
    SEQ_DONE,   /* the end: the held-back text, finish reason, counts or an error */
};

struct seq_event {
    enum seq_event_type type;
    double time; /* CLOCK_MONOTONIC seconds when emitted */
    char *text;  /* NUL-terminated UTF-8, owned by the event */
    size_t len;
    struct token_logprobs *logprobs; /* SEQ_TOKEN (when asked): one; SEQ_PROMPT: n_prompt */
    size_t n_logprobs;
    int32_t token; /* SEQ_TOKEN */
    /* SEQ_DONE */
    enum kiln_finish finish;
    int32_t n_prompt, n_generated;
    kiln_status status; /* KILN_OK unless the sequence failed */
    char error[256];
};

struct scheduler;
struct seq;

/* Starts the thread and allocates the KV pool. */
kiln_status scheduler_new(kiln_model *model, const struct sched_params *params,
                          struct scheduler **out, struct kiln_err *err);
/* Cancels every sequence (each gets SEQ_DONE with KILN_ECANCELED) and stops the thread;
 * later submits fail with KILN_EBUSY. */
void scheduler_stop(struct scheduler *s);
/* Stops (if needed) and frees; channels still held by consumers stay valid until released. */
void scheduler_free(struct scheduler *s);

int32_t scheduler_n_ctx(const struct scheduler *s);

/* Queues a request. Fails with KILN_ERANGE when the prompt plus max_tokens does not fit
 * the context (message says by how much), KILN_EBUSY when the queue is full,
 * KILN_EINVAL for bad sampling settings, KILN_ENOMEM. */
kiln_status scheduler_submit(struct scheduler *s, const struct seq_request *req,
                             struct seq **out, struct kiln_err *err);

/* Waits up to timeout_ms for the sequence's next event. Returns true and fills *ev
 * (free it with seq_event_free), or false on timeout. After SEQ_DONE there are no more. */
bool seq_next_event(struct seq *q, struct seq_event *ev, int timeout_ms);
void seq_event_free(struct seq_event *ev);
/* Asks the scheduler to drop the sequence at its next step (it then sends SEQ_DONE with
 * KILN_FINISH_CANCELED). */
void seq_cancel(struct seq *q);
/* The consumer is done with the channel: cancels the sequence if unfinished. */
void seq_release(struct seq *q);

/* Runs fn(ctx) on the scheduler thread between two steps (it may use the model: embeddings
 * from a decoder) and returns when it has run; calls queue first come first served, one
 * per step, so keep each short. KILN_EBUSY (fn not run) when stopping. */
kiln_status scheduler_call(struct scheduler *s, void (*fn)(void *ctx), void *ctx);

struct sched_stats {
    int running, waiting;
    int64_t kv_used, kv_capacity; /* KV blocks referenced by sequences, and all of them */
    uint64_t prefix_queries, prefix_hits;     /* prompt tokens looked up / found cached */
    uint64_t preemptions;
};
/* All zero for a NULL scheduler (a server of an embedding model has none). */
void scheduler_stats(struct scheduler *s, struct sched_stats *out);

#endif
