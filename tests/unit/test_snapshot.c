/* Unit tests for snapshots without KVM: the file format (round trip; every flipped bit and
 * every truncation refused, naming the header or section), the bounded reader, the UART's
 * state, and a virtio device frozen, saved and put back on a new VM where it goes on. */
#include "check.h"
#include "devices.h"
#include "fake_vm.h"
#include "layout.h"
#include "snapshot_format.h"
#include "virtio_devices.h"
#include "vm.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#define BASE      VIRTIO_MMIO_BASE
#define QSIZE     16
#define DESC_GPA  0x10000ULL
#define AVAIL_GPA 0x14000ULL
#define USED_GPA  0x18000ULL
#define DATA_GPA  0x20000ULL
#define RAM       (1ULL << 20)

static void small_file(struct snap_buf *b)
{
    snap_buf_init(b);
    snap_section_begin(b, SNAP_TAG_MACHINE, 0, 1);
    snap_put_u32(b, 7);
    snap_put_u64(b, 0x1122334455667788ULL);
    snap_put_str(b, "hello");
    snap_section_end(b);
    snap_section_begin(b, SNAP_TAG_VCPU, 1, 3);
    snap_put_u16(b, 0xbeef);
    snap_section_end(b);
    CHECK_EQ(snap_buf_finish(b, SNAP_ARCH_X86_64), 0);
}

static void test_round_trip(void)
{
    static struct snap_file f;
    struct snap_buf b;
    struct snap_reader r;
    const struct snap_section *s;
    char err[256], str[8];

    small_file(&b);
    CHECK_EQ(snap_file_parse(b.p, b.len, &f, err, sizeof(err)), 0);
    CHECK_EQ(f.nr, 2);
    CHECK_EQ(f.arch, SNAP_ARCH_X86_64);
    s = snap_find(&f, SNAP_TAG_MACHINE, 0);
    CHECK(s != NULL);
    snap_reader_init(&r, s);
    CHECK_EQ(snap_get_u32(&r), 7);
    CHECK(snap_get_u64(&r) == 0x1122334455667788ULL);
    snap_get_str(&r, str, sizeof(str));
    CHECK(strcmp(str, "hello") == 0);
    CHECK(snap_reader_done(&r));
    CHECK_EQ(snap_get_u8(&r), 0); /* past the end: zeros, and the reader is bad */
    CHECK(!snap_reader_done(&r));
    s = snap_find(&f, SNAP_TAG_VCPU, 1);
    CHECK(s != NULL && s->version == 3 && s->size == 2);
    CHECK(snap_find(&f, SNAP_TAG_VCPU, 0) == NULL);
    snap_buf_free(&b);
}

/* Every single flipped bit and every shorter file is refused, with one line naming where. */
static void test_corruption_refused(void)
{
    static struct snap_file f;
    struct snap_buf b;
    char err[256];

    small_file(&b);
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b.p[i] ^= (uint8_t)(1u << bit);
            err[0] = '\0';
            CHECK(snap_file_parse(b.p, b.len, &f, err, sizeof(err)) < 0);
            CHECK(strncmp(err, "header", 6) == 0 || strncmp(err, "section ", 8) == 0);
            CHECK(strchr(err, '\n') == NULL);
            b.p[i] ^= (uint8_t)(1u << bit);
        }
    }
    for (size_t len = 0; len < b.len; len++) {
        CHECK(snap_file_parse(b.p, len, &f, err, sizeof(err)) < 0);
        CHECK(strstr(err, "truncated") != NULL);
    }
    /* A section cut short names itself. */
    CHECK(snap_file_parse(b.p, b.len - 1, &f, err, sizeof(err)) < 0);
    snap_buf_free(&b);
}

static void test_foreign_version_named(void)
{
    static struct snap_file f;
    struct snap_buf b;
    uint64_t sum;
    uint32_t v = 9;
    char err[256];

    small_file(&b);
    memcpy(b.p + 8, &v, 4);
    sum = XXH3_64bits(b.p, 40);
    memcpy(b.p + 40, &sum, 8);
    CHECK(snap_file_parse(b.p, b.len, &f, err, sizeof(err)) < 0);
    CHECK(strstr(err, "format version 9") != NULL && strstr(err, "version 1") != NULL);
    snap_buf_free(&b);
}

