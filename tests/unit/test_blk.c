/* Unit tests for virtio-blk, driven through the virtio-mmio bus without KVM, on a temp file. */
#include "check.h"
#include "fake_vm.h"
#include "virtio.h"
#include "virtio_devices.h"
#include "vm.h"

#include <errno.h>
#include <liburing.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define F_SEG_MAX       (1ULL << 2)
#define F_RO            (1ULL << 5)
#define F_BLK_SIZE      (1ULL << 6)
#define F_FLUSH         (1ULL << 9)
#define F_DISCARD       (1ULL << 13)
#define F_WZ            (1ULL << 14)
#define F_INDIRECT_DESC (1ULL << 28)
#define F_EVENT_IDX     (1ULL << 29)
#define F_V1            (1ULL << 32)

#define T_IN      0
#define T_OUT     1
#define T_FLUSH   4
#define T_GET_ID  8
#define T_LIFE    10
#define T_DISCARD 11
#define T_WZ      13

#define ST_OK     0
#define ST_IOERR  1
#define ST_UNSUPP 2

#define QSIZE      256
#define DESC_GPA   0x10000ULL
#define AVAIL_GPA  0x20000ULL
#define USED_GPA   0x30000ULL
#define HDR_GPA    0x40000ULL /* headers, 16 bytes apart */
#define STATUS_GPA 0x50000ULL /* status bytes, one per request of a batch */
#define SEG_GPA    0x60000ULL /* discard / write-zeroes segments */
#define IND_GPA    0x70000ULL /* an indirect descriptor table */
#define DATA_GPA   0x100000ULL
#define BACK_GPA   0x400000ULL /* where data is read back */

#define DISK_SECTORS 2048 /* 1 MiB */

struct seg {
    uint64_t gpa;
    uint32_t len;
    bool write;
};

static struct fake_vm fv;
static struct virtio_dev dev, rodev, syncdev;
static struct virtio_dev *cur;
static char disk_path[64];
static int disk_fd = -1;
static struct fake_queue gq; /* the queue of `cur` */
static uint16_t used_seen;
static uint32_t last_used_len;

/* ---- driver side ---- */

static uint32_t rd(uint64_t off)
{
    return fake_rd(&fv, cur->mmio_base, off);
}

static void wr(uint64_t off, uint32_t v)
{
    fake_wr(&fv, cur->mmio_base, off, v);
}

static uint64_t rd_config(uint32_t off, uint32_t len)
{
    if (len == 8)
        return rd_config(off, 4) | rd_config(off + 4, 4) << 32;
    return fake_rdn(&fv, cur->mmio_base, R_CONFIG + off, len);
}

static uint64_t offered(void)
{
    return fake_offered(&fv, cur->mmio_base);
}

/* Reset the device and bring it up with `features` and one 256-entry queue. */
static void driver_up(struct virtio_dev *d, uint64_t features)
{
    cur = d;
    used_seen = 0;
    CHECK_EQ(fake_negotiate(&fv, d->mmio_base, features), S_ACK | S_DRV | S_FOK);
    wr(R_QUEUE_SEL, 0);
    CHECK_EQ(rd(R_QUEUE_MAX), QSIZE);
    CHECK_EQ(fake_queue_setup(&gq, &fv, d->mmio_base, 0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA), 1);
    wr(R_STATUS, S_DRIVER_UP);
    CHECK_EQ(rd(R_STATUS), S_DRIVER_UP);
}

/* Write a chain into the descriptor table and the avail ring (not published yet). */
static uint16_t add_chain(const struct seg *s, int n)
{
    struct fake_buf b[256];

    for (int i = 0; i < n && i < 256; i++)
        b[i] = (struct fake_buf){s[i].gpa, s[i].len, s[i].write ? F_WRITE : 0};
    return fake_queue_add(&gq, b, n);
}

static uint16_t used_idx(void)
{
    return fake_used_idx(&gq);
}

static void kick(void)
{
    fake_queue_publish(&gq);
    if (cur->loop) {
        fake_queue_kick(&gq);
        return;
    }
    /* The synchronous device has no loop: play the kick handler's part. */
    pthread_mutex_lock(&cur->lock);
    virtq_turn_begin(&cur->vq[0]);
    if (!cur->broken)
        cur->ops->queue_notify(cur, &cur->vq[0]);
    pthread_mutex_unlock(&cur->lock);
}

/* Run the loop until `n` more chains are used (or 5 s pass). */
/* Up to 30 s: flushes reach the disk, which other jobs on a loaded machine may keep busy. */
static bool wait_used(uint16_t n)
{
    uint16_t target = (uint16_t)(used_seen + n);

    for (int i = 0; i < 3000 && used_idx() != target; i++)
        CHECK_EQ(loop_run_once(&fv.loop, 10), 0);
    if (used_idx() != target)
        return false;
    CHECK_EQ(guest_read(&fv.vm.mem, USED_GPA + 4 + 8ULL * ((target - 1) % QSIZE) + 4,
                        &last_used_len, 4),
             0);
    used_seen = target;
    return true;
}

/* Give the device time to (wrongly) use chains; true if none were. */
static bool nothing_used(void)
{
    for (int i = 0; i < 10; i++)
        CHECK_EQ(loop_run_once(&fv.loop, 5), 0);
    return used_idx() == used_seen;
}

