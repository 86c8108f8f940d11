/* The aarch64 machine's state behind arch.h (vm->arch), shared by boot/aarch64's arch files. */
#ifndef EMBER_BOOT_AARCH64_MACHINE_H
#define EMBER_BOOT_AARCH64_MACHINE_H

#include <stdint.h>

#include "boot/aarch64/fdt.h"
#include "boot/aarch64/image.h"
#include "cmdline.h"

struct arch_vm {
    int gic_fd;                   /* the in-kernel vGICv3, -1 until arch_vcpus_init */
    uint64_t mpidr[FDT_MAX_CPUS]; /* each vCPU's MPIDR_EL1, for the device tree */
    struct arm64_boot boot;       /* where the kernel, initrd and device tree go */
    char cmdline[CMDLINE_MAX];    /* /chosen/bootargs */
};

#endif
