/* Unit tests for the checked guest-memory accessor: bounds, overflow, the layouts (RAM split
 * around a hole, RAM above the devices). */
#include "check.h"
#include "fake_vm.h"
#include "guest_mem.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A snapshot's memory file (on tmpfs, like a cache on a RAM-backed /var): pages 0 and 1024
 * hold data, the rest are holes. The guest reads both back; writing every page leaves the
 * file as it was (no page of it instantiated for a hole), and the data pages copy-on-write. */
static void test_snapshot_file(void)
{
    const uint64_t size = 8ULL << 20;
    int fd = memfd_create("guest-mem-test", MFD_CLOEXEC);
    uint8_t page[4096], *p;
    struct stat before, after;
    struct guest_mem gm;

    CHECK(fd >= 0);
    memset(page, 0xab, sizeof(page));
    CHECK(ftruncate(fd, (off_t)size) == 0);
    CHECK(pwrite(fd, page, sizeof(page), 0) == (ssize_t)sizeof(page));
    CHECK(pwrite(fd, page, sizeof(page), 1024 * 4096) == (ssize_t)sizeof(page));
    CHECK(fstat(fd, &before) == 0);
    CHECK_EQ(guest_mem_init_file(&gm, &fake_ram_layout, size, fd), 0);
    p = guest_ptr(&gm, 0, size);
    CHECK(p != NULL);
    if (!p)
        return;
    CHECK_EQ(p[0], 0xab);
    CHECK_EQ(p[1024 * 4096 + 4095], 0xab);
    CHECK_EQ(p[4096], 0);
    CHECK_EQ(p[size - 1], 0);
    for (uint64_t off = 0; off < size; off += 4096)
        p[off + 1] = 0x5a;
    CHECK(fstat(fd, &after) == 0);
    CHECK_EQ(after.st_blocks, before.st_blocks);
    CHECK(pread(fd, page, 2, 0) == 2);
    CHECK_EQ(page[1], 0xab); /* the file is not written */
    guest_mem_free(&gm);
    close(fd);
}

