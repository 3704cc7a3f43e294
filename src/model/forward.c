/* The decoder forward pass shared by llama, qwen2, gemma3 and llama-style MoE: batched
 * matmuls over all tokens of a call, attention per token and head over the KV cache.
 * Contract: src/model/model.h. */
#include "model/model.h"

#include "base/status.h"
#include "kernels/cpu/convert.h"
#include "model/ops.h"
#include "tensor/quant.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

kiln_status kv_store_init(struct kv_store *kv, const struct model *m, enum dtype type,
                          int n_blocks, struct kiln_err *err)
{
    const struct hparams *hp = &m->hp;
    uint64_t kvd = (uint64_t)hp->n_head_kv * (uint64_t)hp->head_dim, row;
    memset(kv, 0, sizeof *kv);
    if ((type != DTYPE_F32 && type != DTYPE_F16 && type != DTYPE_Q8_0) ||
        (type == DTYPE_Q8_0 && hp->head_dim % QK != 0) || !dtype_row_bytes(type, kvd, &row))
        return kiln_fail(err, KILN_EINVAL, "the KV cache cannot be %s for rows of %llu values",
                         dtype_get(type) ? dtype_get(type)->name : "that type",
                         (unsigned long long)kvd);
    size_t bytes = (size_t)hp->n_layer * (size_t)n_blocks * KV_BLOCK_SIZE * (size_t)row;
    kv->type = type;
    kv->n_blocks = n_blocks;
    kv->row_bytes = (size_t)row;
    kv->head_bytes = (size_t)row / (size_t)hp->n_head_kv;
    kv->key_dot = dot_kernel_for(type == DTYPE_Q8_0 ? DTYPE_F32 : type);
    kv->axpy_f16 = axpy_f16_for_cpu();
    kv->axpy_f32 = axpy_f32_for_cpu();
    kv->axpy_rows = axpy_rows_for_cpu(type);
    kv->value_heads = value_heads_for_cpu(type);
    kv->f16_row = type == DTYPE_F16 ? f16_row_for_cpu() : NULL;
    /* F16 keys transposed: a vector of scores per dimension, no horizontal sums, each key
     * widened once for the query heads that share it */
    kv->key_block = type == DTYPE_F16 && hp->head_dim % 4 == 0 ? key_block_f16t_for_cpu() : NULL;
    kv->key_rows = kv->key_block ? NULL : key_rows_for_cpu(type);
    /* calloc: pages the cache never touches are never backed by memory */
    kv->k = calloc(bytes ? bytes : 1, 1);
    kv->v = calloc(bytes ? bytes : 1, 1);
    if (!kv->k || !kv->v) {
        kv_store_free(kv);
        return kiln_fail(err, KILN_ENOMEM, "out of memory for a KV cache of %d blocks (%zu MiB)",
                         n_blocks, 2 * bytes >> 20);
    }
    return KILN_OK;
}

kiln_status kv_type_parse(const char *name, enum dtype *out, struct kiln_err *err)
{
    int t = dtype_parse(name);
    if (t != DTYPE_F16 && t != DTYPE_Q8_0 && t != DTYPE_F32)
        return kiln_fail(err, KILN_EINVAL, "the KV cache type must be f16, q8_0 or f32, not '%s'",
                         name);
    *out = (enum dtype)t;
    return KILN_OK;
}

