/* libFuzzer target: a snapshot's state file, as `ember run --restore` reads it: the header and
 * sections, the machine, configuration, memory, vCPU and VM sections (snapshot_decode), then
 * the UART, control page, GED and virtio sections put back onto devices of a fake VM (an
 * entropy device and a virtio console, when the snapshot's machine has only those). */
#include "devices.h"
#include "fuzz_common.h"
#include "ged.h"
#include "snapshot.h"
#include "virtio_devices.h"

#include <stdlib.h>
#include <string.h>

#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4
#define FZ_RAM            (64ULL << 20) /* rings of real snapshots may lie above it: refused */

static int make_device(struct virtio_dev *d, uint32_t id, struct console *con, struct fake_vm *f,
                       int slot)
{
    int err;

    if (id == VIRTIO_ID_RNG)
        err = virtio_rng_create(d, NULL);
    else if (id == VIRTIO_ID_CONSOLE)
        err = virtio_console_create(d, con, NULL);
    else
        return -1;
    if (err)
        abort();
    err = virtio_mmio_init(d, &f->vm, NULL, VIRTIO_MMIO_BASE + (uint64_t)slot * VIRTIO_MMIO_SIZE,
                           VIRTIO_IRQ_FIRST + (uint32_t)slot);
    if (err)
        abort();
    return 0;
}

static void restore(struct snapshot *s)
{
    static struct virtio_dev dev[SNAP_MAX_VIRTIO];
    static struct console con;
    struct fake_vm f;
    struct serial serial = {0};
    struct ctrl_page ctrl = {0};
    struct ged ged = {0};
    uint32_t ids[SNAP_MAX_VIRTIO];
    int n = snapshot_virtio_ids(s, ids, SNAP_MAX_VIRTIO), made = 0;

    fake_vm_init(&f, FZ_RAM);
    serial.vm = ctrl.vm = ged.vm = &f.vm;
    memset(&con, 0, sizeof(con));
    for (; made < n; made++)
        if (make_device(&dev[made], ids[made], &con, &f, made))
            break;
    if (made == n) {
        struct snap_parts p = {&f.vm, &serial, &ctrl, &ged, dev, n, NULL};

        snapshot_restore_devices(s, &p);
        if (serial.rx_head - serial.rx_tail > SERIAL_RX_SIZE)
            abort(); /* the restored UART holds more input than its FIFO */
    }
    while (made-- > 0)
        virtio_mmio_destroy(&dev[made]);
    fake_vm_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct snapshot *s;
    char err[512];

    if (snapshot_decode(&s, data, size, err, sizeof(err))) {
        if (!err[0] || strchr(err, '\n'))
            abort(); /* every refusal is one line saying why */
        return 0;
    }
    restore(s);
    snapshot_free(s);
    return 0;
}
