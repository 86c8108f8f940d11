/* Unit tests for virtio-console without KVM: output reaches the ring in order without blocking,
 * input goes only into posted buffers, hostile chains. */
#include "check.h"
#include "fake_vm.h"
#include "layout.h"
#include "virtio_devices.h"
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define BASE VIRTIO_MMIO_BASE

#define RXQ       0
#define TXQ       1
#define QSIZE     256
#define DATA_GPA  0x100000ULL
#define DATA_SIZE (4ULL << 20)

static struct fake_vm fv;
static struct virtio_dev dev;
static struct console con;
static struct fake_queue gq[2];
static int out_pipe[2] = {-1, -1}; /* the console's stdout */
static int in_pipe[2] = {-1, -1};  /* the console's stdin */

static uint32_t rd(uint64_t off, uint32_t len)
{
    return (uint32_t)fake_rdn(&fv, BASE, off, len);
}

static void wr(uint64_t off, uint32_t v)
{
    fake_wr(&fv, BASE, off, v);
}

static void g16(uint64_t gpa, uint16_t v)
{
    fake_put16(&fv, gpa, v);
}

static void run_loop(int n)
{
    CHECK_EQ(fake_vm_run(&fv, n, 0), 0);
}

static uint64_t eventfd_count(int fd)
{
    uint64_t n = 0;

    if (read(fd, &n, sizeof(n)) != sizeof(n))
        return 0;
    return n;
}

/* Reset, negotiate VERSION_1 only, set up both queues at fresh rings, DRIVER_OK. */
static void driver_up(void)
{
    CHECK_EQ(fake_negotiate(&fv, BASE, FEAT_V1), S_ACK | S_DRV | S_FOK);
    for (int i = 0; i < 2; i++) {
        uint64_t desc = 0x10000 + 0x10000ULL * i;

        CHECK_EQ(fake_queue_setup(&gq[i], &fv, BASE, i, QSIZE, desc, desc + 0x4000, desc + 0x8000),
                 1);
    }
    wr(R_STATUS, S_DRIVER_UP);
    CHECK_EQ(rd(R_STATUS, 4), S_DRIVER_UP);
    run_loop(2); /* the activation kicks */
    eventfd_count(con.wake_fd);
}

/* Make a chain of n buffers available on queue qi (without notifying); returns its head. */
static uint16_t post(int qi, const struct fake_buf *b, int n)
{
    return fake_queue_post(&gq[qi], b, n);
}

static uint16_t used_idx(int qi)
{
    return fake_used_idx(&gq[qi]);
}

/* Used element i of queue qi: id and len. */
static void used_elem(int qi, uint16_t i, uint32_t *id, uint32_t *len)
{
    fake_used_elem(&gq[qi], i, id, len);
}

/* The byte at position i of the guest's output stream. */
static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 7 + (i >> 9) + 1);
}

static void test_identity(void)
{
    CHECK_EQ(rd(R_DEVICE_ID, 4), 3);
    CHECK_EQ(rd(R_DEV_FEAT, 4) & 1, 0); /* no F_SIZE */
    wr(R_QUEUE_SEL, 0);
    CHECK_EQ(rd(R_QUEUE_MAX, 4), QSIZE);
    wr(R_QUEUE_SEL, 1);
    CHECK_EQ(rd(R_QUEUE_MAX, 4), QSIZE);
    wr(R_QUEUE_SEL, 2);
    CHECK_EQ(rd(R_QUEUE_MAX, 4), 0);
    CHECK_EQ(rd(R_CONFIG, 2), 0);     /* cols */
    CHECK_EQ(rd(R_CONFIG + 2, 2), 0); /* rows */
    CHECK_EQ(rd(R_CONFIG + 4, 4), 1); /* max_nr_ports */
    CHECK_EQ(rd(R_CONFIG + 8, 4), 0); /* past the end */
    CHECK_EQ(rd(R_CONFIG + 6, 4), 0); /* crosses the end */
}

/* Read what the console wrote to its stdout pipe, appending to out. */
static size_t collect(uint8_t *out, size_t have, size_t max)
{
    for (;;) {
        ssize_t n = read(out_pipe[0], out + have, max - have);

        if (n <= 0)
            return have;
        have += (size_t)n;
    }
}

