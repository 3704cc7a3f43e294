/* The paged KV cache: a fixed pool of blocks (KV_BLOCK_SIZE tokens each), handed to
 * sequences by reference count, and a prefix cache that lets sequences share full blocks
 * whose contents they would compute identically.
 *
 * A full block is keyed by hash(parent block's key, its token ids); a lookup must also match
 * the parent key and the token ids exactly, so a hash collision never shares a block.
 * Blocks no sequence references stay cached until their room is needed, least recently
 * released first.
 * Contract for src/engine/kv_cache.c. Owned by the scheduler thread; not thread-safe. */
#ifndef KILN_ENGINE_KV_CACHE_H
#define KILN_ENGINE_KV_CACHE_H

#include "model/model.h"

#include <stdbool.h>
#include <stdint.h>

#define KV_ROOT_HASH 0x6b696c6e6b766330ull /* the parent key of a sequence's first block */

struct kv_block_info;

struct kv_cache {
    struct kv_store store;
    int n_blocks;
    bool prefix_caching;
    int32_t *refs;                /* [n_blocks] */
    struct kv_block_info *info;   /* [n_blocks] */
    int32_t *free_list;           /* blocks neither referenced nor cached */
    int n_free;
    int32_t *buckets;             /* hash table heads, [n_buckets] */
    int n_buckets;
    int32_t lru_head, lru_tail;   /* cached blocks nobody references, oldest first */
    int n_evictable;
    /* statistics */
    uint64_t queries, hits;       /* blocks looked up, and found */
    uint64_t evictions;
};

kiln_status kv_cache_init(struct kv_cache *c, const struct model *m, enum dtype type,
                          int n_blocks, bool prefix_caching, struct kiln_err *err);
void kv_cache_free(struct kv_cache *c);

/* A block to write, with one reference; reuses the least recently released cached block
 * when no block is free. -1 when every block is referenced. */
int32_t kv_alloc(struct kv_cache *c);
/* Drops one reference; at zero the block becomes evictable (cached) or free. */
void kv_release(struct kv_cache *c, int32_t block);
/* Blocks kv_alloc can still hand out. */
int kv_available(const struct kv_cache *c);

/* The key of a full block holding tokens after the block keyed parent. */
uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens);
/* The cached block with this key, parent key and tokens, with a new reference; -1 when
 * none (or prefix caching is off). Counts a query, and a hit when found. */
int32_t kv_lookup(struct kv_cache *c, uint64_t hash, uint64_t parent, const int32_t *tokens);
/* Offers a block just filled (referenced by the caller) to the prefix cache under this key;
 * ignored when the key is taken or the block is cached already. */
void kv_register(struct kv_cache *c, int32_t block, uint64_t hash, uint64_t parent,
                 const int32_t *tokens);

#endif
