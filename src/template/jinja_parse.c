/* Jinja lexer and parser: template text to a tree of statements. Whitespace control is
 * applied while lexing, as jinja2 does with trim_blocks and lstrip_blocks on. */
#include "template/jinja_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

enum tok_type {
    T_TEXT,
    T_VAR_BEGIN,
    T_VAR_END,
    T_BLOCK_BEGIN,
    T_BLOCK_END,
    T_NAME,
    T_STRING,
    T_INT,
    T_FLOAT,
    T_OP, /* op holds one char; two-char operators use the codes of N_BINARY */
    T_EOF,
};

struct tok {
    enum tok_type type;
    int line;
    char op;
    const char *p; /* T_TEXT, T_NAME, T_STRING (decoded) */
    size_t n;
    int64_t i;
    double f;
};

struct lexer {
    struct jinja_env *env;
    const char *src;
    size_t len, pos;
    int line;
    struct tok *toks;
    size_t n, cap;
};

static struct tok *push_tok(struct lexer *lx, enum tok_type type)
{
    if (lx->n == lx->cap) {
        size_t cap = lx->cap ? 2 * lx->cap : 256;
        struct tok *t = jinja_alloc(lx->env, cap * sizeof *t);
        if (lx->n) memcpy(t, lx->toks, lx->n * sizeof *t);
        lx->toks = t;
        lx->cap = cap;
    }
    struct tok *t = &lx->toks[lx->n++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->line = lx->line;
    return t;
}

static void count_lines(struct lexer *lx, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (lx->src[i] == '\n') lx->line++;
}

/* Decodes a string literal's escapes as Python's unicode-escape does for the common ones;
 * an unknown escape keeps its backslash. */
static void decode_string(struct lexer *lx, struct tok *t, const char *p, size_t n)
{
    char *out = jinja_alloc(lx->env, n * 2 + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\\' || i + 1 == n) {
            *o++ = p[i];
            continue;
        }
        char c = p[++i];
        unsigned long cp;
        switch (c) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'v': *o++ = '\v'; break;
        case 'a': *o++ = '\a'; break;
        case '0': *o++ = '\0'; break;
        case '\\': case '\'': case '"': *o++ = c; break;
        case '\n': break; /* line continuation */
        case 'x': case 'u': {
            int digits = c == 'x' ? 2 : 4;
            char hex[5] = {0};
            if (i + (size_t)digits >= n) goto keep;
            memcpy(hex, p + i + 1, (size_t)digits);
            char *end;
            cp = strtoul(hex, &end, 16);
            if (*end) goto keep;
            i += (size_t)digits;
            if (cp < 0x80) *o++ = (char)cp;
            else if (cp < 0x800) {
                *o++ = (char)(0xc0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3f));
            } else {
                *o++ = (char)(0xe0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *o++ = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default:
        keep:
            *o++ = '\\';
            *o++ = c;
        }
    }
    *o = 0;
    t->p = out;
    t->n = (size_t)(o - out);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Lexes the inside of {{ }} or {% %} up to its closing tag. */
static void lex_tag(struct lexer *lx, bool is_var, bool *strip_after)
{
    int depth = 0;
    const char *s = lx->src;
    for (;;) {
        while (lx->pos < lx->len && is_ws(s[lx->pos])) {
            if (s[lx->pos] == '\n') lx->line++;
            lx->pos++;
        }
        if (lx->pos >= lx->len) jinja_fail(lx->env, lx->line, "unclosed tag at end of template");
        const char *p = s + lx->pos;
        size_t left = lx->len - lx->pos;
        char close = is_var ? '}' : '%';
        if (depth == 0) {
            if (left >= 3 && p[0] == '-' && p[1] == close && p[2] == '}') {
                lx->pos += 3;
                *strip_after = true;
                push_tok(lx, is_var ? T_VAR_END : T_BLOCK_END);
                return;
            }
            if (left >= 2 && p[0] == close && p[1] == '}') {
                lx->pos += 2;
                *strip_after = false;
                push_tok(lx, is_var ? T_VAR_END : T_BLOCK_END);
                return;
            }
        }
        if (isalpha((unsigned char)*p) || *p == '_') {
            size_t n = 1;
            while (n < left && (isalnum((unsigned char)p[n]) || p[n] == '_')) n++;
            struct tok *t = push_tok(lx, T_NAME);
            t->p = p;
            t->n = n;
            lx->pos += n;
        } else if (isdigit((unsigned char)*p)) {
            char *end;
            size_t n = 0;
            bool is_float = false;
            while (n < left && (isdigit((unsigned char)p[n]) || p[n] == '_')) n++;
            if (n + 1 < left && p[n] == '.' && isdigit((unsigned char)p[n + 1])) is_float = true;
            if (n < left && (p[n] == 'e' || p[n] == 'E')) is_float = true;
            struct tok *t = push_tok(lx, is_float ? T_FLOAT : T_INT);
            if (is_float) t->f = strtod(p, &end);
            else t->i = strtoll(p, &end, 10);
            lx->pos += (size_t)(end - p);
        } else if (*p == '\'' || *p == '"') {
            size_t n = 1;
            while (n < left && p[n] != *p) n += p[n] == '\\' ? 2 : 1;
            if (n >= left) jinja_fail(lx->env, lx->line, "unterminated string");
            struct tok *t = push_tok(lx, T_STRING);
            decode_string(lx, t, p + 1, n - 1);
            count_lines(lx, lx->pos, lx->pos + n);
            lx->pos += n + 1;
        } else {
            static const struct { const char *text; char code; } two[] = {
                {"==", '='}, {"!=", '!'}, {"<=", 'L'}, {">=", 'G'}, {"//", 'F'}, {"**", 'P'},
            };
            struct tok *t = push_tok(lx, T_OP);
            t->op = *p;
            size_t n = 1;
            for (size_t k = 0; k < sizeof two / sizeof two[0]; k++)
                if (left >= 2 && p[0] == two[k].text[0] && p[1] == two[k].text[1]) {
                    t->op = two[k].code;
                    n = 2;
                }
            if (n == 1 && (!*p || !strchr("+-*/%~<>=()[]{},.:|", *p)))
                jinja_fail(lx->env, lx->line, "unexpected character '%c'", *p);
            if (*p == '(' || *p == '[' || *p == '{') depth++;
            if ((*p == ')' || *p == ']' || *p == '}') && depth > 0) depth--;
            lx->pos += n;
        }
    }
}

static void lex(struct lexer *lx)
{
    const char *s = lx->src;
    bool strip_next = false, trim_newline = false;
    while (lx->pos < lx->len) {
        /* The text up to the next tag. */
        size_t start = lx->pos, end = start;
        while (end + 1 < lx->len && !(s[end] == '{' && s[end + 1] && strchr("{%#", s[end + 1])))
            end++;
        if (end + 1 >= lx->len) end = lx->len;
        size_t text_start = start, text_end = end;
        if (strip_next)
            while (text_start < text_end && is_ws(s[text_start])) text_start++;
        else if (trim_newline && text_start < text_end) {
            if (s[text_start] == '\n') text_start++;
            else if (s[text_start] == '\r' && text_start + 1 < text_end && s[text_start + 1] == '\n')
                text_start += 2;
        }
        char kind = end < lx->len ? s[end + 1] : 0;
        bool strip_before = end + 2 < lx->len && s[end + 2] == '-';
        bool keep_indent = end + 2 < lx->len && s[end + 2] == '+';
        if (strip_before)
            while (text_end > text_start && is_ws(s[text_end - 1])) text_end--;
        else if ((kind == '%' || kind == '#') && !keep_indent) {
            /* lstrip_blocks: a block tag alone at the start of its line takes the indent. */
            size_t k = text_end;
            while (k > start && (s[k - 1] == ' ' || s[k - 1] == '\t')) k--;
            if (k == 0 || s[k - 1] == '\n') {
                if (k >= text_start) text_end = k;
            }
        }
        if (text_end > text_start) {
            struct tok *t = push_tok(lx, T_TEXT);
            t->p = s + text_start;
            t->n = text_end - text_start;
        }
        count_lines(lx, start, end);
        lx->pos = end;
        strip_next = trim_newline = false;
        if (end >= lx->len) break;
        lx->pos += 2 + (strip_before || keep_indent);
        if (kind == '#') {
            const char *close = NULL;
            for (size_t k = lx->pos; k + 1 < lx->len; k++)
                if (s[k] == '#' && s[k + 1] == '}') {
                    close = s + k;
                    break;
                }
            if (!close) jinja_fail(lx->env, lx->line, "unclosed comment");
            size_t cend = (size_t)(close - s);
            strip_next = cend > lx->pos && s[cend - 1] == '-';
            trim_newline = !strip_next;
            count_lines(lx, lx->pos, cend);
            lx->pos = cend + 2;
            continue;
        }
        bool is_var = kind == '{';
        push_tok(lx, is_var ? T_VAR_BEGIN : T_BLOCK_BEGIN);
        bool strip_after = false;
        lex_tag(lx, is_var, &strip_after);
        strip_next = strip_after;
        trim_newline = !is_var && !strip_after;
    }
    push_tok(lx, T_EOF);
}

/* ---- parser ----------------------------------------------------------------------------- */

struct parser {
    struct jinja_env *env;
    struct tok *t;
    size_t pos;
    int depth;
};

static struct tok *peek(struct parser *ps) { return &ps->t[ps->pos]; }
static struct tok *next(struct parser *ps)
{
    struct tok *t = &ps->t[ps->pos];
    if (t->type != T_EOF) ps->pos++;
    return t;
}

static bool is_name(const struct tok *t, const char *name)
{
    return t->type == T_NAME && strlen(name) == t->n && !memcmp(t->p, name, t->n);
}
static bool is_op(const struct tok *t, char op) { return t->type == T_OP && t->op == op; }

static void expect_op(struct parser *ps, char op)
{
    struct tok *t = next(ps);
    if (!is_op(t, op)) jinja_fail(ps->env, t->line, "expected '%c'", op);
}

static const char *tok_name(struct parser *ps, struct tok *t)
{
    if (t->type != T_NAME) jinja_fail(ps->env, t->line, "expected a name");
    char *s = jinja_alloc(ps->env, t->n + 1);
    memcpy(s, t->p, t->n);
    s[t->n] = 0;
    return s;
}

static struct node *new_node(struct parser *ps, enum node_kind kind, int line)
{
    struct node *n = jinja_alloc(ps->env, sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = line;
    return n;
}

/* A growable array of node pointers. */
struct nodes {
    struct node **v;
    size_t n, cap;
};
static void nodes_push(struct parser *ps, struct nodes *a, struct node *x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 8;
        struct node **v = jinja_alloc(ps->env, cap * sizeof *v);
        if (a->n) memcpy(v, a->v, a->n * sizeof *v);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

static struct node *parse_expr(struct parser *ps);
static struct node *parse_or(struct parser *ps);
static struct node *parse_unary(struct parser *ps, bool with_filter);

/* (args, name=value, ...) after the opening parenthesis. */
static void parse_call_args(struct parser *ps, struct node *call)
{
    struct nodes args = {0}, kwargs = {0};
    const char **names = NULL;
    size_t n_names = 0;
    while (!is_op(peek(ps), ')')) {
        if (args.n + kwargs.n) expect_op(ps, ',');
        if (is_op(peek(ps), ')')) break; /* trailing comma */
        struct tok *t = peek(ps);
        if (t->type == T_NAME && is_op(&ps->t[ps->pos + 1], '=')) {
            next(ps); /* the name, then = */
            next(ps);
            const char **nn = jinja_alloc(ps->env, (n_names + 1) * sizeof *nn);
            if (n_names) memcpy(nn, names, n_names * sizeof *nn);
            nn[n_names++] = tok_name(ps, t);
            names = nn;
            nodes_push(ps, &kwargs, parse_expr(ps));
        } else {
            if (kwargs.n) jinja_fail(ps->env, t->line, "positional argument after keyword");
            nodes_push(ps, &args, parse_expr(ps));
        }
    }
    expect_op(ps, ')');
    call->args = args.v;
    call->n_args = args.n;
    call->kwargs = kwargs.v;
    call->kwnames = names;
    call->n_kwargs = kwargs.n;
}

static struct node *parse_primary(struct parser *ps)
{
    struct tok *t = next(ps);
    struct node *n;
    switch (t->type) {
    case T_STRING: {
        n = new_node(ps, N_LITERAL, t->line);
        n->value = (struct jv){.type = JV_STRING, .s = {t->p, t->n}};
        /* Adjacent string literals concatenate, as in Python. */
        while (peek(ps)->type == T_STRING) {
            struct tok *u = next(ps);
            struct sbuf b = {.limit = (size_t)-1};
            sbuf_put(ps->env, &b, n->value.s.p, n->value.s.n);
            sbuf_put(ps->env, &b, u->p, u->n);
            n->value.s.p = b.p;
            n->value.s.n = b.n;
        }
        return n;
    }
    case T_INT:
        n = new_node(ps, N_LITERAL, t->line);
        n->value = jv_int(t->i);
        return n;
    case T_FLOAT:
        n = new_node(ps, N_LITERAL, t->line);
        n->value = jv_float(t->f);
        return n;
    case T_NAME:
        n = new_node(ps, N_LITERAL, t->line);
        if (is_name(t, "true") || is_name(t, "True")) n->value = jv_bool(true);
        else if (is_name(t, "false") || is_name(t, "False")) n->value = jv_bool(false);
        else if (is_name(t, "none") || is_name(t, "None")) n->value = jv_none();
        else {
            n->kind = N_NAME;
            n->name = tok_name(ps, t);
        }
        return n;
    case T_OP:
        if (t->op == '(') {
            struct node *inner = parse_expr(ps);
            if (is_op(peek(ps), ',')) { /* a tuple: treated as a list */
                struct nodes items = {0};
                nodes_push(ps, &items, inner);
                while (is_op(peek(ps), ',')) {
                    next(ps);
                    if (is_op(peek(ps), ')')) break;
                    nodes_push(ps, &items, parse_expr(ps));
                }
                inner = new_node(ps, N_LIST, t->line);
                inner->args = items.v;
                inner->n_args = items.n;
            }
            expect_op(ps, ')');
            return inner;
        }
        if (t->op == '[' || t->op == '{') {
            bool is_list = t->op == '[';
            char close = is_list ? ']' : '}';
            n = new_node(ps, is_list ? N_LIST : N_DICT, t->line);
            struct nodes items = {0};
            while (!is_op(peek(ps), close)) {
                if (items.n) expect_op(ps, ',');
                if (is_op(peek(ps), close)) break;
                nodes_push(ps, &items, parse_expr(ps));
                if (!is_list) {
                    expect_op(ps, ':');
                    nodes_push(ps, &items, parse_expr(ps));
                }
            }
            expect_op(ps, close);
            n->args = items.v;
            n->n_args = items.n;
            return n;
        }
        break;
    default: break;
    }
    jinja_fail(ps->env, t->line, "unexpected %s in expression",
               t->type == T_VAR_END || t->type == T_BLOCK_END ? "end of tag" : "token");
}

static struct node *parse_postfix(struct parser *ps, struct node *n)
{
    for (;;) {
        struct tok *t = peek(ps);
        if (is_op(t, '.')) {
            next(ps);
            struct tok *name = next(ps);
            struct node *a = new_node(ps, N_ATTR, t->line);
            a->a = n;
            if (name->type == T_INT) { /* x.0 indexes */
                a->kind = N_INDEX;
                a->b = new_node(ps, N_LITERAL, t->line);
                a->b->value = jv_int(name->i);
            } else
                a->name = tok_name(ps, name);
            n = a;
        } else if (is_op(t, '[')) {
            next(ps);
            struct node *idx = new_node(ps, N_INDEX, t->line);
            idx->a = n;
            struct node *parts[3] = {NULL, NULL, NULL};
            int colons = 0;
            while (!is_op(peek(ps), ']')) {
                if (is_op(peek(ps), ':')) {
                    next(ps);
                    if (++colons > 2) jinja_fail(ps->env, t->line, "bad slice");
                    continue;
                }
                if (parts[colons]) jinja_fail(ps->env, t->line, "bad subscript");
                parts[colons] = parse_expr(ps);
            }
            expect_op(ps, ']');
            if (colons) {
                idx->kind = N_SLICE;
                idx->b = parts[0];
                idx->c = parts[1];
                idx->args = jinja_alloc(ps->env, sizeof *idx->args);
                idx->args[0] = parts[2];
                idx->n_args = 1;
            } else {
                if (!parts[0]) jinja_fail(ps->env, t->line, "empty subscript");
                idx->b = parts[0];
            }
            n = idx;
        } else if (is_op(t, '(')) {
            next(ps);
            struct node *call = new_node(ps, N_CALL, t->line);
            call->a = n;
            parse_call_args(ps, call);
            n = call;
        } else
            return n;
    }
}

/* name or dotted name, then optional (args) */
static struct node *parse_filter(struct parser *ps, struct node *operand, int line)
{
    struct node *f = new_node(ps, N_FILTER, line);
    f->a = operand;
    f->name = tok_name(ps, next(ps));
    if (is_op(peek(ps), '(')) {
        next(ps);
        parse_call_args(ps, f);
    }
    return f;
}

static struct node *parse_filter_expr(struct parser *ps, struct node *n)
{
    for (;;) {
        struct tok *t = peek(ps);
        if (is_op(t, '|')) {
            next(ps);
            n = parse_filter(ps, n, t->line);
        } else if (is_name(t, "is")) {
            next(ps);
            struct node *test = new_node(ps, N_TEST, t->line);
            test->a = n;
            if (is_name(peek(ps), "not")) {
                next(ps);
                test->negate = true;
            }
            struct tok *name = next(ps);
            /* `is none` / `is true`: the literal names are tests here */
            test->name = tok_name(ps, name);
            struct tok *u = peek(ps);
            if (is_op(u, '(')) {
                next(ps);
                parse_call_args(ps, test);
            } else if ((u->type == T_STRING || u->type == T_INT || u->type == T_FLOAT ||
                        (u->type == T_NAME && !is_name(u, "else") && !is_name(u, "and") &&
                         !is_name(u, "or") && !is_name(u, "if") && !is_name(u, "is") &&
                         !is_name(u, "in") && !is_name(u, "not")))) {
                /* a single argument without parentheses: `is sameas false` */
                test->args = jinja_alloc(ps->env, sizeof *test->args);
                test->args[0] = parse_unary(ps, false);
                test->n_args = 1;
            }
            n = test;
        } else if (is_op(t, '(')) {
            next(ps);
            struct node *call = new_node(ps, N_CALL, t->line);
            call->a = n;
            parse_call_args(ps, call);
            n = call;
        } else
            return n;
    }
}

static struct node *parse_unary(struct parser *ps, bool with_filter)
{
    struct tok *t = peek(ps);
    if (++ps->depth > 200) jinja_fail(ps->env, t->line, "expression nested too deeply");
    struct node *n;
    if (is_op(t, '-') || is_op(t, '+')) {
        next(ps);
        n = new_node(ps, N_UNARY, t->line);
        n->op = t->op;
        n->a = parse_unary(ps, false);
    } else
        n = parse_postfix(ps, parse_primary(ps));
    if (with_filter) n = parse_filter_expr(ps, n);
    ps->depth--;
    return n;
}

static struct node *binary(struct parser *ps, char op, struct node *a, struct node *b, int line)
{
    struct node *n = new_node(ps, N_BINARY, line);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static struct node *parse_pow(struct parser *ps)
{
    struct node *n = parse_unary(ps, true);
    while (is_op(peek(ps), 'P')) {
        int line = next(ps)->line;
        n = binary(ps, 'P', n, parse_unary(ps, true), line);
    }
    return n;
}

static struct node *parse_math2(struct parser *ps)
{
    struct node *n = parse_pow(ps);
    for (;;) {
        struct tok *t = peek(ps);
        if (!(is_op(t, '*') || is_op(t, '/') || is_op(t, 'F') || is_op(t, '%'))) return n;
        next(ps);
        n = binary(ps, t->op, n, parse_pow(ps), t->line);
    }
}

static struct node *parse_concat(struct parser *ps)
{
    struct node *n = parse_math2(ps);
    while (is_op(peek(ps), '~')) {
        int line = next(ps)->line;
        n = binary(ps, '~', n, parse_math2(ps), line);
    }
    return n;
}

static struct node *parse_math1(struct parser *ps)
{
    struct node *n = parse_concat(ps);
    for (;;) {
        struct tok *t = peek(ps);
        if (!(is_op(t, '+') || is_op(t, '-'))) return n;
        next(ps);
        n = binary(ps, t->op, n, parse_concat(ps), t->line);
    }
}

static struct node *parse_compare(struct parser *ps)
{
    struct node *n = parse_math1(ps);
    for (;;) {
        struct tok *t = peek(ps);
        char op = 0;
        if (t->type == T_OP && strchr("=!<>LG", t->op)) op = t->op;
        else if (is_name(t, "in")) op = 'i';
        else if (is_name(t, "not") && is_name(&ps->t[ps->pos + 1], "in")) {
            next(ps);
            op = 'I';
        } else
            return n;
        next(ps);
        n = binary(ps, op, n, parse_math1(ps), t->line);
    }
}

static struct node *parse_not(struct parser *ps)
{
    struct tok *t = peek(ps);
    if (is_name(t, "not")) {
        next(ps);
        struct node *n = new_node(ps, N_UNARY, t->line);
        n->op = 'n';
        n->a = parse_not(ps);
        return n;
    }
    return parse_compare(ps);
}

static struct node *parse_and(struct parser *ps)
{
    struct node *n = parse_not(ps);
    while (is_name(peek(ps), "and")) {
        int line = next(ps)->line;
        n = binary(ps, '&', n, parse_not(ps), line);
    }
    return n;
}

static struct node *parse_or(struct parser *ps)
{
    struct node *n = parse_and(ps);
    while (is_name(peek(ps), "or")) {
        int line = next(ps)->line;
        n = binary(ps, '|', n, parse_and(ps), line);
    }
    return n;
}

static struct node *parse_expr(struct parser *ps)
{
    struct node *n = parse_or(ps);
    while (is_name(peek(ps), "if")) {
        struct tok *t = next(ps);
        struct node *c = new_node(ps, N_COND, t->line);
        c->b = n;
        c->a = parse_or(ps);
        if (is_name(peek(ps), "else")) {
            next(ps);
            c->c = parse_expr(ps);
        }
        n = c;
    }
    return n;
}

/* ---- statements ------------------------------------------------------------------------- */

static void expect_block_end(struct parser *ps)
{
    struct tok *t = next(ps);
    if (t->type != T_BLOCK_END) jinja_fail(ps->env, t->line, "expected end of tag");
}

/* Consumes a closing or continuing tag with no arguments: {% keyword %}. */
static void end_tag(struct parser *ps)
{
    next(ps); /* {% */
    next(ps); /* the keyword */
    expect_block_end(ps);
}

/* Parses statements until a block tag whose keyword is one of ends (NULL-terminated);
 * leaves that keyword as the next token and returns its index in *which. */
static struct node **parse_body(struct parser *ps, const char *const *ends, size_t *n_out,
                                int *which);

static bool at_keyword(struct parser *ps, const char *const *ends, int *which)
{
    if (peek(ps)->type != T_BLOCK_BEGIN) return false;
    struct tok *kw = &ps->t[ps->pos + 1];
    for (int i = 0; ends && ends[i]; i++)
        if (is_name(kw, ends[i])) {
            *which = i;
            return true;
        }
    return false;
}

/* Targets of for / set: a name, names separated by commas, or ns.attr. */
static struct node **parse_targets(struct parser *ps, size_t *n, bool allow_attr)
{
    struct nodes v = {0};
    do {
        if (v.n) next(ps); /* the comma */
        struct tok *t = next(ps);
        struct node *target = new_node(ps, N_NAME, t->line);
        target->name = tok_name(ps, t);
        if (allow_attr && is_op(peek(ps), '.')) {
            next(ps);
            struct node *attr = new_node(ps, N_ATTR, t->line);
            attr->a = target;
            attr->name = tok_name(ps, next(ps));
            target = attr;
        }
        nodes_push(ps, &v, target);
    } while (is_op(peek(ps), ','));
    *n = v.n;
    return v.v;
}

/* The statements up to {% end %}, which it consumes. */
static struct node **block_until(struct parser *ps, const char *end, size_t *n_out)
{
    const char *const ends[] = {end, NULL};
    int which;
    struct node **body = parse_body(ps, ends, n_out, &which);
    end_tag(ps);
    return body;
}

static struct node *parse_statement(struct parser *ps)
{
    struct tok *begin = next(ps); /* T_BLOCK_BEGIN */
    struct tok *kw = next(ps);
    int line = begin->line, which;
    struct node *n;
    if (is_name(kw, "if")) {
        n = new_node(ps, N_IF, line);
        n->a = parse_expr(ps);
        expect_block_end(ps);
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        n->body = parse_body(ps, ends, &n->n_body, &which);
        struct node *cur = n;
        while (which == 0) { /* elif: a nested if in the else branch */
            next(ps);
            int l = next(ps)->line;
            struct node *elif = new_node(ps, N_IF, l);
            elif->a = parse_expr(ps);
            expect_block_end(ps);
            elif->body = parse_body(ps, ends, &elif->n_body, &which);
            cur->orelse = jinja_alloc(ps->env, sizeof *cur->orelse);
            cur->orelse[0] = elif;
            cur->n_orelse = 1;
            cur = elif;
        }
        end_tag(ps); /* else or endif */
        if (which == 1) cur->orelse = block_until(ps, "endif", &cur->n_orelse);
        return n;
    }
    if (is_name(kw, "for")) {
        n = new_node(ps, N_FOR, line);
        n->args = parse_targets(ps, &n->n_args, false);
        if (!is_name(next(ps), "in")) jinja_fail(ps->env, line, "expected 'in' in for");
        n->a = parse_or(ps); /* not parse_expr: `if` here is the loop filter */
        if (is_name(peek(ps), "if")) {
            next(ps);
            n->b = parse_or(ps);
        }
        if (is_name(peek(ps), "recursive")) jinja_fail(ps->env, line, "recursive loops are not supported");
        expect_block_end(ps);
        static const char *const ends[] = {"else", "endfor", NULL};
        n->body = parse_body(ps, ends, &n->n_body, &which);
        end_tag(ps); /* else or endfor */
        if (which == 0) n->orelse = block_until(ps, "endfor", &n->n_orelse);
        return n;
    }
    if (is_name(kw, "set")) {
        n = new_node(ps, N_SET, line);
        n->args = parse_targets(ps, &n->n_args, true);
        if (is_op(peek(ps), '=')) {
            next(ps);
            n->a = parse_expr(ps);
            if (is_op(peek(ps), ',')) { /* set a, b = 1, 2 */
                struct node *list = new_node(ps, N_LIST, line);
                struct nodes items = {0};
                nodes_push(ps, &items, n->a);
                while (is_op(peek(ps), ',')) {
                    next(ps);
                    nodes_push(ps, &items, parse_expr(ps));
                }
                list->args = items.v;
                list->n_args = items.n;
                n->a = list;
            }
            expect_block_end(ps);
            return n;
        }
        /* block set: {% set x %}...{% endset %} */
        expect_block_end(ps);
        n->body = block_until(ps, "endset", &n->n_body);
        return n;
    }
    if (is_name(kw, "macro")) {
        n = new_node(ps, N_MACRO, line);
        n->name = tok_name(ps, next(ps));
        expect_op(ps, '(');
        struct nodes defaults = {0};
        const char **names = NULL;
        size_t count = 0;
        while (!is_op(peek(ps), ')')) {
            if (count) expect_op(ps, ',');
            const char **nn = jinja_alloc(ps->env, (count + 1) * sizeof *nn);
            if (count) memcpy(nn, names, count * sizeof *nn);
            nn[count] = tok_name(ps, next(ps));
            names = nn;
            struct node *def = NULL;
            if (is_op(peek(ps), '=')) {
                next(ps);
                def = parse_expr(ps);
            }
            nodes_push(ps, &defaults, def);
            count++;
        }
        expect_op(ps, ')');
        expect_block_end(ps);
        n->kwnames = names;
        n->args = defaults.v;
        n->n_args = count;
        n->body = block_until(ps, "endmacro", &n->n_body);
        return n;
    }
    if (is_name(kw, "filter")) {
        n = new_node(ps, N_FILTER_BLOCK, line);
        n->a = parse_filter(ps, NULL, line);
        expect_block_end(ps);
        n->body = block_until(ps, "endfilter", &n->n_body);
        return n;
    }
    if (is_name(kw, "generation")) { /* HF's assistant-mask marker: renders its body */
        expect_block_end(ps);
        n = new_node(ps, N_IF, line);
        n->a = new_node(ps, N_LITERAL, line);
        n->a->value = jv_bool(true);
        n->body = block_until(ps, "endgeneration", &n->n_body);
        return n;
    }
    if (is_name(kw, "break") || is_name(kw, "continue")) {
        n = new_node(ps, is_name(kw, "break") ? N_BREAK : N_CONTINUE, line);
        expect_block_end(ps);
        return n;
    }
    if (kw->type == T_NAME)
        jinja_fail(ps->env, line, "unknown or misplaced tag '%.*s'", (int)kw->n, kw->p);
    jinja_fail(ps->env, line, "expected a tag name");
}

static struct node **parse_body(struct parser *ps, const char *const *ends, size_t *n_out,
                                int *which)
{
    struct nodes body = {0};
    *which = -1;
    if (++ps->depth > 200) jinja_fail(ps->env, peek(ps)->line, "blocks nested too deeply");
    for (;;) {
        struct tok *t = peek(ps);
        if (t->type == T_EOF) {
            if (ends) { /* the closing tag is the last of the terminators */
                int last = 0;
                while (ends[last + 1]) last++;
                jinja_fail(ps->env, t->line, "missing {%% %s %%}", ends[last]);
            }
            break;
        }
        if (at_keyword(ps, ends, which)) break;
        if (t->type == T_TEXT) {
            next(ps);
            struct node *n = new_node(ps, N_TEXT, t->line);
            n->value = (struct jv){.type = JV_STRING, .s = {t->p, t->n}};
            nodes_push(ps, &body, n);
        } else if (t->type == T_VAR_BEGIN) {
            next(ps);
            struct node *n = new_node(ps, N_OUTPUT, t->line);
            n->a = parse_expr(ps);
            struct tok *end = next(ps);
            if (end->type != T_VAR_END) jinja_fail(ps->env, end->line, "expected '}}'");
            nodes_push(ps, &body, n);
        } else if (t->type == T_BLOCK_BEGIN)
            nodes_push(ps, &body, parse_statement(ps));
        else
            jinja_fail(ps->env, t->line, "unexpected token");
    }
    ps->depth--;
    *n_out = body.n;
    return body.v;
}

struct node **jinja_parse(struct jinja_env *env, const char *src, size_t len, size_t *n_out)
{
    struct lexer lx = {.env = env, .src = src, .len = len, .line = 1};
    lex(&lx);
    struct parser ps = {.env = env, .t = lx.toks};
    int which;
    return parse_body(&ps, NULL, n_out, &which);
}
