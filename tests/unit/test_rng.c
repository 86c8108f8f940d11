/* Unit tests for virtio-rng without KVM: requests are filled, bounded, read-only ones refused. */
#include "check.h"
#include "clock.h"
#include "fake_vm.h"
#include "log.h"
#include "layout.h"
#include "virtio_devices.h"
#include "vm.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BASE VIRTIO_MMIO_BASE

#define QSIZE     64
#define DESC_GPA  0x10000ULL
#define AVAIL_GPA 0x14000ULL
#define USED_GPA  0x18000ULL
#define DATA_GPA  0x100000ULL
#define REQ_MAX   (64u << 10) /* the device's per-request bound */

static struct fake_vm fv;
static struct fake_queue gq;
static struct virtio_dev dev;

static uint32_t rd(uint64_t off)
{
    return fake_rd(&fv, BASE, off);
}

static void wr(uint64_t off, uint32_t v)
{
    fake_wr(&fv, BASE, off, v);
}

static void run_loop(int n)
{
    CHECK_EQ(fake_vm_run(&fv, n, 0), 0);
}

static void driver_up(void)
{
    CHECK_EQ(fake_negotiate(&fv, BASE, FEAT_V1), S_ACK | S_DRV | S_FOK);
    CHECK_EQ(fake_queue_setup(&gq, &fv, BASE, 0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA), 1);
    wr(R_STATUS, S_DRIVER_UP);
    CHECK_EQ(rd(R_STATUS), S_DRIVER_UP);
    run_loop(1);
}

static void post(const struct fake_buf *b, int n)
{
    fake_queue_post(&gq, b, n);
}

static uint16_t used_idx(void)
{
    return fake_used_idx(&gq);
}

static uint32_t used_len(uint16_t i)
{
    return fake_used_len(&gq, i);
}

/* Whether all n bytes at gpa equal v. */
static int all_are(uint64_t gpa, size_t n, uint8_t v)
{
    const uint8_t *p = guest_ptr(&fv.vm.mem, gpa, n);

    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

static void test_fill(void)
{
    struct fake_buf one[1] = {{DATA_GPA, 64, F_WRITE}};
    struct fake_buf two[2] = {{DATA_GPA + 0x1000, 100, F_WRITE}, {DATA_GPA + 0x2000, 28, F_WRITE}};
    struct fake_buf mixed[2] = {{DATA_GPA + 0x3000, 16, 0}, {DATA_GPA + 0x4000, 32, F_WRITE}};

    CHECK_EQ(rd(R_DEVICE_ID), 4);
    wr(R_QUEUE_SEL, 0);
    CHECK_EQ(rd(R_QUEUE_MAX), QSIZE);
    memset(guest_ptr(&fv.vm.mem, DATA_GPA, 1 << 20), 0, 1 << 20);
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
    struct fake_buf big[2] = {{DATA_GPA, 48u << 10, F_WRITE},
                              {DATA_GPA + (1u << 20), 1u << 20, F_WRITE}};
    uint64_t tail = DATA_GPA + (1u << 20) + REQ_MAX - (48u << 10);

    memset(guest_ptr(&fv.vm.mem, DATA_GPA, 3u << 20), 0xaa, 3u << 20);
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
    struct fake_buf ro[1] = {{DATA_GPA, 64, 0}};
    struct fake_buf ok[1] = {{DATA_GPA + 0x1000, 16, F_WRITE}};
    uint64_t errors = dev.stat_errors;

    memset(guest_ptr(&fv.vm.mem, DATA_GPA, 0x2000), 0x11, 0x2000);
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
        struct fake_buf b[1] = {{DATA_GPA + (uint64_t)i * REQ_MAX, REQ_MAX, F_WRITE}};

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
    struct fake_buf outside[1] = {{MMIO_HOLE_START - 16, 64, F_WRITE}};
    struct fake_buf ok[1] = {{DATA_GPA, 16, F_WRITE}};

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

/* The same head forever, a request for one byte: every round takes at most VIRTQ_BUDGET. */
static void test_same_head_forever(void)
{
    struct fake_buf one = {DATA_GPA, 1, F_WRITE};
    unsigned most;

    driver_up();
    most = fake_repost_flood(&fv, &gq, fake_queue_post(&gq, &one, 1), 20,
                             "virtio-rng, the same head forever");
    CHECK(most > 0 && most <= VIRTQ_BUDGET);
    CHECK(!dev.broken);
}

/* Count the lines of file that hold text. */
static int lines_with(FILE *f, const char *text)
{
    char line[512];
    int n = 0;

    rewind(f);
    while (fgets(line, sizeof(line), f))
        n += strstr(line, text) != NULL;
    return n;
}

/* Reset, a bad chain, NEEDS_RESET, again and again: the warning a guest causes each time is
 * printed a few times, the rest only counted (query-metrics: guest-log-suppressed). */
static void test_broken_again_and_again_is_not_a_log_flood(void)
{
    struct fake_buf outside[1] = {{MMIO_HOLE_START - 16, 64, F_WRITE}};
    FILE *log = tmpfile();
    int saved = dup(STDERR_FILENO), printed, rounds = 500;
    uint64_t suppressed0 = log_guest_suppressed(&dev.log_limit);
    int64_t start = clock_ms();

    CHECK(log && saved >= 0);
    fflush(stderr);
    dup2(fileno(log), STDERR_FILENO);
    for (int i = 0; i < rounds; i++) {
        driver_up();
        post(outside, 1);
        wr(R_NOTIFY, 0);
        run_loop(1);
        CHECK(dev.broken);
    }
    dup2(saved, STDERR_FILENO);
    close(saved);
    printed = lines_with(log, "device needs a reset");
    CHECK(printed >= 1);
    CHECK(printed <= LOG_GUEST_BURST + 1 + (int)((clock_ms() - start) / 1000));
    CHECK_EQ(log_guest_suppressed(&dev.log_limit) - suppressed0, (uint64_t)(rounds - printed));
    CHECK(log_guest_suppressed(NULL) >= log_guest_suppressed(&dev.log_limit));
    fclose(log);
    driver_up();
}

int main(void)
{
    fake_vm_init(&fv, 16ULL << 20);
    CHECK_EQ(virtio_rng_create(&dev, &fv.loop), 0);
    CHECK_EQ(virtio_mmio_init(&dev, &fv.vm, &fv.loop, BASE, VIRTIO_IRQ_FIRST), 0);

    test_fill();
    test_bounded();
    test_read_only();
    test_many();
    test_hostile();
    test_same_head_forever();
    test_broken_again_and_again_is_not_a_log_flood();

    virtio_mmio_destroy(&dev);
    CHECK(dev.priv == NULL);
    fake_vm_free(&fv);
    return check_done("rng");
}
