/* Token sampling: logit bias, repetition/presence/frequency penalties, greedy, temperature,
 * top-k, top-p, min-p, seeded randomness. Contract for src/engine/sampler.c.
 * A sampler belongs to one sequence; one thread at a time. */
#ifndef KILN_ENGINE_SAMPLER_H
#define KILN_ENGINE_SAMPLER_H

#include "kiln.h"

#include <stdint.h>

struct sampler_candidate {
    int32_t id;
    float logit;
};

struct sampler {
    struct kiln_sampling p;
    int32_t n_vocab;
    uint64_t rng[4];
    struct sampler_candidate *cands; /* [n_vocab] */
    int32_t *counts;                 /* [n_vocab], zero between calls */
    double *chunk_sums;              /* the whole-vocabulary draw's, one per chunk */
};

/* KILN_EINVAL (message in err) for a setting out of range; allocates nothing. */
kiln_status sampler_check(const struct kiln_sampling *p, int32_t n_vocab, struct kiln_err *err);
/* Fails with KILN_ENOMEM, or as sampler_check. */
kiln_status sampler_init(struct sampler *s, const struct kiln_sampling *p, int32_t n_vocab,
                         struct kiln_err *err);
void sampler_free(struct sampler *s);

/* Picks the next token from logits [n_vocab] (modified in place) given the tokens so far. */
int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *history, int n_history);

#endif
