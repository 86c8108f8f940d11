/* ARM PL061 GPIO controller: the power button behind `system_powerdown` on machines described by
 * a device tree (aarch64), a gpio-keys key on one of its lines. */
#ifndef EMBER_PL061_H
#define EMBER_PL061_H

#include <pthread.h>
#include <stdint.h>

#include "eventloop.h"

struct vm;

#define PL061_SIZE       0x1000
#define PL061_POWER_LINE 3 /* the line gpio-keys reads as KEY_POWER (active high) */
/* A press lasts until the guest has read the pressed line (its driver samples the line some
 * time after the interrupt: a release before would go unseen), at least PL061_PRESS_MS and at
 * most PL061_PRESS_MAX_MS. */
#define PL061_PRESS_MS     100
#define PL061_PRESS_MAX_MS 5000

struct pl061 {
    pthread_mutex_t lock; /* the registers: vCPUs' accesses vs the event loop's presses */
    struct vm *vm;
    struct loop *loop;
    uint32_t irq;
    int irq_level;
    uint8_t data, dir, is, ibe, iev, ie, ris, afsel;
    uint8_t in;   /* the input lines' levels */
    int timer_fd; /* releases the key */
    struct loop_handler h_timer;
    int pressed_ms; /* how long the key has been down */
    int sampled;    /* the guest read the line while the key was down */
    unsigned presses;
};

/* Register the controller at addr (MMIO, PL061_SIZE bytes) with interrupt irq (level). 0 or
 * -errno after one error line. */
int pl061_init(struct pl061 *g, struct vm *vm, struct loop *loop, uint64_t addr, uint32_t irq);
/* The VM goes away: stop the release timer. Safe on a controller never initialised (zeroed). */
void pl061_destroy(struct pl061 *g);
/* Press the power button (event loop): its line goes high, and low again once the guest has
 * read it (see PL061_PRESS_MS). 0 or -errno (-ENODEV: no controller). */
int pl061_power_button(struct pl061 *g);
/* An input line changed (tests): edge and level detection, the interrupt follows. */
void pl061_set_input(struct pl061 *g, unsigned line, int level);

#endif
