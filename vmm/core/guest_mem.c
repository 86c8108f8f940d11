/* Guest RAM: one mapping (anonymous, or a snapshot's memory file copy-on-write) placed by the
 * architecture's layout, and its checked accessor. */
#include "guest_mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_2M (2ULL << 20)
/* At most this many of a snapshot file's holes become anonymous memory (each splits the
 * mapping, and a process has a limited number of mappings); past it they stay file-backed. */
#define MAX_ANON_HOLES 4096

/* A 2 MiB-aligned stretch of address space for guest RAM: KVM maps guest RAM with 2 MiB pages
 * only where guest-physical and host-virtual addresses agree modulo 2 MiB (and the host backs
 * them with a huge page), else every 4 KiB page costs the guest a nested page fault exit.
 * Reserves 2 MiB more and gives back the tail. The unaligned head stays reserved (PROT_NONE,
 * no memory, in gm->below): unmapped, the next thread stack would end on the aligned start and
 * its top 2 MiB become a transparent huge page, 2 MiB of RSS for a few KiB of stack. */
static uint8_t *reserve_aligned(struct guest_mem *gm, uint64_t size)
{
    uint8_t *p = mmap(NULL, size + HUGE_2M, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
    uint8_t *start;
    size_t head;

    if (p == MAP_FAILED)
        return NULL;
    start = (uint8_t *)(((uintptr_t)p + HUGE_2M - 1) & ~(uintptr_t)(HUGE_2M - 1));
    head = (size_t)(start - p);
    if (head) {
        gm->below = p;
        gm->below_size = head;
    }
    munmap(start + size, HUGE_2M - head);
    return start;
}

/* A snapshot's memory file leaves the guest's zero pages out (holes). Mapped from the file, a
 * hole the guest touches costs a page of the file (on tmpfs, unreclaimable shmem charged to the
 * VM's cgroup) and, written, an anonymous copy besides: twice the guest's memory at worst.
 * Anonymous memory over each hole costs the one page. A failure leaves the hole file-backed. */
static void holes_anonymous(uint8_t *p, uint64_t size, int fd)
{
    off_t at = 0, data;
    int n = 0;

    while (at < (off_t)size && n++ < MAX_ANON_HOLES) {
        off_t hole = lseek(fd, at, SEEK_HOLE);

        if (hole < 0 || hole >= (off_t)size)
            return;
        data = lseek(fd, hole, SEEK_DATA);
        if (data < 0 || data > (off_t)size)
            data = (off_t)size; /* ENXIO: a hole to the end of the file */
        hole = (hole + 4095) & ~(off_t)4095;
        data &= ~(off_t)4095;
        if (data > hole &&
            mmap(p + hole, (size_t)(data - hole), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
            return;
        at = data > hole ? data : hole + 4096;
    }
}

/* Anonymous RAM (fd < 0), or a private copy-on-write mapping of a snapshot's memory file. */
static int map_ram(struct guest_mem *gm, const struct guest_ram_layout *l, uint64_t ram_size,
                   int hugepages, int fd)
{
    int flags = MAP_PRIVATE | MAP_NORESERVE | (fd < 0 ? MAP_ANONYMOUS : 0);
    uint64_t low = ram_size;
    uint8_t *at = NULL;
    void *p;

    memset(gm, 0, sizeof(*gm));
    if (ram_size == 0 || ram_size > (1ULL << 46) || l->base > (1ULL << 46) ||
        l->hole_end < l->hole_start || l->hole_end > (1ULL << 46) ||
        (l->hole_start != l->hole_end && l->hole_start <= l->base))
        return -EINVAL;
    if (hugepages) {
        flags |= MAP_HUGETLB; /* aligned by construction */
    } else {
        at = reserve_aligned(gm, ram_size);
        if (!at)
            return -errno;
        flags |= MAP_FIXED; /* over our own reservation */
    }
    p = mmap(at, ram_size, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED) {
        int err = -errno;

        if (at)
            munmap(at, ram_size);
        if (gm->below)
            munmap(gm->below, gm->below_size);
        memset(gm, 0, sizeof(*gm));
        return err;
    }
    if (fd >= 0)
        holes_anonymous(p, ram_size, fd);
    /* Guest RAM should never end up in a core dump of ember. */
    madvise(p, ram_size, MADV_DONTDUMP);
    gm->mapping = p;
    gm->mapping_size = ram_size;
    gm->ram_size = ram_size;
    if (l->hole_end > l->hole_start && low > l->hole_start - l->base)
        low = l->hole_start - l->base;
    gm->region[0] = (struct guest_region){.gpa = l->base, .size = low, .host = p};
    gm->nr_regions = 1;
    if (ram_size > low) {
        gm->region[1] = (struct guest_region){
                .gpa = l->hole_end, .size = ram_size - low, .host = (uint8_t *)p + low};
        gm->nr_regions = 2;
    }
    return 0;
}

int guest_mem_init(struct guest_mem *gm, const struct guest_ram_layout *l, uint64_t ram_size,
                   int hugepages)
{
    return map_ram(gm, l, ram_size, hugepages, -1);
}

int guest_mem_init_file(struct guest_mem *gm, const struct guest_ram_layout *l, uint64_t ram_size,
                        int fd)
{
    return map_ram(gm, l, ram_size, 0, fd);
}

void guest_mem_free(struct guest_mem *gm)
{
    if (gm->mapping)
        munmap(gm->mapping, gm->mapping_size);
    if (gm->below)
        munmap(gm->below, gm->below_size);
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
