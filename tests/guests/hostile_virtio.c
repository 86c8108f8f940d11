/* Hostile tiny guest: breaks every virtio-mmio, ring and device rule; one line per case. */
#include "hostile.h"

#define QN 8 /* queue size the chain cases use */

static uint64_t rng, blk, blk_ro, net;
static uint8_t *buf, *ind, *ind2; /* a data buffer and two indirect tables */

static int check(const char *name, int ok, const char *why)
{
    report(name, ok, why);
    return ok;
}

/* ---- transport ---- */

static void identity(void)
{
    int ok = 1;

    for (int i = 0; i < VIRTIO_SLOTS; i++) {
        uint64_t base = VIRTIO_BASE + 0x1000UL * (uint64_t)i;

        if (rd(base, R_MAGIC) != 0x74726976)
            continue;
        ok &= rd(base, R_VERSION) == 2 && rd(base, R_DEVICE_ID) != 0;
    }
    check("identity", ok && rng && blk && blk_ro && net, "devices missing or wrong version");
}

static void queue_sizes(void)
{
    uint32_t max;
    uint64_t r = (uint64_t)pool_alloc(0x6000);

    negotiate(rng, FEAT_V1);
    wr(rng, R_QUEUE_SEL, 0);
    max = rd(rng, R_QUEUE_MAX);
    check("queue-size-zero", !vq_try(rng, 0, 0, r, r + 0x2000, r + 0x4000), "made ready");
    check("queue-size-not-power-of-two", !vq_try(rng, 0, 3, r, r + 0x2000, r + 0x4000),
          "made ready");
    check("queue-size-above-max", !vq_try(rng, 0, max * 2, r, r + 0x2000, r + 0x4000),
          "made ready");
    check("queue-size-above-16-bits", !vq_try(rng, 0, 0x10008, r, r + 0x2000, r + 0x4000),
          "made ready");
    check("queue-rings-in-mmio-hole", !vq_try(rng, 0, QN, 0xc0000000UL, r + 0x2000, r + 0x4000),
          "made ready");
    check("queue-rings-outside-ram", !vq_try(rng, 0, QN, r, GUEST_RAM + 0x2000, r + 0x4000),
          "made ready");
    check("queue-rings-misaligned", !vq_try(rng, 0, QN, r + 8, r + 0x2000, r + 0x4001),
          "made ready");
    check("queue-rings-wrapping", !vq_try(rng, 0, QN, r, r + 0x2000, 0xfffffffffffffff0UL),
          "made ready");
    check("queue-rings-straddle-ram-end",
          !vq_try(rng, 0, QN, GUEST_RAM - 0x40, r + 0x2000, r + 0x4000), "made ready");
    wr(rng, R_QUEUE_SEL, 7); /* no such queue */
    check("queue-select-missing",
          rd(rng, R_QUEUE_MAX) == 0 && !vq_try(rng, 7, QN, r, r + 0x2000, r + 0x4000),
          "queue 7 answered");
    check("queue-ok-after-all-that", vq_try(rng, 0, QN, r, r + 0x2000, r + 0x4000) == 1,
          "a valid queue was refused");
}

static struct vbuf small(void)
{
    return (struct vbuf){(uint64_t)buf, 16, F_WRITE};
}

/* The rng, reset and running with one queue of QN. */
static void rng_up(struct vq *q, uint64_t features)
{
    negotiate(rng, FEAT_V1 | features);
    vq_setup(q, rng, 0, QN);
    driver_ok(rng);
}

/* After a case: the device works again once the driver resets it. */
static int rng_recovers(void)
{
    struct vq q;
    struct vbuf b = small();

    rng_up(&q, 0);
    return vq_run(&q, &b, 1) == 16 && !(rd(rng, R_STATUS) & S_NR);
}

