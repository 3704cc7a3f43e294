/* Paged KV cache: block allocator, reference counts, prefix cache with LRU eviction.
 * Contract: src/engine/kv_cache.h. */
#include "engine/kv_cache.h"

#include "base/status.h"

#include <stdlib.h>
#include <string.h>

struct kv_block_info {
    bool cached;              /* in the hash table */
    uint64_t hash, parent;
    int32_t tokens[KV_BLOCK_SIZE];
    int32_t next_in_bucket;
    int32_t lru_prev, lru_next; /* while evictable */
};

kiln_status kv_cache_init(struct kv_cache *c, const struct model *m, enum dtype type,
                          int n_blocks, bool prefix_caching, struct kiln_err *err)
{
    memset(c, 0, sizeof *c);
    if (n_blocks < 1) return kiln_fail(err, KILN_EINVAL, "the KV cache needs at least one block");
    kiln_status st = kv_store_init(&c->store, m, type, n_blocks, err);
    if (st != KILN_OK) return st;
    c->n_blocks = n_blocks;
    c->prefix_caching = prefix_caching;
    c->n_buckets = 1;
    while (c->n_buckets < 2 * n_blocks) c->n_buckets *= 2;
    c->refs = calloc((size_t)n_blocks, sizeof *c->refs);
    c->info = calloc((size_t)n_blocks, sizeof *c->info);
    c->free_list = malloc((size_t)n_blocks * sizeof *c->free_list);
    c->buckets = malloc((size_t)c->n_buckets * sizeof *c->buckets);
    if (!c->refs || !c->info || !c->free_list || !c->buckets) {
        kv_cache_free(c);
        return kiln_fail(err, KILN_ENOMEM, "out of memory for the KV cache's tables");
    }
    /* hand out low block numbers first (the stack pops from the end) */
    for (int i = 0; i < n_blocks; i++) c->free_list[i] = n_blocks - 1 - i;
    c->n_free = n_blocks;
    for (int i = 0; i < c->n_buckets; i++) c->buckets[i] = -1;
    c->lru_head = c->lru_tail = -1;
    return KILN_OK;
}

void kv_cache_free(struct kv_cache *c)
{
    kv_store_free(&c->store);
    free(c->refs);
    free(c->info);
    free(c->free_list);
    free(c->buckets);
    memset(c, 0, sizeof *c);
}

static void lru_remove(struct kv_cache *c, int32_t b)
{
    struct kv_block_info *i = &c->info[b];
    if (i->lru_prev >= 0) c->info[i->lru_prev].lru_next = i->lru_next;
    else c->lru_head = i->lru_next;
    if (i->lru_next >= 0) c->info[i->lru_next].lru_prev = i->lru_prev;
    else c->lru_tail = i->lru_prev;
    c->n_evictable--;
}

static void lru_push(struct kv_cache *c, int32_t b)
{
    struct kv_block_info *i = &c->info[b];
    i->lru_prev = c->lru_tail;
    i->lru_next = -1;
    if (c->lru_tail >= 0) c->info[c->lru_tail].lru_next = b;
    else c->lru_head = b;
    c->lru_tail = b;
    c->n_evictable++;
}

static int32_t *bucket_of(struct kv_cache *c, uint64_t hash)
{
    return &c->buckets[hash & (uint64_t)(c->n_buckets - 1)];
}

static void uncache(struct kv_cache *c, int32_t b)
{
    for (int32_t *p = bucket_of(c, c->info[b].hash); *p >= 0; p = &c->info[*p].next_in_bucket)
        if (*p == b) {
            *p = c->info[b].next_in_bucket;
            break;
        }
    c->info[b].cached = false;
}

int32_t kv_alloc(struct kv_cache *c)
{
    int32_t b;
    if (c->n_free > 0)
        b = c->free_list[--c->n_free];
    else if (c->lru_head >= 0) {
        b = c->lru_head;
        lru_remove(c, b);
        uncache(c, b);
        c->evictions++;
    } else
        return -1;
    c->refs[b] = 1;
    return b;
}

void kv_release(struct kv_cache *c, int32_t b)
{
    if (--c->refs[b] > 0) return;
    if (c->info[b].cached) lru_push(c, b);
    else c->free_list[c->n_free++] = b;
}

int kv_available(const struct kv_cache *c)
{
    return c->n_free + c->n_evictable;
}

uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens)
{
    /* FNV-1a over the parent key and the ids, then a final mix */
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 8; i++) h = (h ^ ((parent >> (8 * i)) & 0xff)) * 0x100000001b3ull;
    for (int t = 0; t < KV_BLOCK_SIZE; t++)
        for (int i = 0; i < 4; i++)
            h = (h ^ (((uint32_t)tokens[t] >> (8 * i)) & 0xff)) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

int32_t kv_lookup(struct kv_cache *c, uint64_t hash, uint64_t parent, const int32_t *tokens)
{
    if (!c->prefix_caching) return -1;
    c->queries++;
    for (int32_t b = *bucket_of(c, hash); b >= 0; b = c->info[b].next_in_bucket) {
        struct kv_block_info *i = &c->info[b];
        if (i->hash != hash || i->parent != parent ||
            memcmp(i->tokens, tokens, sizeof i->tokens) != 0)
            continue;
        if (c->refs[b]++ == 0) lru_remove(c, b);
        c->hits++;
        return b;
    }
    return -1;
}

void kv_register(struct kv_cache *c, int32_t b, uint64_t hash, uint64_t parent,
                 const int32_t *tokens)
{
    if (!c->prefix_caching || c->info[b].cached) return;
    int32_t *head = bucket_of(c, hash);
    for (int32_t x = *head; x >= 0; x = c->info[x].next_in_bucket)
        if (c->info[x].hash == hash) return; /* one block per key: the first stays */
    struct kv_block_info *i = &c->info[b];
    i->cached = true;
    i->hash = hash;
    i->parent = parent;
    memcpy(i->tokens, tokens, sizeof i->tokens);
    i->next_in_bucket = *head;
    *head = b;
}
