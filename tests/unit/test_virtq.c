/* Unit tests for split virtqueues against fake guest memory: chains, indirect, EVENT_IDX, abuse. */
#include "check.h"
#include "fake_vm.h"
#include "guest_mem.h"
#include "virtio.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* The guest driver's view of the ring layout, written independently of queue.c. */
#define F_NEXT     1
#define F_WRITE    2
#define F_INDIRECT 4

#define MEM_SIZE  (16ULL << 20)
#define DESC_GPA  0x10000ULL
#define AVAIL_GPA 0x20000ULL
#define USED_GPA  0x30000ULL
#define TABLE_GPA 0x40000ULL /* indirect tables */
#define DATA_GPA  0x100000ULL

static struct guest_mem gm;
static struct virtq q;
static struct virtq_chain chain;
static uint16_t guest_avail; /* the driver's avail idx */

static void wr16(uint64_t gpa, uint16_t v)
{
    CHECK_EQ(guest_write(&gm, gpa, &v, sizeof(v)), 0);
}

static uint16_t rd16(uint64_t gpa)
{
    uint16_t v = 0xdead;

    CHECK_EQ(guest_read(&gm, gpa, &v, sizeof(v)), 0);
    return v;
}

static uint32_t rd32(uint64_t gpa)
{
    uint32_t v = 0xdeadbeef;

    CHECK_EQ(guest_read(&gm, gpa, &v, sizeof(v)), 0);
    return v;
}

/* Write descriptor i of the table at `table`: addr, len, flags, next (little-endian). */
static void desc_at(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                    uint16_t next)
{
    uint8_t d[16];

    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
    CHECK_EQ(guest_write(&gm, table + 16ULL * i, d, sizeof(d)), 0);
}

static void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    desc_at(DESC_GPA, i, addr, len, flags, next);
}

static void set_avail_idx(uint16_t idx)
{
    guest_avail = idx;
    wr16(AVAIL_GPA + 2, idx);
}

/* Make the chain at `head` available. */
static void avail_add(uint16_t head)
{
    wr16(AVAIL_GPA + 4 + 2ULL * (guest_avail % q.size), head);
    set_avail_idx((uint16_t)(guest_avail + 1));
}

static uint16_t used_idx(void)
{
    return rd16(USED_GPA + 2);
}

static uint16_t avail_event(void)
{
    return rd16(USED_GPA + 4 + 8ULL * q.size);
}

static void set_used_event(uint16_t v)
{
    wr16(AVAIL_GPA + 4 + 2ULL * q.size, v);
}

/* A fresh, valid queue of `size` with zeroed rings, starting at ring index `start`. */
static void setup(uint16_t size, uint16_t start)
{
    memset(guest_ptr(&gm, DESC_GPA, 0x40000), 0, 0x40000);
    memset(&q, 0, sizeof(q));
    q.mem = &gm;
    q.size = size;
    q.desc_gpa = DESC_GPA;
    q.avail_gpa = AVAIL_GPA;
    q.used_gpa = USED_GPA;
    q.kick_fd = -1;
    CHECK_EQ(virtq_enable(&q), 0);
    q.last_avail = q.used_idx = q.signalled_used = start;
    wr16(USED_GPA + 2, start);
    set_avail_idx(start);
}

/* A single one-descriptor chain with the given descriptor, popped. */
static int pop_one(uint64_t addr, uint32_t len, uint16_t flags)
{
    setup(16, 0);
    desc(0, addr, len, flags, 0);
    avail_add(0);
    return virtq_pop(&q, &chain);
}

