/* virtio-console with MULTIPORT: `ember exec`'s stdin, stdout and stderr as three guest ports
 * (and ember-oci's agent link, ember.ctl, as a fourth: ports_ctl.c). */
#include "clock.h"
#include "exec_io.h"
#include "log.h"
#include "ports_ctl.h"
#include "virtio_devices.h"
#include "vm.h"

#include <errno.h>
#include <stdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define VIRTIO_ID_CONSOLE 3
#define F_MULTIPORT       1
#define QUEUE_MAX         256
#define CTRL_RX           2 /* control receiveq: host to guest */
#define CTRL_TX           3 /* control transmitq: guest to host */
#define CHAIN_BUDGET      64
#define CTL_PENDING       16
#define CTL_MSG_MAX       32

/* Control events (virtio spec 5.3.6.2). */
enum {
    DEVICE_READY = 0,
    DEVICE_ADD = 1,
    PORT_READY = 3,
    PORT_OPEN = 6,
    PORT_NAME = 7,
};

static const char *const port_names[EXEC_MAX_PORTS] = {"ember.stdin", "ember.stdout",
                                                       "ember.stderr", "ember.ctl"};

struct ports;

struct out_port {
    struct ports *p;
    struct out_stream out; /* the command's stdout or stderr (never blocks), fd -1: none */
    int tx;                /* queue index */
    struct loop_handler h;
    bool watched;
    bool closed; /* the reader went away: output is dropped */
    bool held;
    size_t done; /* bytes of chain already written */
    size_t skip; /* bytes of the next chain written before a snapshot */
    uint64_t *count;
    struct virtq_chain chain;
};

struct ports {
    struct exec_io *io;
    struct virtio_dev *d;
    struct loop *loop;
    uint8_t ctl[CTL_PENDING][CTL_MSG_MAX];
    uint32_t ctl_len[CTL_PENDING];
    int ctl_head, ctl_n;
    struct virtq_chain cchain;
    /* stdin port */
    struct virtq_chain rx;
    bool rx_held, stdin_ready, in_eof, eof_sent, in_watched, in_is_file;
    size_t spec_sent;
    struct loop_handler h_in;
    struct out_port out[2];
    int timer_fd;
    struct loop_handler h_timer;
    uint32_t nr_ports;
    struct ctl_port ctlp; /* EXEC_PORT_CTL, when io->ctl */
};

static int rx_queue(int port)
{
    return port == 0 ? 0 : 2 * (port + 1);
}

static bool running(const struct virtio_dev *d, int q)
{
    return virtio_queue_running(d, &d->vq[q]);
}

/* ---- control messages ---- */

static void ctl_queue(struct ports *p, uint32_t id, uint16_t event, uint16_t value,
                      const char *name)
{
    uint8_t *m;
    size_t len = 8;
    int slot;

    if (p->ctl_n == CTL_PENDING)
        return; /* cannot happen: at most 2 per port are pending */
    slot = (p->ctl_head + p->ctl_n++) % CTL_PENDING;
    m = p->ctl[slot];
    memcpy(m, &id, 4);
    memcpy(m + 4, &event, 2);
    memcpy(m + 6, &value, 2);
    if (name) {
        size_t n = strlen(name);
        memcpy(m + 8, name, n);
        len += n;
    }
    p->ctl_len[slot] = (uint32_t)len;
}

static void ctl_send(struct ports *p)
{
    struct virtio_dev *d = p->d;
    struct virtq *q = &d->vq[CTRL_RX];
    bool pushed = false;

    while (p->ctl_n && running(d, CTRL_RX)) {
        int r = virtq_pop(q, &p->cchain);
        size_t w;

        if (r != 1) {
            if (r < 0)
                virtio_mark_broken(d, "bad control receive chain");
            break;
        }
        w = virtq_chain_write(&p->cchain, 0, p->ctl[p->ctl_head], p->ctl_len[p->ctl_head]);
        p->ctl_head = (p->ctl_head + 1) % CTL_PENDING;
        p->ctl_n--;
        if (virtq_push(q, p->cchain.head, (uint32_t)w) < 0)
            break;
        pushed = true;
    }
    if (pushed)
        virtio_notify_used(d, q);
}

