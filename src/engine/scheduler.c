/* The scheduler thread, its queue, the per-sequence channels, and the step that batches
 * every running sequence into one forward call over the paged KV cache.
 * Contract: src/engine/scheduler.h. */
#include "engine/scheduler.h"

#include "base/clock.h"
#include "base/log.h"
#include "base/status.h"
#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "engine/text_stream.h"
#include "model/model.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Prompts whose logprobs are asked for are evaluated in chunks this small, since every
 * position's logits are kept. */
#define PROMPT_LOGPROB_CHUNK 32

struct event_node {
    struct seq_event ev;
    struct event_node *next;
};

struct seq {
    /* the channel: guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t ready;
    struct event_node *head, *tail;
    int refs; /* the scheduler's and the consumer's */
    struct event_node *done_node; /* reserved for SEQ_DONE, so the end is never lost */
    atomic_bool canceled;

    /* the request (owned copies) */
    int32_t *tokens; /* prompt, then generated tokens: [n_prompt + max_tokens] */
    size_t n_prompt, n_tokens;
    struct kiln_sampling sampling;
    struct kiln_logit_bias *bias;
    char **stop;
    size_t n_stop;
    int32_t max_tokens;
    bool ignore_eos;
    int top_logprobs;
    bool prompt_logprobs;

    /* scheduler-thread state */
    struct seq *next_waiting;
    uint64_t arrival;   /* admission order: preemption takes the newest */
    int32_t *table;     /* block table, [ceil(n_ctx / KV_BLOCK_SIZE)] */
    int n_table;        /* blocks held */
    size_t n_computed;  /* tokens whose keys and values are in the cache */
    uint64_t chain;     /* key of the last full block registered or matched */
    int n_chained;      /* full blocks registered or matched */
    size_t n_prompt_lp; /* prompt positions whose logprobs were sent */
    float *prev_logits; /* [n_vocab]: the last prompt position's, for prompt logprobs */
    struct sampler sampler;
    struct text_stream text;
    int32_t n_generated;
    bool started;       /* sampler and text stream set up (survives preemption) */
    /* this step's plan */
    int plan_tokens;    /* tokens in the batch */
    int logit_row;      /* first logits row, or -1 */
};

struct scheduler {
    kiln_model *model;
    const struct model *m;
    struct sched_params p;
    int32_t n_vocab, n_ctx, max_blocks_per_seq;
    struct kv_cache kv;
    struct forward_state fs;
    struct seq **running;    /* [max_num_seqs], in admission order; n_running used */
    uint64_t next_arrival;
    /* the batch of one step */
    int32_t *b_tokens, *b_pos;
    const int32_t **b_tables;
    bool *b_want;
    float *logits;           /* [max_num_seqs + PROMPT_LOGPROB_CHUNK][n_vocab] */
    float *logits_copy;      /* [n_vocab]: before sampling changes them, for logprobs */
    uint64_t preemptions;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu; /* the queue, stopping and the stats */
    pthread_cond_t work;
    struct seq *wait_head, *wait_tail;
    int n_waiting, n_running;
    bool stopping;
    struct sched_stats published; /* refreshed after each step, under mu */
    struct sched_call *calls;     /* scheduler_call's queue, under mu */
    pthread_cond_t call_done;
};

struct sched_call {
    void (*fn)(void *ctx);
    void *ctx;
    bool started, done;
    struct sched_call *next;
};

/* ---- channels --------------------------------------------------------------------------- */

static void seq_free(struct seq *q)
{
    for (struct event_node *e = q->head, *next; e; e = next) {
        next = e->next;
        seq_event_free(&e->ev);
        free(e);
    }
    for (size_t i = 0; i < q->n_stop; i++) free(q->stop[i]);
    free(q->stop);
    free(q->bias);
    free(q->tokens);
    free(q->prev_logits);
    free(q->table);
    free(q->done_node);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->ready);
    free(q);
}

static void seq_unref(struct seq *q)
{
    pthread_mutex_lock(&q->mu);
    bool last = --q->refs == 0;
    pthread_mutex_unlock(&q->mu);
    if (last) seq_free(q);
}

/* Queues an event for the consumer; takes ownership of ev's allocations. Returns false
 * (and frees them) when out of memory. */
static bool emit(struct seq *q, struct seq_event *ev)
{
    struct event_node *node = NULL;
    if (ev->type == SEQ_DONE) {
        node = q->done_node;
        q->done_node = NULL;
    }
    if (!node) node = malloc(sizeof *node);
    if (!node) {
        seq_event_free(ev);
        return false;
    }
    ev->time = clock_seconds();
    node->ev = *ev;
    node->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->tail) q->tail->next = node;
    else q->head = node;
    q->tail = node;
    pthread_cond_signal(&q->ready);
    pthread_mutex_unlock(&q->mu);
    return true;
}

