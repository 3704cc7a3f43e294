/* Tests for streamed text: stop strings split across tokens, UTF-8 sequences split across
 * tokens, invalid bytes, and kiln_generate on a real (synthetic) model: stop strings cut
 * the text where they start, and the same seed gives the same text. Mirrors
 * src/engine/text_stream.c and kiln_generate in src/api/kiln.c. */
#include "check.h"
#include "engine/text_stream.h"

#include <string.h>

/* Pushes each piece, collecting everything handed out, then finishes. */
static void run(const char *const *stop, size_t n_stop, const char *const *pieces, size_t n,
                char *got, size_t cap, size_t *handed_out_at_stop, bool *stopped)
{
    struct text_stream s;
    text_stream_init(&s, stop, n_stop);
    size_t used = 0;
    const char *t;
    size_t len;
    *handed_out_at_stop = 0;
    for (size_t i = 0; i < n && !s.stopped; i++) {
        if (text_stream_push(&s, pieces[i], strlen(pieces[i]), &t, &len) != KILN_OK) break;
        if (used + len < cap) memcpy(got + used, t, len), used += len;
        *handed_out_at_stop = i;
    }
    *stopped = s.stopped;
    if (text_stream_finish(&s, &t, &len) == KILN_OK && used + len < cap)
        memcpy(got + used, t, len), used += len;
    got[used] = 0;
    text_stream_free(&s);
}

static void test_stop_string_split_across_pieces(void)
{
    const char *stop[] = {"</end>", "STOP"};
    const char *pieces[] = {"Hello ", "wor", "ld</e", "nd> and more", "never"};
    char got[256];
    size_t at;
    bool stopped;
    run(stop, 2, pieces, 5, got, sizeof got, &at, &stopped);
    CHECK(stopped && at == 3, "stopped %d at piece %zu", stopped, at);
    CHECK(!strcmp(got, "Hello world"), "got '%s'", got);
}

static void test_partial_stop_is_released_when_it_does_not_complete(void)
{
    const char *stop[] = {"ABC"};
    struct text_stream s;
    text_stream_init(&s, stop, 1);
    const char *t;
    size_t len;
    CHECK(text_stream_push(&s, "xxAB", 4, &t, &len) == KILN_OK && len == 2 && !memcmp(t, "xx", 2),
          "held back the wrong amount: %zu", len);
    CHECK(text_stream_push(&s, "D", 1, &t, &len) == KILN_OK && len == 3 && !memcmp(t, "ABD", 3),
          "did not release AB: %zu", len);
    CHECK(text_stream_push(&s, "AB", 2, &t, &len) == KILN_OK && len == 0, "released a prefix");
    CHECK(text_stream_finish(&s, &t, &len) == KILN_OK && len == 2 && !memcmp(t, "AB", 2),
          "finish lost the held text");
    text_stream_free(&s);
}

static void test_utf8_split_across_pieces_is_held_whole(void)
{
    /* "é€😀" split byte by byte: nothing is handed out mid-character. */
    const char *text = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    struct text_stream s;
    text_stream_init(&s, NULL, 0);
    const char *t;
    size_t len, total = 0;
    char got[32];
    for (size_t i = 0; i < strlen(text); i++) {
        CHECK(text_stream_push(&s, text + i, 1, &t, &len) == KILN_OK, "push");
        CHECK(utf8_complete_prefix(t, len) == len, "piece %zu ends mid-character", i);
        memcpy(got + total, t, len);
        total += len;
        bool boundary = i == 1 || i == 4 || i == 8;
        CHECK(boundary ? len > 0 : len == 0, "byte %zu: handed out %zu", i, len);
    }
    CHECK(total == strlen(text) && !memcmp(got, text, total), "text changed");
    text_stream_free(&s);
}

static void test_invalid_bytes_become_replacement_characters(void)
{
    const char *pieces[] = {"a\xff", "b\xc3", "(\xed\xa0\x80)", "\xe2\x82"};
    char got[256];
    size_t at;
    bool stopped;
    run(NULL, 0, pieces, 4, got, sizeof got, &at, &stopped);
    /* 0xff invalid; 0xc3 cut off by '('; a UTF-16 surrogate (3 invalid bytes); and an
     * unfinished sequence at the very end, which becomes one replacement character. */
    const char *want = "a\xef\xbf\xbd" "b\xef\xbf\xbd" "(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd)"
                       "\xef\xbf\xbd";
    CHECK(!strcmp(got, want), "got '%s'", got);
}

