/* ACPI Generic Event Device: the power button behind `system_powerdown`. */
#ifndef EMBER_GED_H
#define EMBER_GED_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

struct ged {
    struct vm *vm;
    uint32_t irq;
    atomic_uint pending; /* ACPI_GED_EVT_* bits the guest has not read yet */
    unsigned presses;
};

/* Register the 1-byte event register at addr (described by the DSDT, acpi.h). */
int ged_init(struct ged *g, struct vm *vm, uint64_t addr, uint32_t irq);
/* Press the power button: set the event bit and raise an edge on the GED's GSI. 0 or -errno. */
int ged_power_button(struct ged *g);

struct snap_buf;
struct snap_reader;
/* Snapshots: the events the guest has not read yet. */
void ged_save(struct ged *g, struct snap_buf *b);
int ged_restore(struct ged *g, struct snap_reader *r, char *err, size_t errlen);

#endif
