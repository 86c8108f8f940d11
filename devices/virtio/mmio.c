/* virtio-mmio v2 transport: register file, negotiation, ioeventfd kicks, irqfd interrupts. */
#include "virtio.h"
#include "bus.h"
#include "log.h"
#include "vm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

/* Register offsets ("Virtio Over MMIO", version 2). */
#define REG_MAGIC             0x000
#define REG_VERSION           0x004
#define REG_DEVICE_ID         0x008
#define REG_VENDOR_ID         0x00c
#define REG_DEVICE_FEATURES   0x010
#define REG_DEVICE_FEAT_SEL   0x014
#define REG_DRIVER_FEATURES   0x020
#define REG_DRIVER_FEAT_SEL   0x024
#define REG_QUEUE_SEL         0x030
#define REG_QUEUE_NUM_MAX     0x034
#define REG_QUEUE_NUM         0x038
#define REG_QUEUE_READY       0x044
#define REG_QUEUE_NOTIFY      0x050
#define REG_INTERRUPT_STATUS  0x060
#define REG_INTERRUPT_ACK     0x064
#define REG_STATUS            0x070
#define REG_QUEUE_DESC_LOW    0x080
#define REG_QUEUE_DESC_HIGH   0x084
#define REG_QUEUE_DRIVER_LOW  0x090
#define REG_QUEUE_DRIVER_HIGH 0x094
#define REG_QUEUE_DEVICE_LOW  0x0a0
#define REG_QUEUE_DEVICE_HIGH 0x0a4
#define REG_SHM_SEL           0x0ac
#define REG_SHM_LEN_LOW       0x0b0
#define REG_SHM_LEN_HIGH      0x0b4
#define REG_SHM_BASE_LOW      0x0b8
#define REG_SHM_BASE_HIGH     0x0bc
#define REG_CONFIG_GENERATION 0x0fc
#define REG_CONFIG            0x100

#define MMIO_MAGIC       0x74726976 /* "virt" */
#define MMIO_VERSION     2
#define MMIO_VENDOR_ID   0x4d424d45 /* "EMBM" */
#define CONFIG_SPACE_MAX (VIRTIO_MMIO_SIZE - REG_CONFIG)

#define ISR_USED   1u
#define ISR_CONFIG 2u

#define FEATURE(bit) (1ULL << (bit))
/* Transport/ring feature bits (28..41) this transport implements; the others are withheld. */
#define TRANSPORT_FEATURES_MASK (((1ULL << 42) - 1) & ~((1ULL << 28) - 1))
#define TRANSPORT_FEATURES                                                                         \
    (FEATURE(VIRTIO_F_INDIRECT_DESC) | FEATURE(VIRTIO_F_EVENT_IDX) | FEATURE(VIRTIO_F_VERSION_1))

/* Status bits the driver sets, in the only order they may be added. */
#define STATUS_STEPS                                                                               \
    (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |                \
     VIRTIO_STATUS_DRIVER_OK)
static const uint32_t status_order[] = {VIRTIO_STATUS_ACKNOWLEDGE, VIRTIO_STATUS_DRIVER,
                                        VIRTIO_STATUS_FEATURES_OK, VIRTIO_STATUS_DRIVER_OK};

static bool bad_access_logged;

static void signal_irq(struct virtio_dev *d, uint32_t isr_bit)
{
    uint64_t one = 1;

    d->isr |= isr_bit;
    /* Fails only when the counter is about to overflow: the guest is interrupted anyway. */
    if (d->irq_fd >= 0)
        (void)!write(d->irq_fd, &one, sizeof(one));
}

void virtio_notify_used(struct virtio_dev *d, struct virtq *q)
{
    if (!d->broken && virtq_should_notify(q))
        signal_irq(d, ISR_USED);
}

void virtio_config_changed(struct virtio_dev *d)
{
    d->config_generation++;
    signal_irq(d, ISR_CONFIG);
}

