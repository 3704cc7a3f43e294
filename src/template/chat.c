/* Chat prompts from templates. Contract: src/template/chat.h. */
#include "template/chat.h"

#include "base/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char chatml[] =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

static char *read_file(const char *path, struct kiln_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        kiln_fail(err, KILN_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) == (size_t)n)
        buf[n] = 0;
    else {
        free(buf);
        buf = NULL;
        kiln_fail(err, KILN_EIO, "%s: cannot read", path);
    }
    fclose(f);
    return buf;
}

kiln_status chat_template_load(const kiln_model *model, const char *model_name, const char *path,
                               struct jinja_template **out, bool *fallback, struct kiln_err *err)
{
    char *file = NULL;
    const char *src = kiln_model_chat_template(model);
    if (path && !(src = file = read_file(path, err))) return KILN_EIO;
    *fallback = !src;
    if (!src) src = chatml;
    kiln_status st = jinja_compile(src, strlen(src), out, err);
    free(file);
    if (st != KILN_OK) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return kiln_fail(err, st, "chat template of %s: %s", path ? path : model_name, msg);
    }
    return KILN_OK;
}

static void token_text(const kiln_model *m, int32_t token, char *buf, size_t cap)
{
    int n = token >= 0 ? kiln_token_to_piece(m, token, true, buf, cap - 1) : 0;
    buf[n > 0 ? n : 0] = 0;
}

kiln_status chat_render(const struct jinja_template *t, const kiln_model *model, json_t *messages,
                        json_t *tools, bool add_generation_prompt, char **out,
                        struct kiln_err *err)
{
    char bos[128], eos[128];
    token_text(model, kiln_model_bos(model), bos, sizeof bos);
    token_text(model, kiln_model_eos(model), eos, sizeof eos);
    json_t *vars = json_pack("{s:O, s:b, s:s, s:s}", "messages", messages, "add_generation_prompt",
                             add_generation_prompt, "bos_token", bos, "eos_token", eos);
    if (!vars) return kiln_fail(err, KILN_ENOMEM, "out of memory for the chat template");
    if (tools) json_object_set(vars, "tools", tools);
    struct jinja_limits limits = {.max_output = 8u << 20, .max_memory = 256u << 20, .max_depth = 64};
    size_t len;
    kiln_status st = jinja_render(t, vars, &limits, out, &len, err);
    json_decref(vars);
    return st;
}
