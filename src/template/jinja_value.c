/* Jinja values: the arena they live in, construction, truth and equality as Python has
 * them, and their text forms (Python's str() and json.dumps). */
#include "template/jinja_internal.h"

#include "base/status.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ------------------------------------------------------------------------------ */

struct arena_chunk {
    struct arena_chunk *next;
    size_t size, used;
    max_align_t data[];
};

void *arena_alloc(struct arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n > a->limit || a->used > a->limit - n) return NULL;
    struct arena_chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + size);
        if (!c) return NULL;
        c->next = a->head;
        c->size = size;
        c->used = 0;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    a->used += n;
    return p;
}

void arena_free_all(struct arena *a)
{
    for (struct arena_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
    a->used = 0;
}

_Noreturn void jinja_fail(struct jinja_env *env, int line, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_status st = env->status ? env->status : KILN_EFORMAT;
    if (line > 0) kiln_fail(env->err, st, "template line %d: %s", line, msg);
    else kiln_fail(env->err, st, "template: %s", msg);
    env->status = st;
    longjmp(env->on_error, 1);
}

void *jinja_alloc(struct jinja_env *env, size_t n)
{
    void *p = arena_alloc(&env->arena, n);
    if (!p) {
        env->status = KILN_ERANGE;
        jinja_fail(env, 0, "uses more than %zu bytes of memory", env->arena.limit);
    }
    return p;
}

/* ---- construction ----------------------------------------------------------------------- */

struct jv jv_str(struct jinja_env *env, const char *p, size_t n)
{
    char *s = jinja_alloc(env, n + 1);
    memcpy(s, p, n);
    s[n] = 0;
    return (struct jv){.type = JV_STRING, .s = {s, n}};
}

struct jv jv_cstr(struct jinja_env *env, const char *s)
{
    return jv_str(env, s, strlen(s));
}

struct jv jv_int(int64_t i) { return (struct jv){.type = JV_INT, .i = i}; }
struct jv jv_float(double f) { return (struct jv){.type = JV_FLOAT, .f = f}; }
struct jv jv_bool(bool b) { return (struct jv){.type = JV_BOOL, .b = b}; }
struct jv jv_none(void) { return (struct jv){.type = JV_NONE}; }
struct jv jv_undefined(const char *name)
{
    return (struct jv){.type = JV_UNDEFINED, .undefined_name = name};
}

struct jv jv_new_list(struct jinja_env *env)
{
    struct jv v = {.type = JV_LIST, .list = jinja_alloc(env, sizeof(struct jv_list))};
    *v.list = (struct jv_list){0};
    return v;
}

struct jv jv_new_dict(struct jinja_env *env)
{
    struct jv v = {.type = JV_DICT, .dict = jinja_alloc(env, sizeof(struct jv_dict))};
    *v.dict = (struct jv_dict){0};
    return v;
}

void jv_list_push(struct jinja_env *env, struct jv_list *l, struct jv v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        struct jv *items = jinja_alloc(env, cap * sizeof *items);
        if (l->n) memcpy(items, l->items, l->n * sizeof *items);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = v;
}

struct jv *jv_dict_get(const struct jv_dict *d, const char *key, size_t n)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i].type == JV_STRING && d->keys[i].s.n == n && !memcmp(d->keys[i].s.p, key, n))
            return &d->vals[i];
    return NULL;
}

void jv_dict_set(struct jinja_env *env, struct jv_dict *d, struct jv key, struct jv val)
{
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->keys[i], key)) {
            d->vals[i] = val;
            return;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 4;
        struct jv *keys = jinja_alloc(env, cap * sizeof *keys);
        struct jv *vals = jinja_alloc(env, cap * sizeof *vals);
        if (d->n) {
            memcpy(keys, d->keys, d->n * sizeof *keys);
            memcpy(vals, d->vals, d->n * sizeof *vals);
        }
        d->keys = keys;
        d->vals = vals;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n++] = val;
}