void virtio_mark_broken(struct virtio_dev *d, const char *why)
{
    d->stat_errors++;
    if (d->broken)
        return;
    log_guest(&d->log_limit, LOG_WARN, "%s: %s; device needs a reset", d->name, why);
    d->broken = true;
    d->status |= VIRTIO_STATUS_NEEDS_RESET;
    signal_irq(d, ISR_CONFIG);
}

static bool queues_running(const struct virtio_dev *d)
{
    return (d->status & VIRTIO_STATUS_DRIVER_OK) && !d->broken && !d->resetting;
}

/* ---- InterruptACK in KVM ----
 * Every interrupt costs the guest a status read and an ACK write, each an exit to ember. The
 * drivers checked (Linux vm_interrupt, FreeBSD vtmmio, NetBSD/OpenBSD virtio_mmio_intr) read
 * the status once and write that same value to InterruptACK at once. Once a driver has done so
 * ACK_LEARN times in a row (and nothing else in between), the loop registers ack_fd on the ACK
 * register: KVM takes the write, ember never sees it, and a status read clears what it returns
 * (a later event sets its bit again), as virtio-pci's ISR does. Until then, and again after a
 * reset (a new driver may do otherwise), the registers work as the virtio-mmio spec says. */
#define ACK_LEARN 8

static int assign_eventfd_reg(struct virtio_dev *d, uint64_t reg, int fd, const int *match,
                              bool assign);

static uint32_t read_isr(struct virtio_dev *d)
{
    uint32_t isr = d->isr;

    if (d->ack_in_kvm) {
        d->isr = 0;
        return isr;
    }
    if (d->isr_unacked)
        d->ack_streak = 0; /* read again without acknowledging */
    d->isr_unacked = isr != 0;
    d->isr_read = isr;
    return isr;
}

static void write_ack(struct virtio_dev *d, uint32_t v)
{
    d->isr &= ~v;
    if (d->isr_unacked && v == d->isr_read) {
        if (d->ack_streak < ACK_LEARN)
            d->ack_streak++;
    } else if (v) {
        d->ack_streak = 0;
    }
    d->isr_unacked = false;
    if (d->ack_streak == ACK_LEARN && d->ack_fd >= 0 && !d->ack_want) {
        d->ack_want = true;
        virtio_post_work(d); /* the ioctl is the loop's (vCPU threads make no system calls) */
    }
}

/* The loop's half: make ack_fd's registration what ack_want says (without KVM, unit-test
 * mode, only the flag: ACK writes keep reaching write_ack, which clears what they name). */
static void ack_switch(struct virtio_dev *d)
{
    if (d->ack_fd < 0 || d->ack_want == d->ack_in_kvm)
        return;
    if (d->vm->vm_fd < 0 ||
        assign_eventfd_reg(d, REG_INTERRUPT_ACK, d->ack_fd, NULL, d->ack_want) == 0)
        d->ack_in_kvm = d->ack_want;
    else
        d->ack_want = d->ack_in_kvm; /* stays as it is; learning does not ask again */
}

/* A reset: the next driver learns again. */
static void ack_forget(struct virtio_dev *d)
{
    d->ack_streak = 0;
    d->isr_unacked = false;
    if (d->ack_want || d->ack_in_kvm) {
        d->ack_want = false;
        virtio_post_work(d);
    }
}

/* Device work handed over by a register callback (dev->lock held). */
static void run_work(struct virtio_dev *d)
{
    if (!d->work_pending)
        return;
    d->work_pending = false;
    ack_switch(d);
    if (d->ops->loop_work)
        d->ops->loop_work(d);
}

void virtio_post_work(struct virtio_dev *d)
{
    uint64_t one = 1;

    d->work_pending = true;
    if (!d->loop || d->work_fd < 0)
        run_work(d); /* unit-test mode: no loop to hand it to */
    else
        (void)!write(d->work_fd, &one, sizeof(one));
}

