/* Tests for the paged KV cache's allocator and prefix cache: reference counts, LRU eviction
 * order, lookups that must match parent and tokens exactly (a colliding key never shares
 * a block). Mirrors src/engine/kv_cache.c. */
#include "check.h"
#include "engine/kv_cache.h"

#include <string.h>

static kiln_model *model;

static void tokens_of(int32_t *t, int seed)
{
    for (int i = 0; i < KV_BLOCK_SIZE; i++) t[i] = seed * 100 + i;
}

static void test_refcounts_and_free(void)
{
    struct kv_cache c;
    struct kiln_err err = {{0}};
    CHECK(kv_cache_init(&c, kiln_model_internal(model), DTYPE_F16, 4, true, &err) == KILN_OK, "%s", err.msg);
    int32_t b[4];
    for (int i = 0; i < 4; i++) CHECK((b[i] = kv_alloc(&c)) == i, "block %d", b[i]);
    CHECK(kv_alloc(&c) == -1 && kv_available(&c) == 0, "a fifth block from a pool of four");
    kv_release(&c, b[2]);
    CHECK(kv_available(&c) == 1 && kv_alloc(&c) == 2, "a freed block is reused");
    /* a shared block is freed only when its last reference goes */
    int32_t t[KV_BLOCK_SIZE];
    tokens_of(t, 1);
    uint64_t h = kv_block_hash(KV_ROOT_HASH, t);
    kv_register(&c, b[0], h, KV_ROOT_HASH, t);
    CHECK(kv_lookup(&c, h, KV_ROOT_HASH, t) == b[0] && c.refs[b[0]] == 2, "lookup takes a reference");
    kv_release(&c, b[0]);
    CHECK(kv_available(&c) == 0, "freed while still referenced");
    kv_release(&c, b[0]);
    CHECK(kv_available(&c) == 1, "the last release makes it evictable");
    CHECK(kv_lookup(&c, h, KV_ROOT_HASH, t) == b[0], "an evictable cached block is still found");
    kv_cache_free(&c);
}

static void test_lru_eviction_order(void)
{
    struct kv_cache c;
    struct kiln_err err = {{0}};
    CHECK(kv_cache_init(&c, kiln_model_internal(model), DTYPE_F16, 3, true, &err) == KILN_OK, "%s", err.msg);
    int32_t t[3][KV_BLOCK_SIZE], b[3];
    uint64_t h[3];
    for (int i = 0; i < 3; i++) {
        tokens_of(t[i], i + 1);
        h[i] = kv_block_hash(KV_ROOT_HASH, t[i]);
        b[i] = kv_alloc(&c);
        kv_register(&c, b[i], h[i], KV_ROOT_HASH, t[i]);
    }
    /* released in the order 1, 0, 2: evicted in that order too */
    kv_release(&c, b[1]);
    kv_release(&c, b[0]);
    kv_release(&c, b[2]);
    CHECK(kv_alloc(&c) == b[1], "the least recently released goes first");
    CHECK(kv_lookup(&c, h[1], KV_ROOT_HASH, t[1]) == -1, "an evicted block is no longer found");
    /* using block 0 again moves it off the eviction list */
    CHECK(kv_lookup(&c, h[0], KV_ROOT_HASH, t[0]) == b[0], "lookup");
    CHECK(kv_alloc(&c) == b[2], "a block in use is not evicted");
    CHECK(kv_alloc(&c) == -1, "every block is in use");
    CHECK(c.evictions == 2, "%llu evictions", (unsigned long long)c.evictions);
    kv_cache_free(&c);
}

static void test_collisions_never_share(void)
{
    struct kv_cache c;
    struct kiln_err err = {{0}};
    CHECK(kv_cache_init(&c, kiln_model_internal(model), DTYPE_F16, 4, true, &err) == KILN_OK, "%s", err.msg);
    int32_t a[KV_BLOCK_SIZE], other[KV_BLOCK_SIZE];
    tokens_of(a, 7);
    tokens_of(other, 8);
    uint64_t h = kv_block_hash(KV_ROOT_HASH, a);
    int32_t blk = kv_alloc(&c);
    kv_register(&c, blk, h, KV_ROOT_HASH, a);
    /* the same key with other tokens, or after another parent, is a miss */
    CHECK(kv_lookup(&c, h, KV_ROOT_HASH, other) == -1, "tokens differ but the block was shared");
    CHECK(kv_lookup(&c, h, 12345, a) == -1, "parents differ but the block was shared");
    /* a second block under a taken key is not registered, so the first stays */
    int32_t blk2 = kv_alloc(&c);
    kv_register(&c, blk2, h, KV_ROOT_HASH, other);
    CHECK(kv_lookup(&c, h, KV_ROOT_HASH, other) == -1, "a colliding block replaced the first");
    CHECK(kv_lookup(&c, h, KV_ROOT_HASH, a) == blk, "the first block is lost");
    CHECK(c.queries == 4 && c.hits == 1, "queries %llu hits %llu", (unsigned long long)c.queries,
          (unsigned long long)c.hits);
    /* with prefix caching off, nothing is ever found */
    struct kv_cache off;
    CHECK(kv_cache_init(&off, kiln_model_internal(model), DTYPE_F16, 2, false, &err) == KILN_OK, "%s", err.msg);
    int32_t x = kv_alloc(&off);
    kv_register(&off, x, h, KV_ROOT_HASH, a);
    CHECK(kv_lookup(&off, h, KV_ROOT_HASH, a) == -1, "found with prefix caching off");
    kv_cache_free(&off);
    kv_cache_free(&c);
}

static void test_kv_types(void)
{
    struct kv_cache c;
    struct kiln_err err = {{0}};
    CHECK(kv_cache_init(&c, kiln_model_internal(model), DTYPE_Q8_0, 2, true, &err) == KILN_OK, "%s", err.msg);
    CHECK(c.store.type == DTYPE_Q8_0, "type");
    kv_cache_free(&c);
    CHECK(kv_cache_init(&c, kiln_model_internal(model), DTYPE_Q4_K, 2, true, &err) == KILN_EINVAL &&
          strstr(err.msg, "KV cache"), "Q4_K accepted: %s", err.msg);
}

int main(void)
{
    if (!(model = check_open_synthetic("llama-gqa.q8_0.gguf", 0))) return 1;
    RUN(test_refcounts_and_free);
    RUN(test_lru_eviction_order);
    RUN(test_collisions_never_share);
    RUN(test_kv_types);
    kiln_model_free(model);
    return check_summary();
}