bool seq_next_event(struct seq *q, struct seq_event *ev, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&q->mu);
    while (!q->head)
        if (pthread_cond_timedwait(&q->ready, &q->mu, &deadline) == ETIMEDOUT) break;
    struct event_node *node = q->head;
    if (node) {
        q->head = node->next;
        if (!q->head) q->tail = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    if (!node) return false;
    *ev = node->ev;
    free(node);
    return true;
}

void seq_event_free(struct seq_event *ev)
{
    free(ev->text);
    free(ev->logprobs);
    ev->text = NULL;
    ev->logprobs = NULL;
}

void seq_cancel(struct seq *q)
{
    atomic_store(&q->canceled, true);
}

void seq_release(struct seq *q)
{
    if (!q) return;
    seq_cancel(q);
    seq_unref(q);
}

/* ---- submitting ------------------------------------------------------------------------- */

static struct seq *seq_from_request(const struct seq_request *r)
{
    struct seq *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->ready, NULL);
    q->refs = 2;
    q->chain = KV_ROOT_HASH;
    q->done_node = malloc(sizeof *q->done_node);
    q->n_prompt = q->n_tokens = r->n_prompt;
    q->tokens = malloc((r->n_prompt + (size_t)r->max_tokens + 1) * sizeof *q->tokens);
    q->sampling = r->sampling;
    if (r->sampling.n_logit_bias) {
        q->bias = malloc(r->sampling.n_logit_bias * sizeof *q->bias);
        if (q->bias)
            memcpy(q->bias, r->sampling.logit_bias, r->sampling.n_logit_bias * sizeof *q->bias);
    }
    q->sampling.logit_bias = q->bias;
    q->stop = calloc(r->n_stop ? r->n_stop : 1, sizeof *q->stop);
    bool ok = q->tokens && q->stop && q->done_node && (q->bias || !r->sampling.n_logit_bias);
    for (size_t i = 0; ok && i < r->n_stop; i++) {
        ok = (q->stop[i] = strdup(r->stop[i])) != NULL;
        q->n_stop += ok;
    }
    if (!ok) {
        seq_free(q);
        return NULL;
    }
    memcpy(q->tokens, r->prompt, r->n_prompt * sizeof *q->tokens);
    q->max_tokens = r->max_tokens;
    q->ignore_eos = r->ignore_eos;
    q->top_logprobs = r->top_logprobs > SEQ_MAX_TOP_LOGPROBS ? SEQ_MAX_TOP_LOGPROBS : r->top_logprobs;
    q->prompt_logprobs = r->prompt_logprobs;
    return q;
}

kiln_status scheduler_submit(struct scheduler *s, const struct seq_request *r, struct seq **out,
                             struct kiln_err *err)
{
    int32_t n_ctx = scheduler_n_ctx(s);
    if (r->n_prompt == 0) return kiln_fail(err, KILN_EINVAL, "the prompt is empty");
    if (r->max_tokens < 0) return kiln_fail(err, KILN_EINVAL, "max_tokens must be >= 0");
    if ((int64_t)r->n_prompt + r->max_tokens > n_ctx)
        return kiln_fail(err, KILN_ERANGE,
                         "this model's context is %d tokens, but %zu prompt tokens plus %d "
                         "max_tokens were requested",
                         n_ctx, r->n_prompt, r->max_tokens);
    /* a sequence the whole pool cannot hold would be preempted forever */
    int64_t blocks = ((int64_t)r->n_prompt + r->max_tokens + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
    if (blocks > s->kv.n_blocks)
        return kiln_fail(err, KILN_ERANGE,
                         "%zu prompt tokens plus %d max_tokens do not fit the KV cache (%d "
                         "tokens; see --kv-cache-mem)",
                         r->n_prompt, r->max_tokens, s->kv.n_blocks * KV_BLOCK_SIZE);
    for (size_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= s->n_vocab)
            return kiln_fail(err, KILN_EINVAL, "token id %d is outside the vocabulary (0..%d)",
                             r->prompt[i], s->n_vocab - 1);
    /* Check the sampling settings now, so a bad one is the request's error. */
    kiln_status st = sampler_check(&r->sampling, s->n_vocab, err);
    if (st != KILN_OK) return st;
    struct seq *q = seq_from_request(r);
    if (q && !(q->table = malloc((size_t)s->max_blocks_per_seq * sizeof *q->table))) {
        seq_free(q);
        q = NULL;
    }
    if (!q) return kiln_fail(err, KILN_ENOMEM, "out of memory for the request");
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->n_waiting >= s->p.max_waiting) {
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        seq_free(q);
        return kiln_fail(err, KILN_EBUSY, stopping ? "the server is shutting down"
                                                   : "too many requests are waiting");
    }
    if (s->wait_tail) s->wait_tail->next_waiting = q;
    else s->wait_head = q;
    s->wait_tail = q;
    s->n_waiting++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    *out = q;
    return KILN_OK;
}

