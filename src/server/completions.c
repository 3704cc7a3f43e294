/* POST /v1/chat/completions and /v1/completions: turns a validated request into one
 * sequence per prompt and choice, gathers their events, and answers with one JSON body or
 * a stream of Server-Sent Events in OpenAI's shapes. */
#include "server/server_internal.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "engine/text_stream.h"
#include "template/chat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define WAIT_SLICE_MS 50 /* how long to wait for events before checking the client */

struct choice {
    struct seq *seq;
    int index, prompt_index;
    bool done, role_sent;
    struct buf text; /* what the sequence has produced */
    json_t *logprobs;     /* chat: content array; completions: the four arrays in an object */
    size_t text_offset;   /* completions: where the next token's text starts */
    enum kiln_finish finish;
    kiln_status status;
    char error[256];
    int n_prompt, n_generated;
    double first_token, last_token;
};

struct generation {
    struct request *req;
    struct server *srv;
    struct oai_request r;
    char id[48];
    long created;
    struct choice *choices;
    size_t n_choices;
    int prompt_tokens;
    char **echo_text; /* completions with echo: each prompt's text */
    /* streaming */
    struct buf pending; /* SSE bytes not yet handed to the connection */
    size_t pending_off;
    bool usage_sent, done_sent;
    double start;
};

/* ---- helpers ---------------------------------------------------------------------------- */

static uint64_t random_u64(void)
{
    uint64_t x = 0;
    if (getrandom(&x, sizeof x, 0) != sizeof x) x = (uint64_t)time(NULL) ^ (uint64_t)clock();
    return x;
}

char *server_detokenize(struct server *srv, const int32_t *ids, size_t n, bool render_special)
{
    struct buf raw = {0};
    for (size_t i = 0; i < n; i++) {
        char piece[256];
        int k = kiln_token_to_piece(srv->model, ids[i], render_special, piece, sizeof piece);
        if (!buf_append(&raw, piece, k > 0 ? (size_t)k : 0)) {
            buf_free(&raw);
            return NULL;
        }
    }
    char *clean = malloc(3 * raw.len + 1);
    if (clean) utf8_sanitize(clean, raw.p ? raw.p : "", raw.len);
    buf_free(&raw);
    return clean;
}

char *render_chat(struct server *srv, json_t *messages, json_t *tools, struct kiln_err *err,
                  kiln_status *st)
{
    char *out = NULL;
    *st = chat_render(srv->chat_template, srv->model, messages, tools, true, &out, err);
    return *st == KILN_OK ? out : NULL;
}

/* A token as text for logprobs (special tokens shown) in valid UTF-8: clean gets the text
 * (3 * 256 + 1 bytes of room), piece the raw bytes (256); returns the text's length and
 * sets *n_bytes. */
static size_t token_text(struct server *srv, int32_t token, char *clean, char *piece, int *n_bytes)
{
    int n = kiln_token_to_piece(srv->model, token, true, piece, 256);
    *n_bytes = n > 0 ? n : 0;
    return utf8_sanitize(clean, piece, (size_t)*n_bytes);
}

/* The text alone (completions), or {token, logprob, bytes} (chat). */
static json_t *token_entry(struct server *srv, int32_t token, float logprob, bool chat)
{
    char piece[256], clean[3 * 256 + 1];
    int n;
    size_t len = token_text(srv, token, clean, piece, &n);
    if (!chat) return json_stringn(clean, len);
    json_t *bytes = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(bytes, json_integer((unsigned char)piece[i]));
    return json_pack("{s:s%, s:f, s:o}", "token", clean, len, "logprob", (double)logprob,
                     "bytes", bytes);
}

/* Adds one token's logprobs to a choice: chat appends to its content array; completions
 * to its tokens / token_logprobs / top_logprobs / text_offset arrays. */
