/* Jinja built-ins: filters, tests, string / dict methods and global functions, with the
 * behaviour of jinja2 3.1 and Python 3 (and HF transformers' tojson and raise_exception). */
#define _GNU_SOURCE /* memmem */
#include "template/jinja_internal.h"

#include "base/status.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const struct jv *call_arg(const struct call_args *a, size_t i, const char *name)
{
    if (i < a->n_pos) return &a->pos[i];
    for (size_t k = 0; name && k < a->n_kw; k++)
        if (!strcmp(a->kwnames[k], name)) return &a->kw[k];
    return NULL;
}

static struct jv need_string(struct jinja_env *env, int line, const char *what, struct jv v)
{
    if (v.type != JV_STRING) jinja_fail(env, line, "%s needs a string, not %s", what, jv_type_name(v.type));
    return v;
}

static bool arg_bool(const struct call_args *a, size_t i, const char *name, bool def)
{
    const struct jv *v = call_arg(a, i, name);
    return v ? jv_truthy(*v) : def;
}

/* Python's str.isspace for ASCII (and the separators 0x1c..0x1f it also counts). */
static bool py_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static struct jv strip(struct jinja_env *env, struct jv s, const struct jv *chars, bool left,
                       bool right)
{
    size_t a = 0, b = s.s.n;
    bool custom = chars && chars->type == JV_STRING;
#define STRIPPABLE(c) (custom ? memchr(chars->s.p, (c), chars->s.n) != NULL : py_space(c))
    if (left)
        while (a < b && STRIPPABLE((unsigned char)s.s.p[a])) a++;
    if (right)
        while (b > a && STRIPPABLE((unsigned char)s.s.p[b - 1])) b--;
#undef STRIPPABLE
    return jv_str(env, s.s.p + a, b - a);
}

static struct jv map_case(struct jinja_env *env, struct jv s, int mode /* 0 lower 1 upper 2 capitalize 3 title */)
{
    struct jv out = jv_str(env, s.s.p, s.s.n);
    char *p = (char *)out.s.p;
    bool word_start = true;
    for (size_t i = 0; i < out.s.n; i++) {
        unsigned char c = (unsigned char)p[i];
        bool alpha = isalpha(c);
        if (mode == 0) p[i] = (char)tolower(c);
        else if (mode == 1) p[i] = (char)toupper(c);
        else if (mode == 2) p[i] = (char)(i == 0 ? toupper(c) : tolower(c));
        else p[i] = (char)(word_start ? toupper(c) : tolower(c));
        word_start = !alpha && !(c & 0x80);
    }
    return out;
}

static struct jv replace(struct jinja_env *env, struct jv s, struct jv from, struct jv to,
                         int64_t count)
{
    struct sbuf b = {.limit = (size_t)-1};
    size_t i = 0;
    int64_t done = 0;
    if (from.s.n == 0) return s;
    while (i < s.s.n) {
        if ((count < 0 || done < count) && i + from.s.n <= s.s.n &&
            !memcmp(s.s.p + i, from.s.p, from.s.n)) {
            sbuf_put(env, &b, to.s.p, to.s.n);
            i += from.s.n;
            done++;
        } else
            sbuf_put(env, &b, s.s.p + i++, 1);
    }
    return sbuf_value(env, &b);
}

static struct jv split(struct jinja_env *env, struct jv s, const struct jv *sep, int64_t maxsplit)
{
    struct jv out = jv_new_list(env);
    const char *p = s.s.p;
    size_t n = s.s.n, i = 0;
    int64_t splits = 0;
    if (!sep || sep->type == JV_NONE) { /* runs of whitespace, no empty strings */
        for (;;) {
            while (i < n && py_space((unsigned char)p[i])) i++;
            if (i >= n) break;
            size_t start = i;
            if (maxsplit >= 0 && splits >= maxsplit) {
                size_t end = n;
                while (end > start && py_space((unsigned char)p[end - 1])) end--;
                jv_list_push(env, out.list, jv_str(env, p + start, end - start));
                break;
            }
            while (i < n && !py_space((unsigned char)p[i])) i++;
            jv_list_push(env, out.list, jv_str(env, p + start, i - start));
            splits++;
        }
        return out;
    }
    if (sep->s.n == 0) jinja_fail(env, 0, "split: empty separator");
    size_t start = 0;
    while (i + sep->s.n <= n && (maxsplit < 0 || splits < maxsplit)) {
        if (!memcmp(p + i, sep->s.p, sep->s.n)) {
            jv_list_push(env, out.list, jv_str(env, p + start, i - start));
            i += sep->s.n;
            start = i;
            splits++;
        } else
            i++;
    }
    jv_list_push(env, out.list, jv_str(env, p + start, n - start));
    return out;
}

