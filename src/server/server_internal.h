/* What the server's files share: the server state, one request's state, and the
 * response helpers of http.c. Not a contract for other modules. */
#ifndef KILN_SERVER_INTERNAL_H
#define KILN_SERVER_INTERNAL_H

#include "base/buf.h"
#include "engine/scheduler.h"
#include "server/metrics.h"
#include "server/oai_request.h"
#include "server/server.h"
#include "template/jinja.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

struct server {
    struct server_config cfg;
    char model_id[256];
    kiln_model *model;
    struct scheduler *sched;  /* NULL for an encoder (embeddings only) */
    pthread_mutex_t embed_mu; /* encoders: one embedding pass at a time */
    struct metrics *metrics;
    struct jinja_template *chat_template;
    atomic_bool ready;        /* the model is loaded */
    atomic_int in_flight;     /* requests being handled */
    long created;             /* unix time the model was loaded, for /v1/models */
};

struct request {
    struct server *srv;
    struct MHD_Connection *conn;
    const char *method, *url;
    struct buf body;
    bool body_too_large;
    double start;
    int status;            /* sent, for the access log */
    int prompt_tokens, completion_tokens;
    bool counted_in_flight;
};

/* Sends body as JSON with status (takes ownership of body). */
enum MHD_Result send_json(struct request *req, int status, json_t *body);
/* Sends an OpenAI-shaped error. */
enum MHD_Result send_error(struct request *req, int status, const char *type, const char *param,
                           const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
enum MHD_Result send_oai_error(struct request *req, const struct oai_error *err);
enum MHD_Result send_text(struct request *req, int status, const char *content_type,
                          char *text /* owned */);
/* Adds the CORS headers the configuration asks for. */
void add_common_headers(struct request *req, struct MHD_Response *resp);
/* True when the client has gone away (the socket was closed or reset). */
bool client_gone(struct request *req);

/* routes.c: answers one complete request. */
enum MHD_Result route_request(struct request *req);

/* The longest input the model takes: the scheduler's context, or the encoder's limit. */
int32_t server_max_model_len(const struct server *srv);

/* embeddings.c: POST /v1/embeddings. */
enum MHD_Result handle_embeddings(struct request *req);

/* completions.c: POST /v1/chat/completions and /v1/completions. */
enum MHD_Result handle_completion(struct request *req, enum oai_kind kind);
/* The text of ids (special tokens rendered when asked) as valid UTF-8: a split character
 * becomes U+FFFD. malloc'd, or NULL when out of memory. */
char *server_detokenize(struct server *srv, const int32_t *ids, size_t n, bool render_special);
/* Renders the chat template for messages (and tools); malloc'd text or NULL with err. */
char *render_chat(struct server *srv, json_t *messages, json_t *tools, struct kiln_err *err,
                  kiln_status *st);

#endif
