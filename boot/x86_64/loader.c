/* load_kernel(): read the kernel file, dispatch by format, then the command line and initrd. */
#include "bootparams.h"
#include "hostfile.h"
#include "layout.h"
#include "loader.h"
#include "log.h"
#include "pvh.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE_SIZE 4096ULL

struct file_map {
    const uint8_t *data;
    uint64_t size;
};

/* Open path read-only and check it is a non-empty regular file; returns the fd or -errno. */
static int open_regular(const char *path, const char *what, uint64_t *size)
{
    struct host_file f;
    const char *why;
    int ret = host_file_open(path, O_RDONLY, HOSTFILE_REGULAR, &f, &why);

    if (ret) {
        log_err("%s %s: %s%s", what, path, why, ret == -ENOENT ? "; check the path" : "");
        return ret;
    }
    if (f.size == 0) {
        log_err("%s %s: file is empty", what, path);
        close(f.fd);
        return -ENOEXEC;
    }
    *size = f.size;
    return f.fd;
}

/* Kernel files are read, not mapped: a file truncated under us must give an error, never
 * SIGBUS. The buffer is an anonymous mapping so its memory goes back to the host at once. */
#define KERNEL_FILE_MAX (512ULL << 20)

static int map_file(const char *path, const char *what, struct file_map *m)
{
    uint64_t done = 0;
    uint8_t *p;
    int fd = open_regular(path, what, &m->size), ret = 0;

    if (fd < 0)
        return fd;
    if (m->size > KERNEL_FILE_MAX) {
        log_err("%s %s: %llu MiB is larger than the %llu MiB ember accepts", what, path,
                (unsigned long long)(m->size >> 20), KERNEL_FILE_MAX >> 20);
        close(fd);
        return -EFBIG;
    }
    p = mmap(NULL, (size_t)m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        ret = -errno;
        log_err("%s %s: cannot allocate %llu bytes: %s", what, path, (unsigned long long)m->size,
                strerror(-ret));
        close(fd);
        return ret;
    }
    while (done < m->size) {
        ssize_t n = pread(fd, p + done, (size_t)(m->size - done), (off_t)done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ret = n < 0 ? -errno : -EIO;
            log_err("%s %s: read failed after %llu of %llu bytes: %s", what, path,
                    (unsigned long long)done, (unsigned long long)m->size,
                    n < 0 ? strerror(-ret) : "the file shrank while being read");
            munmap(p, (size_t)m->size);
            close(fd);
            return ret;
        }
        done += (uint64_t)n;
    }
    m->data = p;
    close(fd);
    return 0;
}

static void unmap_file(struct file_map *m)
{
    if (m->data)
        munmap((void *)m->data, (size_t)m->size);
    m->data = NULL;
}

static bool is_bzimage(const uint8_t *d, uint64_t size)
{
    uint32_t magic;

    if (size < 0x206)
        return false;
    memcpy(&magic, d + 0x202, sizeof(magic));
    return magic == SETUP_HDR_MAGIC;
}

static int load_image(struct guest_mem *gm, const struct file_map *m, const struct load_params *p,
                      struct boot_setup *out)
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

/* Read exactly size bytes of fd into guest memory at gpa. */
static int read_to_guest(const struct guest_mem *gm, int fd, uint64_t gpa, uint64_t size,
                         const char *path)
{
    uint8_t *dst = guest_ptr(gm, gpa, size);
    uint64_t done = 0;

    if (!dst)
        return -EFAULT;
    while (done < size) {
        ssize_t n = pread(fd, dst + done, size - done, (off_t)done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            log_err("initrd %s: read failed: %s", path, strerror(errno));
            return -errno;
        }
        if (n == 0) {
            log_err("initrd %s: file shrank while reading (%llu of %llu bytes)", path,
                    (unsigned long long)done, (unsigned long long)size);
            return -EIO;
        }
        done += (uint64_t)n;
    }
    return 0;
}

static int load_initrd(const struct guest_mem *gm, const char *path, const struct boot_setup *bs)
{
    uint64_t size, gpa;
    int fd = open_regular(path, "initrd", &size), ret;

    if (fd < 0)
        return fd;
    ret = place_initrd(gm, bs, size, path, &gpa);
    if (ret)
        goto out;
    ret = read_to_guest(gm, fd, gpa, size, path);
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
    struct file_map km = {0};
    struct boot_setup bs;
    int ret;

    if (!p->kernel_path) {
        log_err("no kernel given; pass one with --kernel");
        return -EINVAL;
    }
    ret = map_file(p->kernel_path, "kernel", &km);
    if (ret)
        return ret;
    ret = load_image(gm, &km, p, &bs);
    unmap_file(&km);
    if (ret)
        return ret;
    ret = write_cmdline(gm, p, &bs);
    if (!ret && p->initrd_path)
        ret = load_initrd(gm, p->initrd_path, &bs);
    if (!ret)
        *out = bs;
    return ret;
}
