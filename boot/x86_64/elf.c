/* ELF64 x86_64 kernel loader: PVH entry (Xen PHYS32_ENTRY note) or the 64-bit ELF entry. */
#include "bootparams.h"
#include "layout.h"
#include "loader.h"
#include "log.h"
#include "pvh.h"

#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define ELF_MAX_PHDRS     128       /* real kernels have fewer than 16 */
#define ELF_MAX_LOADS     64        /* PT_LOAD segments; keeps the overlap check cheap */
#define ELF_MAX_NOTE_SIZE (1 << 20) /* per PT_NOTE segment */

/* A validated PT_LOAD: copied once from the file, then used for both checks and loading. */
struct elf_load {
    Elf64_Phdr ph;
    int index; /* in the program header table, for messages */
};

struct elf_kernel {
    Elf64_Ehdr ehdr;
    struct elf_load load[ELF_MAX_LOADS];
    int nr_loads;
    uint64_t kernel_end;
    bool has_pvh;
    uint64_t pvh_entry;
};

static const char *kernel_name(const struct load_params *p)
{
    return p && p->kernel_path ? p->kernel_path : "(image)";
}

static int elf_check_ident(const uint8_t *image, uint64_t size, const char *path)
{
    if (size < EI_NIDENT || memcmp(image, ELFMAG, SELFMAG) != 0) {
        log_err("kernel %s: not an ELF file (truncated or no ELF magic)", path);
        return -ENOEXEC;
    }
    if (image[EI_CLASS] != ELFCLASS64) {
        log_err("kernel %s: %s ELF; ember boots only x86_64 (ELF64) kernels", path,
                image[EI_CLASS] == ELFCLASS32 ? "32-bit" : "unknown-class");
        return -ENOEXEC;
    }
    if (image[EI_DATA] != ELFDATA2LSB) {
        log_err("kernel %s: big-endian or invalid ELF data encoding; need x86_64 (little "
                "endian)",
                path);
        return -ENOEXEC;
    }
    if (size < sizeof(Elf64_Ehdr)) {
        log_err("kernel %s: truncated: %llu bytes, an ELF64 header needs %zu", path,
                (unsigned long long)size, sizeof(Elf64_Ehdr));
        return -ENOEXEC;
    }
    return 0;
}

static int elf_check_header(const Elf64_Ehdr *eh, uint64_t size, const char *path)
{
    if (eh->e_machine != EM_X86_64) {
        log_err("kernel %s: ELF for machine %u, not x86_64 (%u); build the kernel for x86_64", path,
                eh->e_machine, EM_X86_64);
        return -ENOEXEC;
    }
    if (eh->e_type != ET_EXEC) {
        log_err("kernel %s: ELF type %u is not an executable (ET_EXEC); link the kernel as a "
                "static, non-PIE executable",
                path, eh->e_type);
        return -ENOEXEC;
    }
    if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phnum > ELF_MAX_PHDRS) {
        log_err("kernel %s: bad program header table (%u entries of %u bytes; need 1..%d of %zu)",
                path, eh->e_phnum, eh->e_phentsize, ELF_MAX_PHDRS, sizeof(Elf64_Phdr));
        return -ENOEXEC;
    }
    /* e_phnum * e_phentsize is at most 128 * 56: only e_phoff can be huge. */
    if (eh->e_phoff > size || (uint64_t)eh->e_phnum * eh->e_phentsize > size - eh->e_phoff) {
        log_err("kernel %s: truncated: program headers at 0x%llx (%u entries) run past the end "
                "of the file (%llu bytes)",
                path, (unsigned long long)eh->e_phoff, eh->e_phnum, (unsigned long long)size);
        return -ENOEXEC;
    }
    return 0;
}

static void elf_phdr(const uint8_t *image, const Elf64_Ehdr *eh, int i, Elf64_Phdr *ph)
{
    memcpy(ph, image + eh->e_phoff + (uint64_t)i * sizeof(*ph), sizeof(*ph));
}

