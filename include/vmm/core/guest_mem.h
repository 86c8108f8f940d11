/* Guest-physical memory: the one checked accessor every component uses. */
#ifndef EMBER_GUEST_MEM_H
#define EMBER_GUEST_MEM_H

#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 2

struct guest_region {
    uint64_t gpa;  /* first guest-physical address */
    uint64_t size; /* bytes */
    uint8_t *host; /* host mapping of the region */
};

/* Where guest RAM goes: from base up, skipping [hole_start, hole_end) when it gets there (no
 * hole: hole_start = hole_end = 0). The architecture's map says (arch.h). */
struct guest_ram_layout {
    uint64_t base;
    uint64_t hole_start, hole_end;
};

struct guest_mem {
    struct guest_region region[GUEST_MEM_MAX_REGIONS];
    int nr_regions;
    uint64_t ram_size; /* sum of region sizes */
    void *mapping;     /* one mapping backing every region */
    size_t mapping_size;
    void *below; /* the address space kept below it, unusable (see vmm/core/guest_mem.c) */
    size_t below_size;
};

/* Map ram_size bytes of guest RAM at the layout's addresses (split around its hole when large).
 * Returns 0 or -errno. */
int guest_mem_init(struct guest_mem *gm, const struct guest_ram_layout *l, uint64_t ram_size,
                   int hugepages);
/* The same layout over a snapshot's memory file (ram_size bytes, RAM offset = file offset),
 * mapped MAP_PRIVATE: pages load lazily, and stay shared with every other VM mapping the
 * file until the guest writes them. */
int guest_mem_init_file(struct guest_mem *gm, const struct guest_ram_layout *l, uint64_t ram_size,
                        int fd);
void guest_mem_free(struct guest_mem *gm);

/* Host pointer for [gpa, gpa+len) if the whole range lies inside one RAM region,
 * else NULL. Overflow-safe; len 0 is allowed (returns a pointer if gpa is in RAM).
 * Inline: the virtqueue code calls it ~20 times per request. */
static inline void *guest_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
    for (int i = 0; i < gm->nr_regions && i < GUEST_MEM_MAX_REGIONS; i++) {
        const struct guest_region *r = &gm->region[i];
        uint64_t off;

        if (gpa < r->gpa)
            continue;
        off = gpa - r->gpa;
        /* off < size and len <= size - off: no addition that can overflow. */
        if (off >= r->size || len > r->size - off)
            continue;
        return r->host + off;
    }
    return NULL;
}

/* Copy to/from guest memory; -EFAULT if any byte is outside RAM. */
int guest_read(const struct guest_mem *gm, uint64_t gpa, void *dst, size_t len);
int guest_write(const struct guest_mem *gm, uint64_t gpa, const void *src, size_t len);

/* End of the first RAM region: below the hole (for e820 and loaders). */
uint64_t guest_mem_low_end(const struct guest_mem *gm);

#endif
