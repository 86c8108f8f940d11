/* Kernel loading: bzImage (64-bit boot protocol) and ELF vmlinux (PVH entry or 64-bit entry). */
#ifndef EMBER_LOADER_H
#define EMBER_LOADER_H

#include <stdint.h>

#include "guest_mem.h"

enum boot_protocol {
    BOOT_LINUX64, /* 64-bit long mode, RSI = zero page (bzImage, or ELF without a PVH note) */
    BOOT_PVH,     /* 32-bit protected mode, paging off, RBX = hvm_start_info */
};

struct boot_setup {
    enum boot_protocol proto;
    uint64_t entry;      /* first RIP */
    uint64_t boot_info;  /* zero page (BOOT_LINUX64) or hvm_start_info (BOOT_PVH) */
    uint64_t kernel_end; /* first byte after the loaded kernel image */
    const char *format;  /* "bzImage", "ELF (PVH)", "ELF (64-bit entry)" for messages */
};

struct load_params {
    const char *kernel_path;
    const char *initrd_path; /* NULL: none */
    const char *cmdline;     /* the final command line, already assembled */
    uint64_t rsdp_gpa;       /* ACPI RSDP, 0 if none */
};

/* Load the kernel (and initrd) into guest memory and fill the boot structures (zero page
 * with e820 map, or hvm_start_info with its memmap), the command line at CMDLINE_GPA.
 * Prints one clear error line naming the file on failure and returns -errno. */
int load_kernel(struct guest_mem *gm, const struct load_params *p, struct boot_setup *out);

/* Parsers over an in-memory file image, used by load_kernel and by fuzzers.
 * They never read outside [image, image+size). They load the kernel and write its boot
 * structure (zero page or hvm_start_info); load_kernel then writes the command line and the
 * initrd, so p->cmdline and p->initrd_path are not used by them. */
int load_bzimage(struct guest_mem *gm, const uint8_t *image, uint64_t size,
                 const struct load_params *p, struct boot_setup *out);
int load_elf(struct guest_mem *gm, const uint8_t *image, uint64_t size, const struct load_params *p,
             struct boot_setup *out);

#endif
