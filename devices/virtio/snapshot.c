/* virtio devices in snapshots: freezing a device (it takes no chain and holds none), saving
 * the transport's registers and queue positions with the device's own state, and putting
 * them back on a device created anew, every field checked against the rules first. */
#include "log.h"
#include "virtio.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define VIRTIO_SNAP_VERSION 1
#define STATUS_STEPS                                                                               \
    (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |                \
     VIRTIO_STATUS_DRIVER_OK)
#define STATUS_KNOWN (STATUS_STEPS | VIRTIO_STATUS_FAILED | VIRTIO_STATUS_NEEDS_RESET)
#define ISR_KNOWN    3u
#define BLOB_MAX     (64u << 10) /* a device's own state: a few hundred bytes at most */

static bool driver_up(const struct virtio_dev *d)
{
    return (d->status & VIRTIO_STATUS_DRIVER_OK) && !d->broken;
}

static void kick_ready(struct virtio_dev *d)
{
    if (!driver_up(d))
        return;
    for (int i = 0; i < d->nr_queues; i++)
        if (d->vq[i].ready)
            virtq_rekick(&d->vq[i]);
}

int virtio_dev_freeze(struct virtio_dev *d)
{
    char why[160] = "";
    int err = 0;

    pthread_mutex_lock(&d->lock);
    d->frozen = true;
    if (d->ops->quiesce)
        err = d->ops->quiesce(d, why, sizeof(why));
    if (!err && d->resetting)
        err = snap_fail(why, sizeof(why), "a reset still waits for requests in flight");
    for (int i = 0; !err && driver_up(d) && i < d->nr_queues; i++) {
        const struct virtq *q = &d->vq[i];

        if (q->ready && q->last_avail != q->used_idx)
            err = snap_fail(why, sizeof(why), "queue %d still has %u requests in flight", i,
                            (uint16_t)(q->last_avail - q->used_idx));
    }
    pthread_mutex_unlock(&d->lock);
    if (err) {
        log_err("snapshot: %s: %s", d->name, why);
        virtio_dev_thaw(d);
    }
    return err;
}

void virtio_dev_thaw(struct virtio_dev *d)
{
    pthread_mutex_lock(&d->lock);
    d->frozen = false;
    kick_ready(d); /* what the guest queued meanwhile, and what the device gave back */
    pthread_mutex_unlock(&d->lock);
}

void virtio_dev_save(struct virtio_dev *d, struct snap_buf *b)
{
    struct snap_buf blob;

    pthread_mutex_lock(&d->lock);
    snap_put_str(b, d->name);
    snap_put_u32(b, d->device_id);
    snap_put_u32(b, (uint32_t)d->nr_queues);
    snap_put_u64(b, d->features);
    snap_put_u64(b, d->acked);
    snap_put_u32(b, d->status);
    snap_put_u32(b, d->isr);
    snap_put_u32(b, d->config_generation);
    snap_put_u32(b, d->device_features_sel);
    snap_put_u32(b, d->driver_features_sel);
    snap_put_u32(b, d->queue_sel);
    snap_put_u8(b, d->broken);
    for (int i = 0; i < d->nr_queues; i++) {
        const struct virtq *q = &d->vq[i];

        snap_put_u16(b, q->size);
        snap_put_u8(b, q->ready);
        snap_put_u64(b, q->desc_gpa);
        snap_put_u64(b, q->avail_gpa);
        snap_put_u64(b, q->used_gpa);
        snap_put_u16(b, q->last_avail);
        snap_put_u16(b, q->used_idx);
        snap_put_u16(b, q->signalled_used);
        snap_put_u8(b, q->signalled_valid);
    }
    /* The device's own state goes in with its length, read back by the device alone. */
    memset(&blob, 0, sizeof(blob));
    if (d->ops->save)
        d->ops->save(d, &blob);
    if (blob.err && !b->err)
        b->err = blob.err;
    snap_put_u32(b, (uint32_t)blob.len);
    snap_put_bytes(b, blob.p, blob.len);
    snap_buf_free(&blob);
    pthread_mutex_unlock(&d->lock);
}

struct saved_queue {
    uint16_t size, last_avail, used_idx, signalled_used;
    uint8_t ready, signalled_valid;
    uint64_t desc, avail, used;
};

/* The transport's part, every field checked before the device is touched. */
static int read_transport(struct virtio_dev *d, struct snap_reader *r, struct virtio_dev *t,
                          struct saved_queue *sq, char *err, size_t n)
{
    char name[32];
    uint32_t nq, known;
    uint8_t broken;

