/* The VMM joins the container's cgroup (linux.cgroupsPath) with its memory and CPU limits,
 * as runc's container would, so the engine's accounting and OOM handling see it. cgroup v2,
 * or the v1 controllers that are mounted; --systemd-cgroup paths are left to the engine. */
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#define CGROUP_ROOT "/sys/fs/cgroup"

static const char *const v1_controllers[] = {"memory",  "cpu,cpuacct", "cpu",    "pids",
                                             "freezer", "blkio",       "devices"};

static int write_file(const char *dir, const char *file, const char *val)
{
    char path[PATH_MAX + 64];
    int fd, ok;

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ok = write(fd, val, strlen(val)) == (ssize_t)strlen(val);
    ok = ok ? 0 : -errno;
    close(fd);
    return ok;
}

/* mkdir -p below base; 1 if the last one was made here, 0 if it existed, -errno. */
static int make_dirs(const char *base, const char *rel)
{
    char path[PATH_MAX + 64];
    size_t blen;
    int made = 0;

    snprintf(path, sizeof(path), "%s/%s", base, rel);
    blen = strlen(base) + 1;
    for (char *p = path + blen; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0755) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    if (mkdir(path, 0755) == 0)
        made = 1;
    else if (errno != EEXIST)
        return -errno;
    return made;
}

static int is_v2(void)
{
    struct statfs sf;

    return statfs(CGROUP_ROOT, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC;
}

static int enter_v2(const struct oci_config *c, const char *rel, pid_t pid, char *made, size_t len)
{
    char dir[PATH_MAX + 64], val[64];
    int r;

    /* Controllers for the limits, from the root down (harmless when on already). */
    snprintf(dir, sizeof(dir), "%s", CGROUP_ROOT);
    for (const char *p = rel;;) {
        const char *slash = strchr(p, '/');

        write_file(dir, "cgroup.subtree_control", "+memory");
        write_file(dir, "cgroup.subtree_control", "+cpu");
        write_file(dir, "cgroup.subtree_control", "+pids");
        if (!slash)
            break;
        snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/%.*s", (int)(slash - p), p);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            break;
        p = slash + 1;
    }
    r = make_dirs(CGROUP_ROOT, rel);
    if (r < 0)
        return oci_error("linux.cgroupsPath: cannot create %s/%s: %s", CGROUP_ROOT, rel,
                         strerror(-r));
    snprintf(dir, sizeof(dir), "%s/%s", CGROUP_ROOT, rel);
    if (r == 1)
        snprintf(made, len, "v2:%s", rel);
    if (c->mem_limit > 0) {
        snprintf(val, sizeof(val), "%lld", c->mem_limit);
        if ((r = write_file(dir, "memory.max", val)))
            return oci_error("cgroup %s: memory.max %s: %s", dir, val, strerror(-r));
    }
    if (c->cpu_quota > 0 && c->cpu_period > 0) {
        snprintf(val, sizeof(val), "%lld %lld", c->cpu_quota, c->cpu_period);
        if ((r = write_file(dir, "cpu.max", val)))
            return oci_error("cgroup %s: cpu.max %s: %s", dir, val, strerror(-r));
    }
    snprintf(val, sizeof(val), "%d", (int)pid);
    if ((r = write_file(dir, "cgroup.procs", val)))
        return oci_error("cgroup %s: cannot move the VMM (pid %d) in: %s", dir, (int)pid,
                         strerror(-r));
    return 0;
}

static int enter_v1(const struct oci_config *c, const char *rel, pid_t pid, char *made, size_t len)
{
    char base[PATH_MAX], dir[PATH_MAX + 64], val[64];
    int joined = 0, r;

    for (size_t i = 0; i < sizeof(v1_controllers) / sizeof(v1_controllers[0]); i++) {
        struct stat st;

        snprintf(base, sizeof(base), "%s/%s", CGROUP_ROOT, v1_controllers[i]);
        if (lstat(base, &st) < 0 || !S_ISDIR(st.st_mode))
            continue; /* not mounted, or a symlink to one we visit anyway */
        r = make_dirs(base, rel);
        if (r < 0)
            return oci_error("linux.cgroupsPath: cannot create %s/%s: %s", base, rel, strerror(-r));
        snprintf(dir, sizeof(dir), "%s/%s", base, rel);
        if (!strcmp(v1_controllers[i], "memory") && c->mem_limit > 0) {
            snprintf(val, sizeof(val), "%lld", c->mem_limit);
            write_file(dir, "memory.limit_in_bytes", val);
        }
        if (strstr(v1_controllers[i], "cpu") && c->cpu_quota > 0 && c->cpu_period > 0) {
            snprintf(val, sizeof(val), "%lld", c->cpu_period);
            write_file(dir, "cpu.cfs_period_us", val);
            snprintf(val, sizeof(val), "%lld", c->cpu_quota);
            write_file(dir, "cpu.cfs_quota_us", val);
        }
        snprintf(val, sizeof(val), "%d", (int)pid);
        if ((r = write_file(dir, "cgroup.procs", val)))
            return oci_error("cgroup %s: cannot move the VMM (pid %d) in: %s", dir, (int)pid,
                             strerror(-r));
        joined++;
    }
    if (joined)
        snprintf(made, len, "v1:%s", rel);
    return 0;
}

int oci_cgroup_enter(const struct oci_config *c, pid_t pid, char *made, size_t len)
{
    const char *rel = c->cgroups_path;

    made[0] = '\0';
    if (!rel || !*rel)
        return 0;
    if (oci_g.systemd_cgroup || strchr(rel, ':')) {
        oci_debug("cgroupsPath %s is a systemd unit (--systemd-cgroup): not joined", rel);
        return 0;
    }
    while (*rel == '/')
        rel++;
    if (!*rel || strstr(rel, ".."))
        return oci_error("linux.cgroupsPath '%s' must name a cgroup below the root",
                         c->cgroups_path);
    return is_v2() ? enter_v2(c, rel, pid, made, len) : enter_v1(c, rel, pid, made, len);
}

void oci_cgroup_remove(const char *made)
{
    char dir[PATH_MAX + 64];

    if (!strncmp(made, "v2:", 3)) {
        snprintf(dir, sizeof(dir), "%s/%s", CGROUP_ROOT, made + 3);
        rmdir(dir);
    } else if (!strncmp(made, "v1:", 3)) {
        for (size_t i = 0; i < sizeof(v1_controllers) / sizeof(v1_controllers[0]); i++) {
            snprintf(dir, sizeof(dir), "%s/%s/%s", CGROUP_ROOT, v1_controllers[i], made + 3);
            rmdir(dir);
        }
    }
}
