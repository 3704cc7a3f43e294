/* Jinja interpreter: runs the statement tree against variables from JSON, with Python's
 * semantics for operators, truth, indexing and slicing. Contract: src/template/jinja.h. */
#include "template/jinja_internal.h"

#include "base/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct jinja_template {
    struct jinja_env env; /* the arena holding the source copy and the tree */
    struct node **body;
    size_t n_body;
};

struct scope {
    struct jv_dict vars;
    struct scope *parent;
};

enum flow { FLOW_NORMAL, FLOW_BREAK, FLOW_CONTINUE };

struct interp {
    struct jinja_env *env;
    struct scope *root;
    struct scope *scope; /* where names are looked up and set now */
    struct sbuf *out;
    enum flow flow;
    int depth, max_depth;
    size_t max_output;
};

static struct jv eval(struct interp *in, const struct node *n);
static void exec_body(struct interp *in, struct scope *sc, struct node *const *body, size_t n);
static struct jv capture(struct interp *in, struct scope *sc, struct node *const *body, size_t n);

/* ---- scopes ----------------------------------------------------------------------------- */

static struct jv *lookup(struct scope *sc, const char *name)
{
    size_t n = strlen(name);
    for (; sc; sc = sc->parent) {
        struct jv *v = jv_dict_get(&sc->vars, name, n);
        if (v) return v;
    }
    return NULL;
}

/* name must outlive the render: names come from the tree, from literals or from vars. */
static struct jv name_key(const char *name)
{
    return (struct jv){.type = JV_STRING, .s = {name, strlen(name)}};
}

static void assign(struct interp *in, struct scope *sc, const char *name, struct jv v)
{
    jv_dict_set(in->env, &sc->vars, name_key(name), v);
}

static struct scope *new_scope(struct interp *in, struct scope *parent)
{
    struct scope *sc = jinja_alloc(in->env, sizeof *sc);
    memset(sc, 0, sizeof *sc);
    sc->parent = parent;
    return sc;
}


/* ---- helpers ---------------------------------------------------------------------------- */

static bool is_num(struct jv v) { return v.type == JV_INT || v.type == JV_FLOAT || v.type == JV_BOOL; }
static double num(struct jv v)
{
    return v.type == JV_FLOAT ? v.f : v.type == JV_INT ? (double)v.i : (double)v.b;
}
static int64_t as_int(struct jv v) { return v.type == JV_INT ? v.i : (int64_t)v.b; }

/* Number of code points in a UTF-8 string, and the byte offset of code point k. */
static size_t utf8_len(const char *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)p[i] & 0xc0) != 0x80;
    return k;
}
static size_t utf8_offset(const char *p, size_t n, size_t k)
{
    size_t i = 0;
    while (i < n && k > 0) {
        i++;
        while (i < n && ((unsigned char)p[i] & 0xc0) == 0x80) i++;
        k--;
    }
    return i;
}

/* Python's slice index normalization for length len. */
static void slice_bounds(int64_t len, struct jv *start, struct jv *stop, int64_t step,
                         int64_t *lo, int64_t *hi)
{
    int64_t def_lo = step > 0 ? 0 : len - 1, def_hi = step > 0 ? len : -1;
    *lo = def_lo;
    *hi = def_hi;
    if (start && start->type != JV_NONE && start->type != JV_UNDEFINED) {
        int64_t v = as_int(*start);
        if (v < 0) v += len;
        *lo = step > 0 ? (v < 0 ? 0 : v > len ? len : v) : (v < 0 ? -1 : v >= len ? len - 1 : v);
    }
    if (stop && stop->type != JV_NONE && stop->type != JV_UNDEFINED) {
        int64_t v = as_int(*stop);
        if (v < 0) v += len;
        *hi = step > 0 ? (v < 0 ? 0 : v > len ? len : v) : (v < -1 ? -1 : v >= len ? len - 1 : v);
    }
}

