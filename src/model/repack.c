/* Repacks matmul weights at load into their row GEMM's form (with AVX-512: the quantized
 * types and F16 / BF16 / F32, gemm_avx512.c), so that every matmul of them, decoding
 * included, runs one lane per output row from a layout streamed about as fast as the rows
 * themselves. Contract: model/model.h.
 *
 * The rows past the last whole block of GEMM_ROWS stay where they were (matmul takes them by
 * the row GEMM's single-row dot), as does every weight that also serves as a table of rows
 * (the token embedding: a tied output matrix is repacked, the embedding it shares bytes with
 * is not, and is read a row per token). The pages of a weight now wholly repacked are given
 * back, so the process does not hold both copies: a mapped GGUF file's to the page cache;
 * for a model built in memory (a Hugging Face directory: safetensors mappings and permuted
 * copies) they are paged out, which keeps their contents valid whatever memory they are. */
#include "model/model.h"

#include "base/log.h"
#include "base/pool.h"
#include "base/status.h"
#include "kernels/cpu/dot.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { LAYER_MATMULS = 10 };

/* A matmul weight, and how many slices matmul takes of it (a stack of experts: n_expert). */
struct matmul_weight {
    struct weight *w;
    int slices;
};

/* The matmul weights of a model: each layer's (the router, a handful of rows, is left to
 * dotn), then the output matrix. out holds n_layer * LAYER_MATMULS + 1. */
static void matmul_weights(struct model *m, struct matmul_weight *out)
{
    int n = 0, experts = m->hp.n_expert > 0 ? m->hp.n_expert : 1;
    for (int il = 0; il < m->hp.n_layer; il++) {
        struct layer *L = &m->layers[il];
        const struct matmul_weight layer[LAYER_MATMULS] = {{&L->wq, 1},
                                                           {&L->wk, 1},
                                                           {&L->wv, 1},
                                                           {&L->wo, 1},
                                                           {&L->ffn_gate, 1},
                                                           {&L->ffn_up, 1},
                                                           {&L->ffn_down, 1},
                                                           {&L->gate_exps, experts},
                                                           {&L->up_exps, experts},
                                                           {&L->down_exps, experts}};
        for (int k = 0; k < LAYER_MATMULS; k++) out[n++] = layer[k];
    }
    out[n] = (struct matmul_weight){&m->output, 1};
}

/* Whether a weight gets a repacked form: a stack of experts only when each expert's slice is
 * whole blocks (expert_slice in forward.c could not use it otherwise). */
static bool repackable(struct matmul_weight mw)
{
    const struct weight *w = mw.w;
    if (!w->data || !w->kern || !w->kern->gemm || w->rows < GEMM_ROWS) return false;
    return mw.slices == 1 || (w->rows / mw.slices) % GEMM_ROWS == 0;
}

struct repack_job {
    const struct weight *w;
    uint8_t *dst;
    size_t block_bytes;
};

static void repack_worker(void *ctx, int ith, int nth)
{
    const struct repack_job *j = ctx;
    int64_t blocks = j->w->rows / GEMM_ROWS;
    for (int64_t b = blocks * ith / nth; b < blocks * (ith + 1) / nth; b++)
        j->w->kern->gemm->repack(j->dst + (size_t)b * j->block_bytes,
                                 j->w->data + (size_t)b * GEMM_ROWS * j->w->row_bytes,
                                 j->w->row_bytes, j->w->cols);
}

/* Hands the whole pages inside a weight's bytes back: to a mapped GGUF file's page cache
 * (dropped, read again from the file if ever touched), or, for memory of any other kind,
 * paged out (MADV_PAGEOUT: file pages dropped, anonymous ones swapped if there is swap;
 * never lost). */
static void release_pages(const struct weight *w, bool mapped)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t)w->data + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)w->data + (size_t)w->rows * w->row_bytes) & ~(page - 1);
    if (end <= start) return;
    if (mapped) madvise((void *)start, end - start, MADV_DONTNEED);
#ifdef MADV_PAGEOUT
    else madvise((void *)start, end - start, MADV_PAGEOUT);
#endif
}

kiln_status model_repack(struct model *m, bool mapped, struct kiln_err *err)
{
    int n = m->hp.n_layer * LAYER_MATMULS + 1;
    struct matmul_weight *ws = malloc((size_t)n * sizeof *ws);
    if (!ws) return kiln_fail(err, KILN_ENOMEM, "out of memory repacking weights");
    matmul_weights(m, ws);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (repackable(ws[i]))
            total += (size_t)(ws[i].w->rows / GEMM_ROWS) *
                     ws[i].w->kern->gemm->repacked_bytes(ws[i].w->cols);
    if (total == 0) {
        free(ws);
        return KILN_OK;
    }
    /* 2 MiB aligned and asked for as transparent huge pages: fewer page faults while it is
     * written, and fewer TLB misses while decoding streams it */
    size_t huge = (size_t)2 << 20, bytes = (total + huge - 1) / huge * huge;
    uint8_t *arena = aligned_alloc(huge, bytes);
#ifdef MADV_HUGEPAGE
    if (arena) madvise(arena, bytes, MADV_HUGEPAGE);
#endif
    if (!arena) {
        free(ws);
        return kiln_fail(err, KILN_ENOMEM, "out of memory repacking %zu MiB of weights",
                         total >> 20);
    }
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        if (!repackable(ws[i])) continue;
        struct weight *w = ws[i].w;
        struct repack_job job = {w, arena + used, w->kern->gemm->repacked_bytes(w->cols)};
        pool_run(m->pool, repack_worker, &job);
        w->repacked = job.dst;
        used += (size_t)(w->rows / GEMM_ROWS) * job.block_bytes;
        /* a tied output's rows are the embedding too: given back all the same, the lookups
         * bring back only the pages of the tokens they read */
        if (w->rows % GEMM_ROWS == 0) release_pages(w, mapped);
    }
    free(ws);
    m->repacked_arena = arena;
    log_debug("repacked %zu MiB of matmul weights for the row GEMMs", total >> 20);
    return KILN_OK;
}
