/* The container's root disk: its executable checked on the host first (runc's error texts,
 * which callers turn into 127/126), then the rootfs directory made into an ext4 image with
 * mkfs.ext4 -d (no loop device, modes and owners kept). */
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Resolve path inside the root (symlinks stay in it) and stat it. 0 or -errno. */
static int stat_in_root(int rootfd, const char *path, struct stat *st)
{
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
    int fd, err = 0;

    while (*path == '/')
        path++;
    fd = (int)syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof(how));
    if (fd < 0)
        return -errno;
    if (fstat(fd, st) < 0)
        err = -errno;
    close(fd);
    return err;
}

/* strerror as Go prints errors (lower case), which callers' patterns expect. */
static const char *errtext(int err)
{
    static char buf[128];

    snprintf(buf, sizeof(buf), "%s", strerror(err));
    if (buf[0] >= 'A' && buf[0] <= 'Z')
        buf[0] = (char)(buf[0] - 'A' + 'a');
    return buf;
}

/* Go's exec.LookPath, which runc uses: a regular file with any execute bit. */
static int executable(const struct stat *st)
{
    if (S_ISDIR(st->st_mode))
        return -EISDIR;
    return (st->st_mode & 0111) ? 0 : -EACCES;
}

int oci_lookup_executable(const struct oci_config *c)
{
    const char *arg0 = c->args[0], *path = oci_config_path(c);
    int rootfd = open(c->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC), err;
    char cand[PATH_MAX];
    struct stat st;

    if (rootfd < 0)
        return oci_error("root.path %s: %s", c->rootfs, strerror(errno)), 126;
    if (strchr(arg0, '/')) {
        if (arg0[0] == '/')
            snprintf(cand, sizeof(cand), "%s", arg0);
        else
            snprintf(cand, sizeof(cand), "%s/%s", c->cwd, arg0);
        err = stat_in_root(rootfd, cand, &st);
        close(rootfd);
        if (err)
            return oci_error("exec: \"%s\": stat %s: %s", arg0, arg0, errtext(-err)),
                   err == -ENOENT || err == -ENOTDIR ? 127 : 126;
        err = executable(&st);
        if (err)
            return oci_error("exec: \"%s\": %s", arg0, errtext(-err)), 126;
        return 0;
    }
    for (const char *p = path;; p++) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);

        snprintf(cand, sizeof(cand), "%.*s/%s", (int)(n ? n : 1), n ? p : ".", arg0);
        if (cand[0] != '/') { /* a relative PATH entry is relative to the working directory */
            char rel[PATH_MAX * 2 + 2];

            snprintf(rel, sizeof(rel), "%s/%s", c->cwd, cand);
            snprintf(cand, sizeof(cand), "%.*s", (int)sizeof(cand) - 1, rel);
        }
        if (stat_in_root(rootfd, cand, &st) == 0 && executable(&st) == 0) {
            close(rootfd);
            return 0;
        }
        if (!colon)
            break;
        p = colon;
    }
    close(rootfd);
    return oci_error("exec: \"%s\": executable file not found in $PATH", arg0), 127;
}

/* Run argv with stdout and stderr into out (NUL-terminated); the exit status, or -1. */
static int run_tool(char *const argv[], char *out, size_t outlen)
{
    int pfd[2], st;
    size_t got = 0;
    pid_t pid;

    out[0] = '\0';
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);

        dup2(null, 0);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    if (pid < 0) {
        close(pfd[0]);
        return -1;
    }
    for (;;) {
        ssize_t n = read(pfd[0], out + got, outlen - 1 - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == outlen - 1) { /* keep reading (and dropping) so the tool never blocks */
            char sink[512];

            while (read(pfd[0], sink, sizeof(sink)) > 0)
                ;
            break;
        }
    }
    out[got] = '\0';
    close(pfd[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static const char *mkfs_path(void)
{
    static const char *const where[] = {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4",
                                        "/usr/bin/mkfs.ext4"};

    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++)
        if (access(where[i], X_OK) == 0)
            return where[i];
    return NULL;
}

int oci_rootfs_prepare(const struct oci_config *c, const struct oci_state *s, struct oci_rootfs *r)
{
    int fd, err;

    memset(r, 0, sizeof(*r));
    r->mkfs = mkfs_path();
    if (!r->mkfs)
        return oci_error("mkfs.ext4 not found (apt-get install e2fsprogs): ember-oci makes the "
                         "container's root disk with it");
    if ((err = oci_rootfs_walk(c->rootfs, r)) < 0)
        return oci_error("root.path %s: cannot read it: %s", c->rootfs, strerror(-err));
    /* A sparse file: room to write costs nothing until written. Half as much again as the
     * tree, plus 1 GiB; inodes for the files there and as many again. */
    r->bytes = r->tree_bytes + r->tree_bytes / 2 + (1ULL << 30);
    r->bytes &= ~4095ULL;
    oci_state_path(s, "rootfs.img", r->img, sizeof(r->img));
    fd = open(r->img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)r->bytes) < 0) {
        int err = errno;

        if (fd >= 0)
            close(fd);
        return oci_error("cannot create %s: %s", r->img, strerror(err));
    }
    close(fd);
    return 0;
}

int oci_rootfs_fill(const struct oci_config *c, struct oci_rootfs *r)
{
    char size[32], inodes[32], out[2048];
    struct timespec t1;
    int code;

    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    if (oci_rootfs_from_cache(r) == 0) { /* this tree was made into a disk before */
        clock_gettime(CLOCK_MONOTONIC, &t1);
        r->ms = (long)((t1.tv_sec - r->t0.tv_sec) * 1000 + (t1.tv_nsec - r->t0.tv_nsec) / 1000000);
        oci_debug("rootfs image %s: copied from the cache (%s) in %ld ms", r->img, r->key, r->ms);
        return 0;
    }
    snprintf(size, sizeof(size), "%lluk", r->bytes >> 10);
    snprintf(inodes, sizeof(inodes), "%llu", r->files * 2 + 65536);
    /* No journal: the disk lives as long as the container, and a crash loses nothing anyone
     * keeps; it also makes mkfs and the guest's mount cheaper. The file has its size already
     * (the VMM may have it open): mkfs writes into it. */
    char *argv[] = {(char *)r->mkfs,
                    "-q",
                    "-F",
                    "-t",
                    "ext4",
                    "-O",
                    "^has_journal",
                    "-m",
                    "0",
                    "-N",
                    inodes,
                    "-L",
                    "ember-root",
                    "-d",
                    (char *)c->rootfs,
                    r->img,
                    size,
                    NULL};
    code = run_tool(argv, out, sizeof(out));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r->ms = (long)((t1.tv_sec - r->t0.tv_sec) * 1000 + (t1.tv_nsec - r->t0.tv_nsec) / 1000000);
    if (code != 0) {
        char *nl;

        while ((nl = strchr(out, '\n')) && nl[1]) /* one line: the last one says why */
            memmove(out, nl + 1, strlen(nl + 1) + 1);
        if ((nl = strchr(out, '\n')))
            *nl = '\0';
        return oci_error("mkfs.ext4 -d %s failed (status %d): %s", c->rootfs, code,
                         out[0] ? out : "no message");
    }
    oci_debug("rootfs image %s: %llu files, %llu KiB of tree, made in %ld ms", r->img, r->files,
              r->tree_bytes >> 10, r->ms);
    oci_rootfs_to_cache(r); /* before the guest writes to it */
    return 0;
}
