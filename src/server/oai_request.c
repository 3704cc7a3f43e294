/* OpenAI request parsing and validation. Contract: src/server/oai_request.h. */
#include "server/oai_request.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool oai_fail(struct oai_error *err, int status, const char *type, const char *param,
              const char *fmt, ...)
{
    err->status = status;
    err->type = type;
    err->code = NULL;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

#define BAD(param, ...) oai_fail(err, 400, "invalid_request_error", param, __VA_ARGS__)

/* A field that is absent or null counts as not given. */
static json_t *field(json_t *root, const char *name)
{
    json_t *v = json_object_get(root, name);
    return v && !json_is_null(v) ? v : NULL;
}

static bool get_number(json_t *root, const char *name, double lo, double hi, float *out,
                       struct oai_error *err)
{
    json_t *v = field(root, name);
    if (!v) return true;
    if (!json_is_number(v)) return BAD(name, "'%s' must be a number", name);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return BAD(name, "'%s' must be between %g and %g, got %g", name, lo, hi, d);
    *out = (float)d;
    return true;
}

static bool get_int(json_t *root, const char *name, long long lo, long long hi, long long *out,
                    struct oai_error *err)
{
    json_t *v = field(root, name);
    if (!v) return true;
    if (!json_is_integer(v)) return BAD(name, "'%s' must be an integer", name);
    long long i = json_integer_value(v);
    if (i < lo || i > hi) return BAD(name, "'%s' must be between %lld and %lld, got %lld", name, lo, hi, i);
    *out = i;
    return true;
}

static bool get_bool(json_t *root, const char *name, bool *out, struct oai_error *err)
{
    json_t *v = field(root, name);
    if (!v) return true;
    if (!json_is_boolean(v)) return BAD(name, "'%s' must be a boolean", name);
    *out = json_is_true(v);
    return true;
}

/* A message's content as one string: a string, null, or text parts joined by newlines. */
static bool content_text(json_t *content, size_t index, json_t **out, struct oai_error *err)
{
    char param[48];
    snprintf(param, sizeof param, "messages[%zu].content", index);
    if (!content || json_is_null(content)) {
        *out = json_string("");
        return true;
    }
    if (json_is_string(content)) {
        *out = json_incref(content);
        return true;
    }
    if (!json_is_array(content)) return BAD(param, "'%s' must be a string or an array of content parts", param);
    size_t total = 0, i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type))
            return BAD(param, "'%s[%zu]' must be an object with a 'type'", param, i);
        if (strcmp(json_string_value(type), "text") != 0)
            return BAD(param, "content part type '%s' is not supported (only 'text')", json_string_value(type));
        if (!json_is_string(text)) return BAD(param, "'%s[%zu].text' must be a string", param, i);
        total += json_string_length(text) + 1;
    }
    char *buf = malloc(total + 1), *p = buf;
    if (!buf) return oai_fail(err, 503, "server_error", NULL, "out of memory");
    json_array_foreach(content, i, part) {
        json_t *text = json_object_get(part, "text");
        if (i) *p++ = '\n';
        memcpy(p, json_string_value(text), json_string_length(text));
        p += json_string_length(text);
    }
    *out = json_stringn(buf, (size_t)(p - buf));
    free(buf);
    return *out != NULL || BAD(param, "'%s' is not valid UTF-8", param);
}

static bool parse_messages(json_t *root, struct oai_request *r, struct oai_error *err)
{
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool", "function", NULL};
    json_t *msgs = json_object_get(root, "messages");
    if (!msgs) return BAD("messages", "'messages' is required");
    if (!json_is_array(msgs)) return BAD("messages", "'messages' must be an array");
    if (json_array_size(msgs) == 0) return BAD("messages", "'messages' must not be empty");
    r->messages = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char param[48];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m)) return BAD(param, "'%s' must be an object", param);
        json_t *role = json_object_get(m, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_is_string(role)) return BAD(param, "'%s' must be a string", param);
        bool known = false;
        for (int k = 0; roles[k]; k++) known |= !strcmp(roles[k], json_string_value(role));
        if (!known) return BAD(param, "'%s' must be one of system, developer, user, assistant, tool", param);
        json_t *content = NULL;
        if (!content_text(json_object_get(m, "content"), i, &content, err)) return false;
        json_t *copy = json_copy(m);
        json_object_set_new(copy, "content", content);
        json_array_append_new(r->messages, copy);
    }
    json_t *tools = field(root, "tools");
    if (tools && !json_is_array(tools)) return BAD("tools", "'tools' must be an array");
    r->tools = tools;
    return true;
}

