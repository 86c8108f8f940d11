/* x86 Linux boot protocol: struct boot_params ("zero page"), the e820 map and their builders. */
#ifndef EMBER_BOOTPARAMS_H
#define EMBER_BOOTPARAMS_H

#include <stdint.h>

#include "guest_mem.h"
#include "loader.h"

/* Offsets and magic values of the setup header inside a bzImage file. */
#define SETUP_HDR_OFFSET     0x1f1
#define SETUP_HDR_MAGIC      0x53726448U /* "HdrS" at 0x202, little endian */
#define SETUP_BOOT_FLAG      0xaa55
#define SETUP_ENTRY64_OFFSET 0x200 /* 64-bit entry, from the start of the protected-mode kernel */

/* loadflags */
#define LOADFLAG_LOADED_HIGH  0x01
#define LOADFLAG_CAN_USE_HEAP 0x80

/* xloadflags (protocol 2.12+) */
#define XLF_KERNEL_64              0x0001
#define XLF_CAN_BE_LOADED_ABOVE_4G 0x0002

#define BOOT_LOADER_UNDEFINED 0xff   /* type_of_loader: "no registered id" */
#define BOOT_HEAP_END_PTR     0xfe00 /* end of the real-mode heap, relative to the setup code */
#define BOOT_VID_MODE_NORMAL  0xffff

/* e820 (ACPI address range) types, shared with the PVH memory map. */
#define E820_TYPE_RAM      1
#define E820_TYPE_RESERVED 2

#define E820_MAX_ZEROPAGE 128 /* entries in boot_params.e820_table */
#define E820_MAX_EMBER    8   /* ember's map never has more than this */

/* The setup header, at 0x1f1 in both a bzImage file and struct boot_params. */
struct setup_header {
    uint8_t setup_sects;            /* 0x1f1 */
    uint16_t root_flags;            /* 0x1f2 */
    uint32_t syssize;               /* 0x1f4: protected-mode code size in 16-byte units */
    uint16_t ram_size;              /* 0x1f8 */
    uint16_t vid_mode;              /* 0x1fa */
    uint16_t root_dev;              /* 0x1fc */
    uint16_t boot_flag;             /* 0x1fe */
    uint16_t jump;                  /* 0x200 */
    uint32_t header;                /* 0x202 */
    uint16_t version;               /* 0x206 */
    uint32_t realmode_swtch;        /* 0x208 */
    uint16_t start_sys_seg;         /* 0x20c */
    uint16_t kernel_version;        /* 0x20e */
    uint8_t type_of_loader;         /* 0x210 */
    uint8_t loadflags;              /* 0x211 */
    uint16_t setup_move_size;       /* 0x212 */
    uint32_t code32_start;          /* 0x214 */
    uint32_t ramdisk_image;         /* 0x218 */
    uint32_t ramdisk_size;          /* 0x21c */
    uint32_t bootsect_kludge;       /* 0x220 */
    uint16_t heap_end_ptr;          /* 0x224 */
    uint8_t ext_loader_ver;         /* 0x226 */
    uint8_t ext_loader_type;        /* 0x227 */
    uint32_t cmd_line_ptr;          /* 0x228 */
    uint32_t initrd_addr_max;       /* 0x22c: highest byte the initrd may occupy */
    uint32_t kernel_alignment;      /* 0x230 */
    uint8_t relocatable_kernel;     /* 0x234 */
    uint8_t min_alignment;          /* 0x235 */
    uint16_t xloadflags;            /* 0x236 */
    uint32_t cmdline_size;          /* 0x238: maximum command line length without the NUL */
    uint32_t hardware_subarch;      /* 0x23c */
    uint64_t hardware_subarch_data; /* 0x240 */
    uint32_t payload_offset;        /* 0x248 */
    uint32_t payload_length;        /* 0x24c */
    uint64_t setup_data;            /* 0x250 */
    uint64_t pref_address;          /* 0x258 */
    uint32_t init_size;             /* 0x260 */
    uint32_t handover_offset;       /* 0x264 */
    uint32_t kernel_info_offset;    /* 0x268 */
} __attribute__((packed));

struct boot_e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
} __attribute__((packed));