static void notify_rules(void)
{
    struct vq q;
    struct vbuf b = small();

    negotiate(rng, FEAT_V1);
    vq_setup(&q, rng, 0, QN);
    vq_post(&q, &b, 1);
    vq_kick(&q);
    check("notify-before-driver-ok", !vq_wait(&q, 1, WAIT_MUSTNOT), "used before DRIVER_OK");
    driver_ok(rng); /* activation looks at the queue once */
    check("driver-ok-picks-up-earlier-buffers", vq_wait(&q, 1, WAIT_MUST), "never used");
    wr(rng, R_NOTIFY, 5);
    wr(rng, R_NOTIFY, 0xffffffff);
    mmio_write16(rng + R_NOTIFY, 0);
    check("notify-missing-queue", rd(rng, R_STATUS) == S_DRIVER_UP && vq_run(&q, &b, 1) == 16,
          "device upset");
    wr(rng, R_QUEUE_SEL, 0);
    wr(rng, R_QUEUE_NUM, 2);
    wr(rng, R_DESC_LO, 0xc0000000);
    wr(rng, R_QUEUE_READY, 0);
    check("queue-registers-locked-after-driver-ok",
          rd(rng, R_QUEUE_NUM) == QN && rd(rng, R_QUEUE_READY) == 1 && vq_run(&q, &b, 1) == 16,
          "queue changed under a running device");
}

static void status_rules(void)
{
    wr(rng, R_STATUS, 0);
    wr(rng, R_STATUS, S_DOK);
    check("status-driver-ok-first", rd(rng, R_STATUS) == 0, "DRIVER_OK accepted first");
    wr(rng, R_STATUS, S_ACK | S_FOK);
    check("status-skips-driver", rd(rng, R_STATUS) == 0, "accepted");
    wr(rng, R_STATUS, S_ACK | S_DRV);
    wr(rng, R_STATUS, S_ACK | S_DRV | S_DOK);
    check("status-skips-features-ok", rd(rng, R_STATUS) == (S_ACK | S_DRV), "accepted");
    wr(rng, R_STATUS, S_ACK);
    check("status-clears-a-bit", rd(rng, R_STATUS) == (S_ACK | S_DRV), "accepted");
    wr(rng, R_STATUS, S_ACK | S_DRV | S_NR);
    check("status-driver-sets-needs-reset", !(rd(rng, R_STATUS) & S_NR), "accepted");
    check("features-not-offered",
          !(negotiate(rng, FEAT_V1 | (1ULL << 40)) & S_FOK) &&
                  !(negotiate(rng, FEAT_V1 | (1ULL << 63)) & S_FOK) &&
                  !(negotiate(rng, FEAT_V1 | (1ULL << 27)) & S_FOK),
          "FEATURES_OK stuck");
    check("features-without-version-1", !(negotiate(rng, 0) & S_FOK), "legacy accepted");
    negotiate(rng, FEAT_V1);
    wr(rng, R_DRV_FEAT_SEL, 0);
    wr(rng, R_DRV_FEAT, 0xffffffff); /* after FEATURES_OK: ignored */
    check("features-after-features-ok", rd(rng, R_DRV_FEAT) == 0, "changed");
    wr(rng, R_STATUS, 0);
}