static bool parse_ids(json_t *arr, int32_t n_vocab, const char *param, struct oai_prompt *p,
                      struct oai_error *err)
{
    size_t n = json_array_size(arr), i;
    json_t *v;
    p->ids = malloc((n ? n : 1) * sizeof *p->ids);
    if (!p->ids) return oai_fail(err, 503, "server_error", NULL, "out of memory");
    json_array_foreach(arr, i, v) {
        if (!json_is_integer(v)) return BAD(param, "'%s' must hold token ids (integers)", param);
        long long id = json_integer_value(v);
        if (id < 0 || id >= n_vocab) return BAD(param, "token id %lld in '%s' is outside the vocabulary (0..%d)", id, param, n_vocab - 1);
        p->ids[i] = (int32_t)id;
    }
    p->n_ids = n;
    return true;
}

/* The completions prompt or the embeddings input (name): a string, token ids, or an array
 * of either, at most max of them. */
static bool parse_prompts(json_t *root, const char *name, size_t max, int32_t n_vocab,
                          struct oai_request *r, struct oai_error *err)
{
    json_t *prompt = json_object_get(root, name);
    if (!prompt || json_is_null(prompt)) return BAD(name, "'%s' is required", name);
    char shape[160];
    snprintf(shape, sizeof shape, "'%s' must be a string, an array of strings, an array of "
             "token ids or an array of arrays of token ids", name);
    if (json_is_string(prompt) || (json_is_array(prompt) && json_array_size(prompt) > 0 &&
                                   json_is_integer(json_array_get(prompt, 0)))) {
        r->prompts = calloc(1, sizeof *r->prompts);
        if (!r->prompts) return oai_fail(err, 503, "server_error", NULL, "out of memory");
        r->n_prompts = 1;
        if (json_is_string(prompt)) {
            r->prompts[0].text = json_string_value(prompt);
            r->prompts[0].text_len = json_string_length(prompt);
            return true;
        }
        return parse_ids(prompt, n_vocab, name, &r->prompts[0], err);
    }
    if (!json_is_array(prompt) || json_array_size(prompt) == 0) return BAD(name, "%s", shape);
    size_t n = json_array_size(prompt), i;
    if (n > max) return BAD(name, "at most %zu inputs in '%s' per request", max, name);
    r->prompts = calloc(n, sizeof *r->prompts);
    if (!r->prompts) return oai_fail(err, 503, "server_error", NULL, "out of memory");
    r->n_prompts = n;
    json_t *v;
    json_array_foreach(prompt, i, v) {
        char param[32];
        snprintf(param, sizeof param, "%s[%zu]", name, i);
        if (json_is_string(v)) {
            r->prompts[i].text = json_string_value(v);
            r->prompts[i].text_len = json_string_length(v);
        } else if (json_is_array(v)) {
            if (!parse_ids(v, n_vocab, param, &r->prompts[i], err)) return false;
        } else
            return BAD(name, "%s", shape);
    }
    return true;
}

static bool parse_stop(json_t *root, struct oai_request *r, struct oai_error *err)
{
    json_t *stop = field(root, "stop");
    if (!stop) return true;
    if (json_is_string(stop)) {
        if (json_string_length(stop) > 0) r->stop[r->n_stop++] = json_string_value(stop);
        return true;
    }
    if (!json_is_array(stop)) return BAD("stop", "'stop' must be a string or an array of strings");
    if (json_array_size(stop) > OAI_MAX_STOP) return BAD("stop", "at most %d stop strings", OAI_MAX_STOP);
    size_t i;
    json_t *v;
    json_array_foreach(stop, i, v) {
        if (!json_is_string(v)) return BAD("stop", "'stop' must be a string or an array of strings");
        if (json_string_length(v) > 0) r->stop[r->n_stop++] = json_string_value(v);
    }
    return true;
}

