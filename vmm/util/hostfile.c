/* Opening host files a user or a control client names: non-blocking open, type check, size. */
#include "hostfile.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *type_refused(mode_t mode, unsigned types)
{
    if (S_ISDIR(mode))
        return "is a directory";
    if (S_ISFIFO(mode))
        return "is a FIFO (named pipe)";
    if (S_ISSOCK(mode))
        return "is a socket";
    if (S_ISCHR(mode))
        return "is a character device";
    return types & HOSTFILE_BLOCK ? "not a regular file or block device" : "not a regular file";
}

int host_file_open(const char *path, int flags, unsigned types, struct host_file *f,
                   const char **why)
{
    struct stat st;
    int fd, fl, err;

    *f = (struct host_file){.fd = -1};
    fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) < 0) {
        err = -errno;
        goto fail;
    }
    if (!((types & HOSTFILE_REGULAR) && S_ISREG(st.st_mode)) &&
        !((types & HOSTFILE_BLOCK) && S_ISBLK(st.st_mode))) {
        *why = type_refused(st.st_mode, types);
        close(fd);
        return -EINVAL;
    }
    /* The type is known: normal blocking I/O from now on (io_uring would not wait otherwise). */
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        err = -errno;
        goto fail;
    }
    f->is_blkdev = S_ISBLK(st.st_mode);
    f->size = (uint64_t)st.st_size;
    if (f->is_blkdev && ioctl(fd, BLKGETSIZE64, &f->size) < 0) {
        err = -errno;
        goto fail;
    }
    f->fd = fd;
    return 0;
fail:
    *why = strerror(-err);
    if (fd >= 0)
        close(fd);
    return err;
}
