/* `kiln pull ORG/NAME[:QUANT]`: fetches a model into the cache (or finds it there) and prints
 * its local path. Contract: src/cli/cli.h. */
#include "cli.h"

#include "hub/hub.h"

#include <stdio.h>

int cmd_pull(struct cli_opts *o)
{
    const char *spec = o->n_positional ? o->positional[0] : o->model_path;
    if (!spec) {
        fprintf(stderr, "usage: kiln pull ORG/NAME[:QUANT]\n");
        return 2;
    }
    char path[8192];
    struct kiln_err err = {{0}};
    if (hub_resolve(spec, path, sizeof path, &err) != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err.msg);
        return 1;
    }
    puts(path);
    return 0;
}
