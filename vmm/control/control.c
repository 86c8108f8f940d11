/* The control socket's lifecycle inside `ember run`: state, events, and the hooks run.c calls
 * as the VM is configured, built, started, reset and shut down. */
#include "control.h"
#include "devices.h"
#include "log.h"
#include "qmp.h"
#include "virtio.h"
#include "virtio_devices.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.1.0"
#endif

json_object *control_version_object(void)
{
    json_object *v = json_object_new_object(), *q = json_object_new_object();
    int major = 0, minor = 0, micro = 0;

    sscanf(EMBER_VERSION, "%d.%d.%d", &major, &minor, &micro);
    json_object_object_add(q, "major", json_object_new_int(major));
    json_object_object_add(q, "minor", json_object_new_int(minor));
    json_object_object_add(q, "micro", json_object_new_int(micro));
    json_object_object_add(v, "qemu", q);
    json_object_object_add(v, "package", json_object_new_string("ember " EMBER_VERSION));
    return v;
}

int control_open(struct control **out, struct vm_config *cfg, struct loop *loop,
                 const struct timespec *start_wall)
{
    struct control *c;
    int err;

    *out = NULL;
    if (!cfg->api_sock)
        return 0;
    c = calloc(1, sizeof(*c));
    if (!c) {
        log_err("out of memory for the control socket");
        return -ENOMEM;
    }
    c->cfg = cfg;
    c->start_wall = *start_wall;
    c->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC); /* -1: no RSS metric */
    c->snap_state_fd = c->snap_mem_fd = -1;
    c->state = cfg->kernel || cfg->restore ? CTL_RUNNING : CTL_PRELAUNCH;
    c->qmp = qmp_server_new(control_dispatch, c, control_version_object());
    if (!c->qmp) {
        control_close(c, 0);
        log_err("out of memory for the control socket");
        return -ENOMEM;
    }
    err = qmp_server_listen(c->qmp, cfg->api_sock, loop);
    if (err) {
        control_close(c, 0);
        return err;
    }
    control_agent_attach(c);
    *out = c;
    return 0;
}

void control_close(struct control *c, int timeout_ms)
{
    if (!c)
        return;
    qmp_server_free(c->qmp, timeout_ms);
    if (c->statm_fd >= 0)
        close(c->statm_fd);
    free(c);
}

int control_prelaunch(const struct control *c)
{
    return c && c->state == CTL_PRELAUNCH;
}

int control_quit_requested(const struct control *c)
{
    return c && c->quit_requested;
}

int control_start_requested(const struct control *c)
{
    return c && c->start_requested;
}

void control_build_begin(struct control *c)
{
    if (!c)
        return;
    clock_gettime(CLOCK_MONOTONIC, &c->launch);
    if (c->start_requested)
        log_capture(c->build_err, sizeof(c->build_err));
}

int control_build_failed(struct control *c)
{
    char desc[CONTROL_ERR_MAX + 32];

    log_capture(NULL, 0);
    if (!c || !c->start_requested)
        return 0;
    snprintf(desc, sizeof(desc), "cannot start the VM: %s",
             c->build_err[0] ? c->build_err : "see ember's error output");
    c->start_requested = 0;
    c->state = CTL_PRELAUNCH;
    qmp_complete(c->qmp, "cont", NULL, desc);
    return 1;
}

static int64_t ms_since(const struct timespec *a, const struct timespec *b)
{
    return (int64_t)(b->tv_sec - a->tv_sec) * 1000 + (b->tv_nsec - a->tv_nsec) / 1000000;
}

/* The host failed a guest's disk request (event loop): BLOCK_IO_ERROR, at most one per
 * 100 ms so a guest hammering a broken disk cannot flood the clients. */
static void on_blk_error(void *opaque, struct virtio_dev *d, const char *op, int err)
{
    struct control *c = opaque;
    struct timespec now;
    json_object *data;
    char name[32];

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (c->blk_error_at.tv_sec && ms_since(&c->blk_error_at, &now) < 100) {
        c->blk_errors_suppressed++;
        return;
    }
    c->blk_error_at = now;
    control_drive_name(c->cfg, (int)(d - c->mv.virtio), name, sizeof(name));
    data = json_object_new_object();
    json_object_object_add(data, "device", json_object_new_string(name));
    json_object_object_add(data, "operation", json_object_new_string(op));
    json_object_object_add(data, "action", json_object_new_string("report"));
    json_object_object_add(data, "nospace", json_object_new_boolean(err == ENOSPC));
    json_object_object_add(data, "reason", json_object_new_string(strerror(err)));
    json_object_object_add(data, "suppressed", json_object_new_int64(c->blk_errors_suppressed));
    c->blk_errors_suppressed = 0;
    qmp_event(c->qmp, "BLOCK_IO_ERROR", data);
}

