/* Milliseconds on the monotonic clock, for deadlines and durations. */
#ifndef EMBER_CLOCK_H
#define EMBER_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t clock_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Milliseconds left until deadline (a clock_ms() value), 0 when it passed. */
static inline int clock_ms_left(int64_t deadline)
{
    int64_t left = deadline - clock_ms();

    return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

#endif
