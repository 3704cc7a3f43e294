/* The threaded matmul (src/model/ops.c) gives every output exactly the single-token dot of
 * its row, whichever way it takes the weight: repacked at load for a row GEMM, float tiles or
 * multi-column dots; for 1 to 9 tokens and a row count that leaves rows past the last block
 * of 16 (taken by dotn). matmul_set gives each weight of a set exactly matmul's outputs. */
#include "check.h"

#include "base/pool.h"
#include "kernels/cpu/dot.h"
#include "model/ops.h"
#include "tensor/quant.h"

#include <stdio.h>
#include <string.h>

/* 40 whole blocks: the threads' own shares, then shared runs of two blocks and of one as they
 * run out (ops.c's claim_run) */
enum { ROWS = 40 * GEMM_ROWS + 5, COLS = 512, MAX_TOK = 9, THREADS = 2 };

static struct pool *pool;
/* matmul's scratch: the tokens' encoded rows, then each thread's widened rows */
static uint8_t act[(MAX_TOK + WIDE_TILE * THREADS) * COLS * sizeof(float)];
static uint8_t data[ROWS * COLS * sizeof(float)];
static _Alignas(64) uint8_t packed[ROWS * COLS * 4];
static uint64_t rng = 0x2545f4914f6cdd1dull;
static float next_f(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng >> 40) / 8388608.0f - 1.0f;
}

/* Runs matmul on w for 1 .. MAX_TOK tokens and compares each output with the row's dot. */
static void check_matmul(const struct weight *w)
{
    CHECK(w->rows <= ROWS, "too many rows");
    static float in[MAX_TOK * COLS], out[MAX_TOK * ROWS];
    static uint8_t enc[COLS * sizeof(float)];
    for (int n_tok = 1; n_tok <= MAX_TOK; n_tok++) {
        for (int i = 0; i < n_tok * COLS; i++) in[i] = next_f() * (i % 5 == 0 ? 4.f : 1.f);
        memset(out, 0xff, sizeof out);
        matmul(pool, out, w, in, n_tok, act);
        for (int t = 0; t < n_tok; t++) {
            act_encode(w->kern->act, enc, in + (size_t)t * COLS, COLS);
            /* a repacked weight's rows all go by its row GEMM's dot (the type's own for the
             * quantized types); others by the type's dot */
            dot_fn dot = w->repacked ? row_gemm_dot(w->kern) : w->kern->dot;
            for (int r = 0; r < w->rows; r++) {
                float single = dot(w->data + (size_t)r * w->row_bytes, enc, COLS);
                float got = out[(size_t)t * w->rows + r];
                CHECK(memcmp(&single, &got, sizeof got) == 0,
                      "%s%s, %d tokens: row %d token %d: %.9g vs %.9g", dtype_get(w->type)->name,
                      w->repacked ? " repacked" : "", n_tok, r, t, got, single);
            }
        }
    }
}

/* A weight of `rows` rows of type t in buf (of at least rows * COLS * 4 bytes), repacked into
 * packed_buf where the type has a row GEMM and `repack` asks for it. */
static void make_weight(struct weight *out, enum dtype t, int rows, bool repack, uint8_t *buf,
                        uint8_t *packed_buf)
{
    static float x[COLS];
    uint64_t row_bytes = 0;
    CHECK(dtype_row_bytes(t, COLS, &row_bytes), "%s row size", dtype_get(t)->name);
    for (int r = 0; r < rows; r++) {
        for (int i = 0; i < COLS; i++) x[i] = next_f();
        CHECK(quantize_row(t, buf + (size_t)r * row_bytes, x, COLS), "quantize %s",
              dtype_get(t)->name);
    }
    struct weight w = {buf, t, rows, COLS, (size_t)row_bytes, dot_kernel_for(t), NULL};
    const struct row_gemm *g = w.kern->gemm;
    if (g && repack) {
        size_t block = g->repacked_bytes(COLS);
        CHECK(block * (size_t)(rows / GEMM_ROWS) <= sizeof packed, "%s: repacked size",
              dtype_get(t)->name);
        for (int b = 0; b < rows / GEMM_ROWS; b++)
            g->repack(packed_buf + (size_t)b * block, buf + (size_t)b * GEMM_ROWS * row_bytes,
                      (size_t)row_bytes, COLS);
        w.repacked = packed_buf;
    }
    *out = w;
}

