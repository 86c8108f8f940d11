/* Unit tests for the I/O and MMIO bus: lookup, overlaps, and no bus-wide lock (one vCPU inside
 * a slow device handler does not hold up another vCPU's access to another device). */
#include "bus.h"
#include "check.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open, slow_inside;
static atomic_int fast_reads;

/* A device whose write handler waits until the test lets it go. */
static void slow_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    (void)opaque;
    (void)off;
    (void)data;
    (void)len;
    pthread_mutex_lock(&gate_lock);
    slow_inside = 1;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

static void fast_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
    (void)opaque;
    memset(data, (int)off, len);
    atomic_fetch_add(&fast_reads, 1);
}

static const struct bus_ops slow_ops = {.write = slow_write};
static const struct bus_ops fast_ops = {.read = fast_read};
static struct bus bus;

static void *vcpu_slow(void *arg)
{
    uint8_t v = 1;

    (void)arg;
    bus_write(&bus, 0x1000, &v, 1);
    return NULL;
}

static void *vcpu_fast(void *arg)
{
    uint8_t v[4];

    (void)arg;
    bus_read(&bus, 0x2002, v, 4);
    return NULL;
}

static void test_lookup(void)
{
    uint8_t v[8];

    CHECK_EQ(bus_register(&bus, 0x2000, 0x10, &fast_ops, NULL, "fast"), 0);
    CHECK_EQ(bus_register(&bus, 0x200f, 1, &fast_ops, NULL, "overlap"), -EEXIST);
    CHECK_EQ(bus_register(&bus, 0, 0, &fast_ops, NULL, "empty"), -EINVAL);
    CHECK_EQ(bus_read(&bus, 0x2004, v, 4), 0);
    CHECK_EQ(v[0], 4);
    CHECK_EQ(bus_read(&bus, 0x200e, v, 4), -ENOENT); /* straddles the end */
    CHECK_EQ(v[0], 0xff);
    CHECK_EQ(bus_read(&bus, 0x3000, v, 1), -ENOENT);
}

/* While one vCPU is inside the slow device, another reads the fast one. */
static void test_no_bus_wide_lock(void)
{
    pthread_t slow, fast;
    struct timespec until;
    int done;

    CHECK_EQ(bus_register(&bus, 0x1000, 0x10, &slow_ops, NULL, "slow"), 0);
    pthread_create(&slow, NULL, vcpu_slow, NULL);
    pthread_mutex_lock(&gate_lock);
    while (!slow_inside)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    atomic_store(&fast_reads, 0);
    pthread_create(&fast, NULL, vcpu_fast, NULL);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    done = pthread_timedjoin_np(fast, NULL, &until) == 0;
    CHECK(done); /* it did not wait for the slow device */
    CHECK_EQ(atomic_load(&fast_reads), done ? 1 : 0);
    pthread_mutex_lock(&gate_lock);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
    pthread_join(slow, NULL);
    if (!done)
        pthread_join(fast, NULL);
}

int main(void)
{
    bus_init(&bus);
    test_lookup();
    test_no_bus_wide_lock();
    return check_done("bus");
}
