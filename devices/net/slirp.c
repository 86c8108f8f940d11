/* --net user: libslirp on the event loop thread, its sockets watched through a nested epoll set. */
#include "log.h"
#include "net_backend.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <slirp/libslirp.h>

/* libslirp (and glib under it) is loaded on the first --net user, not linked: every other VM
 * starts without them, sparing their relocations, glib's constructors and ~1 MiB of RSS. */
static struct {
    __typeof__(&slirp_new) new_;
    __typeof__(&slirp_cleanup) cleanup;
    __typeof__(&slirp_input) input;
    __typeof__(&slirp_add_hostfwd) add_hostfwd;
    __typeof__(&slirp_pollfds_fill) pollfds_fill;
    __typeof__(&slirp_pollfds_poll) pollfds_poll;
} lib;

static int load_libslirp(void)
{
    void *h;

    if (lib.new_)
        return 0;
    h = dlopen("libslirp.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        log_err("--net user: cannot load libslirp (apt-get install libslirp0): %s", dlerror());
        return -ENOENT;
    }
    lib.cleanup = dlsym(h, "slirp_cleanup");
    lib.input = dlsym(h, "slirp_input");
    lib.add_hostfwd = dlsym(h, "slirp_add_hostfwd");
    lib.pollfds_fill = dlsym(h, "slirp_pollfds_fill");
    lib.pollfds_poll = dlsym(h, "slirp_pollfds_poll");
    lib.new_ = dlsym(h, "slirp_new");
    if (!lib.cleanup || !lib.input || !lib.add_hostfwd || !lib.pollfds_fill || !lib.pollfds_poll ||
        !lib.new_) {
        log_err("--net user: libslirp.so.0 lacks a function ember needs (libslirp >= 4.1)");
        lib.new_ = NULL;
        dlclose(h);
        return -ENOENT;
    }
    return 0;
}

#define NET_ADDR   0x0a000200u /* 10.0.2.0/24 */
#define NET_MASK   0xffffff00u
#define HOST_ADDR  0x0a000202u /* the host to the guest (127.0.0.1 if host-loopback=on) */
#define DNS_ADDR   0x0a000203u
#define GUEST_ADDR 0x0a00020fu /* first DHCP address, and where hostfwd rules point */

#define MAX_TIMER_RUNS 64 /* timer callbacks per step, in case one keeps re-arming itself */
#define RESYNC_STEPS   64 /* re-register every watch this often (see sync_watches) */
#define EARLY_MS       2  /* the timer may fire this much before slirp's moving deadline */
#define DEADLINE_NONE  (-1)
#define DEADLINE_STALE (-2)

struct slirp_timer {
    SlirpTimerCb cb;
    void *cb_opaque;
    int64_t expire_ms;
    bool armed;
    struct slirp_timer *next;
};

/* A descriptor in the nested epoll set and the events it is registered for. */
struct watch {
    int fd;
    uint32_t events;
};

