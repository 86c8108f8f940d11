/* Tiny guest: reports a panic through pvpanic (ember exits 121). */
#include "guest.h"

int guest_main(void)
{
    puts_serial("tiny-guest: pvpanic reports ");
    put_hex(inb(PVPANIC_PORT));
    puts_serial("\n");
    outb(PVPANIC_PORT, 1);
    puts_serial("tiny-guest: still running after panic\n");
    return 1;
}
