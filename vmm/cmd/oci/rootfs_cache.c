/* ember-oci's cache of root disks: the rootfs tree's identity (every entry's relative path,
 * type, mode, owner, size, times, link target) names a pristine image made by mkfs once; a
 * container of the same tree gets a sparse copy instead of another mkfs. Content cannot change
 * without its ctime, so a tree that looks the same is the same. */
#include "exec.h"
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define CACHE_SUB "oci-rootfs"

static XXH3_state_t *walk_state;
static size_t walk_root_len;
static unsigned long long walk_bytes, walk_files;

static int visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    struct {
        uint32_t mode, uid, gid, nlink;
        uint64_t size, rdev;
        int64_t mtime, mtime_ns, ctime, ctime_ns;
    } id = {st->st_mode,           st->st_uid,         st->st_gid,         (uint32_t)st->st_nlink,
            (uint64_t)st->st_size, st->st_rdev,        st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
            st->st_ctim.tv_sec,    st->st_ctim.tv_nsec};
    char target[4096];
    ssize_t n;

    (void)ftw;
    walk_bytes += (unsigned long long)st->st_blocks * 512 + 4096;
    walk_files++;
    if (!walk_state)
        return 0;
    XXH3_128bits_update(walk_state, path + walk_root_len, strlen(path + walk_root_len) + 1);
    XXH3_128bits_update(walk_state, &id, sizeof(id));
    if (flag == FTW_SL && (n = readlink(path, target, sizeof(target))) > 0)
        XXH3_128bits_update(walk_state, target, (size_t)n);
    return 0;
}

int oci_rootfs_walk(const char *root, struct oci_rootfs *r)
{
    XXH128_hash_t h;
    int err;

    walk_state = XXH3_createState();
    if (walk_state)
        XXH3_128bits_reset(walk_state);
    walk_root_len = strlen(root);
    walk_bytes = walk_files = 0;
    /* not FTW_MOUNT: overlayfs gives files another st_dev than their directory */
    err = nftw(root, visit, 32, FTW_PHYS) < 0 ? -errno : 0;
    r->tree_bytes = walk_bytes;
    r->files = walk_files;
    r->key[0] = '\0';
    if (walk_state && !err) {
        XXH3_128bits_update(walk_state, &r->tree_bytes, sizeof(r->tree_bytes));
        h = XXH3_128bits_digest(walk_state);
        snprintf(r->key, sizeof(r->key), "%016llx%016llx", (unsigned long long)h.high64,
                 (unsigned long long)h.low64);
    }
    XXH3_freeState(walk_state);
    walk_state = NULL;
    return err;
}

/* Copy what is allocated of in into out (of the same size, holes left as they are). */
static int copy_sparse(int in, int out)
{
    static char buf[1 << 16];
    off_t data = 0, hole, end = lseek(in, 0, SEEK_END);

    while (data < end && (data = lseek(in, data, SEEK_DATA)) >= 0) {
        hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            return -errno;
        while (data < hole) {
            size_t want = (size_t)(hole - data) < sizeof(buf) ? (size_t)(hole - data) : sizeof(buf);
            ssize_t n = pread(in, buf, want, data);

            if (n <= 0 || pwrite(out, buf, (size_t)n, data) != n)
                return n < 0 ? -errno : -EIO;
            data += n;
        }
    }
    return data < 0 && errno != ENXIO ? -errno : 0;
}

static int cache_path(const struct oci_rootfs *r, char *out, size_t n)
{
    char dir[PATH_MAX];

    if (!r->key[0] || exec_cache_dir(CACHE_SUB, dir, sizeof(dir)))
        return -ENOENT;
    return snprintf(out, n, "%s/%s.img", dir, r->key) >= (int)n ? -ENAMETOOLONG : 0;
}

int oci_rootfs_from_cache(struct oci_rootfs *r)
{
    char path[PATH_MAX + 64];
    int in, out, err;

    if (cache_path(r, path, sizeof(path)))
        return -ENOENT;
    in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    out = open(r->img, O_WRONLY | O_CLOEXEC);
    err = out < 0 ? -errno : copy_sparse(in, out);
    close(in);
    if (out >= 0)
        close(out);
    return err;
}

void oci_rootfs_to_cache(const struct oci_rootfs *r)
{
    char path[PATH_MAX + 64], tmp[PATH_MAX + 96], dir[PATH_MAX];
    int in, out, err = -1;

    if (cache_path(r, path, sizeof(path)) || exec_cache_dir(CACHE_SUB, dir, sizeof(dir)))
        return;
    for (char *p = dir + 1; *p; p++) /* mkdir -p */
        if (*p == '/') {
            *p = '\0';
            mkdir(dir, 0700);
            *p = '/';
        }
    mkdir(dir, 0700);
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    in = open(r->img, O_RDONLY | O_CLOEXEC);
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (in >= 0 && out >= 0 && ftruncate(out, (off_t)r->bytes) == 0)
        err = copy_sparse(in, out);
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    /* Published whole or not at all; another create may have published the same meanwhile. */
    if (err || rename(tmp, path) < 0)
        unlink(tmp);
}