void kv_store_free(struct kv_store *kv)
{
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

/* Floats from one head's scores to the next's in forward_state.scores: max_pos and a cache
 * line more, so that the heads' current scores (max_pos is often a power of two) do not all
 * fall in one L1 set. */
static size_t scores_stride(int max_pos)
{
    return (size_t)max_pos + 16;
}

kiln_status forward_state_init(struct forward_state *s, const struct model *m, int n_batch,
                               int max_pos, struct kiln_err *err)
{
    const struct hparams *hp = &m->hp;
    memset(s, 0, sizeof *s);
    s->m = m;
    s->n_batch = n_batch;
    s->max_pos = max_pos;
    size_t nb = (size_t)n_batch, qd = (size_t)hp->n_head * hp->head_dim,
           kvd = (size_t)hp->n_head_kv * hp->head_dim;
    size_t ff = (size_t)hp->n_ff;
    s->x = malloc(nb * (size_t)hp->n_embd * sizeof(float));
    s->xn = malloc(nb * (qd > (size_t)hp->n_embd ? qd : (size_t)hp->n_embd) * sizeof(float));
    s->q = malloc(nb * qd * sizeof(float));
    s->k = malloc(nb * kvd * sizeof(float));
    s->v = malloc(nb * kvd * sizeof(float));
    s->attn = malloc(nb * qd * sizeof(float));
    s->ff_gate = malloc(nb * ff * sizeof(float));
    s->ff_up = malloc(nb * ff * sizeof(float));
    /* per token: the angles of global layers, then those of sliding-window layers */
    s->rope_cs = malloc(2 * nb * (size_t)(hp->rope_dim > 0 ? hp->rope_dim : 1) * sizeof(float));
    /* per thread: the scores of a token's query heads, and a dequantized row */
    s->scores = malloc((size_t)pool_size(m->pool) *
                       ((size_t)hp->n_head * scores_stride(max_pos) + (size_t)hp->head_dim) *
                       sizeof(float));
    s->act = malloc(matmul_scratch_bytes(m, n_batch));
    s->ffn_out = malloc(nb * (size_t)hp->n_embd * sizeof(float));
    size_t ne = (size_t)(hp->n_expert ? hp->n_expert : 1), nk = (size_t)(hp->n_expert_used + 1);
    s->router_logits = malloc(nb * ne * sizeof(float));
    s->expert_sel = malloc(nb * nk * sizeof(int));
    s->expert_w = malloc(nb * nk * sizeof(float));
    s->expert_rows = malloc(nb * sizeof(int));
    s->expert_in = malloc(nb * (size_t)hp->n_embd * sizeof(float));
    s->expert_out = malloc(nb * (size_t)hp->n_embd * sizeof(float));
    if (!s->x || !s->xn || !s->q || !s->k || !s->v || !s->attn || !s->ff_gate || !s->ff_up ||
        !s->rope_cs || !s->scores || !s->act || !s->ffn_out || !s->router_logits || !s->expert_sel ||
        !s->expert_w || !s->expert_rows || !s->expert_in || !s->expert_out) {
        forward_state_free(s);
        return kiln_fail(err, KILN_ENOMEM, "out of memory for a batch of %d tokens", n_batch);
    }
    return KILN_OK;
}

void forward_state_free(struct forward_state *s)
{
    free(s->x);
    free(s->xn);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->attn);
    free(s->ff_gate);
    free(s->ff_up);
    free(s->rope_cs);
    free(s->scores);
    free(s->act);
    free(s->ffn_out);
    free(s->router_logits);
    free(s->expert_sel);
    free(s->expert_w);
    free(s->expert_rows);
    free(s->expert_in);
    free(s->expert_out);
    memset(s, 0, sizeof *s);
}

static bool layer_is_local(const struct hparams *hp, int il)
{
    return hp->sliding_window > 0 && hp->swa_period > 0 &&
           il % hp->swa_period < hp->swa_period - 1;
}

struct attn_job {
    struct forward_state *s;
    const struct kv_store *kv;
    const struct batch *b;
    int il;
    bool local; /* a sliding-window layer */
};

/* The transposed key kernels take a KV block's positions as one vector's lanes. */
_Static_assert(KV_BLOCK_SIZE == KEY_BLOCK_POSITIONS, "a key block is 16 positions");

/* The KV block of layer il that holds position p of a sequence, through its block table. */
static const uint8_t *kv_block(const struct kv_store *kv, const uint8_t *base, int il,
                               const int32_t *table, int p)
{
    size_t block = (size_t)il * (size_t)kv->n_blocks + (size_t)table[p / KV_BLOCK_SIZE];
    return base + block * KV_BLOCK_SIZE * kv->row_bytes;
}

/* Row of keys (in rows) or values of layer il at position p of a sequence. */
static const uint8_t *kv_row(const struct kv_store *kv, const uint8_t *base, int il,
                             const int32_t *table, int p)
{
    return kv_block(kv, base, il, table, p) + (size_t)(p % KV_BLOCK_SIZE) * kv->row_bytes;
}

/* Positions from p to the end of its KV block or to pos, whichever comes first. */
static int block_len(int p, int pos)
{
    int end = (p / KV_BLOCK_SIZE + 1) * KV_BLOCK_SIZE;
    return (end <= pos ? end : pos + 1) - p;
}

/* The KV rows a unit reads next, asked for ahead of their use: a block's rows are one place in
 * memory, the next block another, which the hardware prefetcher does not foresee. */
struct kv_ahead {
    const uint8_t *row; /* the first row's part of KV heads g0 .. g1 - 1; NULL: none */
    size_t row_bytes, bytes;
    int cnt;
};

/* The block of KV heads g0 .. g1 - 1 at position p (the next one a unit reads), if p <= pos.
 * Transposed keys: the heads' part of the whole block is one run of as many bytes as
 * KV_BLOCK_SIZE rows' parts, taken as that many rows of one after another. */
static struct kv_ahead kv_ahead_at(const struct kv_store *kv, const uint8_t *base, int il,
                                   const int32_t *table, int p, int pos, int g0, int g1)
{
    size_t heads_bytes = (size_t)(g1 - g0) * kv->head_bytes;
    struct kv_ahead a = {NULL, kv->row_bytes, heads_bytes, 0};
    if (p > pos) return a;
    if (base == kv->k && kv->key_block) {
        a.row = kv_block(kv, base, il, table, p) + (size_t)g0 * kv->head_bytes * KV_BLOCK_SIZE;
        a.row_bytes = heads_bytes;
        a.cnt = KV_BLOCK_SIZE;
        return a;
    }
    a.row = kv_row(kv, base, il, table, p) + (size_t)g0 * kv->head_bytes;
    a.cnt = block_len(p, pos);
    return a;
}

