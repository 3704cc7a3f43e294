/* Open-addressing string map with linear probing.
 * Contract: src/base/strmap.h. */
#include "base/strmap.h"

#include "base/hash.h"

#include <stdlib.h>
#include <string.h>

bool strmap_init(struct strmap *m, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 1) cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->cap = m->slots ? cap : 0;
    m->count = 0;
    return m->slots != NULL;
}

void strmap_free(struct strmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

static size_t find_slot(const struct strmap *m, const char *key, size_t len)
{
    size_t mask = m->cap - 1;
    size_t i = hash_bytes(key, len) & mask;
    while (m->slots[i].key &&
           !(m->slots[i].len == len && memcmp(m->slots[i].key, key, len) == 0))
        i = (i + 1) & mask;
    return i;
}

bool strmap_put(struct strmap *m, const char *key, size_t len, int32_t value)
{
    if (!m->cap || 2 * (m->count + 1) > m->cap || len > UINT32_MAX) return false;
    size_t i = find_slot(m, key, len);
    if (m->slots[i].key) return false;
    m->slots[i] = (struct strmap_slot){key, (uint32_t)len, value};
    m->count++;
    return true;
}

int32_t strmap_get(const struct strmap *m, const char *key, size_t len)
{
    if (!m->cap) return -1;
    size_t i = find_slot(m, key, len);
    return m->slots[i].key ? m->slots[i].value : -1;
}
