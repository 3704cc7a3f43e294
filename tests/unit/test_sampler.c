/* Tests for the sampler: each filter keeps exactly the tokens it should, draws follow the
 * distribution, the same seed gives the same draws, penalties and bias change the logits
 * by the documented amounts, and bad settings are refused. Mirrors src/engine/sampler.c. */
#include "check.h"
#include "engine/sampler.h"

#include <math.h>
#include <string.h>

enum { V = 6 };

/* Probabilities 0.4 0.25 0.15 0.1 0.06 0.04 as logits. */
static void fill(float *l)
{
    static const float p[V] = {0.4f, 0.25f, 0.15f, 0.1f, 0.06f, 0.04f};
    for (int i = 0; i < V; i++) l[i] = logf(p[i]);
}

/* Draws n tokens with settings p and counts how often each comes up. */
static bool histogram(const struct kiln_sampling *p, int n, int counts[V])
{
    struct sampler s;
    struct kiln_err err = {{0}};
    if (sampler_init(&s, p, V, &err) != KILN_OK) return false;
    memset(counts, 0, V * sizeof *counts);
    for (int i = 0; i < n; i++) {
        float l[V];
        fill(l);
        counts[sampler_sample(&s, l, NULL, 0)]++;
    }
    sampler_free(&s);
    return true;
}

static void test_greedy_takes_the_largest_logit(void)
{
    struct kiln_sampling p = kiln_sampling_default();
    p.temperature = 0;
    int counts[V];
    CHECK(histogram(&p, 50, counts), "init");
    CHECK(counts[0] == 50, "greedy picked another token");
}

/* Logits below the ones a test sets, varied so that no two neighbours are equal. */
static void fill_below(float *l, int n)
{
    for (int i = 0; i < n; i++) l[i] = -1.0f - (float)(i % 13) * 0.01f;
}

/* Greedy over a vocabulary of whole and partial groups of eight: the largest logit wins
 * wherever it is (first, in a group, in the short tail), and of equal largest ones the
 * first. */
static void test_greedy_finds_the_first_largest_anywhere(void)
{
    enum { N = 1003 };
    struct kiln_sampling p = kiln_sampling_default();
    p.temperature = 0;
    struct sampler s;
    struct kiln_err err = {{0}};
    CHECK(sampler_init(&s, &p, N, &err) == KILN_OK, "init");
    static const int where[] = {0, 7, 8, 500, 999, 1000, 1002};
    float l[N];
    for (size_t k = 0; k < sizeof where / sizeof *where; k++) {
        fill_below(l, N);
        l[where[k]] = 3.0f;
        CHECK(sampler_sample(&s, l, NULL, 0) == where[k], "largest at %d", where[k]);
        int other = where[k] == N - 1 ? N - 2 : N - 1; /* a tie near the end */
        fill_below(l, N);
        l[where[k]] = l[other] = 3.0f;
        int first = where[k] < other ? where[k] : other;
        CHECK(sampler_sample(&s, l, NULL, 0) == first, "tie at %d: want %d", where[k], first);
    }
    fill_below(l, N);
    l[21] = l[17] = 3.0f; /* a tie inside one group of eight */
    CHECK(sampler_sample(&s, l, NULL, 0) == 17, "tie at 17 and 21");
    fill_below(l, N);
    l[3] = NAN; /* a NaN logit is never the largest */
    l[500] = 3.0f;
    CHECK(sampler_sample(&s, l, NULL, 0) == 500, "largest after a NaN");
    sampler_free(&s);
}

static void test_draws_follow_the_distribution(void)
{
    struct kiln_sampling p = kiln_sampling_default();
    p.seed = 42;
    int counts[V];
    const int n = 40000;
    CHECK(histogram(&p, n, counts), "init");
    static const double expect[V] = {0.4, 0.25, 0.15, 0.1, 0.06, 0.04};
    for (int i = 0; i < V; i++)
        CHECK(fabs((double)counts[i] / n - expect[i]) < 0.01, "token %d: %.4f vs %.2f", i,
              (double)counts[i] / n, expect[i]);
}

