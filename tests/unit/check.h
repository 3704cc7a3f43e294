/* A minimal test harness: CHECK fails the current test with a message, RUN runs one test
 * and counts it, and check_summary prints "N passed, N failed" and returns the exit code. */
#ifndef KILN_TEST_CHECK_H
#define KILN_TEST_CHECK_H

#include "kiln.h"

#include <stdio.h>
#include <stdlib.h>

static int check_failed_tests, check_passed_tests, check_current_failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                      \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            check_current_failed = 1;                                                              \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define RUN(test)                                                                                  \
    do {                                                                                           \
        check_current_failed = 0;                                                                  \
        test();                                                                                    \
        if (check_current_failed) {                                                                \
            check_failed_tests++;                                                                  \
            fprintf(stderr, "FAILED %s\n", #test);                                                 \
        } else {                                                                                   \
            check_passed_tests++;                                                                  \
        }                                                                                          \
    } while (0)

static inline int check_summary(void)
{
    printf("%d passed, %d failed\n", check_passed_tests, check_failed_tests);
    return check_failed_tests ? 1 : 0;
}

/* The shared test data directory (../shared beside the checkout unless KILN_SHARED_DIR). */
static inline const char *check_shared_dir(void)
{
    const char *d = getenv("KILN_SHARED_DIR");
    return d ? d : "../shared";
}

/* Opens ../shared/models/synthetic/<file> with n_threads (0: all cores); NULL after printing
 * why. */
static inline kiln_model *check_open_synthetic(const char *file, int n_threads)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/synthetic/%s", check_shared_dir(), file);
    struct kiln_model_params mp = {.n_threads = n_threads};
    struct kiln_err err = {{0}};
    kiln_model *m = NULL;
    if (kiln_model_open(path, &mp, &m, &err) != KILN_OK) fprintf(stderr, "%s\n", err.msg);
    return m;
}

#endif
