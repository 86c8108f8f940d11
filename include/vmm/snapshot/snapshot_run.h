/* Saving a snapshot on the event loop: one budget of guest memory per loop turn, so the
 * control socket and the console keep being served while it is written. */
#ifndef EMBER_SNAPSHOT_RUN_H
#define EMBER_SNAPSHOT_RUN_H

#include <stdbool.h>

#include "eventloop.h"
#include "snapshot.h"

/* err: 0 when the snapshot is complete, else -errno; why: the messages logged on the way. */
typedef void (*snap_done_fn)(void *opaque, int err, const char *why);

struct snap_runner {
    struct loop *loop;
    int efd; /* written to come back on the next turn */
    struct loop_handler h;
    struct snap_save *save;
    snap_done_fn done;
    void *opaque;
    char why[512]; /* messages the steps logged */
};

/* Before the sandbox (it makes its eventfd). 0 or -errno after one error line. */
int snap_runner_init(struct snap_runner *r, struct loop *loop);
/* Every vCPU is parked: freeze the devices, capture the state, then write a budget per
 * turn; done() is called once, from the loop (or not at all when this fails: 0 or -errno
 * after one error line). The descriptors stay the caller's. */
int snap_runner_start(struct snap_runner *r, const struct snap_parts *p, int state_fd, int mem_fd,
                      snap_done_fn done, void *opaque);
bool snap_runner_busy(const struct snap_runner *r);
/* Stop a save in progress: done(-ECANCELED). */
void snap_runner_cancel(struct snap_runner *r);
void snap_runner_close(struct snap_runner *r);

#endif