static void test_simple(void)
{
    uint8_t buf[8] = {0};

    setup(16, 0);
    CHECK_EQ(virtq_pop(&q, &chain), VIRTQ_EMPTY);
    CHECK_EQ(guest_write(&gm, DATA_GPA, "hello", 5), 0);
    desc(3, DATA_GPA, 5, 0, 0);
    avail_add(3);
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    CHECK_EQ(chain.head, 3);
    CHECK_EQ(chain.nbufs, 1);
    CHECK_EQ(chain.out_len, 5);
    CHECK_EQ(chain.in_len, 0);
    CHECK(chain.buf[0].host == guest_ptr(&gm, DATA_GPA, 5));
    CHECK(!chain.buf[0].write);
    CHECK_EQ(virtq_chain_read(&chain, 0, buf, sizeof(buf)), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK_EQ(virtq_chain_write(&chain, 0, "x", 1), 0); /* no writable buffers */
    CHECK_EQ(virtq_pop(&q, &chain), VIRTQ_EMPTY);
    CHECK_EQ(q.last_avail, 1);

    CHECK_EQ(virtq_push(&q, 3, 0), 0);
    CHECK_EQ(used_idx(), 1);
    CHECK_EQ(rd32(USED_GPA + 4), 3);
    CHECK_EQ(rd32(USED_GPA + 8), 0);
    CHECK_EQ(virtq_push(&q, 16, 0), -EINVAL); /* head beyond the table */
    CHECK_EQ(used_idx(), 1);

    /* A queue that is not ready is never touched. */
    avail_add(3);
    q.ready = false;
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    CHECK_EQ(virtq_push(&q, 3, 0), -EINVAL);
    CHECK(!virtq_should_notify(&q));
    CHECK_EQ(used_idx(), 1);
    q.ready = true;
    CHECK_EQ(virtq_pop(&q, &chain), 1);
}

/* Two readable then three writable buffers; copies across them with offsets. */
static void test_read_write_chain(void)
{
    uint8_t buf[32];

    setup(8, 0);
    CHECK_EQ(guest_write(&gm, DATA_GPA, "abc", 3), 0);
    CHECK_EQ(guest_write(&gm, DATA_GPA + 0x100, "defgh", 5), 0);
    memset(guest_ptr(&gm, DATA_GPA + 0x1000, 0x1000), 0, 0x1000);
    desc(5, DATA_GPA, 3, F_NEXT, 2);
    desc(2, DATA_GPA + 0x100, 5, F_NEXT, 7);
    desc(7, DATA_GPA + 0x1000, 4, F_WRITE | F_NEXT, 0);
    desc(0, DATA_GPA + 0x1100, 0, F_WRITE | F_NEXT, 1); /* zero-length: contributes nothing */
    desc(1, DATA_GPA + 0x1200, 6, F_WRITE, 0);
    avail_add(5);
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    CHECK_EQ(chain.head, 5);
    CHECK_EQ(chain.nbufs, 4);
    CHECK_EQ(chain.out_len, 8);
    CHECK_EQ(chain.in_len, 10);
    CHECK(chain.buf[2].write && chain.buf[3].write && !chain.buf[1].write);

    memset(buf, 0, sizeof(buf));
    CHECK_EQ(virtq_chain_read(&chain, 0, buf, sizeof(buf)), 8);
    CHECK(memcmp(buf, "abcdefgh", 8) == 0);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(virtq_chain_read(&chain, 2, buf, 4), 4);
    CHECK(memcmp(buf, "cdef", 4) == 0);
    CHECK_EQ(virtq_chain_read(&chain, 7, buf, 4), 1);
    CHECK_EQ(buf[0], 'h');
    CHECK_EQ(virtq_chain_read(&chain, 8, buf, 4), 0);
    CHECK_EQ(virtq_chain_read(&chain, 1000, buf, 4), 0);

    CHECK_EQ(virtq_chain_write(&chain, 0, "0123456789AB", 12), 10);
    CHECK(memcmp(guest_ptr(&gm, DATA_GPA + 0x1000, 4), "0123", 4) == 0);
    CHECK(memcmp(guest_ptr(&gm, DATA_GPA + 0x1200, 6), "456789", 6) == 0);
    CHECK_EQ(virtq_chain_write(&chain, 3, "xyz", 3), 3);
    CHECK(memcmp(guest_ptr(&gm, DATA_GPA + 0x1000, 4), "012x", 4) == 0);
    CHECK(memcmp(guest_ptr(&gm, DATA_GPA + 0x1200, 6), "yz6789", 6) == 0);
    CHECK_EQ(virtq_chain_write(&chain, 9, "!!", 2), 1);
    CHECK_EQ(virtq_chain_write(&chain, 10, "!", 1), 0);

    /* The same parts as iovecs into guest memory, from an offset, for a length, bounded. */
    {
        struct iovec iov[4];

        CHECK_EQ(virtq_chain_iov(&chain, false, 2, SIZE_MAX, iov, 4), 2);
        CHECK(iov[0].iov_base == guest_ptr(&gm, DATA_GPA + 2, 1) && iov[0].iov_len == 1);
        CHECK(iov[1].iov_base == guest_ptr(&gm, DATA_GPA + 0x100, 5) && iov[1].iov_len == 5);
        CHECK_EQ(virtq_chain_iov(&chain, true, 3, 2, iov, 4), 2);
        CHECK(iov[0].iov_base == guest_ptr(&gm, DATA_GPA + 0x1003, 1) && iov[0].iov_len == 1);
        CHECK(iov[1].iov_base == guest_ptr(&gm, DATA_GPA + 0x1200, 1) && iov[1].iov_len == 1);
        CHECK_EQ(virtq_chain_iov(&chain, true, 10, SIZE_MAX, iov, 4), 0);
        CHECK_EQ(virtq_chain_iov(&chain, true, 0, SIZE_MAX, iov, 1), -E2BIG);
    }

    CHECK_EQ(virtq_push(&q, chain.head, 10), 0);
    CHECK_EQ(rd32(USED_GPA + 4), 5);
    CHECK_EQ(rd32(USED_GPA + 8), 10);

    /* Readable after writable breaks the spec's order, even when zero-length. */
    setup(8, 0);
    desc(0, DATA_GPA, 4, F_WRITE | F_NEXT, 1);
    desc(1, DATA_GPA, 4, 0, 0);
    avail_add(0);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    desc(1, DATA_GPA, 0, 0, 0);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    CHECK_EQ(q.last_avail, 0); /* a bad chain is not consumed */

    /* A chain exactly as long as the table is fine. */
    setup(4, 0);
    for (uint16_t i = 0; i < 4; i++)
        desc(i, DATA_GPA + i, 1, i < 3 ? F_NEXT : 0, (uint16_t)(i + 1));
    avail_add(0);
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    CHECK_EQ(chain.nbufs, 4);
}

/* Ring indices that wrap around 65535 -> 0. */
static void test_wraparound(void)
{
    setup(4, 65534);
    for (uint16_t i = 0; i < 4; i++) {
        desc(i, DATA_GPA + 0x100ULL * i, 16, F_WRITE, 0);
        avail_add((uint16_t)(3 - i));
    }
    CHECK_EQ(guest_avail, 2);
    for (uint16_t i = 0; i < 4; i++) {
        CHECK_EQ(virtq_pop(&q, &chain), 1);
        CHECK_EQ(chain.head, 3 - i);
        CHECK_EQ(virtq_push(&q, chain.head, i), 0);
    }
    CHECK_EQ(virtq_pop(&q, &chain), VIRTQ_EMPTY);
    CHECK_EQ(q.last_avail, 2);
    CHECK_EQ(used_idx(), 2);
    /* 65534 % 4 == 2: the first element went to slot 2, the last to slot 1. */
    CHECK_EQ(rd32(USED_GPA + 4 + 8 * 2), 3);
    CHECK_EQ(rd32(USED_GPA + 4 + 8 * 3), 2);
    CHECK_EQ(rd32(USED_GPA + 4 + 8 * 0), 1);
    CHECK_EQ(rd32(USED_GPA + 4 + 8 * 1), 0);
    CHECK_EQ(rd32(USED_GPA + 4 + 8 * 1 + 4), 3);

    /* The driver may be exactly `size` ahead (a full ring), never more. */
    setup(4, 65535);
    desc(0, DATA_GPA, 1, 0, 0);
    set_avail_idx(3); /* 4 ahead of 65535 */
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    setup(4, 65535);
    set_avail_idx(4); /* 5 ahead */
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    setup(4, 100);
    set_avail_idx(99); /* behind: 65535 ahead */
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    setup(4, 0);
    wr16(AVAIL_GPA + 4, 4); /* a head index beyond the table */
    set_avail_idx(1);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
}

static void test_indirect(void)
{
    setup(8, 0);
    q.indirect = true;
    desc_at(TABLE_GPA, 0, DATA_GPA, 10, F_NEXT, 2);
    desc_at(TABLE_GPA, 2, DATA_GPA + 0x100, 20, F_NEXT | F_WRITE, 1);
    desc_at(TABLE_GPA, 1, DATA_GPA + 0x200, 30, F_WRITE, 0);
    desc(6, TABLE_GPA, 3 * 16, F_INDIRECT | F_WRITE, 0); /* WRITE on the table is ignored */
    avail_add(6);
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    CHECK_EQ(chain.head, 6);
    CHECK_EQ(chain.nbufs, 3);
    CHECK_EQ(chain.out_len, 10);
    CHECK_EQ(chain.in_len, 50);
    CHECK(chain.buf[2].host == guest_ptr(&gm, DATA_GPA + 0x200, 30));

    /* Direct descriptors, then the table at the end of the chain. */
    setup(8, 0);
    q.indirect = true;
    desc(0, DATA_GPA + 0x300, 4, F_NEXT, 1);
    desc(1, TABLE_GPA, 16, F_INDIRECT, 0);
    desc_at(TABLE_GPA, 0, DATA_GPA, 8, F_WRITE, 0);
    avail_add(0);
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    CHECK_EQ(chain.nbufs, 2);
    CHECK_EQ(chain.out_len, 4);
    CHECK_EQ(chain.in_len, 8);

    /* Not negotiated. */
    setup(8, 0);
    desc_at(TABLE_GPA, 0, DATA_GPA, 8, 0, 0);
    desc(0, TABLE_GPA, 16, F_INDIRECT, 0);
    avail_add(0);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    q.indirect = true;
    CHECK_EQ(virtq_pop(&q, &chain), 1);

    /* Malformed tables. */
    struct {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
    } bad[] = {
            {TABLE_GPA, 16, F_INDIRECT | F_NEXT},               /* INDIRECT with NEXT */
            {TABLE_GPA, 0, F_INDIRECT},                         /* empty */
            {TABLE_GPA, 17, F_INDIRECT},                        /* not a multiple of 16 */
            {TABLE_GPA, 8, F_INDIRECT},                         /* less than one descriptor */
            {TABLE_GPA, 16 * (VIRTQ_MAX_SIZE + 1), F_INDIRECT}, /* too many entries */
            {MEM_SIZE - 16, 32, F_INDIRECT},                    /* crosses the end of RAM */
            {MEM_SIZE, 16, F_INDIRECT},                         /* outside RAM */
            {UINT64_MAX - 15, 32, F_INDIRECT},                  /* wraps around 2^64 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setup(8, 0);
        q.indirect = true;
        desc_at(TABLE_GPA, 0, DATA_GPA, 8, 0, 0);
        desc(0, bad[i].addr, bad[i].len, bad[i].flags, 1);
        desc(1, DATA_GPA, 8, 0, 0);
        avail_add(0);
        CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    }

    /* The largest table is fine (entries chained 0..n-1, all zero-length but the last). */
    setup(8, 0);
    q.indirect = true;
    for (uint16_t i = 0; i < VIRTQ_MAX_SIZE; i++)
        desc_at(TABLE_GPA, i, DATA_GPA, i == VIRTQ_MAX_SIZE - 1 ? 4 : 0,
                i == VIRTQ_MAX_SIZE - 1 ? 0 : F_NEXT, (uint16_t)(i + 1));
    desc(0, TABLE_GPA, 16 * VIRTQ_MAX_SIZE, F_INDIRECT, 0);
    avail_add(0);
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    CHECK_EQ(chain.nbufs, 1);

    /* Nested table, next beyond the table, loops inside the table. */
    setup(8, 0);
    q.indirect = true;
    desc(0, TABLE_GPA, 32, F_INDIRECT, 0);
    avail_add(0);
    desc_at(TABLE_GPA, 0, DATA_GPA, 8, F_NEXT, 1);
    desc_at(TABLE_GPA, 1, TABLE_GPA, 16, F_INDIRECT, 0);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    desc_at(TABLE_GPA, 1, DATA_GPA, 8, F_NEXT, 2); /* the table has 2 entries */
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    desc_at(TABLE_GPA, 1, DATA_GPA, 8, F_NEXT, 0);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    desc_at(TABLE_GPA, 1, DATA_GPA, 8, F_NEXT, 1);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    desc_at(TABLE_GPA, 1, DATA_GPA, 8, 0, 0);
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    CHECK_EQ(chain.out_len, 16);

    /* First entry pointing past the table, at a valid-looking descriptor. */
    setup(8, 0);
    q.indirect = true;
    desc(0, TABLE_GPA, 32, F_INDIRECT, 0);
    avail_add(0);
    desc_at(TABLE_GPA, 0, DATA_GPA, 8, F_NEXT, 5);
    desc_at(TABLE_GPA, 5, DATA_GPA, 8, 0, 0);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    /* A loop of zero-length entries (never fills the chain). */
    desc_at(TABLE_GPA, 0, DATA_GPA, 0, F_NEXT, 1);
    desc_at(TABLE_GPA, 1, DATA_GPA, 0, F_NEXT, 0);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
}

static void test_loops(void)
{
    setup(8, 0);
    desc(0, DATA_GPA, 8, F_NEXT, 0); /* itself */
    avail_add(0);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);

    setup(8, 0);
    desc(0, DATA_GPA, 8, F_NEXT, 1);
    desc(1, DATA_GPA, 8, F_NEXT, 2);
    desc(2, DATA_GPA, 8, F_NEXT, 0); /* 0 -> 1 -> 2 -> 0 */
    avail_add(0);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);

    setup(8, 0);
    for (uint16_t i = 0; i < 8; i++)
        desc(i, DATA_GPA, 0, F_NEXT, (uint16_t)((i + 1) % 8)); /* the whole table, zero-length */
    avail_add(3);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);

    setup(8, 0);
    desc(0, DATA_GPA, 8, F_NEXT, 8); /* next beyond the table */
    avail_add(0);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    desc(0, DATA_GPA, 8, F_NEXT, 0xffff);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
}

