/* Guest-physical memory layout, I/O ports and IRQs of an ember x86_64 microVM. */
#ifndef EMBER_LAYOUT_H
#define EMBER_LAYOUT_H

/* Low memory used by the loader (all below 1 MiB, never overlapping). */
#define GDT_GPA            0x500ULL
#define PVH_START_INFO_GPA 0x6000ULL /* hvm_start_info, then its memmap */
#define PVH_MEMMAP_GPA     0x6040ULL
#define ZERO_PAGE_GPA      0x7000ULL /* struct boot_params */
#define BOOT_STACK_GPA     0x8ff0ULL
#define PML4_GPA           0x9000ULL
#define PDPTE_GPA          0xa000ULL
#define PDE_GPA            0xb000ULL /* 4 pages: identity map of the low 4 GiB */
#define CMDLINE_GPA        0x20000ULL
#define CMDLINE_MAX        4096 /* including the NUL; the kernel's own limit may be lower */
#define EBDA_START         0x9fc00ULL
#define ACPI_TABLES_GPA    0xe0000ULL /* RSDP first, then the other tables */
#define ACPI_TABLES_MAX    0x20000ULL /* up to 1 MiB */
#define HIMEM_START        0x100000ULL

/* The 32-bit MMIO hole: guest RAM is split around it. */
#define MMIO_HOLE_START      0xc0000000ULL
#define MMIO_HOLE_END        0x100000000ULL
#define CTRL_PAGE_GPA        0xc0000000ULL /* boot marker (+0) and exit status (+8) */
#define BOOT_MARKER_GPA      (CTRL_PAGE_GPA + 0)
#define EXIT_STATUS_GPA      (CTRL_PAGE_GPA + 8)
#define GED_GPA              (CTRL_PAGE_GPA + 0x100) /* GED event register (1 byte) */
#define VIRTIO_MMIO_BASE     0xc0001000ULL
#define VIRTIO_MMIO_SIZE     0x1000ULL
#define IOAPIC_GPA           0xfec00000ULL
#define LAPIC_GPA            0xfee00000ULL
#define KVM_IDENTITY_MAP_GPA 0xfeffc000ULL
#define KVM_TSS_GPA          0xfeffd000ULL

/* Legacy I/O ports. */
#define I8042_DATA_PORT     0x60
#define I8042_CMD_PORT      0x64
#define COM1_PORT           0x3f8
#define COM1_IRQ            4
#define PVPANIC_PORT        0x505
#define ACPI_SLEEP_CTL_PORT 0x600 /* FADT sleep control register (1 byte) */
#define ACPI_SLEEP_STS_PORT 0x601 /* FADT sleep status register (1 byte) */
#define GED_IRQ             3     /* GED (power button): the free legacy COM2 line */

/* GSIs for virtio-mmio devices: one each, 5..23. */
#define VIRTIO_IRQ_FIRST 5
#define VIRTIO_IRQ_LAST  23

#endif
