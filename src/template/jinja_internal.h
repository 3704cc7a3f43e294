/* Internals shared by the Jinja files: values, the arena they live in, tokens and the
 * syntax tree. Not a contract for other modules (they use template/jinja.h).
 *
 * Every value of one render lives in that render's arena and is freed with it, so values
 * are plain structs that are copied freely; only namespaces and dicts built by the
 * template are mutated in place. */
#ifndef KILN_TEMPLATE_JINJA_INTERNAL_H
#define KILN_TEMPLATE_JINJA_INTERNAL_H

#include "template/jinja.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- arena ------------------------------------------------------------------------------ */

struct arena_chunk;
struct arena {
    struct arena_chunk *head;
    size_t used, limit; /* bytes handed out, and the most allowed */
};

/* NULL when the limit would be passed (the caller reports it). */
void *arena_alloc(struct arena *a, size_t n);
void arena_free_all(struct arena *a);

/* ---- values ----------------------------------------------------------------------------- */

enum jv_type {
    JV_UNDEFINED,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STRING,
    JV_LIST,
    JV_DICT,
    JV_NAMESPACE, /* a dict whose attributes `set ns.x = ...` may change */
    JV_MACRO,
    JV_BUILTIN, /* a global function: raise_exception, namespace, range, ... */
};

struct jv_list;
struct jv_dict;
struct node;

struct jv {
    enum jv_type type;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        struct jv_list *list;
        struct jv_dict *dict;     /* JV_DICT, JV_NAMESPACE */
        const struct node *macro; /* JV_MACRO */
        int builtin;              /* JV_BUILTIN */
    };
    const char *undefined_name; /* JV_UNDEFINED: what was looked up, for messages */
};

struct jv_list {
    struct jv *items;
    size_t n, cap;
};

struct jv_dict {
    struct jv *keys, *vals;
    size_t n, cap;
};

/* ---- tokens and syntax tree ------------------------------------------------------------- */

enum node_kind {
    /* statements */
    N_TEXT,     /* literal output */
    N_OUTPUT,   /* {{ a }} */
    N_IF,       /* a: condition, body, orelse */
    N_FOR,      /* targets, a: iterable, b: filter condition, body, orelse */
    N_SET,      /* targets (name or ns.attr) or block body, a: value */
    N_MACRO,    /* name, params (with defaults in args), body */
    N_FILTER_BLOCK, /* a: the filter (N_FILTER with a NULL operand), body */
    N_BREAK,
    N_CONTINUE,
    /* expressions */
    N_LITERAL,  /* value */
    N_NAME,     /* name */
    N_LIST,     /* args */
    N_DICT,     /* args: key, value, key, value ... */
    N_ATTR,     /* a.name */
    N_INDEX,    /* a[b] */
    N_SLICE,    /* a[b:c:d], any of b c d may be NULL */
    N_CALL,     /* a(args, kwargs) */
    N_FILTER,   /* a | name(args, kwargs) */
    N_TEST,     /* a is [not] name(args); negate */
    N_UNARY,    /* op a: '-' '+' or 'n' (not) */
    N_BINARY,   /* a op b: + - * / F(//) % P(**) ~ = (==) ! (!=) < > L(<=) G(>=) i (in) I (not in) & | */
    N_COND,     /* b if a else c */
};

struct node {
    enum node_kind kind;
    int line;
    char op;
    bool negate;
    const char *name;
    struct jv value;
    struct node *a, *b, *c;
    struct node **args; /* call arguments, list items, macro parameters, set/for targets */
    size_t n_args;
    const char **kwnames; /* keyword argument names (kwargs follow args); macro param names */
    struct node **kwargs;
    size_t n_kwargs;
    struct node **body, **orelse;
    size_t n_body, n_orelse;
};

/* ---- the pieces ------------------------------------------------------------------------- */

/* The state of one compile or render: the arena, and where an error jumps to. */
struct jinja_env {
    struct arena arena;
    jmp_buf on_error;
    struct kiln_err *err;
    kiln_status status; /* what jinja_fail reports: KILN_EFORMAT unless set otherwise */
};

/* Records "line N: message" in env->err and unwinds to env->on_error. */
_Noreturn void jinja_fail(struct jinja_env *env, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void *jinja_alloc(struct jinja_env *env, size_t n);

/* Parses a template into a list of statements. */
struct node **jinja_parse(struct jinja_env *env, const char *src, size_t len, size_t *n_out);

/* Values. */
struct jv jv_str(struct jinja_env *env, const char *p, size_t n);
struct jv jv_cstr(struct jinja_env *env, const char *s);
struct jv jv_int(int64_t i);
struct jv jv_float(double f);
struct jv jv_bool(bool b);
struct jv jv_none(void);
struct jv jv_undefined(const char *name);
struct jv jv_new_list(struct jinja_env *env);
struct jv jv_new_dict(struct jinja_env *env);
void jv_list_push(struct jinja_env *env, struct jv_list *l, struct jv v);
void jv_dict_set(struct jinja_env *env, struct jv_dict *d, struct jv key, struct jv val);
/* The value for a string key, or NULL. */
struct jv *jv_dict_get(const struct jv_dict *d, const char *key, size_t n);
bool jv_truthy(struct jv v);
bool jv_equal(struct jv a, struct jv b);
const char *jv_type_name(enum jv_type t);

/* A growable string in the arena. */
struct sbuf {
    char *p;
    size_t n, cap, limit; /* limit: the most bytes the render may produce */
};
void sbuf_put(struct jinja_env *env, struct sbuf *b, const char *p, size_t n);
void sbuf_puts(struct jinja_env *env, struct sbuf *b, const char *s);
/* What b holds, as a string value (an empty one when nothing was written). */
struct jv sbuf_value(struct jinja_env *env, const struct sbuf *b);

/* Python's str() of v (what {{ v }} prints), and json.dumps(v, ensure_ascii=False) with
 * Python's separators and the given indent (< 0: none), appended to b. */
void jv_write_str(struct jinja_env *env, struct sbuf *b, struct jv v);
void jv_write_json(struct jinja_env *env, struct sbuf *b, struct jv v, int indent, int depth);
struct jv jv_to_string(struct jinja_env *env, struct jv v);

/* Built-ins (jinja_builtins.c). Each fails through jinja_fail for a bad argument. */
struct call_args {
    struct jv *pos;
    size_t n_pos;
    const char **kwnames;
    struct jv *kw;
    size_t n_kw;
};
bool jinja_has_filter(const char *name);
struct jv jinja_filter(struct jinja_env *env, int line, const char *name, struct jv v,
                       const struct call_args *args);
bool jinja_has_test(const char *name);
bool jinja_test(struct jinja_env *env, int line, const char *name, struct jv v,
                const struct call_args *args);
/* v.name(...) for strings, dicts and lists; false when v has no such method. */
bool jinja_method(struct jinja_env *env, int line, struct jv v, const char *name,
                  const struct call_args *args, struct jv *out);
/* Global functions: returns the builtin id for a name, or -1. */
int jinja_builtin_lookup(const char *name);
struct jv jinja_builtin_call(struct jinja_env *env, int line, int id,
                             const struct call_args *args);

/* Keyword or positional argument i (named name), or NULL. */
const struct jv *call_arg(const struct call_args *a, size_t i, const char *name);

#endif
