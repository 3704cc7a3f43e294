/* A Jinja2 subset, enough for real chat templates: text, {{ }}, {% %} with if / elif /
 * else, for (loop variables, else, filter clause, break / continue), set (also block set
 * and namespace attributes), macro, filter blocks, generation blocks; expressions with
 * Python's literals, operators, attribute / index / slice access, calls, filters, tests
 * and string / dict methods; whitespace control as HF transformers configures Jinja
 * (trim_blocks and lstrip_blocks on). Output equals Python jinja2's byte for byte for the
 * templates in ../shared/chat-templates.
 * Contract for src/template/jinja_*.c. A compiled template is read-only: any number of
 * threads may render it at once. */
#ifndef KILN_TEMPLATE_JINJA_H
#define KILN_TEMPLATE_JINJA_H

#include "kiln.h"

#include <jansson.h>
#include <stddef.h>

struct jinja_template;

/* Parses src. A syntax error fails with KILN_EFORMAT and "line N: ..." in err. */
kiln_status jinja_compile(const char *src, size_t len, struct jinja_template **out,
                          struct kiln_err *err);
void jinja_template_free(struct jinja_template *t);

struct jinja_limits {
    size_t max_output;  /* bytes of output */
    size_t max_memory;  /* bytes of values made while rendering */
    int max_depth;      /* nested macro calls and expression depth */
};

/* Renders with the members of the JSON object vars as variables, plus the globals
 * raise_exception, namespace, range and strftime_now. *out is malloc'd and NUL-terminated.
 * Fails with KILN_EINVAL when the template calls raise_exception (err holds its message),
 * KILN_ERANGE when a limit is passed, KILN_EFORMAT for any other error in the template. */
kiln_status jinja_render(const struct jinja_template *t, const json_t *vars,
                         const struct jinja_limits *limits, char **out, size_t *out_len,
                         struct kiln_err *err);

#endif
