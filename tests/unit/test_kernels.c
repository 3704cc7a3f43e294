/* Tests for dequantization and dot kernels: the scalar dot agrees with dequantize-then-
 * multiply, and every SIMD kernel agrees with the scalar one, on random blocks and sizes. */
#include "check.h"
#include "kernels/cpu/convert.h"
#include "kernels/cpu/dot.h"
#include "tensor/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float next_f(void)
{
    return (float)next_u32() / 2147483648.0f - 1.0f;
}

/* Offsets of the f16 scale fields in each block, so random bytes get sane scales. */
struct scale_fields {
    int offsets[2];
    int count;
};
static struct scale_fields scale_fields_of(enum dtype t)
{
    switch (t) {
    case DTYPE_Q4_0: case DTYPE_Q5_0: case DTYPE_Q8_0: return (struct scale_fields){{0}, 1};
    case DTYPE_Q4_1: case DTYPE_Q5_1: case DTYPE_Q4_K: case DTYPE_Q5_K:
        return (struct scale_fields){{0, 2}, 2};
    case DTYPE_Q2_K: return (struct scale_fields){{80, 82}, 2};
    case DTYPE_Q3_K: return (struct scale_fields){{108}, 1};
    case DTYPE_Q6_K: return (struct scale_fields){{208}, 1};
    default: return (struct scale_fields){{0}, 0};
    }
}

static void random_row(enum dtype t, uint8_t *w, int64_t n)
{
    const struct dtype_info *info = dtype_get(t);
    int64_t nb = n / info->block_elems;
    if (t == DTYPE_F32) {
        for (int64_t i = 0; i < n; i++) ((float *)w)[i] = next_f();
        return;
    }
    if (t == DTYPE_F16 || t == DTYPE_BF16) {
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)w)[i] = t == DTYPE_F16 ? f32_to_f16(next_f()) : f32_to_bf16(next_f());
        return;
    }
    for (int64_t i = 0; i < nb * info->block_bytes; i++) w[i] = (uint8_t)next_u32();
    struct scale_fields sf = scale_fields_of(t);
    for (int64_t b = 0; b < nb; b++)
        for (int k = 0; k < sf.count; k++) {
            f16_t d = f32_to_f16(0.01f + 0.02f * (next_f() + 1));
            memcpy(w + b * info->block_bytes + sf.offsets[k], &d, 2);
        }
}

/* Decodes encoded activations back to floats, so the reference sum uses the same inputs. */
static void act_decode(enum act_type act, float *x, const void *a, int64_t n)
{
    if (act == ACT_F32) {
        memcpy(x, a, (size_t)n * 4);
    } else if (act == ACT_Q8A) {
        const struct block_q8a *b = a;
        for (int64_t i = 0; i < n; i++) x[i] = b[i / QK].d * b[i / QK].qs[i % QK];
        for (int64_t i = 0; i < n / QK; i++) { /* the exact sum the row GEMMs rely on */
            int sum = 0;
            for (int j = 0; j < QK; j++) sum += b[i].qs[j];
            CHECK(sum == b[i].sum, "block %lld: sum %d, stored %d", (long long)i, sum, b[i].sum);
        }
    } else {
        dequantize_row(DTYPE_Q8_K, x, a, n);
    }
}

static const enum dtype weight_types[] = {
    DTYPE_F32,  DTYPE_F16,  DTYPE_BF16, DTYPE_Q4_0, DTYPE_Q4_1, DTYPE_Q5_0, DTYPE_Q5_1,
    DTYPE_Q8_0, DTYPE_Q2_K, DTYPE_Q3_K, DTYPE_Q4_K, DTYPE_Q5_K, DTYPE_Q6_K,
};

static void test_dot_ref_matches_dequantized_sum(void)
{
    static uint8_t w[4096 * 4];
    static float wf[4096], x[4096], xq[4096];
    static uint8_t a[4096 * 4];
    for (size_t k = 0; k < sizeof weight_types / sizeof *weight_types; k++) {
        enum dtype t = weight_types[k];
        const struct dot_kernel *ref = dot_kernel_at(t, ISA_REF);
        CHECK(ref, "no reference kernel for %s", dtype_get(t)->name);
        for (int64_t n = 256; n <= 4096; n *= 4) {
            random_row(t, w, n);
            for (int64_t i = 0; i < n; i++) x[i] = next_f();
            act_encode(ref->act, a, x, n);
            act_decode(ref->act, xq, a, n);
            CHECK(dequantize_row(t, wf, w, n), "dequantize %s", dtype_get(t)->name);
            double expect = 0, mag = 0;
            for (int64_t i = 0; i < n; i++) {
                expect += (double)wf[i] * xq[i];
                mag += fabs((double)wf[i] * xq[i]);
            }
            float got = ref->dot(w, a, n);
            CHECK(fabs(got - expect) <= 1e-4 * mag + 1e-6, "%s n=%lld: dot %g, dequantized %g",
                  dtype_get(t)->name, (long long)n, got, expect);
        }
    }
}

