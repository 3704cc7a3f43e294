/* `kiln chat --model-path M`: an interactive conversation on the terminal, rendered with
 * the model's chat template (or --chat-template FILE). Commands: /reset, /exit.
 * Contract: src/cli/cli.h. */
#include "cli.h"

#include "base/buf.h"
#include "template/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints each piece of the reply and keeps it (user is a struct buf). */
static bool print_and_keep(void *user, int32_t token, const char *text, size_t len)
{
    (void)token;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return buf_append(user, text, len);
}

static void add_message(json_t *messages, const char *role, const char *content)
{
    json_array_append_new(messages, json_pack("{s:s, s:s}", "role", role, "content", content));
}

int cmd_chat(struct cli_opts *o)
{
    kiln_model *m = cli_open_model(o);
    if (!m) return 1;
    struct kiln_err err = {{0}};
    struct jinja_template *tpl = NULL;
    kiln_context *ctx = NULL;
    bool fallback;
    int rc = 1;
    if (chat_template_load(m, o->model_path, o->chat_template, &tpl, &fallback, &err) != KILN_OK ||
        cli_context_new(m, o, o->n_ctx, &ctx, &err) != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err.msg);
        goto done;
    }
    if (fallback) fprintf(stderr, "(the model has no chat template; using ChatML)\n");
    fprintf(stderr, "kiln chat: %s. Type a message; /reset starts over, /exit or Ctrl-D ends.\n",
            kiln_model_desc(m));
    json_t *messages = json_array();
    if (o->prompt) add_message(messages, "system", o->prompt);
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        fputs("> ", stderr);
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (!strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            json_array_clear(messages);
            if (o->prompt) add_message(messages, "system", o->prompt);
            continue;
        }
        if (n == 0) continue;
        add_message(messages, "user", line);
        char *prompt = NULL;
        if (chat_render(tpl, m, messages, NULL, true, &prompt, &err) != KILN_OK) {
            fprintf(stderr, "kiln: %s\n", err.msg);
            json_array_remove(messages, json_array_size(messages) - 1);
            continue;
        }
        size_t n_ids;
        int32_t *ids = kiln_tokenize_new(m, prompt, strlen(prompt), false, true, &n_ids);
        if (!ids) {
            fprintf(stderr, "kiln: cannot tokenize the conversation\n");
            free(prompt);
            break;
        }
        free(prompt);
        struct kiln_generate_params gp = {.sampling = o->sampling, .max_tokens = o->n_predict,
                                          .stop = o->stop, .n_stop = (size_t)o->n_stop};
        struct buf reply = {0};
        struct kiln_generate_result res;
        kiln_status st = kiln_generate(ctx, ids, n_ids, &gp, print_and_keep, &reply, &res, &err);
        free(ids);
        putchar('\n');
        if (st != KILN_OK) {
            fprintf(stderr, "kiln: %s%s\n", err.msg,
                    st == KILN_ERANGE ? " (the conversation is too long: /reset)" : "");
            json_array_remove(messages, json_array_size(messages) - 1);
            buf_free(&reply);
            continue;
        }
        add_message(messages, "assistant", reply.p ? reply.p : "");
        buf_free(&reply);
    }
    free(line);
    json_decref(messages);
    rc = 0;
done:
    kiln_context_free(ctx);
    jinja_template_free(tpl);
    kiln_model_free(m);
    return rc;
}