static struct jv do_slice(struct interp *in, int line, struct jv v, struct jv *start,
                          struct jv *stop, struct jv *stepv)
{
    int64_t step = stepv && stepv->type != JV_NONE && stepv->type != JV_UNDEFINED ? as_int(*stepv)
                                                                                  : 1;
    if (step == 0) jinja_fail(in->env, line, "slice step cannot be zero");
    int64_t lo, hi;
    if (v.type == JV_LIST) {
        slice_bounds((int64_t)v.list->n, start, stop, step, &lo, &hi);
        struct jv out = jv_new_list(in->env);
        for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step)
            jv_list_push(in->env, out.list, v.list->items[i]);
        return out;
    }
    if (v.type == JV_STRING) {
        int64_t len = (int64_t)utf8_len(v.s.p, v.s.n);
        slice_bounds(len, start, stop, step, &lo, &hi);
        struct sbuf b = {.limit = (size_t)-1};
        for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) {
            size_t a = utf8_offset(v.s.p, v.s.n, (size_t)i), e = utf8_offset(v.s.p, v.s.n, (size_t)i + 1);
            sbuf_put(in->env, &b, v.s.p + a, e - a);
        }
        return sbuf_value(in->env, &b);
    }
    jinja_fail(in->env, line, "cannot slice a %s", jv_type_name(v.type));
}

static struct jv get_item(struct interp *in, int line, struct jv v, struct jv key)
{
    switch (v.type) {
    case JV_DICT: case JV_NAMESPACE:
        for (size_t i = 0; i < v.dict->n; i++)
            if (jv_equal(v.dict->keys[i], key)) return v.dict->vals[i];
        return jv_undefined(key.type == JV_STRING ? key.s.p : "item");
    case JV_LIST: {
        if (key.type != JV_INT && key.type != JV_BOOL) return jv_undefined("item");
        int64_t i = as_int(key), n = (int64_t)v.list->n;
        if (i < 0) i += n;
        return i >= 0 && i < n ? v.list->items[i] : jv_undefined("item");
    }
    case JV_STRING: {
        if (key.type != JV_INT) return jv_undefined("item");
        int64_t n = (int64_t)utf8_len(v.s.p, v.s.n), i = key.i;
        if (i < 0) i += n;
        if (i < 0 || i >= n) return jv_undefined("item");
        size_t a = utf8_offset(v.s.p, v.s.n, (size_t)i), e = utf8_offset(v.s.p, v.s.n, (size_t)i + 1);
        return jv_str(in->env, v.s.p + a, e - a);
    }
    case JV_UNDEFINED:
        jinja_fail(in->env, line, "'%s' is undefined", v.undefined_name ? v.undefined_name : "value");
    default: return jv_undefined("item");
    }
}

static struct jv get_attr(struct interp *in, int line, struct jv v, const char *name)
{
    if (v.type == JV_UNDEFINED)
        jinja_fail(in->env, line, "'%s' is undefined", v.undefined_name ? v.undefined_name : "value");
    if (v.type == JV_DICT || v.type == JV_NAMESPACE) {
        struct jv *x = jv_dict_get(v.dict, name, strlen(name));
        return x ? *x : jv_undefined(name);
    }
    return jv_undefined(name);
}

/* ---- calls ------------------------------------------------------------------------------ */

static void eval_args(struct interp *in, const struct node *n, struct call_args *a)
{
    a->n_pos = n->n_args;
    a->pos = n->n_args ? jinja_alloc(in->env, n->n_args * sizeof *a->pos) : NULL;
    for (size_t i = 0; i < n->n_args; i++) a->pos[i] = eval(in, n->args[i]);
    a->n_kw = n->n_kwargs;
    a->kwnames = n->kwnames;
    a->kw = n->n_kwargs ? jinja_alloc(in->env, n->n_kwargs * sizeof *a->kw) : NULL;
    for (size_t i = 0; i < n->n_kwargs; i++) a->kw[i] = eval(in, n->kwargs[i]);
}

