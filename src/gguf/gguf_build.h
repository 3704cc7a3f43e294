/* Builds a gguf_file in memory, for models that come in another format (a Hugging Face
 * directory): metadata as llama.cpp's converter would write it and tensors that point into
 * memory someone else maps. The result reads exactly like an opened file.
 * Contract for src/gguf/gguf_build.c. One thread per builder. */
#ifndef KILN_GGUF_BUILD_H
#define KILN_GGUF_BUILD_H

#include "gguf/gguf.h"

struct gguf_builder;

/* path names the model in messages (the directory). NULL when out of memory. */
struct gguf_builder *gguf_builder_new(const char *path);
/* Frees a builder that was not finished, and everything it was given to own. */
void gguf_builder_free(struct gguf_builder *b);

/* Metadata; strings and arrays are copied. A key set twice keeps the last value.
 * Each returns false when out of memory (the builder then fails at finish). */
bool gguf_builder_str(struct gguf_builder *b, const char *key, const char *s, size_t len);
bool gguf_builder_u32(struct gguf_builder *b, const char *key, uint32_t v);
bool gguf_builder_f32(struct gguf_builder *b, const char *key, float v);
bool gguf_builder_bool(struct gguf_builder *b, const char *key, bool v);
bool gguf_builder_str_array(struct gguf_builder *b, const char *key, const char *const *s,
                            const size_t *lens, uint64_t n);
bool gguf_builder_i32_array(struct gguf_builder *b, const char *key, const int32_t *v, uint64_t n);
bool gguf_builder_f32_array(struct gguf_builder *b, const char *key, const float *v, uint64_t n);

/* A tensor with GGUF's dimension order (ne[0] contiguous) whose size bytes are at data,
 * which must outlive the file (hand its owner to gguf_builder_own). */
bool gguf_builder_tensor(struct gguf_builder *b, const char *name, enum dtype type, int n_dims,
                         const int64_t *ne, const void *data, uint64_t size);
/* Has release(p) called when the built file is closed (or the builder freed). */
bool gguf_builder_own(struct gguf_builder *b, void *p, void (*release)(void *));

/* Checks tensor sizes against type x shape and duplicate names, indexes keys and tensors,
 * and hands over the file (the builder is freed either way). Fails with KILN_EFORMAT
 * naming the tensor, or KILN_ENOMEM. */
kiln_status gguf_builder_finish(struct gguf_builder *b, struct gguf_file **out,
                                struct kiln_err *err);

#endif
