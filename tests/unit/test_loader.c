/* Unit tests for the kernel loaders: synthetic bzImage and ELF files, valid and malformed. */
#include "bootparams.h"
#include "check.h"
#include "arch.h"
#include "cmdline.h"
#include "layout.h"
#include "loader.h"
#include "pvh.h"

#include <elf.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

#define BZ_SETUP_SECTS 4
#define BZ_SETUP_SIZE  ((BZ_SETUP_SECTS + 1) * 512)
#define BZ_PAYLOAD     4096
#define BZ_SIZE        (BZ_SETUP_SIZE + BZ_PAYLOAD)
#define BZ_PREF        (16 * MiB)
#define BZ_INIT_SIZE   0x40000

#define ELF_TEXT_GPA  0x100000ULL
#define ELF_DATA_GPA  0x200000ULL
#define ELF_NOTE_OFF  232
#define ELF_TEXT_OFF  512
#define ELF_TEXT_SIZE 512
#define ELF_TEXT_MEM  8192
#define ELF_DATA_OFF  1024
#define ELF_DATA_SIZE 256
#define ELF_DATA_MEM  4096
#define ELF_SIZE      (ELF_DATA_OFF + ELF_DATA_SIZE)
#define ELF_PVH_ENTRY 0x100010ULL
#define RSDP          0xe0000ULL

static uint8_t bz[BZ_SIZE] __attribute__((aligned(8)));
static uint8_t elf[ELF_SIZE] __attribute__((aligned(8)));
static char tmpdir[] = "/tmp/ember-test-loader-XXXXXX";
static int saved_stderr = -1;
static FILE *captured;

/* Send stderr to a temporary file while a loop produces thousands of expected errors. */
static void capture_begin(void)
{
    fflush(stderr);
    captured = tmpfile();
    saved_stderr = dup(STDERR_FILENO);
    if (captured)
        dup2(fileno(captured), STDERR_FILENO);
}

/* Restore stderr; check that every failure printed exactly one "ember: error: kernel" line. */
static void capture_end(int expected_lines)
{
    char line[1200];
    int lines = 0, well_formed = 0;

    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    if (!captured)
        return;
    rewind(captured);
    while (fgets(line, sizeof(line), captured)) {
        lines++;
        well_formed += strncmp(line, "ember: error: kernel test-kernel: ", 34) == 0;
    }
    fclose(captured);
    CHECK_EQ(lines, expected_lines);
    CHECK_EQ(well_formed, expected_lines);
}

static struct setup_header *bz_hdr(void)
{
    return (struct setup_header *)(bz + SETUP_HDR_OFFSET);
}

/* A minimal protocol 2.15 bzImage: setup sectors, then a payload of recognizable bytes. */
static void make_bzimage(void)
{
    struct setup_header *h = bz_hdr();

    memset(bz, 0, sizeof(bz));
    h->setup_sects = BZ_SETUP_SECTS;
    h->syssize = BZ_PAYLOAD / 16;
    h->boot_flag = SETUP_BOOT_FLAG;
    bz[0x200] = 0xeb; /* jmp to the end of the header */
    bz[0x201] = 0x26c - 0x202;
    h->header = SETUP_HDR_MAGIC;
    h->version = 0x020f;
    h->loadflags = LOADFLAG_LOADED_HIGH;
    h->ramdisk_image = 0xdeadbeef; /* loader fields a file must not be able to pre-set */
    h->setup_data = 0x1234;
    h->initrd_addr_max = 0x7fffffff;
    h->kernel_alignment = 0x200000;
    h->relocatable_kernel = 1;
    h->xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
    h->cmdline_size = 2047;
    h->pref_address = BZ_PREF;
    h->init_size = BZ_INIT_SIZE;
    for (int i = 0; i < BZ_PAYLOAD; i++)
        bz[BZ_SETUP_SIZE + i] = (uint8_t)(i * 7 + 1);
}

static Elf64_Ehdr *elf_ehdr(void)
{
    return (Elf64_Ehdr *)elf;
}

