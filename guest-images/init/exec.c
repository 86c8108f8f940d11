// ember guest init, exec mode (`ember exec`): the command, its environment and its streams
// come over virtio-console ports; the root may be a read-only disk under a tmpfs overlay.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <linux/fs.h>
#include <linux/random.h>
#include <net/if_arp.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"

#define SPEC_MAGIC "EMBX"
#define SPEC_MAX   (1 << 20)
#define MAX_ARGS   4096

static int errfd = -1; // the stderr port once open; init's own errors go there too

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n = snprintf(buf, sizeof(buf), "ember-init: ");
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 2)
        n = sizeof(buf) - 2;
    buf[n++] = '\n';
    (void)!write(errfd >= 0 ? errfd : 2, buf, n);
}

static int read_file(const char *path, char *buf, size_t size)
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

// /dev/vportNpM of the port named `name`, waiting for the driver to name it.
static int find_port(const char *name, char *dev, size_t devlen)
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

// /dev/vdX whose virtio-blk serial is `serial`.
static int find_disk(const char *serial, char *dev, size_t devlen)
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

static int read_full(int fd, void *buf, size_t len)
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

static void mkdirs(const char *path, mode_t mode)
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

// A guest restored from a snapshot may find its disk swapped for another file since it last
// looked: wait (a little) until the kernel knows the new size, and forget what it cached of
// the old content. `bytes` is the size ember says the disk has.
static void disk_settle(const char *dev, long long bytes)
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

// Read-only root disk under a tmpfs overlay: the command may write anywhere, nothing stays.
static int overlay_root(long long bytes)
{
    char dev[300];
    if (find_disk("ember-root", dev, sizeof(dev)) < 0)
        return fail("no disk with serial ember-root (--rootfs)"), -1;
    disk_settle(dev, bytes);
    mkdirs("/mnt/lower", 0755);
    mkdirs("/mnt/rw", 0755);
    mkdirs("/mnt/root", 0755);
    if (mount(dev, "/mnt/lower", "ext4", MS_RDONLY, "noload") != 0)
        return fail("mount %s (--rootfs) read-only: %s", dev, strerror(errno)), -1;
    if (mount("tmpfs", "/mnt/rw", "tmpfs", 0, "mode=0755") != 0)
        return fail("mount tmpfs for the overlay: %s", strerror(errno)), -1;
    mkdir("/mnt/rw/upper", 0755);
    mkdir("/mnt/rw/work", 0755);
    if (mount("overlay", "/mnt/root", "overlay", 0,
              "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work") != 0)
        return fail("mount the overlay root: %s", strerror(errno)), -1;
    static const char *const keep[] = {"/dev", "/proc", "/sys", "/tmp", "/run"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        char to[64];
        snprintf(to, sizeof(to), "/mnt/root%s", keep[i]);
        mkdir(to, 0755);
        if (mount(keep[i], to, NULL, MS_BIND | MS_REC, NULL) != 0)
            return fail("bind %s into the new root: %s", keep[i], strerror(errno)), -1;
    }
    if (chdir("/mnt/root") != 0 || chroot(".") != 0 || chdir("/") != 0)
        return fail("chroot into the overlay root: %s", strerror(errno)), -1;
    return 0;
}

// ---- --copy-in: a newc cpio archive on the disk with serial ember-copyin ----

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

static int copy_in(long long bytes)
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
        snprintf(path, sizeof(path), "/%s", name);
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

// ---- --net user: libslirp's fixed addresses, no DHCP round trips ----

static int ifreq_addr(int s, unsigned long req, const char *ifname, const char *addr)
{
    struct ifreq ifr;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, addr, &sin->sin_addr);
    return ioctl(s, req, &ifr);
}

static int link_up(int s, const char *ifname)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
        return -1;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return ioctl(s, SIOCSIFFLAGS, &ifr);
}

