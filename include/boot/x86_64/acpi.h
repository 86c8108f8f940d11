/* ACPI tables for a hardware-reduced microVM: RSDP, XSDT, FADT, MADT, DSDT. */
#ifndef EMBER_ACPI_H
#define EMBER_ACPI_H

#include <stddef.h>
#include <stdint.h>

struct acpi_mmio_dev {
    uint64_t addr; /* MMIO window base */
    uint32_t size; /* MMIO window length */
    uint32_t irq;  /* GSI (edge, active high) */
};

#define ACPI_MAX_VIRTIO 19

/* The MADT describes one I/O APIC with GSI base 0 and KVM's 24 pins: every GSI given below
 * must be < ACPI_IOAPIC_PINS, must not be 0 (the in-kernel PIT) or 2 (the 8259 cascade), and
 * must be used by one device only (all interrupts are exclusive, edge, active high). */
#define ACPI_IOAPIC_PINS 24

struct acpi_config {
    int ncpus;            /* one local APIC per vCPU, APIC IDs 0..ncpus-1 */
    uint16_t serial_port; /* 0: no serial port in the DSDT */
    uint32_t serial_irq;
    uint16_t pvpanic_port; /* 0: no pvpanic device */
    uint16_t sleep_ctl_port;
    uint16_t sleep_sts_port;
    uint64_t ged_addr; /* 0: no GED / power button; else a 1-byte event register */
    uint32_t ged_irq;
    const struct acpi_mmio_dev *virtio;
    int nr_virtio;
};

/*
 * Register contracts the VMM must implement (the DSDT and FADT describe them to the guest):
 *
 * Sleep control register (FADT SLEEP_CONTROL_REG, 1 byte at sleep_ctl_port, I/O space).
 * To power off, the guest (Linux: acpi_hw_extended_sleep) writes (SLP_TYP << 2) | SLP_EN
 * with SLP_TYP = 5, the first element of \_S5. Decode a byte write v as power-off when
 * acpi_sleep_ctl_is_poweroff(v). Other values may be ignored.
 *
 * Sleep status register (FADT SLEEP_STATUS_REG, 1 byte at sleep_sts_port, I/O space).
 * The guest writes ACPI_SLEEP_STS_WAK (write-1-to-clear) before sleeping and polls it for
 * that bit afterwards; reads may return 0 or ACPI_SLEEP_STS_WAK and writes may be ignored,
 * since ember never resumes from S5. Both ports must be 0 (no ACPI power-off) or both set.
 *
 * GED event register (1 byte at ged_addr, MMIO; must not be RAM). Bit 0
 * (ACPI_GED_EVT_PWR_BUTTON) = power button pressed. A read returns the pending event bits and
 * clears them; writes are ignored. To press the power button: set bit 0, then raise an edge
 * on ged_irq. The guest's \_SB.GED0._EVT reads the register once and Notify()s
 * \_SB.PWRB (PNP0C0C) with 0x80; Linux (with CONFIG_ACPI_BUTTON) then reports KEY_POWER to
 * user space, and it is up to the guest's init/logind/acpid to shut down, which ends in the
 * sleep control write above.
 *
 * pvpanic (QEMU0001, 1 byte at pvpanic_port, I/O space): Linux's pvpanic-mmio driver reads the
 * port once at probe and only ever sends the events whose bits were set in the value read
 * (bit 0 PANICKED, bit 1 CRASH_LOADED; newer kernels also know bit 2 SHUTDOWN, sent at
 * every power-off). Reads must return ACPI_PVPANIC_CAPS (0x03): 0 disables the device, 0xff would
 * also ask for shutdown events. A written byte with bit 0 set means the guest panicked.
 */
#define ACPI_SLEEP_CTL_SLP_EN    0x20
#define ACPI_SLEEP_CTL_TYP_SHIFT 2
#define ACPI_SLEEP_CTL_TYP_MASK  0x07
#define ACPI_SLEEP_TYP_S5        5
#define ACPI_SLEEP_STS_WAK       0x80
#define ACPI_GED_EVT_PWR_BUTTON  0x01
#define ACPI_PVPANIC_CAPS        0x03

static inline int acpi_sleep_ctl_is_poweroff(uint8_t v)
{
    return (v & ACPI_SLEEP_CTL_SLP_EN) &&
           ((v >> ACPI_SLEEP_CTL_TYP_SHIFT) & ACPI_SLEEP_CTL_TYP_MASK) == ACPI_SLEEP_TYP_S5;
}

/* Build all tables into buf, which the guest sees at base_gpa (the RSDP comes first, at
 * base_gpa itself). On success sets *used and returns 0; -ENOSPC if cap is too small,
 * -EINVAL for a bad config. */
/* More precisely: base_gpa must be 16-byte aligned (the RSDP may be found by a scan of
 * 0xe0000-0xfffff). Nothing is written on -EINVAL or -ENOSPC, and on -ENOSPC *used is set to the
 * size needed, so acpi_build(cfg, base, NULL, 0, &need) measures. The result depends only on the
 * arguments (no global state). Virtio windows must lie below 4 GiB (Memory32Fixed) and no
 * two I/O-port or MMIO ranges (including the I/O APIC and local APIC pages) may overlap. */
int acpi_build(const struct acpi_config *cfg, uint64_t base_gpa, uint8_t *buf, size_t cap,
               size_t *used);

#endif
