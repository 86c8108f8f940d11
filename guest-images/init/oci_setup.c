// ember guest init, OCI mode: the container's root filesystem, mounts, devices and hostname,
// as config.json describes them (the host translated it into spec entries, proto.h).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "oci.h"
#include "proto.h"
#include "util.h"

#define FILES_DIR "/ember-files" // the bind-mounted files, unpacked from the ember-copyin disk

static unsigned long number(const char *s)
{
    return strtoul(s, NULL, 10);
}

int oci_parse(char *buf, uint32_t len, struct oci_spec *s)
{
    struct oci_mount *m = NULL;

    memset(s, 0, sizeof(*s));
    s->umask = 022;
    s->cwd = "/";
    for (char *p = buf; p < buf + len; p += strlen(p) + 1) {
        char *v = p + 1;
        switch (*p) {
        case SPEC_ARG:
            if (s->argc == OCI_MAX_ARGS)
                return fail("oci: more than %d arguments", OCI_MAX_ARGS), -1;
            s->argv[s->argc++] = v;
            break;
        case SPEC_ENV:
            if (s->nenv == OCI_MAX_ENV)
                return fail("oci: more than %d environment variables", OCI_MAX_ENV), -1;
            s->env[s->nenv++] = v;
            break;
        case SPEC_WORKDIR:
            s->cwd = v;
            break;
        case SPEC_ROOT: // "ro BYTES" or "rw BYTES"
            s->root_ro = strncmp(v, "ro", 2) == 0;
            s->root_bytes = strlen(v) > 3 ? atoll(v + 3) : 0;
            break;
        case SPEC_SEED:
            s->seed = v;
            break;
        case SPEC_CLOCK:
            s->now = v;
            break;
        case SPEC_ROOT_LATER:
            s->root_later = 1;
            break;
        case SPEC_FILES:
            s->files = 1;
            s->files_bytes = atoll(v);
            break;
        case SPEC_TERMINAL:
            s->terminal = 1;
            break;
        case SPEC_UID:
            s->uid = (uid_t)number(v);
            break;
        case SPEC_GID:
            s->gid = (gid_t)number(v);
            break;
        case SPEC_GROUP:
            if (s->ngroups == OCI_MAX_GROUPS)
                return fail("oci: more than %d additional groups", OCI_MAX_GROUPS), -1;
            s->groups[s->ngroups++] = (gid_t)number(v);
            break;
        case SPEC_UMASK:
            s->umask = (mode_t)number(v) & 0777;
            break;
        case SPEC_RLIMIT: {
            long long soft, hard;
            int res;
            if (s->nrlimits == OCI_MAX_LIMITS || sscanf(v, "%d %lld %lld", &res, &soft, &hard) != 3)
                return fail("oci: bad rlimit '%s'", v), -1;
            s->rlimits[s->nrlimits].resource = res;
            s->rlimits[s->nrlimits].lim.rlim_cur = soft < 0 ? RLIM_INFINITY : (rlim_t)soft;
            s->rlimits[s->nrlimits].lim.rlim_max = hard < 0 ? RLIM_INFINITY : (rlim_t)hard;
            s->nrlimits++;
            break;
        }
        case SPEC_HOSTNAME:
            s->hostname = v;
            break;
        case SPEC_TTY_SIZE:
            sscanf(v, "%u %u", &s->rows, &s->cols);
            break;
        case SPEC_MOUNT:
            if (s->nmounts == OCI_MAX_MOUNTS)
                return fail("oci: more than %d mounts", OCI_MAX_MOUNTS), -1;
            m = &s->mounts[s->nmounts++];
            *m = (struct oci_mount){.dest = v, .type = "", .src = "none", .file = -1};
            break;
        case SPEC_MNT_TYPE:
        case SPEC_MNT_SRC:
        case SPEC_MNT_FLAGS:
        case SPEC_MNT_DATA:
        case SPEC_MNT_FILE:
        case SPEC_MNT_OPT:
            if (!m)
                return fail("oci: mount option before its mount"), -1;
            if (*p == SPEC_MNT_TYPE)
                m->type = v;
            else if (*p == SPEC_MNT_SRC)
                m->src = v;
            else if (*p == SPEC_MNT_FLAGS)
                m->flags = number(v);
            else if (*p == SPEC_MNT_DATA)
                m->data = v;
            else if (*p == SPEC_MNT_FILE)
                m->file = (int)number(v);
            else
                m->optional = 1;
            break;
        }
    }
    s->argv[s->argc] = NULL;
    s->env[s->nenv] = NULL;
    if (s->argc == 0)
        return fail("oci: no command (process.args is empty)"), -1;
    return 0;
}

// ---- paths inside the container's root, resolved as the root's own symlinks say ----

static int root_fd = -1;

static int open_in_root(const char *path, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .resolve = RESOLVE_IN_ROOT};
    while (*path == '/')
        path++;
    return (int)syscall(SYS_openat2, root_fd, *path ? path : ".", &how, sizeof(how));
}