static int elf_check_file_range(const Elf64_Phdr *ph, uint64_t size, int i, const char *path)
{
    if (ph->p_offset > size || ph->p_filesz > size - ph->p_offset) {
        log_err("kernel %s: truncated: segment %d (file offset 0x%llx, %llu bytes) runs past "
                "the end of the file (%llu bytes)",
                path, i, (unsigned long long)ph->p_offset, (unsigned long long)ph->p_filesz,
                (unsigned long long)size);
        return -ENOEXEC;
    }
    return 0;
}

/* A PT_LOAD must lie in low RAM above 1 MiB (below that are ember's boot structures) and
 * must not overlap another one. */
static int elf_check_load(const struct guest_mem *gm, struct elf_kernel *k, const Elf64_Phdr *ph,
                          int i, const char *path)
{
    uint64_t low_end = guest_mem_low_end(gm), start = ph->p_paddr;

    if (ph->p_filesz > ph->p_memsz) {
        log_err("kernel %s: segment %d has more file bytes (%llu) than memory bytes (%llu)", path,
                i, (unsigned long long)ph->p_filesz, (unsigned long long)ph->p_memsz);
        return -ENOEXEC;
    }
    if (start < HIMEM_START) {
        log_err("kernel %s: segment %d at 0x%llx is below 1 MiB, where ember keeps its boot "
                "structures; link the kernel at or above 0x100000 (a segment just below 1 MiB "
                "usually holds the ELF headers: use a linker script or -z noseparate-code)",
                path, i, (unsigned long long)start);
        return -ENOEXEC;
    }
    if (start >= low_end || ph->p_memsz > low_end - start) {
        bool hole = start >= MMIO_HOLE_START || ph->p_memsz > MMIO_HOLE_START - start;

        log_err("kernel %s: segment %d at 0x%llx (%llu bytes) does not fit in guest low RAM, "
                "which ends at 0x%llx; %s",
                path, i, (unsigned long long)start, (unsigned long long)ph->p_memsz,
                (unsigned long long)low_end,
                hole ? "link the kernel below the 32-bit MMIO hole at 0xc0000000"
                     : "give the guest more memory with --memory");
        return -ENOEXEC;
    }
    for (int j = 0; j < k->nr_loads; j++) {
        const Elf64_Phdr *o = &k->load[j].ph;

        if (start < o->p_paddr + o->p_memsz && o->p_paddr < start + ph->p_memsz) {
            log_err("kernel %s: segment %d at 0x%llx overlaps an earlier segment at 0x%llx", path,
                    i, (unsigned long long)start, (unsigned long long)o->p_paddr);
            return -ENOEXEC;
        }
    }
    if (k->nr_loads == ELF_MAX_LOADS) {
        log_err("kernel %s: more than %d PT_LOAD segments", path, ELF_MAX_LOADS);
        return -ENOEXEC;
    }
    k->load[k->nr_loads++] = (struct elf_load){*ph, i};
    if (start + ph->p_memsz > k->kernel_end)
        k->kernel_end = start + ph->p_memsz;
    return 0;
}

