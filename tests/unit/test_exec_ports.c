/* Unit tests for `ember exec`'s ports (virtio-console MULTIPORT) without KVM: hostile control
 * and output queues keep to a budget. */
#include "check.h"
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

int main(void)
{
    static const uint8_t spec[] = "EMBX\0\0\0\0";

    signal(SIGPIPE, SIG_IGN);
    fake_vm_init(&fv, 16ULL << 20);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out_sock), 0);
    io = (struct exec_io){.in_fd = -1,
                          .out_fd = out_sock[0],
                          .err_fd = -1,
                          .spec = spec,
                          .spec_len = 8,
                          .guest_status = -1};
    CHECK_EQ(virtio_exec_ports_create(&dev, &io, &fv.loop), 0);
    CHECK_EQ(virtio_mmio_init(&dev, &fv.vm, &fv.loop, BASE, VIRTIO_IRQ_FIRST), 0);

    test_control_same_head_forever();
    test_output_same_head_forever();

    virtio_mmio_destroy(&dev);
    CHECK(io.dev == NULL);
    close(out_sock[0]);
    close(out_sock[1]);
    fake_vm_free(&fv);
    return check_done("exec_ports");
}