static void work_handler(struct loop_handler *h, uint32_t events)
{
    struct virtio_dev *d = container_of(h, struct virtio_dev, h_work);
    uint64_t n;

    (void)events;
    (void)!read(h->fd, &n, sizeof(n));
    pthread_mutex_lock(&d->lock);
    run_work(d);
    pthread_mutex_unlock(&d->lock);
}

bool virtio_queue_running(const struct virtio_dev *d, const struct virtq *q)
{
    return queues_running(d) && q->ready;
}

/* A queue was kicked (ioeventfd or a QueueNotify write that reached the bus). */
static void kick_handler(struct loop_handler *h, uint32_t events)
{
    struct virtq *q = container_of(h, struct virtq, kick);
    struct virtio_dev *d = q->dev;
    uint64_t n;

    (void)events;
    (void)!read(q->kick_fd, &n, sizeof(n)); /* non-blocking: drains the count */
    pthread_mutex_lock(&d->lock);
    run_work(d); /* what a reset or activation handed over comes first */
    virtq_turn_begin(q);
    if (queues_running(d) && q->ready && d->ops->queue_notify)
        d->ops->queue_notify(d, q);
    pthread_mutex_unlock(&d->lock);
}

/* The transport's half of a reset: back to the state after virtio_mmio_init, as the driver
 * must find it. */
static void finish_reset(struct virtio_dev *d)
{
    d->resetting = false;
    for (int i = 0; i < d->nr_queues; i++) {
        virtq_reset(&d->vq[i]);
        d->vq[i].size = d->queue_max[i];
    }
    d->status = 0;
    d->isr = 0;
    d->acked = 0;
    d->broken = false;
    d->device_features_sel = d->driver_features_sel = d->queue_sel = 0;
    ack_forget(d);
}

void virtio_reset_pending(struct virtio_dev *d)
{
    d->resetting = true;
}

void virtio_reset_done(struct virtio_dev *d)
{
    if (d->resetting)
        finish_reset(d);
}

/* Status 0. The device forgets what it popped; with I/O in flight it stays out of service (and
 * its status non-zero) until the I/O is over, which it tells us from the loop. */
static void device_reset(struct virtio_dev *d)
{
    d->resetting = false;
    if (d->ops->reset)
        d->ops->reset(d);
    if (!d->resetting)
        finish_reset(d);
}

bool virtio_features_ok(const struct virtio_dev *d)
{
    return (d->acked & ~d->features) == 0 && (d->acked & FEATURE(VIRTIO_F_VERSION_1));
}

void virtio_apply_features(struct virtio_dev *d)
{
    for (int i = 0; i < d->nr_queues; i++) {
        d->vq[i].event_idx = d->acked & FEATURE(VIRTIO_F_EVENT_IDX);
        d->vq[i].indirect = d->acked & FEATURE(VIRTIO_F_INDIRECT_DESC);
    }
}

/* DRIVER_OK: every ready queue must still be valid, then the device starts. Queues get one
 * kick each so buffers made available before DRIVER_OK (without a notification) are seen. */
static void activate(struct virtio_dev *d)
{
    char why[64];
    int err;

    if (d->broken)
        return;
    for (int i = 0; i < d->nr_queues; i++) {
        if (d->vq[i].ready && virtq_check(&d->vq[i])) {
            snprintf(why, sizeof(why), "queue %d is invalid at DRIVER_OK", i);
            virtio_mark_broken(d, why);
            return;
        }
    }
    err = d->ops->activate ? d->ops->activate(d) : 0;
    if (err < 0) {
        snprintf(why, sizeof(why), "activation failed (%s)", strerror(-err));
        virtio_mark_broken(d, why);
        return;
    }
    for (int i = 0; i < d->nr_queues; i++)
        if (d->vq[i].ready)
            virtq_rekick(&d->vq[i]);
}