static void test_reader_strings(void)
{
    struct snap_buf b;
    struct snap_section s = {0};
    struct snap_reader r;
    char str[4];

    memset(&b, 0, sizeof(b));
    snap_put_str(&b, "toolong");
    s.data = b.p;
    s.size = b.len;
    snap_reader_init(&r, &s);
    snap_get_str(&r, str, sizeof(str)); /* does not fit: refused, not cut */
    CHECK(r.bad && str[0] == '\0');
    snap_buf_free(&b);
    memset(&b, 0, sizeof(b));
    snap_put_u32(&b, 3);
    snap_put_bytes(&b, "a\0b", 3);
    s.data = b.p;
    s.size = b.len;
    snap_reader_init(&r, &s);
    snap_get_str(&r, str, sizeof(str)); /* a NUL inside */
    CHECK(r.bad);
    snap_buf_free(&b);
    memset(&b, 0, sizeof(b));
    snap_put_u32(&b, 0xffffffff); /* a length beyond the payload */
    s.data = b.p;
    s.size = b.len;
    snap_reader_init(&r, &s);
    snap_get_str(&r, str, sizeof(str));
    CHECK(r.bad);
    snap_reader_init(&r, &s);
    CHECK(snap_get_ptr(&r, 5) == NULL && r.bad);
    snap_buf_free(&b);
}

static void test_serial_state(void)
{
    struct fake_vm f;
    struct console con = {0};
    struct serial a, b;
    struct snap_buf buf;
    struct snap_section s = {0};
    struct snap_reader r;
    char err[256];

    fake_vm_init(&f, RAM);
    CHECK_EQ(serial_init(&a, &f.vm, &con, COM1_PORT, COM1_IRQ, -1), 0);
    a.lcr = 3;
    a.ier = 1;
    a.scr = 0x5a;
    memcpy(a.rx, "abc", 3);
    a.rx_head = 1027; /* free-running: the FIFO wraps */
    a.rx_tail = 1024;
    memset(&buf, 0, sizeof(buf));
    serial_save(&a, &buf);
    memset(&b, 0, sizeof(b));
    s.data = buf.p;
    s.size = buf.len;
    snap_reader_init(&r, &s);
    CHECK_EQ(serial_restore(&b, &r, err, sizeof(err)), 0);
    CHECK(b.lcr == 3 && b.ier == 1 && b.scr == 0x5a);
    CHECK_EQ(b.rx_head - b.rx_tail, 3);
    CHECK(memcmp(b.rx + b.rx_tail, "abc", 3) == 0);
    /* More queued input than the FIFO holds is refused. */
    memcpy(buf.p + 11, &(uint32_t){SERIAL_RX_SIZE + 1}, 4);
    snap_reader_init(&r, &s);
    CHECK(serial_restore(&b, &r, err, sizeof(err)) < 0);
    CHECK(strstr(err, "FIFO") != NULL);
    snap_buf_free(&buf);
    fake_vm_free(&f);
}

/* ---- a virtio-rng device saved with a request answered, restored on a copy of RAM ---- */

static void rng_up(struct fake_vm *f, struct virtio_dev *d, int slot, struct fake_queue *q)
{
    CHECK_EQ(virtio_rng_create(d, &f->loop), 0);
    CHECK_EQ(virtio_mmio_init(d, &f->vm, &f->loop, BASE + (uint64_t)slot * VIRTIO_MMIO_SIZE,
                              VIRTIO_IRQ_FIRST + (uint32_t)slot),
             0);
    if (!q)
        return;
    CHECK_EQ(fake_negotiate(f, BASE, FEAT_V1), S_ACK | S_DRV | S_FOK);
    CHECK_EQ(fake_queue_setup(q, f, BASE, 0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA), 1);
    fake_wr(f, BASE, R_STATUS, S_DRIVER_UP);
}

