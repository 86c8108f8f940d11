/* The event loop: one epoll thread that owns devices, backends, timers and console input. */
#ifndef EMBER_EVENTLOOP_H
#define EMBER_EVENTLOOP_H

#include <stddef.h>
#include <stdint.h>

struct loop_handler;
typedef void (*loop_fn)(struct loop_handler *h, uint32_t events);
typedef void (*loop_release_fn)(struct loop_handler *h);

/* Embed one per watched descriptor; the callback gets it back (use container_of). */
struct loop_handler {
    int fd;
    loop_fn fn;
    /* The loop's own: a retired handler waiting for the end of the batch. */
    struct loop_handler *retired_next;
    loop_release_fn release;
};

struct epoll_event;

struct loop {
    int epfd;
    /* While loop_run_once dispatches: the batch and the next event to dispatch. */
    struct epoll_event *batch;
    int batch_n, batch_next;
    struct loop_handler *retired; /* released when the batch is over */
};

int loop_init(struct loop *l);
void loop_close(struct loop *l);
int loop_add(struct loop *l, struct loop_handler *h, uint32_t events);
int loop_mod(struct loop *l, struct loop_handler *h, uint32_t events);
/* Stop watching h. Safe at any time, also from a callback while h's own event waits later in
 * the same batch: that event is dropped, h is never called again. */
void loop_del(struct loop *l, struct loop_handler *h);
/* loop_del, then release(h) once no event of the current batch can name h any more: at once
 * outside a batch, after it inside one. The way to free a handler's memory from a callback
 * (e.g. a client that went away), so no caller has to know what the batch still holds. */
void loop_retire(struct loop *l, struct loop_handler *h, loop_release_fn release);
/* Wait up to timeout_ms (-1: forever) and dispatch ready handlers. 0 or -errno. */
int loop_run_once(struct loop *l, int timeout_ms);

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
