/* kiln command line: parses options and dispatches to the subcommands.
 * Contract: src/cli/cli.h. */
#include "cli.h"

#include "base/log.h"
#include "hub/hub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: kiln COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  serve     --model-path M [--host 127.0.0.1] [--port 8000]   OpenAI-compatible server\n"
    "  generate  --model-path M --prompt P [-n N] [sampling]   stream a continuation\n"
    "  chat      --model-path M [-p SYSTEM] [--chat-template T]  interactive chat\n"
    "  info      MODEL.gguf                                     metadata and tensor table\n"
    "  tokenize  --model-path M --prompt P [--no-special] [--parse-special]\n"
    "  logits    --model-path M --prompt P | --token-ids 1,2,3 [--top-k 10] [--n-predict 16]\n"
    "                                                          JSON for diffing\n"
    "  embed     --model-path M TEXT...                          embeddings as JSON arrays\n"
    "  pull      ORG/NAME[:QUANT]                 download a Hugging Face model into the cache\n"
    "  bench     --model-path M [-p 512] [-n 128] [-r 5] [--json]   pp/tg speed, roofline\n"
    "  quantize  IN.gguf OUT.gguf TYPE [--allow-requantize]   TYPE: q8_0 q4_0 q4_1 q5_0 q5_1\n"
    "                                  q4_k_m q5_k_m q6_k f16 bf16 f32\n"
    "\n"
    "options:\n"
    "  -m, --model-path PATH   GGUF file, Hugging Face model directory, or a repo id ORG/NAME\n"
    "                          (ORG/NAME:QUANT picks one GGUF of several), fetched into the\n"
    "                          cache ($KILN_CACHE_DIR or ~/.cache/kiln/models) from $HF_ENDPOINT\n"
    "                          with $HF_TOKEN unless KILN_OFFLINE=1\n"
    "  -p, --prompt TEXT       prompt text\n"
    "  -n, --n-predict N       tokens to generate (default 128; -1: until the context is full)\n"
    "  -t, --threads N         worker threads (default: all cores)\n"
    "  -c, --ctx-size N        context length (default: the model's, at most 4096)\n"
    "  --temperature F --top-k N --top-p F --min-p F --seed N\n"
    "  --repeat-penalty F --presence-penalty F --frequency-penalty F --repeat-last-n N\n"
    "  --stop TEXT             stop string (repeatable)\n"
    "  --ignore-eos            keep generating past end-of-generation tokens\n"
    "  --log-level LEVEL       debug, info, warn, error (default warn; serve: info; also\n"
    "                          KILN_LOG_LEVEL)\n"
    "  --log-file PATH         append the log there instead of stderr\n"
    "  --pooling P             embeddings: mean, cls or last (default: the model's; decoders\n"
    "                          last)\n"
    "  --kv-cache-type T       f16 (default), q8_0 or f32 (serve, generate, chat, logits, bench)\n"
    "\n"
    "serve options:\n"
    "  --host ADDR --port N    where to listen (default 127.0.0.1:8000)\n"
    "  --served-model-name ID  the model id clients use (default: the file name)\n"
    "  --api-key KEY           require 'Authorization: Bearer KEY' (also KILN_API_KEY,\n"
    "                          --api-key-file PATH); /health and /metrics stay open\n"
    "  --chat-template FILE    Jinja chat template instead of the model's\n"
    "  --allowed-origin ORIGIN send CORS headers allowing ORIGIN (e.g. '*')\n"
    "  --max-num-seqs N        sequences generated at once (default 16)\n"
    "  --max-batch-tokens N    tokens per engine step: decodes plus prompt chunks (default 512)\n"
    "  --kv-cache-mem MIB      KV cache size (default: ctx-size x max-num-seqs tokens)\n"
    "  --no-prefix-cache       do not share KV blocks between prompts with a common prefix\n"
    "  --max-waiting N         requests queued beyond those before 503 (default 256)\n"
    "  --max-body-mb N         request body limit (default 10; larger: 413)\n"
    "  --timeout S             close idle or stalled connections after S seconds (default 60)\n"
    "  --shutdown-grace S      on SIGTERM, wait S seconds for requests in flight (default 30)\n";

static bool parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < -2147483647L || v > 2147483647L) return false;
    *out = (int)v;
    return true;
}

