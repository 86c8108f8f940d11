/* Tiny guest: prints through the UART and powers off cleanly (ember exits 0). */
#include "guest.h"

int guest_main(void)
{
    puts_serial("tiny-guest: hello from ember\n");
    puts_serial("tiny-guest: 6 * 7 = ");
    put_dec(6 * 7);
    puts_serial("\n");
    return -1; /* power off without an exit status */
}
