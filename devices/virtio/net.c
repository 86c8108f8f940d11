/* virtio-net: one rx and one tx queue between the guest and a TAP or libslirp backend. */
#include "log.h"
#include "net_backend.h"
#include "virtio_devices.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define RXQ         0
#define TXQ         1
#define QUEUE_MAX   256
#define BURST       256 /* frames read from a backend per handler call */
#define PENDING_MAX 64  /* frames a push backend may queue while the guest has no buffers */
#define CONFIG_SIZE 8   /* mac[6], status (le16) */

#define BIT(n) (1ULL << (n))
#define GUEST_OFFLOADS                                                                             \
    (BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4) | BIT(VIRTIO_NET_F_GUEST_TSO6))
#define OFFLOADS                                                                                   \
    (GUEST_OFFLOADS | BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_HOST_TSO4) |                       \
     BIT(VIRTIO_NET_F_HOST_TSO6))

/* A frame a push backend produced while the guest had no receive buffer. */
struct pending {
    size_t len;
    uint8_t data[];
};

/* Everything below is protected by dev->lock; the loop thread does the queue work. */
struct net {
    struct virtio_dev *dev;
    struct net_be *be;
    struct loop *loop;
    uint8_t config[CONFIG_SIZE];
    struct loop_handler h_backend; /* pull backends: the descriptor the frames come from */
    bool watched;                  /* h_backend is in the loop (EPOLLIN) */
    bool backend_dead;             /* its descriptor failed: no more frames from it */
    bool active;                   /* DRIVER_OK and no reset since */
    bool in_lock; /* the loop thread holds dev->lock: frames from push backends nest */
    bool rx_held; /* rx_chain was popped and is still unused */
    struct pending *pending[PENDING_MAX];
    int pending_head, npending;
    struct virtio_net_stats st;
    struct virtq_chain rx_chain, tx_chain;
    uint8_t rx_buf[NET_HDR_LEN + NET_MAX_FRAME];
    uint8_t tx_buf[NET_MAX_FRAME];
};

static bool acked(const struct net *n, int bit)
{
    return n->dev->acked & BIT(bit);
}

static bool rx_running(const struct net *n)
{
    return n->active && !n->dev->broken && n->dev->vq[RXQ].ready;
}

static void backend_failed(struct net *n, int err);

/* Pull backends: read the descriptor only while the guest has somewhere to put frames. */
static void watch_backend(struct net *n, bool on)
{
    int err;

    if (!n->loop || n->be->fd < 0 || on == n->watched || (on && n->backend_dead))
        return;
    if (!on) {
        loop_del(n->loop, &n->h_backend);
        n->watched = false;
        return;
    }
    err = loop_add(n->loop, &n->h_backend, EPOLLIN);
    if (err)
        backend_failed(n, -err);
    else
        n->watched = true;
}

static void backend_failed(struct net *n, int err)
{
    if (!n->backend_dead)
        log_warn("%s: backend %s failed (%s); no more frames from it", n->dev->name, n->be->name,
                 strerror(err));
    n->backend_dead = true;
    watch_backend(n, false);
}

/* ---- receive: backend -> guest ---- */

/* The chain the next frame goes into: 1 (in rx_chain), 0 if the guest has none, or -EINVAL
 * after marking the device broken. */
static int rx_take_chain(struct net *n)
{
    int r;

    if (n->rx_held)
        return 1;
    r = virtq_pop(&n->dev->vq[RXQ], &n->rx_chain);
    if (r < 0) {
        virtio_mark_broken(n->dev, "receive queue: malformed descriptor chain");
        return r;
    }
    n->rx_held = r == 1;
    return r;
}

/* Write header and frame into the held chain and return it to the guest. Without MRG_RXBUF a
 * frame needs one chain: one too small gets the frame dropped and goes back empty. */
