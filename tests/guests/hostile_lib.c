/* Hostile tiny guests: a small polling virtio-mmio driver that can also break every rule. */
#include "hostile.h"

void (*report_out)(const char *s) = puts_serial;
static int ncases, nfailed;
static uint64_t pool_next = POOL_START;

void out(const char *s)
{
    report_out(s);
}

void out_dec(uint64_t v)
{
    char buf[21];

    out(dec_str(v, buf));
}

void report(const char *name, int ok, const char *why)
{
    ncases++;
    out("case ");
    out(name);
    if (ok) {
        out(": ok\n");
        return;
    }
    nfailed++;
    out(": FAIL ");
    out(why);
    out("\n");
}

int cases_failed(void)
{
    return nfailed;
}

int report_summary(void)
{
    out("cases: ");
    out_dec((uint64_t)ncases);
    out(" run, ");
    out_dec((uint64_t)nfailed);
    out(" failed\n");
    return nfailed ? 1 : 0;
}

/* Not turned back into calls to themselves by the loop-to-memset optimisation. */
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void *memset(void *d, int c,
                                                                           uint64_t n)
{
    uint8_t *p = d;

    while (n--)
        *p++ = (uint8_t)c;
    return d;
}

__attribute__((optimize("no-tree-loop-distribute-patterns"))) void *memcpy(void *d, const void *s,
                                                                           uint64_t n)
{
    uint8_t *p = d;
    const uint8_t *q = s;

    while (n--)
        *p++ = *q++;
    return d;
}

void *pool_alloc(uint64_t bytes)
{
    void *p = (void *)pool_next;

    pool_next += (bytes + 0xfff) & ~0xfffUL;
    return memset(p, 0, bytes);
}

uint32_t rd(uint64_t base, uint32_t off)
{
    return mmio_read32(base + off);
}

void wr(uint64_t base, uint32_t off, uint32_t v)
{
    mmio_write32(base + off, v);
}

uint64_t find_device(uint32_t id, int nth)
{
    for (int i = 0; i < VIRTIO_SLOTS; i++) {
        uint64_t base = VIRTIO_BASE + 0x1000UL * (uint64_t)i;

        if (rd(base, R_MAGIC) == 0x74726976 && rd(base, R_DEVICE_ID) == id && nth-- == 0)
            return base;
    }
    return 0;
}

uint32_t negotiate(uint64_t base, uint64_t features)
{
    wr(base, R_STATUS, 0);
    wr(base, R_STATUS, S_ACK);
    wr(base, R_STATUS, S_ACK | S_DRV);
    wr(base, R_DRV_FEAT_SEL, 0);
    wr(base, R_DRV_FEAT, (uint32_t)features);
    wr(base, R_DRV_FEAT_SEL, 1);
    wr(base, R_DRV_FEAT, (uint32_t)(features >> 32));
    wr(base, R_STATUS, S_ACK | S_DRV | S_FOK);
    return rd(base, R_STATUS);
}

uint32_t vq_try(uint64_t base, int index, uint32_t size, uint64_t desc, uint64_t avail,
                uint64_t used)
{
    wr(base, R_QUEUE_SEL, (uint32_t)index);
    wr(base, R_QUEUE_NUM, size);
    wr(base, R_DESC_LO, (uint32_t)desc);
    wr(base, R_DESC_HI, (uint32_t)(desc >> 32));
    wr(base, R_DRIVER_LO, (uint32_t)avail);
    wr(base, R_DRIVER_HI, (uint32_t)(avail >> 32));
    wr(base, R_DEVICE_LO, (uint32_t)used);
    wr(base, R_DEVICE_HI, (uint32_t)(used >> 32));
    wr(base, R_QUEUE_READY, 1);
    return rd(base, R_QUEUE_READY);
}

uint32_t vq_setup(struct vq *q, uint64_t base, int index, uint16_t size)
{
    uint8_t *mem = pool_alloc(3 * 0x2000);

    q->base = base;
    q->index = index;
    q->size = size;
    q->desc = (volatile struct vdesc *)mem;
    q->avail = (volatile uint16_t *)(mem + 0x2000);
    q->used = (volatile uint16_t *)(mem + 0x4000);
    q->avail_idx = q->next_desc = 0;
    return vq_try(base, index, size, (uint64_t)q->desc, (uint64_t)q->avail, (uint64_t)q->used);
}

void driver_ok(uint64_t base)
{
    wr(base, R_STATUS, S_DRIVER_UP);
}

uint16_t vq_post(struct vq *q, const struct vbuf *b, int n)
{
    uint16_t head = q->next_desc;

    for (int i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((head + i) % q->size);

        q->desc[idx].addr = b[i].addr;
        q->desc[idx].len = b[i].len;
        q->desc[idx].flags = (uint16_t)(b[i].flags | (i + 1 < n ? F_NEXT : 0));
        q->desc[idx].next = (uint16_t)((idx + 1) % q->size);
    }
    q->next_desc = (uint16_t)((head + n) % q->size);
    q->avail[2 + q->avail_idx % q->size] = head;
    barrier();
    q->avail[1] = ++q->avail_idx;
    barrier();
    return head;
}

void vq_kick(struct vq *q)
{
    wr(q->base, R_NOTIFY, (uint32_t)q->index);
}

uint16_t vq_used_idx(struct vq *q)
{
    barrier();
    return q->used[1];
}

uint32_t vq_used_len(struct vq *q, uint16_t i)
{
    volatile uint32_t *e = (volatile uint32_t *)(q->used + 2);

    return e[2 * (i % q->size) + 1];
}

int vq_wait(struct vq *q, uint16_t target, uint64_t cycles)
{
    uint64_t start = rdtsc();

    while ((uint16_t)(vq_used_idx(q) - target) > 0x8000) { /* used idx before target */
        if (rdtsc() - start > cycles)
            return 0;
        __asm__ volatile("pause");
    }
    return 1;
}

int64_t vq_run(struct vq *q, const struct vbuf *b, int n)
{
    vq_post(q, b, n);
    vq_kick(q);
    if (!vq_wait(q, q->avail_idx, WAIT_MUST))
        return -1;
    return vq_used_len(q, (uint16_t)(q->avail_idx - 1));
}

int wait_needs_reset(uint64_t base)
{
    uint64_t start = rdtsc();

    while (!(rd(base, R_STATUS) & S_NR))
        if (rdtsc() - start > WAIT_MUST)
            return 0;
    return 1;
}
