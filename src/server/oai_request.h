/* OpenAI request bodies: parses and validates /v1/chat/completions, /v1/completions and
 * /v1/embeddings JSON
 * into a request the server can run. Unknown fields are ignored; a known field of the wrong
 * type or out of range is refused naming the field, as OpenAI's API does.
 * Contract for src/server/oai_request.c. Pure: any thread. */
#ifndef KILN_SERVER_OAI_REQUEST_H
#define KILN_SERVER_OAI_REQUEST_H

#include "kiln.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OAI_MAX_N 16        /* choices per request */
#define OAI_MAX_STOP 16     /* stop strings */
#define OAI_MAX_PROMPTS 64  /* prompts in one completions request */
#define OAI_MAX_INPUTS 2048 /* inputs in one embeddings request (OpenAI's limit) */

enum oai_kind { OAI_CHAT, OAI_COMPLETION, OAI_EMBEDDING };

/* One completions prompt: text, or token ids. */
struct oai_prompt {
    const char *text; /* borrowed from the request JSON; NULL when ids */
    size_t text_len;
    int32_t *ids;
    size_t n_ids;
};

struct oai_request {
    enum oai_kind kind;
    json_t *root;            /* the parsed body; the strings below point into it */
    const char *model;       /* NULL when absent */
    json_t *messages;        /* chat: messages with content reduced to strings (owned) */
    json_t *tools;           /* chat: borrowed from root, or NULL */
    struct oai_prompt *prompts; /* completions: prompt; embeddings: input */
    size_t n_prompts;
    int32_t max_tokens;      /* -1: until the context is full */
    struct kiln_sampling sampling;
    struct kiln_logit_bias *bias;
    bool seed_given;
    int n;
    const char *stop[OAI_MAX_STOP];
    size_t n_stop;
    bool stream, include_usage;
    bool logprobs;           /* chat: logprobs; completions: logprobs given */
    int top_logprobs;        /* alternatives per token */
    bool echo;               /* completions */
    bool ignore_eos;         /* extension, as vLLM's */
    /* embeddings */
    bool base64;             /* encoding_format "base64" */
    int dimensions;          /* 0: not given */
    bool truncate;           /* cut long inputs to the model's limit instead of refusing */
    int truncate_tokens;     /* vLLM's truncate_prompt_tokens: keep the last this many (-1:
                              * the model's limit); 0: TEI's truncate keeps the first */
};

struct oai_error {
    int status;        /* HTTP status */
    const char *type;  /* "invalid_request_error" ... */
    const char *code;  /* NULL or e.g. "model_not_found" */
    char param[64];    /* the field, or "" */
    char message[256];
};

/* Parses body. n_vocab bounds logit_bias keys and token-id prompts. On failure fills err
 * (status 400) and returns false; out then needs no freeing. */
bool oai_parse_request(enum oai_kind kind, const char *body, size_t len, int32_t n_vocab,
                       struct oai_request *out, struct oai_error *err);
void oai_request_free(struct oai_request *r);

/* Fills err (any status) with a formatted message. Returns false, for `return oai_fail(...)`. */
bool oai_fail(struct oai_error *err, int status, const char *type, const char *param,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