/* A vocabulary of several draw chunks (64 values each) with its tail chunk short: the
 * tokens either side of every chunk boundary come up as often as their probabilities say,
 * and a token of zero probability (its logit 100 below the top) never does. */
static void test_draws_across_chunks(void)
{
    enum { W = 200, N = 40000 };
    static const int live[] = {0, 63, 64, 127, 128, 191, 192, 199};
    static const double prob[] = {0.05, 0.1, 0.2, 0.05, 0.15, 0.1, 0.25, 0.1};
    struct kiln_sampling p = kiln_sampling_default();
    p.seed = 7;
    struct sampler s;
    struct kiln_err err = {{0}};
    CHECK(sampler_init(&s, &p, W, &err) == KILN_OK, "%s", err.msg);
    static int counts[W];
    for (int d = 0; d < N; d++) {
        float l[W];
        for (int i = 0; i < W; i++) l[i] = -100.0f; /* 0 after softmax, or a denormal (scalar) */
        for (int k = 0; k < 8; k++) l[live[k]] = logf((float)prob[k]);
        counts[sampler_sample(&s, l, NULL, 0)]++;
    }
    sampler_free(&s);
    int seen = 0;
    for (int k = 0; k < 8; k++) {
        seen += counts[live[k]];
        CHECK(fabs((double)counts[live[k]] / N - prob[k]) < 0.01, "token %d: %.4f vs %.2f",
              live[k], (double)counts[live[k]] / N, prob[k]);
    }
    CHECK(seen == N, "%d draws of zero-probability tokens", N - seen);
}

static void test_same_seed_same_draws(void)
{
    struct kiln_sampling p = kiln_sampling_default();
    struct sampler a, b, c;
    struct kiln_err err = {{0}};
    p.seed = 7;
    CHECK(sampler_init(&a, &p, V, &err) == KILN_OK && sampler_init(&b, &p, V, &err) == KILN_OK,
          "init");
    p.seed = 8;
    CHECK(sampler_init(&c, &p, V, &err) == KILN_OK, "init");
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        float l1[V], l2[V], l3[V];
        fill(l1);
        fill(l2);
        fill(l3);
        int32_t x = sampler_sample(&a, l1, NULL, 0), y = sampler_sample(&b, l2, NULL, 0);
        CHECK(x == y, "draw %d: %d vs %d with the same seed", i, x, y);
        differ += sampler_sample(&c, l3, NULL, 0) != x;
    }
    CHECK(differ > 50, "another seed gave nearly the same draws (%d of 200 differ)", differ);
    sampler_free(&a);
    sampler_free(&b);
    sampler_free(&c);
}

static void test_top_k_top_p_min_p_keep_the_right_tokens(void)
{
    int counts[V];
    struct kiln_sampling p = kiln_sampling_default();
    p.seed = 1;
    p.top_k = 2;
    CHECK(histogram(&p, 4000, counts), "init");
    CHECK(counts[0] > 0 && counts[1] > 0 && counts[2] + counts[3] + counts[4] + counts[5] == 0,
          "top_k 2 kept %d %d %d", counts[2], counts[3], counts[4]);
    /* Renormalized over the two: 0.4 / 0.65. */
    CHECK(fabs(counts[0] / 4000.0 - 0.4 / 0.65) < 0.03, "top_k renormalization %d", counts[0]);

    p = kiln_sampling_default();
    p.top_p = 0.7f; /* 0.4 + 0.25 = 0.65 < 0.7, so the third token completes the nucleus */
    CHECK(histogram(&p, 4000, counts), "init");
    CHECK(counts[2] > 0 && counts[3] + counts[4] + counts[5] == 0, "top_p 0.7: %d %d %d",
          counts[2], counts[3], counts[4]);

    p = kiln_sampling_default();
    p.min_p = 0.3f; /* keep p >= 0.12: tokens 0, 1, 2 */
    CHECK(histogram(&p, 4000, counts), "init");
    CHECK(counts[2] > 0 && counts[3] + counts[4] + counts[5] == 0, "min_p 0.3: %d %d", counts[2],
          counts[3]);

    p = kiln_sampling_default();
    p.top_k = 1; /* top-k 1 is greedy whatever the temperature */
    p.temperature = 5;
    CHECK(histogram(&p, 500, counts), "init");
    CHECK(counts[0] == 500, "top_k 1 drew another token");
}

