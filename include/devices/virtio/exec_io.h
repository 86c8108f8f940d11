/* `ember exec` streams: the command's stdin, stdout and stderr as virtio-console ports. */
#ifndef EMBER_EXEC_IO_H
#define EMBER_EXEC_IO_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "eventloop.h"
#include "outstream.h"

struct virtio_dev;

/* Port ids (the guest finds them by name in /sys/class/virtio-ports/vport*p* /name). */
enum { EXEC_PORT_STDIN, EXEC_PORT_STDOUT, EXEC_PORT_STDERR, EXEC_NR_PORTS };

struct exec_io {
    /* Set by `ember exec` before the VM is built. */
    int in_fd;                  /* ember's stdin, or -1 */
    struct out_stream out, err; /* stdout and stderr, never blocking (fd -1: dropped) */
    const uint8_t *spec;        /* sent on the stdin port before stdin: the command (exec.c) */
    size_t spec_len;
    struct timespec deadline; /* CLOCK_MONOTONIC; tv_sec 0: no time limit */
    unsigned timeout_s;       /* for messages */

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
};

/* The multiport virtio-console carrying the three streams (devices/virtio/ports.c). */
int virtio_exec_ports_create(struct virtio_dev *d, struct exec_io *io, struct loop *loop);
/* The ready snapshot is saved (or not): send the command and stdin now (event loop). */
void exec_io_release(struct exec_io *io);
/* After the VM stopped: write out what the guest queued and ember has not written yet,
 * waiting for slow readers until deadline (a clock_ms() value), for all of it together. */
void exec_io_flush(struct exec_io *io, int64_t deadline);

#endif
