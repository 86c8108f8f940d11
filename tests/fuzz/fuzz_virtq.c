/* libFuzzer target: the split-virtqueue chain walker (virtq_pop/push) on RAM the input fills. */
#include "fuzz_common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct fake_vm f;
static struct virtq q;
static struct virtq_chain chain;
static uint8_t scratch[1 << 16];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fake_vm_init(&f, FZ_MEM);
    return 0;
}

/* Input: [mode, nr_avail, window...]. mode bits 0-2: queue size 1 << n (1..128, but the
 * rings hold 16: larger sizes reach past them into the data, as a guest could arrange);
 * bit 3 indirect, bit 4 EVENT_IDX, bits 5-7: start the indices at 0, 0xfff0 or 0x7ff8. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint16_t starts[] = {0, 0xfff0, 0x7ff8, 1, 0xffff, 3, 0x8000, 15};
    struct fz_input in;
    uint8_t mode;
    int r;

    if (fz_parse(data, size, &in))
        return 0;
    mode = in.features;
    fz_load(&f, &in);
    memset(&q, 0, sizeof(q));
    q.mem = &f.vm.mem;
    q.kick_fd = -1;
    q.index = -1;
    q.size = (uint16_t)(1u << (mode & 7));
    q.indirect = mode & 8;
    q.event_idx = mode & 16;
    q.desc_gpa = FZ_DESC;
    q.avail_gpa = FZ_AVAIL;
    q.used_gpa = FZ_USED;
    q.last_avail = q.used_idx = q.signalled_used = starts[mode >> 5];
    /* nr_avail counts from the start index, so "0 chains" stays 0 for every start. */
    fake_put16(&f, FZ_AVAIL + 2, (uint16_t)(q.last_avail + in.nr_avail));
    if (virtq_enable(&q))
        return 0;
    for (int n = 0; n < 2 * VIRTQ_MAX_SIZE; n++) {
        r = virtq_pop(&q, &chain);
        if (r != 1)
            break;
        fz_check_chain(&f, &chain);
        /* Use the chain the way a device would: read all of it, fill all of it. */
        virtq_chain_read(&chain, 0, scratch, sizeof(scratch));
        virtq_chain_read(&chain, chain.out_len / 2, scratch, 64);
        memset(scratch, 0xa5, sizeof(scratch));
        virtq_chain_write(&chain, 0, scratch, chain.in_len < sizeof(scratch) ? chain.in_len : 0);
        virtq_chain_write(&chain, chain.in_len ? chain.in_len - 1 : 0, scratch, 8);
        if (virtq_push(&q, chain.head, chain.in_len))
            abort(); /* a popped head is always a valid descriptor index */
        (void)virtq_should_notify(&q);
    }
    /* A head that is not a descriptor index is refused, never written. */
    if (virtq_push(&q, q.size, 0) != -EINVAL)
        abort();
    return 0;
}