static int status_at(int i)
{
    uint8_t st = 0xee;

    CHECK_EQ(guest_read(&fv.vm.mem, STATUS_GPA + (uint64_t)i, &st, 1), 0);
    return st;
}

static void put_header(int i, uint32_t type, uint64_t sector)
{
    uint8_t h[16] = {0};
    uint8_t poison = 0xee;

    memcpy(h, &type, 4);
    memcpy(h + 8, &sector, 8);
    CHECK_EQ(guest_write(&fv.vm.mem, HDR_GPA + 16ULL * i, h, sizeof(h)), 0);
    CHECK_EQ(guest_write(&fv.vm.mem, STATUS_GPA + (uint64_t)i, &poison, 1), 0);
}

/* One request: header, the data segments, a status byte; returns the status (-1: no reply). */
static int request(uint32_t type, uint64_t sector, const struct seg *data, int ndata)
{
    struct seg s[QSIZE];

    CHECK(ndata + 2 <= QSIZE);
    put_header(0, type, sector);
    s[0] = (struct seg){HDR_GPA, 16, false};
    for (int i = 0; i < ndata; i++)
        s[1 + i] = data[i];
    s[1 + ndata] = (struct seg){STATUS_GPA, 1, true};
    add_chain(s, ndata + 2);
    kick();
    if (!wait_used(1))
        return -1;
    return status_at(0);
}

static int rw(uint32_t type, uint64_t sector, uint64_t gpa, uint32_t len)
{
    struct seg s = {gpa, len, type == T_IN};

    return request(type, sector, &s, len ? 1 : 0);
}

static int dwz(uint32_t type, uint64_t sector, uint32_t num, uint32_t flags)
{
    uint8_t b[16];
    struct seg s = {SEG_GPA, 16, false};

    memcpy(b, &sector, 8);
    memcpy(b + 8, &num, 4);
    memcpy(b + 12, &flags, 4);
    CHECK_EQ(guest_write(&fv.vm.mem, SEG_GPA, b, sizeof(b)), 0);
    return request(type, 0, &s, 1);
}

static void fill(uint64_t gpa, size_t len, uint8_t seed)
{
    uint8_t *p = guest_ptr(&fv.vm.mem, gpa, len);

    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed + i * 7 + i / 512);
}

static bool file_equals(uint64_t sector, uint64_t gpa, size_t len)
{
    uint8_t *buf = malloc(len);
    bool same = buf && pread(disk_fd, buf, len, (off_t)(sector * 512)) == (ssize_t)len &&
                memcmp(buf, guest_ptr(&fv.vm.mem, gpa, len), len) == 0;

    free(buf);
    return same;
}

static bool file_zero(uint64_t sector, size_t len)
{
    uint8_t *buf = malloc(len);
    bool zero = buf && pread(disk_fd, buf, len, (off_t)(sector * 512)) == (ssize_t)len;

    for (size_t i = 0; zero && i < len; i++)
        zero = buf[i] == 0;
    free(buf);
    return zero;
}

/* ---- tests ---- */

static void test_create_errors(void)
{
    struct disk_config c = {0};
    static struct virtio_dev d;
    char path[80];
    int fd;

    snprintf(c.path, sizeof(c.path), "/nonexistent/ember-disk");
    CHECK_EQ(virtio_blk_create(&d, &c, &fv.loop), -ENOENT);
    snprintf(c.path, sizeof(c.path), "/tmp");
    CHECK(virtio_blk_create(&d, &c, &fv.loop) < 0);
    c.readonly = 1;
    CHECK_EQ(virtio_blk_create(&d, &c, &fv.loop), -EINVAL); /* a directory */
    snprintf(c.path, sizeof(c.path), "/dev/null");
    CHECK_EQ(virtio_blk_create(&d, &c, &fv.loop), -EINVAL); /* a character device */

    snprintf(path, sizeof(path), "/tmp/ember-test-blk-odd-XXXXXX");
    fd = mkstemp(path);
    CHECK(fd >= 0);
    snprintf(c.path, sizeof(c.path), "%s", path);
    CHECK_EQ(virtio_blk_create(&d, &c, &fv.loop), -EINVAL); /* empty */
    CHECK_EQ(ftruncate(fd, 1000), 0);
    CHECK_EQ(virtio_blk_create(&d, &c, &fv.loop), -EINVAL); /* not a multiple of 512 */
    CHECK_EQ(ftruncate(fd, 1024), 0);
    CHECK_EQ(virtio_blk_create(&d, &c, &fv.loop), 0);
    d.ops->destroy(&d);
    close(fd);
    unlink(path);
}

