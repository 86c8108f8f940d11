/* A snapshot save driven by the event loop: start it, write a budget each turn (an eventfd
 * brings the loop back), report once. */
#include "snapshot_run.h"
#include "log.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void again(struct snap_runner *r)
{
    uint64_t one = 1;

    (void)!write(r->efd, &one, sizeof(one));
}

static void finish(struct snap_runner *r, int err)
{
    snap_done_fn done = r->done;

    snap_save_free(r->save);
    r->save = NULL;
    r->done = NULL;
    loop_del(r->loop, &r->h);
    if (done)
        done(r->opaque, err, r->why);
}

static void on_turn(struct loop_handler *h, uint32_t events)
{
    struct snap_runner *r = container_of(h, struct snap_runner, h);
    uint64_t n;
    int ret;

    (void)events;
    (void)!read(r->efd, &n, sizeof(n));
    if (!r->save)
        return;
    log_capture(r->why, sizeof(r->why));
    ret = snap_save_step(r->save);
    log_capture(NULL, 0);
    if (ret > 0)
        again(r);
    else
        finish(r, ret);
}

int snap_runner_init(struct snap_runner *r, struct loop *loop)
{
    r->loop = loop;
    r->save = NULL;
    r->done = NULL;
    /* Now, before the sandbox: the event loop's filter has no eventfd2. */
    r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->efd < 0)
        return log_errno("snapshot: eventfd");
    r->h = (struct loop_handler){.fd = r->efd, .fn = on_turn};
    return 0;
}

int snap_runner_start(struct snap_runner *r, const struct snap_parts *p, int state_fd, int mem_fd,
                      snap_done_fn done, void *opaque)
{
    int err;

    if (r->save)
        return -EBUSY;
    if (r->efd < 0)
        return -EBADF;
    err = loop_add(r->loop, &r->h, EPOLLIN);
    if (err) {
        log_err("snapshot: epoll_ctl: %s", strerror(-err));
        return err;
    }
    err = snap_save_begin(&r->save, p, state_fd, mem_fd);
    if (err) {
        loop_del(r->loop, &r->h);
        return err;
    }
    r->done = done;
    r->opaque = opaque;
    r->why[0] = '\0';
    again(r);
    return 0;
}

bool snap_runner_busy(const struct snap_runner *r)
{
    return r->save != NULL;
}

void snap_runner_cancel(struct snap_runner *r)
{
    if (r->save)
        finish(r, -ECANCELED);
}

void snap_runner_close(struct snap_runner *r)
{
    snap_runner_cancel(r);
    if (r->efd >= 0)
        close(r->efd);
    r->efd = -1;
}
