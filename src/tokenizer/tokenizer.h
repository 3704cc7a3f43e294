/* Vocabulary and tokenizers read from GGUF metadata: SentencePiece-style (spm.c), byte-level
 * BPE with regex pre-tokenizers (bpe.c) and BERT's WordPiece (wordpiece.c); special tokens
 * split out first. Contract for src/tokenizer/vocab.c, spm.c, bpe.c, wordpiece.c. Read-only after load: any thread. */
#ifndef KILN_TOKENIZER_H
#define KILN_TOKENIZER_H

#include "base/strmap.h"
#include "gguf/gguf.h"
#include "kiln.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vocab_type { VOCAB_SPM, VOCAB_BPE, VOCAB_WPM };

/* GGUF tokenizer.ggml.token_type values. */
enum token_kind {
    TOKEN_NORMAL = 1,
    TOKEN_UNKNOWN = 2,
    TOKEN_CONTROL = 3,
    TOKEN_USER_DEFINED = 4,
    TOKEN_UNUSED = 5,
    TOKEN_BYTE = 6,
};

#define MAX_PRE_REGEX 8
#define MAX_EOG 16

struct vocab {
    enum vocab_type type;
    int32_t n;
    struct gguf_str *text;    /* [n] token text, inside the GGUF mapping */
    float *scores;            /* [n] SPM merge scores */
    uint8_t *kind;            /* [n] enum token_kind */
    struct strmap by_text;    /* text -> id */
    struct strmap merges;     /* BPE: "left right" -> rank */
    int32_t bos, eos, eot, eom, unk, pad; /* -1 when absent */
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    bool lowercase;           /* WordPiece: lowercase and strip accents (uncased models) */
    int32_t byte_token[256];  /* SPM byte fallback <0xXX>, or the BPE token of each byte */
    int32_t *specials;        /* ids of control/user-defined tokens, longest text first */
    int32_t n_specials;
    int32_t eog[MAX_EOG];     /* tokens that end generation */
    int n_eog;
    void *pre_regex[MAX_PRE_REGEX]; /* pcre2_code *, BPE pre-tokenizer, applied in order */
    int n_pre_regex;
    char pre_name[32];
};

/* Reads the vocabulary from GGUF metadata. Fails with KILN_EFORMAT naming the key (arrays of
 * different lengths, ids out of range) or KILN_EUNSUPP (an unknown tokenizer model or
 * pre-tokenizer). The vocab points into g, which must outlive it. */
kiln_status vocab_load(struct vocab *v, const struct gguf_file *g, struct kiln_err *err);
void vocab_free(struct vocab *v);

/* Tokenizes text. Writes up to cap ids, returns the total count (which may exceed cap),
 * or -1 when out of memory. */
int64_t vocab_tokenize(const struct vocab *v, const char *text, size_t len, bool add_special,
                       bool parse_special, int32_t *ids, size_t cap);

/* The bytes of one token: SPM's U+2581 becomes a space and <0xXX> its byte, BPE's byte
 * characters are decoded; control tokens are empty unless render_special.
 * Returns the length, or -needed when cap is too small. */
int vocab_piece(const struct vocab *v, int32_t id, bool render_special, char *buf, size_t cap);

bool vocab_is_eog(const struct vocab *v, int32_t id);

/* Internal, shared by the tokenizers: append one id to an output buffer that grows. */
struct tok_out {
    int32_t *ids;
    size_t n, cap;
    bool oom;
};
void tok_push(struct tok_out *o, int32_t id);
/* space_prefix: tokenize as if text started with a space (SentencePiece's dummy prefix). */
void spm_tokenize(const struct vocab *v, const char *text, size_t len, bool space_prefix,
                  struct tok_out *out);
void bpe_tokenize(const struct vocab *v, const char *text, size_t len, struct tok_out *out);
void wpm_tokenize(const struct vocab *v, const char *text, size_t len, struct tok_out *out);
/* The bytes a BPE token stands for (GPT-2 byte characters decoded). Returns the length, or
 * -needed when cap is too small. */
int bpe_token_bytes(const struct gguf_str *t, char *buf, size_t cap);
kiln_status bpe_init_pre(struct vocab *v, const char *pre, struct kiln_err *err);
/* The pre-tokenizer as explicit regexes (tokenizer.ggml.pre_regex, written for Hugging Face
 * tokenizers whose tokenizer.json spells them out); name is for messages. */
kiln_status bpe_init_regexes(struct vocab *v, const char *name, const struct gguf_str *regexes,
                             int n, struct kiln_err *err);
void bpe_free_pre(struct vocab *v);
/* Length of the UTF-8 sequence starting with byte c (1 for invalid lead bytes). */
int utf8_len(unsigned char c);

#endif
