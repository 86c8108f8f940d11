/* The ember.ctl port of the exec ports device: one-line messages both ways (ember-oci's agent
 * link). Used by devices/virtio/ports.c only. */
#ifndef EMBER_PORTS_CTL_H
#define EMBER_PORTS_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../../guest-images/init/proto.h"
#include "virtio.h"

#define CTL_OUT_PENDING 16 /* lines for the guest not yet taken */

struct exec_io;

struct ctl_port {
    struct virtio_dev *d;
    struct exec_io *io;
    int rxq, txq; /* queue indexes: host to guest, guest to host */
    bool open;    /* the guest has the port open */
    char out[CTL_OUT_PENDING][CTL_LINE_MAX];
    int out_head, out_n;
    char in[CTL_LINE_MAX]; /* the guest's line so far */
    size_t in_len;
    bool in_skip;             /* the line was too long: drop it up to its '\n' */
    struct virtq_chain chain; /* 16 KiB: lives in the device, not on the stack */
};

void ctl_port_init(struct ctl_port *c, struct virtio_dev *d, struct exec_io *io, int rxq, int txq);
/* The guest opened or closed the port (PORT_OPEN control event). */
void ctl_port_set_open(struct ctl_port *c, bool open);
/* Queue a line for the guest; 0 or -EAGAIN (full). Then ctl_port_send. */
int ctl_port_queue(struct ctl_port *c, const char *line);
/* Move queued lines into the guest's receive buffers (rxq notified, port opened, line queued). */
void ctl_port_send(struct ctl_port *c);
/* Read what the guest sent (txq notified): each complete line goes to exec_agent_line. */
void ctl_port_receive(struct ctl_port *c);
/* Device reset: the port is closed, a half-received line dropped; lines for the guest stay. */
void ctl_port_reset(struct ctl_port *c);

#endif
