/* GGUF v3 writer: metadata and tensor infos are declared first, then the tensor data is
 * streamed in declaration order. The file appears at its path only when finished (it is
 * written beside it and renamed), so a failed write leaves nothing half-written.
 * Contract for src/gguf/gguf_write.c. One thread per writer. */
#ifndef KILN_GGUF_WRITE_H
#define KILN_GGUF_WRITE_H

#include "gguf/gguf.h"

struct gguf_writer;

/* Creates the temporary file next to path. Fails with KILN_EIO or KILN_ENOMEM. */
kiln_status gguf_writer_open(const char *path, struct gguf_writer **out, struct kiln_err *err);

/* Declares metadata. Values are copied (strings and arrays included), so they may come
 * from a gguf_file that is closed before the writer. A key set twice keeps the last value. */
kiln_status gguf_writer_set(struct gguf_writer *w, const char *key, const struct gguf_value *v);
kiln_status gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
kiln_status gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v);

/* Declares a tensor; its data (exactly its row-size x rows bytes) comes later. */
kiln_status gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum dtype type,
                                   int n_dims, const int64_t *ne);

/* Writes the next declared tensor's data (all of it, in one call or several consecutive
 * calls of any size); the header is written before the first. */
kiln_status gguf_writer_write(struct gguf_writer *w, const void *data, uint64_t size);

/* Checks every tensor got all its bytes, flushes and renames into place. */
kiln_status gguf_writer_finish(struct gguf_writer *w);

/* Frees the writer; removes the temporary file unless finished. */
void gguf_writer_free(struct gguf_writer *w);

#endif