static void test_identity_and_config(void)
{
    uint64_t f;

    cur = &dev;
    CHECK_EQ(dev.device_id, 2);
    f = offered();
    CHECK(f & F_V1);
    CHECK(f & F_FLUSH);
    CHECK(f & F_SEG_MAX);
    CHECK(f & F_BLK_SIZE);
    CHECK(f & F_DISCARD);
    CHECK(f & F_WZ);
    CHECK(!(f & F_RO));
    CHECK_EQ(rd_config(0, 8), DISK_SECTORS); /* capacity */
    CHECK_EQ(rd_config(12, 4), 254);         /* seg_max */
    CHECK_EQ(rd_config(20, 4), 512);         /* blk_size */
    CHECK(rd_config(36, 4) > 0);             /* max_discard_sectors */
    CHECK_EQ(rd_config(40, 4), 1);           /* max_discard_seg */
    CHECK(rd_config(44, 4) > 0);             /* discard_sector_alignment */
    CHECK(rd_config(48, 4) > 0);             /* max_write_zeroes_sectors */
    CHECK_EQ(rd_config(52, 4), 1);           /* max_write_zeroes_seg */
    CHECK_EQ(rd_config(56, 1), 1);           /* write_zeroes_may_unmap */
    CHECK_EQ(rd_config(58, 2), 0);
    CHECK_EQ(rd_config(60, 4), 0); /* past the end */

    cur = &rodev;
    f = offered();
    CHECK(f & F_RO);
    CHECK(!(f & F_DISCARD) && !(f & F_WZ));
    CHECK_EQ(rd_config(36, 4), 0);
    CHECK_EQ(rd_config(48, 4), 0);
}

static void test_read_write(struct virtio_dev *d)
{
    struct seg two[2] = {{DATA_GPA, 1536, false}, {DATA_GPA + 0x10000, 2560, false}};
    struct seg back[2] = {{BACK_GPA, 512, true}, {BACK_GPA + 512, 3584, true}};
    uint64_t req0 = d->stat_requests, bytes0 = d->stat_bytes;

    driver_up(d, F_V1 | F_FLUSH | F_DISCARD | F_WZ | F_SEG_MAX | F_BLK_SIZE);
    fill(DATA_GPA, 1536, 1);
    fill(DATA_GPA + 0x10000, 2560, 2);
    CHECK_EQ(request(T_OUT, 10, two, 2), ST_OK);
    CHECK_EQ(last_used_len, 1);
    CHECK(file_equals(10, DATA_GPA, 1536));
    CHECK(file_equals(13, DATA_GPA + 0x10000, 2560));

    memset(guest_ptr(&fv.vm.mem, BACK_GPA, 4096), 0, 4096);
    CHECK_EQ(request(T_IN, 10, back, 2), ST_OK);
    CHECK_EQ(last_used_len, 4097);
    CHECK(memcmp(guest_ptr(&fv.vm.mem, BACK_GPA, 1536), guest_ptr(&fv.vm.mem, DATA_GPA, 1536),
                 1536) == 0);
    CHECK(memcmp(guest_ptr(&fv.vm.mem, BACK_GPA + 1536, 2560),
                 guest_ptr(&fv.vm.mem, DATA_GPA + 0x10000, 2560), 2560) == 0);

    /* The last sector, and a zero-length read. */
    fill(DATA_GPA, 512, 9);
    CHECK_EQ(rw(T_OUT, DISK_SECTORS - 1, DATA_GPA, 512), ST_OK);
    CHECK(file_equals(DISK_SECTORS - 1, DATA_GPA, 512));
    CHECK_EQ(rw(T_IN, DISK_SECTORS, DATA_GPA, 0), ST_OK);

    /* Data and status byte in one writable buffer: the status is its last byte. */
    {
        struct seg one = {BACK_GPA, 513, true};
        uint8_t st;

        put_header(0, T_IN, DISK_SECTORS - 1);
        struct seg s[2] = {{HDR_GPA, 16, false}, one};
        add_chain(s, 2);
        kick();
        CHECK(wait_used(1));
        CHECK(memcmp(guest_ptr(&fv.vm.mem, BACK_GPA, 512), guest_ptr(&fv.vm.mem, DATA_GPA, 512),
                     512) == 0);
        CHECK_EQ(guest_read(&fv.vm.mem, BACK_GPA + 512, &st, 1), 0);
        CHECK_EQ(st, ST_OK);
    }

    /* The header split over two descriptors. */
    {
        struct seg s[3] = {{HDR_GPA, 8, false}, {HDR_GPA + 8, 8, false}, {STATUS_GPA, 1, true}};

        put_header(0, T_FLUSH, 0);
        add_chain(s, 3);
        kick();
        CHECK(wait_used(1));
        CHECK_EQ(status_at(0), ST_OK);
    }
    CHECK_EQ(rw(T_FLUSH, 12345, 0, 0), ST_OK);
    CHECK_EQ(d->stat_requests - req0, 7);
    CHECK_EQ(d->stat_bytes - bytes0, 4096 * 2 + 512 * 2);
}

static void test_get_id(void)
{
    struct seg id = {BACK_GPA, 20, true};
    char buf[20];

    driver_up(&dev, F_V1 | F_FLUSH);
    memset(guest_ptr(&fv.vm.mem, BACK_GPA, 20), 'x', 20);
    CHECK_EQ(request(T_GET_ID, 0, &id, 1), ST_OK);
    CHECK_EQ(last_used_len, 21);
    CHECK_EQ(guest_read(&fv.vm.mem, BACK_GPA, buf, 20), 0);
    CHECK(memcmp(buf, "test-serial\0\0\0\0\0\0\0\0\0", 20) == 0);

    /* A shorter buffer gets a prefix; the status byte is never overwritten. */
    id.len = 4;
    CHECK_EQ(request(T_GET_ID, 0, &id, 1), ST_OK);
    CHECK_EQ(last_used_len, 5);

    /* Without id=: the default names the disk's slot. */
    driver_up(&rodev, F_V1 | F_RO);
    id.len = 20;
    CHECK_EQ(request(T_GET_ID, 0, &id, 1), ST_OK);
    CHECK_EQ(guest_read(&fv.vm.mem, BACK_GPA, buf, 20), 0);
    CHECK(memcmp(buf, "ember-disk-1\0", 13) == 0);
    wr(R_STATUS, 0);
}