static struct jv call_macro(struct interp *in, int line, const struct node *m,
                            const struct call_args *a)
{
    if (++in->depth > in->max_depth) {
        in->env->status = KILN_ERANGE;
        jinja_fail(in->env, line, "macro calls nested deeper than %d", in->max_depth);
    }
    if (a->n_pos > m->n_args)
        jinja_fail(in->env, line, "macro %s takes %zu arguments, got %zu", m->name, m->n_args,
                   a->n_pos);
    struct scope *sc = new_scope(in, in->root);
    struct scope *saved_scope = in->scope;
    in->scope = sc;
    for (size_t i = 0; i < m->n_args; i++) {
        const struct jv *v = call_arg(a, i, m->kwnames[i]);
        struct jv val = v ? *v : m->args[i] ? eval(in, m->args[i]) : jv_undefined(m->kwnames[i]);
        assign(in, sc, m->kwnames[i], val);
    }
    for (size_t k = 0; k < a->n_kw; k++) {
        bool known = false;
        for (size_t i = 0; i < m->n_args; i++) known |= !strcmp(a->kwnames[k], m->kwnames[i]);
        if (!known) jinja_fail(in->env, line, "macro %s has no argument %s", m->name, a->kwnames[k]);
    }
    struct jv out = capture(in, sc, m->body, m->n_body);
    in->flow = FLOW_NORMAL;
    in->scope = saved_scope;
    in->depth--;
    return out;
}

static struct jv eval_call(struct interp *in, const struct node *n)
{
    struct call_args a;
    /* obj.method(...) for strings, lists and dicts */
    if (n->a->kind == N_ATTR) {
        struct jv obj = eval(in, n->a->a);
        if (obj.type == JV_STRING || obj.type == JV_DICT || obj.type == JV_LIST) {
            eval_args(in, n, &a);
            struct jv out;
            if (jinja_method(in->env, n->line, obj, n->a->name, &a, &out)) return out;
        }
        struct jv callee = get_attr(in, n->line, obj, n->a->name);
        if (callee.type == JV_MACRO) {
            eval_args(in, n, &a);
            return call_macro(in, n->line, callee.macro, &a);
        }
        jinja_fail(in->env, n->line, "%s has no method %s", jv_type_name(obj.type), n->a->name);
    }
    struct jv callee = eval(in, n->a);
    eval_args(in, n, &a);
    if (callee.type == JV_MACRO) return call_macro(in, n->line, callee.macro, &a);
    if (callee.type == JV_BUILTIN) return jinja_builtin_call(in->env, n->line, callee.builtin, &a);
    if (callee.type == JV_UNDEFINED)
        jinja_fail(in->env, n->line, "'%s' is undefined", callee.undefined_name ? callee.undefined_name : "function");
    jinja_fail(in->env, n->line, "a %s is not callable", jv_type_name(callee.type));
}

/* ---- operators -------------------------------------------------------------------------- */

static struct jv concat_values(struct interp *in, struct jv a, struct jv b)
{
    struct sbuf s = {.limit = in->max_output};
    jv_write_str(in->env, &s, a);
    jv_write_str(in->env, &s, b);
    return sbuf_value(in->env, &s);
}

static bool contains(struct interp *in, int line, struct jv hay, struct jv needle)
{
    switch (hay.type) {
    case JV_STRING:
        if (needle.type != JV_STRING) jinja_fail(in->env, line, "'in <string>' needs a string");
        if (needle.s.n == 0) return true;
        for (size_t i = 0; i + needle.s.n <= hay.s.n; i++)
            if (!memcmp(hay.s.p + i, needle.s.p, needle.s.n)) return true;
        return false;
    case JV_LIST:
        for (size_t i = 0; i < hay.list->n; i++)
            if (jv_equal(hay.list->items[i], needle)) return true;
        return false;
    case JV_DICT: case JV_NAMESPACE:
        for (size_t i = 0; i < hay.dict->n; i++)
            if (jv_equal(hay.dict->keys[i], needle)) return true;
        return false;
    case JV_UNDEFINED: return false;
    default: jinja_fail(in->env, line, "'in' needs a string, list or dict, not %s", jv_type_name(hay.type));
    }
}

static int compare(struct interp *in, int line, struct jv a, struct jv b)
{
    if (is_num(a) && is_num(b)) {
        double x = num(a), y = num(b);
        return x < y ? -1 : x > y;
    }
    if (a.type == JV_STRING && b.type == JV_STRING) {
        size_t n = a.s.n < b.s.n ? a.s.n : b.s.n;
        int c = memcmp(a.s.p, b.s.p, n);
        return c ? c : (a.s.n > b.s.n) - (a.s.n < b.s.n);
    }
    jinja_fail(in->env, line, "cannot compare %s with %s", jv_type_name(a.type), jv_type_name(b.type));
}

