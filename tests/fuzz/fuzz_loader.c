/* libFuzzer target: the bzImage, ELF (PVH / 64-bit entry) and arm64 Image kernel loaders on a
 * file image. */
#include "boot/aarch64/image.h"
#include "boot/aarch64/layout.h"
#include "fuzz_common.h"
#include "loader.h"

#include <stdlib.h>

#define LOADER_MEM (64ULL << 20)

static struct guest_mem gm;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (guest_mem_init(&gm, LOADER_MEM, 0))
        abort();
    return 0;
}

/* What a successful load promises: everything it set up lies in guest RAM. */
static void check(const struct boot_setup *b)
{
    if (!guest_ptr(&gm, b->entry, 1) || !guest_ptr(&gm, b->boot_info, 1) ||
        b->kernel_end > LOADER_MEM || !b->format)
        abort();
}

/* An arm64 load keeps the kernel, initrd and device tree apart and inside guest RAM. */
static void check_arm64(const struct arm64_boot *b)
{
    if (!guest_ptr(&gm, b->entry, b->kernel_end - b->entry) || b->kernel_end > b->dtb ||
        !guest_ptr(&gm, b->dtb, A64_DTB_MAX))
        abort();
    if (b->initrd_size &&
        (b->initrd_start < b->kernel_end || b->initrd_start + b->initrd_size > b->dtb ||
         !guest_ptr(&gm, b->initrd_start, b->initrd_size)))
        abort();
}

/* Input: a kernel file. Every parser sees it; each refuses what is not its format. The arm64
 * loader also places the tail of the input as an initrd. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct load_params p = {.kernel_path = "fuzz", .cmdline = "console=ttyS0", .rsdp_gpa = 0};
    struct boot_setup out;
    struct arm64_boot ab;

    if (load_bzimage(&gm, data, size, &p, &out) == 0)
        check(&out);
    if (load_elf(&gm, data, size, &p, &out) == 0)
        check(&out);
    if (arm64_image_load(&gm, data, size, "fuzz", &ab) == 0) {
        check_arm64(&ab);
        if (size > 64 && arm64_initrd_load(&gm, data + 64, size - 64, "fuzz", &ab) == 0)
            check_arm64(&ab);
    }
    return 0;
}
