/* libFuzzer target: the virtio-mmio register file, driven by a sequence of guest accesses. */
#include "fuzz_common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RINGS    0x10000ULL /* queue q's rings at RINGS + q * 0x1000 */
#define ECHO_BUF 0x18000ULL
#define CFG_SIZE 12

static struct fake_vm f;
static struct virtio_dev dev;
static struct virtq_chain chain;
static uint8_t config[CFG_SIZE];
static bool active;

static void cfg_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
    (void)d;
    if (off >= CFG_SIZE || len > CFG_SIZE - off)
        abort(); /* the transport must keep config accesses inside config_size */
    memcpy(data, config + off, len);
}

static void cfg_write(struct virtio_dev *d, uint32_t off, const uint8_t *data, uint32_t len)
{
    (void)d;
    if (off >= CFG_SIZE || len > CFG_SIZE - off)
        abort();
    memcpy(config + off, data, len);
}

static int activate(struct virtio_dev *d)
{
    if (active || !(d->status & VIRTIO_STATUS_FEATURES_OK))
        abort(); /* activated twice, or before the features were settled */
    active = true;
    return config[0] == 0xee ? -EIO : 0; /* sometimes fail, to reach that path */
}

static void reset(struct virtio_dev *d)
{
    (void)d;
    active = false;
}

/* Echo device: answers every chain by writing "ok" into it. */
static void queue_notify(struct virtio_dev *d, struct virtq *q)
{
    if (!active || d->broken || !q->ready || !(d->status & VIRTIO_STATUS_DRIVER_OK))
        abort(); /* a kick reached a device that is not running */
    fake_echo_queue(&f, d, q, &chain, fz_check_chain);
}

static const struct virtio_dev_ops ops = {
        .config_read = cfg_read,
        .config_write = cfg_write,
        .activate = activate,
        .reset = reset,
        .queue_notify = queue_notify,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fake_vm_init(&f, FZ_MEM);
    dev = (struct virtio_dev){.name = "fuzz-echo",
                              .device_id = 42,
                              .features = 1ULL << 3,
                              .config_size = CFG_SIZE,
                              .nr_queues = 2,
                              .queue_max = {8, 16},
                              .ops = &ops};
    if (virtio_mmio_init(&dev, &f.vm, &f.loop, FZ_BASE, 5))
        abort();
    return 0;
}

/* A well-behaved driver's set-up, so the fuzzer starts from a running device often. */
static void driver_up(uint32_t features)
{
    struct fake_queue q;

    fake_negotiate(&f, FZ_BASE, features | (1ULL << VIRTIO_F_VERSION_1));
    for (int i = 0; i < 2; i++)
        fake_queue_setup(&q, &f, FZ_BASE, i, 8, RINGS + 0x1000ULL * i,
                         RINGS + 0x1000ULL * i + 0x400, RINGS + 0x1000ULL * i + 0x800);
    fake_wr(&f, FZ_BASE, R_STATUS, S_DRIVER_UP);
}

/* Queue qi gets chain #n: a readable then a writable descriptor, published. */
static void post(int qi, uint16_t n)
{
    uint64_t rings = RINGS + 0x1000ULL * qi;
    uint16_t d = (uint16_t)(2 * (n % 4));

    fake_desc(&f, rings, d, ECHO_BUF, 4, F_NEXT, (uint16_t)(d + 1));
    fake_desc(&f, rings, (uint16_t)(d + 1), ECHO_BUF + 0x100, 16, F_WRITE, 0);
    fake_put16(&f, rings + 0x400 + 4 + 2ULL * (n % 8), d);
    fake_put16(&f, rings + 0x400 + 2, (uint16_t)(n + 1));
}

/* Input: 8-byte operations [kind, off_lo, off_hi, len, value (le32)]. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t lens[] = {4, 1, 2, 8};
    uint16_t posted[2] = {0, 0};
    uint64_t irq;

    fake_wr(&f, FZ_BASE, R_STATUS, 0);
    memset(guest_ptr(&f.vm.mem, RINGS, 0x9000), 0, 0x9000);
    memset(config, 0, sizeof(config));
    for (size_t i = 0; i + 8 <= size; i += 8) {
        const uint8_t *op = data + i;
        uint32_t off = (uint32_t)(op[1] | (op[2] & 0xf) << 8), len = lens[op[3] & 3], v;

        memcpy(&v, op + 4, 4);
        if (off > VIRTIO_MMIO_SIZE - len)
            off = VIRTIO_MMIO_SIZE - len; /* stay in the device's window: the bus ends there */
        switch (op[0] % 8) {
        case 0:
        case 1:
            fake_wrn(&f, FZ_BASE, off, v | (uint64_t)v << 32, len);
            break;
        case 2:
            (void)fake_rdn(&f, FZ_BASE, off, len);
            break;
        case 3:
            fake_vm_run(&f, 1, 0);
            break;
        case 4: /* the guest scribbles on its rings */
            fake_put(&f, RINGS + (off & ~3u) * 2, &v, 4);
            break;
        case 5:
            driver_up(v);
            break;
        case 6:
            post(op[3] & 1, posted[op[3] & 1]++);
            break;
        case 7:
            fake_wr(&f, FZ_BASE, R_NOTIFY, op[3] < 128 ? op[3] & 3 : v);
            break;
        }
        if ((fake_rd(&f, FZ_BASE, R_STATUS) & S_NR) && !dev.broken)
            abort(); /* NEEDS_RESET only ever comes from the device */
    }
    fake_vm_run(&f, 2, 0);
    (void)!read(dev.irq_fd, &irq, sizeof(irq));
    return 0;
}