/* Part `part` of `parts` of a block ahead: its rows are asked for a few at a time, between
 * the calls that work on the block in use. All of a block's lines at once (six KiB for a
 * whole token of SmolLM2) queue behind each other and behind the loads in use: in a test
 * reading blocks scattered over 64 MiB, spreading them was 1.7x faster. They are asked into
 * L2 (prefetcht1), not L1, which stays the block in use's: SmolLM2, 16 sequences x 256
 * tokens, the attention's CPU time over the Q4_1 matmuls' went from 0.55-0.60 to 0.48-0.49
 * (perf, 3 interleaved pairs; 0.53-0.57 to 0.51-0.52 in 3 more). Two blocks ahead instead of
 * one gained nothing. always_inline: GCC 12 takes a function of prefetches alone for one
 * without effects and drops its calls (the block prefetch before this one never reached the
 * binary). */
static inline __attribute__((always_inline)) void prefetch_kv_part(const struct kv_ahead *a,
                                                                   int part, int parts)
{
    if (!a->row) return;
    const uint8_t *row = a->row + (size_t)(a->cnt * part / parts) * a->row_bytes;
    for (int i = a->cnt * part / parts; i < a->cnt * (part + 1) / parts; i++, row += a->row_bytes)
        /* every line the heads' bytes touch (Q8_0 parts need not start on a line) */
        for (uintptr_t l = (uintptr_t)row & ~(uintptr_t)63; l < (uintptr_t)row + a->bytes; l += 64)
            __builtin_prefetch((const void *)l, 0, 2); /* into L2 */
}

/* This call's share of the block ahead, between the calls on the block in use: the rows
 * forms take a block per call and head, so the heads (head hi of `heads`) share it out; the
 * one-row calls take it a row (i of cnt) at a time, with the unit's first head. Inlined for
 * prefetch_kv_part's reason. */
static inline __attribute__((always_inline)) void prefetch_between(const struct kv_ahead *a,
                                                                   bool rows_form, int i, int cnt,
                                                                   int hi, int heads)
{
    if (rows_form) prefetch_kv_part(a, hi, heads);
    else if (hi == 0) prefetch_kv_part(a, i, cnt);
}

/* One unit of the attention's work: a token and a range of its query heads, h0 .. h1 - 1
 * (sharing KV heads g0 .. g1 - 1), attending over positions lo .. pos of its sequence. */
struct attn_unit {
    int t, h0, h1, g0, g1, lo, pos;
    const int32_t *table;
};

/* A unit per token where the batch has two for each thread: all its heads. Else a unit per
 * KV head, split further for at least two units per thread where the heads allow it (as when
 * decoding one token). */
struct attn_split {
    bool whole_token;
    int per_token, parts, units; /* units of a token: per_token KV heads x parts */
};

static struct attn_split attn_split_for(const struct hparams *hp, int n, int nth)
{
    int group = hp->n_head / hp->n_head_kv;
    struct attn_split sp = {n >= 2 * nth, 1, 1, 0};
    if (!sp.whole_token) {
        sp.per_token = hp->n_head_kv;
        if (n * sp.per_token < 2 * nth) {
            sp.parts = (2 * nth + n * sp.per_token - 1) / (n * sp.per_token);
            if (sp.parts > group) sp.parts = group;
        }
    }
    sp.units = n * sp.per_token * sp.parts;
    return sp;
}

static struct attn_unit attn_unit_at(const struct attn_job *j, const struct attn_split *sp, int u)
{
    const struct hparams *hp = &j->s->m->hp;
    int group = hp->n_head / hp->n_head_kv;
    struct attn_unit a = {.t = u / (sp->per_token * sp->parts), .h0 = 0, .h1 = hp->n_head};
    if (!sp->whole_token) {
        int g = u / sp->parts % sp->per_token, part = u % sp->parts;
        a.h0 = g * group + group * part / sp->parts;
        a.h1 = g * group + group * (part + 1) / sp->parts;
    }
    a.g0 = a.h0 / group;
    a.g1 = (a.h1 - 1) / group + 1;
    a.pos = j->b->pos[a.t];
    a.table = j->b->block_tables[a.t];
    a.lo = j->local && a.pos - hp->sliding_window + 1 > 0 ? a.pos - hp->sliding_window + 1 : 0;
    return a;
}

/* The unit's query heads that share KV head g (g0 <= g < g1): *h0 .. *h1 - 1. */
static void unit_heads_of_kv_head(const struct attn_unit *a, int g, int group, int *h0, int *h1)
{
    *h0 = g * group > a->h0 ? g * group : a->h0;
    *h1 = (g + 1) * group < a->h1 ? (g + 1) * group : a->h1;
}

