/* The pre-tokenizer regexes of each tokenizer.ggml.pre name, as the models' Hugging Face
 * tokenizers define them (the same lists llama.cpp uses). Contract for pretok_regex.c. */
#ifndef KILN_TOKENIZER_PRETOK_REGEX_H
#define KILN_TOKENIZER_PRETOK_REGEX_H

#include <stdbool.h>

#define PRETOK_MAX_REGEX 8

struct pretok {
    const char *const *names; /* NULL-terminated tokenizer.ggml.pre values */
    const char *regex[PRETOK_MAX_REGEX]; /* applied in order; NULL-terminated */
    bool ignore_merges;       /* a piece that is itself a token is emitted whole */
    bool add_bos;             /* default when the file has no add_bos_token key */
};

/* The pre-tokenizer called name, or NULL. */
const struct pretok *pretok_find(const char *name);

#endif