static void register_rules(void)
{
    uint32_t st;

    negotiate(rng, FEAT_V1);
    st = rd(rng, R_STATUS);
    check("register-unaligned-read",
          mmio_read8(rng + R_MAGIC + 1) == 0 && mmio_read16(rng + R_VERSION + 2) == 0 &&
                  rd(rng, R_MAGIC + 2) == 0,
          "an unaligned read answered");
    mmio_write8(rng + R_STATUS, 0);
    mmio_write16(rng + R_STATUS + 2, 0);
    wr(rng, R_STATUS + 1, 0);
    check("register-unaligned-write", rd(rng, R_STATUS) == st, "status changed");
    mmio_write64(rng + R_STATUS, 0);
    check("register-8-byte", mmio_read64(rng + R_MAGIC) == 0 && rd(rng, R_STATUS) == st,
          "an 8-byte access was taken");
    wr(rng, R_MAGIC, 0);
    wr(rng, R_VERSION, 1);
    wr(rng, R_DEVICE_ID, 9);
    wr(rng, R_VENDOR_ID, 0);
    wr(rng, R_QUEUE_MAX, 2);
    wr(rng, R_CONFIG_GEN, 5);
    wr(rng, R_DEV_FEAT, 0);
    wr(rng, 0x0fc + 0x04, 1); /* the first config byte of a device without config */
    wr(rng, 0x0c0, 1);        /* reserved */
    check("register-read-only-writes",
          rd(rng, R_MAGIC) == 0x74726976 && rd(rng, R_VERSION) == 2 && rd(rng, R_DEVICE_ID) == 4 &&
                  rd(rng, R_QUEUE_MAX) != 2 && rd(rng, R_STATUS) == st,
          "a read-only register changed");
    /* blk config: 60 bytes */
    check("config-past-end",
          rd(blk, R_CONFIG + 60) == 0 && rd(blk, R_CONFIG + 0xefc) == 0 &&
                  mmio_read16(blk + R_CONFIG + 59) == 0 && rd(blk, R_CONFIG + 58) == 0,
          "read past the end answered");
    wr(blk, R_CONFIG, 0);
    wr(blk, R_CONFIG + 60, 0xffffffff);
    check("config-write-read-only", rd(blk, R_CONFIG) == 2048, "capacity changed");
    check("config-8-byte", mmio_read64(blk + R_CONFIG) == 0, "answered");
}

/* ---- descriptor chains ---- */

struct chain_case {
    const char *name;
    uint64_t features;
    uint16_t head, avail_idx; /* avail ring[0] and the published index (0: 1) */
    int n, nind;
    struct vdesc d[QN];
    struct vdesc ind[2]; /* written to the first indirect table */
};

#define W    F_WRITE
#define N    F_NEXT
#define I    F_INDIRECT
#define BUF  0x1UL /* placeholders, replaced by the real addresses */
#define IND  0x2UL
#define IND2 0x3UL

static const struct chain_case chain_cases[] = {
        {"chain-loop", 0, 0, 0, 2, 0, {{BUF, 16, W | N, 1}, {BUF, 16, W | N, 0}}, {}},
        {"chain-cycle-through-whole-table",
         0,
         0,
         0,
         8,
         0,
         {{BUF, 1, W | N, 1},
          {BUF, 1, W | N, 2},
          {BUF, 1, W | N, 3},
          {BUF, 1, W | N, 4},
          {BUF, 1, W | N, 5},
          {BUF, 1, W | N, 6},
          {BUF, 1, W | N, 7},
          {BUF, 1, W | N, 0}},
         {}},
        {"chain-next-past-queue-size", 0, 0, 0, 1, 0, {{BUF, 16, W | N, QN}}, {}},
        {"chain-buffer-outside-ram", 0, 0, 0, 1, 0, {{GUEST_RAM + 0x1000, 16, W, 0}}, {}},
        {"chain-buffer-straddles-ram-end", 0, 0, 0, 1, 0, {{GUEST_RAM - 8, 16, W, 0}}, {}},
        {"chain-buffer-in-mmio-hole", 0, 0, 0, 1, 0, {{0xc0001000UL, 16, W, 0}}, {}},
        {"chain-buffer-low-mmio", 0, 0, 0, 1, 0, {{0xfee00000UL, 16, W, 0}}, {}},
        {"chain-buffer-wraps-address-space",
         0,
         0,
         0,
         1,
         0,
         {{0xfffffffffffff000UL, 0x2000, W, 0}},
         {}},
        {"chain-buffer-huge-length", 0, 0, 0, 1, 0, {{BUF, 0xffffffff, W, 0}}, {}},
        {"chain-readable-after-writable",
         0,
         0,
         0,
         2,
         0,
         {{BUF, 16, W | N, 1}, {BUF, 16, 0, 0}},
         {}},
        {"chain-head-past-queue-size", 0, QN + 1, 0, 1, 0, {{BUF, 16, W, 0}}, {}},
        {"avail-index-jumps-past-size", 0, 0, QN + 1, 1, 0, {{BUF, 16, W, 0}}, {}},
        {"indirect-not-negotiated", 0, 0, 0, 1, 1, {{IND, 16, I, 0}}, {{BUF, 16, W, 0}}},
        {"indirect-nested", FEAT_INDIRECT, 0, 0, 1, 1, {{IND, 16, I, 0}}, {{IND2, 16, I, 0}}},
        {"indirect-loop",
         FEAT_INDIRECT,
         0,
         0,
         1,
         2,
         {{IND, 32, I, 0}},
         {{BUF, 8, W | N, 1}, {BUF, 8, W | N, 0}}},
        {"indirect-next-past-table",
         FEAT_INDIRECT,
         0,
         0,
         1,
         1,
         {{IND, 16, I, 0}},
         {{BUF, 8, W | N, 5}}},
        {"indirect-odd-length", FEAT_INDIRECT, 0, 0, 1, 1, {{IND, 15, I, 0}}, {{BUF, 8, W, 0}}},
        {"indirect-zero-length", FEAT_INDIRECT, 0, 0, 1, 0, {{IND, 0, I, 0}}, {}},
        {"indirect-with-next-flag",
         FEAT_INDIRECT,
         0,
         0,
         2,
         1,
         {{IND, 16, I | N, 1}, {BUF, 8, W, 0}},
         {{BUF, 8, W, 0}}},
        {"indirect-table-outside-ram", FEAT_INDIRECT, 0, 0, 1, 0, {{GUEST_RAM, 16, I, 0}}, {}},
        {"indirect-table-too-large", FEAT_INDIRECT, 0, 0, 1, 0, {{IND, 16 * 2048, I, 0}}, {}},
};

