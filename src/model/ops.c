/* Norms, rotary embeddings, activations and the threaded matmul of the forward pass.
 * Contract: src/model/ops.h. */
#include "model/ops.h"

#include "kernels/cpu/convert.h"

#include <assert.h>
#include <math.h>
#include <stdatomic.h>

enum { MATMUL_MAX_WEIGHTS = 3 };

/* One pass of the pool over up to MATMUL_MAX_WEIGHTS weights that read the same encoded
 * activations (q, k and v; gate and up): one wait for the threads instead of one per weight,
 * and the small weights' blocks shared out with the large ones'. */
struct matmul_job {
    float *out[MATMUL_MAX_WEIGHTS];
    const struct weight *w[MATMUL_MAX_WEIGHTS];
    int n_w;
    const uint8_t *act;
    size_t act_bytes;
    int n_tok;
    int64_t blocks;          /* whole repacked blocks of all the repacked weights, in order */
    int64_t run;             /* the most blocks a thread takes at a time past its own share */
    atomic_llong next_block; /* the next of the shared blocks to take */
};

enum { ROW_TILE = 4 };

/* Output row r of weight w for tokens t0 .. t1 - 1 from its row `row` (as stored, or
 * widened), by the multi-column dot DOT_MAX_COLS tokens at a time. Inlined: decoding calls it
 * once per row. */
static inline __attribute__((always_inline)) void dotn_tokens(const struct matmul_job *j,
                                                              const struct weight *w, float *out,
                                                              dotn_fn dotn, const void *row,
                                                              int64_t r, int t0, int t1)
{
    for (int t = t0; t < t1; t += DOT_MAX_COLS) {
        int nc = t1 - t < DOT_MAX_COLS ? t1 - t : DOT_MAX_COLS;
        float res[DOT_MAX_COLS];
        dotn(row, j->act + (size_t)t * j->act_bytes, j->act_bytes, nc, w->cols, res);
        for (int c = 0; c < nc; c++) out[(size_t)(t + c) * (size_t)w->rows + (size_t)r] = res[c];
    }
}

/* Float rows (F32, or F16 / BF16 widened) for many tokens: the float activations of a long
 * batch do not fit in cache, so they are streamed once per tile of WIDE_TILE rows (widened
 * into this thread's scratch) rather than once per row. Each output is still one dotn
 * column, so results do not depend on the batch. */
static void matmul_float_rows(const struct matmul_job *j, const struct weight *w, float *out,
                              int64_t r0, int64_t r1, float *scratch)
{
    bool widen = w->kern->widen != NULL;
    dotn_fn dotn = widen ? w->kern->widened_dotn : w->kern->dotn;
    size_t row_floats = (size_t)w->cols;
    for (int64_t tile = r0; tile < r1; tile += WIDE_TILE) {
        int rows = r1 - tile < WIDE_TILE ? (int)(r1 - tile) : WIDE_TILE;
        const float *tile_rows[WIDE_TILE];
        for (int i = 0; i < rows; i++) {
            const uint8_t *row = w->data + (size_t)(tile + i) * w->row_bytes;
            if (widen) {
                w->kern->widen(scratch + (size_t)i * row_floats, row, w->cols);
                tile_rows[i] = scratch + (size_t)i * row_floats;
            } else {
                tile_rows[i] = (const float *)row;
            }
        }
        int t = 0;
        dot_tile_fn tile_fn = w->kern->float_tile;
        /* full tiles of TILE_ROWS x TILE_COLS, then the edges one row at a time */
        for (; tile_fn && t + TILE_COLS <= j->n_tok; t += TILE_COLS) {
            float *o = out + (size_t)t * (size_t)w->rows + (size_t)tile;
            int i = 0;
            for (; i + TILE_ROWS <= rows; i += TILE_ROWS)
                tile_fn(tile_rows + i, j->act + (size_t)t * j->act_bytes, j->act_bytes, w->cols,
                        o + i, (size_t)w->rows);
            for (; i < rows; i++)
                dotn_tokens(j, w, out, dotn, tile_rows[i], tile + i, t, t + TILE_COLS);
        }
        for (int i = 0; i < rows; i++) dotn_tokens(j, w, out, dotn, tile_rows[i], tile + i, t, j->n_tok);
    }
}

/* The blocks the threads share out as their own at the start (matmul_repacked below). */
static int64_t matmul_own_blocks(int64_t blocks)
{
    return blocks * 3 / 4;
}

/* Whole repacked blocks b0 .. b1 - 1 of the job (numbered through its repacked weights in
 * order). */
