/* Unit tests for the arm64 Image loader: synthetic Images, valid and malformed, and where the
 * kernel, initrd and device tree land in guest RAM. */
#include "boot/aarch64/image.h"
#include "boot/aarch64/layout.h"
#include "check.h"
#include "log.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

#define FILE_SIZE (64 * 1024)

static uint8_t image[FILE_SIZE];
static char errors[1024];

/* Guest RAM: one region at gpa, size bytes, backed by an anonymous mapping (no reservation). */
static struct guest_mem ram(uint64_t gpa, uint64_t size)
{
    struct guest_mem gm;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);

    memset(&gm, 0, sizeof(gm));
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    gm.region[0] = (struct guest_region){.gpa = gpa, .size = size, .host = p};
    gm.nr_regions = 1;
    gm.ram_size = size;
    gm.mapping = p;
    gm.mapping_size = size;
    return gm;
}

static void unmap(struct guest_mem *gm)
{
    munmap(gm->mapping, gm->mapping_size);
}

/* A valid little-endian Image of FILE_SIZE bytes: header, then a recognisable body. */
static void make_image(uint64_t text_offset, uint64_t image_size, uint64_t flags)
{
    struct arm64_image_header h = {
            .code0 = htole32(0x91005a4dU), /* "MZ" + add x13, x18, #0x16, as Linux writes */
            .code1 = htole32(0x14000000U),
            .text_offset = htole64(text_offset),
            .image_size = htole64(image_size),
            .flags = htole64(flags),
            .magic = htole32(ARM64_IMAGE_MAGIC),
    };

    for (size_t i = 0; i < sizeof(image); i++)
        image[i] = (uint8_t)(i * 7 + 3);
    memcpy(image, &h, sizeof(h));
}

/* Load and return the error; the one error line (if any) is in `errors`. */
static int load(struct guest_mem *gm, uint64_t size, struct arm64_boot *b)
{
    int err;

    log_capture(errors, sizeof(errors));
    err = arm64_image_load(gm, image, size, "Image", b);
    log_capture(NULL, 0);
    return err;
}

static void test_header_layout(void)
{
    CHECK_EQ(sizeof(struct arm64_image_header), 64);
    CHECK_EQ(__builtin_offsetof(struct arm64_image_header, text_offset), 8);
    CHECK_EQ(__builtin_offsetof(struct arm64_image_header, image_size), 16);
    CHECK_EQ(__builtin_offsetof(struct arm64_image_header, flags), 24);
    CHECK_EQ(__builtin_offsetof(struct arm64_image_header, magic), 56);
}

/* text_offset 0 (Linux 5.8+): the kernel sits at the RAM base; the device tree in the last
 * 2 MiB; the file is copied byte for byte and nothing else is written. */
static void test_load_text_offset_0(void)
{
    struct guest_mem gm = ram(A64_RAM_BASE, 64 * MiB);
    struct arm64_boot b;
    uint8_t *dst;

    make_image(0, 3 * MiB, 0x2 | 0x8); /* 4K pages, anywhere in RAM */
    CHECK_EQ(load(&gm, FILE_SIZE, &b), 0);
    CHECK_EQ(b.entry, A64_RAM_BASE);
    CHECK_EQ(b.kernel_end, A64_RAM_BASE + 3 * MiB);
    CHECK_EQ(b.dtb, A64_RAM_BASE + 62 * MiB);
    CHECK_EQ(b.initrd_size, 0);
    dst = guest_ptr(&gm, A64_RAM_BASE, FILE_SIZE + 1);
    CHECK(dst && memcmp(dst, image, FILE_SIZE) == 0);
    CHECK(dst && dst[FILE_SIZE] == 0);
    unmap(&gm);
}

/* text_offset 0x80000 (older kernels): 512 KiB above the 2 MiB aligned base. */
static void test_load_text_offset(void)
{
    struct guest_mem gm = ram(A64_RAM_BASE, 64 * MiB);
    struct arm64_boot b;

    make_image(0x80000, 3 * MiB, 0);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), 0);
    CHECK_EQ(b.entry, A64_RAM_BASE + 0x80000);
    CHECK_EQ(b.kernel_end, A64_RAM_BASE + 0x80000 + 3 * MiB);
    CHECK(memcmp(guest_ptr(&gm, b.entry, FILE_SIZE), image, FILE_SIZE) == 0);
    unmap(&gm);
}

/* RAM that does not start 2 MiB aligned: the kernel goes to the next 2 MiB boundary. */
static void test_load_unaligned_ram(void)
{
    struct guest_mem gm = ram(A64_RAM_BASE + 0x3000, 64 * MiB);
    struct arm64_boot b;

    make_image(0, 1 * MiB, 0);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), 0);
    CHECK_EQ(b.entry, A64_RAM_BASE + 2 * MiB);
    CHECK_EQ(b.entry % A64_KERNEL_ALIGN, 0);
    /* The device tree in the last whole 2 MiB of RAM. */
    CHECK_EQ(b.dtb, A64_RAM_BASE + 62 * MiB);
    CHECK(guest_ptr(&gm, b.dtb, A64_DTB_MAX) != NULL);
    unmap(&gm);
}

