/* ACPI hardware-reduced sleep control and status registers: the guest's power-off. */
#include "devices.h"

#define SLP_EN     0x20
#define SLP_TYP(v) (((v) >> 2) & 7)
#define SLP_TYP_S5 5
#define WAK_STS    0x80

static void sleep_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    (void)opaque;
    (void)offset;
    if (len == 1)
        data[0] = 0;
}

static void sleep_ctl_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vm *vm = opaque;

    (void)offset;
    /* Only soft-off (S5) exists; other sleep states are ignored. */
    if (len == 1 && (data[0] & SLP_EN) && SLP_TYP(data[0]) == SLP_TYP_S5)
        vm_request_stop(vm, STOP_POWEROFF);
}

static void sleep_sts_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    (void)opaque;
    (void)offset;
    if (len == 1)
        data[0] = WAK_STS;
}

static const struct bus_ops sleep_ctl_ops = {.read = sleep_read, .write = sleep_ctl_write};
static const struct bus_ops sleep_sts_ops = {.read = sleep_sts_read};

int acpi_pm_init(struct vm *vm, uint16_t sleep_ctl_port, uint16_t sleep_sts_port)
{
    int err = bus_register(&vm->pio, sleep_ctl_port, 1, &sleep_ctl_ops, vm, "acpi-sleep-ctl");

    if (!err)
        err = bus_register(&vm->pio, sleep_sts_port, 1, &sleep_sts_ops, vm, "acpi-sleep-sts");
    return err;
}