/* 80 chains of 3000 bytes (1000 + 1500 + 500): the 64 KiB ring fills in the middle of one. */
static void test_output_in_order(void)
{
    enum { CHAINS = 80, CHAIN = 3000 };
    size_t total = (size_t)CHAINS * CHAIN, have = 0;
    uint8_t *data = guest_ptr(&fv.vm.mem, DATA_GPA, total);
    uint8_t *out = calloc(1, total + 1);
    int rounds = 0;

    driver_up();
    for (size_t i = 0; i < total; i++)
        data[i] = pattern(i);
    for (int c = 0; c < CHAINS; c++) {
        uint64_t at = DATA_GPA + (uint64_t)c * CHAIN;
        struct fake_buf b[3] = {{at, 1000, 0}, {at + 1000, 1500, 0}, {at + 2500, 500, 0}};

        post(TXQ, b, 3);
    }
    wr(R_NOTIFY, TXQ);
    run_loop(2);
    /* The ring is full, nothing was written out yet: 21 chains went whole, one in part. */
    CHECK_EQ(con.head - con.tail, CONSOLE_RING_SIZE);
    CHECK_EQ(used_idx(TXQ), CONSOLE_RING_SIZE / CHAIN);
    CHECK(con.space_wanted);
    CHECK(eventfd_count(dev.irq_fd) >= 1);
    CHECK(eventfd_count(con.wake_fd) >= 1); /* the event loop was told to drain */
    /* More kicks while full change nothing and do not block. */
    wr(R_NOTIFY, TXQ);
    run_loop(2);
    CHECK_EQ(used_idx(TXQ), CONSOLE_RING_SIZE / CHAIN);

    /* The reader takes the output bit by bit; each drain lets the device go on. */
    while (have < total && rounds++ < 10000) {
        have = collect(out, have, total + 1);
        console_drain(&con);
        run_loop(1);
    }
    have = collect(out, have, total + 1);
    CHECK_EQ(have, total);
    CHECK(memcmp(out, data, total) == 0);
    CHECK_EQ(used_idx(TXQ), CHAINS);
    for (uint16_t i = 0; i < CHAINS; i++) {
        uint32_t id, len;

        used_elem(TXQ, i, &id, &len);
        CHECK_EQ(id, (i * 3) % QSIZE);
        CHECK_EQ(len, 0);
    }
    CHECK_EQ(con.dropped, 0);
    CHECK_EQ(con.head, con.tail);
    CHECK(!dev.broken);
    free(out);
}

/* Writable buffers on the transmit queue are ignored; a reset forgets a half-written chain. */
static void test_output_odd_chains(void)
{
    uint8_t *data = guest_ptr(&fv.vm.mem, DATA_GPA, 1 << 20);
    uint8_t out[16] = {0};
    struct fake_buf mixed[2] = {{DATA_GPA, 3, 0}, {DATA_GPA + 100, 8, F_WRITE}};
    struct fake_buf big[1] = {{DATA_GPA + 4096, 200000, 0}};

    driver_up();
    memcpy(data, "abc", 3);
    memset(data + 100, 0x55, 8);
    post(TXQ, mixed, 2);
    wr(R_NOTIFY, TXQ);
    run_loop(1);
    CHECK_EQ(used_idx(TXQ), 1);
    CHECK_EQ(console_drain(&con), 0);
    CHECK_EQ(collect(out, 0, sizeof(out)), 3);
    CHECK(memcmp(out, "abc", 3) == 0);
    CHECK_EQ(data[100], 0x55);

    /* One chain larger than the ring: written in part, then the guest resets the device. */
    post(TXQ, big, 1);
    wr(R_NOTIFY, TXQ);
    run_loop(1);
    CHECK_EQ(used_idx(TXQ), 1);
    CHECK_EQ(con.head - con.tail, CONSOLE_RING_SIZE);
    wr(R_STATUS, 0);
    while (collect(out, 0, sizeof(out)) > 0 || con.head != con.tail)
        console_drain(&con); /* the hook finds the device reset: nothing more */
    CHECK_EQ(con.head - con.tail, 0);
    CHECK_EQ(rd(R_STATUS, 4), 0);
}

/* The guest writes one byte to hvc0 (its port is up); the reader takes it. */
static void say_hello(void)
{
    uint8_t out[4];
    struct fake_buf b[1] = {{DATA_GPA + 0x3000, 1, 0}};
    uint16_t used = used_idx(TXQ);

    post(TXQ, b, 1);
    wr(R_NOTIFY, TXQ);
    run_loop(1);
    CHECK_EQ(used_idx(TXQ), used + 1);
    CHECK_EQ(console_drain(&con), 0);
    CHECK_EQ(collect(out, 0, sizeof(out)), 1);
}