static bool affix_match(struct jv s, struct jv affix, bool prefix)
{
    if (affix.type == JV_LIST) {
        for (size_t i = 0; i < affix.list->n; i++)
            if (affix_match(s, affix.list->items[i], prefix)) return true;
        return false;
    }
    if (affix.type != JV_STRING || affix.s.n > s.s.n) return false;
    return !memcmp(prefix ? s.s.p : s.s.p + s.s.n - affix.s.n, affix.s.p, affix.s.n);
}

static size_t length_of(struct jv v)
{
    switch (v.type) {
    case JV_STRING: {
        size_t k = 0;
        for (size_t i = 0; i < v.s.n; i++) k += ((unsigned char)v.s.p[i] & 0xc0) != 0x80;
        return k;
    }
    case JV_LIST: return v.list->n;
    case JV_DICT: case JV_NAMESPACE: return v.dict->n;
    default: return 0;
    }
}

/* A list of the items of v (list items, dict keys, string characters); undefined: empty. */
static struct jv as_list(struct jinja_env *env, int line, struct jv v)
{
    struct jv out = jv_new_list(env);
    if (v.type == JV_LIST) {
        for (size_t i = 0; i < v.list->n; i++) jv_list_push(env, out.list, v.list->items[i]);
    } else if (v.type == JV_DICT || v.type == JV_NAMESPACE) {
        for (size_t i = 0; i < v.dict->n; i++) jv_list_push(env, out.list, v.dict->keys[i]);
    } else if (v.type == JV_STRING) {
        for (size_t i = 0; i < v.s.n;) {
            size_t e = i + 1;
            while (e < v.s.n && ((unsigned char)v.s.p[e] & 0xc0) == 0x80) e++;
            jv_list_push(env, out.list, jv_str(env, v.s.p + i, e - i));
            i = e;
        }
    } else if (v.type != JV_UNDEFINED)
        jinja_fail(env, line, "a %s is not iterable", jv_type_name(v.type));
    return out;
}

static struct jv attr_of(struct jinja_env *env, struct jv item, struct jv attr)
{
    /* "a.b" walks nested attributes, as jinja2's attribute arguments do */
    if (attr.type == JV_INT) {
        if (item.type == JV_LIST && attr.i >= 0 && (size_t)attr.i < item.list->n)
            return item.list->items[attr.i];
        return jv_undefined("attribute");
    }
    const char *p = attr.s.p, *end = attr.s.p + attr.s.n;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
        if (item.type != JV_DICT && item.type != JV_NAMESPACE) return jv_undefined("attribute");
        struct jv *v = jv_dict_get(item.dict, p, n);
        if (!v) return jv_undefined(jv_str(env, p, n).s.p);
        item = *v;
        if (!dot) break;
        p = dot + 1;
    }
    return item;
}

/* Runs test `name` with the arguments after skip in a (for select / selectattr). */
static bool apply_test(struct jinja_env *env, int line, const char *name, struct jv v,
                       const struct call_args *a, size_t skip)
{
    struct call_args rest = {a->pos + skip, a->n_pos - skip, a->kwnames, a->kw, a->n_kw};
    return jinja_test(env, line, name, v, &rest);
}