/* For each head of a unit: scores over the visible positions, softmax, weighted sum of
 * values. The unit goes through the KV blocks one after another, and all its heads through
 * each block while it is in L1: keys and values are read from memory once per unit, and the
 * next block (after the last block of values: the first block of keys of this thread's next
 * unit) is asked for while one is in use.
 *
 * F16 keys, stored transposed, are scored a block and a KV head at a time for all the unit's
 * query heads of that KV head (key_block). SmolLM2, 16 sequences x 256 tokens: the
 * attention's CPU time over the Q4_1 matmuls' went from 0.44-0.47 to 0.38-0.40, its key
 * scores' from 0.165-0.180 to 0.084-0.093; one sequence of a 2000-token prompt decoding 700
 * tokens ran at 1.15x the tokens/s. F16 values go the same way with AVX-512 (value_heads,
 * each row widened once for the heads): their share 0.104-0.113 -> 0.089-0.093, and that
 * long decode at 1.07-1.12x (3 pairs).
 *
 * The rows forms take a block's positions in one call; Q8_0 rows are read in place by them,
 * and expanded to floats once per row and KV head only where there is no rows form (no
 * AVX2). Each unit reads only its own token's query and sequence (a transposed key block is
 * scored whole, its slots past the sequence's end too, and those scores dropped), and each
 * head's arithmetic is its own, so the result never depends on the rest of the batch or on
 * how the heads are grouped. */
static void attention_worker(void *ctx, int ith, int nth)
{
    const struct attn_job *j = ctx;
    struct forward_state *s = j->s;
    const struct kv_store *kv = j->kv;
    const struct hparams *hp = &s->m->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    size_t qd = (size_t)hp->n_head * hd, max_pos = scores_stride(s->max_pos);
    float *scores = s->scores + (size_t)ith * ((size_t)hp->n_head * max_pos + (size_t)hd);
    float *tmp = scores + (size_t)hp->n_head * max_pos;
    bool key_rows = kv->key_rows != NULL;
    /* Q8_0 rows without a rows form: expanded into tmp, then the F32 one-row calls */
    bool expand_keys = !key_rows && kv->type == DTYPE_Q8_0;
    bool expand_values = !kv->axpy_rows && kv->type == DTYPE_Q8_0;
    struct attn_split sp = attn_split_for(hp, j->b->n, nth);
    /* interleaved, not in halves: a later position attends over more keys; each unit knows
     * the thread's next one (b), to prefetch its first block */
    struct attn_unit a = {0}, b = {0};
    if (ith < sp.units) a = attn_unit_at(j, &sp, ith);
    for (int u = ith; u < sp.units; u += nth, a = b) {
        const float *qt = s->q + (size_t)a.t * qd;
        float *out_t = s->attn + (size_t)a.t * qd;
        int lo = a.lo, pos = a.pos;
        /* head h's scores: scores + (h - h0) * max_pos, position p at p - lo */
        /* one call per block: per KV head for transposed keys; otherwise, the positions
         * being consecutive rows, per head where the kernels have a rows form (the same
         * arithmetic per position as the one-row calls) */
        for (int p = lo, cnt; p <= pos; p += cnt) {
            cnt = block_len(p, pos);
            struct kv_ahead next = kv_ahead_at(kv, kv->k, j->il, a.table, p + cnt, pos, a.g0, a.g1);
            if (kv->key_block) { /* transposed: the query heads of each KV head in one call */
                const f16_t *blk = (const f16_t *)kv_block(kv, kv->k, j->il, a.table, p);
                for (int g = a.g0; g < a.g1; g++) {
                    prefetch_kv_part(&next, g - a.g0, a.g1 - a.g0);
                    int h0, h1;
                    unit_heads_of_kv_head(&a, g, group, &h0, &h1);
                    kv->key_block(scores + (size_t)(h0 - a.h0) * max_pos + (p - lo), max_pos,
                                  blk + (size_t)g * hd * KV_BLOCK_SIZE, qt + (size_t)h0 * hd,
                                  h1 - h0, hd, p % KV_BLOCK_SIZE, p % KV_BLOCK_SIZE + cnt,
                                  hp->attn_scale);
                }
                continue;
            }
            const uint8_t *row = kv_row(kv, kv->k, j->il, a.table, p);
            for (int i = 0; i < (key_rows ? 1 : cnt); i++, row += kv->row_bytes) {
                for (int h = a.h0; h < a.h1; h++) {
                    prefetch_between(&next, key_rows, i, cnt, h - a.h0, a.h1 - a.h0);
                    const uint8_t *k = row + (size_t)(h / group) * kv->head_bytes;
                    float *sc = scores + (size_t)(h - a.h0) * max_pos + (p - lo);
                    if (key_rows) {
                        kv->key_rows(sc, k, kv->row_bytes, cnt, qt + (size_t)h * hd, hd,
                                     hp->attn_scale);
                        continue;
                    }
                    if (expand_keys && (h == a.h0 || h % group == 0))
                        dequantize_row(kv->type, tmp, k, hd);
                    sc[i] = kv->key_dot->dot(expand_keys ? (const void *)tmp : k,
                                             qt + (size_t)h * hd, hd) * hp->attn_scale;
                }
            }
        }
        /* the first block of values while the softmax runs */
        struct kv_ahead first = kv_ahead_at(kv, kv->v, j->il, a.table, lo, pos, a.g0, a.g1);
        for (int h = a.h0; h < a.h1; h++) {
            prefetch_kv_part(&first, h - a.h0, a.h1 - a.h0);
            softmax(scores + (size_t)(h - a.h0) * max_pos, pos - lo + 1);
            memset(out_t + (size_t)h * hd, 0, (size_t)hd * sizeof(float));
        }
        /* the first block of keys of this thread's next unit, while the last block of values
         * is in use */
        struct kv_ahead after = {.row = NULL};
        if (u + nth < sp.units) {
            b = attn_unit_at(j, &sp, u + nth);
            after = kv_ahead_at(kv, kv->k, j->il, b.table, b.lo, b.pos, b.g0, b.g1);
        }
        for (int p = lo, cnt; p <= pos; p += cnt) {
            cnt = block_len(p, pos);
            const uint8_t *row = kv_row(kv, kv->v, j->il, a.table, p);
            struct kv_ahead next = p + cnt <= pos
                ? kv_ahead_at(kv, kv->v, j->il, a.table, p + cnt, pos, a.g0, a.g1) : after;
            if (kv->value_heads) { /* the query heads of each KV head in one call */
                for (int g = a.g0; g < a.g1; g++) {
                    prefetch_kv_part(&next, g - a.g0, a.g1 - a.g0);
                    int h0, h1;
                    unit_heads_of_kv_head(&a, g, group, &h0, &h1);
                    kv->value_heads(out_t + (size_t)h0 * hd,
                                    scores + (size_t)(h0 - a.h0) * max_pos + (p - lo), max_pos,
                                    row + (size_t)g * kv->head_bytes, kv->row_bytes, cnt,
                                    h1 - h0, hd);
                }
                continue;
            }
            for (int i = 0; i < (kv->axpy_rows ? 1 : cnt); i++, row += kv->row_bytes) {
                for (int h = a.h0; h < a.h1; h++) {
                    prefetch_between(&next, kv->axpy_rows != NULL, i, cnt, h - a.h0, a.h1 - a.h0);
                    const uint8_t *v = row + (size_t)(h / group) * kv->head_bytes;
                    float *out = out_t + (size_t)h * hd;
                    const float *w = scores + (size_t)(h - a.h0) * max_pos + (p - lo);
                    if (kv->axpy_rows) {
                        kv->axpy_rows(out, w, v, kv->row_bytes, cnt, hd);
                        continue;
                    }
                    if (expand_values && (h == a.h0 || h % group == 0))
                        dequantize_row(kv->type, tmp, v, hd);
                    if (kv->type == DTYPE_F16) kv->axpy_f16(out, w[i], (const f16_t *)v, hd);
                    else if (kv->type == DTYPE_F32) kv->axpy_f32(out, w[i], (const float *)v, hd);
                    else kv->axpy_f32(out, w[i], tmp, hd);
                }
            }
        }
    }
}

