/* `kiln info MODEL.gguf`: prints the metadata and the tensor table of a GGUF file.
 * Contract: src/cli/cli.h. */
#include "cli.h"

#include "gguf/gguf.h"

#include <stdio.h>

static void print_str(const struct gguf_str *s, size_t max)
{
    putchar('"');
    for (size_t i = 0; i < s->len && i < max; i++) {
        unsigned char c = (unsigned char)s->ptr[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\x%02x", c);
        else putchar(c);
    }
    if (s->len > max) fputs("...", stdout);
    putchar('"');
}

static void print_value(const struct gguf_value *v)
{
    int64_t i;
    double f;
    switch (v->type) {
    case GGUF_STRING: print_str(&v->s, 120); break;
    case GGUF_BOOL: fputs(v->u ? "true" : "false", stdout); break;
    case GGUF_F32: case GGUF_F64: printf("%g", v->f); break;
    case GGUF_ARRAY:
        printf("[%s x %llu]", gguf_type_name(v->arr.type), (unsigned long long)v->arr.n);
        for (uint64_t k = 0; k < v->arr.n && k < 5; k++) {
            fputs(k ? ", " : " ", stdout);
            if (v->arr.items) print_value(&v->arr.items[k]);
            else if (gguf_array_int(v, k, &i)) printf("%lld", (long long)i);
            else if (gguf_array_float(v, k, &f)) printf("%g", f);
        }
        if (v->arr.n > 5) fputs(", ...", stdout);
        break;
    default:
        if (gguf_value_int(v, &i)) printf("%lld", (long long)i);
        else printf("%llu", (unsigned long long)v->u);
    }
}

int cmd_info(struct cli_opts *o)
{
    const char *path = o->n_positional ? o->positional[0] : o->model_path;
    if (!path) {
        fprintf(stderr, "usage: kiln info MODEL.gguf\n");
        return 2;
    }
    struct gguf_file *g = NULL;
    struct kiln_err err = {{0}};
    if (gguf_open(path, &g, &err) != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err.msg);
        return 1;
    }
    printf("%s: GGUF v%u, %llu metadata keys, %llu tensors, alignment %llu\n\n", path, g->version,
           (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors,
           (unsigned long long)g->alignment);
    for (uint64_t k = 0; k < g->n_kv; k++) {
        printf("%-44s %-7s ", g->kv[k].key, gguf_type_name(g->kv[k].value.type));
        print_value(&g->kv[k].value);
        putchar('\n');
    }
    printf("\n%-40s %-6s %-28s %12s\n", "tensor", "type", "shape", "bytes");
    uint64_t total = 0;
    for (uint64_t t = 0; t < g->n_tensors; t++) {
        const struct gguf_tensor *x = &g->tensors[t];
        char shape[64];
        int n = snprintf(shape, sizeof shape, "[%lld", (long long)x->ne[0]);
        for (int d = 1; d < x->n_dims; d++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, ", %lld", (long long)x->ne[d]);
        snprintf(shape + n, sizeof shape - (size_t)n, "]");
        printf("%-40s %-6s %-28s %12llu\n", x->name, dtype_get(x->type)->name, shape,
               (unsigned long long)x->size);
        total += x->size;
    }
    printf("\n%llu tensors, %.1f MiB of weights\n", (unsigned long long)g->n_tensors,
           (double)total / (1 << 20));
    gguf_close(g);
    return 0;
}