static void pump_input(struct ports *p);

static void ctl_receive(struct ports *p)
{
    struct virtio_dev *d = p->d;
    struct virtq *q = &d->vq[CTRL_TX];
    int r;

    while ((r = virtq_pop(q, &p->cchain)) == 1) { /* the turn bounds it */
        uint8_t m[8];
        uint32_t id;
        uint16_t event, value;

        if (virtq_chain_read(&p->cchain, 0, m, sizeof(m)) == sizeof(m)) {
            memcpy(&id, m, 4);
            memcpy(&event, m + 4, 2);
            memcpy(&value, m + 6, 2);
            if (event == DEVICE_READY && value == 1) {
                for (uint32_t i = 0; i < p->nr_ports; i++)
                    ctl_queue(p, i, DEVICE_ADD, 0, NULL);
            } else if (event == PORT_READY && value == 1 && id < p->nr_ports) {
                /* Open before the name: once the guest sees the name, the host side is up. */
                ctl_queue(p, id, PORT_OPEN, 1, NULL);
                ctl_queue(p, id, PORT_NAME, 0, port_names[id]);
            } else if (event == PORT_OPEN && id == EXEC_PORT_STDIN) {
                /* Linux drops data that reaches a port nobody has open: wait for the open. */
                p->stdin_ready = value == 1;
                if (p->stdin_ready && p->io->hold && p->io->on_ready)
                    p->io->on_ready(p->io->ready_opaque); /* the guest waits for its command */
            } else if (event == PORT_OPEN && id == EXEC_PORT_CTL && p->nr_ports > EXEC_PORT_CTL) {
                ctl_port_set_open(&p->ctlp, value == 1);
            } else {
                log_debug("exec ports: control event %u for port %u (value %u)", event, id, value);
            }
        }
        if (virtq_push(q, p->cchain.head, 0) < 0)
            break;
    }
    if (r < 0)
        virtio_mark_broken(d, "bad control transmit chain");
    virtio_notify_used(d, q);
    ctl_send(p);
    pump_input(p);
}

/* ---- stdin: the command spec first, then ember's stdin, then "host closed" ---- */

static void watch_in(struct ports *p, bool on)
{
    if (p->in_is_file || on == p->in_watched || p->io->in_fd < 0)
        return;
    if (!on) {
        loop_del(p->loop, &p->h_in);
        p->in_watched = false;
    } else if (loop_add(p->loop, &p->h_in, EPOLLIN) == 0) {
        p->in_watched = true;
    } else if (errno == EPERM) {
        p->in_is_file = true; /* regular file or /dev/null: always readable */
    } else {
        p->in_eof = true;
    }
}

static bool input_ready(struct ports *p)
{
    struct pollfd pf = {.fd = p->io->in_fd, .events = POLLIN};

    if (p->spec_sent < p->io->spec_len)
        return true;
    if (p->in_eof || p->io->in_fd < 0)
        return false;
    if (p->in_is_file)
        return true;
    if (poll(&pf, 1, 0) > 0)
        return true;
    watch_in(p, true);
    return p->in_is_file;
}