static void run_blocks(const struct matmul_job *j, int64_t b0, int64_t b1)
{
    int64_t first = 0; /* the job's number of weight i's block 0 */
    for (int i = 0; i < j->n_w && b0 < b1; i++) {
        const struct weight *w = j->w[i];
        if (!w->repacked) continue;
        int64_t blocks = w->rows / GEMM_ROWS;
        const struct row_gemm *gemm = w->kern->gemm;
        size_t block_bytes = gemm->repacked_bytes(w->cols);
        for (; b0 < b1 && b0 < first + blocks; b0++) {
            int64_t b = b0 - first;
            gemm->run(w->repacked + (size_t)b * block_bytes, j->act, j->act_bytes, j->n_tok,
                      w->cols, j->out[i] + b * GEMM_ROWS, (size_t)w->rows);
        }
        first += blocks;
    }
}

/* The next run of the shared blocks (those past `own`) into b0 .. b1 - 1, or false when none
 * is left: a 1 / (2 nth) part of what is left, at most j->run blocks and at least one. The
 * runs shrink towards the end, so the last one, which the other threads wait for, is short;
 * with runs of a fixed length (as many as the first) a thread that took the last waited up
 * to a whole run's time alone. Engine alone, SmolLM2 16 sequences x 128 tokens: 1.03x (median
 * of 12 interleaved pairs); kiln bench tg128 TinyLlama-shaped Q4_K_M 1.04x (5 pairs). */
static bool claim_run(struct matmul_job *j, int64_t own, int nth, int64_t *b0, int64_t *b1)
{
    /* long long: the atomic's own type, which compare-and-swap wants (clang: not int64_t) */
    long long at = atomic_load_explicit(&j->next_block, memory_order_relaxed);
    int64_t n;
    do {
        int64_t left = j->blocks - own - at;
        if (left <= 0) return false;
        n = left / (2 * nth);
        if (n > j->run) n = j->run;
        if (n < 1) n = 1;
    } while (!atomic_compare_exchange_weak_explicit(&j->next_block, &at, at + n,
                                                    memory_order_relaxed, memory_order_relaxed));
    *b0 = own + at;
    *b1 = own + at + n;
    return true;
}

/* Rows repacked at load (model_repack): whole blocks of GEMM_ROWS rows, every token (one or
 * many) run from the repacked form. Each thread first runs its own contiguous share of three
 * quarters of the blocks, then the threads take the rest in runs from a counter, whichever
 * is free: decoding is bound by memory that other tenants share, and with fixed halves one
 * thread often waited for the other (kiln bench tg, 2 threads, medians of 8 interleaved
 * pairs against fixed halves: TinyLlama-shaped Q4_K_M 1.17x, F16 1.05x; SmolLM2 0.96x,
 * within its noise; pp512 1.02x). Runs of up to 256 KiB, so that a thread streams
 * neighbouring memory (blocks handed out one by one to alternate threads decoded at 0.6x),
 * shrinking as the blocks run out (claim_run); a counter per block was tried before this and
 * gained nothing. The rows past the last whole block go by the row GEMM's single-row dot
 * (dotn where that is the type's own), shared out one by one. Which thread computes an
 * output changes none of its bits. */
static void matmul_repacked(struct matmul_job *j, int ith, int nth)
{
    int64_t blocks = j->blocks, own = matmul_own_blocks(blocks);
    if (blocks > 0) {
        int64_t b0 = own * ith / nth, b1 = own * (ith + 1) / nth;
        do run_blocks(j, b0, b1);
        while (claim_run(j, own, nth, &b0, &b1));
    }
    for (int i = 0; i < j->n_w; i++) {
        const struct weight *w = j->w[i];
        const struct row_gemm *gemm = w->kern->gemm;
        if (!w->repacked) continue;
        for (int64_t r = w->rows / GEMM_ROWS * GEMM_ROWS + ith; r < w->rows; r += nth) {
            const uint8_t *row = w->data + (size_t)r * w->row_bytes;
            if (!gemm->dot) { /* the type's own dot, several tokens a pass */
                dotn_tokens(j, w, j->out[i], w->kern->dotn, row, r, 0, j->n_tok);
                continue;
            }
            for (int t = 0; t < j->n_tok; t++)
                j->out[i][(size_t)t * (size_t)w->rows + (size_t)r] =
                    gemm->dot(row, j->act + (size_t)t * j->act_bytes, w->cols);
        }
    }
}