static void add_logprobs(struct generation *g, struct choice *c, const struct token_logprobs *tl,
                         size_t token_text_len)
{
    bool chat = g->r.kind == OAI_CHAT;
    if (!c->logprobs)
        c->logprobs = chat ? json_array()
                           : json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs",
                                       "top_logprobs", "text_offset");
    if (chat) {
        json_t *e = token_entry(g->srv, tl->token, tl->logprob, true);
        json_t *top = json_array();
        for (int k = 0; k < tl->n_top && k < g->r.top_logprobs; k++)
            json_array_append_new(top, token_entry(g->srv, tl->top[k].token, tl->top[k].logprob, true));
        json_object_set_new(e, "top_logprobs", top);
        json_array_append_new(c->logprobs, e);
        return;
    }
    json_array_append_new(json_object_get(c->logprobs, "tokens"),
                          token_entry(g->srv, tl->token, 0, false));
    json_array_append_new(json_object_get(c->logprobs, "token_logprobs"),
                          isnan(tl->logprob) ? json_null() : json_real(tl->logprob));
    json_t *top = json_object();
    for (int k = 0; k < tl->n_top && k < g->r.top_logprobs; k++) {
        char piece[256], key[3 * 256 + 1];
        int n;
        token_text(g->srv, tl->top[k].token, key, piece, &n);
        json_object_set_new(top, key, json_real(tl->top[k].logprob));
    }
    json_array_append_new(json_object_get(c->logprobs, "top_logprobs"),
                          isnan(tl->logprob) ? (json_decref(top), json_null()) : top);
    json_array_append_new(json_object_get(c->logprobs, "text_offset"),
                          json_integer((json_int_t)c->text_offset));
    c->text_offset += token_text_len;
}

static const char *finish_name(const struct choice *c)
{
    if (c->status != KILN_OK) return c->finish == KILN_FINISH_CANCELED ? "canceled" : "error";
    return c->finish == KILN_FINISH_LENGTH ? "length" : c->finish == KILN_FINISH_CANCELED ? "canceled" : "stop";
}

/* ---- submitting --------------------------------------------------------------------------- */

static void release_all(struct generation *g)
{
    for (size_t i = 0; i < g->n_choices; i++) {
        struct choice *c = &g->choices[i];
        if (c->seq) {
            if (!c->done) metrics_generation(g->srv->metrics, "canceled", 0, c->n_generated, -1,
                                             clock_seconds() - g->start);
            seq_release(c->seq);
            c->seq = NULL;
        }
    }
}

static void generation_free(struct generation *g)
{
    if (!g) return;
    release_all(g);
    for (size_t i = 0; i < g->n_choices; i++) {
        buf_free(&g->choices[i].text);
        json_decref(g->choices[i].logprobs);
    }
    for (size_t i = 0; g->echo_text && i < g->r.n_prompts; i++) free(g->echo_text[i]);
    free(g->echo_text);
    free(g->choices);
    buf_free(&g->pending);
    oai_request_free(&g->r);
    free(g);
}

/* Tokenizes every prompt and submits one sequence per prompt and choice. On failure sends
 * the error response and returns false. */
