/* `kiln embed --model-path M TEXT...`: prints one JSON array of floats per text, in order,
 * as the model's embedding pipeline makes them. Contract: src/cli/cli.h. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_embed(struct cli_opts *o)
{
    const char *texts[CLI_MAX_POSITIONAL + 1];
    int n = 0;
    for (int i = 0; i < o->n_positional; i++) texts[n++] = o->positional[i];
    if (o->prompt) texts[n++] = o->prompt;
    if (n == 0) {
        fprintf(stderr, "usage: kiln embed --model-path M TEXT... (or --prompt TEXT)\n");
        return 2;
    }
    kiln_model *m = cli_open_model(o);
    if (!m) return 1;
    int rc = 1, dim = kiln_model_n_embd(m);
    int32_t *ids[CLI_MAX_POSITIONAL + 1] = {0};
    size_t lens[CLI_MAX_POSITIONAL + 1];
    float *out = malloc((size_t)n * (size_t)dim * sizeof(float));
    struct kiln_err err = {{0}};
    for (int i = 0; i < n; i++)
        if (!(ids[i] = kiln_tokenize_new(m, texts[i], strlen(texts[i]), !o->no_special, true,
                                         &lens[i]))) {
            fprintf(stderr, "kiln: cannot tokenize text %d\n", i);
            goto done;
        }
    if (!out) {
        fprintf(stderr, "kiln: out of memory\n");
        goto done;
    }
    if (kiln_embed(m, (const int32_t *const *)ids, lens, (size_t)n, out, &err) != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err.msg);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        putchar('[');
        for (int j = 0; j < dim; j++) printf(j ? ", %.9g" : "%.9g", out[(size_t)i * dim + j]);
        puts("]");
    }
    rc = 0;
done:
    for (int i = 0; i < n; i++) free(ids[i]);
    free(out);
    kiln_model_free(m);
    return rc;
}
