/* Picks the dot kernel per weight type for this CPU, and encodes activations.
 * Contract: src/kernels/cpu/dot.h. */
#include "kernels/cpu/dot.h"

#include "tensor/quant.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static enum act_type act_for(enum dtype t)
{
    switch (t) {
    case DTYPE_Q4_0: case DTYPE_Q4_1: case DTYPE_Q5_0: case DTYPE_Q5_1: case DTYPE_Q8_0:
        return ACT_Q8A;
    case DTYPE_Q2_K: case DTYPE_Q3_K: case DTYPE_Q4_K: case DTYPE_Q5_K: case DTYPE_Q6_K:
        return ACT_Q8K;
    default:
        return ACT_F32;
    }
}

static enum cpu_isa best_isa;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

static void detect_isa(void)
{
    enum cpu_isa isa = ISA_REF;
    const char *force = getenv("KILN_ISA"); /* "ref" or "avx2" caps the choice, for tests */
    __builtin_cpu_init();
    unsigned eax, ebx, ecx = 0, edx;
    bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c)
        isa = ISA_AVX2;
    /* everything dot_avx512.c is built for (-mavx512f/bw/vl/dq/vnni) */
    if (isa == ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni"))
        isa = ISA_AVX512;
    if (force && strcmp(force, "ref") == 0) isa = ISA_REF;
    if (force && strcmp(force, "avx2") == 0 && isa > ISA_AVX2) isa = ISA_AVX2;
    best_isa = isa;
}

enum cpu_isa cpu_best_isa(void)
{
    pthread_once(&isa_once, detect_isa);
    return best_isa;
}

const char *cpu_isa_name(enum cpu_isa isa)
{
    static const char *const names[] = {"scalar", "avx2", "avx512"};
    return names[isa];
}

/* kernels[isa][type], resolved once: each ISA falls back to the one below it. */
static struct dot_kernel kernels[3][DTYPE_COUNT];
static pthread_once_t kernels_once = PTHREAD_ONCE_INIT;

static void resolve_kernels(void)
{
    const dot_fn *tables[3] = {dot_table_ref, dot_table_avx2, dot_table_avx512};
    /* a multi-column kernel goes with the single-column one of its own ISA only */
    const dotn_fn *ntables[3] = {NULL, dotn_table_avx2, dotn_table_avx512};
    const widen_fn *wtables[3] = {NULL, widen_table_avx2, NULL};
    for (int t = 0; t < DTYPE_COUNT; t++) {
        dot_fn fn = NULL;
        dotn_fn fnn = NULL, wide_dotn = NULL;
        widen_fn widen = NULL;
        for (int isa = 0; isa < 3; isa++) {
            if (tables[isa][t]) {
                fn = tables[isa][t];
                fnn = ntables[isa] ? ntables[isa][t] : NULL;
                widen = wtables[isa] ? wtables[isa][t] : NULL;
                wide_dotn = widen ? ntables[isa][DTYPE_F32] : NULL;
            }
            kernels[isa][t] = (struct dot_kernel){act_for((enum dtype)t), fn, fnn, widen, wide_dotn,
                                                  NULL, NULL, NULL};
            /* the rows form of the AVX2 dot goes only with that dot */
            if (isa >= ISA_AVX2 && fn == dot_table_avx2[t]) kernels[isa][t].rows = dot_rows_table_avx2[t];
            /* the AVX-512 float tile computes as the AVX2 F32 dot: only alongside it */
            bool float_type = t == DTYPE_F32 || t == DTYPE_F16 || t == DTYPE_BF16;
            if (isa == ISA_AVX512 && float_type && (t == DTYPE_F32 ? fnn != NULL : wide_dotn != NULL))
                kernels[isa][t].float_tile = tile_f32_avx512;
            /* the row GEMMs compute as their types' dots at AVX-512 do (gemm_avx512.c) */
            if (isa == ISA_AVX512) kernels[isa][t].gemm = row_gemm_table_avx512[t];
        }
    }
}

const struct dot_kernel *dot_kernel_at(enum dtype t, enum cpu_isa isa)
{
    pthread_once(&kernels_once, resolve_kernels);
    if ((unsigned)t >= DTYPE_COUNT || !kernels[isa][t].dot) return NULL;
    return &kernels[isa][t];
}

const struct dot_kernel *dot_kernel_for(enum dtype t)
{
    return dot_kernel_at(t, cpu_best_isa());
}

size_t act_row_bytes(enum act_type act, int64_t n)
{
    switch (act) {
    case ACT_Q8A: return (size_t)(n / QK) * sizeof(struct block_q8a);
    case ACT_Q8K: return (size_t)(n / QK_K) * sizeof(struct block_q8_k);
    default: return (size_t)n * sizeof(float);
    }
}

void act_encode(enum act_type act, void *dst, const float *x, int64_t n)
{
    switch (act) {
    case ACT_Q8A:
        if (cpu_best_isa() >= ISA_AVX2) quantize_row_q8a_avx2(dst, x, n);
        else quantize_row_q8a(dst, x, n);
        break;
    case ACT_Q8K:
        if (cpu_best_isa() >= ISA_AVX2) quantize_row_q8_k_avx2(dst, x, n);
        else quantize_row_q8_k(dst, x, n);
        break;
    default: memcpy(dst, x, (size_t)n * sizeof(float)); break;
    }
}