static struct jv select_items(struct jinja_env *env, int line, struct jv v,
                              const struct call_args *a, bool by_attr, bool keep)
{
    /* jinja2 walks the value only when it is truthy, so none selects nothing */
    struct jv items = jv_truthy(v) ? as_list(env, line, v) : jv_new_list(env), out = jv_new_list(env);
    size_t skip = by_attr ? 1 : 0;
    if (by_attr && (a->n_pos < 1 || a->pos[0].type != JV_STRING))
        jinja_fail(env, line, "selectattr / rejectattr need an attribute name");
    for (size_t i = 0; i < items.list->n; i++) {
        struct jv item = items.list->items[i];
        struct jv subject = by_attr ? attr_of(env, item, a->pos[0]) : item;
        bool pass;
        if (a->n_pos > skip) {
            if (a->pos[skip].type != JV_STRING) jinja_fail(env, line, "test name must be a string");
            pass = apply_test(env, line, a->pos[skip].s.p, subject, a, skip + 1);
        } else
            pass = jv_truthy(subject);
        if (pass == keep) jv_list_push(env, out.list, item);
    }
    return out;
}

static struct jv lowercased(struct jinja_env *env, struct jv v)
{
    return v.type == JV_STRING ? map_case(env, v, 0) : v;
}

/* jinja2's indent: lines after the first get the indent; blank lines only when asked. */
static struct jv indent(struct jinja_env *env, struct jv s, const struct call_args *a)
{
    const struct jv *w = call_arg(a, 0, "width");
    struct sbuf pad = {.limit = (size_t)-1};
    if (w && w->type == JV_STRING) sbuf_put(env, &pad, w->s.p, w->s.n);
    else
        for (int64_t i = 0; i < (w ? w->i : 4); i++) sbuf_puts(env, &pad, " ");
    bool first = arg_bool(a, 1, "first", false), blank = arg_bool(a, 2, "blank", false);
    struct sbuf out = {.limit = (size_t)-1};
    if (first && pad.n) sbuf_put(env, &out, pad.p, pad.n);
    const char *p = s.s.p, *end = s.s.p + s.s.n;
    bool first_line = true;
    while (p < end) {
        const char *nl = p;
        while (nl < end && *nl != '\n' && *nl != '\r') nl++;
        if (!first_line) {
            sbuf_puts(env, &out, "\n");
            if (nl > p || blank) sbuf_put(env, &out, pad.p, pad.n);
        }
        sbuf_put(env, &out, p, (size_t)(nl - p));
        first_line = false;
        if (nl < end && *nl == '\r' && nl + 1 < end && nl[1] == '\n') nl++;
        p = nl + 1;
        if (nl >= end) break;
    }
    return sbuf_value(env, &out);
}

static const char *const filter_names[] = {
    "tojson", "trim", "strip", "length", "count", "items", "lower", "upper", "capitalize",
    "title", "safe", "string", "list", "indent", "replace", "join", "map", "select", "reject",
    "selectattr", "rejectattr", "unique", "default", "d", "first", "last", "reverse", "int",
    "float", "abs", "round", "sum", "e", "escape", "dictsort", NULL};

bool jinja_has_filter(const char *name)
{
    for (int i = 0; filter_names[i]; i++)
        if (!strcmp(filter_names[i], name)) return true;
    return false;
}

