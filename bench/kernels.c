/* Kernel microbenchmark: one thread, the dot kernels kiln picks for this CPU, per weight type.
 *
 *   build/bench_kernels [type ...]      (default: q4_0 q4_1 q8_0 q4_k q5_k q6_k f16)
 *
 * gemv: a 96 MiB weight matrix (more than any L3 here) of 2048-wide rows against one
 *       activation row, as decoding a token reads it (through the row GEMM from the rows
 *       repacked as at load, where the type has one; the dot otherwise): rows/s and GB/s of
 *       weights; then the same number of rows from a 512 KiB slice that stays in L2 (the
 *       kernel's compute speed: where the two are close, the kernel, not memory, limits
 *       decoding).
 * tile: 64 rows x 2048 against 64 activation rows (in cache), through the row GEMM or the
 *       float tile where the type has one (rows repacked, or F16 / BF16 rows widened to
 *       floats, first, as matmul does; the dotn kernel otherwise), as prompt processing runs:
 *       GMAC/s.
 * Best of 5 runs each. Use it to compare kernel changes A/B: whole-model numbers on a shared
 * machine move by 5 % from run to run; these move by about 1 %. */
#include "base/clock.h"
#include "kernels/cpu/dot.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 2048, TILE_M = 64, TILE_T = 64, RUNS = 5 };

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static volatile float sink; /* keeps the timed results alive */
static float next_float(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) & 0xffff) / 32768.0f - 1.0f;
}

static void *quantized_rows(enum dtype t, int rows, size_t row_bytes)
{
    char *w = malloc((size_t)rows * row_bytes);
    float x[N];
    /* a few distinct rows, copied: quantizing 96 MiB of K-quants takes too long */
    for (int r = 0; r < rows; r++) {
        if (r < 16) {
            for (int i = 0; i < N; i++) x[i] = next_float();
            quantize_row(t, w + (size_t)r * row_bytes, x, N);
        } else {
            memcpy(w + (size_t)r * row_bytes, w + (size_t)(r % 16) * row_bytes, row_bytes);
        }
    }
    return w;
}

static double best_seconds(double runs[RUNS])
{
    double best = runs[0];
    for (int i = 1; i < RUNS; i++)
        if (runs[i] < best) best = runs[i];
    return best;
}

