/* Unit tests for virtio-rng without KVM: requests are filled, bounded, read-only ones refused. */
#include "check.h"
#include "layout.h"
#include "virtio_devices.h"
#include "vm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BASE VIRTIO_MMIO_BASE

#define R_DEVICE_ID   0x008
#define R_DRV_FEAT    0x020
#define R_DRV_SEL     0x024
#define R_QUEUE_SEL   0x030
#define R_QUEUE_MAX   0x034
#define R_QUEUE_NUM   0x038
#define R_QUEUE_READY 0x044
#define R_NOTIFY      0x050
#define R_STATUS      0x070
#define R_DESC_LO     0x080
#define R_DRIVER_LO   0x090
#define R_DEVICE_LO   0x0a0

#define S_DRIVER_UP 15
#define S_NR        64
#define F_NEXT      1
#define F_WRITE     2

#define QSIZE     64
#define DESC_GPA  0x10000ULL
#define AVAIL_GPA 0x14000ULL
#define USED_GPA  0x18000ULL
#define DATA_GPA  0x100000ULL
#define REQ_MAX   (64u << 10) /* the device's per-request bound */

struct gbuf {
    uint64_t gpa;
    uint32_t len;
    uint16_t flags;
};

static struct vm vm;
static struct loop loop;
static struct virtio_dev dev;
static uint16_t avail_idx, next_desc;

static uint32_t rd(uint64_t off)
{
    uint32_t v = 0;

    CHECK_EQ(bus_read(&vm.mmio, BASE + off, (uint8_t *)&v, 4), 0);
    return v;
}

static void wr(uint64_t off, uint32_t v)
{
    CHECK_EQ(bus_write(&vm.mmio, BASE + off, (const uint8_t *)&v, 4), 0);
}

static uint32_t r32(uint64_t gpa)
{
    uint32_t v = 0;

    CHECK_EQ(guest_read(&vm.mem, gpa, &v, 4), 0);
    return v;
}

static void g16(uint64_t gpa, uint16_t v)
{
    CHECK_EQ(guest_write(&vm.mem, gpa, &v, 2), 0);
}

static void run_loop(int n)
{
    for (int i = 0; i < n; i++)
        CHECK_EQ(loop_run_once(&loop, 0), 0);
}

static void driver_up(void)
{
    wr(R_STATUS, 0);
    wr(R_STATUS, 3);
    wr(R_DRV_SEL, 1);
    wr(R_DRV_FEAT, 1);
    wr(R_DRV_SEL, 0);
    wr(R_DRV_FEAT, 0);
    wr(R_STATUS, 11);
    memset(guest_ptr(&vm.mem, DESC_GPA, 0x10000), 0, 0x10000);
    avail_idx = next_desc = 0;
    wr(R_QUEUE_SEL, 0);
    wr(R_QUEUE_NUM, QSIZE);
    wr(R_DESC_LO, (uint32_t)DESC_GPA);
    wr(R_DRIVER_LO, (uint32_t)AVAIL_GPA);
    wr(R_DEVICE_LO, (uint32_t)USED_GPA);
    wr(R_QUEUE_READY, 1);
    wr(R_STATUS, S_DRIVER_UP);
    CHECK_EQ(rd(R_STATUS), S_DRIVER_UP);
    run_loop(1);
}

static void post(const struct gbuf *b, int n)
{
    uint16_t head = next_desc;

    for (int i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((next_desc + i) % QSIZE);
        uint16_t next = (uint16_t)((idx + 1) % QSIZE);
        uint16_t flags = (uint16_t)(b[i].flags | (i + 1 < n ? F_NEXT : 0));
        uint8_t d[16];

        memcpy(d, &b[i].gpa, 8);
        memcpy(d + 8, &b[i].len, 4);
        memcpy(d + 12, &flags, 2);
        memcpy(d + 14, &next, 2);
        CHECK_EQ(guest_write(&vm.mem, DESC_GPA + 16ULL * idx, d, 16), 0);
    }
    next_desc = (uint16_t)((next_desc + n) % QSIZE);
    g16(AVAIL_GPA + 4 + 2ULL * (avail_idx % QSIZE), head);
    avail_idx++;
    g16(AVAIL_GPA + 2, avail_idx);
}

static uint16_t used_idx(void)
{
    return (uint16_t)r32(USED_GPA + 2);
}

static uint32_t used_len(uint16_t i)
{
    return r32(USED_GPA + 4 + 8ULL * (i % QSIZE) + 4);
}

