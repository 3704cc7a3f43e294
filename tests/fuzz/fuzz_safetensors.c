/* libFuzzer target for the safetensors reader: any byte string must be parsed or refused with
 * a message, never crash, leak or read out of bounds. The last byte of every accepted tensor
 * is read, so a wrong range shows up under ASan. */
#include "safetensors/safetensors.h"

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
    struct st_file *f = NULL;
    struct kiln_err err;
    if (st_open_memory(buf, size, "fuzz.safetensors", &f, &err) == KILN_OK) {
        volatile uint64_t sink = 0;
        for (uint64_t i = 0; i < f->n_tensors; i++) {
            const struct st_tensor *t = st_find(f, f->tensors[i].name);
            if (t && t->end > t->begin) sink += ((const uint8_t *)t->data)[t->end - t->begin - 1];
        }
        (void)sink;
        st_close(f);
    }
    free(buf);
    return 0;
}