    snap_get_str(r, name, sizeof(name));
    t->device_id = snap_get_u32(r);
    nq = snap_get_u32(r);
    t->features = snap_get_u64(r);
    t->acked = snap_get_u64(r);
    t->status = snap_get_u32(r);
    t->isr = snap_get_u32(r);
    t->config_generation = snap_get_u32(r);
    t->device_features_sel = snap_get_u32(r);
    t->driver_features_sel = snap_get_u32(r);
    t->queue_sel = snap_get_u32(r);
    broken = snap_get_u8(r);
    t->broken = broken == 1;
    if (r->bad)
        return snap_fail(err, n, "truncated");
    if (t->device_id != d->device_id || nq != (uint32_t)d->nr_queues)
        return snap_fail(err, n, "the snapshot has %s (device %u, %u queues) here, this machine %s",
                         name, t->device_id, nq, d->name);
    if (t->acked & ~d->features)
        return snap_fail(
                err, n,
                "the guest accepted features %#llx that %s on its new backend does not offer "
                "(%#llx)",
                (unsigned long long)t->acked, d->name, (unsigned long long)d->features);
    if ((t->status & ~STATUS_KNOWN) || !virtio_status_in_order(t->status & STATUS_STEPS))
        return snap_fail(err, n, "device status %#x is not one the driver can reach", t->status);
    if ((t->status & VIRTIO_STATUS_FEATURES_OK) && !virtio_features_ok(t))
        return snap_fail(err, n, "features %#llx accepted without VERSION_1",
                         (unsigned long long)t->acked);
    if (broken > 1 || (t->broken && !(t->status & VIRTIO_STATUS_NEEDS_RESET)) ||
        (t->isr & ~ISR_KNOWN))
        return snap_fail(err, n, "bad broken flag %u or interrupt status %#x", broken, t->isr);
    known = (uint32_t)d->nr_queues;
    for (uint32_t i = 0; i < known; i++) {
        struct saved_queue *q = &sq[i];

        q->size = snap_get_u16(r);
        q->ready = snap_get_u8(r);
        q->desc = snap_get_u64(r);
        q->avail = snap_get_u64(r);
        q->used = snap_get_u64(r);
        q->last_avail = snap_get_u16(r);
        q->used_idx = snap_get_u16(r);
        q->signalled_used = snap_get_u16(r);
        q->signalled_valid = snap_get_u8(r);
        if (r->bad)
            return snap_fail(err, n, "truncated in queue %u", i);
        if (q->size > d->queue_max[i] || (q->size & (q->size - 1)) || q->ready > 1 ||
            q->signalled_valid > 1)
            return snap_fail(err, n, "queue %u: size %u (at most %u, a power of two) or flags", i,
                             q->size, d->queue_max[i]);
        if (q->ready && !t->broken && (t->status & VIRTIO_STATUS_DRIVER_OK) &&
            q->last_avail != q->used_idx)
            return snap_fail(err, n, "queue %u: %u requests in flight (a snapshot has none)", i,
                             (uint16_t)(q->last_avail - q->used_idx));
    }
    return 0;
}

int virtio_dev_restore(struct virtio_dev *d, struct snap_reader *r, char *err, size_t errlen)
{
    struct saved_queue sq[VIRTIO_MAX_QUEUES];
    struct virtio_dev t = {0};
    struct snap_reader blob;
    uint32_t blob_len;
    int ret;

    ret = read_transport(d, r, &t, sq, err, errlen);
    if (ret)
        return ret;
    blob_len = snap_get_u32(r);
    blob.p = snap_get_ptr(r, blob_len);
    blob.len = blob_len;
    blob.pos = 0;
    blob.bad = blob.p == NULL;
    if (!snap_reader_done(r) || blob_len > BLOB_MAX)
        return snap_fail(err, errlen, "%s",
                         r->bad ? "truncated" : "bytes left after the device state");
    if (blob_len && !d->ops->restore)
        return snap_fail(err, errlen, "%u bytes of device state %s has no use for", blob_len,
                         d->name);

    pthread_mutex_lock(&d->lock);
    d->acked = t.acked;
    d->status = t.status;
    d->isr = t.isr;
    d->config_generation = t.config_generation;
    d->device_features_sel = t.device_features_sel;
    d->driver_features_sel = t.driver_features_sel;
    d->queue_sel = t.queue_sel;
    d->broken = t.broken;
    for (int i = 0; i < d->nr_queues; i++) {
        struct virtq *q = &d->vq[i];

        q->size = sq[i].size;
        q->desc_gpa = sq[i].desc;
        q->avail_gpa = sq[i].avail;
        q->used_gpa = sq[i].used;
        q->last_avail = sq[i].last_avail;
        q->used_idx = sq[i].used_idx;
        q->signalled_used = sq[i].signalled_used;
        q->signalled_valid = sq[i].signalled_valid;
        q->ready = false;
        if (sq[i].ready && virtq_enable(q)) { /* checks the rings and maps them */
            ret = snap_fail(err, errlen, "queue %d: size %u or rings outside guest RAM", i,
                            q->size);
            break;
        }
    }
    if (!ret && (d->status & VIRTIO_STATUS_FEATURES_OK))
        virtio_apply_features(d);
    if (!ret && driver_up(d) && d->ops->activate && (ret = d->ops->activate(d)) < 0)
        snap_fail(err, errlen, "%s cannot start on its new backend (%s)", d->name, strerror(-ret));
    if (!ret && d->ops->restore)
        ret = d->ops->restore(d, &blob, err, errlen);
    if (!ret)
        kick_ready(d); /* the event loop looks at every queue once it runs */
    pthread_mutex_unlock(&d->lock);
    return ret;
}
