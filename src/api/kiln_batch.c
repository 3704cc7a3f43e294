/* The offline batch API: submits every request to a scheduler of its own and gathers the
 * results. Contract: include/kiln.h (kiln_generate_batch). */
#include "kiln.h"

#include "base/buf.h"
#include "base/status.h"
#include "engine/scheduler.h"
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

kiln_status kiln_generate_batch(kiln_model *model, const struct kiln_engine_params *params,
                                const struct kiln_batch_request *requests, size_t n,
                                struct kiln_batch_result *results, struct kiln_batch_stats *stats,
                                struct kiln_err *err)
{
    struct kiln_engine_params none = {0};
    const struct kiln_engine_params *p = params ? params : &none;
    struct sched_params sp = {.n_ctx = p->n_ctx, .max_num_seqs = p->max_num_seqs,
                              .max_waiting = (int)(n + 1), .max_batch_tokens = p->max_batch_tokens,
                              .n_kv_blocks = p->n_kv_blocks, .no_prefix_cache = p->no_prefix_cache};
    if (p->kv_cache_type) {
        kiln_status st = kv_type_parse(p->kv_cache_type, &sp.kv_type, err);
        if (st != KILN_OK) return st;
        sp.kv_type_set = true;
    }
    struct scheduler *s;
    kiln_status st = scheduler_new(model, &sp, &s, err);
    if (st != KILN_OK) return st;
    struct seq **seqs = calloc(n ? n : 1, sizeof *seqs);
    if (!seqs) {
        scheduler_free(s);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    memset(results, 0, n * sizeof *results);
    int32_t n_ctx = scheduler_n_ctx(s);
    for (size_t i = 0; i < n; i++) {
        const struct kiln_batch_request *r = &requests[i];
        struct seq_request sr = {
            .prompt = r->prompt, .n_prompt = r->n_prompt, .sampling = r->params.sampling,
            .max_tokens = r->params.max_tokens >= 0 ? r->params.max_tokens
                                                    : n_ctx - (int32_t)r->n_prompt,
            .stop = r->params.stop, .n_stop = r->params.n_stop, .ignore_eos = r->params.ignore_eos,
            .top_logprobs = -1,
        };
        struct kiln_err e = {{0}};
        results[i].status = scheduler_submit(s, &sr, &seqs[i], &e);
        if (results[i].status != KILN_OK) {
            memcpy(results[i].err_msg, e.msg, sizeof results[i].err_msg);
            seqs[i] = NULL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct kiln_batch_result *res = &results[i];
        struct buf tokens = {0}, text = {0};
        for (bool done = !seqs[i]; !done;) {
            struct seq_event ev;
            if (!seq_next_event(seqs[i], &ev, 1000)) continue;
            bool ok = true;
            if (ev.type == SEQ_TOKEN) ok = buf_append(&tokens, &ev.token, sizeof ev.token);
            if (ok && ev.len) ok = buf_append(&text, ev.text, ev.len);
            if (ev.type == SEQ_DONE) {
                done = true;
                res->finish = ev.finish;
                res->status = ev.status;
                memcpy(res->err_msg, ev.error, sizeof res->err_msg);
            }
            if (!ok) res->status = KILN_ENOMEM;
            seq_event_free(&ev);
        }
        res->tokens = (int32_t *)(void *)tokens.p; /* malloc'd, so aligned for int32_t */
        res->n_tokens = tokens.len / sizeof(int32_t);
        res->text = text.p;
        res->text_len = text.len;
        seq_release(seqs[i]);
    }
    if (stats) {
        struct sched_stats ss;
        scheduler_stats(s, &ss);
        stats->prefix_hit_tokens = ss.prefix_hits;
        stats->preemptions = ss.preemptions;
    }
    free(seqs);
    scheduler_free(s);
    return KILN_OK;
}

void kiln_batch_results_free(struct kiln_batch_result *results, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(results[i].tokens);
        free(results[i].text);
        results[i].tokens = NULL;
        results[i].text = NULL;
    }
}