static void pump_input(struct ports *p)
{
    struct virtio_dev *d = p->d;
    struct virtq *q = &d->vq[rx_queue(EXEC_PORT_STDIN)];
    bool pushed = false;

    if (p->io->hold)
        return; /* a snapshot of the guest waiting for its command comes first */
    for (int n = 0; n < CHAIN_BUDGET && p->stdin_ready && running(d, rx_queue(0)); n++) {
        const struct virtq_buf *b = NULL;
        ssize_t got;

        if (!input_ready(p))
            break;
        if (!p->rx_held) {
            int r = virtq_pop(q, &p->rx);
            if (r != 1) {
                if (r < 0)
                    virtio_mark_broken(d, "bad stdin receive chain");
                watch_in(p, false); /* the guest kicks when it posts buffers */
                break;
            }
            p->rx_held = true;
        }
        for (uint32_t i = 0; i < p->rx.nbufs && !b; i++)
            if (p->rx.buf[i].write)
                b = &p->rx.buf[i];
        if (!b) {
            virtio_mark_broken(d, "stdin receive chain without room");
            break;
        }
        if (p->spec_sent < p->io->spec_len) {
            got = (ssize_t)(p->io->spec_len - p->spec_sent);
            if (got > (ssize_t)b->len)
                got = b->len;
            memcpy(b->host, p->io->spec + p->spec_sent, (size_t)got);
            p->spec_sent += (size_t)got;
        } else {
            got = read(p->io->in_fd, b->host, b->len);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got <= 0) {
                p->in_eof = true;
                watch_in(p, false);
                break;
            }
        }
        p->rx_held = false;
        if (virtq_push(q, p->rx.head, (uint32_t)got) < 0)
            break;
        pushed = true;
    }
    if (pushed)
        virtio_notify_used(d, q);
    if (p->stdin_ready && p->in_eof && !p->eof_sent && p->spec_sent == p->io->spec_len) {
        /* Everything is in the guest's buffers: now the port reads end of file. */
        p->eof_sent = true;
        ctl_queue(p, EXEC_PORT_STDIN, PORT_OPEN, 0, NULL);
        ctl_send(p);
    }
}

static void on_stdin(struct loop_handler *h, uint32_t events)
{
    struct ports *p = container_of(h, struct ports, h_in);

    (void)events;
    pthread_mutex_lock(&p->d->lock);
    watch_in(p, false);
    pump_input(p);
    pthread_mutex_unlock(&p->d->lock);
}

/* ---- stdout and stderr ---- */

static void watch_out(struct ports *p, struct out_port *o, bool on)
{
    if (on == o->watched)
        return;
    if (!on) {
        loop_del(p->loop, &o->h);
        o->watched = false;
    } else if (loop_add(p->loop, &o->h, EPOLLOUT) == 0) {
        o->watched = true;
    }
}

/* Write the rest of the held chain; 1 when done, 0 when the descriptor is full (after waiting
 * for room until deadline, a clock_ms() value; 0: no wait). */
static int write_chain(struct out_port *o, int64_t deadline)
{
    size_t skip = o->done;

    for (uint32_t i = 0; i < o->chain.nbufs; i++) {
        const struct virtq_buf *b = &o->chain.buf[i];

        if (b->write)
            continue;
        if (skip >= b->len) {
            skip -= b->len;
            continue;
        }
        while (skip < b->len) {
            ssize_t w = o->closed ? (ssize_t)(b->len - skip)
                                  : out_stream_write(&o->out, (const uint8_t *)b->host + skip,
                                                     b->len - skip);

            if (w == -EINTR)
                continue;
            if (w == -EAGAIN) {
                int left = deadline ? clock_ms_left(deadline) : 0;

                if (left == 0 || !out_stream_wait(&o->out, left))
                    return 0;
                continue;
            }
            if (w < 0) {
                o->closed = true; /* EPIPE: the reader went away; drop the rest */
                continue;
            }
            skip += (size_t)w;
            o->done += (size_t)w;
            if (!o->closed)
                *o->count += (uint64_t)w;
        }
        skip = 0;
    }
    return 1;
}

/* Write out the stream's chains: CHAIN_BUDGET at most and never waiting (deadline 0), or at
 * exit as many as can go out before deadline. */
