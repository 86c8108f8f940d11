/* virtio devices over virtio-mmio v2: the transport, split virtqueues and the device ops table. */
#ifndef EMBER_VIRTIO_H
#define EMBER_VIRTIO_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "eventloop.h"
#include "guest_mem.h"
#include "log.h"
#include "snapshot_format.h"

struct vm;

/* Feature bits common to every device. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29
#define VIRTIO_F_VERSION_1     32

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER      2
#define VIRTIO_STATUS_DRIVER_OK   4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED      128

#define VIRTQ_MAX_SIZE 1024 /* largest queue size any ember device offers */
/* One turn of a queue (from one kick to the next) takes at most VIRTQ_BUDGET chains and walks at
 * most VIRTQ_DESC_BUDGET descriptors (a chain may hold a 1024-entry indirect table): a guest
 * that keeps reposting must not keep the event loop (signals, the control socket, other
 * devices) to itself. virtq_pop enforces it. */
#define VIRTQ_BUDGET      128
#define VIRTQ_DESC_BUDGET 1024
/* The exec ports with ember-oci's ctl port: 4 ports and the control port, 2 queues each. */
#define VIRTIO_MAX_QUEUES 10
#define VIRTIO_MMIO_SIZE  0x1000ULL /* one device's register window */

/* One guest buffer of a descriptor chain, validated and translated to host memory. */
struct virtq_buf {
    void *host;
    uint32_t len;
    bool write; /* device writes it (guest reads) */
};

/* A descriptor chain, copied out of guest memory once: the guest cannot change it later. */
struct virtq_chain {
    uint16_t head; /* descriptor index to return in the used ring */
    uint16_t nbufs;
    uint32_t out_len; /* total bytes of device-readable buffers */
    uint32_t in_len;  /* total bytes of device-writable buffers */
    struct virtq_buf buf[VIRTQ_MAX_SIZE];
};

struct virtq {
    /* Set by the driver through the transport registers. */
    uint16_t size;
    bool ready;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    /* Device-side state. */
    uint16_t last_avail;     /* next avail ring entry to take */
    uint16_t used_idx;       /* next used ring entry to fill */
    uint16_t signalled_used; /* used_idx at the last interrupt decision (starts = used_idx) */
    bool signalled_valid;
    bool event_idx; /* VIRTIO_F_EVENT_IDX negotiated */
    bool indirect;  /* VIRTIO_F_INDIRECT_DESC negotiated */
    const struct guest_mem *mem;
    /* Host views of the rings, from virtq_enable(): valid while ready (the transport freezes
     * the size and ring addresses then, and guest RAM never moves). */
    uint8_t *desc_host, *avail_host, *used_host;
    uint16_t mapped_size; /* the size they were mapped for */
    int kick_fd;          /* ioeventfd the guest's notifications arrive on */
    struct loop_handler kick;
    struct virtio_dev *dev;
    int index;
    uint32_t turn_chains, turn_descs; /* taken and walked in this turn */
};

/* Queue functions run with dev->lock held (inside queue_notify, or after taking it).
 * A device drains a queue like this, then interrupts once:
 *     while ((r = virtq_pop(q, chain)) == 1) { ...; virtq_push(q, chain->head, written); }
 *     if (r < 0) virtio_mark_broken(d, "...");
 *     virtio_notify_used(d, q);
 * Popping until VIRTQ_EMPTY matters with EVENT_IDX: the empty pop re-arms the guest's kicks.
 * struct virtq_chain is 16 KiB: keep one per queue or device, not on a small stack. */
#define VIRTQ_EMPTY 0
/* Take the next available chain; returns 1 with *chain filled, 0 when the ring is empty or
 * the turn's budget is spent (then the queue is kicked again, so its handler comes back in a
 * later round of the event loop), or -EINVAL when the guest broke the rules (bad index, bad
 * address, loop, too long): the chain is not consumed and the device should be marked broken.
 * Zero-length buffers are dropped from the chain; indirect tables may hold up to
 * VIRTQ_MAX_SIZE descriptors. */
