/* Split virtqueues: take validated descriptor chains from the avail ring, return them on used. */
#include "virtio.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "virtio 1.x rings are little-endian");

/* Ring layout (virtio 1.x "Split Virtqueues"). */
#define DESC_F_NEXT          1
#define DESC_F_WRITE         2
#define DESC_F_INDIRECT      4
#define AVAIL_F_NO_INTERRUPT 1
#define DESC_SIZE            16u
#define DESC_ALIGN           16u
#define AVAIL_ALIGN          2u
#define USED_ALIGN           4u
#define RING_IDX_OFF         2u /* flags u16, then idx u16 */
#define RING_ENTRIES_OFF     4u
#define USED_ELEM_SIZE       8u

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
_Static_assert(sizeof(struct desc) == DESC_SIZE, "descriptor layout");

struct used_elem {
    uint32_t id;
    uint32_t len;
};
_Static_assert(sizeof(struct used_elem) == USED_ELEM_SIZE, "used element layout");

/* State while walking one chain: where the buffers go and what was seen so far. */
struct walk {
    struct virtq_chain *c;
    bool seen_write; /* a device-writable descriptor came already */
};

static uint64_t avail_bytes(uint16_t size)
{
    return RING_ENTRIES_OFF + 2ULL * size + 2; /* flags, idx, ring[size], used_event */
}

static uint64_t used_bytes(uint16_t size)
{
    return RING_ENTRIES_OFF + (uint64_t)USED_ELEM_SIZE * size + 2; /* ..., avail_event */
}

static uint32_t queue_limit(const struct virtq *q)
{
    const struct virtio_dev *d = q->dev;

    if (d && q->index >= 0 && q->index < d->nr_queues && d->queue_max[q->index] < VIRTQ_MAX_SIZE)
        return d->queue_max[q->index];
    return VIRTQ_MAX_SIZE;
}

int virtq_check(const struct virtq *q)
{
    uint32_t size = q->size;

    if (!q->mem || size == 0 || size > queue_limit(q) || (size & (size - 1)))
        return -EINVAL;
    if (q->desc_gpa % DESC_ALIGN || q->avail_gpa % AVAIL_ALIGN || q->used_gpa % USED_ALIGN)
        return -EINVAL;
    if (!guest_ptr(q->mem, q->desc_gpa, (uint64_t)DESC_SIZE * size) ||
        !guest_ptr(q->mem, q->avail_gpa, avail_bytes(q->size)) ||
        !guest_ptr(q->mem, q->used_gpa, used_bytes(q->size)))
        return -EINVAL;
    return 0;
}

int virtq_enable(struct virtq *q)
{
    if (virtq_check(q))
        return -EINVAL;
    q->desc_host = guest_ptr(q->mem, q->desc_gpa, (uint64_t)DESC_SIZE * q->size);
    q->avail_host = guest_ptr(q->mem, q->avail_gpa, avail_bytes(q->size));
    q->used_host = guest_ptr(q->mem, q->used_gpa, used_bytes(q->size));
    q->mapped_size = q->size;
    q->ready = true;
    return 0;
}

/* Host pointers into the rings mapped by virtq_enable(), which proved that each ring lies
 * wholly in RAM, aligned, so every offset below stays inside it. */
static uint16_t *avail_field(const struct virtq *q, uint64_t off)
{
    return (uint16_t *)(void *)(q->avail_host + off);
}

static uint16_t *avail_idx(const struct virtq *q)
{
    return avail_field(q, RING_IDX_OFF);
}

static uint16_t *used_event(const struct virtq *q)
{
    return avail_field(q, RING_ENTRIES_OFF + 2ULL * q->size);
}

static uint16_t *used_idx(const struct virtq *q)
{
    return (uint16_t *)(void *)(q->used_host + RING_IDX_OFF);
}

static uint16_t *avail_event(const struct virtq *q)
{
    return (uint16_t *)(void *)(q->used_host + RING_ENTRIES_OFF +
                                (uint64_t)USED_ELEM_SIZE * q->size);
}

/* A queue the device may use: made ready by virtq_enable(), so its rings are mapped for its
 * size (the transport cannot change it while ready; a size set behind its back stops it). */
static bool usable(const struct virtq *q)
{
    return q->ready && q->desc_host && q->avail_host && q->used_host && q->size == q->mapped_size &&
           q->size != 0;
}

/* How many chains the driver has made available; -EINVAL if it claims more than fit. */
static int avail_pending(const struct virtq *q, uint16_t *pending)
{
    uint16_t idx = __atomic_load_n(avail_idx(q), __ATOMIC_ACQUIRE);
    uint16_t n = (uint16_t)(idx - q->last_avail);

    if (n > q->size)
        return -EINVAL;
    *pending = n;
    return 0;
}

