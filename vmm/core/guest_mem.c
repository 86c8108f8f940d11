/* Guest RAM: one mapping (anonymous, or a snapshot's memory file copy-on-write) split around
 * the MMIO hole, and its checked accessor. */
#include "guest_mem.h"
#include "layout.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

/* Anonymous RAM (fd < 0), or a private copy-on-write mapping of a snapshot's memory file. */
static int map_ram(struct guest_mem *gm, uint64_t ram_size, int hugepages, int fd)
{
    int flags = MAP_PRIVATE | MAP_NORESERVE | (fd < 0 ? MAP_ANONYMOUS : 0);
    uint64_t low = ram_size;
    void *p;

    memset(gm, 0, sizeof(*gm));
    if (ram_size == 0 || ram_size > (1ULL << 46))
        return -EINVAL;
    if (hugepages)
        flags |= MAP_HUGETLB;
    p = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    /* Guest RAM should never end up in a core dump of ember. */
    madvise(p, ram_size, MADV_DONTDUMP);
    gm->mapping = p;
    gm->mapping_size = ram_size;
    gm->ram_size = ram_size;
    if (low > MMIO_HOLE_START)
        low = MMIO_HOLE_START;
    gm->region[0] = (struct guest_region){.gpa = 0, .size = low, .host = p};
    gm->nr_regions = 1;
    if (ram_size > low) {
        gm->region[1] = (struct guest_region){
                .gpa = MMIO_HOLE_END, .size = ram_size - low, .host = (uint8_t *)p + low};
        gm->nr_regions = 2;
    }
    return 0;
}

int guest_mem_init(struct guest_mem *gm, uint64_t ram_size, int hugepages)
{
    return map_ram(gm, ram_size, hugepages, -1);
}

int guest_mem_init_file(struct guest_mem *gm, uint64_t ram_size, int fd)
{
    return map_ram(gm, ram_size, 0, fd);
}

void guest_mem_free(struct guest_mem *gm)
{
    if (gm->mapping)
        munmap(gm->mapping, gm->mapping_size);
    memset(gm, 0, sizeof(*gm));
}

int guest_read(const struct guest_mem *gm, uint64_t gpa, void *dst, size_t len)
{
    const void *p = guest_ptr(gm, gpa, len);

    if (!p)
        return -EFAULT;
    memcpy(dst, p, len);
    return 0;
}

int guest_write(const struct guest_mem *gm, uint64_t gpa, const void *src, size_t len)
{
    void *p = guest_ptr(gm, gpa, len);

    if (!p)
        return -EFAULT;
    memcpy(p, src, len);
    return 0;
}

uint64_t guest_mem_low_end(const struct guest_mem *gm)
{
    return gm->nr_regions ? gm->region[0].size : 0;
}
