/* The HTTP side of `kiln serve` on libmicrohttpd: one thread per connection, request bodies
 * gathered up to a limit, API-key checks, CORS, the access log, and start-up / shutdown.
 * Contract: src/server/server.h. */
#define _GNU_SOURCE /* POLLRDHUP */
#include "server/server_internal.h"

#include "hub/hub.h"

#include "base/log.h"
#include "base/clock.h"
#include "base/status.h"
#include "model/model.h"
#include "template/chat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- responses -------------------------------------------------------------------------- */

void add_common_headers(struct request *req, struct MHD_Response *resp)
{
    const char *origin = req->srv->cfg.allowed_origin;
    if (origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    }
}

enum MHD_Result send_text(struct request *req, int status, const char *content_type, char *text)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(text ? strlen(text) : 0, text ? text : "",
                                        text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", content_type);
    add_common_headers(req, resp);
    if (status == 503) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result r = MHD_queue_response(req->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    req->status = status;
    return r;
}

enum MHD_Result send_json(struct request *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) return send_text(req, 500, "text/plain", strdup("out of memory"));
    return send_text(req, status, "application/json", text);
}

static enum MHD_Result send_error_v(struct request *req, int status, const char *type,
                                    const char *param, const char *code, const char *fmt,
                                    va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* jansson refuses invalid UTF-8; a message quoting client bytes may carry some */
    json_t *m = json_string(msg);
    if (!m) m = json_string("invalid request");
    json_t *err = json_pack("{s:o, s:s, s:o, s:o}", "message", m, "type", type, "param",
                            param && *param ? json_string(param) : json_null(), "code",
                            code ? json_string(code) : json_null());
    log_debug("%s %s -> %d: %s", req->method, req->url, status, msg);
    return send_json(req, status, json_pack("{s:o}", "error", err));
}

enum MHD_Result send_error(struct request *req, int status, const char *type, const char *param,
                           const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result r = send_error_v(req, status, type, param, code, fmt, ap);
    va_end(ap);
    return r;
}

enum MHD_Result send_oai_error(struct request *req, const struct oai_error *e)
{
    return send_error(req, e->status, e->type, e->param, e->code, "%s", e->message);
}

bool client_gone(struct request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* ---- the request lifecycle -------------------------------------------------------------- */

static bool authorized(struct request *req)
{
    const char *key = req->srv->cfg.api_key;
    if (!key) return true;
    const char *h = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    const char *given = h + 7;
    size_t n = strlen(key), m = strlen(given);
    /* constant time in the key's length */
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(key[i] ^ (i < m ? given[i] : 0));
    return diff == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    struct server *srv = cls;
    struct request *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req) return MHD_NO;
        req->srv = srv;
        req->conn = conn;
        req->method = method;
        req->url = url;
        req->start = clock_seconds();
        *con_cls = req;
        atomic_fetch_add(&srv->in_flight, 1);
        req->counted_in_flight = true;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > srv->cfg.max_body_bytes) {
            req->body_too_large = true;
            return send_error(req, 413, "invalid_request_error", NULL, NULL,
                              "the request body is larger than %zu bytes", srv->cfg.max_body_bytes);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->body_too_large) return MHD_YES;
        if (req->body.len + n > srv->cfg.max_body_bytes) {
            req->body_too_large = true;
            buf_free(&req->body);
            return MHD_YES;
        }
        if (!buf_append(&req->body, upload_data, n)) return MHD_NO;
        return MHD_YES;
    }
    if (req->status) return MHD_YES; /* already answered (413 on the first call) */
    if (req->body_too_large)
        return send_error(req, 413, "invalid_request_error", NULL, NULL,
                          "the request body is larger than %zu bytes", srv->cfg.max_body_bytes);
    if (!strcmp(method, "OPTIONS")) return send_text(req, 204, "text/plain", NULL);
    if (strcmp(url, "/health") != 0 && strcmp(url, "/metrics") != 0 && !authorized(req))
        return send_error(req, 401, "authentication_error", NULL, "invalid_api_key",
                          "a valid API key is required: send 'Authorization: Bearer <key>'");
    if (!atomic_load(&srv->ready))
        return send_error(req, 503, "server_error", NULL, NULL, "the model is still loading");
    return route_request(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct server *srv = cls;
    struct request *req = *con_cls;
    if (!req) return;
    double ms = (clock_seconds() - req->start) * 1000;
    metrics_http_response(srv->metrics, req->status);
    log_info("%s %s %d prompt=%d completion=%d %.1fms%s", req->method, req->url, req->status,
             req->prompt_tokens, req->completion_tokens, ms,
             toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)");
    if (req->counted_in_flight) atomic_fetch_sub(&srv->in_flight, 1);
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)srv->cfg.read_timeout_s);
    buf_free(&req->body);
    free(req);
    *con_cls = NULL;
}

/* ---- start-up and shutdown -------------------------------------------------------------- */

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

