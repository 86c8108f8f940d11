/* virtio-net backends (TAP, libslirp user networking) behind one ops table, and the wire header. */
#ifndef EMBER_NET_BACKEND_H
#define EMBER_NET_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "config.h"
#include "eventloop.h"
#include "virtio.h"

/* virtio-net feature bits ("Network Device", feature bits). */
#define VIRTIO_NET_F_CSUM       0 /* device takes partially checksummed packets */
#define VIRTIO_NET_F_GUEST_CSUM 1 /* driver takes partially checksummed packets */
#define VIRTIO_NET_F_MAC        5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_HOST_TSO4  11
#define VIRTIO_NET_F_HOST_TSO6  12
#define VIRTIO_NET_F_MRG_RXBUF  15
#define VIRTIO_NET_F_STATUS     16

#define VIRTIO_NET_S_LINK_UP 1

/* struct virtio_net_hdr_v1 (12 bytes, little-endian): in front of every frame on both queues,
 * and of every frame a backend with vnet_hdr sends or receives. */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE     0
#define VIRTIO_NET_HDR_GSO_TCPV4    1
#define VIRTIO_NET_HDR_GSO_UDP      3
#define VIRTIO_NET_HDR_GSO_TCPV6    4
#define VIRTIO_NET_HDR_GSO_ECN      0x80

struct virtio_net_hdr_v1 {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
    uint16_t num_buffers;
};
_Static_assert(sizeof(struct virtio_net_hdr_v1) == 12, "virtio_net_hdr_v1 layout");

#define NET_HDR_LEN   12u
#define NET_MAX_FRAME 65550u /* 64 KiB GSO frame plus Ethernet and VLAN headers */
#define NET_MIN_FRAME 14u    /* an Ethernet header */
#define NET_IOV_MAX   64u    /* guest buffers one frame may come in or go to without a copy */

struct net_be;

struct net_be_ops {
    /* Send one frame: iov is [header, frame] when vnet_hdr, else the frame alone (one buffer
     * for push backends). With tx_guest_iov the frame may come in up to NET_IOV_MAX pieces
     * straight from guest memory, which the guest can change meanwhile: such a backend only
     * copies it (the kernel does, for TAP), never parses it. 0 or -errno (-EAGAIN: no room
     * now; the device drops the frame). */
    int (*send)(struct net_be *b, const struct iovec *iov, int iovcnt);
    /* Pull backends (fd >= 0): read one frame into iov (the header first when vnet_hdr; the
     * device gives room for the largest frame, so none is cut). Its length, -EAGAIN when none
     * is waiting, or another -errno (the backend is dead). */
    ssize_t (*recv)(struct net_be *b, const struct iovec *iov, int iovcnt);
    /* The guest accepted these VIRTIO_NET_F_GUEST_* offloads (0 after a reset); may be NULL. */
    int (*set_offload)(struct net_be *b, uint64_t guest_features);
    /* Push backends: rx_paused went back to false; look at the host side again. May be NULL. */
    void (*rx_resume)(struct net_be *b);
    /* Release everything (descriptors, loop handlers, memory, the backend itself). */
    void (*destroy)(struct net_be *b);
};

/* Pull backends (TAP) expose a descriptor the device polls and reads only while the guest has
 * receive buffers. Push backends (slirp) run their own loop handlers and hand frames to
 * deliver (on the event loop thread), watching rx_paused to stop reading the host side. */
struct net_be {
    const struct net_be_ops *ops;
    const char *name;  /* for messages */
    int fd;            /* readable when recv has a frame; -1 for push backends */
    bool vnet_hdr;     /* frames carry a struct virtio_net_hdr_v1 both ways */
    bool tx_guest_iov; /* send() takes frames straight from guest memory (see send) */
    uint64_t offloads; /* VIRTIO_NET_F_* offload bits the backend can honour (vnet_hdr only) */
    /* Set by the device. */
    void (*deliver)(void *opaque, const void *frame, size_t len);
    void *opaque;
    atomic_bool rx_paused; /* the guest has no receive buffers (or the device is stopped) */
};

/* Open a backend for --net (one error line naming the flag on failure). 0 or -errno. */
int net_tap_open(const struct net_config *cfg, struct net_be **out);
int net_slirp_open(const struct net_config *cfg, struct loop *loop, struct net_be **out);

/* virtio_net_create with a given backend, which the device owns from now on (destroyed on
 * failure too). mac NULL: a random locally administered 52:54:00:xx:xx:xx. */
int virtio_net_create_with(struct virtio_dev *d, struct net_be *b, const uint8_t *mac,
                           struct loop *loop);

struct virtio_net_stats {
    uint64_t tx_packets, tx_dropped; /* dropped: malformed or refused by the backend */
    uint64_t rx_packets, rx_dropped; /* dropped: no or too small guest buffer, bad header */
};
/* Counters of a virtio-net device (call with dev->lock held, or when the loop is idle). */
void virtio_net_get_stats(const struct virtio_dev *d, struct virtio_net_stats *s);

#endif
