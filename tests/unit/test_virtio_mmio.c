/* Unit tests for the virtio-mmio register file, driven through the bus without KVM (vm_fd -1). */
#include "check.h"
#include "fake_vm.h"
#include "virtio.h"
#include "vm.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define BASE FAKE_VIRTIO_BASE

#define DESC_GPA  0x10000ULL
#define AVAIL_GPA 0x20000ULL
#define USED_GPA  0x30000ULL
#define DATA_GPA  0x100000ULL

static struct fake_vm fv;
static struct virtio_dev dev;
static uint8_t config[8] = {1, 2, 3, 4, 5, 6, 7, 8};
static int n_activate, n_reset, n_notify, n_config_write, activate_err;
static struct virtq_chain chain;

static void cfg_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
    (void)d;
    memcpy(data, config + off, len);
}

static void cfg_write(struct virtio_dev *d, uint32_t off, const uint8_t *data, uint32_t len)
{
    (void)d;
    memcpy(config + off, data, len);
    n_config_write++;
}

static int activate(struct virtio_dev *d)
{
    (void)d;
    n_activate++;
    return activate_err;
}

static void reset(struct virtio_dev *d)
{
    (void)d;
    n_reset++;
}

/* Echo device: answers every chain by writing "ok" into it. */
static void queue_notify(struct virtio_dev *d, struct virtq *q)
{
    n_notify++;
    fake_echo_queue(&fv, d, q, &chain, NULL);
}

static const struct virtio_dev_ops ops = {
        .config_read = cfg_read,
        .config_write = cfg_write,
        .activate = activate,
        .reset = reset,
        .queue_notify = queue_notify,
};

static uint32_t rd(uint64_t off)
{
    return fake_rd(&fv, BASE, off);
}

static void wr(uint64_t off, uint32_t v)
{
    fake_wr(&fv, BASE, off, v);
}

static uint64_t rdn(uint64_t off, uint32_t len)
{
    return fake_rdn(&fv, BASE, off, len);
}

static void wrn(uint64_t off, uint64_t v, uint32_t len)
{
    fake_wrn(&fv, BASE, off, v, len);
}

/* Interrupts signalled on the irqfd since the last call. */
static uint64_t irqs(void)
{
    uint64_t n = 0;

    if (read(dev.irq_fd, &n, sizeof(n)) != sizeof(n))
        return 0;
    return n;
}

static void run_loop(void)
{
    CHECK_EQ(fake_vm_run(&fv, 4, 0), 0);
}

static void ack_features(uint64_t f)
{
    wr(R_DRV_FEAT_SEL, 0);
    wr(R_DRV_FEAT, (uint32_t)f);
    wr(R_DRV_FEAT_SEL, 1);
    wr(R_DRV_FEAT, (uint32_t)(f >> 32));
}

/* Queue 0 with 8 entries at the fixed ring addresses. */
static void setup_queue0(void)
{
    wr(R_QUEUE_SEL, 0);
    wr(R_QUEUE_NUM, 8);
    wr(R_DESC_LO, (uint32_t)DESC_GPA);
    wr(R_DESC_HI, 0);
    wr(R_DRIVER_LO, (uint32_t)AVAIL_GPA);
    wr(R_DEVICE_LO, (uint32_t)USED_GPA);
    wr(R_QUEUE_READY, 1);
}

