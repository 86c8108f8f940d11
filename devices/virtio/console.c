/* virtio-console: hvc0 on the host console, one port; the event loop never blocks on output. */
#include "log.h"
#include "virtio_devices.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VIRTIO_ID_CONSOLE 3
#define RX_QUEUE          0 /* receiveq: host input to the guest */
#define TX_QUEUE          1 /* transmitq: guest output */
#define QUEUE_MAX         256
#define CONFIG_SIZE       8 /* cols (le16), rows (le16), max_nr_ports (le32) */

struct vcon {
    struct console *con;
    struct virtq_chain rx; /* a receive chain held until input arrives */
    struct virtq_chain tx; /* the transmit chain being written */
    bool rx_held;
    bool tx_held;      /* tx is popped but not all written: the ring was full */
    bool port_ready;   /* the guest wrote to hvc0, so its port is set up: input is safe */
    size_t tx_written; /* bytes of tx already in the ring */
    size_t tx_skip;    /* bytes of the next transmit chain written before a snapshot */
};

/* ---- guest output ---- */

/* Linux's driver throws away input that arrives while it is still setting the port up
 * (between filling the receive queue and listing the port), and without MULTIPORT nothing
 * tells us when it is done. Its first output comes after that: input waits for it. */
static void port_is_ready(struct vcon *v)
{
    if (v->port_ready)
        return;
    v->port_ready = true;
    console_wake(v->con); /* the event loop asks for input now */
}

/* Put the rest of the transmit chain's readable bytes into the console ring; true when all
 * of them are in, false when the ring filled up (tx_written says how far it got). */
static bool tx_write(struct vcon *v)
{
    size_t skip = v->tx_written;

    for (uint32_t i = 0; i < v->tx.nbufs; i++) {
        const struct virtq_buf *b = &v->tx.buf[i];
        size_t len, n;

        if (b->write)
            continue;
        if (skip >= b->len) {
            skip -= b->len;
            continue;
        }
        len = b->len - skip;
        n = console_write_nb(v->con, (const uint8_t *)b->host + skip, len);
        v->tx_written += n;
        if (n < len)
            return false;
        skip = 0;
    }
    return true;
}

/* Move transmit chains to the console until the queue is empty or the ring is full (then
 * console_drain calls tx_space when it has room). dev->lock held. */
static void tx_process(struct virtio_dev *d, struct virtq *q)
{
    struct vcon *v = d->priv;
    bool pushed = false;
    int r = 0;

    for (;;) { /* the turn's budget (virtq_pop) bounds it */
        if (!v->tx_held) {
            r = virtq_pop(q, &v->tx);
            if (r != 1)
                break;
            v->tx_held = true;
            v->tx_written = v->tx_skip;
            v->tx_skip = 0;
            port_is_ready(v);
        }
        if (!tx_write(v)) {
            r = 0;
            break;
        }
        v->tx_held = false;
        d->stat_requests++;
        d->stat_bytes += v->tx.out_len;
        r = virtq_push(q, v->tx.head, 0);
        if (r < 0)
            break;
        pushed = true;
        r = 1;
    }
    if (r < 0)
        virtio_mark_broken(d, "bad transmit chain");
    if (pushed)
        virtio_notify_used(d, q);
}

/* The console ring has room again (event loop, from console_drain). */
static void tx_space(void *opaque)
{
    struct virtio_dev *d = opaque;

    pthread_mutex_lock(&d->lock);
    if (virtio_queue_running(d, &d->vq[TX_QUEUE]))
        tx_process(d, &d->vq[TX_QUEUE]);
    pthread_mutex_unlock(&d->lock);
}

/* ---- host input ---- */

/* Make sure a receive chain with writable room is held; false if the guest posted none.
 * Chains without writable buffers go back empty. dev->lock held. */
static bool rx_ready(struct virtio_dev *d)
{
    struct vcon *v = d->priv;
    struct virtq *q = &d->vq[RX_QUEUE];
    int r;

    if (!virtio_queue_running(d, q) || !v->port_ready)
        return false;
    while (!v->rx_held) { /* the turn's budget (virtq_pop) bounds it */
        r = virtq_pop(q, &v->rx);
        if (r == VIRTQ_EMPTY)
            return false;
        if (r == 1 && v->rx.in_len > 0)
            v->rx_held = true;
        else if (r < 0 || virtq_push(q, v->rx.head, 0) < 0)
            goto broken;
        else
            virtio_notify_used(d, q);
    }
    return true;
broken:
    virtio_mark_broken(d, "bad receive chain");
    return false;
}

static size_t vcon_input_room(void *opaque)
{
    struct virtio_dev *d = opaque;
    struct vcon *v = d->priv;
    size_t room;

    pthread_mutex_lock(&d->lock);
    room = rx_ready(d) ? v->rx.in_len : 0;
    pthread_mutex_unlock(&d->lock);
    return room;
}

/* Host input (event loop): each piece goes to the guest at once, in as many chains as it
 * takes. Returns the bytes delivered (all of them unless the guest took its buffers back). */
