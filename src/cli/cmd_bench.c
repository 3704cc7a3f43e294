/* `kiln bench --model-path M [-p 512] [-n 128] [-t N] [-r 5] [--json]`: prompt processing
 * (pp) and generation (tg) speed like llama-bench, and generation as a fraction of the
 * machine's measured memory read bandwidth (the roofline: each generated token reads every
 * weight once). Contract: src/cli/cli.h. */
#include "cli.h"

#include "base/clock.h"
#include "base/pool.h"
#include "gguf/gguf.h"
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void mean_std(const double *v, int n, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) s2 += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : 0;
}

/* ---- memory bandwidth ------------------------------------------------------------------- */

struct bw_job {
    const uint64_t *buf;
    size_t n;
    uint64_t sums[64];
};

static void bw_worker(void *ctx, int ith, int nth)
{
    struct bw_job *j = ctx;
    size_t lo = j->n * (size_t)ith / (size_t)nth, hi = j->n * (size_t)(ith + 1) / (size_t)nth;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = lo; i + 4 <= hi; i += 4) {
        a += j->buf[i];
        b += j->buf[i + 1];
        c += j->buf[i + 2];
        d += j->buf[i + 3];
    }
    j->sums[ith % 64] = a ^ b ^ c ^ d; /* keeps the reads from being optimized away */
}

/* The machine's read bandwidth, measured beside each generation run: what other tenants
 * leave of this machine's memory moves by 10-40 % within a minute here, and one reading
 * before or after all the runs put generation at 70-130 % of it. Its pool is a second one
 * beside the model's, idle while the other runs. */
struct bw_meter {
    struct bw_job job;
    struct pool *pool;
};

static bool bw_meter_init(struct bw_meter *bm, int n_threads)
{
    /* eight times the L3 (sysconf's, where it tells), from 256 MiB to 1 GiB */
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    size_t bytes = l3 > 0 ? 8 * (size_t)l3 : 0;
    if (bytes < ((size_t)256 << 20)) bytes = (size_t)256 << 20;
    if (bytes > ((size_t)1 << 30)) bytes = (size_t)1 << 30;
    memset(bm, 0, sizeof *bm);
    uint64_t *buf = malloc(bytes);
    bm->pool = pool_new(n_threads);
    if (!buf || !bm->pool) {
        free(buf);
        pool_free(bm->pool);
        return false;
    }
    memset(buf, 1, bytes);
    bm->job.buf = buf;
    bm->job.n = bytes / sizeof *buf;
    return true;
}

/* Best of three full reads of the buffer on every thread, in bytes per second. */
static double bw_measure(struct bw_meter *bm)
{
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = clock_seconds();
        pool_run(bm->pool, bw_worker, &bm->job);
        double bw = (double)(bm->job.n * sizeof *bm->job.buf) / (clock_seconds() - t0);
        if (bw > best) best = bw;
    }
    return best;
}

static void bw_meter_free(struct bw_meter *bm)
{
    free((void *)bm->job.buf);
    pool_free(bm->pool);
}

/* Bytes of weights one generated token reads: every matrix, but only one row of the token
 * embedding unless it doubles as the output matrix. */
static uint64_t weight_bytes_per_token(const struct gguf_file *g)
{
    bool tied = !gguf_find_tensor(g, "output.weight");
    uint64_t total = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *t = &g->tensors[i];
        if (t->n_dims < 2) continue;
        if (!strcmp(t->name, "token_embd.weight") && !tied) continue;
        total += t->size;
    }
    return total;
}

/* ---- the runs --------------------------------------------------------------------------- */

static bool run_pp(kiln_context *ctx, const int32_t *tokens, int n, double *tps)
{
    struct kiln_err err = {{0}};
    kiln_context_reset(ctx);
    double t0 = clock_seconds();
    if (kiln_eval(ctx, tokens, (size_t)n, false, NULL, &err) != KILN_OK) {
        fprintf(stderr, "kiln bench: %s\n", err.msg);
        return false;
    }
    *tps = n / (clock_seconds() - t0);
    return true;
}

static bool run_tg(kiln_context *ctx, float *logits, int32_t first, int n, int32_t n_vocab,
                   double *tps)
{
    struct kiln_err err = {{0}};
    kiln_context_reset(ctx);
    int32_t tok = first;
    double t0 = clock_seconds();
    for (int i = 0; i < n; i++) {
        if (kiln_eval(ctx, &tok, 1, false, logits, &err) != KILN_OK) {
            fprintf(stderr, "kiln bench: %s\n", err.msg);
            return false;
        }
        tok = (int32_t)((tok * 31 + 7) % n_vocab); /* any token: speed does not depend on it */
    }
    *tps = n / (clock_seconds() - t0);
    return true;
}