static bool submit_all(struct generation *g, enum MHD_Result *result)
{
    struct server *srv = g->srv;
    struct request *req = g->req;
    struct oai_request *r = &g->r;
    size_t n_prompts = r->kind == OAI_CHAT ? 1 : r->n_prompts;
    g->n_choices = n_prompts * (size_t)r->n;
    g->choices = calloc(g->n_choices, sizeof *g->choices);
    if (r->echo) g->echo_text = calloc(n_prompts, sizeof *g->echo_text);
    if (!g->choices || (r->echo && !g->echo_text)) {
        *result = send_error(req, 503, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    const char *param = r->kind == OAI_CHAT ? "messages" : "prompt";
    for (size_t p = 0; p < n_prompts; p++) {
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (r->kind == OAI_CHAT) {
            struct kiln_err err = {{0}};
            kiln_status st;
            char *text = render_chat(srv, r->messages, r->tools, &err, &st);
            if (!text) {
                *result = st == KILN_EINVAL || st == KILN_ERANGE
                              ? send_error(req, 400, "invalid_request_error", "messages", NULL, "%s", err.msg)
                              : send_error(req, 500, "server_error", NULL, NULL,
                                           "the chat template failed: %s", err.msg);
                return false;
            }
            ids = kiln_tokenize_new(srv->model, text, strlen(text), false, true, &n_ids);
            free(text);
        } else if (r->prompts[p].text) {
            ids = kiln_tokenize_new(srv->model, r->prompts[p].text, r->prompts[p].text_len, true,
                                    true, &n_ids);
            if (r->echo) g->echo_text[p] = strndup(r->prompts[p].text, r->prompts[p].text_len);
        } else {
            ids = malloc((r->prompts[p].n_ids ? r->prompts[p].n_ids : 1) * sizeof *ids);
            if (ids) memcpy(ids, r->prompts[p].ids, r->prompts[p].n_ids * sizeof *ids);
            n_ids = r->prompts[p].n_ids;
            if (r->echo) g->echo_text[p] = server_detokenize(srv, r->prompts[p].ids, n_ids, false);
        }
        if (!ids) {
            *result = send_error(req, 503, "server_error", NULL, NULL, "out of memory");
            return false;
        }
        if (n_ids == 0) {
            free(ids);
            *result = send_error(req, 400, "invalid_request_error", param, NULL, "the prompt is empty");
            return false;
        }
        int32_t n_ctx = scheduler_n_ctx(srv->sched);
        int32_t max_tokens = r->max_tokens >= 0 ? r->max_tokens : n_ctx - (int32_t)n_ids;
        if (max_tokens < 1 && !(r->echo && r->max_tokens == 0)) max_tokens = 1; /* reported below */
        g->prompt_tokens += (int)n_ids;
        for (int j = 0; j < r->n; j++) {
            struct choice *c = &g->choices[p * (size_t)r->n + (size_t)j];
            c->index = (int)(p * (size_t)r->n + (size_t)j);
            c->prompt_index = (int)p;
            struct seq_request sr = {
                .prompt = ids, .n_prompt = n_ids, .sampling = r->sampling,
                .max_tokens = max_tokens, .stop = r->stop, .n_stop = r->n_stop,
                .ignore_eos = r->ignore_eos, .top_logprobs = r->logprobs ? r->top_logprobs : -1,
                .prompt_logprobs = r->echo && r->logprobs && j == 0,
            };
            /* distinct but reproducible choices: seed + choice index */
            sr.sampling.seed = r->seed_given ? r->sampling.seed + (uint64_t)c->index : random_u64();
            struct kiln_err err = {{0}};
            kiln_status st = scheduler_submit(srv->sched, &sr, &c->seq, &err);
            if (st != KILN_OK) {
                free(ids);
                *result = st == KILN_EBUSY
                              ? send_error(req, 503, "server_error", NULL, NULL, "%s; retry later", err.msg)
                          : st == KILN_ERANGE
                              ? send_error(req, 400, "invalid_request_error", param,
                                           "context_length_exceeded", "%s", err.msg)
                              : send_error(req, 400, "invalid_request_error", NULL, NULL, "%s", err.msg);
                return false;
            }
        }
        free(ids);
    }
    req->prompt_tokens = g->prompt_tokens;
    return true;
}

/* ---- non-streaming -------------------------------------------------------------------- */

static json_t *usage_json(struct generation *g)
{
    int completion = 0;
    for (size_t i = 0; i < g->n_choices; i++) completion += g->choices[i].n_generated;
    g->req->completion_tokens = completion;
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", (json_int_t)g->prompt_tokens,
                     "completion_tokens", (json_int_t)completion, "total_tokens",
                     (json_int_t)(g->prompt_tokens + completion));
}

static json_t *choice_json(struct generation *g, struct choice *c)
{
    const char *finish = c->finish == KILN_FINISH_LENGTH ? "length" : "stop";
    json_t *lp = json_null();
    if (g->r.logprobs) lp = g->r.kind == OAI_CHAT
                                ? json_pack("{s:O, s:n}", "content", c->logprobs ? c->logprobs : json_array(), "refusal")
                                : json_incref(c->logprobs ? c->logprobs : json_null());
    if (g->r.kind == OAI_CHAT)
        return json_pack("{s:i, s:{s:s, s:s%, s:n}, s:o, s:s}", "index", (json_int_t)c->index,
                         "message", "role", "assistant", "content", c->text.p ? c->text.p : "", c->text.len,
                         "refusal", "logprobs", lp, "finish_reason", finish);
    size_t echo_len = g->echo_text && g->echo_text[c->prompt_index] ? strlen(g->echo_text[c->prompt_index]) : 0;
    struct buf full = {0};
    if (!buf_append(&full, g->echo_text ? g->echo_text[c->prompt_index] : NULL, echo_len) ||
        !buf_append(&full, c->text.p, c->text.len)) {
        buf_free(&full);
        return json_null();
    }
    json_t *j = json_pack("{s:i, s:s%, s:o, s:s}", "index", (json_int_t)c->index, "text", full.p,
                          full.len, "logprobs", lp, "finish_reason", finish);
    buf_free(&full);
    return j;
}

static json_t *response_json(struct generation *g)
{
    json_t *choices = json_array();
    for (size_t i = 0; i < g->n_choices; i++) json_array_append_new(choices, choice_json(g, &g->choices[i]));
    return json_pack("{s:s, s:s, s:i, s:s, s:o, s:o, s:s}", "id", g->id, "object",
                     g->r.kind == OAI_CHAT ? "chat.completion" : "text_completion", "created",
                     (json_int_t)g->created, "model", g->srv->model_id, "choices", choices,
                     "usage", usage_json(g), "system_fingerprint", "kiln");
}

/* Records a finished choice in the metrics (ttft and end-to-end from the request start). */
static void finish_metrics(struct generation *g, struct choice *c)
{
    metrics_generation(g->srv->metrics, finish_name(c), c->index == c->prompt_index * g->r.n ? c->n_prompt : 0,
                       c->n_generated, c->first_token ? c->first_token - g->start : -1,
                       clock_seconds() - g->start);
}

/* Reads events of unfinished choices for up to one wait slice. Returns false when all done. */
static bool pump(struct generation *g, void (*on_event)(struct generation *, struct choice *,
                                                       const struct seq_event *))
{
    bool any_open = false, got = false;
    for (int pass = 0; pass < 2 && !got; pass++)
        for (size_t i = 0; i < g->n_choices; i++) {
            struct choice *c = &g->choices[i];
            if (c->done) continue;
            any_open = true;
            struct seq_event ev;
            /* first pass: take what is ready; second: wait on the first open choice */
            int timeout = pass == 0 ? 0 : WAIT_SLICE_MS;
            while (seq_next_event(c->seq, &ev, timeout)) {
                got = true;
                on_event(g, c, &ev);
                seq_event_free(&ev);
                if (c->done) {
                    finish_metrics(g, c);
                    break;
                }
                timeout = 0;
            }
            if (pass == 1) break;
        }
    return any_open;
}

static void collect_event(struct generation *g, struct choice *c, const struct seq_event *ev)
{
    if (ev->len) buf_append(&c->text, ev->text, ev->len);
    if (ev->type == SEQ_DONE) {
        c->done = true;
        c->finish = ev->finish;
        c->status = ev->status;
        c->n_prompt = ev->n_prompt;
        c->n_generated = ev->n_generated;
        snprintf(c->error, sizeof c->error, "%s", ev->error);
        return;
    }
    if (ev->type == SEQ_TOKEN) {
        if (c->first_token == 0) c->first_token = ev->time;
        else metrics_inter_token(g->srv->metrics, ev->time - c->last_token);
        c->last_token = ev->time;
    }
    if (ev->type == SEQ_PROMPT || ev->logprobs)
        for (size_t i = 0; i < ev->n_logprobs; i++) {
            size_t text_len = ev->len;
            if (ev->type == SEQ_PROMPT) {
                char piece[256];
                int n = kiln_token_to_piece(g->srv->model, ev->logprobs[i].token, false, piece, sizeof piece);
                text_len = n > 0 ? (size_t)n : 0;
            }
            add_logprobs(g, c, &ev->logprobs[i], text_len);
        }
}

static bool any_failed(struct generation *g, struct choice **which)
{
    for (size_t i = 0; i < g->n_choices; i++)
        if (g->choices[i].status != KILN_OK) {
            *which = &g->choices[i];
            return true;
        }
    return false;
}

static enum MHD_Result respond_whole(struct generation *g)
{
    while (pump(g, collect_event))
        if (client_gone(g->req)) {
            log_info("%s: client went away; canceling", g->id);
            generation_free(g);
            return MHD_NO;
        }
    struct choice *bad;
    enum MHD_Result r;
    if (any_failed(g, &bad))
        r = send_error(g->req, bad->status == KILN_ECANCELED ? 503 : 500, "server_error", NULL,
                       NULL, "generation failed: %s", bad->error);
    else
        r = send_json(g->req, 200, response_json(g));
    generation_free(g);
    return r;
}

/* ---- streaming -------------------------------------------------------------------------- */

/* Queues one Server-Sent Event carrying json (a NUL-terminated text). */
static void put_event(struct generation *g, const char *json)
{
    buf_append(&g->pending, "data: ", 6);
    buf_append(&g->pending, json, strlen(json));
    buf_append(&g->pending, "\n\n", 2);
}

/* Queues value as an event (and frees it). */
static void put_json_event(struct generation *g, json_t *value)
{
    char *s = json_dumps(value, JSON_COMPACT);
    json_decref(value);
    if (s) put_event(g, s);
    free(s);
}

static void send_chunk(struct generation *g, json_t *chunk)
{
    if (g->r.include_usage) json_object_set_new(chunk, "usage", json_null());
    put_json_event(g, chunk);
}

static json_t *chunk_json(struct generation *g, json_t *choice)
{
    return json_pack("{s:s, s:s, s:i, s:s, s:s, s:[o]}", "id", g->id, "object",
                     g->r.kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)g->created, "model", g->srv->model_id,
                     "system_fingerprint", "kiln", "choices", choice);
}

