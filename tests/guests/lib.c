/* Tiny-guest runtime: serial output by polling the UART, ember's control page, power-off. */
#include "guest.h"

void putc_serial(char c)
{
    while (!(inb(COM1 + 5) & 0x20)) /* wait for THRE */
        ;
    outb(COM1, (uint8_t)c);
}

void puts_serial(const char *s)
{
    while (*s) {
        if (*s == '\n')
            putc_serial('\r');
        putc_serial(*s++);
    }
}

const char *dec_str(uint64_t v, char buf[21])
{
    int i = 20;

    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return &buf[i];
}

void put_dec(uint64_t v)
{
    char buf[21];

    puts_serial(dec_str(v, buf));
}

void put_hex(uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char buf[19];
    int i = 18;

    buf[i] = '\0';
    do {
        buf[--i] = digits[v & 0xf];
        v >>= 4;
    } while (v);
    buf[--i] = 'x';
    buf[--i] = '0';
    puts_serial(&buf[i]);
}

void boot_marker(void)
{
    mmio_write8(CTRL_PAGE, 123);
}

void set_exit_status(uint8_t status)
{
    mmio_write8(CTRL_PAGE + 8, status);
}

void poweroff(void)
{
    outb(ACPI_SLEEP_CTL, (5 << 2) | 0x20); /* SLP_TYP = S5, SLP_EN */
    for (;;)
        __asm__ volatile("hlt");
}

void guest_exit(int status)
{
    if (status >= 0)
        set_exit_status((uint8_t)status);
    poweroff();
}
