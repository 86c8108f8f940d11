/* arm64 Linux Image loading: header checks, placement of the kernel, initrd and device tree. */
#ifndef EMBER_BOOT_AARCH64_IMAGE_H
#define EMBER_BOOT_AARCH64_IMAGE_H

#include <stdint.h>

#include "guest_mem.h"

/* The 64-byte header at the start of an arm64 Image (Documentation/arm64/booting.rst). */
struct arm64_image_header {
    uint32_t code0, code1;
    uint64_t text_offset; /* load offset from a 2 MiB aligned base */
    uint64_t image_size;  /* bytes the kernel occupies from there, bss included */
    uint64_t flags;
    uint64_t res2, res3, res4;
    uint32_t magic; /* ARM64_IMAGE_MAGIC */
    uint32_t res5;
};

#define ARM64_IMAGE_MAGIC        0x644d5241U /* "ARM\x64" */
#define ARM64_IMAGE_FLAG_BE      (1ULL << 0)
#define ARM64_IMAGE_FLAG_PAGE(f) (((f) >> 1) & 3) /* 0 unspecified, 1 4K, 2 16K, 3 64K */

/* Where everything went; guest-physical addresses. */
struct arm64_boot {
    uint64_t entry;      /* the first PC: the Image's load address */
    uint64_t kernel_end; /* load address + image_size */
    uint64_t dtb;        /* where the device tree goes (x0 at entry); A64_DTB_MAX bytes */
    uint64_t initrd_start, initrd_size;
};

/* Check the header of the Image in [image, image+size) and copy it into guest RAM (one
 * region, the first of gm) at the RAM base + text_offset; fill entry, kernel_end and dtb
 * (the last 2 MiB of RAM). One error line naming path on failure; -ENOEXEC for a file that
 * is not a usable arm64 Image, -ENOMEM when RAM is too small. Never reads outside image. */
int arm64_image_load(struct guest_mem *gm, const uint8_t *image, uint64_t size, const char *path,
                     struct arm64_boot *b);

/* Copy the initrd below the device tree, above the kernel, inside the 1 GiB aligned 32 GiB
 * window that also holds the kernel (booting.rst); fill initrd_start and initrd_size. */
int arm64_initrd_load(struct guest_mem *gm, const uint8_t *initrd, uint64_t size, const char *path,
                      struct arm64_boot *b);

#endif