// An O_PATH descriptor of path in the root, made (directories, or a file) if missing.
static int make_in_root(const char *path, int as_file, int depth)
{
    int fd = open_in_root(path, O_PATH);
    if (fd >= 0 || errno != ENOENT || depth > 64)
        return fd;
    char parent[4096];
    snprintf(parent, sizeof(parent), "%s", path);
    char *slash = strrchr(parent, '/');
    const char *base = slash ? slash + 1 : parent;
    if (slash)
        *slash = '\0';
    if (!*base)
        return -1;
    int pfd = make_in_root(slash && *parent ? parent : "/", 0, depth + 1);
    if (pfd < 0)
        return -1;
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/self/fd/%d", pfd); // mkdirat needs a real directory fd
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(pfd);
    if (d < 0)
        return -1;
    int r = as_file ? openat(d, base, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644)
                    : mkdirat(d, base, 0755);
    if (r >= 0 && as_file)
        close(r);
    close(d);
    if (r < 0 && errno != EEXIST)
        return -1;
    return open_in_root(path, O_PATH);
}

static void fd_path(int fd, char *buf, size_t len)
{
    snprintf(buf, len, "/proc/self/fd/%d", fd);
}

static int do_mount(const struct oci_mount *m)
{
    char target[64], src[64];
    int is_file = m->file >= 0, fd, r;
    const char *source = m->src;

    fd = make_in_root(m->dest, is_file, 0);
    if (fd < 0)
        return m->optional ? 0
                           : (fail("mount %s: cannot make the mount point: %s", m->dest,
                                   strerror(errno)),
                              -1);
    fd_path(fd, target, sizeof(target));
    if (is_file) {
        snprintf(src, sizeof(src), FILES_DIR "/%d", m->file);
        r = mount(src, target, NULL, MS_BIND, NULL);
        if (r == 0 && (m->flags & ~MS_BIND)) {
            // The descriptor still names what lies under the new mount: look it up again.
            int top = open_in_root(m->dest, O_PATH);
            char top_path[64];
            fd_path(top, top_path, sizeof(top_path));
            r = top < 0 ? -1
                        : mount(NULL, top_path, NULL, MS_REMOUNT | MS_BIND | (m->flags & ~MS_BIND),
                                NULL);
            if (top >= 0)
                close(top);
        }
    } else {
        r = mount(source, target, m->type, m->flags, m->data);
    }
    int err = errno;
    close(fd);
    if (r != 0 && !m->optional)
        return fail("mount %s (%s): %s", m->dest, is_file ? "bind" : m->type, strerror(err)), -1;
    return 0;
}

// The devices every container has (runc's defaults), where /dev lacks them.
static void default_devices(void)
{
    static const struct {
        const char *name;
        unsigned major, minor;
    } devs[] = {{"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
                {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
    static const struct {
        const char *name, *target;
    } links[] = {{"fd", "/proc/self/fd"},
                 {"stdin", "/proc/self/fd/0"},
                 {"stdout", "/proc/self/fd/1"},
                 {"stderr", "/proc/self/fd/2"},
                 {"ptmx", "pts/ptmx"}};
    int dev = make_in_root("/dev", 0, 0), d;
    char path[64];

    if (dev < 0)
        return;
    fd_path(dev, path, sizeof(path));
    d = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(dev);
    if (d < 0)
        return;
    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
        mode_t old = umask(0);
        mknodat(d, devs[i].name, S_IFCHR | 0666, makedev(devs[i].major, devs[i].minor));
        umask(old);
    }
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
        symlinkat(links[i].target, d, links[i].name);
    close(d);
}

int oci_open_pty(unsigned rows, unsigned cols, int *slave)
{
    // From the container's own devpts instance, so the workload's ttyname() finds its pty.
    int master = open_in_root("/dev/pts/ptmx", O_RDWR | O_NOCTTY);
    if (master < 0)
        master = open_in_root("/dev/ptmx", O_RDWR | O_NOCTTY);
    if (master < 0)
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return fail("oci: no pty for the terminal: %s", strerror(errno)), -1;
    int unlock = 0;
    ioctl(master, TIOCSPTLCK, &unlock);
    *slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (*slave < 0) {
        fail("oci: open the terminal's pty: %s", strerror(errno));
        close(master);
        return -1;
    }
    if (rows && cols) {
        struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
        ioctl(master, TIOCSWINSZ, &ws);
    }
    return master;
}

int oci_setup(const struct oci_spec *s)
{
    char dev[300];

    if (find_disk("ember-root", dev, sizeof(dev)) < 0)
        return fail("oci: no disk with serial ember-root (the container's root)"), -1;
    // The kernel read the disk at boot, before the host had written it (or, restored from a
    // snapshot, another container's): its new size, and nothing cached.
    disk_settle(dev, s->root_bytes);
    mkdirs(OCI_ROOT, 0755);
    if (mount(dev, OCI_ROOT, "ext4", 0, NULL) != 0)
        return fail("oci: mount the container's root %s: %s", dev, strerror(errno)), -1;
    root_fd = open(OCI_ROOT, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0)
        return fail("oci: open %s: %s", OCI_ROOT, strerror(errno)), -1;
    if (s->files) {
        mkdirs(FILES_DIR, 0700);
        if (unpack_files(FILES_DIR, s->files_bytes))
            return -1;
    }
    for (int i = 0; i < s->nmounts; i++)
        if (do_mount(&s->mounts[i]))
            return -1;
    default_devices();
    if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) != 0)
        return fail("oci: hostname '%s': %s", s->hostname, strerror(errno)), -1;
    int cwd = make_in_root(s->cwd, 0, 0);
    if (cwd >= 0)
        close(cwd);
    if (s->root_ro) { // runc's order too: everything mounted, then the root read-only
        if (mount(NULL, OCI_ROOT, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0)
            return fail("oci: make the root read-only: %s", strerror(errno)), -1;
    }
    return 0;
}
