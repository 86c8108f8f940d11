/* Boot-time GDT and identity page tables (low 4 GiB, 2 MiB pages) written into guest memory. */
#include "cpu.h"
#include "layout.h"
#include "log.h"

#include <errno.h>
#include <string.h>

/* GDT: null, null, code (0x10), data (0x18), TSS (0x20) -- the selectors Linux's boot
 * protocol names __BOOT_CS and __BOOT_DS. */
static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
    return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ffu) << 40) |
           ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
           (uint64_t)(limit & 0x0000ffffu);
}

int boot_tables_setup(struct guest_mem *gm, const struct boot_setup *bs)
{
    uint64_t gdt[5] = {
            0,
            0,
            gdt_entry(bs->proto == BOOT_PVH ? 0xc09b : 0xa09b, 0, 0xfffff),
            gdt_entry(0xc093, 0, 0xfffff),
            gdt_entry(0x808b, 0, 0xfffff),
    };
    uint64_t *pml4, *pdpte, *pde;

    if (guest_write(gm, GDT_GPA, gdt, sizeof(gdt)))
        goto fault;
    if (bs->proto == BOOT_PVH)
        return 0; /* PVH starts with paging off */
    pml4 = guest_ptr(gm, PML4_GPA, 4096);
    pdpte = guest_ptr(gm, PDPTE_GPA, 4096);
    pde = guest_ptr(gm, PDE_GPA, 4 * 4096);
    if (!pml4 || !pdpte || !pde)
        goto fault;
    memset(pml4, 0, 4096);
    memset(pdpte, 0, 4096);
    pml4[0] = PDPTE_GPA | 0x3; /* present, writable */
    for (uint64_t i = 0; i < 4; i++)
        pdpte[i] = (PDE_GPA + i * 4096) | 0x3;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pde[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
    return 0;
fault:
    log_err("guest memory too small for the boot page tables");
    return -EFAULT;
}
