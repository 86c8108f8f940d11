/* bzImage loader: Linux x86 boot protocol 2.12+, entered at the 64-bit entry point. */
#include "bootparams.h"
#include "layout.h"
#include "loader.h"
#include "log.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define BZ_MIN_VERSION 0x020c /* 2.12: xloadflags and XLF_KERNEL_64 */
#define BZ_HDR_END     (SETUP_HDR_OFFSET + sizeof(struct setup_header))
#define BZ_MIN_HDR_END 0x268 /* the header must reach handover_offset (2.11+) */
#define SECTOR_SIZE    512

/* What the file says, validated against its size. */
struct bz_kernel {
    struct setup_header hdr; /* the full header struct, as found in the file */
    size_t hdr_len;          /* bytes of it the kernel declares (jump at 0x200) */
    uint64_t setup_size;     /* real-mode part, the protected-mode kernel follows */
    uint64_t payload_size;   /* protected-mode kernel bytes in the file */
};

static const char *kernel_name(const struct load_params *p)
{
    return p && p->kernel_path ? p->kernel_path : "(image)";
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

static int bz_check_header(const struct bz_kernel *k, const char *path)
{
    const struct setup_header *h = &k->hdr;

    if (h->header != SETUP_HDR_MAGIC) {
        log_err("kernel %s: not a bzImage (no HdrS signature at 0x202)", path);
        return -ENOEXEC;
    }
    if (h->version < BZ_MIN_VERSION || !(h->xloadflags & XLF_KERNEL_64)) {
        log_err("kernel %s: kernel too old or not 64-bit (boot protocol %u.%02u, xloadflags "
                "0x%x; need 2.12+ with XLF_KERNEL_64); use an x86_64 kernel 3.8 or newer",
                path, h->version >> 8, h->version & 0xff, h->xloadflags);
        return -ENOEXEC;
    }
    if (SETUP_HDR_OFFSET + k->hdr_len < BZ_MIN_HDR_END) {
        log_err("kernel %s: setup header ends at 0x%zx, a protocol 2.12 header needs 0x%x; "
                "the file is corrupt",
                path, SETUP_HDR_OFFSET + k->hdr_len, BZ_MIN_HDR_END);
        return -ENOEXEC;
    }
    return 0;
}

static int bz_parse(const uint8_t *image, uint64_t size, const char *path, struct bz_kernel *k)
{
    unsigned int sects;
    int ret;

    if (size < BZ_HDR_END) {
        log_err("kernel %s: truncated: %llu bytes, a bzImage header needs %zu", path,
                (unsigned long long)size, (size_t)BZ_HDR_END);
        return -ENOEXEC;
    }
    memcpy(&k->hdr, image + SETUP_HDR_OFFSET, sizeof(k->hdr));
    /* Header length: 0x202 + the short jump's displacement at 0x201, at most what we know. */
    k->hdr_len = 0x202 + (size_t)image[0x201] - SETUP_HDR_OFFSET;
    if (k->hdr_len > sizeof(k->hdr))
        k->hdr_len = sizeof(k->hdr);
    ret = bz_check_header(k, path);
    if (ret)
        return ret;
    sects = k->hdr.setup_sects ? k->hdr.setup_sects : 4;
    k->setup_size = (uint64_t)(sects + 1) * SECTOR_SIZE;
    if (size <= k->setup_size + SETUP_ENTRY64_OFFSET) {
        log_err("kernel %s: truncated: %llu bytes, but the setup code alone is %llu bytes "
                "(setup_sects %u)",
                path, (unsigned long long)size, (unsigned long long)k->setup_size, sects);
        return -ENOEXEC;
    }
    k->payload_size = size - k->setup_size;
    if ((uint64_t)k->hdr.syssize * 16 > k->payload_size) {
        log_err("kernel %s: truncated: header says %llu bytes of kernel, the file has %llu", path,
                (unsigned long long)k->hdr.syssize * 16, (unsigned long long)k->payload_size);
        return -ENOEXEC;
    }
    return 0;
}

/* End of the memory the kernel uses from load address `load` until it reads the e820 map:
 * init_size bytes from its runtime start (boot.rst). A relocatable kernel aligns its load
 * address up to kernel_alignment but never runs below its LOAD_PHYSICAL_ADDR, which is what
 * pref_address holds; a pref_address outside low RAM is garbage and ignored. */
static uint64_t bz_extent_end(const struct bz_kernel *k, uint64_t load, uint64_t low_end)
{
    const struct setup_header *h = &k->hdr;
    uint64_t align = h->kernel_alignment, runtime = load, end;

    if (h->relocatable_kernel && align && !(align & (align - 1)))
        runtime = align_up(load, align);
    if (h->pref_address >= HIMEM_START && h->pref_address < low_end && runtime < h->pref_address)
        runtime = h->pref_address;
    end = runtime + h->init_size;
    return end > load + k->payload_size ? end : load + k->payload_size;
}

static int bz_no_room(const struct bz_kernel *k, uint64_t low_end, const char *path)
{
    uint64_t pref = k->hdr.pref_address, need;

    if (!k->hdr.relocatable_kernel && (pref < HIMEM_START || pref >= low_end)) {
        log_err("kernel %s: not relocatable and its load address 0x%llx is outside guest low "
                "RAM [0x%llx, 0x%llx)%s",
                path, (unsigned long long)pref, (unsigned long long)HIMEM_START,
                (unsigned long long)low_end,
                pref >= low_end && pref < MMIO_HOLE_START ? "; give the guest more memory with "
                                                            "--memory"
                                                          : "");
        return -ENOEXEC;
    }
    need = bz_extent_end(k, k->hdr.relocatable_kernel ? HIMEM_START : pref, low_end);
    log_err("kernel %s: does not fit in guest RAM: it needs memory up to 0x%llx (init_size "
            "0x%x), guest low RAM ends at 0x%llx; give the guest more memory with --memory",
            path, (unsigned long long)need, k->hdr.init_size, (unsigned long long)low_end);
    return -EFBIG;
}

/* Pick the load address: pref_address if it fits in low RAM, else 1 MiB if relocatable. */
static int bz_place(const struct guest_mem *gm, const struct bz_kernel *k, const char *path,
                    uint64_t *load, uint64_t *end)
{
    uint64_t low_end = guest_mem_low_end(gm), pref = k->hdr.pref_address;

    /* Every value here is below 2^47 once pref is checked: no sum can overflow. */
    if (pref >= HIMEM_START && pref < low_end && bz_extent_end(k, pref, low_end) <= low_end)
        *load = pref;
    else if (k->hdr.relocatable_kernel && bz_extent_end(k, HIMEM_START, low_end) <= low_end)
        *load = HIMEM_START;
    else
        return bz_no_room(k, low_end, path);
    *end = bz_extent_end(k, *load, low_end);
    return 0;
}

static int bz_write_zero_page(const struct guest_mem *gm, const uint8_t *image,
                              const struct bz_kernel *k, uint64_t load, uint64_t rsdp_gpa)
{
    struct boot_params bp;

    memset(&bp, 0, sizeof(bp));
    memcpy(&bp.hdr, image + SETUP_HDR_OFFSET, k->hdr_len);
    bp.hdr.code32_start = (uint32_t)load;
    return bootparams_write(gm, &bp, rsdp_gpa);
}

int load_bzimage(struct guest_mem *gm, const uint8_t *image, uint64_t size,
                 const struct load_params *p, struct boot_setup *out)
{
    const char *path = kernel_name(p);
    struct bz_kernel k;
    uint64_t load, end;
    int ret;

    ret = bz_parse(image, size, path, &k);
    if (ret)
        return ret;
    ret = bz_place(gm, &k, path, &load, &end);
    if (ret)
        return ret;
    ret = guest_write(gm, load, image + k.setup_size, k.payload_size);
    if (ret) {
        log_err("kernel %s: cannot copy %llu bytes to guest 0x%llx", path,
                (unsigned long long)k.payload_size, (unsigned long long)load);
        return ret;
    }
    ret = bz_write_zero_page(gm, image, &k, load, p ? p->rsdp_gpa : 0);
    if (ret) {
        log_err("kernel %s: cannot write the zero page at 0x%llx: %s", path,
                (unsigned long long)ZERO_PAGE_GPA, strerror(-ret));
        return ret;
    }
    *out = (struct boot_setup){
            .proto = BOOT_LINUX64,
            .entry = load + SETUP_ENTRY64_OFFSET,
            .boot_info = ZERO_PAGE_GPA,
            .kernel_end = end,
            .format = "bzImage",
    };
    log_debug("kernel %s: bzImage protocol %u.%02u loaded at 0x%llx, end 0x%llx", path,
              k.hdr.version >> 8, k.hdr.version & 0xff, (unsigned long long)load,
              (unsigned long long)end);
    return 0;
}
