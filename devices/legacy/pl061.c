/* ARM PL061 GPIO controller (PrimeCell, DDI 0190): input lines with edge or level interrupts;
 * ember's power button is a gpio-keys key on one of them. */
#include "pl061.h"
#include "bus.h"
#include "log.h"
#include "vm.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define REG_DATA  0x000 /* 0x000-0x3fc: address bits 9..2 mask the lines accessed */
#define REG_DIR   0x400
#define REG_IS    0x404 /* 1: level-sensitive */
#define REG_IBE   0x408 /* 1: both edges */
#define REG_IEV   0x40c /* 1: rising edge / high level */
#define REG_IE    0x410
#define REG_RIS   0x414
#define REG_MIS   0x418
#define REG_IC    0x41c
#define REG_AFSEL 0x420
#define REG_ID    0xfe0 /* PeriphID0-3, PCellID0-3: one byte per word */

static const uint8_t ids[8] = {0x61, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1};

/* Level-sensitive lines show their level in RIS; the line is high while any unmasked one is
 * set (lock held). */
static void update(struct pl061 *g)
{
    int level;

    g->ris = (uint8_t)((g->ris & ~g->is) | (g->is & ~(g->in ^ g->iev)));
    level = (g->ris & g->ie) != 0;
    if (level != g->irq_level) {
        g->irq_level = level;
        vm_irq_line(g->vm, g->irq, level);
    }
}

static void set_input(struct pl061 *g, unsigned line, int level)
{
    uint8_t bit = (uint8_t)(1u << line), old = g->in;

    g->in = level ? (uint8_t)(old | bit) : (uint8_t)(old & ~bit);
    if (old != g->in && !(g->is & bit)) {
        int rising = level != 0;

        if ((g->ibe & bit) || (rising == ((g->iev & bit) != 0)))
            g->ris |= bit;
    }
    update(g);
}

void pl061_set_input(struct pl061 *g, unsigned line, int level)
{
    if (line > 7)
        return;
    pthread_mutex_lock(&g->lock);
    set_input(g, line, level);
    pthread_mutex_unlock(&g->lock);
}

static uint8_t reg_read(struct pl061 *g, uint64_t off)
{
    if (off < REG_DIR) {
        uint8_t v = (uint8_t)(((g->dir & g->data) | (~g->dir & g->in)) & (off >> 2));

        if (v & (1u << PL061_POWER_LINE))
            g->sampled = 1;
        return v;
    }
    switch (off) {
    case REG_DIR:
        return g->dir;
    case REG_IS:
        return g->is;
    case REG_IBE:
        return g->ibe;
    case REG_IEV:
        return g->iev;
    case REG_IE:
        return g->ie;
    case REG_RIS:
        return g->ris;
    case REG_MIS:
        return g->ris & g->ie;
    case REG_AFSEL:
        return g->afsel;
    default:
        if (off >= REG_ID && off < REG_ID + 32 && off % 4 == 0)
            return ids[(off - REG_ID) / 4];
        return 0;
    }
}

static void reg_write(struct pl061 *g, uint64_t off, uint8_t v)
{
    if (off < REG_DIR) {
        uint8_t mask = (uint8_t)(off >> 2);

        g->data = (uint8_t)((g->data & ~mask) | (v & mask));
        return;
    }
    switch (off) {
    case REG_DIR:
        g->dir = v;
        break;
    case REG_IS:
        g->is = v;
        break;
    case REG_IBE:
        g->ibe = v;
        break;
    case REG_IEV:
        g->iev = v;
        break;
    case REG_IE:
        g->ie = v;
        break;
    case REG_IC:
        g->ris &= (uint8_t)~v; /* level-sensitive lines come back in update() */
        break;
    case REG_AFSEL:
        g->afsel = v;
        break;
    default: /* RIS, MIS and the IDs are read-only */
        break;
    }
    update(g);
}

static void pl061_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
    struct pl061 *g = opaque;

    memset(data, 0, len);
    pthread_mutex_lock(&g->lock);
    data[0] = reg_read(g, off);
    pthread_mutex_unlock(&g->lock);
}

static void pl061_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct pl061 *g = opaque;

    (void)len; /* the registers are 8 bits wide; a wider write sets the low byte */
    pthread_mutex_lock(&g->lock);
    reg_write(g, off, data[0]);
    pthread_mutex_unlock(&g->lock);
}

static const struct bus_ops pl061_ops = {.read = pl061_read, .write = pl061_write};

/* Every PL061_PRESS_MS while the key is down: release it once the guest has seen it. */
static void on_release(struct loop_handler *h, uint32_t events)
{
    struct pl061 *g = container_of(h, struct pl061, h_timer);
    struct itimerspec stop = {0};
    uint64_t n;

    (void)events;
    (void)!read(h->fd, &n, sizeof(n));
    pthread_mutex_lock(&g->lock);
    g->pressed_ms += PL061_PRESS_MS;
    if (g->sampled || g->pressed_ms >= PL061_PRESS_MAX_MS) {
        timerfd_settime(g->timer_fd, 0, &stop, NULL);
        set_input(g, PL061_POWER_LINE, 0);
    }
    pthread_mutex_unlock(&g->lock);
}

int pl061_init(struct pl061 *g, struct vm *vm, struct loop *loop, uint64_t addr, uint32_t irq)
{
    int err;

    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->lock, NULL);
    g->vm = vm;
    g->loop = loop;
    g->irq = irq;
    g->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (g->timer_fd < 0)
        return log_errno("power button: timerfd_create");
    g->h_timer = (struct loop_handler){.fd = g->timer_fd, .fn = on_release};
    err = loop_add(loop, &g->h_timer, EPOLLIN);
    if (!err)
        err = bus_register(&vm->mmio, addr, PL061_SIZE, &pl061_ops, g, "pl061");
    if (err) {
        log_err("power button: cannot register the PL061: %s", strerror(-err));
        pl061_destroy(g);
    }
    return err;
}

void pl061_destroy(struct pl061 *g)
{
    if (!g->vm)
        return;
    if (g->timer_fd >= 0) {
        loop_del(g->loop, &g->h_timer);
        close(g->timer_fd);
    }
    pthread_mutex_destroy(&g->lock);
    memset(g, 0, sizeof(*g));
}

int pl061_power_button(struct pl061 *g)
{
    struct itimerspec tick = {.it_value = {0, PL061_PRESS_MS * 1000000L},
                              .it_interval = {0, PL061_PRESS_MS * 1000000L}};
    int err = 0;

    if (!g->vm)
        return -ENODEV;
    pthread_mutex_lock(&g->lock);
    g->sampled = 0;
    g->pressed_ms = 0;
    set_input(g, PL061_POWER_LINE, 1);
    if (timerfd_settime(g->timer_fd, 0, &tick, NULL) < 0)
        err = -errno;
    else
        g->presses++;
    pthread_mutex_unlock(&g->lock);
    return err;
}