// eth0's MAC as ember chose it for this VM ("52:54:00:..."): clones of one snapshot differ.
static void set_mac(int s, const char *mac)
{
    struct ifreq ifr;
    unsigned int b[6];
    if (sscanf(mac, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
        return;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, IFNAMSIZ, "eth0");
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    for (int i = 0; i < 6; i++)
        ifr.ifr_hwaddr.sa_data[i] = (char)b[i];
    if (ioctl(s, SIOCSIFHWADDR, &ifr) != 0)
        fail("--net user: cannot set eth0's address: %s", strerror(errno));
}

static void net_setup(int user, const char *mac)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return;
    link_up(s, "lo");
    if (user && mac)
        set_mac(s, mac);
    if (user) {
        struct rtentry rt;
        struct sockaddr_in *gw = (struct sockaddr_in *)&rt.rt_gateway;
        if (ifreq_addr(s, SIOCSIFADDR, "eth0", "10.0.2.15") ||
            ifreq_addr(s, SIOCSIFNETMASK, "eth0", "255.255.255.0") || link_up(s, "eth0"))
            fail("--net user: cannot configure eth0: %s", strerror(errno));
        memset(&rt, 0, sizeof(rt));
        ((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
        ((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
        gw->sin_family = AF_INET;
        inet_pton(AF_INET, "10.0.2.2", &gw->sin_addr);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        if (ioctl(s, SIOCADDRT, &rt) != 0)
            fail("--net user: default route: %s", strerror(errno));
        int fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            (void)!write(fd, "nameserver 10.0.2.3\n", 20);
            close(fd);
        }
    }
    close(s);
}

// Make sure fds 0-2 exist (without a console the kernel opened none), so ports never land there.
static void std_fds(void)
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

// The host's entropy for this VM alone (64 hex digits): mixed in and credited, then the kernel
// reseeds at once, so guests restored from one snapshot stop sharing their random numbers.
static void reseed(const char *hex)
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
static void set_clock(const char *v)
{
    char *end;
    struct timespec ts = {.tv_sec = strtoll(v, &end, 10)};
    if (*end == '.')
        ts.tv_nsec = strtol(end + 1, NULL, 10);
    if (clock_settime(CLOCK_REALTIME, &ts) != 0)
        fail("cannot set the clock: %s", strerror(errno));
}

int exec_requested(void)
{
    char cmdline[4096];
    if (read_file("/proc/cmdline", cmdline, sizeof(cmdline)) != 0)
        return 0;
    for (char *p = cmdline; (p = strstr(p, "ember.exec=1")); p++)
        if (p == cmdline || p[-1] == ' ')
            return 1;
    return 0;
}

int exec_main(void)
{
    char in_dev[300], out_dev[300], err_dev[300], hdr[8];
    char *argv[MAX_ARGS + 1], *workdir = NULL, *spec, *mac = NULL, *seed = NULL, *now = NULL;
    int argc = 0, rootfs = 0, copy = 0, net = 0, in_fd, out_fd;
    long long rootfs_bytes = 0, copy_bytes = 0;
    uint32_t len;

    std_fds();
    if (find_port("ember.stdin", in_dev, sizeof(in_dev)) ||
        find_port("ember.stdout", out_dev, sizeof(out_dev)) ||
        find_port("ember.stderr", err_dev, sizeof(err_dev)))
        return fail("exec: the ember.stdin/stdout/stderr ports did not show up"), 125;
    errfd = open(err_dev, O_WRONLY | O_CLOEXEC);
    out_fd = open(out_dev, O_WRONLY | O_CLOEXEC);
    in_fd = open(in_dev, O_RDONLY | O_CLOEXEC);
    if (errfd < 0 || out_fd < 0 || in_fd < 0)
        return fail("exec: cannot open the ports: %s", strerror(errno)), 125;
    if (read_full(in_fd, hdr, 8) || memcmp(hdr, SPEC_MAGIC, 4) != 0)
        return fail("exec: no command spec on ember.stdin"), 125;
    memcpy(&len, hdr + 4, 4);
    spec = malloc(len + 1);
    if (len > SPEC_MAX || !spec || read_full(in_fd, spec, len))
        return fail("exec: truncated command spec (%u bytes)", len), 125;
    spec[len] = '\0';
    clearenv();
    setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
    setenv("HOME", "/root", 1);
    for (char *p = spec; p < spec + len; p += strlen(p) + 1) {
        switch (*p) {
        case 'a':
            if (argc < MAX_ARGS)
                argv[argc++] = p + 1;
            break;
        case 'e':
            putenv(p + 1);
            break;
        case 'w':
            workdir = p + 1;
            break;
        case 'r':
            rootfs = 1;
            rootfs_bytes = atoll(p + 1);
            break;
        case 'c':
            copy = 1;
            copy_bytes = atoll(p + 1);
            break;
        case 'n':
            net = 1;
            break;
        case 'm':
            mac = p + 1;
            break;
        case 's':
            seed = p + 1;
            break;
        case 't':
            now = p + 1;
            break;
        }
    }
    argv[argc] = NULL;
    if (argc == 0)
        return fail("exec: no command"), 125;
    if (now)
        set_clock(now);
    if (seed)
        reseed(seed);
    if (rootfs && overlay_root(rootfs_bytes))
        return 125;
    if (copy && copy_in(copy_bytes))
        return 125;
    net_setup(net, mac);
    if (workdir && chdir(workdir) != 0)
        return fail("--workdir %s: %s", workdir, strerror(errno)), 125;

    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        dup2(in_fd, 0);
        dup2(out_fd, 1);
        dup2(errfd, 2);
        signal(SIGTTOU, SIG_DFL);
        execvp(argv[0], argv);
        int e = errno;
        fail("cannot run '%s': %s", argv[0], strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }
    if (pid < 0)
        return fail("fork: %s", strerror(errno)), 125;
    close(in_fd);
    close(out_fd);
    for (;;) {
        int st;
        pid_t w = wait(&st);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return 125;
        if (w != pid)
            continue;
        close(errfd);
        if (WIFEXITED(st))
            return WEXITSTATUS(st);
        return 128 + WTERMSIG(st);
    }
}
