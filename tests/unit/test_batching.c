/* Continuous batching is exact: a sequence's output is the same alone, batched with 1, 7 or
 * 31 others of different lengths, with and without prefix-cache hits, and when a tiny KV
 * pool forces preemptions; for quantized and for F16 / BF16 / F32 weights. Greedy and
 * seeded sampling both. Mirrors src/engine/scheduler.c
 * through the offline batch API (src/api/kiln_batch.c). */
#include "check.h"

#include "kiln.h"

#include <stdlib.h>
#include <string.h>

enum { N_SEQ = 32, MAX_LEN = 100, N_GEN = 16 };

static kiln_model *model;
static int32_t prompts[N_SEQ][MAX_LEN];
static size_t lens[N_SEQ];
static struct kiln_batch_result alone[N_SEQ];

static void make_prompts(void)
{
    uint32_t r = 12345;
    for (int i = 0; i < N_SEQ; i++) {
        lens[i] = 5 + (size_t)(i * 37) % (MAX_LEN - 5);
        for (size_t t = 0; t < lens[i]; t++) {
            r = r * 1664525u + 1013904223u;
            /* every third prompt starts with the same 48 tokens: prefix-cache material */
            prompts[i][t] = (i % 3 == 0 && t < 48) ? (int32_t)(100 + t) : (int32_t)(r % 7900 + 50);
        }
        if (i % 3 == 0 && lens[i] < 60) lens[i] = 60;
    }
}

static struct kiln_batch_request request(int i)
{
    struct kiln_batch_request q = {prompts[i], lens[i], {.max_tokens = N_GEN, .ignore_eos = true}};
    q.params.sampling = kiln_sampling_default();
    if (i % 2) { /* odd ones sample, seeded */
        q.params.sampling.temperature = 0.8f;
        q.params.sampling.seed = 1000 + (uint64_t)i;
        if (i % 4 == 1) { /* and some of them read their history, drawn on the pool's threads */
            static const struct kiln_logit_bias bias[] = {{60, 2.0f}, {61, -5.0f}};
            q.params.sampling.repetition_penalty = 1.3f;
            q.params.sampling.presence_penalty = 0.4f;
            q.params.sampling.frequency_penalty = 0.2f;
            q.params.sampling.logit_bias = bias;
            q.params.sampling.n_logit_bias = 2;
        }
    } else
        q.params.sampling.temperature = 0;
    return q;
}

/* Runs requests first..first+count at once and compares each with its alone result. */
static bool run_group(int first, int count, const struct kiln_engine_params *p,
                      struct kiln_batch_stats *stats, const char *what)
{
    struct kiln_batch_request reqs[N_SEQ];
    struct kiln_batch_result res[N_SEQ];
    struct kiln_err err = {{0}};
    for (int k = 0; k < count; k++) reqs[k] = request(first + k);
    if (kiln_generate_batch(model, p, reqs, (size_t)count, res, stats, &err) != KILN_OK) {
        fprintf(stderr, "  %s: %s\n", what, err.msg);
        return false;
    }
    bool same = true;
    for (int k = 0; k < count; k++) {
        const struct kiln_batch_result *a = &alone[first + k], *b = &res[k];
        if (b->status != KILN_OK || b->n_tokens != a->n_tokens ||
            memcmp(b->tokens, a->tokens, a->n_tokens * sizeof *a->tokens) != 0) {
            fprintf(stderr, "  %s: sequence %d differs from its run alone (status %d)\n", what,
                    first + k, b->status);
            same = false;
        }
    }
    kiln_batch_results_free(res, (size_t)count);
    return same;
}

