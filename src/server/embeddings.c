/* POST /v1/embeddings: inputs (strings or token ids, one or many) tokenized, checked against
 * the model's limit (or truncated when asked) and returned as floats or base64 in OpenAI's
 * shape. An encoder embeds all inputs in one batched pass under the server's embedding lock;
 * a decoder embeds one input per call on the scheduler thread, between generation steps, so
 * generation keeps going and a client that leaves stops the work. Not a contract. */
#include "server/server_internal.h"


#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

struct embed_job {
    kiln_model *model;
    const int32_t *const *ids;
    const size_t *lens;
    size_t n;
    float *out;
    kiln_status st;
    struct kiln_err err;
};

static void run_embed(void *ctx)
{
    struct embed_job *j = ctx;
    j->st = kiln_embed(j->model, j->ids, j->lens, j->n, j->out, &j->err);
}

/* Truncation on request: TEI's "truncate" keeps the first max tokens (a final end-of-sequence
 * token the tokenizer added stays last); vLLM's "truncate_prompt_tokens" keeps the last ones. */
static size_t truncate_ids(const struct server *srv, int32_t *ids, size_t n, size_t max,
                           bool keep_last, bool added_special)
{
    if (n <= max) return n;
    if (keep_last) {
        memmove(ids, ids + (n - max), max * sizeof *ids);
        return max;
    }
    int32_t eos = kiln_model_eos(srv->model);
    if (added_special && max > 1 && eos >= 0 && ids[n - 1] == eos) ids[max - 1] = eos;
    return max;
}

static json_t *embedding_value(const float *v, int dim, bool base64)
{
    if (!base64) {
        json_t *arr = json_array();
        for (int i = 0; arr && i < dim; i++)
            if (json_array_append_new(arr, json_real(v[i])) != 0) { /* NaN or out of memory */
                json_decref(arr);
                return NULL;
            }
        return arr;
    }
    /* little-endian float32 bytes, as OpenAI's clients decode them */
    size_t bytes = (size_t)dim * sizeof(float);
    unsigned char *text = malloc(4 * ((bytes + 2) / 3) + 1);
    if (!text) return NULL;
    EVP_EncodeBlock(text, (const unsigned char *)v, (int)bytes);
    json_t *s = json_string((const char *)text);
    free(text);
    return s;
}

enum MHD_Result handle_embeddings(struct request *req)
{
    struct server *srv = req->srv;
    struct oai_request r;
    struct oai_error oerr;
    if (!oai_parse_request(OAI_EMBEDDING, req->body.p, req->body.len,
                           kiln_model_n_vocab(srv->model), &r, &oerr))
        return send_oai_error(req, &oerr);
    enum MHD_Result result;
    int dim = kiln_model_n_embd(srv->model);
    size_t n = r.n_prompts, limit = (size_t)server_max_model_len(srv);
    int32_t **ids = calloc(n, sizeof *ids);
    size_t *lens = calloc(n, sizeof *lens);
    float *out = malloc(n * (size_t)dim * sizeof(float));
    json_t *data = NULL;
    if (r.model && strcmp(r.model, srv->model_id) != 0) {
        result = send_error(req, 404, "invalid_request_error", "model", "model_not_found",
                            "the model '%s' does not exist; this server serves '%s'", r.model,
                            srv->model_id);
        goto done;
    }
    if (r.dimensions && r.dimensions != dim) {
        result = send_error(req, 400, "invalid_request_error", "dimensions", NULL,
                            "this model's embeddings have %d dimensions and it cannot shorten "
                            "them (dimensions %d)", dim, r.dimensions);
        goto done;
    }
    if (!ids || !lens || !out) {
        result = send_error(req, 503, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    size_t max = limit;
    if (r.truncate && r.truncate_tokens > 0 && (size_t)r.truncate_tokens < max)
        max = (size_t)r.truncate_tokens;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct oai_prompt *p = &r.prompts[i];
        if (p->text) {
            ids[i] = kiln_tokenize_new(srv->model, p->text, p->text_len, true, true, &lens[i]);
        } else if ((ids[i] = malloc(p->n_ids * sizeof(int32_t)))) {
            memcpy(ids[i], p->ids, p->n_ids * sizeof(int32_t));
            lens[i] = p->n_ids;
        }
        if (!ids[i]) {
            result = send_error(req, 503, "server_error", NULL, NULL, "out of memory");
            goto done;
        }
        if (lens[i] > limit && !r.truncate) {
            result = send_error(req, 400, "invalid_request_error", "input", NULL,
                                "input %zu has %zu tokens, more than this model's limit of %zu "
                                "(ask for truncation with \"truncate\": true)", i, lens[i], limit);
            goto done;
        }
        if (r.truncate)
            lens[i] = truncate_ids(srv, ids[i], lens[i], max, r.truncate_tokens != 0,
                                   p->text != NULL);
        if (lens[i] == 0) {
            result = send_error(req, 400, "invalid_request_error", "input", NULL,
                                "input %zu has no tokens", i);
            goto done;
        }
        total += lens[i];
    }
    struct embed_job job = {srv->model, (const int32_t *const *)ids, lens, n, out, KILN_OK, {{0}}};
    if (srv->sched) {
        for (size_t i = 0; i < n && job.st == KILN_OK; i++) {
            struct embed_job one = {srv->model, (const int32_t *const *)ids + i, lens + i, 1,
                                    out + i * (size_t)dim, KILN_OK, {{0}}};
            if (client_gone(req)) { /* nobody to answer: stop spending the model's time */
                result = MHD_NO;
                goto done;
            }
            if (scheduler_call(srv->sched, run_embed, &one) != KILN_OK) {
                result = send_error(req, 503, "server_error", NULL, NULL,
                                    "the server is shutting down");
                goto done;
            }
            job.st = one.st;
            job.err = one.err;
        }
    } else {
        pthread_mutex_lock(&srv->embed_mu);
        run_embed(&job);
        pthread_mutex_unlock(&srv->embed_mu);
    }
    if (job.st != KILN_OK) {
        int status = job.st == KILN_ENOMEM ? 503 : 400;
        result = send_error(req, status, status == 503 ? "server_error" : "invalid_request_error",
                            "input", NULL, "%s", job.err.msg);
        goto done;
    }
    data = json_array();
    for (size_t i = 0; data && i < n; i++) {
        json_t *v = embedding_value(out + i * (size_t)dim, dim, r.base64);
        json_t *item = v ? json_pack("{s:s, s:I, s:o}", "object", "embedding", "index",
                                     (json_int_t)i, "embedding", v)
                         : NULL;
        if (!item || json_array_append_new(data, item) != 0) {
            json_decref(data);
            data = NULL;
        }
    }
    if (!data) {
        result = send_error(req, 500, "server_error", NULL, NULL,
                            "the embedding could not be encoded (out of memory, or a value "
                            "that is not a finite number)");
        goto done;
    }
    req->prompt_tokens = (int)total;
    metrics_embedding(srv->metrics, (int)n, (int)total);
    result = send_json(req, 200, json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list",
                                           "data", data, "model", srv->model_id, "usage",
                                           "prompt_tokens", (json_int_t)total, "total_tokens",
                                           (json_int_t)total));
done:
    for (size_t i = 0; ids && i < n; i++) free(ids[i]);
    free(ids);
    free(lens);
    free(out);
    oai_request_free(&r);
    return result;
}
