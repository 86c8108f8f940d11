/* A fake VM for device unit tests and fuzz targets: RAM and MMIO bus without KVM, driver side. */
#ifndef EMBER_FAKE_VM_H
#define EMBER_FAKE_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "eventloop.h"
#include "virtio_regs.h"
#include "virtio.h"
#include "vm.h"

struct fake_vm {
    struct vm vm;
    struct loop loop;
};

/* No KVM (vm_fd -1), an empty MMIO bus, mem_size bytes of RAM and an event loop. Exits the
 * process on failure: a test or fuzzer cannot go on without them. */
void fake_vm_init(struct fake_vm *f, uint64_t mem_size);
void fake_vm_free(struct fake_vm *f);
/* n rounds of the event loop, each waiting up to timeout_ms. 0 or the first -errno. */
int fake_vm_run(struct fake_vm *f, int n, int timeout_ms);

/* MMIO accesses of len 1, 2, 4 (or 8) bytes at base + off; an access nothing answers is a
 * harness bug and exits. */
uint64_t fake_rdn(struct fake_vm *f, uint64_t base, uint64_t off, uint32_t len);
void fake_wrn(struct fake_vm *f, uint64_t base, uint64_t off, uint64_t v, uint32_t len);
uint32_t fake_rd(struct fake_vm *f, uint64_t base, uint64_t off);
void fake_wr(struct fake_vm *f, uint64_t base, uint64_t off, uint32_t v);

/* Guest memory helpers; an address outside RAM exits (use guest_write to test those). */
void fake_put(struct fake_vm *f, uint64_t gpa, const void *src, uint64_t len);
void fake_get(struct fake_vm *f, uint64_t gpa, void *dst, uint64_t len);
void fake_put16(struct fake_vm *f, uint64_t gpa, uint16_t v);
uint16_t fake_get16(struct fake_vm *f, uint64_t gpa);
uint32_t fake_get32(struct fake_vm *f, uint64_t gpa);
/* Descriptor i of the table at `table` (little-endian addr, len, flags, next). */
void fake_desc(struct fake_vm *f, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
               uint16_t flags, uint16_t next);

/* Reset the device, then ACKNOWLEDGE | DRIVER, offer `features`, FEATURES_OK. Returns the
 * status read back (S_ACK | S_DRV | S_FOK when the device took the features). */
uint32_t fake_negotiate(struct fake_vm *f, uint64_t base, uint64_t features);
/* The 64-bit feature set the device offers. */
uint64_t fake_offered(struct fake_vm *f, uint64_t base);

/* The body of an echo device's queue_notify: answers every chain of q by writing "ok" into it
 * (after check(f, chain) when check is not NULL); a bad chain marks the device broken. */
void fake_echo_queue(struct fake_vm *f, struct virtio_dev *d, struct virtq *q,
                     struct virtq_chain *chain,
                     void (*check)(struct fake_vm *f, const struct virtq_chain *c));

/* One buffer of a chain: flags is F_WRITE or 0 (F_NEXT is added by fake_queue_add). */
struct fake_buf {
    uint64_t gpa;
    uint32_t len;
    uint16_t flags;
};

/* The guest driver's view of one split virtqueue. */
struct fake_queue {
    struct fake_vm *f;
    uint64_t base; /* the device's MMIO base */
    int index;
    uint16_t size;
    uint64_t desc, avail, used;
    uint16_t avail_idx, next_desc, used_seen;
};

/* Zero the rings, then program queue `index` (size, addresses) and set QueueReady; returns
 * QueueReady as read back. */
uint32_t fake_queue_setup(struct fake_queue *q, struct fake_vm *f, uint64_t base, int index,
                          uint16_t size, uint64_t desc, uint64_t avail, uint64_t used);
/* Write a chain of n buffers into consecutive descriptors and the next avail slot, without
 * publishing it; returns its head. */
uint16_t fake_queue_add(struct fake_queue *q, const struct fake_buf *b, int n);
/* Publish every added chain (store the avail index). */
void fake_queue_publish(struct fake_queue *q);
/* add + publish. */
uint16_t fake_queue_post(struct fake_queue *q, const struct fake_buf *b, int n);
/* QueueNotify for this queue. */
void fake_queue_kick(struct fake_queue *q);
uint16_t fake_used_idx(const struct fake_queue *q);
/* Used element i (mod size): the chain's head and the length the device wrote. */
void fake_used_elem(const struct fake_queue *q, uint16_t i, uint32_t *id, uint32_t *len);
uint32_t fake_used_len(const struct fake_queue *q, uint16_t i);

/* A guest that makes one chain available again and again on its own thread, as fast as it can
 * (the ring kept as full as the rules allow), until fake_repost_stop: a device whose handler
 * has no budget never returns from it. */
struct fake_repost {
    struct fake_queue *q;
    uint16_t head;
    atomic_int stop;
    atomic_ullong posted;
    pthread_t thread;
};
/* Start reposting head (a chain added with fake_queue_add and published) on q. */
void fake_repost_start(struct fake_repost *r, struct fake_queue *q, uint16_t head);
void fake_repost_stop(struct fake_repost *r);
/* One round of the event loop must come back within `seconds` (else the process fails with a
 * message naming `what`: a handler kept the loop to itself). */
int fake_vm_run_bounded(struct fake_vm *f, int seconds, const char *what);
/* The "same head forever" flood: head (added and published) is reposted on q from another
 * thread while the loop runs `rounds` rounds, each kicked and each bounded as above. Returns
 * the most chains one round answered (the used index's move). */
unsigned fake_repost_flood(struct fake_vm *f, struct fake_queue *q, uint16_t head, int rounds,
                           const char *what);

#endif