/* Malformed files: each refused with -ENOEXEC and one line naming the file and the reason. */
static void test_refused(void)
{
    struct guest_mem gm = ram(A64_RAM_BASE, 64 * MiB);
    struct arm64_boot b;

    /* Short file. */
    make_image(0, 1 * MiB, 0);
    CHECK_EQ(load(&gm, 63, &b), -ENOEXEC);
    CHECK(strstr(errors, "kernel Image: 63 bytes, shorter than the 64-byte") != NULL);

    /* Wrong magic, with a hint for what the file is. */
    make_image(0, 1 * MiB, 0);
    image[56] ^= 1;
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOEXEC);
    CHECK(strstr(errors, "not an arm64 Image") != NULL);
    image[0] = 0x1f, image[1] = 0x8b;
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOEXEC);
    CHECK(strstr(errors, "gzip-compressed") != NULL);
    memcpy(image, "MZ\0\0zimg", 8);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOEXEC);
    CHECK(strstr(errors, "EFI zboot") != NULL);
    memcpy(image, "\177ELF", 4);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOEXEC);
    CHECK(strstr(errors, "ELF file") != NULL);

    /* image_size 0: a pre-3.17 kernel. */
    make_image(0, 0, 0);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOEXEC);
    CHECK(strstr(errors, "older than 3.17") != NULL);

    /* Big-endian. */
    make_image(0, 1 * MiB, 1);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOEXEC);
    CHECK(strstr(errors, "big-endian") != NULL);

    /* image_size smaller than the file. */
    make_image(0, FILE_SIZE - 1, 0);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOEXEC);
    CHECK(strstr(errors, "smaller than the file") != NULL);
    make_image(0, FILE_SIZE, 0); /* exactly the file: fine */
    CHECK_EQ(load(&gm, FILE_SIZE, &b), 0);

    /* text_offset not page aligned, or not below 2 MiB. */
    make_image(0x80001, 1 * MiB, 0);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOEXEC);
    CHECK(strstr(errors, "text_offset 0x80001") != NULL);
    make_image(A64_KERNEL_ALIGN, 1 * MiB, 0);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOEXEC);
    make_image(~0ULL & ~0xfffULL, 1 * MiB, 0);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOEXEC);
    unmap(&gm);
}

/* RAM too small for image_size plus the device tree: -ENOMEM, "raise --memory"; the largest
 * kernel that fits loads. */
static void test_ram_too_small(void)
{
    struct guest_mem gm = ram(A64_RAM_BASE, 16 * MiB);
    struct arm64_boot b;

    make_image(0, 14 * MiB + 1, 0);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOMEM);
    CHECK(strstr(errors, "raise --memory") != NULL);
    make_image(0, 14 * MiB, 0);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), 0);
    CHECK_EQ(b.kernel_end, b.dtb);
    make_image(0, ~0ULL, 0); /* no overflow on absurd sizes */
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOMEM);
    unmap(&gm);
    gm = ram(A64_RAM_BASE, 3 * MiB);
    make_image(0, 1 * MiB, 0);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), -ENOMEM);
    unmap(&gm);
}

/* The initrd: right below the device tree, page aligned, above the kernel; copied exactly. */
static void test_initrd(void)
{
    struct guest_mem gm = ram(A64_RAM_BASE, 64 * MiB);
    static uint8_t rd[3 * 4096 + 123];
    struct arm64_boot b;
    int err;

    for (size_t i = 0; i < sizeof(rd); i++)
        rd[i] = (uint8_t)(i ^ 0x3c);
    make_image(0, 3 * MiB, 0);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), 0);
    CHECK_EQ(arm64_initrd_load(&gm, rd, sizeof(rd), "rd", &b), 0);
    CHECK_EQ(b.initrd_size, sizeof(rd));
    CHECK_EQ(b.initrd_start % 4096, 0);
    CHECK(b.initrd_start + b.initrd_size <= b.dtb);
    CHECK(b.dtb - (b.initrd_start + b.initrd_size) < 4096);
    CHECK(b.initrd_start >= b.kernel_end);
    CHECK(memcmp(guest_ptr(&gm, b.initrd_start, sizeof(rd)), rd, sizeof(rd)) == 0);

    /* Exactly the room between kernel and device tree fits; one byte more does not. */
    log_capture(errors, sizeof(errors));
    err = arm64_initrd_load(&gm, rd, b.dtb - b.kernel_end + 1, "rd", &b);
    log_capture(NULL, 0);
    CHECK_EQ(err, -ENOMEM);
    CHECK(strstr(errors, "initrd rd:") != NULL && strstr(errors, "raise --memory") != NULL);
    log_capture(errors, sizeof(errors));
    err = arm64_initrd_load(&gm, rd, 0, "rd", &b);
    log_capture(NULL, 0);
    CHECK_EQ(err, -EINVAL);
    CHECK(strstr(errors, "empty") != NULL);
    unmap(&gm);
}

/* More than 32 GiB of RAM: the initrd stays in the 32 GiB window that starts at the 1 GiB
 * aligned base below the kernel, not at the top of RAM. */
static void test_initrd_window(void)
{
    struct guest_mem gm = ram(A64_RAM_BASE, 40 * GiB);
    static uint8_t rd[8192];
    struct arm64_boot b;

    make_image(0, 3 * MiB, 0);
    CHECK_EQ(load(&gm, FILE_SIZE, &b), 0);
    CHECK_EQ(b.dtb, A64_RAM_BASE + 40 * GiB - 2 * MiB);
    CHECK_EQ(arm64_initrd_load(&gm, rd, sizeof(rd), "rd", &b), 0);
    CHECK_EQ(b.initrd_start + sizeof(rd), A64_RAM_BASE + 32 * GiB);
    unmap(&gm);
}

int main(void)
{
    test_header_layout();
    test_load_text_offset_0();
    test_load_text_offset();
    test_load_unaligned_ram();
    test_refused();
    test_ram_too_small();
    test_initrd();
    test_initrd_window();
    return check_done("arm64_image");
}