static struct jv arith(struct interp *in, int line, char op, struct jv a, struct jv b)
{
    if (op == '+') {
        if (a.type == JV_STRING && b.type == JV_STRING) return concat_values(in, a, b);
        if (a.type == JV_LIST && b.type == JV_LIST) {
            struct jv out = jv_new_list(in->env);
            for (size_t i = 0; i < a.list->n; i++) jv_list_push(in->env, out.list, a.list->items[i]);
            for (size_t i = 0; i < b.list->n; i++) jv_list_push(in->env, out.list, b.list->items[i]);
            return out;
        }
    }
    if (op == '*' && ((a.type == JV_STRING && b.type == JV_INT) || (a.type == JV_INT && b.type == JV_STRING))) {
        struct jv s = a.type == JV_STRING ? a : b;
        int64_t times = a.type == JV_INT ? a.i : b.i;
        struct sbuf out = {.limit = in->max_output};
        for (int64_t i = 0; i < times; i++) sbuf_put(in->env, &out, s.s.p, s.s.n);
        return sbuf_value(in->env, &out);
    }
    if (!is_num(a) || !is_num(b))
        jinja_fail(in->env, line, "unsupported operand types for '%c': %s and %s", op == 'F' ? '/' : op == 'P' ? '*' : op,
                   jv_type_name(a.type), jv_type_name(b.type));
    bool ints = a.type != JV_FLOAT && b.type != JV_FLOAT;
    double x = num(a), y = num(b);
    int64_t i = as_int(a), j = as_int(b), r;
    switch (op) {
    case '+': if (ints && !__builtin_add_overflow(i, j, &r)) return jv_int(r); return jv_float(x + y);
    case '-': if (ints && !__builtin_sub_overflow(i, j, &r)) return jv_int(r); return jv_float(x - y);
    case '*': if (ints && !__builtin_mul_overflow(i, j, &r)) return jv_int(r); return jv_float(x * y);
    case '/':
        if (y == 0) jinja_fail(in->env, line, "division by zero");
        return jv_float(x / y);
    case 'F':
        if (y == 0) jinja_fail(in->env, line, "division by zero");
        if (ints) return jv_int(i / j - ((i % j != 0) && ((i < 0) != (j < 0))));
        return jv_float(floor(x / y));
    case '%':
        if (y == 0) jinja_fail(in->env, line, "modulo by zero");
        if (ints) {
            int64_t m = i % j;
            return jv_int(m != 0 && ((m < 0) != (j < 0)) ? m + j : m);
        }
        return jv_float(x - floor(x / y) * y);
    case 'P':
        if (ints && j >= 0) {
            int64_t p = 1;
            for (int64_t k = 0; k < j; k++)
                if (__builtin_mul_overflow(p, i, &p)) return jv_float(pow(x, y));
            return jv_int(p);
        }
        return jv_float(pow(x, y));
    }
    jinja_fail(in->env, line, "unknown operator");
}

static struct jv eval_binary(struct interp *in, const struct node *n)
{
    if (n->op == '&') {
        struct jv a = eval(in, n->a);
        return jv_truthy(a) ? eval(in, n->b) : a;
    }
    if (n->op == '|') {
        struct jv a = eval(in, n->a);
        return jv_truthy(a) ? a : eval(in, n->b);
    }
    struct jv a = eval(in, n->a), b = eval(in, n->b);
    switch (n->op) {
    case '~': return concat_values(in, a, b);
    case '=': return jv_bool(jv_equal(a, b));
    case '!': return jv_bool(!jv_equal(a, b));
    case '<': return jv_bool(compare(in, n->line, a, b) < 0);
    case '>': return jv_bool(compare(in, n->line, a, b) > 0);
    case 'L': return jv_bool(compare(in, n->line, a, b) <= 0);
    case 'G': return jv_bool(compare(in, n->line, a, b) >= 0);
    case 'i': return jv_bool(contains(in, n->line, b, a));
    case 'I': return jv_bool(!contains(in, n->line, b, a));
    default: return arith(in, n->line, n->op, a, b);
    }
}

/* ---- expressions ------------------------------------------------------------------------ */