/* Whether `bits` is one of the states reachable by adding steps in order. */
bool virtio_status_in_order(uint32_t bits)
{
    uint32_t prefix = 0;

    for (size_t i = 0; i < sizeof(status_order) / sizeof(status_order[0]); i++) {
        if (bits == prefix)
            return true;
        prefix |= status_order[i];
    }
    return bits == prefix;
}

/* Status writes. 0 resets. FAILED may be set at any time. Otherwise the driver may only add
 * steps in order (ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK; several at once is fine);
 * a write that clears or skips a step is ignored, so the driver sees its bits did not stick.
 * NEEDS_RESET belongs to the device: the driver's copy of it is ignored. */
static void write_status(struct virtio_dev *d, uint32_t v)
{
    uint32_t cur = d->status & STATUS_STEPS, want = v & STATUS_STEPS, added;

    if (v == 0) {
        device_reset(d);
        return;
    }
    if (v & VIRTIO_STATUS_FAILED)
        d->status |= VIRTIO_STATUS_FAILED;
    if ((want & cur) != cur || !virtio_status_in_order(want)) {
        log_debug("%s: status %#x -> %#x out of order, ignored", d->name, cur, want);
        return;
    }
    added = want & ~cur;
    if (added & VIRTIO_STATUS_FEATURES_OK) {
        if (!virtio_features_ok(d)) {
            log_debug("%s: features %#llx refused (offered %#llx)", d->name,
                      (unsigned long long)d->acked, (unsigned long long)d->features);
            d->status |= want & (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
            return;
        }
        virtio_apply_features(d);
    }
    d->status |= want;
    if (added & VIRTIO_STATUS_DRIVER_OK)
        activate(d);
}

static uint32_t feature_half(uint64_t features, uint32_t sel)
{
    if (sel == 0)
        return (uint32_t)features;
    if (sel == 1)
        return (uint32_t)(features >> 32);
    return 0;
}

/* DriverFeatures: only between DRIVER and FEATURES_OK. Pages beyond 1 hold no features. */
static void write_driver_features(struct virtio_dev *d, uint32_t v)
{
    uint32_t phase = d->status & (VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);

    if (phase != VIRTIO_STATUS_DRIVER) {
        log_debug("%s: DriverFeatures written in status %#x, ignored", d->name, d->status);
        return;
    }
    if (d->driver_features_sel == 0)
        d->acked = (d->acked & 0xffffffff00000000ULL) | v;
    else if (d->driver_features_sel == 1)
        d->acked = (d->acked & 0xffffffffULL) | ((uint64_t)v << 32);
}

static struct virtq *selected(struct virtio_dev *d)
{
    return d->queue_sel < (uint32_t)d->nr_queues ? &d->vq[d->queue_sel] : NULL;
}

static void set_low(uint64_t *reg, uint32_t v)
{
    *reg = (*reg & 0xffffffff00000000ULL) | v;
}

static void set_high(uint64_t *reg, uint32_t v)
{
    *reg = (*reg & 0xffffffffULL) | ((uint64_t)v << 32);
}

/* QueueNum and the ring addresses: only while the queue is off and before DRIVER_OK. A size
 * that does not fit 16 bits is stored as 0 so QueueReady refuses it. */
static void write_queue_reg(struct virtio_dev *d, uint64_t off, uint32_t v)
{
    struct virtq *q = selected(d);

    if (!q || q->ready || (d->status & VIRTIO_STATUS_DRIVER_OK)) {
        log_debug("%s: queue register %#llx written while locked, ignored", d->name,
                  (unsigned long long)off);
        return;
    }
    switch (off) {
    case REG_QUEUE_NUM:
        q->size = v <= UINT16_MAX ? (uint16_t)v : 0;
        break;
    case REG_QUEUE_DESC_LOW:
        set_low(&q->desc_gpa, v);
        break;
    case REG_QUEUE_DESC_HIGH:
        set_high(&q->desc_gpa, v);
        break;
    case REG_QUEUE_DRIVER_LOW:
        set_low(&q->avail_gpa, v);
        break;
    case REG_QUEUE_DRIVER_HIGH:
        set_high(&q->avail_gpa, v);
        break;
    case REG_QUEUE_DEVICE_LOW:
        set_low(&q->used_gpa, v);
        break;
    case REG_QUEUE_DEVICE_HIGH:
        set_high(&q->used_gpa, v);
        break;
    }
}

/* QueueReady=1 only with a valid size and rings (else it stays 0); 0 turns the queue off
 * before DRIVER_OK; other values are ignored. After DRIVER_OK the register is read-only. */
static void write_queue_ready(struct virtio_dev *d, uint32_t v)
{
    struct virtq *q = selected(d);

    if (!q || (d->status & VIRTIO_STATUS_DRIVER_OK) || v > 1 || q->ready == (v == 1))
        return;
    if (v == 0) {
        q->ready = false;
        return;
    }
    if (virtq_enable(q)) {
        log_debug("%s: queue %d: invalid size %u or rings, not made ready", d->name, q->index,
                  q->size);
        return;
    }
    q->last_avail = q->used_idx = q->signalled_used = 0;
    q->signalled_valid = false;
}

/* A QueueNotify the ioeventfd did not take (no KVM, or a value that is not a queue index). */
static void write_queue_notify(struct virtio_dev *d, uint32_t v)
{
    if (v >= (uint32_t)d->nr_queues) {
        log_debug("%s: notify for queue %u that does not exist, ignored", d->name, v);
        return;
    }
    virtq_rekick(&d->vq[v]);
}

static uint32_t read_queue_reg(struct virtio_dev *d, uint64_t off)
{
    struct virtq *q = selected(d);

    if (!q)
        return 0;
    switch (off) {
    case REG_QUEUE_NUM_MAX:
        return d->queue_max[q->index];
    case REG_QUEUE_NUM:
        return q->size;
    case REG_QUEUE_READY:
        return q->ready;
    case REG_QUEUE_DESC_LOW:
        return (uint32_t)q->desc_gpa;
    case REG_QUEUE_DESC_HIGH:
        return (uint32_t)(q->desc_gpa >> 32);
    case REG_QUEUE_DRIVER_LOW:
        return (uint32_t)q->avail_gpa;
    case REG_QUEUE_DRIVER_HIGH:
        return (uint32_t)(q->avail_gpa >> 32);
    case REG_QUEUE_DEVICE_LOW:
        return (uint32_t)q->used_gpa;
    case REG_QUEUE_DEVICE_HIGH:
        return (uint32_t)(q->used_gpa >> 32);
    }
    return 0;
}

static uint32_t reg_read(struct virtio_dev *d, uint64_t off)
{
    switch (off) {
    case REG_MAGIC:
        return MMIO_MAGIC;
    case REG_VERSION:
        return MMIO_VERSION;
    case REG_DEVICE_ID:
        return d->device_id;
    case REG_VENDOR_ID:
        return MMIO_VENDOR_ID;
    case REG_DEVICE_FEATURES:
        return feature_half(d->features, d->device_features_sel);
    case REG_DRIVER_FEATURES:
        return feature_half(d->acked, d->driver_features_sel);
    case REG_QUEUE_NUM_MAX:
    case REG_QUEUE_NUM:
    case REG_QUEUE_READY:
    case REG_QUEUE_DESC_LOW:
    case REG_QUEUE_DESC_HIGH:
    case REG_QUEUE_DRIVER_LOW:
    case REG_QUEUE_DRIVER_HIGH:
    case REG_QUEUE_DEVICE_LOW:
    case REG_QUEUE_DEVICE_HIGH:
        return read_queue_reg(d, off);
    case REG_INTERRUPT_STATUS:
        return read_isr(d);
    case REG_STATUS:
        return d->status;
    case REG_SHM_LEN_LOW:
    case REG_SHM_LEN_HIGH:
    case REG_SHM_BASE_LOW:
    case REG_SHM_BASE_HIGH:
        return UINT32_MAX; /* no shared memory regions */
    case REG_CONFIG_GENERATION:
        return d->config_generation;
    }
    return 0;
}

static void reg_write(struct virtio_dev *d, uint64_t off, uint32_t v)
{
    switch (off) {
    case REG_DEVICE_FEAT_SEL:
        d->device_features_sel = v;
        break;
    case REG_DRIVER_FEATURES:
        write_driver_features(d, v);
        break;
    case REG_DRIVER_FEAT_SEL:
        d->driver_features_sel = v;
        break;
    case REG_QUEUE_SEL:
        d->queue_sel = v;
        break;
    case REG_QUEUE_NUM:
    case REG_QUEUE_DESC_LOW:
    case REG_QUEUE_DESC_HIGH:
    case REG_QUEUE_DRIVER_LOW:
    case REG_QUEUE_DRIVER_HIGH:
    case REG_QUEUE_DEVICE_LOW:
    case REG_QUEUE_DEVICE_HIGH:
        write_queue_reg(d, off, v);
        break;
    case REG_QUEUE_READY:
        write_queue_ready(d, v);
        break;
    case REG_QUEUE_NOTIFY:
        write_queue_notify(d, v);
        break;
    case REG_INTERRUPT_ACK:
        write_ack(d, v);
        break;
    case REG_STATUS:
        write_status(d, v);
        break;
    default: /* read-only or unknown (SHMSel: no regions to select) */
        break;
    }
}

/* Device-specific configuration: 1, 2 or 4 bytes wholly inside config_size. */
static bool config_access_ok(const struct virtio_dev *d, uint64_t off, uint32_t len)
{
    return (len == 1 || len == 2 || len == 4) && off < d->config_size &&
           len <= d->config_size - off;
}

static void bad_access(const struct virtio_dev *d, uint64_t off, uint32_t len)
{
    if (bad_access_logged)
        return;
    bad_access_logged = true;
    log_debug("%s: %u-byte access at register %#llx ignored (32-bit aligned only)", d->name, len,
              (unsigned long long)off);
}

static void mmio_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
    struct virtio_dev *d = opaque;
    uint32_t v;

    memset(data, 0, len);
    pthread_mutex_lock(&d->lock);
    if (off >= REG_CONFIG) {
        if (config_access_ok(d, off - REG_CONFIG, len) && d->ops->config_read)
            d->ops->config_read(d, (uint32_t)(off - REG_CONFIG), data, len);
    } else if (len == 4 && off % 4 == 0) {
        v = reg_read(d, off);
        memcpy(data, &v, sizeof(v));
    } else {
        bad_access(d, off, len);
    }
    pthread_mutex_unlock(&d->lock);
}

