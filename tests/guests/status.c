/* Tiny guest: signals the boot marker, then reports exit status 42 through ember's device. */
#include "guest.h"

int guest_main(void)
{
    boot_marker();
    puts_serial("tiny-guest: boot marker written, exiting with 42\n");
    return 42;
}