/* With EVENT_IDX: ask the driver to kick us when it makes entry last_avail available. */
static void publish_avail_event(const struct virtq *q)
{
    __atomic_store_n(avail_event(q), q->last_avail, __ATOMIC_RELAXED);
}

static int add_buf(const struct virtq *q, struct walk *w, const struct desc *d)
{
    struct virtq_chain *c = w->c;
    bool write = d->flags & DESC_F_WRITE;
    uint32_t *total = write ? &c->in_len : &c->out_len;
    void *host;

    if (!write && w->seen_write)
        return -EINVAL; /* readable buffers must all come before writable ones */
    w->seen_write |= write;
    if (d->len == 0)
        return 0; /* nothing to transfer: not translated, not recorded */
    host = guest_ptr(q->mem, d->addr, d->len);
    if (!host || c->nbufs >= VIRTQ_MAX_SIZE || d->len > UINT32_MAX - *total)
        return -EINVAL;
    *total += d->len;
    c->buf[c->nbufs++] = (struct virtq_buf){.host = host, .len = d->len, .write = write};
    return 0;
}

/* Walk an indirect table: its own NEXT links, no nesting, at most VIRTQ_MAX_SIZE entries. */
static int walk_indirect(struct virtq *q, struct walk *w, const struct desc *ind)
{
    uint32_t n = ind->len / DESC_SIZE, seen = 0;
    const uint8_t *table;
    uint16_t i = 0;
    struct desc d;
    int err;

    if (!q->indirect || (ind->flags & DESC_F_NEXT))
        return -EINVAL;
    if (ind->len == 0 || ind->len % DESC_SIZE || n > VIRTQ_MAX_SIZE)
        return -EINVAL;
    table = guest_ptr(q->mem, ind->addr, ind->len);
    if (!table)
        return -EINVAL;
    for (;; q->turn_descs++) {
        if (++seen > n)
            return -EINVAL;                                   /* a loop inside the table */
        memcpy(&d, table + (size_t)i * DESC_SIZE, sizeof(d)); /* i < n: inside the table */
        if (d.flags & DESC_F_INDIRECT)
            return -EINVAL;
        err = add_buf(q, w, &d);
        if (err)
            return err;
        if (!(d.flags & DESC_F_NEXT))
            return 0;
        if (d.next >= n)
            return -EINVAL;
        i = d.next;
    }
}

/* Copy the chain starting at head out of the descriptor table, each descriptor read once. */
static int walk_chain(struct virtq *q, uint16_t head, struct virtq_chain *c)
{
    struct walk w = {.c = c};
    uint32_t seen = 0;
    uint16_t i = head;
    struct desc d;
    int err;

    c->head = head;
    c->nbufs = 0;
    c->out_len = c->in_len = 0;
    if (head >= q->size)
        return -EINVAL;
    for (;; q->turn_descs++) {
        if (++seen > q->size)
            return -EINVAL; /* more descriptors than the table holds: a loop */
        memcpy(&d, q->desc_host + (size_t)i * DESC_SIZE, sizeof(d)); /* i < size: in the table */
        if (d.flags & DESC_F_INDIRECT)
            return walk_indirect(q, &w, &d); /* never has NEXT: the chain ends here */
        err = add_buf(q, &w, &d);
        if (err)
            return err;
        if (!(d.flags & DESC_F_NEXT))
            return 0;
        if (d.next >= q->size)
            return -EINVAL;
        i = d.next;
    }
}

void virtq_turn_begin(struct virtq *q)
{
    q->turn_chains = q->turn_descs = 0;
}

bool virtq_turn_spent(const struct virtq *q)
{
    return q->turn_chains == UINT32_MAX;
}

void virtq_rekick(struct virtq *q)
{
    uint64_t one = 1;

    if (q->kick_fd >= 0)
        (void)!write(q->kick_fd, &one, sizeof(one));
}

int virtq_pop(struct virtq *q, struct virtq_chain *chain)
{
    uint16_t pending, head;
    int err;

    if (q->dev && q->dev->frozen)
        return VIRTQ_EMPTY; /* a snapshot is being written: touch no guest memory */
    if (!usable(q))
        return -EINVAL;
    if (q->turn_chains >= VIRTQ_BUDGET || q->turn_descs >= VIRTQ_DESC_BUDGET) {
        /* Turn over: the rest waits for a later round (a turn starts at each kick). */
        if (q->turn_chains != UINT32_MAX)
            virtq_rekick(q);
        q->turn_chains = UINT32_MAX; /* kicked once per turn */
        return VIRTQ_EMPTY;
    }
    err = avail_pending(q, &pending);
    if (!err && pending == 0 && q->event_idx) {
        /* Going idle: ask for a kick for the next entry, then look again, so an entry the
         * driver added before it could see avail_event is not missed. */
        publish_avail_event(q);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        err = avail_pending(q, &pending);
    }
    if (err)
        return err;
    if (pending == 0)
        return VIRTQ_EMPTY;
    /* The acquire load of avail->idx orders this read after the driver's ring write. */
    head = __atomic_load_n(avail_field(q, RING_ENTRIES_OFF + 2ULL * (q->last_avail % q->size)),
                           __ATOMIC_RELAXED);
    q->turn_chains++;
    err = walk_chain(q, head, chain);
    if (err)
        return err;
    q->last_avail++;
    /* avail_event stays where it was while entries are pending: the driver need not kick for
     * what it adds meanwhile, this loop takes it. The empty pop above moves it. */
    return 1;
}