static Elf64_Phdr *elf_phdr(int i)
{
    return (Elf64_Phdr *)(elf + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}

static uint8_t *put_note(uint8_t *p, const char *name, uint32_t type, const void *desc,
                         uint32_t descsz)
{
    Elf64_Nhdr nh = {.n_namesz = (uint32_t)strlen(name) + 1, .n_descsz = descsz, .n_type = type};

    memcpy(p, &nh, sizeof(nh));
    p += sizeof(nh);
    memcpy(p, name, nh.n_namesz);
    p += (nh.n_namesz + 3) & ~3U;
    memcpy(p, desc, descsz);
    return p + ((descsz + 3) & ~3U);
}

/* An ELF64 kernel: text at 1 MiB with a bss tail, data at 2 MiB, and a note segment holding a
 * GNU note then (if pvh_descsz) a Xen PHYS32_ENTRY note. Segment data ends the file. */
static void make_elf(uint32_t pvh_descsz)
{
    Elf64_Ehdr *eh = elf_ehdr();
    uint32_t gnu = 0x12345678;
    uint64_t entry = ELF_PVH_ENTRY;
    uint8_t *end;

    memset(elf, 0, sizeof(elf));
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_EXEC;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_entry = ELF_TEXT_GPA;
    eh->e_phoff = sizeof(Elf64_Ehdr);
    eh->e_ehsize = sizeof(Elf64_Ehdr);
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = 3;
    *elf_phdr(0) = (Elf64_Phdr){PT_LOAD,      PF_R | PF_X,   ELF_TEXT_OFF, ELF_TEXT_GPA,
                                ELF_TEXT_GPA, ELF_TEXT_SIZE, ELF_TEXT_MEM, 0x1000};
    *elf_phdr(2) = (Elf64_Phdr){PT_LOAD,      PF_R | PF_W,   ELF_DATA_OFF, ELF_DATA_GPA,
                                ELF_DATA_GPA, ELF_DATA_SIZE, ELF_DATA_MEM, 0x1000};
    end = put_note(elf + ELF_NOTE_OFF, "GNU", 3, &gnu, sizeof(gnu));
    if (pvh_descsz)
        end = put_note(end, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &entry, pvh_descsz);
    *elf_phdr(1) = (Elf64_Phdr){.p_type = PT_NOTE,
                                .p_offset = ELF_NOTE_OFF,
                                .p_filesz = (uint64_t)(end - (elf + ELF_NOTE_OFF)),
                                .p_align = 4};
    for (int i = 0; i < ELF_TEXT_SIZE; i++)
        elf[ELF_TEXT_OFF + i] = (uint8_t)(0x90 + i);
    for (int i = 0; i < ELF_DATA_SIZE; i++)
        elf[ELF_DATA_OFF + i] = (uint8_t)(0x40 + i);
}

static const struct load_params base_params = {
        .kernel_path = "test-kernel", .cmdline = "console=ttyS0", .rsdp_gpa = RSDP};

static const char *write_file(const char *name, const void *data, size_t len)
{
    static char paths[8][PATH_MAX];
    static int next;
    char *path = paths[next++ % 8];
    int fd;

    snprintf(path, PATH_MAX, "%s/%s", tmpdir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (fd < 0)
        return path;
    CHECK_EQ(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

static const char *sparse_file(const char *name, uint64_t size)
{
    static char path[PATH_MAX];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK_EQ(ftruncate(fd, (off_t)size), 0);
        close(fd);
    }
    return path;
}

static struct boot_params *zero_page(struct guest_mem *gm)
{
    return guest_ptr(gm, ZERO_PAGE_GPA, sizeof(struct boot_params));
}

static void check_e820(const struct boot_e820_entry *e, int nr, uint64_t ram)
{
    uint64_t low = ram < MMIO_HOLE_START ? ram : MMIO_HOLE_START;

    CHECK_EQ(nr, ram > MMIO_HOLE_START ? 4 : 3);
    CHECK_EQ(e[0].addr, 0);
    CHECK_EQ(e[0].size, EBDA_START);
    CHECK_EQ(e[0].type, E820_TYPE_RAM);
    CHECK_EQ(e[1].addr, EBDA_START);
    CHECK_EQ(e[1].size, HIMEM_START - EBDA_START);
    CHECK_EQ(e[1].type, E820_TYPE_RESERVED);
    CHECK_EQ(e[2].addr, HIMEM_START);
    CHECK_EQ(e[2].size, low - HIMEM_START);
    CHECK_EQ(e[2].type, E820_TYPE_RAM);
    if (nr == 4) {
        CHECK_EQ(e[3].addr, MMIO_HOLE_END);
        CHECK_EQ(e[3].size, ram - MMIO_HOLE_START);
        CHECK_EQ(e[3].type, E820_TYPE_RAM);
    }
}

static void test_bzimage(struct guest_mem *gm, uint64_t ram)
{
    struct boot_setup bs;
    struct boot_params *bp = zero_page(gm);
    const uint8_t *k = guest_ptr(gm, BZ_PREF, BZ_PAYLOAD);

    make_bzimage();
    CHECK_EQ(load_bzimage(gm, bz, sizeof(bz), &base_params, &bs), 0);
    CHECK_EQ(bs.proto, BOOT_LINUX64);
    CHECK_EQ(bs.entry, BZ_PREF + 0x200);
    CHECK_EQ(bs.boot_info, ZERO_PAGE_GPA);
    CHECK_EQ(bs.kernel_end, BZ_PREF + BZ_INIT_SIZE);
    CHECK(strcmp(bs.format, "bzImage") == 0);
    CHECK(k && memcmp(k, bz + BZ_SETUP_SIZE, BZ_PAYLOAD) == 0);
    CHECK_EQ(bp->hdr.header, SETUP_HDR_MAGIC);
    CHECK_EQ(bp->hdr.version, 0x020f);
    CHECK_EQ(bp->hdr.boot_flag, SETUP_BOOT_FLAG);
    CHECK_EQ(bp->hdr.setup_sects, BZ_SETUP_SECTS);
    CHECK_EQ(bp->hdr.type_of_loader, 0xff);
    CHECK_EQ(bp->hdr.loadflags, LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP);
    CHECK_EQ(bp->hdr.heap_end_ptr, 0xfe00);
    CHECK_EQ(bp->hdr.cmd_line_ptr, CMDLINE_GPA);
    CHECK_EQ(bp->ext_cmd_line_ptr, 0);
    CHECK_EQ(bp->hdr.vid_mode, 0xffff);
    CHECK_EQ(bp->hdr.code32_start, BZ_PREF);
    CHECK_EQ(bp->hdr.ramdisk_image, 0);
    CHECK_EQ(bp->hdr.ramdisk_size, 0);
    CHECK_EQ(bp->hdr.setup_data, 0);
    CHECK_EQ(bp->hdr.cmdline_size, 2047);
    CHECK_EQ(bp->hdr.init_size, BZ_INIT_SIZE);
    CHECK_EQ(bp->acpi_rsdp_addr, RSDP);
    CHECK_EQ(((const uint8_t *)bp)[0x1ef], 0); /* sentinel: the header copy stayed in place */
    check_e820(bp->e820_table, bp->e820_entries, ram);
}

/* pref_address beyond a small guest: relocatable kernels go to 1 MiB, others fail. */
static void test_bzimage_placement(void)
{
    struct guest_mem gm;
    struct boot_setup bs;

    CHECK_EQ(guest_mem_init(&gm, &arch_map.ram, 16 * MiB, 0), 0);
    make_bzimage();
    CHECK_EQ(load_bzimage(&gm, bz, sizeof(bz), &base_params, &bs), 0);
    CHECK_EQ(bs.entry, HIMEM_START + 0x200);
    CHECK_EQ(zero_page(&gm)->hdr.code32_start, HIMEM_START);
    /* The kernel realigns itself to 2 MiB before using init_size bytes. */
    CHECK_EQ(bs.kernel_end, 2 * MiB + BZ_INIT_SIZE);
    bz_hdr()->relocatable_kernel = 0;
    CHECK(load_bzimage(&gm, bz, sizeof(bz), &base_params, &bs) < 0);
    /* A garbage pref_address in a relocatable kernel is ignored. */
    make_bzimage();
    bz_hdr()->pref_address = ~0ULL;
    CHECK_EQ(load_bzimage(&gm, bz, sizeof(bz), &base_params, &bs), 0);
    CHECK_EQ(bs.entry, HIMEM_START + 0x200);
    guest_mem_free(&gm);
}

static void expect_bz_fail(struct guest_mem *gm, const char *what)
{
    struct boot_setup bs;
    int ret = load_bzimage(gm, bz, sizeof(bz), &base_params, &bs);

    if (ret >= 0)
        fprintf(stderr, "bzImage case '%s' loaded\n", what);
    CHECK(ret < 0);
}

static void test_bzimage_malformed(struct guest_mem *gm)
{
    struct boot_setup bs;
    int failures = 0;

    make_bzimage();
    capture_begin();
    for (uint64_t len = 0; len < sizeof(bz); len++)
        failures += load_bzimage(gm, bz, len, &base_params, &bs) < 0;
    capture_end(failures);
    CHECK_EQ(failures, sizeof(bz));
    CHECK_EQ(load_bzimage(gm, bz, sizeof(bz), &base_params, &bs), 0);

    bz_hdr()->setup_sects = 255;
    expect_bz_fail(gm, "setup_sects 255");
    make_bzimage();
    bz_hdr()->version = 0x020b;
    expect_bz_fail(gm, "protocol 2.11");
    make_bzimage();
    bz_hdr()->xloadflags = XLF_CAN_BE_LOADED_ABOVE_4G;
    expect_bz_fail(gm, "no XLF_KERNEL_64");
    make_bzimage();
    bz_hdr()->header = 0x53726447;
    expect_bz_fail(gm, "no HdrS");
    make_bzimage();
    bz[0x201] = 0x10;
    expect_bz_fail(gm, "short header");
    make_bzimage();
    bz_hdr()->init_size = 0xffffffff;
    expect_bz_fail(gm, "init_size 4 GiB");
    make_bzimage();
    bz_hdr()->syssize = BZ_PAYLOAD / 16 + 1;
    expect_bz_fail(gm, "syssize past the end");
    make_bzimage();
    bz_hdr()->relocatable_kernel = 0;
    bz_hdr()->pref_address = 0xfffffffffffff000ULL;
    expect_bz_fail(gm, "non-relocatable, pref_address 2^64-4096");
    make_bzimage();
    bz_hdr()->relocatable_kernel = 0;
    bz_hdr()->pref_address = 0x7000;
    expect_bz_fail(gm, "non-relocatable, pref_address below 1 MiB");
    /* A header jump past the known fields is clamped, not trusted. */
    make_bzimage();
    bz[0x201] = 0xff;
    CHECK_EQ(load_bzimage(gm, bz, sizeof(bz), &base_params, &bs), 0);
}

static void test_elf_64bit_entry(struct guest_mem *gm, uint64_t ram)
{
    struct boot_setup bs;
    struct boot_params *bp = zero_page(gm);
    uint8_t *text = guest_ptr(gm, ELF_TEXT_GPA, ELF_TEXT_MEM);
    uint8_t *data = guest_ptr(gm, ELF_DATA_GPA, ELF_DATA_MEM);
    int bss_clear = 1;

    make_elf(0);
    memset(text, 0xaa, ELF_TEXT_MEM); /* the bss tail must be cleared */
    CHECK_EQ(load_elf(gm, elf, sizeof(elf), &base_params, &bs), 0);
    CHECK_EQ(bs.proto, BOOT_LINUX64);
    CHECK_EQ(bs.entry, ELF_TEXT_GPA);
    CHECK_EQ(bs.boot_info, ZERO_PAGE_GPA);
    CHECK_EQ(bs.kernel_end, ELF_DATA_GPA + ELF_DATA_MEM);
    CHECK(strcmp(bs.format, "ELF (64-bit entry)") == 0);
    CHECK(memcmp(text, elf + ELF_TEXT_OFF, ELF_TEXT_SIZE) == 0);
    CHECK(memcmp(data, elf + ELF_DATA_OFF, ELF_DATA_SIZE) == 0);
    for (int i = ELF_TEXT_SIZE; i < ELF_TEXT_MEM; i++)
        bss_clear &= text[i] == 0;
    CHECK(bss_clear);
    CHECK_EQ(bp->hdr.boot_flag, 0xaa55);
    CHECK_EQ(bp->hdr.header, SETUP_HDR_MAGIC);
    CHECK_EQ(bp->hdr.version, 0x020f);
    CHECK_EQ(bp->hdr.type_of_loader, 0xff);
    CHECK_EQ(bp->hdr.cmd_line_ptr, CMDLINE_GPA);
    CHECK_EQ(bp->hdr.cmdline_size, CMDLINE_MAX - 1);
    CHECK_EQ(bp->hdr.kernel_alignment, 0x1000000);
    CHECK_EQ(bp->hdr.ramdisk_image, 0);
    CHECK_EQ(bp->acpi_rsdp_addr, RSDP);
    check_e820(bp->e820_table, bp->e820_entries, ram);
}

static void check_memmap(struct guest_mem *gm, const struct hvm_start_info *si, uint64_t ram)
{
    struct boot_e820_entry e[PVH_MEMMAP_MAX];
    const struct hvm_memmap_table_entry *m =
            guest_ptr(gm, PVH_MEMMAP_GPA, PVH_MEMMAP_MAX * sizeof(*m));
    int nr = (int)si->memmap_entries;

    CHECK(m != NULL && nr <= PVH_MEMMAP_MAX);
    if (!m || nr > PVH_MEMMAP_MAX)
        return;
    for (int i = 0; i < nr; i++) {
        e[i] = (struct boot_e820_entry){m[i].addr, m[i].size, m[i].type};
        CHECK_EQ(m[i].reserved, 0);
    }
    check_e820(e, nr, ram);
}

static void test_elf_pvh(struct guest_mem *gm, uint64_t ram, uint32_t descsz)
{
    struct boot_setup bs;
    const struct hvm_start_info *si = guest_ptr(gm, PVH_START_INFO_GPA, sizeof(*si));

    make_elf(descsz);
    CHECK_EQ(load_elf(gm, elf, sizeof(elf), &base_params, &bs), 0);
    CHECK_EQ(bs.proto, BOOT_PVH);
    CHECK_EQ(bs.entry, ELF_PVH_ENTRY);
    CHECK_EQ(bs.boot_info, PVH_START_INFO_GPA);
    CHECK_EQ(bs.kernel_end, ELF_DATA_GPA + ELF_DATA_MEM);
    CHECK(strcmp(bs.format, "ELF (PVH)") == 0);
    CHECK_EQ(si->magic, 0x336ec578);
    CHECK_EQ(si->version, 1);
    CHECK_EQ(si->flags, 0);
    CHECK_EQ(si->nr_modules, 0);
    CHECK_EQ(si->modlist_paddr, 0);
    CHECK_EQ(si->cmdline_paddr, CMDLINE_GPA);
    CHECK_EQ(si->rsdp_paddr, RSDP);
    CHECK_EQ(si->memmap_paddr, PVH_MEMMAP_GPA);
    CHECK_EQ(si->reserved, 0);
    check_memmap(gm, si, ram);
}

static void expect_elf_fail(struct guest_mem *gm, const char *what)
{
    struct boot_setup bs;
    int ret = load_elf(gm, elf, sizeof(elf), &base_params, &bs);

    if (ret >= 0)
        fprintf(stderr, "ELF case '%s' loaded\n", what);
    CHECK(ret < 0);
}

static void test_elf_malformed_headers(struct guest_mem *gm)
{
    struct boot_setup bs;
    int failures = 0;

    make_elf(8);
    capture_begin();
    for (uint64_t len = 0; len < sizeof(elf); len++)
        failures += load_elf(gm, elf, len, &base_params, &bs) < 0;
    capture_end(failures);
    CHECK_EQ(failures, sizeof(elf));
    CHECK_EQ(load_elf(gm, elf, sizeof(elf), &base_params, &bs), 0);

    elf_ehdr()->e_ident[EI_CLASS] = ELFCLASS32;
    expect_elf_fail(gm, "ELF32");
    make_elf(8);
    elf_ehdr()->e_ident[EI_DATA] = ELFDATA2MSB;
    expect_elf_fail(gm, "big endian");
    make_elf(8);
    elf_ehdr()->e_machine = EM_386;
    expect_elf_fail(gm, "EM_386");
    make_elf(8);
    elf_ehdr()->e_type = ET_DYN;
    expect_elf_fail(gm, "ET_DYN");
    make_elf(8);
    elf_ehdr()->e_phoff = sizeof(elf);
    expect_elf_fail(gm, "e_phoff at the end");
    make_elf(8);
    elf_ehdr()->e_phoff = ~0ULL - 8;
    expect_elf_fail(gm, "e_phoff 2^64-9");
    make_elf(8);
    elf_ehdr()->e_phnum = 0xffff;
    expect_elf_fail(gm, "e_phnum 65535");
    make_elf(8);
    elf_ehdr()->e_phnum = 0;
    expect_elf_fail(gm, "e_phnum 0");
    make_elf(8);
    elf_ehdr()->e_phnum = 30; /* fits the header limit, runs past the file */
    expect_elf_fail(gm, "e_phnum past the end");
    make_elf(8);
    elf_ehdr()->e_phentsize = 32;
    expect_elf_fail(gm, "e_phentsize 32");
    make_elf(0);
    elf_ehdr()->e_entry = 0x300000;
    expect_elf_fail(gm, "entry outside the segments");
}

static void test_elf_malformed_segments(struct guest_mem *gm)
{
    make_elf(8);
    elf_phdr(0)->p_offset = ~0ULL - 16;
    elf_phdr(0)->p_filesz = 32;
    expect_elf_fail(gm, "p_offset + p_filesz overflows");
    make_elf(8);
    elf_phdr(0)->p_filesz = ELF_TEXT_MEM + 1;
    expect_elf_fail(gm, "p_filesz > p_memsz (and past the end)");
    make_elf(8);
    elf_phdr(2)->p_memsz = ELF_DATA_SIZE - 1;
    expect_elf_fail(gm, "p_filesz > p_memsz");
    make_elf(8);
    elf_phdr(0)->p_paddr = ZERO_PAGE_GPA;
    expect_elf_fail(gm, "p_paddr below 1 MiB");
    make_elf(8);
    elf_phdr(2)->p_paddr = gm->ram_size + 4 * GiB;
    expect_elf_fail(gm, "p_paddr beyond RAM");
    make_elf(8);
    elf_phdr(2)->p_paddr = MMIO_HOLE_END; /* RAM above 4 GiB (5 GiB guest): not low RAM */
    expect_elf_fail(gm, "p_paddr above 4 GiB");
    make_elf(8);
    elf_phdr(2)->p_paddr = 0xfffffffffffff000ULL;
    elf_phdr(2)->p_memsz = 0x2000;
    expect_elf_fail(gm, "p_paddr + p_memsz wraps");
    make_elf(8);
    elf_phdr(2)->p_memsz = ~0ULL;
    expect_elf_fail(gm, "p_memsz 2^64-1");
    make_elf(8);
    elf_phdr(2)->p_paddr = ELF_TEXT_GPA + 0x1000;
    expect_elf_fail(gm, "overlapping segments");
    make_elf(8);
    elf_phdr(0)->p_type = PT_NULL;
    elf_phdr(2)->p_type = PT_NULL;
    expect_elf_fail(gm, "no PT_LOAD");
}

static void set_note_u32(size_t off, uint32_t v)
{
    memcpy(elf + ELF_NOTE_OFF + off, &v, sizeof(v));
}

static void test_elf_malformed_notes(struct guest_mem *gm)
{
    uint64_t big = 0x100000000ULL;
    struct boot_setup bs;

    make_elf(8);
    set_note_u32(0, 0xffffffff); /* first note's namesz */
    expect_elf_fail(gm, "namesz 2^32-1");
    make_elf(8);
    set_note_u32(4, 0xfffffffd); /* first note's descsz */
    expect_elf_fail(gm, "descsz 2^32-3");
    make_elf(8);
    set_note_u32(20 + 4, 0xffffffff); /* Xen note's descsz */
    expect_elf_fail(gm, "Xen descsz 2^32-1");
    make_elf(8);
    set_note_u32(20 + 4, 2);
    expect_elf_fail(gm, "Xen descsz 2");
    make_elf(8);
    memcpy(elf + ELF_NOTE_OFF + 20 + 16, &big, sizeof(big));
    expect_elf_fail(gm, "PVH entry above 4 GiB");
    make_elf(8);
    memcpy(elf + ELF_NOTE_OFF + 20 + 16, &(uint64_t){0x300000}, sizeof(uint64_t));
    expect_elf_fail(gm, "PVH entry outside the segments");
    make_elf(8);
    elf_phdr(1)->p_filesz = ~0ULL;
    expect_elf_fail(gm, "note segment size 2^64-1");
    make_elf(8);
    elf_phdr(1)->p_offset = sizeof(elf) - 4;
    expect_elf_fail(gm, "note segment past the end");
    /* Padding after the last note is harmless. */
    make_elf(8);
    elf_phdr(1)->p_filesz += 8;
    CHECK_EQ(load_elf(gm, elf, sizeof(elf), &base_params, &bs), 0);
    CHECK_EQ(bs.proto, BOOT_PVH);
}

static int load_files(struct guest_mem *gm, const char *kernel, const char *initrd,
                      const char *cmdline, struct boot_setup *bs)
{
    struct load_params p = base_params;

    p.kernel_path = kernel;
    p.initrd_path = initrd;
    p.cmdline = cmdline;
    return load_kernel(gm, &p, bs);
}

static void fill_initrd(uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 13 + 5);
}

/* bzImage from a file with an initrd: placement below initrd_addr_max, above the kernel. */
static void test_bzimage_initrd(struct guest_mem *gm, uint32_t initrd_addr_max)
{
    static uint8_t rd[10000];
    struct boot_params *bp = zero_page(gm);
    struct boot_setup bs;
    const char *kpath, *rpath, *cmdline = "console=ttyS0 panic=-1";
    uint64_t addr, limit = (uint64_t)initrd_addr_max + 1;
    const uint8_t *g;

    make_bzimage();
    bz_hdr()->initrd_addr_max = initrd_addr_max;
    fill_initrd(rd, sizeof(rd));
    kpath = write_file("bzImage", bz, sizeof(bz));
    rpath = write_file("initrd", rd, sizeof(rd));
    CHECK_EQ(load_files(gm, kpath, rpath, cmdline, &bs), 0);
    CHECK_EQ(bs.proto, BOOT_LINUX64);
    CHECK_EQ(bs.entry, BZ_PREF + 0x200);
    addr = bp->hdr.ramdisk_image | (uint64_t)bp->ext_ramdisk_image << 32;
    CHECK_EQ(bp->hdr.ramdisk_size, sizeof(rd));
    CHECK_EQ(bp->ext_ramdisk_size, 0);
    CHECK_EQ(addr % 4096, 0);
    CHECK(addr >= bs.kernel_end);
    CHECK(addr + sizeof(rd) <= limit);
    CHECK(addr + sizeof(rd) <= guest_mem_low_end(gm));
    /* As high as possible: less than a page left above it. */
    if (limit > guest_mem_low_end(gm))
        limit = guest_mem_low_end(gm);
    CHECK(limit - (addr + sizeof(rd)) < 4096);
    g = guest_ptr(gm, addr, sizeof(rd));
    CHECK(g && memcmp(g, rd, sizeof(rd)) == 0);
    g = guest_ptr(gm, CMDLINE_GPA, strlen(cmdline) + 1);
    CHECK(g && memcmp(g, cmdline, strlen(cmdline) + 1) == 0);
}

static void test_pvh_initrd(struct guest_mem *gm, uint64_t ram)
{
    static uint8_t rd[8192 + 17];
    const struct hvm_start_info *si = guest_ptr(gm, PVH_START_INFO_GPA, sizeof(*si));
    const struct hvm_modlist_entry *mod;
    struct boot_setup bs;
    const char *kpath, *rpath;
    const uint8_t *g;

    make_elf(4);
    fill_initrd(rd, sizeof(rd));
    kpath = write_file("vmlinux-pvh", elf, sizeof(elf));
    rpath = write_file("initrd-pvh", rd, sizeof(rd));
    CHECK_EQ(load_files(gm, kpath, rpath, "quiet", &bs), 0);
    CHECK_EQ(bs.proto, BOOT_PVH);
    CHECK_EQ(bs.entry, ELF_PVH_ENTRY);
    CHECK_EQ(si->nr_modules, 1);
    CHECK_EQ(si->modlist_paddr, PVH_MODLIST_GPA);
    check_memmap(gm, si, ram);
    mod = guest_ptr(gm, PVH_MODLIST_GPA, sizeof(*mod));
    CHECK(mod != NULL);
    if (!mod)
        return;
    CHECK_EQ(mod->size, sizeof(rd));
    CHECK_EQ(mod->cmdline_paddr, 0);
    CHECK_EQ(mod->paddr % 4096, 0);
    CHECK(mod->paddr >= bs.kernel_end);
    CHECK(mod->paddr + sizeof(rd) <= guest_mem_low_end(gm));
    CHECK(guest_mem_low_end(gm) - (mod->paddr + sizeof(rd)) < 4096);
    g = guest_ptr(gm, mod->paddr, sizeof(rd));
    CHECK(g && memcmp(g, rd, sizeof(rd)) == 0);
    g = guest_ptr(gm, CMDLINE_GPA, 6);
    CHECK(g && memcmp(g, "quiet", 6) == 0);
}

/* ELF without a PVH note: the initrd goes in the zero page, below our initrd_addr_max. */
static void test_elf64_initrd(struct guest_mem *gm)
{
    static uint8_t rd[3 * 4096];
    struct boot_params *bp = zero_page(gm);
    struct boot_setup bs;
    uint64_t limit = guest_mem_low_end(gm) < 0x80000000ULL ? guest_mem_low_end(gm) : 0x80000000ULL;
    const uint8_t *g;

    make_elf(0);
    fill_initrd(rd, sizeof(rd));
    CHECK_EQ(load_files(gm, write_file("tiny.elf", elf, sizeof(elf)),
                        write_file("initrd-elf64", rd, sizeof(rd)), "x=1", &bs),
             0);
    CHECK_EQ(bs.proto, BOOT_LINUX64);
    CHECK_EQ(bp->hdr.ramdisk_image, limit - sizeof(rd));
    CHECK_EQ(bp->hdr.ramdisk_size, sizeof(rd));
    g = guest_ptr(gm, bp->hdr.ramdisk_image, sizeof(rd));
    CHECK(g && memcmp(g, rd, sizeof(rd)) == 0);
}

static void test_load_kernel_errors(struct guest_mem *gm)
{
    static char cmdline[CMDLINE_MAX + 1];
    struct boot_setup bs;
    const char *bzpath, *elfpath, *rdpath;

    make_bzimage();
    bz_hdr()->cmdline_size = 255;
    bzpath = write_file("bzImage-255", bz, sizeof(bz));
    memset(cmdline, 'x', sizeof(cmdline));
    cmdline[255] = 0;
    CHECK_EQ(load_files(gm, bzpath, NULL, cmdline, &bs), 0);
    cmdline[255] = 'x';
    cmdline[256] = 0;
    CHECK_EQ(load_files(gm, bzpath, NULL, cmdline, &bs), -E2BIG);
    make_elf(8);
    elfpath = write_file("vmlinux", elf, sizeof(elf));
    memset(cmdline, 'y', sizeof(cmdline));
    cmdline[CMDLINE_MAX - 1] = 0;
    CHECK_EQ(load_files(gm, elfpath, NULL, cmdline, &bs), 0);
    cmdline[CMDLINE_MAX - 1] = 'y';
    cmdline[CMDLINE_MAX] = 0;
    CHECK_EQ(load_files(gm, elfpath, NULL, cmdline, &bs), -E2BIG);
    CHECK_EQ(load_files(gm, elfpath, NULL, NULL, &bs), 0);

    rdpath = sparse_file("initrd-huge", gm->ram_size + 4096);
    CHECK(load_files(gm, bzpath, rdpath, "", &bs) < 0);
    CHECK(load_files(gm, elfpath, rdpath, "", &bs) < 0);
    /* initrd_addr_max below the kernel's end: nowhere to put it. */
    make_bzimage();
    bz_hdr()->initrd_addr_max = BZ_PREF + 0xffff;
    bzpath = write_file("bzImage-lowinitrd", bz, sizeof(bz));
    rdpath = write_file("initrd-small", "abc", 3);
    CHECK(load_files(gm, bzpath, rdpath, "", &bs) < 0);

    CHECK_EQ(load_files(gm, "/nonexistent/ember/bzImage", NULL, "", &bs), -ENOENT);
    CHECK_EQ(load_files(gm, tmpdir, NULL, "", &bs), -EINVAL);
    CHECK(load_files(gm, write_file("empty", "", 0), NULL, "", &bs) < 0);
    CHECK(load_files(gm, write_file("garbage", "hello, world\n", 13), NULL, "", &bs) < 0);
    CHECK(load_files(gm, write_file("gzip", "\x1f\x8b\x08\x00", 4), NULL, "", &bs) < 0);
    CHECK(load_files(gm,
                     write_file("elf-magic-only",
                                "\x7f"
                                "ELF",
                                4),
                     NULL, "", &bs) < 0);
    CHECK(load_files(gm, elfpath, "/nonexistent/initrd", "", &bs) < 0);
    CHECK(load_files(gm, elfpath, write_file("empty-initrd", "", 0), "", &bs) < 0);
}

/* Random byte flips in valid images: must never crash (ASan/UBSan) whatever they return. */
static void test_mutations(struct guest_mem *gm)
{
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    struct boot_setup bs;
    int loaded = 0, n = 3000;

    capture_begin();
    for (int i = 0; i < n; i++) {
        int elf_case = i & 1, flips = 1 + (int)(seed % 4);
        uint8_t *img = elf_case ? elf : bz;
        size_t len = elf_case ? sizeof(elf) : sizeof(bz);
        /* Flip bytes in the headers (ELF: header, phdrs, notes; bzImage: setup header). */
        size_t span = elf_case ? ELF_TEXT_OFF : 0x80, base = elf_case ? 0 : SETUP_HDR_OFFSET;

        if (elf_case)
            make_elf((i & 2) ? 8 : 0);
        else
            make_bzimage();
        for (int f = 0; f < flips; f++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            img[base + (seed >> 33) % span] ^= (uint8_t)(1u << ((seed >> 20) & 7));
        }
        loaded += (elf_case ? load_elf : load_bzimage)(gm, img, len, &base_params, &bs) == 0;
    }
    capture_end(n - loaded);
    CHECK(loaded > 0);
}

static const char *guest_image_dir(void)
{
    static char dir[PATH_MAX];
    const char *env = getenv("EMBER_GUEST_IMAGES");
    const char *src = __FILE__, *cut = strstr(src, "tests/unit/test_loader.c");
    const char *candidates[] = {"guest-images/out", "../guest-images/out",
                                "../../guest-images/out"};
    struct stat st;

    if (env)
        return env;
    if (cut) {
        snprintf(dir, sizeof(dir), "%.*sguest-images/out", (int)(cut - src), src);
        if (stat(dir, &st) == 0)
            return dir;
    }
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
        if (stat(candidates[i], &st) == 0)
            return candidates[i];
    return NULL;
}

static void test_guest_images(void)
{
    const char *dir = guest_image_dir();
    char bzpath[PATH_MAX + 16], vmpath[PATH_MAX + 16];
    struct guest_mem gm;
    struct boot_setup bs;
    int have_bz, have_vm;

    snprintf(bzpath, sizeof(bzpath), "%s/bzImage", dir ? dir : ".");
    snprintf(vmpath, sizeof(vmpath), "%s/vmlinux", dir ? dir : ".");
    have_bz = dir && access(bzpath, R_OK) == 0;
    have_vm = dir && access(vmpath, R_OK) == 0;
    if (!have_bz && !have_vm) {
        printf("skipped: no guest image\n");
        return;
    }
    CHECK_EQ(guest_mem_init(&gm, &arch_map.ram, 512 * MiB, 0), 0);
    if (have_bz) {
        CHECK_EQ(load_files(&gm, bzpath, NULL, "console=ttyS0", &bs), 0);
        CHECK_EQ(bs.proto, BOOT_LINUX64);
        CHECK_EQ(bs.entry, zero_page(&gm)->hdr.code32_start + 0x200ULL);
        CHECK(bs.kernel_end > bs.entry && bs.kernel_end <= guest_mem_low_end(&gm));
    } else {
        printf("skipped: no guest image (bzImage)\n");
    }
    if (have_vm) {
        CHECK_EQ(load_files(&gm, vmpath, NULL, "console=ttyS0", &bs), 0);
        CHECK_EQ(bs.proto, BOOT_PVH);
        CHECK(bs.entry >= HIMEM_START && bs.entry < bs.kernel_end);
        CHECK(bs.entry < MMIO_HOLE_START);
    } else {
        printf("skipped: no guest image (vmlinux)\n");
    }
    guest_mem_free(&gm);
}

/* The temporary directory holds only regular files written by write_file/sparse_file. */
static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    rmdir(tmpdir);
}

static void run_in(uint64_t ram)
{
    struct guest_mem gm;

    CHECK_EQ(guest_mem_init(&gm, &arch_map.ram, ram, 0), 0);
    if (!gm.mapping)
        return;
    test_bzimage(&gm, ram);
    test_elf_64bit_entry(&gm, ram);
    test_elf_pvh(&gm, ram, 4);
    test_elf_pvh(&gm, ram, 8);
    test_bzimage_initrd(&gm, 0x7fffffff);
    test_bzimage_initrd(&gm, 0x2ffffff);
    test_pvh_initrd(&gm, ram);
    test_elf64_initrd(&gm);
    test_bzimage_malformed(&gm);
    test_elf_malformed_headers(&gm);
    test_elf_malformed_segments(&gm);
    test_elf_malformed_notes(&gm);
    test_load_kernel_errors(&gm);
    guest_mem_free(&gm);
}

int main(void)
{
    struct guest_mem gm;

    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    run_in(64 * MiB);
    run_in(5 * GiB);
    test_bzimage_placement();
    CHECK_EQ(guest_mem_init(&gm, &arch_map.ram, 64 * MiB, 0), 0);
    test_mutations(&gm);
    guest_mem_free(&gm);
    test_guest_images();
    remove_tmpdir();
    return check_done("loader");
}