/* The zero page. Only the fields ember writes are named; the rest stays zero. */
struct boot_params {
    uint8_t _pad0[0x70];
    uint64_t acpi_rsdp_addr; /* 0x070 (protocol 2.14+) */
    uint8_t _pad1[0xc0 - 0x78];
    uint32_t ext_ramdisk_image; /* 0x0c0: bits 63:32 of hdr.ramdisk_image */
    uint32_t ext_ramdisk_size;  /* 0x0c4 */
    uint32_t ext_cmd_line_ptr;  /* 0x0c8 */
    uint8_t _pad2[0x1e8 - 0xcc];
    uint8_t e820_entries; /* 0x1e8 */
    uint8_t _pad3[0x1f1 - 0x1e9];
    struct setup_header hdr; /* 0x1f1 */
    uint8_t _pad4[0x2d0 - 0x1f1 - sizeof(struct setup_header)];
    struct boot_e820_entry e820_table[E820_MAX_ZEROPAGE]; /* 0x2d0 */
    uint8_t _pad5[0x1000 - 0xcd0];
} __attribute__((packed));

_Static_assert(sizeof(struct setup_header) == 0x26c - 0x1f1, "setup_header size");
_Static_assert(sizeof(struct boot_e820_entry) == 20, "e820 entry size");
_Static_assert(__builtin_offsetof(struct setup_header, header) == 0x202 - 0x1f1, "hdr.header");
_Static_assert(__builtin_offsetof(struct setup_header, version) == 0x206 - 0x1f1, "hdr.version");
_Static_assert(__builtin_offsetof(struct setup_header, type_of_loader) == 0x210 - 0x1f1,
               "hdr.type_of_loader");
_Static_assert(__builtin_offsetof(struct setup_header, ramdisk_image) == 0x218 - 0x1f1,
               "hdr.ramdisk_image");
_Static_assert(__builtin_offsetof(struct setup_header, heap_end_ptr) == 0x224 - 0x1f1,
               "hdr.heap_end_ptr");
_Static_assert(__builtin_offsetof(struct setup_header, cmd_line_ptr) == 0x228 - 0x1f1,
               "hdr.cmd_line_ptr");
_Static_assert(__builtin_offsetof(struct setup_header, xloadflags) == 0x236 - 0x1f1,
               "hdr.xloadflags");
_Static_assert(__builtin_offsetof(struct setup_header, cmdline_size) == 0x238 - 0x1f1,
               "hdr.cmdline_size");
_Static_assert(__builtin_offsetof(struct setup_header, pref_address) == 0x258 - 0x1f1,
               "hdr.pref_address");
_Static_assert(__builtin_offsetof(struct setup_header, init_size) == 0x260 - 0x1f1,
               "hdr.init_size");
_Static_assert(__builtin_offsetof(struct boot_params, acpi_rsdp_addr) == 0x070, "acpi_rsdp_addr");
_Static_assert(__builtin_offsetof(struct boot_params, ext_ramdisk_image) == 0x0c0, "ext_ramdisk");
_Static_assert(__builtin_offsetof(struct boot_params, ext_cmd_line_ptr) == 0x0c8, "ext_cmd_line");
_Static_assert(__builtin_offsetof(struct boot_params, e820_entries) == 0x1e8, "e820_entries");
_Static_assert(__builtin_offsetof(struct boot_params, hdr) == 0x1f1, "hdr");
_Static_assert(__builtin_offsetof(struct boot_params, e820_table) == 0x2d0, "e820_table");
_Static_assert(sizeof(struct boot_params) == 4096, "boot_params is one page");

/* Fill tab with ember's guest memory map: low RAM, the EBDA..1 MiB hole (reserved), RAM from
 * 1 MiB to the MMIO hole and RAM above 4 GiB. Returns the number of entries or -ENOSPC. */
int e820_build(const struct guest_mem *gm, struct boot_e820_entry *tab, int max);

/* Fill the loader-owned fields of bp (bp->hdr already holds the kernel's setup header):
 * loader type, heap, command line pointer, no initrd, video mode, RSDP and e820 map; then
 * write it to ZERO_PAGE_GPA. Returns 0 or -errno. */
int bootparams_write(const struct guest_mem *gm, struct boot_params *bp, uint64_t rsdp_gpa);

/* A setup header for a kernel that has none (ELF entered at its 64-bit entry point). */
void bootparams_default_header(struct setup_header *hdr);

/* Limits the kernel declared in the zero page already written at ZERO_PAGE_GPA: the longest
 * command line (without the NUL) and the first byte above the highest legal initrd address. */
int bootparams_limits(const struct guest_mem *gm, uint64_t *cmdline_max, uint64_t *initrd_end);

/* Record an initrd at [gpa, gpa+size) in the zero page at ZERO_PAGE_GPA. */
int bootparams_set_ramdisk(const struct guest_mem *gm, uint64_t gpa, uint64_t size);

#endif