/* All of it lives on the event loop thread. */
struct user_net {
    struct net_be be;
    Slirp *slirp;
    struct loop *loop;
    int sock_epfd; /* slirp's sockets: readable when one of them is ready */
    int timer_fd;  /* the next deadline: slirp's TCP timers or one of its timers */
    int wake_fd;   /* run slirp soon: it asked (notify), took a frame, or rx resumed */
    struct loop_handler h_socks, h_timer, h_wake;
    bool in_loop;
    bool wake_pending;
    struct pollfd *pfd; /* what the last slirp_pollfds_fill asked for */
    int npfd, pfd_cap;
    struct watch *watch, *next_watch; /* registered in sock_epfd, and being computed */
    int nwatch, watch_cap, next_cap;
    struct slirp_timer *timers;
    int64_t poll_deadline_ms; /* when slirp wants to run again; -1: no need */
    int64_t armed_ms;         /* what timer_fd holds: a deadline, DEADLINE_NONE or _STALE */
    unsigned steps;
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ms(void)
{
    return now_ns() / 1000000;
}

static void wake(struct user_net *s)
{
    uint64_t one = 1;

    if (s->wake_pending)
        return;
    s->wake_pending = true;
    (void)!write(s->wake_fd, &one, sizeof(one));
}

/* ---- timers: one timerfd armed for the earliest deadline ---- */

static void arm_deadline(struct user_net *s)
{
    struct itimerspec its = {{0, 0}, {0, 0}};
    int64_t deadline = s->poll_deadline_ms;

    for (struct slirp_timer *t = s->timers; t; t = t->next)
        if (t->armed && (deadline < 0 || t->expire_ms < deadline))
            deadline = t->expire_ms;
    if (deadline < 0)
        deadline = DEADLINE_NONE;
    /* Already set, or set a little earlier (its step finds nothing due and re-arms): slirp's
     * poll timeout moves with every step, a system call each would cost more. */
    if (deadline == s->armed_ms ||
        (s->armed_ms >= 0 && deadline >= s->armed_ms && deadline - s->armed_ms <= EARLY_MS))
        return;
    if (deadline >= 0) {
        its.it_value.tv_sec = deadline / 1000;
        its.it_value.tv_nsec = (deadline % 1000) * 1000000;
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1; /* all zero would disarm it */
    }
    s->armed_ms =
            timerfd_settime(s->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) ? DEADLINE_STALE : deadline;
}

/* Expired timers, one at a time: a callback may free or re-arm any timer. */
static void run_timers(struct user_net *s)
{
    for (int i = 0; i < MAX_TIMER_RUNS; i++) {
        int64_t now = now_ms();
        struct slirp_timer *t = s->timers;

        while (t && !(t->armed && t->expire_ms <= now))
            t = t->next;
        if (!t)
            return;
        t->armed = false;
        t->cb(t->cb_opaque);
    }
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
    struct user_net *s = opaque;
    struct slirp_timer *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    t->cb = cb;
    t->cb_opaque = cb_opaque;
    t->next = s->timers;
    s->timers = t;
    return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
    struct user_net *s = opaque;

    for (struct slirp_timer **p = &s->timers; *p; p = &(*p)->next) {
        if (*p == timer) {
            *p = (*p)->next;
            free(timer);
            return;
        }
    }
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
    struct slirp_timer *t = timer;

    if (!t)
        return;
    t->expire_ms = expire_ms;
    t->armed = true;
    arm_deadline(opaque);
}

/* ---- slirp's sockets ---- */

static short to_poll(int ev)
{
    return (short)(((ev & SLIRP_POLL_IN) ? POLLIN : 0) | ((ev & SLIRP_POLL_OUT) ? POLLOUT : 0) |
                   ((ev & SLIRP_POLL_PRI) ? POLLPRI : 0));
}

static int from_poll(short ev)
{
    return ((ev & POLLIN) ? SLIRP_POLL_IN : 0) | ((ev & POLLOUT) ? SLIRP_POLL_OUT : 0) |
           ((ev & POLLPRI) ? SLIRP_POLL_PRI : 0) | ((ev & POLLERR) ? SLIRP_POLL_ERR : 0) |
           ((ev & (POLLHUP | POLLNVAL)) ? SLIRP_POLL_HUP : 0);
}

/* Room for `need` elements: the (possibly moved) array, or NULL (the old one stays valid). */
static void *grow(void *arr, int *cap, int need, size_t elem)
{
    void *p;
    int n;

    if (need <= *cap)
        return arr;
    n = *cap ? *cap * 2 : 16;
    while (n < need)
        n *= 2;
    p = realloc(arr, (size_t)n * elem);
    if (p)
        *cap = n;
    return p;
}

/* slirp_pollfds_fill: while the guest has no receive buffers, nothing is read from the host
 * side (the kernel's socket buffers hold it, and TCP slows the peer down). */
static int cb_add_poll(int fd, int events, void *opaque)
{
    struct user_net *s = opaque;
    struct pollfd *p = grow(s->pfd, &s->pfd_cap, s->npfd + 1, sizeof(*p));

    if (!p)
        return -1;
    s->pfd = p;
    if (atomic_load(&s->be.rx_paused))
        events &= ~(SLIRP_POLL_IN | SLIRP_POLL_PRI);
    s->pfd[s->npfd] = (struct pollfd){.fd = fd, .events = to_poll(events)};
    return s->npfd++;
}

static int cb_get_revents(int idx, void *opaque)
{
    struct user_net *s = opaque;

    if (idx < 0 || idx >= s->npfd)
        return 0;
    return from_poll(s->pfd[idx].revents);
}

static int find_watch(const struct watch *w, int n, int fd)
{
    for (int i = 0; i < n; i++)
        if (w[i].fd == fd)
            return i;
    return -1;
}

static void epoll_set(int epfd, int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};

