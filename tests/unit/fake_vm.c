/* A fake VM for device unit tests and fuzz targets: RAM and MMIO bus without KVM, driver side. */
#include "fake_vm.h"

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void __attribute__((noreturn)) harness_fail(const char *what, uint64_t addr)
{
    fprintf(stderr, "fake_vm: %s at %#llx failed\n", what, (unsigned long long)addr);
    exit(99);
}

void fake_vm_init(struct fake_vm *f, uint64_t mem_size)
{
    memset(f, 0, sizeof(*f));
    f->vm.vm_fd = -1;
    f->vm.kvm_fd = -1;
    f->vm.wake_fd = -1;
    f->vm.exit_status = -1;
    bus_init(&f->vm.mmio);
    bus_init(&f->vm.pio);
    if (guest_mem_init(&f->vm.mem, mem_size, 0))
        harness_fail("guest_mem_init", mem_size);
    if (loop_init(&f->loop))
        harness_fail("loop_init", 0);
}

void fake_vm_free(struct fake_vm *f)
{
    loop_close(&f->loop);
    guest_mem_free(&f->vm.mem);
}

int fake_vm_run(struct fake_vm *f, int n, int timeout_ms)
{
    for (int i = 0; i < n; i++) {
        int err = loop_run_once(&f->loop, timeout_ms);

        if (err)
            return err;
    }
    return 0;
}

uint64_t fake_rdn(struct fake_vm *f, uint64_t base, uint64_t off, uint32_t len)
{
    uint64_t v = 0;

    if (bus_read(&f->vm.mmio, base + off, (uint8_t *)&v, len))
        harness_fail("MMIO read", base + off);
    return v;
}

void fake_wrn(struct fake_vm *f, uint64_t base, uint64_t off, uint64_t v, uint32_t len)
{
    if (bus_write(&f->vm.mmio, base + off, (const uint8_t *)&v, len))
        harness_fail("MMIO write", base + off);
}

uint32_t fake_rd(struct fake_vm *f, uint64_t base, uint64_t off)
{
    return (uint32_t)fake_rdn(f, base, off, 4);
}

void fake_wr(struct fake_vm *f, uint64_t base, uint64_t off, uint32_t v)
{
    fake_wrn(f, base, off, v, 4);
}

void fake_put(struct fake_vm *f, uint64_t gpa, const void *src, uint64_t len)
{
    if (guest_write(&f->vm.mem, gpa, src, len))
        harness_fail("guest write", gpa);
}

void fake_get(struct fake_vm *f, uint64_t gpa, void *dst, uint64_t len)
{
    if (guest_read(&f->vm.mem, gpa, dst, len))
        harness_fail("guest read", gpa);
}

void fake_put16(struct fake_vm *f, uint64_t gpa, uint16_t v)
{
    fake_put(f, gpa, &v, sizeof(v));
}

uint16_t fake_get16(struct fake_vm *f, uint64_t gpa)
{
    uint16_t v;

    fake_get(f, gpa, &v, sizeof(v));
    return v;
}

uint32_t fake_get32(struct fake_vm *f, uint64_t gpa)
{
    uint32_t v;

    fake_get(f, gpa, &v, sizeof(v));
    return v;
}

void fake_desc(struct fake_vm *f, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
               uint16_t flags, uint16_t next)
{
    uint8_t d[16];

    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
    fake_put(f, table + 16ULL * i, d, sizeof(d));
}

uint32_t fake_negotiate(struct fake_vm *f, uint64_t base, uint64_t features)
{
    fake_wr(f, base, R_STATUS, 0);
    fake_wr(f, base, R_STATUS, S_ACK);
    fake_wr(f, base, R_STATUS, S_ACK | S_DRV);
    fake_wr(f, base, R_DRV_FEAT_SEL, 0);
    fake_wr(f, base, R_DRV_FEAT, (uint32_t)features);
    fake_wr(f, base, R_DRV_FEAT_SEL, 1);
    fake_wr(f, base, R_DRV_FEAT, (uint32_t)(features >> 32));
    fake_wr(f, base, R_STATUS, S_ACK | S_DRV | S_FOK);
    return fake_rd(f, base, R_STATUS);
}

