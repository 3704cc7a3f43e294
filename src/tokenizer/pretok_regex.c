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

/* Cased letters (Lu, Ll, Lt) as code-point ranges, escaped so no editor normalizes them. */
#define DEEPSEEK_LLM_LETTERS \
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}" \
    "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}" \
    "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-" \
    "\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-" \
    "\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}" \
    "\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-" \
    "\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-" \
    "\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-" \
    "\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}" \
    "\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}" \
    "\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-" \
    "\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-" \
    "\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}" \
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-" \
    "\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}" \
    "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}" \
    "\\x{1E900}-\\x{1E943}]+"

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