    /* MOD every time: slirp may have closed a descriptor and reused its number since. */
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0 && errno == ENOENT)
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* Make the nested epoll set match pfd: one entry per descriptor with events. A descriptor
 * already registered for the same events costs no system call; slirp says when it closes one
 * (unregister_poll_fd), and every RESYNC_STEPS steps all are registered again anyway, in case
 * a number was closed and reused unannounced (meanwhile step's poll() still sees it). */
static void sync_watches(struct user_net *s)
{
    bool resync = ++s->steps % RESYNC_STEPS == 0;
    struct watch *tmp;
    int n = 0, cap;

    tmp = grow(s->next_watch, &s->next_cap, s->npfd + 1, sizeof(*tmp));
    if (!tmp)
        return; /* keep the old set: the periodic step still runs slirp */
    s->next_watch = tmp;
    for (int i = 0; i < s->npfd; i++) {
        uint32_t ev = (uint32_t)s->pfd[i].events; /* POLLIN/OUT/PRI equal EPOLLIN/OUT/PRI */
        int j = find_watch(s->next_watch, n, s->pfd[i].fd);

        if (!ev)
            continue;
        if (j >= 0)
            s->next_watch[j].events |= ev;
        else
            s->next_watch[n++] = (struct watch){s->pfd[i].fd, ev};
    }
    for (int i = 0; i < n; i++) {
        int j = find_watch(s->watch, s->nwatch, s->next_watch[i].fd);

        if (resync || j < 0 || s->watch[j].events != s->next_watch[i].events)
            epoll_set(s->sock_epfd, s->next_watch[i].fd, s->next_watch[i].events);
    }
    for (int i = 0; i < s->nwatch; i++)
        if (find_watch(s->next_watch, n, s->watch[i].fd) < 0)
            epoll_ctl(s->sock_epfd, EPOLL_CTL_DEL, s->watch[i].fd, NULL);
    tmp = s->watch;
    s->watch = s->next_watch;
    s->next_watch = tmp;
    cap = s->watch_cap;
    s->watch_cap = s->next_cap;
    s->next_cap = cap;
    s->nwatch = n;
}

/* One slirp step: due timers, sockets that are ready, then what to watch and when to run next. */
static void step(struct user_net *s)
{
    uint32_t timeout = UINT32_MAX;
    int r;

    run_timers(s);
    r = poll(s->pfd, (nfds_t)s->npfd, 0);
    lib.pollfds_poll(s->slirp, r < 0, cb_get_revents, s);
    s->npfd = 0;
    lib.pollfds_fill(s->slirp, &timeout, cb_add_poll, s);
    sync_watches(s);
    s->poll_deadline_ms = timeout == UINT32_MAX ? -1 : now_ms() + timeout;
    arm_deadline(s);
}

static void on_socks(struct loop_handler *h, uint32_t events)
{
    (void)events;
    step(container_of(h, struct user_net, h_socks));
}

static void on_timer(struct loop_handler *h, uint32_t events)
{
    struct user_net *s = container_of(h, struct user_net, h_timer);
    uint64_t n;

    (void)events;
    (void)!read(s->timer_fd, &n, sizeof(n));
    s->armed_ms = DEADLINE_NONE; /* it fired: disarmed */
    step(s);
}

static void on_wake(struct loop_handler *h, uint32_t events)
{
    struct user_net *s = container_of(h, struct user_net, h_wake);
    uint64_t n;

    (void)events;
    (void)!read(s->wake_fd, &n, sizeof(n));
    s->wake_pending = false;
    step(s);
}

/* ---- the other slirp callbacks ---- */

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
    struct user_net *s = opaque;

    if (s->be.deliver)
        s->be.deliver(s->be.opaque, buf, len);
    return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
    (void)opaque;
    log_debug("slirp: guest error: %s", msg);
}

