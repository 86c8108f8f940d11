/* virtio-blk: a raw file or block device as a guest disk; I/O runs on io_uring, off the loop. */
#include "hostfile.h"
#include "log.h"
#include "uring.h"
#include "virtio_devices.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define VIRTIO_ID_BLOCK 2

/* Feature bits ("Block Device: Feature bits"). */
#define BLK_F_SEG_MAX      2
#define BLK_F_RO           5
#define BLK_F_BLK_SIZE     6
#define BLK_F_FLUSH        9
#define BLK_F_DISCARD      13
#define BLK_F_WRITE_ZEROES 14

/* Request types and status values. */
#define BLK_T_IN           0
#define BLK_T_OUT          1
#define BLK_T_FLUSH        4
#define BLK_T_GET_ID       8
#define BLK_T_DISCARD      11
#define BLK_T_WRITE_ZEROES 13
#define BLK_S_OK           0
#define BLK_S_IOERR        1
#define BLK_S_UNSUPP       2
#define BLK_DWZ_F_UNMAP    1u

#define SECTOR_SHIFT 9
#define SECTOR_SIZE  (1u << SECTOR_SHIFT)
#define BLK_QUEUE    256 /* queue size offered, and the bound on requests in flight */
#define BLK_SEG_MAX  254 /* data segments per request: with header and status, a full queue */
#define BLK_ID_BYTES 20
/* Discard is a cheap hole punch; write-zeroes may end up as writes, so it is kept smaller. */
#define BLK_MAX_DISCARD_SECTORS (1u << 21) /* 1 GiB */
#define BLK_MAX_WZ_SECTORS      (1u << 16) /* 32 MiB */
#define BLK_DISCARD_ALIGN       8          /* sectors: 4 KiB, a host file system block */
#define BLK_MAX_LOGGED_ERRORS   3

/* Device configuration space, little-endian, as the driver reads it. */
struct blk_config {
    uint64_t capacity; /* 512-byte sectors */
    uint32_t size_max;
    uint32_t seg_max;
    uint8_t geometry[4];
    uint32_t blk_size;
    uint8_t topology[8];
    uint8_t writeback;
    uint8_t unused0;
    uint16_t num_queues;
    uint32_t max_discard_sectors;
    uint32_t max_discard_seg;
    uint32_t discard_sector_alignment;
    uint32_t max_write_zeroes_sectors;
    uint32_t max_write_zeroes_seg;
    uint8_t write_zeroes_may_unmap;
    uint8_t unused1[3];
} __attribute__((packed));
_Static_assert(offsetof(struct blk_config, max_discard_sectors) == 36, "config layout");
_Static_assert(sizeof(struct blk_config) == 60, "config layout");

/* The request header at the start of every chain's readable part. */
struct blk_hdr {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};
_Static_assert(sizeof(struct blk_hdr) == 16, "header layout");

/* One discard / write-zeroes segment. */
struct blk_dwz {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};
_Static_assert(sizeof(struct blk_dwz) == 16, "segment layout");

enum blk_op { OP_READ, OP_WRITE, OP_FLUSH, OP_FALLOC };

/* An open backing file. New requests go to the current one; one that blockdev-change-medium
 * replaced stays open (retired) until the requests it still has in flight are over. */
struct blk_file {
    int fd;
    bool is_blkdev;
    unsigned inflight; /* requests on the ring for this file */
    struct blk_file *next;
};

/* A request slot: what is needed to run the I/O and to complete the chain later. */
struct blk_req {
    struct iovec iov[BLK_SEG_MAX]; /* straight into guest memory */
    int niov, first;               /* first: first iovec not transferred yet */
    uint64_t off;                  /* file offset of the next byte */
    uint64_t left;                 /* bytes not transferred yet */
    uint32_t len;                  /* data bytes of the request */
    uint8_t *status;               /* the chain's status byte, in guest memory */
    uint16_t head;
    struct blk_file *file; /* the file it runs on: the current one when it started */
    enum blk_op op;
    int mode;     /* fallocate mode */
    bool discard; /* OP_FALLOC: a discard (else write-zeroes) */
    bool unmap;   /* write-zeroes may deallocate */
};

struct blk {
    struct virtio_dev *dev;
    struct loop *loop;
    char path[sizeof(((struct disk_config *)0)->path)];
    char id[BLK_ID_BYTES + 1]; /* "" until activation picks the default */
    bool has_id;
    struct blk_file *file;    /* the current backing file */
    struct blk_file *retired; /* replaced files with requests still in flight */
    bool readonly;
    bool writethrough;            /* the driver did not take FLUSH: every write is synchronous */
    bool no_punch, no_zero_range; /* fallocate modes the backend refused */
    uint64_t sectors;
    struct blk_config config;

