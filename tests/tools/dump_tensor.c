/* dump_tensor FILE.gguf OUT.f32 [NAME...]: writes kiln's scalar dequantization of the named
 * tensors (all when none are named) to OUT.f32 as raw little-endian floats, one tensor
 * after another in the order given, so a test can compare them with another reader's. */
#include "gguf/gguf.h"
#include "tensor/quant.h"

#include <stdio.h>
#include <stdlib.h>

static int dump(const struct gguf_tensor *t, FILE *out)
{
    int64_t ne0 = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    uint64_t row_bytes;
    float *row = malloc((size_t)ne0 * sizeof *row);
    if (!row || !dtype_row_bytes(t->type, (uint64_t)ne0, &row_bytes)) return 1;
    for (int64_t r = 0; r < rows; r++) {
        if (!dequantize_row(t->type, row, (const uint8_t *)t->data + r * row_bytes, ne0)) {
            fprintf(stderr, "dump_tensor: %s: no dequantization for %s\n", t->name,
                    dtype_get(t->type)->name);
            return 1;
        }
        if (fwrite(row, sizeof *row, (size_t)ne0, out) != (size_t)ne0) return 1;
    }
    free(row);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: dump_tensor FILE.gguf OUT.f32 [NAME...]\n");
        return 2;
    }
    struct gguf_file *g;
    struct kiln_err err = {{0}};
    if (gguf_open(argv[1], &g, &err) != KILN_OK) {
        fprintf(stderr, "dump_tensor: %s\n", err.msg);
        return 1;
    }
    FILE *out = fopen(argv[2], "wb");
    int rc = out ? 0 : 1;
    if (argc == 3)
        for (uint64_t i = 0; i < g->n_tensors && rc == 0; i++) rc = dump(&g->tensors[i], out);
    for (int a = 3; a < argc && rc == 0; a++) {
        const struct gguf_tensor *t = gguf_find_tensor(g, argv[a]);
        if (!t) fprintf(stderr, "dump_tensor: no tensor %s\n", argv[a]);
        rc = t ? dump(t, out) : 1;
    }
    if (out && fclose(out) != 0) rc = 1;
    gguf_close(g);
    return rc;
}
