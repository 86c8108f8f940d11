/* Hostile tiny guest: reposts the same descriptor head forever on every device it finds (disk,
 * network transmit, console or exec ports transmit and control, entropy), keeping each ring as
 * full as the rules allow. Every request is one the device answers at once, so it comes back
 * at once and goes in again, and each is as dear as a chain can be for the device: one
 * descriptor pointing at a 1024-entry indirect table (the real buffers after 1022 empty ones
 * the device must walk). A device without a budget never leaves its queue handler, even on a
 * host with one CPU shared with the guest. */
#include "hostile.h"

#define F_MULTIPORT (1ULL << 1)
#define MAX_QUEUES  8
#define RING        256  /* or the queue's maximum when smaller */
#define TABLE       1024 /* entries of the indirect table (the most a device takes) */

struct flood {
    struct vq q;
    uint16_t head;
};

static struct flood fl[MAX_QUEUES];
static int nfl;

static uint16_t ring_size(uint64_t base, int index)
{
    uint32_t max;

    wr(base, R_QUEUE_SEL, (uint32_t)index);
    max = rd(base, R_QUEUE_MAX);
    return (uint16_t)(max < RING ? max : RING);
}

/* Queue `index` of base floods with one descriptor: an indirect table of TABLE entries, empty
 * readable ones first, then the chain b[0..n). */
static void add(uint64_t base, int index, const struct vbuf *b, int n)
{
    struct flood *f = &fl[nfl++];
    volatile struct vdesc *t = pool_alloc(TABLE * sizeof(struct vdesc));
    struct vbuf ind = {(uint64_t)t, TABLE * sizeof(struct vdesc), F_INDIRECT};

    for (int i = 0; i < TABLE; i++) {
        int k = i - (TABLE - n); /* the real buffers are the last n */

        t[i].addr = k >= 0 ? b[k].addr : (uint64_t)t;
        t[i].len = k >= 0 ? b[k].len : 0;
        t[i].flags = (uint16_t)((k >= 0 ? b[k].flags : 0) | (i + 1 < TABLE ? F_NEXT : 0));
        t[i].next = (uint16_t)(i + 1);
    }
    vq_setup(&f->q, base, index, ring_size(base, index));
    f->head = vq_post(&f->q, &ind, 1); /* only the head is posted again */
}

static void *buf(uint64_t bytes, uint8_t fill)
{
    uint8_t *p = pool_alloc(bytes);

    memset(p, fill, bytes);
    return p;
}

static void setup(void)
{
    uint64_t blk = find_device(ID_BLK, 0), net = find_device(ID_NET, 0);
    uint64_t con = find_device(ID_CONSOLE, 0), rng = find_device(ID_RNG, 0);

    if (blk) { /* an unknown request type: answered UNSUPP at once */
        uint8_t *hdr = buf(16, 0xff);
        struct vbuf b[2] = {{(uint64_t)hdr, 16, 0}, {(uint64_t)buf(1, 0), 1, F_WRITE}};

        negotiate(blk, FEAT_V1 | FEAT_INDIRECT);
        add(blk, 0, b, 2);
        driver_ok(blk);
        out(" blk");
    }
    if (net) { /* a frame shorter than its header: dropped, returned */
        struct vbuf b = {(uint64_t)buf(12, 0), 12, 0};

        negotiate(net, FEAT_V1 | FEAT_INDIRECT);
        add(net, 1, &b, 1);
        driver_ok(net);
        out(" net");
    }
    if (con) {
        struct vbuf w = {(uint64_t)buf(16, 0), 16, F_WRITE}; /* transmit nothing */

        wr(con, R_DEV_FEAT_SEL, 0);
        if (rd(con, R_DEV_FEAT) & F_MULTIPORT) { /* ember exec's ports */
            /* A control message for a port that does not exist: ignored, returned. */
            uint32_t *m = buf(8, 0);
            struct vbuf c = {(uint64_t)m, 8, 0};

            m[0] = 99;
            m[1] = 99;
            negotiate(con, FEAT_V1 | FEAT_INDIRECT | F_MULTIPORT);
            add(con, 3, &c, 1); /* control transmitq */
            add(con, 5, &w, 1); /* stdout's transmitq */
            driver_ok(con);
            out(" exec-control exec-stdout");
        } else {
            negotiate(con, FEAT_V1 | FEAT_INDIRECT);
            add(con, 1, &w, 1);
            driver_ok(con);
            out(" console");
        }
    }
    if (rng) {
        struct vbuf b = {(uint64_t)buf(1, 0), 1, F_WRITE};

        negotiate(rng, FEAT_V1 | FEAT_INDIRECT);
        add(rng, 0, &b, 1);
        driver_ok(rng);
        out(" rng");
    }
}

int guest_main(void)
{
    uint64_t rounds = 0;

    out("hostile_repost: flooding");
    setup();
    out("\n");
    /* Refill every slot the device gave back and publish them with one store; kick only now
     * and then (a kick is an exit): the device finds new entries every time it looks. */
    for (;; rounds++) {
        for (int i = 0; i < nfl; i++) {
            struct vq *q = &fl[i].q;
            uint16_t used = vq_used_idx(q);

            if ((uint16_t)(q->avail_idx - used) < q->size) {
                while ((uint16_t)(q->avail_idx - used) < q->size)
                    q->avail[2 + q->avail_idx++ % q->size] = fl[i].head;
                barrier();
                q->avail[1] = q->avail_idx;
            }
            if (rounds % 1024 == 0)
                vq_kick(q);
        }
    }
}
