/* Kernel and initrd files: open with a type check, read into memory or straight into the guest. */
#include "kernel_file.h"
#include "hostfile.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int kernel_file_open(const char *path, const char *what, uint64_t *size)
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

int kernel_file_read(const char *path, const char *what, struct kernel_file *m)
{
    uint64_t done = 0;
    uint8_t *p;
    int fd = kernel_file_open(path, what, &m->size), ret = 0;

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

void kernel_file_free(struct kernel_file *m)
{
    if (m->data)
        munmap((void *)m->data, (size_t)m->size);
    m->data = NULL;
}

int kernel_file_to_guest(const struct guest_mem *gm, int fd, uint64_t gpa, uint64_t size,
                         const char *what, const char *path)
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
            log_err("%s %s: read failed: %s", what, path, strerror(errno));
            return -errno;
        }
        if (n == 0) {
            log_err("%s %s: file shrank while reading (%llu of %llu bytes)", what, path,
                    (unsigned long long)done, (unsigned long long)size);
            return -EIO;
        }
        done += (uint64_t)n;
    }
    return 0;
}
