/* `ember exec --copy-in`: host files and directories packed into a newc cpio disk image. */
#include "exec.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct packer {
    int fd;
    uint64_t off;
    int err;
};

static void out(struct packer *p, const void *buf, size_t len)
{
    while (!p->err && len) {
        ssize_t w = write(p->fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            p->err = log_errno("--copy-in: writing the image");
            return;
        }
        buf = (const char *)buf + w;
        len -= (size_t)w;
        p->off += (uint64_t)w;
    }
}

static void pad(struct packer *p, unsigned align)
{
    static const char zero[4096];
    size_t n = (align - p->off % align) % align;

    out(p, zero, n);
}

static void header(struct packer *p, const char *name, unsigned mode, unsigned long size)
{
    char h[128];
    static unsigned ino = 1;

    snprintf(h, sizeof(h), "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", ino++,
             mode, 0u, 0u, 1u, 0u, (unsigned)size, 0u, 0u, 0u, 0u, (unsigned)strlen(name) + 1, 0u);
    out(p, h, 110);
    out(p, name, strlen(name) + 1);
    pad(p, 4);
}

static int add(struct packer *p, const char *host, const char *guest, int depth);

static int add_dir(struct packer *p, const char *host, const char *guest, int depth)
{
    DIR *d = opendir(host);
    struct dirent *e;

    if (!d) {
        log_err("--copy-in %s: %s", host, strerror(errno));
        return -errno;
    }
    while (!p->err && (e = readdir(d))) {
        char h[PATH_MAX], g[PATH_MAX];

        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (snprintf(h, sizeof(h), "%s/%s", host, e->d_name) >= (int)sizeof(h) ||
            snprintf(g, sizeof(g), "%s/%s", guest, e->d_name) >= (int)sizeof(g)) {
            closedir(d);
            log_err("--copy-in %s: path too long", host);
            return -ENAMETOOLONG;
        }
        if (add(p, h, g, depth + 1) < 0)
            break;
    }
    closedir(d);
    return p->err;
}

static int add_file(struct packer *p, const char *host, const char *guest, const struct stat *st)
{
    char buf[65536];
    unsigned long left = (unsigned long)st->st_size;
    int fd = open(host, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        log_err("--copy-in %s: %s", host, strerror(errno));
        return p->err = -errno;
    }
    if (st->st_size > 0xffffffffLL) {
        close(fd);
        log_err("--copy-in %s: larger than 4 GiB; use --rootfs for big data", host);
        return p->err = -EFBIG;
    }
    header(p, guest, (unsigned)st->st_mode, left);
    while (!p->err && left) {
        ssize_t n = read(fd, buf, left < sizeof(buf) ? left : sizeof(buf));
        if (n <= 0) {
            log_err("--copy-in %s: %s", host, n < 0 ? strerror(errno) : "file shrank");
            p->err = -EIO;
            break;
        }
        out(p, buf, (size_t)n);
        left -= (unsigned long)n;
    }
    close(fd);
    pad(p, 4);
    return p->err;
}

static int add(struct packer *p, const char *host, const char *guest, int depth)
{
    struct stat st;
    char target[PATH_MAX];
    ssize_t n;

    if (depth > 64) {
        log_err("--copy-in %s: directories nested too deep", host);
        return p->err = -ELOOP;
    }
    if (lstat(host, &st) < 0) {
        log_err("--copy-in %s: %s", host, strerror(errno));
        return p->err = -errno;
    }
    if (S_ISDIR(st.st_mode)) {
        header(p, guest, (unsigned)st.st_mode, 0);
        return add_dir(p, host, guest, depth);
    }
    if (S_ISREG(st.st_mode))
        return add_file(p, host, guest, &st);
    if (S_ISLNK(st.st_mode)) {
        n = readlink(host, target, sizeof(target));
        if (n < 0 || n == (ssize_t)sizeof(target)) {
            log_err("--copy-in %s: cannot read the link", host);
            return p->err = -EINVAL;
        }
        header(p, guest, (unsigned)st.st_mode, (unsigned long)n);
        out(p, target, (size_t)n);
        pad(p, 4);
        return p->err;
    }
    log_warn("--copy-in: skipping %s (not a file, directory or link)", host);
    return 0;
}

int copyin_pack(const char *const *specs, int n, const char *dir, char *path, size_t pathlen)
{
    const char *tmp = getenv("TMPDIR");
    struct packer p = {.fd = -1};

    if (!dir)
        dir = tmp && *tmp ? tmp : "/tmp";
    snprintf(path, pathlen, "%s/ember-copyin.XXXXXX", dir);
    p.fd = mkstemp(path);
    if (p.fd < 0) {
        int err = errno;

        log_err("--copy-in: cannot create the image in %s: %s", dir, strerror(err));
        return -err;
    }
    fchmod(p.fd, 0644); /* readable by the jail's unprivileged user */
    for (int i = 0; i < n && !p.err; i++) {
        char host[PATH_MAX];
        const char *colon = strrchr(specs[i], ':');
        size_t hl = (size_t)(colon - specs[i]);
        const char *guest = colon + 1;

        if (hl >= sizeof(host)) {
            log_err("--copy-in %s: path too long", specs[i]);
            p.err = -ENAMETOOLONG;
            break;
        }
        memcpy(host, specs[i], hl);
        host[hl] = '\0';
        while (guest[0] == '/')
            guest++; /* cpio names are relative to / */
        add(&p, host, *guest ? guest : ".", 0);
    }
    if (!p.err) {
        header(&p, "TRAILER!!!", 0, 0);
        pad(&p, 4096); /* whole sectors: the disk is the file's size in 512-byte sectors */
    }
    close(p.fd);
    if (p.err)
        unlink(path);
    return p.err;
}