/* ---- truth and equality ----------------------------------------------------------------- */

bool jv_truthy(struct jv v)
{
    switch (v.type) {
    case JV_UNDEFINED: case JV_NONE: return false;
    case JV_BOOL: return v.b;
    case JV_INT: return v.i != 0;
    case JV_FLOAT: return v.f != 0;
    case JV_STRING: return v.s.n > 0;
    case JV_LIST: return v.list->n > 0;
    case JV_DICT: return v.dict->n > 0;
    default: return true;
    }
}

static bool is_number(struct jv v)
{
    return v.type == JV_INT || v.type == JV_FLOAT || v.type == JV_BOOL;
}

static double as_double(struct jv v)
{
    return v.type == JV_FLOAT ? v.f : v.type == JV_INT ? (double)v.i : (double)v.b;
}

bool jv_equal(struct jv a, struct jv b)
{
    if (is_number(a) && is_number(b)) {
        if (a.type != JV_FLOAT && b.type != JV_FLOAT)
            return (a.type == JV_INT ? a.i : a.b) == (b.type == JV_INT ? b.i : b.b);
        return as_double(a) == as_double(b);
    }
    if (a.type != b.type) return false;
    switch (a.type) {
    case JV_UNDEFINED: case JV_NONE: return true;
    case JV_STRING: return a.s.n == b.s.n && !memcmp(a.s.p, b.s.p, a.s.n);
    case JV_LIST:
        if (a.list->n != b.list->n) return false;
        for (size_t i = 0; i < a.list->n; i++)
            if (!jv_equal(a.list->items[i], b.list->items[i])) return false;
        return true;
    case JV_DICT: case JV_NAMESPACE:
        if (a.dict->n != b.dict->n) return false;
        for (size_t i = 0; i < a.dict->n; i++) {
            bool found = false;
            for (size_t j = 0; j < b.dict->n && !found; j++)
                if (jv_equal(a.dict->keys[i], b.dict->keys[j]))
                    found = jv_equal(a.dict->vals[i], b.dict->vals[j]);
            if (!found) return false;
        }
        return true;
    case JV_MACRO: return a.macro == b.macro;
    case JV_BUILTIN: return a.builtin == b.builtin;
    default: return false;
    }
}

const char *jv_type_name(enum jv_type t)
{
    static const char *const names[] = {"undefined", "none",  "bool",      "int",
                                        "float",     "string", "list",     "dict",
                                        "namespace", "macro",  "function"};
    return names[t];
}

/* ---- text forms ------------------------------------------------------------------------- */

void sbuf_put(struct jinja_env *env, struct sbuf *b, const char *p, size_t n)
{
    if (n > b->limit || b->n > b->limit - n) {
        env->status = KILN_ERANGE;
        jinja_fail(env, 0, "output (or a string in it) longer than %zu bytes", b->limit);
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = jinja_alloc(env, cap);
        if (b->n) memcpy(q, b->p, b->n);
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
}

void sbuf_puts(struct jinja_env *env, struct sbuf *b, const char *s)
{
    sbuf_put(env, b, s, strlen(s));
}

/* Python's repr() of a float: the shortest digits that read back exactly, in fixed
 * notation for exponents -4..15 and scientific otherwise ("1e-05", "1e+16", "0.1", "2.0"). */
static void write_float(struct jinja_env *env, struct sbuf *b, double f, bool json)
{
    if (isnan(f)) return sbuf_puts(env, b, json ? "NaN" : "nan");
    if (isinf(f)) return sbuf_puts(env, b, f > 0 ? (json ? "Infinity" : "inf")
                                                  : (json ? "-Infinity" : "-inf"));
    char sci[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(sci, sizeof sci, "%.*e", prec, f);
        if (strtod(sci, NULL) == f) break;
    }
    /* sci is [-]d[.ddd]e[+-]XX */
    char digits[24];
    size_t nd = 0;
    const char *p = sci;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char out[64];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = -1; i > exp; i--) out[o++] = '0';
            for (size_t i = 0; i < nd; i++) out[o++] = digits[i];
        } else {
            for (int i = 0; i <= exp; i++) out[o++] = (size_t)i < nd ? digits[i] : '0';
            out[o++] = '.';
            if ((size_t)exp + 1 < nd)
                for (size_t i = (size_t)exp + 1; i < nd; i++) out[o++] = digits[i];
            else
                out[o++] = '0';
        }
        out[o] = 0;
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < nd; i++) out[o++] = digits[i];
        }
        snprintf(out + o, sizeof out - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    sbuf_puts(env, b, out);
}