struct jv jinja_filter(struct jinja_env *env, int line, const char *name, struct jv v,
                       const struct call_args *a)
{
    const struct jv *x;
    if (!strcmp(name, "tojson")) {
        const struct jv *ind = call_arg(a, 0, "indent"), *sort = call_arg(a, 3, "sort_keys");
        if (sort && jv_truthy(*sort) && (v.type == JV_DICT)) {
            /* sort a copy of the keys (strings), as json.dumps(sort_keys=True) */
            struct jv copy = jv_new_dict(env);
            for (size_t i = 0; i < v.dict->n; i++) jv_dict_set(env, copy.dict, v.dict->keys[i], v.dict->vals[i]);
            for (size_t i = 1; i < copy.dict->n; i++)
                for (size_t j = i; j > 0; j--) {
                    struct jv *k = copy.dict->keys, *val = copy.dict->vals;
                    if (k[j - 1].type != JV_STRING || k[j].type != JV_STRING) break;
                    size_t n = k[j - 1].s.n < k[j].s.n ? k[j - 1].s.n : k[j].s.n;
                    int c = memcmp(k[j - 1].s.p, k[j].s.p, n);
                    if (c < 0 || (c == 0 && k[j - 1].s.n <= k[j].s.n)) break;
                    struct jv tk = k[j], tv = val[j];
                    k[j] = k[j - 1], val[j] = val[j - 1];
                    k[j - 1] = tk, val[j - 1] = tv;
                }
            v = copy;
        }
        if ((x = call_arg(a, 1, "ensure_ascii")) && jv_truthy(*x))
            jinja_fail(env, line, "tojson(ensure_ascii=true) is not supported");
        struct sbuf b = {.limit = (size_t)-1};
        jv_write_json(env, &b, v, ind && ind->type == JV_INT ? (int)ind->i : -1, 0);
        return sbuf_value(env, &b);
    }
    if (!strcmp(name, "trim") || !strcmp(name, "strip"))
        return strip(env, jv_to_string(env, v), call_arg(a, 0, "chars"), true, true);
    if (!strcmp(name, "length") || !strcmp(name, "count")) return jv_int((int64_t)length_of(v));
    if (!strcmp(name, "items")) {
        struct jv out = jv_new_list(env);
        if (v.type == JV_UNDEFINED) return out;
        if (v.type != JV_DICT && v.type != JV_NAMESPACE) jinja_fail(env, line, "items needs a dict");
        for (size_t i = 0; i < v.dict->n; i++) {
            struct jv pair = jv_new_list(env);
            jv_list_push(env, pair.list, v.dict->keys[i]);
            jv_list_push(env, pair.list, v.dict->vals[i]);
            jv_list_push(env, out.list, pair);
        }
        return out;
    }
    if (!strcmp(name, "lower")) return map_case(env, jv_to_string(env, v), 0);
    if (!strcmp(name, "upper")) return map_case(env, jv_to_string(env, v), 1);
    if (!strcmp(name, "capitalize")) return map_case(env, jv_to_string(env, v), 2);
    if (!strcmp(name, "title")) return map_case(env, jv_to_string(env, v), 3);
    if (!strcmp(name, "safe")) return v;
    if (!strcmp(name, "string")) return jv_to_string(env, v);
    if (!strcmp(name, "list")) return as_list(env, line, v);
    if (!strcmp(name, "indent")) return indent(env, jv_to_string(env, v), a);
    if (!strcmp(name, "replace")) {
        const struct jv *from = call_arg(a, 0, "old"), *to = call_arg(a, 1, "new"),
                        *count = call_arg(a, 2, "count");
        if (!from || !to) jinja_fail(env, line, "replace needs two arguments");
        return replace(env, jv_to_string(env, v), need_string(env, line, "replace", *from),
                       jv_to_string(env, *to), count && count->type == JV_INT ? count->i : -1);
    }
    if (!strcmp(name, "join")) {
        struct jv items = as_list(env, line, v);
        const struct jv *sep = call_arg(a, 0, "d"), *attr = call_arg(a, 1, "attribute");
        struct sbuf b = {.limit = (size_t)-1};
        for (size_t i = 0; i < items.list->n; i++) {
            if (i && sep) jv_write_str(env, &b, *sep);
            struct jv item = items.list->items[i];
            jv_write_str(env, &b, attr ? attr_of(env, item, *attr) : item);
        }
        return sbuf_value(env, &b);
    }
    if (!strcmp(name, "map")) {
        struct jv items = jv_truthy(v) ? as_list(env, line, v) : jv_new_list(env), out = jv_new_list(env);
        const struct jv *attr = call_arg(a, (size_t)-1, "attribute");
        const struct jv *def = call_arg(a, (size_t)-1, "default");
        for (size_t i = 0; i < items.list->n; i++) {
            struct jv item = items.list->items[i], r;
            if (attr) {
                r = attr_of(env, item, *attr);
                if (r.type == JV_UNDEFINED && def) r = *def;
            } else {
                if (a->n_pos < 1 || a->pos[0].type != JV_STRING)
                    jinja_fail(env, line, "map needs a filter name or attribute=");
                struct call_args rest = {a->pos + 1, a->n_pos - 1, a->kwnames, a->kw, a->n_kw};
                r = jinja_filter(env, line, a->pos[0].s.p, item, &rest);
            }
            jv_list_push(env, out.list, r);
        }
        return out;
    }
    if (!strcmp(name, "select")) return select_items(env, line, v, a, false, true);
    if (!strcmp(name, "reject")) return select_items(env, line, v, a, false, false);
    if (!strcmp(name, "selectattr")) return select_items(env, line, v, a, true, true);
    if (!strcmp(name, "rejectattr")) return select_items(env, line, v, a, true, false);
    if (!strcmp(name, "unique")) {
        struct jv items = as_list(env, line, v), out = jv_new_list(env);
        bool case_sensitive = arg_bool(a, 0, "case_sensitive", false);
        for (size_t i = 0; i < items.list->n; i++) {
            struct jv key = case_sensitive ? items.list->items[i] : lowercased(env, items.list->items[i]);
            bool seen = false;
            for (size_t j = 0; j < out.list->n && !seen; j++)
                seen = jv_equal(case_sensitive ? out.list->items[j] : lowercased(env, out.list->items[j]), key);
            if (!seen) jv_list_push(env, out.list, items.list->items[i]);
        }
        return out;
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        const struct jv *def = call_arg(a, 0, "default_value");
        bool boolean = arg_bool(a, 1, "boolean", false);
        if (v.type == JV_UNDEFINED || (boolean && !jv_truthy(v))) return def ? *def : jv_str(env, "", 0);
        return v;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        struct jv items = as_list(env, line, v);
        if (items.list->n == 0) return jv_undefined(name);
        return items.list->items[name[0] == 'f' ? 0 : items.list->n - 1];
    }
    if (!strcmp(name, "reverse")) {
        if (v.type == JV_STRING) {
            struct jv chars = as_list(env, line, v);
            struct sbuf b = {.limit = (size_t)-1};
            for (size_t i = chars.list->n; i-- > 0;) jv_write_str(env, &b, chars.list->items[i]);
            return sbuf_value(env, &b);
        }
        struct jv items = as_list(env, line, v), out = jv_new_list(env);
        for (size_t i = items.list->n; i-- > 0;) jv_list_push(env, out.list, items.list->items[i]);
        return out;
    }
    if (!strcmp(name, "int")) {
        if (v.type == JV_INT) return v;
        if (v.type == JV_FLOAT) return jv_int((int64_t)v.f);
        if (v.type == JV_BOOL) return jv_int(v.b);
        if (v.type == JV_STRING) return jv_int(strtoll(v.s.p, NULL, 10));
        x = call_arg(a, 0, "default");
        return x ? *x : jv_int(0);
    }
    if (!strcmp(name, "float")) {
        if (v.type == JV_FLOAT) return v;
        if (v.type == JV_INT) return jv_float((double)v.i);
        if (v.type == JV_STRING) return jv_float(strtod(v.s.p, NULL));
        return jv_float(0);
    }
    if (!strcmp(name, "abs")) {
        if (v.type == JV_INT) return jv_int(v.i < 0 ? -v.i : v.i);
        if (v.type == JV_FLOAT) return jv_float(fabs(v.f));
        jinja_fail(env, line, "abs needs a number");
    }
    if (!strcmp(name, "round")) {
        const struct jv *prec = call_arg(a, 0, "precision");
        double f = v.type == JV_FLOAT ? v.f : v.type == JV_INT ? (double)v.i : 0, m = pow(10, prec ? (double)prec->i : 0);
        return jv_float(round(f * m) / m);
    }
    if (!strcmp(name, "sum")) {
        struct jv items = as_list(env, line, v);
        int64_t si = 0;
        double sf = 0;
        bool is_float = false;
        for (size_t i = 0; i < items.list->n; i++) {
            struct jv it = items.list->items[i];
            if (it.type == JV_FLOAT) is_float = true, sf += it.f;
            else if (it.type == JV_INT) si += it.i;
            else jinja_fail(env, line, "sum needs numbers");
        }
        return is_float ? jv_float(sf + (double)si) : jv_int(si);
    }
    if (!strcmp(name, "e") || !strcmp(name, "escape")) {
        struct jv s = jv_to_string(env, v);
        struct sbuf b = {.limit = (size_t)-1};
        for (size_t i = 0; i < s.s.n; i++) {
            char c = s.s.p[i];
            const char *rep = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;"
                            : c == '"' ? "&#34;" : c == '\'' ? "&#39;" : NULL;
            if (rep) sbuf_puts(env, &b, rep);
            else sbuf_put(env, &b, &c, 1);
        }
        return sbuf_value(env, &b);
    }
    if (!strcmp(name, "dictsort")) {
        if (v.type != JV_DICT) jinja_fail(env, line, "dictsort needs a dict");
        struct jv pairs = jinja_filter(env, line, "items", v, a);
        struct jv *it = pairs.list->items;
        for (size_t i = 1; i < pairs.list->n; i++)
            for (size_t j = i; j > 0; j--) {
                struct jv k0 = lowercased(env, it[j - 1].list->items[0]), k1 = lowercased(env, it[j].list->items[0]);
                if (k0.type != JV_STRING || k1.type != JV_STRING) break;
                size_t n = k0.s.n < k1.s.n ? k0.s.n : k1.s.n;
                int c = memcmp(k0.s.p, k1.s.p, n);
                if (c < 0 || (c == 0 && k0.s.n <= k1.s.n)) break;
                struct jv t = it[j];
                it[j] = it[j - 1];
                it[j - 1] = t;
            }
        return pairs;
    }
    jinja_fail(env, line, "no filter named '%s'", name);
}

