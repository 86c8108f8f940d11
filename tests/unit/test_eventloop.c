/* Unit tests for the event loop: a handler removed, or removed and released, while its event
 * waits later in the same epoll batch is never called (nor touched) again. */
#include "check.h"
#include "eventloop.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct item {
    struct loop_handler h;
    struct loop *loop;
    struct item *victim; /* removed by this one's callback */
    int retire;          /* ...and released (freed) after the batch */
    int calls;
};

static int released, stale_calls;
static struct item *ran; /* the last item whose callback ran */

static void on_item(struct loop_handler *h, uint32_t events);

/* What a freed handler looks like to a stale call: poisoned, with a callback that counts. */
static void stale(struct loop_handler *h, uint32_t events)
{
    (void)h;
    (void)events;
    stale_calls++;
}

static void release(struct loop_handler *h)
{
    struct item *it = container_of(h, struct item, h);

    released++;
    close(it->h.fd);
    free(it);
}

static void on_item(struct loop_handler *h, uint32_t events)
{
    struct item *it = container_of(h, struct item, h);
    uint64_t v;

    (void)events;
    it->calls++;
    ran = it;
    (void)!read(h->fd, &v, sizeof(v));
    if (!it->victim)
        return;
    if (it->retire) {
        loop_retire(it->loop, &it->victim->h, release);
        CHECK_EQ(released, 0); /* not while the batch may still name it */
    } else {
        loop_del(it->loop, &it->victim->h);
        it->victim->h.fn = stale; /* as if its memory were reused */
    }
    it->victim = NULL;
}

static struct item *item(struct loop *l)
{
    struct item *it = calloc(1, sizeof(*it));
    uint64_t one = 1;

    it->loop = l;
    it->h = (struct loop_handler){.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), .fn = on_item};
    CHECK(it->h.fd >= 0);
    CHECK_EQ(loop_add(l, &it->h, EPOLLIN), 0);
    CHECK(write(it->h.fd, &one, sizeof(one)) == sizeof(one)); /* ready */
    return it;
}

/* Every item kills the next one: whichever runs first, the other's event in the same batch
 * must be dropped. */
static void test_removal_in_batch(int retire)
{
    struct loop l;
    struct item *a, *b;

    released = stale_calls = 0;
    CHECK_EQ(loop_init(&l), 0);
    a = item(&l);
    b = item(&l);
    a->victim = b;
    b->victim = a;
    a->retire = b->retire = retire;
    ran = NULL;
    CHECK_EQ(loop_run_once(&l, 100), 0);
    CHECK_EQ(stale_calls, 0);
    CHECK(ran == a || ran == b);
    if (retire) {
        CHECK_EQ(released, 1);   /* after the batch */
        CHECK_EQ(ran->calls, 1); /* the other one never ran */
        close(ran->h.fd);
        free(ran);
    } else {
        CHECK_EQ(a->calls + b->calls, 1); /* only the first of the two ran */
        close(a->h.fd);
        close(b->h.fd);
        free(a);
        free(b);
    }
    loop_close(&l);
}

/* Outside a batch, retiring releases at once. */
static void test_retire_outside_batch(void)
{
    struct loop l;
    struct item *a;

    released = 0;
    CHECK_EQ(loop_init(&l), 0);
    a = item(&l);
    loop_retire(&l, &a->h, release);
    CHECK_EQ(released, 1);
    CHECK_EQ(loop_run_once(&l, 10), 0); /* nothing left to call */
    loop_close(&l);
}

int main(void)
{
    test_removal_in_batch(0);
    test_removal_in_batch(1);
    test_retire_outside_batch();
    return check_done("eventloop");
}