/* Input waits in stdin until the guest posts receive buffers and has written to hvc0 (Linux
 * drops input that comes before), then fills only those buffers. */
static void test_input(void)
{
    uint8_t *data = guest_ptr(&fv.vm.mem, DATA_GPA, 4096);
    struct fake_buf a[2] = {{DATA_GPA, 2, F_WRITE}, {DATA_GPA + 16, 2, F_WRITE}};
    struct fake_buf b[1] = {{DATA_GPA + 64, 16, F_WRITE}};
    struct fake_buf ro[1] = {{DATA_GPA + 128, 16, 0}};
    uint32_t id, len;
    int pending = 0;

    driver_up();
    memset(data, 0, 4096);
    CHECK_EQ(write(in_pipe[1], "hello", 5), 5);
    CHECK_EQ(console_input_room(&con), 0);
    CHECK_EQ(console_read_input(&con, console_input_room(&con)), 0);
    CHECK_EQ(ioctl(in_pipe[0], FIONREAD, &pending), 0);
    CHECK_EQ(pending, 5); /* not read: nothing lost */

    /* A read-only chain goes back empty; the writable ones are used in order. */
    post(RXQ, ro, 1);
    post(RXQ, a, 2);
    post(RXQ, b, 1);
    wr(R_NOTIFY, RXQ);
    run_loop(1);
    CHECK(eventfd_count(con.wake_fd) >= 1); /* the event loop asks for input again */
    CHECK_EQ(console_input_room(&con), 0);  /* but the guest has not written to hvc0 yet */
    CHECK_EQ(used_idx(RXQ), 0);
    say_hello();
    CHECK(eventfd_count(con.wake_fd) >= 1);
    CHECK_EQ(console_input_room(&con), 4);
    CHECK_EQ(used_idx(RXQ), 1);
    used_elem(RXQ, 0, &id, &len);
    CHECK_EQ(len, 0);
    CHECK_EQ(console_read_input(&con, console_input_room(&con)), 0);
    CHECK_EQ(used_idx(RXQ), 2);
    used_elem(RXQ, 1, &id, &len);
    CHECK_EQ(id, 1);
    CHECK_EQ(len, 4);
    CHECK(memcmp(data, "he", 2) == 0 && memcmp(data + 16, "ll", 2) == 0);
    CHECK(eventfd_count(dev.irq_fd) >= 1);
    CHECK_EQ(console_input_room(&con), 16);
    CHECK_EQ(console_read_input(&con, console_input_room(&con)), 0);
    used_elem(RXQ, 2, &id, &len);
    CHECK_EQ(id, 3);
    CHECK_EQ(len, 1);
    CHECK_EQ(data[64], 'o');

    /* No buffers left: input stays in stdin. An empty stdin never blocks. */
    CHECK_EQ(console_input_room(&con), 0);
    CHECK_EQ(write(in_pipe[1], "more", 4), 4);
    CHECK_EQ(console_read_input(&con, console_input_room(&con)), 0);
    CHECK_EQ(ioctl(in_pipe[0], FIONREAD, &pending), 0);
    CHECK_EQ(pending, 4);
    post(RXQ, b, 1);
    wr(R_NOTIFY, RXQ);
    run_loop(1);
    CHECK_EQ(console_read_input(&con, console_input_room(&con)), 0);
    CHECK_EQ(used_idx(RXQ), 4);
    CHECK(memcmp(data + 64, "more", 4) == 0);
    post(RXQ, b, 1);
    wr(R_NOTIFY, RXQ);
    run_loop(1);
    CHECK_EQ(console_read_input(&con, console_input_room(&con)), 0); /* nothing there */
    CHECK_EQ(used_idx(RXQ), 4);

    /* A reset drops the held chain: no room until the guest posts again and writes again. */
    CHECK_EQ(console_input_room(&con), 16);
    wr(R_STATUS, 0);
    CHECK_EQ(console_input_room(&con), 0);
    driver_up();
    post(RXQ, b, 1);
    wr(R_NOTIFY, RXQ);
    run_loop(1);
    CHECK_EQ(console_input_room(&con), 0);
    say_hello();
    CHECK_EQ(console_input_room(&con), 16);
}

