/* Tokenizer tests: every .inp/.out vector pair in ../shared/tokenizer whose vocabulary GGUF
 * is there tokenizes exactly as Hugging Face's tokenizer did; ids decode back to the text;
 * special tokens are split out only when asked. Mirrors src/tokenizer/. */
#include "check.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *len = (size_t)n;
    }
    return buf;
}

static int vectors_checked;

/* Opens ../shared/tokenizer/ggml-vocab-NAME.gguf and loads its vocabulary; false after
 * printing why. Free with close_vocab. */
static bool open_vocab(const char *name, struct gguf_file **g, struct vocab *v)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-%s.gguf", check_shared_dir(), name);
    struct kiln_err err = {{0}};
    *g = NULL;
    if (gguf_open(path, g, &err) != KILN_OK || vocab_load(v, *g, &err) != KILN_OK) {
        fprintf(stderr, "  %s\n", err.msg);
        gguf_close(*g);
        return false;
    }
    return true;
}

static void close_vocab(struct gguf_file *g, struct vocab *v)
{
    vocab_free(v);
    gguf_close(g);
}

/* Runs NAME.gguf.inp through the vocabulary NAME.gguf and compares with NAME.gguf.out. */
static void check_vectors(const char *name)
{
    struct gguf_file *g;
    struct vocab v;
    CHECK(open_vocab(name, &g, &v), "cannot open the %s vocabulary", name);
    char path[1024];
    size_t in_len, out_len;
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-%s.gguf.inp", check_shared_dir(), name);
    char *inp = read_file(path, &in_len);
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-%s.gguf.out", check_shared_dir(), name);
    char *outp = read_file(path, &out_len);
    CHECK(inp && outp, "cannot read the vectors of %s", name);
    const char *sep = "\n__ggml_vocab_test__\n";
    char *text = inp, *line = outp;
    int failures = 0, cases = 0;
    while (text && *line) {
        char *end = strstr(text, sep);
        size_t tlen = end ? (size_t)(end - text) : strlen(text);
        char *eol = strchr(line, '\n');
        if (eol) *eol = 0;
        int32_t want[1024], got[1024];
        int n_want = 0;
        for (char *p = line; *p;) {
            char *q;
            long id = strtol(p, &q, 10);
            if (q == p) break;
            want[n_want++] = (int32_t)id;
            p = q;
        }
        int64_t n_got = vocab_tokenize(&v, text, tlen, false, false, got, 1024);
        bool same = n_got == n_want && memcmp(got, want, (size_t)n_want * sizeof(int32_t)) == 0;
        if (!same && failures++ < 5) {
            fprintf(stderr, "  %s case %d %.*s\n    want:", name, cases, (int)(tlen > 60 ? 60 : tlen), text);
            for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n    got: ");
            for (int64_t i = 0; i < n_got && i < 1024; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "\n");
        }
        cases++;
        text = end ? end + strlen(sep) : NULL;
        line = eol ? eol + 1 : line + strlen(line);
    }
    free(inp);
    free(outp);
    close_vocab(g, &v);
    vectors_checked += cases;
    CHECK(failures == 0, "%s: %d of %d cases differ", name, failures, cases);
    CHECK(cases > 10, "%s: only %d cases read", name, cases);
}

static void test_tokenizer_llama_spm_vectors(void) { check_vectors("llama-spm"); }
static void test_tokenizer_phi3_spm_vectors(void) { check_vectors("phi-3"); }
static void test_tokenizer_gpt2_vectors(void) { check_vectors("gpt-2"); }
static void test_tokenizer_starcoder_vectors(void) { check_vectors("starcoder"); }
static void test_tokenizer_refact_vectors(void) { check_vectors("refact"); }
static void test_tokenizer_mpt_vectors(void) { check_vectors("mpt"); }
static void test_tokenizer_falcon_vectors(void) { check_vectors("falcon"); }
static void test_tokenizer_deepseek_coder_vectors(void) { check_vectors("deepseek-coder"); }
static void test_tokenizer_deepseek_llm_vectors(void) { check_vectors("deepseek-llm"); }
static void test_tokenizer_bert_wordpiece_vectors(void) { check_vectors("bert-bge"); }

/* BERT adds [CLS] ... [SEP], parses "[SEP]" in text only when asked, and turns a word it
 * cannot spell (or one over 100 characters) into one [UNK]. */