static void pump_output(struct ports *p, struct out_port *o, int64_t deadline)
{
    struct virtio_dev *d = p->d;
    struct virtq *q = &d->vq[o->tx];
    bool pushed = false;
    int r = 0;

    for (int n = 0; running(d, o->tx) && (deadline || n < CHAIN_BUDGET); n++) {
        if (!o->held) {
            r = virtq_pop(q, &o->chain);
            if (r != 1)
                break;
            o->held = true;
            o->done = o->skip;
            o->skip = 0;
        }
        if (!write_chain(o, deadline)) {
            watch_out(p, o, !deadline);
            r = 0;
            break;
        }
        o->held = false;
        if (virtq_push(q, o->chain.head, 0) < 0)
            break;
        pushed = true;
        r = 1;
    }
    if (r < 0)
        virtio_mark_broken(d, "bad output chain");
    else if (r == 1 && !deadline)
        virtq_rekick(q); /* budget spent: come back after other work */
    if (pushed)
        virtio_notify_used(d, q);
}

static void on_out(struct loop_handler *h, uint32_t events)
{
    struct out_port *o = container_of(h, struct out_port, h);
    struct ports *p = o->p;

    (void)events;
    pthread_mutex_lock(&p->d->lock);
    watch_out(p, o, false);
    pump_output(p, o, 0);
    pthread_mutex_unlock(&p->d->lock);
}

/* ---- transport callbacks ---- */

static void ports_config_read(struct virtio_dev *d, uint32_t offset, uint8_t *data, uint32_t len)
{
    struct ports *p = d->priv;
    /* cols, rows (no size), max_nr_ports, emerg_wr */
    uint8_t config[12] = {0, 0, 0, 0, (uint8_t)p->nr_ports, 0, 0, 0, 0, 0, 0, 0};

    memcpy(data, config + offset, len);
}

static void ports_queue_notify(struct virtio_dev *d, struct virtq *q)
{
    struct ports *p = d->priv;

    switch (q->index) {
    case CTRL_TX:
        ctl_receive(p);
        break;
    case CTRL_RX:
        ctl_send(p);
        break;
    case 0:
        pump_input(p);
        break;
    default:
        if (p->nr_ports > EXEC_PORT_CTL && q->index == p->ctlp.rxq)
            ctl_port_send(&p->ctlp);
        else if (p->nr_ports > EXEC_PORT_CTL && q->index == p->ctlp.txq)
            ctl_port_receive(&p->ctlp);
        for (int i = 0; i < 2; i++)
            if (q->index == p->out[i].tx)
                pump_output(p, &p->out[i], 0);
        break;
    }
}

/* vCPU: forget the driver's state; the host descriptors leave epoll on the loop. */
static void ports_reset(struct virtio_dev *d)
{
    struct ports *p = d->priv;

    p->rx_held = p->stdin_ready = p->eof_sent = false;
    p->spec_sent = 0;
    p->ctl_n = 0;
    ctl_port_reset(&p->ctlp);
    for (int i = 0; i < 2; i++) {
        p->out[i].held = false;
        p->out[i].skip = 0;
    }
    virtio_post_work(d);
}

/* Event loop, after a reset: stop watching stdin, stdout and stderr until the guest asks. */
static void ports_loop_work(struct virtio_dev *d)
{
    struct ports *p = d->priv;

    for (int i = 0; i < 2; i++)
        watch_out(p, &p->out[i], false);
    watch_in(p, false);
}

static void ports_destroy(struct virtio_dev *d)
{
    struct ports *p = d->priv;

    if (!p)
        return;
    ports_loop_work(d); /* teardown runs on the event loop's thread */
    if (p->timer_fd >= 0) {
        loop_del(p->loop, &p->h_timer);
        close(p->timer_fd);
    }
    if (p->io->ctl && p->io->disk_fd >= 0 && p->io->loop) { /* stopped before the disk was done */
        loop_del(p->io->loop, &p->io->h_disk);
        close(p->io->disk_fd);
        p->io->disk_fd = -1;
    }
    p->io->dev = NULL;
    free(p);
    d->priv = NULL;
}

/* ---- snapshots ---- */

#define SKIP_MAX (1u << 30)

/* No chain held: stdin's receive chain goes back, a half-written output chain is written on
 * from where it stopped when it is taken again. */