/* ---- the scheduler thread --------------------------------------------------------------- */

/* Log-softmax of logits: fills tl with token's logprob and the n_top most likely. */
static void token_logprobs_of(const float *logits, int32_t n_vocab, int32_t token, int n_top,
                              struct token_logprobs *tl)
{
    float max = logits[0];
    for (int32_t i = 1; i < n_vocab; i++) max = fmaxf(max, logits[i]);
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)(logits[i] - max));
    float lse = max + (float)log(sum);
    tl->token = token;
    tl->logprob = logits[token] - lse;
    tl->n_top = 0;
    /* insertion into a small sorted array: n_top <= 20 */
    for (int32_t i = 0; i < n_vocab && n_top > 0; i++) {
        float lp = logits[i] - lse;
        if (tl->n_top == n_top && lp <= tl->top[n_top - 1].logprob) continue;
        int k = tl->n_top < n_top ? tl->n_top++ : n_top - 1;
        while (k > 0 && tl->top[k - 1].logprob < lp) {
            tl->top[k] = tl->top[k - 1];
            k--;
        }
        tl->top[k] = (struct token_logprob){i, lp};
    }
}

static void release_blocks(struct scheduler *s, struct seq *q)
{
    for (int i = 0; i < q->n_table; i++) kv_release(&s->kv, q->table[i]);
    q->n_table = 0;
    q->n_computed = 0;
    q->chain = KV_ROOT_HASH;
    q->n_chained = 0;
}

/* Takes q out of the running array (keeping admission order). */
static void unlink_running(struct scheduler *s, struct seq *q)
{
    int i = 0;
    while (i < s->n_running && s->running[i] != q) i++;
    memmove(s->running + i, s->running + i + 1, (size_t)(s->n_running - i - 1) * sizeof *s->running);
    s->n_running--;
}

static void finish(struct scheduler *s, struct seq *q, enum kiln_finish why, kiln_status st,
                   const char *error)
{
    struct seq_event ev = {.type = SEQ_DONE, .finish = why, .status = st,
                           .n_prompt = (int32_t)q->n_prompt, .n_generated = q->n_generated};
    const char *text;
    size_t len;
    if (q->started && st == KILN_OK && why != KILN_FINISH_CANCELED &&
        text_stream_finish(&q->text, &text, &len) == KILN_OK && len) {
        ev.text = malloc(len + 1);
        if (ev.text) {
            memcpy(ev.text, text, len + 1);
            ev.len = len;
        }
    }
    if (error) snprintf(ev.error, sizeof ev.error, "%s", error);
    emit(q, &ev);
    if (q->started) {
        sampler_free(&q->sampler);
        text_stream_free(&q->text);
        q->started = false;
    }
    release_blocks(s, q);
    pthread_mutex_lock(&s->mu);
    unlink_running(s, q);
    pthread_mutex_unlock(&s->mu);
    seq_unref(q);
}

/* Frees the newest running sequence's blocks and puts it back at the head of the queue. */
static void preempt_newest(struct scheduler *s)
{
    struct seq *victim = s->running[s->n_running - 1];
    release_blocks(s, victim);
    victim->plan_tokens = 0; /* prompt logprobs already sent stay sent (n_prompt_lp kept) */
    pthread_mutex_lock(&s->mu);
    s->n_running--;
    victim->next_waiting = s->wait_head;
    s->wait_head = victim;
    if (!s->wait_tail) s->wait_tail = victim;
    s->n_waiting++;
    s->preemptions++;
    pthread_mutex_unlock(&s->mu);
    log_debug("scheduler: preempted a sequence of %zu tokens (KV pool full)", victim->n_tokens);
}

