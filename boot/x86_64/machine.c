/* The x86_64 machine behind arch.h: its memory map, its own platform devices, booting a kernel
 * (bzImage, ELF/PVH) and describing the machine with ACPI tables. */
#include "arch.h"
#include "acpi.h"
#include "devices.h"
#include "layout.h"
#include "loader.h"
#include "log.h"
#include "machine.h"
#include "virtio.h"
#include "vm.h"

#include <errno.h>
#include <string.h>

_Static_assert(ARCH_MAX_VIRTIO <= VIRTIO_IRQ_LAST - VIRTIO_IRQ_FIRST + 1, "one GSI per device");
_Static_assert(ARCH_MAX_VIRTIO <= ACPI_MAX_VIRTIO, "every device in the DSDT");

const struct arch_map arch_map = {
        .name = "x86_64",
        .kernel_image = "bzImage",
        .kernel_formats = "bzImage or ELF vmlinux (PVH entry used when present)",
        /* reboot=k: reset through the i8042; panic=1: reboot a second after a panic (pvpanic
         * reports it first); the i8042 options skip slow probes of a keyboard that is not
         * there; 8250.nr_uarts=1: only COM1 exists. Bare words the kernel does not know would
         * reach init as arguments, so every option here is one the kernel or a driver takes. */
        .cmdline_default = "reboot=k panic=1 quiet i8042.noaux i8042.nomux i8042.nopnp "
                           "i8042.dumbkbd 8250.nr_uarts=1 swiotlb=noforce cryptomgr.notests",
        .ram = {.base = 0, .hole_start = MMIO_HOLE_START, .hole_end = MMIO_HOLE_END},
        .ctrl_page = CTRL_PAGE_GPA,
        .uart = {ARCH_BUS_PIO, COM1_PORT, COM1_IRQ},
        .pvpanic = {ARCH_BUS_PIO, PVPANIC_PORT, 0},
        .ged = {ARCH_BUS_MMIO, GED_GPA, GED_IRQ},
        .gpio_keys = {ARCH_BUS_NONE, 0, 0},
        .virtio_base = VIRTIO_MMIO_BASE,
        .virtio_irq_first = VIRTIO_IRQ_FIRST,
        .virtio_cmdline = 1,
};

int arch_add_devices(struct vm *vm)
{
    int err = i8042_init(vm);

    if (!err)
        err = acpi_pm_init(vm, ACPI_SLEEP_CTL_PORT, ACPI_SLEEP_STS_PORT);
    return err;
}

int arch_load_kernel(struct vm *vm, const struct arch_kernel *k)
{
    struct load_params lp = {
            .kernel_path = k->kernel_path,
            .initrd_path = k->initrd_path,
            .cmdline = k->cmdline,
            .rsdp_gpa = ACPI_TABLES_GPA,
    };

    return load_kernel(&vm->mem, &lp, &vm->arch->boot);
}

int arch_describe(struct vm *vm, const struct arch_machine *m)
{
    struct acpi_mmio_dev vdev[ARCH_MAX_VIRTIO];
    struct acpi_config ac = {
            .ncpus = vm->ncpus,
            .serial_port = COM1_PORT,
            .serial_irq = COM1_IRQ,
            .pvpanic_port = PVPANIC_PORT,
            .sleep_ctl_port = ACPI_SLEEP_CTL_PORT,
            .sleep_sts_port = ACPI_SLEEP_STS_PORT,
            .ged_addr = GED_GPA,
            .ged_irq = GED_IRQ,
            .virtio = vdev,
            .nr_virtio = m->nr_virtio,
    };
    uint8_t *buf = guest_ptr(&vm->mem, ACPI_TABLES_GPA, ACPI_TABLES_MAX);
    size_t used;
    int err;

    for (int i = 0; i < m->nr_virtio && i < ARCH_MAX_VIRTIO; i++)
        vdev[i] = (struct acpi_mmio_dev){m->virtio[i].base, VIRTIO_MMIO_SIZE, m->virtio[i].irq};
    if (!buf) {
        log_err("guest memory too small for the ACPI tables");
        return -ENOMEM;
    }
    err = acpi_build(&ac, ACPI_TABLES_GPA, buf, ACPI_TABLES_MAX, &used);
    if (err)
        log_err("cannot build the ACPI tables: %s", strerror(-err));
    return err;
}
