/* Unit tests for the checked guest-memory accessor: bounds, overflow, the MMIO hole split. */
#include "check.h"
#include "guest_mem.h"
#include "layout.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

int main(void)
{
    struct guest_mem gm;
    uint8_t buf[16] = {1, 2, 3, 4};

    /* Small guest: one region. */
    CHECK_EQ(guest_mem_init(&gm, 64ULL << 20, 0), 0);
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
    CHECK_EQ(guest_write(&gm, MMIO_HOLE_START, buf, 1), -EFAULT);
    CHECK_EQ(guest_mem_low_end(&gm), 64ULL << 20);
    guest_mem_free(&gm);

    /* Every region's host address agrees with its guest address modulo 2 MiB (else KVM maps
     * guest RAM with 4 KiB pages only), however the mappings before it left the address space. */
    for (size_t odd = 4096; odd <= 5 * 4096; odd += 4096) {
        void *skew = mmap(NULL, odd, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        CHECK(skew != MAP_FAILED);
        CHECK_EQ(guest_mem_init(&gm, (6ULL << 20) + odd, 0), 0);
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
    CHECK_EQ(guest_mem_init(&gm, 5ULL << 30, 0), 0);
    CHECK_EQ(gm.nr_regions, 2);
    CHECK_EQ(guest_mem_low_end(&gm), MMIO_HOLE_START);
    CHECK_EQ(gm.region[1].gpa, MMIO_HOLE_END);
    CHECK_EQ(gm.region[1].size, (5ULL << 30) - MMIO_HOLE_START);
    CHECK(guest_ptr(&gm, MMIO_HOLE_START - 4, 4) != NULL);
    CHECK(guest_ptr(&gm, MMIO_HOLE_START - 4, 8) == NULL); /* would run into the hole */
    CHECK(guest_ptr(&gm, MMIO_HOLE_START, 1) == NULL);
    CHECK(guest_ptr(&gm, MMIO_HOLE_END - 1, 1) == NULL);
    CHECK(guest_ptr(&gm, MMIO_HOLE_END, 1) != NULL);
    CHECK(guest_ptr(&gm, MMIO_HOLE_END + gm.region[1].size - 8, 8) != NULL);
    CHECK(guest_ptr(&gm, MMIO_HOLE_END + gm.region[1].size - 8, 9) == NULL);
    /* The high region's host memory follows the low one's in the single mapping. */
    CHECK((uint8_t *)guest_ptr(&gm, MMIO_HOLE_END, 1) ==
          (uint8_t *)guest_ptr(&gm, 0, 1) + MMIO_HOLE_START);
    guest_mem_free(&gm);

    CHECK_EQ(guest_mem_init(&gm, 0, 0), -EINVAL);
    return check_done("guest_mem");
}