static void test_discard_write_zeroes(struct virtio_dev *d)
{
    driver_up(d, F_V1 | F_FLUSH | F_DISCARD | F_WZ);
    fill(DATA_GPA, 64 * 1024, 3);
    CHECK_EQ(rw(T_OUT, 128, DATA_GPA, 64 * 1024), ST_OK);
    CHECK(file_equals(128, DATA_GPA, 64 * 1024));

    CHECK_EQ(dwz(T_WZ, 130, 4, 0), ST_OK);
    CHECK(file_zero(130, 4 * 512));
    CHECK(file_equals(128, DATA_GPA, 2 * 512));
    CHECK(file_equals(134, DATA_GPA + 6 * 512, 512));
    CHECK_EQ(dwz(T_WZ, 136, 16, 1), ST_OK); /* may unmap */
    CHECK(file_zero(136, 16 * 512));
    CHECK(file_equals(152, DATA_GPA + 24 * 512, 512));
    CHECK_EQ(dwz(T_DISCARD, 160, 32, 0), ST_OK);
    CHECK_EQ(dwz(T_DISCARD, 0, 0, 0), ST_OK); /* nothing */
    CHECK_EQ(dwz(T_WZ, DISK_SECTORS - 8, 8, 0), ST_OK);
    CHECK(file_zero(DISK_SECTORS - 8, 8 * 512));

    /* Bad segments. */
    CHECK_EQ(dwz(T_DISCARD, 0, 8, 1), ST_UNSUPP); /* unmap is for write-zeroes only */
    CHECK_EQ(dwz(T_WZ, 0, 8, 2), ST_UNSUPP);      /* unknown flag */
    CHECK_EQ(dwz(T_DISCARD, 0, 8, 0x80000000), ST_UNSUPP);
    CHECK_EQ(dwz(T_WZ, DISK_SECTORS - 4, 8, 0), ST_IOERR); /* past the end */
    CHECK_EQ(dwz(T_DISCARD, DISK_SECTORS + 1, 0, 0), ST_IOERR);
    CHECK_EQ(dwz(T_WZ, UINT64_MAX - 1, 4, 0), ST_IOERR);
    CHECK_EQ(dwz(T_WZ, 0, UINT32_MAX, 0), ST_IOERR); /* more than max_write_zeroes_sectors */
    {
        struct seg two = {SEG_GPA, 32, false}, half = {SEG_GPA, 8, false}, none = {0, 0, false};

        memset(guest_ptr(&fv.vm.mem, SEG_GPA, 32), 0, 32);
        CHECK_EQ(request(T_DISCARD, 0, &two, 1), ST_UNSUPP); /* two segments, max is 1 */
        CHECK_EQ(request(T_WZ, 0, &half, 1), ST_IOERR);      /* half a segment */
        CHECK_EQ(request(T_WZ, 0, &none, 0), ST_IOERR);      /* no segment */
    }
    CHECK(file_equals(128, DATA_GPA, 2 * 512));

    /* Not negotiated: unsupported. */
    driver_up(d, F_V1 | F_FLUSH);
    CHECK_EQ(dwz(T_DISCARD, 0, 8, 0), ST_UNSUPP);
    CHECK_EQ(dwz(T_WZ, 0, 8, 0), ST_UNSUPP);
}

