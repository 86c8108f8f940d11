/* Tiny-guest runtime: port and MMIO access, serial output, ember's control page, power-off. */
#ifndef TINY_GUEST_H
#define TINY_GUEST_H

#include <stdint.h>

#define COM1           0x3f8
#define CTRL_PAGE      0xc0000000UL
#define ACPI_SLEEP_CTL 0x600
#define PVPANIC_PORT   0x505
#define I8042_CMD      0x64

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline void mmio_write8(uint64_t addr, uint8_t v)
{
    *(volatile uint8_t *)addr = v;
}

static inline void mmio_write32(uint64_t addr, uint32_t v)
{
    *(volatile uint32_t *)addr = v;
}

static inline uint32_t mmio_read32(uint64_t addr)
{
    return *(volatile uint32_t *)addr;
}

void putc_serial(char c);
void puts_serial(const char *s);
/* v in decimal, in buf; returns where the digits start. */
const char *dec_str(uint64_t v, char buf[21]);
void put_dec(uint64_t v);
void put_hex(uint64_t v);
void boot_marker(void);
void set_exit_status(uint8_t status);
/* ACPI soft-off through the sleep control register. */
void __attribute__((noreturn)) poweroff(void);
/* Called by start.S with guest_main's return value: report it and power off. */
void __attribute__((noreturn)) guest_exit(int status);

int guest_main(void);

#endif