/* Python's repr() of a string: single quotes unless the text has ' and no ". */
static void write_repr_string(struct jinja_env *env, struct sbuf *b, const char *s, size_t n)
{
    bool has_single = memchr(s, '\'', n) != NULL, has_double = memchr(s, '"', n) != NULL;
    char q = has_single && !has_double ? '"' : '\'';
    sbuf_put(env, b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '\\' || c == (unsigned char)q) {
            esc[0] = '\\';
            esc[1] = (char)c;
            sbuf_put(env, b, esc, 2);
        } else if (c == '\n') sbuf_puts(env, b, "\\n");
        else if (c == '\r') sbuf_puts(env, b, "\\r");
        else if (c == '\t') sbuf_puts(env, b, "\\t");
        else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            sbuf_puts(env, b, esc);
        } else if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] < 0xa0) {
            /* U+0080..U+009F are not printable: Python writes \x80..\x9f */
            snprintf(esc, sizeof esc, "\\x%02x", (unsigned char)s[i + 1]);
            sbuf_puts(env, b, esc);
            i++;
        } else
            sbuf_put(env, b, (const char *)&s[i], 1);
    }
    sbuf_put(env, b, &q, 1);
}

static void write_repr(struct jinja_env *env, struct sbuf *b, struct jv v, int depth)
{
    if (depth > 64) jinja_fail(env, 0, "value nested too deeply to print");
    switch (v.type) {
    case JV_STRING: write_repr_string(env, b, v.s.p, v.s.n); return;
    case JV_LIST:
        sbuf_puts(env, b, "[");
        for (size_t i = 0; i < v.list->n; i++) {
            if (i) sbuf_puts(env, b, ", ");
            write_repr(env, b, v.list->items[i], depth + 1);
        }
        sbuf_puts(env, b, "]");
        return;
    case JV_DICT: case JV_NAMESPACE:
        sbuf_puts(env, b, v.type == JV_NAMESPACE ? "<Namespace {" : "{");
        for (size_t i = 0; i < v.dict->n; i++) {
            if (i) sbuf_puts(env, b, ", ");
            write_repr(env, b, v.dict->keys[i], depth + 1);
            sbuf_puts(env, b, ": ");
            write_repr(env, b, v.dict->vals[i], depth + 1);
        }
        sbuf_puts(env, b, v.type == JV_NAMESPACE ? "}>" : "}");
        return;
    default: jv_write_str(env, b, v); return;
    }
}

void jv_write_str(struct jinja_env *env, struct sbuf *b, struct jv v)
{
    char num[32];
    switch (v.type) {
    case JV_UNDEFINED: return;
    case JV_NONE: sbuf_puts(env, b, "None"); return;
    case JV_BOOL: sbuf_puts(env, b, v.b ? "True" : "False"); return;
    case JV_INT:
        snprintf(num, sizeof num, "%lld", (long long)v.i);
        sbuf_puts(env, b, num);
        return;
    case JV_FLOAT: write_float(env, b, v.f, false); return;
    case JV_STRING: sbuf_put(env, b, v.s.p, v.s.n); return;
    case JV_MACRO: sbuf_puts(env, b, "<Macro>"); return;
    case JV_BUILTIN: sbuf_puts(env, b, "<built-in function>"); return;
    default: write_repr(env, b, v, 0); return;
    }
}

