/* io_uring rings limited to the opcodes their owner uses (IORING_REGISTER_RESTRICTIONS). */
#include "uring.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define URING_MAX_OPS 16

int uring_init_disabled(struct io_uring *ring, unsigned entries)
{
    return io_uring_queue_init(entries, ring, IORING_SETUP_R_DISABLED);
}

#ifdef EMBER_SANDBOX_SELFTEST
/* Test builds only (meson -Dsandbox_selftest=true): EMBER_SELFTEST_FORBIDDEN=uring submits an
 * openat, which no ember ring allows, and says what became of it. */
static void selftest(struct io_uring *ring)
{
    const char *want = getenv("EMBER_SELFTEST_FORBIDDEN");
    struct io_uring_sqe *sqe;
    struct io_uring_cqe *cqe;

    if (!want || strcmp(want, "uring") != 0 || !(sqe = io_uring_get_sqe(ring)))
        return;
    io_uring_prep_openat(sqe, AT_FDCWD, "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (io_uring_submit_and_wait(ring, 1) < 0 || io_uring_peek_cqe(ring, &cqe) < 0)
        return;
    if (cqe->res < 0) {
        log_info("selftest: io_uring openat refused: %s", strerror(-cqe->res));
    } else {
        log_err("selftest: io_uring openat was not refused");
        close(cqe->res);
    }
    io_uring_cqe_seen(ring, cqe);
}
#endif

int uring_restrict(struct io_uring *ring, const uint8_t *ops, unsigned nops)
{
    struct io_uring_restriction res[URING_MAX_OPS + 1];
    unsigned n = 0;
    int err;

    if (nops > URING_MAX_OPS)
        return -E2BIG;
    for (unsigned i = 0; i < nops; i++)
        res[n++] = (struct io_uring_restriction){.opcode = IORING_RESTRICTION_SQE_OP,
                                                 .sqe_op = ops[i]};
    /* No SQE flag (links, fixed files, async) is allowed; no register opcode either. */
    res[n++] = (struct io_uring_restriction){.opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED,
                                             .sqe_flags = 0};
    err = io_uring_register_restrictions(ring, res, n);
    if (!err)
        err = io_uring_enable_rings(ring);
#ifdef EMBER_SANDBOX_SELFTEST
    if (!err)
        selftest(ring);
#endif
    return err < 0 ? err : 0;
}
