/* Prometheus metrics. Contract: src/server/metrics.h. */
#include "server/metrics.h"

#include "base/buf.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_BUCKETS 14
static const double latency_buckets[N_BUCKETS] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08,
                                                  0.1,   0.25,  0.5,  1.0,  2.5,  5.0,  10.0};
static const double e2e_buckets[N_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30,
                                              60,   120, 300};

struct histogram {
    const double *bounds;
    unsigned long long counts[N_BUCKETS + 1]; /* the last is +Inf */
    unsigned long long n;
    double sum;
};

#define N_STATUS 600
#define N_FINISH 4
static const char *const finish_names[N_FINISH] = {"stop", "length", "canceled", "error"};

struct metrics {
    pthread_mutex_t mu;
    unsigned long long by_status[N_STATUS];
    unsigned long long by_finish[N_FINISH];
    unsigned long long prompt_tokens, generation_tokens;
    unsigned long long embedding_inputs, embedding_tokens;
    struct histogram ttft, itl, e2e;
};

struct metrics *metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    m->ttft.bounds = latency_buckets;
    m->itl.bounds = latency_buckets;
    m->e2e.bounds = e2e_buckets;
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void observe(struct histogram *h, double v)
{
    int b = 0;
    while (b < N_BUCKETS && v > h->bounds[b]) b++;
    h->counts[b]++;
    h->n++;
    h->sum += v;
}

void metrics_http_response(struct metrics *m, int status)
{
    pthread_mutex_lock(&m->mu);
    if (status >= 0 && status < N_STATUS) m->by_status[status]++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_generation(struct metrics *m, const char *finish, int n_prompt, int n_generated,
                        double ttft, double e2e)
{
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < N_FINISH; i++)
        if (!strcmp(finish, finish_names[i])) m->by_finish[i]++;
    m->prompt_tokens += (unsigned long long)n_prompt;
    m->generation_tokens += (unsigned long long)n_generated;
    if (ttft >= 0) observe(&m->ttft, ttft);
    observe(&m->e2e, e2e);
    pthread_mutex_unlock(&m->mu);
}

void metrics_embedding(struct metrics *m, int n_inputs, int n_tokens)
{
    pthread_mutex_lock(&m->mu);
    m->embedding_inputs += (unsigned long long)n_inputs;
    m->embedding_tokens += (unsigned long long)n_tokens;
    pthread_mutex_unlock(&m->mu);
}

void metrics_inter_token(struct metrics *m, double seconds)
{
    pthread_mutex_lock(&m->mu);
    observe(&m->itl, seconds);
    pthread_mutex_unlock(&m->mu);
}

static void put_counter(struct buf *t, const char *name, const char *help, const char *labels,
                        unsigned long long value)
{
    buf_printf(t, "# HELP %s %s\n# TYPE %s counter\n%s{%s} %llu\n", name, help, name, name,
               labels, value);
}

static void put_histogram(struct buf *t, const char *name, const char *help,
                          const struct histogram *h, const char *labels)
{
    buf_printf(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long long cum = 0;
    for (int b = 0; b < N_BUCKETS; b++) {
        cum += h->counts[b];
        buf_printf(t, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, h->bounds[b], cum);
    }
    cum += h->counts[N_BUCKETS];
    buf_printf(t, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, cum);
    buf_printf(t, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels, h->n);
}

char *metrics_render(struct metrics *m, const struct sched_stats *s, const char *model)
{
    struct buf t = {0};
    /* label values escape backslash, quote and newline (Prometheus text format) */
    char esc[600], labels[640];
    size_t k = 0;
    for (const char *p = model; *p && k + 3 < sizeof esc; p++) {
        if (*p == '\\' || *p == '"') esc[k++] = '\\';
        if (*p == '\n') {
            esc[k++] = '\\';
            esc[k++] = 'n';
            continue;
        }
        esc[k++] = *p;
    }
    esc[k] = 0;
    snprintf(labels, sizeof labels, "model_name=\"%s\"", esc);
    pthread_mutex_lock(&m->mu);
    buf_printf(&t, "# HELP kiln:http_requests_total HTTP responses sent, by status code.\n"
            "# TYPE kiln:http_requests_total counter\n");
    for (int i = 0; i < N_STATUS; i++)
        if (m->by_status[i]) buf_printf(&t, "kiln:http_requests_total{status=\"%d\"} %llu\n", i, m->by_status[i]);
    buf_printf(&t, "# HELP kiln:request_finished_total Generations finished, by reason.\n"
            "# TYPE kiln:request_finished_total counter\n");
    for (int i = 0; i < N_FINISH; i++)
        buf_printf(&t, "kiln:request_finished_total{%s,finished_reason=\"%s\"} %llu\n", labels,
            finish_names[i], m->by_finish[i]);
    put_counter(&t, "kiln:prompt_tokens_total", "Prompt tokens processed.", labels,
                m->prompt_tokens);
    put_counter(&t, "kiln:generation_tokens_total", "Tokens generated.", labels,
                m->generation_tokens);
    put_counter(&t, "kiln:embedding_inputs_total", "Inputs embedded.", labels,
                m->embedding_inputs);
    put_counter(&t, "kiln:embedding_tokens_total", "Tokens of the inputs embedded.", labels,
                m->embedding_tokens);
    put_histogram(&t, "kiln:time_to_first_token_seconds", "Time from request to first token.",
                  &m->ttft, labels);
    put_histogram(&t, "kiln:inter_token_latency_seconds", "Time between tokens of a sequence.",
                  &m->itl, labels);
    put_histogram(&t, "kiln:e2e_request_latency_seconds", "Time from request to its end.",
                  &m->e2e, labels);
    pthread_mutex_unlock(&m->mu);
    buf_printf(&t, "# HELP kiln:num_requests_running Sequences being generated.\n"
            "# TYPE kiln:num_requests_running gauge\nkiln:num_requests_running{%s} %d\n",
        labels, s->running);
    buf_printf(&t, "# HELP kiln:num_requests_waiting Sequences queued for a slot.\n"
            "# TYPE kiln:num_requests_waiting gauge\nkiln:num_requests_waiting{%s} %d\n",
        labels, s->waiting);
    buf_printf(&t, "# HELP kiln:prefix_cache_queries_total Prompt tokens looked up in the prefix cache.\n"
            "# TYPE kiln:prefix_cache_queries_total counter\nkiln:prefix_cache_queries_total{%s} %llu\n",
        labels, (unsigned long long)s->prefix_queries);
    buf_printf(&t, "# HELP kiln:prefix_cache_hits_total Prompt tokens found in the prefix cache.\n"
            "# TYPE kiln:prefix_cache_hits_total counter\nkiln:prefix_cache_hits_total{%s} %llu\n",
        labels, (unsigned long long)s->prefix_hits);
    buf_printf(&t, "# HELP kiln:num_preemptions_total Sequences preempted because the KV cache was full.\n"
            "# TYPE kiln:num_preemptions_total counter\nkiln:num_preemptions_total{%s} %llu\n",
        labels, (unsigned long long)s->preemptions);
    buf_printf(&t, "# HELP kiln:kv_cache_usage_perc Fraction of the KV cache in use (0..1).\n"
            "# TYPE kiln:kv_cache_usage_perc gauge\nkiln:kv_cache_usage_perc{%s} %.6f\n",
        labels, s->kv_capacity ? (double)s->kv_used / (double)s->kv_capacity : 0.0);
    return t.p;
}