/* A weight without a repacked form: a share of its rows per thread. */
static void matmul_rows(const struct matmul_job *j, const struct weight *w, float *out, int ith,
                        int nth)
{
    int64_t tiles = (w->rows + ROW_TILE - 1) / ROW_TILE;
    int64_t t0 = tiles * ith / nth, t1 = tiles * (ith + 1) / nth;
    int64_t r0 = t0 * ROW_TILE, r1 = t1 * ROW_TILE < w->rows ? t1 * ROW_TILE : w->rows;
    if (j->n_tok > 1 && (w->kern->widen || (w->kern->act == ACT_F32 && w->kern->dotn))) {
        /* this thread's scratch after the encoded activations (see matmul_scratch_bytes) */
        float *scratch = (float *)(j->act + (size_t)j->n_tok * j->act_bytes) +
                         (size_t)ith * WIDE_TILE * (size_t)w->cols;
        matmul_float_rows(j, w, out, r0, r1, scratch);
        return;
    }
    dot_fn dot = w->kern->dot;
    dotn_fn dotn = w->kern->dotn;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (size_t)r * w->row_bytes;
        if (!dotn) {
            for (int t = 0; t < j->n_tok; t++)
                out[(size_t)t * (size_t)w->rows + (size_t)r] =
                    dot(row, j->act + (size_t)t * j->act_bytes, w->cols);
            continue;
        }
        /* several tokens per pass over the row: it is unpacked once for all of them */
        dotn_tokens(j, w, out, dotn, row, r, 0, j->n_tok);
    }
}

static void matmul_worker(void *ctx, int ith, int nth)
{
    struct matmul_job *j = ctx;
    matmul_repacked(j, ith, nth);
    for (int i = 0; i < j->n_w; i++)
        if (!j->w[i]->repacked) matmul_rows(j, j->w[i], j->out[i], ith, nth);
}

void matmul_encode_tokens(const struct weight *w, const float *in, int t0, int t1, uint8_t *act)
{
    size_t act_bytes = act_row_bytes(w->kern->act, w->cols);
    for (int t = t0; t < t1; t++)
        act_encode(w->kern->act, act + (size_t)t * act_bytes, in + (size_t)t * (size_t)w->cols,
                   w->cols);
}

struct encode_job {
    const struct weight *w;
    const float *in;
    uint8_t *act;
    int n_tok;
};

static void encode_worker(void *ctx, int ith, int nth)
{
    const struct encode_job *j = ctx;
    matmul_encode_tokens(j->w, j->in, j->n_tok * ith / nth, j->n_tok * (ith + 1) / nth, j->act);
}

/* in encoded for w's kernel into act */
static void encode_input(struct pool *pool, const struct weight *w, const float *in, int n_tok,
                         uint8_t *act)
{
    /* a row's encoding depends on that row only: splitting tokens among threads is exact */
    struct encode_job job = {w, in, act, n_tok};
    if (n_tok > 1) pool_run(pool, encode_worker, &job);
    else encode_worker(&job, 0, 1);
}

/* out[i] = w[i] . act for the weights in one pass of the pool (all reading act as encoded) */
static void matmul_encoded(struct pool *pool, float *const *out, const struct weight *const *w,
                           int n_w, const uint8_t *act, int n_tok)
{
    struct matmul_job job = {.n_w = n_w, .act = act, .n_tok = n_tok,
                             .act_bytes = act_row_bytes(w[0]->kern->act, w[0]->cols)};
    size_t bytes = 0; /* of the repacked blocks, for the length of the shared runs */
    for (int i = 0; i < n_w; i++) {
        job.out[i] = out[i];
        job.w[i] = w[i];
        if (!w[i]->repacked) continue;
        job.blocks += w[i]->rows / GEMM_ROWS;
        bytes += (size_t)(w[i]->rows / GEMM_ROWS) * w[i]->kern->gemm->repacked_bytes(w[i]->cols);
    }
    if (job.blocks > 0) { /* the longest run: 256 KiB */
        job.run = (int64_t)((256u << 10) / (bytes / (size_t)job.blocks));
        if (job.run < 1) job.run = 1;
    }
    pool_run(pool, matmul_worker, &job);
}

/* Whether b reads the input as a encodes it. */
static bool same_encoding(const struct weight *a, const struct weight *b)
{
    return a->kern->act == b->kern->act && a->cols == b->cols;
}

void matmul(struct pool *pool, float *out, const struct weight *w, const float *in, int n_tok,
            uint8_t *act)
{
    matmul_set(pool, &out, &w, 1, in, n_tok, act);
}

void matmul_set(struct pool *pool, float *const *out, const struct weight *const *w, int n_w,
                const float *in, int n_tok, uint8_t *act)
{
    assert(n_w >= 1);
    encode_input(pool, w[0], in, n_tok, act);
    matmul_set_encoded(pool, out, w, n_w, in, n_tok, act);
}

