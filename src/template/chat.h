/* Chat prompts: renders a conversation with a model's chat template (or ChatML when the
 * model has none), with the variables transformers passes: messages, tools,
 * add_generation_prompt, bos_token and eos_token.
 * Contract for src/template/chat.c. Any thread. */
#ifndef KILN_TEMPLATE_CHAT_H
#define KILN_TEMPLATE_CHAT_H

#include "kiln.h"
#include "template/jinja.h"

/* The template to use for model: the file at path when given, else the model's own, else
 * ChatML (*fallback set). Fails with KILN_EIO for an unreadable file, KILN_EFORMAT for a
 * template that does not parse (err names the file or model and the line). */
kiln_status chat_template_load(const kiln_model *model, const char *model_name, const char *path,
                               struct jinja_template **out, bool *fallback, struct kiln_err *err);

/* Renders messages (a JSON array) and tools (an array or NULL) into *out (malloc'd).
 * Fails like jinja_render: KILN_EINVAL when the template refuses the conversation. */
kiln_status chat_render(const struct jinja_template *t, const kiln_model *model, json_t *messages,
                        json_t *tools, bool add_generation_prompt, char **out,
                        struct kiln_err *err);

#endif