/* Whether all n bytes at gpa equal v. */
static int all_are(uint64_t gpa, size_t n, uint8_t v)
{
    const uint8_t *p = guest_ptr(&vm.mem, gpa, n);

    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

static void test_fill(void)
{
    struct gbuf one[1] = {{DATA_GPA, 64, F_WRITE}};
    struct gbuf two[2] = {{DATA_GPA + 0x1000, 100, F_WRITE}, {DATA_GPA + 0x2000, 28, F_WRITE}};
    struct gbuf mixed[2] = {{DATA_GPA + 0x3000, 16, 0}, {DATA_GPA + 0x4000, 32, F_WRITE}};

    CHECK_EQ(rd(R_DEVICE_ID), 4);
    wr(R_QUEUE_SEL, 0);
    CHECK_EQ(rd(R_QUEUE_MAX), QSIZE);
    memset(guest_ptr(&vm.mem, DATA_GPA, 1 << 20), 0, 1 << 20);
    driver_up();
    post(one, 1);
    post(two, 2);
    post(mixed, 2);
    wr(R_NOTIFY, 0);
    run_loop(1);
    CHECK_EQ(used_idx(), 3);
    CHECK_EQ(used_len(0), 64);
    CHECK_EQ(used_len(1), 128);
    CHECK_EQ(used_len(2), 32);
    CHECK(!all_are(DATA_GPA, 64, 0));
    CHECK(!all_are(DATA_GPA + 0x1000, 100, 0));
    CHECK(!all_are(DATA_GPA + 0x2000, 28, 0));
    CHECK(all_are(DATA_GPA + 64, 64, 0));     /* nothing past the buffer */
    CHECK(all_are(DATA_GPA + 0x3000, 16, 0)); /* the readable part is left alone */
    CHECK(!all_are(DATA_GPA + 0x4000, 32, 0));
    CHECK(!dev.broken);
}

/* A request larger than the bound is answered in part: what was written is reported. */
static void test_bounded(void)
{
    struct gbuf big[2] = {{DATA_GPA, 48u << 10, F_WRITE},
                          {DATA_GPA + (1u << 20), 1u << 20, F_WRITE}};
    uint64_t tail = DATA_GPA + (1u << 20) + REQ_MAX - (48u << 10);

    memset(guest_ptr(&vm.mem, DATA_GPA, 3u << 20), 0xaa, 3u << 20);
    driver_up();
    post(big, 2);
    wr(R_NOTIFY, 0);
    run_loop(1);
    CHECK_EQ(used_idx(), 1);
    CHECK_EQ(used_len(0), REQ_MAX);
    CHECK(!all_are(tail - 64, 64, 0xaa));
    CHECK(all_are(tail, 4096, 0xaa)); /* beyond the bound: untouched */
}

/* Read-only requests come back empty; the device keeps working. */
static void test_read_only(void)
{
    struct gbuf ro[1] = {{DATA_GPA, 64, 0}};
    struct gbuf ok[1] = {{DATA_GPA + 0x1000, 16, F_WRITE}};
    uint64_t errors = dev.stat_errors;

    memset(guest_ptr(&vm.mem, DATA_GPA, 0x2000), 0x11, 0x2000);
    driver_up();
    post(ro, 1);
    post(ok, 1);
    wr(R_NOTIFY, 0);
    run_loop(1);
    CHECK_EQ(used_idx(), 2);
    CHECK_EQ(used_len(0), 0);
    CHECK(all_are(DATA_GPA, 64, 0x11));
    CHECK_EQ(used_len(1), 16);
    CHECK_EQ(dev.stat_errors, errors + 1);
    CHECK(!dev.broken);
}

/* Many large requests: served over several turns of the loop, all of them in the end. */
static void test_many(void)
{
    int rounds = 0;

    driver_up();
    for (int i = 0; i < QSIZE; i++) {
        struct gbuf b[1] = {{DATA_GPA + (uint64_t)i * REQ_MAX, REQ_MAX, F_WRITE}};

        post(b, 1);
    }
    wr(R_NOTIFY, 0);
    run_loop(1);
    CHECK(used_idx() > 0 && used_idx() < QSIZE); /* one turn does not do it all */
    while (used_idx() < QSIZE && rounds++ < 100)
        run_loop(1);
    CHECK_EQ(used_idx(), QSIZE);
    for (uint16_t i = 0; i < QSIZE; i++)
        CHECK_EQ(used_len(i), REQ_MAX);
}

/* Bad chains: the device is marked broken until reset; nothing is written outside RAM. */
static void test_hostile(void)
{
    struct gbuf outside[1] = {{MMIO_HOLE_START - 16, 64, F_WRITE}};
    struct gbuf ok[1] = {{DATA_GPA, 16, F_WRITE}};

    driver_up();
    post(outside, 1);
    wr(R_NOTIFY, 0);
    run_loop(1);
    CHECK(dev.broken);
    CHECK(rd(R_STATUS) & S_NR);
    CHECK_EQ(used_idx(), 0);
    post(ok, 1);
    wr(R_NOTIFY, 0);
    run_loop(1);
    CHECK_EQ(used_idx(), 0); /* broken: no more processing */

    driver_up();
    CHECK(!dev.broken);
    post(ok, 1);
    wr(R_NOTIFY, 0);
    run_loop(1);
    CHECK_EQ(used_idx(), 1);
    CHECK_EQ(used_len(0), 16);

    /* Notifications before DRIVER_OK are ignored. */
    wr(R_STATUS, 0);
    wr(R_NOTIFY, 0);
    run_loop(1);
}

int main(void)
{
    vm.vm_fd = -1;
    vm.kvm_fd = -1;
    bus_init(&vm.mmio);
    CHECK_EQ(guest_mem_init(&vm.mem, 16ULL << 20, 0), 0);
    CHECK_EQ(loop_init(&loop), 0);
    CHECK_EQ(virtio_rng_create(&dev, &loop), 0);
    CHECK_EQ(virtio_mmio_init(&dev, &vm, &loop, BASE, VIRTIO_IRQ_FIRST), 0);

    test_fill();
    test_bounded();
    test_read_only();
    test_many();
    test_hostile();

    virtio_mmio_destroy(&dev);
    CHECK(dev.priv == NULL);
    loop_close(&loop);
    guest_mem_free(&vm.mem);
    return check_done("rng");
}