int virtq_add_used(struct virtq *q, uint16_t head, uint32_t written)
{
    struct used_elem e = {.id = head, .len = written};

    if (!usable(q) || head >= q->size)
        return -EINVAL;
    memcpy(q->used_host + RING_ENTRIES_OFF + (size_t)USED_ELEM_SIZE * (q->used_idx % q->size), &e,
           sizeof(e));
    q->used_idx++;
    return 0;
}

void virtq_publish_used(struct virtq *q)
{
    /* Release: the elements are visible before the index that publishes them. */
    if (usable(q))
        __atomic_store_n(used_idx(q), q->used_idx, __ATOMIC_RELEASE);
}

int virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
    int err = virtq_add_used(q, head, written);

    if (!err)
        virtq_publish_used(q);
    return err;
}

/* The driver wants an interrupt when used idx moves past event, i.e. event in [old, new). */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq_should_notify(struct virtq *q)
{
    uint16_t old_idx = q->signalled_used, new_idx = q->used_idx;
    bool valid = q->signalled_valid;

    if (!usable(q))
        return false;
    virtq_publish_used(q);
    q->signalled_used = new_idx;
    q->signalled_valid = true;
    if (old_idx == new_idx)
        return false; /* nothing pushed since the last decision (or since the start) */
    /* Our used idx store must be visible before we read the driver's suppression state,
     * or it could decide not to look while we decide not to interrupt. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!q->event_idx)
        return !(__atomic_load_n(avail_field(q, 0), __ATOMIC_RELAXED) & AVAIL_F_NO_INTERRUPT);
    if (!valid)
        return true;
    return need_event(__atomic_load_n(used_event(q), __ATOMIC_RELAXED), new_idx, old_idx);
}

void virtq_unpop(struct virtq *q)
{
    q->last_avail--;
}

int virtq_used_chain(struct virtq *q, uint16_t back, struct virtq_chain *chain)
{
    struct used_elem e;

    if (!q->ready || virtq_check(q))
        return -EINVAL;
    if (back >= q->size || back >= q->used_idx)
        return VIRTQ_EMPTY; /* fewer were pushed (since the index last wrapped) */
    if (guest_read(q->mem,
                   q->used_gpa + RING_ENTRIES_OFF +
                           (uint64_t)USED_ELEM_SIZE *
                                   ((uint16_t)(q->used_idx - back - 1) % q->size),
                   &e, sizeof(e)))
        return -EINVAL;
    if (e.id >= q->size || walk_chain(q, (uint16_t)e.id, chain))
        return -EINVAL;
    return 1;
}

void virtq_reset(struct virtq *q)
{
    q->size = 0;
    q->ready = false;
    q->desc_gpa = q->avail_gpa = q->used_gpa = 0;
    q->desc_host = q->avail_host = q->used_host = NULL;
    q->mapped_size = 0;
    q->last_avail = q->used_idx = q->signalled_used = 0;
    q->signalled_valid = false;
    q->event_idx = q->indirect = false;
    q->turn_chains = q->turn_descs = 0;
}

/* Copy between a chain's buffers of one direction and a flat host buffer: into `out` from the
 * readable buffers, or from `in` into the writable ones. */
static size_t chain_copy(const struct virtq_chain *c, size_t offset, uint8_t *out,
                         const uint8_t *in, size_t len)
{
    bool write = in != NULL;
    size_t done = 0;

    for (uint32_t i = 0; i < c->nbufs && i < VIRTQ_MAX_SIZE && done < len; i++) {
        const struct virtq_buf *b = &c->buf[i];
        size_t n;

        if (b->write != write)
            continue;
        if (offset >= b->len) {
            offset -= b->len;
            continue;
        }
        n = b->len - offset;
        if (n > len - done)
            n = len - done;
        if (write)
            memcpy((uint8_t *)b->host + offset, in + done, n);
        else
            memcpy(out + done, (const uint8_t *)b->host + offset, n);
        done += n;
        offset = 0;
    }
    return done;
}

size_t virtq_chain_read(const struct virtq_chain *c, size_t offset, void *dst, size_t len)
{
    return chain_copy(c, offset, dst, NULL, len);
}

size_t virtq_chain_write(const struct virtq_chain *c, size_t offset, const void *src, size_t len)
{
    return chain_copy(c, offset, NULL, src, len);
}
