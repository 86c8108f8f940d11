/* Tiny guest: resets the machine through the i8042 (ember exits 120 with --on-reboot exit). */
#include "guest.h"

int guest_main(void)
{
    puts_serial("tiny-guest: resetting through the i8042\n");
    outb(I8042_CMD, 0xfe);
    puts_serial("tiny-guest: still running after reset\n");
    return 1;
}