int virtq_pop(struct virtq *q, struct virtq_chain *chain);
/* A new turn: the transport calls it before each queue_notify. */
void virtq_turn_begin(struct virtq *q);
/* Whether a pop was refused since the turn began because its budget was spent. */
bool virtq_turn_spent(const struct virtq *q);
/* Have the event loop call queue_notify for q again in a later round (a handler that must
 * look again later). */
void virtq_rekick(struct virtq *q);
/* Return a chain to the guest with `written` bytes written into its writable buffers.
 * -EINVAL if head is not a descriptor index or the queue is not ready (e.g. after a reset:
 * a device must forget chains popped before it was reset, never push them). */
int virtq_push(struct virtq *q, uint16_t head, uint32_t written);
/* The same, but the guest sees it only at the next virtq_publish_used() (which
 * virtio_notify_used() does): a batch of chains goes out with one used index store. */
int virtq_add_used(struct virtq *q, uint16_t head, uint32_t written);
void virtq_publish_used(struct virtq *q);
/* Whether the guest wants an interrupt for what was pushed since the last one. */
bool virtq_should_notify(struct virtq *q);
/* Validate the ring addresses and size set by the driver; 0 or -EINVAL. */
int virtq_check(const struct virtq *q);
/* Validate the queue, map its rings and make it ready (indices as they are); 0 or -EINVAL
 * (then the queue stays as it was). */
int virtq_enable(struct virtq *q);
/* Back to the reset state: not ready, size and ring addresses 0, indices 0, no features.
 * Keeps mem, dev, index and the kick eventfd. */
void virtq_reset(struct virtq *q);
/* Give back the chain popped last and not pushed: the next virtq_pop takes it again. */
void virtq_unpop(struct virtq *q);
/* The chain of the used ring entry `back` entries before the last one pushed (0: the last),
 * read again from the descriptor table. 1 with *chain filled, 0 when there is none, -EINVAL
 * when the guest's ring no longer makes sense. */
int virtq_used_chain(struct virtq *q, uint16_t back, struct virtq_chain *chain);

/* Copy from a chain's readable buffers / into its writable buffers, from byte `offset`
 * of that direction. Returns bytes copied. */
size_t virtq_chain_read(const struct virtq_chain *c, size_t offset, void *dst, size_t len);
size_t virtq_chain_write(const struct virtq_chain *c, size_t offset, const void *src, size_t len);
/* Point iov at up to `len` bytes of a chain's readable (write false) or writable buffers, from
 * byte `skip` of that direction, for I/O straight into or out of guest memory: the number of
 * entries, or -E2BIG when it takes more than max. (Inline: it runs once per request.) */
static inline int virtq_chain_iov(const struct virtq_chain *c, bool write, size_t skip, size_t len,
                                  struct iovec *iov, int max)
{
    int n = 0;

    for (uint32_t i = 0; i < c->nbufs && len > 0; i++) {
        const struct virtq_buf *b = &c->buf[i];
        size_t take;

        if (b->write != write)
            continue;
        if (skip >= b->len) {
            skip -= b->len;
            continue;
        }
        if (n == max)
            return -E2BIG;
        take = b->len - skip < len ? b->len - skip : len;
        iov[n++] = (struct iovec){(uint8_t *)b->host + skip, take};
        len -= take;
        skip = 0;
    }
    return n;
}

struct virtio_dev;

/* Between the transport and a device. Called with dev->lock held: the register callbacks
 * (config_read/write, activate, reset) from vCPU threads, the rest from the event loop. Device
 * work runs on the event loop, never on a vCPU: the register callbacks only change the
 * device's state in memory and never block or call the kernel (but to write an eventfd);
 * what needs a system call (a backend's offloads, epoll) they hand to loop_work through
 * virtio_post_work, and a reset that must wait for I/O in flight completes later, from the
 * loop (virtio_reset_pending / virtio_reset_done). */