static uint64_t real(uint64_t a)
{
    return a == BUF ? (uint64_t)buf : a == IND ? (uint64_t)ind : a == IND2 ? (uint64_t)ind2 : a;
}

static void chain_case(const struct chain_case *c)
{
    struct vq q;
    volatile struct vdesc *t = (volatile struct vdesc *)ind;
    int broken, none_used;

    rng_up(&q, c->features);
    for (int i = 0; i < c->n; i++) {
        q.desc[i].addr = real(c->d[i].addr);
        q.desc[i].len = c->d[i].len;
        q.desc[i].flags = c->d[i].flags;
        q.desc[i].next = c->d[i].next;
    }
    for (int i = 0; i < c->nind; i++) {
        t[i].addr = real(c->ind[i].addr);
        t[i].len = c->ind[i].len;
        t[i].flags = c->ind[i].flags;
        t[i].next = c->ind[i].next;
    }
    q.avail[2] = c->head;
    barrier();
    q.avail[1] = c->avail_idx ? c->avail_idx : 1;
    barrier();
    vq_kick(&q);
    broken = wait_needs_reset(rng);
    none_used = vq_used_idx(&q) == 0;
    check(c->name, broken && none_used && rng_recovers(),
          !broken      ? "device not marked NEEDS_RESET"
          : !none_used ? "the bad chain was used"
                       : "device did not recover after a reset");
}

static void good_chains(void)
{
    struct vq q;
    struct vbuf zero[2] = {{(uint64_t)buf, 0, F_WRITE}, {(uint64_t)buf, 8, F_WRITE}};
    struct vbuf ro = {(uint64_t)buf, 16, 0};
    volatile struct vdesc *t = (volatile struct vdesc *)ind;

    rng_up(&q, 0);
    check("chain-zero-length-buffer",
          vq_run(&q, zero, 2) == 8 && vq_run(&q, zero, 1) == 0 && !(rd(rng, R_STATUS) & S_NR),
          "not answered");
    check("rng-read-only-buffer", vq_run(&q, &ro, 1) == 0 && !(rd(rng, R_STATUS) & S_NR),
          "not answered empty");
    rng_up(&q, FEAT_INDIRECT);
    t[0] = (struct vdesc){(uint64_t)buf, 4, F_WRITE | F_NEXT, 1};
    t[1] = (struct vdesc){(uint64_t)buf + 64, 4, F_WRITE, 0};
    {
        struct vbuf b = {(uint64_t)ind, 32, F_INDIRECT};

        check("indirect-valid", vq_run(&q, &b, 1) == 8, "not answered");
    }
    /* the same ring index wrapping many times */
    {
        struct vbuf b = {(uint64_t)buf, 1, F_WRITE};
        int ok = 1;

        for (int i = 0; i < 3 * QN && ok; i++)
            ok = vq_run(&q, &b, 1) == 1;
        check("ring-wraps", ok, "a request was not answered");
    }
}