/* Makes sure q holds blocks for its first `upto` positions. False when the pool is out. */
static bool ensure_blocks(struct scheduler *s, struct seq *q, size_t upto)
{
    int need = (int)((upto + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE);
    while (q->n_table < need) {
        int32_t b = kv_alloc(&s->kv);
        if (b < 0) return false;
        q->table[q->n_table++] = b;
    }
    return true;
}

/* Starts q from the longest cached prefix of full prompt blocks (keeping one token to
 * compute, whose logits give the first sample). Not for prompt logprobs, which need every
 * position's logits. */
static void match_prefix(struct scheduler *s, struct seq *q)
{
    if (q->prompt_logprobs || !s->kv.prefix_caching) return;
    while ((size_t)(q->n_chained + 1) * KV_BLOCK_SIZE <= q->n_tokens - 1) {
        const int32_t *toks = q->tokens + (size_t)q->n_chained * KV_BLOCK_SIZE;
        uint64_t h = kv_block_hash(q->chain, toks);
        int32_t b = kv_lookup(&s->kv, h, q->chain, toks);
        if (b < 0) break;
        q->table[q->n_table++] = b;
        q->chain = h;
        q->n_chained++;
        q->n_computed += KV_BLOCK_SIZE;
    }
}

/* Offers every block q has filled since the last call to the prefix cache. */
static void register_full_blocks(struct scheduler *s, struct seq *q)
{
    while ((size_t)(q->n_chained + 1) * KV_BLOCK_SIZE <= q->n_computed) {
        const int32_t *toks = q->tokens + (size_t)q->n_chained * KV_BLOCK_SIZE;
        uint64_t h = kv_block_hash(q->chain, toks);
        kv_register(&s->kv, q->table[q->n_chained], h, q->chain, toks);
        q->chain = h;
        q->n_chained++;
    }
}

static bool start_sequence(struct scheduler *s, struct seq *q)
{
    if (q->started) return true; /* back from preemption */
    struct kiln_err err = {{0}};
    text_stream_init(&q->text, (const char *const *)q->stop, q->n_stop);
    if (sampler_init(&q->sampler, &q->sampling, s->n_vocab, &err) != KILN_OK) {
        text_stream_free(&q->text);
        struct seq_event ev = {.type = SEQ_DONE, .status = KILN_EINVAL,
                               .n_prompt = (int32_t)q->n_prompt};
        snprintf(ev.error, sizeof ev.error, "%s", err.msg[0] ? err.msg : "cannot start the sampler");
        emit(q, &ev);
        return false;
    }
    q->started = true;
    return true;
}

/* Whether q's next token can be drawn apart from the rest of sample_next: it asks for no
 * logprobs (those read the logits as they were before sampling changed them), and no prompt
 * logprobs, whose step's logits row (logit_row) is the prompt chunk's first, not the row
 * the draw reads (emit_prompt_logprobs finds that one). */
static bool samples_apart(const struct seq *q)
{
    return q->max_tokens != 0 && q->top_logprobs < 0 && !q->prompt_logprobs;
}

/* The step's draws, shared out among the model's threads: each sequence's sampler (its
 * penalties, filters and random state) and logits row are its own, so which thread draws
 * changes nothing. One after another on the scheduler's thread, 16 draws over SmolLM2's
 * 49152 logits (a softmax each, at the API's default sampling) left the other threads
 * waiting. */
struct draw_job {
    int n;
    struct seq *q[256];
    float *logits[256];
    int32_t *tok[256];
};

static void draw_worker(void *ctx, int ith, int nth)
{
    struct draw_job *j = ctx;
    for (int i = j->n * ith / nth; i < j->n * (ith + 1) / nth; i++) {
        struct seq *q = j->q[i];
        *j->tok[i] = sampler_sample(&q->sampler, j->logits[i], q->tokens, (int)q->n_tokens);
    }
}

/* Emits q's next token, tok, or (tok < 0) samples it from its logits row first; finishes q
 * when done. */
static void sample_next(struct scheduler *s, struct seq *q, float *logits, int32_t tok)
{
    if (q->max_tokens == 0) { /* only the prompt was wanted (echo with logprobs) */
        finish(s, q, KILN_FINISH_LENGTH, KILN_OK, NULL);
        return;
    }
    struct token_logprobs *tl = NULL;
    if (q->top_logprobs >= 0) {
        tl = malloc(sizeof *tl);
        memcpy(s->logits_copy, logits, (size_t)s->n_vocab * sizeof(float));
    }
    if (tok < 0) tok = sampler_sample(&q->sampler, logits, q->tokens, (int)q->n_tokens);
    if (!q->ignore_eos && kiln_model_is_eog(s->model, tok)) {
        free(tl);
        finish(s, q, KILN_FINISH_STOP, KILN_OK, NULL);
        return;
    }
    if (tl) token_logprobs_of(s->logits_copy, s->n_vocab, tok, q->top_logprobs, tl);
    q->tokens[q->n_tokens++] = tok;
    q->n_generated++;
    char piece[256];
    int n = kiln_token_to_piece(s->model, tok, false, piece, sizeof piece);
    const char *text;
    size_t len;
    struct seq_event ev = {.type = SEQ_TOKEN, .token = tok, .logprobs = tl,
                           .n_logprobs = tl != NULL};
    if (n < 0 || text_stream_push(&q->text, piece, (size_t)n, &text, &len) != KILN_OK ||
        !(ev.text = malloc(len + 1))) {
        free(tl);
        finish(s, q, KILN_FINISH_STOP, KILN_ENOMEM, "out of memory for the output text");
        return;
    }
    memcpy(ev.text, text, len);
    ev.text[len] = 0;
    ev.len = len;
    emit(q, &ev);
    if (q->text.stopped) finish(s, q, KILN_FINISH_STOP, KILN_OK, NULL);
    else if (q->n_generated >= q->max_tokens || q->n_tokens >= (size_t)s->n_ctx)
        finish(s, q, KILN_FINISH_LENGTH, KILN_OK, NULL);
}

/* Emits the logprobs of q's prompt positions evaluated in this step (rows from `logits`),
 * once each, even if q is recomputed after a preemption. */
static void emit_prompt_logprobs(struct scheduler *s, struct seq *q, size_t first, int k,
                                 const float *logits)
{
    size_t n_vocab = (size_t)s->n_vocab;
    if (!q->prev_logits && !(q->prev_logits = malloc(n_vocab * sizeof(float)))) return;
    size_t end = first + (size_t)k < q->n_prompt ? first + (size_t)k : q->n_prompt;
    if (end > q->n_prompt_lp) {
        size_t from = first > q->n_prompt_lp ? first : q->n_prompt_lp;
        struct seq_event ev = {.type = SEQ_PROMPT, .n_logprobs = end - from};
        ev.logprobs = calloc(end - from, sizeof *ev.logprobs);
        int n_top = q->top_logprobs > 0 ? q->top_logprobs : 0;
        for (size_t p = from; ev.logprobs && p < end; p++) {
            struct token_logprobs *tl = &ev.logprobs[p - from];
            if (p == 0) *tl = (struct token_logprobs){.token = q->tokens[0], .logprob = NAN};
            else
                token_logprobs_of(p == first ? q->prev_logits : logits + (p - first - 1) * n_vocab,
                                  s->n_vocab, q->tokens[p], n_top, tl);
        }
        if (ev.logprobs) emit(q, &ev);
        q->n_prompt_lp = end;
    }
    memcpy(q->prev_logits, logits + (size_t)(k - 1) * n_vocab, n_vocab * sizeof(float));
}

/* Plans how many tokens of q go into this step (at most budget), allocating their blocks
 * and preempting the newest sequences when the pool is out. False when q itself had to
 * give way. */
static bool plan_sequence(struct scheduler *s, struct seq *q, int budget, bool *lp_chunk_taken)
{
    size_t left = q->n_tokens - q->n_computed;
    size_t k = left < (size_t)budget ? left : (size_t)budget;
    if (q->prompt_logprobs && q->n_computed < q->n_prompt) {
        if (*lp_chunk_taken) k = 0; /* one such chunk per step: its logits are kept whole */
        else if (k > PROMPT_LOGPROB_CHUNK) k = PROMPT_LOGPROB_CHUNK;
        if (k) *lp_chunk_taken = true;
    }
    q->plan_tokens = 0;
    if (k == 0) return true;
    while (!ensure_blocks(s, q, q->n_computed + k)) {
        if (s->running[s->n_running - 1] == q) {
            preempt_newest(s);
            return false;
        }
        preempt_newest(s);
    }
    q->plan_tokens = (int)k;
    return true;
}

static void publish_stats(struct scheduler *s)
{
    pthread_mutex_lock(&s->mu);
    struct sched_stats *st = &s->published;
    st->kv_capacity = s->kv.n_blocks;
    st->kv_used = s->kv.n_blocks - kv_available(&s->kv);
    st->prefix_queries = s->kv.queries * KV_BLOCK_SIZE;
    st->prefix_hits = s->kv.hits * KV_BLOCK_SIZE;
    st->preemptions = s->preemptions;
    pthread_mutex_unlock(&s->mu);
}

/* One step: plan, admit, run the batch, sample. */
static void step(struct scheduler *s)
{
    int budget = s->p.max_batch_tokens;
    bool lp_chunk_taken = false;
    /* Decoding sequences first (one token each), then prefill chunks in arrival order. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < s->n_running; i++) {
            struct seq *q = s->running[i];
            bool decoding = q->n_computed + 1 == q->n_tokens && q->n_computed >= q->n_prompt;
            if (decoding != (pass == 0)) continue;
            if (!plan_sequence(s, q, budget, &lp_chunk_taken)) break; /* q was preempted */
            budget -= q->plan_tokens;
        }
    /* Admit waiting sequences while there is room (first come, first served). */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        struct seq *q = s->wait_head;
        bool room = q && s->n_running < s->p.max_num_seqs && budget > 0 && !s->stopping;
        if (room) {
            s->wait_head = q->next_waiting;
            if (!s->wait_head) s->wait_tail = NULL;
            s->n_waiting--;
        }
        pthread_mutex_unlock(&s->mu);
        if (!room) break;
        if (!start_sequence(s, q)) {
            seq_unref(q);
            continue;
        }
        match_prefix(s, q);
        size_t left = q->n_tokens - q->n_computed;
        size_t k = left < (size_t)budget ? left : (size_t)budget;
        if (q->prompt_logprobs && k > PROMPT_LOGPROB_CHUNK) k = PROMPT_LOGPROB_CHUNK;
        if ((q->prompt_logprobs && lp_chunk_taken) || !ensure_blocks(s, q, q->n_computed + k)) {
            /* no room now: back to the head of the queue, holding nothing */
            release_blocks(s, q);
            pthread_mutex_lock(&s->mu);
            q->next_waiting = s->wait_head;
            s->wait_head = q;
            if (!s->wait_tail) s->wait_tail = q;
            s->n_waiting++;
            pthread_mutex_unlock(&s->mu);
            break;
        }
        if (q->prompt_logprobs) lp_chunk_taken = true;
        if (q->arrival == 0) q->arrival = ++s->next_arrival; /* kept across preemption */
        q->plan_tokens = (int)k;
        budget -= (int)k;
        pthread_mutex_lock(&s->mu);
        /* keep the running array in arrival order: a requeued sequence is older */
        int at = s->n_running;
        while (at > 0 && s->running[at - 1]->arrival > q->arrival) at--;
        memmove(s->running + at + 1, s->running + at, (size_t)(s->n_running - at) * sizeof *s->running);
        s->running[at] = q;
        s->n_running++;
        pthread_mutex_unlock(&s->mu);
    }
    /* Build the batch. */
    int n = 0, rows = 0;
    for (int i = 0; i < s->n_running; i++) {
        struct seq *q = s->running[i];
        q->logit_row = -1;
        if (q->plan_tokens == 0) continue;
        bool lp = q->prompt_logprobs && q->n_computed < q->n_prompt;
        bool ends = q->n_computed + (size_t)q->plan_tokens == q->n_tokens;
        if (lp || ends) q->logit_row = rows;
        for (int t = 0; t < q->plan_tokens; t++, n++) {
            size_t pos = q->n_computed + (size_t)t;
            s->b_tokens[n] = q->tokens[pos];
            s->b_pos[n] = (int32_t)pos;
            s->b_tables[n] = q->table;
            s->b_want[n] = lp || (ends && t == q->plan_tokens - 1);
            rows += s->b_want[n];
        }
    }
    if (n == 0) return;
    struct batch b = {n, s->b_tokens, s->b_pos, s->b_tables, s->b_want};
    forward(&s->fs, &s->kv.store, &b, s->logits);
    /* Advance every planned sequence; those whose tokens are all computed get their next
     * token: drawn first, on the pool's threads, where samples_apart allows, the rest by
     * sample_next as each is emitted. The running array may shrink as sequences finish, so
     * walk a snapshot. */
    struct seq *planned[256];
    int n_planned = 0;
    for (int i = 0; i < s->n_running && n_planned < 256; i++)
        if (s->running[i]->plan_tokens) planned[n_planned++] = s->running[i];
    struct draw_job draws = {.n = 0};
    int32_t drawn[256];
    for (int i = 0; i < n_planned; i++) {
        struct seq *q = planned[i];
        drawn[i] = -1;
        if (q->logit_row >= 0 && q->n_computed + (size_t)q->plan_tokens == q->n_tokens &&
            samples_apart(q)) {
            draws.q[draws.n] = q;
            draws.logits[draws.n] = s->logits + (size_t)q->logit_row * (size_t)s->n_vocab;
            draws.tok[draws.n] = &drawn[i];
            draws.n++;
        }
    }
    if (draws.n > 1) pool_run(s->m->pool, draw_worker, &draws);
    else if (draws.n == 1) draw_worker(&draws, 0, 1);
    for (int i = 0; i < n_planned; i++) {
        struct seq *q = planned[i];
        size_t first = q->n_computed;
        int k = q->plan_tokens;
        q->plan_tokens = 0;
        q->n_computed += (size_t)k;
        register_full_blocks(s, q);
        if (q->logit_row < 0) continue;
        float *row = s->logits + (size_t)q->logit_row * (size_t)s->n_vocab;
        if (q->prompt_logprobs && first < q->n_prompt) {
            emit_prompt_logprobs(s, q, first, k, row);
            row += (size_t)(k - 1) * (size_t)s->n_vocab;
        }
        if (q->n_computed == q->n_tokens) sample_next(s, q, row, drawn[i]);
    }
}

