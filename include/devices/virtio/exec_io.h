/* `ember exec` streams: the command's stdin, stdout and stderr as virtio-console ports; for
 * ember-oci also the agent link, a fourth port of one-line messages (ember.ctl). */
#ifndef EMBER_EXEC_IO_H
#define EMBER_EXEC_IO_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "eventloop.h"
#include "outstream.h"

struct virtio_dev;

/* Port ids (the guest finds them by name in /sys/class/virtio-ports/vport*p* /name). */
enum { EXEC_PORT_STDIN, EXEC_PORT_STDOUT, EXEC_PORT_STDERR, EXEC_PORT_CTL, EXEC_MAX_PORTS };

/* Where the guest agent is (ember-oci); each state only ever moves forward. */
enum agent_state {
    AGENT_BOOTING,  /* no word from the agent yet */
    AGENT_READY,    /* container set up, waiting for start */
    AGENT_STARTING, /* start sent */
    AGENT_STARTED,  /* the workload runs */
    AGENT_FAILED,   /* the workload could not be started (exec_errno) */
    AGENT_EXITED,   /* the workload ended (exit_status, oom) */
};

struct exec_io {
    /* Set by `ember exec` before the VM is built. */
    int in_fd;                  /* ember's stdin, or -1 */
    struct out_stream out, err; /* stdout and stderr, never blocking (fd -1: dropped) */
    const uint8_t *spec;        /* sent on the stdin port before stdin: the command (exec.c) */
    size_t spec_len;
    struct timespec deadline; /* CLOCK_MONOTONIC; tv_sec 0: no time limit */
    unsigned timeout_s;       /* for messages */
    int fail_code;            /* exit code when the VM failed; 0: EXIT_VMM_ERROR */

    /* ember-oci's agent link (vmm/exec_agent.c), all unused unless ctl is set. */
    int ctl;      /* add the ember.ctl port */
    int ready_fd; /* gets one byte and is closed when the agent is ready; -1 */
    int exit_fd;  /* the exit record is written here at the end; -1 */
    int tty;      /* in_fd is a terminal: forward its size */
    int disk_fd;  /* one byte when the root disk is complete: CTL_DISK goes to the agent; -1 */
    struct loop_handler h_disk;
    struct loop *loop;
    /* The agent's state changed (event loop thread); set by the control socket. */
    void (*on_agent)(void *opaque);
    void *on_agent_opaque;

    /* Saving the "ready for a command" snapshot (ember_run): while hold is set nothing goes
     * to the guest; once the guest has its ports open and waits on stdin, on_ready is
     * called (event loop) and exec_io_release sends the command after the save. */
    int hold;
    void (*on_ready)(void *opaque);
    void *ready_opaque;

    /* Filled in by the device and by ember_run. */
    struct virtio_dev *dev;
    int stop_reason;  /* enum vm_stop_reason */
    int guest_status; /* the exit-status byte, or -1 */
    uint64_t bytes_out, bytes_err;
    enum agent_state agent;
    int exec_errno;   /* AGENT_FAILED: why */
    int workload_pid; /* AGENT_STARTED: its pid in the guest */
    int exit_status;  /* AGENT_EXITED: shell-style status */
    int oom;          /* AGENT_EXITED: the guest's OOM killer killed something */
    int agent_notes;  /* lines of the agent logged so far (bounded) */
};

/* The multiport virtio-console carrying the streams (devices/virtio/ports.c). */
int virtio_exec_ports_create(struct virtio_dev *d, struct exec_io *io, struct loop *loop);
/* The ready snapshot is saved (or not): send the command and stdin now (event loop). */
void exec_io_release(struct exec_io *io);
/* After the VM stopped: write out what the guest queued and ember has not written yet,
 * waiting for slow readers until deadline (a clock_ms() value), for all of it together. */
void exec_io_flush(struct exec_io *io, int64_t deadline);
/* Queue one line (without '\n', at most CTL_LINE_MAX - 1 bytes) for the agent (event loop
 * thread). 0, or -EAGAIN when too many are waiting, -ENOTCONN without the ctl port. */
int exec_io_send(struct exec_io *io, const char *line);

/* ---- vmm/exec_agent.c: the host end of the agent link ---- */
/* One line from the agent (the device calls this on the event loop thread with the device
 * locked: it must not call exec_io_send). */
void exec_agent_line(struct exec_io *io, const char *line);
/* Ask the agent to start the workload (after sending the terminal's size). 0 or -errno. */
int exec_agent_start(struct exec_io *io);
/* Deliver signal sig to the workload (all: to every process in the guest). 0 or -errno. */
int exec_agent_signal(struct exec_io *io, int sig, int all);
/* Send the terminal's current size (SIGWINCH). */
void exec_agent_resize(struct exec_io *io);
/* A signal reached ember (event loop): 1 if the agent link took it (forwarded, or a resize),
 * 0 if ember should stop the VM as usual. */
int exec_agent_host_signal(struct exec_io *io, int sig);
/* Watch disk_fd from the event loop (the ports device calls it). 0 or -errno. */
int exec_agent_watch_disk(struct exec_io *io, struct loop *loop);
/* The VM is gone: write the exit record to exit_fd. */
void exec_agent_finish(struct exec_io *io, int code);

#endif