static int restore_from(struct virtio_dev *d, const struct snap_buf *b, char *err)
{
    struct snap_section s = {.data = b->p, .size = b->len};
    struct snap_reader r;

    snap_reader_init(&r, &s);
    return virtio_dev_restore(d, &r, err, 256);
}

static void test_virtio_device_goes_on(void)
{
    static struct console con;
    struct fake_buf req = {DATA_GPA, 32, F_WRITE};
    struct fake_vm f, g;
    struct virtio_dev d, e;
    struct fake_queue q;
    struct snap_buf b;
    char err[256];
    uint32_t status;

    fake_vm_init(&f, RAM);
    rng_up(&f, &d, 0, &q);
    CHECK_EQ(fake_vm_run(&f, 1, 0), 0);
    fake_queue_post(&q, &req, 1);
    fake_queue_kick(&q);
    CHECK_EQ(fake_vm_run(&f, 2, 0), 0);
    CHECK_EQ(fake_used_idx(&q), 1);

    CHECK_EQ(virtio_dev_freeze(&d), 0);
    memset(&b, 0, sizeof(b));
    virtio_dev_save(&d, &b);
    CHECK_EQ(b.err, 0);
    virtio_dev_thaw(&d);

    /* A new VM with the same RAM (as a snapshot's memory file gives it), a new device. */
    fake_vm_init(&g, RAM);
    memcpy(g.vm.mem.mapping, f.vm.mem.mapping, RAM);
    rng_up(&g, &e, 0, NULL);
    CHECK_EQ(restore_from(&e, &b, err), 0);
    CHECK_EQ(fake_rd(&g, BASE, R_STATUS), S_DRIVER_UP);
    CHECK_EQ(e.vq[0].used_idx, 1);
    CHECK_EQ(e.vq[0].last_avail, 1);
    /* The clone's entropy is its own: the buffer answered before the snapshot (which the
     * guest may not have read yet) was filled again. */
    CHECK(memcmp(guest_ptr(&f.vm.mem, DATA_GPA, 32), guest_ptr(&g.vm.mem, DATA_GPA, 32), 32) != 0);
    /* The driver goes on where it was: the next request is answered on the new VM. */
    q.f = &g;
    req.gpa = DATA_GPA + 0x1000;
    fake_queue_post(&q, &req, 1);
    fake_queue_kick(&q);
    CHECK_EQ(fake_vm_run(&g, 2, 0), 0);
    CHECK_EQ(fake_used_idx(&q), 2);
    CHECK_EQ(fake_used_len(&q, 1), 32);
    virtio_mmio_destroy(&e);

    /* A status the driver could not have reached is refused, naming it: the saved status
     * follows the name (length and bytes), the device type and queue count and the two
     * feature words. */
    rng_up(&g, &e, 1, NULL);
    memcpy(&status, b.p + 4 + strlen("virtio-rng") + 8 + 16, 4);
    CHECK_EQ(status, S_DRIVER_UP);
    status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER_OK; /* skips DRIVER, FEATURES_OK */
    memcpy(b.p + 4 + strlen("virtio-rng") + 8 + 16, &status, 4);
    CHECK(restore_from(&e, &b, err) < 0);
    CHECK(strstr(err, "status") != NULL);
    virtio_mmio_destroy(&e);
    /* So is a device of another type in that slot. */
    CHECK_EQ(virtio_console_create(&e, &con, NULL), 0);
    CHECK_EQ(virtio_mmio_init(&e, &g.vm, NULL, BASE + 2 * VIRTIO_MMIO_SIZE, VIRTIO_IRQ_FIRST + 2),
             0);
    CHECK(restore_from(&e, &b, err) < 0);
    CHECK(strstr(err, "virtio-rng") != NULL);
    virtio_mmio_destroy(&e);

    virtio_mmio_destroy(&d);
    snap_buf_free(&b);
    fake_vm_free(&g);
    fake_vm_free(&f);
}

int main(void)
{
    test_round_trip();
    test_corruption_refused();
    test_foreign_version_named();
    test_reader_strings();
    test_serial_state();
    test_virtio_device_goes_on();
    return check_done("snapshot");
}
