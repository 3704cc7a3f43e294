/* Table of BPE pre-tokenizers by tokenizer.ggml.pre name.
 * Contract: src/tokenizer/pretok_regex.h. */
#include "tokenizer/pretok_regex.h"

#include <string.h>

#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define LLAMA3_RE                                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"   \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_RE                                                                                   \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"   \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

#define DEEPSEEK_LLM_LETTERS                                                                       \
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"

static const char *const names_default[] = {"default", NULL};
static const char *const names_gpt2[] = {"gpt-2", "phi-2", "jina-es", "jina-de", "jina-v2-es",
                                         "jina-v2-de", "mpt", "olmo", "jais", "roberta-bpe",
                                         "jina-v1-en", "jina-v2-code", NULL};
static const char *const names_llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3",
                                           "pixtral", NULL};
static const char *const names_llama3_merging[] = {"dbrx", "smaug-bpe", NULL};
static const char *const names_qwen2[] = {"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2",
                                          NULL};
static const char *const names_starcoder[] = {"starcoder", "refact", "command-r", "smollm",
                                              "codeshell", "exaone", "minerva-7b", NULL};
static const char *const names_falcon[] = {"falcon", NULL};
static const char *const names_deepseek_llm[] = {"deepseek-llm", NULL};
static const char *const names_deepseek_coder[] = {"deepseek-coder", NULL};
static const char *const names_deepseek3[] = {"deepseek-v3", NULL};
static const char *const names_poro[] = {"poro-chat", "bloom", "gpt3-finnish", NULL};
static const char *const names_chameleon[] = {"chameleon", NULL};

static const struct pretok table[] = {
    {names_default,
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_RE, "\\p{N}+", "[0-9][0-9][0-9]", NULL},
     false,
     false},
    {names_gpt2, {GPT2_RE, NULL}, false, false},
    {names_llama3, {LLAMA3_RE, NULL}, true, true},
    {names_llama3_merging, {LLAMA3_RE, NULL}, false, false},
    {names_qwen2, {QWEN2_RE, NULL}, false, false},
    {names_starcoder, {"\\p{N}", GPT2_RE, NULL}, false, false},
    {names_falcon, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_RE, "[0-9][0-9][0-9]", NULL}, false, false},
    {names_deepseek_llm,
     {"[\r\n]", DEEPSEEK_LLM_LETTERS, "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$",
      "[一-龥ࠀ-一가-퟿]+", "\\p{N}+", NULL},
     false,
     false},
    {names_deepseek_coder,
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}", NULL},
     false,
     false},
    {names_deepseek3,
     {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
      " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
      NULL},
     false,
     false},
    {names_poro, {" ?[^(\\s|.,!?…。，、।۔،)]+", NULL}, false, false},
    {names_chameleon,
     {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
      "[\\p{P}!-/:-@\\[-`{-~]", GPT2_RE, NULL},
     false,
     true},
};

const struct pretok *pretok_find(const char *name)
{
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        for (const char *const *n = table[i].names; *n; n++)
            if (strcmp(*n, name) == 0) return &table[i];
    return NULL;
}