static void driver_up(uint64_t features)
{
    wr(R_STATUS, 0);
    wr(R_STATUS, S_ACK);
    wr(R_STATUS, S_ACK | S_DRV);
    ack_features(features);
    wr(R_STATUS, S_ACK | S_DRV | S_FOK);
    setup_queue0();
    wr(R_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
}

/* The guest posts one chain: a readable then a writable descriptor. */
static void post_chain(uint16_t avail_idx, uint16_t next_flag)
{
    uint8_t d[32] = {0};
    uint64_t a = DATA_GPA, b = DATA_GPA + 0x100;
    uint32_t la = 4, lb = 16;
    uint16_t f = next_flag, w = 2, zero = 0, one = 1;

    memcpy(d, &a, 8);
    memcpy(d + 8, &la, 4);
    memcpy(d + 12, &f, 2);
    memcpy(d + 14, &one, 2);
    memcpy(d + 16, &b, 8);
    memcpy(d + 24, &lb, 4);
    memcpy(d + 28, &w, 2);
    CHECK_EQ(guest_write(&fv.vm.mem, DESC_GPA, d, sizeof(d)), 0);
    CHECK_EQ(guest_write(&fv.vm.mem, AVAIL_GPA + 4 + 2ULL * ((avail_idx - 1) % 8), &zero, 2), 0);
    CHECK_EQ(guest_write(&fv.vm.mem, AVAIL_GPA + 2, &avail_idx, 2), 0);
}

static void test_identity(void)
{
    CHECK_EQ(rd(R_MAGIC), 0x74726976);
    CHECK_EQ(rd(R_VERSION), 2);
    CHECK_EQ(rd(R_DEVICE_ID), 2);
    CHECK_EQ(rd(R_VENDOR_ID), 0x4d424d45);
    CHECK_EQ(rd(R_SHM_LEN_LO), 0xffffffff);
    CHECK_EQ(rd(0x0c0), 0);
    CHECK_EQ(rd(0x0f8), 0);
    /* Common registers: 32-bit aligned only. */
    CHECK_EQ(rdn(R_MAGIC, 1), 0);
    CHECK_EQ(rdn(R_MAGIC, 2), 0);
    CHECK_EQ(rdn(R_MAGIC, 8), 0);
    CHECK_EQ(rdn(R_MAGIC + 1, 1), 0);
    CHECK_EQ(rdn(R_VERSION + 2, 2), 0);
    CHECK_EQ(rdn(R_MAGIC + 2, 4), 0);
    wrn(R_STATUS, S_ACK, 1);
    wrn(R_STATUS, S_ACK, 2);
    wrn(R_STATUS, S_ACK, 8);
    wrn(R_STATUS + 1, S_ACK, 4);
    CHECK_EQ(rd(R_STATUS), 0);
    wr(R_MAGIC, 0); /* read-only */
    CHECK_EQ(rd(R_MAGIC), 0x74726976);
}

static void test_features(void)
{
    wr(R_STATUS, 0);
    /* Offered: the device's bit 0, the transport's INDIRECT, EVENT_IDX and VERSION_1; never
     * RING_PACKED (34), which the device asked for but the transport cannot do. */
    wr(R_DEV_FEAT_SEL, 0);
    CHECK_EQ(rd(R_DEV_FEAT), 1u | (1u << 28) | (1u << 29));
    wr(R_DEV_FEAT_SEL, 1);
    CHECK_EQ(rd(R_DEV_FEAT), 1u);
    wr(R_DEV_FEAT_SEL, 2);
    CHECK_EQ(rd(R_DEV_FEAT), 0);
    wr(R_DEV_FEAT_SEL, 0xffffffff);
    CHECK_EQ(rd(R_DEV_FEAT), 0);

    /* DriverFeatures only between DRIVER and FEATURES_OK. */
    ack_features(1ULL << 32);
    CHECK_EQ(dev.acked, 0);
    wr(R_STATUS, S_ACK);
    ack_features(1ULL << 32);
    CHECK_EQ(dev.acked, 0);
    wr(R_STATUS, S_ACK | S_DRV);
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV);

    /* Without VERSION_1: FEATURES_OK does not stick. */
    ack_features(1);
    CHECK_EQ(dev.acked, 1);
    wr(R_STATUS, S_ACK | S_DRV | S_FOK);
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV);
    /* Something not offered: refused too. */
    ack_features((1ULL << 32) | (1ULL << 5));
    wr(R_STATUS, S_ACK | S_DRV | S_FOK);
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV);
    ack_features((1ULL << 32) | (1ULL << 34));
    wr(R_STATUS, S_ACK | S_DRV | S_FOK);
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV);
    /* DRIVER_OK in the same write as a refused FEATURES_OK is refused as well. */
    wr(R_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV);
    /* Pages beyond 1 are ignored. */
    wr(R_DRV_FEAT_SEL, 7);
    wr(R_DRV_FEAT, 0xffffffff);
    CHECK_EQ(dev.acked, (1ULL << 32) | (1ULL << 34));

    ack_features((1ULL << 32) | (1ULL << 29) | 1);
    wr(R_STATUS, S_ACK | S_DRV | S_FOK);
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV | S_FOK);
    CHECK(dev.vq[0].event_idx && dev.vq[1].event_idx && !dev.vq[0].indirect);
    /* Locked after FEATURES_OK. */
    ack_features(1ULL << 32);
    CHECK_EQ(dev.acked, (1ULL << 32) | (1ULL << 29) | 1);
    wr(R_DRV_FEAT_SEL, 1);
    CHECK_EQ(rd(R_DRV_FEAT), 1);
}