    bool uring;        /* io_uring usable; else requests run synchronously */
    bool uring_falloc; /* IORING_OP_FALLOCATE available */
    struct io_uring ring;
    int efd; /* completions signalled here */
    struct loop_handler h_efd;
    bool efd_watched;
    unsigned inflight; /* handed to the ring, completion not reaped yet */
    unsigned queued;   /* SQEs prepared since the last submit */
    bool stalled;      /* stopped taking chains: every slot was busy */
    bool resetting;    /* reset with requests in flight: their results are dropped */
    unsigned logged_errors;

    blk_error_fn on_error; /* the control socket's BLOCK_IO_ERROR */
    void *on_error_opaque;

    uint16_t free_slot[BLK_QUEUE];
    unsigned nfree;
    struct blk_req req[BLK_QUEUE];
    struct virtq_chain chain;
};

static const uint8_t zero_block[64 * 1024];

/* ---- completing requests ---- */

static void log_backend_error(struct blk *b, const char *what, uint64_t off, int err)
{
    if (b->logged_errors >= BLK_MAX_LOGGED_ERRORS)
        return;
    b->logged_errors++;
    log_warn("--disk %s: %s at sector %llu failed: %s%s", b->path, what,
             (unsigned long long)(off >> SECTOR_SHIFT), strerror(err),
             b->logged_errors == BLK_MAX_LOGGED_ERRORS ? " (further errors not logged)" : "");
}

/* Store the status byte and return the chain; `written` counts the data bytes before it. The
 * guest sees it at the batch's virtio_notify_used(). */
static void complete(struct blk *b, struct virtq *q, uint16_t head, uint8_t *status,
                     uint32_t written, uint8_t st)
{
    if (st != BLK_S_OK)
        b->dev->stat_errors++;
    __atomic_store_n(status, st, __ATOMIC_RELAXED);
    if (virtq_add_used(q, head, written + 1))
        log_debug("%s: could not return chain %u", b->dev->name, head);
}

static struct blk_req *slot_get(struct blk *b)
{
    return b->nfree ? &b->req[b->free_slot[--b->nfree]] : NULL;
}

static void slot_put(struct blk *b, struct blk_req *r)
{
    b->free_slot[b->nfree++] = (uint16_t)(r - b->req);
}

static void slots_reset(struct blk *b)
{
    b->nfree = 0;
    for (int i = BLK_QUEUE - 1; i >= 0; i--)
        b->free_slot[b->nfree++] = (uint16_t)i;
    b->stalled = false;
}

static void finish(struct blk *b, struct virtq *q, struct blk_req *r, uint32_t written, uint8_t st)
{
    complete(b, q, r->head, r->status, written, st);
    slot_put(b, r);
}

/* ---- synchronous backend operations (fallbacks, block-device discard) ---- */

static bool mode_unsupported(int err)
{
    return err == EOPNOTSUPP || err == ENOSYS || err == EINVAL;
}

