/* Zero page (struct boot_params) and e820 map shared by the bzImage and ELF loaders. */
#include "bootparams.h"
#include "layout.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

static int e820_add(struct boot_e820_entry *tab, int *nr, int max, uint64_t start, uint64_t end,
                    uint32_t type)
{
    if (end <= start)
        return 0;
    if (*nr >= max)
        return -ENOSPC;
    tab[*nr] = (struct boot_e820_entry){.addr = start, .size = end - start, .type = type};
    (*nr)++;
    return 0;
}

int e820_build(const struct guest_mem *gm, struct boot_e820_entry *tab, int max)
{
    uint64_t low_end = guest_mem_low_end(gm);
    uint64_t high = gm->ram_size > low_end ? gm->ram_size - low_end : 0;
    int nr = 0, ret;

    ret = e820_add(tab, &nr, max, 0, low_end < EBDA_START ? low_end : EBDA_START, E820_TYPE_RAM);
    if (!ret)
        ret = e820_add(tab, &nr, max, EBDA_START, HIMEM_START, E820_TYPE_RESERVED);
    if (!ret)
        ret = e820_add(tab, &nr, max, HIMEM_START, low_end, E820_TYPE_RAM);
    if (!ret)
        ret = e820_add(tab, &nr, max, MMIO_HOLE_END, MMIO_HOLE_END + high, E820_TYPE_RAM);
    return ret ? ret : nr;
}

void bootparams_default_header(struct setup_header *hdr)
{
    memset(hdr, 0, sizeof(*hdr));
    hdr->boot_flag = SETUP_BOOT_FLAG;
    hdr->header = SETUP_HDR_MAGIC;
    hdr->version = 0x020f;
    hdr->loadflags = LOADFLAG_LOADED_HIGH;
    hdr->initrd_addr_max = 0x7fffffff; /* what a 64-bit Linux declares */
    hdr->kernel_alignment = 0x1000000;
    hdr->xloadflags = XLF_KERNEL_64;
    hdr->cmdline_size = CMDLINE_MAX - 1;
}

int bootparams_write(const struct guest_mem *gm, struct boot_params *bp, uint64_t rsdp_gpa)
{
    struct setup_header *h = &bp->hdr;
    int nr = e820_build(gm, bp->e820_table, E820_MAX_ZEROPAGE);

    if (nr < 0)
        return nr;
    bp->e820_entries = (uint8_t)nr;
    h->type_of_loader = BOOT_LOADER_UNDEFINED;
    h->loadflags |= LOADFLAG_CAN_USE_HEAP;
    h->heap_end_ptr = BOOT_HEAP_END_PTR;
    h->cmd_line_ptr = (uint32_t)CMDLINE_GPA;
    bp->ext_cmd_line_ptr = 0;
    h->vid_mode = BOOT_VID_MODE_NORMAL;
    /* Loader-written fields a hostile file may have pre-set: ember passes none of these. */
    h->ramdisk_image = 0;
    h->ramdisk_size = 0;
    bp->ext_ramdisk_image = 0;
    bp->ext_ramdisk_size = 0;
    h->setup_data = 0;
    if (h->version >= 0x020e)
        bp->acpi_rsdp_addr = rsdp_gpa;
    return guest_write(gm, ZERO_PAGE_GPA, bp, sizeof(*bp));
}

int bootparams_limits(const struct guest_mem *gm, uint64_t *cmdline_max, uint64_t *initrd_end)
{
    struct setup_header h;
    int ret = guest_read(gm, ZERO_PAGE_GPA + offsetof(struct boot_params, hdr), &h, sizeof(h));

    if (ret)
        return ret;
    *cmdline_max = h.cmdline_size;
    *initrd_end = (uint64_t)h.initrd_addr_max + 1;
    return 0;
}

int bootparams_set_ramdisk(const struct guest_mem *gm, uint64_t gpa, uint64_t size)
{
    struct boot_params *bp = guest_ptr(gm, ZERO_PAGE_GPA, sizeof(*bp));

    if (!bp)
        return -EFAULT;
    bp->hdr.ramdisk_image = (uint32_t)gpa;
    bp->hdr.ramdisk_size = (uint32_t)size;
    bp->ext_ramdisk_image = (uint32_t)(gpa >> 32);
    bp->ext_ramdisk_size = (uint32_t)(size >> 32);
    return 0;
}
