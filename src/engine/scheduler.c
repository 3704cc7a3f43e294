/* The scheduler thread, its queue and the per-sequence channels.
 * Contract: src/engine/scheduler.h.
 *
 * Until the paged KV cache lands, each running sequence owns one of max_num_seqs
 * preallocated contexts, and a step evaluates the sequences one after another. */
#include "engine/scheduler.h"

#include "base/log.h"
#include "base/status.h"
#include "engine/sampler.h"
#include "engine/text_stream.h"

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

    /* scheduler-thread state while running */
    struct seq *next_waiting;
    kiln_context *ctx;
    struct sampler sampler;
    struct text_stream text;
    size_t n_evaluated; /* prompt tokens evaluated so far */
    float *prev_logits; /* [n_vocab]: the last prompt position's, for prompt logprobs */
    int32_t n_generated;
    bool sampler_ready;
};

struct scheduler {
    kiln_model *model;
    struct sched_params p;
    int32_t n_vocab;
    kiln_context **contexts; /* [max_num_seqs] */
    struct seq **running;    /* [max_num_seqs]; NULL where free */
    float *logits;           /* [n_vocab] */
    float *logits_copy;      /* [n_vocab]: before sampling changes them, for logprobs */
    float *prompt_logits;    /* [PROMPT_LOGPROB_CHUNK][n_vocab] */

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu; /* the queue, stopping and the stats */
    pthread_cond_t work;
    struct seq *wait_head, *wait_tail;
    int n_waiting, n_running;
    bool stopping;
    uint64_t prompt_tokens, generated_tokens;
    int64_t kv_used; /* tokens in running contexts after the last step */
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

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
    struct event_node *node = malloc(sizeof *node);
    if (!node) {
        seq_event_free(ev);
        return false;
    }
    ev->time = now_seconds();
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
    bool ok = q->tokens && q->stop && (q->bias || !r->sampling.n_logit_bias);
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
    for (size_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= s->n_vocab)
            return kiln_fail(err, KILN_EINVAL, "token id %d is outside the vocabulary (0..%d)",
                             r->prompt[i], s->n_vocab - 1);
    /* Check the sampling settings now, so a bad one is the request's error. */
    struct sampler probe;
    kiln_status st = sampler_init(&probe, &r->sampling, s->n_vocab, err);
    if (st != KILN_OK) return st;
    sampler_free(&probe);
    struct seq *q = seq_from_request(r);
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

static void finish(struct scheduler *s, int slot, enum kiln_finish why, kiln_status st,
                   const char *error)
{
    struct seq *q = s->running[slot];
    struct seq_event ev = {.type = SEQ_DONE, .finish = why, .status = st,
                           .n_prompt = (int32_t)q->n_prompt, .n_generated = q->n_generated};
    const char *text;
    size_t len;
    if (st == KILN_OK && why != KILN_FINISH_CANCELED &&
        text_stream_finish(&q->text, &text, &len) == KILN_OK && len) {
        ev.text = malloc(len + 1);
        if (ev.text) {
            memcpy(ev.text, text, len + 1);
            ev.len = len;
        }
    }
    if (error) snprintf(ev.error, sizeof ev.error, "%s", error);
    emit(q, &ev);
    if (q->sampler_ready) sampler_free(&q->sampler);
    text_stream_free(&q->text);
    q->ctx = NULL;
    pthread_mutex_lock(&s->mu);
    s->running[slot] = NULL;
    s->n_running--;
    s->generated_tokens += (uint64_t)q->n_generated;
    pthread_mutex_unlock(&s->mu);
    seq_unref(q);
}

/* Samples the next token from s->logits and emits it; finishes the sequence when done. */
static void sample_next(struct scheduler *s, int slot)
{
    struct seq *q = s->running[slot];
    if (q->max_tokens == 0) { /* only the prompt was wanted (echo with logprobs) */
        finish(s, slot, KILN_FINISH_LENGTH, KILN_OK, NULL);
        return;
    }
    struct token_logprobs *tl = NULL;
    if (q->top_logprobs >= 0) {
        tl = malloc(sizeof *tl);
        memcpy(s->logits_copy, s->logits, (size_t)s->n_vocab * sizeof(float));
    }
    int32_t tok = sampler_sample(&q->sampler, s->logits, q->tokens, (int)q->n_tokens);
    if (!q->ignore_eos && kiln_model_is_eog(s->model, tok)) {
        free(tl);
        finish(s, slot, KILN_FINISH_STOP, KILN_OK, NULL);
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
        finish(s, slot, KILN_FINISH_STOP, KILN_ENOMEM, "out of memory for the output text");
        return;
    }
    memcpy(ev.text, text, len);
    ev.text[len] = 0;
    ev.len = len;
    emit(q, &ev);
    if (q->text.stopped) finish(s, slot, KILN_FINISH_STOP, KILN_OK, NULL);
    else if (q->n_generated >= q->max_tokens ||
             kiln_context_n_past(q->ctx) >= kiln_context_n_ctx(q->ctx))
        finish(s, slot, KILN_FINISH_LENGTH, KILN_OK, NULL);
}

/* Evaluates a chunk keeping every position's logits, and emits the chunk's prompt
 * logprobs: position i's logits score token i + 1, and the first token has none. */
static kiln_status prefill_with_logprobs(struct scheduler *s, struct seq *q, size_t chunk,
                                         struct kiln_err *err)
{
    size_t n_vocab = (size_t)s->n_vocab, start = q->n_evaluated;
    kiln_status st = kiln_eval(q->ctx, q->tokens + start, chunk, true, s->prompt_logits, err);
    if (st != KILN_OK) return st;
    if (!q->prev_logits && !(q->prev_logits = malloc(n_vocab * sizeof(float))))
        return kiln_fail(err, KILN_ENOMEM, "out of memory for prompt logprobs");
    struct seq_event ev = {.type = SEQ_PROMPT, .n_logprobs = chunk};
    if (!(ev.logprobs = calloc(chunk, sizeof *ev.logprobs)))
        return kiln_fail(err, KILN_ENOMEM, "out of memory for prompt logprobs");
    int n_top = q->top_logprobs > 0 ? q->top_logprobs : 0;
    for (size_t i = 0; i < chunk; i++) {
        int32_t tok = q->tokens[start + i];
        if (start + i == 0) ev.logprobs[i] = (struct token_logprobs){.token = tok, .logprob = NAN};
        else
            token_logprobs_of(i ? s->prompt_logits + (i - 1) * n_vocab : q->prev_logits,
                              s->n_vocab, tok, n_top, &ev.logprobs[i]);
    }
    emit(q, &ev);
    memcpy(q->prev_logits, s->prompt_logits + (chunk - 1) * n_vocab, n_vocab * sizeof(float));
    memcpy(s->logits, q->prev_logits, n_vocab * sizeof(float));
    return KILN_OK;
}

/* Evaluates the next prompt chunk; after the last one, samples the first token. */
static void prefill_step(struct scheduler *s, int slot)
{
    struct seq *q = s->running[slot];
    struct kiln_err err = {{0}};
    size_t left = q->n_prompt - q->n_evaluated;
    size_t max = q->prompt_logprobs ? PROMPT_LOGPROB_CHUNK : (size_t)s->p.prefill_chunk;
    size_t chunk = left < max ? left : max;
    bool last = chunk == left;
    kiln_status st = q->prompt_logprobs
                         ? prefill_with_logprobs(s, q, chunk, &err)
                         : kiln_eval(q->ctx, q->tokens + q->n_evaluated, chunk, false,
                                     last ? s->logits : NULL, &err);
    if (st != KILN_OK) {
        finish(s, slot, KILN_FINISH_STOP, st, err.msg);
        return;
    }
    q->n_evaluated += chunk;
    if (last) sample_next(s, slot);
}

static void decode_step(struct scheduler *s, int slot)
{
    struct seq *q = s->running[slot];
    struct kiln_err err = {{0}};
    kiln_status st = kiln_eval(q->ctx, &q->tokens[q->n_tokens - 1], 1, false, s->logits, &err);
    if (st != KILN_OK) {
        finish(s, slot, KILN_FINISH_STOP, st, err.msg);
        return;
    }
    sample_next(s, slot);
}

static bool start_sequence(struct scheduler *s, int slot, struct seq *q)
{
    struct kiln_err err = {{0}};
    q->ctx = s->contexts[slot];
    kiln_context_reset(q->ctx);
    text_stream_init(&q->text, (const char *const *)q->stop, q->n_stop);
    s->running[slot] = q;
    if (sampler_init(&q->sampler, &q->sampling, s->n_vocab, &err) != KILN_OK) {
        finish(s, slot, KILN_FINISH_STOP, KILN_EINVAL, err.msg);
        return false;
    }
    q->sampler_ready = true;
    return true;
}

static void *scheduler_main(void *arg)
{
    struct scheduler *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->n_running == 0 && !s->wait_head)
            pthread_cond_wait(&s->work, &s->mu);
        bool stopping = s->stopping;
        /* Drop waiting sequences whose clients went away, so they leave within a step. */
        struct seq *dropped = NULL;
        for (struct seq **pp = &s->wait_head, *prev = NULL; *pp;) {
            struct seq *q = *pp;
            if (!atomic_load(&q->canceled)) {
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
        /* Admit waiting sequences into free slots, first come first served. */
        struct seq *admitted[64];
        int slots[64], n_admitted = 0;
        for (int slot = 0; slot < s->p.max_num_seqs && s->wait_head && !stopping && n_admitted < 64; slot++) {
            if (s->running[slot]) continue;
            struct seq *q = s->wait_head;
            s->wait_head = q->next_waiting;
            if (!s->wait_head) s->wait_tail = NULL;
            s->n_waiting--;
            s->n_running++;
            s->prompt_tokens += q->n_prompt;
            s->running[slot] = q; /* reserve the slot */
            admitted[n_admitted] = q;
            slots[n_admitted++] = slot;
        }
        pthread_mutex_unlock(&s->mu);
        while (dropped) {
            struct seq *next = dropped->next_waiting;
            struct seq_event ev = {.type = SEQ_DONE, .finish = KILN_FINISH_CANCELED,
                                   .n_prompt = (int32_t)dropped->n_prompt};
            emit(dropped, &ev);
            seq_unref(dropped);
            dropped = next;
        }
        for (int i = 0; i < n_admitted; i++) start_sequence(s, slots[i], admitted[i]);
        if (stopping) break;
        for (int slot = 0; slot < s->p.max_num_seqs; slot++) {
            struct seq *q = s->running[slot];
            if (!q) continue;
            if (atomic_load(&q->canceled)) finish(s, slot, KILN_FINISH_CANCELED, KILN_OK, NULL);
            else if (q->n_evaluated < q->n_prompt) prefill_step(s, slot);
            else decode_step(s, slot);
        }
        int64_t used = 0;
        for (int slot = 0; slot < s->p.max_num_seqs; slot++)
            if (s->running[slot]) used += kiln_context_n_past(s->running[slot]->ctx);
        pthread_mutex_lock(&s->mu);
        s->kv_used = used;
        pthread_mutex_unlock(&s->mu);
    }
    /* Shutting down: cancel what runs and what waits. */
    for (int slot = 0; slot < s->p.max_num_seqs; slot++)
        if (s->running[slot]) finish(s, slot, KILN_FINISH_CANCELED, KILN_ECANCELED, "the server is shutting down");
    pthread_mutex_lock(&s->mu);
    struct seq *q = s->wait_head;
    s->wait_head = s->wait_tail = NULL;
    s->n_waiting = 0;
    pthread_mutex_unlock(&s->mu);
    while (q) {
        struct seq *next = q->next_waiting;
        struct seq_event ev = {.type = SEQ_DONE, .finish = KILN_FINISH_CANCELED,
                               .status = KILN_ECANCELED, .n_prompt = (int32_t)q->n_prompt};
        snprintf(ev.error, sizeof ev.error, "the server is shutting down");
        emit(q, &ev);
        seq_unref(q);
        q = next;
    }
    return NULL;
}

/* ---- lifetime and stats ----------------------------------------------------------------- */

kiln_status scheduler_new(kiln_model *model, const struct sched_params *params,
                          struct scheduler **out, struct kiln_err *err)
{
    struct scheduler *s = calloc(1, sizeof *s);
    if (!s) return kiln_fail(err, KILN_ENOMEM, "out of memory for the scheduler");
    s->model = model;
    s->p = *params;
    if (s->p.max_num_seqs <= 0) s->p.max_num_seqs = 4;
    if (s->p.max_waiting <= 0) s->p.max_waiting = 256;
    if (s->p.prefill_chunk <= 0) s->p.prefill_chunk = 256;
    s->n_vocab = kiln_model_n_vocab(model);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    kiln_status st = KILN_ENOMEM;
    s->contexts = calloc((size_t)s->p.max_num_seqs, sizeof *s->contexts);
    s->running = calloc((size_t)s->p.max_num_seqs, sizeof *s->running);
    s->logits = malloc((size_t)s->n_vocab * sizeof *s->logits);
    s->logits_copy = malloc((size_t)s->n_vocab * sizeof *s->logits_copy);
    s->prompt_logits = malloc((size_t)PROMPT_LOGPROB_CHUNK * (size_t)s->n_vocab * sizeof(float));
    if (!s->contexts || !s->running || !s->logits || !s->logits_copy || !s->prompt_logits) {
        kiln_fail(err, st, "out of memory for the scheduler");
        goto fail;
    }
    for (int i = 0; i < s->p.max_num_seqs; i++)
        if ((st = kiln_context_new(model, s->p.n_ctx, &s->contexts[i], err)) != KILN_OK) goto fail;
    if (pthread_create(&s->thread, NULL, scheduler_main, s) != 0) {
        st = kiln_fail(err, KILN_ENOMEM, "cannot start the scheduler thread");
        goto fail;
    }
    s->thread_started = true;
    log_info("scheduler: %d sequences of %d tokens, %d more may wait", s->p.max_num_seqs,
             scheduler_n_ctx(s), s->p.max_waiting);
    *out = s;
    return KILN_OK;
fail:
    scheduler_free(s);
    return st;
}

void scheduler_stop(struct scheduler *s)
{
    if (!s || !s->thread_started) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->thread_started = false;
}

void scheduler_free(struct scheduler *s)
{
    if (!s) return;
    scheduler_stop(s);
    for (int i = 0; s->contexts && i < s->p.max_num_seqs; i++) kiln_context_free(s->contexts[i]);
    free(s->contexts);
    free(s->running);
    free(s->logits);
    free(s->logits_copy);
    free(s->prompt_logits);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    free(s);
}

int32_t scheduler_n_ctx(const struct scheduler *s)
{
    return kiln_context_n_ctx(s->contexts[0]);
}

void scheduler_stats(struct scheduler *s, struct sched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    out->running = s->n_running;
    out->waiting = s->n_waiting;
    out->prompt_tokens = s->prompt_tokens;
    out->generated_tokens = s->generated_tokens;
    out->kv_capacity = (int64_t)s->p.max_num_seqs * scheduler_n_ctx(s);
    out->kv_used = s->kv_used;
    pthread_mutex_unlock(&s->mu);
}
