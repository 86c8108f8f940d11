/* arm64 Image loader: check the header against the file and the RAM, place kernel and initrd. */
#include "boot/aarch64/image.h"
#include "boot/aarch64/layout.h"
#include "log.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#define PAGE_SIZE         4096ULL
#define INITRD_WINDOW     (32ULL << 30) /* kernel and initrd within 32 GiB ... */
#define INITRD_WINDOW_ALN (1ULL << 30)  /* ... starting 1 GiB aligned */

static uint64_t align_down(uint64_t v, uint64_t a)
{
    return v & ~(a - 1);
}

/* What the first bytes are when they are not an Image: a better hint than "bad magic". */
static const char *not_image_hint(const uint8_t *d, uint64_t size)
{
    if (size >= 2 && d[0] == 0x1f && d[1] == 0x8b)
        return "it is gzip-compressed (Image.gz): gunzip it, ember loads the uncompressed Image";
    if (size >= 8 && d[0] == 'M' && d[1] == 'Z' && memcmp(d + 4, "zimg", 4) == 0)
        return "it is an EFI zboot image (CONFIG_EFI_ZBOOT): use the kernel's plain Image";
    if (size >= 4 && memcmp(d, "\177ELF", 4) == 0)
        return "it is an ELF file (vmlinux?): use arch/arm64/boot/Image";
    return "use arch/arm64/boot/Image (Debian: /boot/vmlinuz-*-arm64)";
}

static int parse_header(const uint8_t *image, uint64_t size, const char *path,
                        struct arm64_image_header *h)
{
    if (size < sizeof(*h)) {
        log_err("kernel %s: %llu bytes, shorter than the 64-byte arm64 Image header; %s", path,
                (unsigned long long)size, not_image_hint(image, size));
        return -ENOEXEC;
    }
    memcpy(h, image, sizeof(*h));
    h->text_offset = le64toh(h->text_offset);
    h->image_size = le64toh(h->image_size);
    h->flags = le64toh(h->flags);
    h->magic = le32toh(h->magic);
    if (h->magic != ARM64_IMAGE_MAGIC) {
        log_err("kernel %s: not an arm64 Image (no \"ARM\\x64\" magic at 0x38); %s", path,
                not_image_hint(image, size));
        return -ENOEXEC;
    }
    if (h->image_size == 0) {
        log_err("kernel %s: image_size is 0 (a kernel older than 3.17); use Linux 3.17 or newer",
                path);
        return -ENOEXEC;
    }
    if (h->flags & ARM64_IMAGE_FLAG_BE) {
        log_err("kernel %s: a big-endian kernel; ember runs little-endian arm64 guests", path);
        return -ENOEXEC;
    }
    if (h->image_size < size) {
        log_err("kernel %s: the header's image_size (%llu bytes) is smaller than the file (%llu "
                "bytes); the file is corrupt or not an Image",
                path, (unsigned long long)h->image_size, (unsigned long long)size);
        return -ENOEXEC;
    }
    if (h->text_offset % PAGE_SIZE || h->text_offset >= A64_KERNEL_ALIGN) {
        log_err("kernel %s: text_offset 0x%llx is not a page-aligned offset below 2 MiB; the "
                "file is corrupt",
                path, (unsigned long long)h->text_offset);
        return -ENOEXEC;
    }
    return 0;
}

int arm64_image_load(struct guest_mem *gm, const uint8_t *image, uint64_t size, const char *path,
                     struct arm64_boot *b)
{
    struct arm64_image_header h;
    uint64_t ram_base, ram_end, load;
    uint8_t *dst;
    int err;

    memset(b, 0, sizeof(*b));
    err = parse_header(image, size, path, &h);
    if (err)
        return err;
    if (gm->nr_regions < 1 || gm->region[0].size < 2 * A64_DTB_MAX) {
        log_err("kernel %s: the guest has less than 4 MiB of RAM; raise --memory", path);
        return -ENOMEM;
    }
    ram_base = gm->region[0].gpa;
    ram_end = ram_base + gm->region[0].size;
    /* The 2 MiB aligned base closest to the start of RAM. */
    load = (ram_base + A64_KERNEL_ALIGN - 1) / A64_KERNEL_ALIGN * A64_KERNEL_ALIGN + h.text_offset;
    b->dtb = align_down(ram_end, A64_KERNEL_ALIGN) - A64_DTB_MAX;
    if (load > b->dtb || h.image_size > b->dtb - load) {
        log_err("kernel %s: needs %llu MiB of RAM from its load address plus 2 MiB for the device "
                "tree, the guest has %llu MiB; raise --memory",
                path, (unsigned long long)(h.image_size >> 20),
                (unsigned long long)(gm->region[0].size >> 20));
        return -ENOMEM;
    }
    dst = guest_ptr(gm, load, h.image_size);
    if (!dst)
        return -ENOMEM;
    memcpy(dst, image, size);
    b->entry = load;
    b->kernel_end = load + h.image_size;
    return 0;
}

int arm64_initrd_load(struct guest_mem *gm, const uint8_t *initrd, uint64_t size, const char *path,
                      struct arm64_boot *b)
{
    uint64_t top = b->dtb, window_end, start;
    uint8_t *dst;

    if (size == 0) {
        log_err("initrd %s: the file is empty", path);
        return -EINVAL;
    }
    window_end = align_down(b->entry, INITRD_WINDOW_ALN) + INITRD_WINDOW;
    if (top > window_end)
        top = window_end;
    if (top <= b->kernel_end || size > top - b->kernel_end ||
        (start = align_down(top - size, PAGE_SIZE)) < b->kernel_end) {
        log_err("initrd %s: %llu MiB does not fit between the kernel and the device tree (%llu "
                "MiB free); raise --memory",
                path, (unsigned long long)(size >> 20),
                (unsigned long long)(top > b->kernel_end ? (top - b->kernel_end) >> 20 : 0));
        return -ENOMEM;
    }
    dst = guest_ptr(gm, start, size);
    if (!dst)
        return -ENOMEM;
    memcpy(dst, initrd, size);
    b->initrd_start = start;
    b->initrd_size = size;
    return 0;
}