static void test_temperature_sharpens_and_flattens(void)
{
    int cold[V], hot[V];
    struct kiln_sampling p = kiln_sampling_default();
    p.temperature = 0.25f; /* p^4: 0.4 becomes ~0.83 */
    CHECK(histogram(&p, 20000, cold), "init");
    p.temperature = 4.0f;  /* p^(1/4): nearly flat */
    CHECK(histogram(&p, 20000, hot), "init");
    CHECK(cold[0] > 0.78 * 20000 && cold[0] < 0.88 * 20000, "cold: %d", cold[0]);
    CHECK(hot[0] < 0.28 * 20000 && hot[5] > 0.09 * 20000, "hot: %d %d", hot[0], hot[5]);
}

static void test_penalties_and_bias_change_logits_as_documented(void)
{
    struct kiln_sampling p = kiln_sampling_default();
    struct kiln_logit_bias bias[] = {{4, 3.0f}};
    p.temperature = 0;
    p.repetition_penalty = 2.0f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    p.penalty_last_n = 4;
    p.logit_bias = bias;
    p.n_logit_bias = 1;
    struct sampler s;
    struct kiln_err err = {{0}};
    CHECK(sampler_init(&s, &p, V, &err) == KILN_OK, "%s", err.msg);
    float l[V] = {2.0f, -1.0f, 1.0f, 0.5f, 0.0f, -3.0f};
    /* Token 5 lies outside the last 4, token 0 appears twice inside, token 1 once. */
    int32_t history[] = {5, 0, 1, 0, 2};
    int32_t tok = sampler_sample(&s, l, history, 5);
    CHECK(fabsf(l[0] - (2.0f / 2 - 2 * 0.25f - 0.5f)) < 1e-6f, "token 0: %g", l[0]);
    CHECK(fabsf(l[1] - (-1.0f * 2 - 0.25f - 0.5f)) < 1e-6f, "token 1: %g", l[1]);
    CHECK(fabsf(l[2] - (1.0f / 2 - 0.25f - 0.5f)) < 1e-6f, "token 2: %g", l[2]);
    CHECK(l[3] == 0.5f && l[5] == -3.0f, "unseen tokens changed: %g %g", l[3], l[5]);
    CHECK(l[4] == 3.0f && tok == 4, "bias: logit %g, picked %d", l[4], tok);
    sampler_free(&s);
}

static void test_bad_settings_are_refused(void)
{
    struct kiln_sampling bad[8];
    for (int i = 0; i < 8; i++) bad[i] = kiln_sampling_default();
    bad[0].temperature = -1;
    bad[1].temperature = NAN;
    bad[2].top_p = 0;
    bad[3].top_p = 1.5f;
    bad[4].min_p = 2;
    bad[5].top_k = -1;
    bad[6].repetition_penalty = 0;
    struct kiln_logit_bias outside = {V, 1.0f};
    bad[7].logit_bias = &outside;
    bad[7].n_logit_bias = 1;
    for (int i = 0; i < 8; i++) {
        struct sampler s;
        struct kiln_err err = {{0}};
        CHECK(sampler_init(&s, &bad[i], V, &err) == KILN_EINVAL && err.msg[0],
              "setting %d accepted", i);
    }
}

int main(void)
{
    RUN(test_greedy_takes_the_largest_logit);
    RUN(test_greedy_finds_the_first_largest_anywhere);
    RUN(test_draws_follow_the_distribution);
    RUN(test_same_seed_same_draws);
    RUN(test_top_k_top_p_min_p_keep_the_right_tokens);
    RUN(test_temperature_sharpens_and_flattens);
    RUN(test_draws_across_chunks);
    RUN(test_penalties_and_bias_change_logits_as_documented);
    RUN(test_bad_settings_are_refused);
    return check_summary();
}
