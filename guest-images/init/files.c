// ember guest init: the ember-copyin disk, a newc cpio archive (`ember exec --copy-in`, and
// ember-oci's bind-mounted files), unpacked under a directory.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

struct rd {
    int fd;
    unsigned char buf[65536];
    size_t pos, len;
};

static int rd_get(struct rd *r, void *dst, size_t n)
{
    while (n) {
        if (r->pos == r->len) {
            ssize_t got = read(r->fd, r->buf, sizeof(r->buf));
            if (got <= 0)
                return -1;
            r->pos = 0;
            r->len = got;
        }
        size_t c = r->len - r->pos < n ? r->len - r->pos : n;
        if (dst) {
            memcpy(dst, r->buf + r->pos, c);
            dst = (char *)dst + c;
        }
        r->pos += c;
        n -= c;
    }
    return 0;
}

static unsigned long hex8(const char *p)
{
    char t[9];
    memcpy(t, p, 8);
    t[8] = '\0';
    return strtoul(t, NULL, 16);
}

int unpack_files(const char *dir, long long bytes)
{
    char dev[300], hdr[110], name[4096];
    struct rd *r;
    off_t at = 0;
    if (find_disk("ember-copyin", dev, sizeof(dev)) < 0)
        return fail("no disk with serial ember-copyin (--copy-in)"), -1;
    disk_settle(dev, bytes);
    r = calloc(1, sizeof(*r));
    if (!r || (r->fd = open(dev, O_RDONLY | O_CLOEXEC)) < 0)
        return fail("open %s (--copy-in): %s", dev, strerror(errno)), -1;
    for (;;) {
        if (rd_get(r, hdr, sizeof(hdr)) || memcmp(hdr, "070701", 6) != 0)
            return fail("--copy-in image: bad cpio header at byte %lld", (long long)at), -1;
        unsigned long mode = hex8(hdr + 14), size = hex8(hdr + 54), nsize = hex8(hdr + 94);
        if (nsize == 0 || nsize > sizeof(name))
            return fail("--copy-in image: bad name length"), -1;
        size_t pad = (4 - (110 + nsize) % 4) % 4;
        if (rd_get(r, name, nsize) || rd_get(r, NULL, pad))
            return fail("--copy-in image: truncated"), -1;
        name[nsize - 1] = '\0';
        at += 110 + nsize + pad;
        if (strcmp(name, "TRAILER!!!") == 0)
            break;
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", strcmp(dir, "/") ? dir : "", name);
        char *slash = strrchr(path, '/');
        if (slash && slash != path) {
            *slash = '\0';
            mkdirs(path, 0755);
            *slash = '/';
        }
        size_t dpad = (4 - size % 4) % 4;
        if (S_ISDIR(mode)) {
            mkdirs(path, mode & 07777);
            chmod(path, mode & 07777);
        } else if (S_ISLNK(mode)) {
            char target[4096];
            if (size >= sizeof(target) || rd_get(r, target, size))
                return fail("--copy-in image: bad symlink %s", path), -1;
            target[size] = '\0';
            unlink(path);
            if (symlink(target, path) != 0)
                fail("--copy-in: symlink %s: %s", path, strerror(errno));
            size = 0; // consumed
        } else if (S_ISREG(mode)) {
            unlink(path);
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
            if (fd < 0)
                return fail("--copy-in: create %s: %s", path, strerror(errno)), -1;
            unsigned long left = size;
            while (left) {
                char chunk[65536];
                size_t c = left < sizeof(chunk) ? left : sizeof(chunk);
                if (rd_get(r, chunk, c) || write(fd, chunk, c) != (ssize_t)c) {
                    close(fd);
                    return fail("--copy-in: write %s: %s", path, strerror(errno)), -1;
                }
                left -= c;
            }
            close(fd);
            size = 0;
        }
        if (rd_get(r, NULL, size + dpad))
            return fail("--copy-in image: truncated data of %s", path), -1;
        at += size + dpad;
    }
    close(r->fd);
    free(r);
    return 0;
}
