/* The event loop: one epoll thread that owns devices, backends, timers and console input. */
#ifndef EMBER_EVENTLOOP_H
#define EMBER_EVENTLOOP_H

#include <stddef.h>
#include <stdint.h>

struct loop_handler;
typedef void (*loop_fn)(struct loop_handler *h, uint32_t events);

/* Embed one per watched descriptor; the callback gets it back (use container_of). */
struct loop_handler {
    int fd;
    loop_fn fn;
};

struct loop {
    int epfd;
};

int loop_init(struct loop *l);
void loop_close(struct loop *l);
int loop_add(struct loop *l, struct loop_handler *h, uint32_t events);
int loop_mod(struct loop *l, struct loop_handler *h, uint32_t events);
void loop_del(struct loop *l, struct loop_handler *h);
/* Wait up to timeout_ms (-1: forever) and dispatch ready handlers. 0 or -errno. */
int loop_run_once(struct loop *l, int timeout_ms);

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