static int ports_quiesce(struct virtio_dev *d, char *err, size_t errlen)
{
    struct ports *p = d->priv;

    (void)err;
    (void)errlen;
    if (p->rx_held)
        virtq_unpop(&d->vq[rx_queue(EXEC_PORT_STDIN)]);
    p->rx_held = false;
    for (int i = 0; i < 2; i++) {
        struct out_port *o = &p->out[i];

        if (o->held) {
            virtq_unpop(&d->vq[o->tx]);
            o->skip = o->done;
        }
        o->held = false;
    }
    return 0;
}

/* The guest's side of the ports: which are open, control messages not yet delivered. A
 * restored VM gets a new command and new streams, so only a snapshot of a guest waiting for
 * its command (nothing of the old one sent) can be restored. */
static void ports_save(struct virtio_dev *d, struct snap_buf *b)
{
    struct ports *p = d->priv;

    snap_put_u8(b, p->stdin_ready);
    snap_put_u8(b, p->eof_sent);
    snap_put_u64(b, p->spec_sent);
    snap_put_u32(b, (uint32_t)p->out[0].skip);
    snap_put_u32(b, (uint32_t)p->out[1].skip);
    snap_put_u32(b, (uint32_t)p->ctl_n);
    for (int i = 0; i < p->ctl_n; i++) {
        int slot = (p->ctl_head + i) % CTL_PENDING;

        snap_put_u32(b, p->ctl_len[slot]);
        snap_put_bytes(b, p->ctl[slot], p->ctl_len[slot]);
    }
}

static int ports_restore(struct virtio_dev *d, struct snap_reader *r, char *err, size_t errlen)
{
    struct ports *p = d->priv;
    uint8_t ready = snap_get_u8(r), eof = snap_get_u8(r);
    uint64_t sent = snap_get_u64(r);
    uint32_t skip0 = snap_get_u32(r), skip1 = snap_get_u32(r), n = snap_get_u32(r);

    if (r->bad || ready > 1 || eof || sent || n > CTL_PENDING || skip0 > SKIP_MAX ||
        skip1 > SKIP_MAX) {
        snprintf(err, errlen, "exec ports: %s",
                 r->bad          ? "truncated"
                 : (eof || sent) ? "taken after the command started (only a guest "
                                   "waiting for its command can be restored)"
                                 : "bad values");
        return -EINVAL;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = snap_get_u32(r);

        if (len < 8 || len > CTL_MSG_MAX) {
            snprintf(err, errlen, "exec ports: control message %u of %u bytes", i, len);
            return -EINVAL;
        }
        p->ctl_len[i] = len;
        snap_get_bytes(r, p->ctl[i], len);
    }
    if (!snap_reader_done(r)) {
        snprintf(err, errlen, "exec ports: %s", r->bad ? "truncated" : "extra bytes");
        return -EINVAL;
    }
    p->stdin_ready = ready;
    p->ctl_head = 0;
    p->ctl_n = (int)n;
    p->out[0].skip = skip0;
    p->out[1].skip = skip1;
    return 0;
}

static const struct virtio_dev_ops ports_ops = {
        .config_read = ports_config_read,
        .reset = ports_reset,
        .loop_work = ports_loop_work,
        .queue_notify = ports_queue_notify,
        .destroy = ports_destroy,
        .quiesce = ports_quiesce,
        .save = ports_save,
        .restore = ports_restore,
};

static void on_timer(struct loop_handler *h, uint32_t events)
{
    struct ports *p = container_of(h, struct ports, h_timer);
    uint64_t n;

    (void)events;
    (void)!read(h->fd, &n, sizeof(n));
    vm_request_stop(p->d->vm, STOP_TIMEOUT);
}

