/* Hugging Face model directories: config.json, safetensors weights (one file or shards named
 * by model.safetensors.index.json), tokenizer.json / vocab.txt / tokenizer_config.json and the
 * sentence-transformers pipeline (modules.json, 1_Pooling/config.json), presented as the
 * gguf_file llama.cpp's converter would write, so one model loader serves both formats.
 * Contract for src/safetensors/hf_dir.c and hf_tokenizer.c. */
#ifndef KILN_SAFETENSORS_HF_DIR_H
#define KILN_SAFETENSORS_HF_DIR_H

#include "gguf/gguf.h"
#include "gguf/gguf_build.h"

#include <jansson.h>
#include <stdbool.h>

/* True when path is a directory with a config.json. */
bool hf_is_model_dir(const char *path);

/* Reads the directory: architectures bert, llama / mistral and qwen2. Weights stay mapped
 * (F32, F16, BF16); llama's q/k rows are permuted into GGUF's rotary layout (a copy).
 * Fails with KILN_EIO / KILN_EFORMAT naming the file and field, KILN_EUNSUPP for an
 * architecture, dtype or tokenizer kiln does not read, or KILN_ENOMEM. */
kiln_status hf_dir_open(const char *dir, struct gguf_file **out, struct kiln_err *err);

/* Opens a model source: a Hugging Face directory as above, else a GGUF file (gguf_open). */
kiln_status model_source_open(const char *path, struct gguf_file **out, struct kiln_err *err);

/* Internal to hf_dir.c / hf_tokenizer.c: the tokenizer keys (tokenizer.ggml.*) from
 * tokenizer.json, or vocab.txt for BERT, with tokenizer_config.json's settings. */
kiln_status hf_tokenizer_keys(struct gguf_builder *b, const char *dir, bool bert,
                              struct kiln_err *err);
/* Reads dir/name as JSON: NULL when the file does not exist (*st KILN_OK) or cannot be
 * parsed (*st set, err naming the file, line and problem). */
json_t *hf_read_json(const char *dir, const char *name, kiln_status *st, struct kiln_err *err);

#endif
