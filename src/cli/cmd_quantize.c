/* `kiln quantize IN.gguf OUT.gguf TYPE`: writes a quantized copy of a model.
 * Contract: src/cli/cli.h. */
#include "cli.h"

#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>

int cmd_quantize(struct cli_opts *o)
{
    if (o->n_positional != 3) {
        fprintf(stderr, "usage: kiln quantize IN.gguf OUT.gguf TYPE [--allow-requantize] "
                        "[--threads N]\n");
        return 2;
    }
    /* Progress lines are info; show them unless a level was chosen. */
    if (!o->log_level && !getenv("KILN_LOG_LEVEL")) log_set_level(LOG_INFO);
    struct kiln_quantize_params params = {
        .type = o->positional[2],
        .n_threads = o->n_threads,
        .allow_requantize = o->allow_requantize,
    };
    struct kiln_err err = {{0}};
    kiln_status st = kiln_quantize(o->positional[0], o->positional[1], &params, &err);
    if (st != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err.msg[0] ? err.msg : kiln_status_str(st));
        return 1;
    }
    return 0;
}
