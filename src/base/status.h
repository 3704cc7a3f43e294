/* Status codes and the caller-owned error buffer used by every fallible function.
 * Contract for src/base/status.c. */
#ifndef KILN_BASE_STATUS_H
#define KILN_BASE_STATUS_H

#include "kiln.h" /* kiln_status, struct kiln_err */

/* Writes a formatted message into err (when err is not NULL) and returns st,
 * so a failing path reads `return kiln_fail(err, KILN_EFORMAT, "...", ...);`. */
kiln_status kiln_fail(struct kiln_err *err, kiln_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