/* The per-token stages around the matmuls, split among the threads by token (each token's
 * arithmetic is its own, so the split changes no result). A stage that makes the next
 * matmul's input also encodes it, token by token in the same pass (encode_for). */
enum token_stage {
    ATTN_NORM,              /* xn = norm(x): the first layer's input */
    QKV_ROPE_STORE,         /* q, k, v biased, normed, rotated; k, v into the cache */
    ATTN_RESIDUAL_FFN_NORM, /* x += xn (the attention's output); xn = norm(x) */
    GLU,                    /* ff_gate = act(ff_gate) * ff_up */
    FFN_RESIDUAL_NEXT_NORM, /* x += ffn_out; xn = norm(x) for the next layer, if any */
};

struct stage_job {
    struct forward_state *s;
    const struct kv_store *kv;
    const struct batch *b;
    const struct layer *L;
    const struct layer *next; /* FFN_RESIDUAL_NEXT_NORM: the next layer (NULL after the last) */
    int il;
    bool local;
    enum token_stage stage;
    const struct weight *encode_for; /* NULL, or the weight whose input the stage makes */
    const float *encode_src;         /* that input, [n][encode_for->cols] */
};

/* Token t's cos / sin pairs for a global or a sliding-window layer (set by run_layers). */
static const float *rope_cs_of(const struct forward_state *s, int t, bool local)
{
    size_t rd = (size_t)(s->m->hp.rope_dim > 0 ? s->m->hp.rope_dim : 1);
    return s->rope_cs + ((local ? (size_t)s->n_batch : 0) + (size_t)t) * rd;
}

