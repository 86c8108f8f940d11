/* Tiny guest that runs until it is stopped: "tick N" on the serial port every ~10 ms, so a
 * test can see whether the vCPU is still running the guest. */
#include "guest.h"

#define TICK_CYCLES 20000000ULL /* ~10 ms at 2 GHz; only "it moves" matters */

static inline uint64_t tsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

int guest_main(void)
{
    uint64_t n = 0, next = tsc();

    puts_serial("ticker: up\n");
    for (;;) {
        while (tsc() < next)
            __asm__ volatile("pause");
        next += TICK_CYCLES;
        puts_serial("tick ");
        put_dec(n++);
        puts_serial("\n");
    }
}
