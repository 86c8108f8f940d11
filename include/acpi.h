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

struct acpi_config {
    int ncpus;             /* one local APIC per vCPU, APIC IDs 0..ncpus-1 */
    uint16_t serial_port;  /* 0: no serial port in the DSDT */
    uint32_t serial_irq;
    uint16_t pvpanic_port; /* 0: no pvpanic device */
    uint16_t sleep_ctl_port;
    uint16_t sleep_sts_port;
    uint64_t ged_addr;     /* 0: no GED / power button; else a 1-byte event register */
    uint32_t ged_irq;
    const struct acpi_mmio_dev *virtio;
    int nr_virtio;
};

/* Build all tables into buf, which the guest sees at base_gpa (the RSDP comes first, at
 * base_gpa itself). On success sets *used and returns 0; -ENOSPC if cap is too small,
 * -EINVAL for a bad config. */
int acpi_build(const struct acpi_config *cfg, uint64_t base_gpa, uint8_t *buf, size_t cap,
               size_t *used);

#endif