static void *scheduler_main(void *arg)
{
    struct scheduler *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->n_running == 0 && !s->wait_head && !s->calls)
            pthread_cond_wait(&s->work, &s->mu);
        bool stopping = s->stopping;
        /* One call per step, outside the lock, so a stream of calls cannot starve the
         * sequences being generated. */
        if (s->calls && !stopping) {
            struct sched_call *c = s->calls;
            s->calls = c->next;
            c->started = true;
            pthread_mutex_unlock(&s->mu);
            c->fn(c->ctx);
            pthread_mutex_lock(&s->mu);
            c->done = true;
            pthread_cond_broadcast(&s->call_done);
            stopping = s->stopping;
        }
        /* Drop waiting sequences whose clients went away, so they leave within a step. */
        struct seq *dropped = NULL;
        for (struct seq **pp = &s->wait_head, *prev = NULL; *pp;) {
            struct seq *q = *pp;
            if (!atomic_load(&q->canceled) && !stopping) {
                prev = q;
                pp = &q->next_waiting;
                continue;
            }
            *pp = q->next_waiting;
            if (s->wait_tail == q) s->wait_tail = prev;
            s->n_waiting--;
            q->next_waiting = dropped;
            dropped = q;
        }
        pthread_mutex_unlock(&s->mu);
        while (dropped) {
            struct seq *next = dropped->next_waiting;
            bool shutting = stopping && !atomic_load(&dropped->canceled);
            struct seq_event ev = {.type = SEQ_DONE, .finish = KILN_FINISH_CANCELED,
                                   .status = shutting ? KILN_ECANCELED : KILN_OK,
                                   .n_prompt = (int32_t)dropped->n_prompt,
                                   .n_generated = dropped->n_generated};
            if (shutting) snprintf(ev.error, sizeof ev.error, "the server is shutting down");
            emit(dropped, &ev);
            if (dropped->started) {
                sampler_free(&dropped->sampler);
                text_stream_free(&dropped->text);
            }
            release_blocks(s, dropped);
            seq_unref(dropped);
            dropped = next;
        }
        /* Canceled running sequences leave now. */
        for (int i = s->n_running - 1; i >= 0; i--) {
            struct seq *q = s->running[i];
            if (stopping) finish(s, q, KILN_FINISH_CANCELED, KILN_ECANCELED, "the server is shutting down");
            else if (atomic_load(&q->canceled)) finish(s, q, KILN_FINISH_CANCELED, KILN_OK, NULL);
        }
        if (stopping) break;
        step(s);
        publish_stats(s);
    }
    publish_stats(s);
    return NULL;
}

