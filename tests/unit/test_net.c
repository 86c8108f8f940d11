/* Unit tests for virtio-net without KVM: tx checks, rx and backpressure, slirp, TAP flag errors. */
#include "check.h"
#include "fake_vm.h"
#include "net_backend.h"
#include "virtio.h"
#include "virtio_devices.h"
#include "vm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define QSIZE     16
#define RX_BUFS   0x100000ULL /* QSIZE buffers of 128 KiB */
#define RX_STRIDE 0x20000ULL
#define TX_DATA   0x400000ULL
#define BIT(n)    (1ULL << (n))
#define VERSION_1 BIT(32)

#define F(name) BIT(VIRTIO_NET_F_##name)

static struct fake_vm fv;

struct dev_under_test {
    struct virtio_dev dev;
    uint64_t base;
    struct fake_queue rx, tx;
};

/* ---- a fake pull backend: frames come from a datagram socket pair, sent ones are kept ---- */

static struct fake {
    struct net_be be;
    int peer; /* the test writes received frames here */
    int nsent, nrecv, destroyed, iovcnt, recv_iovcnt;
    struct virtio_net_hdr_v1 hdr;
    size_t len;
    uint8_t frame[NET_MAX_FRAME];
    uint64_t offload;
} fake;

static int fake_send(struct net_be *b, const struct iovec *iov, int iovcnt)
{
    int i = 0;

    fake.iovcnt = iovcnt;
    if (b->vnet_hdr) {
        CHECK_EQ(iov[0].iov_len, NET_HDR_LEN);
        memcpy(&fake.hdr, iov[0].iov_base, NET_HDR_LEN);
        i = 1;
    }
    if (!b->tx_guest_iov)
        CHECK_EQ(iovcnt, i + 1); /* the frame copied out into one buffer */
    for (fake.len = 0; i < iovcnt; i++) {
        CHECK(fake.len + iov[i].iov_len <= sizeof(fake.frame));
        memcpy(fake.frame + fake.len, iov[i].iov_base, iov[i].iov_len);
        fake.len += iov[i].iov_len;
    }
    fake.nsent++;
    return 0;
}

static ssize_t fake_recv(struct net_be *b, const struct iovec *iov, int iovcnt)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    ssize_t n = recvmsg(b->fd, &m, MSG_DONTWAIT);

    fake.recv_iovcnt = iovcnt;
    fake.nrecv++;
    return n < 0 ? -errno : n;
}

static int fake_set_offload(struct net_be *b, uint64_t guest)
{
    (void)b;
    fake.offload = guest;
    return 0;
}

static void fake_destroy(struct net_be *b)
{
    close(b->fd);
    close(fake.peer);
    fake.destroyed++;
}

static const struct net_be_ops fake_ops = {
        .send = fake_send,
        .recv = fake_recv,
        .set_offload = fake_set_offload,
        .destroy = fake_destroy,
};

static struct net_be *fake_open(bool vnet_hdr)
{
    int sv[2];

    CHECK_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    memset(&fake, 0, sizeof(fake));
    fake.be = (struct net_be){.ops = &fake_ops, .name = "fake", .fd = sv[0]};
    fake.be.vnet_hdr = vnet_hdr;
    fake.be.offloads = vnet_hdr ? F(CSUM) | F(GUEST_CSUM) | F(HOST_TSO4) | F(HOST_TSO6) |
                                          F(GUEST_TSO4) | F(GUEST_TSO6)
                                : 0;
    fake.peer = sv[1];
    return &fake.be;
}

/* ---- the driver side ---- */

static uint32_t rd(struct dev_under_test *t, uint64_t off)
{
    return fake_rd(&fv, t->base, off);
}

static void wr(struct dev_under_test *t, uint64_t off, uint32_t v)
{
    fake_wr(&fv, t->base, off, v);
}