static struct jv eval(struct interp *in, const struct node *n)
{
    switch (n->kind) {
    case N_LITERAL: return n->value;
    case N_NAME: {
        struct jv *v = lookup(in->scope, n->name);
        if (v) return *v;
        int id = jinja_builtin_lookup(n->name);
        if (id >= 0) return (struct jv){.type = JV_BUILTIN, .builtin = id};
        return jv_undefined(n->name);
    }
    case N_LIST: {
        struct jv out = jv_new_list(in->env);
        for (size_t i = 0; i < n->n_args; i++) jv_list_push(in->env, out.list, eval(in, n->args[i]));
        return out;
    }
    case N_DICT: {
        struct jv out = jv_new_dict(in->env);
        for (size_t i = 0; i + 1 < n->n_args; i += 2)
            jv_dict_set(in->env, out.dict, eval(in, n->args[i]), eval(in, n->args[i + 1]));
        return out;
    }
    case N_ATTR: return get_attr(in, n->line, eval(in, n->a), n->name);
    case N_INDEX: return get_item(in, n->line, eval(in, n->a), eval(in, n->b));
    case N_SLICE: {
        struct jv v = eval(in, n->a), parts[3];
        const struct node *p[3] = {n->b, n->c, n->args[0]};
        for (int i = 0; i < 3; i++) parts[i] = p[i] ? eval(in, p[i]) : jv_none();
        return do_slice(in, n->line, v, &parts[0], &parts[1], &parts[2]);
    }
    case N_CALL: return eval_call(in, n);
    case N_FILTER: {
        struct jv v = eval(in, n->a);
        struct call_args a;
        eval_args(in, n, &a);
        return jinja_filter(in->env, n->line, n->name, v, &a);
    }
    case N_TEST: {
        struct jv v = eval(in, n->a);
        struct call_args a;
        eval_args(in, n, &a);
        bool r = jinja_test(in->env, n->line, n->name, v, &a);
        return jv_bool(n->negate ? !r : r);
    }
    case N_UNARY: {
        struct jv v = eval(in, n->a);
        if (n->op == 'n') return jv_bool(!jv_truthy(v));
        if (!is_num(v)) jinja_fail(in->env, n->line, "bad operand for unary %c: %s", n->op, jv_type_name(v.type));
        if (n->op == '+') return v.type == JV_BOOL ? jv_int(v.b) : v;
        return v.type == JV_FLOAT ? jv_float(-v.f) : jv_int(-as_int(v));
    }
    case N_BINARY: return eval_binary(in, n);
    case N_COND:
        if (jv_truthy(eval(in, n->a))) return eval(in, n->b);
        return n->c ? eval(in, n->c) : jv_undefined("else");
    default: jinja_fail(in->env, n->line, "not an expression");
    }
}

/* ---- statements ------------------------------------------------------------------------- */

static struct jv capture(struct interp *in, struct scope *sc, struct node *const *body, size_t n)
{
    struct sbuf out = {.limit = in->max_output};
    struct sbuf *saved = in->out;
    in->out = &out;
    exec_body(in, sc, body, n);
    in->out = saved;
    return sbuf_value(in->env, &out);
}

/* The items a for loop walks: list items, dict keys, string characters. */
static struct jv_list *iterable_items(struct interp *in, int line, struct jv v)
{
    struct jv out = jv_new_list(in->env);
    switch (v.type) {
    case JV_LIST: return v.list;
    case JV_DICT:
        for (size_t i = 0; i < v.dict->n; i++) jv_list_push(in->env, out.list, v.dict->keys[i]);
        return out.list;
    case JV_STRING:
        for (size_t i = 0; i < v.s.n;) {
            size_t e = utf8_offset(v.s.p + i, v.s.n - i, 1);
            jv_list_push(in->env, out.list, jv_str(in->env, v.s.p + i, e));
            i += e;
        }
        return out.list;
    case JV_UNDEFINED: return out.list;
    default: jinja_fail(in->env, line, "a %s is not iterable", jv_type_name(v.type));
    }
}

static void bind_targets(struct interp *in, struct scope *sc, const struct node *n, struct jv item)
{
    if (n->n_args == 1) {
        assign(in, sc, n->args[0]->name, item);
        return;
    }
    if (item.type != JV_LIST || item.list->n != n->n_args)
        jinja_fail(in->env, n->line, "cannot unpack %s into %zu names", jv_type_name(item.type), n->n_args);
    for (size_t k = 0; k < n->n_args; k++) assign(in, sc, n->args[k]->name, item.list->items[k]);
}