static bool load_model(struct server *srv, struct kiln_err *err)
{
    const struct server_config *c = &srv->cfg;
    struct kiln_model_params mp = {.n_threads = c->n_threads, .pooling = c->pooling};
    char path[8192]; /* a repo id is fetched into the cache first (/health says loading) */
    if (hub_resolve(c->model_path, path, sizeof path, err) != KILN_OK ||
        kiln_model_open(path, &mp, &srv->model, err) != KILN_OK)
        return false;
    srv->created = (long)time(NULL);
    if (kiln_model_is_encoder(srv->model)) { /* embeddings only: no scheduler, no template */
        log_info("%s is an embedding model: serving /v1/embeddings only", c->model_path);
        return true;
    }
    bool fallback;
    if (chat_template_load(srv->model, path, c->chat_template_path, &srv->chat_template,
                           &fallback, err) != KILN_OK)
        return false;
    if (fallback)
        log_warn("%s has no chat template; using ChatML (pass --chat-template FILE to choose)",
                 c->model_path);
    struct sched_params sp = {.n_ctx = c->n_ctx, .max_num_seqs = c->max_num_seqs,
                              .max_waiting = c->max_waiting,
                              .max_batch_tokens = c->max_batch_tokens,
                              .no_prefix_cache = c->no_prefix_cache};
    if (c->kv_cache_type) {
        if (kv_type_parse(c->kv_cache_type, &sp.kv_type, err) != KILN_OK) return false;
        sp.kv_type_set = true;
    }
    if (c->kv_cache_mb > 0) {
        const struct model *mi = kiln_model_internal(srv->model);
        uint64_t row;
        enum dtype t = sp.kv_type_set ? sp.kv_type : DTYPE_F16;
        dtype_row_bytes(t, (uint64_t)mi->hp.n_head_kv * (uint64_t)mi->hp.head_dim, &row);
        uint64_t per_block = 2 * row * KV_BLOCK_SIZE * (uint64_t)mi->hp.n_layer;
        sp.n_kv_blocks = (int)(((uint64_t)c->kv_cache_mb << 20) / per_block);
        if (sp.n_kv_blocks < 1) sp.n_kv_blocks = 1;
    }
    return scheduler_new(srv->model, &sp, &srv->sched, err) == KILN_OK;
}

static void set_model_id(struct server *srv)
{
    const char *name = srv->cfg.served_model_name;
    if (!name && hub_is_repo_id(srv->cfg.model_path)) name = srv->cfg.model_path; /* as vLLM */
    if (name) {
        snprintf(srv->model_id, sizeof srv->model_id, "%s", name);
        return;
    }
    /* the file or directory name, without a trailing slash */
    const char *path = srv->cfg.model_path, *end = path + strlen(path);
    while (end > path + 1 && end[-1] == '/') end--;
    const char *base = end;
    while (base > path && base[-1] != '/') base--;
    snprintf(srv->model_id, sizeof srv->model_id, "%.*s", (int)(end - base), base);
    size_t n = strlen(srv->model_id);
    if (n > 5 && !strcmp(srv->model_id + n - 5, ".gguf")) srv->model_id[n - 5] = 0;
}

int server_run(const struct server_config *cfg)
{
    struct server srv = {.cfg = *cfg};
    pthread_mutex_init(&srv.embed_mu, NULL);
    if (!srv.cfg.host) srv.cfg.host = "127.0.0.1";
    if (!srv.cfg.port) srv.cfg.port = 8000;
    if (!srv.cfg.max_body_bytes) srv.cfg.max_body_bytes = 10u << 20;
    if (!srv.cfg.read_timeout_s) srv.cfg.read_timeout_s = 60;
    if (!srv.cfg.max_connections) srv.cfg.max_connections = 512;
    if (!srv.cfg.shutdown_grace_s) srv.cfg.shutdown_grace_s = 30;
    set_model_id(&srv);
    if (!(srv.metrics = metrics_new())) {
        fprintf(stderr, "kiln: out of memory\n");
        return 1;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.cfg.port)};
    if (inet_pton(AF_INET, srv.cfg.host, &addr.sin_addr) != 1) {
        fprintf(stderr, "kiln: --host must be an IPv4 address, got '%s'\n", srv.cfg.host);
        return 2;
    }
    /* SIGTERM / SIGINT stay blocked (in every thread started from here) except while the
     * main thread waits in sigsuspend, so a signal can never slip between check and wait. */
    sigset_t stop_set, wait_mask;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_set, &wait_mask);
    sigdelset(&wait_mask, SIGTERM);
    sigdelset(&wait_mask, SIGINT);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* The server listens while the model loads, so /health can say so. */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, &srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, &srv,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)srv.cfg.read_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)srv.cfg.max_connections,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "kiln: cannot listen on %s:%d: %s\n", srv.cfg.host, srv.cfg.port,
                strerror(errno));
        metrics_free(srv.metrics);
        return 1;
    }
    log_info("listening on http://%s:%d (model %s loading)", srv.cfg.host, srv.cfg.port,
             srv.model_id);

    struct kiln_err err = {{0}};
    int rc = 0;
    if (!load_model(&srv, &err)) {
        fprintf(stderr, "kiln: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    atomic_store(&srv.ready, true);
    fprintf(stderr, "kiln: serving %s on http://%s:%d/v1\n", srv.model_id, srv.cfg.host,
            srv.cfg.port);
    while (!stop_signal) sigsuspend(&wait_mask);
    log_info("signal %d: no new connections; waiting up to %d s for %d requests in flight",
             (int)stop_signal, srv.cfg.shutdown_grace_s, atomic_load(&srv.in_flight));
    if (MHD_quiesce_daemon(d) == MHD_INVALID_SOCKET)
        log_warn("could not stop accepting connections; finishing anyway");
    for (double t0 = clock_seconds();
         atomic_load(&srv.in_flight) > 0 && clock_seconds() - t0 < srv.cfg.shutdown_grace_s;)
        usleep(20000);
done:
    scheduler_stop(srv.sched); /* cancels what still runs; handlers then finish quickly */
    MHD_stop_daemon(d);
    scheduler_free(srv.sched);
    jinja_template_free(srv.chat_template);
    kiln_model_free(srv.model);
    metrics_free(srv.metrics);
    pthread_mutex_destroy(&srv.embed_mu);
    log_info("stopped");
    return rc;
}
