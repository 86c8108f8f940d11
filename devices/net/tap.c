/* TAP backend of virtio-net: --net tap=NAME opens /dev/net/tun, --net tap-fd=N uses a given fd. */
#include "log.h"
#include "net_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/if_tun.h>

#define BIT(n)       (1ULL << (n))
#define TUN_OFFLOADS (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
#define VIRTIO_OFFLOADS                                                                            \
    (BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_HOST_TSO4) |         \
     BIT(VIRTIO_NET_F_HOST_TSO6) | BIT(VIRTIO_NET_F_GUEST_TSO4) | BIT(VIRTIO_NET_F_GUEST_TSO6))

struct tap {
    struct net_be be;
    char flag[32];    /* "--net tap=NAME" or "--net tap-fd=N", for messages */
    bool owns_fd;     /* tap-fd= descriptors stay open for a restarted VM */
    unsigned offload; /* TUN_F_* set now */
};

static int tap_send(struct net_be *b, const struct iovec *iov, int iovcnt)
{
    return writev(b->fd, iov, iovcnt) < 0 ? -errno : 0;
}

static ssize_t tap_recv(struct net_be *b, const struct iovec *iov, int iovcnt)
{
    ssize_t n = readv(b->fd, iov, iovcnt);

    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n == 0 ? -EIO : n;
}

/* What the kernel may hand us: partial checksums and TSO frames only if the guest takes them. */
static int tap_set_offload(struct net_be *b, uint64_t guest)
{
    struct tap *t = container_of(b, struct tap, be);
    unsigned flags = 0;

    if (!b->offloads)
        return 0;
    if (guest & BIT(VIRTIO_NET_F_GUEST_CSUM)) {
        flags |= TUN_F_CSUM;
        if (guest & BIT(VIRTIO_NET_F_GUEST_TSO4))
            flags |= TUN_F_TSO4;
        if (guest & BIT(VIRTIO_NET_F_GUEST_TSO6))
            flags |= TUN_F_TSO6;
    }
    if (flags == t->offload)
        return 0;
    if (ioctl(b->fd, TUNSETOFFLOAD, (unsigned long)flags) < 0)
        return -errno;
    t->offload = flags;
    return 0;
}

static void tap_destroy(struct net_be *b)
{
    struct tap *t = container_of(b, struct tap, be);

    if (t->owns_fd && b->fd >= 0)
        close(b->fd);
    free(t);
}

static const struct net_be_ops tap_ops = {
        .send = tap_send,
        .recv = tap_recv,
        .set_offload = tap_set_offload,
        .destroy = tap_destroy,
};

/* 12-byte virtio_net_hdr_v1 headers, and which offloads the kernel accepts (none set yet). */
static int setup_vnet_hdr(struct tap *t)
{
    int sz = NET_HDR_LEN;

    if (ioctl(t->be.fd, TUNSETVNETHDRSZ, &sz) < 0) {
        int err = errno;
        log_err("%s: cannot use 12-byte virtio-net headers (TUNSETVNETHDRSZ: %s)", t->flag,
                strerror(err));
        return -err;
    }
    t->be.vnet_hdr = true;
    if (ioctl(t->be.fd, TUNSETOFFLOAD, (unsigned long)TUN_OFFLOADS) < 0) {
        log_debug("%s: no offloads (TUNSETOFFLOAD: %s)", t->flag, strerror(errno));
        return 0;
    }
    t->be.offloads = VIRTIO_OFFLOADS;
    t->offload = TUN_OFFLOADS;
    return tap_set_offload(&t->be, 0); /* until the guest says what it takes */
}

static int attach(int fd, const char *name, short flags)
{
    struct ifreq ifr;

    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = flags;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    return ioctl(fd, TUNSETIFF, &ifr) < 0 ? -errno : 0;
}

/* --net tap=NAME: attach to (or, with CAP_NET_ADMIN, create) the TAP device NAME. */
static int open_named(struct tap *t, const char *name)
{
    int err, fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    bool vnet;

    if (fd < 0) {
        err = errno;
        log_err("%s: /dev/net/tun: %s", t->flag, strerror(err));
        return -err;
    }
    t->be.fd = fd;
    t->owns_fd = true;
    vnet = true;
    err = attach(fd, name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
    if (err == -EINVAL) {
        vnet = false; /* a kernel without vnet headers, or a device we cannot attach to */
        err = attach(fd, name, IFF_TAP | IFF_NO_PI);
    }
    if (err) {
        log_err("%s: cannot attach to the TAP device: %s%s", t->flag, strerror(-err),
                err == -EPERM    ? " (needs CAP_NET_ADMIN, or a TAP owned by this user)"
                : err == -EBUSY  ? " (another process has it open)"
                : err == -EINVAL ? " (is it a TUN or multi-queue device?)"
                                 : "");
        return err;
    }
    return vnet ? setup_vnet_hdr(t) : 0;
}

/* --net tap-fd=N: an already attached TAP descriptor, from whoever started us. */
static int open_fd(struct tap *t, int fd)
{
    struct ifreq ifr;
    int fl;

    memset(&ifr, 0, sizeof(ifr));
    if (fcntl(fd, F_GETFD) < 0) {
        log_err("%s: %d is not an open file descriptor", t->flag, fd);
        return -EBADF;
    }
    if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
        int err = errno;
        log_err("%s: descriptor %d is not an attached TAP device (TUNGETIFF: %s)", t->flag, fd,
                strerror(err));
        return -EINVAL;
    }
    if (!(ifr.ifr_flags & IFF_TAP) || !(ifr.ifr_flags & IFF_NO_PI)) {
        log_err("%s: descriptor %d is %s; it must be a TAP opened with IFF_NO_PI", t->flag, fd,
                (ifr.ifr_flags & IFF_TAP) ? "a TAP with packet information" : "a TUN, not a TAP");
        return -EINVAL;
    }
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return log_errno("fcntl");
    t->be.fd = fd;
    if (ifr.ifr_flags & IFF_VNET_HDR)
        return setup_vnet_hdr(t);
    return 0;
}

int net_tap_open(const struct net_config *cfg, struct net_be **out)
{
    struct tap *t = calloc(1, sizeof(*t));
    int err;

    if (!t) {
        log_err("--net: out of memory");
        return -ENOMEM;
    }
    t->be.ops = &tap_ops;
    t->be.tx_guest_iov = true; /* writev: the kernel copies the frame once */
    t->be.fd = -1;
    if (cfg->backend == NET_TAP_FD) {
        snprintf(t->flag, sizeof(t->flag), "--net tap-fd=%d", cfg->tap_fd);
        err = open_fd(t, cfg->tap_fd);
    } else {
        snprintf(t->flag, sizeof(t->flag), "--net tap=%s", cfg->tap_name);
        err = open_named(t, cfg->tap_name);
    }
    if (err) {
        tap_destroy(&t->be);
        return err;
    }
    t->be.name = t->flag + 6; /* "tap=NAME" / "tap-fd=N" */
    *out = &t->be;
    return 0;
}
