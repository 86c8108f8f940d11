/* Minimal assertion helpers for ember's unit tests: count checks, report failures, exit code. */
#ifndef EMBER_CHECK_H
#define EMBER_CHECK_H

#include <stdio.h>

static int check_total, check_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        check_total++;                                                                             \
        if (!(cond)) {                                                                             \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        check_total++;                                                                             \
        if (check_a_ != check_b_) {                                                                \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__,  \
                    #a, #b, check_a_, check_b_);                                                   \
        }                                                                                          \
    } while (0)

static inline int check_done(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_total, check_failed);
    return check_failed ? 1 : 0;
}

#endif