struct virtio_dev_ops {
    /* Read/write the device-specific configuration space (offset from 0x100). */
    void (*config_read)(struct virtio_dev *d, uint32_t offset, uint8_t *data, uint32_t len);
    void (*config_write)(struct virtio_dev *d, uint32_t offset, const uint8_t *data, uint32_t len);
    /* The driver set DRIVER_OK: start using the queues. 0 or -errno (device marked broken). */
    int (*activate)(struct virtio_dev *d);
    /* The driver reset the device: stop using the queues, forget popped chains. With I/O still
     * in flight it calls virtio_reset_pending and later, from the loop, virtio_reset_done: until
     * then the device is out of service and its status does not read 0. */
    void (*reset)(struct virtio_dev *d);
    /* Event loop: the work a register callback handed over with virtio_post_work (run before
     * the device's next queue_notify). May be NULL. */
    void (*loop_work)(struct virtio_dev *d);
    /* A queue was kicked (event loop thread). */
    void (*queue_notify)(struct virtio_dev *d, struct virtq *q);
    /* Free the device's own resources (backend descriptors, buffers); may be NULL. Called
     * without dev->lock, after the transport is torn down, when the VM goes away. */
    void (*destroy)(struct virtio_dev *d);
    /* Snapshots (each may be NULL; dev->lock held). quiesce: the device is frozen (virtq_pop
     * finds nothing): finish what is in flight and give back chains it holds unused
     * (virtq_unpop), so it holds none and writes no guest memory until thawed; 0 or -errno
     * with err. save: append its own state. restore: read that back (checked first) onto a
     * device just created on new host resources, after the transport's state and, when the
     * driver was up, activate. */
    int (*quiesce)(struct virtio_dev *d, char *err, size_t errlen);
    void (*save)(struct virtio_dev *d, struct snap_buf *b);
    int (*restore)(struct virtio_dev *d, struct snap_reader *r, char *err, size_t errlen);
};

struct virtio_dev {
    const char *name;   /* "virtio-blk" etc., for messages */
    uint32_t device_id; /* virtio device type */
    uint64_t features;  /* offered */
    uint64_t acked;     /* accepted by the driver */
    uint32_t config_size;
    uint32_t config_generation;
    uint32_t status;
    uint32_t isr; /* interrupt status: bit 0 used ring, bit 1 config change */
    uint32_t device_features_sel, driver_features_sel, queue_sel;
    int nr_queues;
    uint16_t queue_max[VIRTIO_MAX_QUEUES];
    struct virtq vq[VIRTIO_MAX_QUEUES];
    const struct virtio_dev_ops *ops;
    void *priv;
    pthread_mutex_t lock; /* transport registers (vCPU threads) vs queue work (event loop) */
    bool broken;          /* the guest broke the rules: NEEDS_RESET until it resets us */
    bool frozen;          /* a snapshot is being written: no chain is taken */
    bool resetting;       /* a reset waits for I/O in flight: out of service, registers frozen */
    bool work_pending;    /* loop_work was asked for and has not run yet */
    int work_fd;          /* eventfd: wakes the loop for loop_work */
    struct loop_handler h_work;

    /* Transport. */
    struct vm *vm;
    struct loop *loop;
    uint64_t mmio_base;
    uint32_t irq;
    unsigned slot; /* the machine's n-th virtio-mmio device (names), set by whoever places it */
    int irq_fd;    /* irqfd for the device's GSI */
    /* InterruptACK in KVM: once the driver has shown it acknowledges exactly the status it
     * read (devices/virtio/mmio.c), ack_fd takes its ACK writes without an exit to ember and
     * status reads clear the bits instead; a reset goes back to the spec's way. */
    int ack_fd;         /* eventfd KVM signals on an ACK write (never read), -1 without KVM */
    bool ack_in_kvm;    /* ack_fd is registered: status reads clear */
    bool ack_want;      /* what the loop should make ack_in_kvm */
    bool isr_unacked;   /* learning: a non-zero status was read and not acknowledged yet */
    uint32_t isr_read;  /* learning: that status */
    uint8_t ack_streak; /* learning: reads acknowledged with exactly their value, in a row */
    /* Counters for metrics. */
    uint64_t stat_requests, stat_bytes, stat_errors;
    struct log_limit log_limit; /* messages the guest causes (log_guest) */
};

