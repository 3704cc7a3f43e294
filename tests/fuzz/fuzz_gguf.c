/* libFuzzer target for the GGUF reader: any byte string must be parsed or refused with a
 * message, never crash, leak or read out of bounds. Metadata and tensors of accepted files
 * are walked to touch every parsed field. */
#include "gguf/gguf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy, so reading past the input is caught by ASan. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    struct gguf_file *g = NULL;
    struct kiln_err err;
    if (gguf_open_memory(buf, size, "fuzz.gguf", &g, &err) == KILN_OK) {
        volatile uint64_t sink = 0;
        for (uint64_t i = 0; i < g->n_kv; i++) {
            const struct gguf_value *v = gguf_get(g, g->kv[i].key);
            sink += v ? (uint64_t)v->type : 0;
            if (v && v->type == GGUF_STRING && v->s.len) sink += (uint8_t)v->s.ptr[v->s.len - 1];
        }
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const struct gguf_tensor *t = gguf_find_tensor(g, g->tensors[i].name);
            if (t && t->size) sink += ((const uint8_t *)t->data)[t->size - 1];
        }
        (void)sink;
        gguf_close(g);
    }
    free(buf);
    return 0;
}