/* ---- tests ------------------------------------------------------------------------------ */

bool jinja_has_test(const char *name)
{
    static const char *const names[] = {
        "defined", "undefined", "none", "boolean", "true", "false", "integer", "float",
        "number", "string", "mapping", "iterable", "sequence", "callable", "equalto", "eq",
        "sameas", "ne", "lt", "gt", "le", "ge", "in", "odd", "even", "divisibleby", "lower",
        "upper", "escaped", "filter", "test", NULL};
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], name)) return true;
    return false;
}

bool jinja_test(struct jinja_env *env, int line, const char *name, struct jv v,
                const struct call_args *a)
{
    const struct jv *arg = call_arg(a, 0, NULL);
    if (!strcmp(name, "defined")) return v.type != JV_UNDEFINED;
    if (!strcmp(name, "undefined")) return v.type == JV_UNDEFINED;
    if (!strcmp(name, "none")) return v.type == JV_NONE;
    if (!strcmp(name, "boolean")) return v.type == JV_BOOL;
    if (!strcmp(name, "true")) return v.type == JV_BOOL && v.b;
    if (!strcmp(name, "false")) return v.type == JV_BOOL && !v.b;
    if (!strcmp(name, "integer")) return v.type == JV_INT;
    if (!strcmp(name, "float")) return v.type == JV_FLOAT;
    if (!strcmp(name, "number")) return v.type == JV_INT || v.type == JV_FLOAT || v.type == JV_BOOL;
    if (!strcmp(name, "string")) return v.type == JV_STRING;
    if (!strcmp(name, "mapping")) return v.type == JV_DICT || v.type == JV_NAMESPACE;
    if (!strcmp(name, "iterable"))
        return v.type == JV_LIST || v.type == JV_DICT || v.type == JV_STRING || v.type == JV_UNDEFINED;
    if (!strcmp(name, "sequence")) return v.type == JV_LIST || v.type == JV_DICT || v.type == JV_STRING;
    if (!strcmp(name, "callable")) return v.type == JV_MACRO || v.type == JV_BUILTIN;
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v.type != JV_STRING) return false;
        struct jv c = map_case(env, v, name[0] == 'l' ? 0 : 1);
        return jv_equal(c, v);
    }
    if (!strcmp(name, "escaped")) return false;
    if (!strcmp(name, "filter")) return v.type == JV_STRING && jinja_has_filter(v.s.p);
    if (!strcmp(name, "test")) return v.type == JV_STRING && jinja_has_test(v.s.p);
    if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        if (v.type != JV_INT) jinja_fail(env, line, "%s needs an integer", name);
        if (name[0] == 'o') return v.i % 2 != 0;
        if (name[0] == 'e') return v.i % 2 == 0;
        if (!arg || arg->type != JV_INT || arg->i == 0) jinja_fail(env, line, "divisibleby needs a number");
        return v.i % arg->i == 0;
    }
    if (!arg) jinja_fail(env, line, "test '%s' needs an argument", name);
    if (!strcmp(name, "equalto") || !strcmp(name, "eq") || !strcmp(name, "sameas"))
        return jv_equal(v, *arg);
    if (!strcmp(name, "ne")) return !jv_equal(v, *arg);
    if (!strcmp(name, "in")) {
        struct call_args none = {0};
        (void)none;
        if (arg->type == JV_LIST) {
            for (size_t i = 0; i < arg->list->n; i++)
                if (jv_equal(arg->list->items[i], v)) return true;
            return false;
        }
        if (arg->type == JV_DICT) return jv_dict_get(arg->dict, v.s.p, v.type == JV_STRING ? v.s.n : 0) != NULL;
        if (arg->type == JV_STRING && v.type == JV_STRING)
            return v.s.n == 0 || (v.s.n <= arg->s.n && memmem(arg->s.p, arg->s.n, v.s.p, v.s.n));
        return false;
    }
    if (!strcmp(name, "lt") || !strcmp(name, "gt") || !strcmp(name, "le") || !strcmp(name, "ge")) {
        bool nums = (v.type == JV_INT || v.type == JV_FLOAT) && (arg->type == JV_INT || arg->type == JV_FLOAT);
        if (!nums) jinja_fail(env, line, "test '%s' needs numbers", name);
        double x = v.type == JV_INT ? (double)v.i : v.f, y = arg->type == JV_INT ? (double)arg->i : arg->f;
        return name[0] == 'l' ? (name[1] == 't' ? x < y : x <= y) : (name[1] == 't' ? x > y : x >= y);
    }
    jinja_fail(env, line, "no test named '%s'", name);
}