static void test_status_order(void)
{
    wr(R_STATUS, 0);
    wr(R_STATUS, S_DRV); /* skips ACKNOWLEDGE */
    CHECK_EQ(rd(R_STATUS), 0);
    wr(R_STATUS, S_ACK | S_DRV); /* two steps at once, in order */
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV);
    wr(R_STATUS, S_ACK); /* clearing a bit */
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV);
    wr(R_STATUS, S_ACK | S_DRV | S_DOK); /* skips FEATURES_OK */
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV);
    CHECK_EQ(n_activate, 0);
    wr(R_STATUS, S_ACK | S_DRV | 0x30); /* unknown bits are dropped */
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV);
    wr(R_STATUS, S_ACK | S_DRV | S_FAIL); /* FAILED at any time */
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV | S_FAIL);
    wr(R_STATUS, S_ACK | S_DRV | S_NR); /* NEEDS_RESET belongs to the device */
    CHECK_EQ(rd(R_STATUS) & S_NR, 0);
    wr(R_STATUS, 0);
    CHECK_EQ(rd(R_STATUS), 0);
}

static void test_queue_setup(void)
{
    wr(R_STATUS, 0);
    wr(R_STATUS, S_ACK | S_DRV);
    ack_features(1ULL << 32);
    wr(R_STATUS, S_ACK | S_DRV | S_FOK);

    /* Queues that do not exist. */
    wr(R_QUEUE_SEL, 2);
    CHECK_EQ(rd(R_QUEUE_MAX), 0);
    wr(R_QUEUE_NUM, 8);
    wr(R_QUEUE_READY, 1);
    CHECK_EQ(rd(R_QUEUE_READY), 0);
    CHECK_EQ(rd(R_QUEUE_NUM), 0);
    wr(R_QUEUE_SEL, 0xffffffff);
    CHECK_EQ(rd(R_QUEUE_MAX), 0);

    wr(R_QUEUE_SEL, 1);
    CHECK_EQ(rd(R_QUEUE_MAX), 64);
    CHECK_EQ(rd(R_QUEUE_NUM), 64); /* defaults to the maximum */
    wr(R_QUEUE_SEL, 0);
    CHECK_EQ(rd(R_QUEUE_MAX), 256);
    wr(R_DESC_LO, (uint32_t)DESC_GPA);
    wr(R_DRIVER_LO, (uint32_t)AVAIL_GPA);
    wr(R_DEVICE_LO, (uint32_t)USED_GPA);
    static const uint32_t bad_sizes[] = {0, 3, 100, 512, 0x10100, 0x10008, 0xffffffff};
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
        wr(R_QUEUE_NUM, bad_sizes[i]);
        wr(R_QUEUE_READY, 1);
        CHECK_EQ(rd(R_QUEUE_READY), 0);
    }
    /* Bad rings: misaligned, outside RAM, in the MMIO hole. */
    wr(R_QUEUE_NUM, 8);
    wr(R_DESC_LO, (uint32_t)DESC_GPA + 8);
    wr(R_QUEUE_READY, 1);
    CHECK_EQ(rd(R_QUEUE_READY), 0);
    wr(R_DESC_LO, (uint32_t)DESC_GPA);
    wr(R_DESC_HI, 1);
    wr(R_QUEUE_READY, 1);
    CHECK_EQ(rd(R_QUEUE_READY), 0);
    wr(R_DESC_HI, 0);
    wr(R_DEVICE_LO, (uint32_t)FAKE_HOLE_START);
    wr(R_QUEUE_READY, 1);
    CHECK_EQ(rd(R_QUEUE_READY), 0);
    wr(R_DEVICE_LO, (uint32_t)USED_GPA);
    wr(R_QUEUE_READY, 2); /* not 0 or 1: ignored */
    CHECK_EQ(rd(R_QUEUE_READY), 0);
    wr(R_QUEUE_READY, 1);
    CHECK_EQ(rd(R_QUEUE_READY), 1);
    CHECK_EQ(rd(R_DESC_LO), (uint32_t)DESC_GPA);

    /* Ready: its registers are locked. */
    wr(R_QUEUE_NUM, 16);
    wr(R_DESC_LO, 0);
    CHECK_EQ(rd(R_QUEUE_NUM), 8);
    CHECK_EQ(dev.vq[0].desc_gpa, DESC_GPA);
    /* Turned off again before DRIVER_OK (what Linux does when it deletes a queue). */
    wr(R_QUEUE_READY, 0);
    CHECK_EQ(rd(R_QUEUE_READY), 0);
    wr(R_QUEUE_READY, 1);
    CHECK_EQ(rd(R_QUEUE_READY), 1);

    /* Notifications before DRIVER_OK are dropped. */
    wr(R_NOTIFY, 0);
    run_loop();
    CHECK_EQ(n_notify, 0);

    wr(R_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
    CHECK_EQ(n_activate, 1);
    run_loop(); /* one kick per ready queue at activation: the ring is empty */
    CHECK_EQ(n_notify, 1);
    /* After DRIVER_OK, every queue's registers are locked, ready or not. */
    wr(R_QUEUE_SEL, 1);
    wr(R_QUEUE_NUM, 8);
    CHECK_EQ(rd(R_QUEUE_NUM), 64);
    wr(R_QUEUE_SEL, 0);
    wr(R_QUEUE_READY, 0);
    CHECK_EQ(rd(R_QUEUE_READY), 1);
    /* Writing DRIVER_OK again does nothing. */
    wr(R_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
    CHECK_EQ(n_activate, 1);
}

static void test_requests(void)
{
    char reply[3] = {0};

    n_notify = 0;
    driver_up(1ULL << 32);
    run_loop();
    CHECK_EQ(n_notify, 1);
    irqs();

    post_chain(1, 1);
    wr(R_NOTIFY, 0);
    run_loop();
    CHECK_EQ(n_notify, 2);
    CHECK_EQ(guest_read(&fv.vm.mem, DATA_GPA + 0x100, reply, 2), 0);
    CHECK(memcmp(reply, "ok", 2) == 0);
    CHECK_EQ(dev.vq[0].used_idx, 1);
    CHECK_EQ(irqs(), 1);
    CHECK_EQ(rd(R_ISR), 1);
    CHECK_EQ(rd(R_ISR), 1); /* the spec's way: only InterruptACK clears */
    wr(R_ISR_ACK, 1);
    CHECK_EQ(rd(R_ISR), 0);

    /* Notifications for queues that do not exist, or not ready. */
    wr(R_NOTIFY, 7);
    wr(R_NOTIFY, 0xffffffff);
    wr(R_NOTIFY, 1);
    run_loop();
    CHECK_EQ(n_notify, 2);

    /* Configuration change. */
    uint32_t gen = rd(R_CONFIG_GEN);
    virtio_config_changed(&dev);
    CHECK_EQ(rd(R_CONFIG_GEN), gen + 1);
    CHECK_EQ(rd(R_ISR), 2);
    CHECK_EQ(irqs(), 1);
    wr(R_ISR_ACK, 3);

    /* A driver that acknowledges exactly what it reads, 8 times in a row (a read twice broke
     * the first streak), gets its ACKs taken in KVM: then a status read clears. */
    for (int i = 0; i < 12; i++) {
        virtio_config_changed(&dev);
        CHECK_EQ(rd(R_ISR), 2);
        if (i == 3)
            CHECK_EQ(rd(R_ISR), 2);
        wr(R_ISR_ACK, 2);
        run_loop();
        CHECK_EQ(dev.ack_in_kvm, i >= 10); /* 8 from the read twice on */
    }
    virtio_config_changed(&dev);
    CHECK_EQ(rd(R_ISR), 2);
    CHECK_EQ(rd(R_ISR), 0);
    virtio_config_changed(&dev); /* an ACK that does come to us still clears what it names */
    wr(R_ISR_ACK, 2);
    CHECK_EQ(rd(R_ISR), 0);
    irqs();

    /* A malformed chain: the device is marked broken and stops processing. */
    post_chain(2, 1 | 4); /* NEXT | INDIRECT, not negotiated anyway */
    wr(R_NOTIFY, 0);
    run_loop();
    CHECK_EQ(n_notify, 3);
    CHECK(dev.broken);
    CHECK_EQ(rd(R_STATUS), S_ACK | S_DRV | S_FOK | S_DOK | S_NR);
    CHECK_EQ(rd(R_ISR), 2);
    CHECK_EQ(irqs(), 1);
    post_chain(2, 1);
    wr(R_NOTIFY, 0);
    run_loop();
    CHECK_EQ(n_notify, 3);
    /* Writing status back with NEEDS_RESET does not clear it. */
    wr(R_STATUS, S_ACK | S_DRV | S_FOK | S_DOK | S_NR);
    CHECK(dev.broken);

    /* Reset clears everything. */
    n_reset = 0;
    wr(R_STATUS, 0);
    CHECK_EQ(n_reset, 1);
    CHECK_EQ(rd(R_STATUS), 0);
    CHECK_EQ(rd(R_ISR), 0);
    run_loop();
    CHECK(!dev.ack_in_kvm); /* the next driver shows its way again */
    CHECK(!dev.broken);
    CHECK_EQ(dev.acked, 0);
    CHECK_EQ(rd(R_QUEUE_READY), 0);
    CHECK_EQ(rd(R_QUEUE_NUM), 256);
    CHECK_EQ(dev.vq[0].used_idx, 0);
    CHECK_EQ(dev.vq[0].last_avail, 0);
    CHECK(!dev.vq[0].event_idx);
    wr(R_NOTIFY, 0);
    run_loop();
    CHECK_EQ(n_notify, 3);

    /* And the device works again. */
    memset(guest_ptr(&fv.vm.mem, DESC_GPA, 0x30000), 0, 0x30000);
    driver_up(1ULL << 32);
    post_chain(1, 1);
    wr(R_NOTIFY, 0);
    run_loop();
    CHECK(!dev.broken);
    CHECK_EQ(dev.vq[0].used_idx, 1);
}

static void test_activation_failures(void)
{
    /* The device refuses to start. */
    activate_err = -EIO;
    driver_up(1ULL << 32);
    CHECK(dev.broken);
    CHECK(rd(R_STATUS) & S_NR);
    activate_err = 0;

    /* A ready queue whose rings went bad (not possible through the registers). */
    wr(R_STATUS, 0);
    wr(R_STATUS, S_ACK | S_DRV);
    ack_features(1ULL << 32);
    wr(R_STATUS, S_ACK | S_DRV | S_FOK);
    setup_queue0();
    dev.vq[0].used_gpa = FAKE_HOLE_START;
    n_activate = 0;
    wr(R_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
    CHECK(dev.broken);
    CHECK_EQ(n_activate, 0);
    wr(R_STATUS, 0);
    CHECK(!dev.broken);
}

static void test_config(void)
{
    CHECK_EQ(rdn(R_CONFIG, 4), 0x04030201);
    CHECK_EQ(rdn(R_CONFIG + 4, 4), 0x08070605);
    CHECK_EQ(rdn(R_CONFIG + 7, 1), 8);
    CHECK_EQ(rdn(R_CONFIG + 6, 2), 0x0807);
    CHECK_EQ(rdn(R_CONFIG + 1, 2), 0x0302); /* unaligned but inside: allowed */
    CHECK_EQ(rdn(R_CONFIG + 6, 4), 0);      /* crosses the end */
    CHECK_EQ(rdn(R_CONFIG + 8, 1), 0);      /* past the end */
    CHECK_EQ(rdn(0xffc, 4), 0);
    CHECK_EQ(rdn(R_CONFIG, 8), 0); /* 64-bit accesses are not allowed */
    CHECK_EQ(rdn(R_CONFIG, 3), 0);
    n_config_write = 0;
    wrn(R_CONFIG + 2, 0xaabb, 2);
    CHECK_EQ(n_config_write, 1);
    CHECK_EQ(config[2], 0xbb);
    CHECK_EQ(config[3], 0xaa);
    wrn(R_CONFIG + 7, 0x1122, 2); /* crosses the end */
    wrn(R_CONFIG + 8, 0x11, 1);
    wrn(R_CONFIG, 0x1122334455667788ULL, 8);
    CHECK_EQ(n_config_write, 1);
    CHECK_EQ(config[7], 8);
}

static void test_init_errors(void)
{
    static struct virtio_dev bad, dup;

    bad = (struct virtio_dev){.name = "bad", .ops = &ops, .nr_queues = 1, .queue_max = {3}};
    CHECK_EQ(virtio_mmio_init(&bad, &fv.vm, NULL, BASE + 0x1000, 6), -EINVAL);
    bad.queue_max[0] = 2048;
    CHECK_EQ(virtio_mmio_init(&bad, &fv.vm, NULL, BASE + 0x1000, 6), -EINVAL);
    bad.queue_max[0] = 0;
    CHECK_EQ(virtio_mmio_init(&bad, &fv.vm, NULL, BASE + 0x1000, 6), -EINVAL);
    bad.queue_max[0] = 4;
    bad.nr_queues = VIRTIO_MAX_QUEUES + 1;
    CHECK_EQ(virtio_mmio_init(&bad, &fv.vm, NULL, BASE + 0x1000, 6), -EINVAL);
    bad.nr_queues = 1;
    bad.config_size = 0xf01;
    CHECK_EQ(virtio_mmio_init(&bad, &fv.vm, NULL, BASE + 0x1000, 6), -EINVAL);
    bad.ops = NULL;
    bad.config_size = 0;
    CHECK_EQ(virtio_mmio_init(&bad, &fv.vm, NULL, BASE + 0x1000, 6), -EINVAL);

    /* The same MMIO range twice: refused, its eventfds closed again. */
    dup = (struct virtio_dev){.name = "dup", .ops = &ops, .nr_queues = 2, .queue_max = {4, 4}};
    CHECK_EQ(virtio_mmio_init(&dup, &fv.vm, &fv.loop, BASE, 6), -EEXIST);
    CHECK_EQ(dup.irq_fd, -1);
    CHECK_EQ(dup.vq[0].kick_fd, -1);
    CHECK_EQ(dup.vq[1].kick_fd, -1);
}

int main(void)
{
    fake_vm_init(&fv, 16ULL << 20);

    dev = (struct virtio_dev){
            .name = "virtio-test",
            .device_id = 2,
            .features = 1ULL | (1ULL << 34),
            .config_size = sizeof(config),
            .nr_queues = 2,
            .queue_max = {256, 64},
            .ops = &ops,
    };
    CHECK_EQ(virtio_mmio_init(&dev, &fv.vm, &fv.loop, BASE, FAKE_VIRTIO_IRQ), 0);
    CHECK(dev.irq_fd >= 0 && dev.vq[0].kick_fd >= 0 && dev.vq[1].kick_fd >= 0);
    CHECK_EQ(dev.features, 1ULL | (1ULL << 28) | (1ULL << 29) | (1ULL << 32));

    test_identity();
    test_features();
    test_status_order();
    test_queue_setup();
    test_requests();
    test_activation_failures();
    test_config();
    test_init_errors();

    fake_vm_free(&fv);
    return check_done("virtio_mmio");
}
