/* i8042 keyboard controller, just enough for the guest to reset the machine (reboot=k). */
#include "devices.h"
#include "layout.h"
#include "log.h"

#define I8042_CMD_RESET 0xfe

static void i8042_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    (void)opaque;
    (void)offset;
    if (len == 1)
        data[0] = 0; /* status: output buffer empty, input buffer empty; data: nothing */
}

static void i8042_cmd_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vm *vm = opaque;

    (void)offset;
    if (len == 1 && data[0] == I8042_CMD_RESET) {
        static struct log_limit lim;

        log_guest(&lim, LOG_INFO, "the guest reset the machine through the i8042 controller");
        vm_request_stop(vm, STOP_RESET);
    }
}

static const struct bus_ops i8042_data_ops = {.read = i8042_read};
static const struct bus_ops i8042_cmd_ops = {.read = i8042_read, .write = i8042_cmd_write};

int i8042_init(struct vm *vm)
{
    /* Port 0x61 in between belongs to KVM's PIT (it emulates the speaker port). */
    int err = bus_register(&vm->pio, I8042_DATA_PORT, 1, &i8042_data_ops, vm, "i8042-data");

    if (!err)
        err = bus_register(&vm->pio, I8042_CMD_PORT, 1, &i8042_cmd_ops, vm, "i8042-cmd");
    return err;
}