int main(void)
{
    static const struct guest_ram_layout high = {.base = 1ULL << 32};
    static const struct guest_ram_layout bad = {.base = 1ULL << 32, 1ULL << 30, 2ULL << 30};
    struct guest_mem gm;
    uint8_t buf[16] = {1, 2, 3, 4};

    test_snapshot_file();
    /* Small guest: one region. */
    CHECK_EQ(guest_mem_init(&gm, &fake_ram_layout, 64ULL << 20, 0), 0);
    CHECK_EQ(gm.nr_regions, 1);
    CHECK(guest_ptr(&gm, 0, 64ULL << 20) != NULL);
    CHECK(guest_ptr(&gm, 1, 64ULL << 20) == NULL);
    CHECK(guest_ptr(&gm, (64ULL << 20) - 1, 1) != NULL);
    CHECK(guest_ptr(&gm, (64ULL << 20) - 1, 2) == NULL);
    CHECK(guest_ptr(&gm, 64ULL << 20, 0) == NULL);
    CHECK(guest_ptr(&gm, UINT64_MAX, 1) == NULL);
    CHECK(guest_ptr(&gm, 16, UINT64_MAX) == NULL);
    CHECK(guest_ptr(&gm, UINT64_MAX - 3, 8) == NULL); /* wraps around */
    CHECK_EQ(guest_write(&gm, 0x1000, buf, 4), 0);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(guest_read(&gm, 0x1000, buf, 4), 0);
    CHECK_EQ(buf[3], 4);
    CHECK_EQ(guest_read(&gm, (64ULL << 20) - 2, buf, 4), -EFAULT);
    CHECK_EQ(guest_write(&gm, FAKE_HOLE_START, buf, 1), -EFAULT);
    CHECK_EQ(guest_mem_low_end(&gm), 64ULL << 20);
    guest_mem_free(&gm);

    /* Every region's host address agrees with its guest address modulo 2 MiB (else KVM maps
     * guest RAM with 4 KiB pages only), however the mappings before it left the address space. */
    for (size_t odd = 4096; odd <= 5 * 4096; odd += 4096) {
        void *skew = mmap(NULL, odd, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        CHECK(skew != MAP_FAILED);
        CHECK_EQ(guest_mem_init(&gm, &fake_ram_layout, (6ULL << 20) + odd, 0), 0);
        CHECK_EQ((uintptr_t)gm.region[0].host & ((2u << 20) - 1), 0);
        /* The unaligned space below stays reserved, so the next mapping (a thread stack) does
         * not end on the aligned start (its top would become a 2 MiB huge page of RSS). */
        if (gm.below) {
            CHECK((uint8_t *)gm.below + gm.below_size == (uint8_t *)gm.mapping);
            CHECK(((uintptr_t)gm.below & ((2u << 20) - 1)) != 0);
        }
        /* the whole size is usable */
        CHECK_EQ(guest_write(&gm, (6ULL << 20) + odd - 1, buf, 1), 0);
        guest_mem_free(&gm);
        munmap(skew, odd);
    }

    /* Large guest: split around the 32-bit MMIO hole. */
    CHECK_EQ(guest_mem_init(&gm, &fake_ram_layout, 5ULL << 30, 0), 0);
    CHECK_EQ(gm.nr_regions, 2);
    CHECK_EQ(guest_mem_low_end(&gm), FAKE_HOLE_START);
    CHECK_EQ(gm.region[1].gpa, FAKE_HOLE_END);
    CHECK_EQ(gm.region[1].size, (5ULL << 30) - FAKE_HOLE_START);
    CHECK(guest_ptr(&gm, FAKE_HOLE_START - 4, 4) != NULL);
    CHECK(guest_ptr(&gm, FAKE_HOLE_START - 4, 8) == NULL); /* would run into the hole */
    CHECK(guest_ptr(&gm, FAKE_HOLE_START, 1) == NULL);
    CHECK(guest_ptr(&gm, FAKE_HOLE_END - 1, 1) == NULL);
    CHECK(guest_ptr(&gm, FAKE_HOLE_END, 1) != NULL);
    CHECK(guest_ptr(&gm, FAKE_HOLE_END + gm.region[1].size - 8, 8) != NULL);
    CHECK(guest_ptr(&gm, FAKE_HOLE_END + gm.region[1].size - 8, 9) == NULL);
    /* The high region's host memory follows the low one's in the single mapping. */
    CHECK((uint8_t *)guest_ptr(&gm, FAKE_HOLE_END, 1) ==
          (uint8_t *)guest_ptr(&gm, 0, 1) + FAKE_HOLE_START);
    guest_mem_free(&gm);

    /* RAM above the devices (aarch64): one region from its base, whatever the size. */
    CHECK_EQ(guest_mem_init(&gm, &high, 5ULL << 30, 0), 0);
    CHECK_EQ(gm.nr_regions, 1);
    CHECK_EQ(gm.region[0].gpa, 1ULL << 32);
    CHECK_EQ(gm.region[0].size, 5ULL << 30);
    CHECK(guest_ptr(&gm, 0, 1) == NULL);
    CHECK(guest_ptr(&gm, (1ULL << 32) - 1, 1) == NULL);
    CHECK(guest_ptr(&gm, 1ULL << 32, 5ULL << 30) != NULL);
    CHECK(guest_ptr(&gm, (1ULL << 32) + (5ULL << 30), 1) == NULL);
    CHECK_EQ(guest_mem_low_end(&gm), 5ULL << 30);
    guest_mem_free(&gm);

    CHECK_EQ(guest_mem_init(&gm, &fake_ram_layout, 0, 0), -EINVAL);
    CHECK_EQ(guest_mem_init(&gm, &bad, 64ULL << 20, 0), -EINVAL); /* the hole below the base */
    return check_done("guest_mem");
}
