/* The event loop: epoll over registered descriptors, one callback per ready handler. */
#include "eventloop.h"
#include "log.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 32

int loop_init(struct loop *l)
{
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    return l->epfd < 0 ? log_errno("epoll_create1") : 0;
}

void loop_close(struct loop *l)
{
    if (l->epfd >= 0)
        close(l->epfd);
    l->epfd = -1;
}

static int ctl(struct loop *l, int op, struct loop_handler *h, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = h};

    return epoll_ctl(l->epfd, op, h->fd, &ev) < 0 ? -errno : 0;
}

int loop_add(struct loop *l, struct loop_handler *h, uint32_t events)
{
    return ctl(l, EPOLL_CTL_ADD, h, events);
}

int loop_mod(struct loop *l, struct loop_handler *h, uint32_t events)
{
    return ctl(l, EPOLL_CTL_MOD, h, events);
}

void loop_del(struct loop *l, struct loop_handler *h)
{
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, h->fd, NULL);
}

int loop_run_once(struct loop *l, int timeout_ms)
{
    struct epoll_event ev[LOOP_MAX_EVENTS];
    int n = epoll_wait(l->epfd, ev, LOOP_MAX_EVENTS, timeout_ms);

    if (n < 0)
        return errno == EINTR ? 0 : log_errno("epoll_wait");
    for (int i = 0; i < n; i++) {
        struct loop_handler *h = ev[i].data.ptr;
        h->fn(h, ev[i].events);
    }
    return 0;
}
