/* Tests for the Jinja engine beyond the chat templates (tests/python/test_chat_templates.py
 * compares those with jinja2): Python's printing of values, operators, slicing, loops,
 * scoping, and broken or hostile templates getting a clear error, never a crash.
 * Mirrors src/template/. */
#include "check.h"
#include "template/jinja.h"

#include <stdlib.h>
#include <string.h>

/* Renders src with vars (a JSON object text); returns the status and fills out / err. */
static kiln_status render(const char *src, const char *vars, char *out, size_t cap,
                          struct kiln_err *err, const struct jinja_limits *limits)
{
    struct jinja_template *t;
    kiln_status st = jinja_compile(src, strlen(src), &t, err);
    if (st != KILN_OK) return st;
    json_t *v = json_loads(vars ? vars : "{}", 0, NULL);
    char *text;
    size_t len;
    st = jinja_render(t, v, limits, &text, &len, err);
    if (st == KILN_OK) {
        snprintf(out, cap, "%s", text);
        free(text);
    }
    json_decref(v);
    jinja_template_free(t);
    return st;
}

#define EXPECT(src, vars, want)                                                                    \
    do {                                                                                           \
        char out[2048];                                                                            \
        struct kiln_err err = {{0}};                                                               \
        kiln_status st = render(src, vars, out, sizeof out, &err, NULL);                           \
        CHECK(st == KILN_OK, "%s: %s", src, err.msg);                                             \
        CHECK(!strcmp(out, want), "%s:\n  got  '%s'\n  want '%s'", src, out, want);               \
    } while (0)

#define EXPECT_ERROR(src, vars, status, fragment)                                                  \
    do {                                                                                           \
        char out[2048];                                                                            \
        struct kiln_err err = {{0}};                                                               \
        kiln_status st = render(src, vars, out, sizeof out, &err, &limits);                        \
        CHECK(st == (status) && strstr(err.msg, fragment), "%s: status %d, message '%s'", src,     \
              st, err.msg);                                                                        \
    } while (0)

static void test_values_print_as_python(void)
{
    EXPECT("{{ 1 }} {{ 1.0 }} {{ 0.1 }} {{ 1e-5 }} {{ 1e16 }} {{ 2.5e-3 }} {{ -0.0 }}", NULL,
           "1 1.0 0.1 1e-05 1e+16 0.0025 -0.0");
    EXPECT("{{ none }} {{ true }} {{ False }} {{ undefined_name }}.", NULL, "None True False .");
    EXPECT("{{ [1, 'a', none, {'k': \"it's\"}] }}", NULL, "[1, 'a', None, {'k': \"it's\"}]");
    EXPECT("{{ x }}", "{\"x\": {\"a\": [1.5, true], \"b\": \"\\n\"}}",
           "{'a': [1.5, True], 'b': '\\n'}");
    EXPECT("{{ x | tojson }}|{{ x | tojson(indent=2) }}", "{\"x\": {\"a\": [1, \"é\\\"\"], \"b\": {}}}",
           "{\"a\": [1, \"é\\\"\"], \"b\": {}}|{\n  \"a\": [\n    1,\n    \"é\\\"\"\n  ],\n  \"b\": {}\n}");
}

static void test_operators_and_access(void)
{
    EXPECT("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}", NULL,
           "3 -4 1 2 3.5 1024");
    EXPECT("{{ 'ab' ~ 1 ~ none }} {{ 'x' * 3 }} {{ [1] + [2] }}", NULL, "ab1None xxx [1, 2]");
    EXPECT("{{ 'b' in 'abc' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }}", NULL, "True True True");
    EXPECT("{{ 0 or 'd' }} {{ 'a' and 'b' }} {{ not [] }}", NULL, "d b True");
    EXPECT("{{ 'héllo'[1:3] }} {{ 'abc'[::-1] }} {{ [1,2,3,4][-2:] }} {{ 'abc'[-1] }}", NULL,
           "él cba [3, 4] c");
    EXPECT("{{ m.a }} {{ m['b'] }} {{ m.get('c', 9) }} {{ m.missing is defined }}",
           "{\"m\": {\"a\": 1, \"b\": 2}}", "1 2 9 False");
    EXPECT("{{ 'yes' if 1 < 2 else 'no' }} {{ 'a,b,,c'.split(',') }} {{ '  x '.strip() }}", NULL,
           "yes ['a', 'b', '', 'c'] x");
}