/* ---- virtio-blk ---- */

#define BLK_SECTORS 2048 /* the tests attach 1 MiB disks */

static uint8_t *hdr, *st, *data;

/* One request with a 16-byte header and the given middle; the status byte (or -1 on time-out). */
static int blk_req(uint64_t base, struct vq *q, uint32_t type, uint64_t sector,
                   const struct vbuf *mid, int nmid)
{
    struct vbuf b[4];
    int n = 0;

    ((volatile uint32_t *)hdr)[0] = type;
    ((volatile uint32_t *)hdr)[1] = 0;
    *(volatile uint64_t *)(hdr + 8) = sector;
    *(volatile uint8_t *)st = 0xee;
    b[n++] = (struct vbuf){(uint64_t)hdr, 16, 0};
    for (int i = 0; i < nmid; i++)
        b[n++] = mid[i];
    b[n++] = (struct vbuf){(uint64_t)st, 1, F_WRITE};
    (void)base;
    if (vq_run(q, b, n) < 0)
        return -1;
    return *(volatile uint8_t *)st;
}

static void blk_up(uint64_t base, struct vq *q)
{
    negotiate(base, FEAT_V1 | (1ULL << 9)); /* FLUSH */
    vq_setup(q, base, 0, 16);
    driver_ok(base);
}

