/* Control page: boot marker (guest userspace is up) and exit-status register. */
#include "devices.h"
#include "layout.h"
#include "log.h"
#include "snapshot_format.h"

#include <errno.h>
#include <stdio.h>

#define BOOT_MARKER_MAGIC 123

static double ms_since(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

static void marker_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct ctrl_page *cp = opaque;
    struct timespec now, cpu;

    (void)offset;
    if (len < 1 || data[0] != BOOT_MARKER_MAGIC || atomic_exchange(&cp->booted, 1))
        return; /* once, whichever vCPU writes it first */
    clock_gettime(CLOCK_MONOTONIC, &now);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    cp->boot_ms = ms_since(&cp->start_wall, &now);
    cp->boot_cpu_ms = (double)cpu.tv_sec * 1e3 + (double)cpu.tv_nsec / 1e6;
    if (cp->boot_timer)
        log_info("boot-timer: guest userspace started %.1f ms after ember started "
                 "(%.1f ms ember CPU time)",
                 cp->boot_ms, cp->boot_cpu_ms);
    if (cp->on_boot)
        cp->on_boot(cp->on_boot_opaque);
}

static void status_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct ctrl_page *cp = opaque;

    (void)offset;
    if (len < 1)
        return;
    cp->vm->exit_status = data[0];
    /* `ember exec`: the command is done and its output queued; the guest kernel's own
     * power-off (every device shut down, one exit at a time) is not worth waiting for. */
    if (cp->stop_on_status)
        vm_request_stop(cp->vm, STOP_POWEROFF);
}

static const struct bus_ops marker_ops = {.write = marker_write};
static const struct bus_ops status_ops = {.write = status_write};

int ctrl_page_init(struct ctrl_page *cp, struct vm *vm, int boot_timer,
                   const struct timespec *start_wall)
{
    int err;

    cp->vm = vm;
    cp->boot_timer = boot_timer;
    cp->start_wall = *start_wall;
    atomic_store(&cp->booted, 0);
    cp->stop_on_status = 0;
    err = bus_register(&vm->mmio, BOOT_MARKER_GPA, 8, &marker_ops, cp, "boot-marker");
    if (!err)
        err = bus_register(&vm->mmio, EXIT_STATUS_GPA, 8, &status_ops, cp, "exit-status");
    return err;
}

/* ---- snapshots: whether userspace was up, and the exit status set so far ---- */

void ctrl_page_save(const struct ctrl_page *cp, struct snap_buf *b)
{
    snap_put_u8(b, (uint8_t)cp->booted);
    snap_put_u32(b, (uint32_t)cp->vm->exit_status);
}

int ctrl_page_restore(struct ctrl_page *cp, struct snap_reader *r, char *err, size_t errlen)
{
    uint8_t booted = snap_get_u8(r);
    int32_t status = (int32_t)snap_get_u32(r);

    if (!snap_reader_done(r) || booted > 1 || status < -1 || status > 255) {
        snprintf(err, errlen, "%s", r->bad ? "truncated" : "bad values or extra bytes");
        return -EINVAL;
    }
    cp->booted = booted;
    cp->vm->exit_status = status;
    return 0;
}
