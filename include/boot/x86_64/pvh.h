/* PVH boot ABI (Xen public arch-x86/hvm/start_info.h): hvm_start_info, its module list and
 * memory map, and the ELF note that advertises the 32-bit PVH entry point. */
#ifndef EMBER_PVH_H
#define EMBER_PVH_H

#include <stdint.h>

#include "guest_mem.h"
#include "layout.h"

#define XEN_HVM_START_MAGIC_VALUE 0x336ec578U
#define XEN_ELFNOTE_PHYS32_ENTRY  18 /* ELF note type in the "Xen" namespace */

/* Passed in EBX at the PVH entry point (version 1: with a memory map). */
struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr; /* array of struct hvm_modlist_entry */
    uint64_t cmdline_paddr; /* NUL-terminated ASCII */
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr; /* array of struct hvm_memmap_table_entry */
    uint32_t memmap_entries;
    uint32_t reserved;
};

struct hvm_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};

struct hvm_memmap_table_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type; /* E820_TYPE_* (ACPI address range types) */
    uint32_t reserved;
};

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info size");
_Static_assert(__builtin_offsetof(struct hvm_start_info, modlist_paddr) == 16, "modlist_paddr");
_Static_assert(__builtin_offsetof(struct hvm_start_info, memmap_paddr) == 40, "memmap_paddr");
_Static_assert(__builtin_offsetof(struct hvm_start_info, memmap_entries) == 48, "memmap_entries");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry size");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry size");

/* The module list does not fit between start_info and PVH_MEMMAP_GPA (56 + 32 > 0x40), so it
 * follows the largest memory map ember ever writes. */
#define PVH_MEMMAP_MAX  8
#define PVH_MODLIST_GPA (PVH_MEMMAP_GPA + PVH_MEMMAP_MAX * sizeof(struct hvm_memmap_table_entry))

_Static_assert(PVH_START_INFO_GPA + sizeof(struct hvm_start_info) <= PVH_MEMMAP_GPA,
               "start_info overlaps the memory map");
_Static_assert(PVH_MODLIST_GPA + sizeof(struct hvm_modlist_entry) <= ZERO_PAGE_GPA,
               "PVH module list overlaps the zero page");

/* Write hvm_start_info at PVH_START_INFO_GPA with the e820 memory map at PVH_MEMMAP_GPA and
 * no modules. Returns 0 or -errno. */
int pvh_write_start_info(const struct guest_mem *gm, uint64_t rsdp_gpa);

/* Record the initrd as the single module (list at PVH_MODLIST_GPA) in the start_info. */
int pvh_set_initrd(const struct guest_mem *gm, uint64_t gpa, uint64_t size);

#endif
