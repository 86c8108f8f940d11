/* Unit tests for restricted io_uring rings: the operations given run, every other opcode, SQE
 * flag and register operation is refused (what seccomp cannot see, the ring itself stops). */
#include "check.h"
#include "uring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Submit one prepared SQE and return its completion's result. */
static int run_one(struct io_uring *ring)
{
    struct io_uring_cqe *cqe;
    int res;

    CHECK_EQ(io_uring_submit_and_wait(ring, 1), 1);
    if (io_uring_peek_cqe(ring, &cqe) < 0)
        return -9999;
    res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    return res;
}

int main(void)
{
    static const uint8_t ops[] = {IORING_OP_READV};
    struct io_uring ring;
    struct io_uring_sqe *sqe;
    char buf[4] = "";
    struct iovec iov = {buf, sizeof(buf)};
    struct io_uring_probe *probe;
    int p[2], err = uring_init_disabled(&ring, 8);

    if (err == -ENOSYS || err == -EPERM) {
        printf("uring: io_uring unavailable here (%s); skipped\n", strerror(-err));
        return 0;
    }
    CHECK_EQ(err, 0);
    CHECK_EQ(pipe(p), 0);
    CHECK_EQ(write(p[1], "abc", 3), 3);
    CHECK_EQ(uring_restrict(&ring, ops, sizeof(ops)), 0);

    /* The one operation allowed runs. */
    io_uring_prep_readv(io_uring_get_sqe(&ring), p[0], &iov, 1, 0);
    CHECK_EQ(run_one(&ring), 3);
    CHECK(memcmp(buf, "abc", 3) == 0);

    /* Any other opcode: an open (what a compromised ember would want), a write, a socket. */
    io_uring_prep_openat(io_uring_get_sqe(&ring), AT_FDCWD, "/", O_RDONLY, 0);
    CHECK_EQ(run_one(&ring), -EACCES);
    io_uring_prep_writev(io_uring_get_sqe(&ring), p[1], &iov, 1, 0);
    CHECK_EQ(run_one(&ring), -EACCES);
    io_uring_prep_socket(io_uring_get_sqe(&ring), 2 /* AF_INET */, 1, 0, 0);
    CHECK_EQ(run_one(&ring), -EACCES);

    /* The allowed opcode with a flag (here: run it in a worker thread) is refused too. */
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_readv(sqe, p[0], &iov, 1, 0);
    io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
    CHECK_EQ(run_one(&ring), -EACCES);

    /* And no register operation once enabled. */
    probe = io_uring_get_probe_ring(&ring);
    CHECK(probe == NULL);
    if (probe)
        io_uring_free_probe(probe);
    CHECK_EQ(io_uring_register_eventfd(&ring, p[1]), -EACCES);

    io_uring_queue_exit(&ring);
    close(p[0]);
    close(p[1]);
    return check_done("uring");
}
