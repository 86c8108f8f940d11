/* The aarch64 guest's device tree: what the machine is, built with libfdt from a description. */
#ifndef EMBER_BOOT_AARCH64_FDT_H
#define EMBER_BOOT_AARCH64_FDT_H

#include <stddef.h>
#include <stdint.h>

#define FDT_MAX_CPUS   64
#define FDT_MAX_VIRTIO 32
#define FDT_RNG_SEED   32 /* bytes of /chosen/rng-seed */

struct fdt_mmio_dev {
    uint64_t base;
    uint64_t size;
    uint32_t spi; /* SPI number (interrupt ID - 32) */
};

/* Everything the device tree says; addresses are guest-physical. The control page (boot marker,
 * exit status) has no device tree binding and no node: the guest's init finds it at
 * A64_CTRL_PAGE_GPA, the same address as on x86_64. */
struct fdt_machine {
    uint64_t ram_base, ram_size;
    int nr_cpus;
    uint64_t mpidr[FDT_MAX_CPUS]; /* each vCPU's MPIDR_EL1, as KVM reports it */
    uint64_t gicd_base, gicd_size;
    uint64_t gicr_base, gicr_size; /* one region for every vCPU's redistributor */
    struct fdt_mmio_dev uart;      /* 16550A; size 0: none */
    uint64_t pvpanic_base;         /* 0: none */
    struct fdt_mmio_dev virtio[FDT_MAX_VIRTIO];
    int nr_virtio;
    const char *bootargs;               /* kernel command line (not NULL) */
    uint64_t initrd_start, initrd_size; /* size 0: no initrd */
    uint8_t rng_seed[FDT_RNG_SEED];     /* entropy for the guest's early boot */
};

/* Build the device tree blob into buf (at most cap bytes). Returns its size, -EINVAL for a
 * description that cannot be right (no CPUs, too many, no command line), -ENOSPC when it does
 * not fit. Prints nothing: the caller names the culprit. */
int fdt_build(const struct fdt_machine *m, void *buf, size_t cap);

#endif