static bool parse_logit_bias(json_t *root, int32_t n_vocab, struct oai_request *r,
                             struct oai_error *err)
{
    json_t *lb = field(root, "logit_bias");
    if (!lb) return true;
    if (!json_is_object(lb)) return BAD("logit_bias", "'logit_bias' must be an object of token id to bias");
    size_t n = json_object_size(lb), k = 0;
    r->bias = calloc(n ? n : 1, sizeof *r->bias);
    if (!r->bias) return oai_fail(err, 503, "server_error", NULL, "out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(lb, key, v) {
        char *end;
        errno = 0;
        long id = strtol(key, &end, 10);
        if (errno || *end || end == key || id < 0 || id >= n_vocab)
            return BAD("logit_bias", "logit_bias key '%s' is not a token id of this model (0..%d)", key, n_vocab - 1);
        if (!json_is_number(v) || !(json_number_value(v) >= -100 && json_number_value(v) <= 100))
            return BAD("logit_bias", "logit_bias values must be numbers between -100 and 100");
        r->bias[k++] = (struct kiln_logit_bias){(int32_t)id, (float)json_number_value(v)};
    }
    r->sampling.logit_bias = r->bias;
    r->sampling.n_logit_bias = k;
    return true;
}

static bool parse_logprobs(json_t *root, struct oai_request *r, struct oai_error *err)
{
    long long top = -1;
    if (r->kind == OAI_CHAT) {
        if (!get_bool(root, "logprobs", &r->logprobs, err)) return false;
        if (!get_int(root, "top_logprobs", 0, 20, &top, err)) return false;
        if (top >= 0 && !r->logprobs) return BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true");
        r->top_logprobs = top < 0 ? 0 : (int)top;
        return true;
    }
    json_t *lp = field(root, "logprobs");
    if (lp && json_is_boolean(lp)) return BAD("logprobs", "'logprobs' must be an integer (0..20) for completions");
    if (!get_int(root, "logprobs", 0, 20, &top, err)) return false;
    r->logprobs = top >= 0;
    r->top_logprobs = top < 0 ? 0 : (int)top;
    return true;
}

/* /v1/embeddings: input, encoding_format, dimensions, truncation. */
static bool parse_embedding(json_t *root, int32_t n_vocab, struct oai_request *r,
                            struct oai_error *err)
{
    if (!parse_prompts(root, "input", OAI_MAX_INPUTS, n_vocab, r, err)) return false;
    for (size_t i = 0; i < r->n_prompts; i++)
        if ((r->prompts[i].text && r->prompts[i].text_len == 0) ||
            (!r->prompts[i].text && r->prompts[i].n_ids == 0))
            return BAD("input", "'input' must not contain an empty string or empty token array");
    json_t *fmt = field(root, "encoding_format");
    if (fmt) {
        const char *f = json_string_value(fmt);
        if (!f || (strcmp(f, "float") != 0 && strcmp(f, "base64") != 0))
            return BAD("encoding_format", "'encoding_format' must be 'float' or 'base64'");
        r->base64 = !strcmp(f, "base64");
    }
    long long dims = 0, trunc = 0;
    if (!get_int(root, "dimensions", 1, 1 << 20, &dims, err) ||
        !get_int(root, "truncate_prompt_tokens", -1, 1 << 24, &trunc, err) ||
        !get_bool(root, "truncate", &r->truncate, err))
        return false;
    r->dimensions = (int)dims;
    if (trunc != 0) { /* vLLM's: keep this many tokens (-1: as many as the model takes) */
        r->truncate = true;
        r->truncate_tokens = (int)trunc;
    }
    return true;
}