static void test_bad_requests(void)
{
    uint64_t err0;

    driver_up(&dev, F_V1 | F_FLUSH | F_DISCARD | F_WZ | F_INDIRECT_DESC);
    err0 = dev.stat_errors;
    fill(DATA_GPA, 4096, 5);
    CHECK_EQ(rw(T_IN, DISK_SECTORS, BACK_GPA, 512), ST_IOERR);      /* past the end */
    CHECK_EQ(rw(T_IN, DISK_SECTORS - 1, BACK_GPA, 1024), ST_IOERR); /* crosses the end */
    CHECK_EQ(rw(T_OUT, DISK_SECTORS + 1, DATA_GPA, 0), ST_IOERR);
    CHECK_EQ(rw(T_IN, (UINT64_MAX >> 9) + 1, BACK_GPA, 512), ST_IOERR); /* sector*512 overflows */
    CHECK_EQ(rw(T_OUT, UINT64_MAX, DATA_GPA, 512), ST_IOERR);
    CHECK_EQ(rw(T_IN, 0, BACK_GPA, 100), ST_IOERR); /* not a multiple of 512 */
    CHECK_EQ(rw(T_OUT, 0, DATA_GPA, 513), ST_IOERR);
    CHECK_EQ(rw(99, 0, BACK_GPA, 512), ST_UNSUPP);
    CHECK_EQ(rw(T_LIFE, 0, BACK_GPA, 16), ST_UNSUPP);
    CHECK_EQ(rw(0x80000000, 0, 0, 0), ST_UNSUPP);
    CHECK_EQ(dev.stat_errors - err0, 10);

    /* Data in the wrong direction: a readable buffer in a read, a writable one in a write. */
    {
        struct seg r = {DATA_GPA, 512, false}, w = {BACK_GPA, 512, true};

        CHECK_EQ(request(T_IN, 0, &r, 1), ST_IOERR);
        CHECK_EQ(request(T_OUT, 0, &w, 1), ST_IOERR);
        CHECK_EQ(request(T_GET_ID, 0, &r, 1), ST_IOERR);
    }

    /* seg_max (254, as QEMU: with header and status, a whole queue) data segments; one more
     * (only possible through an indirect table) is refused. */
    {
        static struct seg many[QSIZE];
        struct fake_buf ind = {IND_GPA, 16 * (2 + 255), F_INDIRECT};

        CHECK_EQ(rd_config(12, 4), 254);
        for (int i = 0; i < 254; i++)
            many[i] = (struct seg){DATA_GPA + 512ULL * (i % 8), 512, false};
        CHECK_EQ(request(T_OUT, 0, many, 254), ST_OK);
        put_header(0, T_IN, 0);
        for (int i = 0; i < 2 + 255; i++) {
            uint64_t gpa = i == 0 ? HDR_GPA : i == 256 ? STATUS_GPA : BACK_GPA + 512ULL * (i - 1);
            uint32_t len = i == 0 ? 16 : i == 256 ? 1 : 512;
            uint16_t flags = (uint16_t)((i < 256 ? 1 : 0) | (i > 0 ? 2 : 0)),
                     next = (uint16_t)(i + 1);
            uint8_t desc[16];

            memcpy(desc, &gpa, 8);
            memcpy(desc + 8, &len, 4);
            memcpy(desc + 12, &flags, 2);
            memcpy(desc + 14, &next, 2);
            CHECK_EQ(guest_write(&fv.vm.mem, IND_GPA + 16ULL * i, desc, 16), 0);
        }
        fake_queue_add(&gq, &ind, 1);
        kick();
        CHECK(wait_used(1));
        CHECK_EQ(status_at(0), ST_IOERR);
    }

    /* A header shorter than 16 bytes. */
    {
        struct seg s[2] = {{HDR_GPA, 8, false}, {STATUS_GPA, 1, true}};

        put_header(0, T_IN, 0);
        add_chain(s, 2);
        kick();
        CHECK(wait_used(1));
        CHECK_EQ(status_at(0), ST_IOERR);
    }
    /* No header at all, only a status byte. */
    {
        struct seg s = {STATUS_GPA, 1, true};

        put_header(0, T_IN, 0);
        add_chain(&s, 1);
        kick();
        CHECK(wait_used(1));
        CHECK_EQ(status_at(0), ST_IOERR);
    }
    CHECK(!dev.broken);
    CHECK(file_equals(0, DATA_GPA, 512));

    /* The status byte in a read-only descriptor: the chain is malformed, the device broken. */
    {
        struct seg s[2] = {{HDR_GPA, 16, false}, {STATUS_GPA, 1, false}};

        put_header(0, T_IN, 0);
        add_chain(s, 2);
        kick();
        CHECK(nothing_used());
        CHECK(dev.broken);
        CHECK(rd(R_STATUS) & S_NR);
        CHECK_EQ(status_at(0), 0xee);
    }
    /* Only a readable header. */
    driver_up(&dev, F_V1 | F_FLUSH);
    CHECK(!dev.broken);
    {
        struct seg s = {HDR_GPA, 16, false};

        put_header(0, T_FLUSH, 0);
        add_chain(&s, 1);
        kick();
        CHECK(nothing_used());
        CHECK(dev.broken);
    }
    /* A descriptor outside guest RAM. */
    driver_up(&dev, F_V1 | F_FLUSH);
    {
        struct seg s[3] = {{HDR_GPA, 16, false}, {1ULL << 40, 512, true}, {STATUS_GPA, 1, true}};

        put_header(0, T_IN, 0);
        add_chain(s, 3);
        kick();
        CHECK(nothing_used());
        CHECK(dev.broken);
    }
    /* Reset brings it back. */
    driver_up(&dev, F_V1 | F_FLUSH);
    CHECK(!dev.broken);
    CHECK_EQ(rw(T_IN, 0, BACK_GPA, 512), ST_OK);
}

static void test_readonly(void)
{
    uint8_t before[4096], after[4096];

    CHECK_EQ(pread(disk_fd, before, sizeof(before), 0), (ssize_t)sizeof(before));
    driver_up(&rodev, F_V1 | F_RO | F_FLUSH);
    fill(DATA_GPA, 4096, 77);
    CHECK_EQ(rw(T_OUT, 0, DATA_GPA, 4096), ST_IOERR);
    CHECK_EQ(rw(T_IN, 0, BACK_GPA, 4096), ST_OK);
    CHECK(memcmp(guest_ptr(&fv.vm.mem, BACK_GPA, 4096), before, 4096) == 0);
    CHECK_EQ(dwz(T_DISCARD, 0, 8, 0), ST_IOERR);
    CHECK_EQ(dwz(T_WZ, 0, 8, 0), ST_IOERR);
    CHECK_EQ(rw(T_FLUSH, 0, 0, 0), ST_OK);
    CHECK_EQ(pread(disk_fd, after, sizeof(after), 0), (ssize_t)sizeof(after));
    CHECK(memcmp(before, after, sizeof(before)) == 0);
    wr(R_STATUS, 0);
}