static void test_alone_runs_are_complete(void)
{
    struct kiln_engine_params p = {.n_ctx = 256};
    for (int i = 0; i < N_SEQ; i++) {
        struct kiln_batch_request q = request(i);
        struct kiln_err err = {{0}};
        CHECK(kiln_generate_batch(model, &p, &q, 1, &alone[i], NULL, &err) == KILN_OK, "%s", err.msg);
        CHECK(alone[i].status == KILN_OK && alone[i].n_tokens == N_GEN, "sequence %d: %s", i,
              alone[i].err_msg);
    }
    /* the sampled ones must actually differ from greedy on the same prompt, or the test
     * proves little about seeded sampling */
    struct kiln_batch_request greedy = request(1);
    struct kiln_batch_result g;
    struct kiln_err err = {{0}};
    greedy.params.sampling.temperature = 0;
    CHECK(kiln_generate_batch(model, &p, &greedy, 1, &g, NULL, &err) == KILN_OK, "%s", err.msg);
    CHECK(g.status == KILN_OK && g.n_tokens == N_GEN, "greedy run: %s", g.err_msg);
    bool differs = memcmp(g.tokens, alone[1].tokens, N_GEN * sizeof(int32_t)) != 0;
    kiln_batch_results_free(&g, 1);
    CHECK(differs, "sampling at temperature 0.8 gave the greedy tokens");
}

static void test_batched_with_1_7_31_others(void)
{
    struct kiln_engine_params p = {.n_ctx = 256, .max_num_seqs = 32, .max_batch_tokens = 256};
    CHECK(run_group(0, 2, &p, NULL, "2 at once"), "batched with 1 other");
    CHECK(run_group(8, 8, &p, NULL, "8 at once"), "batched with 7 others");
    struct kiln_batch_stats st;
    CHECK(run_group(0, 32, &p, &st, "32 at once"), "batched with 31 others");
    CHECK(st.prefix_hit_tokens >= 48, "no prefix-cache hits (%llu)", (unsigned long long)st.prefix_hit_tokens);
    p.no_prefix_cache = true;
    CHECK(run_group(0, 32, &p, &st, "32 without prefix cache"), "without prefix caching");
    CHECK(st.prefix_hit_tokens == 0, "hits with the cache off");
}

static void test_small_batches_and_chunked_prefill(void)
{
    /* 40 tokens per step: long prompts are split across steps and interleave with decodes */
    struct kiln_engine_params p = {.n_ctx = 256, .max_num_seqs = 6, .max_batch_tokens = 40};
    CHECK(run_group(0, 32, &p, NULL, "chunked"), "chunked prefill changed a result");
}

static void test_forced_preemption(void)
{
    /* 12 blocks of 16 tokens for sequences needing up to 7 each: preemption must happen */
    struct kiln_engine_params p = {.n_ctx = 256, .max_num_seqs = 8, .n_kv_blocks = 12};
    struct kiln_batch_stats st;
    CHECK(run_group(0, 32, &p, &st, "tiny pool"), "preemption changed a result");
    CHECK(st.preemptions > 0, "the tiny pool forced no preemption");
}

/* A Q8_0 cache gives slightly different numbers than F16, but batching still changes none. */
static void test_q8_0_cache_is_exact_too(void)
{
    struct kiln_engine_params one = {.n_ctx = 256, .kv_cache_type = "q8_0"};
    struct kiln_engine_params many = {.n_ctx = 256, .max_num_seqs = 8, .kv_cache_type = "q8_0"};
    struct kiln_batch_request reqs[8];
    struct kiln_batch_result solo[8], together[8];
    struct kiln_err err = {{0}};
    for (int i = 0; i < 8; i++) {
        reqs[i] = request(i);
        CHECK(kiln_generate_batch(model, &one, &reqs[i], 1, &solo[i], NULL, &err) == KILN_OK, "%s", err.msg);
    }
    CHECK(kiln_generate_batch(model, &many, reqs, 8, together, NULL, &err) == KILN_OK, "%s", err.msg);
    for (int i = 0; i < 8; i++)
        CHECK(together[i].n_tokens == N_GEN &&
              !memcmp(together[i].tokens, solo[i].tokens, N_GEN * sizeof(int32_t)),
              "sequence %d differs batched with a Q8_0 cache", i);
    /* the single-sequence API with a Q8_0 cache decodes request 0 (greedy) alike */
    kiln_context *ctx = NULL;
    struct kiln_context_params cp = {.n_ctx = 256, .kv_cache_type = "q8_0"};
    int32_t n_vocab = kiln_model_n_vocab(model), tok = -1;
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    CHECK(logits && kiln_context_new_with(model, &cp, &ctx, &err) == KILN_OK, "%s", err.msg);
    bool ok = ctx && kiln_eval(ctx, reqs[0].prompt, reqs[0].n_prompt, false, logits, &err) == KILN_OK;
    for (int i = 0; ok && i < N_GEN; i++) {
        tok = 0;
        for (int32_t v = 1; v < n_vocab; v++) tok = logits[v] > logits[tok] ? v : tok;
        ok = tok == solo[0].tokens[i] && kiln_eval(ctx, &tok, 1, false, logits, &err) == KILN_OK;
    }
    CHECK(ok, "a kiln_context with a Q8_0 cache decodes otherwise (token %d: %s)", tok, err.msg);
    kiln_context_free(ctx);
    free(logits);
    kiln_batch_results_free(solo, 8);
    kiln_batch_results_free(together, 8);
    struct kiln_engine_params bad = {.kv_cache_type = "q4_k"};
    CHECK(kiln_generate_batch(model, &bad, reqs, 1, solo, NULL, &err) == KILN_EINVAL, "q4_k cache accepted");
    cp.kv_cache_type = "q4_k";
    ctx = NULL;
    CHECK(kiln_context_new_with(model, &cp, &ctx, &err) == KILN_EINVAL, "a q4_k context accepted");
    kiln_context_free(ctx);
}