static void rx_fill(struct net *n, const struct virtio_net_hdr_v1 *hdr, const void *frame,
                    size_t len)
{
    struct virtq_chain *c = &n->rx_chain;
    uint32_t written = 0;

    n->rx_held = false;
    if (c->in_len >= NET_HDR_LEN && c->in_len - NET_HDR_LEN >= len) {
        virtq_chain_write(c, 0, hdr, NET_HDR_LEN);
        virtq_chain_write(c, NET_HDR_LEN, frame, len);
        written = (uint32_t)(NET_HDR_LEN + len);
        n->st.rx_packets++;
        n->dev->stat_bytes += len;
    } else {
        n->st.rx_dropped++;
        log_debug("%s: %zu-byte frame does not fit a %u-byte receive buffer, dropped", n->dev->name,
                  len, c->in_len);
    }
    if (virtq_add_used(&n->dev->vq[RXQ], c->head, written))
        virtio_mark_broken(n->dev, "receive queue: cannot return a buffer");
}

/* A backend's header may carry only what the guest accepted; num_buffers is always 1. */
static bool rx_hdr_ok(const struct net *n, struct virtio_net_hdr_v1 *h)
{
    h->num_buffers = 1;
    if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !acked(n, VIRTIO_NET_F_GUEST_CSUM))
        return false;
    h->flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM |
                (acked(n, VIRTIO_NET_F_GUEST_CSUM) ? VIRTIO_NET_HDR_F_DATA_VALID : 0);
    switch (h->gso_type) {
    case VIRTIO_NET_HDR_GSO_NONE:
        return true;
    case VIRTIO_NET_HDR_GSO_TCPV4:
        return acked(n, VIRTIO_NET_F_GUEST_TSO4);
    case VIRTIO_NET_HDR_GSO_TCPV6:
        return acked(n, VIRTIO_NET_F_GUEST_TSO6);
    default:
        return false;
    }
}

/* A frame from a pull backend, with its header in front when the backend has vnet_hdr. */
static void rx_from_buf(struct net *n, const uint8_t *buf, size_t len)
{
    struct virtio_net_hdr_v1 hdr = {.num_buffers = 1};

    if (n->be->vnet_hdr) {
        if (len < NET_HDR_LEN)
            goto drop;
        memcpy(&hdr, buf, NET_HDR_LEN);
        buf += NET_HDR_LEN;
        len -= NET_HDR_LEN;
        if (!rx_hdr_ok(n, &hdr))
            goto drop;
    }
    if (len < NET_MIN_FRAME || len > NET_MAX_FRAME)
        goto drop;
    rx_fill(n, &hdr, buf, len);
    return;
drop:
    n->st.rx_dropped++; /* the held chain stays for the next frame */
}

static void rx_from_frame(struct net *n, const void *frame, size_t len)
{
    struct virtio_net_hdr_v1 hdr = {.num_buffers = 1};

    rx_fill(n, &hdr, frame, len);
}

/* Add to iov, after its first cnt entries, the held chain's writable bytes past the header's
 * place: the new count, or 0 when they come in more than NET_IOV_MAX pieces. The caller made
 * sure they hold the largest frame. */
static int rx_direct_iov(const struct net *n, struct iovec *iov, int cnt)
{
    int k = virtq_chain_iov(&n->rx_chain, true, NET_HDR_LEN, SIZE_MAX, iov + cnt, NET_IOV_MAX);

    return k <= 0 ? 0 : cnt + k;
}

/* Read the next frame straight into the held chain (its header to the side, checked before
 * it goes in front): no copy through rx_buf. Like recv: length, -EAGAIN or -errno; 0 when the
 * chain cannot take it this way (then the caller reads into rx_buf). */