static int elf_copy_load(const struct guest_mem *gm, const uint8_t *image, const Elf64_Phdr *ph,
                         int i, const char *path)
{
    uint8_t *dst = guest_ptr(gm, ph->p_paddr, ph->p_memsz);

    if (!dst) {
        log_err("kernel %s: segment %d at 0x%llx (%llu bytes) is outside guest RAM", path, i,
                (unsigned long long)ph->p_paddr, (unsigned long long)ph->p_memsz);
        return -EFAULT;
    }
    memcpy(dst, image + ph->p_offset, ph->p_filesz);
    memset(dst + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
    return 0;
}

static uint64_t note_align(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* Read the PVH entry from a "Xen" PHYS32_ENTRY note descriptor (4 or 8 bytes). */
static int elf_pvh_desc(const uint8_t *desc, uint32_t descsz, struct elf_kernel *k,
                        const char *path)
{
    uint32_t v32;
    uint64_t v64;

    if (descsz == 4) {
        memcpy(&v32, desc, 4);
        v64 = v32;
    } else if (descsz == 8) {
        memcpy(&v64, desc, 8);
    } else {
        log_err("kernel %s: PVH entry note has a %u-byte descriptor (need 4 or 8)", path, descsz);
        return -ENOEXEC;
    }
    if (v64 > UINT32_MAX) {
        log_err("kernel %s: PVH entry 0x%llx is above 4 GiB; a 32-bit entry is required", path,
                (unsigned long long)v64);
        return -ENOEXEC;
    }
    k->has_pvh = true;
    k->pvh_entry = v64;
    return 0;
}

/* Walk the notes of one PT_NOTE segment, already checked to lie inside the file. */
static int elf_scan_notes(const uint8_t *image, const Elf64_Phdr *ph, struct elf_kernel *k, int i,
                          const char *path)
{
    const uint8_t *notes = image + ph->p_offset;
    uint64_t len = ph->p_filesz, off = 0, a = ph->p_align == 8 ? 8 : 4;
    Elf64_Nhdr nh;

    if (len > ELF_MAX_NOTE_SIZE) {
        log_err("kernel %s: note segment %d is %llu bytes (at most %d)", path, i,
                (unsigned long long)len, ELF_MAX_NOTE_SIZE);
        return -ENOEXEC;
    }
    /* off <= len <= 1 MiB and namesz/descsz < 2^32: the sums below cannot overflow. */
    while (len - off >= sizeof(nh)) {
        uint64_t name_off = off + sizeof(nh), desc_off, next;

        memcpy(&nh, notes + off, sizeof(nh));
        desc_off = name_off + note_align(nh.n_namesz, a);
        next = desc_off + note_align(nh.n_descsz, a);
        if (desc_off > len || nh.n_descsz > len - desc_off) {
            log_err("kernel %s: note segment %d: note at offset %llu (name %u bytes, descriptor "
                    "%u bytes) runs past the segment (%llu bytes)",
                    path, i, (unsigned long long)off, nh.n_namesz, nh.n_descsz,
                    (unsigned long long)len);
            return -ENOEXEC;
        }
        if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
            memcmp(notes + name_off, "Xen", 4) == 0)
            return elf_pvh_desc(notes + desc_off, nh.n_descsz, k, path);
        off = next < len ? next : len;
    }
    return 0;
}

static int elf_scan_phdrs(const struct guest_mem *gm, const uint8_t *image, uint64_t size,
                          struct elf_kernel *k, const char *path)
{
    Elf64_Phdr ph;
    int ret;

    for (int i = 0; i < k->ehdr.e_phnum; i++) {
        elf_phdr(image, &k->ehdr, i, &ph);
        if (ph.p_type != PT_LOAD && ph.p_type != PT_NOTE)
            continue;
        ret = elf_check_file_range(&ph, size, i, path);
        if (!ret && ph.p_type == PT_LOAD && ph.p_memsz)
            ret = elf_check_load(gm, k, &ph, i, path);
        if (!ret && ph.p_type == PT_NOTE && !k->has_pvh)
            ret = elf_scan_notes(image, &ph, k, i, path);
        if (ret)
            return ret;
    }
    if (k->nr_loads == 0) {
        log_err("kernel %s: no loadable (PT_LOAD) segment", path);
        return -ENOEXEC;
    }
    return 0;
}

static int elf_check_entry(const struct elf_kernel *k, uint64_t entry, const char *what,
                           const char *path)
{
    for (int j = 0; j < k->nr_loads; j++) {
        const Elf64_Phdr *ph = &k->load[j].ph;

        if (entry >= ph->p_paddr && entry - ph->p_paddr < ph->p_memsz)
            return 0;
    }
    log_err("kernel %s: %s 0x%llx is not inside any loaded segment (it must be a physical "
            "address)",
            path, what, (unsigned long long)entry);
    return -ENOEXEC;
}

static int elf_load_segments(const struct guest_mem *gm, const uint8_t *image,
                             const struct elf_kernel *k, const char *path)
{
    for (int j = 0; j < k->nr_loads; j++) {
        int ret = elf_copy_load(gm, image, &k->load[j].ph, k->load[j].index, path);

        if (ret)
            return ret;
    }
    return 0;
}

int pvh_write_start_info(const struct guest_mem *gm, uint64_t rsdp_gpa)
{
    struct boot_e820_entry e820[PVH_MEMMAP_MAX];
    struct hvm_memmap_table_entry map[PVH_MEMMAP_MAX];
    struct hvm_start_info si;
    int nr = e820_build(gm, e820, PVH_MEMMAP_MAX), ret;

    if (nr < 0)
        return nr;
    memset(map, 0, sizeof(map));
    for (int i = 0; i < nr; i++)
        map[i] = (struct hvm_memmap_table_entry){e820[i].addr, e820[i].size, e820[i].type, 0};
    si = (struct hvm_start_info){
            .magic = XEN_HVM_START_MAGIC_VALUE,
            .version = 1,
            .cmdline_paddr = CMDLINE_GPA,
            .rsdp_paddr = rsdp_gpa,
            .memmap_paddr = PVH_MEMMAP_GPA,
            .memmap_entries = (uint32_t)nr,
    };
    ret = guest_write(gm, PVH_MEMMAP_GPA, map, (size_t)nr * sizeof(map[0]));
    if (!ret)
        ret = guest_write(gm, PVH_START_INFO_GPA, &si, sizeof(si));
    return ret;
}

int pvh_set_initrd(const struct guest_mem *gm, uint64_t gpa, uint64_t size)
{
    struct hvm_modlist_entry mod = {.paddr = gpa, .size = size};
    struct hvm_start_info *si = guest_ptr(gm, PVH_START_INFO_GPA, sizeof(*si));
    int ret;

    if (!si)
        return -EFAULT;
    ret = guest_write(gm, PVH_MODLIST_GPA, &mod, sizeof(mod));
    if (ret)
        return ret;
    si->nr_modules = 1;
    si->modlist_paddr = PVH_MODLIST_GPA;
    return 0;
}

static int elf_write_boot_info(const struct guest_mem *gm, const struct elf_kernel *k,
                               uint64_t rsdp_gpa)
{
    struct boot_params bp;

    if (k->has_pvh)
        return pvh_write_start_info(gm, rsdp_gpa);
    memset(&bp, 0, sizeof(bp));
    bootparams_default_header(&bp.hdr);
    return bootparams_write(gm, &bp, rsdp_gpa);
}

int load_elf(struct guest_mem *gm, const uint8_t *image, uint64_t size, const struct load_params *p,
             struct boot_setup *out)
{
    const char *path = kernel_name(p);
    struct elf_kernel k;
    uint64_t entry;
    int ret;

    memset(&k, 0, sizeof(k));
    ret = elf_check_ident(image, size, path);
    if (ret)
        return ret;
    memcpy(&k.ehdr, image, sizeof(k.ehdr));
    ret = elf_check_header(&k.ehdr, size, path);
    if (!ret)
        ret = elf_scan_phdrs(gm, image, size, &k, path);
    entry = k.has_pvh ? k.pvh_entry : k.ehdr.e_entry;
    if (!ret)
        ret = elf_check_entry(&k, entry, k.has_pvh ? "PVH entry point" : "entry point", path);
    if (!ret)
        ret = elf_load_segments(gm, image, &k, path);
    if (ret)
        return ret;
    ret = elf_write_boot_info(gm, &k, p ? p->rsdp_gpa : 0);
    if (ret) {
        log_err("kernel %s: cannot write the boot information below 1 MiB: %s", path,
                strerror(-ret));
        return ret;
    }
    *out = (struct boot_setup){
            .proto = k.has_pvh ? BOOT_PVH : BOOT_LINUX64,
            .entry = entry,
            .boot_info = k.has_pvh ? PVH_START_INFO_GPA : ZERO_PAGE_GPA,
            .kernel_end = k.kernel_end,
            .format = k.has_pvh ? "ELF (PVH)" : "ELF (64-bit entry)",
    };
    log_debug("kernel %s: %s, entry 0x%llx, end 0x%llx", path, out->format,
              (unsigned long long)entry, (unsigned long long)k.kernel_end);
    return 0;
}