static void test_addresses(void)
{
    CHECK_EQ(pop_one(MEM_SIZE - 16, 16, 0), 1); /* the last bytes of RAM */
    CHECK_EQ(chain.out_len, 16);
    CHECK_EQ(pop_one(MEM_SIZE - 1, 1, F_WRITE), 1);
    CHECK_EQ(pop_one(MEM_SIZE - 16, 17, 0), -EINVAL); /* crosses the end */
    CHECK_EQ(pop_one(MEM_SIZE, 1, 0), -EINVAL);       /* just outside */
    CHECK_EQ(pop_one(FAKE_HOLE_START, 4, F_WRITE), -EINVAL);
    CHECK_EQ(pop_one(FAKE_VIRTIO_BASE + 0x70, 4, F_WRITE), -EINVAL);
    CHECK_EQ(pop_one(UINT64_MAX, 1, 0), -EINVAL);
    CHECK_EQ(pop_one(UINT64_MAX - 7, 16, 0), -EINVAL); /* wraps around 2^64 */
    CHECK_EQ(pop_one(UINT64_MAX - 7, 16, F_WRITE), -EINVAL);
    CHECK_EQ(pop_one(DATA_GPA, UINT32_MAX, F_WRITE), -EINVAL); /* enormous */
    CHECK_EQ(pop_one(0, (uint32_t)MEM_SIZE, 0), 1);            /* all of RAM */
    CHECK_EQ(pop_one(1, (uint32_t)MEM_SIZE, 0), -EINVAL);

    /* Zero-length buffers are not translated: any address, nothing recorded. */
    CHECK_EQ(pop_one(UINT64_MAX, 0, F_WRITE), 1);
    CHECK_EQ(chain.nbufs, 0);
    CHECK_EQ(chain.in_len, 0);
    CHECK_EQ(pop_one(MEM_SIZE, 0, 0), 1);
    CHECK_EQ(chain.nbufs, 0);
}