static void run_loop(int n, int timeout_ms)
{
    CHECK_EQ(fake_vm_run(&fv, n, timeout_ms), 0);
}

static void setup_queue(struct dev_under_test *t, struct fake_queue *q, int index, uint64_t rings)
{
    wr(t, R_QUEUE_SEL, (uint32_t)index);
    CHECK_EQ(rd(t, R_QUEUE_MAX), 256);
    CHECK_EQ(fake_queue_setup(q, &fv, t->base, index, QSIZE, rings, rings + 0x1000, rings + 0x2000),
             1);
}

static void driver_up(struct dev_under_test *t, uint64_t features)
{
    CHECK_EQ(fake_negotiate(&fv, t->base, features), S_ACK | S_DRV | S_FOK);
    setup_queue(t, &t->rx, 0, 0x10000 + (t->base - FAKE_VIRTIO_BASE) * 16);
    setup_queue(t, &t->tx, 1, 0x18000 + (t->base - FAKE_VIRTIO_BASE) * 16);
    wr(t, R_STATUS, S_DRIVER_UP);
    run_loop(2, 0);
}

/* Make a chain of n buffers available and notify the device. */
static void post(struct fake_queue *q, const struct fake_buf *b, int n)
{
    fake_queue_post(q, b, n);
    fake_queue_kick(q);
}

static uint16_t used_idx(const struct fake_queue *q)
{
    return fake_used_idx(q);
}

/* Length the device wrote into used entry i. */
static uint32_t used_len(const struct fake_queue *q, uint16_t i)
{
    return fake_used_len(q, i);
}

static struct virtio_net_stats stats(struct dev_under_test *t)
{
    struct virtio_net_stats s;

    virtio_net_get_stats(&t->dev, &s);
    return s;
}

/* Transmit header + frame of len bytes (filled with a pattern) as two descriptors. */
static void tx(struct dev_under_test *t, const struct virtio_net_hdr_v1 *h, size_t len)
{
    uint8_t *p = guest_ptr(&fv.vm.mem, TX_DATA, NET_HDR_LEN + len);
    struct fake_buf b[2] = {{TX_DATA, NET_HDR_LEN, 0}, {TX_DATA + NET_HDR_LEN, (uint32_t)len, 0}};

    CHECK(p != NULL);
    memcpy(p, h, NET_HDR_LEN);
    for (size_t i = 0; i < len; i++)
        p[NET_HDR_LEN + i] = (uint8_t)(i * 7 + 1);
    post(&t->tx, b, len ? 2 : 1);
    run_loop(2, 0);
}

static void post_rx(struct dev_under_test *t, int slot, uint32_t len)
{
    struct fake_buf b = {RX_BUFS + RX_STRIDE * (uint64_t)slot, len, F_WRITE};

    memset(guest_ptr(&fv.vm.mem, b.gpa, len), 0xee, len);
    post(&t->rx, &b, 1);
}

static void *rx_buf(int slot)
{
    return guest_ptr(&fv.vm.mem, RX_BUFS + RX_STRIDE * (uint64_t)slot, RX_STRIDE);
}

static void peer_send(const struct virtio_net_hdr_v1 *h, size_t len, uint8_t seed)
{
    static uint8_t buf[NET_HDR_LEN + NET_MAX_FRAME];

    memcpy(buf, h, NET_HDR_LEN);
    for (size_t i = 0; i < len; i++)
        buf[NET_HDR_LEN + i] = (uint8_t)(seed + i);
    CHECK_EQ(send(fake.peer, buf, NET_HDR_LEN + len, 0), (ssize_t)(NET_HDR_LEN + len));
}

static bool frame_is(const uint8_t *p, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(seed + i))
            return false;
    return true;
}