struct jv sbuf_value(struct jinja_env *env, const struct sbuf *b)
{
    return b->p ? (struct jv){.type = JV_STRING, .s = {b->p, b->n}} : jv_str(env, "", 0);
}

struct jv jv_to_string(struct jinja_env *env, struct jv v)
{
    if (v.type == JV_STRING) return v;
    struct sbuf b = {.limit = (size_t)-1};
    jv_write_str(env, &b, v);
    return sbuf_value(env, &b);
}

static void write_json_string(struct jinja_env *env, struct sbuf *b, const char *s, size_t n)
{
    sbuf_puts(env, b, "\"");
    size_t run = 0; /* bytes copied as they are, flushed before each escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char hex[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(hex, sizeof hex, "\\u%04x", c);
                esc = hex;
            }
        }
        if (!esc) {
            run++;
            continue;
        }
        sbuf_put(env, b, s + i - run, run);
        run = 0;
        sbuf_puts(env, b, esc);
    }
    sbuf_put(env, b, s + n - run, run);
    sbuf_puts(env, b, "\"");
}

static void newline_indent(struct jinja_env *env, struct sbuf *b, int indent, int depth)
{
    sbuf_puts(env, b, "\n");
    for (int i = 0; i < indent * depth; i++) sbuf_puts(env, b, " ");
}

void jv_write_json(struct jinja_env *env, struct sbuf *b, struct jv v, int indent, int depth)
{
    if (depth > 64) jinja_fail(env, 0, "value nested too deeply for tojson");
    const char *item_sep = indent >= 0 ? "," : ", ";
    switch (v.type) {
    case JV_NONE: sbuf_puts(env, b, "null"); return;
    case JV_BOOL: sbuf_puts(env, b, v.b ? "true" : "false"); return;
    case JV_INT: jv_write_str(env, b, v); return;
    case JV_FLOAT: write_float(env, b, v.f, true); return;
    case JV_STRING: write_json_string(env, b, v.s.p, v.s.n); return;
    case JV_LIST:
        if (v.list->n == 0) return sbuf_puts(env, b, "[]");
        sbuf_puts(env, b, "[");
        for (size_t i = 0; i < v.list->n; i++) {
            if (i) sbuf_puts(env, b, item_sep);
            if (indent >= 0) newline_indent(env, b, indent, depth + 1);
            jv_write_json(env, b, v.list->items[i], indent, depth + 1);
        }
        if (indent >= 0) newline_indent(env, b, indent, depth);
        sbuf_puts(env, b, "]");
        return;
    case JV_DICT: case JV_NAMESPACE:
        if (v.dict->n == 0) return sbuf_puts(env, b, "{}");
        sbuf_puts(env, b, "{");
        for (size_t i = 0; i < v.dict->n; i++) {
            if (i) sbuf_puts(env, b, item_sep);
            if (indent >= 0) newline_indent(env, b, indent, depth + 1);
            struct jv k = v.dict->keys[i];
            if (k.type == JV_STRING) write_json_string(env, b, k.s.p, k.s.n);
            else {
                /* json.dumps turns int, float, bool and None keys into strings */
                struct sbuf kb = {.limit = (size_t)-1};
                jv_write_json(env, &kb, k, -1, depth + 1);
                write_json_string(env, b, kb.p, kb.n);
            }
            sbuf_puts(env, b, ": ");
            jv_write_json(env, b, v.dict->vals[i], indent, depth + 1);
        }
        if (indent >= 0) newline_indent(env, b, indent, depth);
        sbuf_puts(env, b, "}");
        return;
    default:
        jinja_fail(env, 0, "%s is not JSON serializable", jv_type_name(v.type));
    }
}