/* Many chains with one kick: one submission, every one completed. */
static void test_batch(void)
{
    const int n = 64;
    uint64_t req0;

    driver_up(&dev, F_V1 | F_FLUSH);
    req0 = dev.stat_requests;
    for (int i = 0; i < n; i++) {
        struct seg s[3] = {{HDR_GPA + 16ULL * i, 16, false},
                           {DATA_GPA + 4096ULL * i, 4096, false},
                           {STATUS_GPA + (uint64_t)i, 1, true}};

        fill(DATA_GPA + 4096ULL * i, 4096, (uint8_t)i);
        put_header(i, T_OUT, 8ULL * i);
        add_chain(s, 3);
    }
    kick();
    CHECK(wait_used((uint16_t)n));
    for (int i = 0; i < n; i++)
        CHECK_EQ(status_at(i), ST_OK);
    CHECK(file_equals(0, DATA_GPA, 4096ULL * n));
    CHECK_EQ(dev.stat_requests - req0, n);

    /* And reads of all of it at once, into separate buffers. */
    for (int i = 0; i < n; i++) {
        struct seg s[3] = {{HDR_GPA + 16ULL * i, 16, false},
                           {BACK_GPA + 4096ULL * i, 4096, true},
                           {STATUS_GPA + (uint64_t)i, 1, true}};

        put_header(i, T_IN, 8ULL * i);
        add_chain(s, 3);
    }
    memset(guest_ptr(&fv.vm.mem, BACK_GPA, 4096ULL * n), 0, 4096ULL * n);
    kick();
    CHECK(wait_used((uint16_t)n));
    CHECK(memcmp(guest_ptr(&fv.vm.mem, BACK_GPA, 4096ULL * n),
                 guest_ptr(&fv.vm.mem, DATA_GPA, 4096ULL * n), 4096ULL * n) == 0);
}

/* More chains than request slots (the guest makes heads available again while they are in
 * flight): the device stops taking chains and comes back for them as requests complete. */
static void test_more_chains_than_slots(void)
{
    const int heads = QSIZE / 2;

    driver_up(&dev, F_V1 | F_FLUSH | F_EVENT_IDX);
    for (int i = 0; i < QSIZE; i++) {
        struct seg s[2] = {{HDR_GPA + 16ULL * (i % heads), 16, false},
                           {STATUS_GPA + (uint64_t)(i % heads), 1, true}};

        if (i < heads)
            put_header(i, T_FLUSH, 0);
        add_chain(s, 2);
    }
    fake_queue_publish(&gq);
    pthread_mutex_lock(&dev.lock);
    for (int i = 0; i < QSIZE / VIRTQ_BUDGET; i++) { /* all QSIZE slots taken, a turn a budget */
        virtq_turn_begin(&dev.vq[0]);
        dev.ops->queue_notify(&dev, &dev.vq[0]);
    }
    pthread_mutex_unlock(&dev.lock);
    /* The same heads once more, before any completion was reaped. */
    for (int i = 0; i < QSIZE; i++) {
        uint16_t head = (uint16_t)(2 * (i % heads));

        fake_put16(&fv, AVAIL_GPA + 4 + 2ULL * (gq.avail_idx % QSIZE), head);
        gq.avail_idx++;
    }
    fake_queue_publish(&gq);
    pthread_mutex_lock(&dev.lock);
    virtq_turn_begin(&dev.vq[0]);
    dev.ops->queue_notify(&dev, &dev.vq[0]); /* no slot free: nothing taken */
    pthread_mutex_unlock(&dev.lock);
    CHECK_EQ(dev.vq[0].last_avail, QSIZE);
    CHECK(wait_used(2 * QSIZE));
    CHECK(!dev.broken);
    for (int i = 0; i < heads; i++)
        CHECK_EQ(status_at(i), ST_OK);
}

/* A reset with requests in flight completes on the event loop once they are over: until then
 * the device is out of service (status does not read 0, writes are ignored), no chain from
 * before is ever returned, and the vCPU that wrote the register never waits. */