/* Hostile chains mark the device broken; nothing crashes, nothing is written. */
static void test_hostile(void)
{
    struct fake_buf outside[1] = {{MMIO_HOLE_START, 64, 0}};
    struct fake_buf wrap[1] = {{UINT64_MAX - 8, 64, F_WRITE}};
    uint64_t head = con.head;

    driver_up();
    post(TXQ, outside, 1);
    wr(R_NOTIFY, TXQ);
    run_loop(1);
    CHECK(dev.broken);
    CHECK(rd(R_STATUS, 4) & S_NR);
    CHECK_EQ(con.head, head);

    driver_up();
    CHECK(!dev.broken);
    say_hello();
    post(RXQ, wrap, 1);
    wr(R_NOTIFY, RXQ);
    run_loop(1);
    CHECK_EQ(console_input_room(&con), 0);
    CHECK(dev.broken);
    CHECK_EQ(used_idx(RXQ), 0);

    /* An avail index that runs ahead of the ring. */
    driver_up();
    say_hello();
    g16(gq[RXQ].avail + 2, QSIZE + 5);
    CHECK_EQ(console_input_room(&con), 0);
    CHECK(dev.broken);
    wr(R_STATUS, 0);
}

/* The reader went away: output is dropped and the guest never stalls. */
static void test_reader_gone(void)
{
    enum { CHAINS = 40, CHAIN = 4096 };
    int rounds = 0;

    driver_up();
    for (int c = 0; c < CHAINS; c++) {
        struct fake_buf b[1] = {{DATA_GPA + (uint64_t)c * CHAIN, CHAIN, 0}};

        post(TXQ, b, 1);
    }
    wr(R_NOTIFY, TXQ);
    run_loop(1);
    CHECK_EQ(used_idx(TXQ), CONSOLE_RING_SIZE / CHAIN);
    close(out_pipe[0]);
    out_pipe[0] = -1;
    while (used_idx(TXQ) < CHAINS && rounds++ < 100) {
        console_drain(&con);
        run_loop(1);
    }
    CHECK_EQ(used_idx(TXQ), CHAINS);
    CHECK(con.closed);
    CHECK_EQ(con.dropped, (uint64_t)CHAINS * CHAIN);
}

/* The same head forever on the transmit queue (a chain with nothing to print): every round of
 * the loop comes back with a bounded number of chains taken. */
static void test_same_head_forever(void)
{
    struct fake_buf nothing = {DATA_GPA, 16, F_WRITE};
    unsigned most;

    driver_up();
    most = fake_repost_flood(&fv, &gq[TXQ], post(TXQ, &nothing, 1), 20,
                             "virtio-console, the same head forever");
    CHECK(most > 0 && most <= 256);
    CHECK(!dev.broken);
}

static void setup_console(void)
{
    int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

    CHECK(wake >= 0);
    CHECK_EQ(pipe2(out_pipe, O_NONBLOCK | O_CLOEXEC), 0);
    CHECK_EQ(pipe2(in_pipe, O_CLOEXEC), 0); /* blocking, like a real stdin */
    CHECK(fcntl(out_pipe[1], F_SETPIPE_SZ, 4096) >= 4096);
    CHECK_EQ(console_init(&con, CONSOLE_OFF, wake, NULL), 0);
    con.mode = CONSOLE_STDIO;
    con.out = (struct out_stream){.fd = out_pipe[1], .kind = OUT_NONBLOCK};
    con.in_fd = in_pipe[0];
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    fake_vm_init(&fv, 16ULL << 20);
    setup_console();

    CHECK_EQ(virtio_console_create(&dev, &con, &fv.loop), 0);
    CHECK_EQ(virtio_mmio_init(&dev, &fv.vm, &fv.loop, BASE, VIRTIO_IRQ_FIRST), 0);
    CHECK(con.input && con.input_room && con.output_space);

    test_identity();
    test_output_in_order();
    test_output_odd_chains();
    test_input();
    test_hostile();
    test_reader_gone();
    test_same_head_forever();

    virtio_mmio_destroy(&dev);
    CHECK(!con.input && !con.input_room && !con.output_space);
    CHECK_EQ(console_input_room(&con), 0);
    console_close(&con);
    close(con.wake_fd);
    close(in_pipe[0]);
    close(in_pipe[1]);
    fake_vm_free(&fv);
    return check_done("virtio_console");
}