static int64_t cb_clock_get_ns(void *opaque)
{
    (void)opaque;
    return now_ns();
}

/* The poll set is rebuilt from slirp_pollfds_fill at every step: nothing to do here. */
static void cb_register_poll_fd(int fd, void *opaque)
{
    (void)fd;
    (void)opaque;
}

/* slirp is about to close fd: forget its watch, so a socket that gets the number next is
 * registered afresh. */
static void cb_unregister_poll_fd(int fd, void *opaque)
{
    struct user_net *s = opaque;
    int j = find_watch(s->watch, s->nwatch, fd);

    if (j < 0)
        return;
    epoll_ctl(s->sock_epfd, EPOLL_CTL_DEL, fd, NULL);
    s->watch[j] = s->watch[--s->nwatch];
}

static void cb_notify(void *opaque)
{
    wake(opaque);
}

static const SlirpCb callbacks = {
        .send_packet = cb_send_packet,
        .guest_error = cb_guest_error,
        .clock_get_ns = cb_clock_get_ns,
        .timer_new = cb_timer_new,
        .timer_free = cb_timer_free,
        .timer_mod = cb_timer_mod,
        .register_poll_fd = cb_register_poll_fd,
        .unregister_poll_fd = cb_unregister_poll_fd,
        .notify = cb_notify,
};

/* ---- backend ops ---- */

/* An IPv4 packet to the host's own addresses 127.0.0.0/8 or 0.0.0.0/8. libslirp connects
 * to whatever address the guest names, so without this a guest that writes its own frames
 * reaches the host's loopback directly, with or without disable_host_loopback (which only
 * covers 10.0.2.2). Every fragment carries the destination, so fragments are caught too. */
static bool to_host_itself(const uint8_t *f, size_t len)
{
    uint8_t net;

    if (len < 14 + 20 || f[12] != 0x08 || f[13] != 0x00) /* not IPv4: slirp drops what is short */
        return false;
    net = f[14 + 16]; /* the destination's first byte */
    return net == 127 || net == 0;
}

static int user_send(struct net_be *b, const struct iovec *iov, int iovcnt)
{
    struct user_net *s = container_of(b, struct user_net, be);

    if (iovcnt != 1 || iov[0].iov_len > NET_MAX_FRAME)
        return -EINVAL;
    if (to_host_itself(iov[0].iov_base, iov[0].iov_len))
        return -EPERM; /* counted as a dropped frame */
    lib.input(s->slirp, iov[0].iov_base, (int)iov[0].iov_len);
    wake(s); /* it may have opened sockets or armed timers */
    return 0;
}

static void user_rx_resume(struct net_be *b)
{
    wake(container_of(b, struct user_net, be));
}

static void user_destroy(struct net_be *b)
{
    struct user_net *s = container_of(b, struct user_net, be);

    if (s->in_loop) {
        loop_del(s->loop, &s->h_socks);
        loop_del(s->loop, &s->h_timer);
        loop_del(s->loop, &s->h_wake);
    }
    if (s->slirp)
        lib.cleanup(s->slirp);
    while (s->timers)
        cb_timer_free(s->timers, s);
    if (s->sock_epfd >= 0)
        close(s->sock_epfd);
    if (s->timer_fd >= 0)
        close(s->timer_fd);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    free(s->pfd);
    free(s->watch);
    free(s->next_watch);
    free(s);
}

static const struct net_be_ops user_ops = {
        .send = user_send,
        .rx_resume = user_rx_resume,
        .destroy = user_destroy,
};

/* ---- creation ---- */

