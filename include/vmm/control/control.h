/* The control socket's link to `ember run`: VM state, lifecycle hooks and events (control.c),
 * commands (qmp_commands.c). Every function accepts a NULL control (no --api-sock). */
#ifndef EMBER_CONTROL_H
#define EMBER_CONTROL_H

#include <time.h>

#include "config.h"
#include "eventloop.h"
#include "qmp.h"
#include "snapshot.h"
#include "vm.h"

struct virtio_dev;
struct ctrl_page;
struct snap_runner;

/* What run.c lends the control layer while a VM exists. */
struct machine_view {
    struct vm *vm;
    struct virtio_dev *virtio;
    int nr_virtio;
    int (*power_button)(void *opaque); /* press it: 0, -ENODEV when there is none, -errno */
    void *power_opaque;
    struct ctrl_page *ctrl;
    struct snap_runner *snap; /* snapshot-save runs here */
    struct snap_parts parts;  /* what a snapshot covers */
};

enum control_state { CTL_PRELAUNCH, CTL_RUNNING, CTL_PAUSED, CTL_SHUTDOWN };

#define CONTROL_ERR_MAX 512

struct control {
    struct qmp_server *qmp;
    struct vm_config *cfg;
    struct timespec start_wall; /* ember's start, CLOCK_MONOTONIC */
    struct timespec launch;     /* the VM build began (boot or reset) */
    enum control_state state;
    struct machine_view mv; /* mv.vm is NULL while there is no VM */
    int start_requested;    /* `cont` before boot */
    int quit_requested;     /* `quit` before boot */
    int host_reset;         /* `system_reset`: boot again whatever --on-reboot says */
    int paused_wanted;      /* `stop` sent; STOP goes out when every vCPU paused */
    const char *shutdown_reason;
    char build_err[CONTROL_ERR_MAX]; /* messages while building for a `cont` */
    struct timespec blk_error_at;    /* rate limit of BLOCK_IO_ERROR */
    int statm_fd;                    /* /proc/self/statm, opened before the sandbox */
    unsigned blk_errors_suppressed;
    char snap_dir[4096]; /* snapshot-save in progress: its directory and files */
    int snap_state_fd, snap_mem_fd;
};

/* Open the control socket when cfg->api_sock is set (*out stays NULL otherwise). 0 or -errno
 * after one error line. */
int control_open(struct control **out, struct vm_config *cfg, struct loop *loop,
                 const struct timespec *start_wall);
/* Send what is queued (up to timeout_ms), close the socket and free everything. */
void control_close(struct control *c, int timeout_ms);
/* ember's version as QMP gives it (greeting and query-version): a new object. */
json_object *control_version_object(void);

/* Before boot: waiting for configuration and `cont`. */
int control_prelaunch(const struct control *c);
/* `quit` was asked before boot. */
int control_quit_requested(const struct control *c);
/* `cont` was asked before boot: build the VM now. */
int control_start_requested(const struct control *c);
/* Around building the VM for a `cont`: collect the error messages for its reply. */
void control_build_begin(struct control *c);
/* The build failed: answer `cont` with the collected messages and wait for configuration
 * again. Returns 1 if the control socket takes over (stay in prelaunch), 0 if ember should
 * exit as without a control socket. */
int control_build_failed(struct control *c);
/* The VM is built (before vm_start): commands and events reach it through mv. */
void control_vm_built(struct control *c, const struct machine_view *mv);
/* The vCPUs were started: answer a pending `cont`, RESUME. */
void control_vm_started(struct control *c);
/* The VM's wake eventfd fired (a pause may have completed). */
void control_wake(struct control *c);
/* The VM stopped and is about to be destroyed. */
void control_vm_gone(struct control *c);
/* `system_reset` was asked (consumed). */
int control_take_host_reset(struct control *c);
/* The VM is booting again after a reset: RESET. */
void control_reset(struct control *c, int guest);
/* ember is about to exit with code: GUEST_PANICKED (for a panic) and SHUTDOWN. */
void control_shutdown(struct control *c, enum vm_stop_reason r, int code);

/* The guest's boot marker (any thread): BOOT_COMPLETE. opaque is the control. */
void control_boot_complete(void *opaque);

/* qmp_commands.c: run one request (event loop thread). */
enum qmp_result control_dispatch(void *opaque, struct qmp_request *req);
/* qmp_commands.c: a drive's name: its id=, else "disk<N>" in --disk order. */
void control_drive_name(const struct vm_config *cfg, int i, char *buf, size_t n);
/* qmp_commands.c: every pause completed (called from control_wake). */
void control_pause_done(struct control *c);

/* control_agent.c: ember-oci's guest agent (cfg->exec with the ctl port). */
/* Follow the agent's state (control_open). */
void control_agent_attach(struct control *c);
/* Whether the socket serves a container: no command may rebuild the VM or open files. */
int control_serves_container(const struct control *c);
/* x-ember-start: start the workload; answered once it runs ({"pid": N}) or failed. */
enum qmp_result control_cmd_start(struct control *c, struct qmp_request *req);
/* x-ember-signal {"signal": N, "all": bool}: a signal for the workload (or every process). */
enum qmp_result control_cmd_signal(struct control *c, struct qmp_request *req);

#endif
