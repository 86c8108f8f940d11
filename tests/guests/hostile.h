/* Hostile tiny guests: a small polling virtio-mmio driver that can also break every rule. */
#ifndef TINY_HOSTILE_H
#define TINY_HOSTILE_H

#include <stdint.h>

#include "../unit/virtio_regs.h"
#include "guest.h"

#define VIRTIO_BASE  0xc0001000UL
#define VIRTIO_SLOTS 16
#define GUEST_RAM    (64UL << 20) /* the tests run these guests with --memory 64M */
#define POOL_START   0x800000UL   /* rings and buffers are carved from here */

#define ID_NET     1
#define ID_BLK     2
#define ID_CONSOLE 3
#define ID_RNG     4

/* Waits, in TSC cycles: for something that must happen, and for something that must not. */
#define WAIT_MUST    30000000000ULL
#define WAIT_MUSTNOT 300000000ULL

struct vdesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

/* The driver's side of one split virtqueue. */
struct vq {
    uint64_t base; /* the device's registers */
    int index;
    uint16_t size;
    volatile struct vdesc *desc;
    volatile uint16_t *avail; /* flags, idx, ring[size], used_event */
    volatile uint16_t *used;  /* flags, idx, then 8-byte elements as u16 pairs */
    uint16_t avail_idx, next_desc;
};

struct vbuf {
    uint64_t addr;
    uint32_t len;
    uint16_t flags; /* F_WRITE or 0 (F_NEXT is added) */
};

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

static inline uint16_t mmio_read16(uint64_t addr)
{
    return *(volatile uint16_t *)addr;
}

static inline uint8_t mmio_read8(uint64_t addr)
{
    return *(volatile uint8_t *)addr;
}

static inline void mmio_write16(uint64_t addr, uint16_t v)
{
    *(volatile uint16_t *)addr = v;
}

static inline uint64_t mmio_read64(uint64_t addr)
{
    uint64_t v;
    __asm__ volatile("movq (%1), %0" : "=r"(v) : "r"(addr) : "memory");
    return v;
}

static inline void mmio_write64(uint64_t addr, uint64_t v)
{
    __asm__ volatile("movq %0, (%1)" : : "r"(v), "r"(addr) : "memory");
}

static inline void barrier(void)
{
    __asm__ volatile("mfence" ::: "memory");
}

/* Where the reports go (the serial port unless a guest sets another writer). */
extern void (*report_out)(const char *s);
void out(const char *s);
void out_dec(uint64_t v);
/* "case NAME: ok" or "case NAME: FAIL <why>"; counts cases and failures. */
void report(const char *name, int ok, const char *why);
int cases_failed(void);
/* "cases: N run, M failed"; returns the exit status (0 or 1). */
int report_summary(void);

void *pool_alloc(uint64_t bytes); /* zeroed, 4 KiB-aligned, never freed */
void *memset(void *d, int c, uint64_t n);
void *memcpy(void *d, const void *s, uint64_t n);

uint32_t rd(uint64_t base, uint32_t off);
void wr(uint64_t base, uint32_t off, uint32_t v);
/* Base of the nth device (0-based) with this id, or 0. */
uint64_t find_device(uint32_t id, int nth);
/* Reset, ACK, DRIVER, features, FEATURES_OK: the status read back. */
uint32_t negotiate(uint64_t base, uint64_t features);
/* Queue at fresh pool memory; returns QueueReady as read back. */
uint32_t vq_setup(struct vq *q, uint64_t base, int index, uint16_t size);
/* Program ring addresses (raw) for queue index with size; returns QueueReady read back. */
uint32_t vq_try(uint64_t base, int index, uint32_t size, uint64_t desc, uint64_t avail,
                uint64_t used);
void driver_ok(uint64_t base);
/* Chain of n buffers into consecutive descriptors, published; returns its head. */
uint16_t vq_post(struct vq *q, const struct vbuf *b, int n);
void vq_kick(struct vq *q);
uint16_t vq_used_idx(struct vq *q);
uint32_t vq_used_len(struct vq *q, uint16_t i);
/* Wait until the used index reaches `target`; 1 if it did within `cycles`. */
int vq_wait(struct vq *q, uint16_t target, uint64_t cycles);
/* post + kick + wait for it: the used length, or -1 on time-out. */
int64_t vq_run(struct vq *q, const struct vbuf *b, int n);
/* Wait for the device to say NEEDS_RESET; 1 if it did. */
int wait_needs_reset(uint64_t base);

#endif