static ssize_t rx_direct(struct net *n)
{
    struct virtio_net_hdr_v1 hdr = {.num_buffers = 1};
    struct iovec iov[NET_IOV_MAX + 1];
    int cnt = n->be->vnet_hdr ? 1 : 0;
    ssize_t got;
    size_t len;

    iov[0] = (struct iovec){&hdr, NET_HDR_LEN};
    cnt = rx_direct_iov(n, iov, cnt);
    if (cnt == 0 || (n->be->vnet_hdr && cnt == 1))
        return 0;
    got = n->be->ops->recv(n->be, iov, cnt);
    if (got < 0)
        return got;
    len = (size_t)got;
    if (n->be->vnet_hdr) {
        if (len < NET_HDR_LEN || !rx_hdr_ok(n, &hdr))
            goto drop;
        len -= NET_HDR_LEN;
    }
    if (len < NET_MIN_FRAME || len > NET_MAX_FRAME)
        goto drop;
    n->rx_held = false;
    virtq_chain_write(&n->rx_chain, 0, &hdr, NET_HDR_LEN);
    n->st.rx_packets++;
    n->dev->stat_bytes += len;
    if (virtq_add_used(&n->dev->vq[RXQ], n->rx_chain.head, (uint32_t)(NET_HDR_LEN + len)))
        virtio_mark_broken(n->dev, "receive queue: cannot return a buffer");
    return got;
drop:
    n->st.rx_dropped++; /* the held chain stays for the next frame */
    return got;
}

/* Pull backends: frames while the guest has buffers; stop watching the descriptor when it
 * runs out (its rx kick resumes), keep watching when the backend has nothing more. */
static void rx_pull(struct net *n)
{
    for (int i = 0; i < BURST; i++) {
        struct iovec iov = {n->rx_buf, sizeof(n->rx_buf)};
        ssize_t len;
        int r = rx_take_chain(n);

        if (r <= 0) {
            watch_backend(n, false); /* the guest's rx kick resumes */
            return;
        }
        /* Big buffers (the guest took TSO without MRG_RXBUF) hold any frame: read into them. */
        len = n->rx_chain.in_len >= NET_HDR_LEN + NET_MAX_FRAME ? rx_direct(n) : 0;
        if (len == 0)
            len = n->be->ops->recv(n->be, &iov, 1);
        else if (len > 0)
            continue;
        if (len == -EAGAIN || len == -EINTR)
            break;
        if (len < 0) {
            backend_failed(n, (int)-len);
            return;
        }
        rx_from_buf(n, n->rx_buf, (size_t)len);
    }
    watch_backend(n, true);
}

static void pending_clear(struct net *n)
{
    while (n->npending > 0) {
        free(n->pending[n->pending_head]);
        n->pending_head = (n->pending_head + 1) % PENDING_MAX;
        n->npending--;
    }
    n->pending_head = 0;
}

static void pending_add(struct net *n, const void *frame, size_t len)
{
    struct pending *p;

    if (n->npending == PENDING_MAX || !(p = malloc(sizeof(*p) + len))) {
        n->st.rx_dropped++;
        return;
    }
    p->len = len;
    memcpy(p->data, frame, len);
    n->pending[(n->pending_head + n->npending) % PENDING_MAX] = p;
    n->npending++;
}

static void rx_flush_pending(struct net *n)
{
    while (n->npending > 0 && rx_take_chain(n) == 1) {
        struct pending *p = n->pending[n->pending_head];

        rx_from_frame(n, p->data, p->len);
        free(p);
        n->pending_head = (n->pending_head + 1) % PENDING_MAX;
        n->npending--;
    }
}

/* Push backends hand frames here on the loop thread, possibly from inside our own tx
 * processing (slirp answers some frames at once), where dev->lock is already held. */
