/* libFuzzer target: the bzImage and ELF (PVH / 64-bit entry) kernel loaders on a file image. */
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

/* Input: a kernel file. Both parsers see it; each refuses what is not its format. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct load_params p = {.kernel_path = "fuzz", .cmdline = "console=ttyS0", .rsdp_gpa = 0};
    struct boot_setup out;

    if (load_bzimage(&gm, data, size, &p, &out) == 0)
        check(&out);
    if (load_elf(&gm, data, size, &p, &out) == 0)
        check(&out);
    return 0;
}