static size_t vcon_input(void *opaque, const uint8_t *buf, size_t n)
{
    struct virtio_dev *d = opaque;
    struct vcon *v = d->priv;
    struct virtq *q = &d->vq[RX_QUEUE];
    size_t done = 0;

    pthread_mutex_lock(&d->lock);
    while (done < n && rx_ready(d)) {
        size_t w = virtq_chain_write(&v->rx, 0, buf + done, n - done);

        v->rx_held = false;
        if (virtq_push(q, v->rx.head, (uint32_t)w) < 0) {
            virtio_mark_broken(d, "receive queue");
            break;
        }
        d->stat_requests++;
        d->stat_bytes += w;
        done += w;
    }
    virtio_notify_used(d, q);
    pthread_mutex_unlock(&d->lock);
    return done;
}

/* ---- transport callbacks ---- */

static void vcon_config_read(struct virtio_dev *d, uint32_t offset, uint8_t *data, uint32_t len)
{
    /* No F_SIZE: cols and rows are 0. One port, no MULTIPORT. */
    static const uint8_t config[CONFIG_SIZE] = {0, 0, 0, 0, 1, 0, 0, 0};

    (void)d;
    memcpy(data, config + offset, len); /* the transport checked offset + len <= CONFIG_SIZE */
}

static void vcon_queue_notify(struct virtio_dev *d, struct virtq *q)
{
    struct vcon *v = d->priv;

    if (q->index == TX_QUEUE)
        tx_process(d, q);
    else
        console_wake(v->con); /* new receive buffers: the event loop asks for input again */
}

static void vcon_reset(struct virtio_dev *d)
{
    struct vcon *v = d->priv;

    v->rx_held = v->tx_held = false; /* chains popped before a reset are forgotten */
    v->port_ready = false;
    v->tx_written = v->tx_skip = 0;
}

/* ---- snapshots: no chain held; a half-written transmit chain is written on from where it
 * stopped when it is taken again ---- */

#define TX_SKIP_MAX (1u << 30)

static int vcon_quiesce(struct virtio_dev *d, char *err, size_t errlen)
{
    struct vcon *v = d->priv;

    (void)err;
    (void)errlen;
    if (v->rx_held)
        virtq_unpop(&d->vq[RX_QUEUE]);
    if (v->tx_held) {
        virtq_unpop(&d->vq[TX_QUEUE]);
        v->tx_skip = v->tx_written;
    }
    v->rx_held = v->tx_held = false;
    return 0;
}

static void vcon_save(struct virtio_dev *d, struct snap_buf *b)
{
    struct vcon *v = d->priv;

    snap_put_u8(b, v->port_ready);
    snap_put_u32(b, (uint32_t)v->tx_skip);
}

static int vcon_restore(struct virtio_dev *d, struct snap_reader *r, char *err, size_t errlen)
{
    struct vcon *v = d->priv;
    uint8_t ready = snap_get_u8(r);
    uint32_t skip = snap_get_u32(r);

    if (!snap_reader_done(r) || ready > 1 || skip > TX_SKIP_MAX) {
        snprintf(err, errlen, "virtio-console state: %s",
                 r->bad ? "truncated" : "bad values or extra bytes");
        return -EINVAL;
    }
    v->port_ready = ready;
    v->tx_skip = skip;
    return 0;
}

static void vcon_destroy(struct virtio_dev *d)
{
    struct vcon *v = d->priv;
    struct console *con = v->con;

    if (con->input_opaque == d) {
        con->input = NULL;
        con->input_room = NULL;
        con->input_opaque = NULL;
    }
    if (con->output_space_opaque == d) {
        con->output_space = NULL;
        con->output_space_opaque = NULL;
    }
    free(v);
    d->priv = NULL;
}

static const struct virtio_dev_ops vcon_ops = {
        .config_read = vcon_config_read,
        .reset = vcon_reset,
        .queue_notify = vcon_queue_notify,
        .destroy = vcon_destroy,
        .quiesce = vcon_quiesce,
        .save = vcon_save,
        .restore = vcon_restore,
};

int virtio_console_create(struct virtio_dev *d, struct console *con, struct loop *loop)
{
    struct vcon *v = calloc(1, sizeof(*v));

    (void)loop; /* the transport's kick handlers and the console's wake-ups are enough */
    if (!v) {
        log_err("--console virtio: out of memory");
        return -ENOMEM;
    }
    v->con = con;
    *d = (struct virtio_dev){
            .name = "virtio-console",
            .device_id = VIRTIO_ID_CONSOLE,
            .features = 0,
            .config_size = CONFIG_SIZE,
            .nr_queues = 2,
            .queue_max = {QUEUE_MAX, QUEUE_MAX},
            .ops = &vcon_ops,
            .priv = v,
    };
    /* Host stdin goes to hvc0 now, and guest output waits for room instead of blocking. */
    con->input = vcon_input;
    con->input_room = vcon_input_room;
    con->input_opaque = d;
    con->output_space = tx_space;
    con->output_space_opaque = d;
    return 0;
}