static void exec_for(struct interp *in, struct scope *sc, const struct node *n)
{
    struct jv_list *all = iterable_items(in, n->line, eval(in, n->a));
    struct jv_list *items = all;
    struct scope *loop_scope = new_scope(in, sc);
    if (n->b) { /* the filter clause sees the loop variables */
        struct jv kept = jv_new_list(in->env);
        struct scope *saved = in->scope;
        in->scope = loop_scope;
        for (size_t i = 0; i < all->n; i++) {
            bind_targets(in, loop_scope, n, all->items[i]);
            if (jv_truthy(eval(in, n->b))) jv_list_push(in->env, kept.list, all->items[i]);
        }
        in->scope = saved;
        items = kept.list;
    }
    if (items->n == 0) {
        exec_body(in, sc, n->orelse, n->n_orelse);
        return;
    }
    /* One scope and one loop object, refreshed each iteration, keep long loops from
     * growing memory; a set inside the body still lasts one iteration, as in jinja2. */
    size_t len = items->n;
    struct scope *it = new_scope(in, sc);
    struct jv loop = jv_new_dict(in->env);
    for (size_t i = 0; i < len; i++) {
        it->vars.n = 0;
        struct jv_dict *d = loop.dict;
        jv_dict_set(in->env, d, name_key("index"), jv_int((int64_t)i + 1));
        jv_dict_set(in->env, d, name_key("index0"), jv_int((int64_t)i));
        jv_dict_set(in->env, d, name_key("revindex"), jv_int((int64_t)(len - i)));
        jv_dict_set(in->env, d, name_key("revindex0"), jv_int((int64_t)(len - i - 1)));
        jv_dict_set(in->env, d, name_key("first"), jv_bool(i == 0));
        jv_dict_set(in->env, d, name_key("last"), jv_bool(i + 1 == len));
        jv_dict_set(in->env, d, name_key("length"), jv_int((int64_t)len));
        jv_dict_set(in->env, d, name_key("previtem"),
                    i > 0 ? items->items[i - 1] : jv_undefined("previtem"));
        jv_dict_set(in->env, d, name_key("nextitem"),
                    i + 1 < len ? items->items[i + 1] : jv_undefined("nextitem"));
        assign(in, it, "loop", loop);
        bind_targets(in, it, n, items->items[i]);
        exec_body(in, it, n->body, n->n_body);
        enum flow f = in->flow;
        in->flow = FLOW_NORMAL;
        if (f == FLOW_BREAK) break;
    }
}

static void exec_set(struct interp *in, struct scope *sc, const struct node *n)
{
    struct jv v = n->a ? eval(in, n->a) : capture(in, sc, n->body, n->n_body);
    if (n->n_args == 1 && n->args[0]->kind == N_ATTR) {
        const struct node *t = n->args[0];
        struct jv *ns = lookup(sc, t->a->name);
        if (!ns || ns->type != JV_NAMESPACE)
            jinja_fail(in->env, n->line, "cannot set attribute %s on %s: not a namespace", t->name,
                       t->a->name);
        jv_dict_set(in->env, ns->dict, name_key(t->name), v);
        return;
    }
    for (size_t i = 0; i < n->n_args; i++)
        if (n->args[i]->kind != N_NAME) jinja_fail(in->env, n->line, "bad assignment target");
    if (n->n_args == 1) {
        assign(in, sc, n->args[0]->name, v);
        return;
    }
    if (v.type != JV_LIST || v.list->n != n->n_args)
        jinja_fail(in->env, n->line, "cannot unpack into %zu names", n->n_args);
    for (size_t i = 0; i < n->n_args; i++) assign(in, sc, n->args[i]->name, v.list->items[i]);
}