uint64_t fake_offered(struct fake_vm *f, uint64_t base)
{
    uint64_t lo;

    fake_wr(f, base, R_DEV_FEAT_SEL, 0);
    lo = fake_rd(f, base, R_DEV_FEAT);
    fake_wr(f, base, R_DEV_FEAT_SEL, 1);
    return lo | (uint64_t)fake_rd(f, base, R_DEV_FEAT) << 32;
}

/* Bytes of each ring of a queue of `size` entries. */
static uint64_t desc_bytes(uint16_t size)
{
    return 16ULL * size;
}

static uint64_t avail_bytes(uint16_t size)
{
    return 6 + 2ULL * size;
}

static uint64_t used_bytes(uint16_t size)
{
    return 6 + 8ULL * size;
}

static void zero(struct fake_vm *f, uint64_t gpa, uint64_t len)
{
    void *p = guest_ptr(&f->vm.mem, gpa, len);

    if (!p)
        harness_fail("ring outside RAM", gpa);
    memset(p, 0, len);
}

uint32_t fake_queue_setup(struct fake_queue *q, struct fake_vm *f, uint64_t base, int index,
                          uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
    *q = (struct fake_queue){.f = f,
                             .base = base,
                             .index = index,
                             .size = size,
                             .desc = desc,
                             .avail = avail,
                             .used = used};
    zero(f, desc, desc_bytes(size));
    zero(f, avail, avail_bytes(size));
    zero(f, used, used_bytes(size));
    fake_wr(f, base, R_QUEUE_SEL, (uint32_t)index);
    fake_wr(f, base, R_QUEUE_NUM, size);
    fake_wr(f, base, R_DESC_LO, (uint32_t)desc);
    fake_wr(f, base, R_DESC_HI, (uint32_t)(desc >> 32));
    fake_wr(f, base, R_DRIVER_LO, (uint32_t)avail);
    fake_wr(f, base, R_DRIVER_HI, (uint32_t)(avail >> 32));
    fake_wr(f, base, R_DEVICE_LO, (uint32_t)used);
    fake_wr(f, base, R_DEVICE_HI, (uint32_t)(used >> 32));
    fake_wr(f, base, R_QUEUE_READY, 1);
    return fake_rd(f, base, R_QUEUE_READY);
}

uint16_t fake_queue_add(struct fake_queue *q, const struct fake_buf *b, int n)
{
    uint16_t head = q->next_desc;

    for (int i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((head + i) % q->size);
        uint16_t next = (uint16_t)((idx + 1) % q->size);
        uint16_t flags = (uint16_t)(b[i].flags | (i + 1 < n ? F_NEXT : 0));

        fake_desc(q->f, q->desc, idx, b[i].gpa, b[i].len, flags, next);
    }
    q->next_desc = (uint16_t)((head + n) % q->size);
    fake_put16(q->f, q->avail + 4 + 2ULL * (q->avail_idx % q->size), head);
    q->avail_idx++;
    return head;
}

void fake_queue_publish(struct fake_queue *q)
{
    fake_put16(q->f, q->avail + 2, q->avail_idx);
}

uint16_t fake_queue_post(struct fake_queue *q, const struct fake_buf *b, int n)
{
    uint16_t head = fake_queue_add(q, b, n);

    fake_queue_publish(q);
    return head;
}

void fake_queue_kick(struct fake_queue *q)
{
    fake_wr(q->f, q->base, R_NOTIFY, (uint32_t)q->index);
}

uint16_t fake_used_idx(const struct fake_queue *q)
{
    return fake_get16(q->f, q->used + 2);
}