static int write_zeroes(struct blk *b, int fd, uint64_t off, uint64_t len)
{
    while (len > 0) {
        size_t n = len < sizeof(zero_block) ? (size_t)len : sizeof(zero_block);
        ssize_t w = pwrite(fd, zero_block, n, (off_t)off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        off += (uint64_t)w;
        len -= (uint64_t)w;
    }
    return b->writethrough && fdatasync(fd) ? -errno : 0;
}

/* One fallocate mode; 1 when the backend does not know it (remembered in *unsupported). */
static int try_falloc(int fd, int mode, uint64_t off, uint64_t len, bool *unsupported)
{
    if (*unsupported)
        return 1;
    if (fallocate(fd, mode, (off_t)off, (off_t)len) == 0)
        return 0;
    if (!mode_unsupported(errno))
        return -errno;
    *unsupported = true;
    return 1;
}

/* Zero a range: deallocate it when allowed, else zero it in place, else write zeroes. */
static int zero_sync(struct blk *b, const struct blk_req *r, bool unmap)
{
    int fd = r->file->fd, ret = 1;

    if (unmap)
        ret = try_falloc(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, r->off, r->left,
                         &b->no_punch);
    if (ret == 1)
        ret = try_falloc(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, r->off, r->left,
                         &b->no_zero_range);
    if (ret == 1)
        ret = write_zeroes(b, fd, r->off, r->left);
    return ret;
}

/* Discard is a hint: a backend that cannot deallocate just keeps the data. */
static int discard_sync(struct blk *b, const struct blk_req *r)
{
    uint64_t range[2] = {r->off, r->left};
    int ret;

    if (!r->file->is_blkdev) {
        ret = try_falloc(r->file->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, r->off, r->left,
                         &b->no_punch);
        return ret == 1 ? 0 : ret;
    }
    if (ioctl(r->file->fd, BLKDISCARD, range) == 0 || mode_unsupported(errno))
        return 0;
    return -errno;
}

/* One step of a request, the way the ring would run it: bytes done or -errno. */
static int run_sync(struct blk *b, struct blk_req *r)
{
    int fd = r->file->fd;
    const struct iovec *iov = r->iov + r->first;
    int n = r->niov - r->first;
    ssize_t res;

    do {
        switch (r->op) {
        case OP_READ:
            res = preadv(fd, iov, n, (off_t)r->off);
            break;
        case OP_WRITE:
            res = pwritev2(fd, iov, n, (off_t)r->off, b->writethrough ? RWF_DSYNC : 0);
            break;
        case OP_FLUSH:
            res = fdatasync(fd);
            break;
        default:
            res = fallocate(fd, r->mode, (off_t)r->off, (off_t)r->left);
            break;
        }
    } while (res < 0 && errno == EINTR);
    if (res < 0)
        return -errno;
    return res > INT32_MAX ? INT32_MAX : (int)res;
}

/* ---- results ---- */

/* Skip `done` bytes of the request's iovecs after a short transfer. */
static void advance(struct blk_req *r, uint64_t done)
{
    r->off += done;
    r->left -= done;
    while (done > 0 && r->first < r->niov) {
        struct iovec *v = &r->iov[r->first];

        if (done < v->iov_len) {
            v->iov_base = (uint8_t *)v->iov_base + done;
            v->iov_len -= done;
            return;
        }
        done -= v->iov_len;
        r->first++;
    }
}

static int falloc_result(struct blk *b, struct blk_req *r, int res)
{
    if (res >= 0 || !mode_unsupported(-res))
        return res;
    if (r->mode & FALLOC_FL_PUNCH_HOLE)
        b->no_punch = true;
    else
        b->no_zero_range = true;
    return r->discard ? 0 : zero_sync(b, r, r->unmap);
}

/* Handle one result of a request's I/O: 1 when the rest must be submitted again (short
 * transfer), else the chain is completed and the slot freed. */
static int on_result(struct blk *b, struct virtq *q, struct blk_req *r, int res)
{
    static const char *const what[] = {"read", "write", "flush", "discard/write-zeroes"};
    bool rw = r->op == OP_READ || r->op == OP_WRITE;

    if (r->op == OP_FALLOC)
        res = falloc_result(b, r, res);
    if (rw && res == 0 && r->left > 0)
        res = -EIO; /* the file ended early (shrunk under us) */
    if (res < 0) {
        log_backend_error(b, what[r->op], r->off, -res);
        if (b->on_error)
            b->on_error(b->on_error_opaque, b->dev, r->op == OP_READ ? "read" : "write", -res);
        finish(b, q, r, 0, BLK_S_IOERR);
        return 0;
    }
    if (rw && (uint64_t)res < r->left) {
        advance(r, (uint64_t)res);
        return 1;
    }
    if (rw)
        b->dev->stat_bytes += r->len;
    finish(b, q, r, r->op == OP_READ ? r->len : 0, BLK_S_OK);
    return 0;
}

/* ---- io_uring ---- */

static int prep_sqe(struct blk *b, struct blk_req *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
    const struct iovec *iov = r->iov + r->first;
    unsigned n = (unsigned)(r->niov - r->first);

    if (!sqe) {
        io_uring_submit(&b->ring);
        b->queued = 0;
        sqe = io_uring_get_sqe(&b->ring);
        if (!sqe)
            return -EBUSY;
    }
    switch (r->op) {
    case OP_READ:
        io_uring_prep_readv(sqe, r->file->fd, iov, n, r->off);
        break;
    case OP_WRITE:
        io_uring_prep_writev2(sqe, r->file->fd, iov, n, r->off, b->writethrough ? RWF_DSYNC : 0);
        break;
    case OP_FLUSH:
        io_uring_prep_fsync(sqe, r->file->fd, IORING_FSYNC_DATASYNC);
        break;
    case OP_FALLOC:
        io_uring_prep_fallocate(sqe, r->file->fd, r->mode, (off_t)r->off, (off_t)r->left);
        break;
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(r - b->req));
    b->inflight++;
    r->file->inflight++;
    b->queued++;
    return 0;
}

/* Run a request: on the ring, or synchronously (no io_uring, or an op it lacks). */
static void start(struct blk *b, struct virtq *q, struct blk_req *r)
{
    bool async = b->uring && (r->op != OP_FALLOC || b->uring_falloc);
    int err;

    if (async) {
        err = prep_sqe(b, r);
        if (err == 0)
            return;
        on_result(b, q, r, err);
        return;
    }
    while (on_result(b, q, r, run_sync(b, r)) == 1)
        ;
}

static void submit(struct blk *b)
{
    int r;

    if (!b->queued)
        return;
    r = io_uring_submit(&b->ring);
    if (r < 0) {
        /* The SQEs stay queued: the next kick or completion submits them again. */
        log_debug("%s: io_uring_submit: %s", b->dev->name, strerror(-r));
        return;
    }
    b->queued = 0;
}

/* A replaced file is closed once nothing is in flight on it any more. */
static void file_release(struct blk *b, struct blk_file *f)
{
    if (f == b->file || f->inflight > 0)
        return;
    for (struct blk_file **pp = &b->retired; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    close(f->fd);
    free(f);
}

/* Take every completion; with q NULL (or a reset waiting for them) they are dropped. */
static void reap(struct blk *b, struct virtq *q)
{
    if (b->resetting)
        q = NULL;
    struct io_uring_cqe *cqe;

    while (io_uring_peek_cqe(&b->ring, &cqe) == 0) {
        uint64_t idx = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        struct blk_file *f;
        struct blk_req *r;

        io_uring_cqe_seen(&b->ring, cqe);
        if (idx >= BLK_QUEUE)
            continue;
        r = &b->req[idx];
        f = r->file;
        b->inflight--;
        f->inflight--;
        if (!q)
            slot_put(b, r);
        else if (on_result(b, q, r, res) == 1 && prep_sqe(b, r))
            on_result(b, q, r, -EBUSY);
        file_release(b, f);
    }
}

/* Teardown: wait for everything handed to the ring and forget it (writes in flight reach their
 * file before it is closed, reads land before guest memory goes). Blocks: only at the end. */
static void drain(struct blk *b)
{
    int retries = 0;

    while (b->uring && b->inflight > 0) {
        int r = io_uring_submit_and_wait(&b->ring, 1);

        if (r < 0 && r != -EINTR && ++retries > 1000) {
            log_warn("%s: cannot wait for %u requests in flight: %s", b->dev->name, b->inflight,
                     strerror(-r));
            break;
        }
        reap(b, NULL);
    }
    b->queued = 0;
}

/* ---- requests ---- */

/* The last byte of the chain's writable part, or NULL when there is no writable byte. */
static uint8_t *status_byte(const struct virtq_chain *c)
{
    const struct virtq_buf *last;

    if (c->nbufs == 0)
        return NULL;
    last = &c->buf[c->nbufs - 1];
    if (!last->write || last->len == 0)
        return NULL;
    return (uint8_t *)last->host + last->len - 1;
}

/* Point r->iov at `len` bytes of the chain's readable (dev_writes false) or writable buffers,
 * from byte `skip` of that part. -E2BIG when that takes more than BLK_SEG_MAX segments. */
static int map_data(struct blk_req *r, const struct virtq_chain *c, bool dev_writes, uint32_t skip,
                    uint32_t len)
{
    int n = virtq_chain_iov(c, dev_writes, skip, len, r->iov, BLK_SEG_MAX);

    r->first = 0;
    r->niov = n < 0 ? 0 : n;
    return n < 0 ? n : 0;
}

/* Whether [sector, sector + count) lies on the disk (no overflow for any input). */
static bool in_range(const struct blk *b, uint64_t sector, uint64_t count)
{
    return sector <= b->sectors && count <= b->sectors - sector;
}

/* IN / OUT: header, then data (writable for IN, readable for OUT), then the status byte. */
static uint8_t setup_rw(struct blk *b, struct blk_req *r, const struct blk_hdr *h)
{
    const struct virtq_chain *c = &b->chain;
    bool write = h->type == BLK_T_OUT;
    uint32_t len;

    if (write && b->readonly)
        return BLK_S_IOERR;
    if (write ? c->in_len != 1 : c->out_len != sizeof(*h))
        return BLK_S_IOERR; /* bytes in the wrong direction */
    len = write ? c->out_len - (uint32_t)sizeof(*h) : c->in_len - 1;
    if (len % SECTOR_SIZE || !in_range(b, h->sector, len >> SECTOR_SHIFT))
        return BLK_S_IOERR;
    if (map_data(r, c, !write, write ? sizeof(*h) : 0, len))
        return BLK_S_IOERR;
    r->op = write ? OP_WRITE : OP_READ;
    r->off = h->sector << SECTOR_SHIFT;
    r->left = r->len = len;
    return BLK_S_OK;
}

/* DISCARD / WRITE_ZEROES: header, one segment, status byte. */
static uint8_t setup_dwz(struct blk *b, struct blk_req *r, const struct blk_hdr *h)
{
    const struct virtq_chain *c = &b->chain;
    bool wz = h->type == BLK_T_WRITE_ZEROES;
    uint64_t feature = 1ULL << (wz ? BLK_F_WRITE_ZEROES : BLK_F_DISCARD);
    uint32_t max = wz ? BLK_MAX_WZ_SECTORS : BLK_MAX_DISCARD_SECTORS;
    uint32_t seg_bytes = c->out_len - (uint32_t)sizeof(*h);
    struct blk_dwz s;

    if (b->readonly)
        return BLK_S_IOERR;
    if (!(b->dev->acked & feature))
        return BLK_S_UNSUPP;
    if (c->in_len != 1 || seg_bytes == 0 || seg_bytes % sizeof(s))
        return BLK_S_IOERR;
    if (seg_bytes > sizeof(s))
        return BLK_S_UNSUPP; /* more segments than max_*_seg = 1 */
    virtq_chain_read(c, sizeof(*h), &s, sizeof(s));
    if (s.flags & ~BLK_DWZ_F_UNMAP || (!wz && s.flags))
        return BLK_S_UNSUPP;
    if (s.num_sectors > max || !in_range(b, s.sector, s.num_sectors))
        return BLK_S_IOERR;
    r->op = OP_FALLOC;
    r->off = s.sector << SECTOR_SHIFT;
    r->left = r->len = (uint64_t)s.num_sectors << SECTOR_SHIFT;
    r->niov = r->first = 0;
    r->discard = !wz;
    r->unmap = wz && (s.flags & BLK_DWZ_F_UNMAP);
    return BLK_S_OK;
}

/* Pick how to run a DISCARD / WRITE_ZEROES. 1 when it was done synchronously already. */
static int plan_dwz(struct blk *b, struct blk_req *r, bool wz, int *res)
{
    if (r->left == 0) {
        *res = 0;
        return 1;
    }
    if (!wz && !r->file->is_blkdev && !b->no_punch) {
        r->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        return 0;
    }
    if (wz && r->unmap && !b->no_punch) {
        r->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        return 0;
    }
    if (wz && !b->no_zero_range) {
        r->mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
        return 0;
    }
    *res = wz ? zero_sync(b, r, r->unmap) : discard_sync(b, r);
    return 1;
}

static void get_id(struct blk *b, struct virtq *q, struct blk_req *r)
{
    const struct virtq_chain *c = &b->chain;
    char id[BLK_ID_BYTES] = {0};
    uint32_t n = c->in_len - 1;

    if (c->out_len != sizeof(struct blk_hdr)) {
        finish(b, q, r, 0, BLK_S_IOERR);
        return;
    }
    memcpy(id, b->id, strnlen(b->id, sizeof(id)));
    if (n > sizeof(id))
        n = sizeof(id);
    virtq_chain_write(c, 0, id, n);
    finish(b, q, r, n, BLK_S_OK);
}

/* One popped chain. -EINVAL when it has no status byte (the device must be marked broken). */
static int handle_chain(struct blk *b, struct virtq *q, struct blk_req *r)
{
    const struct virtq_chain *c = &b->chain;
    struct blk_hdr h;
    uint8_t st = BLK_S_OK;
    int res;

    r->status = status_byte(c);
    r->head = c->head;
    r->file = b->file;
    if (!r->status) {
        slot_put(b, r);
        return -EINVAL;
    }
    b->dev->stat_requests++;
    if (virtq_chain_read(c, 0, &h, sizeof(h)) != sizeof(h)) {
        finish(b, q, r, 0, BLK_S_IOERR);
        return 0;
    }
    switch (h.type) {
    case BLK_T_IN:
    case BLK_T_OUT:
        st = setup_rw(b, r, &h);
        break;
    case BLK_T_FLUSH:
        if (b->readonly) {
            finish(b, q, r, 0, BLK_S_OK); /* nothing was written */
            return 0;
        }
        r->op = OP_FLUSH;
        r->niov = r->first = 0;
        r->off = r->left = r->len = 0;
        break;
    case BLK_T_GET_ID:
        get_id(b, q, r);
        return 0;
    case BLK_T_DISCARD:
    case BLK_T_WRITE_ZEROES:
        st = setup_dwz(b, r, &h);
        if (st == BLK_S_OK && plan_dwz(b, r, h.type == BLK_T_WRITE_ZEROES, &res)) {
            on_result(b, q, r, res);
            return 0;
        }
        break;
    default:
        st = BLK_S_UNSUPP;
        break;
    }
    if (st != BLK_S_OK) {
        finish(b, q, r, 0, st);
        return 0;
    }
    start(b, q, r);
    return 0;
}

/* Take what the turn allows of the available chains (while slots last), submit the batch
 * once, interrupt once. Requests answered at once give their slot back at once: without the
 * turn's budget (virtq_pop) a guest reposting such requests would keep the loop here for ever. */
static void process(struct blk *b, struct virtq *q)
{
    struct virtio_dev *d = b->dev;
    struct blk_req *r;
    int ret = VIRTQ_EMPTY;

    b->stalled = false;
    while (!d->broken) {
        r = slot_get(b);
        if (!r) {
            b->stalled = true; /* the completion handler comes back for the rest */
            break;
        }
        ret = virtq_pop(q, &b->chain);
        if (ret != 1) {
            slot_put(b, r);
            break;
        }
        if (handle_chain(b, q, r) < 0) {
            virtio_mark_broken(d, "request without a writable status byte");
            break;
        }
    }
    if (ret < 0)
        virtio_mark_broken(d, "malformed descriptor chain");
    if (b->uring)
        submit(b); /* completions come back through the eventfd, even those done inline */
    virtio_notify_used(d, q);
}

/* A reset waited for the requests in flight: once none is left, it is done. */
static void reset_progress(struct blk *b)
{
    if (!b->resetting || b->inflight > 0)
        return;
    b->resetting = false;
    slots_reset(b);
    virtio_reset_done(b->dev);
}

/* The ring's eventfd: completions arrived. */
static void on_completion(struct loop_handler *h, uint32_t events)
{
    struct blk *b = container_of(h, struct blk, h_efd);
    struct virtio_dev *d = b->dev;
    struct virtq *q = &d->vq[0];
    uint64_t n;

    (void)events;
    (void)!read(b->efd, &n, sizeof(n));
    pthread_mutex_lock(&d->lock);
    reap(b, q);
    submit(b);
    reset_progress(b);
    if (b->stalled && b->nfree > 0 && !d->broken && (d->status & VIRTIO_STATUS_DRIVER_OK) &&
        q->ready)
        process(b, q);
    else
        virtio_notify_used(d, q);
    pthread_mutex_unlock(&d->lock);
}

/* ---- device ops ---- */

static void blk_config_read(struct virtio_dev *d, uint32_t offset, uint8_t *data, uint32_t len)
{
    struct blk *b = d->priv;

    if (offset < sizeof(b->config) && len <= sizeof(b->config) - offset)
        memcpy(data, (const uint8_t *)&b->config + offset, len);
}

static int blk_activate(struct virtio_dev *d)
{
    struct blk *b = d->priv;
    /* Disks take the first slots: slot n is the guest's n-th disk. */
    unsigned slot = d->slot % 1000;

    b->writethrough = !(d->acked & (1ULL << BLK_F_FLUSH));
    if (!b->has_id)
        snprintf(b->id, sizeof(b->id), "ember-disk-%u", slot);
    return 0;
}

/* On the vCPU that wrote status 0: nothing here may wait. Requests in flight finish on the
 * loop (their results dropped, no chain pushed); only then does the reset complete, and the
 * guest sees status 0, so nothing it reuses can still be written by a request from before. */
static void blk_reset(struct virtio_dev *d)
{
    struct blk *b = d->priv;

    if (b->inflight == 0) {
        slots_reset(b);
        return;
    }
    b->resetting = true;
    virtio_reset_pending(d);
    virtio_post_work(d); /* SQEs not submitted yet must be, or they never complete */
}

/* Event loop, after a reset with requests in flight: submit what was prepared (or it never
 * completes), drop what completed already. */
static void blk_loop_work(struct virtio_dev *d)
{
    struct blk *b = d->priv;

    if (!b->resetting)
        return; /* the reset is over already: nothing here may touch the new driver's I/O */
    if (b->uring)
        submit(b);
    reap(b, NULL);
    reset_progress(b);
}

static void blk_queue_notify(struct virtio_dev *d, struct virtq *q)
{
    if (q->index == 0)
        process(d->priv, q);
}

static void blk_free(struct blk *b)
{
    if (b->efd_watched)
        loop_del(b->loop, &b->h_efd);
    if (b->uring)
        io_uring_queue_exit(&b->ring);
    if (b->efd >= 0)
        close(b->efd);
    while (b->retired) {
        struct blk_file *f = b->retired;

        b->retired = f->next;
        close(f->fd);
        free(f);
    }
    if (b->file) {
        close(b->file->fd);
        free(b->file);
    }
    free(b);
}

static void blk_destroy(struct virtio_dev *d)
{
    struct blk *b = d->priv;

    if (!b)
        return;
    drain(b); /* writes in flight reach the file before it is closed */
    b->resetting = false;
    blk_free(b);
    d->priv = NULL;
}

/* ---- snapshots ---- */

/* Every request handed to the ring completes and goes back to the guest before the state is
 * saved: a snapshot holds no request in flight. */
static int blk_quiesce(struct virtio_dev *d, char *err, size_t errlen)
{
    struct blk *b = d->priv;
    struct virtq *q = &d->vq[0];
    int tries = 0;

    while (b->uring && (b->inflight > 0 || b->queued > 0)) {
        int r = io_uring_submit_and_wait(&b->ring, b->inflight > 0 ? 1 : 0);

        b->queued = 0;
        if (r < 0 && r != -EINTR && ++tries > 1000) {
            snprintf(err, errlen, "cannot wait for %u requests in flight: %s", b->inflight,
                     strerror(-r));
            return r;
        }
        reap(b, (d->status & VIRTIO_STATUS_DRIVER_OK) && q->ready ? q : NULL);
    }
    reset_progress(b); /* a reset that waited for them is over now */
    virtio_notify_used(d, q);
    return 0;
}

/* The disk's size as the guest knows it. */
static void blk_save(struct virtio_dev *d, struct snap_buf *sb)
{
    struct blk *b = d->priv;

    snap_put_u64(sb, b->sectors);
}

/* The new backing file may differ in size: the guest is told, as after a medium change. */
static int blk_restore(struct virtio_dev *d, struct snap_reader *r, char *err, size_t errlen)
{
    struct blk *b = d->priv;
    uint64_t sectors = snap_get_u64(r);

    if (!snap_reader_done(r)) {
        snprintf(err, errlen, "virtio-blk state: %s", r->bad ? "truncated" : "extra bytes");
        return -EINVAL;
    }
    if (sectors != b->sectors)
        virtio_config_changed(d);
    return 0;
}

static const struct virtio_dev_ops blk_ops = {
        .config_read = blk_config_read,
        .activate = blk_activate,
        .reset = blk_reset,
        .loop_work = blk_loop_work,
        .queue_notify = blk_queue_notify,
        .destroy = blk_destroy,
        .quiesce = blk_quiesce,
        .save = blk_save,
        .restore = blk_restore,
};

/* ---- creation ---- */

/* Open a disk image for --disk (prefix "--disk ") or blockdev-change-medium (prefix ""):
 * without blocking, a regular file or block device of a positive multiple of 512 bytes. One
 * error line naming the path. */
static int open_disk(const char *prefix, const char *path, int readonly, struct blk_file **out,
                     uint64_t *sectors)
{
    struct host_file hf;
    const char *why;
    int err = host_file_open(path, readonly ? O_RDONLY : O_RDWR, HOSTFILE_REGULAR | HOSTFILE_BLOCK,
                             &hf, &why);

    if (err) {
        log_err("%s%s: %s%s", prefix, path, why,
                !readonly && (err == -EACCES || err == -EPERM || err == -EROFS)
                        ? " (add ,ro to attach it read-only)"
                        : "");
        return err;
    }
    if (hf.size == 0 || hf.size % SECTOR_SIZE) {
        log_err("%s%s: size %llu bytes is not a positive multiple of 512", prefix, path,
                (unsigned long long)hf.size);
        close(hf.fd);
        return -EINVAL;
    }
    *out = calloc(1, sizeof(**out));
    if (!*out) {
        log_err("%s%s: out of memory", prefix, path);
        close(hf.fd);
        return -ENOMEM;
    }
    (*out)->fd = hf.fd;
    (*out)->is_blkdev = hf.is_blkdev;
    *sectors = hf.size >> SECTOR_SHIFT;
    return 0;
}

/* What virtio-blk submits; its rings refuse everything else (seccomp cannot see inside). */
static const uint8_t blk_uring_ops[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC,
                                        IORING_OP_FALLOCATE};

/* io_uring with its completions on an eventfd in the loop. Without io_uring (old kernel,
 * seccomp, no loop) the disk still works, synchronously. */
static int setup_ring(struct blk *b, const struct disk_config *cfg)
{
    struct io_uring_probe *probe;
    int err;

    if (!b->loop)
        return 0;
    err = uring_init_disabled(&b->ring, BLK_QUEUE); /* enabled below, restricted */
    if (err < 0) {
        log_warn("--disk %s: io_uring is unavailable (%s); using synchronous I/O", cfg->path,
                 strerror(-err));
        return 0;
    }
    b->uring = true;
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->efd < 0) {
        err = -errno; /* log_err may change errno (isatty) */
        log_err("--disk %s: eventfd: %s", cfg->path, strerror(-err));
        return err;
    }
    err = io_uring_register_eventfd(&b->ring, b->efd);
    if (err < 0) {
        log_err("--disk %s: io_uring_register_eventfd: %s", cfg->path, strerror(-err));
        return err;
    }
    probe = io_uring_get_probe_ring(&b->ring);
    b->uring_falloc = probe && io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
    if (probe)
        io_uring_free_probe(probe);
    err = uring_restrict(&b->ring, blk_uring_ops, sizeof(blk_uring_ops));
    if (err < 0) {
        log_err("--disk %s: cannot limit the io_uring ring to its operations: %s", cfg->path,
                strerror(-err));
        return err;
    }
    b->h_efd = (struct loop_handler){.fd = b->efd, .fn = on_completion};
    err = loop_add(b->loop, &b->h_efd, EPOLLIN);
    if (err) {
        log_err("--disk %s: cannot watch the I/O eventfd: %s", cfg->path, strerror(-err));
        return err;
    }
    b->efd_watched = true;
    return 0;
}

static void fill_config(struct blk *b)
{
    struct blk_config *c = &b->config;

    memset(c, 0, sizeof(*c));
    c->capacity = b->sectors;
    c->seg_max = BLK_SEG_MAX;
    c->blk_size = SECTOR_SIZE;
    if (b->readonly)
        return;
    c->max_discard_sectors = BLK_MAX_DISCARD_SECTORS;
    c->max_discard_seg = 1;
    c->discard_sector_alignment = BLK_DISCARD_ALIGN;
    c->max_write_zeroes_sectors = BLK_MAX_WZ_SECTORS;
    c->max_write_zeroes_seg = 1;
    c->write_zeroes_may_unmap = 1;
}

int virtio_blk_create(struct virtio_dev *d, const struct disk_config *cfg, struct loop *loop)
{
    uint64_t features = (1ULL << BLK_F_SEG_MAX) | (1ULL << BLK_F_BLK_SIZE) | (1ULL << BLK_F_FLUSH);
    struct blk *b = calloc(1, sizeof(*b));
    int err;

    if (!b) {
        log_err("--disk %s: out of memory", cfg->path);
        return -ENOMEM;
    }
    b->efd = -1;
    b->dev = d;
    b->loop = loop;
    b->readonly = cfg->readonly;
    snprintf(b->path, sizeof(b->path), "%s", cfg->path);
    b->has_id = cfg->id[0] != '\0';
    snprintf(b->id, sizeof(b->id), "%s", cfg->id);
    slots_reset(b);
    err = open_disk("--disk ", cfg->path, cfg->readonly, &b->file, &b->sectors);
    if (!err)
        err = setup_ring(b, cfg);
    if (err) {
        blk_free(b);
        return err;
    }
    fill_config(b);
    if (b->readonly)
        features |= 1ULL << BLK_F_RO;
    else
        features |= (1ULL << BLK_F_DISCARD) | (1ULL << BLK_F_WRITE_ZEROES);
    *d = (struct virtio_dev){
            .name = "virtio-blk",
            .device_id = VIRTIO_ID_BLOCK,
            .features = features,
            .config_size = sizeof(b->config),
            .nr_queues = 1,
            .queue_max = {BLK_QUEUE},
            .ops = &blk_ops,
            .priv = b,
    };
    return 0;
}

/* ---- the control socket: drive information, error events, changing the backing file ---- */

void virtio_blk_set_error_hook(struct virtio_dev *d, blk_error_fn fn, void *opaque)
{
    struct blk *b = d->priv;

    b->on_error = fn;
    b->on_error_opaque = opaque;
}

void virtio_blk_info(struct virtio_dev *d, struct blk_info *info)
{
    struct blk *b = d->priv;

    pthread_mutex_lock(&d->lock);
    snprintf(info->path, sizeof(info->path), "%s", b->path);
    snprintf(info->id, sizeof(info->id), "%s", b->id);
    info->readonly = b->readonly;
    info->size = b->sectors << SECTOR_SHIFT;
    pthread_mutex_unlock(&d->lock);
}

int virtio_blk_change(struct virtio_dev *d, const char *path, int readonly)
{
    struct blk *b = d->priv;
    struct blk_file *f, *old;
    uint64_t sectors;
    int err;

    if (strlen(path) >= sizeof(b->path)) {
        log_err("%s: the path is longer than %zu bytes", path, sizeof(b->path) - 1);
        return -ENAMETOOLONG;
    }
    err = open_disk("", path, readonly, &f, &sectors);
    if (err)
        return err;
    pthread_mutex_lock(&d->lock);
    /* Requests in flight finish on the old file and complete as usual; it is closed after the
     * last of them. New requests go to the new file. Nobody waits. */
    old = b->file;
    b->file = f;
    old->next = b->retired;
    b->retired = old;
    file_release(b, old);
    b->readonly = readonly;
    b->sectors = sectors;
    b->logged_errors = 0;
    b->no_punch = b->no_zero_range = false; /* what the old file system refused */
    snprintf(b->path, sizeof(b->path), "%s", path);
    fill_config(b);
    virtio_config_changed(d); /* the guest re-reads the capacity */
    pthread_mutex_unlock(&d->lock);
    return 0;
}
