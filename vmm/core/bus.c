/* I/O port and MMIO bus: finds the device owning an address and calls its handler, without a
 * lock of its own (the ranges do not change once vCPUs run; devices lock their own state). */
#include "bus.h"

#include <errno.h>
#include <string.h>

void bus_init(struct bus *b)
{
    memset(b, 0, sizeof(*b));
}

int bus_register(struct bus *b, uint64_t base, uint64_t size, const struct bus_ops *ops,
                 void *opaque, const char *name)
{
    if (size == 0 || base + size < base)
        return -EINVAL;
    for (int i = 0; i < b->nr; i++) {
        const struct bus_range *r = &b->range[i];

        if (base < r->base + r->size && r->base < base + size)
            return -EEXIST;
    }
    if (b->nr == BUS_MAX_RANGES)
        return -ENOSPC;
    b->range[b->nr++] = (struct bus_range){base, size, ops, opaque, name};
    return 0;
}

static const struct bus_range *find(const struct bus *b, uint64_t addr, uint32_t len)
{
    for (int i = 0; i < b->nr; i++) {
        const struct bus_range *r = &b->range[i];

        if (addr >= r->base && addr - r->base < r->size)
            return (len <= r->size - (addr - r->base)) ? r : NULL;
    }
    return NULL;
}

int bus_read(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len)
{
    const struct bus_range *r;

    memset(data, 0xff, len);
    r = find(b, addr, len);
    if (r && r->ops->read)
        r->ops->read(r->opaque, addr - r->base, data, len);
    return r ? 0 : -ENOENT;
}

int bus_write(struct bus *b, uint64_t addr, const uint8_t *data, uint32_t len)
{
    const struct bus_range *r;

    r = find(b, addr, len);
    if (r && r->ops->write)
        r->ops->write(r->opaque, addr - r->base, data, len);
    return r ? 0 : -ENOENT;
}