static bool parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || end == s) return false;
    *out = v;
    return true;
}

bool cli_parse(struct cli_opts *o, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, takes = true;
        int seed = 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model-path") || !strcmp(a, "--model"))
            o->model_path = val;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt"))
            o->prompt = val;
        else if (!strcmp(a, "--token-ids"))
            o->token_ids = val;
        else if (!strcmp(a, "--pooling"))
            o->pooling = val;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict") || !strcmp(a, "--max-tokens"))
            ok = val && parse_int(val, &o->n_predict);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            ok = val && parse_int(val, &o->n_threads) && o->n_threads >= 0;
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size"))
            ok = val && parse_int(val, &o->n_ctx) && o->n_ctx >= 0;
        else if (!strcmp(a, "--temperature") || !strcmp(a, "--temp"))
            ok = val && parse_float(val, &o->sampling.temperature);
        else if (!strcmp(a, "--top-k"))
            ok = val && parse_int(val, &o->sampling.top_k);
        else if (!strcmp(a, "--top-p"))
            ok = val && parse_float(val, &o->sampling.top_p);
        else if (!strcmp(a, "--min-p"))
            ok = val && parse_float(val, &o->sampling.min_p);
        else if (!strcmp(a, "--repeat-penalty"))
            ok = val && parse_float(val, &o->sampling.repetition_penalty);
        else if (!strcmp(a, "--presence-penalty"))
            ok = val && parse_float(val, &o->sampling.presence_penalty);
        else if (!strcmp(a, "--frequency-penalty"))
            ok = val && parse_float(val, &o->sampling.frequency_penalty);
        else if (!strcmp(a, "--repeat-last-n"))
            ok = val && parse_int(val, &o->sampling.penalty_last_n);
        else if (!strcmp(a, "--seed")) {
            ok = val && parse_int(val, &seed);
            o->sampling.seed = (uint64_t)(uint32_t)seed;
        } else if (!strcmp(a, "--stop")) {
            ok = val && o->n_stop < 16;
            if (ok) o->stop[o->n_stop++] = val;
        } else if (!strcmp(a, "--log-level"))
            o->log_level = val;
        else if (!strcmp(a, "--log-file"))
            o->log_file = val;
        else if (!strcmp(a, "--host"))
            o->host = val;
        else if (!strcmp(a, "--port"))
            ok = val && parse_int(val, &o->port) && o->port > 0 && o->port < 65536;
        else if (!strcmp(a, "--served-model-name"))
            o->served_model_name = val;
        else if (!strcmp(a, "--api-key"))
            o->api_key = val;
        else if (!strcmp(a, "--api-key-file"))
            o->api_key_file = val;
        else if (!strcmp(a, "--chat-template"))
            o->chat_template = val;
        else if (!strcmp(a, "--allowed-origin"))
            o->allowed_origin = val;
        else if (!strcmp(a, "--max-num-seqs"))
            ok = val && parse_int(val, &o->max_num_seqs) && o->max_num_seqs > 0;
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions"))
            ok = val && parse_int(val, &o->repetitions) && o->repetitions > 0;
        else if (!strcmp(a, "--max-batch-tokens"))
            ok = val && parse_int(val, &o->max_batch_tokens) && o->max_batch_tokens > 0;
        else if (!strcmp(a, "--kv-cache-mem"))
            ok = val && parse_int(val, &o->kv_cache_mb) && o->kv_cache_mb > 0;
        else if (!strcmp(a, "--kv-cache-type"))
            o->kv_cache_type = val;
        else if (!strcmp(a, "--max-waiting"))
            ok = val && parse_int(val, &o->max_waiting) && o->max_waiting > 0;
        else if (!strcmp(a, "--max-body-mb"))
            ok = val && parse_int(val, &o->max_body_mb) && o->max_body_mb > 0;
        else if (!strcmp(a, "--timeout"))
            ok = val && parse_int(val, &o->timeout_s) && o->timeout_s > 0;
        else if (!strcmp(a, "--shutdown-grace"))
            ok = val && parse_int(val, &o->shutdown_grace_s) && o->shutdown_grace_s > 0;
        else {
            takes = false;
            if (!strcmp(a, "--no-special"))
                o->no_special = true;
            else if (!strcmp(a, "--parse-special"))
                o->parse_special = true;
            else if (!strcmp(a, "--ignore-eos"))
                o->ignore_eos = true;
            else if (!strcmp(a, "--ids"))
                o->show_ids = true;
            else if (!strcmp(a, "--allow-requantize"))
                o->allow_requantize = true;
            else if (!strcmp(a, "--no-prefix-cache"))
                o->no_prefix_cache = true;
            else if (!strcmp(a, "--json"))
                o->json = true;
            else if (a[0] != '-' && o->n_positional < CLI_MAX_POSITIONAL)
                o->positional[o->n_positional++] = a;
            else {
                fprintf(stderr, "kiln: unknown option '%s' (see kiln --help)\n", a);
                return false;
            }
        }
        if (takes && (!val || !ok)) {
            fprintf(stderr, "kiln: option %s needs a valid value\n", a);
            return false;
        }
        i += takes;
    }
    if (o->log_file && !log_open_file(o->log_file)) {
        fprintf(stderr, "kiln: cannot open --log-file %s\n", o->log_file);
        return false;
    }
    if (o->log_level) {
        int level = log_level_parse(o->log_level);
        if (level < 0) {
            fprintf(stderr, "kiln: unknown log level '%s'\n", o->log_level);
            return false;
        }
        log_set_level((enum log_level)level);
    }
    return true;
}