static void test_matmul_equals_row_dots(void)
{
    const enum dtype types[] = {DTYPE_Q4_K, DTYPE_Q5_K, DTYPE_Q6_K, DTYPE_Q8_0, DTYPE_Q4_0,
                                DTYPE_Q4_1, DTYPE_F16,  DTYPE_BF16, DTYPE_F32};
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        enum dtype t = types[k];
        struct weight w;
        make_weight(&w, t, ROWS, true, data, packed);
        if (check_current_failed) return;
        struct weight plain = w; /* the same rows as stored */
        plain.repacked = NULL;
        check_matmul(&plain);
        if (w.repacked) { /* as model_repack leaves it: the whole blocks repacked */
            check_matmul(&w);
            /* views of some of its rows (an expert's slice of a stack): from a block boundary,
             * ending inside the repacked blocks or past them, and from elsewhere (all dotn) */
            const int64_t views[][2] = {{16, 32}, {32, 21}, {5, 40}};
            for (int v = 0; v < 3; v++) {
                struct weight view = weight_rows(&w, views[v][0], views[v][1]);
                CHECK((view.repacked != NULL) == (views[v][0] % GEMM_ROWS == 0),
                      "%s: view %d repacked %p", dtype_get(t)->name, v,
                      (const void *)view.repacked);
                check_matmul(&view);
            }
        }
    }
}

/* Sets as the forward pass makes them (q, k, v; gate, up): weights that share an encoding
 * in one pass, repacked or not, of different row counts; weights of different encodings
 * (each encoded in turn); and more weights than one pass takes. Every output equals
 * matmul's for that weight alone, bit for bit. */
static void test_matmul_set_equals_matmul(void)
{
    enum { W = 4 };
    static _Alignas(64) uint8_t bufs[W][ROWS * COLS * 4], packs[W][ROWS * COLS * 4];
    static float in[MAX_TOK * COLS], alone[MAX_TOK * ROWS], set_out[W][MAX_TOK * ROWS];
    const struct {
        enum dtype t[W];
        int rows[W];
        bool repack[W];
    } sets[] = {
        {{DTYPE_Q4_0, DTYPE_Q4_1, DTYPE_Q8_0, DTYPE_Q4_0}, {ROWS, 2 * GEMM_ROWS, GEMM_ROWS + 3, 9},
         {true, true, true, true}},
        {{DTYPE_Q8_0, DTYPE_Q4_0, DTYPE_Q8_0, DTYPE_Q4_1}, {ROWS, ROWS, 7, ROWS},
         {true, false, true, true}},
        {{DTYPE_Q4_K, DTYPE_Q6_K, DTYPE_Q4_K, DTYPE_Q5_K}, {ROWS, GEMM_ROWS, ROWS, ROWS},
         {true, true, false, true}},
        {{DTYPE_Q4_K, DTYPE_Q8_0, DTYPE_F16, DTYPE_Q4_K}, {ROWS, ROWS, ROWS, ROWS},
         {true, true, true, true}},
        {{DTYPE_F16, DTYPE_F16, DTYPE_BF16, DTYPE_F32}, {ROWS, GEMM_ROWS + 1, ROWS, ROWS},
         {true, false, true, true}},
    };
    int repacked = 0;
    for (size_t k = 0; k < sizeof sets / sizeof *sets; k++) {
        struct weight w[W];
        const struct weight *wp[W];
        float *outs[W];
        for (int i = 0; i < W; i++) {
            make_weight(&w[i], sets[k].t[i], sets[k].rows[i], sets[k].repack[i], bufs[i], packs[i]);
            if (check_current_failed) return;
            repacked += w[i].repacked != NULL;
            wp[i] = &w[i];
            outs[i] = set_out[i];
        }
        for (int n_w = 1; n_w <= W; n_w++)
            for (int n_tok = 1; n_tok <= MAX_TOK; n_tok++) {
                for (int i = 0; i < n_tok * COLS; i++) in[i] = next_f();
                memset(set_out, 0xff, sizeof set_out);
                matmul_set(pool, outs, wp, n_w, in, n_tok, act);
                for (int i = 0; i < n_w; i++) {
                    memset(alone, 0xff, sizeof alone);
                    matmul(pool, alone, wp[i], in, n_tok, act);
                    size_t n = (size_t)n_tok * (size_t)w[i].rows;
                    CHECK(memcmp(alone, set_out[i], n * sizeof(float)) == 0,
                          "set %zu, %d weights, %d tokens: weight %d (%s%s) differs from matmul", k,
                          n_w, n_tok, i, dtype_get(w[i].type)->name,
                          w[i].repacked ? " repacked" : "");
                }
            }
    }
    /* the blocks shared across a set's weights are only there where weights are repacked */
    if (cpu_best_isa() < ISA_AVX512)
        printf("test_matmul_set_equals_matmul: no AVX-512 here, no weight repacked: the "
               "shared-block path is not covered on this machine\n");
    else
        CHECK(repacked >= 15, "only %d weights repacked", repacked);
}

int main(void)
{
    pool = pool_new(THREADS);
    if (!pool) return 1;
    RUN(test_matmul_equals_row_dots);
    RUN(test_matmul_set_equals_matmul);
    pool_free(pool);
    return check_summary();
}
