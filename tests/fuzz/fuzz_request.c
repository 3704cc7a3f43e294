/* libFuzzer target for OpenAI request validation: the input is a request body, parsed as
 * a chat, a text completion and an embeddings request. Refusals are expected; crashes, leaks and
 * sanitizer reports are bugs. */
#include "server/oai_request.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct oai_request r;
    struct oai_error err;
    if (oai_parse_request(OAI_CHAT, (const char *)data, size, 49152, &r, &err))
        oai_request_free(&r);
    if (oai_parse_request(OAI_COMPLETION, (const char *)data, size, 49152, &r, &err))
        oai_request_free(&r);
    if (oai_parse_request(OAI_EMBEDDING, (const char *)data, size, 49152, &r, &err))
        oai_request_free(&r);
    return 0;
}