static void test_simd_dots_match_reference(void)
{
    static uint8_t w[8192 * 4], a[8192 * 4];
    static float x[8192];
    for (enum cpu_isa isa = ISA_AVX2; isa <= cpu_best_isa(); isa++) {
        for (size_t k = 0; k < sizeof weight_types / sizeof *weight_types; k++) {
            enum dtype t = weight_types[k];
            const struct dot_kernel *ref = dot_kernel_at(t, ISA_REF);
            const struct dot_kernel *simd = dot_kernel_at(t, isa);
            CHECK(simd && simd->act == ref->act, "%s: kernel missing", dtype_get(t)->name);
            int64_t sizes[] = {256, 512, 768, 2816, 8192};
            for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
                int64_t n = sizes[s];
                random_row(t, w, n);
                for (int64_t i = 0; i < n; i++) x[i] = next_f() * (i % 7 == 0 ? 20.f : 1.f);
                act_encode(ref->act, a, x, n);
                float r = ref->dot(w, a, n), v = simd->dot(w, a, n);
                CHECK(fabsf(r - v) <= 1e-4f * (fabsf(r) + (float)n * 0.01f), "%s %s n=%lld: %g vs %g",
                      cpu_isa_name(isa), dtype_get(t)->name, (long long)n, v, r);
                /* these follow the reference's float steps (simd.h): the same bits */
                if (t == DTYPE_Q4_K || t == DTYPE_Q5_K || t == DTYPE_Q6_K)
                    CHECK(memcmp(&r, &v, sizeof r) == 0, "%s %s n=%lld: %.9g vs reference %.9g",
                          cpu_isa_name(isa), dtype_get(t)->name, (long long)n, v, r);
            }
        }
    }
}

/* A multi-column kernel gives each column exactly (bit for bit) what the single-column dot
 * gives it: batching must never change a result. */
static void test_multi_column_dots_equal_single(void)
{
    enum { N = 2816 }; /* 11 K-quant super-blocks: the mins' groups of 8 end short */
    static uint8_t w[N * 4], a[DOT_MAX_COLS][N * 4];
    static float x[N];
    int checked = 0;
    for (size_t k = 0; k < sizeof weight_types / sizeof *weight_types; k++) {
        enum dtype t = weight_types[k];
        const struct dot_kernel *kern = dot_kernel_for(t);
        if (!kern || !kern->dotn) continue;
        random_row(t, w, N);
        for (int c = 0; c < DOT_MAX_COLS; c++) {
            for (int64_t i = 0; i < N; i++) x[i] = next_f() * (i % 5 == 0 ? 8.f : 1.f);
            act_encode(kern->act, a[c], x, N);
        }
        size_t stride = sizeof a[0];
        for (int nc = 1; nc <= DOT_MAX_COLS; nc++) {
            float out[DOT_MAX_COLS];
            kern->dotn(w, a[0], stride, nc, N, out);
            for (int c = 0; c < nc; c++) {
                float single = kern->dot(w, a[c], N);
                CHECK(memcmp(&single, &out[c], sizeof single) == 0, "%s nc=%d col %d: %.9g vs %.9g",
                      dtype_get(t)->name, nc, c, out[c], single);
            }
        }
        checked++;
    }
    CHECK(cpu_best_isa() == ISA_REF || checked >= 6, "only %d multi-column kernels", checked);
}

/* F16 / BF16 rows widened once and dotted with the F32 multi-column kernel give exactly what
 * the row's own dot gives, token by token, for lengths with and without a tail. */
static void test_widened_rows_equal_single_dots(void)
{
    static uint8_t w[2100 * 4];
    static float wide[2100], a[DOT_MAX_COLS][2100];
    const int64_t lengths[] = {2048, 2100 - 3, 37};
    const enum dtype types[] = {DTYPE_F16, DTYPE_BF16};
    int checked = 0;
    for (int k = 0; k < 2; k++) {
        const struct dot_kernel *kern = dot_kernel_for(types[k]);
        if (!kern || !kern->widen) continue;
        for (int l = 0; l < 3; l++) {
            int64_t n = lengths[l];
            random_row(types[k], w, n);
            for (int c = 0; c < DOT_MAX_COLS; c++)
                for (int64_t i = 0; i < n; i++) a[c][i] = next_f() * 4 - 2;
            kern->widen(wide, w, n);
            float out[DOT_MAX_COLS];
            kern->widened_dotn(wide, a[0], sizeof a[0], DOT_MAX_COLS, n, out);
            for (int c = 0; c < DOT_MAX_COLS; c++) {
                float single = kern->dot(w, a[c], n);
                CHECK(memcmp(&single, &out[c], sizeof single) == 0, "%s n=%lld col %d: %.9g vs %.9g",
                      dtype_get(types[k])->name, (long long)n, c, out[c], single);
            }
            checked++;
        }
    }
    CHECK(cpu_best_isa() == ISA_REF || checked == 6, "only %d widened cases", checked);
}

/* The AVX-512 float GEMM tile gives, for every (row, column), exactly the row type's own
 * single-token dot: F32 rows as they are, F16 / BF16 rows widened. */
