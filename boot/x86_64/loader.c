/* load_kernel(): read the kernel file, dispatch by format, then the command line and initrd. */
#include "bootparams.h"
#include "cmdline.h"
#include "kernel_file.h"
#include "layout.h"
#include "loader.h"
#include "log.h"
#include "pvh.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#define PAGE_SIZE 4096ULL

static bool is_bzimage(const uint8_t *d, uint64_t size)
{
    uint32_t magic;

    if (size < 0x206)
        return false;
    memcpy(&magic, d + 0x202, sizeof(magic));
    return magic == SETUP_HDR_MAGIC;
}

static int load_image(struct guest_mem *gm, const struct kernel_file *m,
                      const struct load_params *p, struct boot_setup *out)
{
    const char *path = p->kernel_path;

    if (m->size >= 4 && memcmp(m->data,
                               "\x7f"
                               "ELF",
                               4) == 0)
        return load_elf(gm, m->data, m->size, p, out);
    if (is_bzimage(m->data, m->size))
        return load_bzimage(gm, m->data, m->size, p, out);
    if (m->size >= 2 && m->data[0] == 0x1f && (m->data[1] == 0x8b || m->data[1] == 0x9e)) {
        log_err("kernel %s: gzip-compressed file; decompress it or use the bzImage", path);
        return -ENOEXEC;
    }
    log_err("kernel %s: not a bzImage or ELF vmlinux (no HdrS signature, no ELF magic%s)", path,
            m->size < 0x206 ? "; file too small" : "");
    return -ENOEXEC;
}

static int write_cmdline(const struct guest_mem *gm, const struct load_params *p,
                         const struct boot_setup *bs)
{
    const char *cmdline = p->cmdline ? p->cmdline : "";
    uint64_t len = strlen(cmdline), max = CMDLINE_MAX - 1, kmax, initrd_end;
    int ret;

    if (bs->proto == BOOT_LINUX64) {
        ret = bootparams_limits(gm, &kmax, &initrd_end);
        if (ret)
            return ret;
        if (kmax < max)
            max = kmax;
    }
    if (len > max) {
        log_err("kernel %s: command line is %llu bytes, longer than the %llu the kernel accepts; "
                "shorten it",
                p->kernel_path, (unsigned long long)len, (unsigned long long)max);
        return -E2BIG;
    }
    ret = guest_write(gm, CMDLINE_GPA, cmdline, len + 1);
    if (ret)
        log_err("kernel %s: cannot write the command line at 0x%llx", p->kernel_path,
                (unsigned long long)CMDLINE_GPA);
    return ret;
}

/* Highest page-aligned address for size bytes in [floor, limit); -EFBIG if none (the guest's
 * RAM is too small for it: the user's input, not the host, is at fault). */
static int place_initrd(const struct guest_mem *gm, const struct boot_setup *bs, uint64_t size,
                        const char *path, uint64_t *gpa)
{
    uint64_t limit = guest_mem_low_end(gm), floor = bs->kernel_end, cmax, iend;
    bool kernel_limit = false;
    int ret;

    if (bs->proto == BOOT_LINUX64) {
        ret = bootparams_limits(gm, &cmax, &iend);
        if (ret)
            return ret;
        if (iend < limit) {
            limit = iend;
            kernel_limit = true;
        }
    }
    if (floor < HIMEM_START)
        floor = HIMEM_START;
    floor = (floor + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    if (size > limit || ((limit - size) & ~(PAGE_SIZE - 1)) < floor) {
        log_err("initrd %s: %llu bytes does not fit: %llu bytes free between the kernel end "
                "(0x%llx) and 0x%llx (%s, guest RAM %llu MiB); %s",
                path, (unsigned long long)size,
                (unsigned long long)(limit > floor ? limit - floor : 0), (unsigned long long)floor,
                (unsigned long long)limit,
                kernel_limit ? "the kernel's initrd_addr_max" : "end of low RAM",
                (unsigned long long)(gm->ram_size >> 20),
                kernel_limit ? "use a smaller initrd"
                             : "give the guest more memory with --memory or use a smaller initrd");
        return -EFBIG;
    }
    *gpa = (limit - size) & ~(PAGE_SIZE - 1);
    return 0;
}

static int load_initrd(const struct guest_mem *gm, const char *path, const struct boot_setup *bs)
{
    uint64_t size, gpa;
    int fd = kernel_file_open(path, "initrd", &size), ret;

    if (fd < 0)
        return fd;
    ret = place_initrd(gm, bs, size, path, &gpa);
    if (ret)
        goto out;
    ret = kernel_file_to_guest(gm, fd, gpa, size, "initrd", path);
    if (ret)
        goto out;
    if (bs->proto == BOOT_LINUX64)
        ret = bootparams_set_ramdisk(gm, gpa, size);
    else
        ret = pvh_set_initrd(gm, gpa, size);
    if (ret)
        log_err("initrd %s: cannot record it in the boot information: %s", path, strerror(-ret));
    else
        log_debug("initrd %s: %llu bytes at 0x%llx", path, (unsigned long long)size,
                  (unsigned long long)gpa);
out:
    close(fd);
    return ret;
}

int load_kernel(struct guest_mem *gm, const struct load_params *p, struct boot_setup *out)
{
    struct kernel_file km = {0};
    struct boot_setup bs;
    int ret;

    if (!p->kernel_path) {
        log_err("no kernel given; pass one with --kernel");
        return -EINVAL;
    }
    ret = kernel_file_read(p->kernel_path, "kernel", &km);
    if (ret)
        return ret;
    ret = load_image(gm, &km, p, &bs);
    kernel_file_free(&km);
    if (ret)
        return ret;
    ret = write_cmdline(gm, p, &bs);
    if (!ret && p->initrd_path)
        ret = load_initrd(gm, p->initrd_path, &bs);
    if (!ret)
        *out = bs;
    return ret;
}