/* With RAM split around the MMIO hole, and large enough to overflow a u32 total. */
static void test_big_memory(void)
{
    struct guest_mem small = gm;
    uint64_t high;

    if (guest_mem_init(&gm, &fake_ram_layout, 5ULL << 30, 0)) {
        printf("virtq: skipping big-memory tests (cannot reserve 5 GiB)\n");
        gm = small;
        return;
    }
    high = FAKE_HOLE_END + gm.region[1].size;
    CHECK_EQ(pop_one(FAKE_HOLE_START - 8, 8, 0), 1);
    CHECK_EQ(pop_one(FAKE_HOLE_START - 8, 9, 0), -EINVAL);          /* runs into the hole */
    CHECK_EQ(pop_one(FAKE_HOLE_START - 8, 0x40000010, 0), -EINVAL); /* across it */
    CHECK_EQ(pop_one(FAKE_HOLE_START + 0x1000, 8, 0), -EINVAL);
    CHECK_EQ(pop_one(FAKE_HOLE_END - 4, 8, 0), -EINVAL);
    CHECK_EQ(pop_one(FAKE_HOLE_END, 8, F_WRITE), 1);
    CHECK_EQ(pop_one(high - 8, 8, F_WRITE), 1);
    CHECK_EQ(pop_one(high - 8, 9, F_WRITE), -EINVAL);

    /* Two 2.5 GiB readable buffers: the total does not fit in 32 bits. */
    setup(8, 0);
    desc(0, 0, 0xa0000000u, F_NEXT, 1);
    desc(1, 0x1000, 0xa0000000u, 0, 0);
    avail_add(0);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    desc(1, 0x1000, 0x5fffffffu, 0, 0); /* exactly UINT32_MAX in total */
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    CHECK_EQ(chain.out_len, UINT32_MAX);
    /* Readable and writable totals are separate. */
    setup(8, 0);
    desc(0, 0, 0xa0000000u, F_NEXT, 1);
    desc(1, 0x1000, 0xa0000000u, F_WRITE, 0);
    avail_add(0);
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    guest_mem_free(&gm);
    gm = small;
}

