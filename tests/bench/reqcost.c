/* Fixed virtio-blk and virtio-net workloads for callgrind: ember's own instructions per request. */
/*
 * Drives the real devices (virtio-mmio transport, queues, virtio-blk on io_uring, virtio-net)
 * through the MMIO bus and the event loop, without KVM, like tests/unit. Each phase posts a
 * batch of requests (driver work, not counted), then calls one measure_* function that plays
 * the queue notification and runs the event loop until the batch is used: callgrind counts only
 * inside measure_* (--toggle-collect, see tests/bench/reqcost.py).
 *   bench_reqcost blk-read|blk-write|net-tx|net-rx|net-tx-tap|net-rx-big  [batches]
 * Prints "requests N". Exit status 1 when the device did not do the work.
 */
#include "check.h"
#include "config.h"
#include "fake_vm.h"
#include "net_backend.h"
#include "virtio.h"
#include "virtio_devices.h"
#include "vm.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define R_DRV_FEAT     0x020
#define R_DRV_FEAT_SEL 0x024
#define R_QUEUE_SEL    0x030
#define R_QUEUE_NUM    0x038
#define R_QUEUE_READY  0x044
#define R_NOTIFY       0x050
#define R_STATUS       0x070
#define R_DESC_LO      0x080
#define R_DRIVER_LO    0x090
#define R_DEVICE_LO    0x0a0

#define S_ALL        (1 | 2 | 4 | 8)
#define QSIZE        256
#define BATCH        32
#define F_EVENT_IDX  (1ULL << 29)
#define F_V1         (1ULL << 32)
#define BLK_F_FLUSH  (1ULL << 9)
#define BLK_F_SEGMAX (1ULL << 2)
#define BLK_SECTORS  (64 * 1024 * 2) /* 64 MiB disk */
#define DATA_GPA     0x1000000ULL    /* request buffers: BATCH * 64 KiB */
#define HDR_GPA      0x800000ULL
#define FRAME        1500
#define BIG_FRAME    65000       /* a TSO frame (net-rx-big) */
#define BIG_BUF      (70 * 1024) /* a receive buffer without MRG_RXBUF, with TSO */

struct drvq {
    int index;
    uint64_t desc, avail, used;
    uint16_t avail_idx, next_desc, used_seen;
};

static struct vm vm;
static struct loop loop;
static struct virtio_dev dev;
static uint64_t base = FAKE_VIRTIO_BASE;
static struct drvq q0, q1;
static int peer = -1;
static long sent;

static void wr(uint64_t off, uint32_t v)
{
    CHECK_EQ(bus_write(&vm.mmio, base + off, (const uint8_t *)&v, 4), 0);
}

static void setup_queue(struct drvq *q, int index, uint64_t rings)
{
    memset(guest_ptr(&vm.mem, rings, 0x3000), 0, 0x3000);
    *q = (struct drvq){
            .index = index, .desc = rings, .avail = rings + 0x1000, .used = rings + 0x2000};
    wr(R_QUEUE_SEL, (uint32_t)index);
    wr(R_QUEUE_NUM, QSIZE);
    wr(R_DESC_LO, (uint32_t)q->desc);
    wr(R_DRIVER_LO, (uint32_t)q->avail);
    wr(R_DEVICE_LO, (uint32_t)q->used);
    wr(R_QUEUE_READY, 1);
}

static void driver_up(uint64_t features, int nq)
{
    wr(R_STATUS, 0);
    wr(R_STATUS, 1 | 2);
    wr(R_DRV_FEAT_SEL, 0);
    wr(R_DRV_FEAT, (uint32_t)features);
    wr(R_DRV_FEAT_SEL, 1);
    wr(R_DRV_FEAT, (uint32_t)(features >> 32));
    wr(R_STATUS, 1 | 2 | 8);
    setup_queue(&q0, 0, 0x10000);
    if (nq > 1)
        setup_queue(&q1, 1, 0x20000);
    wr(R_STATUS, S_ALL);
}

/* Add one chain of n (gpa, len, device-writable) buffers to the avail ring, unpublished. */
static void add_chain(struct drvq *q, const uint64_t *gpa, const uint32_t *len, const bool *w,
                      int n)
{
    uint16_t head = q->next_desc;

    for (int i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((head + i) % QSIZE), next = (uint16_t)((idx + 1) % QSIZE);
        uint16_t flags = (uint16_t)((i + 1 < n ? 1 : 0) | (w[i] ? 2 : 0));
        uint8_t d[16];

        memcpy(d, &gpa[i], 8);
        memcpy(d + 8, &len[i], 4);
        memcpy(d + 12, &flags, 2);
        memcpy(d + 14, &next, 2);
        CHECK_EQ(guest_write(&vm.mem, q->desc + 16ULL * idx, d, 16), 0);
    }
    q->next_desc = (uint16_t)((head + n) % QSIZE);
    CHECK_EQ(guest_write(&vm.mem, q->avail + 4 + 2ULL * (q->avail_idx % QSIZE), &head, 2), 0);
    q->avail_idx++;
}