int virtio_exec_ports_create(struct virtio_dev *d, struct exec_io *io, struct loop *loop)
{
    struct ports *p = calloc(1, sizeof(*p));

    if (!p) {
        log_err("exec: out of memory");
        return -ENOMEM;
    }
    p->io = io;
    p->d = d;
    p->loop = loop;
    p->timer_fd = -1;
    p->nr_ports = io->ctl ? EXEC_MAX_PORTS : EXEC_PORT_CTL;
    ctl_port_init(&p->ctlp, d, io, rx_queue(EXEC_PORT_CTL), rx_queue(EXEC_PORT_CTL) + 1);
    p->h_in = (struct loop_handler){.fd = io->in_fd, .fn = on_stdin};
    for (int i = 0; i < 2; i++) {
        struct out_port *o = &p->out[i];

        o->p = p;
        o->out = i == 0 ? io->out : io->err;
        o->tx = rx_queue(i + 1) + 1;
        o->count = i == 0 ? &io->bytes_out : &io->bytes_err;
        o->h = (struct loop_handler){.fd = o->out.fd, .fn = on_out};
        o->closed = o->out.fd < 0;
    }
    if (io->deadline.tv_sec) {
        struct itimerspec its = {.it_value = io->deadline};

        p->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (p->timer_fd < 0 || timerfd_settime(p->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
            int err = log_errno("exec: timerfd for --timeout");
            if (p->timer_fd >= 0)
                close(p->timer_fd);
            free(p);
            return err;
        }
        p->h_timer = (struct loop_handler){.fd = p->timer_fd, .fn = on_timer};
        if (loop_add(loop, &p->h_timer, EPOLLIN) < 0) {
            int err = log_errno("exec: epoll_ctl for --timeout");
            close(p->timer_fd);
            free(p);
            return err;
        }
    }
    if (exec_agent_watch_disk(io, loop)) {
        if (p->timer_fd >= 0) {
            loop_del(loop, &p->h_timer);
            close(p->timer_fd);
        }
        free(p);
        return -EIO;
    }
    *d = (struct virtio_dev){
            .name = "exec-ports",
            .device_id = VIRTIO_ID_CONSOLE,
            .features = 1ULL << F_MULTIPORT,
            .config_size = 12,
            .nr_queues = 2 * ((int)p->nr_ports + 1),
            .ops = &ports_ops,
            .priv = p,
    };
    for (int i = 0; i < d->nr_queues; i++)
        d->queue_max[i] = QUEUE_MAX;
    io->dev = d;
    return 0;
}

void exec_io_release(struct exec_io *io)
{
    struct virtio_dev *d = io->dev;

    io->hold = 0;
    if (!d || !d->priv)
        return;
    pthread_mutex_lock(&d->lock);
    pump_input(d->priv);
    pthread_mutex_unlock(&d->lock);
}

void exec_io_flush(struct exec_io *io, int64_t deadline)
{
    struct virtio_dev *d = io->dev;
    struct ports *p;

    if (!d || !(p = d->priv))
        return;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < 2; i++) {
        struct virtq *q = &d->vq[p->out[i].tx];

        watch_out(p, &p->out[i], false);
        do { /* turn after turn while time is left */
            virtq_turn_begin(q);
            pump_output(p, &p->out[i], deadline);
        } while (virtq_turn_spent(q) && clock_ms_left(deadline) > 0);
    }
    if (p->nr_ports > EXEC_PORT_CTL) { /* the agent's exit record, sent before power-off */
        virtq_turn_begin(&d->vq[p->ctlp.txq]);
        ctl_port_receive(&p->ctlp);
    }
    pthread_mutex_unlock(&d->lock);
}

int exec_io_send(struct exec_io *io, const char *line)
{
    struct virtio_dev *d = io->dev;
    struct ports *p;
    int err;

    if (!d || !(p = d->priv) || p->nr_ports <= EXEC_PORT_CTL)
        return -ENOTCONN;
    pthread_mutex_lock(&d->lock);
    err = ctl_port_queue(&p->ctlp, line);
    if (!err)
        ctl_port_send(&p->ctlp);
    pthread_mutex_unlock(&d->lock);
    return err;
}