static void bench_type(enum dtype t)
{
    const struct dot_kernel *k = dot_kernel_for(t);
    uint64_t row_bytes;
    if (!k || !dtype_row_bytes(t, N, &row_bytes)) {
        fprintf(stderr, "bench_kernels: no dot kernel for %s\n", dtype_get(t)->name);
        return;
    }
    size_t act_bytes = act_row_bytes(k->act, N);
    float x[N];
    char *act = malloc(act_bytes * TILE_T);
    for (int c = 0; c < TILE_T; c++) {
        for (int i = 0; i < N; i++) x[i] = next_float();
        act_encode(k->act, act + (size_t)c * act_bytes, x, N);
    }

    int gemv_rows = (int)((96u << 20) / row_bytes) / GEMM_ROWS * GEMM_ROWS;
    char *w = quantized_rows(t, gemv_rows, row_bytes);
    /* as matmul decodes: from the rows repacked at load where the type has a row GEMM */
    size_t block_bytes = k->gemm ? k->gemm->repacked_bytes(N) : 0;
    char *rp = k->gemm ? aligned_alloc(64, block_bytes * (size_t)(gemv_rows / GEMM_ROWS)) : NULL;
    for (int b = 0; k->gemm && b < gemv_rows / GEMM_ROWS; b++)
        k->gemm->repack(rp + (size_t)b * block_bytes, w + (size_t)b * GEMM_ROWS * row_bytes, row_bytes, N);
    double runs[RUNS];
    /* gemv over rows 0 .. gemv_rows - 1, taken modulo `span` rows (all of them: from memory;
     * 512 KiB of them: from L2, the kernel's own speed) */
    int hot_rows = (int)((512u << 10) / row_bytes) / GEMM_ROWS * GEMM_ROWS;
    double gemv = 0, hot = 0;
    for (int pass = 0; pass < 2; pass++) {
        int span = pass == 0 ? gemv_rows : hot_rows;
        for (int run = 0; run < RUNS; run++) {
            double t0 = clock_seconds();
            float s = 0, res[GEMM_ROWS];
            if (k->gemm) {
                for (int r = 0; r < gemv_rows; r += GEMM_ROWS) {
                    k->gemm->run(rp + (size_t)((r % span) / GEMM_ROWS) * block_bytes, act, act_bytes, 1,
                                 N, res, GEMM_ROWS);
                    s += res[0];
                }
            } else {
                for (int r = 0; r < gemv_rows; r++) s += k->dot(w + (size_t)(r % span) * row_bytes, act, N);
            }
            runs[run] = clock_seconds() - t0;
            sink += s;
        }
        *(pass == 0 ? &gemv : &hot) = best_seconds(runs);
    }
    free(rp);
    free(w);

    w = quantized_rows(t, TILE_M, row_bytes);
    float *out = malloc(sizeof(float) * TILE_M * TILE_T);
    float *wide = malloc(sizeof(float) * TILE_M * N);
    int float_cols = TILE_T / TILE_COLS * TILE_COLS;
    /* the float tile only where matmul would use it: without a row GEMM */
    for (int run = 0; k->float_tile && !k->gemm && run < RUNS; run++) {
        /* as matmul_float_rows does it: the rows widened once, then the float tile */
        double t0 = clock_seconds();
        for (int rep = 0; rep < 20; rep++) {
            const float *rows[TILE_M];
            for (int r = 0; r < TILE_M; r++) {
                rows[r] = t == DTYPE_F32 ? (const float *)(w + (size_t)r * row_bytes) : wide + (size_t)r * N;
                if (t != DTYPE_F32) k->widen(wide + (size_t)r * N, w + (size_t)r * row_bytes, N);
            }
            for (int c = 0; c < float_cols; c += TILE_COLS)
                for (int r = 0; r < TILE_M; r += TILE_ROWS)
                    k->float_tile(rows + r, act + (size_t)c * act_bytes, act_bytes, N,
                                  out + (size_t)c * TILE_M + r, TILE_M);
        }
        runs[run] = (clock_seconds() - t0) / 20 * TILE_T / float_cols;
        sink += out[0];
    }
    /* as matmul runs a batch: from the form repacked at load (here once, outside the timing) */
    size_t pb = k->gemm ? k->gemm->repacked_bytes(N) : 0;
    char *packed = k->gemm ? aligned_alloc(64, pb * (TILE_M / GEMM_ROWS)) : NULL;
    for (int r = 0; k->gemm && r < TILE_M; r += GEMM_ROWS)
        k->gemm->repack(packed + (size_t)(r / GEMM_ROWS) * pb, w + (size_t)r * row_bytes, row_bytes, N);
    for (int run = 0; k->gemm && run < RUNS; run++) {
        double t0 = clock_seconds();
        for (int rep = 0; rep < 20; rep++)
            for (int r = 0; r < TILE_M; r += GEMM_ROWS)
                k->gemm->run(packed + (size_t)(r / GEMM_ROWS) * pb, act, act_bytes, TILE_T, N, out + r, TILE_M);
        runs[run] = (clock_seconds() - t0) / 20;
        sink += out[0];
    }
    for (int run = 0; !k->float_tile && !k->gemm && run < RUNS; run++) {
        double t0 = clock_seconds();
        for (int rep = 0; rep < 20; rep++)
            for (int r = 0; r < TILE_M; r++)
                for (int c = 0; c < TILE_T; c += DOT_MAX_COLS) {
                    float res[DOT_MAX_COLS];
                    if (k->dotn) {
                        k->dotn(w + (size_t)r * row_bytes, act + (size_t)c * act_bytes, act_bytes, DOT_MAX_COLS, N, res);
                    } else {
                        for (int cc = 0; cc < DOT_MAX_COLS; cc++) /* per column, as matmul */
                            res[cc] = k->dot(w + (size_t)r * row_bytes, act + (size_t)(c + cc) * act_bytes, N);
                    }
                    for (int cc = 0; cc < DOT_MAX_COLS; cc++) out[(size_t)(c + cc) * TILE_M + r] = res[cc];
                }
        runs[run] = (clock_seconds() - t0) / 20;
        sink += out[0];
    }
    double tile = best_seconds(runs);
    printf("| %-5s | %-6s | %8.2f | %6.1f | %8.2f | %7.1f | %s |\n", dtype_get(t)->name,
           cpu_isa_name(cpu_best_isa()), gemv_rows / gemv / 1e6, gemv_rows * row_bytes / gemv / 1e9,
           gemv_rows / hot / 1e6,
           (double)TILE_M * TILE_T * N / tile / 1e9,
           k->gemm ? "row GEMM, repacked" : k->float_tile ? (t == DTYPE_F32 ? "float tile" : "widened, float tile") : "dotn");
    free(packed);
    free(wide);
    free(out);
    free(w);
    free(act);
}

int main(int argc, char **argv)
{
    const char *defaults[] = {"q4_0", "q4_1", "q8_0", "q4_k", "q5_k", "q6_k", "f16"};
    int n = argc > 1 ? argc - 1 : (int)(sizeof defaults / sizeof *defaults);
    printf("| type | isa | gemv Mrows/s | gemv GB/s | gemv from L2 Mrows/s | tile GMAC/s | batched kernel |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const char *name = argc > 1 ? argv[i + 1] : defaults[i];
        int t = dtype_parse(name);
        if (t < 0) {
            fprintf(stderr, "bench_kernels: unknown type '%s'\n", name);
            return 2;
        }
        bench_type((enum dtype)t);
    }
    return 0;
}
