/* libFuzzer target: virtio-blk requests (headers, data, status byte) on a memfd-backed disk. */
#include "fuzz_common.h"
#include "virtio_devices.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define DISK_BYTES (64 * 1024) /* 128 sectors */
#define RO_BASE    (FZ_BASE + 0x1000)

static struct fake_vm f;
static struct virtio_dev rw_dev, ro_dev;

/* Feature bits the driver may take: SEG_MAX, RO, BLK_SIZE, FLUSH, DISCARD, WRITE_ZEROES,
 * EVENT_IDX, INDIRECT_DESC. */
static const int blk_bits[] = {2, 5, 6, 9, 13, 14, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC};

/* A disk on a memfd, opened through /proc like any path. No loop: requests run synchronously,
 * so one input always does the same thing. */
static void create(struct virtio_dev *d, uint64_t base, bool readonly)
{
    struct disk_config c = {.readonly = readonly};
    int fd = memfd_create("fuzz-disk", MFD_CLOEXEC);

    if (fd < 0 || ftruncate(fd, DISK_BYTES))
        abort();
    snprintf(c.path, sizeof(c.path), "/proc/self/fd/%d", fd);
    if (virtio_blk_create(d, &c, NULL) || virtio_mmio_init(d, &f.vm, NULL, base, 5))
        abort();
    /* the device opened its own descriptor: fd stays open as the disk's only name */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fake_vm_init(&f, FZ_MEM);
    create(&rw_dev, FZ_BASE, false);
    create(&ro_dev, RO_BASE, true);
    return 0;
}

/* Input: [features, nr_avail, window...]; feature selector bit 7 (INDIRECT_DESC) also picks
 * nothing else; bit 1 (RO, never offered on the rw disk) sends the requests to the read-only
 * disk instead. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fake_queue q;
    struct fz_input in;
    struct virtio_dev *d;
    uint64_t base;

    if (fz_parse(data, size, &in))
        return 0;
    d = in.features & 2 ? &ro_dev : &rw_dev;
    base = d->mmio_base;
    if (fake_negotiate(&f, base, fz_features(&f, base, in.features, blk_bits, 8)) !=
        (S_ACK | S_DRV | S_FOK))
        abort();
    if (fake_queue_setup(&q, &f, base, 0, FZ_QSIZE, FZ_DESC, FZ_AVAIL, FZ_USED) != 1)
        abort();
    fz_load(&f, &in);
    fake_wr(&f, base, R_STATUS, S_DRIVER_UP);
    /* What the kick handler does (there is no loop). */
    pthread_mutex_lock(&d->lock);
    virtq_turn_begin(&d->vq[0]);
    if (!d->broken)
        d->ops->queue_notify(d, &d->vq[0]);
    pthread_mutex_unlock(&d->lock);
    fz_check_status(&f, base);
    if (fake_used_idx(&q) > in.nr_avail)
        abort(); /* more chains used than were made available */
    return 0;
}
