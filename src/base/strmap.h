/* A build-once hash map from byte strings to int32 values (open addressing).
 * The map does not copy keys: they must outlive it. Any thread may read a built map.
 * Contract for src/base/strmap.c. */
#ifndef KILN_BASE_STRMAP_H
#define KILN_BASE_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strmap_slot {
    const char *key;
    uint32_t len;
    int32_t value;
};

struct strmap {
    struct strmap_slot *slots; /* [cap], key NULL when empty */
    size_t cap;                /* power of two, at least twice the entries */
    size_t count;
};

/* Sizes the map for up to n entries. Returns false when out of memory. */
bool strmap_init(struct strmap *m, size_t n);
void strmap_free(struct strmap *m);
/* Inserts key -> value; returns false when the key is already present (value unchanged)
 * or the map is full. */
bool strmap_put(struct strmap *m, const char *key, size_t len, int32_t value);
/* The value for key, or -1 when absent. */
int32_t strmap_get(const struct strmap *m, const char *key, size_t len);

#endif
