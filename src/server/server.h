/* `kiln serve`: the OpenAI-compatible HTTP server.
 * Contract for src/server/server.c, http.c, routes.c. */
#ifndef KILN_SERVER_SERVER_H
#define KILN_SERVER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct server_config {
    const char *model_path;
    const char *served_model_name; /* NULL: the file name without .gguf */
    const char *host;              /* default 127.0.0.1 */
    int port;                      /* default 8000 */
    int n_threads;                 /* 0: all cores */
    const char *pooling;           /* embeddings: override the model's pooling (NULL: keep) */
    int32_t n_ctx;                 /* per sequence; 0: the model's, at most 4096 */
    int max_num_seqs;              /* sequences generated at once */
    int max_batch_tokens;          /* tokens per engine step */
    const char *kv_cache_type;     /* "f16" (default), "q8_0", "f32" */
    int kv_cache_mb;               /* KV pool size; 0: ctx-size x max-num-seqs tokens */
    bool no_prefix_cache;
    int max_waiting;               /* queued beyond those before 503 */
    const char *api_key;           /* NULL: no key needed */
    const char *chat_template_path; /* overrides the model's template */
    const char *allowed_origin;    /* CORS Access-Control-Allow-Origin; NULL: no CORS headers */
    size_t max_body_bytes;         /* larger bodies get 413 */
    int read_timeout_s;            /* idle connections are closed after this */
    int max_connections;
    int shutdown_grace_s;          /* SIGTERM waits this long for requests in flight */
};

/* Runs until SIGTERM / SIGINT; returns the process exit code. */
int server_run(const struct server_config *cfg);

#endif