/* One token's keys or values as a row of the cache's type. */
static void store_kv_row(const struct kv_store *kv, uint8_t *row, const float *x, int n)
{
    if (kv->f16_row) kv->f16_row((f16_t *)row, x, n);
    else quantize_row(kv->type, row, x, n);
}

/* One token's keys into position `slot` of a transposed F16 key block: value i (of KV head
 * i / head_dim) at blk[i * KV_BLOCK_SIZE + slot], converted as store_kv_row converts. */
static void store_keys_transposed(const struct kv_store *kv, f16_t *blk, int slot,
                                  const float *k, int n)
{
    f16_t half[64];
    for (int i0 = 0; i0 < n; i0 += 64) {
        int m = n - i0 < 64 ? n - i0 : 64;
        store_kv_row(kv, (uint8_t *)half, k + i0, m);
        for (int i = 0; i < m; i++) blk[(size_t)(i0 + i) * KV_BLOCK_SIZE + (size_t)slot] = half[i];
    }
}

/* Bias, q/k norms, rotary embedding of token t, and its keys and values into the cache. */
static void qkv_token(const struct stage_job *j, int t)
{
    struct forward_state *s = j->s;
    const struct hparams *hp = &s->m->hp;
    const struct layer *L = j->L;
    int hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_head_kv * hd;
    float *q = s->q + (size_t)t * qd, *k = s->k + (size_t)t * kvd, *v = s->v + (size_t)t * kvd;
    const float *rope_cs = rope_cs_of(s, t, j->local);
    add_bias(q, L->bq, 1, qd);
    add_bias(k, L->bk, 1, kvd);
    add_bias(v, L->bv, 1, kvd);
    if (L->q_norm) {
        for (int h = 0; h < hp->n_head; h++) rmsnorm(q + h * hd, q + h * hd, L->q_norm, hd, hp->rms_eps);
        for (int h = 0; h < hp->n_head_kv; h++)
            rmsnorm(k + h * hd, k + h * hd, L->k_norm, hd, hp->rms_eps);
    }
    rope(q, hp->n_head, hp, rope_cs);
    rope(k, hp->n_head_kv, hp, rope_cs);
    /* the rows are ours to write: this token's position in its own sequence */
    const struct kv_store *kv = j->kv;
    const int32_t *table = j->b->block_tables[t];
    int pos = j->b->pos[t];
    uint8_t *vrow = (uint8_t *)kv_row(kv, kv->v, j->il, table, pos);
    if (kv->key_block)
        store_keys_transposed(kv, (f16_t *)kv_block(kv, kv->k, j->il, table, pos),
                              pos % KV_BLOCK_SIZE, k, kvd);
    else
        store_kv_row(kv, (uint8_t *)kv_row(kv, kv->k, j->il, table, pos), k, kvd);
    store_kv_row(kv, vrow, v, kvd);
}

/* A transposed key block is stored into a column at a time, two values in every line of the
 * block: the stage asks for the lines of its next token's block, when that is another block
 * than this token's (prefetcht0: the baseline ISA has no PREFETCHW), while this token's
 * biases, norms and rotations run, instead of the stores missing them one by one (the stage's
 * CPU time over the Q4_1 matmuls': 0.048-0.051 without, 0.037-0.044 with). Inlined for
 * prefetch_kv_part's reason. */
static inline __attribute__((always_inline)) void prefetch_next_key_block_for_store(
    const struct stage_job *j, int t, int t1)
{
    const struct kv_store *kv = j->kv;
    const struct batch *b = j->b;
    if (!kv->key_block || t + 1 >= t1 ||
        (b->block_tables[t + 1] == b->block_tables[t] &&
         b->pos[t + 1] / KV_BLOCK_SIZE == b->pos[t] / KV_BLOCK_SIZE))
        return;
    const uint8_t *blk = kv_block(kv, kv->k, j->il, b->block_tables[t + 1], b->pos[t + 1]);
    for (size_t o = 0; o < KV_BLOCK_SIZE * kv->row_bytes; o += 64)
        __builtin_prefetch(blk + o, 1, 3);
}

/* act(gate) * up of token t: GeGLU for gemma, SwiGLU otherwise. */
static void glu_token(const struct forward_state *s, int t, size_t ff)
{
    float *g = s->ff_gate + (size_t)t * ff, *u = s->ff_up + (size_t)t * ff;
    if (s->m->hp.arch == ARCH_GEMMA3)
        for (size_t i = 0; i < ff; i++) g[i] = gelu_tanh(g[i]) * u[i];
    else
        swiglu(g, u, (int64_t)ff);
}

