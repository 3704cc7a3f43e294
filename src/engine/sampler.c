/* Sampling pipeline in llama.cpp's order: bias, penalties, then greedy or
 * top-k -> top-p -> min-p -> temperature -> draw. Contract: src/engine/sampler.h. */
#include "engine/sampler.h"

#include "model/ops.h"

#include "base/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct kiln_sampling kiln_sampling_default(void)
{
    return (struct kiln_sampling){
        .temperature = 1.0f,
        .top_k = 0,
        .top_p = 1.0f,
        .min_p = 0.0f,
        .repetition_penalty = 1.0f,
        .penalty_last_n = 64,
    };
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t next_u64(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

kiln_status sampler_check(const struct kiln_sampling *p, int32_t n_vocab, struct kiln_err *err)
{
    if (!(p->temperature >= 0) || !isfinite(p->temperature))
        return kiln_fail(err, KILN_EINVAL, "temperature must be a finite number >= 0");
    if (!(p->top_p > 0 && p->top_p <= 1))
        return kiln_fail(err, KILN_EINVAL, "top_p must be in (0, 1]");
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return kiln_fail(err, KILN_EINVAL, "min_p must be in [0, 1]");
    if (p->top_k < 0) return kiln_fail(err, KILN_EINVAL, "top_k must be >= 0");
    if (!(p->repetition_penalty > 0) || !isfinite(p->repetition_penalty))
        return kiln_fail(err, KILN_EINVAL, "repetition_penalty must be > 0");
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return kiln_fail(err, KILN_EINVAL, "penalties must be finite");
    for (size_t i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].token < 0 || p->logit_bias[i].token >= n_vocab)
            return kiln_fail(err, KILN_EINVAL, "logit_bias token %d is outside the vocabulary",
                             p->logit_bias[i].token);
    return KILN_OK;
}

/* values per chunk of the whole-vocabulary draw (draw_by_chunks) */
enum { DRAW_CHUNK = 64 };

kiln_status sampler_init(struct sampler *s, const struct kiln_sampling *p, int32_t n_vocab,
                         struct kiln_err *err)
{
    memset(s, 0, sizeof *s);
    kiln_status st = sampler_check(p, n_vocab, err);
    if (st != KILN_OK) return st;
    s->p = *p;
    s->n_vocab = n_vocab;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->chunk_sums = malloc(((size_t)n_vocab / DRAW_CHUNK + 1) * sizeof *s->chunk_sums);
    if (!s->cands || !s->counts || !s->chunk_sums) {
        sampler_free(s);
        return kiln_fail(err, KILN_ENOMEM, "out of memory for the sampler");
    }
    return KILN_OK;
}

void sampler_free(struct sampler *s)
{
    free(s->cands);
    free(s->counts);
    free(s->chunk_sums);
    memset(s, 0, sizeof *s);
}

static void apply_penalties(struct sampler *s, float *logits, const int32_t *history, int n)
{
    const struct kiln_sampling *p = &s->p;
    if (p->repetition_penalty == 1.0f && p->presence_penalty == 0 && p->frequency_penalty == 0)
        return;
    int start = p->penalty_last_n < 0 || p->penalty_last_n > n ? 0 : n - p->penalty_last_n;
    for (int i = start; i < n; i++) s->counts[history[i]]++;
    for (int i = start; i < n; i++) {
        int32_t id = history[i];
        int c = s->counts[id];
        if (c == 0) continue; /* already applied */
        float *l = &logits[id];
        if (p->repetition_penalty != 1.0f)
            *l = *l > 0 ? *l / p->repetition_penalty : *l * p->repetition_penalty;
        *l -= (float)c * p->frequency_penalty + p->presence_penalty;
        s->counts[id] = 0;
    }
}

static int by_logit_desc(const void *a, const void *b)
{
    float x = ((const struct sampler_candidate *)a)->logit,
          y = ((const struct sampler_candidate *)b)->logit;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Moves the k largest candidates to the front, sorted (quickselect, then sort of k). */
static void partial_sort(struct sampler_candidate *c, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = c[(lo + hi) / 2].logit;
        int i = lo, j = hi;
        while (i <= j) {
            while (c[i].logit > pivot) i++;
            while (c[j].logit < pivot) j--;
            if (i <= j) {
                struct sampler_candidate t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
    qsort(c, (size_t)k, sizeof *c, by_logit_desc);
}

/* The sum of n probabilities in double by four partial sums (one chain of dependent
 * additions was the draw's bottleneck). */
static double chunk_sum(const float *p, int n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
    }
    for (; i < n; i++) s0 += p[i];
    return (s0 + s1) + (s2 + s3);
}

/* Draws index i with probability p[i] / sum(p) over n probabilities. A sum in double one
 * value at a time is a chain of dependent additions (two of them over 49152 values were
 * about half of a draw), so the total is taken by chunks of DRAW_CHUNK values; the draw
 * finds its chunk from the chunk sums and then its index in the chunk. Should the in-chunk
 * running sum fall short of the chunk's own (a last-bit difference), the chunk's last index
 * of nonzero probability is drawn. */
static int32_t draw_by_chunks(struct sampler *s, const float *p, int n)
{
    int n_chunks = (n + DRAW_CHUNK - 1) / DRAW_CHUNK;
    double *sums = s->chunk_sums, total = 0;
    for (int c = 0; c < n_chunks; c++) {
        int len = n - c * DRAW_CHUNK < DRAW_CHUNK ? n - c * DRAW_CHUNK : DRAW_CHUNK;
        sums[c] = chunk_sum(p + c * DRAW_CHUNK, len);
        total += sums[c];
    }
    double r = (double)(next_u64(s->rng) >> 11) * (1.0 / 9007199254740992.0) * total, acc = 0;
    int c = 0;
    while (c < n_chunks - 1 && r >= acc + sums[c]) acc += sums[c++];
    int end = (c + 1) * DRAW_CHUNK < n ? (c + 1) * DRAW_CHUNK : n, last = c * DRAW_CHUNK;
    for (int i = c * DRAW_CHUNK; i < end; i++) {
        acc += p[i];
        if (r < acc) return i;
        if (p[i] > 0) last = i;
    }
    return last;
}

/* The first index of the largest of x[0 .. n) (n >= 1): the maximum by eight running maxima
 * the compiler makes vector maxima (one loop comparing against the best so far was 6 % of a
 * 16-sequence greedy step over 49152 logits), then its first position. */
static int32_t argmax(const float *x, int32_t n)
{
    float m[8];
    for (int j = 0; j < 8; j++) m[j] = x[0];
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    float max = m[0];
    for (int j = 1; j < 8; j++) max = m[j] > max ? m[j] : max;
    for (; i < n; i++) max = x[i] > max ? x[i] : max;
    for (i = 0; i + 8 <= n; i += 8) { /* eight at a time to the block that holds it */
        int here = 0;
        for (int j = 0; j < 8; j++) here |= x[i + j] == max;
        if (here) break;
    }
    for (; i < n; i++)
        if (x[i] == max) return i;
    return 0; /* only NaNs */
}

int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *history, int n_history)
{
    const struct kiln_sampling *p = &s->p;
    for (size_t i = 0; i < p->n_logit_bias; i++) logits[p->logit_bias[i].token] += p->logit_bias[i].bias;
    apply_penalties(s, logits, history, n_history);
    if (p->temperature <= 0) return argmax(logits, s->n_vocab);
    int n = s->n_vocab;
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    if (k == n && p->top_p >= 1.0f && p->min_p <= 0) {
        /* the whole vocabulary, as the API's default sampling asks: the logits divided by the
         * temperature eight at a time, which the compiler makes vector divisions (one at a
         * time they were a third of the draw); softmax's vectorized exp in place (two passes
         * of exp in double over 49152 logits were about 6 % of a serving step at 16
         * sequences); then one draw from the probabilities */
        const float t = p->temperature;
        int i = 0;
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++) logits[i + j] /= t;
        for (; i < n; i++) logits[i] /= t;
        softmax(logits, n);
        return draw_by_chunks(s, logits, n);
    }
    for (int i = 0; i < n; i++) s->cands[i] = (struct sampler_candidate){i, logits[i]};
    /* Without top-k, sorting everything is only needed for top-p; min-p needs the max. */
    if (k < n || p->top_p < 1.0f)
        partial_sort(s->cands, n, k);
    else {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (s->cands[i].logit > s->cands[best].logit) best = i;
        struct sampler_candidate t = s->cands[0];
        s->cands[0] = s->cands[best];
        s->cands[best] = t;
    }
    n = k;
    float max = s->cands[0].logit;
    if (p->top_p < 1.0f) {
        double sum = 0;
        for (int i = 0; i < n; i++) sum += exp((double)(s->cands[i].logit - max));
        double acc = 0;
        for (int i = 0; i < n; i++) {
            acc += exp((double)(s->cands[i].logit - max)) / sum;
            if (acc >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0) {
        /* keep tokens with probability >= min_p * the top probability */
        float cut = max + logf(p->min_p);
        int kept = 0;
        for (int i = 0; i < n; i++)
            if (s->cands[i].logit >= cut) s->cands[kept++] = s->cands[i];
        n = kept > 0 ? kept : 1;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)(s->cands[i].logit - max) / p->temperature);
    double r = (double)(next_u64(s->rng) >> 11) * (1.0 / 9007199254740992.0) * sum;
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += exp((double)(s->cands[i].logit - max) / p->temperature);
        if (r < acc) return s->cands[i].id;
    }
    return s->cands[n - 1].id;
}