struct need_event_case {
    uint16_t event, new_idx, old_idx;
    bool notify;
};

static void test_event_idx(void)
{
    static const struct need_event_case cases[] = {
            {0, 1, 0, true},          {1, 1, 0, false},
            {0, 5, 0, true},          {4, 5, 0, true},
            {5, 5, 0, false},         {100, 5, 0, false},
            {3, 5, 3, true},          {2, 5, 3, false},
            {65535, 0, 65535, true},  {65535, 2, 65534, true},
            {1, 2, 65534, true},      {2, 2, 65534, false},
            {65533, 2, 65534, false}, {65534, 3, 65535, false},
            {0, 0, 65535, false},     {65535, 65535, 65534, false},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct need_event_case *c = &cases[i];

        setup(8, 0);
        q.event_idx = true;
        q.signalled_valid = true;
        q.signalled_used = c->old_idx;
        q.used_idx = c->new_idx;
        set_used_event(c->event);
        CHECK_EQ(virtq_should_notify(&q), c->notify);
        CHECK_EQ(q.signalled_used, c->new_idx);
        CHECK(!virtq_should_notify(&q)); /* nothing new since */
    }

    /* Through push: the first decision always interrupts, then used_event rules. */
    setup(8, 65535);
    q.event_idx = true;
    set_used_event(0);
    for (uint16_t i = 0; i < 4; i++)
        desc(i, DATA_GPA, 4, F_WRITE, 0);
    CHECK_EQ(virtq_push(&q, 0, 4), 0);
    CHECK(virtq_should_notify(&q)); /* nothing signalled yet */
    CHECK_EQ(virtq_push(&q, 1, 4), 0);
    CHECK(virtq_should_notify(&q)); /* used idx moved 0 -> 1 past event 0 */
    CHECK_EQ(virtq_push(&q, 2, 4), 0);
    CHECK(!virtq_should_notify(&q)); /* event 0 already passed */
    set_used_event(5);
    CHECK_EQ(virtq_push(&q, 3, 4), 0);
    CHECK(!virtq_should_notify(&q));

    /* avail_event moves when the ring runs empty, not while entries are pending: the driver
     * need not kick for entries it adds while the device is still taking them. */
    setup(8, 65534);
    q.event_idx = true;
    wr16(USED_GPA + 4 + 8ULL * q.size, 65534);
    desc(0, DATA_GPA, 4, 0, 0);
    avail_add(0);
    avail_add(0);
    avail_add(0);
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    CHECK_EQ(avail_event(), 65534);
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    CHECK_EQ(avail_event(), 65534);
    CHECK_EQ(virtq_pop(&q, &chain), VIRTQ_EMPTY);
    CHECK_EQ(avail_event(), 1);
    wr16(USED_GPA + 4 + 8ULL * q.size, 42);
    CHECK_EQ(virtq_pop(&q, &chain), VIRTQ_EMPTY);
    CHECK_EQ(avail_event(), 1);

    /* Without EVENT_IDX avail_event is left alone. */
    setup(8, 0);
    desc(0, DATA_GPA, 4, 0, 0);
    avail_add(0);
    CHECK_EQ(virtq_pop(&q, &chain), 1);
    CHECK_EQ(virtq_pop(&q, &chain), VIRTQ_EMPTY);
    CHECK_EQ(avail_event(), 0);
}

