// ember guest init: small helpers shared by exec mode and the OCI agent (util.h).
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/random.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static int errfd = -1;
static void (*error_hook)(const char *msg);

void set_error_fd(int fd)
{
    errfd = fd;
}

void set_error_hook(void (*hook)(const char *msg))
{
    error_hook = hook;
}

void fail(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n = snprintf(buf, sizeof(buf), "ember-init: ");
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 2)
        n = sizeof(buf) - 2;
    if (error_hook) {
        buf[n] = '\0';
        error_hook(buf + 12); // without "ember-init: "
        return;
    }
    buf[n++] = '\n';
    (void)!write(errfd >= 0 ? errfd : 2, buf, n);
}

int read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    return 0;
}

int read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += n;
    }
    return 0;
}

int write_full(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += n;
    }
    return 0;
}

void mkdirs(const char *path, mode_t mode)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    }
    mkdir(tmp, mode);
}

void std_fds(void)
{
    for (int i = 0; i < 3; i++) {
        if (fcntl(i, F_GETFD) < 0) {
            int fd = open("/dev/null", O_RDWR);
            if (fd >= 0 && fd != i) {
                dup2(fd, i);
                close(fd);
            }
        }
    }
}

int find_port(const char *name, char *dev, size_t devlen)
{
    for (int tries = 0; tries < 30000; tries++) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *e;
        char path[300], got[64];

        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
            if (read_file(path, got, sizeof(got)) == 0 && strcmp(got, name) == 0) {
                snprintf(dev, devlen, "/dev/%.200s", e->d_name);
                closedir(d);
                for (int i = 0; i < 1000 && access(dev, F_OK) != 0; i++)
                    usleep(1000); // devtmpfs creates the node right away; just in case
                return 0;
            }
        }
        if (d)
            closedir(d);
        usleep(1000);
    }
    return -1;
}

int find_disk(const char *serial, char *dev, size_t devlen)
{
    DIR *d = opendir("/sys/block");
    struct dirent *e;
    char path[300], got[64];
    int found = -1;

    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "vd", 2) != 0)
            continue;
        snprintf(path, sizeof(path), "/sys/block/%s/serial", e->d_name);
        if (read_file(path, got, sizeof(got)) == 0 && strcmp(got, serial) == 0) {
            snprintf(dev, devlen, "/dev/%.200s", e->d_name);
            found = 0;
            break;
        }
    }
    if (d)
        closedir(d);
    return found;
}

// A guest restored from a snapshot may find its disk swapped for another file since it last
// looked: wait (a little) until the kernel knows the new size, and forget what it cached of
// the old content. `bytes` is the size ember says the disk has.
void disk_settle(const char *dev, long long bytes)
{
    char path[300], val[64];
    snprintf(path, sizeof(path), "/sys/block/%s/size", dev + 5);
    for (int i = 0; bytes > 0 && i < 5000; i++) {
        if (read_file(path, val, sizeof(val)) == 0 && atoll(val) * 512 == bytes)
            break;
        usleep(1000);
    }
    int fd = open(dev, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ioctl(fd, BLKFLSBUF, 0);
        close(fd);
    }
}

// The host's entropy for this VM alone (64 hex digits): mixed in and credited, then the kernel
// reseeds at once, so guests restored from one snapshot stop sharing their random numbers.
void reseed(const char *hex)
{
    struct {
        int entropy_count, buf_size;
        unsigned char buf[32];
    } e = {.entropy_count = 256, .buf_size = 32};
    for (int i = 0; i < 32; i++) {
        unsigned int v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return;
        e.buf[i] = (unsigned char)v;
    }
    int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (ioctl(fd, RNDADDENTROPY, &e) != 0 || ioctl(fd, RNDRESEEDCRNG) != 0)
        fail("cannot reseed the random number generator: %s", strerror(errno));
    close(fd);
}

// The host's time ("sec.nsec"): a restored guest's clock stood still since the snapshot.
void set_clock(const char *v)
{
    char *end;
    struct timespec ts = {.tv_sec = strtoll(v, &end, 10)};
    if (*end == '.')
        ts.tv_nsec = strtol(end + 1, NULL, 10);
    if (clock_settime(CLOCK_REALTIME, &ts) != 0)
        fail("cannot set the clock: %s", strerror(errno));
}