static void net_deliver(void *opaque, const void *frame, size_t len)
{
    struct net *n = opaque;
    bool nested = n->in_lock;

    if (!nested) {
        pthread_mutex_lock(&n->dev->lock);
        n->in_lock = true;
    }
    if (!rx_running(n) || len < NET_MIN_FRAME || len > NET_MAX_FRAME) {
        n->st.rx_dropped++;
    } else if (n->npending == 0 && rx_take_chain(n) == 1) {
        rx_from_frame(n, frame, len);
        virtio_notify_used(n->dev, &n->dev->vq[RXQ]);
    } else if (n->dev->broken) {
        n->st.rx_dropped++;
    } else {
        pending_add(n, frame, len);
        atomic_store(&n->be->rx_paused, true);
    }
    if (!nested) {
        n->in_lock = false;
        pthread_mutex_unlock(&n->dev->lock);
    }
}

/* The guest added receive buffers. */
static void rx_kick(struct net *n)
{
    struct net_be *b = n->be;

    rx_flush_pending(n);
    if (b->fd >= 0) {
        if (!n->backend_dead && !n->dev->broken)
            rx_pull(n);
    } else if (n->npending == 0 && !n->dev->broken && atomic_load(&b->rx_paused)) {
        atomic_store(&b->rx_paused, false);
        if (b->ops->rx_resume)
            b->ops->rx_resume(b);
    }
    virtio_notify_used(n->dev, &n->dev->vq[RXQ]);
}

static void on_backend(struct loop_handler *h, uint32_t events)
{
    struct net *n = container_of(h, struct net, h_backend);

    pthread_mutex_lock(&n->dev->lock);
    n->in_lock = true;
    if (!rx_running(n)) {
        watch_backend(n, false);
    } else if (events & (EPOLLERR | EPOLLHUP)) {
        backend_failed(n, EIO);
    } else {
        rx_pull(n);
        virtio_notify_used(n->dev, &n->dev->vq[RXQ]);
    }
    n->in_lock = false;
    pthread_mutex_unlock(&n->dev->lock);
}

/* ---- transmit: guest -> backend ---- */