/* ---- kiln_generate on a synthetic model ------------------------------------------------- */

struct collected {
    char text[4096];
    size_t len;
    int calls;
};

static bool collect(void *user, int32_t token, const char *text, size_t len)
{
    (void)token;
    struct collected *c = user;
    if (c->len + len < sizeof c->text) memcpy(c->text + c->len, text, len), c->len += len;
    c->text[c->len] = 0;
    c->calls++;
    return true;
}

static bool generate(kiln_model *m, const struct kiln_generate_params *p, struct collected *out,
                     struct kiln_generate_result *res)
{
    kiln_context *ctx;
    struct kiln_err err = {{0}};
    int32_t prompt[64];
    size_t n;
    const char *text = "Once upon a time";
    if (kiln_tokenize(m, text, strlen(text), true, false, prompt, 64, &n) != KILN_OK) return false;
    if (kiln_context_new(m, 256, &ctx, &err) != KILN_OK) return false;
    memset(out, 0, sizeof *out);
    kiln_status st = kiln_generate(ctx, prompt, n, p, collect, out, res, &err);
    kiln_context_free(ctx);
    return st == KILN_OK;
}

static void test_generate_stop_strings_and_seeds(void)
{
    kiln_model *m = check_open_synthetic("llama-gqa.q8_0.gguf", 1);
    CHECK(m, "cannot open the synthetic model");
    struct kiln_generate_params p = {.sampling = kiln_sampling_default(), .max_tokens = 24,
                                     .ignore_eos = true};
    p.sampling.temperature = 0.9f;
    p.sampling.seed = 1234;
    struct collected a, b, c;
    struct kiln_generate_result ra, rb;
    CHECK(generate(m, &p, &a, &ra) && generate(m, &p, &b, &rb), "generate");
    CHECK(ra.finish == KILN_FINISH_LENGTH && ra.n_generated == 24, "finish %d n %d", ra.finish,
          ra.n_generated);
    CHECK(a.len > 20 && !strcmp(a.text, b.text), "same seed, different text:\n%s\n%s", a.text,
          b.text);
    CHECK(utf8_complete_prefix(a.text, a.len) == a.len, "invalid UTF-8 handed out");
    p.sampling.seed = 99;
    CHECK(generate(m, &p, &c, &rb), "generate");
    CHECK(strcmp(a.text, c.text) != 0, "another seed gave the same text");

    /* A stop string taken from the middle of the unstopped text ends it just before. It is
     * whole characters, as a client's (JSON) string is: 4 bytes or more from a character's
     * start (a random model's text can hold multi-byte characters anywhere). */
    p.sampling.seed = 1234;
    char stop[16];
    size_t at = a.len / 2, len = 4;
    while ((a.text[at] & 0xc0) == 0x80) at++;
    while (at + len < a.len && (a.text[at + len] & 0xc0) == 0x80) len++;
    if (len >= sizeof stop || at + len > a.len) {
        CHECK(false, "no stop string at %zu", at);
        return;
    }
    memcpy(stop, a.text + at, len);
    stop[len] = 0;
    const char *stops[] = {stop};
    p.stop = stops;
    p.n_stop = 1;
    CHECK(generate(m, &p, &c, &rb), "generate");
    size_t first = (size_t)(strstr(a.text, stop) - a.text);
    CHECK(rb.finish == KILN_FINISH_STOP, "finish %d", rb.finish);
    CHECK(c.len == first && !memcmp(c.text, a.text, first), "stopped text '%s' vs '%.*s'",
          c.text, (int)first, a.text);
    kiln_model_free(m);
}

int main(void)
{
    RUN(test_stop_string_split_across_pieces);
    RUN(test_partial_stop_is_released_when_it_does_not_complete);
    RUN(test_utf8_split_across_pieces_is_held_whole);
    RUN(test_invalid_bytes_become_replacement_characters);
    RUN(test_generate_stop_strings_and_seeds);
    return check_summary();
}
