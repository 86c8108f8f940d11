/* The aarch64 machine behind arch.h: its memory map, booting an arm64 Image and describing the
 * machine with a device tree. */
#include "arch.h"
#include "boot/aarch64/fdt.h"
#include "boot/aarch64/image.h"
#include "boot/aarch64/layout.h"
#include "boot/aarch64/machine.h"
#include "kernel_file.h"
#include "log.h"
#include "pl061.h"
#include "virtio.h"
#include "vm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

_Static_assert(ARCH_MAX_VIRTIO <= A64_VIRTIO_MAX, "a virtio-mmio slot per device");
_Static_assert(ARCH_MAX_VIRTIO <= FDT_MAX_VIRTIO, "every device in the device tree");
_Static_assert(32 + A64_SPI_VIRTIO_FIRST + ARCH_MAX_VIRTIO <= A64_GIC_NR_IRQS, "an SPI per device");
_Static_assert(A64_VIRTIO_MMIO_SIZE == VIRTIO_MMIO_SIZE, "virtio-mmio windows");
_Static_assert(FDT_KEY_LINE == PL061_POWER_LINE, "the device tree's key is the PL061's line");
_Static_assert(A64_GPIO_SIZE == PL061_SIZE, "the PL061's window");

const struct arch_map arch_map = {
        .name = "aarch64",
        .kernel_image = "Image",
        .kernel_formats = "arm64 Image (uncompressed; Debian: /boot/vmlinuz-*-arm64)",
        /* panic=1: reboot a second after a panic (pvpanic reports it first); 8250.nr_uarts=1:
         * one UART. Every option is one the kernel or a driver takes (bare words would reach
         * init as arguments). */
        .cmdline_default = "panic=1 quiet 8250.nr_uarts=1 swiotlb=noforce cryptomgr.notests",
        .ram = {.base = A64_RAM_BASE},
        .ctrl_page = A64_CTRL_PAGE_GPA,
        .uart = {ARCH_BUS_MMIO, A64_UART_GPA, A64_SPI_UART},
        .pvpanic = {ARCH_BUS_MMIO, A64_PVPANIC_GPA, 0},
        .ged = {ARCH_BUS_NONE, 0, 0},
        .gpio_keys = {ARCH_BUS_MMIO, A64_GPIO_GPA, A64_SPI_GPIO},
        .virtio_base = A64_VIRTIO_MMIO_BASE,
        .virtio_irq_first = A64_SPI_VIRTIO_FIRST,
        .virtio_cmdline = 0, /* the device tree has them */
};

int arch_add_devices(struct vm *vm)
{
    (void)vm; /* the UART, pvpanic and the control page are every architecture's */
    return 0;
}

int arch_load_kernel(struct vm *vm, const struct arch_kernel *k)
{
    struct arch_vm *a = vm->arch;
    struct kernel_file kf = {0}, rd = {0};
    int err;

    if (!k->kernel_path) {
        log_err("no kernel given; pass one with --kernel");
        return -EINVAL;
    }
    if (strlen(k->cmdline) >= sizeof(a->cmdline)) {
        log_err("kernel %s: the command line is longer than %zu bytes; shorten it", k->kernel_path,
                sizeof(a->cmdline) - 1);
        return -E2BIG;
    }
    snprintf(a->cmdline, sizeof(a->cmdline), "%s", k->cmdline);
    err = kernel_file_read(k->kernel_path, "kernel", &kf);
    if (err)
        return err;
    err = arm64_image_load(&vm->mem, kf.data, kf.size, k->kernel_path, &a->boot);
    kernel_file_free(&kf);
    if (err || !k->initrd_path)
        return err;
    err = kernel_file_read(k->initrd_path, "initrd", &rd);
    if (err)
        return err;
    err = arm64_initrd_load(&vm->mem, rd.data, rd.size, k->initrd_path, &a->boot);
    kernel_file_free(&rd);
    return err;
}

int arch_describe(struct vm *vm, const struct arch_machine *m)
{
    struct arch_vm *a = vm->arch;
    struct fdt_machine fm = {
            .ram_base = vm->mem.region[0].gpa,
            .ram_size = vm->mem.region[0].size,
            .nr_cpus = vm->ncpus,
            .gicd_base = A64_GICD_BASE,
            .gicd_size = A64_GICD_SIZE,
            .gicr_base = A64_GICR_BASE,
            .gicr_size = (uint64_t)vm->ncpus * A64_GICR_STRIDE,
            .uart = {A64_UART_GPA, A64_UART_SIZE, A64_SPI_UART},
            .pvpanic_base = A64_PVPANIC_GPA,
            .gpio = {A64_GPIO_GPA, A64_GPIO_SIZE, A64_SPI_GPIO},
            .nr_virtio = m->nr_virtio,
            .bootargs = a->cmdline,
            .initrd_start = a->boot.initrd_start,
            .initrd_size = a->boot.initrd_size,
    };
    void *dst = guest_ptr(&vm->mem, a->boot.dtb, A64_DTB_MAX);
    int size;

    if (vm->ncpus > FDT_MAX_CPUS || m->nr_virtio > FDT_MAX_VIRTIO || !dst) {
        log_err("device tree: %d vCPUs, %d virtio devices, at 0x%llx: cannot be described",
                vm->ncpus, m->nr_virtio, (unsigned long long)a->boot.dtb);
        return -EINVAL;
    }
    memcpy(fm.mpidr, a->mpidr, sizeof(fm.mpidr));
    for (int i = 0; i < m->nr_virtio; i++)
        fm.virtio[i] = (struct fdt_mmio_dev){m->virtio[i].base, VIRTIO_MMIO_SIZE, m->virtio[i].irq};
    /* Entropy for the guest's early boot; without it the guest only boots slower. */
    if (getrandom(fm.rng_seed, sizeof(fm.rng_seed), GRND_NONBLOCK) != (ssize_t)sizeof(fm.rng_seed))
        log_warn("device tree: getrandom failed (%s); the guest gets no rng-seed", strerror(errno));
    size = fdt_build(&fm, dst, A64_DTB_MAX);
    if (size < 0) {
        log_err("device tree: fdt_build: %s", strerror(-size));
        return size;
    }
    log_debug("device tree: %d bytes at 0x%llx", size, (unsigned long long)a->boot.dtb);
    return 0;
}
