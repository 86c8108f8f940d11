/* The jail's root directory: root's and writable by root alone, filled and emptied through
 * descriptors (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), never through a symlink. */
#include "jail_root.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* name (relative to dirfd, no "..", no symlink anywhere on the way) opened, or -errno. */
static int open_beneath(int dirfd, const char *name, int flags, mode_t mode)
{
    struct open_how how = {
            .flags = (uint64_t)flags,
            .mode = (flags & O_CREAT) ? mode : 0,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    };
    long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));

    return fd < 0 ? -errno : (int)fd;
}

/* A directory of the jail: root's, and no one else may write to it (or they could put a
 * symlink or a file of theirs where root is about to create or remove one). */
static int check_dir(int fd, const char *dir, const char *sub)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return log_errno("jail: fstat");
    if (!S_ISDIR(st.st_mode)) {
        log_err("--jail %s%s%s: not a directory", dir, *sub ? "/" : "", sub);
        return -ENOTDIR;
    }
    if (st.st_uid != 0) {
        log_err("--jail %s%s%s: owned by uid %u; the jail must belong to root and be writable by "
                "root alone (chown root)",
                dir, *sub ? "/" : "", sub, (unsigned)st.st_uid);
        return -EPERM;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        log_err("--jail %s%s%s: writable by its group or others (mode %03o); the jail must be "
                "writable by root alone (chmod go-w)",
                dir, *sub ? "/" : "", sub, (unsigned)(st.st_mode & 0777));
        return -EPERM;
    }
    return 0;
}

static void refuse_path(const struct jail_root *r, const char *sub, int err)
{
    if (err == -ELOOP || err == -EXDEV)
        log_err("--jail %s/%s: a symlink, or a path that leaves the jail; ember creates nothing "
                "through one (remove it)",
                r->path, sub);
    else
        log_err("--jail %s/%s: %s", r->path, sub, strerror(-err));
}

void jail_root_init(struct jail_root *r)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    for (int i = 0; i < JAIL_MAX_DIRS; i++)
        r->dir[i].fd = -1;
}

int jail_root_open(struct jail_root *r, const char *path)
{
    r->path = path;
    r->fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (r->fd < 0) {
        log_err("--jail %s: %s", path, strerror(errno));
        return -errno;
    }
    return check_dir(r->fd, path, "");
}

int jail_root_add(struct jail_root *r, const char *host, const char *name, int readonly)
{
    struct jail_entry *e = &r->e[r->n];

    if (r->n == JAIL_MAX_ENTRIES || strlen(host) >= sizeof(e->host) || name[0] != '/' ||
        strlen(name) >= sizeof(e->name))
        return -E2BIG;
    snprintf(e->host, sizeof(e->host), "%s", host);
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->readonly = readonly;
    e->dir = -1;
    r->n++;
    return 0;
}

static int parent_fd(const struct jail_root *r, int dir)
{
    return dir < 0 ? r->fd : r->dir[dir].fd;
}

/* The directory sub ("dev", "dev/net") of the jail, made if missing and checked either way:
 * its index in r->dir, or -errno after one error line. */