static void publish(struct drvq *q)
{
    CHECK_EQ(guest_write(&vm.mem, q->avail + 2, &q->avail_idx, 2), 0);
    /* EVENT_IDX: ask for an interrupt only at the end of the batch (as Linux does). */
    uint16_t ev = (uint16_t)(q->avail_idx - 1);
    CHECK_EQ(guest_write(&vm.mem, q->avail + 4 + 2ULL * QSIZE, &ev, 2), 0);
}

static uint16_t used_idx(const struct drvq *q)
{
    uint16_t v = 0;

    CHECK_EQ(guest_read(&vm.mem, q->used + 2, &v, 2), 0);
    return v;
}

/* Run the loop until q's used index reaches `until` (or ~10 s). */
static int run_until_used(struct drvq *q, uint16_t until)
{
    for (int i = 0; i < 10000 && used_idx(q) != until; i++)
        if (loop_run_once(&loop, 1) < 0)
            return -1;
    return used_idx(q) == until ? 0 : -1;
}

/* The only code callgrind counts: the guest's notification and the device work it causes. */
__attribute__((noinline)) int measure_notify(struct drvq *q)
{
    wr(R_NOTIFY, (uint32_t)q->index);
    return run_until_used(q, q->avail_idx);
}

__attribute__((noinline)) int measure_rx(struct drvq *q, uint16_t until)
{
    return run_until_used(q, until);
}

/* ---- virtio-blk ---- */

static int blk(bool write, int batches)
{
    char path[] = "/tmp/ember-reqcost-XXXXXX";
    struct disk_config cfg = {0};
    int fd = mkstemp(path);
    uint64_t sector = 0;

    if (fd < 0 || ftruncate(fd, BLK_SECTORS * 512ULL) < 0)
        return -errno;
    snprintf(cfg.path, sizeof(cfg.path), "%s", path);
    CHECK_EQ(virtio_blk_create(&dev, &cfg, &loop), 0);
    CHECK_EQ(virtio_mmio_init(&dev, &vm, &loop, base, FAKE_VIRTIO_IRQ), 0);
    driver_up(F_V1 | F_EVENT_IDX | BLK_F_FLUSH | BLK_F_SEGMAX, 1);
    for (int b = 0; b < batches; b++) {
        for (int i = 0; i < BATCH; i++) {
            uint32_t type = write ? 1 : 0, zero = 0;
            uint64_t hdr = HDR_GPA + 32ULL * i;
            uint8_t h[16] = {0};
            uint64_t gpa[3] = {hdr, DATA_GPA + 0x10000ULL * i, hdr + 16};
            uint32_t len[3] = {16, 4096, 1};
            bool w[3] = {false, !write, true};

            memcpy(h, &type, 4);
            memcpy(h + 4, &zero, 4);
            memcpy(h + 8, &sector, 8);
            CHECK_EQ(guest_write(&vm.mem, hdr, h, 16), 0);
            add_chain(&q0, gpa, len, w, 3);
            sector = (sector + 8 * 37) % BLK_SECTORS; /* scattered 4 KiB blocks */
        }
        publish(&q0);
        if (measure_notify(&q0) < 0)
            return -ETIMEDOUT;
    }
    virtio_mmio_destroy(&dev);
    close(fd);
    unlink(path);
    return 0;
}

/* ---- virtio-net with a fake backend: sent frames are counted, received ones come from a
 * datagram socket pair ---- */

static int fake_send(struct net_be *b, const struct iovec *iov, int iovcnt)
{
    (void)b;
    (void)iov;
    (void)iovcnt;
    sent++;
    return 0;
}

static ssize_t fake_recv(struct net_be *b, const struct iovec *iov, int iovcnt)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    ssize_t n = recvmsg(b->fd, &m, MSG_DONTWAIT);

    return n < 0 ? -errno : n;
}

static int fake_set_offload(struct net_be *b, uint64_t guest)
{
    (void)b;
    (void)guest;
    return 0;
}

static void fake_destroy(struct net_be *b)
{
    close(b->fd);
}