/* Register a device on the MMIO bus at base with GSI irq: ioeventfds for its queues, an
 * irqfd for its interrupt. 0 or -errno. The device fills name, device_id, features,
 * config_size (<= 0xf00), nr_queues, queue_max[] (powers of two <= VIRTQ_MAX_SIZE), ops and
 * priv first; this initialises everything else, including dev->lock. The transport always
 * offers VERSION_1, INDIRECT_DESC and EVENT_IDX, and withholds other transport features
 * (bits 28..41), which it does not implement. Unit-test mode: with vm->vm_fd < 0 no KVM
 * ioeventfd/irqfd is registered (the eventfds still exist and QueueNotify writes reach them
 * through the bus), and with loop NULL the kick handlers are not added to a loop. */
int virtio_mmio_init(struct virtio_dev *d, struct vm *vm, struct loop *loop, uint64_t base,
                     uint32_t irq);
/* The next three are called with dev->lock held (as inside every ops callback). */
/* Undo virtio_mmio_init (eventfds, KVM registrations, loop handlers) and call
 * ops->destroy. The bus range dies with the VM. */
void virtio_mmio_destroy(struct virtio_dev *d);
/* Interrupt the guest for used buffers on q (respects EVENT_IDX / NO_INTERRUPT). */
void virtio_notify_used(struct virtio_dev *d, struct virtq *q);
/* Configuration changed: bump the generation and interrupt. */
void virtio_config_changed(struct virtio_dev *d);
/* The driver set DRIVER_OK, the device is not broken and q is ready: q may be used. */
bool virtio_queue_running(const struct virtio_dev *d, const struct virtq *q);
/* From a register callback (vCPU, dev->lock held): run ops->loop_work on the event loop soon,
 * before the device's next queue_notify (at once when there is no loop: unit-test mode). */
void virtio_post_work(struct virtio_dev *d);
/* Inside ops->reset: the reset cannot complete now (I/O in flight). The device stays out of
 * service, its registers ignore writes and its status keeps reading non-zero until
 * virtio_reset_done (event loop, dev->lock held) completes the reset. */
void virtio_reset_pending(struct virtio_dev *d);
void virtio_reset_done(struct virtio_dev *d);
/* The guest broke the rules: mark NEEDS_RESET, stop processing, tell the guest (config
 * interrupt). Logs once per reset; queue_notify is not called again until the driver resets. */
void virtio_mark_broken(struct virtio_dev *d, const char *why);

/* Transport rules the snapshot code checks a saved state against (devices/virtio/mmio.c):
 * the status steps are a prefix of the order (ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK);
 * the accepted features are offered and include VERSION_1; the queues follow the accepted
 * ring features. */
bool virtio_status_in_order(uint32_t steps);
bool virtio_features_ok(const struct virtio_dev *d);
void virtio_apply_features(struct virtio_dev *d);

/* Snapshots (devices/virtio/snapshot.c), called without dev->lock. Freeze: no chain is taken
 * any more and the device quiesces (ops->quiesce); 0 or -errno after one error line. Thaw:
 * chains are taken again and every ready queue gets a kick. */
int virtio_dev_freeze(struct virtio_dev *d);
void virtio_dev_thaw(struct virtio_dev *d);
/* The transport's state (registers, features, queue addresses and positions) and then the
 * device's own (ops->save). The device must be frozen. */
void virtio_dev_save(struct virtio_dev *d, struct snap_buf *b);
/* Put it back on a device just created in the same slot (every field checked first, the
 * rings against guest memory); the device runs on when the vCPUs start. 0, or -EINVAL with
 * err saying what is wrong. */
int virtio_dev_restore(struct virtio_dev *d, struct snap_reader *r, char *err, size_t errlen);

#endif
