/* Dot products of one weight row (any readable type) with one activation row, and the
 * table that picks the fastest implementation for this CPU once at start-up.
 * Contract for src/kernels/cpu/dot.c, dot_ref.c, dot_avx2.c. Pure functions; any thread. */
#ifndef KILN_KERNELS_CPU_DOT_H
#define KILN_KERNELS_CPU_DOT_H

#include "tensor/dtype.h"

#include <stddef.h>
#include <stdint.h>

/* How activations are encoded for a weight type's dot product. */
enum act_type {
    ACT_F32, /* plain floats (F32, F16, BF16 weights) */
    ACT_Q8A, /* struct block_q8a per 32 (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 weights) */
    ACT_Q8K, /* struct block_q8_k per 256 (K-quant weights) */
};

/* w: one row of n weights; a: the same n activations encoded as act. */
typedef float (*dot_fn)(const void *w, const void *a, int64_t n);

/* Dots of one weight row with n_cols (<= DOT_MAX_COLS) activation rows at a, a + stride,
 * ...: out[c]. Each column's arithmetic is exactly dot's on that row alone, so a result
 * never depends on what else is in the batch. */
#define DOT_MAX_COLS 4
typedef void (*dotn_fn)(const void *w, const void *a, size_t stride, int n_cols, int64_t n,
                        float *out);

/* out[r] = dot(row r, a) * scale for rows rows stride bytes apart (the attention's scores
 * over a KV block), each exactly as dot computes it. */
typedef void (*dot_rows_fn)(float *out, const void *w, size_t stride, int rows, const void *a,
                            int64_t n, float scale);

/* Converts n weights of a row to floats. */
typedef void (*widen_fn)(float *dst, const void *src, int64_t n);

/* A GEMM tile for float rows: out[c * out_stride + r] = dot(w[r], activation row c) for
 * TILE_ROWS rows and TILE_COLS activation rows at a, a + stride, ...; each output exactly as
 * the F32 dot of the same build computes it. */
#define TILE_ROWS 4
#define TILE_COLS 6
typedef void (*dot_tile_fn)(const float *const *w, const void *a, size_t stride, int64_t n,
                            float *out, size_t out_stride);

/* Rows with one SIMD lane per output row (gemm_avx512.c): GEMM_ROWS rows w, w + row_bytes,
 * ... are repacked once (at load: repack writes repacked_bytes(n) bytes, a multiple of 64,
 * to a 64-byte aligned destination; about the rows' own size), then run against n_tok
 * activation rows at a, a + stride, ...: out[t * out_stride + r] for r < GEMM_ROWS, each
 * exactly dot(row r, activation row t) for any n_tok, one (decoding) included. dot is the
 * type's own dot for the quantized types (NULL here), and for F16 / BF16 / F32 two fused
 * multiply-add chains over the row's even and odd columns in order, added. */
#define GEMM_ROWS 16
struct row_gemm {
    size_t (*repacked_bytes)(int64_t n);
    void (*repack)(void *packed, const void *w, size_t row_bytes, int64_t n);
    void (*run)(const void *packed, const void *a, size_t stride, int n_tok, int64_t n,
                float *out, size_t out_stride);
    dot_fn dot; /* NULL: the type's own dot */
};

struct dot_kernel {
    enum act_type act;
    dot_fn dot;
    dotn_fn dotn;   /* NULL: call dot per column */
    /* F16 / BF16 rows for several tokens: widen the row once, then widened_dotn (the F32
     * multi-column dot of the same ISA, whose arithmetic equals dot's on the widened row) */
    widen_fn widen;
    dotn_fn widened_dotn;
    /* F32, F16, BF16 with AVX-512, weights not repacked: full tiles of float rows (edges use
     * widened_dotn / dotn) */
    dot_tile_fn float_tile;
    /* F32 / F16 rows of one activation row, with dot's own arithmetic (NULL: loop dot) */
    dot_rows_fn rows;
    /* rows with AVX-512 (VNNI for the quantized types): every matmul of weights repacked at
     * load (the rows past the last block of GEMM_ROWS use the gemm's dot, or dotn where that
     * is the type's own) */
    const struct row_gemm *gemm;
};

/* The single-row function every output of k's row GEMM equals. */
static inline dot_fn row_gemm_dot(const struct dot_kernel *k)
{
    return k->gemm->dot ? k->gemm->dot : k->dot;
}

enum cpu_isa { ISA_REF, ISA_AVX2, ISA_AVX512 };

/* The kernel for weight type t at the best ISA this CPU has (or at most max_isa, for tests),
 * or NULL for a type with no dot product. */
const struct dot_kernel *dot_kernel_for(enum dtype t);
const struct dot_kernel *dot_kernel_at(enum dtype t, enum cpu_isa isa);
enum cpu_isa cpu_best_isa(void);
const char *cpu_isa_name(enum cpu_isa isa);

/* Bytes of n activations encoded as act (n a multiple of its block). */
size_t act_row_bytes(enum act_type act, int64_t n);
/* Encodes n floats as act into dst (act_row_bytes bytes), with the best ISA (every ISA
 * writes the same bytes). */
void act_encode(enum act_type act, void *dst, const float *x, int64_t n);
struct block_q8a;
struct block_q8_k;
void quantize_row_q8a_avx2(struct block_q8a *y, const float *x, int64_t n);
void quantize_row_q8_k_avx2(struct block_q8_k *y, const float *x, int64_t n);

/* The per-ISA tables, filled with designated initializers; NULL entries fall back. */
extern const dot_fn dot_table_ref[DTYPE_COUNT];
extern const dot_fn dot_table_avx2[DTYPE_COUNT];
extern const dot_fn dot_table_avx512[DTYPE_COUNT];
extern const dotn_fn dotn_table_avx2[DTYPE_COUNT];
extern const widen_fn widen_table_avx2[DTYPE_COUNT];
extern const dot_rows_fn dot_rows_table_avx2[DTYPE_COUNT];
/* AVX-512 has its own single-row dots only where its row GEMMs need other steps than the
 * AVX2 dot takes (Q4_0, Q4_1); the other types fall back to AVX2. */
extern const dotn_fn dotn_table_avx512[DTYPE_COUNT];
extern const dot_tile_fn tile_f32_avx512;
extern const struct row_gemm *const row_gemm_table_avx512[DTYPE_COUNT];

#endif