/* virtq_add_used fills used elements; the guest sees them when the index is published, once
 * per batch (virtq_publish_used, or the interrupt decision). */
static void test_used_batch(void)
{
    setup(8, 0);
    CHECK_EQ(virtq_add_used(&q, 2, 7), 0);
    CHECK_EQ(virtq_add_used(&q, 5, 9), 0);
    CHECK_EQ(used_idx(), 0);
    CHECK_EQ(rd32(USED_GPA + 4), 2);
    CHECK_EQ(rd32(USED_GPA + 12), 5);
    CHECK_EQ(rd32(USED_GPA + 16), 9);
    CHECK_EQ(virtq_add_used(&q, 8, 0), -EINVAL); /* head beyond the table */
    virtq_publish_used(&q);
    CHECK_EQ(used_idx(), 2);
    CHECK_EQ(virtq_add_used(&q, 1, 0), 0);
    CHECK(virtq_should_notify(&q));
    CHECK_EQ(used_idx(), 3);
}

static void test_no_interrupt(void)
{
    setup(8, 0);
    CHECK_EQ(virtq_push(&q, 0, 0), 0);
    CHECK(virtq_should_notify(&q));
    CHECK(!virtq_should_notify(&q)); /* nothing new */
    wr16(AVAIL_GPA, 1);              /* VIRTQ_AVAIL_F_NO_INTERRUPT */
    CHECK_EQ(virtq_push(&q, 0, 0), 0);
    CHECK(!virtq_should_notify(&q));
    wr16(AVAIL_GPA, 0);
    CHECK_EQ(virtq_push(&q, 0, 0), 0);
    CHECK(virtq_should_notify(&q));
    /* With EVENT_IDX the flag means nothing: used_event decides. */
    setup(8, 0);
    q.event_idx = true;
    wr16(AVAIL_GPA, 1);
    CHECK_EQ(virtq_push(&q, 0, 0), 0);
    CHECK(virtq_should_notify(&q));
}