static void test_tokenizer_wordpiece_specials_and_unknowns(void)
{
    struct gguf_file *g;
    struct vocab v;
    CHECK(open_vocab("bert-bge", &g, &v), "cannot open the bert-bge vocabulary");
    int32_t ids[256];
    int64_t n = vocab_tokenize(&v, "Hello [SEP]", 11, true, true, ids, 256);
    CHECK(n == 4 && ids[0] == 101 && ids[2] == 102 && ids[3] == 102, "n %lld: %d %d %d",
          (long long)n, ids[0], ids[2], ids[3]);
    n = vocab_tokenize(&v, "Hello [SEP]", 11, false, false, ids, 256);
    CHECK(n == 4 && ids[1] == 1031, "[ is split out as punctuation: n %lld", (long long)n);
    char word[160];
    memset(word, 'a', 101);
    memcpy(word + 101, " ok \xe2\x98\x83", 8); /* 101 letters, "ok", and a snowman */
    n = vocab_tokenize(&v, word, 109, false, false, ids, 256);
    CHECK(n == 3 && ids[0] == v.unk && ids[2] == v.unk && ids[1] != v.unk, "n %lld", (long long)n);
    char piece[32];
    int len = vocab_piece(&v, 7592, false, piece, sizeof piece); /* "hello" */
    CHECK(len == 6 && memcmp(piece, " hello", 6) == 0, "piece '%.*s'", len, piece);
    CHECK(vocab_piece(&v, 101, false, piece, sizeof piece) == 0, "[CLS] renders as nothing");
    close_vocab(g, &v);
}

/* Decoding the ids of a text gives the text back (SPM drops the added leading space). */
static void test_tokenizer_roundtrips_text(void)
{
    const char *names[] = {"llama-spm", "gpt-2"};
    const char *text = "Hello world! Grüße, 你好 🌍\n\ttabs  and spaces";
    for (int k = 0; k < 2; k++) {
        struct gguf_file *g;
        struct vocab v;
        CHECK(open_vocab(names[k], &g, &v), "cannot open %s", names[k]);
        int32_t ids[256];
        int64_t n = vocab_tokenize(&v, text, strlen(text), false, false, ids, 256);
        char out[512];
        size_t len = 0;
        for (int64_t i = 0; i < n; i++) {
            int l = vocab_piece(&v, ids[i], false, out + len, sizeof out - len);
            CHECK(l >= 0, "piece too long");
            len += (size_t)l;
        }
        out[len] = 0;
        const char *got = out + (v.add_space_prefix && out[0] == ' ');
        CHECK(strcmp(got, text) == 0, "%s: decoded '%s'", names[k], got);
        close_vocab(g, &v);
    }
}

static void test_tokenizer_splits_special_tokens_only_when_asked(void)
{
    struct gguf_file *g;
    struct vocab v;
    CHECK(open_vocab("llama-spm", &g, &v), "cannot open the llama-spm vocabulary");
    const char *text = "a</s>b";
    int32_t ids[32];
    int64_t n = vocab_tokenize(&v, text, strlen(text), true, true, ids, 32);
    bool has_eos = false;
    for (int64_t i = 0; i < n; i++) has_eos |= ids[i] == v.eos;
    CHECK(n >= 3 && ids[0] == v.bos && has_eos, "parse_special should produce BOS and EOS ids");
    n = vocab_tokenize(&v, text, strlen(text), false, false, ids, 32);
    CHECK(n > 3 && n <= 32, "literal text gave %lld ids", (long long)n); /* "</s>" is several */
    for (int64_t i = 0; i < n; i++) CHECK(ids[i] != v.eos && ids[i] != v.bos, "literal text split");
    CHECK(vocab_is_eog(&v, v.eos) && !vocab_is_eog(&v, 100), "end-of-generation set");
    close_vocab(g, &v);
}

int main(void)
{
    RUN(test_tokenizer_llama_spm_vectors);
    RUN(test_tokenizer_phi3_spm_vectors);
    RUN(test_tokenizer_gpt2_vectors);
    RUN(test_tokenizer_starcoder_vectors);
    RUN(test_tokenizer_refact_vectors);
    RUN(test_tokenizer_mpt_vectors);
    RUN(test_tokenizer_falcon_vectors);
    RUN(test_tokenizer_deepseek_coder_vectors);
    RUN(test_tokenizer_deepseek_llm_vectors);
    RUN(test_tokenizer_bert_wordpiece_vectors);
    RUN(test_tokenizer_wordpiece_specials_and_unknowns);
    RUN(test_tokenizer_roundtrips_text);
    RUN(test_tokenizer_splits_special_tokens_only_when_asked);
    printf("%d tokenizer vectors checked\n", vectors_checked);
    return check_summary();
}
