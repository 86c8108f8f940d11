/* The ember.ctl port: lines to the guest agent and back, bounded both ways (ember-oci). */
#include "ports_ctl.h"
#include "exec_io.h"
#include "log.h"

#include <errno.h>
#include <string.h>

#define CHAIN_BYTES 4096 /* of one chain; the agent's lines are short */

static bool running(const struct virtio_dev *d, int q)
{
    return (d->status & VIRTIO_STATUS_DRIVER_OK) && !d->broken && d->vq[q].ready;
}

void ctl_port_init(struct ctl_port *c, struct virtio_dev *d, struct exec_io *io, int rxq, int txq)
{
    c->d = d;
    c->io = io;
    c->rxq = rxq;
    c->txq = txq;
    c->out_head = c->out_n = 0;
    ctl_port_reset(c);
}

void ctl_port_reset(struct ctl_port *c)
{
    /* What the host queued stays: the guest resets the device when its driver probes it, and a
     * line queued before that (the root disk is ready) must still reach the agent. */
    c->open = false;
    c->in_len = 0;
    c->in_skip = false;
}

void ctl_port_set_open(struct ctl_port *c, bool open)
{
    c->open = open;
    if (open)
        ctl_port_send(c);
}

int ctl_port_queue(struct ctl_port *c, const char *line)
{
    size_t n = strlen(line);
    char *slot;

    if (c->out_n == CTL_OUT_PENDING)
        return -EAGAIN;
    if (n > CTL_LINE_MAX - 2)
        return -EINVAL; /* our own lines are short; a caller bug, not the guest's */
    slot = c->out[(c->out_head + c->out_n++) % CTL_OUT_PENDING];
    memcpy(slot, line, n);
    slot[n] = '\n';
    slot[n + 1] = '\0';
    return 0;
}

void ctl_port_send(struct ctl_port *c)
{
    struct virtq *q = &c->d->vq[c->rxq];
    bool pushed = false;

    /* Linux drops what reaches a port nobody has open: wait for the open. */
    while (c->open && c->out_n && running(c->d, c->rxq)) {
        const char *line = c->out[c->out_head];
        size_t n = strlen(line), w;
        int r = virtq_pop(q, &c->chain);

        if (r != 1) {
            if (r < 0)
                virtio_mark_broken(c->d, "bad ctl receive chain");
            break;
        }
        w = virtq_chain_write(&c->chain, 0, line, n);
        if (virtq_push(q, c->chain.head, (uint32_t)w) < 0)
            break;
        pushed = true;
        if (w < n) /* a buffer smaller than a line: the rest goes in the next one */
            memmove(c->out[c->out_head], line + w, n - w + 1);
        else {
            c->out_head = (c->out_head + 1) % CTL_OUT_PENDING;
            c->out_n--;
        }
    }
    if (pushed)
        virtio_notify_used(c->d, q);
}

/* Bytes from the guest: lines up to CTL_LINE_MAX, longer ones dropped whole. */
static void take(struct ctl_port *c, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];

        if (ch == '\n') {
            if (!c->in_skip) {
                c->in[c->in_len] = '\0';
                exec_agent_line(c->io, c->in);
            }
            c->in_len = 0;
            c->in_skip = false;
        } else if (c->in_skip) {
            continue;
        } else if (c->in_len == sizeof(c->in) - 1 || ch == '\0') {
            log_warn("exec ports: the guest sent a malformed ctl line; dropped");
            c->in_skip = true;
        } else {
            c->in[c->in_len++] = ch;
        }
    }
}

void ctl_port_receive(struct ctl_port *c)
{
    struct virtq *q = &c->d->vq[c->txq];
    int r = 0;

    /* virtq_pop bounds the turn and brings us back for the rest */
    while (running(c->d, c->txq) && (r = virtq_pop(q, &c->chain)) == 1) {
        char buf[256];
        size_t off = 0, got;

        while (off < CHAIN_BYTES &&
               (got = virtq_chain_read(&c->chain, off, buf, sizeof(buf))) > 0) {
            take(c, buf, got);
            off += got;
        }
        if (off >= CHAIN_BYTES)
            c->in_skip = true; /* the rest of an oversized buffer is dropped with its line */
        if (virtq_push(q, c->chain.head, 0) < 0)
            break;
    }
    if (r < 0)
        virtio_mark_broken(c->d, "bad ctl transmit chain");
    virtio_notify_used(c->d, q);
}