void control_vm_built(struct control *c, const struct machine_view *mv)
{
    log_capture(NULL, 0);
    if (!c)
        return;
    c->mv = *mv;
    mv->ctrl->on_boot = control_boot_complete;
    mv->ctrl->on_boot_opaque = c;
    for (int i = 0; i < mv->nr_virtio && i < c->cfg->nr_disks; i++)
        virtio_blk_set_error_hook(&mv->virtio[i], on_blk_error, c);
}

void control_vm_started(struct control *c)
{
    if (!c)
        return;
    c->state = CTL_RUNNING;
    c->paused_wanted = 0;
    if (c->start_requested) {
        c->start_requested = 0;
        qmp_event(c->qmp, "RESUME", NULL);
        qmp_complete(c->qmp, "cont", NULL, NULL);
    }
}

void control_wake(struct control *c)
{
    if (c && c->mv.vm && c->paused_wanted && vm_all_paused(c->mv.vm))
        control_pause_done(c);
}

void control_vm_gone(struct control *c)
{
    if (!c)
        return;
    /* A `stop` that was waiting: the vCPUs are not running any more, which is what it asked. */
    if (qmp_deferred(c->qmp, "stop")) {
        qmp_event(c->qmp, "STOP", NULL);
        qmp_complete(c->qmp, "stop", NULL, NULL);
    }
    c->paused_wanted = 0;
    memset(&c->mv, 0, sizeof(c->mv));
}

int control_take_host_reset(struct control *c)
{
    int r = c && c->host_reset;

    if (c)
        c->host_reset = 0;
    return r;
}

void control_reset(struct control *c, int guest)
{
    json_object *d;

    if (!c)
        return;
    d = json_object_new_object();
    json_object_object_add(d, "guest", json_object_new_boolean(guest));
    json_object_object_add(d, "reason",
                           json_object_new_string(guest ? "guest-reset" : "host-qmp-system-reset"));
    qmp_event(c->qmp, "RESET", d);
    c->state = CTL_RUNNING;
}

static const char *shutdown_reason(enum vm_stop_reason r, int *guest)
{
    *guest = 1;
    switch (r) {
    case STOP_POWEROFF:
        return "guest-shutdown";
    case STOP_RESET:
        return "guest-reset";
    case STOP_PANIC:
        return "guest-panic";
    case STOP_CRASH:
        return "guest-crash";
    case STOP_SIGNAL:
        *guest = 0;
        return "host-signal";
    case STOP_QUIT:
        *guest = 0;
        return "host-qmp-quit";
    default:
        *guest = 0;
        return "host-error";
    }
}

void control_shutdown(struct control *c, enum vm_stop_reason r, int code)
{
    json_object *d;
    int guest;

    if (!c)
        return;
    if (r == STOP_PANIC) {
        d = json_object_new_object();
        json_object_object_add(d, "action", json_object_new_string("poweroff"));
        qmp_event(c->qmp, "GUEST_PANICKED", d);
    }
    c->shutdown_reason = shutdown_reason(r, &guest);
    c->state = CTL_SHUTDOWN;
    d = json_object_new_object();
    json_object_object_add(d, "guest", json_object_new_boolean(guest));
    json_object_object_add(d, "reason", json_object_new_string(c->shutdown_reason));
    json_object_object_add(d, "exit-code", json_object_new_int(code));
    qmp_event(c->qmp, "SHUTDOWN", d);
}

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

void control_boot_complete(void *opaque)
{
    struct control *c = opaque;
    struct timespec now;
    json_object *d = json_object_new_object();

    clock_gettime(CLOCK_MONOTONIC, &now);
    json_object_object_add(d, "since-start-ms",
                           json_object_new_double(ms_between(&c->start_wall, &now)));
    json_object_object_add(d, "since-launch-ms",
                           json_object_new_double(ms_between(&c->launch, &now)));
    qmp_event_async(c->qmp, "BOOT_COMPLETE", d);
}
