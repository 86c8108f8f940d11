/* Unit tests for what --net user lets a guest reach on the host: the real libslirp, frames
 * crafted as a hostile guest would, services listening on the host's loopback. */
#include "check.h"
#include "eventloop.h"
#include "net_backend.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GUEST_IP 0x0a00020fu /* 10.0.2.15 */
#define HOST_IP  0x0a000202u /* 10.0.2.2 */
#define LO_IP    0x7f000001u /* 127.0.0.1 */
#define LO2_IP   0x7f000101u /* 127.0.1.1: the whole 127/8 is the loopback */

static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static struct loop loop;

static void ignore_frame(void *opaque, const void *frame, size_t len)
{
    (void)opaque;
    (void)frame;
    (void)len;
}

static struct net_be *open_user(int host_loopback)
{
    struct net_config cfg = {.backend = NET_USER, .tap_fd = -1, .host_loopback = host_loopback};
    struct net_be *b = NULL;

    CHECK_EQ(net_slirp_open(&cfg, &loop, &b), 0);
    if (b) {
        b->deliver = ignore_frame;
        atomic_store(&b->rx_paused, false);
    }
    return b;
}

static uint16_t csum(const uint8_t *p, size_t n, uint32_t sum)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1)
        sum += (uint32_t)(p[n - 1] << 8);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* An Ethernet frame from the guest carrying an IPv4 TCP SYN (proto 6) or a UDP datagram with
 * "ping" (proto 17) to dst:port. Returns its length. */
static size_t ip_frame(uint8_t *f, int proto, uint32_t dst, uint16_t port)
{
    static uint16_t next_sport = 40000;
    size_t l4 = proto == 6 ? 20 : 12;
    uint8_t *ip = f + 14, *t = ip + 20, pseudo[12];
    uint32_t sum = 0;

    memset(f, 0, 14 + 20 + l4);
    memset(f, 0xff, 6);
    memcpy(f + 6, guest_mac, 6);
    put16(f + 12, 0x0800);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(20 + l4));
    put16(ip + 4, next_sport);
    ip[8] = 64;
    ip[9] = (uint8_t)proto;
    put32(ip + 12, GUEST_IP);
    put32(ip + 16, dst);
    put16(ip + 10, csum(ip, 20, 0));
    put16(t, next_sport++);
    put16(t + 2, port);
    if (proto == 6) {
        put32(t + 4, 1000); /* sequence number */
        t[12] = 5 << 4;     /* data offset */
        t[13] = 0x02;       /* SYN */
        put16(t + 14, 65535);
    } else {
        put16(t + 4, (uint16_t)l4);
        memcpy(t + 8, "ping", 4);
    }
    memcpy(pseudo, ip + 12, 8);
    pseudo[8] = 0;
    pseudo[9] = (uint8_t)proto;
    put16(pseudo + 10, (uint16_t)l4);
    for (size_t i = 0; i < sizeof(pseudo); i += 2)
        sum += (uint32_t)(pseudo[i] << 8 | pseudo[i + 1]);
    put16(t + (proto == 6 ? 16 : 6), csum(t, l4, sum));
    return 14 + 20 + l4;
}

static void guest_sends(struct net_be *b, int proto, uint32_t dst, uint16_t port)
{
    uint8_t f[128];
    struct iovec iov = {f, ip_frame(f, proto, dst, port)};

    b->ops->send(b, &iov, 1); /* refused or taken: what matters is what reaches the host */
}

/* A host service on a loopback address: a TCP listener or a UDP socket, non-blocking. */
static int host_service(int type, uint32_t addr, uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(addr)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    CHECK(fd >= 0);
    CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (type == SOCK_STREAM)
        CHECK_EQ(listen(fd, 8), 0);
    CHECK_EQ(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Run slirp for a while; did anything reach the service? */
static int reached(int fd, int type)
{
    char buf[16];

    for (int i = 0; i < 20; i++) {
        int r;

        loop_run_once(&loop, 10);
        r = type == SOCK_STREAM ? accept(fd, NULL, NULL) : (int)recv(fd, buf, sizeof(buf), 0);
        if (r >= 0) {
            if (type == SOCK_STREAM)
                close(r);
            return 1;
        }
    }
    return 0;
}

/* Does a frame to dst reach a service on the host's loopback address svc? */
static int guest_reaches(struct net_be *b, int type, uint32_t dst, uint32_t svc)
{
    uint16_t port;
    int fd = host_service(type, svc, &port), r;

    guest_sends(b, type == SOCK_STREAM ? 6 : 17, dst, port);
    r = reached(fd, type);
    close(fd);
    return r;
}

/* By default nothing on the host's loopback: not through 10.0.2.2 (libslirp's alias), not by
 * addressing 127.0.0.1 or 0.0.0.0 directly (a guest controls its own kernel), TCP nor UDP. */
static void test_default_reaches_no_loopback(void)
{
    struct net_be *b = open_user(0);

    if (!b)
        return;
    for (int type = SOCK_STREAM; type <= SOCK_DGRAM; type++) {
        CHECK_EQ(guest_reaches(b, type, HOST_IP, LO_IP), 0);
        CHECK_EQ(guest_reaches(b, type, LO_IP, LO_IP), 0);
        CHECK_EQ(guest_reaches(b, type, LO2_IP, LO2_IP), 0);
        CHECK_EQ(guest_reaches(b, type, 0, LO_IP), 0); /* 0.0.0.0 is this host too */
    }
    b->ops->destroy(b);
}

/* host-loopback=on: 10.0.2.2 is the host's loopback, as documented; 127.0.0.1 still is not. */
static void test_host_loopback_on(void)
{
    struct net_be *b = open_user(1);

    if (!b)
        return;
    for (int type = SOCK_STREAM; type <= SOCK_DGRAM; type++) {
        CHECK_EQ(guest_reaches(b, type, HOST_IP, LO_IP), 1);
        CHECK_EQ(guest_reaches(b, type, LO_IP, LO_IP), 0);
        CHECK_EQ(guest_reaches(b, type, 0, LO_IP), 0);
    }
    b->ops->destroy(b);
}

int main(void)
{
    if (loop_init(&loop))
        return 1;
    test_default_reaches_no_loopback();
    test_host_loopback_on();
    loop_close(&loop);
    return check_done("slirp_reach");
}
