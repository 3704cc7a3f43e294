/* `kiln serve --model-path M [--host H] [--port P] ...`: the OpenAI-compatible server.
 * Contract: src/cli/cli.h. */
#include "cli.h"

#include "server/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The key from --api-key, KILN_API_KEY or the first line of --api-key-file (malloc'd). */
static char *api_key(const struct cli_opts *o)
{
    if (o->api_key) return strdup(o->api_key);
    if (o->api_key_file) {
        FILE *f = fopen(o->api_key_file, "r");
        char line[1024];
        if (!f || !fgets(line, sizeof line, f)) {
            fprintf(stderr, "kiln: cannot read --api-key-file %s: %s\n", o->api_key_file,
                    f ? "empty file" : strerror(errno));
            if (f) fclose(f);
            exit(2);
        }
        fclose(f);
        line[strcspn(line, "\r\n")] = 0;
        return strdup(line);
    }
    const char *env = getenv("KILN_API_KEY");
    return env && *env ? strdup(env) : NULL;
}

int cmd_serve(struct cli_opts *o)
{
    if (!o->model_path) {
        fprintf(stderr, "usage: kiln serve --model-path M.gguf [--host 127.0.0.1] [--port 8000]\n");
        return 2;
    }
    char *key = api_key(o);
    struct server_config cfg = {
        .model_path = o->model_path,
        .served_model_name = o->served_model_name,
        .host = o->host,
        .port = o->port,
        .n_threads = o->n_threads,
        .pooling = o->pooling,
        .n_ctx = o->n_ctx,
        .max_num_seqs = o->max_num_seqs,
        .max_batch_tokens = o->max_batch_tokens,
        .kv_cache_type = o->kv_cache_type,
        .kv_cache_mb = o->kv_cache_mb,
        .no_prefix_cache = o->no_prefix_cache,
        .max_waiting = o->max_waiting,
        .api_key = key,
        .chat_template_path = o->chat_template,
        .allowed_origin = o->allowed_origin,
        .max_body_bytes = o->max_body_mb > 0 ? (size_t)o->max_body_mb << 20 : 0,
        .read_timeout_s = o->timeout_s,
        .shutdown_grace_s = o->shutdown_grace_s,
    };
    int rc = server_run(&cfg);
    free(key);
    return rc;
}