static void test_reset_in_flight(void)
{
    const int n = 32;

    driver_up(&dev, F_V1 | F_FLUSH);
    for (int i = 0; i < n; i++) {
        struct seg s[3] = {{HDR_GPA + 16ULL * i, 16, false},
                           {DATA_GPA + 65536ULL * (i % 8), 65536, false},
                           {STATUS_GPA + (uint64_t)i, 1, true}};

        put_header(i, i % 4 == 3 ? T_FLUSH : T_OUT, 128ULL * (i % 16));
        add_chain(i % 4 == 3 ? (struct seg[]){s[0], s[2]} : s, i % 4 == 3 ? 2 : 3);
    }
    fake_queue_publish(&gq);
    wr(R_NOTIFY, 0);
    CHECK_EQ(loop_run_once(&fv.loop, 100), 0); /* the kick: requests submitted, not reaped */
    wr(R_STATUS, 0);                           /* reset: returns at once */
    CHECK_EQ(rd(R_STATUS), S_DRIVER_UP);       /* not done: I/O in flight */
    wr(R_STATUS, S_ACK);                       /* ignored meanwhile */
    CHECK_EQ(rd(R_STATUS), S_DRIVER_UP);
    memset(guest_ptr(&fv.vm.mem, USED_GPA, 4 + 8 * QSIZE + 2), 0, 4 + 8 * QSIZE + 2);
    for (int i = 0; i < 100 && rd(R_STATUS) != 0; i++)
        CHECK_EQ(loop_run_once(&fv.loop, 10), 0);
    CHECK_EQ(rd(R_STATUS), 0); /* done on the loop */
    for (int i = 0; i < 5; i++)
        CHECK_EQ(loop_run_once(&fv.loop, 5), 0);
    CHECK_EQ(used_idx(), 0);
    /* The device works after the reset. */
    driver_up(&dev, F_V1 | F_FLUSH);
    CHECK_EQ(rw(T_IN, 0, BACK_GPA, 4096), ST_OK);
}

/* A guest that reposts the same head forever, a request answered at once (unknown type): every
 * round of the loop comes back, having taken at most VIRTQ_BUDGET chains. */
static void test_same_head_forever(void)
{
    struct seg s[2] = {{HDR_GPA, 16, false}, {STATUS_GPA, 1, true}};
    uint64_t req0;
    unsigned most;
    uint16_t head;

    driver_up(&dev, F_V1 | F_FLUSH);
    put_header(0, 0xff, 0);
    head = add_chain(s, 2);
    fake_queue_publish(&gq);
    req0 = dev.stat_requests;
    most = fake_repost_flood(&fv, &gq, head, 20, "virtio-blk, the same head forever");
    CHECK(most > 0 && most <= VIRTQ_BUDGET);
    CHECK(dev.stat_requests - req0 >= 20);
    CHECK(!dev.broken);
    CHECK_EQ(status_at(0), ST_UNSUPP);
}

/* Whether fn() returned within `seconds` in a child process, with the value `want`: a call that
 * blocks (an open of a FIFO waits for a writer) fails the test instead of hanging it. */
