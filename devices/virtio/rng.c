/* virtio-rng: the guest's /dev/hwrng, filled from the host's getrandom(). */
#include "log.h"
#include "virtio_devices.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#define VIRTIO_ID_RNG 4
#define QUEUE_MAX     64
#define CHAIN_MAX     (64u << 10) /* bytes per request: a larger one is answered in part */
#define TURN_MAX      (1u << 20)  /* bytes per turn, so other event loop work gets a go */

struct vrng {
    struct virtq_chain chain;
    bool warned; /* a chain without writable buffers was logged */
};

/* Fill len bytes at p; returns how many (fewer only if the host has no entropy ready). */
static size_t fill(uint8_t *p, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = getrandom(p + done, len - done, GRND_NONBLOCK);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    return done;
}

/* Fill the chain's writable buffers, up to CHAIN_MAX bytes in all; returns bytes written. */
static uint32_t fill_chain(const struct virtq_chain *c)
{
    size_t total = 0;

    for (uint32_t i = 0; i < c->nbufs && total < CHAIN_MAX; i++) {
        const struct virtq_buf *b = &c->buf[i];
        size_t want = b->len, got;

        if (!b->write)
            continue;
        if (want > CHAIN_MAX - total)
            want = CHAIN_MAX - total;
        got = fill(b->host, want);
        total += got;
        if (got < want)
            break;
    }
    return (uint32_t)total;
}

static void vrng_queue_notify(struct virtio_dev *d, struct virtq *q)
{
    struct vrng *v = d->priv;
    size_t turn = 0;
    int r = 0;

    /* A turn ends after TURN_MAX bytes or the queue's own budget (virtq_pop). */
    while (turn < TURN_MAX && (r = virtq_pop(q, &v->chain)) == 1) {
        uint32_t written = 0;

        if (v->chain.in_len == 0) {
            if (!v->warned)
                log_guest(&d->log_limit, LOG_WARN,
                          "%s: request without a writable buffer, answered empty", d->name);
            v->warned = true;
            d->stat_errors++;
        } else {
            written = fill_chain(&v->chain);
        }
        if (virtq_push(q, v->chain.head, written) < 0) {
            r = -EINVAL;
            break;
        }
        d->stat_requests++;
        d->stat_bytes += written;
        turn += written;
    }
    if (r < 0)
        virtio_mark_broken(d, "bad request chain");
    else if (r == 1)
        virtq_rekick(q); /* turn spent: go on later */
    virtio_notify_used(d, q);
}

static void vrng_destroy(struct virtio_dev *d)
{
    free(d->priv);
    d->priv = NULL;
}

/* A clone must not hand out the entropy every other clone of the snapshot has: the buffers
 * of the last requests answered (which the guest may not have read yet) get fresh bytes. */
#define REFRESH_BACK 4

static int vrng_restore(struct virtio_dev *d, struct snap_reader *r, char *err, size_t errlen)
{
    struct vrng *v = d->priv;
    struct virtq *q = &d->vq[0];

    (void)r;
    (void)err;
    (void)errlen;
    if (!(d->status & VIRTIO_STATUS_DRIVER_OK) || d->broken || !q->ready)
        return 0;
    for (uint16_t back = 0; back < REFRESH_BACK; back++) {
        if (virtq_used_chain(q, back, &v->chain) != 1)
            break;
        if (v->chain.out_len == 0) /* an entropy request has writable buffers only */
            fill_chain(&v->chain);
    }
    return 0;
}

static const struct virtio_dev_ops vrng_ops = {
        .queue_notify = vrng_queue_notify,
        .destroy = vrng_destroy,
        .restore = vrng_restore,
};

int virtio_rng_create(struct virtio_dev *d, struct loop *loop)
{
    struct vrng *v = calloc(1, sizeof(*v));

    (void)loop;
    if (!v) {
        log_err("virtio-rng: out of memory");
        return -ENOMEM;
    }
    *d = (struct virtio_dev){
            .name = "virtio-rng",
            .device_id = VIRTIO_ID_RNG,
            .nr_queues = 1,
            .queue_max = {QUEUE_MAX},
            .ops = &vrng_ops,
            .priv = v,
    };
    return 0;
}