static void test_loops_scoping_and_macros(void)
{
    EXPECT("{% for x in [1,2,3] %}{{ loop.index }}{{ '|' if not loop.last }}{% endfor %}", NULL,
           "1|2|3");
    EXPECT("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}", NULL,
           "2242");
    EXPECT("{% for x in [] %}a{% else %}empty{% endfor %}", NULL, "empty");
    EXPECT("{% for x in [1,2,3] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 3 %}"
           "{% break %}{% endif %}{{ x }}{% endfor %}",
           NULL, "1");
    EXPECT("{% set n = 1 %}{% for x in [1] %}{% set n = 2 %}{% endfor %}{{ n }}", NULL, "1");
    EXPECT("{% set ns = namespace(n=1) %}{% for x in [1,2] %}{% set ns.n = ns.n + x %}{% endfor %}"
           "{{ ns.n }}",
           NULL, "4");
    EXPECT("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
           "{{ greet('a') }} {{ greet('b', punct='?') }}",
           NULL, "Hi a! Hi b?");
    EXPECT("{% set block %}in {{ 1 + 1 }}{% endset %}[{{ block }}]", NULL, "[in 2]");
    EXPECT("{% filter upper %}shout{% endfilter %}", NULL, "SHOUT");
    EXPECT("{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}={{ v }};{% endfor %}", NULL,
           "a=1;b=2;");
}

static void test_whitespace_control(void)
{
    EXPECT("a\n  {% if true %}\n  b\n  {% endif %}\nc", NULL, "a\n  b\nc");
    EXPECT("a  {%- if true -%}  b  {%- endif -%}  c", NULL, "abc");
    EXPECT("{# comment #}\nx {{- ' y ' -}} z", NULL, "x y z");
}

static void test_bad_templates_get_clear_errors(void)
{
    struct jinja_limits limits = {.max_output = 1 << 16, .max_memory = 8 << 20, .max_depth = 16};
    EXPECT_ERROR("{% if x %}never closed", NULL, KILN_EFORMAT, "missing {% endif %}");
    EXPECT_ERROR("line one\n{{ 1 + }}", NULL, KILN_EFORMAT, "line 2");
    EXPECT_ERROR("{{ 'unterminated }}", NULL, KILN_EFORMAT, "unterminated string");
    EXPECT_ERROR("{% frobnicate %}", NULL, KILN_EFORMAT, "unknown or misplaced tag 'frobnicate'");
    EXPECT_ERROR("{{ x | nosuchfilter }}", NULL, KILN_EFORMAT, "no filter named 'nosuchfilter'");
    EXPECT_ERROR("{{ raise_exception('Roles must alternate') }}", NULL, KILN_EINVAL,
                 "Roles must alternate");
    EXPECT_ERROR("{{ undefined_thing.attr }}", NULL, KILN_EFORMAT, "'undefined_thing' is undefined");
    /* Unbounded recursion, output and memory are cut off. */
    EXPECT_ERROR("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, KILN_ERANGE,
                 "nested deeper than 16");
    EXPECT_ERROR("{% for i in range(10000) %}xxxxxxxxxx{% endfor %}", NULL, KILN_ERANGE,
                 "output (or a string in it) longer than");
    EXPECT_ERROR("{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
                 "{% endfor %}",
                 NULL, KILN_ERANGE, "longer than 65536");
    EXPECT_ERROR("{% set ns = namespace(l=[]) %}{% for i in range(50000) %}"
                 "{% set ns.l = ns.l + [i] %}{% endfor %}",
                 NULL, KILN_ERANGE, "bytes of memory");
    /* Deeply nested expressions are refused by the parser, not by the stack. */
    char deep[4096];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{{ ");
    for (int i = 0; i < 1000; i++) deep[n++] = '(';
    deep[n++] = '1';
    for (int i = 0; i < 1000; i++) deep[n++] = ')';
    snprintf(deep + n, sizeof deep - n, " }}");
    EXPECT_ERROR(deep, NULL, KILN_EFORMAT, "too deeply");
}

int main(void)
{
    RUN(test_values_print_as_python);
    RUN(test_operators_and_access);
    RUN(test_loops_scoping_and_macros);
    RUN(test_whitespace_control);
    RUN(test_bad_templates_get_clear_errors);
    return check_summary();
}
