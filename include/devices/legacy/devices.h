/* Legacy and platform devices of the x86 microVM: 8250 UART, i8042, control page, pvpanic,
 * ACPI sleep control. */
#ifndef EMBER_DEVICES_H
#define EMBER_DEVICES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "console.h"
#include "vm.h"

#define SERIAL_RX_SIZE 1024

struct serial {
    pthread_mutex_t lock; /* the registers: vCPUs' port accesses vs the event loop's input */
    struct vm *vm;
    struct console *con;
    uint32_t irq;
    int irq_level;
    uint8_t ier, iir, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
    int thri_pending; /* transmitter-empty interrupt waiting to be seen */
    uint8_t rx[SERIAL_RX_SIZE];
    unsigned rx_head, rx_tail; /* free-running */
    int rx_wake_fd;            /* eventfd: the guest drained input, read stdin again */
};

int serial_init(struct serial *s, struct vm *vm, struct console *con, uint16_t port, uint32_t irq,
                int rx_wake_fd);
/* Room for more input; the event loop reads stdin only while there is some. */
size_t serial_rx_room(struct serial *s);

struct snap_buf;
struct snap_reader;
/* Snapshots: append the UART's registers and queued input; put them back (checked first:
 * 0, or -EINVAL with err saying what is wrong). */
void serial_save(struct serial *s, struct snap_buf *b);
int serial_restore(struct serial *s, struct snap_reader *r, char *err, size_t errlen);

int i8042_init(struct vm *vm);
int pvpanic_init(struct vm *vm, uint16_t port);
int acpi_pm_init(struct vm *vm, uint16_t sleep_ctl_port, uint16_t sleep_sts_port);

/* Control page at CTRL_PAGE_GPA: boot marker (+0, the guest writes 123 once userspace
 * runs) and exit status (+8, one byte: ember exits with it when the guest powers off). */
struct ctrl_page {
    struct vm *vm;
    int boot_timer;             /* print the boot time when the marker arrives */
    struct timespec start_wall; /* ember's own start, CLOCK_MONOTONIC */
    atomic_int booted;
    double boot_ms, boot_cpu_ms;   /* when the marker arrived */
    int stop_on_status;            /* the exit status ends the VM (`ember exec`) */
    void (*on_boot)(void *opaque); /* e.g. the control socket's BOOT_COMPLETE event */
    void *on_boot_opaque;
};

int ctrl_page_init(struct ctrl_page *cp, struct vm *vm, int boot_timer,
                   const struct timespec *start_wall);
/* Snapshots: whether the boot marker came, and the exit status the guest set. */
void ctrl_page_save(const struct ctrl_page *cp, struct snap_buf *b);
int ctrl_page_restore(struct ctrl_page *cp, struct snap_reader *r, char *err, size_t errlen);

#endif