/* ---- lifetime and stats ----------------------------------------------------------------- */

kiln_status scheduler_new(kiln_model *model, const struct sched_params *params,
                          struct scheduler **out, struct kiln_err *err)
{
    if (kiln_model_is_encoder(model))
        return kiln_fail(err, KILN_EUNSUPP, "%s is an embedding model: it cannot generate",
                         kiln_model_desc(model));
    struct scheduler *s = calloc(1, sizeof *s);
    if (!s) return kiln_fail(err, KILN_ENOMEM, "out of memory for the scheduler");
    s->model = model;
    s->m = kiln_model_internal(model);
    s->p = *params;
    if (s->p.max_num_seqs <= 0) s->p.max_num_seqs = 16;
    if (s->p.max_num_seqs > 256) s->p.max_num_seqs = 256;
    if (s->p.max_waiting <= 0) s->p.max_waiting = 256;
    if (s->p.max_batch_tokens <= 0) s->p.max_batch_tokens = 512;
    if (s->p.max_batch_tokens < s->p.max_num_seqs + PROMPT_LOGPROB_CHUNK)
        s->p.max_batch_tokens = s->p.max_num_seqs + PROMPT_LOGPROB_CHUNK;
    s->n_vocab = kiln_model_n_vocab(model);
    int32_t train = kiln_model_n_ctx_train(model);
    s->n_ctx = s->p.n_ctx > 0 ? s->p.n_ctx : train < 4096 ? train : 4096;
    s->max_blocks_per_seq = (s->n_ctx + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
    int n_blocks = s->p.n_kv_blocks > 0 ? s->p.n_kv_blocks : s->max_blocks_per_seq * s->p.max_num_seqs;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->call_done, NULL);
    kiln_status st = kv_cache_init(&s->kv, s->m, s->p.kv_type_set ? s->p.kv_type : DTYPE_F16,
                                   n_blocks, !s->p.no_prefix_cache, err);
    if (st != KILN_OK) goto fail;
    if ((st = forward_state_init(&s->fs, s->m, s->p.max_batch_tokens, s->n_ctx, err)) != KILN_OK)
        goto fail;
    size_t nb = (size_t)s->p.max_batch_tokens, rows = (size_t)s->p.max_num_seqs + PROMPT_LOGPROB_CHUNK;
    s->running = calloc((size_t)s->p.max_num_seqs, sizeof *s->running);
    s->b_tokens = malloc(nb * sizeof *s->b_tokens);
    s->b_pos = malloc(nb * sizeof *s->b_pos);
    s->b_tables = malloc(nb * sizeof *s->b_tables);
    s->b_want = malloc(nb * sizeof *s->b_want);
    s->logits = malloc(rows * (size_t)s->n_vocab * sizeof *s->logits);
    s->logits_copy = malloc((size_t)s->n_vocab * sizeof *s->logits_copy);
    if (!s->running || !s->b_tokens || !s->b_pos || !s->b_tables || !s->b_want || !s->logits ||
        !s->logits_copy) {
        st = kiln_fail(err, KILN_ENOMEM, "out of memory for the scheduler");
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, scheduler_main, s) != 0) {
        st = kiln_fail(err, KILN_ENOMEM, "cannot start the scheduler thread");
        goto fail;
    }
    s->thread_started = true;
    publish_stats(s);
    log_info("scheduler: up to %d sequences of %d tokens, %d tokens per step; KV cache %s, "
             "%d blocks of %d tokens (%zu MiB), prefix caching %s",
             s->p.max_num_seqs, s->n_ctx, s->p.max_batch_tokens,
             dtype_get(s->kv.store.type)->name, n_blocks, KV_BLOCK_SIZE,
             (size_t)2 * (size_t)n_blocks * KV_BLOCK_SIZE * s->kv.store.row_bytes *
                 (size_t)s->m->hp.n_layer >> 20,
             s->kv.prefix_caching ? "on" : "off");
    *out = s;
    return KILN_OK;
