/* The server's small endpoints and the dispatch by method and path: /health, /metrics,
 * /v1/models, /tokenize, /detokenize, and the 404 / 405 answers. Not a contract. */
#include "server/server_internal.h"

#include <stdlib.h>
#include <string.h>

static json_t *model_object(struct server *srv)
{
    return json_pack("{s:s, s:s, s:i, s:s, s:i}", "id", srv->model_id, "object", "model",
                     "created", (json_int_t)srv->created, "owned_by", "kiln", "max_model_len",
                     (json_int_t)server_max_model_len(srv));
}

int32_t server_max_model_len(const struct server *srv)
{
    return srv->sched ? scheduler_n_ctx(srv->sched) : kiln_model_max_embed_tokens(srv->model);
}

static enum MHD_Result handle_models(struct request *req)
{
    json_t *data = json_array();
    json_array_append_new(data, model_object(req->srv));
    return send_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static enum MHD_Result handle_model(struct request *req, const char *id)
{
    if (strcmp(id, req->srv->model_id) != 0)
        return send_error(req, 404, "invalid_request_error", "model", "model_not_found",
                          "the model '%s' does not exist", id);
    return send_json(req, 200, model_object(req->srv));
}

static enum MHD_Result handle_metrics(struct request *req)
{
    struct sched_stats st;
    scheduler_stats(req->srv->sched, &st);
    char *text = metrics_render(req->srv->metrics, &st, req->srv->model_id);
    return send_text(req, 200, "text/plain; version=0.0.4", text);
}

static json_t *parse_body(struct request *req, struct oai_error *err)
{
    json_error_t jerr;
    json_t *root = req->body.len ? json_loadb(req->body.p, req->body.len, 0, &jerr) : NULL;
    if (!root || !json_is_object(root)) {
        json_decref(root);
        oai_fail(err, 400, "invalid_request_error", NULL, "the request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* POST /tokenize {"content" | "prompt": text, "add_special": bool} or {"messages": [...]}
 * -> {"tokens": [...], "count": n, "max_model_len": n_ctx} (llama.cpp's and vLLM's shapes). */
static enum MHD_Result handle_tokenize(struct request *req)
{
    struct oai_error err;
    json_t *root = parse_body(req, &err);
    if (!root) return send_oai_error(req, &err);
    json_t *text = json_object_get(root, "content");
    if (!text) text = json_object_get(root, "prompt");
    json_t *messages = json_object_get(root, "messages");
    json_t *add = json_object_get(root, "add_special");
    char *rendered = NULL;
    const char *s;
    size_t len;
    bool add_special = add ? json_is_true(add) : true;
    if (messages) {
        struct oai_request r;
        json_t *wrapped = json_pack("{s:O}", "messages", messages);
        char *body = json_dumps(wrapped, JSON_COMPACT);
        json_decref(wrapped);
        bool ok = body && oai_parse_request(OAI_CHAT, body, strlen(body), 1, &r, &err);
        free(body);
        if (!ok) {
            json_decref(root);
            return send_oai_error(req, &err);
        }
        struct kiln_err kerr = {{0}};
        kiln_status st;
        rendered = render_chat(req->srv, r.messages, NULL, &kerr, &st);
        oai_request_free(&r);
        if (!rendered) {
            json_decref(root);
            return send_error(req, 400, "invalid_request_error", "messages", NULL, "%s", kerr.msg);
        }
        s = rendered;
        len = strlen(rendered);
        add_special = add ? json_is_true(add) : false;
    } else if (json_is_string(text)) {
        s = json_string_value(text);
        len = json_string_length(text);
    } else {
        json_decref(root);
        return send_error(req, 400, "invalid_request_error", "content", NULL,
                          "'content' (or 'prompt') must be a string, or give 'messages'");
    }
    size_t n;
    int32_t *ids = kiln_tokenize_new(req->srv->model, s, len, add_special, true, &n);
    free(rendered);
    json_decref(root);
    if (!ids) return send_error(req, 503, "server_error", NULL, NULL, "out of memory");
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_integer(ids[i]));
    free(ids);
    return send_json(req, 200, json_pack("{s:o, s:i, s:i}", "tokens", arr, "count", (json_int_t)n,
                                         "max_model_len", (json_int_t)server_max_model_len(req->srv)));
}

/* POST /detokenize {"tokens": [...]} -> {"content": text, "prompt": text} */
static enum MHD_Result handle_detokenize(struct request *req)
{
    struct oai_error err;
    json_t *root = parse_body(req, &err);
    if (!root) return send_oai_error(req, &err);
    json_t *tokens = json_object_get(root, "tokens");
    if (!json_is_array(tokens)) {
        json_decref(root);
        return send_error(req, 400, "invalid_request_error", "tokens", NULL,
                          "'tokens' must be an array of token ids");
    }
    int32_t n_vocab = kiln_model_n_vocab(req->srv->model);
    size_t n = json_array_size(tokens), i;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    json_t *v;
    json_array_foreach(tokens, i, v) {
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= n_vocab) {
            free(ids);
            json_decref(root);
            return send_error(req, 400, "invalid_request_error", "tokens", NULL,
                              "'tokens[%zu]' is not a token id of this model (0..%d)", i, n_vocab - 1);
        }
        if (ids) ids[i] = (int32_t)id;
    }
    json_decref(root);
    char *text = ids ? server_detokenize(req->srv, ids, n, true) : NULL;
    free(ids);
    json_t *content = text ? json_string(text) : NULL;
    free(text);
    if (!content) return send_error(req, 503, "server_error", NULL, NULL, "out of memory");
    return send_json(req, 200, json_pack("{s:O, s:o}", "content", content, "prompt", content));
}

enum MHD_Result route_request(struct request *req)
{
    const char *m = req->method, *u = req->url;
    bool get = !strcmp(m, "GET"), post = !strcmp(m, "POST");
    struct { const char *path; bool is_post; } routes[] = {
        {"/health", false}, {"/metrics", false}, {"/v1/models", false},
        {"/v1/chat/completions", true}, {"/v1/completions", true}, {"/v1/embeddings", true},
        {"/tokenize", true}, {"/detokenize", true},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(u, routes[i].path) != 0) continue;
        if (routes[i].is_post ? !post : !get)
            return send_error(req, 405, "invalid_request_error", NULL, NULL,
                              "%s is not allowed on %s", m, u);
        switch (i) {
        case 0: return send_json(req, 200, json_pack("{s:s}", "status", "ok"));
        case 1: return handle_metrics(req);
        case 2: return handle_models(req);
        case 3: return handle_completion(req, OAI_CHAT);
        case 4: return handle_completion(req, OAI_COMPLETION);
        case 5: return handle_embeddings(req);
        case 6: return handle_tokenize(req);
        case 7: return handle_detokenize(req);
        }
    }
    if (get && !strncmp(u, "/v1/models/", 11)) return handle_model(req, u + 11);
    return send_error(req, 404, "invalid_request_error", NULL, NULL, "no route for %s %s", m, u);
}