bool oai_parse_request(enum oai_kind kind, const char *body, size_t len, int32_t n_vocab,
                       struct oai_request *r, struct oai_error *err)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    if (len == 0) return BAD(NULL, "the request body is empty; expected a JSON object");
    json_error_t jerr;
    r->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!r->root) {
        BAD(NULL, "invalid JSON in the request body: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        goto fail;
    }
    json_t *root = r->root;
    if (!json_is_object(root)) {
        BAD(NULL, "the request body must be a JSON object");
        goto fail;
    }
    json_t *model = json_object_get(root, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) {
            BAD("model", "'model' must be a string");
            goto fail;
        }
        r->model = json_string_value(model);
    }
    if (kind == OAI_EMBEDDING) {
        if (!parse_embedding(root, n_vocab, r, err)) goto fail;
        return true;
    }
    r->sampling = kiln_sampling_default();
    r->max_tokens = -1;
    r->n = 1;
    long long max_tokens = -1, n = 1, top_k = -1, seed = 0;
    float top_p_given = 1.0f;
    bool ok = (kind == OAI_CHAT ? parse_messages(root, r, err)
                                 : parse_prompts(root, "prompt", OAI_MAX_PROMPTS, n_vocab, r, err)) &&
              get_int(root, "max_tokens", kind == OAI_COMPLETION ? 0 : 1, 1 << 30, &max_tokens, err) &&
              get_int(root, "max_completion_tokens", 1, 1 << 30, &max_tokens, err) &&
              get_number(root, "temperature", 0, 2, &r->sampling.temperature, err) &&
              get_number(root, "top_p", 0, 1, &top_p_given, err) &&
              get_int(root, "top_k", -1, 1 << 30, &top_k, err) &&
              get_number(root, "min_p", 0, 1, &r->sampling.min_p, err) &&
              get_int(root, "n", 1, OAI_MAX_N, &n, err) && parse_stop(root, r, err) &&
              get_int(root, "seed", INT64_MIN, INT64_MAX, &seed, err) &&
              get_number(root, "presence_penalty", -2, 2, &r->sampling.presence_penalty, err) &&
              get_number(root, "frequency_penalty", -2, 2, &r->sampling.frequency_penalty, err) &&
              get_number(root, "repetition_penalty", 0.01, 10, &r->sampling.repetition_penalty, err) &&
              parse_logit_bias(root, n_vocab, r, err) && parse_logprobs(root, r, err) &&
              get_bool(root, "stream", &r->stream, err) && get_bool(root, "echo", &r->echo, err) &&
              get_bool(root, "ignore_eos", &r->ignore_eos, err);
    if (!ok) goto fail;
    json_t *so = field(root, "stream_options");
    if (so) {
        if (!json_is_object(so)) {
            BAD("stream_options", "'stream_options' must be an object");
            goto fail;
        }
        if (!r->stream) {
            BAD("stream_options", "'stream_options' is only allowed with 'stream': true");
            goto fail;
        }
        if (!get_bool(so, "include_usage", &r->include_usage, err)) goto fail;
    }
    json_t *rf = field(root, "response_format");
    if (rf) {
        json_t *type = json_object_get(rf, "type");
        if (!json_is_object(rf) || !json_is_string(type)) {
            BAD("response_format", "'response_format' must be an object with a 'type'");
            goto fail;
        }
        if (strcmp(json_string_value(type), "text") != 0) {
            BAD("response_format", "response_format type '%s' is not supported yet (only 'text')",
                json_string_value(type));
            goto fail;
        }
    }
    if (kind == OAI_CHAT && r->echo) {
        BAD("echo", "'echo' is only for /v1/completions");
        goto fail;
    }
    if (max_tokens == 0 && !r->echo) {
        BAD("max_tokens", "'max_tokens' must be at least 1 (0 only with 'echo')");
        goto fail;
    }
    r->max_tokens = (int32_t)max_tokens;
    r->n = (int)n;
    r->sampling.top_k = top_k > 0 ? (int32_t)top_k : 0;
    /* top_p 0 keeps only the most likely token, as greedy does */
    if (top_p_given <= 0) r->sampling.top_k = 1;
    else r->sampling.top_p = top_p_given;
    r->seed_given = field(root, "seed") != NULL;
    r->sampling.seed = (uint64_t)seed;
    r->sampling.penalty_last_n = -1; /* OpenAI's penalties count the whole sequence */
    return true;
fail:
    oai_request_free(r);
    return false;
}

void oai_request_free(struct oai_request *r)
{
    for (size_t i = 0; r->prompts && i < r->n_prompts; i++) free(r->prompts[i].ids);
    free(r->prompts);
    free(r->bias);
    json_decref(r->messages);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}