/* Moves the logprobs gathered for a choice into a chunk's logprobs field. */
static json_t *take_logprobs(struct generation *g, struct choice *c)
{
    if (!g->r.logprobs || !c->logprobs) return json_null();
    json_t *lp = g->r.kind == OAI_CHAT ? json_pack("{s:o, s:n}", "content", c->logprobs, "refusal")
                                       : c->logprobs;
    c->logprobs = NULL;
    return lp;
}

static void stream_event(struct generation *g, struct choice *c, const struct seq_event *ev)
{
    bool chat = g->r.kind == OAI_CHAT;
    if (chat && !c->role_sent) {
        c->role_sent = true;
        send_chunk(g, chunk_json(g, json_pack("{s:i, s:{s:s, s:s}, s:n, s:n}", "index",
                                              (json_int_t)c->index, "delta", "role", "assistant",
                                              "content", "", "logprobs", "finish_reason")));
    }
    if (!chat && !c->role_sent) { /* completions: the echoed prompt comes first */
        c->role_sent = true;
        const char *echo = g->echo_text ? g->echo_text[c->prompt_index] : NULL;
        if (echo && *echo) {
            if (ev->type == SEQ_PROMPT) collect_event(g, c, ev);
            send_chunk(g, chunk_json(g, json_pack("{s:i, s:s, s:o, s:n}", "index", (json_int_t)c->index,
                                                  "text", echo, "logprobs", take_logprobs(g, c),
                                                  "finish_reason")));
            if (ev->type == SEQ_PROMPT) return;
        }
    }
    collect_event(g, c, ev);
    /* this event's text is the last ev->len bytes of c->text */
    if (ev->type == SEQ_PROMPT) return;
    bool has_lp = g->r.logprobs && c->logprobs;
    if (ev->len || has_lp) {
        json_t *delta_text = json_stringn(c->text.p + c->text.len - ev->len, ev->len);
        json_t *choice = chat ? json_pack("{s:i, s:{s:o}, s:o, s:n}", "index", (json_int_t)c->index,
                                          "delta", "content", delta_text, "logprobs",
                                          take_logprobs(g, c), "finish_reason")
                              : json_pack("{s:i, s:o, s:o, s:n}", "index", (json_int_t)c->index,
                                          "text", delta_text, "logprobs", take_logprobs(g, c),
                                          "finish_reason");
        send_chunk(g, chunk_json(g, choice));
    }
    if (c->done && c->status == KILN_OK) {
        const char *finish = c->finish == KILN_FINISH_LENGTH ? "length" : "stop";
        json_t *choice = chat ? json_pack("{s:i, s:{}, s:n, s:s}", "index", (json_int_t)c->index,
                                          "delta", "logprobs", "finish_reason", finish)
                              : json_pack("{s:i, s:s, s:n, s:s}", "index", (json_int_t)c->index,
                                          "text", "", "logprobs", "finish_reason", finish);
        send_chunk(g, chunk_json(g, choice));
    } else if (c->done) {
        char msg[300];
        snprintf(msg, sizeof msg, "generation failed: %s", c->error);
        put_json_event(g, json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", msg, "type",
                                    "server_error", "param", "code"));
    }
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct generation *g = cls;
    for (;;) {
        if (g->pending_off < g->pending.len) {
            size_t n = g->pending.len - g->pending_off;
            if (n > max) n = max;
            memcpy(buf, g->pending.p + g->pending_off, n);
            g->pending_off += n;
            if (g->pending_off == g->pending.len) g->pending_off = g->pending.len = 0;
            return (ssize_t)n;
        }
        if (g->done_sent) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!pump(g, stream_event)) {
            if (g->r.include_usage && !g->usage_sent) {
                g->usage_sent = true;
                json_t *chunk = json_pack("{s:s, s:s, s:i, s:s, s:[], s:o}", "id", g->id, "object",
                                          g->r.kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion",
                                          "created", (json_int_t)g->created, "model", g->srv->model_id,
                                          "choices", "usage", usage_json(g));
                put_json_event(g, chunk);
            } else {
                json_decref(usage_json(g)); /* sets the access log's token count */
                put_event(g, "[DONE]");
                g->done_sent = true;
            }
            continue;
        }
        if (g->pending.len == 0 && client_gone(g->req)) {
            log_info("%s: client went away mid-stream; canceling", g->id);
            release_all(g);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls)
{
    generation_free(cls);
}