static void blk_cases(void)
{
    struct vq q;
    struct vbuf rd512 = {(uint64_t)data, 512, F_WRITE}, wr512 = {(uint64_t)data, 512, 0};
    struct vbuf rd100 = {(uint64_t)data, 100, F_WRITE};
    int ok;

    blk_up(blk, &q);
    for (int i = 0; i < 512; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    ok = blk_req(blk, &q, 1, 5, &wr512, 1) == 0;
    memset(data, 0, 512);
    ok = ok && blk_req(blk, &q, 0, 5, &rd512, 1) == 0;
    for (int i = 0; i < 512 && ok; i++)
        ok = data[i] == (uint8_t)(i * 7 + 3);
    check("blk-write-read-back", ok && blk_req(blk, &q, 4, 0, 0, 0) == 0, "data differs");
    check("blk-bad-type", blk_req(blk, &q, 99, 0, 0, 0) == 2, "not UNSUPP");
    check("blk-sector-past-end",
          blk_req(blk, &q, 0, BLK_SECTORS, &rd512, 1) == 1 &&
                  blk_req(blk, &q, 0, BLK_SECTORS - 1, &rd512, 1) == 0 &&
                  blk_req(blk, &q, 1, ~0ULL, &wr512, 1) == 1 &&
                  blk_req(blk, &q, 0, ~0ULL >> 9, &rd512, 1) == 1,
          "not IOERR");
    check("blk-partial-sector", blk_req(blk, &q, 0, 0, &rd100, 1) == 1, "not IOERR");
    check("blk-data-wrong-direction", blk_req(blk, &q, 0, 0, &wr512, 1) == 1, "not IOERR");
    check("blk-discard-not-negotiated", blk_req(blk, &q, 11, 0, &wr512, 1) == 2, "not UNSUPP");
    {
        struct vbuf b[2] = {{(uint64_t)hdr, 8, 0}, {(uint64_t)st, 1, F_WRITE}};

        *(volatile uint8_t *)st = 0xee;
        check("blk-header-too-short", vq_run(&q, b, 2) >= 0 && *st == 1, "not IOERR");
    }
    check("blk-still-fine", !(rd(blk, R_STATUS) & S_NR), "NEEDS_RESET after valid-format errors");
    {
        struct vbuf b[3] = {{(uint64_t)hdr, 16, 0}, {(uint64_t)data, 512, 0}, {(uint64_t)st, 1, 0}};

        ((volatile uint32_t *)hdr)[0] = 1;
        vq_post(&q, b, 3);
        vq_kick(&q);
        check("blk-status-in-read-only-descriptor", wait_needs_reset(blk), "not NEEDS_RESET");
    }
    blk_up(blk, &q);
    {
        struct vbuf b = {(uint64_t)hdr, 16, 0};

        vq_post(&q, &b, 1);
        vq_kick(&q);
        check("blk-no-status-byte", wait_needs_reset(blk), "not NEEDS_RESET");
    }
    blk_up(blk, &q);
    check("blk-recovers", blk_req(blk, &q, 0, 5, &rd512, 1) == 0 && data[1] == 10, "no");
    blk_up(blk_ro, &q);
    check("blk-write-read-only-disk",
          blk_req(blk_ro, &q, 1, 0, &wr512, 1) == 1 && blk_req(blk_ro, &q, 0, 0, &rd512, 1) == 0,
          "write not refused");
    wr(blk_ro, R_STATUS, 0);
}

/* ---- virtio-net transmit ---- */

static void net_cases(void)
{
    struct vq rxq, txq;
    uint8_t *frame = pool_alloc(80 * 1024);
    struct {
        const char *name;
        uint8_t flags, gso;
        uint16_t csum_start, csum_off;
        uint32_t len; /* frame bytes after the header */
        int split;    /* header only / writable buffer */
    } cases[] = {
            {"net-tx-header-only", 0, 0, 0, 0, 0, 1},
            {"net-tx-short-frame", 0, 0, 0, 0, 10, 0},
            {"net-tx-oversized-frame", 0, 0, 0, 0, 70000, 0},
            {"net-tx-unknown-gso", 0, 9, 0, 0, 60, 0},
            {"net-tx-gso-not-negotiated", 1, 1, 34, 16, 60, 0},
            {"net-tx-csum-not-negotiated", 1, 0, 34, 16, 60, 0},
            {"net-tx-unknown-flags", 0x80, 0, 0, 0, 60, 0},
            {"net-tx-writable-buffer", 0, 0, 0, 0, 60, 2},
    };

    negotiate(net, FEAT_V1);
    vq_setup(&rxq, net, 0, 16);
    vq_setup(&txq, net, 1, 16);
    driver_ok(net);
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vbuf b[2] = {{(uint64_t)frame, 12, 0}, {(uint64_t)frame + 12, cases[i].len, 0}};

        memset(frame, 0, 12);
        frame[0] = cases[i].flags;
        frame[1] = cases[i].gso;
        *(uint16_t *)(frame + 6) = cases[i].csum_start;
        *(uint16_t *)(frame + 8) = cases[i].csum_off;
        if (cases[i].split == 2)
            b[1].flags = F_WRITE;
        check(cases[i].name,
              vq_run(&txq, b, cases[i].split == 1 ? 1 : 2) == 0 && !(rd(net, R_STATUS) & S_NR),
              "not returned, or device broken");
    }
    {
        struct vbuf b[2] = {{(uint64_t)frame, 12, 0}, {(uint64_t)frame + 12, 60, 0}};

        memset(frame, 0, 72);
        memset(frame + 12, 0xff, 6); /* broadcast */
        check("net-tx-valid-after-malformed", vq_run(&txq, b, 2) == 0, "not returned");
    }
    wr(net, R_STATUS, 0);
}

int guest_main(void)
{
    rng = find_device(ID_RNG, 0);
    blk = find_device(ID_BLK, 0);
    blk_ro = find_device(ID_BLK, 1);
    net = find_device(ID_NET, 0);
    buf = pool_alloc(0x1000);
    ind = pool_alloc(0x1000);
    ind2 = pool_alloc(0x1000);
    hdr = pool_alloc(0x1000);
    st = pool_alloc(0x1000);
    data = pool_alloc(0x1000);
    identity();
    if (cases_failed())
        return report_summary();
    queue_sizes();
    notify_rules();
    status_rules();
    register_rules();
    for (unsigned i = 0; i < sizeof(chain_cases) / sizeof(chain_cases[0]); i++)
        chain_case(&chain_cases[i]);
    good_chains();
    blk_cases();
    net_cases();
    return report_summary();
}