static void stage_worker(void *ctx, int ith, int nth)
{
    const struct stage_job *j = ctx;
    struct forward_state *s = j->s;
    const struct hparams *hp = &s->m->hp;
    const struct layer *L = j->L;
    int e = hp->n_embd, n = j->b->n, t0 = n * ith / nth, t1 = n * (ith + 1) / nth;
    for (int t = t0; t < t1; t++) {
        float *x = s->x + (size_t)t * e, *xn = s->xn + (size_t)t * e;
        switch (j->stage) {
        case ATTN_NORM: rmsnorm(xn, x, L->attn_norm, e, hp->rms_eps); break;
        case QKV_ROPE_STORE:
            prefetch_next_key_block_for_store(j, t, t1);
            qkv_token(j, t);
            break;
        case ATTN_RESIDUAL_FFN_NORM:
            if (L->post_attn_norm) rmsnorm(xn, xn, L->post_attn_norm, e, hp->rms_eps);
            add_in_place(x, xn, e);
            rmsnorm(xn, x, L->ffn_norm, e, hp->rms_eps);
            break;
        case GLU: glu_token(s, t, (size_t)j->encode_for->cols); break; /* down's input */
        case FFN_RESIDUAL_NEXT_NORM: {
            float *out = s->ffn_out + (size_t)t * e;
            if (L->post_ffn_norm) rmsnorm(out, out, L->post_ffn_norm, e, hp->rms_eps);
            add_in_place(x, out, e);
            if (j->next) rmsnorm(xn, x, j->next->attn_norm, e, hp->rms_eps);
            break;
        }
        }
    }
    if (j->encode_for) matmul_encode_tokens(j->encode_for, j->encode_src, t0, t1, s->act);
}

static void run_stage(const struct stage_job *j)
{
    if (j->b->n > 1) pool_run(j->s->m->pool, stage_worker, (void *)j);
    else stage_worker((void *)j, 0, 1);
}

/* The attention block of layer il, its input xn = norm(x) already encoded for L->wq in
 * s->act; leaves the block's output in xn. */
static void attention_block(struct forward_state *s, const struct kv_store *kv,
                            const struct batch *b, const struct layer *L, int il)
{
    int n = b->n;
    const struct model *m = s->m;
    bool local = layer_is_local(&m->hp, il);
    float *qkv_out[] = {s->q, s->k, s->v};
    const struct weight *qkv[] = {&L->wq, &L->wk, &L->wv};
    matmul_set_encoded(m->pool, qkv_out, qkv, 3, s->xn, n, s->act);
    struct stage_job st = {.s = s, .kv = kv, .b = b, .L = L, .il = il, .local = local,
                           .stage = QKV_ROPE_STORE};
    run_stage(&st);
    struct attn_job job = {s, kv, b, il, local};
    pool_run(m->pool, attention_worker, &job);
    matmul(m->pool, s->xn, &L->wo, s->attn, n, s->act);
}

/* gate/up/down over n rows of in, result in out; GeGLU for gemma, SwiGLU otherwise. When
 * encoded, s->act already holds in encoded for gate. */
static void dense_ffn(struct forward_state *s, const struct weight *gate, const struct weight *up,
                      const struct weight *down, const float *in, float *out, int n,
                      bool encoded)
{
    const struct model *m = s->m;
    float *gate_up_out[] = {s->ff_gate, s->ff_up};
    const struct weight *gate_up[] = {gate, up};
    if (encoded) matmul_set_encoded(m->pool, gate_up_out, gate_up, 2, in, n, s->act);
    else matmul_set(m->pool, gate_up_out, gate_up, 2, in, n, s->act);
    struct batch rows = {.n = n};
    struct stage_job st = {.s = s, .b = &rows, .stage = GLU, .encode_for = down,
                           .encode_src = s->ff_gate};
    run_stage(&st);
    matmul_set_encoded(m->pool, &out, &down, 1, s->ff_gate, n, s->act);
}

/* A view of expert e's slice of a stacked [n_expert * rows][cols] weight. */
static struct weight expert_slice(const struct weight *w, int e, int n_expert)
{
    int64_t rows = w->rows / n_expert;
    return weight_rows(w, (int64_t)e * rows, rows);
}

/* Picks the k most probable experts for one token (router logits in p, softmaxed here). */
static void route_token(const struct hparams *hp, float *p, int *sel, float *w)
{
    int ne = hp->n_expert, k = hp->n_expert_used;
    softmax(p, ne);
    float sum = 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int x = 0; x < ne; x++) {
            bool taken = false;
            for (int y = 0; y < j; y++) taken |= sel[y] == x;
            if (!taken && (best < 0 || p[x] > p[best])) best = x;
        }
        sel[j] = best;
        w[j] = p[best];
        sum += p[best];
    }
    if (hp->expert_weights_norm)
        for (int j = 0; j < k; j++) w[j] /= sum;
}

/* Mixture of experts: route each token to its top-k experts, run each expert once over the
 * tokens routed to it, and add the outputs weighted by the router's probabilities. */
