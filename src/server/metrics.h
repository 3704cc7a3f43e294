/* Server metrics in Prometheus text format, named in the spirit of vLLM's (kiln: prefix).
 * Counters and histograms are updated by the HTTP threads as requests finish; gauges are
 * read from the scheduler when /metrics is scraped.
 * Contract for src/server/metrics.c. Thread-safe. */
#ifndef KILN_SERVER_METRICS_H
#define KILN_SERVER_METRICS_H

#include "engine/scheduler.h"

#include <stddef.h>

struct metrics;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* One HTTP response sent, by status code. */
void metrics_http_response(struct metrics *m, int status);
/* One generation finished: its finish reason ("stop", "length", "canceled", "error"), its
 * token counts and its latencies in seconds (ttft < 0 when no token came). */
void metrics_generation(struct metrics *m, const char *finish, int n_prompt, int n_generated,
                        double ttft, double e2e);
/* One embeddings request served: its inputs and their tokens. */
void metrics_embedding(struct metrics *m, int n_inputs, int n_tokens);
/* The gap between two tokens of one sequence. */
void metrics_inter_token(struct metrics *m, double seconds);

/* Renders every metric (malloc'd, NUL-terminated). */
char *metrics_render(struct metrics *m, const struct sched_stats *stats, const char *model);

#endif