void matmul_set_encoded(struct pool *pool, float *const *out, const struct weight *const *w,
                        int n_w, const float *in, int n_tok, uint8_t *act)
{
    assert(n_w >= 1);
    /* runs of up to MATMUL_MAX_WEIGHTS weights that read the same encoding go together */
    for (int i = 0, n; i < n_w; i += n) {
        if (i > 0 && !same_encoding(w[i - 1], w[i])) encode_input(pool, w[i], in, n_tok, act);
        for (n = 1; i + n < n_w && n < MATMUL_MAX_WEIGHTS && same_encoding(w[i], w[i + n]);) n++;
        matmul_encoded(pool, out + i, w + i, n, act, n_tok);
    }
}

struct weight weight_rows(const struct weight *w, int64_t r0, int64_t rows)
{
    struct weight v = *w;
    v.rows = rows;
    v.data = w->data + (size_t)r0 * w->row_bytes;
    /* the view's whole blocks of GEMM_ROWS are repacked blocks of w when it starts on a block
     * boundary and they lie within w's (its rows past them go by the row GEMM's dot, from
     * data) */
    bool aligned = r0 % GEMM_ROWS == 0 &&
                   r0 + rows / GEMM_ROWS * GEMM_ROWS <= w->rows / GEMM_ROWS * GEMM_ROWS;
    v.repacked = w->repacked && aligned
                     ? w->repacked + (size_t)(r0 / GEMM_ROWS) * w->kern->gemm->repacked_bytes(w->cols)
                     : NULL;
    return v;
}

size_t matmul_scratch_bytes(const struct model *m, int n_batch)
{
    const struct hparams *hp = &m->hp;
    int64_t widest = hp->n_embd;
    if (hp->n_ff > widest) widest = hp->n_ff;
    if ((int64_t)hp->n_head * hp->head_dim > widest) widest = (int64_t)hp->n_head * hp->head_dim;
    /* floats take more room than either encoding; the extra rows are each thread's widened
     * F16 / BF16 weight rows */
    return ((size_t)n_batch + (size_t)WIDE_TILE * (size_t)pool_size(m->pool)) *
           act_row_bytes(ACT_F32, widest);
}

void add_bias(float *x, const float *bias, int n_tok, int dim)
{
    if (!bias) return;
    for (int t = 0; t < n_tok; t++)
        for (int i = 0; i < dim; i++) x[(size_t)t * dim + i] += bias[i];
}

void layernorm(float *out, const float *x, const float *weight, const float *bias, int n,
               float eps)
{
    double sum = 0, ss = 0;
    for (int i = 0; i < n; i++) sum += x[i];
    float mean = (float)(sum / n);
    for (int i = 0; i < n; i++) ss += (double)(x[i] - mean) * (x[i] - mean);
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = (x[i] - mean) * scale * weight[i] + bias[i];
}

void add_in_place(float *x, const float *y, int n)
{
    if (cpu_best_isa() >= ISA_AVX2) add_avx2(x, y, n);
    else
        for (int i = 0; i < n; i++) x[i] += y[i];
}

void rmsnorm(float *out, const float *x, const float *weight, int n, float eps)
{
    bool avx2 = cpu_best_isa() >= ISA_AVX2;
    double ss = 0;
    if (avx2) ss = sum_squares_avx2(x, n);
    else
        for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    if (avx2) scale_mul_avx2(out, x, scale, weight, n);
    else
        for (int i = 0; i < n; i++) out[i] = x[i] * scale * weight[i];
}

void rope_angles(float *cs, const struct hparams *hp, const float *theta, int pos)
{
    float p = (float)pos * hp->rope_freq_scale;
    for (int i = 0; i < hp->rope_dim / 2; i++) {
        float angle = p * theta[i];
        cs[2 * i] = cosf(angle);
        cs[2 * i + 1] = sinf(angle);
    }
}

void rope(float *x, int n_heads, const struct hparams *hp, const float *cs)
{
    int hd = hp->head_dim, rd = hp->rope_dim;
    bool neox = hp->rope_style == ROPE_NEOX;
    for (int i = 0; i < rd / 2; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        int a = neox ? i : 2 * i, b = neox ? i + rd / 2 : 2 * i + 1;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * hd;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

void l2_normalize(float *v, int n)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)v[i] * v[i];
    float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    for (int i = 0; i < n; i++) v[i] *= inv;
}

void softmax(float *x, int n)
{
    if (cpu_best_isa() >= ISA_AVX2) {
        softmax_avx2(x, n);
        return;
    }
    float max = x[0];
    for (int i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

float silu(float x)
{
    return x / (1.0f + expf(-x));
}

void swiglu(float *g, const float *u, int64_t n)
{
    if (cpu_best_isa() >= ISA_AVX2) {
        swiglu_avx2(g, u, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) g[i] = silu(g[i]) * u[i];
}

float gelu_erf(float x)
{
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

float gelu_tanh(float x)
{
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}