static const struct net_be_ops fake_ops = {
        .send = fake_send,
        .recv = fake_recv,
        .set_offload = fake_set_offload,
        .destroy = fake_destroy,
};

/* tap: the backend takes frames from guest memory (as TAP's writev does); big: 64 KiB frames
 * into 70 KiB buffers (read straight into them when the device can). */
static int net(bool tx, bool tap, bool big, int batches)
{
    static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    static struct net_be be;
    static uint8_t frame[NET_HDR_LEN + BIG_FRAME];
    size_t flen = big ? BIG_FRAME : FRAME;
    int sv[2], bufsize = big ? BIG_BUF : 2048;

    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    be = (struct net_be){.ops = &fake_ops, .name = "fake", .fd = sv[0], .vnet_hdr = true};
    be.tx_guest_iov = tap;
    peer = sv[1];
    CHECK_EQ(virtio_net_create_with(&dev, &be, mac, &loop), 0);
    CHECK_EQ(virtio_mmio_init(&dev, &vm, &loop, base, FAKE_VIRTIO_IRQ), 0);
    driver_up(F_V1 | F_EVENT_IDX, 2);
    for (int i = 0; i < 5; i++)
        loop_run_once(&loop, 0);
    memset(frame, 0x5a, sizeof(frame));
    memset(frame, 0, NET_HDR_LEN);
    for (int b = 0; b < batches; b++) {
        for (int i = 0; i < BATCH; i++) {
            uint64_t buf = DATA_GPA + (big ? 0x20000ULL : 0x10000ULL) * i;
            uint64_t gpa[2] = {buf, buf + NET_HDR_LEN};
            uint32_t len[2] = {NET_HDR_LEN, FRAME};
            bool w[2] = {false, false};
            uint32_t rxlen = (uint32_t)bufsize;
            bool rxw = true;

            if (tx) {
                CHECK_EQ(guest_write(&vm.mem, buf, frame, NET_HDR_LEN + FRAME), 0);
                add_chain(&q1, gpa, len, w, 2);
            } else {
                add_chain(&q0, &buf, &rxlen, &rxw, 1);
            }
        }
        if (tx) {
            publish(&q1);
            if (measure_notify(&q1) < 0)
                return -ETIMEDOUT;
        } else {
            publish(&q0);
            wr(R_NOTIFY, 0); /* buffers are there (not counted) */
            for (int i = 0; i < BATCH; i++) {
                CHECK_EQ(send(peer, frame, NET_HDR_LEN + flen, 0), (ssize_t)(NET_HDR_LEN + flen));
                /* 64 KiB frames one at a time: the socket holds few */
                if (big && measure_rx(&q0, (uint16_t)(q0.avail_idx - BATCH + i + 1)) < 0)
                    return -ETIMEDOUT;
            }
            if (!big && measure_rx(&q0, q0.avail_idx) < 0)
                return -ETIMEDOUT;
        }
    }
    CHECK(!tx || sent == (long)batches * BATCH);
    virtio_mmio_destroy(&dev);
    close(peer);
    return 0;
}

int main(int argc, char **argv)
{
    int batches = argc > 2 ? atoi(argv[2]) : 64, err;

    if (argc < 2 || batches <= 0) {
        fprintf(stderr,
                "usage: bench_reqcost blk-read|blk-write|net-tx|net-rx|net-tx-tap|net-rx-big "
                "[batches]\n");
        return 2;
    }
    vm.vm_fd = -1;
    vm.kvm_fd = -1;
    bus_init(&vm.mmio);
    CHECK_EQ(guest_mem_init(&vm.mem, &fake_ram_layout, 64ULL << 20, 0), 0);
    CHECK_EQ(loop_init(&loop), 0);
    if (!strcmp(argv[1], "blk-read") || !strcmp(argv[1], "blk-write"))
        err = blk(argv[1][4] == 'w', batches);
    else if (!strcmp(argv[1], "net-tx") || !strcmp(argv[1], "net-rx"))
        err = net(argv[1][4] == 't', false, false, batches);
    else if (!strcmp(argv[1], "net-tx-tap"))
        err = net(true, true, false, batches);
    else if (!strcmp(argv[1], "net-rx-big"))
        err = net(false, false, true, batches);
    else
        err = -EINVAL;
    loop_close(&loop);
    guest_mem_free(&vm.mem);
    if (err) {
        fprintf(stderr, "bench_reqcost %s: %s\n", argv[1], strerror(-err));
        return 1;
    }
    printf("requests %d\n", batches * BATCH);
    return check_done(argv[1]);
}
