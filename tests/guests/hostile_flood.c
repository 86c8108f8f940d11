/* Hostile tiny guest: floods hvc0 and notifications while the disk must still be served. */
#include "hostile.h"

#define FLOOD_CHUNK    4096
#define FLOOD_BYTES    (2UL << 20) /* test_hostile.py checks every byte */
#define FLOOD_INFLIGHT 32
#define NOTIFY_FLOOD   60000
#define TXQ_SIZE       64

static uint64_t con, blk, rng;
static struct vq txq, rxq, blkq, rngq;
static uint8_t *line, *hdr, *st, *data, *chunk;

/* Reports go to hvc0: one chain per string, waited for, so they stay in order. */
static void hvc_puts(const char *s)
{
    uint64_t n = 0;
    struct vbuf b;

    while (s[n] && n < 4095)
        n++;
    memcpy(line, s, n);
    b = (struct vbuf){(uint64_t)line, (uint32_t)n, 0};
    if (n)
        vq_run(&txq, &b, 1);
}

/* A 4 KiB read at `sector`: 1 if answered OK within the time limit. */
static int blk_read(uint64_t sector)
{
    struct vbuf b[3] = {
            {(uint64_t)hdr, 16, 0}, {(uint64_t)data, 4096, F_WRITE}, {(uint64_t)st, 1, F_WRITE}};

    ((volatile uint32_t *)hdr)[0] = 0;
    *(volatile uint64_t *)(hdr + 8) = sector;
    *(volatile uint8_t *)st = 0xee;
    return vq_run(&blkq, b, 3) == 4097 && *(volatile uint8_t *)st == 0;
}

static int setup(void)
{
    con = find_device(ID_CONSOLE, 0);
    blk = find_device(ID_BLK, 0);
    rng = find_device(ID_RNG, 0);
    if (!con || !blk || !rng)
        return 0;
    line = pool_alloc(4096);
    hdr = pool_alloc(4096);
    st = pool_alloc(4096);
    data = pool_alloc(4096);
    chunk = pool_alloc(FLOOD_CHUNK);
    memset(chunk, 'x', FLOOD_CHUNK);
    negotiate(con, FEAT_V1);
    vq_setup(&rxq, con, 0, 16);
    vq_setup(&txq, con, 1, TXQ_SIZE);
    driver_ok(con);
    report_out = hvc_puts;
    negotiate(blk, FEAT_V1);
    vq_setup(&blkq, blk, 0, 16);
    driver_ok(blk);
    negotiate(rng, FEAT_V1);
    vq_setup(&rngq, rng, 0, 16);
    driver_ok(rng);
    return 1;
}

static void console_odd_chains(void)
{
    struct vbuf w = {(uint64_t)data, 16, F_WRITE};
    struct vbuf mixed[2] = {{(uint64_t)chunk, 0, 0}, {(uint64_t)data, 16, F_WRITE}};

    report("console-tx-writable-only",
           vq_run(&txq, &w, 1) == 0 && vq_run(&txq, mixed, 2) == 0 && !(rd(con, R_STATUS) & S_NR),
           "not returned");
}

/* Notifications without pause, for queues with nothing in them: the disk must keep up. */
static void notify_flood(void)
{
    int ok = 1;

    for (int i = 0; i < NOTIFY_FLOOD && ok; i++) {
        wr(rng, R_NOTIFY, 0);
        wr(blk, R_NOTIFY, 0);
        wr(con, R_NOTIFY, 0);
        if (i % 6000 == 0)
            ok = blk_read((uint64_t)i % 2048);
    }
    report("notify-flood", ok && blk_read(7), "a disk request was starved");
}

/* hvc0 output without pause, FLOOD_INFLIGHT chains always queued: the disk must keep up. */
static void console_flood(void)
{
    struct vbuf b = {(uint64_t)chunk, FLOOD_CHUNK, 0};
    uint64_t sent = 0, reads = 0, busy_reads = 0;
    int ok = 1;

    out("\nFLOOD-BEGIN\n");
    while (sent < FLOOD_BYTES && ok) {
        while ((uint16_t)(txq.avail_idx - vq_used_idx(&txq)) < FLOOD_INFLIGHT &&
               sent < FLOOD_BYTES) {
            vq_post(&txq, &b, 1);
            vq_kick(&txq);
            sent += FLOOD_CHUNK;
        }
        ok = blk_read(reads % 2048);
        reads++;
        if ((uint16_t)(txq.avail_idx - vq_used_idx(&txq)) > 0)
            busy_reads++;
    }
    ok = ok && vq_wait(&txq, txq.avail_idx, WAIT_MUST);
    out("\nFLOOD-END\n");
    out("flood: ");
    out_dec(sent);
    out(" bytes of output, ");
    out_dec(reads);
    out(" disk reads, ");
    out_dec(busy_reads);
    out(" of them answered while output was queued\n");
    report("console-flood", ok, "a disk request or the output was starved");
}

int guest_main(void)
{
    if (!setup()) {
        puts_serial("hostile_flood: needs --console virtio and a --disk\n");
        return 99;
    }
    out("hostile_flood: hvc0 up\n");
    console_odd_chains();
    notify_flood();
    console_flood();
    return report_summary();
}