static void exec_body(struct interp *in, struct scope *sc, struct node *const *body, size_t count)
{
    struct scope *saved = in->scope;
    in->scope = sc;
    for (size_t i = 0; i < count && in->flow == FLOW_NORMAL; i++) {
        const struct node *n = body[i];
        switch (n->kind) {
        case N_TEXT: sbuf_put(in->env, in->out, n->value.s.p, n->value.s.n); break;
        case N_OUTPUT: jv_write_str(in->env, in->out, eval(in, n->a)); break;
        case N_IF:
            if (jv_truthy(eval(in, n->a))) exec_body(in, sc, n->body, n->n_body);
            else exec_body(in, sc, n->orelse, n->n_orelse);
            break;
        case N_FOR: exec_for(in, sc, n); break;
        case N_SET: exec_set(in, sc, n); break;
        case N_MACRO:
            assign(in, sc, n->name, (struct jv){.type = JV_MACRO, .macro = n});
            break;
        case N_FILTER_BLOCK: {
            struct jv text = capture(in, sc, n->body, n->n_body);
            struct call_args a;
            eval_args(in, n->a, &a);
            jv_write_str(in->env, in->out, jinja_filter(in->env, n->line, n->a->name, text, &a));
            break;
        }
        case N_BREAK: in->flow = FLOW_BREAK; break;
        case N_CONTINUE: in->flow = FLOW_CONTINUE; break;
        default: jinja_fail(in->env, n->line, "not a statement");
        }
        in->scope = sc;
    }
    in->scope = saved;
}

/* ---- JSON in, public API ---------------------------------------------------------------- */

static struct jv from_json(struct jinja_env *env, const json_t *j, int depth)
{
    if (depth > 64) jinja_fail(env, 0, "variables nested too deeply");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        struct jv d = jv_new_dict(env);
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)j, key, val)
            jv_dict_set(env, d.dict, jv_cstr(env, key), from_json(env, val, depth + 1));
        return d;
    }
    case JSON_ARRAY: {
        struct jv l = jv_new_list(env);
        for (size_t i = 0; i < json_array_size(j); i++)
            jv_list_push(env, l.list, from_json(env, json_array_get(j, i), depth + 1));
        return l;
    }
    case JSON_STRING: return jv_str(env, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return jv_int(json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_TRUE: return jv_bool(true);
    case JSON_FALSE: return jv_bool(false);
    default: return jv_none();
    }
}

kiln_status jinja_compile(const char *src, size_t len, struct jinja_template **out,
                          struct kiln_err *err)
{
    struct jinja_template *t = calloc(1, sizeof *t);
    if (!t) return kiln_fail(err, KILN_ENOMEM, "out of memory for the template");
    t->env.err = err;
    t->env.arena.limit = 64u << 20;
    if (setjmp(t->env.on_error)) {
        kiln_status st = t->env.status;
        jinja_template_free(t);
        return st;
    }
    /* The tree points into the source, so keep a copy. */
    char *copy = jinja_alloc(&t->env, len + 1);
    memcpy(copy, src, len);
    copy[len] = 0;
    t->body = jinja_parse(&t->env, copy, len, &t->n_body);
    t->env.err = NULL;
    *out = t;
    return KILN_OK;
}

void jinja_template_free(struct jinja_template *t)
{
    if (!t) return;
    arena_free_all(&t->env.arena);
    free(t);
}

kiln_status jinja_render(const struct jinja_template *t, const json_t *vars,
                         const struct jinja_limits *limits, char **out, size_t *out_len,
                         struct kiln_err *err)
{
    struct jinja_env env = {.err = err};
    env.arena.limit = limits && limits->max_memory ? limits->max_memory : 64u << 20;
    struct interp in = {.env = &env};
    in.max_output = limits && limits->max_output ? limits->max_output : 1u << 20;
    in.max_depth = limits && limits->max_depth ? limits->max_depth : 32;
    if (setjmp(env.on_error)) {
        arena_free_all(&env.arena);
        return env.status;
    }
    struct scope *root = new_scope(&in, NULL);
    in.root = root;
    if (vars && json_is_object(vars)) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)vars, key, val)
            assign(&in, root, key, from_json(&env, val, 0));
    }
    struct sbuf result = {.limit = in.max_output};
    in.out = &result;
    exec_body(&in, root, t->body, t->n_body);
    char *s = malloc(result.n + 1);
    if (!s) {
        arena_free_all(&env.arena);
        return kiln_fail(err, KILN_ENOMEM, "out of memory for the rendered template");
    }
    if (result.n) memcpy(s, result.p, result.n);
    s[result.n] = 0;
    *out = s;
    *out_len = result.n;
    arena_free_all(&env.arena);
    return KILN_OK;
}