/* The guest's header: only what it negotiated, everything inside the frame. */
static bool tx_hdr_ok(const struct net *n, const struct virtio_net_hdr_v1 *h, size_t len)
{
    bool csum = h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;

    if (h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
        return false;
    if (csum && (!acked(n, VIRTIO_NET_F_CSUM) ||
                 (size_t)h->csum_start + h->csum_offset + sizeof(uint16_t) > len))
        return false;
    if (h->hdr_len > len)
        return false;
    switch (h->gso_type) {
    case VIRTIO_NET_HDR_GSO_NONE:
        return true;
    case VIRTIO_NET_HDR_GSO_TCPV4:
        if (!acked(n, VIRTIO_NET_F_HOST_TSO4))
            return false;
        break;
    case VIRTIO_NET_HDR_GSO_TCPV6:
        if (!acked(n, VIRTIO_NET_F_HOST_TSO6))
            return false;
        break;
    default: /* UDP, ECN and unknown types: never offered */
        return false;
    }
    return csum && h->gso_size > 0;
}

/* The frame's pieces in the chain's readable buffers (after the header), for a backend that
 * takes them from guest memory: the count after `cnt`, or 0 when there are too many. */
static int tx_guest_iov(const struct virtq_chain *c, struct iovec *iov, int cnt)
{
    int k = virtq_chain_iov(c, false, NET_HDR_LEN, SIZE_MAX, iov + cnt, NET_IOV_MAX);

    return k <= 0 ? 0 : cnt + k;
}

/* One chain: the header copied out once and checked (the guest cannot change it under us);
 * the frame copied too, unless the backend only copies it itself (TAP: the kernel). A
 * malformed frame is dropped and counted; the chain still goes back. */
static void tx_one(struct net *n, const struct virtq_chain *c)
{
    struct virtio_net_hdr_v1 hdr;
    struct iovec iov[NET_IOV_MAX + 1];
    size_t len;
    int cnt = 0, direct = 0;

    if (c->in_len || c->out_len < NET_HDR_LEN)
        goto bad;
    len = c->out_len - NET_HDR_LEN;
    if (len < NET_MIN_FRAME || len > NET_MAX_FRAME)
        goto bad;
    virtq_chain_read(c, 0, &hdr, NET_HDR_LEN);
    if (!tx_hdr_ok(n, &hdr, len))
        goto bad;
    hdr.num_buffers = 0;
    if (n->be->vnet_hdr)
        iov[cnt++] = (struct iovec){.iov_base = &hdr, .iov_len = NET_HDR_LEN};
    if (n->be->tx_guest_iov)
        direct = tx_guest_iov(c, iov, cnt);
    if (direct) {
        cnt = direct;
    } else {
        virtq_chain_read(c, NET_HDR_LEN, n->tx_buf, len);
        iov[cnt++] = (struct iovec){.iov_base = n->tx_buf, .iov_len = len};
    }
    if (n->be->ops->send(n->be, iov, cnt)) {
        n->st.tx_dropped++;
        return;
    }
    n->st.tx_packets++;
    n->dev->stat_bytes += len;
    return;
bad:
    n->st.tx_dropped++;
    n->dev->stat_errors++;
    log_debug("%s: malformed transmit buffer (%u bytes) dropped", n->dev->name, c->out_len);
}

static void tx_process(struct net *n, struct virtq *q)
{
    int r = 0;

    while (!n->dev->broken) { /* the turn's budget (virtq_pop) bounds it */
        r = virtq_pop(q, &n->tx_chain);
        if (r != 1)
            break;
        n->dev->stat_requests++;
        tx_one(n, &n->tx_chain);
        if (virtq_add_used(q, n->tx_chain.head, 0)) {
            r = -EINVAL;
            break;
        }
    }
    if (r < 0)
        virtio_mark_broken(n->dev, "transmit queue: malformed descriptor chain");
    virtio_notify_used(n->dev, q);
}

/* ---- transport callbacks (dev->lock held) ---- */

static void net_config_read(struct virtio_dev *d, uint32_t offset, uint8_t *data, uint32_t len)
{
    struct net *n = d->priv;

    memcpy(data, n->config + offset, len); /* the transport checked offset + len */
}

/* vCPU: the backend learns the guest's offloads on the loop (loop_work), before any frame. */
static int net_activate(struct virtio_dev *d)
{
    struct net *n = d->priv;

    n->active = true;
    n->rx_held = false;
    virtio_post_work(d);
    return 0; /* the transport kicks the queues next: rx starts there */
}

/* vCPU: forget the old driver's state here; the backend is told on the loop (loop_work). */
static void net_reset(struct virtio_dev *d)
{
    struct net *n = d->priv;

    n->active = false;
    n->rx_held = false; /* a popped chain belongs to the old driver */
    pending_clear(n);
    atomic_store(&n->be->rx_paused, true);
    virtio_post_work(d);
}

/* Event loop, after an activation or a reset: the backend's offloads (TUNSETOFFLOAD on a TAP)
 * and whether its descriptor is watched follow the device's state. */
static void net_loop_work(struct virtio_dev *d)
{
    struct net *n = d->priv;
    struct net_be *b = n->be;
    uint64_t offloads = n->active ? d->acked & GUEST_OFFLOADS : 0;

    if (!n->active)
        watch_backend(n, false);
    if (b->ops->set_offload && b->ops->set_offload(b, offloads) && offloads)
        log_debug("%s: backend refused the guest's offloads; such frames are dropped", d->name);
}

static void net_queue_notify(struct virtio_dev *d, struct virtq *q)
{
    struct net *n = d->priv;

    n->in_lock = true;
    if (q->index == RXQ)
        rx_kick(n);
    else if (q->index == TXQ)
        tx_process(n, q);
    n->in_lock = false;
}

static void net_destroy(struct virtio_dev *d)
{
    struct net *n = d->priv;

    if (!n)
        return;
    log_debug("%s: received %llu frames (%llu dropped), sent %llu (%llu dropped)", d->name,
              (unsigned long long)n->st.rx_packets, (unsigned long long)n->st.rx_dropped,
              (unsigned long long)n->st.tx_packets, (unsigned long long)n->st.tx_dropped);
    n->be->deliver = NULL;
    watch_backend(n, false);
    pending_clear(n);
    n->be->ops->destroy(n->be);
    free(n);
    d->priv = NULL;
}

/* A snapshot holds no chain: a receive buffer taken for the next frame goes back (frames
 * that arrive meanwhile wait in `pending`). The rest is the transport's, and a restored device
 * starts on its new backend (a fresh slirp, a TAP) with its own MAC. */
static int net_quiesce(struct virtio_dev *d, char *err, size_t errlen)
{
    struct net *n = d->priv;

    (void)err;
    (void)errlen;
    if (n->rx_held)
        virtq_unpop(&d->vq[RXQ]);
    n->rx_held = false;
    return 0;
}

static const struct virtio_dev_ops net_ops = {
        .config_read = net_config_read,
        .activate = net_activate,
        .reset = net_reset,
        .loop_work = net_loop_work,
        .queue_notify = net_queue_notify,
        .destroy = net_destroy,
        .quiesce = net_quiesce,
};

/* ---- creation ---- */

/* 52:54:00 (locally administered, unicast) and three random bytes. */
static void random_mac(uint8_t mac[6])
{
    struct timespec ts;

    mac[0] = 0x52;
    mac[1] = 0x54;
    mac[2] = 0x00;
    if (getrandom(mac + 3, 3, GRND_NONBLOCK) == 3)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    mac[3] = (uint8_t)ts.tv_nsec;
    mac[4] = (uint8_t)(ts.tv_nsec >> 8);
    mac[5] = (uint8_t)getpid();
}

int virtio_net_create_with(struct virtio_dev *d, struct net_be *b, const uint8_t *mac,
                           struct loop *loop)
{
    struct net *n = calloc(1, sizeof(*n));

    if (!n) {
        log_err("virtio-net: out of memory");
        b->ops->destroy(b);
        return -ENOMEM;
    }
    n->dev = d;
    n->be = b;
    n->loop = loop;
    if (mac)
        memcpy(n->config, mac, 6);
    else
        random_mac(n->config);
    n->config[6] = VIRTIO_NET_S_LINK_UP;
    n->h_backend = (struct loop_handler){.fd = b->fd, .fn = on_backend};
    b->deliver = net_deliver;
    b->opaque = n;
    atomic_store(&b->rx_paused, true); /* until the driver is up and gives buffers */

    memset(d, 0, sizeof(*d));
    d->name = "virtio-net";
    d->device_id = 1;
    d->features = BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_STATUS);
    if (b->vnet_hdr)
        d->features |= b->offloads & OFFLOADS;
    d->config_size = CONFIG_SIZE;
    d->nr_queues = 2;
    d->queue_max[RXQ] = d->queue_max[TXQ] = QUEUE_MAX;
    d->ops = &net_ops;
    d->priv = n;
    return 0;
}

int virtio_net_create(struct virtio_dev *d, const struct net_config *cfg, struct loop *loop)
{
    struct net_be *b = NULL;
    int err;

    switch (cfg->backend) {
    case NET_USER:
        err = net_slirp_open(cfg, loop, &b);
        break;
    case NET_TAP:
    case NET_TAP_FD:
        err = net_tap_open(cfg, &b);
        break;
    default:
        log_err("--net: unknown backend");
        return -EINVAL;
    }
    if (err)
        return err;
    return virtio_net_create_with(d, b, cfg->mac_set ? cfg->mac : NULL, loop);
}

void virtio_net_get_stats(const struct virtio_dev *d, struct virtio_net_stats *s)
{
    const struct net *n = d->priv;

    *s = n ? n->st : (struct virtio_net_stats){0};
}