static void test_check(void)
{
    static struct virtio_dev dev;

    setup(8, 0);
    CHECK_EQ(virtq_check(&q), 0);
    q.size = 0;
    CHECK_EQ(virtq_check(&q), -EINVAL);
    q.size = 3;
    CHECK_EQ(virtq_check(&q), -EINVAL);
    q.size = VIRTQ_MAX_SIZE;
    CHECK_EQ(virtq_check(&q), 0);
    q.size = VIRTQ_MAX_SIZE * 2;
    CHECK_EQ(virtq_check(&q), -EINVAL);
    q.size = 32768;
    CHECK_EQ(virtq_check(&q), -EINVAL);
    CHECK_EQ(virtq_pop(&q, &chain), -EINVAL);
    CHECK_EQ(virtq_push(&q, 0, 0), -EINVAL);
    CHECK(!virtq_should_notify(&q));

    /* The device's own maximum. */
    dev.nr_queues = 2;
    dev.queue_max[1] = 64;
    q.dev = &dev;
    q.index = 1;
    q.size = 64;
    CHECK_EQ(virtq_check(&q), 0);
    q.size = 128;
    CHECK_EQ(virtq_check(&q), -EINVAL);
    q.dev = NULL;
    q.index = 0;

    /* Alignment: desc 16, avail 2, used 4. */
    setup(8, 0);
    q.desc_gpa = DESC_GPA + 8;
    CHECK_EQ(virtq_check(&q), -EINVAL);
    q.desc_gpa = DESC_GPA + 16;
    CHECK_EQ(virtq_check(&q), 0);
    q.avail_gpa = AVAIL_GPA + 1;
    CHECK_EQ(virtq_check(&q), -EINVAL);
    q.avail_gpa = AVAIL_GPA + 2;
    CHECK_EQ(virtq_check(&q), 0);
    q.used_gpa = USED_GPA + 2;
    CHECK_EQ(virtq_check(&q), -EINVAL);
    q.used_gpa = USED_GPA + 4;
    CHECK_EQ(virtq_check(&q), 0);

    /* Rings must lie wholly in RAM, including the event fields. */
    setup(8, 0);
    q.desc_gpa = MEM_SIZE - 16 * 8;
    CHECK_EQ(virtq_check(&q), 0);
    q.desc_gpa = MEM_SIZE - 16 * 7;
    CHECK_EQ(virtq_check(&q), -EINVAL);
    q.desc_gpa = DESC_GPA;
    q.avail_gpa = MEM_SIZE - (6 + 2 * 8);
    CHECK_EQ(virtq_check(&q), 0);
    q.avail_gpa += 2; /* used_event would be outside */
    CHECK_EQ(virtq_check(&q), -EINVAL);
    q.avail_gpa = AVAIL_GPA;
    q.used_gpa = MEM_SIZE - (6 + 8 * 8) - 2;
    CHECK_EQ(virtq_check(&q), 0);
    q.used_gpa += 4; /* avail_event would be outside */
    CHECK_EQ(virtq_check(&q), -EINVAL);
    q.used_gpa = FAKE_HOLE_START;
    CHECK_EQ(virtq_check(&q), -EINVAL);
    q.used_gpa = UINT64_MAX - 15;
    CHECK_EQ(virtq_check(&q), -EINVAL);
    q.used_gpa = USED_GPA;
    q.mem = NULL;
    CHECK_EQ(virtq_check(&q), -EINVAL);

    /* virtq_reset clears the driver's settings and the indices. */
    setup(8, 7);
    q.event_idx = q.indirect = q.signalled_valid = true;
    virtq_reset(&q);
    CHECK(!q.ready && q.size == 0 && q.desc_gpa == 0 && q.avail_gpa == 0 && q.used_gpa == 0);
    CHECK(q.last_avail == 0 && q.used_idx == 0 && !q.signalled_valid);
    CHECK(!q.event_idx && !q.indirect);
    CHECK(q.mem == &gm);
}

int main(void)
{
    CHECK_EQ(guest_mem_init(&gm, &fake_ram_layout, MEM_SIZE, 0), 0);
    test_simple();
    test_read_write_chain();
    test_wraparound();
    test_indirect();
    test_loops();
    test_addresses();
    test_big_memory();
    test_event_idx();
    test_used_batch();
    test_no_interrupt();
    test_check();
    guest_mem_free(&gm);
    return check_done("virtq");
}