/* ---- methods ---------------------------------------------------------------------------- */

bool jinja_method(struct jinja_env *env, int line, struct jv v, const char *name,
                  const struct call_args *a, struct jv *out)
{
    const struct jv *x = call_arg(a, 0, NULL);
    if (v.type == JV_DICT) {
        if (!strcmp(name, "get")) {
            if (!x) jinja_fail(env, line, "get needs a key");
            for (size_t i = 0; i < v.dict->n; i++)
                if (jv_equal(v.dict->keys[i], *x)) return *out = v.dict->vals[i], true;
            const struct jv *def = call_arg(a, 1, NULL);
            *out = def ? *def : jv_none();
            return true;
        }
        if (!strcmp(name, "items")) return *out = jinja_filter(env, line, "items", v, a), true;
        if (!strcmp(name, "keys") || !strcmp(name, "values")) {
            *out = jv_new_list(env);
            for (size_t i = 0; i < v.dict->n; i++)
                jv_list_push(env, out->list, name[0] == 'k' ? v.dict->keys[i] : v.dict->vals[i]);
            return true;
        }
        return false;
    }
    if (v.type != JV_STRING) return false;
    if (!strcmp(name, "strip")) return *out = strip(env, v, x, true, true), true;
    if (!strcmp(name, "lstrip")) return *out = strip(env, v, x, true, false), true;
    if (!strcmp(name, "rstrip")) return *out = strip(env, v, x, false, true), true;
    if (!strcmp(name, "lower")) return *out = map_case(env, v, 0), true;
    if (!strcmp(name, "upper")) return *out = map_case(env, v, 1), true;
    if (!strcmp(name, "capitalize")) return *out = map_case(env, v, 2), true;
    if (!strcmp(name, "title")) return *out = map_case(env, v, 3), true;
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        if (!x) jinja_fail(env, line, "%s needs an argument", name);
        return *out = jv_bool(affix_match(v, *x, name[0] == 's')), true;
    }
    if (!strcmp(name, "split")) {
        const struct jv *max = call_arg(a, 1, "maxsplit");
        return *out = split(env, v, call_arg(a, 0, "sep"), max && max->type == JV_INT ? max->i : -1), true;
    }
    if (!strcmp(name, "replace")) {
        const struct jv *to = call_arg(a, 1, NULL), *count = call_arg(a, 2, NULL);
        if (!x || !to) jinja_fail(env, line, "replace needs two arguments");
        *out = replace(env, v, need_string(env, line, "replace", *x), need_string(env, line, "replace", *to),
                       count && count->type == JV_INT ? count->i : -1);
        return true;
    }
    if (!strcmp(name, "find")) {
        if (!x || x->type != JV_STRING) jinja_fail(env, line, "find needs a string");
        const char *hit = x->s.n == 0 ? v.s.p : memmem(v.s.p, v.s.n, x->s.p, x->s.n);
        int64_t byte = hit ? hit - v.s.p : -1, cp = 0;
        for (int64_t i = 0; i < byte; i++) cp += ((unsigned char)v.s.p[i] & 0xc0) != 0x80;
        return *out = jv_int(byte < 0 ? -1 : cp), true;
    }
    if (!strcmp(name, "join")) {
        if (!x) jinja_fail(env, line, "join needs a list");
        struct jv items = as_list(env, line, *x);
        struct sbuf b = {.limit = (size_t)-1};
        for (size_t i = 0; i < items.list->n; i++) {
            if (i) sbuf_put(env, &b, v.s.p, v.s.n);
            jv_write_str(env, &b, items.list->items[i]);
        }
        return *out = sbuf_value(env, &b), true;
    }
    if (!strcmp(name, "isdigit") || !strcmp(name, "isalpha") || !strcmp(name, "isspace")) {
        bool ok = v.s.n > 0;
        for (size_t i = 0; i < v.s.n && ok; i++) {
            unsigned char c = (unsigned char)v.s.p[i];
            ok = name[2] == 'd' ? isdigit(c) : name[2] == 'a' ? isalpha(c) : py_space(c);
        }
        return *out = jv_bool(ok), true;
    }
    return false;
}