int cmd_bench(struct cli_opts *o)
{
    /* -p and -n are the prompt and generation lengths here, as in llama-bench, where 0 skips
     * that test */
    int n_pp = o->prompt ? atoi(o->prompt) : 512, n_tg = o->n_predict;
    int reps = o->repetitions > 0 ? o->repetitions : 5;
    if (n_pp < 0 || n_tg < 0 || (n_pp == 0 && n_tg == 0)) {
        fprintf(stderr, "usage: kiln bench --model-path M [-p 512] [-n 128] [-t N] [-r 5] [--json]\n"
                        "  -p 0 or -n 0 skips that test\n");
        return 2;
    }
    kiln_model *m = cli_open_model(o);
    if (!m) return 1;
    int32_t n_vocab = kiln_model_n_vocab(m);
    kiln_context *ctx = NULL;
    struct kiln_err err = {{0}};
    int n_tokens = n_pp > 0 ? n_pp : 1; /* the first also starts generation */
    int32_t *tokens = malloc((size_t)n_tokens * sizeof *tokens);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    if (!tokens || !logits ||
        cli_context_new(m, o, n_pp > n_tg ? n_pp : n_tg, &ctx, &err) != KILN_OK) {
        fprintf(stderr, "kiln bench: %s\n", err.msg[0] ? err.msg : "out of memory");
        kiln_model_free(m);
        return 1;
    }
    for (int i = 0; i < n_tokens; i++) tokens[i] = (int32_t)((i * 7919 + 13) % n_vocab);
    double pp[64], tg[64], bws[64], fractions[64], dummy;
    if (reps > 64) reps = 64;
    const struct gguf_file *g = kiln_model_internal(m)->gguf; /* the file the model mapped */
    uint64_t file_bytes = g->size, per_token = weight_bytes_per_token(g);
    int threads = o->n_threads > 0 ? o->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    struct bw_meter bm; /* the roofline is generation's: no meter (a buffer of 256 MiB or
                         * more, written once) without it */
    bool metered = n_tg > 0 && bw_meter_init(&bm, threads);
    /* one warm-up of each (page faults, caches) */
    bool ok = (n_pp == 0 || run_pp(ctx, tokens, n_pp < 32 ? n_pp : 32, &dummy)) &&
              (n_tg == 0 || run_tg(ctx, logits, tokens[0], 4, n_vocab, &dummy));
    for (int r = 0; ok && r < reps; r++) {
        pp[r] = tg[r] = bws[r] = fractions[r] = 0;
        ok = (n_pp == 0 || run_pp(ctx, tokens, n_pp, &pp[r])) &&
             (n_tg == 0 || run_tg(ctx, logits, tokens[0], n_tg, n_vocab, &tg[r]));
        /* the bandwidth right after this run; the run's fraction of it */
        if (metered) bws[r] = bw_measure(&bm);
        fractions[r] = bws[r] > 0 ? tg[r] * (double)per_token / bws[r] : 0;
    }
    if (metered) bw_meter_free(&bm);
    if (!ok) {
        kiln_context_free(ctx);
        kiln_model_free(m);
        return 1;
    }
    double pp_mean, pp_sd, tg_mean, tg_sd, bw, roofline, unused;
    mean_std(pp, reps, &pp_mean, &pp_sd);
    mean_std(tg, reps, &tg_mean, &tg_sd);
    mean_std(bws, reps, &bw, &unused);
    mean_std(fractions, reps, &roofline, &unused);
    if (o->json) {
        printf("{\"model\": \"%s\", \"desc\": \"%s\", \"file_bytes\": %llu, \"threads\": %d, "
               "\"repetitions\": %d, \"results\": [",
               o->model_path, kiln_model_desc(m), (unsigned long long)file_bytes, threads, reps);
        if (n_pp > 0)
            printf("{\"test\": \"pp%d\", \"tokens_per_second\": %.3f, \"stddev\": %.3f}%s", n_pp,
                   pp_mean, pp_sd, n_tg > 0 ? ", " : "");
        if (n_tg > 0)
            printf("{\"test\": \"tg%d\", \"tokens_per_second\": %.3f, \"stddev\": %.3f}", n_tg,
                   tg_mean, tg_sd);
        printf("], \"weight_bytes_per_token\": %llu", (unsigned long long)per_token);
        if (n_tg > 0) /* the roofline is generation's */
            printf(", \"read_bandwidth_gbs\": %.3f, \"tg_roofline_fraction\": %.4f", bw / 1e9,
                   roofline);
        printf("}\n");
    } else {
        printf("| model | size | threads | test | t/s |\n|---|---|---|---|---|\n");
        if (n_pp > 0)
            printf("| %s | %.2f MiB | %d | pp%d | %.2f ± %.2f |\n", kiln_model_desc(m),
                   (double)file_bytes / 1048576.0, threads, n_pp, pp_mean, pp_sd);
        if (n_tg > 0) {
            printf("| %s | %.2f MiB | %d | tg%d | %.2f ± %.2f |\n", kiln_model_desc(m),
                   (double)file_bytes / 1048576.0, threads, n_tg, tg_mean, tg_sd);
            printf("\ngeneration reads %.1f MiB of weights per token; read bandwidth measured "
                   "after each run %.2f GB/s (mean); tg at %.0f%% of that roofline\n",
                   (double)per_token / 1048576.0, bw / 1e9, 100 * roofline);
        }
    }
    free(tokens);
    free(logits);
    kiln_context_free(ctx);
    kiln_model_free(m);
    return 0;
}