static void moe_ffn(struct forward_state *s, const struct layer *L, int n)
{
    const struct hparams *hp = &s->m->hp;
    int e = hp->n_embd, ne = hp->n_expert, k = hp->n_expert_used;
    matmul(s->m->pool, s->router_logits, &L->router, s->xn, n, s->act);
    for (int t = 0; t < n; t++)
        route_token(hp, s->router_logits + (size_t)t * ne, s->expert_sel + t * k,
                    s->expert_w + t * k);
    memset(s->ffn_out, 0, (size_t)n * e * sizeof(float));
    for (int x = 0; x < ne; x++) {
        int cnt = 0; /* a token picks an expert at most once, so cnt <= n */
        for (int t = 0; t < n; t++)
            for (int j = 0; j < k; j++)
                if (s->expert_sel[t * k + j] == x) {
                    s->expert_rows[cnt] = t * k + j;
                    memcpy(s->expert_in + (size_t)cnt * e, s->xn + (size_t)t * e,
                           (size_t)e * sizeof(float));
                    cnt++;
                }
        if (!cnt) continue;
        struct weight g = expert_slice(&L->gate_exps, x, ne), u = expert_slice(&L->up_exps, x, ne),
                      d = expert_slice(&L->down_exps, x, ne);
        dense_ffn(s, &g, &u, &d, s->expert_in, s->expert_out, cnt, false);
        for (int c = 0; c < cnt; c++) {
            int t = s->expert_rows[c] / k;
            float w = s->expert_w[s->expert_rows[c]];
            for (int i = 0; i < e; i++)
                s->ffn_out[(size_t)t * e + i] += w * s->expert_out[(size_t)c * e + i];
        }
    }
}

/* The attention's residual, then the FFN block; then its residual and, when there is a next
 * layer, next's input norm, encoded for its wq. */
static void ffn_block(struct forward_state *s, const struct batch *b, const struct layer *L,
                      const struct layer *next)
{
    bool moe = s->m->hp.n_expert > 0;
    struct stage_job st = {.s = s, .b = b, .L = L, .stage = ATTN_RESIDUAL_FFN_NORM,
                           .encode_for = moe ? NULL : &L->ffn_gate, .encode_src = s->xn};
    run_stage(&st);
    if (moe)
        moe_ffn(s, L, b->n);
    else
        dense_ffn(s, &L->ffn_gate, &L->ffn_up, &L->ffn_down, s->xn, s->ffn_out, b->n, true);
    st = (struct stage_job){.s = s, .b = b, .L = L, .next = next, .stage = FFN_RESIDUAL_NEXT_NORM,
                            .encode_for = next ? &next->wq : NULL, .encode_src = s->xn};
    run_stage(&st);
}

/* Embeds the batch's tokens and runs every layer: s->x holds the last hidden states. */
static void run_layers(struct forward_state *s, const struct kv_store *kv, const struct batch *b)
{
    const struct model *m = s->m;
    const struct hparams *hp = &m->hp;
    int e = hp->n_embd, n = b->n;
    assert(n <= s->n_batch);
    /* the rotary angles of each token, once for every layer (global, then sliding-window) */
    for (int t = 0; t < n; t++) {
        rope_angles((float *)rope_cs_of(s, t, false), hp, m->rope_theta, b->pos[t]);
        if (hp->sliding_window > 0)
            rope_angles((float *)rope_cs_of(s, t, true), hp, m->rope_theta + hp->rope_dim / 2,
                        b->pos[t]);
    }
    for (int t = 0; t < n; t++) {
        const struct weight *te = &m->tok_embd;
        dequantize_row(te->type, s->x + (size_t)t * e,
                       te->data + (size_t)b->tokens[t] * te->row_bytes, e);
        if (hp->embd_scale != 1.0f)
            for (int i = 0; i < e; i++) s->x[(size_t)t * e + i] *= hp->embd_scale;
    }
    struct stage_job st = {.s = s, .b = b, .L = &m->layers[0], .stage = ATTN_NORM,
                           .encode_for = &m->layers[0].wq, .encode_src = s->xn};
    run_stage(&st);
    for (int il = 0; il < hp->n_layer; il++) {
        attention_block(s, kv, b, &m->layers[il], il);
        ffn_block(s, b, &m->layers[il], il + 1 < hp->n_layer ? &m->layers[il + 1] : NULL);
    }
}

/* The output norm of the tokens that want results, packed into out; returns how many. */
static int output_norm(struct forward_state *s, const struct batch *b, float *out)
{
    const struct model *m = s->m;
    int e = m->hp.n_embd, k = 0;
    for (int t = 0; t < b->n; t++)
        if (b->want_logits[t])
            rmsnorm(out + (size_t)k++ * e, s->x + (size_t)t * e, m->output_norm, e, m->hp.rms_eps);
    return k;
}

void forward(struct forward_state *s, const struct kv_store *kv, const struct batch *b,
             float *logits)
{
    run_layers(s, kv, b);
    if (!logits || !b->want_logits) return;
    int k = output_norm(s, b, s->xn);
    if (k) matmul(s->m->pool, logits, &s->m->output, s->xn, k, s->act);
}

void forward_hidden(struct forward_state *s, const struct kv_store *kv, const struct batch *b,
                    float *hidden)
{
    run_layers(s, kv, b);
    output_norm(s, b, hidden);
}