kiln_status cli_context_new(kiln_model *m, const struct cli_opts *o, int32_t n_ctx,
                            kiln_context **ctx, struct kiln_err *err)
{
    struct kiln_context_params p = {.n_ctx = n_ctx, .kv_cache_type = o->kv_cache_type};
    return kiln_context_new_with(m, &p, ctx, err);
}

kiln_model *cli_open_model(const struct cli_opts *o)
{
    if (!o->model_path) {
        fprintf(stderr, "kiln: --model-path is required\n");
        return NULL;
    }
    struct kiln_model_params params = {.n_threads = o->n_threads, .pooling = o->pooling};
    struct kiln_err err = {{0}};
    kiln_model *m = NULL;
    char path[8192];
    kiln_status st = hub_resolve(o->model_path, path, sizeof path, &err);
    if (st == KILN_OK) st = kiln_model_open(path, &params, &m, &err);
    if (st != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err.msg[0] ? err.msg : kiln_status_str(st));
        return NULL;
    }
    return m;
}

int32_t *cli_tokenize_prompt(kiln_model *m, const struct cli_opts *o, size_t *n)
{
    int32_t *ids = kiln_tokenize_new(m, o->prompt, strlen(o->prompt), !o->no_special,
                                     o->parse_special, n);
    if (!ids) fprintf(stderr, "kiln: cannot tokenize the prompt\n");
    return ids;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *env_level = getenv("KILN_LOG_LEVEL");
    if (env_level && log_level_parse(env_level) >= 0)
        log_set_level((enum log_level)log_level_parse(env_level));
    struct cli_opts o = {.n_predict = 128, .sampling = kiln_sampling_default()};
    const char *cmd = argv[1];
    if (!strcmp(cmd, "logits")) { /* --top-k: pairs per position; --n-predict: greedy steps */
        o.sampling.top_k = 10;
        o.n_predict = 16;
    }
    if (!cli_parse(&o, argc - 2, argv + 2)) return 2;
    if (!strcmp(cmd, "info")) return cmd_info(&o);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(&o);
    if (!strcmp(cmd, "logits")) return cmd_logits(&o);
    if (!strcmp(cmd, "generate")) return cmd_generate(&o);
    if (!strcmp(cmd, "chat")) return cmd_chat(&o);
    if (!strcmp(cmd, "quantize")) return cmd_quantize(&o);
    if (!strcmp(cmd, "bench")) return cmd_bench(&o);
    if (!strcmp(cmd, "embed")) return cmd_embed(&o);
    if (!strcmp(cmd, "pull")) return cmd_pull(&o);
    if (!strcmp(cmd, "serve")) {
        /* the access log is info; show it unless a level was chosen */
        if (!o.log_level && !env_level) log_set_level(LOG_INFO);
        return cmd_serve(&o);
    }
    fprintf(stderr, "kiln: unknown command '%s'\n\n%s", cmd, usage);
    return 2;
}