static void test_float_tile_equals_single_dots(void)
{
    enum { N = 2100 - 5 }; /* a tail past the 16-wide steps */
    static uint8_t w[TILE_ROWS][N * 4];
    static float wide[TILE_ROWS][N], a[TILE_COLS][N];
    const enum dtype types[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    int checked = 0;
    for (int k = 0; k < 3; k++) {
        const struct dot_kernel *kern = dot_kernel_for(types[k]);
        if (!kern || !kern->float_tile) continue;
        const float *rows[TILE_ROWS];
        for (int r = 0; r < TILE_ROWS; r++) {
            random_row(types[k], w[r], N);
            if (kern->widen) kern->widen(wide[r], w[r], N);
            rows[r] = kern->widen ? wide[r] : (const float *)w[r];
        }
        for (int c = 0; c < TILE_COLS; c++)
            for (int64_t i = 0; i < N; i++) a[c][i] = next_f() * 4 - 2;
        float out[TILE_COLS][TILE_ROWS];
        kern->float_tile(rows, a[0], sizeof a[0], N, out[0], TILE_ROWS);
        for (int r = 0; r < TILE_ROWS; r++)
            for (int c = 0; c < TILE_COLS; c++) {
                float single = kern->dot(w[r], a[c], N);
                CHECK(memcmp(&single, &out[c][r], sizeof single) == 0, "%s row %d col %d: %.9g vs %.9g",
                      dtype_get(types[k])->name, r, c, out[c][r], single);
            }
        checked++;
    }
    CHECK(cpu_best_isa() < ISA_AVX512 || checked == 3, "only %d float tiles", checked);
}

/* The row GEMMs (row blocks repacked at load, one lane per row) give, for every (row,
 * token), exactly their single-row dot (the type's own for the quantized types), for every
 * token count (each count runs its own instance). */
static void test_row_gemms_equal_single_dots(void)
{
    /* 11 super-blocks, 88 blocks of 32 and 87 (an odd last block packs alone); token counts
     * to 19: past the 8 (16 for the 32-element types) of one pass */
    enum { N = 2816, TOKENS = 19 };
    static uint8_t w[GEMM_ROWS][N * 4], a[TOKENS][N * 4];
    static _Alignas(64) uint8_t packed[N * GEMM_ROWS * 4];
    static float x[N], out[TOKENS][GEMM_ROWS + 3];
    int checked = 0;
    for (size_t k = 0; k < sizeof weight_types / sizeof *weight_types; k++) {
        enum dtype t = weight_types[k];
        const struct dot_kernel *kern = dot_kernel_for(t);
        if (!kern || !kern->gemm) continue;
        /* N - 5: the float types' repacking ends with columns past a whole 64 bytes */
        const int64_t lengths[] = {N, N - 32, N - 5};
        for (int l = 0; l < 3; l++) {
            int64_t n = lengths[l];
            if (n % dtype_get(t)->block_elems) continue;
            if (kern->gemm->repacked_bytes(n) > sizeof packed) {
                CHECK(false, "%s: repacked size %zu", dtype_get(t)->name, kern->gemm->repacked_bytes(n));
                return;
            }
            for (int r = 0; r < GEMM_ROWS; r++) random_row(t, w[r], n);
            for (int c = 0; c < TOKENS; c++) {
                for (int64_t i = 0; i < n; i++) x[i] = next_f() * (i % 7 == 0 ? 8.f : 1.f) - 0.5f;
                act_encode(kern->act, a[c], x, n);
            }
            kern->gemm->repack(packed, w[0], sizeof w[0], n);
            for (int n_tok = 1; n_tok <= TOKENS; n_tok++) {
                memset(out, 0xff, sizeof out);
                kern->gemm->run(packed, a[0], sizeof a[0], n_tok, n, out[0], GEMM_ROWS + 3);
                for (int c = 0; c < n_tok; c++) {
                    for (int r = 0; r < GEMM_ROWS; r++) {
                        float single = row_gemm_dot(kern)(w[r], a[c], n);
                        CHECK(memcmp(&single, &out[c][r], sizeof single) == 0,
                              "%s n=%lld, %d tokens: row %d token %d: %.9g vs %.9g",
                              dtype_get(t)->name, (long long)n, n_tok, r, c, out[c][r], single);
                    }
                    CHECK(isnan(out[c][GEMM_ROWS]), "%s: wrote past the row block", dtype_get(t)->name);
                }
                /* a group of tokens rounded up would write the rows of tokens past n_tok */
                for (int c = n_tok; c < TOKENS; c++)
                    for (int r = 0; r < GEMM_ROWS; r++)
                        CHECK(isnan(out[c][r]), "%s, %d tokens: wrote token %d's row %d",
                              dtype_get(t)->name, n_tok, c, r);
            }
        }
        checked++;
    }
    CHECK(cpu_best_isa() < ISA_AVX512 || checked == 9, "only %d row GEMMs", checked);
}

/* The float row GEMMs' dot is what it says: fused multiply-add chains over the widened row's
 * even and odd columns in order, added (fmaf rounds as the hardware's does), and close to
 * the exact sum. */
static void test_float_gemm_dot_is_an_fma_chain(void)
{
    enum { N = 1001 }; /* odd: the even chain takes the last column */
    static uint8_t w[N * 4];
    static float x[N];
    const enum dtype types[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    int checked = 0;
    for (int k = 0; k < 3; k++) {
        const struct dot_kernel *kern = dot_kernel_for(types[k]);
        if (!kern->gemm) continue;
        random_row(types[k], w, N);
        for (int i = 0; i < N; i++) x[i] = next_f() * 4 - 2;
        float chain[2] = {0, 0};
        double exact = 0;
        for (int i = 0; i < N; i++) {
            float v = types[k] == DTYPE_F32   ? ((const float *)w)[i]
                      : types[k] == DTYPE_F16 ? f16_to_f32(((const f16_t *)w)[i])
                                              : bf16_to_f32(((const bf16_t *)w)[i]);
            chain[i % 2] = fmaf(v, x[i], chain[i % 2]);
            exact += (double)v * x[i];
        }
        float want = chain[0] + chain[1];
        float got = kern->gemm->dot(w, x, N);
        CHECK(memcmp(&want, &got, sizeof got) == 0, "%s: %.9g vs %.9g", dtype_get(types[k])->name,
              got, want);
        CHECK(fabs(got - exact) < 1e-4 * (1 + fabs(exact)), "%s: %.9g vs exact %.9g",
              dtype_get(types[k])->name, got, exact);
        checked++;
    }
    CHECK(cpu_best_isa() < ISA_AVX512 || checked == 3, "only %d float row GEMMs", checked);
}

/* The AVX2 activation encoders write exactly the scalar encoders' bytes (rounding ties,
 * zeros, large and tiny values, NaN and infinities included). */
static void test_q8a_encoders_agree(void)
{
    if (cpu_best_isa() < ISA_AVX2) return;
    enum { N = 32 * 64 };
    static float x[N];
    static struct block_q8a a[N / 32], b[N / 32];
    for (int i = 0; i < N; i++) x[i] = (next_f() - 0.5f) * (i % 97 == 0 ? 1e4f : 3.f);
    for (int i = 0; i < 32; i++) x[i] = 0;                 /* an all-zero block */
    for (int i = 32; i < 64; i++) x[i] = (float)(i - 48) * 0.5f; /* exact .5 ties */
    x[64 + 5] = NAN;                                        /* a block with NaN */
    x[96 + 7] = INFINITY;                                   /* one with infinity */
    for (int i = 128; i < 160; i++) x[i] = 1e-39f * (float)(i - 140); /* subnormal scale */
    for (int i = 160; i < 192; i++) x[i] = 1e-4f * (float)(i - 170); /* d a subnormal half */
    /* scales that round up to their half, where truncating would not: d = 300.75 x 2^-24
     * (a subnormal half), then d = 1 + 0.75 x 2^-10 */
    for (int i = 192; i < 256; i++) x[i] = 0;
    x[192] = 127.f * (300.75f * 0x1p-24f);
    x[224] = 127.f * (1.f + 0.75f * 0x1p-10f);
    quantize_row_q8a(a, x, N);
    quantize_row_q8a_avx2(b, x, N);
    CHECK(memcmp(a, b, sizeof a) == 0, "the AVX2 q8a encoding differs");
    /* the K-quants' encoder: ties of magnitude with both signs decide the scale's sign */
    static struct block_q8_k c[N / 256], d[N / 256];
    x[300] = 50.f;
    x[301] = -50.f; /* block 1: the first of largest magnitude is +50 */
    x[600] = -60.f;
    x[601] = 60.f;  /* block 2: -60 */
    memset(c, 0, sizeof c);
    memset(d, 0, sizeof d);
    quantize_row_q8_k(c, x, N);
    quantize_row_q8_k_avx2(d, x, N);
    CHECK(memcmp(c, d, sizeof c) == 0, "the AVX2 q8_k encoding differs");
}

/* The attention's row helpers: AVX2 versions equal the scalar ones bit for bit. */
static void test_attention_row_helpers(void)
{
    enum { N = 77 }; /* not a multiple of 8: the tails count too */
    f16_t h[N];
    float x[N], y1[N], y2[N];
    for (int i = 0; i < N; i++) {
        x[i] = next_f() * 4 - 2;
        h[i] = f32_to_f16(next_f() * 100 - 50);
        y1[i] = y2[i] = next_f();
    }
    if (cpu_best_isa() < ISA_AVX2) return;
    axpy_f32_ref(y1, 0.37f, x, N);
    axpy_f32_avx2(y2, 0.37f, x, N);
    CHECK(!memcmp(y1, y2, sizeof y1), "axpy_f32 differs");
    axpy_f16_ref(y1, -1.5f, h, N);
    axpy_f16_avx2(y2, -1.5f, h, N);
    CHECK(!memcmp(y1, y2, sizeof y1), "axpy_f16 differs");
    for (int i = 0; i < N; i++) y1[i] += x[i];
    add_avx2(y2, x, N);
    CHECK(!memcmp(y1, y2, sizeof y1), "add differs");
}

/* A KV block at a time: the rows forms of the key dot and of axpy give exactly what one
 * call per row gives (F16, F32 and Q8_0 rows of several head sizes with a stride, as heads in
 * a KV row; a Q8_0 row's one-row calls are the F32 ones on the row expanded by
 * dequantize_row, as the attention makes them without a rows form). */
static void test_attention_rows_forms_equal_row_calls(void)
{
    /* head sizes of real models (64, 128, 256) and ones with tails past the 64-value chunks
     * and past the 8-value vectors (not for Q8_0, whose heads are whole blocks) */
    enum { MAX_HD = 256, ROWS = 16, STRIDE = 3 * MAX_HD };
    static f16_t k16[ROWS * STRIDE];
    static float k32[ROWS * STRIDE], q[MAX_HD], w[ROWS], a[ROWS], b[ROWS], y1[MAX_HD], y2[MAX_HD],
        expanded[MAX_HD];
    static struct block_q8_0 k8[ROWS * STRIDE / QK];
    const int head_dims[] = {64, 72, 100, 128, 256};
    for (int i = 0; i < ROWS * STRIDE; i++) {
        k32[i] = next_f() * 2 - 1;
        k16[i] = f32_to_f16(k32[i]);
    }
    CHECK(quantize_row(DTYPE_Q8_0, k8, k32, ROWS * STRIDE), "quantize Q8_0 rows");
    for (int i = 0; i < MAX_HD; i++) q[i] = next_f() - 0.5f;
    for (int r = 0; r < ROWS; r++) w[r] = next_f();
    const enum dtype types[] = {DTYPE_F16, DTYPE_F32, DTYPE_Q8_0};
    int checked = 0;
    for (int k = 0; k < 3; k++) {
        bool q8 = types[k] == DTYPE_Q8_0;
        const struct dot_kernel *kern = dot_kernel_for(q8 ? DTYPE_F32 : types[k]);
        dot_rows_fn key_rows = key_rows_for_cpu(types[k]);
        axpy_rows_fn rows_axpy = axpy_rows_for_cpu(types[k]);
        if (!key_rows || !rows_axpy) continue;
        const void *base = q8 ? (const void *)k8
                           : types[k] == DTYPE_F16 ? (const void *)k16 : (const void *)k32;
        size_t stride = (size_t)dtype_get(types[k])->block_bytes * STRIDE /
                        (size_t)dtype_get(types[k])->block_elems;
        for (size_t d = 0; d < sizeof head_dims / sizeof *head_dims; d++) {
            int hd = head_dims[d];
            if (q8 && hd % QK) continue;
            key_rows(a, base, stride, ROWS, q, hd, 0.125f);
            /* a block cut short (the sequence's last positions) */
            float part[ROWS];
            key_rows(part, base, stride, ROWS - 3, q, hd, 0.125f);
            CHECK(!memcmp(a, part, sizeof(float) * (ROWS - 3)), "%s hd %d: a short block differs",
                  dtype_get(types[k])->name, hd);
            for (int i = 0; i < hd; i++) y1[i] = y2[i] = q[i]; /* a running sum, not zeros */
            rows_axpy(y1, w, base, stride, ROWS, hd);
            for (int r = 0; r < ROWS; r++) {
                const void *row = (const char *)base + (size_t)r * stride;
                if (q8) {
                    CHECK(dequantize_row(DTYPE_Q8_0, expanded, row, hd), "dequantize");
                    row = expanded;
                }
                b[r] = kern->dot(row, q, hd) * 0.125f;
                if (types[k] == DTYPE_F16) axpy_f16_for_cpu()(y2, w[r], row, hd);
                else axpy_f32_for_cpu()(y2, w[r], row, hd);
            }
            CHECK(!memcmp(a, b, sizeof a), "%s hd %d: key rows differ", dtype_get(types[k])->name, hd);
            CHECK(!memcmp(y1, y2, sizeof(float) * (size_t)hd), "%s hd %d: axpy rows differ",
                  dtype_get(types[k])->name, hd);
        }
        checked++;
    }
    CHECK(cpu_best_isa() == ISA_REF || checked == 3, "only %d rows forms", checked);
}

/* The transposed F16 key scores: every version gives the reference's bits (four fused
 * chains per score, added in pairs, then scaled), whatever the number of heads or the part of
 * the block a call takes, and the scores are the dot products they stand for (checked in
 * double precision). Head sizes of real models and ones that are not multiples of 8. */
static void test_transposed_key_scores(void)
{
    enum { P = KEY_BLOCK_POSITIONS, MAX_HD = 256, MAX_HEADS = 9, OUT_STRIDE = 40 };
    static f16_t kt[MAX_HD * P];
    static float q[MAX_HEADS * MAX_HD], ref[MAX_HEADS * OUT_STRIDE], got[MAX_HEADS * OUT_STRIDE];
    const int head_dims[] = {64, 72, 100, 128, 256};
    const struct { key_block_fn fn; enum cpu_isa isa; const char *name; } versions[] = {
        {key_block_f16t_avx2, ISA_AVX2, "avx2"}, {key_block_f16t_avx512, ISA_AVX512, "avx512"}};
    for (int i = 0; i < MAX_HD * P; i++) kt[i] = f32_to_f16(next_f() * 2);
    for (int i = 0; i < MAX_HEADS * MAX_HD; i++) q[i] = next_f();
    int compared = 0;
    for (size_t d = 0; d < sizeof head_dims / sizeof *head_dims; d++) {
        int hd = head_dims[d];
        for (int heads = 1; heads <= MAX_HEADS; heads++) {
            /* whole blocks, a sequence's last positions, a sliding window's first ones */
            const int parts[][2] = {{0, P}, {0, 1}, {0, 11}, {5, P}, {3, 9}, {P - 1, P}};
            for (size_t k = 0; k < sizeof parts / sizeof *parts; k++) {
                int s0 = parts[k][0], s1 = parts[k][1];
                memset(ref, 0, sizeof ref);
                key_block_f16t_ref(ref, OUT_STRIDE, kt, q, heads, hd, s0, s1, 0.125f);
                for (int h = 0; h < heads; h++)
                    for (int s = s0; s < s1; s++) {
                        double exact = 0;
                        for (int i = 0; i < hd; i++)
                            exact += (double)q[h * hd + i] * f16_to_f32(kt[i * P + s]);
                        exact *= 0.125;
                        float r = ref[h * OUT_STRIDE + s - s0];
                        CHECK(fabs(r - exact) <= 1e-5 * (1 + fabs(exact)),
                              "hd %d head %d position %d: %g, not %g", hd, h, s, r, exact);
                    }
                for (size_t v = 0; v < sizeof versions / sizeof *versions; v++) {
                    if (cpu_best_isa() < versions[v].isa) continue;
                    memset(got, 0, sizeof got);
                    versions[v].fn(got, OUT_STRIDE, kt, q, heads, hd, s0, s1, 0.125f);
                    /* all of out compared: nothing past s1 - s0 in a head's scores is written */
                    CHECK(!memcmp(got, ref, sizeof got), "%s: hd %d, %d heads, positions %d-%d",
                          versions[v].name, hd, heads, s0, s1);
                    compared++;
                }
            }
        }
    }
    CHECK(cpu_best_isa() < ISA_AVX2 || compared > 0, "no vector version compared");
}

/* The values of a KV head for several query heads at once: exactly what one rows call per
 * head adds (on running sums, not zeros), and what the scalar axpy adds row by row, for head
 * sizes with and without a tail past 64. Only where the CPU has the AVX-512 version. */
static void test_value_heads_equal_rows_per_head(void)
{
    enum { ROWS = KEY_BLOCK_POSITIONS, MAX_HD = 256, MAX_HEADS = 9, W_STRIDE = 21, STRIDE = 3 * MAX_HD };
    static f16_t x[ROWS * STRIDE];
    static float w[MAX_HEADS * W_STRIDE], y0[MAX_HEADS * MAX_HD], y1[MAX_HEADS * MAX_HD],
        y2[MAX_HEADS * MAX_HD];
    value_heads_fn heads_fn = value_heads_for_cpu(DTYPE_F16);
    if (!heads_fn) return; /* one rows call per head: nothing else to compare */
    const int head_dims[] = {64, 72, 100, 128, 256};
    for (int i = 0; i < ROWS * STRIDE; i++) x[i] = f32_to_f16(next_f() * 3);
    for (int i = 0; i < MAX_HEADS * W_STRIDE; i++) w[i] = next_f();
    for (size_t d = 0; d < sizeof head_dims / sizeof *head_dims; d++) {
        int hd = head_dims[d];
        for (int heads = 1; heads <= MAX_HEADS; heads++)
            for (int rows = 1; rows <= ROWS; rows += 5) {
                for (int i = 0; i < heads * hd; i++) y0[i] = y1[i] = y2[i] = next_f();
                heads_fn(y1, w, W_STRIDE, x, STRIDE * sizeof(f16_t), rows, heads, hd);
                for (int h = 0; h < heads; h++)
                    axpy_f16_rows_avx2(y2 + h * hd, w + h * W_STRIDE, x, STRIDE * sizeof(f16_t),
                                       rows, hd);
                CHECK(!memcmp(y1, y2, sizeof(float) * (size_t)(heads * hd)),
                      "hd %d, %d heads, %d rows", hd, heads, rows);
                for (int i = 0; i < heads * hd; i++) y2[i] = y0[i];
                for (int h = 0; h < heads; h++)
                    for (int r = 0; r < rows; r++)
                        axpy_f16_ref(y2 + h * hd, w[h * W_STRIDE + r], x + r * STRIDE, hd);
                CHECK(!memcmp(y1, y2, sizeof(float) * (size_t)(heads * hd)),
                      "hd %d, %d heads, %d rows: not the scalar sums", hd, heads, rows);
            }
    }
}

/* The F16C row conversion gives f32_to_f16's half for every input but NaN (which stays a
 * NaN): random bit patterns over the whole float range, ties, subnormals, overflow. */
static void test_f16_rows_equal_f32_to_f16(void)
{
    if (cpu_best_isa() < ISA_AVX2) return;
    enum { N = 1 << 16 };
    static float x[N];
    static f16_t got[N];
    uint32_t r = 0x12345678u;
    for (int i = 0; i < N; i++) {
        r = r * 1664525u + 1013904223u;
        uint32_t bits = r;
        if (i % 4 == 1) bits = (r & 0x8000e000u) | 0x38000000u | ((r >> 8) & 0x7ff) << 13; /* near halves' subnormals */
        if (i % 4 == 2) bits = (r & 0x807fe000u) | 0x47000000u | 0x1000u; /* ties near the top */
        memcpy(&x[i], &bits, 4);
    }
    x[0] = 65504.f, x[1] = 65520.f, x[2] = -65519.99f, x[3] = 5.9604645e-8f, x[4] = 2.9802322e-8f;
    x[5] = INFINITY, x[6] = -0.0f, x[7] = 1e-45f;
    f32_to_f16_row_avx2(got, x, N - 3); /* a tail past the 8-wide steps */
    int bad = 0;
    for (int i = 0; i < N - 3; i++) {
        f16_t want = f32_to_f16(x[i]);
        if (isnan(x[i])) bad += (got[i] & 0x7c00) != 0x7c00 || !(got[i] & 0x3ff);
        else bad += got[i] != want;
    }
    CHECK(bad == 0, "%d of %d halves differ", bad, N - 3);
}

/* The vectorized softmax agrees with a double-precision one to a few float ulps, over short
 * and long rows, tails, wide ranges (exp underflows to 0) and a single element. */
static void test_softmax_is_accurate(void)
{
    if (cpu_best_isa() < ISA_AVX2) return;
    static float x[2053];
    const int lengths[] = {1, 7, 64, 2053};
    for (int k = 0; k < 4; k++) {
        int n = lengths[k];
        for (int i = 0; i < n; i++) x[i] = (next_f() - 0.5f) * (k == 3 ? 200.f : 20.f);
        double max = x[0], sum = 0, want[2053];
        for (int i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
        /* the difference is a float in both (as in the scalar softmax): compare from there */
        for (int i = 0; i < n; i++) sum += want[i] = exp((double)(float)(x[i] - (float)max));
        softmax_avx2(x, n);
        double worst = 0;
        for (int i = 0; i < n; i++) {
            double w = want[i] / sum, err = fabs(x[i] - w) / (w > 1e-30 ? w : 1e-30);
            if (w > 1e-30 && err > worst) worst = err;
        }
        CHECK(worst < 2e-6, "n=%d: relative error %.3g", n, worst);
    }
}

/* rmsnorm's AVX2 steps: the sum of squares is the scalar double sum's to within rounding and
 * the scaling the scalar expression's bit for bit (in place too), over tails and lengths of
 * real models' rows. */
static void test_rmsnorm_steps_match_the_scalar_ones(void)
{
    if (cpu_best_isa() < ISA_AVX2) return;
    static float x[2053], w[2053], out[2053], expect[2053];
    const int lengths[] = {1, 7, 8, 576, 2053};
    for (int k = 0; k < 5; k++) {
        int n = lengths[k];
        double want = 0;
        for (int i = 0; i < n; i++) {
            x[i] = (next_f() - 0.5f) * (i % 7 ? 3.f : 300.f);
            want += (double)x[i] * x[i];
        }
        double got = sum_squares_avx2(x, n);
        CHECK(fabs(got - want) <= 1e-13 * want, "n=%d: %.17g vs %.17g", n, got, want);
        /* the scaling after it: rmsnorm's scalar expression, in place too */
        float scale = (float)(1.0 / sqrt(want / n + 1e-5));
        for (int i = 0; i < n; i++) {
            w[i] = next_f() * 2;
            expect[i] = x[i] * scale * w[i];
        }
        scale_mul_avx2(out, x, scale, w, n);
        scale_mul_avx2(x, x, scale, w, n);
        CHECK(!memcmp(out, expect, sizeof(float) * (size_t)n), "n=%d: scaled values differ", n);
        CHECK(!memcmp(x, expect, sizeof(float) * (size_t)n), "n=%d: in place, they differ", n);
    }
}

/* The vectorized SwiGLU agrees with a double-precision silu(g) * u to a few float ulps, over
 * gates from -120 to 120 (e^-x overflows a float in the scalar form), zero, a tail, and
 * exactly where the scalar form gives -0 or x. */
static void test_swiglu_is_accurate(void)
{
    if (cpu_best_isa() < ISA_AVX2) return;
    enum { N = 1003 };
    static float g[N], u[N];
    double want[N];
    for (int i = 0; i < N; i++) {
        g[i] = i == 0 ? 0.0f : i == 1 ? -120.f : i == 2 ? 120.f : (next_f() - 0.5f) * (i % 3 ? 16.f : 200.f);
        u[i] = next_f() * 4 - 2;
        want[i] = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    }
    swiglu_avx2(g, u, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double err = fabs(g[i] - want[i]) / (fabs(want[i]) > 1e-30 ? fabs(want[i]) : 1e-30);
        if (fabs(want[i]) > 1e-30 && err > worst) worst = err;
        if (fabs(want[i]) <= 1e-30) CHECK(fabs(g[i]) <= 1e-30, "value %d: %g for %g", i, g[i], want[i]);
    }
    CHECK(worst < 2e-6, "relative error %.3g", worst);
}

static void test_f16_conversion_roundtrips(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* nan */
        float f = f16_to_f32((f16_t)h);
        CHECK(f32_to_f16(f) == h, "half %#x -> %g -> %#x", h, f, f32_to_f16(f));
    }
    CHECK(f32_to_f16(65520.0f) == 0x7c00, "overflow rounds to inf");
    CHECK(f32_to_f16(1.0f + 1.0f / 4096) == 0x3c00, "ties to even");
    CHECK(bf16_to_f32(f32_to_bf16(1.5f)) == 1.5f, "bf16 roundtrip");
}

static void test_q8_0_quantize_roundtrip_is_close(void)
{
    float x[256], y[256];
    struct block_q8_0 q[8];
    for (int i = 0; i < 256; i++) x[i] = next_f();
    CHECK(quantize_row(DTYPE_Q8_0, q, x, 256), "quantize");
    dequantize_row(DTYPE_Q8_0, y, q, 256);
    for (int i = 0; i < 256; i++) CHECK(fabsf(x[i] - y[i]) < 0.005f, "element %d", i);
}

/* The word-parallel unpacker gives what k4_scale_min gives, scale by scale, for random packed
 * bytes (every bit pattern of the 12 bytes is a valid super-block header). */
static void test_k4_unpack_scales_equals_scale_min(void)
{
    for (int trial = 0; trial < 100000; trial++) {
        uint8_t q[12], sc[8], mn[8];
        for (int b = 0; b < 12; b++) q[b] = (uint8_t)next_u32();
        k4_unpack_scales(q, sc, mn);
        for (int j = 0; j < 8; j++) {
            uint8_t s, m;
            k4_scale_min(j, q, &s, &m);
            CHECK(sc[j] == s && mn[j] == m, "trial %d sub-block %d: %u/%u vs %u/%u", trial, j,
                  sc[j], mn[j], s, m);
        }
    }
}

/* Every weight quantizer on awkward blocks: all zero, constant, one outlier, all negative,
 * tiny and huge magnitudes. The result must decode to finite values within the error the
 * format allows (a fraction of the super-block's range), and zeros must stay zeros. */
static void test_weight_quantizers_on_edge_blocks(void)
{
    static const enum dtype types[] = {DTYPE_Q8_0, DTYPE_Q4_0, DTYPE_Q4_1, DTYPE_Q5_0,
                                       DTYPE_Q5_1, DTYPE_Q4_K, DTYPE_Q5_K, DTYPE_Q6_K};
    /* Largest error as a fraction of max|x| (or of max-min for the offset types). */
    static const float max_rel_err[] = {0.005f, 0.08f, 0.04f, 0.04f, 0.02f, 0.1f, 0.05f, 0.03f};
    enum { N = 512 };
    float x[N], y[N];
    uint8_t q[N * 2];
    for (int shape = 0; shape < 7; shape++) {
        for (int i = 0; i < N; i++) {
            float r = next_f() * 2 - 1;
            switch (shape) {
            case 0: x[i] = 0; break;
            case 1: x[i] = 0.75f; break;
            case 2: x[i] = (i % 97 == 5) ? 40.0f : r * 0.01f; break;
            case 3: x[i] = -1.0f - fabsf(r); break;
            case 4: x[i] = r * 1e-6f; break;
            case 5: x[i] = r * 3000.0f; break;
            default: x[i] = r; break;
            }
        }
        float lo = x[0], hi = x[0], amax = 0;
        for (int i = 0; i < N; i++) {
            lo = fminf(lo, x[i]);
            hi = fmaxf(hi, x[i]);
            amax = fmaxf(amax, fabsf(x[i]));
        }
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            enum dtype t = types[k];
            CHECK(quantize_row(t, q, x, N), "quantize %s", dtype_get(t)->name);
            CHECK(dequantize_row(t, y, q, N), "dequantize %s", dtype_get(t)->name);
            /* A block mixing an outlier with small values is bounded by the outlier. */
            float span = fmaxf(amax, hi - lo);
            for (int i = 0; i < N; i++) {
                CHECK(isfinite(y[i]), "%s shape %d: element %d not finite", dtype_get(t)->name,
                      shape, i);
                if (shape == 0) CHECK(y[i] == 0, "%s: zero became %g", dtype_get(t)->name, y[i]);
                /* F16 scales cannot hold steps below ~6e-8: tiny blocks may flush to 0. */
                CHECK(fabsf(y[i] - x[i]) <= max_rel_err[k] * span + 1e-5f,
                      "%s shape %d: element %d: %g decoded as %g", dtype_get(t)->name, shape, i,
                      x[i], y[i]);
            }
        }
    }
}

int main(void)
{
    RUN(test_f16_conversion_roundtrips);
    RUN(test_dot_ref_matches_dequantized_sum);
    RUN(test_simd_dots_match_reference);
    RUN(test_multi_column_dots_equal_single);
    RUN(test_widened_rows_equal_single_dots);
    RUN(test_float_tile_equals_single_dots);
    RUN(test_row_gemms_equal_single_dots);
    RUN(test_float_gemm_dot_is_an_fma_chain);
    RUN(test_q8a_encoders_agree);
    RUN(test_attention_row_helpers);
    RUN(test_attention_rows_forms_equal_row_calls);
    RUN(test_transposed_key_scores);
    RUN(test_value_heads_equal_rows_per_head);
    RUN(test_f16_rows_equal_f32_to_f16);
    RUN(test_softmax_is_accurate);
    RUN(test_rmsnorm_steps_match_the_scalar_ones);
    RUN(test_swiglu_is_accurate);
    RUN(test_q8_0_quantize_roundtrip_is_close);
    RUN(test_k4_unpack_scales_equals_scale_min);
    RUN(test_weight_quantizers_on_edge_blocks);
    printf("kernels tested up to %s\n", cpu_isa_name(cpu_best_isa()));
    return check_summary();
}