void fake_used_elem(const struct fake_queue *q, uint16_t i, uint32_t *id, uint32_t *len)
{
    uint64_t e = q->used + 4 + 8ULL * (i % q->size);

    *id = fake_get32(q->f, e);
    *len = fake_get32(q->f, e + 4);
}

uint32_t fake_used_len(const struct fake_queue *q, uint16_t i)
{
    uint32_t id, len;

    fake_used_elem(q, i, &id, &len);
    return len;
}

void fake_echo_queue(struct fake_vm *f, struct virtio_dev *d, struct virtq *q,
                     struct virtq_chain *chain,
                     void (*check)(struct fake_vm *f, const struct virtq_chain *c))
{
    int r;

    while ((r = virtq_pop(q, chain)) == 1) {
        if (check)
            check(f, chain);
        virtq_push(q, chain->head, (uint32_t)virtq_chain_write(chain, 0, "ok", 2));
    }
    if (r < 0)
        virtio_mark_broken(d, "bad chain");
    virtio_notify_used(d, q);
}

static void *repost_thread(void *arg)
{
    struct fake_repost *r = arg;
    struct fake_queue *q = r->q;
    uint16_t *avail_idx = guest_ptr(&q->f->vm.mem, q->avail + 2, 2);
    uint16_t *used_idx = guest_ptr(&q->f->vm.mem, q->used + 2, 2);
    uint16_t *ring = guest_ptr(&q->f->vm.mem, q->avail + 4, 2ULL * q->size);

    while (!atomic_load(&r->stop)) {
        uint16_t used = __atomic_load_n(used_idx, __ATOMIC_ACQUIRE);

        if ((uint16_t)(q->avail_idx - used) >= q->size)
            continue;
        ring[q->avail_idx % q->size] = r->head;
        q->avail_idx++;
        __atomic_store_n(avail_idx, q->avail_idx, __ATOMIC_RELEASE);
        atomic_fetch_add(&r->posted, 1);
    }
    return NULL;
}

void fake_repost_start(struct fake_repost *r, struct fake_queue *q, uint16_t head)
{
    r->q = q;
    r->head = head;
    atomic_store(&r->stop, 0);
    atomic_store(&r->posted, 0);
    if (pthread_create(&r->thread, NULL, repost_thread, r))
        harness_fail("pthread_create", 0);
}

void fake_repost_stop(struct fake_repost *r)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->thread, NULL);
}

static const char *bounded_what;

static void bounded_alarm(int sig)
{
    static const char msg[] = "fake_vm: one round of the event loop did not come back: ";

    (void)sig;
    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)!write(STDERR_FILENO, bounded_what, strlen(bounded_what));
    (void)!write(STDERR_FILENO, "\n", 1);
    _exit(1);
}

int fake_vm_run_bounded(struct fake_vm *f, int seconds, const char *what)
{
    int err;

    bounded_what = what;
    signal(SIGALRM, bounded_alarm);
    alarm((unsigned)seconds);
    err = loop_run_once(&f->loop, 1000);
    alarm(0);
    return err;
}

unsigned fake_repost_flood(struct fake_vm *f, struct fake_queue *q, uint16_t head, int rounds,
                           const char *what)
{
    struct fake_repost r;
    unsigned most = 0;

    uint16_t *avail_idx = guest_ptr(&f->vm.mem, q->avail + 2, 2);

    fake_repost_start(&r, q, head);
    for (int i = 0; i < rounds; i++) {
        uint16_t before = fake_used_idx(q);
        unsigned n;

        /* The guest has the ring full before the device looks (then keeps it so). */
        while ((uint16_t)(__atomic_load_n(avail_idx, __ATOMIC_ACQUIRE) - before) < q->size)
            sched_yield();
        fake_queue_kick(q);
        if (fake_vm_run_bounded(f, 10, what))
            harness_fail("loop_run_once", 0);
        n = (uint16_t)(fake_used_idx(q) - before);
        if (n > most)
            most = n;
    }
    fake_repost_stop(&r);
    return most;
}
