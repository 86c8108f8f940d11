/* Unit tests for `ember exec`'s ports (virtio-console MULTIPORT) without KVM: hostile control
 * and output queues keep to a budget. */
#include "check.h"
#include "clock.h"
#include "exec_io.h"
#include "fake_vm.h"
#include "layout.h"
#include "virtio_devices.h"
#include "vm.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BASE        VIRTIO_MMIO_BASE
#define F_MULTIPORT (1ULL << 1)
#define CTRL_TX     3
#define STDOUT_TX   5
#define QSIZE       256
#define DATA_GPA    0x200000ULL

static struct fake_vm fv;
static struct virtio_dev dev;
static struct exec_io io;
static struct fake_queue gq[8];
static int out_sock[2] = {-1, -1}; /* the command's stdout: a socket nobody reads */

static void driver_up(void)
{
    CHECK_EQ(fake_negotiate(&fv, BASE, FEAT_V1 | F_MULTIPORT), S_ACK | S_DRV | S_FOK);
    for (int i = 0; i < 8; i++) {
        uint64_t desc = 0x10000 + 0x10000ULL * (uint64_t)i;

        CHECK_EQ(fake_queue_setup(&gq[i], &fv, BASE, i, QSIZE, desc, desc + 0x4000, desc + 0x8000),
                 1);
    }
    fake_wr(&fv, BASE, R_STATUS, S_DRIVER_UP);
    CHECK_EQ(fake_vm_run(&fv, 2, 0), 0); /* the activation kicks */
}

/* A control message for a port that does not exist, reposted forever: every round of the loop
 * comes back, having taken at most VIRTQ_BUDGET chains. */
static void test_control_same_head_forever(void)
{
    uint32_t msg[2] = {99, 99};
    struct fake_buf b = {DATA_GPA, 8, 0};
    unsigned most;

    driver_up();
    fake_put(&fv, DATA_GPA, msg, sizeof(msg));
    most = fake_repost_flood(&fv, &gq[CTRL_TX], fake_queue_post(&gq[CTRL_TX], &b, 1), 20,
                             "exec ports, control transmitq, the same head forever");
    CHECK(most > 0 && most <= VIRTQ_BUDGET);
    CHECK(!dev.broken);
}

/* The same on stdout's transmitq with a chain that carries nothing to write. */
static void test_output_same_head_forever(void)
{
    struct fake_buf b = {DATA_GPA, 16, F_WRITE};
    unsigned most;

    driver_up();
    most = fake_repost_flood(&fv, &gq[STDOUT_TX], fake_queue_post(&gq[STDOUT_TX], &b, 1), 20,
                             "exec ports, stdout transmitq, the same head forever");
    CHECK(most > 0 && most <= VIRTQ_BUDGET);
    CHECK(!dev.broken);
}

/* 64 chains of 64 KiB for stdout, a socket whose reader never reads (4 MiB, far more than its
 * buffer): the event loop writes what the socket takes and goes on; it never waits. */
static void test_stdout_socket_never_read(void)
{
    const int n = 64;
    const uint32_t len = 64 * 1024;
    uint64_t sent;

    driver_up();
    memset(guest_ptr(&fv.vm.mem, DATA_GPA, len), 'o', len);
    for (int i = 0; i < n; i++) {
        struct fake_buf b = {DATA_GPA, len, 0};

        fake_queue_add(&gq[STDOUT_TX], &b, 1);
    }
    fake_queue_publish(&gq[STDOUT_TX]);
    fake_queue_kick(&gq[STDOUT_TX]);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(fake_vm_run_bounded(&fv, 5, "exec ports, stdout a socket nobody reads"), 0);
    sent = io.bytes_out;
    CHECK(sent > 0 && sent < (uint64_t)n * len);
    CHECK(fake_used_idx(&gq[STDOUT_TX]) < n);
}

/* At exit what is left goes out until one deadline for all of it, not a wait per chain. */
static void test_exit_flush_deadline(void)
{
    int64_t start = clock_ms();

    exec_io_flush(&io, start + 300);
    CHECK(clock_ms() - start < 1500);
    CHECK(fake_used_idx(&gq[STDOUT_TX]) < 64); /* the reader is still stuck */
}

int main(void)
{
    static const uint8_t spec[] = "EMBX\0\0\0\0";

    signal(SIGPIPE, SIG_IGN);
    fake_vm_init(&fv, 16ULL << 20);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out_sock), 0);
    io = (struct exec_io){.in_fd = -1, .spec = spec, .spec_len = 8, .guest_status = -1};
    io.err.fd = -1;
    /* stdout: a socket nobody reads, opened the way `ember exec` opens it. */
    CHECK_EQ(out_stream_open(&io.out, out_sock[0]), 0);
    CHECK_EQ(virtio_exec_ports_create(&dev, &io, &fv.loop), 0);
    CHECK_EQ(virtio_mmio_init(&dev, &fv.vm, &fv.loop, BASE, VIRTIO_IRQ_FIRST), 0);

    test_control_same_head_forever();
    test_output_same_head_forever();
    test_stdout_socket_never_read();
    test_exit_flush_deadline();

    virtio_mmio_destroy(&dev);
    CHECK(io.dev == NULL);
    out_stream_close(&io.out);
    close(out_sock[0]);
    close(out_sock[1]);
    fake_vm_free(&fv);
    return check_done("exec_ports");
}
