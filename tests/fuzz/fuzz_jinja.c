/* libFuzzer target for the Jinja engine: the input is a template, compiled and rendered
 * against a small fixed conversation with tight limits. Any crash, leak or sanitizer
 * report is a bug; errors are the expected outcome for most inputs. */
#include "template/jinja.h"

#include <stdint.h>
#include <stdlib.h>

static const char vars_json[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": \"Hi \\u00e9 {{x}}\"},"
    " {\"role\": \"assistant\", \"content\": \"Hello\", \"tool_calls\": [{\"type\": \"function\","
    " \"function\": {\"name\": \"f\", \"arguments\": {\"a\": [1, 2.5, null, true]}}}]}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *vars;
    if (!vars) vars = json_loads(vars_json, 0, NULL);
    struct kiln_err err;
    struct jinja_template *t;
    if (jinja_compile((const char *)data, size, &t, &err) != KILN_OK) return 0;
    struct jinja_limits limits = {.max_output = 1 << 16, .max_memory = 4 << 20, .max_depth = 16};
    char *out;
    size_t len;
    if (jinja_render(t, vars, &limits, &out, &len, &err) == KILN_OK) free(out);
    jinja_template_free(t);
    return 0;
}
