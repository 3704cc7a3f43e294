/* `kiln logits` and `kiln tokenize`: machine-readable views of the model, for tests that
 * diff kiln against llama.cpp. Contract: src/cli/cli.h. */
#include "cli.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_tokenize(struct cli_opts *o)
{
    if (!o->prompt) {
        fprintf(stderr, "kiln tokenize: --prompt is required\n");
        return 2;
    }
    kiln_model *m = cli_open_model(o);
    if (!m) return 1;
    size_t n;
    int32_t *ids = cli_tokenize_prompt(m, o, &n);
    if (!ids) {
        kiln_model_free(m);
        return 1;
    }
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    putchar('\n');
    free(ids);
    kiln_model_free(m);
    return 0;
}

struct pair {
    int32_t id;
    float logit;
};

static int by_logit(const void *a, const void *b)
{
    float x = ((const struct pair *)a)->logit, y = ((const struct pair *)b)->logit;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Summary of one row of logits: mean, rms, log-sum-exp and the top k pairs. */
static json_t *position_json(const float *l, int n_vocab, int k, struct pair *scratch)
{
    double sum = 0, sq = 0, max = l[0];
    for (int i = 0; i < n_vocab; i++) {
        sum += l[i];
        sq += (double)l[i] * l[i];
        if (l[i] > max) max = l[i];
    }
    double se = 0;
    for (int i = 0; i < n_vocab; i++) se += exp(l[i] - max);
    for (int i = 0; i < n_vocab; i++) scratch[i] = (struct pair){i, l[i]};
    qsort(scratch, (size_t)n_vocab, sizeof *scratch, by_logit);
    json_t *top = json_array();
    for (int i = 0; i < k && i < n_vocab; i++)
        json_array_append_new(top, json_pack("[i, f]", scratch[i].id, (double)scratch[i].logit));
    return json_pack("{s:f, s:f, s:f, s:o}", "mean", sum / n_vocab, "rms", sqrt(sq / n_vocab),
                     "logsumexp", max + log(se), "top", top);
}

/* "1,2,3" (commas or spaces) as a malloc'd array; NULL after printing the problem. */
static int32_t *parse_token_ids(const char *s, size_t *n)
{
    size_t cap = strlen(s) / 2 + 1;
    int32_t *ids = malloc(cap * sizeof *ids);
    *n = 0;
    for (const char *p = s; ids && *p;) {
        if (*p == ',' || *p == ' ') {
            p++;
            continue;
        }
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || *n == cap) {
            fprintf(stderr, "kiln logits: --token-ids wants integers like 1,2,3\n");
            free(ids);
            return NULL;
        }
        ids[(*n)++] = (int32_t)v;
        p = end;
    }
    if (ids && *n == 0) {
        fprintf(stderr, "kiln logits: --token-ids is empty\n");
        free(ids);
        return NULL;
    }
    return ids;
}

int cmd_logits(struct cli_opts *o)
{
    if (!o->prompt && !o->token_ids) {
        fprintf(stderr, "kiln logits: --prompt or --token-ids is required\n");
        return 2;
    }
    kiln_model *m = cli_open_model(o);
    if (!m) return 1;
    int rc = 1;
    size_t n;
    kiln_context *ctx = NULL;
    struct kiln_err err = {{0}};
    int n_vocab = kiln_model_n_vocab(m);
    int32_t *ids = o->token_ids ? parse_token_ids(o->token_ids, &n) : cli_tokenize_prompt(m, o, &n);
    float *logits = ids ? malloc(n * (size_t)n_vocab * sizeof(float)) : NULL;
    struct pair *scratch = malloc((size_t)n_vocab * sizeof *scratch);
    if (!ids || !logits || !scratch) goto done;
    if (cli_context_new(m, o, (int32_t)(n + (size_t)o->n_predict + 1), &ctx, &err) != KILN_OK ||
        kiln_eval(ctx, ids, n, true, logits, &err) != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err.msg);
        goto done;
    }
    json_t *prompt_tokens = json_array(), *positions = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(prompt_tokens, json_integer(ids[i]));
        json_array_append_new(positions,
                              position_json(logits + i * (size_t)n_vocab, n_vocab, o->sampling.top_k,
                                            scratch));
    }
    /* Greedy continuation, each token fed back in; margins are top-1 minus top-2. */
    json_t *greedy = json_array(), *margins = json_array();
    char *hex = calloc((size_t)o->n_predict * 512 + 1, 1);
    size_t hex_len = 0;
    float *last = logits + (n - 1) * (size_t)n_vocab;
    for (int step = 0; step < o->n_predict && hex; step++) {
        int best = 0, second = -1;
        for (int i = 1; i < n_vocab; i++) {
            if (last[i] > last[best]) {
                second = best;
                best = i;
            } else if (second < 0 || last[i] > last[second]) {
                second = i;
            }
        }
        json_array_append_new(greedy, json_integer(best));
        json_array_append_new(margins, json_real(last[best] - last[second]));
        char piece[256];
        int len = kiln_token_to_piece(m, best, false, piece, sizeof piece);
        for (int i = 0; i < len; i++)
            hex_len += (size_t)sprintf(hex + hex_len, "%02x", (unsigned char)piece[i]);
        int32_t tok = best;
        if (kiln_eval(ctx, &tok, 1, false, logits, &err) != KILN_OK) {
            fprintf(stderr, "kiln: %s\n", err.msg);
            break;
        }
        last = logits;
    }
    json_t *out = json_pack("{s:s, s:s, s:i, s:i, s:o, s:o, s:o, s:o, s:s}", "model",
                            o->model_path, "prompt", o->prompt ? o->prompt : "", "add_special", !o->no_special,
                            "n_vocab", n_vocab, "prompt_tokens", prompt_tokens, "positions",
                            positions, "greedy", greedy, "greedy_margins", margins,
                            "greedy_text_hex", hex ? hex : "");
    json_dumpf(out, stdout, JSON_COMPACT | JSON_REAL_PRECISION(7));
    putchar('\n');
    json_decref(out);
    free(hex);
    rc = 0;
done:
    kiln_context_free(ctx);
    free(ids);
    free(logits);
    free(scratch);
    kiln_model_free(m);
    return rc;
}