static void mmio_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct virtio_dev *d = opaque;
    uint32_t v;

    pthread_mutex_lock(&d->lock);
    if (d->resetting) {
        log_debug("%s: register %#llx written while a reset waits for I/O, ignored", d->name,
                  (unsigned long long)off);
    } else if (off >= REG_CONFIG) {
        if (config_access_ok(d, off - REG_CONFIG, len) && d->ops->config_write)
            d->ops->config_write(d, (uint32_t)(off - REG_CONFIG), data, len);
    } else if (len == 4 && off % 4 == 0) {
        memcpy(&v, data, sizeof(v));
        reg_write(d, off, v);
    } else {
        bad_access(d, off, len);
    }
    pthread_mutex_unlock(&d->lock);
}

static const struct bus_ops virtio_mmio_ops = {.read = mmio_read, .write = mmio_write};

static int check_device(struct virtio_dev *d)
{
    uint64_t withheld = d->features & TRANSPORT_FEATURES_MASK & ~TRANSPORT_FEATURES;

    if (!d->name)
        d->name = "virtio";
    if (!d->ops || d->nr_queues < 0 || d->nr_queues > VIRTIO_MAX_QUEUES ||
        d->config_size > CONFIG_SPACE_MAX) {
        log_err("%s: bad device description", d->name);
        return -EINVAL;
    }
    for (int i = 0; i < d->nr_queues; i++) {
        uint32_t max = d->queue_max[i];

        if (max == 0 || max > VIRTQ_MAX_SIZE || (max & (max - 1))) {
            log_err("%s: queue %d: bad maximum size %u", d->name, i, max);
            return -EINVAL;
        }
    }
    if (withheld) {
        log_warn("%s: transport features %#llx are not supported, not offered", d->name,
                 (unsigned long long)withheld);
        d->features &= ~withheld;
    }
    d->features |= TRANSPORT_FEATURES;
    return 0;
}

