/* A persistent thread pool: pool_run runs one function on every thread (the caller is
 * thread 0) and returns when all are done. Workers spin briefly, then sleep.
 * Contract for src/base/pool.c. One caller at a time (the thread that owns the model). */
#ifndef KILN_BASE_POOL_H
#define KILN_BASE_POOL_H

struct pool;

/* ith in [0, nth): which share of the work this call does. */
typedef void (*pool_fn)(void *ctx, int ith, int nth);

/* Starts n_threads - 1 workers (n_threads <= 0: one per online core).
 * Returns NULL when threads cannot be created. */
struct pool *pool_new(int n_threads);
void pool_free(struct pool *p);
int pool_size(const struct pool *p);
void pool_run(struct pool *p, pool_fn fn, void *ctx);

#endif
