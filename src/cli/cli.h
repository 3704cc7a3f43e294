/* The kiln command line: one function per subcommand, and the shared option parsing.
 * Contract for src/cli/main.c, cmd_*.c. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include "kiln.h"

#include <stdbool.h>

#define CLI_MAX_POSITIONAL 64

/* Options shared by the subcommands; each reads the ones it needs. */
struct cli_opts {
    const char *model_path;
    const char *prompt;
    const char *token_ids; /* logits: "1,2,3" instead of a prompt */
    const char *pooling;   /* embed, serve: override the model's pooling */
    const char *log_level;
    int n_threads;
    int n_ctx;
    int n_predict;
    bool no_special;  /* tokenize: no BOS/EOS */
    bool parse_special;
    bool ignore_eos;
    bool show_ids;
    bool allow_requantize;
    /* serve */
    const char *host, *served_model_name, *api_key, *api_key_file, *chat_template,
        *allowed_origin, *log_file;
    int port, max_num_seqs, max_waiting, max_body_mb, timeout_s, shutdown_grace_s;
    int max_batch_tokens, kv_cache_mb;
    /* bench */
    int repetitions;
    bool json;
    const char *kv_cache_type;
    bool no_prefix_cache;
    struct kiln_sampling sampling;
    const char *stop[16];
    int n_stop;
    const char *positional[CLI_MAX_POSITIONAL]; /* file names; embed: the texts */
    int n_positional;
};

/* Parses argv after the subcommand. Prints the problem and returns false on a bad option. */
bool cli_parse(struct cli_opts *o, int argc, char **argv);
/* Opens o->model_path, printing the error. */
kiln_model *cli_open_model(const struct cli_opts *o);
/* A context of n_ctx tokens with o's KV cache type (--kv-cache-type). */
kiln_status cli_context_new(kiln_model *m, const struct cli_opts *o, int32_t n_ctx,
                            kiln_context **ctx, struct kiln_err *err);
/* Tokenizes o->prompt (BOS/EOS unless --no-special); returns a malloc'd array, or NULL after
 * printing the problem. */
int32_t *cli_tokenize_prompt(kiln_model *m, const struct cli_opts *o, size_t *n);

int cmd_info(struct cli_opts *o);
int cmd_tokenize(struct cli_opts *o);
int cmd_logits(struct cli_opts *o);
int cmd_generate(struct cli_opts *o);
int cmd_chat(struct cli_opts *o);
int cmd_quantize(struct cli_opts *o);
int cmd_serve(struct cli_opts *o);
int cmd_bench(struct cli_opts *o);
int cmd_embed(struct cli_opts *o);
int cmd_pull(struct cli_opts *o);

#endif
