/* Guest-physical memory map and interrupt numbers of an ember aarch64 microVM. */
#ifndef EMBER_BOOT_AARCH64_LAYOUT_H
#define EMBER_BOOT_AARCH64_LAYOUT_H

/* Devices live in the same 1 GiB window below 4 GiB as on x86_64, at the same addresses where
 * both architectures have them (control page, virtio-mmio slots): the guest's init and tests
 * find them there on either. Guest RAM is one region above the window. */
#define A64_DEVICE_WINDOW_START 0xc0000000ULL
#define A64_DEVICE_WINDOW_END   0x100000000ULL

#define A64_CTRL_PAGE_GPA    0xc0000000ULL /* boot marker (+0) and exit status (+8) */
#define A64_CTRL_PAGE_SIZE   0x1000ULL
#define A64_VIRTIO_MMIO_BASE 0xc0001000ULL /* slot n at BASE + n * SIZE */
#define A64_VIRTIO_MMIO_SIZE 0x1000ULL
#define A64_VIRTIO_MAX       32
#define A64_UART_GPA         0xc0040000ULL /* 16550A, 8 byte-wide registers */
#define A64_UART_SIZE        0x1000ULL
#define A64_UART_CLOCK_HZ    1843200
#define A64_PVPANIC_GPA      0xc0041000ULL /* qemu,pvpanic-mmio */
#define A64_PVPANIC_SIZE     0x2ULL
#define A64_GICR_BASE        0xfe000000ULL /* GICv3 redistributors: one frame pair per vCPU */
#define A64_GICR_STRIDE      0x20000ULL
#define A64_GICR_MAX_CPUS    64            /* 8 MiB of redistributors, up to A64_GICD_BASE */
#define A64_GICD_BASE        0xfff00000ULL /* GICv3 distributor */
#define A64_GICD_SIZE        0x10000ULL

#define A64_RAM_BASE 0x100000000ULL /* 4 GiB: one RAM region, above every device */

/* Interrupts: SPI numbers as the device tree writes them (interrupt ID = 32 + SPI) and as
 * KVM_IRQFD takes them (GSI n is SPI n with the default routing). */
#define A64_SPI_UART         1
#define A64_SPI_VIRTIO_FIRST 16  /* slot n: SPI 16 + n */
#define A64_GIC_NR_IRQS      128 /* interrupt IDs the vGIC implements: 32 private + 96 SPIs */

/* Private interrupts (PPI numbers, interrupt ID = 16 + PPI) of the architected timer, as
 * KVM wires them by default. */
#define A64_PPI_TIMER_SEC_PHYS 13
#define A64_PPI_TIMER_PHYS     14
#define A64_PPI_TIMER_VIRT     11
#define A64_PPI_TIMER_HYP      10

/* Boot: the kernel at a 2 MiB aligned base (RAM start) + its text_offset; the device tree in
 * the last 2 MiB of RAM; the initrd right below it. */
#define A64_KERNEL_ALIGN 0x200000ULL
#define A64_DTB_MAX      0x200000ULL

#endif