fail:
    scheduler_free(s);
    return st;
}

kiln_status scheduler_call(struct scheduler *s, void (*fn)(void *ctx), void *ctx)
{
    struct sched_call c = {fn, ctx, false, false, NULL};
    pthread_mutex_lock(&s->mu);
    struct sched_call **tail = &s->calls;
    while (*tail) tail = &(*tail)->next;
    if (!s->stopping) {
        *tail = &c;
        pthread_cond_signal(&s->work);
    }
    while (!c.done) {
        if (s->stopping && !c.started) { /* never run: take it off the queue */
            for (struct sched_call **pp = &s->calls; *pp; pp = &(*pp)->next)
                if (*pp == &c) {
                    *pp = c.next;
                    break;
                }
            break;
        }
        pthread_cond_wait(&s->call_done, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return c.done ? KILN_OK : KILN_EBUSY;
}

void scheduler_stop(struct scheduler *s)
{
    if (!s || !s->thread_started) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->work);
    pthread_cond_broadcast(&s->call_done); /* queued calls give up */
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->thread_started = false;
}

void scheduler_free(struct scheduler *s)
{
    if (!s) return;
    scheduler_stop(s);
    kv_cache_free(&s->kv);
    forward_state_free(&s->fs);
    free(s->running);
    free(s->b_tokens);
    free(s->b_pos);
    free(s->b_tables);
    free(s->b_want);
    free(s->logits);
    free(s->logits_copy);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->call_done);
    free(s);
}

int32_t scheduler_n_ctx(const struct scheduler *s)
{
    return s->n_ctx;
}

void scheduler_stats(struct scheduler *s, struct sched_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    *out = s->published;
    out->running = s->n_running;
    out->waiting = s->n_waiting;
    pthread_mutex_unlock(&s->mu);
}