/* A 4-byte register write KVM signals on fd instead of exiting; with match, only that value. */
static int assign_eventfd_reg(struct virtio_dev *d, uint64_t reg, int fd, const int *match,
                              bool assign)
{
    struct kvm_ioeventfd io = {
            .datamatch = match ? (uint64_t)*match : 0,
            .addr = d->mmio_base + reg,
            .len = 4,
            .fd = fd,
            .flags = (match ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) |
                     (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
    };

    if (ioctl(d->vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
        return log_errno("KVM_IOEVENTFD");
    return 0;
}

static int assign_ioeventfd(struct virtio_dev *d, struct virtq *q, bool assign)
{
    return assign_eventfd_reg(d, REG_QUEUE_NOTIFY, q->kick_fd, &q->index, assign);
}

static void teardown_queue(struct virtio_dev *d, struct virtq *q)
{
    if (d->loop)
        loop_del(d->loop, &q->kick);
    if (d->vm->vm_fd >= 0)
        assign_ioeventfd(d, q, false);
    close(q->kick_fd);
    q->kick_fd = -1;
}

/* The queue's kick eventfd: signalled by KVM on a matching QueueNotify, read by the loop. */
static int setup_queue(struct virtio_dev *d, struct virtq *q)
{
    int err;

    q->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->kick_fd < 0)
        return log_errno("eventfd");
    if (d->vm->vm_fd >= 0) {
        err = assign_ioeventfd(d, q, true);
        if (err)
            goto fail_close;
    }
    q->kick = (struct loop_handler){.fd = q->kick_fd, .fn = kick_handler};
    if (d->loop) {
        err = loop_add(d->loop, &q->kick, EPOLLIN);
        if (err) {
            log_err("%s: queue %d: loop_add: %s", d->name, q->index, strerror(-err));
            goto fail_ioeventfd;
        }
    }
    return 0;

fail_ioeventfd:
    if (d->vm->vm_fd >= 0)
        assign_ioeventfd(d, q, false);
fail_close:
    close(q->kick_fd);
    q->kick_fd = -1;
    return err;
}

static int assign_irqfd(struct virtio_dev *d, bool assign)
{
    struct kvm_irqfd irqfd = {
            .fd = (uint32_t)d->irq_fd,
            .gsi = d->irq,
            .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
    };

    if (ioctl(d->vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
        return log_errno("KVM_IRQFD");
    return 0;
}

static void teardown_irq(struct virtio_dev *d)
{
    if (d->vm->vm_fd >= 0) {
        assign_irqfd(d, false);
        if (d->ack_in_kvm)
            assign_eventfd_reg(d, REG_INTERRUPT_ACK, d->ack_fd, NULL, false);
    }
    if (d->ack_fd >= 0)
        close(d->ack_fd);
    close(d->irq_fd);
    d->irq_fd = d->ack_fd = -1;
    d->ack_in_kvm = d->ack_want = false;
}

static int setup_irq(struct virtio_dev *d)
{
    int err;

    d->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->irq_fd < 0)
        return log_errno("eventfd");
    if (d->vm->vm_fd >= 0) {
        err = assign_irqfd(d, true);
        if (err) {
            close(d->irq_fd);
            d->irq_fd = -1;
            return err;
        }
    }
    /* Registered on InterruptACK once the driver has shown how it acknowledges. */
    d->ack_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->ack_fd < 0) {
        err = log_errno("eventfd");
        teardown_irq(d);
        return err;
    }
    return 0;
}

/* The eventfd that brings register callbacks' work to the loop. */
static int setup_work(struct virtio_dev *d)
{
    int err;

    if (!d->loop)
        return 0;
    d->work_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->work_fd < 0)
        return log_errno("eventfd");
    d->h_work = (struct loop_handler){.fd = d->work_fd, .fn = work_handler};
    err = loop_add(d->loop, &d->h_work, EPOLLIN);
    if (err) {
        log_err("%s: loop_add: %s", d->name, strerror(-err));
        close(d->work_fd);
        d->work_fd = -1;
    }
    return err;
}

static void teardown_work(struct virtio_dev *d)
{
    if (d->work_fd < 0)
        return;
    loop_del(d->loop, &d->h_work);
    close(d->work_fd);
    d->work_fd = -1;
}

/* vm->vm_fd < 0 is the unit-test mode: no KVM ioeventfd/irqfd are registered, but the kick
 * and interrupt eventfds exist, QueueNotify writes reach the kick eventfds through the bus,
 * and a NULL loop leaves the kick handlers unregistered. */
int virtio_mmio_init(struct virtio_dev *d, struct vm *vm, struct loop *loop, uint64_t base,
                     uint32_t irq)
{
    int err, i = 0;

    err = check_device(d);
    if (err)
        return err;
    d->vm = vm;
    d->loop = loop;
    d->mmio_base = base;
    d->irq = irq;
    d->irq_fd = d->ack_fd = -1;
    d->ack_in_kvm = d->ack_want = d->isr_unacked = false;
    d->ack_streak = 0;
    d->config_generation = 0;
    pthread_mutex_init(&d->lock, NULL);
    for (i = 0; i < d->nr_queues; i++) {
        struct virtq *q = &d->vq[i];

        memset(q, 0, sizeof(*q));
        q->mem = &vm->mem;
        q->dev = d;
        q->index = i;
        q->kick_fd = -1;
        q->size = d->queue_max[i];
    }
    d->status = d->isr = 0;
    d->acked = 0;
    d->broken = d->resetting = d->work_pending = false;
    d->device_features_sel = d->driver_features_sel = d->queue_sel = 0;
    d->work_fd = -1;

    err = setup_work(d);
    if (err)
        goto fail_lock;
    err = setup_irq(d);
    if (err)
        goto fail_work;
    for (i = 0; i < d->nr_queues; i++) {
        err = setup_queue(d, &d->vq[i]);
        if (err)
            goto fail_queues;
    }
    err = bus_register(&vm->mmio, base, VIRTIO_MMIO_SIZE, &virtio_mmio_ops, d, d->name);
    if (err) {
        log_err("%s: cannot register MMIO range at %#llx: %s", d->name, (unsigned long long)base,
                strerror(-err));
        goto fail_queues;
    }
    return 0;

fail_queues:
    while (i-- > 0)
        teardown_queue(d, &d->vq[i]);
    teardown_irq(d);
fail_work:
    teardown_work(d);
fail_lock:
    pthread_mutex_destroy(&d->lock);
    return err;
}

void virtio_mmio_destroy(struct virtio_dev *d)
{
    pthread_mutex_lock(&d->lock);
    if (d->ops->reset && (d->status & VIRTIO_STATUS_DRIVER_OK))
        d->ops->reset(d);
    run_work(d); /* the event loop's thread: do what the reset handed over now */
    for (int i = 0; i < d->nr_queues; i++)
        if (d->vq[i].kick_fd >= 0)
            teardown_queue(d, &d->vq[i]);
    if (d->irq_fd >= 0)
        teardown_irq(d);
    teardown_work(d);
    pthread_mutex_unlock(&d->lock);
    pthread_mutex_destroy(&d->lock);
    if (d->ops->destroy)
        d->ops->destroy(d);
}
