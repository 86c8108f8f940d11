/* ACPI Generic Event Device (ACPI0013): an event register the DSDT's _EVT reads, and a GSI. */
#include "ged.h"
#include "acpi.h"
#include "bus.h"
#include "snapshot_format.h"
#include "vm.h"

#include <errno.h>
#include <stdio.h>

static void ged_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct ged *g = opaque;

    (void)offset;
    if (len >= 1)
        data[0] = (uint8_t)atomic_exchange(&g->pending, 0); /* reading acknowledges */
    for (uint32_t i = 1; i < len; i++)
        data[i] = 0;
}

static void ged_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    (void)opaque;
    (void)offset;
    (void)data;
    (void)len; /* read-only register */
}

static const struct bus_ops ged_ops = {.read = ged_read, .write = ged_write};

int ged_init(struct ged *g, struct vm *vm, uint64_t addr, uint32_t irq)
{
    g->vm = vm;
    g->irq = irq;
    g->presses = 0;
    atomic_store(&g->pending, 0);
    return bus_register(&vm->mmio, addr, 1, &ged_ops, g, "ged");
}

int ged_power_button(struct ged *g)
{
    int err;

    atomic_fetch_or(&g->pending, ACPI_GED_EVT_PWR_BUTTON);
    err = vm_irq_line(g->vm, g->irq, 1);
    if (!err)
        err = vm_irq_line(g->vm, g->irq, 0);
    if (!err)
        g->presses++;
    return err;
}

/* ---- snapshots: events the guest has not read yet ---- */

void ged_save(struct ged *g, struct snap_buf *b)
{
    snap_put_u32(b, atomic_load(&g->pending));
}

int ged_restore(struct ged *g, struct snap_reader *r, char *err, size_t errlen)
{
    uint32_t pending = snap_get_u32(r);

    if (!snap_reader_done(r) || (pending & ~(uint32_t)ACPI_GED_EVT_PWR_BUTTON)) {
        snprintf(err, errlen, "%s", r->bad ? "truncated" : "unknown events or extra bytes");
        return -EINVAL;
    }
    atomic_store(&g->pending, pending);
    return 0;
}