static void test_refusals_are_per_request(void)
{
    struct kiln_engine_params p = {.n_ctx = 64};
    struct kiln_batch_request reqs[2] = {request(2), request(4)}; /* 79 tokens: too long */
    reqs[0].prompt = prompts[1];
    reqs[0].n_prompt = 10;
    struct kiln_batch_result res[2];
    struct kiln_err err = {{0}};
    CHECK(kiln_generate_batch(model, &p, reqs, 2, res, NULL, &err) == KILN_OK, "%s", err.msg);
    CHECK(res[0].status == KILN_OK && res[0].n_tokens == N_GEN, "the good one failed");
    CHECK(res[1].status == KILN_ERANGE && strstr(res[1].err_msg, "context"), "%s", res[1].err_msg);
    kiln_batch_results_free(res, 2);
    /* a sequence the whole KV pool cannot hold is refused, not preempted forever */
    struct kiln_engine_params tiny = {.n_ctx = 256, .n_kv_blocks = 2};
    struct kiln_batch_request big = request(3); /* 60 prompt tokens + 16 > 32 */
    CHECK(kiln_generate_batch(model, &tiny, &big, 1, res, NULL, &err) == KILN_OK, "%s", err.msg);
    CHECK(res[0].status == KILN_ERANGE && strstr(res[0].err_msg, "KV cache"), "%s", res[0].err_msg);
    kiln_batch_results_free(res, 1);
}

int main(void)
{
    /* every weight type the matmul handles its own way: row GEMMs from the form repacked at
     * load with AVX-512 (all of these; Q4_0 and Q8_0 up to 16 tokens a pass, the others 8),
     * and without it integer dots (Q8_0, Q4_K with Q6_K, Q4_0) and the float dots (F16, BF16
     * widened, F32) */
    const char *files[] = {"llama-gqa.q8_0.gguf", "llama-gqa.q4_k_m.gguf", "llama-gqa.q4_0.gguf",
                           "llama-gqa.f16.gguf",  "llama-gqa.bf16.gguf",   "llama-gqa.f32.gguf"};
    make_prompts();
    for (int f = 0; f < (int)(sizeof files / sizeof *files); f++) {
        if (!(model = check_open_synthetic(files[f], 0))) return 1;
        printf("%s\n", files[f]);
        RUN(test_alone_runs_are_complete);
        RUN(test_batched_with_1_7_31_others);
        RUN(test_small_batches_and_chunked_prefill);
        if (f == 0) {
            RUN(test_forced_preemption);
            RUN(test_q8_0_cache_is_exact_too);
            RUN(test_refusals_are_per_request);
        }
        kiln_batch_results_free(alone, N_SEQ);
        kiln_model_free(model);
    }
    return check_summary();
}
