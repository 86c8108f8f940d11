/* Tiny guest: says it is up, then halts with interrupts off until ember stops it from outside
 * (a signal, the jail, the control socket); it never exits by itself. */
#include "guest.h"

int guest_main(void)
{
    puts_serial("tiny-guest: idle\n");
    for (;;)
        __asm__ volatile("cli; hlt");
}