/* ---- globals ---------------------------------------------------------------------------- */

enum { G_RAISE, G_NAMESPACE, G_RANGE, G_STRFTIME_NOW, G_DICT };
static const char *const global_names[] = {"raise_exception", "namespace", "range",
                                           "strftime_now", "dict", NULL};

int jinja_builtin_lookup(const char *name)
{
    for (int i = 0; global_names[i]; i++)
        if (!strcmp(global_names[i], name)) return i;
    return -1;
}

struct jv jinja_builtin_call(struct jinja_env *env, int line, int id, const struct call_args *a)
{
    const struct jv *x = call_arg(a, 0, NULL);
    switch (id) {
    case G_RAISE: {
        struct sbuf b = {.limit = 4096};
        if (x) jv_write_str(env, &b, *x);
        env->status = KILN_EINVAL;
        jinja_fail(env, line, "%s", b.p ? b.p : "raise_exception called");
    }
    case G_NAMESPACE: case G_DICT: {
        struct jv d = jv_new_dict(env);
        if (x && x->type == JV_DICT)
            for (size_t i = 0; i < x->dict->n; i++) jv_dict_set(env, d.dict, x->dict->keys[i], x->dict->vals[i]);
        for (size_t k = 0; k < a->n_kw; k++)
            jv_dict_set(env, d.dict, jv_cstr(env, a->kwnames[k]), a->kw[k]);
        if (id == G_NAMESPACE) d.type = JV_NAMESPACE;
        return d;
    }
    case G_RANGE: {
        int64_t start = 0, stop, step = 1;
        for (size_t i = 0; i < a->n_pos; i++)
            if (a->pos[i].type != JV_INT) jinja_fail(env, line, "range needs integers");
        if (a->n_pos == 1) stop = a->pos[0].i;
        else if (a->n_pos >= 2) {
            start = a->pos[0].i;
            stop = a->pos[1].i;
            if (a->n_pos == 3) step = a->pos[2].i;
        } else
            jinja_fail(env, line, "range needs an argument");
        if (step == 0) jinja_fail(env, line, "range step cannot be zero");
        struct jv out = jv_new_list(env);
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
            if (out.list->n >= 100000) {
                env->status = KILN_ERANGE;
                jinja_fail(env, line, "range longer than 100000");
            }
            jv_list_push(env, out.list, jv_int(i));
        }
        return out;
    }
    case G_STRFTIME_NOW: {
        if (!x || x->type != JV_STRING) jinja_fail(env, line, "strftime_now needs a format");
        char buf[256];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t n = strftime(buf, sizeof buf, x->s.p, &tm);
        return jv_str(env, buf, n);
    }
    }
    jinja_fail(env, line, "unknown function");
}
