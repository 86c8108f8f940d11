/* I/O port and MMIO dispatch: devices register address ranges with read/write handlers. The
 * ranges are fixed before the vCPUs start; handlers then run on every vCPU thread at once, so
 * each device locks what it shares (there is no bus-wide lock). */
#ifndef EMBER_BUS_H
#define EMBER_BUS_H

#include <stdint.h>

/* Handlers get the offset inside the registered range and the access width (1, 2, 4, 8).
 * A read fills data[0..len); unhandled bytes read as 0xff by default. */
struct bus_ops {
    void (*read)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len);
    void (*write)(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len);
};

struct bus_range {
    uint64_t base;
    uint64_t size;
    const struct bus_ops *ops;
    void *opaque;
    const char *name;
};

#define BUS_MAX_RANGES 48

struct bus {
    struct bus_range range[BUS_MAX_RANGES];
    int nr;
};

void bus_init(struct bus *b);
/* Register [base, base+size) before any vCPU runs; -EEXIST on overlap, -ENOSPC when full. */
int bus_register(struct bus *b, uint64_t base, uint64_t size, const struct bus_ops *ops,
                 void *opaque, const char *name);
/* Dispatch an access; returns 0 if a device handled it, -ENOENT if none is there
 * (reads then return all ones). Accesses that straddle a range end are refused. */
int bus_read(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len);
int bus_write(struct bus *b, uint64_t addr, const uint8_t *data, uint32_t len);

#endif
