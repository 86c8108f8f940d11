// ember guest init, exec mode (`ember exec`): the command, its environment and its streams
// come over virtio-console ports; the root may be a read-only disk under a tmpfs overlay.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
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
#include "oci.h"
#include "proto.h"
#include "util.h"

#define MAX_ARGS 4096

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

void net_setup(int user, const char *mac)
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
    int argc = 0, rootfs = 0, copy = 0, net = 0, in_fd, out_fd, err_fd;
    long long rootfs_bytes = 0, copy_bytes = 0;
    uint32_t len;

    std_fds();
    if (find_port("ember.stdin", in_dev, sizeof(in_dev)) ||
        find_port("ember.stdout", out_dev, sizeof(out_dev)) ||
        find_port("ember.stderr", err_dev, sizeof(err_dev)))
        return fail("exec: the ember.stdin/stdout/stderr ports did not show up"), 125;
    err_fd = open(err_dev, O_WRONLY | O_CLOEXEC);
    out_fd = open(out_dev, O_WRONLY | O_CLOEXEC);
    in_fd = open(in_dev, O_RDONLY | O_CLOEXEC);
    if (err_fd < 0 || out_fd < 0 || in_fd < 0)
        return fail("exec: cannot open the ports: %s", strerror(errno)), 125;
    set_error_fd(err_fd);
    if (read_full(in_fd, hdr, 8) || memcmp(hdr, SPEC_MAGIC, 4) != 0)
        return fail("exec: no command spec on ember.stdin"), 125;
    memcpy(&len, hdr + 4, 4);
    spec = len <= SPEC_MAX ? malloc(len + 1) : NULL;
    if (!spec || read_full(in_fd, spec, len))
        return fail("exec: truncated command spec (%u bytes)", len), 125;
    spec[len] = '\0';
    for (char *p = spec; p < spec + len; p += strlen(p) + 1)
        if (*p == SPEC_OCI) // ember-oci: a container, started in two phases (oci.c)
            return oci_main(in_fd, out_fd, err_fd, spec, len);
    clearenv();
    setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
    setenv("HOME", "/root", 1);
    for (char *p = spec; p < spec + len; p += strlen(p) + 1) {
        switch (*p) {
        case SPEC_ARG:
            if (argc < MAX_ARGS)
                argv[argc++] = p + 1;
            break;
        case SPEC_ENV:
            putenv(p + 1);
            break;
        case SPEC_WORKDIR:
            workdir = p + 1;
            break;
        case SPEC_OVERLAY:
            rootfs = 1;
            rootfs_bytes = atoll(p + 1);
            break;
        case SPEC_COPYIN:
            copy = 1;
            copy_bytes = atoll(p + 1);
            break;
        case SPEC_NET:
            net = 1;
            break;
        case SPEC_MAC:
            mac = p + 1;
            break;
        case SPEC_SEED:
            seed = p + 1;
            break;
        case SPEC_CLOCK:
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
    if (copy && unpack_files("/", copy_bytes))
        return 125;
    net_setup(net, mac);
    if (workdir && chdir(workdir) != 0)
        return fail("--workdir %s: %s", workdir, strerror(errno)), 125;

    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        dup2(in_fd, 0);
        dup2(out_fd, 1);
        dup2(err_fd, 2);
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
        close(err_fd);
        set_error_fd(-1);
        if (WIFEXITED(st))
            return WEXITSTATUS(st);
        return 128 + WTERMSIG(st);
    }
}
