/* render_template TEMPLATE.jinja < VARS.json: renders the template with kiln's Jinja engine
 * and the JSON object on stdin as variables; prints the output, or the error on stderr
 * (exit 1). Used by tests/python/test_chat_templates.py to compare with Python's jinja2. */
#include "template/jinja.h"

#include <stdio.h>
#include <stdlib.h>

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: render_template TEMPLATE.jinja < VARS.json\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    size_t len;
    char *src = read_all(f, &len);
    fclose(f);
    json_error_t jerr;
    json_t *vars = json_loadf(stdin, JSON_ALLOW_NUL, &jerr);
    if (!src || !vars) {
        fprintf(stderr, "render_template: bad input: %s\n", jerr.text);
        return 2;
    }
    struct kiln_err err = {{0}};
    struct jinja_template *t;
    if (jinja_compile(src, len, &t, &err) != KILN_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char *out;
    size_t out_len;
    kiln_status st = jinja_render(t, vars, NULL, &out, &out_len, &err);
    if (st != KILN_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    fwrite(out, 1, out_len, stdout);
    free(out);
    jinja_template_free(t);
    json_decref(vars);
    free(src);
    return 0;
}