static void create_fake(struct dev_under_test *t, uint64_t base, bool vnet_hdr)
{
    static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

    t->base = base;
    CHECK_EQ(virtio_net_create_with(&t->dev, fake_open(vnet_hdr), mac, &fv.loop), 0);
    CHECK_EQ(virtio_mmio_init(&t->dev, &fv.vm, &fv.loop, base, FAKE_VIRTIO_IRQ), 0);
}

/* ---- tests ---- */

static void test_identity(struct dev_under_test *t)
{
    uint8_t cfg[8];

    CHECK_EQ(rd(t, R_DEVICE_ID), 1);
    wr(t, R_DEV_FEAT_SEL, 0);
    CHECK_EQ(rd(t, R_DEV_FEAT) & (F(MAC) | F(STATUS) | F(CSUM) | F(GUEST_TSO4) | F(MRG_RXBUF)),
             F(MAC) | F(STATUS) | F(CSUM) | F(GUEST_TSO4));
    for (int i = 0; i < 8; i++)
        CHECK_EQ(bus_read(&fv.vm.mmio, t->base + R_CONFIG + (uint64_t)i, cfg + i, 1), 0);
    CHECK_EQ(cfg[0], 0x52);
    CHECK_EQ(cfg[5], 0x56);
    CHECK_EQ(cfg[6] | cfg[7] << 8, VIRTIO_NET_S_LINK_UP);
}

