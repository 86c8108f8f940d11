/* `ember exec`'s snapshot cache: one "ready for a command" snapshot per kernel, initramfs,
 * ember build, host and machine shape, so that only the first exec of them boots. */
#include "exec.h"
#include "exec_io.h"
#include "exec_snapshot.h"
#include "log.h"
#include "snapshot.h"
#include "snapshot_arch.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <xxhash.h>

#define HASH_HEX 33 /* 128 bits in hex, NUL */

static void hex128(XXH128_hash_t h, char out[HASH_HEX])
{
    snprintf(out, HASH_HEX, "%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
}

static int mkdirs(const char *path)
{
    char tmp[PATH_MAX];

    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    return mkdir(tmp, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

int exec_cache_dir(const char *sub, char *out, size_t n)
{
    const char *e = getenv("EMBER_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    int len;

    if (e && *e)
        len = snprintf(out, n, "%s/%s", e, sub);
    else if (x && *x)
        len = snprintf(out, n, "%s/ember/%s", x, sub);
    else if (h && *h)
        len = snprintf(out, n, "%s/.cache/ember/%s", h, sub);
    else
        return -ENOENT;
    return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

static int hash_file(const char *path, char out[HASH_HEX])
{
    XXH3_state_t *st = XXH3_createState();
    static uint8_t buf[1 << 16];
    int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;
    ssize_t n;

    if (!st || fd < 0) {
        err = fd < 0 ? -errno : -ENOMEM;
        goto out;
    }
    XXH3_128bits_reset(st);
    while ((n = read(fd, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = -errno;
            goto out;
        }
        XXH3_128bits_update(st, buf, (size_t)n);
    }
    hex128(XXH3_128bits_digest(st), out);
out:
    if (fd >= 0)
        close(fd);
    XXH3_freeState(st);
    return err;
}

/* The content hash of an image, remembered under the file's identity (device, inode, size,
 * times) so that a later exec hashes nothing: hashes/<identity> holds it. */
static int image_hash(const char *root, const char *path, char out[HASH_HEX])
{
    char id[256], idhex[HASH_HEX], index[PATH_MAX], tmp[PATH_MAX];
    struct stat st;
    ssize_t n;
    int fd;

    if (stat(path, &st) < 0)
        return -errno;
    snprintf(id, sizeof(id), "%llu:%llu:%lld:%lld.%ld:%lld.%ld", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
             st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
    hex128(XXH3_128bits(id, strlen(id)), idhex);
    snprintf(index, sizeof(index), "%s/hashes/%s", root, idhex);
    fd = open(index, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, out, HASH_HEX - 1);
        close(fd);
        if (n == HASH_HEX - 1) {
            out[HASH_HEX - 1] = '\0';
            return 0;
        }
    }
    if (hash_file(path, out) < 0)
        return -EIO;
    snprintf(tmp, sizeof(tmp), "%s/hashes/.%s.%d", root, idhex, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        n = write(fd, out, HASH_HEX - 1);
        close(fd);
        if (n != HASH_HEX - 1 || rename(tmp, index) < 0)
            unlink(tmp);
    }
    return 0;
}

/* This ember binary (any rebuild may lay devices out differently) and this host (CPU model
 * and features, kernel: KVM must take the saved vCPU state back). */
static void host_identity(char *out, size_t n)
{
    char exe[PATH_MAX] = "", line[4096], model[256] = "", flags[4096] = "";
    struct stat st = {0};
    struct utsname u = {0};
    FILE *f = fopen("/proc/cpuinfo", "re");
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

    if (len > 0) {
        exe[len] = '\0';
        stat(exe, &st);
    }
    uname(&u);
    while (f && fgets(line, sizeof(line), f) && (!model[0] || !flags[0])) {
        if (!model[0] && !strncmp(line, "model name", 10))
            snprintf(model, sizeof(model), "%.200s", line);
        else if (!flags[0] && !strncmp(line, "flags", 5))
            snprintf(flags, sizeof(flags), "%s", line);
    }
    if (f)
        fclose(f);
    snprintf(out, n, "%s:%llu:%lld.%ld|%s %s|%s|%016llx", exe, (unsigned long long)st.st_ino,
             (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, u.release, u.machine, model,
             (unsigned long long)XXH3_64bits(flags, strlen(flags)));
}

static int entry_key(const struct exec_config *x, const char *root, char out[HASH_HEX])
{
    const struct vm_config *cfg = &x->vm;
    char kernel[HASH_HEX], initrd[HASH_HEX], host[8192], key[9000];

    if (image_hash(root, cfg->kernel, kernel) || image_hash(root, cfg->initrd, initrd))
        return -ENOENT; /* the run itself says what is wrong with the file */
    host_identity(host, sizeof(host));
    snprintf(key, sizeof(key),
             "ember exec snapshot|format %d|kernel %s|initrd %s|host %s|cpus %d|memory %llu|"
             "rootfs %d|copy-in %d|net %d|oci %d",
             SNAP_FORMAT_VERSION, kernel, initrd, host, cfg->cpus, (unsigned long long)cfg->memory,
             x->rootfs != NULL, x->nr_copy_in > 0 || x->files_image, x->net_user,
             x->io && x->io->ctl);
    hex128(XXH3_128bits(key, strlen(key)), out);
    return 0;
}

static void remove_dir(const char *dir)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/" SNAP_STATE_FILE, dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/" SNAP_MEMORY_FILE, dir);
    unlink(path);
    rmdir(dir);
}

/* A new entry is written into a directory of its own, published by a rename when complete. */
static int start_staging(struct exec_cache *c, const char root[PATH_MAX / 4])
{
    char path[PATH_MAX];

    snprintf(c->staging, sizeof(c->staging), "%s/.new-XXXXXX", root);
    if (!mkdtemp(c->staging)) {
        c->staging[0] = '\0';
        return -errno;
    }
    snprintf(path, sizeof(path), "%s/" SNAP_STATE_FILE, c->staging);
    c->out.state_fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    snprintf(path, sizeof(path), "%s/" SNAP_MEMORY_FILE, c->staging);
    c->out.mem_fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (c->out.state_fd < 0 || c->out.mem_fd < 0) {
        int err = -errno;

        exec_cache_finish(c);
        return err;
    }
    return 0;
}

int exec_cache_prepare(struct exec_config *x, struct exec_cache *c)
{
    char root[PATH_MAX / 4], key[HASH_HEX], hashes[PATH_MAX], state[PATH_MAX];
    struct vm_config *cfg = &x->vm;
    int err;

    memset(c, 0, sizeof(*c));
    c->out.state_fd = c->out.mem_fd = -1;
    if (!snap_arch_supported())
        return -1; /* no snapshots on this architecture (yet): every exec boots */
    err = exec_cache_dir("exec-snapshots", root, sizeof(root));
    snprintf(hashes, sizeof(hashes), "%s/hashes", root);
    if (!err)
        err = mkdirs(hashes);
    if (err) {
        log_warn("exec: no snapshot cache (%s: %s); booting, nothing saved (set EMBER_CACHE_DIR "
                 "or --no-snapshot)",
                 root, strerror(-err));
        return -1;
    }
    if (entry_key(x, root, key))
        return -1;
    snprintf(c->dir, sizeof(c->dir), "%s/%s", root, key);
    snprintf(state, sizeof(state), "%s/" SNAP_STATE_FILE, c->dir);
    if (access(state, F_OK) == 0) {
        if (snapshot_open(&cfg->snap, c->dir) == 0)
            return 1;
        log_warn("exec: the cached snapshot %s cannot be used; booting and saving it again",
                 c->dir);
    }
    remove_dir(c->dir); /* what is left of an entry: a memory file whose state was removed */
    err = start_staging(c, root);
    if (err) {
        log_warn("exec: cannot write a snapshot into %s (%s); booting, nothing saved", root,
                 strerror(-err));
        return -1;
    }
    cfg->snap_out = &c->out;
    return 0;
}

/* The state file is written last and whole: a complete one parses. */
static int complete(const struct exec_cache *c)
{
    static struct snap_file f;
    struct stat st;
    uint8_t *buf;
    char err[256];
    int ok = 0;

    if (fstat(c->out.state_fd, &st) < 0 || st.st_size < SNAP_HEADER_SIZE ||
        st.st_size > SNAP_STATE_MAX)
        return 0;
    buf = malloc((size_t)st.st_size);
    if (buf && pread(c->out.state_fd, buf, (size_t)st.st_size, 0) == st.st_size)
        ok = snap_file_parse(buf, (size_t)st.st_size, &f, err, sizeof(err)) == 0;
    free(buf);
    return ok;
}

void exec_cache_finish(struct exec_cache *c)
{
    int ok;

    if (!c->staging[0])
        return;
    ok = c->out.state_fd >= 0 && complete(c);
    if (c->out.state_fd >= 0)
        close(c->out.state_fd);
    if (c->out.mem_fd >= 0)
        close(c->out.mem_fd);
    c->out.state_fd = c->out.mem_fd = -1;
    /* Another exec may have published the same entry meanwhile: keep theirs. */
    if (!ok || rename(c->staging, c->dir) < 0)
        remove_dir(c->staging);
    c->staging[0] = '\0';
}
