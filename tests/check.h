/*
 * A tiny test harness for the C tests: CHECK(cond, fmt, ...) records a pass or a failure with
 * file:line, and test_summary() prints the closing "N passed, N failed" line that tests/run_all.sh
 * reads, returning the process exit code.
 */
#ifndef QSTAR_TEST_CHECK_H
#define QSTAR_TEST_CHECK_H
#include <stdio.h>

static int test_passes = 0, test_failures = 0;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            test_passes++;                                                      \
        } else {                                                                \
            test_failures++;                                                    \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                         \
            printf(__VA_ARGS__);                                                \
            printf("\n");                                                       \
        }                                                                       \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", test_passes, test_failures);
    return test_failures ? 1 : 0;
}
#endif
