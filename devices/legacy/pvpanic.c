/* pvpanic (ACPI QEMU0001, one I/O port): the guest kernel reports a panic. */
#include "devices.h"
#include "log.h"

#define PVPANIC_PANICKED     (1u << 0)
#define PVPANIC_CRASH_LOADED (1u << 1)

static void pvpanic_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    (void)opaque;
    (void)offset;
    if (len == 1)
        data[0] = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED; /* events we understand */
}

static void pvpanic_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vm *vm = opaque;

    (void)offset;
    if (len != 1)
        return;
    if (data[0] & PVPANIC_PANICKED) {
        static struct log_limit lim;

        log_guest(&lim, LOG_ERR, "the guest kernel panicked (pvpanic)");
        vm_request_stop(vm, STOP_PANIC);
    }
}

static const struct bus_ops pvpanic_ops = {.read = pvpanic_read, .write = pvpanic_write};

int pvpanic_init(struct vm *vm, uint16_t port)
{
    return bus_register(&vm->pio, port, 1, &pvpanic_ops, vm, "pvpanic");
}