static void test_tx_valid(struct dev_under_test *t)
{
    struct virtio_net_hdr_v1 h = {0};
    uint16_t used = used_idx(&t->tx);

    tx(t, &h, 60);
    CHECK_EQ(fake.nsent, 1);
    CHECK_EQ(fake.len, 60);
    CHECK_EQ(fake.iovcnt, 2);
    CHECK_EQ(fake.frame[59], (uint8_t)(59 * 7 + 1));
    CHECK_EQ(used_idx(&t->tx), used + 1);
    CHECK_EQ(used_len(&t->tx, used), 0);

    /* Partial checksum, then a TSO frame: both negotiated. */
    h = (struct virtio_net_hdr_v1){
            .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = 16};
    tx(t, &h, 60);
    CHECK_EQ(fake.nsent, 2);
    CHECK_EQ(fake.hdr.csum_start, 34);
    h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
    h.gso_size = 1448;
    h.hdr_len = 54;
    h.num_buffers = 7; /* ignored on transmit, not passed on */
    tx(t, &h, 20000);
    CHECK_EQ(fake.nsent, 3);
    CHECK_EQ(fake.len, 20000);
    CHECK_EQ(fake.hdr.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
    CHECK_EQ(fake.hdr.num_buffers, 0);
    /* The largest frame. */
    h = (struct virtio_net_hdr_v1){0};
    tx(t, &h, NET_MAX_FRAME);
    CHECK_EQ(fake.nsent, 4);
    CHECK_EQ(stats(t).tx_packets, 4);
}

/* A backend that only copies frames (TAP) gets them straight from guest memory, in the
 * chain's pieces; the header is still ember's own checked copy. */
static void test_tx_from_guest_memory(struct dev_under_test *t)
{
    struct virtio_net_hdr_v1 h = {.num_buffers = 3};
    uint8_t *p = guest_ptr(&fv.vm.mem, TX_DATA, 0x10000);
    struct fake_buf b[3] = {{TX_DATA, NET_HDR_LEN + 10, 0},
                            {TX_DATA + 0x4000, 1000, 0},
                            {TX_DATA + 0x8000, 500, 0}};
    int sent = fake.nsent;

    fake.be.tx_guest_iov = true;
    memcpy(p, &h, NET_HDR_LEN);
    for (int i = 0; i < 10; i++)
        p[NET_HDR_LEN + i] = (uint8_t)i;
    for (int i = 0; i < 1000; i++)
        p[0x4000 + i] = (uint8_t)(10 + i);
    for (int i = 0; i < 500; i++)
        p[0x8000 + i] = (uint8_t)(1010 + i);
    post(&t->tx, b, 3);
    run_loop(2, 0);
    CHECK_EQ(fake.nsent, sent + 1);
    CHECK_EQ(fake.iovcnt, 4); /* header, then the frame's three pieces */
    CHECK_EQ(fake.len, 1510);
    CHECK(frame_is(fake.frame, 1510, 0));
    CHECK_EQ(fake.hdr.num_buffers, 0); /* ember's copy, cleaned */
    fake.be.tx_guest_iov = false;
}

static void tx_bad(struct dev_under_test *t, const struct virtio_net_hdr_v1 *h, size_t len)
{
    int sent = fake.nsent;
    uint64_t dropped = stats(t).tx_dropped;
    uint16_t used = used_idx(&t->tx);

    tx(t, h, len);
    CHECK_EQ(fake.nsent, sent);
    CHECK_EQ(stats(t).tx_dropped, dropped + 1);
    CHECK_EQ(used_idx(&t->tx), used + 1); /* the chain still comes back */
    CHECK(!t->dev.broken);
}

static void test_tx_malformed(struct dev_under_test *t)
{
    const uint8_t csum = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    struct virtio_net_hdr_v1 h;
    struct fake_buf b[2];

    tx_bad(t, &(struct virtio_net_hdr_v1){.gso_type = 2}, 60);
    tx_bad(t, &(struct virtio_net_hdr_v1){.gso_type = 200}, 60);
    tx_bad(t, &(struct virtio_net_hdr_v1){.flags = csum, .gso_type = 5, .gso_size = 1000}, 60);
    /* Not negotiated: TCPv6 TSO, UDP, ECN. */
    tx_bad(t, &(struct virtio_net_hdr_v1){.flags = csum, .gso_type = 4, .gso_size = 1000}, 600);
    tx_bad(t, &(struct virtio_net_hdr_v1){.flags = csum, .gso_type = 3, .gso_size = 1000}, 600);
    tx_bad(t, &(struct virtio_net_hdr_v1){.flags = csum, .gso_type = 0x81, .gso_size = 1000}, 600);
    /* TSO without a partial checksum, or with gso_size 0. */
    tx_bad(t, &(struct virtio_net_hdr_v1){.gso_type = 1, .gso_size = 1000}, 600);
    tx_bad(t, &(struct virtio_net_hdr_v1){.flags = csum, .gso_type = 1}, 600);
    /* Checksum field past the end (exactly at the end is fine). */
    h = (struct virtio_net_hdr_v1){.flags = csum, .csum_start = 34, .csum_offset = 25};
    tx_bad(t, &h, 60);
    h.csum_start = 0xffff;
    h.csum_offset = 0xffff;
    tx_bad(t, &h, 60);
    h.csum_start = 34;
    h.csum_offset = 24;
    tx(t, &h, 60);
    CHECK_EQ(fake.len, 60);
    /* hdr_len past the end, unknown flags, DATA_VALID (receive only). */
    tx_bad(t, &(struct virtio_net_hdr_v1){.hdr_len = 61}, 60);
    tx_bad(t, &(struct virtio_net_hdr_v1){.flags = 0x80}, 60);
    tx_bad(t, &(struct virtio_net_hdr_v1){.flags = VIRTIO_NET_HDR_F_DATA_VALID}, 60);
    /* Zero-length, runt and oversized frames. */
    h = (struct virtio_net_hdr_v1){0};
    tx_bad(t, &h, 0);
    tx_bad(t, &h, 13);
    tx_bad(t, &h, NET_MAX_FRAME + 1);
    tx_bad(t, &h, 1 << 20);
    /* A header shorter than 12 bytes, and a chain with a writable buffer. */
    b[0] = (struct fake_buf){TX_DATA, 8, 0};
    post(&t->tx, b, 1);
    run_loop(1, 0);
    b[0] = (struct fake_buf){TX_DATA, 12, 0};
    b[1] = (struct fake_buf){TX_DATA + 12, 100, F_WRITE};
    post(&t->tx, b, 2);
    run_loop(1, 0);
    CHECK(!t->dev.broken);
    CHECK_EQ(fake.nsent, 6);
    CHECK_EQ(t->dev.stat_errors, stats(t).tx_dropped);
}

static void test_rx(struct dev_under_test *t)
{
    struct virtio_net_hdr_v1 h = {0}, got;
    uint16_t used = used_idx(&t->rx);
    uint8_t *p = rx_buf(0);

    post_rx(t, 0, 2048);
    run_loop(2, 0);
    peer_send(&h, 100, 3);
    run_loop(2, 0);
    CHECK_EQ(used_idx(&t->rx), used + 1);
    CHECK_EQ(used_len(&t->rx, used), NET_HDR_LEN + 100);
    memcpy(&got, p, NET_HDR_LEN);
    CHECK_EQ(got.num_buffers, 1);
    CHECK_EQ(got.flags, 0);
    CHECK(frame_is(p + NET_HDR_LEN, 100, 3));
    CHECK_EQ(p[NET_HDR_LEN + 100], 0xee);

    /* Offloads the guest accepted pass (GUEST_CSUM, GUEST_TSO4); others drop the frame but
     * keep the buffer for the next one. */
    post_rx(t, 1, 70000);
    h = (struct virtio_net_hdr_v1){.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                   .gso_type = 4,
                                   .gso_size = 1448,
                                   .csum_start = 54,
                                   .csum_offset = 16};
    peer_send(&h, 3000, 9); /* TCPv6 TSO: not accepted */
    h.gso_type = 0x21;
    peer_send(&h, 3000, 9);
    h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
    peer_send(&h, 60000, 5);
    run_loop(2, 0);
    CHECK_EQ(used_idx(&t->rx), used + 2);
    CHECK_EQ(used_len(&t->rx, used + 1), NET_HDR_LEN + 60000);
    memcpy(&got, rx_buf(1), NET_HDR_LEN);
    CHECK_EQ(got.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
    CHECK_EQ(got.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
    CHECK_EQ(got.num_buffers, 1);
    CHECK(frame_is((uint8_t *)rx_buf(1) + NET_HDR_LEN, 60000, 5));
    CHECK_EQ(fake.recv_iovcnt, 2); /* a big buffer: read straight into it, header to the side */
    CHECK_EQ(stats(t).rx_dropped, 2);

    /* A big buffer in pieces, the header's place in the first: the frame lands across them. */
    {
        struct fake_buf pieces[3] = {{RX_BUFS + RX_STRIDE * 2, NET_HDR_LEN + 100, F_WRITE},
                                     {RX_BUFS + RX_STRIDE * 3, 40000, F_WRITE},
                                     {RX_BUFS + RX_STRIDE * 4, 40000, F_WRITE}};

        post(&t->rx, pieces, 3);
        h = (struct virtio_net_hdr_v1){.num_buffers = 9};
        peer_send(&h, 50000, 11);
        run_loop(2, 0);
        CHECK_EQ(fake.recv_iovcnt, 4);
        CHECK_EQ(used_idx(&t->rx), used + 3);
        CHECK_EQ(used_len(&t->rx, used + 2), NET_HDR_LEN + 50000);
        memcpy(&got, rx_buf(2), NET_HDR_LEN);
        CHECK_EQ(got.num_buffers, 1); /* checked and fixed before it went in */
        CHECK(frame_is((uint8_t *)rx_buf(2) + NET_HDR_LEN, 100, 11));
        CHECK(frame_is(rx_buf(3), 40000, (uint8_t)(11 + 100)));
        CHECK(frame_is(rx_buf(4), 9900, (uint8_t)(11 + 40100)));
        used++;
    }

    /* A buffer too small for the frame: dropped, the buffer comes back empty. */
    post_rx(t, 2, 64);
    h = (struct virtio_net_hdr_v1){0};
    peer_send(&h, 100, 1);
    run_loop(2, 0);
    CHECK_EQ(used_idx(&t->rx), used + 3);
    CHECK_EQ(used_len(&t->rx, used + 2), 0);
    CHECK_EQ(stats(t).rx_dropped, 3);
    /* A header-sized buffer is too small for anything. */
    post_rx(t, 2, NET_HDR_LEN);
    peer_send(&h, 14, 1);
    run_loop(2, 0);
    CHECK_EQ(used_len(&t->rx, used + 3), 0);
    CHECK_EQ(stats(t).rx_packets, 3);
}

static void test_rx_backpressure(struct dev_under_test *t)
{
    struct virtio_net_hdr_v1 h = {0};
    uint16_t used = used_idx(&t->rx);
    uint8_t peek[16];
    int nrecv;

    /* No buffers: the frames stay in the backend and the device stops polling it. */
    for (int i = 0; i < 3; i++)
        peer_send(&h, 200, (uint8_t)(40 + i));
    run_loop(3, 0);
    nrecv = fake.nrecv;
    run_loop(5, 0);
    CHECK_EQ(fake.nrecv, nrecv);
    CHECK_EQ(used_idx(&t->rx), used);
    CHECK_EQ(recv(fake.be.fd, peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT), sizeof(peek));

    /* The guest adds buffers and kicks: delivery resumes in order. */
    for (int i = 0; i < 3; i++)
        post_rx(t, 3 + i, 2048);
    run_loop(3, 0);
    CHECK_EQ(used_idx(&t->rx), used + 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(used_len(&t->rx, (uint16_t)(used + i)), NET_HDR_LEN + 200);
        CHECK(frame_is((uint8_t *)rx_buf(3 + i) + NET_HDR_LEN, 200, (uint8_t)(40 + i)));
    }
    CHECK_EQ(recv(fake.be.fd, peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT), -1);
}

static void test_broken_and_reset(struct dev_under_test *t)
{
    struct fake_buf b = {0x7ffff000ULL, 64, 0}; /* outside the 16 MiB of RAM */
    struct virtio_net_hdr_v1 h = {0};

    post(&t->tx, &b, 1);
    run_loop(2, 0);
    CHECK(t->dev.broken);
    CHECK(rd(t, R_STATUS) & S_NR);
    wr(t, R_STATUS, 0);
    CHECK(!t->dev.broken);
    /* The vCPU that wrote the register did no device work: the backend hears of the reset from
     * the event loop. */
    CHECK_EQ(fake.offload, F(GUEST_CSUM) | F(GUEST_TSO4));
    run_loop(1, 0);
    CHECK_EQ(fake.offload, 0);

    /* A new driver, without offloads this time: partial checksums are refused. */
    driver_up(t, VERSION_1 | F(MAC));
    CHECK_EQ(fake.offload, 0);
    h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h.csum_start = 34;
    h.csum_offset = 16;
    tx_bad(t, &h, 60);
    post_rx(t, 0, 2048);
    run_loop(2, 0);
    peer_send(&h, 100, 1); /* the backend hands a partial checksum anyway: dropped */
    h = (struct virtio_net_hdr_v1){.flags = VIRTIO_NET_HDR_F_DATA_VALID};
    peer_send(&h, 100, 2); /* DATA_VALID is cleared */
    run_loop(2, 0);
    CHECK_EQ(used_idx(&t->rx), 1);
    memcpy(&h, rx_buf(0), NET_HDR_LEN);
    CHECK_EQ(h.flags, 0);
    CHECK(frame_is((uint8_t *)rx_buf(0) + NET_HDR_LEN, 100, 2));
}

/* A backend without vnet headers gets the bare frame. */
static void test_plain_backend(void)
{
    static struct dev_under_test t;
    struct virtio_net_hdr_v1 h = {0};

    create_fake(&t, FAKE_VIRTIO_BASE + VIRTIO_MMIO_SIZE, false);
    wr(&t, R_DEV_FEAT_SEL, 0);
    CHECK_EQ(rd(&t, R_DEV_FEAT) & (F(CSUM) | F(GUEST_CSUM) | F(HOST_TSO4)), 0);
    driver_up(&t, VERSION_1 | F(MAC) | F(STATUS));
    tx(&t, &h, 60);
    CHECK_EQ(fake.nsent, 1);
    CHECK_EQ(fake.iovcnt, 1);
    post_rx(&t, 0, 2048);
    CHECK_EQ(send(fake.peer, "abcdefghijklmnopqrstuvwxyz", 26, 0), 26);
    run_loop(3, 0);
    CHECK_EQ(used_idx(&t.rx), 1);
    CHECK_EQ(used_len(&t.rx, 0), NET_HDR_LEN + 26);
    CHECK(memcmp((uint8_t *)rx_buf(0) + NET_HDR_LEN, "abcdefghijklmnopqrstuvwxyz", 26) == 0);
    virtio_mmio_destroy(&t.dev);
    CHECK_EQ(fake.destroyed, 1);
}

/* ---- slirp ---- */

static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc};

/* An ARP request from the guest (10.0.2.15) for 10.0.2.2. */
static size_t arp_request(uint8_t *f)
{
    static const uint8_t arp[] = {0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01};
    const uint8_t sip[4] = {10, 0, 2, 15}, tip[4] = {10, 0, 2, 2};

    memset(f, 0, 60);
    memset(f, 0xff, 6);
    memcpy(f + 6, guest_mac, 6);
    f[12] = 0x08;
    f[13] = 0x06;
    memcpy(f + 14, arp, sizeof(arp));
    memcpy(f + 22, guest_mac, 6);
    memcpy(f + 28, sip, 4);
    memcpy(f + 38, tip, 4);
    return 60;
}

static bool is_arp_reply_from_host(const uint8_t *f)
{
    const uint8_t host[4] = {10, 0, 2, 2};

    return f[12] == 0x08 && f[13] == 0x06 && f[20] == 0 && f[21] == 2 &&
           memcmp(f + 28, host, 4) == 0 && memcmp(f, guest_mac, 6) == 0;
}

static void tx_arp(struct dev_under_test *t)
{
    uint8_t *p = guest_ptr(&fv.vm.mem, TX_DATA, 128);
    struct fake_buf b = {TX_DATA, (uint32_t)(NET_HDR_LEN + arp_request(p + NET_HDR_LEN)), 0};

    memset(p, 0, NET_HDR_LEN);
    post(&t->tx, &b, 1);
    run_loop(3, 0);
}

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    CHECK_EQ(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void test_slirp(void)
{
    static struct dev_under_test t;
    struct net_config cfg = {.backend = NET_USER, .mac_set = 1, .nr_fwd = 1, .tap_fd = -1};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    uint16_t used;
    uint8_t *f;
    int fd;

    memcpy(cfg.mac, guest_mac, 6);
    cfg.fwd[0] = (struct hostfwd){.host_addr = htonl(INADDR_LOOPBACK),
                                  .host_port = (uint16_t)free_port(),
                                  .guest_port = 80};
    t.base = FAKE_VIRTIO_BASE + 2 * VIRTIO_MMIO_SIZE;
    CHECK_EQ(virtio_net_create(&t.dev, &cfg, &fv.loop), 0);
    CHECK_EQ(virtio_mmio_init(&t.dev, &fv.vm, &fv.loop, t.base, FAKE_VIRTIO_IRQ + 2), 0);
    driver_up(&t, VERSION_1 | F(MAC) | F(STATUS));

    /* slirp answers an ARP request for its host address at once. */
    post_rx(&t, 0, 2048);
    tx_arp(&t);
    CHECK_EQ(used_idx(&t.rx), 1);
    CHECK(used_len(&t.rx, 0) >= NET_HDR_LEN + 42);
    CHECK(is_arp_reply_from_host((uint8_t *)rx_buf(0) + NET_HDR_LEN));

    /* No receive buffer: the reply waits in the device until the guest gives one. */
    tx_arp(&t);
    CHECK_EQ(used_idx(&t.rx), 1);
    post_rx(&t, 1, 2048);
    run_loop(3, 0);
    CHECK_EQ(used_idx(&t.rx), 2);
    CHECK(is_arp_reply_from_host((uint8_t *)rx_buf(1) + NET_HDR_LEN));

    /* hostfwd: a connection to the host port makes slirp talk to 10.0.2.15:80. */
    for (int i = 0; i < 4; i++)
        post_rx(&t, 2 + i, 2048);
    run_loop(2, 0);
    used = used_idx(&t.rx);
    a.sin_port = htons(cfg.fwd[0].host_port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EINPROGRESS);
    for (int i = 0; i < 40 && used_idx(&t.rx) == used; i++)
        run_loop(1, 50);
    CHECK(used_idx(&t.rx) != used);
    f = (uint8_t *)rx_buf(2) + NET_HDR_LEN;
    /* IPv4 TCP SYN to port 80, or first an ARP request for the guest. */
    CHECK((f[12] == 0x08 && f[13] == 0x00 && f[23] == 6 && f[36] == 0 && f[37] == 80) ||
          (f[12] == 0x08 && f[13] == 0x06));
    close(fd);
    virtio_mmio_destroy(&t.dev);
}

/* ---- TAP flag errors (no /dev/net/tun needed) ---- */

static void test_tap_fd_errors(void)
{
    struct net_config cfg = {.backend = NET_TAP_FD};
    struct net_be *b = NULL;
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

    cfg.tap_fd = fd;
    CHECK_EQ(net_tap_open(&cfg, &b), -EINVAL);
    CHECK(b == NULL);
    CHECK(fcntl(fd, F_GETFD) >= 0); /* not ours to close */
    close(fd);
    cfg.tap_fd = 9999;
    CHECK_EQ(net_tap_open(&cfg, &b), -EBADF);
}

/* The same head forever on the transmit queue (a frame shorter than its header, dropped): every
 * round of the loop comes back with a bounded number of chains taken. */
static void test_same_head_forever(struct dev_under_test *t)
{
    struct fake_buf b = {TX_DATA, 12, 0};
    unsigned most;

    most = fake_repost_flood(&fv, &t->tx, fake_queue_post(&t->tx, &b, 1), 20,
                             "virtio-net, the same head forever");
    CHECK(most > 0 && most <= 256);
    CHECK(!t->dev.broken);
}

int main(void)
{
    static struct dev_under_test t;

    fake_vm_init(&fv, 16ULL << 20);

    create_fake(&t, FAKE_VIRTIO_BASE, true);
    test_identity(&t);
    driver_up(&t, VERSION_1 | F(MAC) | F(STATUS) | F(CSUM) | F(GUEST_CSUM) | F(HOST_TSO4) |
                          F(GUEST_TSO4));
    CHECK_EQ(fake.offload, F(GUEST_CSUM) | F(GUEST_TSO4));
    test_tx_valid(&t);
    test_tx_from_guest_memory(&t);
    test_tx_malformed(&t);
    test_rx(&t);
    test_rx_backpressure(&t);
    test_broken_and_reset(&t);
    driver_up(&t, VERSION_1 | F(MAC) | F(STATUS));
    test_same_head_forever(&t);
    virtio_mmio_destroy(&t.dev);
    CHECK_EQ(fake.destroyed, 1);

    test_plain_backend();
    test_slirp();
    test_tap_fd_errors();

    fake_vm_free(&fv);
    return check_done("net");
}
