/* libFuzzer target: a snapshot's state file, as `ember run --restore` reads it: the header and
 * sections, the machine, configuration, memory, vCPU and VM sections (snapshot_decode), then
 * the UART, control page, GED and virtio sections put back onto devices of a fake VM (an
 * entropy device and a virtio console, when the snapshot's machine has only those).
 * Input: one mode byte, then the file. With bit 0 of the mode set, every checksum is made
 * right first, so that changed values reach the decoders behind the checksums. */
#include "devices.h"
#include "fuzz_common.h"
#include "ged.h"
#include "snapshot.h"
#include "virtio_devices.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

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

/* Recompute what the parser checks first: each section's checksum while its size fits, then
 * the header's (format in include/snapshot_format.h). */
static void reseal(uint8_t *buf, size_t len)
{
    size_t pos = SNAP_HEADER_SIZE;
    uint32_t nr;
    uint64_t size, sum;

    if (len < SNAP_HEADER_SIZE)
        return;
    memcpy(&nr, buf + 20, 4);
    for (uint32_t i = 0; i < nr && i < SNAP_MAX_SECTIONS && len - pos >= SNAP_SECTION_HDR; i++) {
        memcpy(&size, buf + pos + 16, 8);
        if (size > len - pos - SNAP_SECTION_HDR)
            break;
        sum = XXH3_64bits_withSeed(buf + pos + SNAP_SECTION_HDR, size, XXH3_64bits(buf + pos, 24));
        memcpy(buf + pos + 24, &sum, 8);
        pos += SNAP_SECTION_HDR + size;
    }
    sum = XXH3_64bits(buf, 40);
    memcpy(buf + 40, &sum, 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct snapshot *s;
    uint8_t *buf;
    char err[512];

    if (size < 1)
        return 0;
    buf = malloc(size - 1 + 1);
    if (!buf)
        abort();
    memcpy(buf, data + 1, size - 1);
    if (data[0] & 1)
        reseal(buf, size - 1);
    if (snapshot_decode(&s, buf, size - 1, err, sizeof(err))) {
        if (!err[0] || strchr(err, '\n'))
            abort(); /* every refusal is one line saying why */
        free(buf);
        return 0;
    }
    restore(s);
    snapshot_free(s);
    free(buf);
    return 0;
}
