/* The event loop: epoll over registered descriptors, one callback per ready handler; handlers
 * may be removed and freed from any callback (the loop drops their pending events). */
#include "eventloop.h"
#include "log.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 32

int loop_init(struct loop *l)
{
    l->batch = NULL;
    l->batch_n = l->batch_next = 0;
    l->retired = NULL;
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
    /* Events of this batch not dispatched yet may name h: forget them. */
    for (int i = l->batch_next; i < l->batch_n; i++)
        if (l->batch[i].data.ptr == h)
            l->batch[i].data.ptr = NULL;
}

void loop_retire(struct loop *l, struct loop_handler *h, loop_release_fn release)
{
    loop_del(l, h);
    if (!l->batch) {
        release(h);
        return;
    }
    h->release = release;
    h->retired_next = l->retired;
    l->retired = h;
}

int loop_run_once(struct loop *l, int timeout_ms)
{
    struct epoll_event ev[LOOP_MAX_EVENTS];
    int n = epoll_wait(l->epfd, ev, LOOP_MAX_EVENTS, timeout_ms);

    if (n < 0)
        return errno == EINTR ? 0 : log_errno("epoll_wait");
    l->batch = ev;
    l->batch_n = n;
    for (l->batch_next = 0; l->batch_next < n;) {
        struct epoll_event *e = &ev[l->batch_next++];
        struct loop_handler *h = e->data.ptr;

        if (h)
            h->fn(h, e->events);
    }
    l->batch = NULL;
    l->batch_n = l->batch_next = 0;
    while (l->retired) {
        struct loop_handler *h = l->retired;

        l->retired = h->retired_next;
        h->release(h);
    }
    return 0;
}
