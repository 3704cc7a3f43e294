/* `kiln generate` streams a continuation of a prompt. Contract: src/cli/cli.h. */
#include "cli.h"

#include "base/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool print_piece(void *user, int32_t token, const char *text, size_t len)
{
    (void)user;
    (void)token;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

int cmd_generate(struct cli_opts *o)
{
    if (!o->prompt) {
        fprintf(stderr, "kiln generate: --prompt is required\n");
        return 2;
    }
    kiln_model *m = cli_open_model(o);
    if (!m) return 1;
    int rc = 1;
    kiln_context *ctx = NULL;
    struct kiln_err err = {{0}};
    size_t n = 0;
    int32_t *ids = cli_tokenize_prompt(m, o, &n);
    if (!ids) goto done;
    if (cli_context_new(m, o, o->n_ctx, &ctx, &err) != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err.msg);
        goto done;
    }
    struct kiln_generate_params gp = {
        .sampling = o->sampling,
        .max_tokens = o->n_predict,
        .stop = o->stop,
        .n_stop = (size_t)o->n_stop,
        .ignore_eos = o->ignore_eos,
    };
    struct kiln_generate_result res;
    fputs(o->prompt, stdout);
    double t0 = clock_seconds();
    kiln_status st = kiln_generate(ctx, ids, n, &gp, print_piece, NULL, &res, &err);
    double dt = clock_seconds() - t0;
    putchar('\n');
    if (st != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err.msg);
        goto done;
    }
    fprintf(stderr, "[%d prompt tokens, %d generated in %.2f s (%.1f tokens/s), finish: %s]\n",
            res.n_prompt, res.n_generated, dt, dt > 0 ? res.n_generated / dt : 0.0,
            res.finish == KILN_FINISH_STOP ? "stop" : "length");
    rc = 0;
done:
    kiln_context_free(ctx);
    free(ids);
    kiln_model_free(m);
    return rc;
}
