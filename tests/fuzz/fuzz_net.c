/* libFuzzer target: virtio-net transmit headers and frames, and receive into guest buffers. */
#include "fuzz_common.h"
#include "net_backend.h"
#include "virtio_devices.h"

#include <stdlib.h>
#include <string.h>

#define RX_MODE 0x80 /* feature selector bit: fuzz the receive queue instead of transmit */

static struct fake_vm f;
static struct virtio_dev dev;
static struct net_be be;
static uint64_t sent;

/* CSUM, GUEST_CSUM, GUEST_TSO4, HOST_TSO4, HOST_TSO6, EVENT_IDX, INDIRECT_DESC. */
static const int net_bits[] = {VIRTIO_NET_F_CSUM,       VIRTIO_NET_F_GUEST_CSUM,
                               VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_HOST_TSO4,
                               VIRTIO_NET_F_HOST_TSO6,  VIRTIO_F_EVENT_IDX,
                               VIRTIO_F_INDIRECT_DESC};

/* What the device hands a backend must be what net_backend.h promises. */
static int fake_send(struct net_be *b, const struct iovec *iov, int iovcnt)
{
    const struct virtio_net_hdr_v1 *h = iov[0].iov_base;
    size_t len = iov[1].iov_len;

    (void)b;
    if (iovcnt != 2 || iov[0].iov_len != NET_HDR_LEN || len < NET_MIN_FRAME || len > NET_MAX_FRAME)
        abort();
    if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
        (size_t)h->csum_start + h->csum_offset + 2 > len)
        abort();
    if (h->hdr_len > len || h->num_buffers != 0)
        abort();
    /* touch every byte, so ASan sees a frame that is not all there */
    for (size_t i = 0; i < len; i++)
        sent += ((const uint8_t *)iov[1].iov_base)[i];
    return 0;
}

static void fake_destroy(struct net_be *b)
{
    (void)b;
}

static const struct net_be_ops fake_ops = {.send = fake_send, .destroy = fake_destroy};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const uint8_t mac[6] = {0x52, 0x54, 0, 1, 2, 3};

    (void)argc;
    (void)argv;
    fake_vm_init(&f, FZ_MEM);
    be = (struct net_be){.ops = &fake_ops, .name = "fuzz", .fd = -1, .vnet_hdr = true};
    be.offloads = (1ULL << VIRTIO_NET_F_CSUM) | (1ULL << VIRTIO_NET_F_GUEST_CSUM) |
                  (1ULL << VIRTIO_NET_F_GUEST_TSO4) | (1ULL << VIRTIO_NET_F_HOST_TSO4) |
                  (1ULL << VIRTIO_NET_F_HOST_TSO6);
    if (virtio_net_create_with(&dev, &be, mac, &f.loop) ||
        virtio_mmio_init(&dev, &f.vm, &f.loop, FZ_BASE, 5))
        abort();
    return 0;
}

/* Input: [features, nr_avail, window...]. In RX_MODE the last bytes of the input (up to 1600)
 * are also delivered as frames (a push backend's: no header) three times, in shrinking lengths. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fake_queue fuzzed, other;
    bool rx = data && size && (data[0] & RX_MODE);
    int fq = rx ? 0 : 1;
    struct fz_input in;

    if (fz_parse(data, size, &in))
        return 0;
    fz_start_two_queues(&f, fz_features(&f, FZ_BASE, in.features, net_bits, 7), fq, &in, &fuzzed,
                        &other);
    fake_vm_run(&f, 4, 0);
    if (rx) {
        size_t len = in.window_len < 1600 ? in.window_len : 1600;
        const uint8_t *frame = in.window + in.window_len - len;

        for (int i = 0; i < 3 && be.deliver; i++, len /= 2)
            be.deliver(be.opaque, frame, len); /* takes dev.lock itself, like slirp's */
        fake_vm_run(&f, 2, 0);
    }
    fz_check_status(&f, FZ_BASE);
    if (fake_used_idx(&fuzzed) > in.nr_avail)
        abort();
    return 0;
}