static int add_hostfwds(struct user_net *s, const struct net_config *cfg)
{
    struct in_addr guest = {.s_addr = htonl(GUEST_ADDR)};

    for (int i = 0; i < cfg->nr_fwd; i++) {
        const struct hostfwd *f = &cfg->fwd[i];
        struct in_addr host = {.s_addr = f->host_addr}; /* 0: INADDR_ANY */
        char addr[INET_ADDRSTRLEN];

        errno = 0;
        if (lib.add_hostfwd(s->slirp, f->udp, host, f->host_port, guest, f->guest_port) == 0)
            continue;
        inet_ntop(AF_INET, &host, addr, sizeof(addr));
        log_err("--net user,hostfwd=%s:%s:%u-:%u: cannot listen on the host port (%s)",
                f->udp ? "udp" : "tcp", f->host_addr ? addr : "", f->host_port, f->guest_port,
                errno ? strerror(errno) : "refused by slirp");
        return errno ? -errno : -EADDRINUSE;
    }
    return 0;
}

static int create_fds(struct user_net *s)
{
    s->sock_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->sock_epfd < 0)
        return log_errno("--net user: epoll_create1");
    s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (s->timer_fd < 0)
        return log_errno("--net user: timerfd_create");
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->wake_fd < 0)
        return log_errno("--net user: eventfd");
    return 0;
}

static int add_handlers(struct user_net *s)
{
    int err;

    s->h_socks = (struct loop_handler){.fd = s->sock_epfd, .fn = on_socks};
    s->h_timer = (struct loop_handler){.fd = s->timer_fd, .fn = on_timer};
    s->h_wake = (struct loop_handler){.fd = s->wake_fd, .fn = on_wake};
    err = loop_add(s->loop, &s->h_socks, EPOLLIN);
    if (!err)
        err = loop_add(s->loop, &s->h_timer, EPOLLIN);
    if (!err)
        err = loop_add(s->loop, &s->h_wake, EPOLLIN);
    s->in_loop = true; /* deleting one that was never added is harmless */
    if (err)
        log_err("--net user: cannot watch slirp's descriptors: %s", strerror(-err));
    return err;
}

int net_slirp_open(const struct net_config *cfg, struct loop *loop, struct net_be **out)
{
    SlirpConfig sc = {
            .version = 1,
            .restricted = 0,
            .in_enabled = true,
            .vnetwork = {htonl(NET_ADDR)},
            .vnetmask = {htonl(NET_MASK)},
            .vhost = {htonl(HOST_ADDR)},
            .in6_enabled = false,
            .vhostname = "ember",
            .vdhcp_start = {htonl(GUEST_ADDR)},
            .vnameserver = {htonl(DNS_ADDR)},
            /* 10.0.2.2 (and every address of 10.0.2.0/24 but the DNS one, which libslirp
             * serves on port 53 only) maps to the host's 127.0.0.1 only when asked for. */
            .disable_host_loopback = !cfg->host_loopback,
    };
    struct user_net *s = calloc(1, sizeof(*s));
    int err;

    if (!s) {
        log_err("--net user: out of memory");
        return -ENOMEM;
    }
    s->be.ops = &user_ops;
    s->be.name = "user";
    s->be.fd = -1;
    s->loop = loop;
    s->sock_epfd = s->timer_fd = s->wake_fd = -1;
    s->poll_deadline_ms = -1;
    s->armed_ms = DEADLINE_NONE;
    atomic_store(&s->be.rx_paused, true);
    err = loop ? create_fds(s) : -EINVAL;
    if (!err)
        err = load_libslirp();
    if (err)
        goto fail;
    s->slirp = lib.new_(&sc, &callbacks, s);
    if (!s->slirp) {
        log_err("--net user: cannot start libslirp");
        err = -ENOMEM;
        goto fail;
    }
    err = add_hostfwds(s, cfg);
    if (!err)
        err = add_handlers(s);
    if (err)
        goto fail;
    step(s);
    *out = &s->be;
    return 0;
fail:
    user_destroy(&s->be);
    return err;
}