static int get_dir(struct jail_root *r, const char *sub)
{
    const char *slash = strrchr(sub, '/');
    char up[sizeof(r->dir[0].name)];
    int parent = -1, i;

    for (i = 0; i < r->ndirs; i++)
        if (strcmp(r->dir[i].name, sub) == 0)
            return i;
    if (r->ndirs == JAIL_MAX_DIRS || strlen(sub) >= sizeof(up))
        return -E2BIG;
    if (slash) {
        snprintf(up, sizeof(up), "%.*s", (int)(slash - sub), sub);
        parent = get_dir(r, up);
        if (parent < 0)
            return parent;
    }
    i = r->ndirs;
    snprintf(r->dir[i].name, sizeof(r->dir[i].name), "%s", sub);
    r->dir[i].parent = parent;
    /* mkdirat never follows a symlink in the last component; openat2 then refuses one. */
    r->dir[i].created = mkdirat(parent_fd(r, parent), slash ? slash + 1 : sub, 0755) == 0;
    r->dir[i].fd = open_beneath(parent_fd(r, parent), slash ? slash + 1 : sub,
                                O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    r->ndirs++;
    if (r->dir[i].fd < 0) {
        refuse_path(r, sub, r->dir[i].fd);
        return r->dir[i].fd;
    }
    if (check_dir(r->dir[i].fd, r->path, sub))
        return -EPERM;
    return i;
}

/* The last component of an entry's name, after its directory. */
static const char *base_name(const struct jail_entry *e)
{
    return strrchr(e->name, '/') + 1;
}

int jail_root_fill(struct jail_root *r)
{
    for (int i = 0; i < r->n; i++) {
        struct jail_entry *e = &r->e[i];
        const char *base = base_name(e);
        struct stat st;
        int fd;

        if (base - e->name > 1) { /* in a subdirectory */
            char sub[sizeof(e->name)];

            snprintf(sub, sizeof(sub), "%.*s", (int)(base - e->name - 2), e->name + 1);
            e->dir = get_dir(r, sub);
            if (e->dir < 0)
                return e->dir;
        }
        /* An empty file to mount on: ours, or one that was there (then left there after). */
        fd = open_beneath(parent_fd(r, e->dir), base,
                          O_WRONLY | O_CREAT | O_EXCL | O_NONBLOCK | O_CLOEXEC, 0600);
        e->created = fd >= 0;
        if (fd == -EEXIST)
            fd = open_beneath(parent_fd(r, e->dir), base, O_PATH | O_CLOEXEC, 0);
        if (fd < 0) {
            refuse_path(r, e->name + 1, fd);
            return fd;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            log_err("--jail %s%s: there already, and not a regular file; remove it", r->path,
                    e->name);
            close(fd);
            return -EEXIST;
        }
        close(fd);
    }
    return 0;
}

/* Bind host (a file or device) on the file target in this mount namespace. */
static int bind_entry(const struct jail_entry *e, int target)
{
    struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    int m = open_tree(AT_FDCWD, e->host, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC), err = 0;

    if (m < 0 || (e->readonly && mount_setattr(m, "", AT_EMPTY_PATH, &ro, sizeof(ro)) < 0) ||
        move_mount(m, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
        err = -errno;
        log_err("jail: cannot put %s into the jail: %s", e->host, strerror(errno));
    }
    if (m >= 0)
        close(m);
    return err;
}

int jail_root_enter(const struct jail_root *r)
{
    struct stat now, checked;
    int fd, root = -1, err = 0;

    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return log_errno("jail: making mounts private");
    /* The jail once more, in this mount namespace (mounts go on paths of this namespace), and
     * still the directory that was checked. */
    fd = open(r->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &now) < 0 || fstat(r->fd, &checked) < 0 ||
        now.st_dev != checked.st_dev || now.st_ino != checked.st_ino) {
        log_err("--jail %s: not the directory checked a moment ago", r->path);
        err = -ESTALE;
        goto out;
    }
    for (int i = 0; !err && i < r->n; i++) {
        int target = open_beneath(fd, r->e[i].name + 1, O_PATH | O_CLOEXEC, 0);

        if (target < 0) {
            refuse_path(r, r->e[i].name + 1, target);
            err = target;
            break;
        }
        err = bind_entry(&r->e[i], target);
        close(target);
    }
    if (err)
        goto out;
    /* The jail with its mounts, on itself: a mount point, as pivot_root wants its new root. */
    root = open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
    if (root < 0 ||
        move_mount(root, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0 ||
        fchdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 ||
        chdir("/") < 0) {
        err = -errno;
        log_err("jail: pivot_root into %s: %s", r->path, strerror(errno));
    }
out:
    if (root >= 0)
        close(root);
    if (fd >= 0)
        close(fd);
    return err;
}

void jail_root_forget(struct jail_root *r)
{
    for (int i = 0; i < r->ndirs; i++) {
        if (r->dir[i].fd >= 0)
            close(r->dir[i].fd);
        r->dir[i].fd = -1;
    }
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

void jail_root_clear(struct jail_root *r)
{
    for (int i = r->n - 1; i >= 0; i--) {
        const struct jail_entry *e = &r->e[i];

        if (e->created)
            unlinkat(parent_fd(r, e->dir), base_name(e), 0);
    }
    for (int i = r->ndirs - 1; i >= 0; i--) {
        const char *slash = strrchr(r->dir[i].name, '/');

        if (r->dir[i].fd >= 0)
            close(r->dir[i].fd);
        r->dir[i].fd = -1;
        if (r->dir[i].created)
            unlinkat(parent_fd(r, r->dir[i].parent), slash ? slash + 1 : r->dir[i].name,
                     AT_REMOVEDIR);
    }
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}
