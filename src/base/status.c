/* Status strings and error-buffer formatting.
 * Contract: src/base/status.h and include/kiln.h. */
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>

const char *kiln_status_str(kiln_status st)
{
    switch (st) {
#define X(name, value, msg)                                                                        \
    case name:                                                                                     \
        return msg;
        KILN_STATUS_LIST(X)
#undef X
    }
    return "unknown status";
}

kiln_status kiln_fail(struct kiln_err *err, kiln_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}