static bool returns_within(int seconds, int (*fn)(void), int want)
{
    int st;
    pid_t pid = fork();

    if (pid == 0) {
        signal(SIGALRM, SIG_DFL);
        alarm((unsigned)seconds);
        _exit(fn() == want ? 0 : 1);
    }
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static char fifo_path[80], dir_path[80];

static int change_to_fifo(void)
{
    return virtio_blk_change(&dev, fifo_path, 1);
}

static int change_to_dir(void)
{
    return virtio_blk_change(&dev, dir_path, 0);
}

/* A second disk image, every byte 0x5a; its path in `path`. */
static void make_other_disk(char *path, size_t n)
{
    uint8_t buf[4096];
    int fd;

    snprintf(path, n, "/tmp/ember-test-blk2-XXXXXX");
    fd = mkstemp(path);
    CHECK(fd >= 0);
    memset(buf, 0x5a, sizeof(buf));
    for (int i = 0; i < DISK_SECTORS / 8; i++)
        CHECK_EQ(pwrite(fd, buf, sizeof(buf), (off_t)i * 4096), (ssize_t)sizeof(buf));
    close(fd);
}

/* blockdev-change-medium while requests are in flight: they complete (from the old file, with
 * status OK), the queue goes on with the new file, and nobody waits for the I/O. */
static void test_change_medium_in_flight(void)
{
    const int n = 16;
    char other[64];

    make_other_disk(other, sizeof(other));
    driver_up(&dev, F_V1 | F_FLUSH);
    for (int i = 0; i < n; i++) {
        struct seg s[3] = {{HDR_GPA + 16ULL * i, 16, false},
                           {BACK_GPA + 4096ULL * i, 4096, true},
                           {STATUS_GPA + (uint64_t)i, 1, true}};

        put_header(i, T_IN, 8ULL * i);
        add_chain(s, 3);
    }
    memset(guest_ptr(&fv.vm.mem, BACK_GPA, 4096ULL * n), 0, 4096ULL * n);
    fake_queue_publish(&gq);
    wr(R_NOTIFY, 0);
    CHECK_EQ(loop_run_once(&fv.loop, 100), 0); /* the kick: reads submitted, not reaped */
    CHECK_EQ(virtio_blk_change(&dev, other, 0), 0);
    CHECK(wait_used((uint16_t)n));
    for (int i = 0; i < n; i++)
        CHECK_EQ(status_at(i), ST_OK);
    CHECK(file_equals(0, BACK_GPA, 4096ULL * n)); /* what the old file holds */
    /* The queue goes on, on the new file. */
    CHECK_EQ(rw(T_IN, 0, BACK_GPA, 4096), ST_OK);
    CHECK_EQ(*(uint8_t *)guest_ptr(&fv.vm.mem, BACK_GPA + 100, 1), 0x5a);
    CHECK_EQ(virtio_blk_change(&dev, disk_path, 0), 0); /* back for the tests after */
    unlink(other);
}

/* blockdev-change-medium to a path that would block (a FIFO) or is no disk (a directory):
 * refused at once, the disk unchanged. */
static void test_change_medium_refuses_fifo(void)
{
    char other[64];

    make_other_disk(other, sizeof(other));
    driver_up(&dev, F_V1 | F_FLUSH);
    CHECK_EQ(virtio_blk_change(&dev, other, 0), 0);
    snprintf(fifo_path, sizeof(fifo_path), "%s.fifo", other);
    snprintf(dir_path, sizeof(dir_path), "%s.dir", other);
    CHECK_EQ(mkfifo(fifo_path, 0600), 0);
    CHECK_EQ(mkdir(dir_path, 0700), 0);
    CHECK(returns_within(2, change_to_fifo, -EINVAL));
    CHECK(returns_within(2, change_to_dir, -EISDIR));
    CHECK_EQ(rw(T_IN, 0, BACK_GPA, 4096), ST_OK);
    CHECK_EQ(*(uint8_t *)guest_ptr(&fv.vm.mem, BACK_GPA + 100, 1), 0x5a);

    CHECK_EQ(virtio_blk_change(&dev, disk_path, 0), 0); /* back for the tests after */
    unlink(fifo_path);
    rmdir(dir_path);
    unlink(other);
}

/* Backend errors (here EFBIG from RLIMIT_FSIZE) give IOERR, and the device goes on. */
static void test_backend_error(void)
{
    struct rlimit old, lim;
    uint64_t err0;

    driver_up(&dev, F_V1 | F_FLUSH);
    err0 = dev.stat_errors;
    CHECK_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 512 * 1024;
    CHECK_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
    fill(DATA_GPA, 4096, 11);
    CHECK_EQ(rw(T_OUT, 1536, DATA_GPA, 4096), ST_IOERR);
    CHECK_EQ(dev.stat_errors - err0, 1);
    CHECK_EQ(rw(T_OUT, 8, DATA_GPA, 4096), ST_OK); /* below the limit */
    CHECK_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
    CHECK(!dev.broken);
    CHECK_EQ(rw(T_OUT, 1536, DATA_GPA, 4096), ST_OK);
    CHECK(file_equals(1536, DATA_GPA, 4096));
}

static int make_disk(void)
{
    uint8_t buf[4096];

    snprintf(disk_path, sizeof(disk_path), "/tmp/ember-test-blk-XXXXXX");
    disk_fd = mkstemp(disk_path);
    if (disk_fd < 0)
        return -errno;
    for (int i = 0; i < DISK_SECTORS / 8; i++) {
        memset(buf, i, sizeof(buf));
        if (pwrite(disk_fd, buf, sizeof(buf), (off_t)i * 4096) != (ssize_t)sizeof(buf))
            return -EIO;
    }
    return 0;
}

static int uring_usable(void)
{
    struct io_uring r;

    if (io_uring_queue_init(4, &r, 0) < 0)
        return 0;
    io_uring_queue_exit(&r);
    return 1;
}

int main(void)
{
    struct disk_config rw_cfg = {.id = "test-serial"}, ro_cfg = {.readonly = 1};

    fake_vm_init(&fv, 16ULL << 20);
    CHECK_EQ(make_disk(), 0);
    snprintf(rw_cfg.path, sizeof(rw_cfg.path), "%s", disk_path);
    snprintf(ro_cfg.path, sizeof(ro_cfg.path), "%s", disk_path);

    test_create_errors();
    CHECK_EQ(virtio_blk_create(&dev, &rw_cfg, &fv.loop), 0);
    CHECK_EQ(virtio_mmio_init(&dev, &fv.vm, &fv.loop, FAKE_VIRTIO_BASE, FAKE_VIRTIO_IRQ), 0);
    CHECK_EQ(virtio_blk_create(&rodev, &ro_cfg, &fv.loop), 0);
    rodev.slot = 1; /* the machine's second device: its default serial number says so */
    CHECK_EQ(virtio_mmio_init(&rodev, &fv.vm, &fv.loop, FAKE_VIRTIO_BASE + VIRTIO_MMIO_SIZE,
                              FAKE_VIRTIO_IRQ + 1),
             0);
    /* No loop: the same device with synchronous I/O. */
    CHECK_EQ(virtio_blk_create(&syncdev, &rw_cfg, NULL), 0);
    CHECK_EQ(virtio_mmio_init(&syncdev, &fv.vm, NULL, FAKE_VIRTIO_BASE + 2 * VIRTIO_MMIO_SIZE,
                              FAKE_VIRTIO_IRQ + 2),
             0);

    test_identity_and_config();
    test_read_write(&dev);
    test_get_id();
    test_discard_write_zeroes(&dev);
    test_bad_requests();
    test_readonly();
    test_batch();
    if (uring_usable()) { /* requests stay in flight only on io_uring */
        test_more_chains_than_slots();
        test_reset_in_flight();
    } else {
        printf("blk: io_uring unavailable here (qemu-user?): in-flight tests skipped\n");
    }
    test_same_head_forever();
    test_change_medium_in_flight();
    test_change_medium_refuses_fifo();
    test_backend_error();
    test_read_write(&syncdev);
    test_discard_write_zeroes(&syncdev);

    virtio_mmio_destroy(&syncdev);
    virtio_mmio_destroy(&rodev);
    virtio_mmio_destroy(&dev);
    fake_vm_free(&fv);
    close(disk_fd);
    unlink(disk_path);
    return check_done("blk");
}