static enum MHD_Result respond_stream(struct generation *g)
{
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, g, stream_free);
    if (!resp) {
        generation_free(g);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    struct request *req = g->req; /* destroying an unqueued response frees g */
    add_common_headers(req, resp);
    enum MHD_Result r = MHD_queue_response(req->conn, 200, resp);
    MHD_destroy_response(resp);
    if (r == MHD_YES) req->status = 200;
    return r;
}

/* ---- the handler ------------------------------------------------------------------------ */

enum MHD_Result handle_completion(struct request *req, enum oai_kind kind)
{
    struct server *srv = req->srv;
    if (!srv->sched)
        return send_error(req, 400, "invalid_request_error", "model", NULL,
                          "the model '%s' is an embedding model: use /v1/embeddings",
                          srv->model_id);
    struct generation *g = calloc(1, sizeof *g);
    if (!g) return send_error(req, 503, "server_error", NULL, NULL, "out of memory");
    g->req = req;
    g->srv = srv;
    g->start = req->start;
    struct oai_error err;
    if (!oai_parse_request(kind, req->body.p, req->body.len, kiln_model_n_vocab(srv->model), &g->r, &err)) {
        free(g);
        return send_oai_error(req, &err);
    }
    if (g->r.model && strcmp(g->r.model, srv->model_id) != 0) {
        enum MHD_Result r = send_error(req, 404, "invalid_request_error", "model", "model_not_found",
                                       "the model '%s' does not exist; this server serves '%s'",
                                       g->r.model, srv->model_id);
        generation_free(g);
        return r;
    }
    /* The read timeout is for clients that stall while sending; a long prefill must not
     * count as idleness (on_completed restores it for the next request). */
    MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    snprintf(g->id, sizeof g->id, "%s-%016llx", kind == OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)random_u64());
    g->created = (long)time(NULL);
    enum MHD_Result result;
    if (!submit_all(g, &result)) {
        generation_free(g);
        return result;
    }
    return g->r.stream ? respond_stream(g) : respond_whole(g);
}
